//! The transition table, as data: every edge a lead can take, what sets it
//! off, the guards it must pass, and what it does besides moving the lead.
//!
//! `docs/lifecycle.md` is generated from [`TABLE`]; a test fails when it is
//! out of date.

use crate::policy::ReasonList;
use crate::stage::Stage;
use crate::transition::{CommandKind, Guard, Move};

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
use Stage::{Customer, Disqualified, Iql, Merged, Mql, Sql};

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

/// A row of a merge (or its undoing): taken by name by the engine, never
/// by a caller's `Transition`, and never backward (the lead keeps its
/// qualifying window).
const fn merging(by: Move, command: CommandKind, from: &'static [Stage], to: Stage) -> Edge {
    Edge {
        by,
        command,
        from,
        to,
        guards: &[],
        automatic: false,
        backward: false,
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
    merging(Move::Merge, CommandKind::Merge, &[Iql], Mql),
    merging(Move::Merge, CommandKind::Merge, &[Iql, Mql], Sql),
    merging(Move::Merge, CommandKind::Merge, &[Iql, Mql, Sql], Customer),
    merging(
        Move::MergedInto,
        CommandKind::Merge,
        &[Iql, Mql, Sql, Customer, Disqualified],
        Merged,
    ),
    merging(Move::Unmerge, CommandKind::Unmerge, &[Merged], Iql),
    merging(Move::Unmerge, CommandKind::Unmerge, &[Merged], Mql),
    merging(Move::Unmerge, CommandKind::Unmerge, &[Merged], Sql),
    merging(Move::Unmerge, CommandKind::Unmerge, &[Merged], Customer),
    merging(Move::Unmerge, CommandKind::Unmerge, &[Merged], Disqualified),
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

/// The automatic move that takes a lead in `stage` up the forward path
/// (IQL → MQL by its scores, MQL → SQL by a sales-ready action); `None`
/// where no automatic move goes up.
pub fn automatic_move_up(stage: Stage) -> Option<Move> {
    match stage {
        Stage::Iql => Some(Move::AutoQualify),
        Stage::Mql => Some(Move::SalesReady),
        _ => None,
    }
}

/// The edge a merge or an unmerge takes from `from` to `to`, if any.
pub fn merging_edge(by: Move, from: Stage, to: Stage) -> Option<&'static Edge> {
    TABLE
        .iter()
        .find(|e| e.by == by && e.to == to && e.from.contains(&from))
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

/// Whether the reason a move records is always text the policy defines —
/// an entry of a `[reasons]` list the caller chose from, or what leadflow
/// sets on an automatic move (a disqualifying rule's id, an SLA's recycle
/// reason) — and never a caller's own words, which may name a person (a
/// PROMOTE's reason, a note on an ACCEPT). Only such reasons may be shown
/// to everyone who can see the funnel.
pub fn reason_from_policy(by: Move) -> bool {
    let mut edges = TABLE.iter().filter(|e| e.by == by).peekable();
    edges.peek().is_some() && edges.all(|e| e.automatic || e.reasons.is_some())
}

/// Whether a move sends a lead back or out: down from a stage of the
/// forward path to IQL (a rejection, a recycle) or into DISQUALIFIED. The
/// funnel counts the reasons of these moves; the evidence calls them losses.
pub fn sends_back(by: Move) -> bool {
    TABLE.iter().any(|e| {
        e.by == by && e.from.iter().all(|s| s.rank().is_some()) && (e.to == Disqualified || e.backward)
    })
}

/// Whether a lead enters `stage` on the policy's engagement score threshold
/// (`[stages.MQL] engagement_at_least`, read by the `engagement_at_least`
/// guard): the stages whose threshold a calibration can tune.
pub fn has_score_threshold(stage: Stage) -> bool {
    TABLE
        .iter()
        .any(|e| e.to == stage && e.guards.contains(&EngagementAtLeast))
}
