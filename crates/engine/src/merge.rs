//! Merges: two leads that are one person become one, reversibly.
//!
//! `MergeLeads` moves the duplicate's engagements, anonymous ids and
//! external key (which then names the survivor) and the attributes the
//! survivor lacks to the survivor, in one transaction: the survivor's
//! scores are those of the union log at the merge's instant, its stage the
//! further of the two (cause MERGE), then the automatic moves; the
//! duplicate enters MERGED. What the duplicate brought is kept, so that
//! `UnmergeLead` gives exactly that back (with what was recorded since
//! under its key or anonymous ids).
//!
//! Lock order: two leads of a merge are locked in id order; a merged lead
//! before its survivor (its key is resolved through it).

use leadflow_domain::lifecycle::{Duplicate, merge_attributes, merge_instant};
use leadflow_domain::policy::MatchOn;
use leadflow_domain::{Command, Context, Stage, Timestamp};
use leadflow_store::{LeadRecord, MergeRecord, NewOutboxEvent, Tx};
use serde::{Deserialize, Serialize};

use crate::Engine;
use crate::error::EngineError;
use crate::idempotency::{replay, save};
use crate::leads::retrying;
use crate::log::Log;
use crate::model::{LeadKey, MergeNote, Method, OutboxPayload, Recorded, Request, Scored};
use crate::persist::Target;
use crate::views::{LeadView, Outcome};

/// What `MergeLeads` did.
#[derive(Clone, Debug, PartialEq)]
pub struct Merged {
    /// The survivor after the merge, with the moves it made.
    pub survivor: Outcome,
    pub duplicate_id: String,
    /// The duplicate's stage before the merge.
    pub duplicate_stage: Stage,
    /// The duplicate's engagements, now the survivor's.
    pub engagements_moved: u64,
    /// The anonymous ids it brought.
    pub anonymous_ids: Vec<String>,
    /// The attributes the survivor took from it.
    pub attributes_taken: Vec<String>,
}

/// What `UnmergeLead` did.
#[derive(Clone, Debug, PartialEq)]
pub struct Unmerged {
    /// The duplicate, back at its stage, with the moves it made.
    pub duplicate: Outcome,
    /// The survivor, re-scored without what the duplicate took back (its
    /// stage stays; its triggers are the thresholds the re-score crossed).
    pub survivor: Outcome,
    /// The engagements given back.
    pub engagements_returned: u64,
}

/// [`Merged`] as kept for a retry with the same request id.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct KeptMerge {
    pub(crate) survivor: Recorded,
    /// The duplicate's moves (into MERGED).
    #[serde(default)]
    pub(crate) duplicate_transitions: Vec<leadflow_store::StoredTransition>,
    pub(crate) duplicate_id: String,
    duplicate_stage: Stage,
    pub(crate) engagements_moved: u64,
    anonymous_ids: Vec<String>,
    attributes_taken: Vec<String>,
}

impl From<KeptMerge> for Merged {
    fn from(k: KeptMerge) -> Self {
        Self {
            survivor: k.survivor.into(),
            duplicate_id: k.duplicate_id,
            duplicate_stage: k.duplicate_stage,
            engagements_moved: k.engagements_moved,
            anonymous_ids: k.anonymous_ids,
            attributes_taken: k.attributes_taken,
        }
    }
}

/// [`Unmerged`] as kept for a retry with the same request id.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct KeptUnmerge {
    duplicate: Recorded,
    survivor: Recorded,
    engagements_returned: u64,
}

impl From<KeptUnmerge> for Unmerged {
    fn from(k: KeptUnmerge) -> Self {
        Self {
            duplicate: k.duplicate.into(),
            survivor: k.survivor.into(),
            engagements_returned: k.engagements_returned,
        }
    }
}

impl Engine {
    /// Merges `duplicate` into `survivor` at `occurred_at` (default now).
    #[tracing::instrument(name = "engine.merge_leads", skip_all)]
    pub async fn merge_leads(
        &self,
        req: &Request,
        survivor: &LeadKey,
        duplicate: &LeadKey,
        occurred_at: Option<Timestamp>,
    ) -> Result<Merged, EngineError> {
        retrying!(self.try_merge(req, survivor, duplicate, occurred_at)).map(Merged::from)
    }

    async fn try_merge(
        &self,
        req: &Request,
        survivor: &LeadKey,
        duplicate: &LeadKey,
        occurred_at: Option<Timestamp>,
    ) -> Result<KeptMerge, EngineError> {
        let ws = req.workspace.as_str();
        let tx = self.store.begin().await?;
        // A retry of a merge done: its keys may name other leads now.
        if let Some(done) = replay::<KeptMerge>(&tx, req, Method::MergeLeads).await? {
            return Ok(done);
        }
        // Both named leads, then both locked in id order.
        let s_id = self.resolve(&tx, ws, survivor).await?;
        let d_id = self.resolve(&tx, ws, duplicate).await?;
        if s_id == d_id {
            return Err(EngineError::invalid(
                "SAME_LEAD",
                "duplicate",
                format!("the survivor and the duplicate are one lead ({s_id}): nothing to merge"),
            ));
        }
        let (first, second) = if s_id < d_id {
            (&s_id, &d_id)
        } else {
            (&d_id, &s_id)
        };
        let mut locked = Vec::with_capacity(2);
        for id in [first, second] {
            locked.push(
                tx.lock_lead_with_policy(ws, leadflow_store::LeadLookup::Id(id))
                    .await?
                    .ok_or_else(|| not_found(&LeadKey::Id(id.clone())))?,
            );
        }
        // A retry that waited on the first call's locks: its answer.
        if let Some(done) = replay::<KeptMerge>(&tx, req, Method::MergeLeads).await? {
            return Ok(done);
        }
        let mut both = Vec::with_capacity(2);
        for (record, active) in locked {
            if record.lead.stage == Stage::Merged {
                let named_by_id = [(survivor, &s_id), (duplicate, &d_id)]
                    .iter()
                    .any(|(key, id)| **id == record.id && matches!(key, LeadKey::Id(_)));
                if named_by_id {
                    return Err(self.merged_into(&tx, ws, record.id).await?);
                }
                // Merged since its key was resolved: resolve it again.
                return Err(EngineError::Conflict(format!(
                    "lead {} was merged meanwhile",
                    record.id
                )));
            }
            both.push(self.locked(&tx, ws, record, active).await?);
        }
        let (Some(b), Some(a)) = (both.pop(), both.pop()) else {
            return Err(EngineError::Internal("two leads were locked".to_owned()));
        };
        let (s, d) = if a.record.id == s_id { (a, b) } else { (b, a) };
        let now = self.now();
        let kept = self.merge_locked(&tx, req, s, d, occurred_at, false).await?;
        save(&tx, req, Method::MergeLeads, &kept, now).await?;
        tx.commit().await?;
        self.announce(ws);
        tracing::info!(
            survivor = %s_id,
            duplicate = %kept.duplicate_id,
            engagements = kept.engagements_moved,
            principal = req.principal.as_deref().unwrap_or(""),
            "leads merged"
        );
        Ok(kept)
    }

    /// Merges the locked `d` into the locked `s` in `tx` (see the module).
    pub(crate) async fn merge_locked(
        &self,
        tx: &Tx,
        req: &Request,
        s: crate::leads::Locked,
        d: crate::leads::Locked,
        occurred_at: Option<Timestamp>,
        automatic: bool,
    ) -> Result<KeptMerge, EngineError> {
        let ws = req.workspace.as_str();
        let s_id = s.record.id.clone();
        let (policy_version, policy) = (s.policy_version, std::sync::Arc::clone(&s.policy));
        let now = self.now();
        let target = self.target(req, &policy, policy_version, now);
        let ctx = Context { now };
        let events = tx.engagements_of(ws, &d.record.id).await?;
        let at = merge_instant(occurred_at, &s.record.lead, &d.record.lead, &events, &ctx)?;
        let survivor_before = s.record.lead.profile.clone();

        // The duplicate first: its own timers due by then fire, it enters
        // MERGED and leaves its account.
        let d_id = d.record.id.clone();
        let d_seen = tx.last_assignment(ws, &d_id).await?.map_or(0, |a| a.seq);
        let mut d_log = Log::default();
        let left = self
            .apply(
                tx,
                &target,
                d.record,
                Command::MergedInto {
                    survivor_id: s.record.id.clone(),
                    at,
                },
                None,
                at,
                &mut d_log,
            )
            .await?;
        // The owner its merge let go (its timers, fired first, may have
        // changed the one it had).
        let d_owner = tx
            .last_assignment(ws, &d_id)
            .await?
            .filter(|a| a.seq > d_seen && a.cause == "MERGE" && a.to.is_none())
            .and_then(|a| a.from);
        let stage = left
            .outcome
            .transitions
            .iter()
            .rev()
            .find(|t| t.record.to == Stage::Merged)
            .and_then(|t| t.record.from)
            .ok_or_else(|| EngineError::Internal(format!("lead {d_id} did not enter MERGED")))?;
        let attributes = left.outcome.lead.record.lead.profile.as_map().clone();
        let deal = if stage == Stage::Customer {
            tx.last_transition_to(ws, &d_id, Stage::Customer)
                .await?
                .and_then(|t| t.record.deal)
        } else {
            None
        };
        // Its log and its anonymous ids become the survivor's.
        let moved = tx.move_engagements(ws, &d_id, &s_id).await?;
        let anonymous_ids = tx.move_anonymous_ids(ws, &d_id, &s_id, None).await?;
        drop_checkpoints(tx, ws, &d_id, policy_version).await?;
        let taken = merge_attributes(&survivor_before, &attributes, &policy.identity.prefer_duplicate);
        let event_ids: Vec<String> = moved.iter().map(|e| e.event_id.clone()).collect();
        let engagements_moved = moved.len() as u64;
        let command = Command::Merge {
            duplicate: Duplicate {
                lead_id: d_id.clone(),
                stage,
                deal,
                attributes,
                events: moved,
            },
            at,
        };
        let mut applied = self
            .apply(
                tx,
                &target,
                s.record,
                command,
                None,
                at,
                &mut Log::leaving_out(event_ids),
            )
            .await?;
        // One owner: the survivor's, else the duplicate's (released by its
        // merge) passes to it.
        let survivor = &mut applied.outcome.lead;
        if let (None, Some(owner)) = (&survivor.record.owner, d_owner) {
            tx.lock_routing(ws).await?;
            let note = crate::assign::AssignmentNote {
                from: None,
                explanation: format!("merged: takes {owner}, the owner of {d_id}"),
                to: Some(owner),
                cause: "MERGE".to_owned(),
                route_id: None,
                reason: None,
                principal: req.principal.clone(),
            };
            crate::assign::hand_over(
                tx,
                ws,
                &survivor.record,
                &survivor.scores,
                &note,
                now,
                req.traceparent.as_deref(),
            )
            .await?;
            survivor.record.owner = note.to;
        }
        tx.save_merge(
            ws,
            &MergeRecord {
                duplicate_id: d_id.clone(),
                survivor_id: s_id.clone(),
                merged_at: at,
                recorded_at: now,
                stage,
                anonymous_ids: anonymous_ids.clone(),
                attributes: taken.clone(),
                merged_by: req.principal.clone(),
                automatic,
                unmerged_at: None,
            },
        )
        .await?;
        let note = MergeNote {
            survivor_id: s_id.clone(),
            duplicate_id: d_id.clone(),
            duplicate_stage: stage,
            automatic,
        };
        announce_merge(tx, &target, &applied.outcome.lead, "LEAD_MERGED", note, at)?;
        Ok(KeptMerge {
            survivor: applied.outcome,
            duplicate_transitions: left.outcome.transitions,
            duplicate_id: d_id.clone(),
            duplicate_stage: stage,
            engagements_moved,
            anonymous_ids,
            attributes_taken: taken.set.into_keys().collect(),
        })
    }

    /// The id of the lead a key names for a merge: a merged lead's id is
    /// MERGED_INTO (a merge into or from a merged lead is refused); its key
    /// names its survivor.
    async fn resolve(&self, tx: &Tx, ws: &str, key: &LeadKey) -> Result<String, EngineError> {
        let id = match key {
            LeadKey::Id(id) => id.clone(),
            LeadKey::ExternalKey(k) => tx.lead_id_by_key(ws, k).await?.ok_or_else(|| not_found(key))?,
            LeadKey::Anonymous(a) => tx
                .anonymous_lead(ws, a)
                .await?
                .ok_or_else(|| crate::identity::not_identified(a))?,
        };
        match (key, tx.merge_of(ws, &id).await?) {
            (LeadKey::Id(_), Some(m)) => Err(EngineError::MergedInto {
                lead_id: id,
                survivor_id: m.survivor_id,
            }),
            (_, None) => Ok(id),
            // Follow merges from a key to the lead that holds it now.
            (_, Some(m)) => Ok(tx.survivor_of(ws, &m.survivor_id).await?),
        }
    }

    /// Undoes the merge of `duplicate_id` within `[identity] unmerge_window`.
    #[tracing::instrument(name = "engine.unmerge_lead", skip_all)]
    pub async fn unmerge_lead(&self, req: &Request, duplicate_id: &str) -> Result<Unmerged, EngineError> {
        retrying!(self.try_unmerge(req, duplicate_id)).map(Unmerged::from)
    }

    async fn try_unmerge(&self, req: &Request, duplicate_id: &str) -> Result<KeptUnmerge, EngineError> {
        let ws = req.workspace.as_str();
        let tx = self.store.begin().await?;
        // The merged lead first, then its survivor.
        let Some((d_record, active)) = tx
            .lock_lead_with_policy(ws, leadflow_store::LeadLookup::Id(duplicate_id))
            .await?
        else {
            return Err(not_found(&LeadKey::Id(duplicate_id.to_owned())));
        };
        if let Some(done) = replay::<KeptUnmerge>(&tx, req, Method::UnmergeLead).await? {
            return Ok(done);
        }
        let merge = match tx.merge_of(ws, duplicate_id).await? {
            Some(m) if d_record.lead.stage == Stage::Merged => m,
            _ => {
                return Err(EngineError::FailedPrecondition {
                    reason: "NOT_MERGED",
                    message: format!("lead {duplicate_id} is not merged into another"),
                });
            }
        };
        let s = self.lock(&tx, ws, &LeadKey::Id(merge.survivor_id.clone())).await.map_err(|e| match e {
            EngineError::MergedInto { lead_id, survivor_id } => EngineError::FailedPrecondition {
                reason: "SURVIVOR_MERGED",
                message: format!(
                    "lead {lead_id}, which {duplicate_id} was merged into, was merged into {survivor_id} since: unmerge it first"
                ),
            },
            other => other,
        })?;
        let d = self.locked(&tx, ws, d_record, active).await?;
        let now = self.now();
        let window = s.policy.identity.unmerge_window;
        if now > merge.recorded_at.saturating_add(window) {
            return Err(EngineError::FailedPrecondition {
                reason: "UNMERGE_WINDOW_PASSED",
                message: format!(
                    "lead {duplicate_id} was merged at {}; merges can be undone within {window} ([identity] unmerge_window)",
                    merge.recorded_at
                ),
            });
        }
        let target = self.target(req, &s.policy, s.policy_version, now);
        let at = now
            .max(s.record.lead.last_transition_at)
            .max(d.record.lead.last_transition_at);
        let s_id = s.record.id.clone();
        // What it brought, and what was recorded since under its key or ids.
        let returned = tx
            .return_engagements(ws, &s_id, duplicate_id, &merge.anonymous_ids)
            .await?;
        tx.move_anonymous_ids(ws, &s_id, duplicate_id, Some(&merge.anonymous_ids))
            .await?;
        let attributes = merge.attributes.undo(&s.record.lead.profile);
        let survivor = self
            .apply(
                &tx,
                &target,
                s.record,
                Command::Unmerged {
                    duplicate_id: duplicate_id.to_owned(),
                    attributes,
                    at,
                },
                None,
                at,
                &mut Log::default(),
            )
            .await?;
        let back = self
            .apply(
                &tx,
                &target,
                d.record,
                Command::Unmerge {
                    survivor_id: s_id.clone(),
                    stage: merge.stage,
                    at,
                },
                None,
                at,
                &mut Log::default(),
            )
            .await?;
        tx.end_merge(ws, duplicate_id, now).await?;
        let note = MergeNote {
            survivor_id: s_id.clone(),
            duplicate_id: duplicate_id.to_owned(),
            duplicate_stage: merge.stage,
            automatic: merge.automatic,
        };
        announce_merge(&tx, &target, &back.outcome.lead, "LEAD_UNMERGED", note, at)?;
        let kept = KeptUnmerge {
            duplicate: back.outcome,
            survivor: survivor.outcome,
            engagements_returned: returned,
        };
        save(&tx, req, Method::UnmergeLead, &kept, now).await?;
        tx.commit().await?;
        self.announce(ws);
        tracing::info!(
            survivor = %s_id,
            duplicate = %duplicate_id,
            engagements = returned,
            principal = req.principal.as_deref().unwrap_or(""),
            "merge undone"
        );
        Ok(kept)
    }

    /// Whether an event id this lead holds was recorded, with this
    /// content, for a lead merged into it (by that lead's id or key): a
    /// re-delivery of it is a repeat, not a reuse.
    pub(crate) async fn fingerprint_of_merged(
        &self,
        tx: &Tx,
        ws: &str,
        seen: &leadflow_store::StoredEngagement,
        engagement: &leadflow_domain::Engagement,
        occurred_at_given: bool,
    ) -> Result<bool, EngineError> {
        let merged = tx
            .merged_closure(ws, &seen.lead_id, leadflow_store::MAX_MERGE_HOPS)
            .await?;
        Ok(merged.iter().any(|id| {
            crate::leads::engagement_fingerprint(id, engagement, occurred_at_given) == seen.fingerprint
        }))
    }
}

/// A lead found as a duplicate of another, with what matched.
#[derive(Clone, Debug, PartialEq)]
pub struct Candidate {
    pub lead: LeadView,
    /// The attributes that matched: `email`, or every `match_attributes`
    /// attribute (both when both did).
    pub matched: Vec<String>,
}

/// The most candidates `FindDuplicates` answers.
pub const MAX_CANDIDATES: usize = 100;

impl Engine {
    /// The leads that match `key`'s lead by normalised email or by every
    /// `[identity] match_attributes` attribute, under the active policy:
    /// at most `limit`, by id.
    #[tracing::instrument(name = "engine.find_duplicates", skip_all)]
    pub async fn find_duplicates(
        &self,
        ws: &str,
        key: &LeadKey,
        limit: usize,
    ) -> Result<Vec<Candidate>, EngineError> {
        let record = self.find(ws, key).await?;
        let (_, policy) = self.active_policy_read(ws).await?;
        let now = self.now();
        let found = self
            .matching_leads(
                ws,
                &record,
                &policy,
                &[MatchOn::Email, MatchOn::Attributes],
                limit,
            )
            .await?;
        let mut out = Vec::with_capacity(found.len());
        for (candidate, on) in found {
            let scored_with = self.policy_of(ws, candidate.policy_version).await?;
            let mut matched = Vec::new();
            for kind in on {
                match kind {
                    MatchOn::Email => matched.push(leadflow_domain::profile::EMAIL.to_owned()),
                    MatchOn::Attributes => matched.extend(policy.identity.match_attributes.iter().cloned()),
                }
            }
            out.push(Candidate {
                lead: crate::leads::view(&scored_with, candidate, now).into(),
                matched,
            });
        }
        Ok(out)
    }

    /// The leads (not merged, not erased) sharing one of `on` with
    /// `record` under `policy`, each checked against its profile now (a
    /// key kept from an older policy does not count): with what they share.
    async fn matching_leads(
        &self,
        ws: &str,
        record: &LeadRecord,
        policy: &leadflow_domain::Policy,
        on: &[MatchOn],
        limit: usize,
    ) -> Result<Vec<(LeadRecord, Vec<MatchOn>)>, EngineError> {
        let keys: Vec<(MatchOn, String)> = policy
            .identity
            .match_keys(&record.lead.profile)
            .into_iter()
            .filter(|(kind, _)| on.contains(kind))
            .collect();
        let probe: Vec<(&str, &str)> = keys.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let limit = limit.min(MAX_CANDIDATES);
        let rows = self
            .store
            .leads_matching(ws, &probe, &record.id, (limit * 2) as u64)
            .await?;
        let mut out = Vec::new();
        for (id, _) in rows {
            let Some(candidate) = self.store.lead(ws, &id).await? else {
                continue;
            };
            if candidate.lead.stage == Stage::Merged {
                continue;
            }
            let theirs = policy.identity.match_keys(&candidate.lead.profile);
            let shared: Vec<MatchOn> = keys
                .iter()
                .filter(|k| theirs.contains(k))
                .map(|(kind, _)| *kind)
                .collect();
            if !shared.is_empty() {
                out.push((candidate, shared));
            }
            if out.len() == limit {
                break;
            }
        }
        Ok(out)
    }

    /// `[identity] auto_merge_on`: the oldest lead a new lead of `profile`
    /// matches on, locked (with its policy version), if any. Looked up and
    /// locked before the new lead is written, so that no lead is locked
    /// after the routing lock its capture may take. Two captures of one
    /// person wait on each other: the later one finds the first.
    pub(crate) async fn auto_merge_candidate(
        &self,
        tx: &Tx,
        ws: &str,
        identity: &leadflow_domain::policy::Identity,
        profile: &leadflow_domain::profile::Profile,
    ) -> Result<Option<(LeadRecord, Option<i64>)>, EngineError> {
        let keys: Vec<(MatchOn, String)> = identity
            .match_keys(profile)
            .into_iter()
            .filter(|(kind, _)| identity.auto_merge_on.contains(kind))
            .collect();
        if keys.is_empty() {
            return Ok(None);
        }
        let probe: Vec<(&str, &str)> = keys.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        tx.lock_match_keys(ws, &probe).await?;
        let ids = tx.leads_matching(ws, &probe, "", AUTO_MERGE_CANDIDATES).await?;
        // The candidates locked (by id, as they come) and checked as they
        // stand.
        let mut oldest: Option<(LeadRecord, Option<i64>)> = None;
        for (id, _) in ids {
            let Some((record, active)) = tx
                .lock_lead_with_policy(ws, leadflow_store::LeadLookup::Id(&id))
                .await?
            else {
                continue;
            };
            let theirs = identity.match_keys(&record.lead.profile);
            if record.lead.stage == Stage::Merged || !keys.iter().any(|k| theirs.contains(k)) {
                continue;
            }
            let older =
                |than: &LeadRecord| (record.lead.captured_at, &record.id) < (than.lead.captured_at, &than.id);
            if oldest.as_ref().is_none_or(|(o, _)| older(o)) {
                oldest = Some((record, active));
            }
        }
        Ok(oldest)
    }

    /// The new lead `created` (locked in `tx`) merged into `found`, the
    /// candidate [`Self::auto_merge_candidate`] locked: the lead already
    /// there survives, even if the new one was captured earlier (an
    /// import).
    pub(crate) async fn auto_merge(
        &self,
        tx: &Tx,
        req: &Request,
        created: crate::leads::Locked,
        found: (LeadRecord, Option<i64>),
    ) -> Result<KeptMerge, EngineError> {
        let (record, active) = found;
        let survivor = self.locked(tx, req.workspace.as_str(), record, active).await?;
        self.merge_locked(tx, req, survivor, created, None, true).await
    }
}

/// The most candidates an automatic merge looks at.
const AUTO_MERGE_CANDIDATES: u64 = 20;

fn not_found(key: &LeadKey) -> EngineError {
    EngineError::NotFound {
        what: "lead",
        key: key.describe(),
    }
}

/// Drops every score checkpoint of a lead whose log was taken away.
async fn drop_checkpoints(tx: &Tx, ws: &str, lead_id: &str, policy_version: i64) -> Result<(), EngineError> {
    let first = leadflow_domain::EventKey {
        occurred_at: Timestamp::from_micros(i64::MIN),
        event_id: String::new(),
    };
    tx.replace_checkpoints(ws, lead_id, policy_version, Some(&first), &[])
        .await?;
    Ok(())
}

/// Appends LEAD_MERGED or LEAD_UNMERGED, naming both leads, with `lead`
/// (the survivor, or the duplicate given back) as it is after.
fn announce_merge(
    tx: &Tx,
    target: &Target<'_>,
    lead: &Scored,
    kind: &str,
    note: MergeNote,
    at: Timestamp,
) -> Result<(), EngineError> {
    let record: &LeadRecord = &lead.record;
    let payload = OutboxPayload {
        lead_id: record.id.clone(),
        external_key: record.external_key.clone(),
        stage: record.lead.stage,
        lead_version: record.version,
        scores: lead.scores.clone(),
        policy_version: record.policy_version,
        transition: None,
        trigger: None,
        sla_breach: None,
        level_change: None,
        merge: Some(note),
        assignment: None,
    };
    tx.append_outbox(
        target.ws,
        vec![NewOutboxEvent {
            event_id: uuid::Uuid::now_v7().to_string(),
            lead_id: record.id.clone(),
            subject: leadflow_store::Subject::Lead,
            kind: kind.to_owned(),
            payload: serde_json::to_string(&payload).map_err(|e| EngineError::Internal(e.to_string()))?,
            occurred_at: at,
            created_at: target.now,
            traceparent: target.traceparent.map(str::to_owned),
            suppressed: false,
        }],
    );
    Ok(())
}
