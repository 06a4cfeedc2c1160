use leadflow_domain::{DomainError, FieldViolation, PolicyErrors};
use leadflow_store::StoreError;

/// Why a use case failed. The server maps each variant to a gRPC status.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// The domain refused the command (bad input, illegal transition, guard).
    #[error(transparent)]
    Domain(DomainError),
    /// The domain refused an account command (an illegal transition, a
    /// guard, no `[accounts]` in the policy).
    #[error(transparent)]
    Account(leadflow_domain::account::AccountError),
    /// Bad input the engine itself detects; `reason` is for machines.
    #[error("invalid argument: {}", .violations.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
    InvalidArgument {
        reason: &'static str,
        violations: Vec<FieldViolation>,
    },
    /// A policy document that does not validate.
    #[error("invalid policy:\n{0}")]
    InvalidPolicy(PolicyErrors),
    /// Items of a batch refused before anything was written: each by its
    /// index in the batch, with what it would get alone (its fields named
    /// by the domain's paths, e.g. `engagement.type`), in order.
    #[error("{} item(s) of the batch refused", .refusals.len())]
    Batch { refusals: Vec<(usize, EngineError)> },
    /// A batch written in several transactions failed after some of its
    /// items were committed: their outcomes, in order (a retry is safe:
    /// they are known by event id).
    #[error("{error} ({} committed before)", .outcomes.len())]
    Committed {
        error: Box<EngineError>,
        outcomes: Vec<crate::views::Outcome>,
    },
    #[error("{what} {key:?} not found")]
    NotFound { what: &'static str, key: String },
    #[error("{what} {key:?} already exists (id {id})")]
    AlreadyExists {
        what: &'static str,
        key: String,
        id: String,
    },
    /// The call cannot be made in the current state; `reason` is for
    /// machines (e.g. an unmerge after its window).
    #[error("{message}")]
    FailedPrecondition { reason: &'static str, message: String },
    /// A lead asked for by its id was merged into another (`MergeLeads`):
    /// its engagements and keys are the survivor's.
    #[error("lead {lead_id} was merged into lead {survivor_id}")]
    MergedInto { lead_id: String, survivor_id: String },
    /// An anonymous id's activity was asked for as anonymous activity, but
    /// the id was identified: it is the lead's.
    #[error("anonymous id {anonymous_id:?} was identified as lead {lead_id}: its activity is the lead's")]
    Identified { anonymous_id: String, lead_id: String },
    /// `expected_version` did not match.
    #[error("version conflict: expected {expected}, the lead is at {actual}")]
    VersionConflict { expected: i64, actual: i64 },
    /// A position outside what is kept (a trimmed sequence).
    #[error("{0}")]
    OutOfRange(String),
    /// Superseded by a concurrent actor (a newer stream of the same consumer).
    #[error("{0}")]
    Aborted(String),
    /// Nothing is configured to decide with (no active policy).
    #[error("{0}")]
    NotReady(String),
    /// leadflow's own pool of database connections stayed busy: nothing
    /// was done, and the call may be made again shortly.
    #[error("busy: {0}")]
    Busy(String),
    /// The database could not be reached, or a connection broke
    /// mid-command: nothing was committed.
    #[error("unavailable: {0}")]
    Unavailable(String),
    /// The server is shutting down: the caller is to come back (to another
    /// replica, or to this one restarted). Says what goes on.
    #[error("shutting down: {0}")]
    ShuttingDown(String),
    /// A concurrent transaction won (a deadlock, a serialization failure,
    /// a key taken meanwhile): running the command again may succeed.
    #[error("conflict: {0}")]
    Conflict(String),
    /// Any other failure of the database.
    #[error("storage: {0}")]
    Storage(String),
    /// A stored value the engine cannot read back.
    #[error("internal: {0}")]
    Internal(String),
}

impl EngineError {
    pub(crate) fn invalid(
        reason: &'static str,
        field: impl Into<String>,
        description: impl Into<String>,
    ) -> Self {
        Self::InvalidArgument {
            reason,
            violations: vec![FieldViolation::new(field, description)],
        }
    }

    pub(crate) fn retryable(&self) -> bool {
        matches!(self, Self::Conflict(_))
    }
}

/// A store failure, as callers need to tell it apart.
impl From<StoreError> for EngineError {
    fn from(e: StoreError) -> Self {
        if e.is_busy() {
            Self::Busy(e.to_string())
        } else if e.is_unavailable() {
            Self::Unavailable(e.to_string())
        } else if e.is_retryable() || e.is_unique_violation() {
            Self::Conflict(e.to_string())
        } else {
            Self::Storage(e.to_string())
        }
    }
}

impl From<leadflow_domain::account::AccountError> for EngineError {
    fn from(e: leadflow_domain::account::AccountError) -> Self {
        match e {
            leadflow_domain::account::AccountError::Invalid(e) => Self::Domain(e),
            other => Self::Account(other),
        }
    }
}

impl From<DomainError> for EngineError {
    fn from(e: DomainError) -> Self {
        Self::Domain(e)
    }
}
