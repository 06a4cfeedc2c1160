//! Analytics over what leadflow has recorded, pure functions of the leads'
//! histories: the funnel of a period (how many leads entered each stage, how
//! cohorts converted and how fast, why leads were sent back), and what the
//! outcomes say of the lead definition (rule lift, threshold calibration),
//! and either by what the leads engaged with (attribution).

pub mod accounts;
pub mod attribution;
pub mod evidence;
pub mod funnel;
pub mod handoff;
pub mod learn;

pub use accounts::{AccountFunnel, AccountHistory, AccountStep, account_funnel};
pub use attribution::{Attribution, Touch, Touchpoint};
pub use funnel::{Bucket, Funnel, Grouping, History, LevelStep, OwnerStep, Period, Step, StepCause, funnel};
pub use handoff::{Handoff, handoff};

#[cfg(test)]
mod tests;
