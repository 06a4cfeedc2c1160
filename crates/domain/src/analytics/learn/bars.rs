//! The draft's MQL bar, from the training leads scored under the draft:
//! `engagement_at_least` is the existing calibration's lowest cut-off with
//! the target precision; asked to, `fit_at_least` is chosen with it — of
//! every pair of bars that reaches the target precision, the one that
//! qualifies the most leads that reached the outcome. A pair the document
//! cannot hold (a bar above an MQL level's threshold) is never written:
//! the best pair it holds wins and, when it holds none that reaches the
//! target, the engagement bar of the first pair it can hold lower is the
//! highest cut-off it allows.

use crate::analytics::evidence::{Calibration, Cutoffs, Peak, calibrate_peaks, format_number};
use crate::policy::{Policy, with_value};

use super::draft::with_bar;

/// Fit bars tried at most (the training leads' fit scores, by quantile).
pub const MAX_FIT_BARS: usize = 100;

/// A training lead under the draft.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Trained {
    /// Its peak engagement before its outcome was decided.
    pub peak: f64,
    /// Its fit score (of the learned model).
    pub fit: f64,
    /// The MQL guards on the profile other than fit pass: grade, required
    /// attributes, no disqualifying match.
    pub guards: bool,
    pub positive: bool,
}

/// What the bars are chosen for.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Aim {
    /// The index of the learned model.
    pub model: usize,
    pub precision: f64,
    /// Between the engagement cut-offs tried.
    pub step: f64,
    /// Choose `fit_at_least` too; else the draft keeps the base's.
    pub choose_fit: bool,
}

/// The draft with its bars, and the figures they were chosen on.
#[derive(Clone, Debug)]
pub struct Barred {
    pub source: String,
    pub policy: Policy,
    /// The training leads' recall and precision at the chosen bars, when
    /// a pair reached the target precision.
    pub recall: Option<f64>,
    pub precision: Option<f64>,
}

/// The engagement calibration of `trained` with fit bar `fit_at_least`.
fn calibration(trained: &[Trained], fit_at_least: f64, aim: Aim) -> Calibration {
    let peaks: Vec<Peak> = trained
        .iter()
        .map(|t| Peak {
            peak: t.peak,
            profile_qualifies: t.guards && t.fit >= fit_at_least,
            reached_sql: t.positive,
            customer: t.positive,
        })
        .collect();
    calibrate_peaks(
        &peaks,
        Cutoffs {
            step: aim.step,
            max: None,
        },
        Some(aim.precision),
    )
}

/// The fit bars tried: the kept one and the training leads' fit scores
/// (every distinct one, or [`MAX_FIT_BARS`] of them by quantile); a bar is
/// never below 0.
fn fit_bars(trained: &[Trained], kept: f64) -> Vec<f64> {
    let mut fits: Vec<f64> = trained
        .iter()
        .filter(|t| t.guards)
        .map(|t| if t.fit > 0.0 { t.fit } else { 0.0 })
        .collect();
    fits.sort_by(f64::total_cmp);
    fits.dedup();
    let mut bars: Vec<f64> = if fits.len() <= MAX_FIT_BARS {
        fits
    } else {
        (0..MAX_FIT_BARS)
            .map(|i| fits[i * fits.len() / MAX_FIT_BARS])
            .collect()
    };
    bars.push(kept);
    bars.sort_by(f64::total_cmp);
    bars.dedup();
    bars
}

/// `unbarred` (whose document is `source`) with its MQL bars chosen on
/// `trained`; `fallback` is the engagement bar kept when no cut-off reaches
/// the target precision. An error says what would not parse.
pub fn choose(
    source: &str,
    unbarred: &Policy,
    trained: &[Trained],
    aim: Aim,
    fallback: f64,
) -> Result<Barred, String> {
    let kept = unbarred.mql.fit_at_least;
    // By peak: each calibration's own sort then finds its leads in order.
    let mut trained = trained.to_vec();
    trained.sort_by(|a, b| a.peak.total_cmp(&b.peak));
    let mut tried: Vec<(f64, Calibration)> = if aim.choose_fit {
        fit_bars(&trained, kept)
            .into_iter()
            .map(|f| (f, calibration(&trained, f, aim)))
            .collect()
    } else {
        vec![(kept, calibration(&trained, kept, aim))]
    };
    tried.retain(|(_, c)| c.suggested.is_some());
    // The most recall, then the most precision; then the kept fit bar,
    // then the lowest.
    let recall = |c: &Calibration| c.suggested.as_ref().and_then(|p| p.recall);
    let precision = |c: &Calibration| c.suggested.as_ref().and_then(|p| p.precision);
    tried.sort_by(|(fa, a), (fb, b)| {
        recall(b)
            .partial_cmp(&recall(a))
            .unwrap_or(std::cmp::Ordering::Equal)
            .then_with(|| {
                precision(b)
                    .partial_cmp(&precision(a))
                    .unwrap_or(std::cmp::Ordering::Equal)
            })
            .then_with(|| (*fb == kept).cmp(&(*fa == kept)))
            .then_with(|| fa.total_cmp(fb))
    });
    let held = |fit_at_least: f64, c: &Calibration, cutoff: f64| {
        let (source, policy) = with_bars(source, unbarred, aim.model, fit_at_least, cutoff)?;
        let point = c.points.iter().find(|p| p.cutoff == cutoff);
        Some(Barred {
            source,
            policy,
            recall: point.and_then(|p| p.recall),
            precision: point.and_then(|p| p.precision),
        })
    };
    // The best pair that reaches the target and that the document holds.
    for (fit_at_least, c) in &tried {
        if let Some(barred) = c
            .suggested
            .as_ref()
            .and_then(|p| held(*fit_at_least, c, p.cutoff))
        {
            return Ok(barred);
        }
    }
    // The MQL levels hold none: the first pair whose engagement bar they
    // allow lower, at the highest cut-off they allow (below the target).
    for (fit_at_least, c) in &tried {
        if let Some(barred) = highest_held(c, |cutoff| held(*fit_at_least, c, cutoff)) {
            return Ok(barred);
        }
    }
    // No pair reaches the target: the base's fit bar, the fallback engagement bar.
    let (source, policy) = with_bar(source, unbarred, aim.model, fallback)?;
    Ok(Barred {
        source,
        policy,
        recall: None,
        precision: None,
    })
}

/// The draft with both MQL bars, parsed; `None` when the document cannot
/// hold them (a level would ask for less than the bar).
fn with_bars(
    source: &str,
    unbarred: &Policy,
    model: usize,
    fit_at_least: f64,
    engagement_at_least: f64,
) -> Option<(String, Policy)> {
    let text = if fit_at_least == unbarred.mql.fit_at_least {
        source.to_owned()
    } else {
        with_value(source, "stages.MQL", "fit_at_least", &format_number(fit_at_least))?
    };
    let (text, policy) = with_bar(&text, unbarred, model, engagement_at_least).ok()?;
    (policy.mql.fit_at_least == fit_at_least).then_some((text, policy))
}

/// Of the calibration's cut-offs up to the suggested one, the highest for
/// which `hold` answers. The cut-offs a document holds are those below a
/// level's threshold: a prefix, searched by halves.
fn highest_held(c: &Calibration, hold: impl Fn(f64) -> Option<Barred>) -> Option<Barred> {
    let suggested = c.suggested.as_ref()?.cutoff;
    let below: Vec<f64> = c
        .points
        .iter()
        .map(|p| p.cutoff)
        .filter(|&x| x <= suggested)
        .collect();
    // The first cut-off not held, in [lo, hi); every one before it is.
    let (mut lo, mut hi) = (0, below.len());
    let mut best = None;
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        match hold(below[mid]) {
            Some(barred) => {
                best = Some(barred);
                lo = mid + 1;
            }
            None => hi = mid,
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy_source() -> &'static str {
        include_str!("../../../../../examples/policy.toml")
    }

    fn lead(peak: f64, fit: f64, positive: bool) -> Trained {
        Trained {
            peak,
            fit,
            guards: true,
            positive,
        }
    }

    fn aim(choose_fit: bool) -> Aim {
        Aim {
            model: 0,
            precision: 0.8,
            step: 1.0,
            choose_fit,
        }
    }

    /// Leads of fit 35 reach the outcome whatever their engagement, leads
    /// of fit 25 only from engagement 56, leads of fit 10 never.
    fn leads() -> Vec<Trained> {
        let mut out = Vec::new();
        for i in 0..50 {
            let peak = f64::from(i % 10) * 8.0;
            out.push(lead(peak, 35.0, true));
            out.push(lead(peak, 25.0, peak >= 56.0));
            out.push(lead(peak + 70.0, 10.0, false));
        }
        out
    }

    #[test]
    fn kept_fit_bar_with_the_calibrated_engagement_bar() {
        let source = policy_source();
        let base = Policy::from_toml(source).expect("policy");
        let barred = choose(source, &base, &leads(), aim(false), 60.0).expect("bars");
        assert_eq!(barred.policy.mql.fit_at_least, base.mql.fit_at_least);
        // From 33 (peaks of 40 and up): 40 of 50 qualified reached it, of 65 in all.
        assert_eq!(barred.policy.mql.engagement_at_least, 33.0);
        assert_eq!(barred.precision, Some(0.8));
        assert_eq!(barred.recall, Some(0.615385));
    }

    #[test]
    fn a_chosen_fit_bar_catches_more_at_the_same_precision() {
        let source = policy_source();
        let base = Policy::from_toml(source).expect("policy");
        let kept = choose(source, &base, &leads(), aim(false), 60.0).expect("bars");
        let chosen = choose(source, &base, &leads(), aim(true), 60.0).expect("bars");
        // At fit ≥ 35 only leads that reach it qualify, from engagement 0:
        // 50 of the 65.
        assert_eq!(chosen.policy.mql.fit_at_least, 35.0, "{}", chosen.source);
        assert_eq!(chosen.policy.mql.engagement_at_least, 0.0);
        assert!(chosen.recall > kept.recall, "{chosen:?} {kept:?}");
        assert!(chosen.precision.is_some_and(|p| p >= 0.8));
        assert!(chosen.source.contains("fit_at_least = 35.0"));
        // The rest of the document is kept.
        assert!(chosen.source.contains("# MQL levels"));
    }

    #[test]
    fn no_bar_above_a_level_and_a_fallback_when_nothing_reaches_the_target() {
        let source = policy_source();
        let base = Policy::from_toml(source).expect("policy");
        // Only leads engaged beyond the first level (90) are positive.
        let trained: Vec<Trained> = (0..200).map(|i| lead(f64::from(i), 40.0, i >= 150)).collect();
        let barred = choose(source, &base, &trained, aim(true), 60.0).expect("bars");
        // The target asks for 138; the level "warm" (90, the bar's other
        // guards) allows up to 89: 50 of the 111 leads from 89 up.
        assert_eq!(barred.policy.mql.engagement_at_least, 89.0, "{}", barred.source);
        assert_eq!(barred.policy.mql.fit_at_least, base.mql.fit_at_least);
        assert_eq!((barred.precision, barred.recall), (Some(0.45045), Some(1.0)));
        // Nobody positive: no cut-off reaches the target, the fallback holds.
        let none: Vec<Trained> = (0..50).map(|i| lead(f64::from(i), 40.0, false)).collect();
        let barred = choose(source, &base, &none, aim(true), 60.0).expect("bars");
        assert_eq!(barred.policy.mql.engagement_at_least, 60.0);
        assert_eq!(barred.policy.mql.fit_at_least, base.mql.fit_at_least);
        assert_eq!(barred.recall, None);
    }

    #[test]
    fn a_fit_bar_the_levels_hold_only_with_its_engagement_bar() {
        // "warm" asks for the base's engagement and fit 35: a bar of fit 35
        // holds only with a lower engagement bar, as chosen.
        let source = policy_source().replace(
            "id = \"warm\"\nengagement_at_least = 90",
            "id = \"warm\"\nengagement_at_least = 60\nfit_at_least = 35",
        );
        let base = Policy::from_toml(&source).expect("policy");
        let chosen = choose(&source, &base, &leads(), aim(true), 60.0).expect("bars");
        assert_eq!(
            (
                chosen.policy.mql.fit_at_least,
                chosen.policy.mql.engagement_at_least
            ),
            (35.0, 0.0)
        );
        // "warm" asking for fit 25 holds no bar above it: of the fit bars
        // left, 20 (kept) and 25 catch alike, and the kept one wins.
        let source = policy_source().replace(
            "id = \"warm\"\nengagement_at_least = 90",
            "id = \"warm\"\nengagement_at_least = 90\nfit_at_least = 25",
        );
        let base = Policy::from_toml(&source).expect("policy");
        let chosen = choose(&source, &base, &leads(), aim(true), 60.0).expect("bars");
        assert_eq!(
            (
                chosen.policy.mql.fit_at_least,
                chosen.policy.mql.engagement_at_least
            ),
            (20.0, 33.0)
        );
        assert_eq!(chosen.source, with_bar(&source, &base, 0, 33.0).expect("a bar").0);
    }
}
