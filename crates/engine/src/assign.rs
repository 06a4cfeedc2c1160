//! A lead's owner: after each decision (the release its moves ask for, the
//! `[[route]]` it sets off, the owners' open leads), and by hand
//! (`AssignLead`). Every change is made under the workspace's routing lock,
//! taken after the lead's: concurrent transactions and replicas choose one
//! after the other, from the state the previous one left, so a team's turn
//! is never skipped nor taken twice and no owner goes past its capacity.

use std::collections::BTreeSet;

use leadflow_domain::handoff::{Situation, is_open, occasions, plan, reads_pool};
use leadflow_domain::lifecycle::Scores;
use leadflow_domain::workflow::Event;
use leadflow_domain::{Lead, Policy, Stage, Timestamp};
use leadflow_store::{AssignmentRecord, RoutingPool, Tx};
use serde::{Deserialize, Serialize};

use crate::error::EngineError;

/// What a change of owner says in its event (`LEAD_ASSIGNED`, or
/// `LEAD_UNROUTED` when no owner could take the lead).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AssignmentNote {
    pub from: Option<String>,
    pub to: Option<String>,
    /// `ROUTE`, `MANUAL`, `RELEASE`, `SLA` or `MERGE`.
    pub cause: String,
    pub route_id: Option<String>,
    pub explanation: String,
    pub reason: Option<String>,
    /// The token (by name) whose call made it.
    #[serde(default)]
    pub principal: Option<String>,
}

impl AssignmentNote {
    /// The change as the lead's assignments keep it (its seq set when
    /// written).
    fn record(&self, lead_id: &str, at: Timestamp, stage: Stage) -> AssignmentRecord {
        AssignmentRecord {
            lead_id: lead_id.to_owned(),
            seq: 0,
            at,
            from: self.from.clone(),
            to: self.to.clone(),
            cause: self.cause.clone(),
            route_id: self.route_id.clone(),
            explanation: self.explanation.clone(),
            reason: self.reason.clone(),
            principal: self.principal.clone(),
            stage,
        }
    }
}

/// The event kinds of a change of owner.
pub(crate) const ASSIGNED: &str = "LEAD_ASSIGNED";
pub(crate) const UNROUTED: &str = "LEAD_UNROUTED";

/// The lead's owner after a decision, and the events saying how it came.
#[derive(Debug, Default)]
pub(crate) struct Handed {
    pub(crate) owner: Option<String>,
    /// (kind, note, instant), in order.
    pub(crate) events: Vec<(&'static str, AssignmentNote, Timestamp)>,
}

/// The lead's state around a decision, as routing reads it.
pub(crate) struct Around<'a> {
    pub(crate) ws: &'a str,
    pub(crate) policy: &'a Policy,
    pub(crate) lead_id: &'a str,
    /// The owner and stage before; `None` for a new lead.
    pub(crate) before: Option<(Option<&'a str>, Stage)>,
    pub(crate) lead: &'a Lead,
    pub(crate) scores: &'a Scores,
    pub(crate) principal: Option<&'a str>,
    /// The decision is the lead's first under a new policy version.
    pub(crate) policy_change: bool,
}

/// Keeps a lead's owner through its decision's `events`, as the domain's
/// [`plan`] says, under the workspace's routing lock when it reads the
/// owners or writes anything: the changes recorded, the owners' open leads
/// and the teams' turns moved, the lead's owner set.
pub(crate) async fn after_decision(
    tx: &Tx,
    at: &Around<'_>,
    events: &[Event],
) -> Result<Handed, EngineError> {
    let before_owner = at.before.and_then(|(o, _)| o);
    if at.policy.routing.routes.is_empty() && before_owner.is_none() {
        return Ok(Handed::default());
    }
    let found = occasions(at.policy, events);
    let stay = if found.reassign.is_empty() {
        BTreeSet::new()
    } else {
        tx.owners_since(at.ws, at.lead_id, at.lead.entered_stage_at)
            .await?
    };
    let account = if at.policy.routing.reads_account() {
        tx.route_account(at.ws, at.lead_id).await?
    } else {
        None
    };
    let situation = Situation {
        policy: at.policy,
        owner: before_owner,
        stage_before: at.before.map(|(_, stage)| stage),
        stage: at.lead.stage,
        profile: &at.lead.profile,
        scores: at.scores,
        policy_change: at.policy_change,
        stay: &stay,
        account: account.as_ref(),
    };
    let mut pool = if reads_pool(&situation, &found) {
        tx.lock_routing(at.ws).await?;
        tx.routing_pool(at.ws).await?
    } else {
        RoutingPool::default()
    };
    let planned = plan(&situation, &found, &mut pool);
    let when = at.lead.evaluated_at.max(at.lead.last_transition_at);
    let waits = planned.owner.is_none()
        && is_open(at.lead.stage)
        && planned.changes.iter().any(|c| !c.assigned && c.to.is_none());
    let owner = planned.owner.clone();
    let events = write_plan(tx, at, planned, when).await?;
    let left_open = !is_open(at.lead.stage) && at.before.is_some_and(|(_, stage)| is_open(stage));
    if waits {
        tx.wait_for_owner(at.ws, at.lead_id, when).await?;
    } else if (owner.is_some() && before_owner.is_none()) || (owner.is_none() && left_open) {
        tx.stop_waiting(at.ws, at.lead_id).await?;
    }
    if owner.as_deref() != before_owner {
        tx.set_lead_owner(at.ws, at.lead_id, owner.as_deref()).await?;
    }
    Ok(Handed { owner, events })
}

/// Leads woken when an owner loses an open lead.
const WAKE_ON_RELEASE: u64 = 16;
/// Leads woken when an owner is created or updated.
const WAKE_ON_OWNER: u64 = 100;

/// Writes what a plan changes (under the routing lock): the teams' turns,
/// the owners' open leads (waking the leads that wait longest when an
/// owner has fewer), and each change in the lead's assignments; the events
/// saying so.
async fn write_plan(
    tx: &Tx,
    at: &Around<'_>,
    planned: leadflow_domain::handoff::Plan,
    when: Timestamp,
) -> Result<Vec<(&'static str, AssignmentNote, Timestamp)>, EngineError> {
    let mut events = Vec::new();
    if planned.is_empty() {
        return Ok(events);
    }
    tx.lock_routing(at.ws).await?;
    for (team, cursor) in &planned.cursors {
        tx.set_team_cursor(at.ws, team, cursor).await?;
    }
    for (owner, n) in &planned.counts {
        tx.add_open_leads(at.ws, owner, *n).await?;
    }
    if planned.counts.values().any(|n| *n < 0) {
        tx.wake_waiting(at.ws, WAKE_ON_RELEASE, when).await?;
    }
    for change in planned.changes {
        let note = AssignmentNote {
            from: change.from,
            to: change.to,
            cause: change.cause.as_str().to_owned(),
            route_id: change.route_id,
            explanation: change.explanation,
            reason: None,
            principal: at.principal.map(str::to_owned),
        };
        record(tx, at, &note, when).await?;
        let kind = if change.assigned { ASSIGNED } else { UNROUTED };
        events.push((kind, note, when));
    }
    Ok(events)
}

/// Capacity may have freed in the workspace (an owner created, back in
/// office, or given more): the leads waiting longest are routed again.
/// Call with the routing lock taken.
pub(crate) async fn owners_changed(tx: &Tx, ws: &str, now: Timestamp) -> Result<(), EngineError> {
    tx.wake_waiting(ws, WAKE_ON_OWNER, now).await?;
    Ok(())
}

/// An erased lead leaves its owner (its assignments go with its data).
pub(crate) async fn release_erased(
    tx: &Tx,
    ws: &str,
    record: &leadflow_store::LeadRecord,
) -> Result<(), EngineError> {
    if let Some(owner) = &record.owner {
        tx.lock_routing(ws).await?;
        if is_open(record.lead.stage) {
            tx.add_open_leads(ws, owner, -1).await?;
            tx.wake_waiting(ws, WAKE_ON_RELEASE, record.updated_at).await?;
        }
        tx.set_lead_owner(ws, &record.id, None).await?;
    }
    Ok(())
}

async fn record(tx: &Tx, at: &Around<'_>, note: &AssignmentNote, when: Timestamp) -> Result<(), EngineError> {
    record_at(tx, at, note, when).await.map(|_| ())
}

/// Appends the change to the lead's assignments: its seq.
async fn record_at(
    tx: &Tx,
    at: &Around<'_>,
    note: &AssignmentNote,
    when: Timestamp,
) -> Result<i64, EngineError> {
    Ok(tx
        .insert_assignment(at.ws, &note.record(at.lead_id, when, at.lead.stage))
        .await?)
}

/// What `AssignLead` did: the lead after, and the change (`None` when the
/// lead already had that owner, or none).
#[derive(Clone, Debug, PartialEq)]
pub struct Assigned {
    pub lead: crate::views::LeadView,
    pub assignment: Option<AssignmentRecord>,
}

/// `Assigned` as stored for a retry.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct StoredAssigned {
    lead: crate::model::Scored,
    assignment: Option<StoredAssignment>,
}

/// An assignment as stored for a retry (the record has no serde form).
#[derive(Clone, Debug, Serialize, Deserialize)]
struct StoredAssignment {
    seq: i64,
    at: Timestamp,
    note: AssignmentNote,
    stage: Stage,
}

impl StoredAssigned {
    fn public(self) -> Assigned {
        let lead_id = self.lead.record.id.clone();
        Assigned {
            assignment: self.assignment.map(|a| AssignmentRecord {
                seq: a.seq,
                ..a.note.record(&lead_id, a.at, a.stage)
            }),
            lead: self.lead.into(),
        }
    }
}

/// The longest reason `AssignLead` takes.
pub const MAX_ASSIGN_REASON_CHARS: usize = 1_000;

impl crate::Engine {
    /// Routes again up to `limit` leads woken since capacity may have
    /// freed, longest waiting first: each through its stage's route, in a
    /// transaction of its own with the lead locked first. One that still
    /// finds no owner goes back to sleep (no new event). Returns how many
    /// were given an owner.
    pub async fn route_woken(&self, limit: u64) -> Result<usize, EngineError> {
        let woken = self.store.woken_leads(limit).await?;
        let mut routed = 0;
        for (ws, lead_id) in &woken {
            match crate::leads::retrying!(self.try_route_woken(ws, lead_id)) {
                Ok(true) => routed += 1,
                Ok(false) => {}
                Err(e) => {
                    tracing::warn!(workspace = %ws, lead_id = %lead_id, error = %e, "a waiting lead could not be routed");
                }
            }
        }
        Ok(routed)
    }

    async fn try_route_woken(&self, ws: &str, lead_id: &str) -> Result<bool, EngineError> {
        let tx = self.store.begin().await?;
        let locked = match self.lock(&tx, ws, &crate::LeadKey::Id(lead_id.to_owned())).await {
            Ok(l) => l,
            Err(EngineError::NotFound { .. } | EngineError::MergedInto { .. }) => {
                tx.stop_waiting(ws, lead_id).await?;
                tx.commit().await?;
                return Ok(false);
            }
            Err(e) => return Err(e),
        };
        if !tx.awake(ws, lead_id).await? {
            return Ok(false); // routed by another worker meanwhile
        }
        let crate::leads::Locked { record, policy, .. } = locked;
        let stage = record.lead.stage;
        if record.owner.is_some() || !is_open(stage) {
            tx.stop_waiting(ws, lead_id).await?;
            tx.commit().await?;
            return Ok(false);
        }
        let now = self.now();
        let scores = record.lead.scores_at(&policy, now);
        let stay = BTreeSet::new();
        let account = if policy.routing.reads_account() {
            tx.route_account(ws, lead_id).await?
        } else {
            None
        };
        let situation = Situation {
            policy: &policy,
            owner: None,
            stage_before: Some(stage),
            stage,
            profile: &record.lead.profile,
            scores: &scores,
            policy_change: false,
            stay: &stay,
            account: account.as_ref(),
        };
        let found = leadflow_domain::handoff::Occasions {
            on: vec![leadflow_domain::policy::RouteOn::Entered(stage)],
            ..Default::default()
        };
        tx.lock_routing(ws).await?;
        let mut pool = tx.routing_pool(ws).await?;
        let mut planned = plan(&situation, &found, &mut pool);
        if planned.changes.is_empty() {
            // No route of its stage takes it any more (the policy changed,
            // or its conditions no longer hold): it stops waiting.
            tx.stop_waiting(ws, lead_id).await?;
            tx.commit().await?;
            return Ok(false);
        }
        let Some(owner) = planned.owner.clone() else {
            tx.sleep_waiting(ws, lead_id, now).await?;
            tx.commit().await?;
            return Ok(false);
        };
        for change in &mut planned.changes {
            change.explanation = format!("capacity freed: {}", change.explanation);
        }
        let around = Around {
            ws,
            policy: &policy,
            lead_id,
            before: None,
            lead: &record.lead,
            scores: &scores,
            principal: None,
            policy_change: false,
        };
        let events = write_plan(&tx, &around, planned, now).await?;
        tx.stop_waiting(ws, lead_id).await?;
        tx.set_lead_owner(ws, lead_id, Some(&owner)).await?;
        let snapshot = snapshot(&record, &scores);
        let outbox = events
            .into_iter()
            .map(|(kind, note, at)| outbox_event(&snapshot, kind, note, at, now, None))
            .collect::<Result<Vec<_>, _>>()?;
        tx.append_outbox(ws, outbox);
        tx.commit().await?;
        self.announce(ws);
        Ok(true)
    }

    /// Hands a lead to `owner` (`None`: releases it), by hand, with a
    /// reason: the owner must exist, and may be out of office or at
    /// capacity (a person decided). Recorded and streamed as routing's
    /// changes are.
    #[tracing::instrument(name = "engine.assign_lead", skip_all)]
    pub async fn assign_lead(
        &self,
        req: &crate::Request,
        key: &crate::LeadKey,
        owner: Option<&str>,
        reason: Option<&str>,
        expected_version: Option<i64>,
    ) -> Result<Assigned, EngineError> {
        let owner = owner.map(str::trim);
        if owner == Some("") {
            return Err(EngineError::invalid(
                "INVALID_FIELD",
                "owner_id",
                "must not be blank",
            ));
        }
        let reason = reason.map(str::trim).filter(|r| !r.is_empty());
        if let Some(r) = reason
            && r.chars().count() > MAX_ASSIGN_REASON_CHARS
        {
            return Err(EngineError::invalid(
                "INVALID_FIELD",
                "reason",
                format!("longer than {MAX_ASSIGN_REASON_CHARS} characters"),
            ));
        }
        crate::leads::retrying!(self.try_assign_lead(req, key, owner, reason, expected_version))
            .map(StoredAssigned::public)
    }

    async fn try_assign_lead(
        &self,
        req: &crate::Request,
        key: &crate::LeadKey,
        owner: Option<&str>,
        reason: Option<&str>,
        expected_version: Option<i64>,
    ) -> Result<StoredAssigned, EngineError> {
        use crate::idempotency::{replay, save};
        use crate::model::Method;
        let ws = req.workspace.as_str();
        let tx = self.store.begin().await?;
        // The lead first: a retry waiting on it then sees the first result.
        let crate::leads::Locked { record, .. } = self.lock(&tx, ws, key).await?;
        if let Some(done) = replay::<StoredAssigned>(&tx, req, Method::AssignLead).await? {
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
        let policy = self.policy_version_of(&tx, ws, record.policy_version).await?;
        let scores = record.lead.scores_at(&policy, now);
        tx.lock_routing(ws).await?;
        if let Some(id) = owner
            && tx.lock_owner(ws, id).await?.is_none()
        {
            return Err(EngineError::NotFound {
                what: "owner",
                key: id.to_owned(),
            });
        }
        let mut record = record;
        let mut change = None;
        if record.owner.as_deref() != owner {
            let note = AssignmentNote {
                from: record.owner.clone(),
                to: owner.map(str::to_owned),
                cause: "MANUAL".to_owned(),
                route_id: None,
                explanation: match owner {
                    Some(id) => format!("assigned by hand to {id}"),
                    None => "released by hand".to_owned(),
                },
                reason: reason.map(str::to_owned),
                principal: req.principal.clone(),
            };
            let seq = hand_over(&tx, ws, &record, &scores, &note, now, req.traceparent.as_deref()).await?;
            record.owner = owner.map(str::to_owned);
            change = Some(StoredAssignment {
                seq,
                at: now,
                note,
                stage: record.lead.stage,
            });
        }
        let done = StoredAssigned {
            lead: crate::model::Scored {
                record,
                scores,
                scored_at: now,
            },
            assignment: change,
        };
        save(&tx, req, Method::AssignLead, &done, now).await?;
        tx.commit().await?;
        if done.assignment.is_some() {
            self.announce(ws);
        }
        Ok(done)
    }
}

/// Gives a lead its owner outside a decision (by hand, or a merge): the
/// change recorded (its seq), the open leads moved (waking the leads that
/// wait longest when an owner has one fewer), the lead's owner set, and
/// `LEAD_ASSIGNED` streamed. Call with the routing lock taken.
pub(crate) async fn hand_over(
    tx: &Tx,
    ws: &str,
    record: &leadflow_store::LeadRecord,
    scores: &Scores,
    note: &AssignmentNote,
    now: Timestamp,
    traceparent: Option<&str>,
) -> Result<i64, EngineError> {
    let seq = tx
        .insert_assignment(ws, &note.record(&record.id, now, record.lead.stage))
        .await?;
    if is_open(record.lead.stage) {
        if let Some(from) = &note.from {
            tx.add_open_leads(ws, from, -1).await?;
            tx.wake_waiting(ws, WAKE_ON_RELEASE, now).await?;
        }
        if let Some(to) = &note.to {
            tx.add_open_leads(ws, to, 1).await?;
        }
    }
    if note.to.is_some() {
        tx.stop_waiting(ws, &record.id).await?;
    }
    tx.set_lead_owner(ws, &record.id, note.to.as_deref()).await?;
    let event = outbox_event(
        &snapshot(record, scores),
        ASSIGNED,
        note.clone(),
        now,
        now,
        traceparent,
    )?;
    tx.append_outbox(ws, vec![event]);
    Ok(seq)
}

/// The lead as its owner's events carry it.
fn snapshot(record: &leadflow_store::LeadRecord, scores: &Scores) -> crate::model::OutboxPayload {
    crate::model::OutboxPayload {
        lead_id: record.id.clone(),
        external_key: record.external_key.clone(),
        stage: record.lead.stage,
        lead_version: record.version,
        scores: scores.clone(),
        policy_version: record.policy_version,
        transition: None,
        trigger: None,
        sla_breach: None,
        level_change: None,
        merge: None,
        assignment: None,
    }
}

/// A change of owner as an outbox event of the lead (`snapshot`).
pub(crate) fn outbox_event(
    snapshot: &crate::model::OutboxPayload,
    kind: &str,
    note: AssignmentNote,
    at: Timestamp,
    now: Timestamp,
    traceparent: Option<&str>,
) -> Result<leadflow_store::NewOutboxEvent, EngineError> {
    let payload = crate::model::OutboxPayload {
        assignment: Some(note),
        ..snapshot.clone()
    };
    Ok(leadflow_store::NewOutboxEvent {
        event_id: uuid::Uuid::now_v7().to_string(),
        lead_id: snapshot.lead_id.clone(),
        subject: leadflow_store::Subject::Lead,
        kind: kind.to_owned(),
        payload: serde_json::to_string(&payload).map_err(|e| EngineError::Internal(e.to_string()))?,
        occurred_at: at,
        created_at: now,
        traceparent: traceparent.map(str::to_owned),
        suppressed: false,
    })
}

/// Assignments a simulation lists at most.
pub const MAX_SIMULATED_ASSIGNMENTS: usize = 100;

/// What a draft's activation would do to the owners: each lead decided
/// under it goes through routing as its re-score would, one after the
/// other from the workspace's owners, open leads and turns as they stand.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RoutingSimulation {
    /// Every owner, by id.
    pub owners: Vec<OwnerLoad>,
    /// The first [`MAX_SIMULATED_ASSIGNMENTS`] changes, in lead id order.
    pub assignments: Vec<SimulatedAssignment>,
    /// Changes of owner (a release included).
    pub assigned: i64,
    /// Routes that found no owner.
    pub unrouted: i64,
}

/// An owner's open leads now and after the draft's activation.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct OwnerLoad {
    pub owner_id: String,
    pub display_name: String,
    pub open_before: i64,
    pub open_after: i64,
    /// Leads it would be given.
    pub given: i64,
    /// Leads it would lose.
    pub taken: i64,
}

#[derive(Clone, Debug, PartialEq)]
pub struct SimulatedAssignment {
    pub lead_id: String,
    pub external_key: Option<String>,
    pub record: AssignmentRecord,
    /// `false`: no owner could take the lead.
    pub assigned: bool,
}

/// A routing simulation under way.
pub(crate) struct RoutingTally {
    ws: String,
    pool: RoutingPool,
    open_before: std::collections::BTreeMap<String, u32>,
    given: std::collections::BTreeMap<String, (i64, i64)>,
    out: RoutingSimulation,
}

impl RoutingTally {
    /// From the workspace's owners as they stand.
    pub(crate) async fn start(engine: &crate::Engine, ws: &str) -> Result<Self, EngineError> {
        let tx = engine.store.begin().await?;
        let pool = tx.routing_pool(ws).await?;
        drop(tx);
        Ok(Self {
            ws: ws.to_owned(),
            open_before: pool.open.clone(),
            pool,
            given: std::collections::BTreeMap::new(),
            out: RoutingSimulation::default(),
        })
    }

    /// A lead's decision under the draft (`version`, 0 for a source).
    pub(crate) async fn add(
        &mut self,
        engine: &crate::Engine,
        policy: &Policy,
        version: i64,
        record: &leadflow_store::LeadRecord,
        decision: &leadflow_domain::Decision,
        at: Timestamp,
    ) -> Result<(), EngineError> {
        let lead = &decision.lead;
        if policy.routing.routes.is_empty() && record.owner.is_none() {
            return Ok(());
        }
        let account = if policy.routing.reads_account() {
            let tx = engine.store.begin().await?;
            let account = tx.route_account(&self.ws, &record.id).await?;
            drop(tx);
            account
        } else {
            None
        };
        let scores = lead.scores_at(policy, at);
        let found = occasions(policy, &decision.events);
        let stay = BTreeSet::new();
        let situation = Situation {
            policy,
            owner: record.owner.as_deref(),
            stage_before: Some(record.lead.stage),
            stage: lead.stage,
            profile: &lead.profile,
            scores: &scores,
            policy_change: record.policy_version != version,
            stay: &stay,
            account: account.as_ref(),
        };
        let planned = plan(&situation, &found, &mut self.pool);
        for change in planned.changes {
            if change.assigned {
                self.out.assigned += 1;
                if let Some(from) = &change.from {
                    self.given.entry(from.clone()).or_default().1 += 1;
                }
                if let Some(to) = &change.to {
                    self.given.entry(to.clone()).or_default().0 += 1;
                }
            } else {
                self.out.unrouted += 1;
            }
            if self.out.assignments.len() < MAX_SIMULATED_ASSIGNMENTS {
                self.out.assignments.push(SimulatedAssignment {
                    assigned: change.assigned,
                    lead_id: record.id.clone(),
                    external_key: record.external_key.clone(),
                    record: AssignmentRecord {
                        lead_id: record.id.clone(),
                        seq: 0,
                        at,
                        from: change.from,
                        to: change.to,
                        cause: change.cause.as_str().to_owned(),
                        route_id: change.route_id,
                        explanation: change.explanation,
                        reason: None,
                        principal: None,
                        stage: lead.stage,
                    },
                });
            }
        }
        Ok(())
    }

    pub(crate) fn finish(self) -> RoutingSimulation {
        let Self {
            ws: _,
            pool,
            open_before,
            given,
            mut out,
        } = self;
        out.owners = pool
            .owners
            .iter()
            .map(|o| {
                let (given, taken) = given.get(&o.id).copied().unwrap_or_default();
                OwnerLoad {
                    owner_id: o.id.clone(),
                    display_name: o.display_name.clone(),
                    open_before: i64::from(open_before.get(&o.id).copied().unwrap_or(0)),
                    open_after: i64::from(pool.open.get(&o.id).copied().unwrap_or(0)),
                    given,
                    taken,
                }
            })
            .collect();
        out
    }
}
