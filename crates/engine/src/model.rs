//! What the use cases take and give back.

use leadflow_domain::lifecycle::Scores;
use leadflow_domain::workflow::{LevelChange, SlaBreach, Trigger};
use leadflow_domain::{Engagement, Timestamp};
use leadflow_store::{LeadRecord, StoredTransition};

use crate::views::{EngagementView, LeadView, LevelChangeView, TransitionView};
use serde::{Deserialize, Serialize};

/// A lead named by leadflow's id or the caller's key.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum LeadKey {
    Id(String),
    ExternalKey(String),
    /// A caller's anonymous id (a cookie, a device): the lead it was
    /// identified as, once it was.
    Anonymous(String),
}

impl LeadKey {
    pub fn describe(&self) -> String {
        match self {
            Self::Id(id) => id.clone(),
            Self::ExternalKey(key) => format!("external_key {key}"),
            Self::Anonymous(id) => format!("anonymous_id {id}"),
        }
    }
}

/// The commands whose first result is kept for a retry with the same
/// `request_id`: the name each is kept under, and part of what makes two
/// requests the same. The names are stored: they never change, so that a
/// retry across an upgrade still finds its first result.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Method {
    CreateLead,
    UpdateLeadProfile,
    Transition,
    CreatePolicyVersion,
    ActivatePolicy,
    CreateAccount,
    UpdateAccount,
    LinkLead,
    UnlinkLead,
    TransitionAccount,
    IdentifyLead,
    MergeLeads,
    UnmergeLead,
    CreateOwner,
    UpdateOwner,
    AssignLead,
    CreateWebhook,
    LearnPolicy,
}

impl Method {
    pub const ALL: [Self; 18] = [
        Self::CreateLead,
        Self::UpdateLeadProfile,
        Self::Transition,
        Self::CreatePolicyVersion,
        Self::ActivatePolicy,
        Self::CreateAccount,
        Self::UpdateAccount,
        Self::LinkLead,
        Self::UnlinkLead,
        Self::TransitionAccount,
        Self::IdentifyLead,
        Self::MergeLeads,
        Self::UnmergeLead,
        Self::CreateOwner,
        Self::UpdateOwner,
        Self::AssignLead,
        Self::CreateWebhook,
        Self::LearnPolicy,
    ];

    /// The stored name (the API's method name).
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::CreateLead => "CreateLead",
            Self::UpdateLeadProfile => "UpdateLeadProfile",
            Self::Transition => "Transition",
            Self::CreatePolicyVersion => "CreatePolicyVersion",
            Self::ActivatePolicy => "ActivatePolicy",
            Self::CreateAccount => "CreateAccount",
            Self::UpdateAccount => "UpdateAccount",
            Self::LinkLead => "LinkLead",
            Self::UnlinkLead => "UnlinkLead",
            Self::TransitionAccount => "TransitionAccount",
            Self::IdentifyLead => "IdentifyLead",
            Self::MergeLeads => "MergeLeads",
            Self::UnmergeLead => "UnmergeLead",
            Self::CreateOwner => "CreateOwner",
            Self::UpdateOwner => "UpdateOwner",
            Self::AssignLead => "AssignLead",
            Self::CreateWebhook => "CreateWebhook",
            Self::LearnPolicy => "LearnPolicy",
        }
    }
}

impl std::fmt::Display for Method {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Who asks, and how to recognise a retry.
#[derive(Clone, Debug, Default)]
pub struct Request {
    pub workspace: String,
    /// The caller's idempotency key, if any.
    pub request_id: Option<String>,
    /// A hash of the request's content (without the request id).
    pub fingerprint: String,
    /// W3C trace context of the call, carried on its outbox events.
    pub traceparent: Option<String>,
    /// The authenticated caller (a token's name), recorded on what the
    /// call does beside the caller-supplied actor.
    pub principal: Option<String>,
}

impl Request {
    pub fn new(workspace: impl Into<String>) -> Self {
        Self {
            workspace: workspace.into(),
            ..Self::default()
        }
    }
}

/// A stored lead and its scores at an instant, as the use cases work with
/// it (the public form is [`crate::LeadView`]). Its JSON is the stored form
/// of an idempotent call's result: it does not change.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub(crate) struct Scored {
    pub(crate) record: LeadRecord,
    pub(crate) scores: Scores,
    pub(crate) scored_at: Timestamp,
}

/// What a mutating command did, as the use cases work with it (the public
/// form is [`crate::Outcome`]); its JSON is the stored result of an
/// idempotent call, and does not change.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub(crate) struct Recorded {
    pub(crate) lead: Scored,
    pub(crate) transitions: Vec<StoredTransition>,
    pub(crate) triggers: Vec<Trigger>,
    /// An engagement whose event id was already recorded: nothing changed.
    pub(crate) duplicate: bool,
}

/// One engagement of a batch.
#[derive(Clone, Debug)]
pub struct BatchItem {
    pub lead: LeadKey,
    pub engagement: Engagement,
    /// Whether the caller gave `occurred_at` (a retry without it is the same event).
    pub occurred_at_given: bool,
}

#[derive(Clone, Debug, PartialEq)]
pub struct LeadPage {
    pub leads: Vec<LeadView>,
    pub next_after: Option<String>,
}

#[derive(Clone, Debug, PartialEq)]
pub enum HistoryEntry {
    Transition(TransitionView),
    Engagement(EngagementView),
    LevelChange(LevelChangeView),
    Assignment(leadflow_store::AssignmentRecord),
}

#[derive(Clone, Debug, PartialEq)]
pub struct HistoryPage {
    pub entries: Vec<HistoryEntry>,
    /// Opaque: give it back for the next page.
    pub next: Option<HistoryCursor>,
}

/// Where the next page of a history starts.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistoryCursor {
    /// Last transition sequence returned.
    pub transition: i64,
    /// Last engagement returned (time, event id).
    pub engagement: Option<(i64, String)>,
    /// Last level change sequence returned (cursors made before levels
    /// existed have none).
    #[serde(default)]
    pub level: i64,
    /// Last assignment sequence returned.
    #[serde(default)]
    pub assignment: i64,
}

/// An outbox event's payload: what a subscriber gets.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct OutboxPayload {
    pub lead_id: String,
    pub external_key: Option<String>,
    pub stage: leadflow_domain::Stage,
    pub lead_version: i64,
    pub scores: Scores,
    pub policy_version: i64,
    pub transition: Option<TransitionView>,
    pub trigger: Option<Trigger>,
    pub sla_breach: Option<SlaBreach>,
    /// Events stored before levels existed have none.
    #[serde(default)]
    pub level_change: Option<LevelChange>,
    /// LEAD_MERGED and LEAD_UNMERGED: the two leads.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub merge: Option<MergeNote>,
    /// LEAD_ASSIGNED and LEAD_UNROUTED: the owners before and after, and why.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub assignment: Option<crate::assign::AssignmentNote>,
}

/// The leads of a merge (or of its undoing), as an event carries them.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MergeNote {
    pub survivor_id: String,
    pub duplicate_id: String,
    /// The duplicate's stage before the merge (and after an unmerge).
    pub duplicate_stage: leadflow_domain::Stage,
    /// Made by `[identity] auto_merge_on` at a capture.
    #[serde(default)]
    pub automatic: bool,
}

#[cfg(test)]
mod tests {
    use super::Method;

    /// Stored results are found by these names: they never change.
    #[test]
    fn idempotent_methods_keep_their_stored_names() {
        let names: Vec<&str> = Method::ALL.iter().map(|m| m.as_str()).collect();
        assert_eq!(
            names,
            [
                "CreateLead",
                "UpdateLeadProfile",
                "Transition",
                "CreatePolicyVersion",
                "ActivatePolicy",
                "CreateAccount",
                "UpdateAccount",
                "LinkLead",
                "UnlinkLead",
                "TransitionAccount",
                "IdentifyLead",
                "MergeLeads",
                "UnmergeLead",
                "CreateOwner",
                "UpdateOwner",
                "AssignLead",
                "CreateWebhook",
                "LearnPolicy"
            ]
        );
    }
}
