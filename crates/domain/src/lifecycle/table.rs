//! The transition table, as data: every edge a lead can take, what sets it
//! off, the guards it must pass, and what it does besides moving the lead.
//!
//! `docs/lifecycle.md` is generated from [`TABLE`]; a test fails when it is
//! out of date.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::policy::ReasonList;
use crate::stage::Stage;

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

/// One row of the table.
#[derive(Clone, Copy, Debug)]
pub struct Edge {
    pub by: Move,
    /// The command that takes this edge.
    pub command: CommandKind,
    /// Stages it leaves from (empty: a new lead).
    pub from: &'static [Stage],
    pub to: Stage,
    pub guards: &'static [Guard],
    /// Set off by the engine (an engagement, a profile change, a policy
    /// change, a timer), not asked for by name.
    pub automatic: bool,
    /// A backward move: the qualifying window restarts at its instant.
    pub backward: bool,
    /// The `[reasons]` list the command's reason must come from.
    pub reasons: Option<ReasonList>,
}

use Guard::{
    DisqualifyingMatch, EngagementAtLeast, FitAtLeast, GradeAtLeast, NoDisqualifyingAttribute,
    NotDisqualified, RequiresAttributes, SalesReadyAction,
};
use Stage::{Customer, Disqualified, Iql, Mql, Sql};

const fn manual(
    by: Move,
    command: CommandKind,
    from: &'static [Stage],
    to: Stage,
    guards: &'static [Guard],
    reasons: Option<ReasonList>,
) -> Edge {
    Edge {
        by,
        command,
        from,
        to,
        guards,
        automatic: false,
        backward: matches!(to, Iql) && !from.is_empty(),
        reasons,
    }
}

const fn automatic(
    by: Move,
    command: CommandKind,
    from: &'static [Stage],
    to: Stage,
    guards: &'static [Guard],
) -> Edge {
    Edge {
        by,
        command,
        from,
        to,
        guards,
        automatic: true,
        backward: matches!(to, Iql),
        reasons: None,
    }
}

/// The lifecycle. Any (stage, command) pair not here is `INVALID_TRANSITION`;
/// CUSTOMER leaves on nothing.
pub const TABLE: &[Edge] = &[
    manual(Move::Capture, CommandKind::Capture, &[], Iql, &[], None),
    manual(
        Move::Promote,
        CommandKind::Promote,
        &[Iql],
        Mql,
        &[RequiresAttributes, NotDisqualified],
        None,
    ),
    manual(Move::Accept, CommandKind::Accept, &[Mql], Sql, &[], None),
    manual(
        Move::Reject,
        CommandKind::Reject,
        &[Mql],
        Iql,
        &[],
        Some(ReasonList::Reject),
    ),
    manual(
        Move::Recycle,
        CommandKind::Recycle,
        &[Mql, Sql],
        Iql,
        &[],
        Some(ReasonList::Recycle),
    ),
    manual(
        Move::Convert,
        CommandKind::Convert,
        &[Iql, Mql, Sql],
        Customer,
        &[],
        None,
    ),
    manual(
        Move::Disqualify,
        CommandKind::Disqualify,
        &[Iql, Mql, Sql],
        Disqualified,
        &[],
        Some(ReasonList::Disqualify),
    ),
    manual(
        Move::Requalify,
        CommandKind::Requalify,
        &[Disqualified],
        Iql,
        &[NoDisqualifyingAttribute],
        None,
    ),
    automatic(
        Move::AutoQualify,
        CommandKind::RecordEngagement,
        &[Iql],
        Mql,
        &[
            EngagementAtLeast,
            FitAtLeast,
            GradeAtLeast,
            RequiresAttributes,
            NotDisqualified,
        ],
    ),
    automatic(
        Move::SalesReady,
        CommandKind::RecordEngagement,
        &[Iql, Mql],
        Sql,
        &[SalesReadyAction, RequiresAttributes, NotDisqualified],
    ),
    automatic(
        Move::AutoDisqualify,
        CommandKind::RecordEngagement,
        &[Iql, Mql, Sql],
        Disqualified,
        &[DisqualifyingMatch],
    ),
    automatic(Move::SlaRecycle, CommandKind::TimerFired, &[Mql, Sql], Iql, &[]),
];

/// The commands that may set the automatic moves off, besides the one
/// named in the table: a profile change or a policy change re-checks them too.
pub const AUTOMATIC_TRIGGERS: [CommandKind; 4] = [
    CommandKind::Capture,
    CommandKind::RecordEngagement,
    CommandKind::UpdateProfile,
    CommandKind::PolicyChanged,
];

/// The edge a manual command takes from `stage`, if any.
pub fn manual_edge(stage: Stage, command: CommandKind) -> Option<&'static Edge> {
    TABLE
        .iter()
        .find(|e| !e.automatic && e.command == command && e.from.contains(&stage))
}

/// The edge of an automatic move, if it leaves from `stage`.
pub fn automatic_edge(stage: Stage, by: Move) -> Option<&'static Edge> {
    TABLE
        .iter()
        .find(|e| e.automatic && e.by == by && e.from.contains(&stage))
}

/// Every stage the edge enters from `from`, in order: the forward path for a
/// forward jump, else just the target.
pub fn stages_entered(from: Stage, to: Stage) -> Vec<Stage> {
    let path = from.forward_path(to);
    if path.is_empty() { vec![to] } else { path.to_vec() }
}
