//! An account's members as its scores read them: each member's
//! contribution (its qualifying engagement of the account's model), whether
//! it is engaged and until when, its persona, and the aggregate.
//!
//! Every contribution of one model decays at the same rate, so a member's
//! score is one number at one instant ([`Contribution`]), members order the
//! same at every instant (by [`Contribution::key`], lead search's key), and
//! the sum of all members is one number rebased to an instant
//! ([`SumState`]) — kept in fixed point, so that adding and removing
//! members in any order gives exactly the sum a recompute gives.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::engagement::Engagement;
use crate::lifecycle::Lead;
use crate::num::round6;
use crate::policy::{Accounts, Aggregate, Policy};
use crate::profile::Profile;
use crate::score::{KEY_EPOCH, ScoreState, decay_factor, key_of_score};
use crate::stage::Stage;
use crate::time::{Span, Timestamp};

/// A member's qualifying engagement of the account's model: `value` at
/// `at`, decaying by the model's half-life after it.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Contribution {
    pub value: f64,
    pub at: Timestamp,
}

/// When a member's engagement ends, decaying alone.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum EngagedUntil {
    /// Below `[accounts] engaged_at_least` already.
    Not,
    /// Engaged before this instant, not at it.
    Until(Timestamp),
    /// Engaged until its next change (the model does not decay).
    Always,
}

impl EngagedUntil {
    pub fn at(self, t: Timestamp) -> bool {
        match self {
            Self::Not => false,
            Self::Until(end) => t < end,
            Self::Always => true,
        }
    }
}

fn half_life(policy: &Policy, model: usize) -> Option<Span> {
    policy.models.get(model).and_then(|m| m.half_life)
}

impl Contribution {
    pub const ZERO: Self = Self {
        value: 0.0,
        at: Timestamp::EPOCH,
    };

    /// A model's score over a score state, at the state's last event.
    pub fn of(policy: &Policy, model: usize, state: &ScoreState) -> Self {
        state.last_at().map_or(Self::ZERO, |at| Self {
            value: state.value_at(policy, model, at),
            at,
        })
    }

    /// A member's part in an account whose window (its last backward move)
    /// is `window`: its qualifying engagement over its engagements after
    /// both its own last backward move and the account's. From its state
    /// while the account's window is not the later one; else from `log`
    /// replayed after the account's window, up to `until` — `None` when the
    /// log is needed and not given.
    pub fn of_member(
        policy: &Policy,
        model: usize,
        lead: &Lead,
        window: Option<Timestamp>,
        log: Option<&[Engagement]>,
        until: Option<Timestamp>,
    ) -> Option<Self> {
        let Some(w) = window.filter(|w| lead.qualifying.since.is_none_or(|own| *w > own)) else {
            return Some(Self::of(policy, model, &lead.qualifying));
        };
        if lead.qualifying.last_at().is_none_or(|last| last <= w) {
            return Some(Self::ZERO); // nothing of its after the account's window
        }
        log.map(|log| Self::of(policy, model, &ScoreState::replay(policy, log, Some(w), until)))
    }

    /// The score at `t` (at or after `at`).
    pub fn value_at(self, policy: &Policy, model: usize, t: Timestamp) -> f64 {
        self.value * decay_factor(half_life(policy, model), t.since(self.at))
    }

    /// Lead search's key of the score: members order by it as their scores
    /// do at any one instant.
    pub fn key(self, policy: &Policy, model: usize) -> f64 {
        key_of_score(policy, model, self.value, self.at)
    }

    /// Until when the member is engaged (its rounded score at least
    /// `threshold`, which is positive), decay alone: the first microsecond
    /// at which the rounded score is below it, found from the closed form
    /// of a score crossing (as for `engagement_below`) and settled exactly.
    pub fn engaged_until(self, policy: &Policy, model: usize, threshold: f64) -> EngagedUntil {
        if round6(self.value) < threshold {
            return EngagedUntil::Not;
        }
        let Some(h) = half_life(policy, model) else {
            return EngagedUntil::Always;
        };
        let below = |t: Timestamp| round6(self.value_at(policy, model, t)) < threshold;
        #[allow(clippy::cast_precision_loss)]
        let micros = ((self.value / (threshold - 5e-7)).log2() * h.as_micros() as f64).ceil();
        if !micros.is_finite() || micros > 9.0e18 {
            return EngagedUntil::Always;
        }
        #[allow(clippy::cast_possible_truncation)] // finite and in range, checked above
        let guess = self.at.saturating_add(Span::from_micros(micros as i64));
        let slack = Span::from_secs(1);
        // Not below at `lo`, below at `hi`: bisect to the microsecond.
        let mut lo = guess.saturating_sub(slack).max(self.at);
        if below(lo) {
            lo = self.at;
        }
        let mut hi = guess.saturating_add(slack);
        let mut widen = 0;
        while !below(hi) {
            widen += 1;
            if widen > 64 {
                return EngagedUntil::Always;
            }
            hi = hi.saturating_add(hi.since(self.at));
        }
        while hi.since(lo).as_micros() > 1 {
            let mid = lo.saturating_add(Span::from_micros(hi.since(lo).as_micros() / 2));
            if below(mid) {
                hi = mid;
            } else {
                lo = mid;
            }
        }
        EngagedUntil::Until(hi)
    }
}

/// One member as its account reads it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Member {
    /// The lead's id.
    pub lead: String,
    pub stage: Stage,
    /// When it entered its stage.
    pub entered_stage_at: Timestamp,
    pub persona: Option<String>,
    /// Its qualifying engagement of the account's model, over its
    /// engagements after both its own and the account's last backward move.
    pub score: Contribution,
    /// Erased: its contribution stays as numbers, its profile is gone.
    #[serde(default)]
    pub erased: bool,
}

impl Member {
    /// A disqualified member stays a member but counts neither as engaged
    /// nor in the aggregate.
    pub fn counts(&self) -> bool {
        self.stage != Stage::Disqualified
    }

    pub fn engaged_until(&self, policy: &Policy, accounts: &Accounts) -> EngagedUntil {
        if !self.counts() {
            return EngagedUntil::Not;
        }
        self.score
            .engaged_until(policy, accounts.score.model, accounts.engaged_at_least)
    }
}

/// Bits after the point of [`SumState::units`]: a member's score is kept to
/// about 1e-12, so 10,000 members sum to well within the 6 decimals
/// guards compare.
pub const SUM_FRACTION_BITS: i32 = 40;

/// Half-lives between the instants a sum may be rebased to: a member's
/// score is kept scaled by at most 2^16 above its value at the rebase
/// instant, far inside an `i128`.
const GRID_HALF_LIVES: i64 = 16;

/// The sum of an account's counted members' scores: `units / 2^40` at
/// `epoch`, decaying by the model's half-life from there. Exact in its
/// units, so the order members are added and removed in changes nothing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SumState {
    pub epoch: Timestamp,
    pub units: i128,
}

impl SumState {
    /// The instant a sum whose latest contribution is at `latest` is
    /// rebased to: the grid point at or before it (every 16 half-lives
    /// from lead search's epoch), or that epoch for a model without decay.
    pub fn epoch_for(policy: &Policy, model: usize, latest: Timestamp) -> Timestamp {
        let Some(h) = half_life(policy, model) else {
            return KEY_EPOCH;
        };
        let step = h.as_micros().saturating_mul(GRID_HALF_LIVES).max(1);
        let offset = latest.since(KEY_EPOCH).as_micros().div_euclid(step);
        Timestamp::from_micros(KEY_EPOCH.as_micros().saturating_add(offset.saturating_mul(step)))
    }

    /// A contribution in units at `epoch`.
    pub fn units_of(policy: &Policy, model: usize, c: Contribution, epoch: Timestamp) -> i128 {
        if c.value == 0.0 {
            return 0;
        }
        #[allow(clippy::cast_precision_loss)] // microsecond ratios are far inside f64
        let halvings = half_life(policy, model).map_or(0.0, |h| {
            c.at.since(epoch).as_micros() as f64 / h.as_micros() as f64
        });
        let scaled = c.value * (halvings + f64::from(SUM_FRACTION_BITS)).exp2();
        #[allow(clippy::cast_possible_truncation)] // saturating: far beyond any score
        let units = scaled.round() as i128;
        units
    }

    /// The sum of `members` (the counted ones), computed whole.
    pub fn of<'a>(policy: &Policy, model: usize, members: impl IntoIterator<Item = &'a Member>) -> Self {
        let counted: Vec<Contribution> = members
            .into_iter()
            .filter(|m| m.counts())
            .map(|m| m.score)
            .collect();
        let latest = counted.iter().map(|c| c.at).max().unwrap_or(KEY_EPOCH);
        let epoch = Self::epoch_for(policy, model, latest);
        Self {
            epoch,
            units: counted.iter().fold(0i128, |sum, &c| {
                sum.saturating_add(Self::units_of(policy, model, c, epoch))
            }),
        }
    }

    /// The sum with `old` taken out and `new` put in (either may be none):
    /// `None` when `new` lies past this sum's rebase window, where the sum
    /// must be computed whole again ([`SumState::of`], rarely: once per 16
    /// half-lives of an account's activity).
    pub fn replaced(
        self,
        policy: &Policy,
        model: usize,
        old: Option<Contribution>,
        new: Option<Contribution>,
    ) -> Option<Self> {
        if let Some(new) = new
            && new.value != 0.0
            && Self::epoch_for(policy, model, new.at) > self.epoch
        {
            return None;
        }
        let out = old.map_or(0, |c| Self::units_of(policy, model, c, self.epoch));
        let inn = new.map_or(0, |c| Self::units_of(policy, model, c, self.epoch));
        Some(Self {
            epoch: self.epoch,
            units: self.units.saturating_sub(out).saturating_add(inn),
        })
    }

    /// The sum's value at `t`.
    pub fn value_at(self, policy: &Policy, model: usize, t: Timestamp) -> f64 {
        #[allow(clippy::cast_precision_loss)] // rounding to 2^-53 relative is far below 1e-6
        let value = self.units as f64 / f64::from(SUM_FRACTION_BITS).exp2();
        value
            * half_life(policy, model).map_or(1.0, |h| {
                #[allow(clippy::cast_precision_loss)]
                let halvings = t.since(self.epoch).as_micros() as f64 / h.as_micros() as f64;
                (-halvings).exp2()
            })
    }
}

/// What the account's aggregate reads: the sum of every counted member, or
/// the N highest (those first, by [`Contribution::key`]).
#[derive(Clone, Debug, PartialEq)]
pub struct AggregateInput {
    pub sum: SumState,
    /// The counted members' highest contributions, highest first: at
    /// least as many as `top:N` (or `max`) reads, when there are.
    pub top: Vec<Contribution>,
}

impl AggregateInput {
    /// The input over every member, computed whole.
    pub fn of(policy: &Policy, accounts: &Accounts, members: &[Member]) -> Self {
        let model = accounts.score.model;
        let mut top: Vec<Contribution> = members.iter().filter(|m| m.counts()).map(|m| m.score).collect();
        top.sort_by(|a, b| b.key(policy, model).total_cmp(&a.key(policy, model)));
        top.truncate(top_n(accounts.score.aggregate));
        Self {
            sum: SumState::of(policy, model, members),
            top,
        }
    }

    /// The aggregate engagement at `t`, rounded to 6 decimals.
    pub fn value_at(&self, policy: &Policy, accounts: &Accounts, t: Timestamp) -> f64 {
        let model = accounts.score.model;
        let value = match accounts.score.aggregate {
            Aggregate::Sum => self.sum.value_at(policy, model, t),
            aggregate => self
                .top
                .iter()
                .take(top_n(aggregate))
                .map(|c| c.value_at(policy, model, t))
                .sum(),
        };
        round6(value)
    }
}

/// How many of the highest members an aggregate reads (0: it reads the sum).
pub fn top_n(aggregate: Aggregate) -> usize {
    match aggregate {
        Aggregate::Sum => 0,
        Aggregate::Max => 1,
        Aggregate::Top(n) => n as usize,
    }
}

/// The engaged members: how many, and how many of each persona.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BuyingGroup {
    pub engaged: u32,
    /// Engaged members by persona id (members without one are only in
    /// `engaged`).
    pub personas: BTreeMap<String, u32>,
}

impl BuyingGroup {
    /// The buying group of `members` at `t`, computed whole.
    pub fn of(policy: &Policy, accounts: &Accounts, members: &[Member], t: Timestamp) -> Self {
        let mut group = Self::default();
        for m in members {
            if m.engaged_until(policy, accounts).at(t) {
                group.add(m.persona.as_deref());
            }
        }
        group
    }

    /// One more engaged member.
    pub fn add(&mut self, persona: Option<&str>) {
        self.engaged = self.engaged.saturating_add(1);
        if let Some(p) = persona {
            *self.personas.entry(p.to_owned()).or_default() += 1;
        }
    }

    /// One engaged member fewer.
    pub fn remove(&mut self, persona: Option<&str>) {
        self.engaged = self.engaged.saturating_sub(1);
        if let Some(p) = persona
            && let Some(n) = self.personas.get_mut(p)
        {
            *n = n.saturating_sub(1);
            if *n == 0 {
                self.personas.remove(p);
            }
        }
    }

    pub fn has(&self, persona: &str) -> bool {
        self.personas.get(persona).is_some_and(|n| *n > 0)
    }
}

/// An account's fit: its `[[accounts.fit]]` rules that match its attributes.
pub fn account_fit(accounts: &Accounts, attributes: &Profile) -> f64 {
    round6(
        accounts
            .fit
            .iter()
            .filter(|r| r.matches(attributes))
            .map(|r| r.points)
            .sum(),
    )
}
