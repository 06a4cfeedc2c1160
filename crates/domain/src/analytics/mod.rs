//! Analytics over what leadflow has recorded: the funnel of a period (how
//! many leads entered each stage, how cohorts converted and how fast, why
//! leads were sent back), pure functions of the leads' histories.

pub mod funnel;

pub use funnel::{Bucket, Funnel, Grouping, History, Period, Step, StepCause, funnel};

#[cfg(test)]
mod tests;
