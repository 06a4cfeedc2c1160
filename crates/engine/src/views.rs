//! What the engine's API hands out: its own types, whatever the store keeps
//! and however it keeps it. The server translates these to the API.

use leadflow_domain::lifecycle::{Scores, TransitionRecord};
use leadflow_domain::workflow::{LevelChange, Trigger};
use leadflow_domain::{Engagement, Lead, Timestamp};
use leadflow_store::{
    ConsumerRecord, PolicyRecord, RescoreJobRecord, StoredEngagement, StoredLevelChange, StoredTransition,
    TokenRecord, WorkspaceRecord,
};
use serde::{Deserialize, Serialize};

use crate::model::{Recorded, Scored};

/// A lead as callers see it: its state, and its scores at an instant.
#[derive(Clone, Debug, PartialEq)]
pub struct LeadView {
    pub id: String,
    pub external_key: Option<String>,
    /// Changes with the stage and the profile.
    pub version: i64,
    /// The policy version its scores were computed under.
    pub policy_version: i64,
    pub updated_at: Timestamp,
    pub lead: Lead,
    pub scores: Scores,
    pub scored_at: Timestamp,
    /// The owner it is handed to, if any.
    pub owner: Option<String>,
}

impl From<Scored> for LeadView {
    fn from(s: Scored) -> Self {
        let r = s.record;
        Self {
            id: r.id,
            external_key: r.external_key,
            version: r.version,
            policy_version: r.policy_version,
            updated_at: r.updated_at,
            lead: r.lead,
            scores: s.scores,
            scored_at: s.scored_at,
            owner: r.owner,
        }
    }
}

/// A transition of a lead's history. Its JSON is part of stored outbox
/// events: it does not change.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TransitionView {
    pub lead_id: String,
    /// Position in the lead's history, from 1.
    pub seq: i64,
    pub record: TransitionRecord,
    pub policy_version: i64,
    /// The token (by name) whose call made it; none for the service's own
    /// moves (timers, re-scores) and when tokens are off.
    #[serde(default)]
    pub principal: Option<String>,
}

/// A change of a lead's MQL level. Its JSON is part of stored outbox
/// events: it does not change.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LevelChangeView {
    pub lead_id: String,
    pub policy_version: i64,
    pub change: LevelChange,
}

impl From<StoredLevelChange> for LevelChangeView {
    fn from(l: StoredLevelChange) -> Self {
        Self {
            lead_id: l.lead_id,
            policy_version: l.policy_version,
            change: l.change,
        }
    }
}

impl From<StoredTransition> for TransitionView {
    fn from(t: StoredTransition) -> Self {
        Self {
            lead_id: t.lead_id,
            seq: t.seq,
            record: t.record,
            policy_version: t.policy_version,
            principal: t.principal,
        }
    }
}

/// The transitions of `rows`, as views.
pub(crate) fn transitions(rows: Vec<StoredTransition>) -> Vec<TransitionView> {
    rows.into_iter().map(TransitionView::from).collect()
}

/// An engagement of a lead's history.
#[derive(Clone, Debug, PartialEq)]
pub struct EngagementView {
    pub lead_id: String,
    pub engagement: Engagement,
    pub recorded_at: Timestamp,
    /// The workflow triggers it set off when recorded.
    pub triggers: Vec<Trigger>,
}

impl From<StoredEngagement> for EngagementView {
    fn from(e: StoredEngagement) -> Self {
        Self {
            lead_id: e.lead_id,
            engagement: e.engagement,
            recorded_at: e.recorded_at,
            triggers: e.triggers,
        }
    }
}

/// What a mutating command did.
#[derive(Clone, Debug, PartialEq)]
pub struct Outcome {
    /// `None` for an engagement kept as anonymous activity (its anonymous
    /// id names no lead yet).
    pub lead: Option<LeadView>,
    pub transitions: Vec<TransitionView>,
    pub triggers: Vec<Trigger>,
    /// An engagement whose event id was already recorded: nothing changed.
    pub duplicate: bool,
}

impl From<Recorded> for Outcome {
    fn from(r: Recorded) -> Self {
        Self {
            lead: Some(r.lead.into()),
            transitions: transitions(r.transitions),
            triggers: r.triggers,
            duplicate: r.duplicate,
        }
    }
}

impl Outcome {
    /// An engagement kept as anonymous activity (or a repeat of one).
    pub(crate) fn anonymous(duplicate: bool) -> Self {
        Self {
            lead: None,
            transitions: Vec::new(),
            triggers: Vec::new(),
            duplicate,
        }
    }
}

/// A stored version of a workspace's lead definition. Its JSON is the
/// stored result of an idempotent `CreatePolicyVersion`: it does not change.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicyVersion {
    pub version: i64,
    pub name: String,
    pub description: String,
    /// The TOML document.
    pub source: String,
    pub checksum: String,
    pub created_at: Timestamp,
    pub activated_at: Option<Timestamp>,
    pub active: bool,
    /// The token (by name) that stored it, and that last activated it.
    #[serde(default)]
    pub created_by: Option<String>,
    #[serde(default)]
    pub activated_by: Option<String>,
}

impl From<PolicyRecord> for PolicyVersion {
    fn from(p: PolicyRecord) -> Self {
        Self {
            version: p.version,
            name: p.name,
            description: p.description,
            source: p.source,
            checksum: p.checksum,
            created_at: p.created_at,
            activated_at: p.activated_at,
            active: p.active,
            created_by: p.created_by,
            activated_by: p.activated_by,
        }
    }
}

/// Where a re-score of every lead stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RescoreStatus {
    Running,
    Done,
    Failed,
    /// A later activation took over.
    Superseded,
}

impl RescoreStatus {
    /// The status a stored job's text names; `None` for one this version
    /// does not know.
    fn of(stored: &str) -> Option<Self> {
        match stored {
            leadflow_store::RESCORE_RUNNING => Some(Self::Running),
            leadflow_store::RESCORE_DONE => Some(Self::Done),
            leadflow_store::RESCORE_FAILED => Some(Self::Failed),
            leadflow_store::RESCORE_SUPERSEDED => Some(Self::Superseded),
            _ => None,
        }
    }
}

/// A re-score of every lead under a newly active policy version.
#[derive(Clone, Debug, PartialEq)]
pub struct RescoreJob {
    pub id: i64,
    pub policy_version: i64,
    /// Every lead is decided at this instant.
    pub activated_at: Timestamp,
    /// `None` for a status this version does not know (written by a newer one).
    pub status: Option<RescoreStatus>,
    pub total: i64,
    pub done: i64,
    pub transitions: i64,
    pub error: Option<String>,
    pub started_at: Timestamp,
    pub finished_at: Option<Timestamp>,
}

impl RescoreJob {
    pub fn is_running(&self) -> bool {
        self.status == Some(RescoreStatus::Running)
    }
}

impl From<RescoreJobRecord> for RescoreJob {
    fn from(j: RescoreJobRecord) -> Self {
        Self {
            id: j.id,
            policy_version: j.policy_version,
            activated_at: j.activated_at,
            status: RescoreStatus::of(&j.status),
            total: j.total,
            done: j.done,
            transitions: j.transitions,
            error: j.error,
            started_at: j.started_at,
            finished_at: j.finished_at,
        }
    }
}

/// An activation: the version now active, what it means for existing
/// leads, and the re-score it started.
#[derive(Clone, Debug, PartialEq)]
pub struct PolicyActivation {
    pub policy: PolicyVersion,
    pub note: String,
    pub job: RescoreJob,
}

/// The stored result of an idempotent `ActivatePolicy`: its JSON does not
/// change.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub(crate) struct StoredActivation {
    pub(crate) policy: PolicyRecord,
    pub(crate) note: String,
    pub(crate) job: RescoreJobRecord,
}

impl From<StoredActivation> for PolicyActivation {
    fn from(a: StoredActivation) -> Self {
        Self {
            policy: a.policy.into(),
            note: a.note,
            job: a.job.into(),
        }
    }
}

/// A named subscriber's durable cursor.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Consumer {
    pub name: String,
    pub kind: ConsumerKind,
    /// The last sequence acknowledged.
    pub cursor: i64,
    pub created_at: Timestamp,
    /// A stream's last call; a relay's last move.
    pub last_seen_at: Timestamp,
    /// When the oldest event past the cursor was committed, if any is
    /// (filled in by listings).
    pub oldest_pending: Option<Timestamp>,
}

/// Who reads the outbox through a cursor.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConsumerKind {
    /// A named `Subscribe` stream, moved by its acks.
    Stream,
    /// A relay to another system (JetStream), moved by the replica
    /// relaying it.
    Relay,
    /// A webhook endpoint, moved as its deliveries resolve.
    Webhook,
}

impl From<ConsumerRecord> for Consumer {
    fn from(c: ConsumerRecord) -> Self {
        Self {
            name: c.name,
            kind: ConsumerKind::Stream,
            cursor: c.cursor,
            created_at: c.created_at,
            last_seen_at: c.last_seen_at,
            oldest_pending: None,
        }
    }
}

impl From<leadflow_store::RelayRecord> for Consumer {
    fn from(r: leadflow_store::RelayRecord) -> Self {
        Self {
            kind: if r.name.starts_with(leadflow_store::WEBHOOK_RELAY_PREFIX) {
                ConsumerKind::Webhook
            } else {
                ConsumerKind::Relay
            },
            name: r.name,
            cursor: r.cursor,
            created_at: r.created_at,
            last_seen_at: r.moved_at,
            oldest_pending: r.oldest_pending,
        }
    }
}

/// An API token: never its secret, which is not kept.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Token {
    pub workspace: String,
    pub id: String,
    pub name: String,
    pub scopes: Vec<String>,
    pub created_at: Timestamp,
    pub expires_at: Option<Timestamp>,
    pub revoked_at: Option<Timestamp>,
}

impl Token {
    /// Neither revoked nor expired at `now`.
    pub fn is_live(&self, now: Timestamp) -> bool {
        self.revoked_at.is_none() && self.expires_at.is_none_or(|at| at > now)
    }
}

impl From<TokenRecord> for Token {
    fn from(t: TokenRecord) -> Self {
        Self {
            workspace: t.workspace,
            id: t.id,
            name: t.name,
            scopes: t.scopes,
            created_at: t.created_at,
            expires_at: t.expires_at,
            revoked_at: t.revoked_at,
        }
    }
}

/// A workspace.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Workspace {
    pub id: String,
    pub created_at: Timestamp,
    pub active_policy_version: Option<i64>,
}

impl From<WorkspaceRecord> for Workspace {
    fn from(w: WorkspaceRecord) -> Self {
        Self {
            id: w.id,
            created_at: w.created_at,
            active_policy_version: w.active_policy_version,
        }
    }
}

/// The database's numbers that metrics show, per workspace.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Gauges {
    /// (workspace, stage, leads).
    pub leads: Vec<(String, String, i64)>,
    /// (workspace, the last event's sequence).
    pub outbox_heads: Vec<(String, i64)>,
    /// (workspace, consumer, its acknowledged cursor).
    pub consumers: Vec<(String, String, i64)>,
    /// (workspace, relay, its cursor, how long ago in micros the oldest
    /// event it has not relayed was committed).
    pub relays: Vec<(String, String, i64, i64)>,
    /// (workspace, timers due and not yet fired).
    pub due_timers: Vec<(String, i64)>,
    /// (workspace, job id, leads done, leads in all) of running re-scores.
    pub rescores: Vec<(String, i64, i64, i64)>,
}

impl From<leadflow_store::Gauges> for Gauges {
    fn from(g: leadflow_store::Gauges) -> Self {
        Self {
            leads: g.leads,
            outbox_heads: g.outbox_heads,
            consumers: g.consumers,
            relays: g.relays,
            due_timers: g.due_timers,
            rescores: g.rescores,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy_record() -> PolicyRecord {
        PolicyRecord {
            version: 3,
            name: "b2b".to_owned(),
            description: "the default".to_owned(),
            source: "name = \"b2b\"".to_owned(),
            checksum: "abc".to_owned(),
            created_at: Timestamp::from_micros(1_000),
            activated_at: Some(Timestamp::from_micros(2_000)),
            active: true,
            created_by: Some("ops".to_owned()),
            activated_by: None,
        }
    }

    /// A `CreatePolicyVersion` result stored before the engine had its own
    /// types is answered the same after.
    #[test]
    fn a_stored_policy_version_reads_as_it_was_written() {
        let stored = serde_json::to_string(&policy_record()).expect("encodes");
        let read: PolicyVersion = serde_json::from_str(&stored).expect("decodes");
        assert_eq!(read, PolicyVersion::from(policy_record()));
        assert_eq!(serde_json::to_string(&read).expect("encodes"), stored);
    }

    /// Outbox events carry transitions: their JSON is the same as the
    /// store's row's.
    #[test]
    fn a_transition_in_an_event_keeps_its_json() {
        let row = StoredTransition {
            lead_id: "l1".to_owned(),
            seq: 2,
            record: TransitionRecord {
                from: Some(leadflow_domain::Stage::Iql),
                to: leadflow_domain::Stage::Mql,
                at: Timestamp::from_micros(5),
                by: leadflow_domain::Move::AutoQualify,
                cause: leadflow_domain::Cause::ProfileUpdate,
                reason: None,
                actor: None,
                deal: None,
                fit: 20.0,
                engagement: 61.5,
                guards: Vec::new(),
            },
            policy_version: 1,
            principal: Some("crm".to_owned()),
        };
        let stored = serde_json::to_string(&row).expect("encodes");
        let view: TransitionView = serde_json::from_str(&stored).expect("decodes");
        assert_eq!(view, TransitionView::from(row));
        assert_eq!(serde_json::to_string(&view).expect("encodes"), stored);
    }
}
