//! leadflow-engine: the use cases of leadflow.
//!
//! For every command it loads the lead, lets the domain decide, and persists
//! the new state, the history, the engagement, the durable timers and the
//! outbox events in one database transaction — or nothing. It owns
//! idempotency (request ids, event ids), optimistic concurrency, the policy
//! cache and the clock. It never imports tonic or the generated API: the
//! server translates to and from it.
//!
//! # Layout
//!
//! - [`Engine`]: the entry point; `leads.rs` (commands on leads), `batch.rs`
//!   (many engagements in one transaction), `reads.rs` (get, list, history,
//!   explain), `policies.rs` (versions and activation).
//! - `persist.rs`: a decision into the transaction, outbox payloads included.
//! - [`Clock`]: the engine's only source of "now".

mod account_calls;
mod accounts;
mod admin;
mod analytics;
mod assign;
mod batch;
mod clock;
mod erase;
mod error;
mod fingerprint;
mod group;
mod idempotency;
mod identity;
mod leads;
mod learn;
mod log;
mod merge;
mod model;
mod owners;
mod persist;
mod policies;
mod reads;
mod relay;
mod rescore;
mod search;
mod stream;
mod tasks;
mod timers;
pub mod trace;
mod views;
pub mod webhooks;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

pub use account_calls::{
    AccountInput, AccountKey, AccountOutcome, AccountPage, AccountView, LinkOutcome, MAX_EXPLAINED_MEMBERS,
};
pub use accounts::AccountPayload;
pub use admin::NewToken;
pub use analytics::{CalibrationQuery, CalibrationResult};
pub use assign::{
    Assigned, AssignmentNote, MAX_ASSIGN_REASON_CHARS, MAX_SIMULATED_ASSIGNMENTS, OwnerLoad,
    RoutingSimulation, SimulatedAssignment,
};
pub use clock::{Clock, ManualClock, SystemClock};
pub use erase::Erasure;
pub use error::EngineError;
pub use fingerprint::{fingerprint, hex};
pub use identity::{Identified, MAX_ANONYMOUS_EVENTS};
use leadflow_domain::Policy;
use leadflow_store::Store;
pub use leadflow_store::{
    AccountListing, AssignmentRecord, DELIVERY_DELIVERED, DELIVERY_PARKED, DELIVERY_PENDING,
    DELIVERY_RETRYING, DELIVERY_SKIPPED, DeliveryRecord, RelayRecord, ScoreColumn, SearchCursor,
    StoredAccountTransition, WEBHOOK_RELAY_PREFIX, WebhookRecord,
};
pub use leads::{CreateLead, MAX_BATCH};
pub use learn::{LearnJob, LearnPhase, LearnQuery, LearnStatus};
pub use merge::{Candidate, MAX_CANDIDATES, Merged, Unmerged};
pub use model::{
    BatchItem, HistoryCursor, HistoryEntry, HistoryPage, LeadKey, LeadPage, Method, OutboxPayload, Request,
};
pub use owners::{OwnerPage, OwnerView};
pub use reads::LeadDetail;
pub use relay::RelayBatch;
pub use rescore::{
    AccountSimulation, Draft, MAX_SIMULATED_ACCOUNTS, SimulatedAccount, SimulatedLead, Simulation,
    SimulationCounts,
};
pub use search::{
    AttributeFilter, AttributeMatch, LeadFilter, LeadOrder, LeadQuery, MAX_SCANNED, ScoreRange, ScoreRef,
    SearchPage,
};
pub use stream::{CHECKPOINT_EVERY, Filter, Payload, Start, StreamEvent, StreamItem, Subscription};
pub use tasks::Tasks;
pub use views::{
    Consumer, ConsumerKind, EngagementView, Gauges, LeadView, LevelChangeView, Outcome, PolicyActivation,
    PolicyVersion, RescoreJob, RescoreStatus, Token, TransitionView, Workspace,
};
pub use webhooks::WebhookPayload;

/// The workspace every row lives in until tokens bind callers to others.
pub const DEFAULT_WORKSPACE: &str = "default";

/// How many times a command is run again after a conflict between
/// concurrent transactions (deadlock, serialisation failure).
const RETRIES: usize = 8;

/// Groups of single engagements committing at once on PostgreSQL.
const GROUP_RUNNERS_POSTGRES: usize = 2;

/// Parsed policies by (workspace, version): versions are immutable.
type PolicyCache = Arc<Mutex<HashMap<(String, i64), Arc<Policy>>>>;

/// The use cases, over one store.
#[derive(Clone, Debug)]
pub struct Engine {
    store: Store,
    clock: Arc<dyn Clock>,
    policies: PolicyCache,
    hub: Arc<stream::Hub>,
    /// Failed batches in a row, per re-score job (workspace, id).
    rescore_failures: Arc<Mutex<HashMap<(String, i64), u32>>>,
    /// Single engagements waiting to be committed together.
    groups: Arc<group::Groups>,
    counters: Arc<Counters>,
    /// Every background task it or its server started.
    tasks: Arc<tasks::Tasks>,
}

/// What this engine has done since it started, for metrics.
#[derive(Debug, Default)]
pub struct Counters {
    /// Engagements recorded (not counting repeats of an event id).
    pub engagements_recorded: std::sync::atomic::AtomicU64,
}

impl Engine {
    pub fn new(store: Store, clock: Arc<dyn Clock>) -> Self {
        let runners = match store.backend() {
            leadflow_store::Backend::Sqlite => 1,
            leadflow_store::Backend::Postgres => GROUP_RUNNERS_POSTGRES,
        };
        Self {
            store,
            clock,
            policies: Arc::default(),
            hub: Arc::default(),
            rescore_failures: Arc::default(),
            groups: Arc::new(group::Groups::new(runners)),
            counters: Arc::default(),
            tasks: Arc::default(),
        }
    }

    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    /// The store underneath, for tests that look at rows directly; the
    /// service itself goes through the use cases.
    #[cfg(any(test, feature = "testing"))]
    pub fn store(&self) -> &Store {
        &self.store
    }

    pub fn now(&self) -> leadflow_domain::Timestamp {
        self.clock.now()
    }

    /// Runs `task` in the background, owned by the engine: a shutdown waits
    /// for it (within its deadline) before aborting it. For work that was
    /// asked for and must finish.
    pub fn spawn(&self, task: impl std::future::Future<Output = ()> + Send + 'static) {
        self.tasks.spawn(task);
    }

    /// Runs `task` in the background until it ends or a shutdown is asked
    /// for (then it is dropped at its next wait).
    pub fn spawn_until_stopped(&self, task: impl std::future::Future<Output = ()> + Send + 'static) {
        self.tasks.spawn_until_stopped(task);
    }

    /// Cancelled when a shutdown is asked for: loops finish their round,
    /// then stop.
    pub fn stopping(&self) -> tokio_util::sync::CancellationToken {
        self.tasks.stopping()
    }

    /// Stops the background work: asks every task to stop (subscriptions
    /// end with UNAVAILABLE, workers finish their round), waits for them
    /// within `deadline`, and aborts the rest.
    pub async fn shutdown(&self, deadline: std::time::Duration) {
        self.tasks.shutdown(deadline).await;
    }
}
