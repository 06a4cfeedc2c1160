//! Webhooks: each endpoint a durable consumer of the outbox, its requests
//! signed per the Standard Webhooks specification ([`sign`]).

pub mod deliver;
pub mod http;
pub mod sign;
