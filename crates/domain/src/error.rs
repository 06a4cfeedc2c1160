//! The domain's one error type.

use std::fmt;

use crate::stage::Stage;
use crate::transition::{CommandKind, GuardCheck};

/// One bad field: its path in the request (e.g. `engagement.type`) and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldViolation {
    pub field: String,
    pub description: String,
}

impl FieldViolation {
    pub fn new(field: impl Into<String>, description: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            description: description.into(),
        }
    }
}

impl fmt::Display for FieldViolation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.description)
    }
}

/// Why a bad input was refused, for machines (the gRPC `ErrorInfo` reason).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InvalidKind {
    /// A malformed or out-of-range field.
    Field,
    /// An engagement type outside the policy's vocabulary.
    UnknownEngagementType,
    /// A reason outside the policy's `[reasons]` list for the command.
    UnknownReason,
}

impl InvalidKind {
    pub const fn reason(self) -> &'static str {
        match self {
            Self::Field => "INVALID_FIELD",
            Self::UnknownEngagementType => "UNKNOWN_ENGAGEMENT_TYPE",
            Self::UnknownReason => "UNKNOWN_REASON",
        }
    }
}

#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum DomainError {
    /// The command itself is malformed for this policy.
    #[error("invalid argument: {}", list(violations))]
    InvalidArgument {
        kind: InvalidKind,
        violations: Vec<FieldViolation>,
    },
    /// A size limit on what is kept for a lead (its merged profile): the
    /// change is refused whole.
    #[error("{field}: {what} {actual}; at most {limit}")]
    LimitExceeded {
        field: String,
        /// What is measured, e.g. "attributes" or "bytes of attributes".
        what: &'static str,
        limit: u64,
        actual: u64,
    },
    /// No edge of the transition table leaves `stage` on `command`.
    #[error("{command} is not allowed from {stage}")]
    InvalidTransition { stage: Stage, command: CommandKind },
    /// The edge exists but a guard refused it; `failed` names each guard and why.
    #[error("{command} refused: {}", list(failed))]
    GuardFailed {
        command: CommandKind,
        failed: Vec<GuardCheck>,
    },
    /// The decision needs the lead's engagement log (an event older than the
    /// newest one applied, a window reset, a policy change): call again with it.
    #[error("the engagement log is required for this decision")]
    HistoryRequired,
}

impl DomainError {
    pub fn invalid(violation: FieldViolation) -> Self {
        Self::InvalidArgument {
            kind: InvalidKind::Field,
            violations: vec![violation],
        }
    }

    pub fn invalid_as(kind: InvalidKind, violation: FieldViolation) -> Self {
        Self::InvalidArgument {
            kind,
            violations: vec![violation],
        }
    }
}

fn list<T: fmt::Display>(items: &[T]) -> String {
    items
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}
