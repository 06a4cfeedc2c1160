//! Engine errors to gRPC statuses, variant by variant, with rich details
//! (`google.rpc.ErrorInfo`, `BadRequest`, `PreconditionFailure`, `ResourceInfo`).
//!
//! Every status leaves through [`finish`], which keeps its trailers small
//! whatever the input: stock clients (gRPC C-core and its Python, Ruby and
//! PHP wrappers, Java, most proxies) refuse metadata past 8 KiB, and would
//! then show their own RESOURCE_EXHAUSTED instead of ours. So at most
//! [`MAX_VIOLATIONS`] field violations are listed (then one `…and K more`
//! with the count, which `ErrorInfo.metadata["violations"]` also holds),
//! echoed values are cut, and the message is bounded.

use std::collections::HashMap;

use leadflow_domain::account::AccountError;
use leadflow_domain::{DomainError, FieldViolation};
use leadflow_engine::EngineError;
use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};

/// The `ErrorInfo.domain` of every leadflow error.
pub(crate) const ERROR_DOMAIN: &str = "leadflow";

/// Field violations listed at most; the rest are counted.
pub(crate) const MAX_VIOLATIONS: usize = 20;
/// Bytes of violations (fields and descriptions) listed at most. Base64
/// in `grpc-status-details-bin` makes 4/3 of it.
const VIOLATION_BYTES: usize = 2_560;
/// A field path and a description, cut to these many bytes.
const MAX_FIELD_BYTES: usize = 160;
const MAX_DESCRIPTION_BYTES: usize = 320;
/// `grpc-message`, before percent-encoding (at most 3 bytes a byte).
const MAX_MESSAGE_BYTES: usize = 512;
/// An `ErrorInfo` metadata value.
const MAX_METADATA_BYTES: usize = 200;

/// `text` cut to at most `max` bytes on a character boundary, with an
/// ellipsis when cut.
pub(crate) fn truncate(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_owned();
    }
    let mut end = max.saturating_sub('…'.len_utf8());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}

/// What an error says, before it is bounded and encoded.
#[derive(Debug)]
struct Error {
    code: Code,
    message: String,
    reason: &'static str,
    metadata: Vec<(&'static str, String)>,
    violations: Vec<FieldViolation>,
    preconditions: Vec<(String, String, String)>,
    resource: Option<(String, String, String)>,
    retry: Option<std::time::Duration>,
}

impl Error {
    fn new(code: Code, reason: &'static str, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            reason,
            metadata: Vec::new(),
            violations: Vec::new(),
            preconditions: Vec::new(),
            resource: None,
            retry: None,
        }
    }

    fn meta(mut self, key: &'static str, value: impl ToString) -> Self {
        self.metadata.push((key, value.to_string()));
        self
    }
}

/// The listed share of `violations`, each cut, then `…and K more`.
fn bounded(violations: &[FieldViolation]) -> Vec<FieldViolation> {
    let mut out = Vec::with_capacity(violations.len().min(MAX_VIOLATIONS + 1));
    let mut bytes = 0;
    for (i, v) in violations.iter().enumerate() {
        let v = FieldViolation::new(
            truncate(&v.field, MAX_FIELD_BYTES),
            truncate(&v.description, MAX_DESCRIPTION_BYTES),
        );
        let cost = v.field.len() + v.description.len();
        if out.len() == MAX_VIOLATIONS || bytes + cost > VIOLATION_BYTES {
            let more = violations.len() - i;
            out.push(FieldViolation::new("", format!("…and {more} more")));
            break;
        }
        bytes += cost;
        out.push(v);
    }
    out
}

/// The status of an error, bounded.
fn finish(error: Error) -> Status {
    let mut details = ErrorDetails::new();
    let total = error.violations.len();
    let listed = bounded(&error.violations);
    for v in &listed {
        details.add_bad_request_violation(v.field.clone(), v.description.clone());
    }
    let preconditions = error.preconditions.len();
    for (i, (kind, subject, description)) in error.preconditions.into_iter().enumerate() {
        if i == MAX_VIOLATIONS {
            details.add_precondition_failure_violation("", "", format!("…and {} more", preconditions - i));
            break;
        }
        details.add_precondition_failure_violation(
            kind,
            truncate(&subject, MAX_FIELD_BYTES),
            truncate(&description, MAX_DESCRIPTION_BYTES),
        );
    }
    let mut metadata: HashMap<String, String> = error
        .metadata
        .into_iter()
        .map(|(k, v)| (k.to_owned(), truncate(&v, MAX_METADATA_BYTES)))
        .collect();
    if total > 0 {
        metadata.insert("violations".to_owned(), total.to_string());
    }
    details.set_error_info(error.reason, ERROR_DOMAIN, metadata);
    if let Some((kind, name, description)) = error.resource {
        details.set_resource_info(
            kind,
            truncate(&name, MAX_FIELD_BYTES),
            "",
            truncate(&description, MAX_DESCRIPTION_BYTES),
        );
    }
    if error.retry.is_some() {
        details.set_retry_info(error.retry);
    }
    Status::with_error_details(error.code, truncate(&error.message, MAX_MESSAGE_BYTES), details)
}

/// A message that lists violations: the first few, then how many more.
fn listing(violations: &[FieldViolation]) -> String {
    let mut message = String::new();
    for (i, v) in violations.iter().enumerate() {
        let item = format!("{}: {}", truncate(&v.field, 64), truncate(&v.description, 160));
        if i > 0 && message.len() + item.len() > MAX_MESSAGE_BYTES - 32 {
            message.push_str(&format!("; …and {} more", violations.len() - i));
            break;
        }
        if i > 0 {
            message.push_str("; ");
        }
        message.push_str(&item);
    }
    message
}

/// `INVALID_ARGUMENT` with a field violation each.
pub(crate) fn invalid(reason: &'static str, violations: &[FieldViolation]) -> Status {
    finish(Error {
        violations: violations.to_vec(),
        ..Error::new(Code::InvalidArgument, reason, listing(violations))
    })
}

/// A limit of ours that a request passes: `code` is INVALID_ARGUMENT for
/// a field, RESOURCE_EXHAUSTED for a whole batch or message. `ErrorInfo`
/// says `LIMIT_EXCEEDED` with the field, the limit and the actual value of
/// the first violation, which is the limit; any others are listed too.
pub(crate) fn limit_exceeded(code: Code, violations: &[FieldViolation], limit: u64, actual: u64) -> Status {
    let field = violations.first().map(|v| v.field.clone()).unwrap_or_default();
    finish(Error {
        violations: violations.to_vec(),
        ..Error::new(code, "LIMIT_EXCEEDED", listing(violations))
            .meta("field", field)
            .meta("limit", limit)
            .meta("actual", actual)
    })
}

/// `RESOURCE_EXHAUSTED`: a request over a size limit.
pub(crate) fn too_large(field: &str, description: String, limit: usize, actual: usize) -> Status {
    limit_exceeded(
        Code::ResourceExhausted,
        &[FieldViolation::new(field, description)],
        u64::try_from(limit).unwrap_or(u64::MAX),
        u64::try_from(actual).unwrap_or(u64::MAX),
    )
}

/// The codec's refusal of a message over the decode limit ("Error, decoded
/// message length too large: found N bytes, the limit is: M bytes"), as
/// our own limits answer it; `None` for any other message.
pub(crate) fn from_decode_limit(message: &str) -> Option<Status> {
    let rest = message.strip_prefix("Error, decoded message length too large: found ")?;
    let (found, rest) = rest.split_once(" bytes, the limit is: ")?;
    let limit = rest.strip_suffix(" bytes")?;
    let (found, limit) = (found.parse::<usize>().ok()?, limit.parse::<usize>().ok()?);
    Some(too_large(
        "(message)",
        format!("a message of {found} bytes; at most {limit}"),
        limit,
        found,
    ))
}

/// A status from the request stream of a call (a client stream): the
/// codec's decode-limit refusal is answered as our own limits are.
pub(crate) fn from_stream(status: Status) -> Status {
    if status.code() == Code::OutOfRange
        && let Some(ours) = from_decode_limit(status.message())
    {
        return ours;
    }
    status
}

/// `message`, cut so that the note of how many engagements were committed
/// before the error fits after it.
fn committed_note(message: &str, committed: usize) -> String {
    let note = format!(" ({committed} engagements were committed before this one)");
    format!("{}{note}", truncate(message, MAX_MESSAGE_BYTES - note.len()))
}

/// A stream's error, with how many engagements were committed before it
/// (in the message and in `ErrorInfo.metadata["committed"]`).
pub(crate) fn after_committed(status: Status, committed: i64) -> Status {
    let mut details = status.get_error_details();
    let info = details.error_info().cloned();
    let reason = info
        .as_ref()
        .map_or_else(|| "STREAM_ABORTED".to_owned(), |i| i.reason.clone());
    let mut metadata = info.map(|i| i.metadata).unwrap_or_default();
    metadata.insert("committed".to_owned(), committed.to_string());
    details.set_error_info(reason, ERROR_DOMAIN, metadata);
    let message = committed_note(status.message(), usize::try_from(committed).unwrap_or(0));
    Status::with_error_details(status.code(), message, details)
}

/// `RESOURCE_EXHAUSTED` with a retry hint: leadflow itself is at a limit
/// (calls in flight, database connections), not the caller.
pub(crate) fn overloaded(message: &str, retry_after: std::time::Duration) -> Status {
    finish(Error {
        retry: Some(retry_after),
        ..Error::new(Code::ResourceExhausted, "OVERLOADED", message)
    })
}

/// How long a caller refused as overloaded is told to wait.
pub(crate) const RETRY_AFTER_OVERLOAD: std::time::Duration = std::time::Duration::from_millis(100);

pub(crate) fn status(error: EngineError) -> Status {
    finish(describe(error))
}

fn describe(error: EngineError) -> Error {
    match error {
        EngineError::Domain(e) => domain(e),
        EngineError::Account(e) => account(e),
        EngineError::InvalidArgument { reason, violations } => Error {
            message: listing(&violations),
            violations,
            ..Error::new(Code::InvalidArgument, reason, "")
        },
        EngineError::InvalidPolicy(errors) => {
            let violations: Vec<FieldViolation> = errors
                .0
                .iter()
                .map(|e| FieldViolation::new("source", e.to_string()))
                .collect();
            Error {
                message: listing(&violations),
                violations,
                ..Error::new(Code::InvalidArgument, "INVALID_POLICY", "")
            }
        }
        EngineError::Batch { refusals } => {
            // The code and reason the first refused item would get alone;
            // every item's violations listed, under `engagements[i]`.
            let violations: Vec<FieldViolation> = refusals
                .iter()
                .flat_map(|(i, e)| item_violations(*i, e))
                .collect();
            let Some((_, first)) = refusals.into_iter().next() else {
                return Error::new(Code::InvalidArgument, "INVALID_FIELD", "the batch was refused");
            };
            Error {
                message: listing(&violations),
                violations,
                ..describe(first)
            }
        }
        EngineError::Committed { error, outcomes } => {
            let committed = outcomes.len();
            let inner = describe(*error);
            let message = committed_note(&inner.message, committed);
            Error { message, ..inner }.meta("committed", committed)
        }
        EngineError::NotFound { what, key } => Error {
            resource: Some((
                what.to_owned(),
                key.clone(),
                "no such resource in this workspace".to_owned(),
            )),
            ..Error::new(
                Code::NotFound,
                "NOT_FOUND",
                format!("{what} {} not found", truncate(&key, 160)),
            )
            .meta("resource", what)
            .meta("key", &key)
        },
        EngineError::AlreadyExists { what, key, id } => Error {
            resource: Some((
                what.to_owned(),
                id.clone(),
                format!("{:?} already names {what} {id}", truncate(&key, 160)),
            )),
            ..Error::new(
                Code::AlreadyExists,
                "ALREADY_EXISTS",
                format!("{what} {:?} already exists: {id}", truncate(&key, 160)),
            )
            .meta("resource", what)
            .meta("key", &key)
            .meta("id", &id)
        },
        EngineError::VersionConflict { expected, actual } => Error::new(
            Code::Aborted,
            "VERSION_CONFLICT",
            format!("the lead is at version {actual}, not {expected}: read it again and retry"),
        )
        .meta("expected_version", expected)
        .meta("actual_version", actual),
        EngineError::OutOfRange(message) => Error::new(Code::OutOfRange, "SEQUENCE_NOT_KEPT", message),
        EngineError::Aborted(message) => Error::new(Code::Aborted, "TAKEN_OVER", message),
        EngineError::NotReady(message) => Error::new(Code::FailedPrecondition, "NO_ACTIVE_POLICY", message),
        EngineError::FailedPrecondition { reason, message } => {
            Error::new(Code::FailedPrecondition, reason, message)
        }
        EngineError::MergedInto { lead_id, survivor_id } => Error {
            resource: Some((
                "lead".to_owned(),
                lead_id.clone(),
                format!("merged into lead {survivor_id}"),
            )),
            ..Error::new(
                Code::NotFound,
                "MERGED_INTO",
                format!("lead {lead_id} was merged into lead {survivor_id}: ask for the survivor"),
            )
            .meta("lead_id", &lead_id)
            .meta("survivor_id", &survivor_id)
        },
        EngineError::Identified {
            anonymous_id,
            lead_id,
        } => Error::new(
            Code::FailedPrecondition,
            "IDENTIFIED",
            format!(
                "anonymous id {:?} was identified as lead {lead_id}: its activity is the lead's (erase the lead)",
                truncate(&anonymous_id, 160)
            ),
        )
        .meta("lead_id", &lead_id),
        EngineError::Busy(e) => {
            tracing::warn!(error = %e, "every database connection is busy");
            Error {
                retry: Some(RETRY_AFTER_OVERLOAD),
                ..Error::new(
                    Code::ResourceExhausted,
                    "OVERLOADED",
                    "every database connection is busy; retry after the delay given",
                )
            }
        }
        EngineError::Unavailable(e) => {
            tracing::error!(error = %e, "database unavailable");
            Error::new(
                Code::Unavailable,
                "DATABASE_UNAVAILABLE",
                "the database is unavailable; retry",
            )
        }
        EngineError::ShuttingDown(message) => Error::new(Code::Unavailable, "SHUTTING_DOWN", message),
        EngineError::Conflict(_) => Error::new(
            Code::Aborted,
            "CONCURRENT_UPDATE",
            "a concurrent update won; retry",
        ),
        EngineError::Storage(e) => {
            tracing::error!(error = %e, "storage error");
            Error::new(Code::Internal, "INTERNAL", "internal storage error")
        }
        EngineError::Internal(message) => {
            tracing::error!(error = %message, "internal error");
            Error::new(Code::Internal, "INTERNAL", "internal error")
        }
    }
}

/// The field violations that name a refused item of a batch: its lead
/// (`engagements[i].lead`) or its engagement's fields, which the engine
/// names as the domain does (`engagement.type`).
fn item_violations(i: usize, error: &EngineError) -> Vec<FieldViolation> {
    let under = |v: &FieldViolation| {
        FieldViolation::new(format!("engagements[{i}].{}", v.field), v.description.clone())
    };
    match error {
        EngineError::NotFound { what, key } => vec![FieldViolation::new(
            format!("engagements[{i}].lead"),
            format!("{what} {key} not found"),
        )],
        EngineError::MergedInto { .. } => vec![FieldViolation::new(
            format!("engagements[{i}].lead"),
            error.to_string(),
        )],
        EngineError::InvalidArgument { violations, .. }
        | EngineError::Domain(DomainError::InvalidArgument { violations, .. }) => {
            violations.iter().map(under).collect()
        }
        other => vec![FieldViolation::new(
            format!("engagements[{i}]"),
            other.to_string(),
        )],
    }
}

/// `error` with the domain's field path `from` (and any path under it)
/// named `to`, as a method's request names it (`profile` is
/// `UpdateLeadProfile`'s `attributes`).
pub(crate) fn renamed(error: EngineError, from: &str, to: &str) -> EngineError {
    let rename = |field: &mut String| {
        if field == from {
            *field = to.to_owned();
        } else if let Some(rest) = field.strip_prefix(from).filter(|r| r.starts_with('.')) {
            *field = format!("{to}{rest}");
        }
    };
    match error {
        EngineError::Domain(DomainError::LimitExceeded {
            mut field,
            what,
            limit,
            actual,
        }) => {
            rename(&mut field);
            EngineError::Domain(DomainError::LimitExceeded {
                field,
                what,
                limit,
                actual,
            })
        }
        EngineError::Domain(DomainError::InvalidArgument { kind, mut violations }) => {
            violations.iter_mut().for_each(|v| rename(&mut v.field));
            EngineError::Domain(DomainError::InvalidArgument { kind, violations })
        }
        EngineError::InvalidArgument {
            reason,
            mut violations,
        } => {
            violations.iter_mut().for_each(|v| rename(&mut v.field));
            EngineError::InvalidArgument { reason, violations }
        }
        other => other,
    }
}

fn domain(error: DomainError) -> Error {
    match error {
        DomainError::InvalidArgument { kind, violations } => Error {
            message: listing(&violations),
            violations,
            ..Error::new(Code::InvalidArgument, kind.reason(), "")
        },
        DomainError::LimitExceeded {
            field,
            what,
            limit,
            actual,
        } => {
            let description = format!("{what} {actual}; at most {limit}");
            Error {
                violations: vec![FieldViolation::new(&field, &description)],
                ..Error::new(
                    Code::InvalidArgument,
                    "LIMIT_EXCEEDED",
                    format!("{field}: {description}"),
                )
                .meta("field", &field)
                .meta("limit", limit)
                .meta("actual", actual)
            }
        }
        DomainError::InvalidTransition { stage, command } => {
            invalid_transition(stage.as_str(), command.as_str())
        }
        DomainError::GuardFailed { command, failed } => guard_failed(
            command.as_str(),
            failed
                .iter()
                .map(|g| (g.guard.as_str(), g.detail.as_str(), g.to_string()))
                .collect(),
        ),
        DomainError::HistoryRequired => {
            tracing::error!("a decision asked for history the engine did not give");
            Error::new(Code::Internal, "INTERNAL", "internal error")
        }
    }
}

/// `FAILED_PRECONDITION`: no edge of a transition table (a lead's or an
/// account's) leaves `stage` on `command`.
fn invalid_transition(stage: &str, command: &str) -> Error {
    let message = format!("{command} is not allowed from {stage}");
    Error {
        preconditions: vec![("INVALID_TRANSITION".to_owned(), stage.to_owned(), message.clone())],
        ..Error::new(Code::FailedPrecondition, "INVALID_TRANSITION", message)
            .meta("stage", stage)
            .meta("command", command)
    }
}

/// `FAILED_PRECONDITION`: guards refused a command; each as (guard, detail,
/// how it reads), the first one's in `ErrorInfo`.
fn guard_failed(command: &str, failed: Vec<(&str, &str, String)>) -> Error {
    let (guard, detail) = failed.first().map_or(("", ""), |(g, d, _)| (*g, *d));
    let list = failed
        .iter()
        .map(|(_, _, text)| text.as_str())
        .collect::<Vec<_>>()
        .join("; ");
    Error {
        preconditions: failed
            .iter()
            .map(|(g, d, _)| ("GUARD".to_owned(), (*g).to_owned(), (*d).to_owned()))
            .collect(),
        ..Error::new(
            Code::FailedPrecondition,
            "GUARD_FAILED",
            format!("{command} refused: {list}"),
        )
        .meta("command", command)
        .meta("guard", guard)
        .meta("detail", detail)
    }
}

/// An account command the domain refused: as a lead's, with the
/// account's stage, command and guards.
fn account(error: AccountError) -> Error {
    match error {
        AccountError::Invalid(e) => domain(e),
        AccountError::NoAccountsPolicy => {
            let message =
                "the active policy has no [accounts]: accounts are kept but not matched, scored or moved";
            Error {
                preconditions: vec![(
                    "NO_ACCOUNTS_POLICY".to_owned(),
                    "policy".to_owned(),
                    message.to_owned(),
                )],
                ..Error::new(Code::FailedPrecondition, "NO_ACCOUNTS_POLICY", message)
            }
        }
        AccountError::InvalidTransition { stage, command } => {
            invalid_transition(stage.as_str(), command.as_str())
        }
        AccountError::GuardFailed { command, failed } => guard_failed(
            command.as_str(),
            failed
                .iter()
                .map(|g| (g.guard.as_str(), g.detail.as_str(), g.to_string()))
                .collect(),
        ),
    }
}

/// How a learning job that did not finish with a report ends its
/// `LearnPolicy` stream: too little data is the caller's to mend
/// (`FAILED_PRECONDITION` with the counts), a superseded job `ABORTED`.
pub(crate) fn learning_ended(job: &leadflow_engine::LearnJob) -> Status {
    use leadflow_domain::analytics::learn::{MIN_OUTCOMES, MIN_POSITIVES};
    let message = job.error.clone().unwrap_or_default();
    let error = match (job.status, job.error_code.as_deref()) {
        (leadflow_engine::LearnStatus::Superseded, _) => Error::new(
            Code::Aborted,
            "SUPERSEDED",
            format!("learning job {} was superseded by a later LearnPolicy", job.id),
        ),
        (_, Some("TOO_LITTLE_DATA")) => Error {
            preconditions: vec![(
                "DATA".to_owned(),
                "period".to_owned(),
                format!(
                    "at least {MIN_OUTCOMES} leads with a known outcome and {MIN_POSITIVES} that reached it"
                ),
            )],
            ..Error::new(Code::FailedPrecondition, "TOO_LITTLE_DATA", message)
                .meta("outcomes", job.outcomes.unwrap_or(0))
                .meta("positives", job.positives.unwrap_or(0))
                .meta("min_outcomes", MIN_OUTCOMES)
                .meta("min_positives", MIN_POSITIVES)
        },
        // A draft the parser refuses is the service's fault, not the caller's.
        (_, Some("INVALID_DRAFT")) => Error::new(Code::Internal, "INVALID_DRAFT", message),
        (_, Some("BASE_NOT_FOUND")) => Error::new(Code::NotFound, "BASE_NOT_FOUND", message),
        _ => Error::new(Code::Aborted, "LEARN_FAILED", message),
    };
    finish(error.meta("job_id", job.id))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What a client receives as metadata for a status: its message,
    /// percent-encoded, and its details, base64.
    fn trailer_bytes(status: &Status) -> usize {
        let message: usize = status
            .message()
            .bytes()
            .map(|b| {
                if (0x20..0x7f).contains(&b) && b != b'%' {
                    1
                } else {
                    3
                }
            })
            .sum();
        message + status.details().len().div_ceil(3) * 4
    }

    #[test]
    fn many_long_violations_stay_small_and_are_counted() {
        let violations: Vec<FieldViolation> = (0..3_000)
            .map(|i| {
                FieldViolation::new(
                    format!("profile[{:?}]", "k".repeat(20_000)),
                    format!("item {i}: {}", "é".repeat(5_000)),
                )
            })
            .collect();
        let status = invalid("INVALID_FIELD", &violations);
        assert!(trailer_bytes(&status) < 7 * 1024, "{}", trailer_bytes(&status));
        let details = status.get_error_details();
        let listed = &details.bad_request().expect("listed").field_violations;
        assert!(listed.len() <= MAX_VIOLATIONS + 1);
        assert_eq!(
            listed.last().map(|v| v.description.clone()),
            Some(format!("…and {} more", 3_000 - (listed.len() - 1)))
        );
        assert_eq!(
            details.error_info().map(|i| i.metadata["violations"].clone()),
            Some("3000".to_owned())
        );
    }

    #[test]
    fn few_short_violations_are_listed_whole() {
        let violations = vec![
            FieldViolation::new("a", "required"),
            FieldViolation::new("b", "too long"),
        ];
        let status = invalid("INVALID_FIELD", &violations);
        assert_eq!(status.message(), "a: required; b: too long");
        let listed = status
            .get_error_details()
            .bad_request()
            .expect("listed")
            .field_violations
            .clone();
        assert_eq!(listed.len(), 2);
        assert_eq!(listed[1].description, "too long");
    }

    #[test]
    fn the_committed_note_fits_in_a_bounded_message() {
        let long = invalid("INVALID_FIELD", &[FieldViolation::new("f", "x".repeat(10_000))]);
        let status = after_committed(long, 5);
        assert!(
            status.message().len() <= MAX_MESSAGE_BYTES,
            "{}",
            status.message().len()
        );
        assert!(
            status
                .message()
                .ends_with("(5 engagements were committed before this one)")
        );
        assert_eq!(
            status
                .get_error_details()
                .error_info()
                .map(|i| i.metadata["committed"].clone()),
            Some("5".to_owned())
        );
    }

    #[test]
    fn truncation_keeps_characters_whole() {
        assert_eq!(truncate("abc", 3), "abc");
        assert_eq!(truncate("abcdef", 5), "ab…");
        assert_eq!(truncate("ééé", 5), "é…");
    }

    #[test]
    fn a_long_key_is_cut_in_not_found() {
        let status = status(EngineError::NotFound {
            what: "lead",
            key: "x".repeat(100_000),
        });
        assert_eq!(status.code(), Code::NotFound);
        assert!(trailer_bytes(&status) < 2 * 1024, "{}", trailer_bytes(&status));
    }
}
