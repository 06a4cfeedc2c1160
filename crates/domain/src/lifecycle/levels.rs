//! MQL levels: the band an MQL is in by its scores, and the instant decay
//! alone moves it to another.

use super::guards::{Facts, Fits, grade_check, numeric};
use crate::num::round6;
use crate::policy::{Level, Policy};
use crate::score::ScoreState;
use crate::stage::Stage;
use crate::time::Timestamp;
use crate::transition::{Guard, GuardCheck};

/// The level (its index in `[[stages.MQL.levels]]`) of a lead in `stage`
/// with these scores: the highest whose thresholds it meets. Only an MQL
/// has one. Levels ask for more and more, so meeting one means meeting
/// every level below it.
pub(crate) fn level_index(policy: &Policy, stage: Stage, fits: Fits, engagement: f64) -> Option<usize> {
    if stage != Stage::Mql {
        return None;
    }
    let (fits, engagement) = (fits.rounded(), round6(engagement));
    policy
        .mql
        .levels
        .iter()
        .take_while(|l| meets_fit(policy, l, fits) && engagement >= l.engagement_at_least)
        .count()
        .checked_sub(1)
}

fn meets_fit(policy: &Policy, level: &Level, fits: Fits) -> bool {
    fits.fit >= level.fit_at_least && fits.grade >= policy.grade_floor(level.grade_at_least.as_deref())
}

/// The first instant after `from` at which decay alone changes the level
/// of a lead in `stage` whose qualifying score state is `window`: the MQL
/// model's score fading below its level's engagement threshold.
/// (Thresholds are never negative, so decay, which takes a score toward
/// zero, only ever lowers a level.)
pub(crate) fn decay_changes_level(
    policy: &Policy,
    stage: Stage,
    fits: Fits,
    window: &ScoreState,
    from: Timestamp,
) -> Option<Timestamp> {
    let model = policy.mql.model;
    let current = level_index(policy, stage, fits, window.value_at(policy, model, from))?;
    let threshold = policy.mql.levels[current].engagement_at_least;
    (threshold > 0.0)
        .then(|| window.decay_reaches(policy, model, from, threshold - 6e-7))
        .flatten()
        .filter(|t| *t > from)
}

/// A level's thresholds, each evaluated as a guard.
pub(crate) fn level_checks(level: &Level, facts: &Facts<'_>) -> Vec<GuardCheck> {
    let mut checks = vec![
        numeric(
            Guard::EngagementAtLeast,
            "engagement",
            facts.engagement,
            level.engagement_at_least,
        ),
        numeric(Guard::FitAtLeast, "fit", facts.fits.fit, level.fit_at_least),
    ];
    checks.extend(grade_check(
        facts.policy,
        level.grade_at_least.as_deref(),
        facts.fits.grade,
    ));
    checks
}
