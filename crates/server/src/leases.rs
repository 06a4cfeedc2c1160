//! The workers of the relay rows a replica holds (the JetStream relay's,
//! one per workspace, and each webhook endpoint's): one worker per row and
//! epoch — the row's creation instant, so a row deleted and made again is
//! another — started when this replica takes the row's lease, cancelled
//! when it no longer holds it, and started again at the next renewal when
//! it ended on its own (a failure, or a refused cursor write).

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::time::Duration;

use leadflow_engine::RelayRecord;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

/// How long a lease lasts unrenewed: a dead holder's rows are taken over
/// within it (and one renewal).
pub const LEASE: Duration = Duration::from_secs(6);
/// How often a replica renews its leases (and takes free rows).
pub(crate) const RENEW: Duration = Duration::from_secs(2);

/// A row: (workspace, name).
type Row = (String, String);

pub(crate) struct Held {
    /// What the workers do, for the logs ("relay", "webhook").
    what: &'static str,
    /// Each row worked here: its epoch and what tells its worker the
    /// lease was lost.
    running: HashMap<Row, (i64, CancellationToken)>,
    workers: JoinSet<()>,
    /// The row of every worker not yet ended, told to stop or not.
    tasks: HashMap<tokio::task::Id, Row>,
}

impl Held {
    pub(crate) fn new(what: &'static str) -> Self {
        Self {
            what,
            running: HashMap::new(),
            workers: JoinSet::new(),
            tasks: HashMap::new(),
        }
    }

    /// Forgets the workers that ended, so that the rows still held get new
    /// ones at the next renewal.
    fn reap(&mut self) {
        while let Some(done) = self.workers.try_join_next_with_id() {
            let id = match &done {
                Ok((id, ())) => *id,
                Err(e) => {
                    tracing::error!(error = %e, "a {} worker failed; it starts again", self.what);
                    e.id()
                }
            };
            if let Some(row) = self.tasks.remove(&id) {
                // Its row gets a worker again at the next renewal, if held.
                self.running.remove(&row);
            }
        }
    }

    /// After a renewal that left this replica holding `held`: cancels the
    /// workers of rows it no longer holds (or holds in another epoch) and
    /// starts `start(row, lost)` for each row held without a worker.
    pub(crate) fn renewed<F>(
        &mut self,
        held: Vec<RelayRecord>,
        mut start: impl FnMut(RelayRecord, CancellationToken) -> F,
    ) where
        F: Future<Output = ()> + Send + 'static,
    {
        self.reap();
        let here: HashMap<Row, i64> = held
            .iter()
            .map(|r| ((r.workspace.clone(), r.name.clone()), r.created_at.as_micros()))
            .collect();
        self.running.retain(|row, (epoch, lost)| {
            let keep = here.get(row) == Some(epoch);
            if !keep {
                lost.cancel();
            }
            keep
        });
        // One worker a row: a worker told to stop is waited for first.
        let alive: HashSet<Row> = self.tasks.values().cloned().collect();
        for record in held {
            let row = (record.workspace.clone(), record.name.clone());
            if self.running.contains_key(&row) || alive.contains(&row) {
                continue;
            }
            let epoch = record.created_at.as_micros();
            let lost = CancellationToken::new();
            self.running.insert(row.clone(), (epoch, lost.clone()));
            let task = self.workers.spawn(start(record, lost));
            self.tasks.insert(task.id(), row);
        }
    }

    /// Waits for every worker to end (each gives its lease up as it stops).
    pub(crate) async fn join(mut self) {
        while self.workers.join_next().await.is_some() {}
    }
}

/// Sleeps `d`: false if `stopping` came first.
pub(crate) async fn pause(d: Duration, stopping: &CancellationToken) -> bool {
    tokio::select! {
        () = tokio::time::sleep(d) => true,
        () = stopping.cancelled() => false,
    }
}
