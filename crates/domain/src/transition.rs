//! What a transition is: the command that asks for it, the move that takes
//! it, the guards it checks, what caused it and the record it leaves.
//!
//! These are the lifecycle's words, shared by the errors, the workflows'
//! events and the lifecycle itself; [`crate::lifecycle`] puts them together
//! into the transition table and decides with them.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::stage::Stage;
use crate::time::Timestamp;

/// What a caller (or the engine) asks of a lead.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum CommandKind {
    Capture,
    RecordEngagement,
    UpdateProfile,
    Promote,
    Accept,
    Reject,
    Recycle,
    Convert,
    Disqualify,
    Requalify,
    TimerFired,
    PolicyChanged,
}

impl CommandKind {
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Capture => "CAPTURE",
            Self::RecordEngagement => "RECORD_ENGAGEMENT",
            Self::UpdateProfile => "UPDATE_PROFILE",
            Self::Promote => "PROMOTE",
            Self::Accept => "ACCEPT",
            Self::Reject => "REJECT",
            Self::Recycle => "RECYCLE",
            Self::Convert => "CONVERT",
            Self::Disqualify => "DISQUALIFY",
            Self::Requalify => "REQUALIFY",
            Self::TimerFired => "TIMER_FIRED",
            Self::PolicyChanged => "POLICY_CHANGED",
        }
    }

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

impl fmt::Display for CommandKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Which edge moved a lead: a manual command, or one of the automatic moves.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Move {
    Capture,
    Promote,
    Accept,
    Reject,
    Recycle,
    Convert,
    Disqualify,
    Requalify,
    /// The MQL thresholds and guards pass.
    AutoQualify,
    /// A sales-ready action.
    SalesReady,
    /// A disqualifying undesirable matches.
    AutoDisqualify,
    /// An SLA with `then = "recycle"` breached.
    SlaRecycle,
}

impl Move {
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Capture => "CAPTURE",
            Self::Promote => "PROMOTE",
            Self::Accept => "ACCEPT",
            Self::Reject => "REJECT",
            Self::Recycle => "RECYCLE",
            Self::Convert => "CONVERT",
            Self::Disqualify => "DISQUALIFY",
            Self::Requalify => "REQUALIFY",
            Self::AutoQualify => "AUTO_QUALIFY",
            Self::SalesReady => "SALES_READY",
            Self::AutoDisqualify => "AUTO_DISQUALIFY",
            Self::SlaRecycle => "SLA_RECYCLE",
        }
    }
}

impl fmt::Display for Move {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A condition an edge checks before it moves a lead.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Guard {
    /// Qualifying engagement ≥ `[stages.MQL] engagement_at_least`.
    EngagementAtLeast,
    /// Fit ≥ `[stages.MQL] fit_at_least`.
    FitAtLeast,
    /// Grade ≥ `[stages.MQL] grade_at_least`, where set.
    GradeAtLeast,
    /// Every `[stages.MQL] requires_attributes` present.
    RequiresAttributes,
    /// No disqualifying undesirable matches.
    NotDisqualified,
    /// A `[stages.SQL] sales_ready_actions` engagement in the qualifying window.
    SalesReadyAction,
    /// No disqualifying attribute rule matches the profile.
    NoDisqualifyingAttribute,
    /// A disqualifying undesirable matches.
    DisqualifyingMatch,
}

impl Guard {
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::EngagementAtLeast => "engagement_at_least",
            Self::FitAtLeast => "fit_at_least",
            Self::GradeAtLeast => "grade_at_least",
            Self::RequiresAttributes => "requires_attributes",
            Self::NotDisqualified => "not_disqualified",
            Self::SalesReadyAction => "sales_ready_action",
            Self::NoDisqualifyingAttribute => "no_disqualifying_attribute",
            Self::DisqualifyingMatch => "disqualifying_match",
        }
    }
}

impl fmt::Display for Guard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
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

/// Who or what caused a transition.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Cause {
    /// The lead was created.
    Capture,
    /// An engagement, by its event id.
    Engagement {
        event_id: String,
    },
    ProfileUpdate,
    /// A caller's `Transition` command.
    Manual,
    /// A durable timer (an SLA), by its key.
    Timer {
        key: String,
    },
    /// A re-score under a newly active policy.
    PolicyChange,
}

impl Cause {
    pub const fn as_str(&self) -> &'static str {
        match self {
            Self::Capture => "CAPTURE",
            Self::Engagement { .. } => "ENGAGEMENT",
            Self::ProfileUpdate => "PROFILE_UPDATE",
            Self::Manual => "MANUAL",
            Self::Timer { .. } => "TIMER",
            Self::PolicyChange => "POLICY_CHANGE",
        }
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
