//! Identity: engagements recorded under an anonymous id before any lead
//! exists for it, and the identification that joins them to a lead.
//!
//! An anonymous event is checked like any engagement, de-duplicated by its
//! event id (one namespace with the leads' engagements) and kept with an
//! empty lead; it scores nothing and moves nothing. `IdentifyLead` hands an
//! id's kept events to the lead in the lead's transaction: they take their
//! places in its log at their own instants, and what they cause is decided
//! at the identification's instant (cause IDENTIFY). From then on the id
//! names the lead: its engagements go to the lead, and every lead call
//! given it answers for the lead.

use leadflow_domain::lifecycle::check_engagement;
use leadflow_domain::{Command, Context, Engagement, Timestamp};
use serde::{Deserialize, Serialize};

use crate::Engine;
use crate::error::EngineError;
use crate::idempotency::{replay, save};
use crate::leads::{Applied, Locked, engagement_fingerprint, retrying};
use crate::log::Log;
use crate::model::{LeadKey, Method, Recorded, Request};
use crate::persist::Target;
use crate::views::Outcome;
use leadflow_store::{LeadRecord, Tx};

/// The most events kept for one anonymous id while it is not identified:
/// past it the oldest are dropped (their event ids stay known).
pub const MAX_ANONYMOUS_EVENTS: u64 = 1_000;

/// NOT_FOUND for an anonymous id no lead was identified as (yet).
pub(crate) fn not_identified(id: &str) -> EngineError {
    EngineError::NotFound {
        what: "lead",
        key: format!("anonymous_id {id} (not identified)"),
    }
}

/// What an engagement's fingerprint is made over when the caller named an
/// anonymous id: that id, whichever lead it leads to, so that a repeat of
/// the same call is known as one after an identification too.
pub(crate) fn subject(anonymous_id: &str) -> String {
    format!("anonymous:{anonymous_id}")
}

/// What `IdentifyLead` did.
#[derive(Clone, Debug, PartialEq)]
pub struct Identified {
    pub outcome: Outcome,
    /// The anonymous events joined to the lead.
    pub joined: u64,
    /// The id was identified as this lead already: nothing changed.
    pub already: bool,
}

/// [`Identified`] as kept for a retry with the same request id.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct Kept {
    recorded: Recorded,
    joined: u64,
    already: bool,
}

impl From<Kept> for Identified {
    fn from(k: Kept) -> Self {
        Self {
            outcome: k.recorded.into(),
            joined: k.joined,
            already: k.already,
        }
    }
}

impl Engine {
    /// Records an engagement under an anonymous id: the identified lead's
    /// engagement if the id was identified, else anonymous activity
    /// (`Outcome::lead` is then `None`).
    #[tracing::instrument(name = "engine.record_anonymous", skip_all)]
    pub async fn record_anonymous(
        &self,
        req: &Request,
        anonymous_id: &str,
        engagement: &Engagement,
        occurred_at_given: bool,
    ) -> Result<Outcome, EngineError> {
        retrying!(self.try_record_anonymous(req, anonymous_id, engagement, occurred_at_given))
    }

    async fn try_record_anonymous(
        &self,
        req: &Request,
        anonymous_id: &str,
        engagement: &Engagement,
        occurred_at_given: bool,
    ) -> Result<Outcome, EngineError> {
        let ws = req.workspace.as_str();
        let fingerprint = engagement_fingerprint(&subject(anonymous_id), engagement, occurred_at_given);
        let tx = self.store.begin().await?;
        let now = self.now();
        let seen = tx.touch_anonymous(ws, anonymous_id, now).await?;
        if let Some(lead_id) = seen.lead_id.clone() {
            // Identified: the lead's engagement. The lead is locked first
            // on every other path, so this transaction ends before it is.
            drop(tx);
            return self
                .record_identified(
                    req,
                    &lead_id,
                    anonymous_id,
                    engagement,
                    &fingerprint,
                    occurred_at_given,
                )
                .await;
        }
        let (_, policy) = self.active_policy(&tx, ws).await?;
        check_engagement(&policy, engagement, &Context { now })?;
        let new = tx
            .insert_anonymous_engagement(ws, &seen, engagement, &fingerprint, now, MAX_ANONYMOUS_EVENTS)
            .await?;
        if !new {
            let seen = tx.engagement(ws, &engagement.event_id).await?.ok_or_else(|| {
                EngineError::Conflict(format!("event {} was removed meanwhile", engagement.event_id))
            })?;
            if seen.fingerprint != fingerprint {
                return Err(reused(engagement, &seen));
            }
            if !seen.lead_id.is_empty() {
                // Recorded for a lead meanwhile (this id's, identified since).
                drop(tx);
                return self
                    .record_identified(
                        req,
                        &seen.lead_id,
                        anonymous_id,
                        engagement,
                        &fingerprint,
                        occurred_at_given,
                    )
                    .await;
            }
            return Ok(Outcome::anonymous(true));
        }
        tx.commit().await?;
        Ok(Outcome::anonymous(false))
    }

    /// An engagement named by an identified anonymous id: the lead's, with
    /// the anonymous subject's fingerprint.
    async fn record_identified(
        &self,
        req: &Request,
        lead_id: &str,
        anonymous_id: &str,
        engagement: &Engagement,
        fingerprint: &str,
        occurred_at_given: bool,
    ) -> Result<Outcome, EngineError> {
        let ws = req.workspace.as_str();
        let tx = self.store.begin().await?;
        let key = LeadKey::Id(lead_id.to_owned());
        let locked = match self.lock(&tx, ws, &key).await {
            // Merged since the id was read: the id names the survivor now.
            Err(EngineError::MergedInto { .. }) => {
                return Err(EngineError::Conflict(format!(
                    "lead {lead_id} was merged meanwhile"
                )));
            }
            other => other?,
        };
        // Given back by an unmerge (or moved by a merge) since it was read.
        if tx.anonymous_lead(ws, anonymous_id).await?.as_deref() != Some(lead_id) {
            return Err(EngineError::Conflict(format!(
                "anonymous id {anonymous_id} moved to another lead meanwhile"
            )));
        }
        let new = tx
            .insert_engagement_if_new(ws, lead_id, engagement, fingerprint, self.now())
            .await?;
        if new {
            // Its anonymous id goes with it if the id is given back (an unmerge).
            tx.mark_anonymous(ws, &engagement.event_id, anonymous_id).await?;
        }
        let known = if new {
            crate::leads::Known::Inserted { fingerprint }
        } else {
            crate::leads::Known::Recorded { fingerprint }
        };
        let applied = self
            .engagement_in(
                &tx,
                req,
                &key,
                Some(locked),
                known,
                engagement,
                occurred_at_given,
                &mut Log::leaving_out(vec![engagement.event_id.clone()]),
            )
            .await?;
        if !applied.outcome.duplicate {
            tx.commit().await?;
        }
        if applied.events > 0 {
            self.announce(ws);
        }
        Ok(applied.outcome.into())
    }

    /// Joins an anonymous id's activity to a lead at `occurred_at` (default
    /// now). Idempotent: the same id and lead again change nothing; an id
    /// identified as another lead is ALREADY_EXISTS naming it.
    #[tracing::instrument(name = "engine.identify_lead", skip_all)]
    pub async fn identify_lead(
        &self,
        req: &Request,
        key: &LeadKey,
        anonymous_id: &str,
        occurred_at: Option<Timestamp>,
    ) -> Result<Identified, EngineError> {
        retrying!(self.try_identify(req, key, anonymous_id, occurred_at)).map(Identified::from)
    }

    async fn try_identify(
        &self,
        req: &Request,
        key: &LeadKey,
        anonymous_id: &str,
        occurred_at: Option<Timestamp>,
    ) -> Result<Kept, EngineError> {
        let ws = req.workspace.as_str();
        let tx = self.store.begin().await?;
        // The lead first, then the id (as recording under the id does).
        let Locked {
            record,
            policy_version,
            policy,
            ..
        } = self.lock(&tx, ws, key).await?;
        if let Some(done) = replay::<Kept>(&tx, req, Method::IdentifyLead).await? {
            return Ok(done);
        }
        let now = self.now();
        let target = self.target(req, &policy, policy_version, now);
        let joined = self
            .identify_in(&tx, &target, record, anonymous_id, occurred_at)
            .await?;
        let kept = Kept {
            recorded: joined.applied.outcome,
            joined: joined.joined,
            already: joined.already,
        };
        save(&tx, req, Method::IdentifyLead, &kept, now).await?;
        tx.commit().await?;
        if joined.applied.events > 0 {
            self.announce(ws);
        }
        Ok(kept)
    }

    /// Joins an anonymous id's kept activity to a locked lead at
    /// `occurred_at` (default now, or the lead's last transition if later),
    /// in the caller's transaction: the id is locked after the lead.
    pub(crate) async fn identify_in(
        &self,
        tx: &Tx,
        target: &Target<'_>,
        record: LeadRecord,
        anonymous_id: &str,
        occurred_at: Option<Timestamp>,
    ) -> Result<Joined, EngineError> {
        let ws = target.ws;
        let now = target.now;
        let seen = tx.touch_anonymous(ws, anonymous_id, now).await?;
        match seen.lead_id {
            Some(lead) if lead == record.id => {
                let scored_with = self.policy_version_of(tx, ws, record.policy_version).await?;
                return Ok(Joined {
                    applied: Applied {
                        outcome: Recorded {
                            lead: crate::leads::view(&scored_with, record, now),
                            transitions: Vec::new(),
                            triggers: Vec::new(),
                            duplicate: false,
                        },
                        events: 0,
                    },
                    joined: 0,
                    already: true,
                });
            }
            Some(lead) => {
                return Err(EngineError::AlreadyExists {
                    what: "anonymous id",
                    key: anonymous_id.to_owned(),
                    id: lead,
                });
            }
            None => {}
        }
        let at = occurred_at.unwrap_or(now.max(record.lead.last_transition_at));
        let events = tx.join_anonymous(ws, anonymous_id, &record.id, at).await?;
        let joined = events.len() as u64;
        // The instant the domain decides at: timers due by it fire first.
        let at = leadflow_domain::lifecycle::identification_instant(at, &events);
        // Already in the store under the lead: the log read for the
        // decision leaves them out, the command brings them.
        let ids = events.iter().map(|e| e.event_id.clone()).collect();
        let command = Command::Identify {
            anonymous_id: anonymous_id.to_owned(),
            events,
            at: Some(at),
        };
        let applied = self
            .apply(tx, target, record, command, None, at, &mut Log::leaving_out(ids))
            .await?;
        Ok(Joined {
            applied,
            joined,
            already: false,
        })
    }
}

/// What joining an anonymous id to a lead did.
pub(crate) struct Joined {
    pub(crate) applied: Applied,
    /// The anonymous events joined.
    pub(crate) joined: u64,
    /// The id named this lead already.
    pub(crate) already: bool,
}

impl Engine {
    /// Erases the activity kept under an anonymous id no lead was
    /// identified as: how many events (0 for an id with none). An
    /// identified id's activity is its lead's: erase the lead.
    #[tracing::instrument(name = "engine.erase_anonymous", skip_all)]
    pub async fn erase_anonymous(&self, req: &Request, anonymous_id: &str) -> Result<u64, EngineError> {
        retrying!(self.try_erase_anonymous(req, anonymous_id))
    }

    async fn try_erase_anonymous(&self, req: &Request, anonymous_id: &str) -> Result<u64, EngineError> {
        let ws = req.workspace.as_str();
        let tx = self.store.begin().await?;
        if let Some(seen) = tx.lock_anonymous(ws, anonymous_id).await?
            && let Some(lead_id) = seen.lead_id
        {
            return Err(EngineError::Identified {
                anonymous_id: anonymous_id.to_owned(),
                lead_id,
            });
        }
        let erased = tx.erase_anonymous(ws, anonymous_id).await?;
        tx.commit().await?;
        Ok(erased)
    }

    /// Purges, in every workspace, the anonymous activity not identified
    /// within its policy's `[identity] anonymous_ttl` of its receipt: how
    /// many events.
    pub async fn purge_anonymous_activity(&self) -> Result<u64, EngineError> {
        let now = self.now();
        let mut purged = 0;
        for ws in self.store.workspaces().await? {
            let policy = match self.active_policy_read(&ws).await {
                Ok((_, policy)) => policy,
                Err(EngineError::NotReady(_)) => continue,
                Err(e) => return Err(e),
            };
            let cutoff = now.saturating_sub(policy.identity.anonymous_ttl);
            let tx = self.store.begin().await?;
            purged += tx.purge_anonymous(&ws, cutoff).await?;
            tx.commit().await?;
        }
        Ok(purged)
    }
}

/// EVENT_ID_REUSED: an event id recorded before with other content.
fn reused(engagement: &Engagement, seen: &leadflow_store::StoredEngagement) -> EngineError {
    let whose = if seen.lead_id.is_empty() {
        "anonymous activity".to_owned()
    } else {
        format!("lead {}", seen.lead_id)
    };
    EngineError::invalid(
        "EVENT_ID_REUSED",
        "engagement.event_id",
        format!(
            "event id {:?} was already recorded with other content ({whose}, {} at {})",
            engagement.event_id, seen.engagement.kind, seen.engagement.occurred_at
        ),
    )
}
