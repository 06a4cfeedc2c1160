//! Scoring rules and how they match a profile or an engagement.

use regex::Regex;

use crate::engagement::Engagement;
use crate::profile::Profile;
use crate::time::{Span, Timestamp};

/// A `[[fit]]` rule or an attribute `[[undesirable]]`.
#[derive(Clone, Debug)]
pub struct AttributeRule {
    pub id: String,
    pub attribute: String,
    pub matcher: AttributeMatcher,
    pub points: f64,
    pub undesirable: bool,
    pub disqualify: bool,
    /// The model it scores (index into `Policy::models`; 0 the default).
    pub model: usize,
}

/// How an attribute's value is compared. Text compares case-insensitively
/// after trimming; ranges match numbers only.
#[derive(Clone, Debug)]
pub enum AttributeMatcher {
    /// Stored trimmed and lower-cased.
    Equals(String),
    /// Stored trimmed and lower-cased.
    OneOf(Vec<String>),
    Matches(Regex),
    Range {
        at_least: Option<f64>,
        at_most: Option<f64>,
    },
}

impl AttributeRule {
    pub fn matches(&self, profile: &Profile) -> bool {
        profile
            .get(&self.attribute)
            .is_some_and(|value| self.matcher.matches(value))
    }
}

impl AttributeMatcher {
    pub fn matches(&self, value: &str) -> bool {
        let value = value.trim();
        if value.is_empty() {
            return false;
        }
        match self {
            Self::Equals(expected) => fold(value) == *expected,
            Self::OneOf(options) => {
                let value = fold(value);
                options.contains(&value)
            }
            Self::Matches(regex) => regex.is_match(value),
            Self::Range { at_least, at_most } => number(value)
                .is_some_and(|n| at_least.is_none_or(|min| n >= min) && at_most.is_none_or(|max| n <= max)),
        }
    }
}

/// An `[[engagement]]` rule or an event `[[undesirable]]`.
#[derive(Clone, Debug)]
pub struct EventRule {
    pub id: String,
    /// The engagement type it reads.
    pub kind: String,
    /// Stored trimmed and lower-cased.
    pub channel: Option<String>,
    pub conditions: Vec<PropertyCondition>,
    pub points: f64,
    /// Lifetime budget of counted, undecayed points (by magnitude).
    pub max_points: Option<f64>,
    /// At most this many events (firings, for a counting rule) count per UTC day.
    pub max_per_day: Option<u32>,
    /// `at_count` (and `within`): the rule fires only at every Nth matching event.
    pub count: Option<Count>,
    pub undesirable: bool,
    pub disqualify: bool,
    /// The model it scores (index into `Policy::models`; 0 the default).
    pub model: usize,
}

/// A counting rule's condition: `at` matching events, kept since the rule
/// last fired and, with `within`, no older than `within` before the latest.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Count {
    pub at: u32,
    pub within: Option<Span>,
}

impl Count {
    /// Keeps a matching event at `t` (in scoring order) in `kept`, the
    /// times of the events kept so far; whether the rule fires at it. Kept
    /// events older than `t - within` are dropped first; a firing clears them.
    pub fn keep(self, kept: &mut Vec<Timestamp>, t: Timestamp) -> bool {
        if let Some(within) = self.within {
            let oldest = t.saturating_sub(within);
            let stale = kept.partition_point(|k| *k < oldest);
            kept.drain(..stale);
        }
        kept.push(t);
        if kept.len() >= self.at as usize {
            kept.clear();
            return true;
        }
        false
    }

    /// How many of `kept` still count at `t` (not dropped by `within`).
    pub fn pending(self, kept: &[Timestamp], t: Timestamp) -> usize {
        self.within.map_or(kept.len(), |within| {
            let oldest = t.saturating_sub(within);
            kept.len() - kept.partition_point(|k| *k < oldest)
        })
    }
}

/// One `where` entry. A missing property never matches.
#[derive(Clone, Debug, PartialEq)]
pub enum PropertyCondition {
    /// `prop = "v"`: equal, case-insensitively after trimming (stored folded).
    Equals { property: String, value: String },
    /// `prop_prefix = "/x"`: starts with, case-sensitively (paths and URLs are).
    Prefix { property: String, prefix: String },
    /// `prop_one_of = [...]`: like `Equals`, against any of them (stored folded).
    OneOf { property: String, values: Vec<String> },
    /// `prop_at_least = n` (a TOML number): the property, read as a number
    /// as attribute ranges read one, is at least `bound`.
    AtLeast { property: String, bound: f64 },
    /// `prop_at_most = n` (a TOML number): at most `bound`.
    AtMost { property: String, bound: f64 },
}

impl EventRule {
    pub fn matches(&self, event: &Engagement) -> bool {
        event.kind == self.kind
            && self
                .channel
                .as_ref()
                .is_none_or(|channel| event.channel.as_deref().is_some_and(|c| fold(c) == *channel))
            && self.conditions.iter().all(|c| c.matches(event))
    }
}

impl PropertyCondition {
    /// The property it reads.
    pub fn property(&self) -> &str {
        match self {
            Self::Equals { property, .. }
            | Self::Prefix { property, .. }
            | Self::OneOf { property, .. }
            | Self::AtLeast { property, .. }
            | Self::AtMost { property, .. } => property,
        }
    }

    fn matches(&self, event: &Engagement) -> bool {
        match self {
            Self::Equals { property, value } => event.property(property).is_some_and(|v| fold(v) == *value),
            Self::Prefix { property, prefix } => event
                .property(property)
                .is_some_and(|v| v.trim().starts_with(prefix.as_str())),
            Self::OneOf { property, values } => event.property(property).is_some_and(|v| {
                let v = fold(v);
                values.contains(&v)
            }),
            Self::AtLeast { property, bound } => event
                .property(property)
                .and_then(number)
                .is_some_and(|n| n >= *bound),
            Self::AtMost { property, bound } => event
                .property(property)
                .and_then(number)
                .is_some_and(|n| n <= *bound),
        }
    }
}

/// A text as a number: trimmed, then read as a finite decimal ("120",
/// " 1.5e3 ", "-4"); anything else is not a number.
pub(crate) fn number(text: &str) -> Option<f64> {
    text.trim().parse::<f64>().ok().filter(|n| n.is_finite())
}

/// Case- and space-insensitive form of a text for comparisons.
pub(crate) fn fold(text: &str) -> String {
    text.trim().to_lowercase()
}
