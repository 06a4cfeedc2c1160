//! Learning the lead definition from outcomes: the pieces of a transparent
//! model that becomes a draft policy — a seeded pseudo-random sequence for
//! repeatable bootstraps, a regularised logistic regression, and
//! bootstrap intervals of its weights.

pub mod bootstrap;
pub mod logistic;
pub mod rng;

pub use bootstrap::intervals;
pub use logistic::{Fit, Matrix, fit, penalties};
pub use rng::SplitMix64;
