//! Many engagements, possibly for many leads, in one call. Every item is
//! checked before anything is written; then the items are written in order,
//! in chunks that each hold the writer (SQLite's one writer, PostgreSQL's
//! row locks) for about [`CHUNK_TIME`], so that other writers get in
//! between. A failure after the first chunk says what was committed; a
//! retry of the whole batch is safe, since event ids make the committed
//! items repeats.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use leadflow_domain::{Context, Engagement, Policy, Timestamp};
use leadflow_store::{LeadRecord, NewEngagement, StoredEngagement};

use crate::Engine;
use crate::error::EngineError;
use crate::leads::{Known, Locked, MAX_BATCH, engagement_fingerprint, retrying};
use crate::log::Log;
use crate::model::{BatchItem, LeadKey, Recorded, Request};
use crate::views::Outcome;

/// About how long one chunk of a batch may hold the writer: a single call
/// waiting behind it should wait no more than a few times its own length.
const CHUNK_TIME: Duration = Duration::from_millis(10);
/// The first chunk of a batch that starts with a late item, before the
/// cost of one is known.
const FIRST_LATE_CHUNK: usize = 2;
/// The most items one chunk may hold.
const MAX_CHUNK: usize = 100;

/// Events of lead logs a batch keeps from one chunk to the next, at most.
const MAX_KEPT_EVENTS: usize = 200_000;

/// The logs a batch has read, kept from one chunk to the next with the
/// lead record they go with: late items of one lead then read its log once
/// for the whole batch. A chunk that finds a lead otherwise (another writer
/// came in between) reads its log again.
#[derive(Debug, Default)]
pub(crate) struct Logs {
    by_lead: HashMap<String, (LeadRecord, Vec<Engagement>)>,
}

impl Logs {
    /// The logs still good for `locked`, by lead id.
    fn still_good(self, locked: &HashMap<String, Locked>) -> HashMap<String, Vec<Engagement>> {
        self.by_lead
            .into_iter()
            .filter(|(id, (record, _))| locked.get(id).is_some_and(|l| l.record == *record))
            .map(|(id, (_, log))| (id, log))
            .collect()
    }

    /// The logs of a committed chunk, with the records they go with now;
    /// as many as fit in [`MAX_KEPT_EVENTS`].
    fn committed(kept: HashMap<String, Vec<Engagement>>, locked: &HashMap<String, Locked>) -> Self {
        let mut by_lead = HashMap::with_capacity(kept.len());
        let mut events = 0;
        for (id, log) in kept {
            let Some(l) = locked.get(&id) else { continue };
            if events + log.len() > MAX_KEPT_EVENTS {
                continue;
            }
            events += log.len();
            by_lead.insert(id, (l.record.clone(), log));
        }
        Self { by_lead }
    }
}

/// What a batch's items are, before any is written.
struct Survey {
    /// The refused items, by index, in order.
    refusals: Vec<(usize, EngineError)>,
    /// Whether each item is dated before its lead's latest engagement, so
    /// that deciding it replays the lead's log.
    late: Vec<bool>,
    /// An item names a lead merged into another (by its key): such a batch
    /// goes one item at a time, each resolved to the survivor.
    merged: bool,
}

/// Where the chunk that starts at `start` ends, and how many late items it
/// holds: at most [`MAX_CHUNK`] items, and as many late ones as fit in
/// [`CHUNK_TIME`] at `late_cost` each ([`FIRST_LATE_CHUNK`] while that is
/// unknown); at least one item.
fn chunk_end(late: &[bool], start: usize, late_cost: Option<Duration>) -> (usize, usize) {
    let allowed = late_cost.map_or(FIRST_LATE_CHUNK, |cost| {
        let fit = CHUNK_TIME.as_micros() / cost.as_micros().max(1);
        usize::try_from(fit).unwrap_or(MAX_CHUNK).clamp(1, MAX_CHUNK)
    });
    let (mut end, mut seen) = (start, 0);
    while end < late.len() && end - start < MAX_CHUNK {
        if late[end] {
            if seen == allowed {
                break;
            }
            seen += 1;
        }
        end += 1;
    }
    (end, seen)
}

impl EngineError {
    /// The error of a batch whose items `refusals` were refused (by index,
    /// in order); `None` when nothing was refused.
    pub fn batch(refusals: Vec<(usize, EngineError)>) -> Option<Self> {
        (!refusals.is_empty()).then_some(Self::Batch { refusals })
    }
}

impl Engine {
    /// Records every item in order. If any item is refused, nothing is
    /// written: the error is [`EngineError::Batch`], every refused item with
    /// what it would get alone. Then
    /// the items are written in chunks of bounded time; if one fails after
    /// others were committed, the error is [`EngineError::Committed`] with
    /// their outcomes. Refused items are named by their index in `items`,
    /// their fields by the domain's paths (`engagement.type`).
    #[tracing::instrument(name = "engine.record_engagements", skip_all, fields(items = items.len()))]
    pub async fn record_engagements(
        &self,
        req: &Request,
        items: &[BatchItem],
    ) -> Result<Vec<Outcome>, EngineError> {
        if items.len() > MAX_BATCH {
            return Err(EngineError::invalid(
                "BATCH_TOO_LARGE",
                "engagements",
                format!(
                    "{} engagements in one call; the limit is {MAX_BATCH}",
                    items.len()
                ),
            ));
        }
        let indexed: Vec<(usize, &BatchItem)> = items.iter().enumerate().collect();
        let survey = self.survey(req, &indexed).await?;
        if let Some(refused) = EngineError::batch(survey.refusals) {
            return Err(refused);
        }
        if survey.merged || items.iter().any(|i| matches!(i.lead, LeadKey::Anonymous(_))) {
            return self.one_at_a_time(req, items).await;
        }
        let mut outcomes: Vec<Outcome> = Vec::with_capacity(items.len());
        let mut logs = Logs::default();
        // A late item (dated before its lead's latest engagement) replays
        // the lead's log, and is what makes a chunk long: a chunk holds as
        // many as fit in CHUNK_TIME at the time the last ones took (few,
        // until that is known), and any number of other items.
        let mut late_cost: Option<Duration> = None;
        while outcomes.len() < items.len() {
            let start = outcomes.len();
            let (end, late) = chunk_end(&survey.late, start, late_cost);
            let chunk: Vec<(&Request, &BatchItem)> =
                items[start..end].iter().map(|item| (req, item)).collect();
            let began = Instant::now();
            match retrying!(self.try_batch(&chunk, start, &mut logs)) {
                Ok(done) => {
                    self.count_recorded(&done);
                    outcomes.extend(done.into_iter().map(Outcome::from));
                }
                Err(error) if start == 0 => return Err(error),
                Err(error) => {
                    return Err(EngineError::Committed {
                        error: Box::new(error),
                        outcomes,
                    });
                }
            }
            if late > 0 {
                late_cost = Some(began.elapsed() / u32::try_from(late).unwrap_or(u32::MAX));
            }
        }
        Ok(outcomes)
    }

    /// A checked batch with anonymous items: each item committed on its own,
    /// in order (anonymous activity is recorded one engagement at a time).
    async fn one_at_a_time(&self, req: &Request, items: &[BatchItem]) -> Result<Vec<Outcome>, EngineError> {
        let mut outcomes = Vec::with_capacity(items.len());
        for (i, item) in items.iter().enumerate() {
            let (e, given) = (&item.engagement, item.occurred_at_given);
            let done = match &item.lead {
                LeadKey::Anonymous(id) => self.record_anonymous(req, id, e, given).await,
                key => self.record_engagement(req, key, e, given).await,
            }
            .map_err(|error| match error {
                // A refusal names its item, as the batch's check does.
                refused @ (EngineError::NotFound { .. }
                | EngineError::MergedInto { .. }
                | EngineError::InvalidArgument { .. }
                | EngineError::Domain(_)) => EngineError::Batch {
                    refusals: vec![(i, refused)],
                },
                other => other,
            });
            match done {
                Ok(outcome) => outcomes.push(outcome),
                Err(error) if outcomes.is_empty() => return Err(error),
                Err(error) => {
                    return Err(EngineError::Committed {
                        error: Box::new(error),
                        outcomes,
                    });
                }
            }
        }
        Ok(outcomes)
    }

    /// Why each of `items` (with its index in the caller's list) would be
    /// refused, without writing or locking anything: an unknown lead, an
    /// engagement the active policy does not take, an event id already
    /// recorded (or used earlier in the list) with other content. The
    /// refusals by index, in order; those of a batch's items are found
    /// again when they are written, should the data change in between.
    pub async fn refusals(
        &self,
        req: &Request,
        items: &[(usize, &BatchItem)],
    ) -> Result<Vec<(usize, EngineError)>, EngineError> {
        Ok(self.survey(req, items).await?.refusals)
    }

    /// [`Self::refusals`], and which items are late.
    async fn survey(&self, req: &Request, items: &[(usize, &BatchItem)]) -> Result<Survey, EngineError> {
        let ws = req.workspace.as_str();
        let (_, policy) = self.active_policy_read(ws).await?;
        let (ids, keys) = lead_keys(items.iter().map(|(_, item)| *item));
        let mut event_ids: Vec<&str> = items
            .iter()
            .map(|(_, item)| item.engagement.event_id.as_str())
            .collect();
        event_ids.sort_unstable();
        event_ids.dedup();
        let found = self.store.batch_survey(ws, &ids, &keys, &event_ids).await?;
        let mut lead_ids: HashMap<LeadKey, String> = HashMap::new();
        // An anonymous id is a subject whether identified or not: its lead's
        // id, or none yet.
        let anonymous: Vec<&str> = items
            .iter()
            .filter_map(|(_, item)| match &item.lead {
                LeadKey::Anonymous(id) => Some(id.as_str()),
                _ => None,
            })
            .collect();
        if !anonymous.is_empty() {
            let mut identified = self.store.anonymous_leads(ws, &anonymous).await?;
            for id in anonymous {
                let lead = identified.remove(id).unwrap_or_default();
                lead_ids.entry(LeadKey::Anonymous(id.to_owned())).or_insert(lead);
            }
        }
        let mut latest: HashMap<String, Timestamp> = HashMap::new();
        let merged_named = found.leads.iter().any(|l| l.merged);
        // A merged lead named by its id is refused (by its key, it names
        // its survivor).
        let mut merged_ids: HashMap<String, String> = HashMap::new();
        for lead in found.leads.iter().filter(|l| l.merged) {
            let survivor = self
                .store
                .merge_of(ws, &lead.id)
                .await?
                .map(|m| m.survivor_id)
                .unwrap_or_default();
            merged_ids.insert(lead.id.clone(), survivor);
        }
        for lead in found.leads {
            if let Some(key) = lead.external_key {
                lead_ids.insert(LeadKey::ExternalKey(key), lead.id.clone());
            }
            if let Some(last) = lead.last_engagement_at {
                latest.insert(lead.id.clone(), last);
            }
            lead_ids.insert(LeadKey::Id(lead.id.clone()), lead.id);
        }
        let recorded: HashMap<String, StoredEngagement> = found
            .engagements
            .into_iter()
            .map(|e| (e.engagement.event_id.clone(), e))
            .collect();
        // The leads merged into a lead an item names, where an event id it
        // sends is recorded for that lead: a re-delivery may be theirs.
        let mut merged_into: HashMap<String, Vec<String>> = HashMap::new();
        for (_, item) in items {
            let (Some(lead), Some(seen)) =
                (lead_ids.get(&item.lead), recorded.get(&item.engagement.event_id))
            else {
                continue;
            };
            let repeat = matches!(item.lead, LeadKey::Anonymous(_))
                || engagement_fingerprint(lead, &item.engagement, item.occurred_at_given) == seen.fingerprint;
            if !repeat && seen.lead_id == *lead && !merged_into.contains_key(lead) {
                let ids = self
                    .store
                    .merged_closure(ws, lead, leadflow_store::MAX_MERGE_HOPS)
                    .await?;
                merged_into.insert(lead.clone(), ids);
            }
        }
        let ctx = Context { now: self.now() };
        // Earlier in the list: (index, fingerprint) by event id.
        let mut listed: HashMap<&str, (usize, String)> = HashMap::new();
        let mut survey = Survey {
            refusals: Vec::new(),
            late: Vec::with_capacity(items.len()),
            merged: merged_named,
        };
        for (i, item) in items {
            if let LeadKey::Id(id) = &item.lead
                && let Some(survivor) = merged_ids.get(id)
            {
                survey.refusals.push((
                    *i,
                    EngineError::MergedInto {
                        lead_id: id.clone(),
                        survivor_id: survivor.clone(),
                    },
                ));
            } else if let Some(refusal) = refusal(
                &policy,
                &ctx,
                *i,
                item,
                &lead_ids,
                Seen {
                    recorded: &recorded,
                    merged: &merged_into,
                },
                &mut listed,
            ) {
                survey.refusals.push((*i, refusal));
            }
            let at = item.engagement.occurred_at;
            let late = match lead_ids.get(&item.lead) {
                _ if matches!(item.lead, LeadKey::Anonymous(_)) => false,
                Some(id) => {
                    let last = latest.entry(id.clone()).or_insert(at);
                    let late = at < *last;
                    *last = (*last).max(at);
                    late
                }
                None => false,
            };
            survey.late.push(late);
        }
        Ok(survey)
    }

    /// Items of one workspace, each under its own request, in one
    /// transaction: all of them or none. The leads are locked up front in
    /// one statement, the engagements inserted in one, and the other rows
    /// written at commit a statement a table (see `Tx::defer_writes`).
    /// A refused item is named by `offset + i`, its index in the batch. The lead logs
    /// read are kept in `logs` for the next chunk once this one commits.
    pub(crate) async fn try_batch(
        &self,
        items: &[(&Request, &BatchItem)],
        offset: usize,
        logs: &mut Logs,
    ) -> Result<Vec<Recorded>, EngineError> {
        let Some((first, _)) = items.first() else {
            return Ok(Vec::new());
        };
        let ws = first.workspace.as_str();
        let tx = self.store.begin().await?;
        tx.defer_writes();

        let (ids, keys) = lead_keys(items.iter().map(|(_, item)| *item));
        let (records, active) = tx.lock_leads_with_policy(ws, &ids, &keys).await?;
        // Kept by lead id, so a lead named both ways is one record.
        let mut by_key: HashMap<LeadKey, String> = HashMap::with_capacity(records.len());
        let mut locked: HashMap<String, Locked> = HashMap::with_capacity(records.len());
        for record in records {
            if let Some(k) = &record.external_key {
                by_key.insert(LeadKey::ExternalKey(k.clone()), record.id.clone());
            }
            by_key.insert(LeadKey::Id(record.id.clone()), record.id.clone());
            if record.lead.stage == leadflow_domain::Stage::Merged {
                // Merged since the batch was looked at: a concurrent
                // update won (a caller's retry looks again; a group of
                // single calls goes one by one).
                return Err(EngineError::Conflict(format!(
                    "lead {} was merged into another meanwhile",
                    record.id
                )));
            }
            locked.insert(record.id.clone(), self.locked(&tx, ws, record, active).await?);
        }
        // Every engagement whose lead is locked, recorded up front in one
        // statement; an event id that was not inserted is a repeat.
        let fingerprints: Vec<Option<String>> = items
            .iter()
            .map(|(_, item)| {
                let id = by_key.get(&item.lead)?;
                Some(engagement_fingerprint(
                    id,
                    &item.engagement,
                    item.occurred_at_given,
                ))
            })
            .collect();
        let new: Vec<NewEngagement<'_>> = items
            .iter()
            .zip(&fingerprints)
            .filter_map(|((_, item), fp)| {
                Some(NewEngagement {
                    lead_id: by_key.get(&item.lead)?,
                    engagement: &item.engagement,
                    fingerprint: fp.as_deref()?,
                })
            })
            .collect();
        let mut inserted = tx.insert_engagements_if_new(ws, &new, self.now()).await?;
        // What each lead's log leaves out until its item is applied: the
        // engagements inserted above, in order.
        let mut unapplied: HashMap<&str, Vec<String>> = HashMap::new();
        for (_, item) in items {
            if let Some(id) = by_key.get(&item.lead)
                && inserted.contains(item.engagement.event_id.as_str())
            {
                unapplied
                    .entry(id.as_str())
                    .or_default()
                    .push(item.engagement.event_id.clone());
            }
        }
        let mut kept = std::mem::take(logs).still_good(&locked);

        let mut outcomes = Vec::with_capacity(items.len());
        let mut refusals: Vec<(usize, EngineError)> = Vec::new();
        let mut events = 0;
        for (i, ((req, item), fingerprint)) in items.iter().zip(&fingerprints).enumerate() {
            let i = offset + i;
            let id = by_key.get(&item.lead);
            let known = match fingerprint.as_deref() {
                // Not locked up front (not found, or named by a key that a
                // concurrent call has just given a lead): found out on its own.
                None => Known::Unknown,
                Some(fingerprint) if inserted.remove(item.engagement.event_id.as_str()) => {
                    Known::Inserted { fingerprint }
                }
                Some(fingerprint) => Known::Recorded { fingerprint },
            };
            let current = id.and_then(|id| locked.get(id)).cloned();
            let own = &item.engagement.event_id;
            let mut leaving_out = id
                .and_then(|id| unapplied.get(id.as_str()))
                .cloned()
                .unwrap_or_default();
            if !leaving_out.contains(own) {
                leaving_out.push(own.clone());
            }
            let mut log = Log::from_kept(id.and_then(|id| kept.remove(id)), leaving_out);
            let result = self
                .engagement_in(
                    &tx,
                    req,
                    &item.lead,
                    current,
                    known,
                    &item.engagement,
                    item.occurred_at_given,
                    &mut log,
                )
                .await;
            if let Some(id) = id {
                if let Some(list) = unapplied.get_mut(id.as_str()) {
                    list.retain(|e| e != own);
                }
                if let Some(log) = log.into_kept() {
                    kept.insert(id.clone(), log);
                }
            }
            if result.is_err()
                && let Some(id) = id
            {
                // A refused item may have written before it was refused
                // (overdue timers, a policy change): the lead is read again.
                locked.remove(id);
            }
            match result {
                Ok(applied) => {
                    if let Some(l) = locked.get_mut(&applied.outcome.lead.record.id) {
                        l.record = applied.outcome.lead.record.clone();
                    }
                    events += applied.events;
                    outcomes.push(applied.outcome);
                }
                Err(
                    e @ (EngineError::NotFound { .. }
                    | EngineError::InvalidArgument { .. }
                    | EngineError::Domain(_)),
                ) => refusals.push((i, e)),
                Err(other) => return Err(other),
            }
        }
        if let Some(refused) = EngineError::batch(refusals) {
            // Dropping the transaction rolls back every item already applied.
            return Err(refused);
        }
        tx.commit().await?;
        *logs = Logs::committed(kept, &locked);
        if events > 0 {
            self.announce(ws);
        }
        Ok(outcomes)
    }

    /// Counts the engagements of `outcomes` that were new.
    pub(crate) fn count_recorded(&self, outcomes: &[Recorded]) {
        let recorded = outcomes.iter().filter(|o| !o.duplicate).count() as u64;
        self.counters
            .engagements_recorded
            .fetch_add(recorded, std::sync::atomic::Ordering::Relaxed);
    }

    /// The workspace's active policy, read outside any transaction.
    pub(crate) async fn active_policy_read(&self, ws: &str) -> Result<(i64, Arc<Policy>), EngineError> {
        let version = self
            .store
            .active_policy_version(ws)
            .await?
            .ok_or_else(|| EngineError::NotReady(format!("workspace {ws:?} has no active policy")))?;
        if let Some(policy) = self.cached_policy(ws, version) {
            return Ok((version, policy));
        }
        let record =
            self.store.policy(ws, version).await?.ok_or_else(|| {
                EngineError::Internal(format!("policy version {version} of {ws:?} is missing"))
            })?;
        Ok((version, self.cache_policy(ws, version, &record.source)?))
    }
}

/// The leads `items` name: their ids and their external keys, each once.
fn lead_keys<'a>(items: impl Iterator<Item = &'a BatchItem>) -> (Vec<&'a str>, Vec<&'a str>) {
    let mut ids: Vec<&str> = Vec::new();
    let mut keys: Vec<&str> = Vec::new();
    for item in items {
        match &item.lead {
            LeadKey::Id(id) => ids.push(id),
            LeadKey::ExternalKey(k) => keys.push(k),
            // Not a lead a batch locks: refused as unknown (anonymous
            // activity is recorded one call at a time).
            LeadKey::Anonymous(_) => {}
        }
    }
    for list in [&mut ids, &mut keys] {
        list.sort_unstable();
        list.dedup();
    }
    (ids, keys)
}

/// Why the item at `i` would be refused, if it would.
/// What the store holds of a batch's event ids: the engagements recorded
/// under them, and the leads merged into the leads they were recorded for.
#[derive(Clone, Copy)]
struct Seen<'s> {
    recorded: &'s HashMap<String, StoredEngagement>,
    merged: &'s HashMap<String, Vec<String>>,
}

fn refusal<'a>(
    policy: &Policy,
    ctx: &Context,
    i: usize,
    item: &'a BatchItem,
    lead_ids: &HashMap<LeadKey, String>,
    seen: Seen<'_>,
    listed: &mut HashMap<&'a str, (usize, String)>,
) -> Option<EngineError> {
    let Seen { recorded, merged } = seen;
    let Some(lead_id) = lead_ids.get(&item.lead) else {
        return Some(EngineError::NotFound {
            what: "lead",
            key: item.lead.describe(),
        });
    };
    let e = &item.engagement;
    if let Err(refused) = leadflow_domain::lifecycle::check_engagement(policy, e, ctx) {
        return Some(refused.into());
    }
    let subject = match &item.lead {
        LeadKey::Anonymous(id) => crate::identity::subject(id),
        _ => lead_id.clone(),
    };
    let fingerprint = engagement_fingerprint(&subject, e, item.occurred_at_given);
    // Recorded for a lead merged into this one since: a repeat too.
    let merged_repeat = |seen: &StoredEngagement| {
        seen.lead_id == *lead_id
            && merged.get(lead_id).is_some_and(|ids| {
                ids.iter()
                    .any(|id| engagement_fingerprint(id, e, item.occurred_at_given) == seen.fingerprint)
            })
    };
    let reused = |description: String| {
        Some(EngineError::invalid(
            "EVENT_ID_REUSED",
            "engagement.event_id",
            description,
        ))
    };
    if let Some(seen) = recorded.get(&e.event_id) {
        if seen.fingerprint != fingerprint && !merged_repeat(seen) {
            let whose = if seen.lead_id.is_empty() {
                "anonymous activity".to_owned()
            } else {
                format!("lead {}", seen.lead_id)
            };
            return reused(format!(
                "event id {:?} was already recorded with other content ({whose}, {} at {})",
                e.event_id, seen.engagement.kind, seen.engagement.occurred_at
            ));
        }
        return None;
    }
    match listed.get(e.event_id.as_str()) {
        Some((j, first)) if *first != fingerprint => reused(format!(
            "event id {:?} is used by item {j} of this batch with other content",
            e.event_id
        )),
        Some(_) => None,
        None => {
            listed.insert(&e.event_id, (i, fingerprint));
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_chunk_holds_as_many_late_items_as_fit_its_time() {
        let late = [false, true, false, true, true, true, false];
        // The cost of a late item unknown: the first two of them.
        assert_eq!(chunk_end(&late, 0, None), (4, 2));
        // 4 ms each fit twice in 10 ms; 60 ms once; 50 µs any number.
        assert_eq!(chunk_end(&late, 0, Some(Duration::from_millis(4))), (4, 2));
        assert_eq!(chunk_end(&late, 1, Some(Duration::from_millis(60))), (3, 1));
        assert_eq!(chunk_end(&late, 0, Some(Duration::from_micros(50))), (7, 4));
        // Items that are not late fill a chunk up to its size.
        let cheap = [false; 250];
        assert_eq!(chunk_end(&cheap, 0, None), (MAX_CHUNK, 0));
        assert_eq!(chunk_end(&cheap, 200, None), (250, 0));
    }
}
