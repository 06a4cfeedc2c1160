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
/// Page sizes: leads and policy versions, history entries.
pub(crate) const MAX_PAGE: u64 = 500;
pub(crate) const MAX_HISTORY_PAGE: u64 = 1_000;

/// Collects violations over a whole request.
#[derive(Debug, Default)]
pub(crate) struct Check {
    pub(crate) violations: Vec<FieldViolation>,
}

impl Check {
    pub(crate) fn fail(&mut self, field: impl Into<String>, description: impl Into<String>) {
        self.violations.push(FieldViolation::new(field, description));
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
            self.fail(field, format!("{chars} characters; at most {max}"));
        } else if value.chars().any(|c| c.is_control() && c != '\n' && c != '\t') {
            self.fail(field, "contains control characters");
        }
    }

    /// A map of names to values.
    pub(crate) fn map(&mut self, field: &str, map: &BTreeMap<String, String>) {
        if map.len() > MAX_MAP_ENTRIES {
            self.fail(field, format!("{} entries; at most {MAX_MAP_ENTRIES}", map.len()));
            return;
        }
        for (key, value) in map {
            let at = format!("{field}[{key:?}]");
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

    pub(crate) fn into_result(self) -> Result<(), tonic::Status> {
        if self.violations.is_empty() {
            Ok(())
        } else {
            Err(crate::error::invalid("INVALID_FIELD", &self.violations))
        }
    }
}
