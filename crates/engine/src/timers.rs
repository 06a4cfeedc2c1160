//! The timer worker's use case: fire what is due, each timer exactly once.
//!
//! A timer is fired in one transaction with the lead locked first, its row
//! taken (locked, skipped if another worker holds it, and deleted), the
//! domain's decision and its outbox events: across replicas on one
//! PostgreSQL, the row goes exactly once.

use leadflow_domain::{Command, Timestamp};
use leadflow_store::{ACCOUNT_ENGAGEMENT_END, DueTimer};

use tracing::Instrument as _;

use crate::{Engine, trace};

/// How long a timer that failed to fire waits before the next try.
const RETRY_FAILED_TIMER: leadflow_domain::Span = leadflow_domain::Span::from_secs(300);
use crate::error::EngineError;
use crate::leads::retrying;
use crate::model::{LeadKey, Request};

impl Engine {
    /// Fires up to `limit` timers due now; returns how many fired.
    pub async fn fire_due_timers(&self, limit: u64) -> Result<usize, EngineError> {
        let now = self.now();
        let due = self.store.due_timers(now, limit).await?;
        let mut fired = 0;
        for timer in &due {
            // A trace of its own, linked to the call that scheduled it.
            let span = trace::linked(
                tracing::info_span!(
                    parent: None,
                    "timer.fire",
                    workspace = %timer.workspace,
                    lead_id = %timer.lead_id,
                    timer = %timer.key,
                    trace_id = tracing::field::Empty,
                    span_id = tracing::field::Empty,
                ),
                timer.traceparent.as_deref(),
            );
            let traceparent = trace::traceparent(&span);
            let fired_here = async {
                if timer.key == ACCOUNT_ENGAGEMENT_END {
                    // The timer of an account, under its id.
                    retrying!(self.end_account_engagements(&timer.workspace, &timer.lead_id, now))
                } else {
                    retrying!(self.try_fire(timer, now, traceparent.as_deref()))
                }
            }
            .instrument(span)
            .await;
            match fired_here {
                Ok(true) => fired += 1,
                Ok(false) => {}
                Err(e) => {
                    // Out of the way of the others: it is tried again later.
                    let later = now.saturating_add(RETRY_FAILED_TIMER);
                    tracing::warn!(
                        workspace = %timer.workspace, lead_id = %timer.lead_id, timer = %timer.key, error = %e,
                        retry_at = %later, "a due timer could not fire"
                    );
                    if let Err(e) = self
                        .store
                        .postpone_timer(&timer.workspace, &timer.lead_id, &timer.key, later)
                        .await
                    {
                        tracing::warn!(error = %e, "could not postpone the failed timer");
                    }
                }
            }
        }
        Ok(fired)
    }

    async fn try_fire(
        &self,
        due: &DueTimer,
        now: Timestamp,
        traceparent: Option<&str>,
    ) -> Result<bool, EngineError> {
        let ws = due.workspace.as_str();
        let tx = self.store.begin().await?;
        // The lead first, then the policy read with it: what the lead's last
        // command committed under.
        let locked = match self.lock(&tx, ws, &LeadKey::Id(due.lead_id.clone())).await {
            Ok(l) => l,
            Err(EngineError::NotFound { .. } | EngineError::MergedInto { .. }) => {
                // The lead is gone (or merged into another): so is its timer.
                tx.take_timer(ws, &due.lead_id, &due.key).await?;
                tx.commit().await?;
                return Ok(false);
            }
            Err(e) => return Err(e),
        };
        let (record, policy_version, policy) = (locked.record, locked.policy_version, locked.policy);
        // Gone (fired elsewhere, cancelled) or held by another worker.
        let Some(stored) = tx.take_timer(ws, &due.lead_id, &due.key).await? else {
            return Ok(false);
        };
        if stored.timer.due_at > now {
            return Ok(false); // moved later since it was listed; rolling back keeps it
        }
        let req = Request {
            traceparent: traceparent.map(str::to_owned),
            ..Request::new(ws)
        };
        let target = self.target(&req, &policy, policy_version, now);
        let until = stored.timer.due_at;
        let applied = self
            .apply(
                &tx,
                &target,
                record,
                Command::TimerFired(stored.timer),
                None,
                until,
                &mut crate::log::Log::default(),
            )
            .await?;
        tx.commit().await?;
        if applied.events > 0 {
            self.announce(ws);
        }
        Ok(true)
    }
}
