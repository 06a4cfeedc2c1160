//! Analytics over what leadflow has recorded, pure functions of the leads'
//! histories: the funnel of a period (how many leads entered each stage, how
//! cohorts converted and how fast, why leads were sent back), and what the
//! outcomes say of the lead definition (rule lift, threshold calibration).

pub mod evidence;
pub mod funnel;

pub use funnel::{Bucket, Funnel, Grouping, History, LevelStep, Period, Step, StepCause, funnel};

#[cfg(test)]
mod tests;
