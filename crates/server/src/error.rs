//! Engine errors to gRPC statuses, variant by variant, with rich details
//! (`google.rpc.ErrorInfo`, `BadRequest`, `PreconditionFailure`, `ResourceInfo`).

use std::collections::HashMap;

use leadflow_domain::{DomainError, FieldViolation};
use leadflow_engine::EngineError;
use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};

/// The `ErrorInfo.domain` of every leadflow error.
pub(crate) const ERROR_DOMAIN: &str = "leadflow";

fn info(details: &mut ErrorDetails, reason: &str, metadata: &[(&str, String)]) {
    let metadata: HashMap<String, String> = metadata
        .iter()
        .map(|(k, v)| ((*k).to_owned(), v.clone()))
        .collect();
    details.set_error_info(reason, ERROR_DOMAIN, metadata);
}

/// `INVALID_ARGUMENT` with a field violation each.
pub(crate) fn invalid(reason: &str, violations: &[FieldViolation]) -> Status {
    let mut details = ErrorDetails::new();
    for v in violations {
        details.add_bad_request_violation(v.field.clone(), v.description.clone());
    }
    info(&mut details, reason, &[]);
    let message = violations
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ");
    Status::with_error_details(Code::InvalidArgument, message, details)
}

/// `RESOURCE_EXHAUSTED`: a request over a size limit.
pub(crate) fn too_large(field: &str, message: String) -> Status {
    let mut details = ErrorDetails::new();
    details.add_bad_request_violation(field, message.clone());
    info(&mut details, "LIMIT_EXCEEDED", &[("field", field.to_owned())]);
    Status::with_error_details(Code::ResourceExhausted, message, details)
}

pub(crate) fn status(error: EngineError) -> Status {
    match error {
        EngineError::Domain(e) => domain(e),
        EngineError::InvalidArgument { reason, violations } => invalid(reason, &violations),
        EngineError::InvalidPolicy(errors) => {
            let violations: Vec<FieldViolation> = errors
                .0
                .iter()
                .map(|e| FieldViolation::new("source", e.to_string()))
                .collect();
            invalid("INVALID_POLICY", &violations)
        }
        EngineError::NotFound { what, key } => {
            let mut details = ErrorDetails::new();
            info(
                &mut details,
                "NOT_FOUND",
                &[("resource", what.to_owned()), ("key", key.clone())],
            );
            details.set_resource_info(what, key.clone(), "", "no such resource in this workspace");
            Status::with_error_details(Code::NotFound, format!("{what} {key} not found"), details)
        }
        EngineError::AlreadyExists { what, key, id } => {
            let mut details = ErrorDetails::new();
            info(
                &mut details,
                "ALREADY_EXISTS",
                &[
                    ("resource", what.to_owned()),
                    ("key", key.clone()),
                    ("id", id.clone()),
                ],
            );
            details.set_resource_info(what, id.clone(), "", format!("{key:?} already names {what} {id}"));
            Status::with_error_details(
                Code::AlreadyExists,
                format!("{what} {key:?} already exists: {id}"),
                details,
            )
        }
        EngineError::VersionConflict { expected, actual } => {
            let mut details = ErrorDetails::new();
            info(
                &mut details,
                "VERSION_CONFLICT",
                &[
                    ("expected_version", expected.to_string()),
                    ("actual_version", actual.to_string()),
                ],
            );
            Status::with_error_details(
                Code::Aborted,
                format!("the lead is at version {actual}, not {expected}: read it again and retry"),
                details,
            )
        }
        EngineError::OutOfRange(message) => {
            let mut details = ErrorDetails::new();
            info(&mut details, "SEQUENCE_NOT_KEPT", &[]);
            Status::with_error_details(Code::OutOfRange, message, details)
        }
        EngineError::Aborted(message) => {
            let mut details = ErrorDetails::new();
            info(&mut details, "TAKEN_OVER", &[]);
            Status::with_error_details(Code::Aborted, message, details)
        }
        EngineError::NotReady(message) => {
            let mut details = ErrorDetails::new();
            info(&mut details, "NO_ACTIVE_POLICY", &[]);
            Status::with_error_details(Code::FailedPrecondition, message, details)
        }
        EngineError::Store(e) if e.is_unavailable() => {
            tracing::error!(error = %e, "database unavailable");
            Status::unavailable("the database is unavailable; retry")
        }
        EngineError::Store(e) if e.is_retryable() || e.is_unique_violation() => {
            let mut details = ErrorDetails::new();
            info(&mut details, "CONCURRENT_UPDATE", &[]);
            Status::with_error_details(Code::Aborted, "a concurrent update won; retry", details)
        }
        EngineError::Store(e) => {
            tracing::error!(error = %e, "storage error");
            Status::internal("internal storage error")
        }
        EngineError::Internal(message) => {
            tracing::error!(error = %message, "internal error");
            Status::internal("internal error")
        }
    }
}

fn domain(error: DomainError) -> Status {
    match error {
        DomainError::InvalidArgument { kind, violations } => invalid(kind.reason(), &violations),
        DomainError::InvalidTransition { stage, command } => {
            let mut details = ErrorDetails::new();
            info(
                &mut details,
                "INVALID_TRANSITION",
                &[
                    ("stage", stage.as_str().to_owned()),
                    ("command", command.as_str().to_owned()),
                ],
            );
            let message = format!("{command} is not allowed from {stage}");
            details.add_precondition_failure_violation("INVALID_TRANSITION", stage.as_str(), message.clone());
            Status::with_error_details(Code::FailedPrecondition, message, details)
        }
        DomainError::GuardFailed { command, failed } => {
            let mut details = ErrorDetails::new();
            let first = failed.first();
            info(
                &mut details,
                "GUARD_FAILED",
                &[
                    ("command", command.as_str().to_owned()),
                    (
                        "guard",
                        first.map(|g| g.guard.as_str().to_owned()).unwrap_or_default(),
                    ),
                    ("detail", first.map(|g| g.detail.clone()).unwrap_or_default()),
                ],
            );
            for check in &failed {
                details.add_precondition_failure_violation(
                    "GUARD",
                    check.guard.as_str(),
                    check.detail.clone(),
                );
            }
            let list = failed
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("; ");
            Status::with_error_details(
                Code::FailedPrecondition,
                format!("{command} refused: {list}"),
                details,
            )
        }
        DomainError::HistoryRequired => {
            tracing::error!("a decision asked for history the engine did not give");
            Status::internal("internal error")
        }
    }
}
