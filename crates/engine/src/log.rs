//! A lead's engagement log for the decisions that replay it: read once,
//! kept, and replayed off the runtime's worker — or, for a late engagement,
//! replayed from the lead's newest score checkpoint before it.

use leadflow_domain::score::Checkpoint;
use leadflow_domain::{Command, Context, Decision, DomainError, Engagement, EventKey};
use leadflow_store::{LeadRecord, Tx};

use crate::error::EngineError;
use crate::persist::Target;

/// A lead keeps a checkpoint of its score states every this many
/// engagements, and after each late one: a late engagement replays at most
/// about this many of the engagements before it (plus those after it).
pub(crate) const CHECKPOINT_EVERY: u64 = 64;

/// After a late engagement the lead keeps at most this many of the
/// checkpoints the replay passed (the newest), besides its new end.
const CHECKPOINTS_KEPT_BY_A_REPLAY: usize = 3;

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
    /// The checkpoint the command's decision started from, and the events
    /// after it (without the command's own).
    from_checkpoint: Option<(Checkpoint, Vec<Engagement>)>,
}

impl Log {
    /// A log read when needed, leaving out `unapplied`.
    pub(crate) fn leaving_out(unapplied: Vec<String>) -> Self {
        Self {
            kept: None,
            unapplied,
            from_checkpoint: None,
        }
    }

    /// A log already read (by an earlier command of a batch), or read when
    /// needed, leaving out `unapplied`.
    pub(crate) fn from_kept(kept: Option<Vec<Engagement>>, unapplied: Vec<String>) -> Self {
        Self {
            kept,
            unapplied,
            from_checkpoint: None,
        }
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

    /// The lead's newest checkpoint under `policy_version` before `key`,
    /// and the engagements that sort after it as the log stood before the
    /// command: from the kept log, or read with the checkpoint.
    async fn checkpoint_before(
        &self,
        tx: &Tx,
        ws: &str,
        lead_id: &str,
        policy_version: i64,
        key: &EventKey,
    ) -> Result<Option<(Checkpoint, Vec<Engagement>)>, EngineError> {
        if let Some(kept) = &self.kept {
            let Some(checkpoint) = tx.checkpoint_before(ws, lead_id, policy_version, key).await? else {
                return Ok(None);
            };
            let after = kept
                .iter()
                .filter(|e| checkpoint.key().is_none_or(|k| e.is_after(k)))
                .cloned()
                .collect();
            return Ok(Some((checkpoint, after)));
        }
        let Some((checkpoint, mut after)) = tx.checkpoint_and_after(ws, lead_id, policy_version, key).await?
        else {
            return Ok(None);
        };
        after.retain(|e| !self.unapplied.contains(&e.event_id));
        Ok(Some((checkpoint, after)))
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

/// Decides, loading the lead's log only if the domain asks for it: for a
/// late engagement, first the part after the lead's newest checkpoint
/// before it; the whole log when that is not enough.
pub(crate) async fn decide(
    tx: &Tx,
    target: &Target<'_>,
    record: &LeadRecord,
    command: Command,
    ctx: &Context,
    log: &mut Log,
) -> Result<Decision, EngineError> {
    let (ws, policy) = (target.ws, target.policy);
    match leadflow_domain::decide(policy, &record.lead, command.clone(), ctx, None) {
        Err(DomainError::HistoryRequired) => {
            if let Command::RecordEngagement(e) = &command
                && let Some((checkpoint, after)) = log
                    .checkpoint_before(tx, ws, &record.id, target.policy_version, &e.key())
                    .await?
            {
                let decided = replaying(|| {
                    leadflow_domain::decide_since(
                        policy,
                        &record.lead,
                        command.clone(),
                        ctx,
                        &checkpoint,
                        &after,
                    )
                });
                log.from_checkpoint = Some((checkpoint, after));
                match decided {
                    Err(DomainError::HistoryRequired) => {}
                    other => return Ok(other?),
                }
            }
            let history = log.get(tx, ws, &record.id).await?;
            Ok(replaying(|| {
                leadflow_domain::decide(policy, &record.lead, command, ctx, Some(history))
            })?)
        }
        other => Ok(other?),
    }
}

/// Keeps the lead's score checkpoints true after it recorded `own`. A late
/// engagement drops those at or after it, and carries the checkpoint its
/// decision started from (or the start) on over the log with it in its
/// place, keeping the newest few checkpoints passed every
/// [`CHECKPOINT_EVERY`] engagements and one at the end; an appended one
/// leaves one every [`CHECKPOINT_EVERY`]. Those of other policy versions
/// go.
pub(crate) async fn keep_checkpoints(
    tx: &Tx,
    target: &Target<'_>,
    before: &LeadRecord,
    decided: &Decision,
    own: &Engagement,
    log: &mut Log,
) -> Result<(), EngineError> {
    let (ws, id, version) = (target.ws, before.id.as_str(), target.policy_version);
    let from_checkpoint = log.from_checkpoint.take();
    let now = Checkpoint {
        lifetime: decided.lead.lifetime.clone(),
        qualifying: decided.lead.qualifying.clone(),
    };
    if before.lead.lifetime.can_append(own) {
        if now.lifetime.applied > 0 && now.lifetime.applied.is_multiple_of(CHECKPOINT_EVERY) {
            tx.replace_checkpoints(ws, id, version, None, &[now]).await?;
        }
        return Ok(());
    }
    let since = decided.lead.window_start;
    let (base, mut events) = match from_checkpoint {
        Some((checkpoint, after)) if checkpoint.key().is_none_or(|k| own.is_after(k)) => (checkpoint, after),
        _ => (
            Checkpoint::start(target.policy, since),
            log.get(tx, ws, id).await?.to_vec(),
        ),
    };
    events.push(own.clone());
    // Only a multiple of CHECKPOINT_EVERY strictly between the base and
    // the end is kept besides the end: without one, nothing to replay.
    let from = base.lifetime.applied;
    let first_multiple = (from / CHECKPOINT_EVERY + 1) * CHECKPOINT_EVERY;
    let mut passed = if first_multiple < now.lifetime.applied {
        replaying(|| base.carried(target.policy, &events, since, CHECKPOINT_EVERY)).unwrap_or_default()
    } else {
        Vec::new()
    };
    // The decision's own states end it: they are what the lead keeps.
    if passed.last().and_then(Checkpoint::key) == now.key() {
        passed.pop();
    }
    passed.drain(..passed.len().saturating_sub(CHECKPOINTS_KEPT_BY_A_REPLAY));
    passed.push(now);
    tx.replace_checkpoints(ws, id, version, Some(&own.key()), &passed)
        .await?;
    Ok(())
}
