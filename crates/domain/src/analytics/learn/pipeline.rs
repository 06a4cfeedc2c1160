//! The whole learning, from the leads' histories to a report with a draft:
//! who is learned from, a time split (the latest fifth of the period by
//! capture is held out), each training lead's features at its instant, the
//! fit and its bootstrap, the draft, its MQL bar calibrated on the training
//! leads, and the back-test of base and draft on the held-out leads.

use serde::{Deserialize, Serialize};

use super::backtest::{Metrics, Scored, metrics};
use super::bars::{self, Aim, Trained};
use super::bootstrap::intervals_until;
use super::draft::{RuleLearned, Weighed, draft_source, learned_rules, scales};
use super::features::{FeatureSpace, Observed, observed_at, seen_before};
use super::logistic::{Matrix, fit, penalties};
use super::population::{LearnOutcome, labelled};
use crate::analytics::evidence::Evidence;
use crate::num::round6;
use crate::policy::Policy;
use crate::score::ScoreState;
use crate::time::Timestamp;

/// Fewer labelled leads than this, or fewer positives, learn noise.
pub const MIN_OUTCOMES: u64 = 200;
pub const MIN_POSITIVES: u64 = 30;
/// The share of the population, the latest captured, held out.
const HELD_OUT: f64 = 0.2;
/// The penalty on standardised coefficients.
const LAMBDA: f64 = 1.0;
/// Bootstrap rounds, and their seed: the same history gives the same draft.
pub const ROUNDS: usize = 100;
pub const SEED: u64 = 0x1EAD_F10E;
/// Without a target precision, the bar is calibrated for this one.
const DEFAULT_PRECISION: f64 = 0.5;

/// What a learning is asked.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LearnParams {
    pub outcome: LearnOutcome,
    /// An index into the base policy's models.
    pub model: usize,
    /// Moves after it do not count: a job that resumes gives the same answer.
    pub as_of: Timestamp,
    pub target_precision: Option<f64>,
    /// Choose the MQL fit bar with the engagement bar; else the base's is kept.
    #[serde(default)]
    pub choose_fit: bool,
}

#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum LearnError {
    #[error(
        "too little data: {outcomes} leads with a known outcome ({positives} positive); at least {MIN_OUTCOMES} and {MIN_POSITIVES} positive are needed"
    )]
    TooLittleData { outcomes: u64, positives: u64 },
    #[error("the draft is not a valid policy: {0}")]
    Draft(String),
    /// Asked to stop (the job was superseded, or its replica is stopping).
    #[error("the learning was stopped")]
    Stopped,
}

/// What a learning found.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LearnReport {
    pub params: LearnParams,
    /// Labelled leads, positives among them, and the split.
    pub outcomes: u64,
    pub positives: u64,
    pub training: u64,
    pub held_out: u64,
    pub rules: Vec<RuleLearned>,
    pub base_engagement_at_least: f64,
    pub engagement_at_least: f64,
    /// `None` in reports kept before the fit bar could be chosen (it was kept).
    #[serde(default)]
    pub base_fit_at_least: Option<f64>,
    pub fit_at_least: f64,
    /// The training leads' precision and recall at the draft's bars, when
    /// a cut-off reached the target precision.
    #[serde(default)]
    pub training_precision: Option<f64>,
    #[serde(default)]
    pub training_recall: Option<f64>,
    pub base: Metrics,
    pub draft: Metrics,
    pub draft_source: String,
}

/// A labelled lead.
struct Case<'a> {
    evidence: &'a Evidence,
    positive: bool,
    captured_at: Timestamp,
    /// Where its outcome was decided: reaching it, its loss, or the horizon.
    decided_at: Timestamp,
}

/// The peak engagement of `model` under `policy` over what the lead did
/// strictly before `until` (sales-ready types left out for SQL).
fn peak_before(policy: &Policy, model: usize, e: &Evidence, until: Timestamp, outcome: LearnOutcome) -> f64 {
    let mut state = ScoreState::new(policy, None);
    let mut peak: f64 = 0.0;
    for g in seen_before(policy, e, until, outcome) {
        state.apply(policy, g);
        peak = peak.max(state.value_at(policy, model, g.occurred_at));
    }
    round6(peak)
}

/// Learns a draft of `base` (whose document is `source`) from `leads`.
pub fn learn(
    source: &str,
    base: &Policy,
    leads: &[Evidence],
    params: &LearnParams,
) -> Result<LearnReport, LearnError> {
    learn_until(source, base, leads, params, &|| false)
}

/// [`learn`], asking `stop` between its steps and before each bootstrap
/// round: [`LearnError::Stopped`] once it says so.
pub fn learn_until(
    source: &str,
    base: &Policy,
    leads: &[Evidence],
    params: &LearnParams,
    stop: &dyn Fn() -> bool,
) -> Result<LearnReport, LearnError> {
    let go_on = || if stop() { Err(LearnError::Stopped) } else { Ok(()) };
    let outcome = params.outcome;
    let mut cases: Vec<Case<'_>> = leads
        .iter()
        .filter_map(|e| {
            let l = labelled(e, outcome, params.as_of)?;
            Some(Case {
                evidence: e,
                positive: l.positive,
                captured_at: l.captured_at,
                decided_at: l.decided_at,
            })
        })
        .collect();
    let outcomes = cases.len() as u64;
    let positives = cases.iter().filter(|c| c.positive).count() as u64;
    if outcomes < MIN_OUTCOMES || positives < MIN_POSITIVES {
        return Err(LearnError::TooLittleData { outcomes, positives });
    }
    // Content order, never arrival order: by capture, then what the lead is.
    cases.sort_by(|a, b| {
        a.captured_at
            .cmp(&b.captured_at)
            .then_with(|| a.positive.cmp(&b.positive))
            .then_with(|| a.evidence.profile.as_map().cmp(b.evidence.profile.as_map()))
            .then_with(|| a.evidence.log.len().cmp(&b.evidence.log.len()))
    });
    // The time split: leads captured at one instant stay on one side.
    #[allow(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        clippy::cast_precision_loss
    )]
    let mut cut = ((cases.len() as f64) * (1.0 - HELD_OUT)).round() as usize;
    while cut > 0 && cut < cases.len() && cases[cut].captured_at == cases[cut - 1].captured_at {
        cut += 1;
    }
    let (training, held) = cases.split_at(cut.min(cases.len()));

    let observed: Vec<Observed<'_>> = training
        .iter()
        .map(|c| Observed {
            evidence: c.evidence,
            // Never after the outcome was decided, nor after the job's
            // instant: what a lead did then is not what made it convert.
            at: observed_at(base, c.evidence, c.captured_at)
                .min(c.decided_at)
                .min(params.as_of),
        })
        .collect();
    let y: Vec<bool> = training.iter().map(|c| c.positive).collect();
    let space = FeatureSpace::build(base, params.model, outcome, &observed);
    let mut x = Matrix::new(space.features.len());
    for o in &observed {
        x.push(&space.row(base, o.evidence, o.at));
    }
    go_on()?;
    let penalty = penalties(&x, LAMBDA);
    let full = fit(&x, &y, &[], &penalty, None);
    let bands = intervals_until(&x, &y, &penalty, &full, ROUNDS, SEED, stop).ok_or(LearnError::Stopped)?;
    let weighed: Vec<Weighed> = space
        .features
        .iter()
        .enumerate()
        .map(|(j, f)| Weighed {
            feature: f.clone(),
            beta: full.beta[j],
            interval: bands[j],
            support: (0..x.rows()).filter(|&i| x.row(i)[j] != 0.0).count() as u64,
        })
        .collect();
    let rules = learned_rules(base, &weighed, scales(base, &space.features, &x, &full.beta));
    let (unbarred, draft) = draft_source(source, base, params.model, &rules).map_err(LearnError::Draft)?;

    go_on()?;
    // The draft's bars: the existing calibration, on the training leads.
    let target = crate::analytics::evidence::Target {
        model: params.model,
        level: None,
    };
    let mut unfit = draft.clone();
    unfit.mql.fit_at_least = f64::NEG_INFINITY;
    let trained: Vec<Trained> = training
        .iter()
        .map(|c| Trained {
            peak: peak_before(&draft, params.model, c.evidence, c.decided_at, outcome),
            fit: c.evidence.fit(&draft, target),
            guards: c.evidence.profile_qualifies(&unfit, target),
            positive: c.positive,
        })
        .collect();
    let aim = Aim {
        model: params.model,
        precision: params.target_precision.unwrap_or(DEFAULT_PRECISION),
        step: (base.mql.engagement_at_least / 60.0).max(0.5),
        choose_fit: params.choose_fit,
    };
    let barred = bars::choose(&unbarred, &draft, &trained, aim, base.mql.engagement_at_least)
        .map_err(LearnError::Draft)?;
    let (draft_text, draft) = (barred.source.clone(), barred.policy.clone());

    go_on()?;
    // The back-test: each held-out lead replayed under each policy.
    let scored = |policy: &Policy| -> Vec<Scored> {
        held.iter()
            .map(|c| {
                let peak = peak_before(policy, params.model, c.evidence, c.decided_at, outcome);
                let profile = c.evidence.profile_qualifies(policy, target);
                Scored {
                    // Leads the profile guards refuse rank below every other.
                    score: if profile { peak } else { peak - 1e12 },
                    qualified: profile && peak >= policy.mql.engagement_at_least,
                    positive: c.positive,
                }
            })
            .collect()
    };
    Ok(LearnReport {
        params: params.clone(),
        outcomes,
        positives,
        training: training.len() as u64,
        held_out: held.len() as u64,
        rules,
        base_engagement_at_least: base.mql.engagement_at_least,
        engagement_at_least: draft.mql.engagement_at_least,
        base_fit_at_least: Some(base.mql.fit_at_least),
        fit_at_least: draft.mql.fit_at_least,
        training_precision: barred.precision,
        training_recall: barred.recall,
        base: metrics(&scored(base)),
        draft: metrics(&scored(&draft)),
        draft_source: draft_text,
    })
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::analytics::learn::synthetic::{self, WRONG};
    use crate::engagement::Engagement;
    use crate::profile::Profile;
    use crate::stage::Stage;
    use crate::transition::Move;

    const T0: i64 = 1_780_000_000;

    fn day(d: f64) -> Timestamp {
        #[allow(clippy::cast_possible_truncation)]
        Timestamp::from_secs(T0 + (d * 86_400.0) as i64)
    }

    /// Leads whose SQL depends on demos, pricing views and company size.
    fn history(n: usize) -> Vec<Evidence> {
        evidence(synthetic::history(2026, n))
    }

    fn evidence(leads: Vec<synthetic::SyntheticLead>) -> Vec<Evidence> {
        leads
            .into_iter()
            .enumerate()
            .map(|(i, lead)| {
                let decided = day(lead.captured + synthetic::OUTCOME_DAYS);
                let mut moves = vec![(Stage::Iql, Move::Capture, day(lead.captured))];
                if lead.positive {
                    moves.push((Stage::Sql, Move::Accept, decided));
                } else {
                    moves.push((Stage::Disqualified, Move::Disqualify, decided));
                }
                Evidence {
                    lead_id: format!("{i:05}"),
                    profile: Profile::capture(lead.profile).expect("a profile"),
                    log: lead
                        .engagements
                        .into_iter()
                        .map(|e| Engagement {
                            event_id: e.event_id,
                            kind: e.kind.to_owned(),
                            channel: Some(e.channel.to_owned()),
                            properties: BTreeMap::new(),
                            occurred_at: day(e.day),
                        })
                        .collect(),
                    moves,
                    mql_by: None,
                    erased: false,
                }
            })
            .collect()
    }

    fn params() -> LearnParams {
        LearnParams {
            outcome: LearnOutcome::Sql,
            model: 0,
            as_of: day(300.0),
            target_precision: Some(0.6),
            choose_fit: false,
        }
    }

    #[test]
    fn the_true_rules_come_first_and_the_draft_beats_a_wrong_base() {
        let base = Policy::from_toml(WRONG).expect("the wrong policy");
        let leads = history(1_000);
        let report = learn(WRONG, &base, &leads, &params()).expect("a report");
        let weight = |id: &str| {
            report
                .rules
                .iter()
                .find(|r| r.rule_id == id)
                .map(|r| r.weight)
                .expect(id)
        };
        let (demo, pricing, newsletter, blog) = (
            weight("demo"),
            weight("pricing"),
            weight("newsletter"),
            weight("blog"),
        );
        assert!(
            demo.min(pricing) > 3.0 * newsletter.max(blog),
            "{:#?}",
            report.rules
        );
        let big = report.rules.iter().find(|r| r.rule_id == "big").expect("big");
        assert!(big.interval.0 > 0.0 && big.learned_points > 0.0, "{big:?}");
        assert!(
            report.draft.auc > report.base.auc + 0.05,
            "{:?} {:?}",
            report.base,
            report.draft
        );
        let draft = Policy::from_toml(&report.draft_source).expect("the draft parses");
        let points = |id: &str| {
            draft
                .event_rules
                .iter()
                .find(|r| r.id == id)
                .map(|r| r.points)
                .expect(id)
        };
        assert!(points("demo") > points("newsletter") && points("pricing") > points("blog"));
        assert_eq!(report.outcomes, 1_000);
        assert_eq!(report.training + report.held_out, 1_000);
    }

    #[test]
    fn a_fit_bar_is_chosen_only_when_asked() {
        let leads = evidence(synthetic::small_never_convert(synthetic::history(2026, 1_000)));
        let base = Policy::from_toml(WRONG).expect("the wrong policy");
        let kept = learn(WRONG, &base, &leads, &params()).expect("a report");
        assert_eq!(kept.fit_at_least, 0.0);
        assert_eq!(kept.base_fit_at_least, Some(0.0));
        let asked = LearnParams {
            choose_fit: true,
            ..params()
        };
        let chosen = learn(WRONG, &base, &leads, &asked).expect("a report");
        let draft = Policy::from_toml(&chosen.draft_source).expect("the draft parses");
        let big = draft.attribute_rules.iter().find(|r| r.id == "big").expect("big");
        // The bar admits big companies, and only them.
        assert!(
            chosen.fit_at_least > 0.0 && chosen.fit_at_least <= big.points,
            "{} {}",
            chosen.fit_at_least,
            big.points
        );
        assert_eq!(draft.mql.fit_at_least, chosen.fit_at_least);
        assert!(chosen.training_precision.is_some_and(|p| p >= 0.6), "{chosen:?}");
        assert!(
            chosen.training_recall > kept.training_recall,
            "{:?} {:?}",
            chosen.training_recall,
            kept.training_recall
        );
        // The rules are learned alike; only the bars differ.
        assert_eq!(chosen.rules, kept.rules);
        assert!(
            chosen.draft.recall >= kept.draft.recall,
            "{:?} {:?}",
            chosen.draft,
            kept.draft
        );
    }

    #[test]
    fn a_report_kept_before_the_fit_bar_could_be_chosen_still_reads() {
        let base = Policy::from_toml(WRONG).expect("the wrong policy");
        let report = learn(WRONG, &base, &history(300), &params()).expect("a report");
        let mut json = serde_json::to_value(&report).expect("json");
        let fields = json.as_object_mut().expect("an object");
        for key in ["base_fit_at_least", "training_precision", "training_recall"] {
            fields.remove(key).expect(key);
        }
        fields["params"]
            .as_object_mut()
            .expect("params")
            .remove("choose_fit")
            .expect("choose_fit");
        let old: LearnReport = serde_json::from_value(json).expect("it reads");
        assert_eq!(
            (
                old.base_fit_at_least,
                old.training_precision,
                old.params.choose_fit
            ),
            (None, None, false)
        );
        assert_eq!(old.draft_source, report.draft_source);
    }

    #[test]
    fn shuffled_arrival_gives_the_same_draft() {
        let base = Policy::from_toml(WRONG).expect("the wrong policy");
        let leads = history(400);
        let a = learn(WRONG, &base, &leads, &params()).expect("a report");
        let mut shuffled = leads.clone();
        shuffled.reverse();
        for (i, e) in shuffled.iter_mut().enumerate() {
            e.log.reverse();
            e.lead_id = format!("other-{i}");
        }
        let b = learn(WRONG, &base, &shuffled, &params()).expect("a report");
        assert_eq!(a, b);
    }

    #[test]
    fn a_learning_asked_to_stop_stops() {
        let base = Policy::from_toml(WRONG).expect("the wrong policy");
        let leads = history(300);
        let asked = std::cell::Cell::new(0_u32);
        let stop = || {
            asked.set(asked.get() + 1);
            asked.get() > 5
        };
        assert_eq!(
            learn_until(WRONG, &base, &leads, &params(), &stop),
            Err(LearnError::Stopped)
        );
        // Stopped within the bootstrap: a few rounds, not all of them.
        assert_eq!(asked.get(), 6);
        assert!(learn_until(WRONG, &base, &leads, &params(), &|| false).is_ok());
    }

    #[test]
    fn too_little_data_says_how_much_there_is() {
        let base = Policy::from_toml(WRONG).expect("the wrong policy");
        let leads = history(150);
        match learn(WRONG, &base, &leads, &params()) {
            Err(LearnError::TooLittleData { outcomes, positives }) => {
                assert_eq!(outcomes, 150);
                assert!(positives < 150);
            }
            other => panic!("{other:?}"),
        }
    }
}
