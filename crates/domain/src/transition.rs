//! What a transition is: the command that asks for it, the move that takes
//! it, the guards it checks, what caused it and the record it leaves.
//!
//! These are the lifecycle's words, shared by the errors, the workflows'
//! events and the lifecycle itself; [`crate::lifecycle`] puts them together
//! into the transition table and decides with them.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::named::named_enum;
use crate::stage::Stage;
use crate::time::Timestamp;

named_enum! {
    /// What a caller (or the engine) asks of a lead.
    #[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Serialize, Deserialize)]
    pub enum CommandKind as "command" {
        Capture = "CAPTURE",
        RecordEngagement = "RECORD_ENGAGEMENT",
        UpdateProfile = "UPDATE_PROFILE",
        Promote = "PROMOTE",
        Accept = "ACCEPT",
        Reject = "REJECT",
        Recycle = "RECYCLE",
        Convert = "CONVERT",
        Disqualify = "DISQUALIFY",
        Requalify = "REQUALIFY",
        TimerFired = "TIMER_FIRED",
        PolicyChanged = "POLICY_CHANGED",
        Identify = "IDENTIFY",
        /// A duplicate merged into this lead (`MergeLeads`), or this lead
        /// merged into a survivor.
        Merge = "MERGE",
        /// A merge undone (`UnmergeLead`), for either lead.
        Unmerge = "UNMERGE",
    }
}

impl CommandKind {
    /// The commands a caller gives through `Transition`.
    pub const MANUAL: [Self; 7] = [
        Self::Promote,
        Self::Accept,
        Self::Reject,
        Self::Recycle,
        Self::Convert,
        Self::Disqualify,
        Self::Requalify,
    ];
}

named_enum! {
    /// Which edge moved a lead: a manual command, or one of the automatic moves.
    #[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug, Serialize, Deserialize)]
    pub enum Move as "move" {
        Capture = "CAPTURE",
        Promote = "PROMOTE",
        Accept = "ACCEPT",
        Reject = "REJECT",
        Recycle = "RECYCLE",
        Convert = "CONVERT",
        Disqualify = "DISQUALIFY",
        Requalify = "REQUALIFY",
        /// The MQL thresholds and guards pass.
        AutoQualify = "AUTO_QUALIFY",
        /// A sales-ready action.
        SalesReady = "SALES_READY",
        /// A disqualifying undesirable matches.
        AutoDisqualify = "AUTO_DISQUALIFY",
        /// An SLA with `then = "recycle"` breached.
        SlaRecycle = "SLA_RECYCLE",
        /// A merge brought a duplicate further along the forward path: the
        /// survivor jumps to the duplicate's stage.
        Merge = "MERGE",
        /// The lead was merged into a survivor: it enters MERGED.
        MergedInto = "MERGED_INTO",
        /// The merge was undone: the lead leaves MERGED for the stage it
        /// was merged from.
        Unmerge = "UNMERGE",
    }
}

named_enum! {
    /// A condition an edge checks before it moves a lead.
    #[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Serialize, Deserialize)]
    pub enum Guard as "guard" {
        /// Qualifying engagement ≥ `[stages.MQL] engagement_at_least`.
        EngagementAtLeast = "engagement_at_least",
        /// Fit ≥ `[stages.MQL] fit_at_least`.
        FitAtLeast = "fit_at_least",
        /// Grade ≥ `[stages.MQL] grade_at_least`, where set.
        GradeAtLeast = "grade_at_least",
        /// Every `[stages.MQL] requires_attributes` present.
        RequiresAttributes = "requires_attributes",
        /// No disqualifying undesirable matches.
        NotDisqualified = "not_disqualified",
        /// A `[stages.SQL] sales_ready_actions` engagement in the qualifying window.
        SalesReadyAction = "sales_ready_action",
        /// No disqualifying attribute rule matches the profile.
        NoDisqualifyingAttribute = "no_disqualifying_attribute",
        /// A disqualifying undesirable matches.
        DisqualifyingMatch = "disqualifying_match",
    }
}

/// The outcome of one guard.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct GuardCheck {
    pub guard: Guard,
    pub passed: bool,
    /// What was compared, e.g. `fit 12 < 20`.
    pub detail: String,
    /// The lead's value, for numeric guards (rounded to 6 decimals).
    pub actual: Option<f64>,
    /// The policy's threshold, for numeric guards.
    pub required: Option<f64>,
}

impl fmt::Display for GuardCheck {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.guard, self.detail)
    }
}

named_enum! {
    /// Who or what caused a transition.
    #[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
    #[serde(tag = "kind")]
    pub enum Cause {
        /// The lead was created.
        Capture = "CAPTURE",
        /// An engagement, by its event id.
        Engagement { event_id: String } = "ENGAGEMENT",
        ProfileUpdate = "PROFILE_UPDATE",
        /// A caller's `Transition` command.
        Manual = "MANUAL",
        /// A durable timer (an SLA), by its key.
        Timer { key: String } = "TIMER",
        /// A re-score under a newly active policy.
        PolicyChange = "POLICY_CHANGE",
        /// Decay alone (a level change; never a transition).
        Decay = "DECAY",
        /// Anonymous activity joined the lead, by its anonymous id.
        Identify { anonymous_id: String } = "IDENTIFY",
        /// A merge, by the other lead's id: the duplicate's for the
        /// survivor, the survivor's for the duplicate.
        Merge { lead_id: String } = "MERGE",
        /// A merge undone, by the other lead's id.
        Unmerge { lead_id: String } = "UNMERGE",
    }
}

/// The deal a CONVERT closes.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Deal {
    pub value: f64,
    /// ISO 4217, upper case.
    pub currency: String,
}

/// One stage change, with the scores and guard values it was decided on.
/// Later events never revise it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TransitionRecord {
    /// `None` for the capture that created the lead.
    pub from: Option<Stage>,
    pub to: Stage,
    pub at: Timestamp,
    pub by: Move,
    pub cause: Cause,
    pub reason: Option<String>,
    pub actor: Option<String>,
    pub deal: Option<Deal>,
    /// Fit and qualifying engagement at `at`, rounded to 6 decimals.
    pub fit: f64,
    pub engagement: f64,
    pub guards: Vec<GuardCheck>,
}
