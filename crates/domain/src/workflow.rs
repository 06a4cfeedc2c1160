//! Nurture workflows and SLAs as decisions: which triggers fire now, which
//! durable timers to arm, which to cancel. Firing a timer whose condition no
//! longer holds does nothing.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::engagement::Engagement;
use crate::num::round6;
use crate::policy::{Policy, Sla, SlaKind, Workflow, WorkflowOn};
use crate::score::ScoreState;
use crate::stage::Stage;
use crate::time::{Span, Timestamp};
use crate::transition::{Cause, Move, TransitionRecord};

/// Triggers and timers whose moment lies further than this before the wall
/// clock when decided (a history import) are recorded but not streamed.
pub const SUPPRESS_AFTER: Span = Span::from_hours(1);

/// A score threshold a workflow watches.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "side", content = "n", rename_all = "snake_case")]
pub enum Crossing {
    /// `engagement_below:n`: fires when the score goes from ≥ n to < n.
    Below(f64),
    /// `engagement_above:n`: fires when the score goes from ≤ n to > n.
    Above(f64),
}

impl Crossing {
    /// Whether a score is on the firing side.
    pub fn reached(self, score: f64) -> bool {
        match self {
            Self::Below(n) => round6(score) < n,
            Self::Above(n) => round6(score) > n,
        }
    }

    /// The magnitude decay must bring the score to for it to cross, where
    /// decay alone can (toward zero: a positive score below a positive
    /// threshold, a negative one above a negative threshold). Aimed a little
    /// past the threshold so the rounded score has crossed at that instant.
    pub fn decay_target(self) -> Option<f64> {
        match self {
            Self::Below(n) if n > 0.0 => Some(n - 6e-7),
            Self::Above(n) if n < 0.0 => Some(n + 6e-7),
            _ => None,
        }
    }

    /// Whether a workflow is `on` this threshold of `model`'s score (`None`:
    /// the default model).
    pub fn matches(self, model: Option<&str>, on: &WorkflowOn) -> bool {
        match (self, on) {
            (Self::Below(a), WorkflowOn::EngagementBelow(m, b))
            | (Self::Above(a), WorkflowOn::EngagementAbove(m, b)) => a == *b && m.as_deref() == model,
            _ => false,
        }
    }
}

impl fmt::Display for Crossing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Below(n) => write!(f, "below:{n}"),
            Self::Above(n) => write!(f, "above:{n}"),
        }
    }
}

impl Policy {
    /// The distinct score thresholds workflows watch, each with its model
    /// (`None`: the default), in policy order.
    pub fn crossings(&self) -> Vec<(Option<String>, Crossing)> {
        let mut out: Vec<(Option<String>, Crossing)> = Vec::new();
        for wf in &self.workflows {
            let watched = match &wf.on {
                WorkflowOn::EngagementBelow(model, n) => (model.clone(), Crossing::Below(*n)),
                WorkflowOn::EngagementAbove(model, n) => (model.clone(), Crossing::Above(*n)),
                _ => continue,
            };
            if !out.contains(&watched) {
                out.push(watched);
            }
        }
        out
    }
}

/// The side of one threshold a model's qualifying score was last seen on.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CrossingState {
    pub crossing: Crossing,
    /// On the firing side (so it has fired, or started there).
    pub reached: bool,
    /// The `[[model]]` whose score it watches; `None`: the default model.
    #[serde(default)]
    pub model: Option<String>,
}

impl CrossingState {
    /// The index of the model it watches under `policy`; `None` for a
    /// model the policy does not have (a state kept from another policy).
    pub fn model_index(&self, policy: &Policy) -> Option<usize> {
        policy.model_named(self.model.as_deref())
    }

    /// The durable timer of its decay crossing.
    pub fn timer(&self) -> TimerKind {
        match &self.model {
            None => TimerKind::Crossing(self.crossing),
            Some(model) => TimerKind::ModelCrossing(model.clone(), self.crossing),
        }
    }
}

/// Crossing states for the scores a qualifying state gives at `t`, set
/// without firing anything (a new lead, a new qualifying window, a new
/// policy).
pub fn rebase_crossings(policy: &Policy, window: &ScoreState, t: Timestamp) -> Vec<CrossingState> {
    policy
        .crossings()
        .into_iter()
        .map(|(model, crossing)| {
            let index = policy.model_named(model.as_deref()).unwrap_or(0);
            CrossingState {
                crossing,
                reached: crossing.reached(window.value_at(policy, index, t)),
                model,
            }
        })
        .collect()
}

/// What a durable timer is for. Each kind is armed at most once per lead:
/// arming it again moves it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum TimerKind {
    /// A delayed workflow step, by workflow id.
    Workflow(String),
    /// An SLA, by id.
    Sla(String),
    /// The instant decay alone takes the default model's score across a threshold.
    Crossing(Crossing),
    /// The instant decay alone changes the lead's MQL level.
    Level,
    /// The instant decay alone takes a `[[model]]`'s score (by id) across
    /// a threshold.
    ModelCrossing(String, Crossing),
}

impl TimerKind {
    /// A stable text key, unique per lead (`workflow:mql-day-3`,
    /// `sla:mql_idle`, `crossing:below:30`, `crossing:product_b:below:30`).
    pub fn key(&self) -> String {
        match self {
            Self::Workflow(id) => format!("workflow:{id}"),
            Self::Sla(id) => format!("sla:{id}"),
            Self::Crossing(c) => format!("crossing:{c}"),
            Self::Level => "level".to_owned(),
            Self::ModelCrossing(model, c) => format!("crossing:{model}:{c}"),
        }
    }
}

impl FromStr for TimerKind {
    type Err = String;

    fn from_str(key: &str) -> Result<Self, Self::Err> {
        let bad = || format!("bad timer key {key:?}");
        if key == "level" {
            return Ok(Self::Level);
        }
        let (kind, rest) = key.split_once(':').ok_or_else(bad)?;
        match kind {
            "workflow" => Ok(Self::Workflow(rest.to_owned())),
            "sla" => Ok(Self::Sla(rest.to_owned())),
            "crossing" => {
                let (model, rest) = match rest.split(':').count() {
                    3 => rest.split_once(':').map(|(m, r)| (Some(m), r)).ok_or_else(bad)?,
                    _ => (None, rest),
                };
                let (side, n) = rest.split_once(':').ok_or_else(bad)?;
                let n: f64 = n.parse().map_err(|_| bad())?;
                let crossing = match side {
                    "below" => Crossing::Below(n),
                    "above" => Crossing::Above(n),
                    _ => return Err(bad()),
                };
                Ok(match model {
                    None => Self::Crossing(crossing),
                    Some(model) => Self::ModelCrossing(model.to_owned(), crossing),
                })
            }
            _ => Err(bad()),
        }
    }
}

/// A durable timer.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Timer {
    pub kind: TimerKind,
    pub due_at: Timestamp,
    /// The stage, and the instant it was entered, that the timer belongs to:
    /// leaving the stage cancels it, and it fires only without a break since.
    pub bound: Option<(Stage, Timestamp)>,
    /// Its moment lay over an hour before the wall clock when it was armed:
    /// its stage effects apply when it fires, but nothing is streamed.
    pub suppressed: bool,
}

/// A change to the lead's timers, applied in order.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum TimerChange {
    /// Arm, or move, the timer of this kind.
    Schedule(Timer),
    Cancel(TimerKind),
    /// Cancel every timer bound to a stage (the lead left it).
    CancelStageBound,
}

/// An event for the outbox, in stream order.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Event {
    Transition(TransitionRecord),
    Trigger(Trigger),
    SlaBreached(SlaBreach),
    LevelChanged(LevelChange),
}

impl Event {
    /// Recorded but not streamed.
    pub fn suppressed(&self) -> bool {
        match self {
            Self::Transition(_) => false,
            Self::Trigger(t) => t.suppressed,
            Self::SlaBreached(b) => b.suppressed,
            Self::LevelChanged(l) => l.suppressed,
        }
    }

    pub fn at(&self) -> Timestamp {
        match self {
            Self::Transition(t) => t.at,
            Self::Trigger(t) => t.at,
            Self::SlaBreached(b) => b.at,
            Self::LevelChanged(l) => l.at,
        }
    }
}

/// A workflow fired: the nurture engines are told to run `emit`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Trigger {
    pub workflow_id: String,
    pub emit: String,
    /// The workflow's `on`, as written.
    pub on: String,
    pub at: Timestamp,
    /// The lead's stage when it fired.
    pub stage: Stage,
    pub suppressed: bool,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SlaBreach {
    pub sla_id: String,
    pub stage: Stage,
    pub at: Timestamp,
    pub suppressed: bool,
}

/// A lead's MQL level changed: a history entry, not a transition (the
/// stage and the lead's version stay).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LevelChange {
    /// Position among the lead's level changes, from 1.
    pub seq: u64,
    /// Level ids; `None` is no level.
    pub from: Option<String>,
    pub to: Option<String>,
    pub at: Timestamp,
    /// The lead's stage after the change (a lead leaving MQL loses its level).
    pub stage: Stage,
    /// What changed it: the command's cause, or `DECAY` when decay alone did.
    pub cause: Cause,
    /// The scores the levels read at that instant.
    pub fit: f64,
    pub engagement: f64,
    pub suppressed: bool,
}

/// Something a workflow can be `on`.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Happening {
    Entered(Stage),
    Rejected(String),
    Recycled(String),
    SlaBreached(String),
    /// A threshold of a model's score (`None`: the default model).
    Crossed(Option<String>, Crossing),
    /// The lead's level became this one.
    Level(String),
}

impl Happening {
    /// What a move into `to` sets off: the stage entered, and a rejection
    /// or a recycle with its reason.
    pub(crate) fn of_move(by: Move, to: Stage, reason: Option<&str>) -> Vec<Self> {
        // An unmerge gives a lead back the stage it had: it enters nothing new.
        if matches!(by, Move::MergedInto | Move::Unmerge) {
            return Vec::new();
        }
        let mut out = vec![Self::Entered(to)];
        if let Some(reason) = reason {
            match by {
                Move::Reject => out.push(Self::Rejected(reason.to_owned())),
                Move::Recycle | Move::SlaRecycle => out.push(Self::Recycled(reason.to_owned())),
                _ => {}
            }
        }
        out
    }

    fn sets_off(&self, on: &WorkflowOn) -> bool {
        match (self, on) {
            (Self::Entered(a), WorkflowOn::Entered(b)) => a == b,
            (Self::Rejected(a), WorkflowOn::Rejected(b))
            | (Self::Recycled(a), WorkflowOn::Recycled(b))
            | (Self::SlaBreached(a), WorkflowOn::SlaBreached(b))
            | (Self::Level(a), WorkflowOn::Level(b)) => a == b,
            (Self::Crossed(model, c), on) => c.matches(model.as_deref(), on),
            _ => false,
        }
    }
}

pub(crate) fn is_suppressed(moment: Timestamp, now: Timestamp) -> bool {
    moment < now.saturating_sub(SUPPRESS_AFTER)
}

/// The trigger of a workflow that fires at `at`, the lead being in `stage`.
pub(crate) fn trigger(wf: &Workflow, at: Timestamp, stage: Stage, suppressed: bool) -> Event {
    Event::Trigger(Trigger {
        workflow_id: wf.id.clone(),
        emit: wf.emit.clone(),
        on: wf.on.to_string(),
        at,
        stage,
        suppressed,
    })
}

/// The timer of a delayed workflow, bound to the stage it was set off in.
fn workflow_timer(
    wf: &Workflow,
    due_at: Timestamp,
    bound: (Stage, Timestamp),
    suppressed: bool,
) -> TimerChange {
    TimerChange::Schedule(Timer {
        kind: TimerKind::Workflow(wf.id.clone()),
        due_at,
        bound: Some(bound),
        suppressed,
    })
}

/// The timer of an SLA, bound to its stage and the instant it was entered.
fn sla_timer(sla: &Sla, due_at: Timestamp, entered: Timestamp, suppressed: bool) -> TimerChange {
    TimerChange::Schedule(Timer {
        kind: TimerKind::Sla(sla.id.clone()),
        due_at,
        bound: Some((sla.stage, entered)),
        suppressed,
    })
}

/// When an SLA of a stage entered at `entered` breaches, the lead's latest
/// engagement being at `latest`: an idle SLA counts from the later of the
/// two, an `until` SLA from the entry.
fn sla_due(sla: &Sla, entered: Timestamp, latest: Timestamp) -> Timestamp {
    match sla.kind {
        SlaKind::Idle => latest.max(entered).saturating_add(sla.within),
        SlaKind::Until(_) => entered.saturating_add(sla.within),
    }
}

/// Whether an engagement of type `kind` at `occurred_at` meets an `until`
/// SLA of a stage entered at `entered`: the right type, within the window.
fn meets(sla: &Sla, kind: &str, occurred_at: Timestamp, entered: Timestamp) -> bool {
    matches!(&sla.kind, SlaKind::Until(ty) if ty == kind)
        && occurred_at >= entered
        && occurred_at <= entered.saturating_add(sla.within)
}

/// The workflows `happenings` set off at `at`, in policy order: immediate
/// ones as triggers (where `if_still` holds), delayed ones as timers bound
/// to the lead's current stage.
pub(crate) fn workflows_for(
    policy: &Policy,
    happenings: &[Happening],
    at: Timestamp,
    stage: (Stage, Timestamp),
    now: Timestamp,
) -> (Vec<Event>, Vec<TimerChange>) {
    let mut events = Vec::new();
    let mut timers = Vec::new();
    for wf in &policy.workflows {
        if !happenings.iter().any(|h| h.sets_off(&wf.on)) {
            continue;
        }
        match wf.after {
            None => {
                if wf.if_still.is_none_or(|s| s == stage.0) {
                    events.push(trigger(wf, at, stage.0, is_suppressed(at, now)));
                }
            }
            Some(after) => {
                let due_at = at.saturating_add(after);
                timers.push(workflow_timer(wf, due_at, stage, is_suppressed(due_at, now)));
            }
        }
    }
    (events, timers)
}

/// The SLA timers entering `stage` at `at` arms.
pub(crate) fn sla_timers(policy: &Policy, stage: Stage, at: Timestamp, now: Timestamp) -> Vec<TimerChange> {
    policy
        .slas
        .iter()
        .filter(|s| s.stage == stage)
        .map(|sla| {
            let due_at = sla_due(sla, at, at);
            sla_timer(sla, due_at, at, is_suppressed(due_at, now))
        })
        .collect()
}

/// What an engagement does to the SLAs of the stage the lead stays in: an
/// idle SLA restarts from the latest engagement, an `until` SLA is met.
pub(crate) fn sla_engagement(
    policy: &Policy,
    stage: (Stage, Timestamp),
    kind: &str,
    occurred_at: Timestamp,
    latest: Timestamp,
    now: Timestamp,
) -> Vec<TimerChange> {
    let (stage, entered) = stage;
    let mut out = Vec::new();
    if occurred_at < entered {
        return out; // an engagement from before the stage began
    }
    for sla in policy.slas.iter().filter(|s| s.stage == stage) {
        match &sla.kind {
            SlaKind::Idle => {
                let due_at = sla_due(sla, entered, latest);
                out.push(sla_timer(sla, due_at, entered, is_suppressed(due_at, now)));
            }
            SlaKind::Until(_) if meets(sla, kind, occurred_at, entered) => {
                out.push(TimerChange::Cancel(TimerKind::Sla(sla.id.clone())));
            }
            SlaKind::Until(_) => {}
        }
    }
    out
}

/// The timers a lead has pending in its stage under a new policy, where
/// still ahead of `t`: each SLA of the stage not yet met (by an engagement
/// of `log`), and each delayed workflow the move into the stage (`by`, for
/// `reason`) set off. Timers already due are left to fire as armed; none is
/// suppressed, as the lead is being re-planned now.
pub(crate) fn replan(
    policy: &Policy,
    stage: (Stage, Timestamp),
    by: Move,
    reason: Option<&str>,
    latest: Timestamp,
    log: &[Engagement],
    t: Timestamp,
) -> Vec<TimerChange> {
    let (current, entered) = stage;
    let mut out = Vec::new();
    for sla in policy.slas.iter().filter(|s| s.stage == current) {
        let met = matches!(sla.kind, SlaKind::Until(_))
            && log.iter().any(|e| meets(sla, &e.kind, e.occurred_at, entered));
        let due_at = sla_due(sla, entered, latest);
        if !met && due_at > t {
            out.push(sla_timer(sla, due_at, entered, false));
        }
    }
    let happenings = Happening::of_move(by, current, reason);
    for wf in &policy.workflows {
        let Some(after) = wf.after else { continue };
        let due_at = entered.saturating_add(after);
        if happenings.iter().any(|h| h.sets_off(&wf.on)) && due_at > t {
            out.push(workflow_timer(wf, due_at, stage, false));
        }
    }
    out
}
