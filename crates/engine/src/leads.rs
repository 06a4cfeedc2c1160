//! Commands on leads: capture, engagements, profile changes, transitions.

use std::collections::BTreeMap;
use std::sync::Arc;

use leadflow_domain::lifecycle::ManualTransition;
use leadflow_domain::{Command, Context, Engagement, Policy, Stage, Timestamp};
use leadflow_store::{LeadRecord, MAX_MERGE_HOPS, Tx};

use crate::Engine;
use crate::error::EngineError;
use crate::fingerprint::fingerprint;
use crate::idempotency::{replay, save};
use crate::log::{Log, decide, keep_checkpoints, replaying};
use crate::model::{LeadKey, Method, Recorded, Request, Scored};
use crate::persist::{Before, Target, persist};
use crate::views::Outcome;

/// The most engagements one `RecordEngagements` call may carry.
pub const MAX_BATCH: usize = 500;

/// Runs a use case again while it fails on a conflict between concurrent
/// transactions; each attempt starts from scratch.
macro_rules! retrying {
    ($attempt:expr) => {{
        let mut tries = 0_u32;
        loop {
            match $attempt.await {
                Err(e) if e.retryable() && (tries as usize) < $crate::RETRIES => {
                    tries += 1;
                    tokio::time::sleep(std::time::Duration::from_millis(u64::from(tries * tries))).await;
                }
                result => break result,
            }
        }
    }};
}
pub(crate) use retrying;

/// A locked lead, and the policy to decide with.
#[derive(Clone)]
pub(crate) struct Locked {
    pub(crate) record: LeadRecord,
    pub(crate) policy_version: i64,
    pub(crate) policy: Arc<Policy>,
    /// Named by the external key of a lead merged into this one: that
    /// lead's id (what an engagement recorded so is fingerprinted by, and
    /// what an unmerge takes back).
    pub(crate) via: Option<String>,
}

/// Timers fired, at most, before one command.
const MAX_CATCH_UP_ROUNDS: usize = 100;

/// What several decisions in one command wrote.
#[derive(Default)]
pub(crate) struct Acc {
    pub(crate) transitions: Vec<leadflow_store::StoredTransition>,
    pub(crate) triggers: Vec<leadflow_domain::workflow::Trigger>,
    pub(crate) events: usize,
}

impl Acc {
    pub(crate) fn absorb(&mut self, written: crate::persist::Written) -> LeadRecord {
        self.transitions.extend(written.transitions);
        self.triggers.extend(written.triggers);
        self.events += written.events;
        written.lead.record
    }
}

/// What `apply` did: the outcome for the caller, and how many outbox
/// events it wrote (to announce after commit).
pub(crate) struct Applied {
    pub(crate) outcome: Recorded,
    pub(crate) events: usize,
}

/// What a command knows of its engagement's event id before writing it;
/// the batch, which looked, also passes the fingerprint it computed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Known<'a> {
    /// Insert it unless recorded, and find out which.
    Unknown,
    /// Recorded by this command just now (a batch inserts its engagements
    /// up front, in one statement).
    Inserted { fingerprint: &'a str },
    /// Recorded already: answer as for a repeat.
    Recorded { fingerprint: &'a str },
}

/// A new lead.
#[derive(Clone, Debug, Default)]
pub struct CreateLead {
    pub external_key: Option<String>,
    pub profile: BTreeMap<String, String>,
    pub captured_at: Option<Timestamp>,
    /// Anonymous ids whose activity joins the lead at its capture.
    pub anonymous_ids: Vec<String>,
}

impl Engine {
    #[tracing::instrument(name = "engine.create_lead", skip_all)]
    pub async fn create_lead(&self, req: &Request, input: &CreateLead) -> Result<Outcome, EngineError> {
        retrying!(self.try_create_lead(req, input)).map(Outcome::from)
    }

    async fn try_create_lead(&self, req: &Request, input: &CreateLead) -> Result<Recorded, EngineError> {
        let ws = req.workspace.as_str();
        let tx = self.store.begin().await?;
        if let Some(done) = replay::<Recorded>(&tx, req, Method::CreateLead).await? {
            return Ok(done);
        }
        let (policy_version, policy) = self.active_policy(&tx, ws).await?;
        if let Some(key) = &input.external_key
            && let Some(id) = tx.lead_id_by_key(ws, key).await?
        {
            return Err(EngineError::AlreadyExists {
                what: "lead",
                key: key.clone(),
                // A merged lead's key names its survivor.
                id: tx.survivor_of(ws, &id).await?,
            });
        }
        let now = self.now();
        let decision = leadflow_domain::capture(
            &policy,
            input.profile.clone(),
            input.captured_at,
            &Context { now },
        )?;
        // `[identity] auto_merge_on`: the oldest lead it matches, locked
        // before it is written (a lead is never locked after the routing
        // lock its capture may take).
        let found = if policy.identity.auto_merge_on.is_empty() {
            None
        } else {
            self.auto_merge_candidate(&tx, ws, &policy.identity, &decision.lead.profile)
                .await?
        };
        let id = uuid::Uuid::now_v7().to_string();
        let target = self.target(req, &policy, policy_version, now);
        let before = Before::New {
            id: &id,
            external_key: input.external_key.as_deref(),
        };
        let written = persist(&tx, &target, before, None, &decision).await?;
        let mut outcome = Recorded {
            lead: written.lead,
            transitions: written.transitions,
            triggers: written.triggers,
            duplicate: false,
        };
        let mut events = written.events;
        // Its anonymous ids, each joined at the capture (as IdentifyLead),
        // locked in order.
        let captured_at = decision.lead.captured_at;
        let mut ids: Vec<&String> = input.anonymous_ids.iter().collect();
        ids.sort_unstable();
        ids.dedup();
        for anonymous_id in ids {
            let record = outcome.lead.record.clone();
            let joined = match self
                .identify_in(&tx, &target, record, anonymous_id, Some(captured_at))
                .await
            {
                Ok(joined) => joined,
                Err(taken @ EngineError::AlreadyExists { .. }) if req.request_id.is_some() => {
                    // A retry of this very call may have joined it first:
                    // then its first result is the answer.
                    return match replay::<Recorded>(&tx, req, Method::CreateLead).await? {
                        Some(done) => Ok(done),
                        None => Err(taken),
                    };
                }
                Err(e) => return Err(e),
            };
            let then = joined.applied.outcome;
            outcome.lead = then.lead;
            outcome.transitions.extend(then.transitions);
            outcome.triggers.extend(then.triggers);
            events += joined.applied.events;
        }
        // Merged into the oldest lead it matches.
        if let Some(found) = found {
            let created = self
                .locked(&tx, ws, outcome.lead.record.clone(), Some(policy_version))
                .await?;
            let merged = self.auto_merge(&tx, req, created, found).await?;
            outcome.transitions.extend(merged.duplicate_transitions);
            outcome.lead = merged.survivor.lead;
            outcome.transitions.extend(merged.survivor.transitions);
            outcome.triggers.extend(merged.survivor.triggers);
            events += 1;
        }
        save(&tx, req, Method::CreateLead, &outcome, now).await?;
        tx.commit().await?;
        if events > 0 {
            self.announce(ws);
        }
        Ok(outcome)
    }

    /// One engagement in a transaction of its own (see `group.rs` for the
    /// entry point, which commits concurrent calls together).
    pub(crate) async fn try_record_engagement(
        &self,
        req: &Request,
        key: &LeadKey,
        engagement: &Engagement,
        occurred_at_given: bool,
    ) -> Result<Recorded, EngineError> {
        let tx = self.store.begin().await?;
        let applied = self
            .engagement_in(
                &tx,
                req,
                key,
                None,
                Known::Unknown,
                engagement,
                occurred_at_given,
                &mut Log::leaving_out(vec![engagement.event_id.clone()]),
            )
            .await?;
        if !applied.outcome.duplicate {
            tx.commit().await?;
        }
        if applied.events > 0 {
            self.announce(&req.workspace);
        }
        Ok(applied.outcome)
    }

    /// One engagement inside a transaction (a single call, or an item of a
    /// batch, which passes the lead it already locked).
    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn engagement_in(
        &self,
        tx: &Tx,
        req: &Request,
        key: &LeadKey,
        locked: Option<Locked>,
        known: Known<'_>,
        engagement: &Engagement,
        occurred_at_given: bool,
        log: &mut Log,
    ) -> Result<Applied, EngineError> {
        let ws = req.workspace.as_str();
        // The lead first: what is read after its lock is what the previous
        // command on it committed (its policy, its results).
        let (locked, recorded) = match (locked, key, known) {
            (Some(locked), _, _) => (locked, None),
            // By id, the engagement's row is written with the lock (one
            // statement on PostgreSQL).
            (None, LeadKey::Id(id), Known::Unknown) => {
                let fp = engagement_fingerprint(id, engagement, occurred_at_given);
                let (record, active, new) = tx
                    .lock_lead_recording(ws, id, engagement, &fp, self.now())
                    .await?
                    .ok_or_else(|| EngineError::NotFound {
                        what: "lead",
                        key: key.describe(),
                    })?;
                if record.lead.stage == Stage::Merged {
                    // Nothing is committed: the row written goes with the transaction.
                    return Err(self.merged_into(tx, ws, record.id).await?);
                }
                (self.locked_fresh(tx, ws, record, active).await?, Some((fp, new)))
            }
            (None, _, _) => (self.lock(tx, ws, key).await?, None),
        };
        let Locked {
            record,
            policy_version,
            policy,
            via,
        } = locked;
        let now = self.now();
        let (fp, new) = match (recorded, known) {
            (Some(recorded), _) => recorded,
            (None, Known::Unknown) => {
                // Under a merged lead's key, as that lead would have had it.
                let subject = via.as_deref().unwrap_or(&record.id);
                let fp = engagement_fingerprint(subject, engagement, occurred_at_given);
                let new = tx
                    .insert_engagement_if_new(ws, &record.id, engagement, &fp, now)
                    .await?;
                if new && let Some(via) = &via {
                    tx.mark_via(ws, &engagement.event_id, via).await?;
                }
                (fp, new)
            }
            (None, Known::Inserted { fingerprint }) => (fingerprint.to_owned(), true),
            (None, Known::Recorded { fingerprint }) => (fingerprint.to_owned(), false),
        };
        if !new {
            let Some(seen) = tx.engagement(ws, &engagement.event_id).await? else {
                return Err(EngineError::Conflict(format!(
                    "event {} was removed meanwhile",
                    engagement.event_id
                )));
            };
            if seen.fingerprint != fp
                && !(seen.lead_id == record.id
                    && self
                        .fingerprint_of_merged(tx, ws, &seen, engagement, occurred_at_given)
                        .await?)
            {
                return Err(EngineError::invalid(
                    "EVENT_ID_REUSED",
                    "engagement.event_id",
                    format!(
                        "event id {:?} was already recorded with other content (lead {}, {} at {})",
                        engagement.event_id, seen.lead_id, seen.engagement.kind, seen.engagement.occurred_at
                    ),
                ));
            }
            // The first result: what the event caused, and the lead as it is now.
            let transitions = tx
                .transitions_caused_by(ws, &record.id, &engagement.event_id)
                .await?;
            let scored_with = self.policy_version_of(tx, ws, record.policy_version).await?;
            return Ok(Applied {
                outcome: Recorded {
                    lead: view(&scored_with, record, now),
                    transitions,
                    triggers: seen.triggers,
                    duplicate: true,
                },
                events: 0,
            });
        }
        let target = self.target(req, &policy, policy_version, now);
        let command = Command::RecordEngagement(engagement.clone());
        self.apply(
            tx,
            &target,
            record,
            command,
            Some(&engagement.event_id),
            engagement.occurred_at,
            log,
        )
        .await
    }

    /// Locks a lead and reads the active policy with it.
    pub(crate) async fn lock(&self, tx: &Tx, ws: &str, key: &LeadKey) -> Result<Locked, EngineError> {
        let identified;
        let lookup = match key {
            LeadKey::Id(id) => leadflow_store::LeadLookup::Id(id),
            LeadKey::ExternalKey(k) => leadflow_store::LeadLookup::ExternalKey(k),
            LeadKey::Anonymous(a) => {
                identified = tx
                    .anonymous_lead(ws, a)
                    .await?
                    .ok_or_else(|| crate::identity::not_identified(a))?;
                leadflow_store::LeadLookup::Id(&identified)
            }
        };
        let not_found = || EngineError::NotFound {
            what: "lead",
            key: key.describe(),
        };
        let (record, active) = tx
            .lock_lead_with_policy(ws, lookup)
            .await?
            .ok_or_else(not_found)?;
        if record.lead.stage != Stage::Merged {
            return self.locked_fresh(tx, ws, record, active).await;
        }
        if let LeadKey::Id(_) = key {
            return Err(self.merged_into(tx, ws, record.id).await?);
        }
        // A merged lead's key names its survivor (the merged lead stays
        // locked: it is always locked before its survivor).
        let via = record.id.clone();
        let mut id = record.id;
        for _ in 0..MAX_MERGE_HOPS {
            let survivor = tx
                .merge_of(ws, &id)
                .await?
                .ok_or_else(|| EngineError::Internal(format!("merged lead {id} has no merge")))?
                .survivor_id;
            let (record, active) = tx
                .lock_lead_with_policy(ws, leadflow_store::LeadLookup::Id(&survivor))
                .await?
                .ok_or_else(not_found)?;
            if record.lead.stage != Stage::Merged {
                let mut locked = self.locked_fresh(tx, ws, record, active).await?;
                locked.via = Some(via);
                return Ok(locked);
            }
            id = record.id;
        }
        Err(EngineError::Internal(format!(
            "more than {MAX_MERGE_HOPS} merges from {via}"
        )))
    }

    /// MERGED_INTO for a merged lead asked for by its id.
    pub(crate) async fn merged_into(
        &self,
        tx: &Tx,
        ws: &str,
        lead_id: String,
    ) -> Result<EngineError, EngineError> {
        let survivor_id = tx
            .merge_of(ws, &lead_id)
            .await?
            .map(|m| m.survivor_id)
            .unwrap_or_default();
        Ok(EngineError::MergedInto { lead_id, survivor_id })
    }

    /// [`Engine::locked`] for a lead read with the active policy version in
    /// one statement: on PostgreSQL that version was read in the snapshot
    /// taken before waiting for the lock, so if the lead says otherwise it
    /// is read again.
    async fn locked_fresh(
        &self,
        tx: &Tx,
        ws: &str,
        record: LeadRecord,
        active: Option<i64>,
    ) -> Result<Locked, EngineError> {
        let active = if active.is_some_and(|v| v != record.policy_version) {
            tx.active_policy_version(ws).await?.flatten()
        } else {
            active
        };
        self.locked(tx, ws, record, active).await
    }

    /// A locked lead with the policy to decide with.
    pub(crate) async fn locked(
        &self,
        tx: &Tx,
        ws: &str,
        record: LeadRecord,
        active: Option<i64>,
    ) -> Result<Locked, EngineError> {
        let policy_version =
            active.ok_or_else(|| EngineError::NotReady(format!("workspace {ws:?} has no active policy")))?;
        let policy = self.policy_version_of(tx, ws, policy_version).await?;
        Ok(Locked {
            record,
            policy_version,
            policy,
            via: None,
        })
    }

    #[tracing::instrument(name = "engine.update_profile", skip_all)]
    pub async fn update_profile(
        &self,
        req: &Request,
        key: &LeadKey,
        attributes: &BTreeMap<String, String>,
        expected_version: Option<i64>,
    ) -> Result<Outcome, EngineError> {
        let command = Command::UpdateProfile(attributes.clone());
        retrying!(self.try_command(req, Method::UpdateLeadProfile, key, &command, expected_version))
            .map(Outcome::from)
    }

    #[tracing::instrument(name = "engine.transition", skip_all)]
    pub async fn transition(
        &self,
        req: &Request,
        key: &LeadKey,
        transition: &ManualTransition,
        expected_version: Option<i64>,
    ) -> Result<Outcome, EngineError> {
        let command = Command::Transition(transition.clone());
        retrying!(self.try_command(req, Method::Transition, key, &command, expected_version))
            .map(Outcome::from)
    }

    async fn try_command(
        &self,
        req: &Request,
        method: Method,
        key: &LeadKey,
        command: &Command,
        expected_version: Option<i64>,
    ) -> Result<Recorded, EngineError> {
        let ws = req.workspace.as_str();
        let tx = self.store.begin().await?;
        // The lead first: a retry waiting on it then sees the first call's result.
        let Locked {
            record,
            policy_version,
            policy,
            ..
        } = self.lock(&tx, ws, key).await?;
        if let Some(done) = replay::<Recorded>(&tx, req, method).await? {
            return Ok(done);
        }
        if let Some(expected) = expected_version
            && expected != record.version
        {
            return Err(EngineError::VersionConflict {
                expected,
                actual: record.version,
            });
        }
        let now = self.now();
        let target = self.target(req, &policy, policy_version, now);
        let until = match command {
            Command::Transition(t) => t.occurred_at.unwrap_or(now),
            _ => now,
        };
        let applied = self
            .apply(
                &tx,
                &target,
                record,
                command.clone(),
                None,
                until,
                &mut Log::default(),
            )
            .await?;
        save(&tx, req, method, &applied.outcome, now).await?;
        tx.commit().await?;
        if applied.events > 0 {
            self.announce(ws);
        }
        Ok(applied.outcome)
    }

    /// Decides and persists a command for a locked lead. A lead scored under
    /// an older policy is first brought to the active one (a policy change,
    /// recorded as such); the lead's timers due by `until` (the command's
    /// instant) fire first, in order, so a late worker or a history import
    /// gives the history a live one would have; then the command is decided.
    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn apply(
        &self,
        tx: &Tx,
        target: &Target<'_>,
        mut record: LeadRecord,
        command: Command,
        engagement: Option<&str>,
        until: Timestamp,
        log: &mut Log,
    ) -> Result<Applied, EngineError> {
        let ctx = Context { now: target.now };
        let mut acc = Acc::default();
        if record.policy_version != target.policy_version {
            let at = tx
                .policy(target.ws, target.policy_version)
                .await?
                .and_then(|p| p.activated_at)
                .unwrap_or(target.now);
            // What fell due before the change happens under the policy it was armed by.
            let old_policy = self
                .policy_version_of(tx, target.ws, record.policy_version)
                .await?;
            let old = Target {
                policy: &old_policy,
                policy_version: record.policy_version,
                sync_accounts: false,
                ..*target
            };
            record = self
                .fire_overdue(tx, &old, record, at.min(until), &mut acc, log)
                .await?;
            let history = log.get(tx, target.ws, &record.id).await?;
            let change = Command::PolicyChanged { at };
            let decision = replaying(|| {
                leadflow_domain::decide(target.policy, &record.lead, change, &ctx, Some(history))
            })?;
            let written = persist(tx, target, Before::Existing(&record), None, &decision).await?;
            record = acc.absorb(written);
        }
        record = self
            .fire_overdue(tx, target, record, until, &mut acc, log)
            .await?;
        let own = match &command {
            Command::RecordEngagement(e) => Some(e.clone()),
            _ => None,
        };
        // Joined activity takes its places in the log: the score states
        // kept from its first event on no longer hold.
        let joined_from = match &command {
            Command::Identify { events, .. }
            | Command::Merge {
                duplicate: leadflow_domain::lifecycle::Duplicate { events, .. },
                ..
            } => events.iter().min_by(|a, b| a.cmp_key(b)).map(Engagement::key),
            // Its log changed anywhere: none holds.
            Command::Unmerge { .. } | Command::Unmerged { .. } => Some(leadflow_domain::EventKey {
                occurred_at: Timestamp::from_micros(i64::MIN),
                event_id: String::new(),
            }),
            _ => None,
        };
        let decision = decide(tx, target, &record, command, &ctx, log).await?;
        if let Some(own) = &own {
            keep_checkpoints(tx, target, &record, &decision, own, log).await?;
        }
        if let Some(from) = &joined_from {
            let now = leadflow_domain::score::Checkpoint {
                lifetime: decision.lead.lifetime.clone(),
                qualifying: decision.lead.qualifying.clone(),
            };
            tx.replace_checkpoints(target.ws, &record.id, target.policy_version, Some(from), &[now])
                .await?;
        }
        let written = persist(tx, target, Before::Existing(&record), engagement, &decision).await?;
        if let Some(own) = &own {
            log.applied(own);
        }
        let lead = written.lead.clone();
        acc.absorb(written);
        Ok(Applied {
            outcome: Recorded {
                lead,
                transitions: acc.transitions,
                triggers: acc.triggers,
                duplicate: false,
            },
            events: acc.events,
        })
    }

    /// Fires, in order, the lead's timers due by `until`, including those
    /// that firing arms and that fall due by then too.
    pub(crate) async fn fire_overdue(
        &self,
        tx: &Tx,
        target: &Target<'_>,
        mut record: LeadRecord,
        until: Timestamp,
        acc: &mut Acc,
        log: &mut Log,
    ) -> Result<LeadRecord, EngineError> {
        let ctx = Context { now: target.now };
        // A bound on timers re-arming each other within the window.
        for _ in 0..MAX_CATCH_UP_ROUNDS {
            // The lead's state lists its timers: look only when one is due.
            if record.lead.next_timer_due().is_none_or(|due| due > until) {
                return Ok(record);
            }
            let due = tx.due_timers_of(target.ws, &record.id, until).await?;
            let Some(next) = due.into_iter().next() else {
                return Ok(record);
            };
            if tx
                .take_timer(target.ws, &record.id, &next.timer.kind.key())
                .await?
                .is_none()
            {
                return Ok(record);
            }
            let fired = Command::TimerFired(next.timer);
            let decision = decide(tx, target, &record, fired, &ctx, log).await?;
            let written = persist(tx, target, Before::Existing(&record), None, &decision).await?;
            record = acc.absorb(written);
        }
        Ok(record)
    }

    pub(crate) fn target<'a>(
        &self,
        req: &'a Request,
        policy: &'a Policy,
        policy_version: i64,
        now: Timestamp,
    ) -> Target<'a> {
        Target {
            ws: &req.workspace,
            policy,
            policy_version,
            now,
            traceparent: req.traceparent.as_deref(),
            principal: req.principal.as_deref(),
            defer_accounts: false,
            sync_accounts: true,
        }
    }

    /// The workspace's active policy, parsed once per version.
    pub(crate) async fn active_policy(&self, tx: &Tx, ws: &str) -> Result<(i64, Arc<Policy>), EngineError> {
        let version = tx
            .active_policy_version(ws)
            .await?
            .flatten()
            .ok_or_else(|| EngineError::NotReady(format!("workspace {ws:?} has no active policy")))?;
        Ok((version, self.policy_version_of(tx, ws, version).await?))
    }

    /// A stored version, parsed (cached).
    pub(crate) async fn policy_version_of(
        &self,
        tx: &Tx,
        ws: &str,
        version: i64,
    ) -> Result<Arc<Policy>, EngineError> {
        if let Some(policy) = self.cached_policy(ws, version) {
            return Ok(policy);
        }
        let record = tx
            .policy(ws, version)
            .await?
            .ok_or_else(|| EngineError::Internal(format!("policy version {version} of {ws:?} is missing")))?;
        self.cache_policy(ws, version, &record.source)
    }

    pub(crate) fn cached_policy(&self, ws: &str, version: i64) -> Option<Arc<Policy>> {
        self.policies
            .lock()
            .ok()
            .and_then(|cache| cache.get(&(ws.to_owned(), version)).cloned())
    }

    pub(crate) fn cache_policy(
        &self,
        ws: &str,
        version: i64,
        source: &str,
    ) -> Result<Arc<Policy>, EngineError> {
        let policy = Arc::new(Policy::from_toml(source).map_err(|e| {
            EngineError::Internal(format!("stored policy version {version} does not parse: {e}"))
        })?);
        if let Ok(mut cache) = self.policies.lock() {
            cache.insert((ws.to_owned(), version), Arc::clone(&policy));
        }
        Ok(policy)
    }
}

pub(crate) fn view(policy: &Policy, record: LeadRecord, now: Timestamp) -> Scored {
    Scored {
        scores: record.lead.scores_at(policy, now),
        scored_at: now,
        record,
    }
}

/// What makes two engagements with one event id the same event.
pub(crate) fn engagement_fingerprint(lead_id: &str, e: &Engagement, occurred_at_given: bool) -> String {
    let properties = serde_json::to_string(&e.properties).unwrap_or_default();
    let occurred = if occurred_at_given {
        e.occurred_at.as_micros().to_string()
    } else {
        String::new()
    };
    fingerprint([
        lead_id.as_bytes(),
        e.kind.as_bytes(),
        e.channel.as_deref().unwrap_or_default().as_bytes(),
        properties.as_bytes(),
        occurred.as_bytes(),
    ])
}
