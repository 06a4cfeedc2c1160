//! leadflow-store: persistence for leadflow on SQLite and PostgreSQL, from
//! one code path on sea-orm.
//!
//! It owns the tables (leads, engagements, transitions, outbox, timers,
//! policies, idempotent results, workspaces and tokens) and the queries on them, and it converts
//! rows to and from the domain's types. It makes no decisions: the engine
//! asks, the domain decides, the store persists. It never imports tonic or
//! the generated API.
//!
//! # Layout
//!
//! - [`Store`] (`db.rs`): connections (on SQLite one writer and a pool of
//!   readers), migrations; its reads outside a transaction are in `reads.rs`.
//! - [`Tx`] (`tx/`): a write transaction and every write, committed together
//!   or not at all. `tx/mod.rs` is the unit of work (begin, held-back writes,
//!   flush, commit); the statements on each table are in the table's file
//!   (`tx/leads.rs`, `tx/engagements.rs`, `tx/transitions.rs`, `tx/timers.rs`,
//!   `tx/outbox.rs`, `tx/policies.rs`, `tx/workspaces.rs`, `tx/idempotency.rs`).
//! - `backend.rs` and `queries.rs`: what both build on (which database, the
//!   shape of its parameters, the queries run in and out of a transaction),
//!   so that neither imports the other's internals.
//! - One file for each feature beyond that, on both sides (`erase.rs`,
//!   `rescore.rs`, `learn.rs`, `stream.rs`, `timers.rs` for firing them, `tokens.rs`,
//!   `analytics.rs`, `evidence.rs`, `gauges.rs`).
//! - [`StoreError`] (`error.rs`): what failed, read from the database's own
//!   error codes (a SQLSTATE, a SQLite result code), never from its messages.
//! - [`testing`] (feature `testing`): throwaway databases for tests.

mod accounts;
mod analytics;
mod backend;
mod convert;
mod db;
mod entity;
mod erase;
mod error;
mod evidence;
mod gauges;
mod learn;
mod queries;
mod reads;
mod records;
mod relay;
mod rescore;
mod search;
mod state;
mod stream;
#[cfg(feature = "testing")]
pub mod testing;
mod timers;
mod tokens;
mod tx;
mod webhooks;

pub use accounts::{
    ACCOUNT_ENGAGEMENT_END, AccountListing, AccountLookup, AccountRecord, MemberRecord,
    StoredAccountTransition, StoredLink,
};
pub use analytics::OwnersRead;
pub use backend::Backend;
pub use db::{Store, StoreOptions, loopback_without_sslmode, postgres_tls_default, redact};
pub use erase::Erased;
pub use error::StoreError;
pub use evidence::EvidenceCursor;
pub use gauges::Gauges;
pub use learn::{
    LEARN_DONE, LEARN_FAILED, LEARN_RUNNING, LEARN_SUPERSEDED, LearnEnd, LearnJobRecord, LearnRequest,
};
pub use reads::{BatchSurvey, LeadName};
pub use records::{
    EngagementCursor, LeadRecord, LeadWrite, NewEngagement, NewOutboxEvent, NewPolicy, OutboxRecord,
    PolicyRecord, StoredEngagement, StoredLevelChange, StoredResult, StoredTimer, StoredTransition, Subject,
};
pub use relay::{Lease, RelayRecord};
pub use rescore::{RESCORE_DONE, RESCORE_FAILED, RESCORE_RUNNING, RESCORE_SUPERSEDED, RescoreJobRecord};
pub use search::{Found, KeyRange, LeadSearch, ScoreColumn, SearchCursor, SearchOrder};
pub use stream::{Claim, ConsumerRecord, OUTBOX_CHANNEL, OutboxBounds, RETENTION};
pub use timers::DueTimer;
pub use tokens::{TokenRecord, WorkspaceRecord};
pub use tx::{
    AnonymousRecord, AssignmentRecord, LeadLookup, MAX_MERGE_HOPS, MergeRecord, OwnerRecord, RoutingPool, Tx,
    UNIDENTIFIED,
};
pub use webhooks::{
    DELIVERY_DELIVERED, DELIVERY_PARKED, DELIVERY_PENDING, DELIVERY_RETRYING, DELIVERY_SKIPPED,
    DeliveryRecord, RELAY_PREFIX as WEBHOOK_RELAY_PREFIX, WebhookRecord, relay_name as webhook_relay_name,
};
