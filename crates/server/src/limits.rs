//! Size limits on everything a caller sends. Over a limit is refused before
//! anything is written: strings and maps with INVALID_ARGUMENT and their
//! field path, batches and whole messages with RESOURCE_EXHAUSTED.

use std::collections::BTreeMap;

use leadflow_domain::FieldViolation;

/// A whole request message, encoded.
pub const MAX_MESSAGE_BYTES: usize = 4 * 1024 * 1024;
/// Ids and keys: event ids, request ids, lead ids, external keys.
pub(crate) const MAX_ID_CHARS: usize = 128;
/// Names: engagement types, channels, attribute and property names.
pub(crate) const MAX_NAME_CHARS: usize = 128;
/// Attribute and property values.
pub(crate) const MAX_VALUE_CHARS: usize = 2_048;
/// Free text: reasons, actors.
pub(crate) const MAX_TEXT_CHARS: usize = 1_024;
/// Entries in a profile or a properties map.
pub(crate) const MAX_MAP_ENTRIES: usize = 64;
/// A policy document.
pub(crate) const MAX_POLICY_BYTES: usize = 256 * 1024;
/// Engagements in one `RecordEngagements`.
pub const MAX_BATCH: usize = leadflow_engine::MAX_BATCH;
/// Bytes of leads in one `ListLeads` page, about (a page holds at least
/// one lead): well under the 4 MiB a stock client receives at most.
pub(crate) const MAX_LIST_BYTES: usize = 3 * 1024 * 1024;
/// Page sizes: leads and policy versions, history entries.
pub(crate) const MAX_PAGE: u64 = 500;
pub(crate) const MAX_HISTORY_PAGE: u64 = 1_000;

/// Collects violations over a whole request.
#[derive(Debug, Default)]
pub(crate) struct Check {
    pub(crate) violations: Vec<FieldViolation>,
    /// The first violation that is a size limit: (its index, limit, actual).
    limit: Option<(usize, u64, u64)>,
}

/// A name as it appears inside a field path (`profile["…"]`): quoted, and
/// cut so that a huge name is not echoed whole.
fn quoted(name: &str) -> String {
    format!("{:?}", crate::error::truncate(name, 64))
}

impl Check {
    pub(crate) fn fail(&mut self, field: impl Into<String>, description: impl Into<String>) {
        self.violations.push(FieldViolation::new(field, description));
    }

    /// A violation of a size limit: answered with `ErrorInfo` reason
    /// `LIMIT_EXCEEDED`, the limit and the actual value, when it is the
    /// request's first violation.
    pub(crate) fn over_limit(
        &mut self,
        field: impl Into<String>,
        description: impl Into<String>,
        limit: usize,
        actual: usize,
    ) {
        if self.limit.is_none() {
            let as_u64 = |n: usize| u64::try_from(n).unwrap_or(u64::MAX);
            self.limit = Some((self.violations.len(), as_u64(limit), as_u64(actual)));
        }
        self.fail(field, description);
    }

    /// A string within `max` characters, without control characters;
    /// required ones must not be blank.
    pub(crate) fn text(&mut self, field: &str, value: &str, max: usize, required: bool) {
        if required && value.trim().is_empty() {
            self.fail(field, "required");
            return;
        }
        let chars = value.chars().count();
        if chars > max {
            self.over_limit(field, format!("{chars} characters; at most {max}"), max, chars);
        } else if value.chars().any(|c| c.is_control() && c != '\n' && c != '\t') {
            self.fail(field, "contains control characters");
        }
    }

    /// A key (an external key, an id, a request id, a consumer name): the
    /// same rule everywhere it is given or looked up. Surrounding
    /// whitespace is not part of it; one that is only whitespace is refused
    /// (as missing when `required`). The key, trimmed.
    pub(crate) fn key(&mut self, field: &str, value: &str, required: bool) -> String {
        let key = value.trim();
        if key.is_empty() {
            if required {
                self.fail(field, "required");
            } else if !value.is_empty() {
                self.fail(field, "only whitespace: leave it empty or give a key");
            }
            return String::new();
        }
        self.text(field, key, MAX_ID_CHARS, true);
        key.to_owned()
    }

    /// A map of names to values.
    pub(crate) fn map(&mut self, field: &str, map: &BTreeMap<String, String>) {
        if map.len() > MAX_MAP_ENTRIES {
            self.over_limit(
                field,
                format!("{} entries; at most {MAX_MAP_ENTRIES}", map.len()),
                MAX_MAP_ENTRIES,
                map.len(),
            );
            return;
        }
        for (key, value) in map {
            let at = format!("{field}[{}]", quoted(key));
            if key.trim().is_empty() {
                self.fail(&at, "an empty name");
                continue;
            }
            self.text(&at, key, MAX_NAME_CHARS, true);
            self.text(&at, value, MAX_VALUE_CHARS, false);
        }
    }

    pub(crate) fn page_size(&mut self, field: &str, requested: i32, default: u64, max: u64) -> u64 {
        match requested {
            0 => default,
            n if n < 0 => {
                self.fail(field, format!("{n} is negative"));
                default
            }
            n => u64::try_from(n).unwrap_or(max).min(max),
        }
    }

    /// Like [`Self::page_size`], but over `max` is refused, not lowered.
    pub(crate) fn page_size_at_most(&mut self, field: &str, requested: i32, default: u64, max: u64) -> u64 {
        if i64::from(requested) > i64::try_from(max).unwrap_or(i64::MAX) {
            self.fail(field, format!("{requested}; at most {max}"));
            return default;
        }
        self.page_size(field, requested, default, max)
    }

    /// The refusal as an engine error (for a batch item, answered with the
    /// others); `None` when nothing is wrong.
    pub(crate) fn into_refusal(self) -> Option<leadflow_engine::EngineError> {
        let reason = match self.limit {
            _ if self.violations.is_empty() => return None,
            Some((0, _, _)) => "LIMIT_EXCEEDED",
            _ => "INVALID_FIELD",
        };
        Some(leadflow_engine::EngineError::InvalidArgument {
            reason,
            violations: self.violations,
        })
    }

    pub(crate) fn into_result(self) -> Result<(), tonic::Status> {
        match self.limit {
            _ if self.violations.is_empty() => Ok(()),
            Some((0, limit, actual)) => Err(crate::error::limit_exceeded(
                tonic::Code::InvalidArgument,
                &self.violations,
                limit,
                actual,
            )),
            _ => Err(crate::error::invalid("INVALID_FIELD", &self.violations)),
        }
    }
}
