//! How the domain compares scores: to 6 decimals, so that a sum of decayed
//! contributions that lands a hair off a threshold compares as a person
//! reading it would. Policy validation, scoring, guards and workflows all
//! compare this way, so it sits below all of them.

/// A value rounded to 6 decimals, as guards and thresholds compare it.
pub fn round6(x: f64) -> f64 {
    (x * 1e6).round() / 1e6
}
