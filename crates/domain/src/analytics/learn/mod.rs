//! Learning the lead definition from outcomes: the pieces of a transparent
//! model that becomes a draft policy — a seeded pseudo-random sequence for
//! repeatable bootstraps, and a regularised logistic regression.

pub mod logistic;
pub mod rng;

pub use logistic::{Fit, Matrix, fit, penalties};
pub use rng::SplitMix64;
