//! How sure a learned weight is: a percentile bootstrap. Each round draws
//! as many leads as there are, with replacement, from a seeded sequence, and
//! fits again (from the full fit, so a round takes a few Newton steps); a
//! weight's interval holds the middle 95 % of its values over the rounds.
//! The same rows, in the same order, with the same seed give the same
//! intervals.

use super::logistic::{Fit, Matrix, fit};
use super::rng::SplitMix64;

/// The share of rounds left out on each side of an interval.
const TAIL: f64 = 0.025;

/// Each coefficient's 95 % interval `(low, high)` over `rounds` refits.
pub fn intervals(
    x: &Matrix,
    y: &[bool],
    penalty: &[f64],
    full: &Fit,
    rounds: usize,
    seed: u64,
) -> Vec<(f64, f64)> {
    intervals_until(x, y, penalty, full, rounds, seed, &|| false).unwrap_or_default()
}

/// [`intervals`], asking `stop` before each round: `None` once it says so.
pub fn intervals_until(
    x: &Matrix,
    y: &[bool],
    penalty: &[f64],
    full: &Fit,
    rounds: usize,
    seed: u64,
    stop: &dyn Fn() -> bool,
) -> Option<Vec<(f64, f64)>> {
    let n = x.rows().min(y.len());
    let p = x.cols();
    let mut draws: Vec<Vec<f64>> = vec![Vec::with_capacity(rounds); p];
    let mut r = SplitMix64::new(seed);
    let mut weights = vec![0.0; n];
    for _ in 0..rounds {
        if stop() {
            return None;
        }
        weights.iter_mut().for_each(|w| *w = 0.0);
        for _ in 0..n {
            weights[r.below(n)] += 1.0;
        }
        let f = fit(x, y, &weights, penalty, Some(full));
        for (j, b) in f.beta.iter().enumerate() {
            draws[j].push(*b);
        }
    }
    let bands = draws
        .into_iter()
        .map(|mut d| {
            d.sort_by(f64::total_cmp);
            (quantile(&d, TAIL), quantile(&d, 1.0 - TAIL))
        })
        .collect();
    Some(bands)
}

/// The `q` quantile of sorted values, interpolated between neighbours.
pub fn quantile(sorted: &[f64], q: f64) -> f64 {
    match sorted.len() {
        0 => f64::NAN,
        1 => sorted[0],
        n => {
            #[allow(clippy::cast_precision_loss)]
            let at = q.clamp(0.0, 1.0) * (n - 1) as f64;
            #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
            let low = at.floor() as usize;
            let high = (low + 1).min(n - 1);
            #[allow(clippy::cast_precision_loss)]
            let frac = at - low as f64;
            sorted[low] + (sorted[high] - sorted[low]) * frac
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::logistic::penalties;
    use super::*;

    fn data(n: usize, seed: u64) -> (Matrix, Vec<bool>) {
        let mut r = SplitMix64::new(seed);
        let mut unit = move || {
            #[allow(clippy::cast_precision_loss)]
            let u = (r.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
            u
        };
        let mut x = Matrix::new(2);
        let mut y = Vec::new();
        for _ in 0..n {
            let a = 2.0 * unit();
            let b = if unit() < 0.5 { 1.0 } else { 0.0 };
            let eta: f64 = -1.0 + 1.5 * a + 0.0 * b;
            y.push(unit() < 1.0 / (1.0 + (-eta).exp()));
            x.push(&[a, b]);
        }
        (x, y)
    }

    #[test]
    fn intervals_hold_the_truth_and_narrow_with_more_leads() {
        let width = |n: usize| {
            let (x, y) = data(n, 5);
            let pen = penalties(&x, 1e-4);
            let full = fit(&x, &y, &[], &pen, None);
            let iv = intervals(&x, &y, &pen, &full, 100, 11);
            assert!(iv[0].0 < 1.5 && 1.5 < iv[0].1, "{iv:?}");
            assert!(iv[1].0 < 0.0 && 0.0 < iv[1].1, "{iv:?}");
            assert!(iv[0].0 <= full.beta[0] && full.beta[0] <= iv[0].1);
            iv[0].1 - iv[0].0
        };
        let (small, large) = (width(1_000), width(8_000));
        assert!(large < small * 0.6, "{small} {large}");
    }

    #[test]
    fn the_same_seed_gives_the_same_intervals() {
        let (x, y) = data(500, 8);
        let pen = penalties(&x, 0.01);
        let full = fit(&x, &y, &[], &pen, None);
        let a = intervals(&x, &y, &pen, &full, 30, 1);
        let b = intervals(&x, &y, &pen, &full, 30, 1);
        let c = intervals(&x, &y, &pen, &full, 30, 2);
        assert_eq!(a, b);
        assert_ne!(a, c);
        // Stopped after three rounds: no intervals.
        let asked = std::cell::Cell::new(0);
        let stop = || {
            asked.set(asked.get() + 1);
            asked.get() > 3
        };
        assert_eq!(intervals_until(&x, &y, &pen, &full, 30, 1, &stop), None);
        assert_eq!(asked.get(), 4);
    }

    #[test]
    fn quantiles_interpolate() {
        assert_eq!(quantile(&[1.0, 2.0, 3.0, 4.0, 5.0], 0.5), 3.0);
        assert!((quantile(&[0.0, 10.0], 0.25) - 2.5).abs() < 1e-12);
        assert_eq!(quantile(&[7.0], 0.9), 7.0);
        assert!(quantile(&[], 0.5).is_nan());
    }
}
