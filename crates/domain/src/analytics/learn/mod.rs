//! Learning the lead definition from outcomes: the pieces of a transparent
//! model that becomes a draft policy — a seeded pseudo-random sequence for
//! repeatable bootstraps, a regularised logistic regression, bootstrap
//! intervals of its weights, and the back-test's figures.

pub mod backtest;
pub mod bootstrap;
pub mod logistic;
pub mod population;
pub mod rng;

pub use backtest::{Metrics, Scored, auc, metrics};
pub use bootstrap::intervals;
pub use logistic::{Fit, Matrix, fit, penalties};
pub use population::{LearnOutcome, OPEN_HORIZON, captured_at, label};
pub use rng::SplitMix64;
