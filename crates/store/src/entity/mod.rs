//! sea-orm entities, one per table (see leadflow-migrations for the schema).

// The entity macros generate public items for a private module.
#![allow(unreachable_pub, missing_debug_implementations)]

pub(crate) mod account;
pub(crate) mod account_link;
pub(crate) mod account_member;
pub(crate) mod account_promotion;
pub(crate) mod account_transition;
pub(crate) mod anonymous_id;
pub(crate) mod assignment;
pub(crate) mod consumer;
pub(crate) mod engagement;
pub(crate) mod idempotency;
pub(crate) mod lead;
pub(crate) mod lead_match_key;
pub(crate) mod lead_score;
pub(crate) mod learn_job;
pub(crate) mod level_change;
pub(crate) mod merge;
pub(crate) mod outbox;
pub(crate) mod owner;
pub(crate) mod policy;
pub(crate) mod relay;
pub(crate) mod rescore_job;
pub(crate) mod routing_wait;
pub(crate) mod score_checkpoint;
pub(crate) mod sla_breach;
pub(crate) mod team_cursor;
pub(crate) mod timer;
pub(crate) mod token;
pub(crate) mod transition;
pub(crate) mod webhook;
pub(crate) mod webhook_delivery;
pub(crate) mod workspace;
