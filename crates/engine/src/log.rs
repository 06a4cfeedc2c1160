//! A lead's engagement log for the decisions that replay it: read once,
//! kept, and replayed off the runtime's worker.

use leadflow_domain::{Command, Context, Decision, DomainError, Engagement, Policy};
use leadflow_store::{LeadRecord, Tx};

use crate::error::EngineError;

/// A lead's engagement log as it stood before a command. It is read from
/// the transaction the first time a decision needs it — without the
/// engagements the transaction holds that are not part of it yet (the
/// command's own, inserted first; a batch's later items) — and then kept,
/// so several decisions of one command (or one batch) read it once.
#[derive(Debug, Default)]
pub(crate) struct Log {
    kept: Option<Vec<Engagement>>,
    /// Event ids in the table that the log leaves out.
    unapplied: Vec<String>,
}

impl Log {
    /// A log read when needed, leaving out `unapplied`.
    pub(crate) fn leaving_out(unapplied: Vec<String>) -> Self {
        Self {
            kept: None,
            unapplied,
        }
    }

    /// A log already read (by an earlier command of a batch), or read when
    /// needed, leaving out `unapplied`.
    pub(crate) fn from_kept(kept: Option<Vec<Engagement>>, unapplied: Vec<String>) -> Self {
        Self { kept, unapplied }
    }

    pub(crate) async fn get(
        &mut self,
        tx: &Tx,
        ws: &str,
        lead_id: &str,
    ) -> Result<&[Engagement], EngineError> {
        if self.kept.is_none() {
            let mut log = tx.engagements_of(ws, lead_id).await?;
            if !self.unapplied.is_empty() {
                let unapplied: std::collections::HashSet<&str> =
                    self.unapplied.iter().map(String::as_str).collect();
                log.retain(|e| !unapplied.contains(e.event_id.as_str()));
            }
            self.kept = Some(log);
        }
        Ok(self.kept.as_deref().unwrap_or_default())
    }

    /// The command's engagement was applied: it is part of the log now.
    pub(crate) fn applied(&mut self, e: &Engagement) {
        self.unapplied.retain(|id| *id != e.event_id);
        if let Some(log) = &mut self.kept {
            let at = log.partition_point(|x| {
                (x.occurred_at, x.event_id.as_str()) < (e.occurred_at, e.event_id.as_str())
            });
            log.insert(at, e.clone());
        }
    }

    /// The log, if it was read.
    pub(crate) fn into_kept(self) -> Option<Vec<Engagement>> {
        self.kept
    }
}

/// Runs a decision that replays a lead's log: CPU work that grows with the
/// log (milliseconds for ten thousand engagements). On a multi-threaded
/// runtime the worker hands its other tasks to another thread meanwhile, so
/// the calls it serves do not wait behind the replay.
pub(crate) fn replaying<T>(decision: impl FnOnce() -> T) -> T {
    match tokio::runtime::Handle::try_current().map(|h| h.runtime_flavor()) {
        Ok(tokio::runtime::RuntimeFlavor::MultiThread) => tokio::task::block_in_place(decision),
        _ => decision(),
    }
}

/// Decides, loading the lead's log only if the domain asks for it.
pub(crate) async fn decide(
    tx: &Tx,
    ws: &str,
    policy: &Policy,
    record: &LeadRecord,
    command: Command,
    ctx: &Context,
    log: &mut Log,
) -> Result<Decision, EngineError> {
    match leadflow_domain::decide(policy, &record.lead, command.clone(), ctx, None) {
        Err(DomainError::HistoryRequired) => {
            let history = log.get(tx, ws, &record.id).await?;
            Ok(replaying(|| {
                leadflow_domain::decide(policy, &record.lead, command, ctx, Some(history))
            })?)
        }
        other => Ok(other?),
    }
}
