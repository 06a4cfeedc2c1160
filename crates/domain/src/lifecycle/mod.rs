//! The lifecycle: the transition table, its guards, a lead's state, and
//! [`decide`], which turns a command into a decision.

mod command;
mod decide;
pub(crate) mod guards;
mod history;
mod lead;
pub(crate) mod levels;
mod table;

pub use command::{
    Command, Context, Decision, Duplicate, MAX_FUTURE, ManualTransition, MergedAttributes, check_engagement,
    identification_instant, merge_attributes, merge_instant,
};
pub use decide::{capture, decide};
pub use guards::show;
pub use history::decide_since;
pub use lead::{Lead, ModelScores, Scores, SearchKeys};
pub use table::{
    AUTOMATIC_TRIGGERS, Edge, TABLE, automatic_edge, automatic_move_up, has_score_threshold, manual_edge,
    merging_edge, reason_from_policy, sends_back, stages_entered,
};

pub use crate::transition::{Cause, CommandKind, Deal, Guard, GuardCheck, Move, TransitionRecord};
