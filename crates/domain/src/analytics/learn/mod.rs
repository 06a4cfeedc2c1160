//! Learning the lead definition from outcomes: the pieces of a transparent
//! model that becomes a draft policy — a seeded pseudo-random sequence for
//! repeatable bootstraps, who is learned from and what each lead looked
//! like at its instant, a regularised logistic regression, bootstrap
//! intervals of its weights, and the back-test's figures.

pub mod backtest;
pub mod bars;
pub mod bootstrap;
pub mod draft;
pub mod features;
pub mod logistic;
pub mod pipeline;
pub mod population;
pub mod rng;
#[cfg(any(test, feature = "synthetic"))]
pub mod synthetic;

pub use backtest::{Metrics, Scored, auc, metrics};
pub use bootstrap::{intervals, intervals_until};
pub use draft::{
    Proposal, RuleLearned, Scales, Weighed, draft_source, learned_rules, readable, scales, with_bar,
};
pub use features::{
    Feature, FeatureSpace, MIN_SUPPORT, OBSERVATION_AGE, Observed, is_identifying, observed_at,
};
pub use logistic::{Fit, Matrix, fit, penalties};
pub use pipeline::{
    LearnError, LearnParams, LearnReport, MIN_OUTCOMES, MIN_POSITIVES, ROUNDS, learn, learn_until,
};
pub use population::{Labelled, LearnOutcome, OPEN_HORIZON, label, labelled};
pub use rng::SplitMix64;
