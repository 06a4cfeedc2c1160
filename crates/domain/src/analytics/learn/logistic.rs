//! Regularised logistic regression: how much each feature of a lead moves
//! the odds of its outcome.
//!
//! The fit minimises, over an intercept `b` and coefficients `β`,
//!
//! ```text
//! Σᵢ wᵢ [log(1 + e^ηᵢ) − yᵢ ηᵢ] + ½ λ Σⱼ (sⱼ βⱼ)²,   ηᵢ = b + xᵢ·β
//! ```
//!
//! where `wᵢ` is a row's weight (how many times a bootstrap drew it) and
//! `sⱼ` the standard deviation of feature `j`: the penalty is that of a fit
//! on standardised features, so features on different scales (points,
//! indicators) are shrunk alike, while the coefficients stay on the
//! features' own scale. The intercept is not penalised. Newton's method with
//! step halving; every sum runs in row order, so the same rows in the same
//! order give the same bits.

/// Rows of features, row-major.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Matrix {
    cols: usize,
    values: Vec<f64>,
}

impl Matrix {
    pub const fn new(cols: usize) -> Self {
        Self {
            cols,
            values: Vec::new(),
        }
    }

    /// Adds a row; its length must be `cols`, or it is cut or padded with
    /// zeros.
    pub fn push(&mut self, row: &[f64]) {
        let n = row.len().min(self.cols);
        self.values.extend_from_slice(&row[..n]);
        self.values.extend(std::iter::repeat_n(0.0, self.cols - n));
    }

    pub const fn cols(&self) -> usize {
        self.cols
    }

    pub fn rows(&self) -> usize {
        self.values.len().checked_div(self.cols).unwrap_or(0)
    }

    pub fn row(&self, i: usize) -> &[f64] {
        &self.values[i * self.cols..(i + 1) * self.cols]
    }
}

/// A fitted model.
#[derive(Clone, Debug, PartialEq)]
pub struct Fit {
    pub intercept: f64,
    /// One per feature, on the feature's own scale: the change in log-odds
    /// per unit of the feature.
    pub beta: Vec<f64>,
    pub iterations: u32,
    pub converged: bool,
}

impl Fit {
    /// The probability of a positive outcome for `row`.
    pub fn predict(&self, row: &[f64]) -> f64 {
        sigmoid(self.intercept + dot(&self.beta, row))
    }
}

const MAX_ITERATIONS: u32 = 100;
/// Converged once no coefficient moves by more than this (relative).
const TOLERANCE: f64 = 1e-10;

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

fn sigmoid(eta: f64) -> f64 {
    if eta >= 0.0 {
        1.0 / (1.0 + (-eta).exp())
    } else {
        let e = eta.exp();
        e / (1.0 + e)
    }
}

/// `log(1 + e^eta)` without overflow.
fn softplus(eta: f64) -> f64 {
    if eta > 0.0 {
        eta + (-eta).exp().ln_1p()
    } else {
        eta.exp().ln_1p()
    }
}

/// Each feature's penalty weight `λ sⱼ²` (a constant feature: `λ`, so that
/// it stays identifiable beside the intercept).
pub fn penalties(x: &Matrix, lambda: f64) -> Vec<f64> {
    let n = x.rows();
    if n == 0 {
        return vec![lambda; x.cols()];
    }
    #[allow(clippy::cast_precision_loss)]
    let count = n as f64;
    (0..x.cols())
        .map(|j| {
            let mean = (0..n).map(|i| x.row(i)[j]).sum::<f64>() / count;
            let var = (0..n).map(|i| (x.row(i)[j] - mean).powi(2)).sum::<f64>() / count;
            if var > 0.0 { lambda * var } else { lambda }
        })
        .collect()
}

/// Fits `y` (positive or not) on `x`, each row weighted by `weights` (all
/// 1 when empty), with per-feature penalties from [`penalties`]; `warm`
/// starts from an earlier fit (a bootstrap round from the full fit).
pub fn fit(x: &Matrix, y: &[bool], weights: &[f64], penalty: &[f64], warm: Option<&Fit>) -> Fit {
    let p = x.cols();
    let n = x.rows().min(y.len());
    let weight = |i: usize| weights.get(i).copied().unwrap_or(1.0);
    // θ = (intercept, β…)
    let mut theta: Vec<f64> = match warm {
        Some(f) if f.beta.len() == p => std::iter::once(f.intercept)
            .chain(f.beta.iter().copied())
            .collect(),
        _ => vec![0.0; p + 1],
    };
    let pen = |j: usize| {
        if j == 0 {
            0.0
        } else {
            penalty.get(j - 1).copied().unwrap_or(0.0)
        }
    };
    let objective = |theta: &[f64]| -> f64 {
        let mut loss = 0.0;
        for (i, &positive) in y.iter().enumerate().take(n) {
            let w = weight(i);
            if w == 0.0 {
                continue;
            }
            let eta = theta[0] + dot(&theta[1..], x.row(i));
            loss += w * (softplus(eta) - if positive { eta } else { 0.0 });
        }
        loss + 0.5 * (1..=p).map(|j| pen(j) * theta[j] * theta[j]).sum::<f64>()
    };
    let mut current = objective(&theta);
    let mut iterations = 0;
    let mut converged = false;
    let mut nonzero: Vec<(usize, f64)> = Vec::with_capacity(p + 1);
    while iterations < MAX_ITERATIONS {
        iterations += 1;
        let mut gradient = vec![0.0; p + 1];
        let mut hessian = vec![0.0; (p + 1) * (p + 1)];
        for (i, &positive) in y.iter().enumerate().take(n) {
            let w = weight(i);
            if w == 0.0 {
                continue;
            }
            let row = x.row(i);
            let prob = sigmoid(theta[0] + dot(&theta[1..], row));
            let residual = w * (prob - if positive { 1.0 } else { 0.0 });
            let curvature = w * prob * (1.0 - prob);
            // Rows are mostly zeros: only pairs of non-zero values add.
            nonzero.clear();
            nonzero.push((0, 1.0));
            nonzero.extend(
                row.iter()
                    .enumerate()
                    .filter(|(_, v)| **v != 0.0)
                    .map(|(j, v)| (j + 1, *v)),
            );
            for (k, &(a, va)) in nonzero.iter().enumerate() {
                gradient[a] += residual * va;
                let cv = curvature * va;
                for &(b, vb) in &nonzero[k..] {
                    hessian[a * (p + 1) + b] += cv * vb;
                }
            }
        }
        for a in 0..=p {
            gradient[a] += pen(a) * theta[a];
            hessian[a * (p + 1) + a] += pen(a);
            for b in 0..a {
                hessian[a * (p + 1) + b] = hessian[b * (p + 1) + a];
            }
        }
        let Some(step) = solve(&hessian, &gradient, p + 1) else {
            break;
        };
        // Step halving: never a worse objective.
        let mut scale = 1.0;
        let mut next = theta.clone();
        let mut accepted = false;
        for _ in 0..30 {
            for j in 0..=p {
                next[j] = theta[j] - scale * step[j];
            }
            let value = objective(&next);
            if value <= current {
                current = value;
                accepted = true;
                break;
            }
            scale /= 2.0;
        }
        if !accepted {
            converged = true;
            break;
        }
        let moved = (0..=p)
            .map(|j| (next[j] - theta[j]).abs() / (1.0 + theta[j].abs()))
            .fold(0.0, f64::max);
        theta = next;
        if moved < TOLERANCE {
            converged = true;
            break;
        }
    }
    Fit {
        intercept: theta[0],
        beta: theta[1..].to_vec(),
        iterations,
        converged,
    }
}

/// Solves `A x = b` for a symmetric positive definite `A` (`k` × `k`,
/// row-major) by Cholesky: `None` if it is not positive definite.
fn solve(a: &[f64], b: &[f64], k: usize) -> Option<Vec<f64>> {
    let mut l = vec![0.0; k * k];
    for i in 0..k {
        for j in 0..=i {
            let sum: f64 = (0..j).map(|m| l[i * k + m] * l[j * k + m]).sum();
            if i == j {
                let d = a[i * k + i] - sum;
                if d <= 0.0 || !d.is_finite() {
                    return None;
                }
                l[i * k + i] = d.sqrt();
            } else {
                l[i * k + j] = (a[i * k + j] - sum) / l[j * k + j];
            }
        }
    }
    let mut z = vec![0.0; k];
    for i in 0..k {
        let sum: f64 = (0..i).map(|m| l[i * k + m] * z[m]).sum();
        z[i] = (b[i] - sum) / l[i * k + i];
    }
    let mut x = vec![0.0; k];
    for i in (0..k).rev() {
        let sum: f64 = (i + 1..k).map(|m| l[m * k + i] * x[m]).sum();
        x[i] = (z[i] - sum) / l[i * k + i];
    }
    Some(x)
}

#[cfg(test)]
mod tests {
    use super::super::rng::SplitMix64;
    use super::*;

    fn uniform(r: &mut SplitMix64) -> f64 {
        #[allow(clippy::cast_precision_loss)]
        let u = (r.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
        u
    }

    /// `n` rows drawn from the model `intercept + x·beta`, features uniform
    /// on [0, 3) or indicators.
    fn sample(n: usize, intercept: f64, beta: &[f64], seed: u64) -> (Matrix, Vec<bool>) {
        let mut r = SplitMix64::new(seed);
        let mut x = Matrix::new(beta.len());
        let mut y = Vec::new();
        for _ in 0..n {
            let row: Vec<f64> = (0..beta.len())
                .map(|j| {
                    if j % 2 == 0 {
                        3.0 * uniform(&mut r)
                    } else if uniform(&mut r) < 0.4 {
                        1.0
                    } else {
                        0.0
                    }
                })
                .collect();
            let prob = sigmoid(intercept + dot(beta, &row));
            y.push(uniform(&mut r) < prob);
            x.push(&row);
        }
        (x, y)
    }

    #[test]
    fn recovers_the_coefficients_of_the_model_that_made_the_data() {
        let truth = [1.2, -0.8, 0.0, 2.0];
        let (x, y) = sample(40_000, -2.0, &truth, 42);
        let f = fit(&x, &y, &[], &penalties(&x, 1e-6), None);
        assert!(f.converged, "{f:?}");
        assert!((f.intercept + 2.0).abs() < 0.15, "{f:?}");
        for (b, t) in f.beta.iter().zip(truth) {
            assert!((b - t).abs() < 0.12, "{f:?}");
        }
    }

    #[test]
    fn the_penalty_keeps_separable_data_finite_and_shrinks() {
        // The feature decides the outcome exactly: unpenalised, β → ∞.
        let mut x = Matrix::new(1);
        let mut y = Vec::new();
        for i in 0..100 {
            let v = f64::from(i % 2);
            x.push(&[v]);
            y.push(i % 2 == 1);
        }
        let weak = fit(&x, &y, &[], &penalties(&x, 0.01), None);
        let strong = fit(&x, &y, &[], &penalties(&x, 1.0), None);
        assert!(weak.converged && strong.converged);
        assert!(weak.beta[0].is_finite() && weak.beta[0] > strong.beta[0] && strong.beta[0] > 0.0);
    }

    #[test]
    fn weights_are_repeated_rows() {
        let (x, y) = sample(300, -0.5, &[0.7, 1.1], 9);
        let weights: Vec<f64> = (0..300).map(|i| f64::from(i % 3)).collect();
        let mut repeated = Matrix::new(2);
        let mut ys = Vec::new();
        for (i, &positive) in y.iter().enumerate() {
            for _ in 0..i % 3 {
                repeated.push(x.row(i));
                ys.push(positive);
            }
        }
        let pen = penalties(&x, 0.1);
        let weighted = fit(&x, &y, &weights, &pen, None);
        let copied = fit(&repeated, &ys, &[], &pen, None);
        assert!((weighted.intercept - copied.intercept).abs() < 1e-8);
        for (a, b) in weighted.beta.iter().zip(&copied.beta) {
            assert!((a - b).abs() < 1e-8, "{weighted:?} {copied:?}");
        }
    }

    #[test]
    fn a_warm_start_ends_where_a_cold_one_does() {
        let (x, y) = sample(2_000, 0.3, &[-0.6, 0.9, 0.2], 3);
        let pen = penalties(&x, 0.5);
        let cold = fit(&x, &y, &[], &pen, None);
        let nudged = Fit {
            intercept: cold.intercept + 0.3,
            beta: cold.beta.iter().map(|b| b - 0.2).collect(),
            ..cold.clone()
        };
        let warm = fit(&x, &y, &[], &pen, Some(&nudged));
        assert!(warm.converged);
        for (a, b) in warm.beta.iter().zip(&cold.beta) {
            assert!((a - b).abs() < 1e-6, "{warm:?} {cold:?}");
        }
    }

    #[test]
    fn a_constant_feature_and_no_rows_are_harmless() {
        let mut x = Matrix::new(2);
        let mut y = Vec::new();
        for i in 0..50 {
            x.push(&[1.0, f64::from(i % 5)]);
            y.push(i % 5 >= 3);
        }
        let f = fit(&x, &y, &[], &penalties(&x, 0.1), None);
        assert!(f.converged && f.beta.iter().all(|b| b.is_finite()));
        let empty = fit(&Matrix::new(2), &[], &[], &[0.1, 0.1], None);
        assert_eq!((empty.intercept, empty.beta.clone()), (0.0, vec![0.0, 0.0]));
    }
}
