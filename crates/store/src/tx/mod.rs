//! A write transaction: everything one command (or one batch) writes.
//!
//! This file is the unit of work: beginning, held-back writes, flushing and
//! committing. The statements on each table are in the file of its name.

mod accounts;
mod anonymous;
mod checkpoints;
mod engagements;
mod idempotency;
mod leads;
mod level_changes;
mod merges;
mod outbox;
mod owners;
mod policies;
mod routing;
mod timers;
mod transitions;
mod workspaces;

use std::sync::{Mutex, PoisonError};

use indexmap::IndexMap;
use sea_orm::DatabaseTransaction;

pub use self::anonymous::{AnonymousRecord, UNIDENTIFIED};
pub use self::leads::LeadLookup;
pub use self::merges::{MAX_MERGE_HOPS, MergeRecord};
pub use self::owners::OwnerRecord;
pub use self::routing::{AssignmentRecord, RoutingPool};
use self::timers::LeadTimers;
use crate::backend::{Backend, transaction_span};
use crate::entity::{lead, level_change, transition};
use crate::error::StoreError;
use crate::records::NewOutboxEvent;

/// PostgreSQL takes at most 65,535 bind parameters in one statement.
const INSERT_CHUNK: usize = 1_000;

/// A write transaction. Dropped without [`Tx::commit`], it rolls back.
#[derive(Debug)]
pub struct Tx {
    txn: DatabaseTransaction,
    backend: Backend,
    /// Outbox events, appended at commit (see [`Tx::append_outbox`]).
    outbox: Mutex<Vec<(String, NewOutboxEvent)>>,
    /// Writes held back until the next statement (see [`Tx::defer_writes`]).
    pending: Mutex<Pending>,
    /// The transaction's span: it ends when the transaction does.
    span: tracing::Span,
}

/// Rows written together, a statement a table, before anything else runs.
#[derive(Debug, Default)]
struct Pending {
    on: bool,
    /// The latest state of each lead updated, by id.
    leads: IndexMap<String, lead::ActiveModel>,
    transitions: Vec<transition::ActiveModel>,
    level_changes: Vec<level_change::ActiveModel>,
    /// Each lead's timer changes by (workspace, lead), folded into their net effect.
    timers: IndexMap<(String, String), LeadTimers>,
}

impl Pending {
    fn is_empty(&self) -> bool {
        self.leads.is_empty()
            && self.transitions.is_empty()
            && self.level_changes.is_empty()
            && self.timers.is_empty()
    }
}

impl Tx {
    pub(crate) fn new(txn: DatabaseTransaction, backend: Backend, span: tracing::Span) -> Self {
        Self {
            txn,
            backend,
            outbox: Mutex::new(Vec::new()),
            pending: Mutex::new(Pending::default()),
            span,
        }
    }

    /// Gives a transaction begun outside any trace the span it would have
    /// had under the current one (a job found inside it starts the trace).
    pub fn trace_here(&mut self) {
        if self.span.is_none() {
            self.span = transaction_span(self.backend);
        }
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// From now on, lead updates, transitions and timer changes are held
    /// back and written together — each lead once with its latest state,
    /// transitions in multi-row inserts, timers by their net effect — just
    /// before the next other statement or the commit. Every
    /// read in this transaction still sees them. A batch of many
    /// engagements costs a few statements instead of a few per engagement.
    pub fn defer_writes(&self) {
        self.pending().on = true;
    }

    fn pending(&self) -> std::sync::MutexGuard<'_, Pending> {
        self.pending.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn deferring(&self) -> bool {
        self.pending().on
    }

    /// The connection, once every held-back write is in.
    pub(crate) async fn db(&self) -> Result<&DatabaseTransaction, StoreError> {
        self.flush().await?;
        Ok(&self.txn)
    }

    /// Writes what [`Tx::defer_writes`] held back.
    pub async fn flush(&self) -> Result<(), StoreError> {
        let pending = {
            let mut p = self.pending();
            if p.is_empty() {
                return Ok(());
            }
            Pending {
                on: p.on,
                leads: std::mem::take(&mut p.leads),
                transitions: std::mem::take(&mut p.transitions),
                level_changes: std::mem::take(&mut p.level_changes),
                timers: std::mem::take(&mut p.timers),
            }
        };
        self.write_deferred_leads(pending.leads.into_values().collect())
            .await?;
        self.write_deferred_transitions(&pending.transitions).await?;
        self.write_deferred_level_changes(&pending.level_changes).await?;
        self.write_deferred_timers(pending.timers).await
    }

    /// Appends the buffered outbox events, then commits.
    pub async fn commit(self) -> Result<(), StoreError> {
        self.flush().await?;
        self.write_buffered_outbox().await?;
        Ok(self.txn.commit().await?)
    }
}
