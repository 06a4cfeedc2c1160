//! Guards: each checks one condition of an edge and says, in words, what it
//! compared (`fit 12 < 20`).

use crate::num::round6;
use crate::policy::Policy;
use crate::profile::Profile;
use crate::score::{ScoreState, disqualifying_attribute, fit_score};
use crate::time::Timestamp;
use crate::transition::{Guard, GuardCheck};

/// The fit scores the MQL guards and levels read: the MQL model's (its
/// `fit_at_least`), and the default model's (grades).
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct Fits {
    pub(crate) fit: f64,
    pub(crate) grade: f64,
}

impl Fits {
    pub(crate) fn of(policy: &Policy, profile: &Profile) -> Self {
        let grade = fit_score(policy, 0, profile);
        let model = policy.fit_model(policy.mql.model);
        Self {
            fit: if model == 0 {
                grade
            } else {
                fit_score(policy, model, profile)
            },
            grade,
        }
    }

    /// Each rounded as guards compare them.
    pub(crate) fn rounded(self) -> Self {
        Self {
            fit: round6(self.fit),
            grade: round6(self.grade),
        }
    }
}

/// What the guards read.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Facts<'a> {
    pub(crate) policy: &'a Policy,
    pub(crate) profile: &'a Profile,
    pub(crate) fits: Fits,
    /// The MQL model's qualifying engagement score.
    pub(crate) engagement: f64,
    pub(crate) window: &'a ScoreState,
}

impl<'a> Facts<'a> {
    /// The facts of a lead with this profile and qualifying score state at `t`.
    pub(crate) fn at(policy: &'a Policy, profile: &'a Profile, window: &'a ScoreState, t: Timestamp) -> Self {
        Self {
            policy,
            profile,
            fits: Fits::of(policy, profile),
            engagement: window.value_at(policy, policy.mql.model, t),
            window,
        }
    }
}

/// A number as shown to people: two decimals, unless that would hide the
/// difference from the value it is compared with.
pub fn show(x: f64, against: f64) -> String {
    let two = (x * 100.0).round() / 100.0;
    let value = if two == against && round6(x) != against {
        round6(x)
    } else {
        two
    };
    let text = format!("{value}");
    if text == "-0" { "0".to_owned() } else { text }
}

pub(crate) fn numeric(guard: Guard, name: &str, actual: f64, required: f64) -> GuardCheck {
    let actual = round6(actual);
    let passed = actual >= required;
    let op = if passed { "≥" } else { "<" };
    GuardCheck {
        guard,
        passed,
        detail: format!(
            "{name} {} {op} {}",
            show(actual, required),
            show(required, actual)
        ),
        actual: Some(actual),
        required: Some(required),
    }
}

fn check(guard: Guard, passed: bool, detail: String) -> GuardCheck {
    GuardCheck {
        guard,
        passed,
        detail,
        actual: None,
        required: None,
    }
}

/// The `grade_at_least` guard for `letter`; `None` without a letter or for
/// a letter `[grades]` lacks.
pub(crate) fn grade_check(policy: &Policy, letter: Option<&str>, fit: f64) -> Option<GuardCheck> {
    let letter = letter?;
    let required = policy.grade_threshold(letter)?;
    let grade = policy.grade(fit);
    let passed = round6(fit) >= required;
    let op = if passed { "≥" } else { "<" };
    Some(GuardCheck {
        guard: Guard::GradeAtLeast,
        passed,
        detail: format!("grade {grade} {op} {letter}"),
        actual: Some(round6(fit)),
        required: Some(required),
    })
}

/// Evaluates one guard; `None` when the policy does not use it.
pub(crate) fn evaluate(guard: Guard, facts: &Facts<'_>) -> Option<GuardCheck> {
    let policy = facts.policy;
    Some(match guard {
        Guard::EngagementAtLeast => numeric(
            guard,
            "engagement",
            facts.engagement,
            policy.mql.engagement_at_least,
        ),
        Guard::FitAtLeast => numeric(guard, "fit", facts.fits.fit, policy.mql.fit_at_least),
        Guard::GradeAtLeast => grade_check(policy, policy.mql.grade_at_least.as_deref(), facts.fits.grade)?,
        Guard::RequiresAttributes => {
            let required = &policy.mql.requires_attributes;
            if required.is_empty() {
                return None;
            }
            let missing: Vec<&str> = required
                .iter()
                .filter(|a| facts.profile.get(a).is_none_or(|v| v.trim().is_empty()))
                .map(String::as_str)
                .collect();
            if missing.is_empty() {
                check(guard, true, format!("has {}", required.join(", ")))
            } else {
                check(guard, false, format!("missing {}", missing.join(", ")))
            }
        }
        Guard::NotDisqualified | Guard::DisqualifyingMatch => {
            let by = disqualifying_match(facts);
            let matched = by.is_some();
            let detail = match by {
                Some(id) => format!("matches disqualifying rule {id}"),
                None => "no disqualifying rule matches".to_owned(),
            };
            let passed = if guard == Guard::NotDisqualified {
                !matched
            } else {
                matched
            };
            check(guard, passed, detail)
        }
        Guard::SalesReadyAction => {
            let actions = &policy.sql.sales_ready_actions;
            if actions.is_empty() {
                return Some(check(
                    guard,
                    false,
                    "the policy names no sales-ready action".to_owned(),
                ));
            }
            match facts.window.sales_ready_at {
                Some(at) => check(guard, true, format!("sales-ready action at {at}")),
                None => check(guard, false, format!("no {} yet", actions.join(" or "))),
            }
        }
        Guard::NoDisqualifyingAttribute => match disqualifying_attribute(policy, facts.profile) {
            Some(id) => check(guard, false, format!("profile matches disqualifying rule {id}")),
            None => check(guard, true, "no disqualifying attribute".to_owned()),
        },
    })
}

/// The disqualifying rule that matches: an attribute rule on the profile, or
/// an event rule in the qualifying window.
pub(crate) fn disqualifying_match<'a>(facts: &Facts<'a>) -> Option<&'a str> {
    disqualifying_attribute(facts.policy, facts.profile).or(facts.window.disqualified_by.as_deref())
}

/// Every configured guard of an edge, in table order.
pub(crate) fn evaluate_all(guards: &[Guard], facts: &Facts<'_>) -> Vec<GuardCheck> {
    guards.iter().filter_map(|g| evaluate(*g, facts)).collect()
}
