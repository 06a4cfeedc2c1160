//! Scoring: the engagement score as a fold over the sorted, de-duplicated log.
//!
//! Replay and the incremental path run the very same step ([`ScoreState::apply`])
//! in the same order, so appending an event later than every other gives
//! bit-for-bit the state a full replay gives. Each rule belongs to one score
//! model, and every contribution to a model decays by the same factor, so a
//! model's total at `t` is its total at the last event times
//! `0.5 ^ ((t - last) / half_life)`, and a threshold crossing by decay alone
//! has a closed form.

use serde::{Deserialize, Serialize};

use crate::engagement::{Engagement, EventKey, canonical_log};
use crate::policy::Policy;
use crate::profile::Profile;
use crate::time::{Span, Timestamp};

pub use crate::num::round6;

/// The factor a contribution keeps after `age` under a half-life (`None`:
/// no decay).
pub fn decay_factor(half_life: Option<Span>, age: Span) -> f64 {
    match half_life {
        Some(h) if age.as_micros() > 0 => {
            #[allow(clippy::cast_precision_loss)] // microsecond ratios are far inside f64
            let halvings = age.as_micros() as f64 / h.as_micros() as f64;
            (-halvings).exp2()
        }
        _ => 1.0,
    }
}

/// One rule's running totals.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct RuleState {
    /// Events that matched the rule.
    pub matched: u32,
    /// Events that counted (after `max_per_day` and `max_points`).
    pub counted: u32,
    /// Counted points, undecayed (the `max_points` budget is spent from this).
    pub raw: f64,
    /// UTC day of the last event that passed `max_per_day`, and how many did.
    pub day: i64,
    pub day_count: u32,
    /// Decayed value at `anchor` (the last counted event's time).
    pub value: f64,
    pub anchor: Timestamp,
    /// A counting rule's matching events kept since it last fired (their
    /// times, in scoring order).
    #[serde(default)]
    pub kept: Vec<Timestamp>,
    /// How many times a counting rule fired.
    #[serde(default)]
    pub fired: u32,
}

/// A lead's engagement score over one window of its log.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ScoreState {
    /// Only events that occurred strictly after this count (the qualifying
    /// window after a backward move); `None` for the whole log.
    pub since: Option<Timestamp>,
    /// One slot per `Policy::event_rules` entry.
    pub rules: Vec<RuleState>,
    /// The last event applied, in scoring order.
    pub last: Option<EventKey>,
    /// The first disqualifying rule an event in the window matched.
    pub disqualified_by: Option<String>,
    /// The latest sales-ready action in the window.
    pub sales_ready_at: Option<Timestamp>,
    /// Events applied (in the window). States stored before it was kept
    /// start from 0: it paces checkpoints, and no score reads it.
    #[serde(default)]
    pub applied: u64,
}

/// A lead's score states after a prefix of its log, the prefix ending at
/// the lifetime state's last event: a late engagement after that event is
/// replayed from here instead of from the lead's first engagement.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Checkpoint {
    pub lifetime: ScoreState,
    pub qualifying: ScoreState,
}

impl Checkpoint {
    /// Before any event, with the qualifying window after `since`.
    pub fn start(policy: &Policy, since: Option<Timestamp>) -> Self {
        Self {
            lifetime: ScoreState::new(policy, None),
            qualifying: ScoreState::new(policy, since),
        }
    }

    /// The last event of the prefix; `None` for an empty one.
    pub fn key(&self) -> Option<&EventKey> {
        self.lifetime.last.as_ref()
    }

    /// The state over the window after `since` at the checkpoint, if it
    /// holds one: its own of that window, or an empty one for a window that
    /// opens after its last event.
    pub fn state_for(&self, policy: &Policy, since: Option<Timestamp>) -> Option<ScoreState> {
        let end = self.key();
        [&self.lifetime, &self.qualifying]
            .into_iter()
            .find(|s| s.since == since && s.fits(policy))
            .cloned()
            .or_else(|| {
                since
                    .filter(|s| end.is_none_or(|k| k.occurred_at <= *s))
                    .map(|_| ScoreState::new(policy, since))
            })
    }

    /// These states carried on over `log` (the events after the
    /// checkpoint's end; others are skipped), the qualifying window after
    /// `since`: the checkpoints passed on the way, one each time the
    /// lifetime count reaches a multiple of `every`, and the end. `None`
    /// when this checkpoint holds no state of that window.
    pub fn carried(
        &self,
        policy: &Policy,
        log: &[Engagement],
        since: Option<Timestamp>,
        every: u64,
    ) -> Option<Vec<Self>> {
        let end = self.key();
        let mut at = Self {
            lifetime: self.state_for(policy, None)?,
            qualifying: self.state_for(policy, since)?,
        };
        let mut passed = Vec::new();
        for event in canonical_log(log) {
            if end.is_some_and(|k| !event.is_after(k)) {
                continue;
            }
            at.lifetime.apply(policy, event);
            at.qualifying.apply(policy, event);
            if every > 0 && at.lifetime.applied.is_multiple_of(every) {
                passed.push(at.clone());
            }
        }
        if passed.last() != Some(&at) {
            passed.push(at);
        }
        Some(passed)
    }
}

/// What applying one event did, for the lifecycle to act on.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Applied {
    pub disqualified_by: Option<String>,
    pub sales_ready: bool,
}

impl ScoreState {
    pub fn new(policy: &Policy, since: Option<Timestamp>) -> Self {
        Self {
            since,
            rules: vec![RuleState::default(); policy.event_rules.len()],
            last: None,
            disqualified_by: None,
            sales_ready_at: None,
            applied: 0,
        }
    }

    /// The state a log gives: events in the window that occurred at or before `until`.
    pub fn replay(
        policy: &Policy,
        log: &[Engagement],
        since: Option<Timestamp>,
        until: Option<Timestamp>,
    ) -> Self {
        Self::new(policy, since).replayed(policy, log, None, until)
    }

    /// This state carried on over `log` — the events that sort after
    /// `after` (the end of the prefix this state was built from), up to
    /// `until`.
    pub fn replayed(
        mut self,
        policy: &Policy,
        log: &[Engagement],
        after: Option<&EventKey>,
        until: Option<Timestamp>,
    ) -> Self {
        for event in canonical_log(log) {
            if after.is_some_and(|k| !event.is_after(k)) {
                continue;
            }
            if until.is_some_and(|u| event.occurred_at > u) {
                break;
            }
            self.apply(policy, event);
        }
        self
    }

    /// Whether this state was built for the policy's rules.
    pub fn fits(&self, policy: &Policy) -> bool {
        self.rules.len() == policy.event_rules.len()
    }

    pub fn in_window(&self, event: &Engagement) -> bool {
        self.since.is_none_or(|s| event.occurred_at > s)
    }

    /// Whether `event` can be applied incrementally: it sorts after every
    /// event applied so far.
    pub fn can_append(&self, event: &Engagement) -> bool {
        self.last.as_ref().is_none_or(|last| event.is_after(last))
    }

    /// Time of the latest event applied.
    pub fn last_at(&self) -> Option<Timestamp> {
        self.last.as_ref().map(|k| k.occurred_at)
    }

    /// The fold step. The caller keeps scoring order (`can_append`); events
    /// outside the window are ignored.
    pub fn apply(&mut self, policy: &Policy, event: &Engagement) -> Applied {
        let mut applied = Applied::default();
        if !self.in_window(event) {
            return applied;
        }
        let day = event.occurred_at.utc_day();
        for (rule, state) in policy.event_rules.iter().zip(self.rules.iter_mut()) {
            if !rule.matches(event) {
                continue;
            }
            state.matched += 1;
            if let Some(count) = rule.count {
                if !count.keep(&mut state.kept, event.occurred_at) {
                    continue;
                }
                state.fired += 1;
            }
            if rule.disqualify {
                applied.disqualified_by.get_or_insert_with(|| rule.id.clone());
            }
            if let Some(max) = rule.max_per_day {
                if state.day != day {
                    state.day = day;
                    state.day_count = 0;
                }
                if state.day_count >= max {
                    continue;
                }
                state.day_count += 1;
            }
            let mut points = rule.points;
            if let Some(cap) = rule.max_points {
                let room = cap - state.raw.abs();
                if round6(room) <= 0.0 {
                    continue;
                }
                if points.abs() > room {
                    points = room.copysign(points);
                }
            }
            state.counted += 1;
            state.raw += points;
            let half_life = policy.models[rule.model].half_life;
            state.value =
                state.value * decay_factor(half_life, event.occurred_at.since(state.anchor)) + points;
            state.anchor = event.occurred_at;
        }
        if self.disqualified_by.is_none() {
            self.disqualified_by.clone_from(&applied.disqualified_by);
        }
        if policy.is_sales_ready(&event.kind) {
            applied.sales_ready = true;
            self.sales_ready_at = Some(event.occurred_at);
        }
        self.last = Some(event.key());
        self.applied += 1;
        applied
    }

    /// One rule's decayed value at `t` (no earlier than the rule's last event).
    pub fn rule_value(&self, policy: &Policy, index: usize, t: Timestamp) -> f64 {
        let half_life = policy
            .event_rules
            .get(index)
            .and_then(|rule| policy.models.get(rule.model))
            .and_then(|m| m.half_life);
        self.rules
            .get(index)
            .map_or(0.0, |r| r.value * decay_factor(half_life, t.since(r.anchor)))
    }

    /// A model's engagement score at `t` (model 0: the default).
    pub fn value_at(&self, policy: &Policy, model: usize, t: Timestamp) -> f64 {
        let half_life = policy.models.get(model).and_then(|m| m.half_life);
        policy
            .event_rules
            .iter()
            .zip(&self.rules)
            .filter(|(rule, _)| rule.model == model)
            .map(|(_, r)| r.value * decay_factor(half_life, t.since(r.anchor)))
            .sum()
    }

    /// The first instant at or after `from` when a model's score, decaying
    /// alone, is no larger in magnitude than `target` (of the same sign).
    /// `None` when the model does not decay, the signs differ, or it is
    /// there already.
    pub fn decay_reaches(
        &self,
        policy: &Policy,
        model: usize,
        from: Timestamp,
        target: f64,
    ) -> Option<Timestamp> {
        let h = policy.models.get(model)?.half_life?;
        let now = self.value_at(policy, model, from);
        if target == 0.0 || now.signum() != target.signum() || now.abs() <= target.abs() {
            return None;
        }
        #[allow(clippy::cast_precision_loss)]
        let micros = ((now / target).log2() * h.as_micros() as f64).ceil();
        if !micros.is_finite() || micros > 9.0e18 {
            return None;
        }
        #[allow(clippy::cast_possible_truncation)] // finite and in range, checked above
        Some(from.saturating_add(Span::from_micros(micros as i64)))
    }
}

/// The instant search keys are rebased to: 2026-01-01T00:00:00Z.
pub const KEY_EPOCH: Timestamp = Timestamp::from_secs(1_767_225_600);

/// Half-lives from `KEY_EPOCH` to `t` (0 without decay).
fn halvings(half_life: Option<Span>, t: Timestamp) -> f64 {
    #[allow(clippy::cast_precision_loss)] // microsecond ratios are far inside f64
    half_life.map_or(0.0, |h| {
        t.since(KEY_EPOCH).as_micros() as f64 / h.as_micros() as f64
    })
}

/// A signed number given as its sign and the base-2 logarithm of its
/// magnitude, as a search key: `sign · log2(1 + |n|)`, which grows with `n`
/// over every real and is 0 at 0.
fn signed_log_key(sign: f64, log2_magnitude: f64) -> f64 {
    if sign == 0.0 || log2_magnitude == f64::NEG_INFINITY {
        return 0.0;
    }
    let g = if log2_magnitude > 60.0 {
        // log2(1 + y) − log2(y) < 2^-60 here
        log2_magnitude
    } else {
        log2_magnitude.exp2().ln_1p() / std::f64::consts::LN_2
    };
    sign.signum() * g
}

impl ScoreState {
    /// A model's **search key**: its score rebased to [`KEY_EPOCH`] — the
    /// score at any instant `t` times `2^((t − epoch) / half_life)`, the
    /// same at every `t` since every contribution of a model decays alike —
    /// as a signed logarithm (`sign · log2(1 + |rebased|)`). Keys order
    /// leads as their scores at any one instant do, so a score range at
    /// `t` is a key range ([`key_of_score`]), whatever the instant: the
    /// key changes only when the state does. Computed in log space, so it
    /// never overflows; its magnitude is about the half-lives from the
    /// epoch to the lead's latest engagement plus log2 of its score. A
    /// rebased score below 2^-1074 (a state that decayed away long before
    /// the epoch) has key 0: after the epoch its score is 0 to 6 decimals.
    pub fn search_key(&self, policy: &Policy, model: usize) -> f64 {
        let half_life = policy.models.get(model).and_then(|m| m.half_life);
        let terms: Vec<(f64, f64)> = policy
            .event_rules
            .iter()
            .zip(&self.rules)
            .filter(|(rule, r)| rule.model == model && r.value != 0.0)
            .map(|(_, r)| (r.value, halvings(half_life, r.anchor)))
            .collect();
        let Some(top) = terms.iter().map(|&(_, e)| e).reduce(f64::max) else {
            return 0.0;
        };
        let sum: f64 = terms.iter().map(|&(v, e)| v * (e - top).exp2()).sum();
        signed_log_key(sum, sum.abs().log2() + top)
    }
}

/// The search key a lead of `model` whose score at `t` is `score` has.
pub fn key_of_score(policy: &Policy, model: usize, score: f64, t: Timestamp) -> f64 {
    let half_life = policy.models.get(model).and_then(|m| m.half_life);
    signed_log_key(score, score.abs().log2() + halvings(half_life, t))
}

/// A model's fit score (model 0: the default): every matching attribute
/// rule of the model, undesirables included — the default model's for a
/// model without attribute rules of its own.
pub fn fit_score(policy: &Policy, model: usize, profile: &Profile) -> f64 {
    let model = policy.fit_model(model);
    policy
        .attribute_rules
        .iter()
        .filter(|r| r.model == model && r.matches(profile))
        .map(|r| r.points)
        .sum()
}

/// The first disqualifying attribute rule the profile matches.
pub fn disqualifying_attribute<'p>(policy: &'p Policy, profile: &Profile) -> Option<&'p str> {
    policy
        .attribute_rules
        .iter()
        .find(|r| r.disqualify && r.matches(profile))
        .map(|r| r.id.as_str())
}
