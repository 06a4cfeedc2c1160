//! Commands in, decisions out: the one place a lead's next state is decided.

use std::borrow::Cow;
use std::collections::BTreeMap;

use super::command::{
    Checked, Command, Context, Decision, ManualTransition, check_engagement, check_instant,
};
use super::guards::{Facts, Fits, disqualifying_match, evaluate_all};
use super::history::History;
use super::lead::Lead;
use super::levels::{decay_changes_level, level_index};
use super::table::{Edge, automatic_edge, stages_entered};
use crate::engagement::Engagement;
use crate::error::{DomainError, FieldViolation};
use crate::num::round6;
use crate::policy::Policy;
use crate::profile::Profile;
use crate::score::ScoreState;
use crate::stage::Stage;
use crate::time::Timestamp;
use crate::transition::{Cause, CommandKind, Deal, GuardCheck, Move, TransitionRecord};
use crate::workflow::{
    Event, Happening, LevelChange, SlaBreach, Timer, TimerChange, TimerKind, is_suppressed, rebase_crossings,
    replan, sla_engagement, sla_timers, trigger, workflows_for,
};

/// Creates a lead: IQL at `captured_at` (default now), then whatever
/// automatic move its profile already calls for.
pub fn capture(
    policy: &Policy,
    attributes: BTreeMap<String, String>,
    captured_at: Option<Timestamp>,
    ctx: &Context,
) -> Result<Decision, DomainError> {
    let t = captured_at.unwrap_or(ctx.now);
    check_instant("captured_at", t, ctx)?;
    let profile = Profile::capture(attributes)?;
    let qualifying = ScoreState::new(policy, None);
    let lead = Lead {
        stage: Stage::Iql,
        profile,
        captured_at: t,
        entered_stage_at: t,
        last_transition_at: t,
        entered_by: Move::Capture,
        entered_reason: None,
        window_start: None,
        lifetime: ScoreState::new(policy, None),
        crossings: rebase_crossings(policy, &qualifying, t),
        qualifying,
        evaluated_at: t,
        timers: BTreeMap::new(),
        level: None,
        level_changes: 0,
    };
    let mut run = Run::new(policy, lead, ctx, None, Cause::Capture);
    let fit = run.fit();
    run.events.push(Event::Transition(TransitionRecord {
        from: None,
        to: Stage::Iql,
        at: t,
        by: Move::Capture,
        cause: Cause::Capture,
        reason: None,
        actor: None,
        deal: None,
        fit,
        engagement: 0.0,
        guards: Vec::new(),
    }));
    run.timers.extend(sla_timers(policy, Stage::Iql, t, ctx.now));
    run.fire(&[Happening::Entered(Stage::Iql)], t);
    run.auto_advance(t, &Cause::Capture)?;
    run.finish(t, true);
    Ok(run.done(false))
}

/// Decides a command for an existing lead.
///
/// `history` is the lead's engagement log as stored (without the command's
/// own engagement). It is needed only when the decision reads the log:
/// without it, such a decision returns [`DomainError::HistoryRequired`].
pub fn decide(
    policy: &Policy,
    lead: &Lead,
    command: Command,
    ctx: &Context,
    history: Option<&[Engagement]>,
) -> Result<Decision, DomainError> {
    decide_with(
        policy,
        lead,
        command,
        ctx,
        history.map(|h| History::Full(Cow::Borrowed(h))),
    )
}

pub(super) fn decide_with(
    policy: &Policy,
    lead: &Lead,
    command: Command,
    ctx: &Context,
    history: Option<History<'_>>,
) -> Result<Decision, DomainError> {
    if !lead.lifetime.fits(policy) || !lead.qualifying.fits(policy) {
        // Scored under another policy: only a replay can continue.
        if history.is_none() {
            return Err(DomainError::HistoryRequired);
        }
    }
    let cause = match &command {
        Command::RecordEngagement(e) => Cause::Engagement {
            event_id: e.event_id.clone(),
        },
        Command::UpdateProfile(_) => Cause::ProfileUpdate,
        Command::Transition(_) => Cause::Manual,
        Command::TimerFired(timer) => Cause::Timer {
            key: timer.kind.key(),
        },
        Command::PolicyChanged { .. } => Cause::PolicyChange,
        Command::Identify { anonymous_id, .. } => Cause::Identify {
            anonymous_id: anonymous_id.clone(),
        },
        Command::Merge { duplicate, .. } => Cause::Merge {
            lead_id: duplicate.lead_id.clone(),
        },
        Command::MergedInto { survivor_id, .. } => Cause::Merge {
            lead_id: survivor_id.clone(),
        },
        Command::Unmerge { survivor_id, .. } => Cause::Unmerge {
            lead_id: survivor_id.clone(),
        },
        Command::Unmerged { duplicate_id, .. } => Cause::Unmerge {
            lead_id: duplicate_id.clone(),
        },
    };
    // A merged lead takes its unmerge, and a new policy's scores (which
    // move nothing: no edge leaves MERGED but the unmerge).
    if lead.stage == Stage::Merged
        && !matches!(command, Command::Unmerge { .. } | Command::PolicyChanged { .. })
    {
        return Err(DomainError::InvalidTransition {
            stage: lead.stage,
            command: command.kind(),
        });
    }
    let mut run = Run::new(policy, lead.clone(), ctx, history, cause);
    if !lead.lifetime.fits(policy) && !matches!(command, Command::PolicyChanged { .. }) {
        run.rescore()?;
    }
    match command {
        Command::RecordEngagement(event) => run.engagement(event)?,
        Command::UpdateProfile(changes) => {
            let (profile, changed) = run.lead.profile.merge(changes)?;
            if !changed {
                return Ok(run.done(false));
            }
            let t = ctx.now.max(run.lead.last_transition_at);
            run.begin(t);
            run.lead.profile = profile;
            run.auto_advance(t, &Cause::ProfileUpdate)?;
            run.finish(t, false);
            return Ok(run.done(true));
        }
        Command::Transition(manual) => run.manual(manual)?,
        Command::TimerFired(timer) => run.timer(timer)?,
        Command::PolicyChanged { at } => run.policy_changed(at)?,
        Command::Identify {
            anonymous_id,
            events,
            at,
        } => run.identify(anonymous_id, &events, at)?,
        Command::Merge { duplicate, at } => {
            let changed = run.merge(duplicate, at)?;
            return Ok(run.done(changed));
        }
        Command::MergedInto { at, .. } => run.merged_into(at)?,
        Command::Unmerge { stage, at, .. } => run.unmerge(stage, at)?,
        Command::Unmerged { attributes, at, .. } => {
            let changed = run.unmerged(attributes, at)?;
            return Ok(run.done(changed));
        }
    }
    Ok(run.done(false))
}

/// The details a move records.
#[derive(Default)]
struct Details {
    reason: Option<String>,
    actor: Option<String>,
    deal: Option<Deal>,
}

/// One decision being made.
struct Run<'a> {
    policy: &'a Policy,
    now: Timestamp,
    history: Option<History<'a>>,
    lead: Lead,
    events: Vec<Event>,
    timers: Vec<TimerChange>,
    /// Firing a timer: what it sets off is suppressed exactly when the timer
    /// was (decided when it was armed — a history import — not when a
    /// worker got to it, so an outage delays triggers but loses none).
    firing: Option<bool>,
    /// What the command is, for the level changes it makes.
    cause: Cause,
    /// Level changes set off workflows (not when a new policy rebases the
    /// levels, as it rebases the crossings).
    level_workflows: bool,
}

impl<'a> Run<'a> {
    fn new(
        policy: &'a Policy,
        lead: Lead,
        ctx: &Context,
        history: Option<History<'a>>,
        cause: Cause,
    ) -> Self {
        Self {
            policy,
            now: ctx.now,
            history,
            lead,
            events: Vec::new(),
            timers: Vec::new(),
            firing: None,
            cause,
            level_workflows: true,
        }
    }

    fn done(mut self, profile_changed: bool) -> Decision {
        // Keep only the changes that change something, and mirror them in
        // the lead's own list of pending timers.
        let pending = &mut self.lead.timers;
        let mut changes = Vec::with_capacity(self.timers.len());
        for change in self.timers {
            match &change {
                TimerChange::Schedule(t) => {
                    if pending.get(&t.kind.key()) == Some(t) {
                        continue;
                    }
                    pending.insert(t.kind.key(), t.clone());
                }
                TimerChange::Cancel(kind) => {
                    if pending.remove(&kind.key()).is_none() {
                        continue;
                    }
                }
                TimerChange::CancelStageBound => {
                    let before = pending.len();
                    pending.retain(|_, t| t.bound.is_none());
                    if pending.len() == before {
                        continue;
                    }
                }
            }
            changes.push(change);
        }
        Decision {
            lead: self.lead,
            events: self.events,
            timers: changes,
            profile_changed,
        }
    }

    /// The whole log.
    fn history(&self) -> Result<&[Engagement], DomainError> {
        self.history
            .as_ref()
            .and_then(History::whole)
            .ok_or(DomainError::HistoryRequired)
    }

    /// The score state over the window after `since` of the events up to
    /// `until`.
    fn replay(&self, since: Option<Timestamp>, until: Option<Timestamp>) -> Result<ScoreState, DomainError> {
        self.history
            .as_ref()
            .ok_or(DomainError::HistoryRequired)?
            .replay(self.policy, since, until)
    }

    /// The log given, with a late `event` in its place.
    fn insert(&mut self, event: &Engagement) -> Result<(), DomainError> {
        let history = self.history.take().ok_or(DomainError::HistoryRequired)?;
        match history.with(event) {
            Ok(with) => {
                self.history = Some(with);
                Ok(())
            }
            Err(without) => {
                self.history = Some(without);
                Err(DomainError::HistoryRequired)
            }
        }
    }

    /// The fit scores the guards read.
    fn fits(&self) -> Fits {
        Fits::of(self.policy, &self.lead.profile)
    }

    /// The fit a transition records: the MQL model's.
    fn fit(&self) -> f64 {
        round6(self.fits().fit)
    }

    /// The qualifying score state as of `t`: the lead's own unless events
    /// after `t` were applied, else a replay of the log up to `t`.
    fn window_at(&self, t: Timestamp) -> Result<ScoreState, DomainError> {
        if self.lead.qualifying.last_at().is_none_or(|last| last <= t) {
            return Ok(self.lead.qualifying.clone());
        }
        self.replay(self.lead.window_start, Some(t))
    }

    fn facts<'s>(&'s self, window: &'s ScoreState, t: Timestamp) -> Facts<'s> {
        Facts::at(self.policy, &self.lead.profile, window, t)
    }

    /// Rebuilds both score states from the log under the current policy.
    fn rescore(&mut self) -> Result<(), DomainError> {
        let lifetime = self.replay(None, None)?;
        let qualifying = self.replay(self.lead.window_start, None)?;
        self.lead.lifetime = lifetime;
        self.lead.qualifying = qualifying;
        Ok(())
    }

    // ---- commands ----------------------------------------------------------

    fn engagement(&mut self, event: Engagement) -> Result<(), DomainError> {
        let policy = self.policy;
        check_engagement(policy, &event, &Context { now: self.now })?;

        let t = event.occurred_at.max(self.lead.last_transition_at);
        self.begin(t);
        if self.lead.lifetime.can_append(&event) {
            self.lead.lifetime.apply(policy, &event);
            self.lead.qualifying.apply(policy, &event);
        } else {
            // A late event: replay the log with it in its place.
            self.insert(&event)?;
            self.rescore()?;
        }
        let stage_before = (self.lead.stage, self.lead.entered_stage_at);
        self.auto_advance(
            t,
            &Cause::Engagement {
                event_id: event.event_id.clone(),
            },
        )?;
        if (self.lead.stage, self.lead.entered_stage_at) == stage_before {
            let latest = self.lead.lifetime.last_at().unwrap_or(event.occurred_at);
            self.timers.extend(sla_engagement(
                policy,
                stage_before,
                &event.kind,
                event.occurred_at,
                latest,
                self.now,
            ));
        }
        self.finish(t, true);
        Ok(())
    }

    /// Anonymous activity joins the log at its own instants; the scores
    /// are the joined log's, and the moves it makes are decided at the
    /// identification's instant.
    fn identify(
        &mut self,
        anonymous_id: String,
        events: &[Engagement],
        at: Option<Timestamp>,
    ) -> Result<(), DomainError> {
        let t = at.unwrap_or(self.now.max(self.lead.last_transition_at));
        check_instant("occurred_at", t, &Context { now: self.now })?;
        if t < self.lead.last_transition_at {
            return Err(DomainError::invalid(FieldViolation::new(
                "occurred_at",
                format!(
                    "{t} is before the lead's last transition at {}",
                    self.lead.last_transition_at
                ),
            )));
        }
        let t = super::command::identification_instant(t, events);
        self.begin(t);
        for event in events {
            self.insert(event)?;
        }
        if !events.is_empty() {
            self.rescore()?;
        }
        self.auto_advance(t, &Cause::Identify { anonymous_id })?;
        self.finish(t, !events.is_empty());
        Ok(())
    }

    /// A duplicate's events join the log at their own instants and the
    /// attributes the lead lacks come with it; if the duplicate was
    /// further along the forward path, the lead jumps to its stage (a
    /// DISQUALIFIED lead stays); then the automatic moves, all at `t`.
    /// Whether the profile changed.
    fn merge(&mut self, duplicate: super::command::Duplicate, t: Timestamp) -> Result<bool, DomainError> {
        let policy = self.policy;
        self.begin(t);
        let attributes = super::command::merge_attributes(
            &self.lead.profile,
            &duplicate.attributes,
            &policy.identity.prefer_duplicate,
        );
        let (profile, changed) = self.lead.profile.merge(attributes.set)?;
        self.lead.profile = profile;
        for event in &duplicate.events {
            self.insert(event)?;
        }
        if !duplicate.events.is_empty() {
            self.rescore()?;
        }
        let cause = Cause::Merge {
            lead_id: duplicate.lead_id,
        };
        let ahead = matches!(
            (self.lead.stage.rank(), duplicate.stage.rank()),
            (Some(mine), Some(theirs)) if theirs > mine
        );
        if ahead && let Some(edge) = super::table::merging_edge(Move::Merge, self.lead.stage, duplicate.stage)
        {
            let window = self.window_at(t)?;
            let details = Details {
                deal: duplicate.deal.filter(|_| duplicate.stage == Stage::Customer),
                ..Details::default()
            };
            self.take(edge, t, &cause, details, Vec::new(), &window, Vec::new())?;
        }
        self.auto_advance(t, &cause)?;
        self.finish(t, true);
        Ok(changed)
    }

    /// The lead enters MERGED at `t`; every timer it had goes.
    fn merged_into(&mut self, t: Timestamp) -> Result<(), DomainError> {
        let edge = super::table::merging_edge(Move::MergedInto, self.lead.stage, Stage::Merged).ok_or(
            DomainError::InvalidTransition {
                stage: self.lead.stage,
                command: CommandKind::Merge,
            },
        )?;
        self.begin(t);
        let window = self.window_at(t)?;
        let cause = self.cause.clone();
        self.take(
            edge,
            t,
            &cause,
            Details::default(),
            Vec::new(),
            &window,
            Vec::new(),
        )?;
        self.finish(t, false);
        self.timers.retain(|c| !matches!(c, TimerChange::Schedule(_)));
        let pending: Vec<TimerKind> = self.lead.timers.values().map(|t| t.kind.clone()).collect();
        self.timers.extend(pending.into_iter().map(TimerChange::Cancel));
        Ok(())
    }

    /// The lead leaves MERGED for `stage` at `t`, its scores those of its
    /// log as given back; then the automatic moves.
    fn unmerge(&mut self, stage: Stage, t: Timestamp) -> Result<(), DomainError> {
        let edge = super::table::merging_edge(Move::Unmerge, self.lead.stage, stage).ok_or(
            DomainError::InvalidTransition {
                stage: self.lead.stage,
                command: CommandKind::Unmerge,
            },
        )?;
        check_instant("occurred_at", t, &Context { now: self.now })?;
        let t = t.max(self.lead.last_transition_at);
        self.rescore()?;
        // Nothing it missed while merged is fired now: its crossings and
        // level start from its scores at the unmerge.
        self.lead.crossings = crate::workflow::rebase_crossings(self.policy, &self.lead.qualifying, t);
        self.lead.evaluated_at = t;
        let window = self.window_at(t)?;
        let cause = self.cause.clone();
        self.take(
            edge,
            t,
            &cause,
            Details::default(),
            Vec::new(),
            &window,
            Vec::new(),
        )?;
        self.replan(t)?;
        self.auto_advance(t, &cause)?;
        self.finish(t, true);
        Ok(())
    }

    /// The survivor of an undone merge: re-scored at `t` over its log as
    /// it is left, its profile changed by `attributes`; its stage stays.
    /// Whether the profile changed.
    fn unmerged(&mut self, attributes: BTreeMap<String, String>, t: Timestamp) -> Result<bool, DomainError> {
        let t = t.max(self.lead.last_transition_at);
        self.begin(t);
        let (profile, changed) = self.lead.profile.merge(attributes)?;
        self.lead.profile = profile;
        self.rescore()?;
        self.finish(t, true);
        Ok(changed)
    }

    fn manual(&mut self, m: ManualTransition) -> Result<(), DomainError> {
        let Checked {
            edge,
            reason,
            actor,
            deal,
            at: t,
        } = m.check(self.policy, &self.lead, self.now)?;
        let window = self.window_at(t)?;
        let checks = evaluate_all(edge.guards, &self.facts(&window, t));
        let failed: Vec<GuardCheck> = checks.iter().filter(|c| !c.passed).cloned().collect();
        if !failed.is_empty() {
            return Err(DomainError::GuardFailed {
                command: edge.command,
                failed,
            });
        }
        self.begin(t);
        let details = Details { reason, actor, deal };
        self.take(edge, t, &Cause::Manual, details, checks, &window, Vec::new())?;
        self.auto_advance(t, &Cause::Manual)?;
        self.finish(t, edge.backward);
        Ok(())
    }

    fn timer(&mut self, timer: Timer) -> Result<(), DomainError> {
        let policy = self.policy;
        let t = timer.due_at.max(self.lead.last_transition_at);
        self.firing = Some(timer.suppressed);
        // The caller took it from the store.
        self.lead.timers.remove(&timer.kind.key());
        self.begin(t);
        let unbroken = timer
            .bound
            .is_none_or(|bound| bound == (self.lead.stage, self.lead.entered_stage_at));
        match &timer.kind {
            TimerKind::Crossing(_) | TimerKind::ModelCrossing(..) | TimerKind::Level => {
                // `begin` fired it if the score has crossed (or the level
                // changed); `finish` re-arms it if not yet.
                self.finish(t, true);
            }
            TimerKind::Workflow(id) => {
                let Some(wf) = policy.workflows.iter().find(|w| w.id == *id) else {
                    return Ok(()); // the policy no longer has it
                };
                if unbroken && wf.if_still.is_none_or(|s| s == self.lead.stage) {
                    self.events
                        .push(trigger(wf, t, self.lead.stage, timer.suppressed));
                }
                self.finish(t, false);
            }
            TimerKind::Sla(id) => {
                let Some(sla) = policy.slas.iter().find(|s| s.id == *id) else {
                    return Ok(());
                };
                if !unbroken || self.lead.stage != sla.stage {
                    return Ok(());
                }
                self.events.push(Event::SlaBreached(SlaBreach {
                    sla_id: sla.id.clone(),
                    stage: sla.stage,
                    at: t,
                    suppressed: timer.suppressed,
                }));
                let breached = Happening::SlaBreached(sla.id.clone());
                match automatic_edge(self.lead.stage, Move::SlaRecycle).filter(|_| sla.recycles()) {
                    Some(edge) => {
                        let window = self.window_at(t)?;
                        let details = Details {
                            reason: Some(sla.recycle_reason().to_owned()),
                            ..Details::default()
                        };
                        let cause = Cause::Timer {
                            key: timer.kind.key(),
                        };
                        self.take(edge, t, &cause, details, Vec::new(), &window, vec![breached])?;
                        self.finish(t, true);
                    }
                    None => {
                        self.fire(&[breached], t);
                        self.finish(t, false);
                    }
                }
            }
        }
        Ok(())
    }

    fn policy_changed(&mut self, at: Timestamp) -> Result<(), DomainError> {
        let policy = self.policy;
        let t = at.max(self.lead.last_transition_at);
        self.rescore()?;
        self.lead.crossings = rebase_crossings(policy, &self.lead.qualifying, t);
        self.lead.evaluated_at = self.lead.evaluated_at.max(t);
        self.level_workflows = false;
        self.replan(t)?;
        self.auto_advance(t, &Cause::PolicyChange)?;
        self.finish(t, true);
        Ok(())
    }

    /// Re-arms, under the new policy, the timers the move into the current
    /// stage would have armed (arming a kind again moves it). One whose SLA
    /// or workflow the policy no longer has does nothing when it fires.
    fn replan(&mut self, t: Timestamp) -> Result<(), DomainError> {
        let lead = &self.lead;
        let stage = (lead.stage, lead.entered_stage_at);
        let latest = lead.last_engagement_at().unwrap_or(lead.entered_stage_at);
        let timers = replan(
            self.policy,
            stage,
            lead.entered_by,
            lead.entered_reason.as_deref(),
            latest,
            self.history()?,
            t,
        );
        self.timers.extend(timers);
        Ok(())
    }

    // ---- moves -------------------------------------------------------------

    /// Takes at most one automatic move at `t`, forward only: disqualify,
    /// else sales-ready (to SQL, through MQL), else qualify (to MQL).
    fn auto_advance(&mut self, t: Timestamp, cause: &Cause) -> Result<(), DomainError> {
        let window = self.window_at(t)?;
        for by in [Move::AutoDisqualify, Move::SalesReady, Move::AutoQualify] {
            let Some(edge) = automatic_edge(self.lead.stage, by) else {
                continue;
            };
            let facts = self.facts(&window, t);
            let checks = evaluate_all(edge.guards, &facts);
            if checks.iter().all(|c| c.passed) {
                let reason = (by == Move::AutoDisqualify)
                    .then(|| disqualifying_match(&facts).map(str::to_owned))
                    .flatten();
                let details = Details {
                    reason,
                    ..Details::default()
                };
                return self.take(edge, t, cause, details, checks, &window, Vec::new());
            }
        }
        Ok(())
    }

    /// Moves the lead along `edge` at `t`, recording every stage it enters,
    /// then arms the new stage's timers and fires its workflows.
    #[allow(clippy::too_many_arguments)]
    fn take(
        &mut self,
        edge: &Edge,
        t: Timestamp,
        cause: &Cause,
        details: Details,
        checks: Vec<GuardCheck>,
        window: &ScoreState,
        mut happenings: Vec<Happening>,
    ) -> Result<(), DomainError> {
        let policy = self.policy;
        let from = self.lead.stage;
        let fit = self.fit();
        let engagement = round6(window.value_at(policy, policy.mql.model, t));
        let entered = stages_entered(from, edge.to);
        self.leave_stage();
        let mut previous = from;
        let last = entered.len().saturating_sub(1);
        for (i, stage) in entered.into_iter().enumerate() {
            self.events.push(Event::Transition(TransitionRecord {
                from: Some(previous),
                to: stage,
                at: t,
                by: edge.by,
                cause: cause.clone(),
                reason: details.reason.clone(),
                actor: details.actor.clone(),
                deal: if i == last { details.deal.clone() } else { None },
                fit,
                engagement,
                guards: if i == last { checks.clone() } else { Vec::new() },
            }));
            previous = stage;
        }
        self.lead.stage = edge.to;
        self.lead.entered_stage_at = t;
        self.lead.last_transition_at = t;
        self.lead.entered_by = edge.by;
        self.lead.entered_reason.clone_from(&details.reason);
        if edge.backward {
            self.open_window(t)?;
        }
        happenings.extend(Happening::of_move(edge.by, edge.to, details.reason.as_deref()));
        self.timers.extend(sla_timers(policy, edge.to, t, self.now));
        self.fire(&happenings, t);
        Ok(())
    }

    /// A backward move at `t`: from now on only engagements after `t` qualify.
    fn open_window(&mut self, t: Timestamp) -> Result<(), DomainError> {
        let policy = self.policy;
        self.lead.window_start = Some(t);
        self.lead.qualifying = if self.lead.lifetime.last_at().is_some_and(|last| last > t) {
            self.replay(Some(t), None)?
        } else {
            ScoreState::new(policy, Some(t))
        };
        let at = t.max(self.lead.qualifying.last_at().unwrap_or(t));
        self.lead.crossings = rebase_crossings(policy, &self.lead.qualifying, at);
        Ok(())
    }

    /// The lead leaves its stage: its stage-bound timers go, including any
    /// armed earlier in this decision.
    fn leave_stage(&mut self) {
        self.timers
            .retain(|c| !matches!(c, TimerChange::Schedule(Timer { bound: Some(_), .. })));
        if !self
            .timers
            .iter()
            .any(|c| matches!(c, TimerChange::CancelStageBound))
        {
            self.timers.insert(0, TimerChange::CancelStageBound);
        }
    }

    fn fire(&mut self, happenings: &[Happening], at: Timestamp) {
        let stage = (self.lead.stage, self.lead.entered_stage_at);
        let (mut events, timers) = workflows_for(self.policy, happenings, at, stage, self.now);
        if let Some(suppressed) = self.firing {
            for event in &mut events {
                if let Event::Trigger(trigger) = event {
                    trigger.suppressed = suppressed;
                }
            }
        }
        self.events.extend(events);
        self.timers.extend(timers);
    }

    // ---- score crossings ---------------------------------------------------

    /// Brings the crossings up to `t` before the command changes anything:
    /// a threshold decay alone crossed since the last look fires at the
    /// instant it was crossed.
    fn begin(&mut self, t: Timestamp) {
        let policy = self.policy;
        let from = self
            .lead
            .evaluated_at
            .max(self.lead.qualifying.last_at().unwrap_or(self.lead.evaluated_at));
        let until = t.max(self.lead.evaluated_at);
        let mut fired = Vec::new();
        for state in &mut self.lead.crossings {
            let Some(model) = state.model_index(policy) else {
                continue;
            };
            let reached = state
                .crossing
                .reached(self.lead.qualifying.value_at(policy, model, until));
            if reached && !state.reached {
                let at = state
                    .crossing
                    .decay_target()
                    .and_then(|target| self.lead.qualifying.decay_reaches(policy, model, from, target))
                    .map_or(until, |c| c.clamp(from, until));
                fired.push((at, state.model.clone(), state.crossing));
            }
            state.reached = reached;
        }
        fired.sort_by_key(|(at, ..)| *at);
        for (at, model, crossing) in fired {
            self.fire(&[Happening::Crossed(model, crossing)], at);
        }
        // Each level decay passed through since, at its own instant (one a
        // level at most: decay moves the score one way).
        if self.lead.stage == Stage::Mql && !policy.mql.levels.is_empty() {
            let fits = self.fits();
            let mut at = from;
            for _ in 0..=policy.mql.levels.len() {
                let Some(due) = decay_changes_level(policy, self.lead.stage, fits, &self.lead.qualifying, at)
                    .filter(|due| *due <= until)
                else {
                    break;
                };
                self.set_level(due, Cause::Decay, fits);
                at = due;
            }
        }
        self.lead.evaluated_at = until;
    }

    /// Sets the lead's level by its scores at `at`; a change is recorded
    /// and sets off the workflows `on` the new level.
    fn set_level(&mut self, at: Timestamp, cause: Cause, fits: Fits) {
        let policy = self.policy;
        let engagement = round6(self.lead.qualifying.value_at(policy, policy.mql.model, at));
        let fit = round6(fits.fit);
        let level =
            level_index(policy, self.lead.stage, fits, engagement).map(|i| policy.mql.levels[i].id.clone());
        if level == self.lead.level {
            return;
        }
        let from = std::mem::replace(&mut self.lead.level, level.clone());
        self.lead.level_changes += 1;
        self.events.push(Event::LevelChanged(LevelChange {
            seq: self.lead.level_changes,
            from,
            to: level.clone(),
            at,
            stage: self.lead.stage,
            cause,
            fit,
            engagement,
            suppressed: self.firing.unwrap_or_else(|| is_suppressed(at, self.now)),
        }));
        if let Some(id) = level.filter(|_| self.level_workflows) {
            self.fire(&[Happening::Level(id)], at);
        }
    }

    /// After the command: fires the thresholds its score change crossed and,
    /// when the score changed, re-arms the decay timers.
    fn finish(&mut self, t: Timestamp, score_changed: bool) {
        let policy = self.policy;
        let at = t.max(self.lead.evaluated_at);
        let mut crossed = Vec::new();
        for state in &mut self.lead.crossings {
            let Some(model) = state.model_index(policy) else {
                continue;
            };
            let reached = state
                .crossing
                .reached(self.lead.qualifying.value_at(policy, model, at));
            if reached && !state.reached {
                crossed.push(Happening::Crossed(state.model.clone(), state.crossing));
            }
            state.reached = reached;
        }
        for happening in crossed {
            self.fire(&[happening], at);
        }
        self.lead.evaluated_at = at;
        // Levels (and their timer) are looked at only where they can be:
        // a policy with levels, or a lead that still has one.
        let level_timer = TimerKind::Level;
        if !policy.mql.levels.is_empty()
            || self.lead.level.is_some()
            || self.lead.timers.contains_key(&level_timer.key())
        {
            let fits = self.fits();
            self.set_level(at, self.cause.clone(), fits);
            self.timers.push(
                match decay_changes_level(policy, self.lead.stage, fits, &self.lead.qualifying, at) {
                    Some(due_at) => TimerChange::Schedule(Timer {
                        kind: level_timer,
                        due_at,
                        bound: None,
                        suppressed: is_suppressed(due_at, self.now),
                    }),
                    None => TimerChange::Cancel(level_timer),
                },
            );
        }
        if !score_changed {
            return;
        }
        for state in self.lead.crossings.clone() {
            let kind = state.timer();
            let due = (!state.reached)
                .then(|| state.crossing.decay_target())
                .flatten()
                .zip(state.model_index(policy))
                .and_then(|(target, model)| self.lead.qualifying.decay_reaches(policy, model, at, target));
            self.timers.push(match due {
                Some(due_at) => TimerChange::Schedule(Timer {
                    kind,
                    due_at,
                    bound: None,
                    suppressed: is_suppressed(due_at, self.now),
                }),
                None => TimerChange::Cancel(kind),
            });
        }
    }
}
