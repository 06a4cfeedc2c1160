//! Why a lead has its scores, rule by rule, and what stands between it and
//! the next stage.

use serde::{Deserialize, Serialize};

use crate::engagement::Engagement;
use crate::lifecycle::guards::{Facts, evaluate_all};
use crate::lifecycle::levels::{level_checks, level_index};
use crate::lifecycle::{Lead, Scores, TABLE};
use crate::num::round6;
use crate::policy::Policy;
use crate::score::ScoreState;
use crate::stage::Stage;
use crate::time::Timestamp;
use crate::transition::{GuardCheck, Move};

/// A lead's scores at an instant, explained.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Explanation {
    pub at: Timestamp,
    pub stage: Stage,
    pub scores: Scores,
    /// Every attribute rule that matches the profile.
    pub fit: Vec<FitContribution>,
    /// Every event rule that matched an engagement, over the whole log.
    pub engagement: Vec<RuleContribution>,
    /// The same over the qualifying window, which guards read.
    pub qualifying: Vec<RuleContribution>,
    /// The qualifying window starts after this instant (the last backward move).
    pub qualifying_since: Option<Timestamp>,
    /// The guarded moves out of the current stage, each guard evaluated.
    pub next: Vec<NextStep>,
    /// An MQL's next level up, its thresholds evaluated.
    #[serde(default)]
    pub next_level: Option<NextLevel>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NextLevel {
    pub id: String,
    pub guards: Vec<GuardCheck>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FitContribution {
    pub rule_id: String,
    pub attribute: String,
    pub value: String,
    pub points: f64,
    pub undesirable: bool,
    pub disqualify: bool,
    /// The `[[model]]` the rule scores; `None`: the default model.
    #[serde(default)]
    pub model: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RuleContribution {
    pub rule_id: String,
    /// Events that matched the rule.
    pub matched: u32,
    /// Events that counted, after `max_per_day` and `max_points`.
    pub counted: u32,
    /// Counted points before decay.
    pub raw_points: f64,
    /// Their value at the instant explained.
    pub decayed_points: f64,
    /// The rule's `max_points` budget is spent.
    pub cap_reached: bool,
    pub undesirable: bool,
    pub disqualify: bool,
    /// A counting rule's `at_count`; 0 for a rule every matching event feeds.
    #[serde(default)]
    pub at_count: u32,
    /// How many times a counting rule fired (`counted` of them gave points).
    #[serde(default)]
    pub fired: u32,
    /// A counting rule's matching events kept towards its next firing and
    /// still inside `within` at the instant explained.
    #[serde(default)]
    pub pending: u32,
    /// The `[[model]]` the rule scores; `None`: the default model.
    #[serde(default)]
    pub model: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NextStep {
    pub by: Move,
    pub to: Stage,
    /// Every guard passes: an automatic move would be taken on the next decision.
    pub passes: bool,
    pub guards: Vec<GuardCheck>,
}

/// Explains `lead` at `at` from its engagement log. The stage is the lead's
/// current one; the scores are those of the events that occurred up to `at`.
pub fn explain(policy: &Policy, lead: &Lead, log: &[Engagement], at: Timestamp) -> Explanation {
    let lifetime = ScoreState::replay(policy, log, None, Some(at));
    let qualifying = ScoreState::replay(policy, log, lead.window_start, Some(at));
    let facts = Facts::at(policy, &lead.profile, &qualifying, at);
    let next = TABLE
        .iter()
        .filter(|e| e.from.contains(&lead.stage) && !e.guards.is_empty())
        .map(|e| {
            let guards = evaluate_all(e.guards, &facts);
            NextStep {
                by: e.by,
                to: e.to,
                passes: guards.iter().all(|g| g.passed),
                guards,
            }
        })
        .collect();
    let fit_rules = policy
        .attribute_rules
        .iter()
        .filter(|r| r.matches(&lead.profile))
        .map(|r| FitContribution {
            rule_id: r.id.clone(),
            attribute: r.attribute.clone(),
            value: lead.profile.get(&r.attribute).unwrap_or_default().to_owned(),
            points: r.points,
            undesirable: r.undesirable,
            disqualify: r.disqualify,
            model: model_id(policy, r.model),
        })
        .collect();
    let level = level_index(policy, lead.stage, facts.fits, facts.engagement);
    let next_level = (lead.stage == Stage::Mql)
        .then(|| policy.mql.levels.get(level.map_or(0, |i| i + 1)))
        .flatten()
        .map(|l| NextLevel {
            id: l.id.clone(),
            guards: level_checks(l, &facts),
        });
    Explanation {
        at,
        stage: lead.stage,
        scores: Scores::read(
            policy,
            lead.stage,
            &lead.profile,
            (&lifetime, at),
            (&qualifying, at),
        ),
        fit: fit_rules,
        engagement: contributions(policy, &lifetime, at),
        qualifying: contributions(policy, &qualifying, at),
        qualifying_since: lead.window_start,
        next,
        next_level,
    }
}

fn contributions(policy: &Policy, state: &ScoreState, at: Timestamp) -> Vec<RuleContribution> {
    policy
        .event_rules
        .iter()
        .zip(&state.rules)
        .enumerate()
        .filter(|(_, (_, s))| s.matched > 0)
        .map(|(i, (rule, s))| RuleContribution {
            rule_id: rule.id.clone(),
            matched: s.matched,
            counted: s.counted,
            raw_points: round6(s.raw),
            decayed_points: round6(state.rule_value(policy, i, at)),
            cap_reached: rule.max_points.is_some_and(|cap| round6(s.raw.abs()) >= cap),
            undesirable: rule.undesirable,
            disqualify: rule.disqualify,
            at_count: rule.count.map_or(0, |c| c.at),
            fired: s.fired,
            pending: rule
                .count
                .map_or(0, |c| u32::try_from(c.pending(&s.kept, at)).unwrap_or(u32::MAX)),
            model: model_id(policy, rule.model),
        })
        .collect()
}

/// A rule's model as contributions name it: `None` for the default.
fn model_id(policy: &Policy, model: usize) -> Option<String> {
    (model > 0).then(|| policy.models[model].id.clone())
}

/// The MQL guards (those of the automatic IQL → MQL move) for a lead in any
/// open stage at `at`: whether it would still qualify, guard by guard.
pub fn qualification(policy: &Policy, lead: &Lead, log: &[Engagement], at: Timestamp) -> Vec<GuardCheck> {
    let qualifying = ScoreState::replay(policy, log, lead.window_start, Some(at));
    let facts = Facts::at(policy, &lead.profile, &qualifying, at);
    TABLE
        .iter()
        .find(|e| e.by == Move::AutoQualify)
        .map(|e| evaluate_all(e.guards, &facts))
        .unwrap_or_default()
}

/// The MQL guards a lead in an open stage passes under one policy and would
/// fail under another (each with the lead as that policy scores it).
pub fn newly_failing(
    before: (&Policy, &Lead),
    after: (&Policy, &Lead),
    log: &[Engagement],
    at: Timestamp,
) -> Vec<GuardCheck> {
    if !matches!(before.1.stage, Stage::Iql | Stage::Mql | Stage::Sql) {
        return Vec::new();
    }
    let passed = qualification(before.0, before.1, log, at);
    qualification(after.0, after.1, log, at)
        .into_iter()
        .filter(|g| !g.passed && passed.iter().any(|b| b.guard == g.guard && b.passed))
        .collect()
}

/// Every model's lifetime engagement score at `samples` instants evenly
/// spaced from `from` to `to` (both included), in one pass over the log:
/// the instants, and per model (in `Policy::models` order) its scores.
pub fn timeline(
    policy: &Policy,
    log: &[Engagement],
    from: Timestamp,
    to: Timestamp,
    samples: usize,
) -> (Vec<Timestamp>, Vec<Vec<f64>>) {
    let samples = samples.max(2);
    let span = to.since(from).as_micros().max(0);
    #[allow(clippy::cast_possible_wrap)] // a few hundred samples
    let at: Vec<Timestamp> = (0..samples)
        .map(|i| {
            from.saturating_add(crate::time::Span::from_micros(
                span * i as i64 / (samples as i64 - 1),
            ))
        })
        .collect();
    let mut series = vec![Vec::with_capacity(samples); policy.models.len()];
    let mut state = ScoreState::new(policy, None);
    let mut events = crate::engagement::canonical_log(log).into_iter().peekable();
    for &t in &at {
        while let Some(e) = events.next_if(|e| e.occurred_at <= t) {
            state.apply(policy, e);
        }
        for (m, s) in series.iter_mut().enumerate() {
            s.push(round6(state.value_at(
                policy,
                m,
                t.max(state.last_at().unwrap_or(t)),
            )));
        }
    }
    (at, series)
}

/// A rule that counted an engagement: its id, its model (`None`: the
/// default) and the points it gave, undecayed.
pub type RuleGave = (String, Option<String>, f64);

/// What each engagement of the log gave, in scoring order: per rule that
/// counted it (or fired on it), the rule, its model and its points
/// (undecayed). The last `keep` engagements only.
pub fn log_points(policy: &Policy, log: &[Engagement], keep: usize) -> Vec<(Engagement, Vec<RuleGave>)> {
    let mut state = ScoreState::new(policy, None);
    let ordered = crate::engagement::canonical_log(log);
    let skip = ordered.len().saturating_sub(keep);
    let mut out = Vec::with_capacity(ordered.len() - skip);
    for (i, e) in ordered.into_iter().enumerate() {
        let before: Vec<(u32, f64)> = state.rules.iter().map(|r| (r.counted, r.raw)).collect();
        state.apply(policy, e);
        if i < skip {
            continue;
        }
        let gave = policy
            .event_rules
            .iter()
            .zip(state.rules.iter().zip(&before))
            .filter(|(_, (after, (counted, _)))| after.counted > *counted)
            .map(|(rule, (after, (_, raw)))| {
                (
                    rule.id.clone(),
                    model_id(policy, rule.model),
                    round6(after.raw - raw),
                )
            })
            .collect();
        out.push((e.clone(), gave));
    }
    out
}
