//! What the store hands out and takes in, in the domain's terms.

use leadflow_domain::lifecycle::{Scores, SearchKeys, TransitionRecord};
use leadflow_domain::workflow::{LevelChange, Timer, Trigger};
use leadflow_domain::{Engagement, Lead, Timestamp};
use serde::{Deserialize, Serialize};

/// A stored lead: the domain state plus what only storage knows.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LeadRecord {
    pub id: String,
    pub external_key: Option<String>,
    /// Changes with the stage and the profile.
    pub version: i64,
    /// The policy version the state was computed under.
    pub policy_version: i64,
    /// Transitions recorded so far.
    pub history_len: i64,
    pub updated_at: Timestamp,
    pub lead: Lead,
    /// Its search keys were written (rows last written before lead search
    /// existed have none until their next write).
    pub keyed: bool,
    /// The owner it is handed to (`OwnerService`), if any.
    #[serde(default)]
    pub owner: Option<String>,
}

/// What a write of a lead carries besides the domain state.
#[derive(Clone, Copy, Debug)]
pub struct LeadWrite<'a> {
    pub id: &'a str,
    pub lead: &'a Lead,
    /// Cached for listing and sorting: the scores at the decision.
    pub scores: &'a Scores,
    /// Every model's search keys, the default model's first; and those the
    /// lead had before the decision (`None` for a new lead): only the
    /// models whose keys changed are written.
    pub keys: &'a [SearchKeys],
    pub keys_before: Option<&'a [SearchKeys]>,
    pub version: i64,
    pub policy_version: i64,
    pub history_len: i64,
    pub now: Timestamp,
}

/// A policy version to store, for [`crate::Tx::insert_policy`].
#[derive(Clone, Copy, Debug)]
pub struct NewPolicy<'a> {
    pub name: &'a str,
    pub description: &'a str,
    /// The TOML document.
    pub source: &'a str,
    pub checksum: &'a str,
    /// The token (by name) that stores it.
    pub created_by: Option<&'a str>,
}

/// An engagement to record, for [`crate::Tx::insert_engagements_if_new`].
#[derive(Clone, Copy, Debug)]
pub struct NewEngagement<'a> {
    pub lead_id: &'a str,
    pub engagement: &'a Engagement,
    /// See `StoredEngagement::fingerprint`.
    pub fingerprint: &'a str,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StoredEngagement {
    pub lead_id: String,
    pub engagement: Engagement,
    pub fingerprint: String,
    pub recorded_at: Timestamp,
    /// The workflow triggers it set off when recorded.
    pub triggers: Vec<Trigger>,
}

/// A page of engagements continues after this one (in scoring order).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EngagementCursor {
    pub occurred_at: Timestamp,
    pub event_id: String,
}

/// A stored level change.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StoredLevelChange {
    pub lead_id: String,
    pub policy_version: i64,
    pub change: LevelChange,
}

/// A stored transition.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StoredTransition {
    pub lead_id: String,
    /// Position in the lead's history, from 1.
    pub seq: i64,
    pub record: TransitionRecord,
    pub policy_version: i64,
    /// The token (by name) whose call made it; none for the service's own
    /// moves (timers, re-scores) and when auth is off.
    #[serde(default)]
    pub principal: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicyRecord {
    pub version: i64,
    pub name: String,
    pub description: String,
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

/// Whose event an outbox event is.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum Subject {
    #[default]
    Lead,
    Account,
    /// A webhook endpoint's own event (it was disabled).
    Webhook,
}

impl Subject {
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Lead => "LEAD",
            Self::Account => "ACCOUNT",
            Self::Webhook => "WEBHOOK",
        }
    }

    /// A stored subject; anything else is a lead's (rows before subjects).
    pub fn parse(text: &str) -> Self {
        match text {
            "ACCOUNT" => Self::Account,
            "WEBHOOK" => Self::Webhook,
            _ => Self::Lead,
        }
    }
}

/// An event for the outbox; its sequence is assigned at commit.
#[derive(Clone, Debug, PartialEq)]
pub struct NewOutboxEvent {
    pub event_id: String,
    /// The subject's id: a lead's, an account's or a webhook endpoint's.
    pub lead_id: String,
    pub subject: Subject,
    pub kind: String,
    /// JSON.
    pub payload: String,
    pub occurred_at: Timestamp,
    /// When it was written (the commit's clock).
    pub created_at: Timestamp,
    pub traceparent: Option<String>,
    /// Recorded, never streamed.
    pub suppressed: bool,
}

#[derive(Clone, Debug, PartialEq)]
pub struct OutboxRecord {
    pub seq: i64,
    pub event: NewOutboxEvent,
}

#[derive(Clone, Debug, PartialEq)]
pub struct StoredTimer {
    pub lead_id: String,
    pub timer: Timer,
    /// W3C trace context of the call that scheduled it: what firing it
    /// links to.
    pub traceparent: Option<String>,
}

/// The first result of an idempotent request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredResult {
    pub method: String,
    pub fingerprint: String,
    /// JSON.
    pub response: String,
    pub created_at: Timestamp,
}
