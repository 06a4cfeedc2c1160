//! Instants and spans, to the microsecond (PostgreSQL's precision).
//!
//! The domain never reads a clock: every instant comes in through a command or
//! a [`crate::Context`].

use std::fmt;

use serde::{Deserialize, Serialize};

const MICROS_PER_SECOND: i64 = 1_000_000;
const MICROS_PER_DAY: i64 = 86_400 * MICROS_PER_SECOND;

/// An instant in UTC, microseconds since the Unix epoch.
#[derive(Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Debug, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Timestamp(i64);

impl Timestamp {
    /// The earliest instant the service accepts (1970-01-01).
    pub const EPOCH: Self = Self(0);

    pub const fn from_micros(micros: i64) -> Self {
        Self(micros)
    }

    pub const fn from_secs(secs: i64) -> Self {
        Self(secs.saturating_mul(MICROS_PER_SECOND))
    }

    pub const fn as_micros(self) -> i64 {
        self.0
    }

    /// The UTC calendar day, counted from the epoch (`max_per_day` windows).
    pub const fn utc_day(self) -> i64 {
        self.0.div_euclid(MICROS_PER_DAY)
    }

    pub const fn saturating_add(self, span: Span) -> Self {
        Self(self.0.saturating_add(span.0))
    }

    pub const fn saturating_sub(self, span: Span) -> Self {
        Self(self.0.saturating_sub(span.0))
    }

    /// The span from `earlier` to `self` (negative when `earlier` is later).
    pub const fn since(self, earlier: Self) -> Span {
        Span(self.0.saturating_sub(earlier.0))
    }

    pub fn to_chrono(self) -> Option<chrono::DateTime<chrono::Utc>> {
        chrono::DateTime::from_timestamp_micros(self.0)
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.to_chrono() {
            Some(t) => write!(f, "{}", t.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)),
            None => write!(f, "@{}us", self.0),
        }
    }
}

/// A length of time in microseconds, written in policies as `90s`, `90m`,
/// `24h`, `30d` or `2w`.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Span(i64);

impl Span {
    pub const ZERO: Self = Self(0);

    pub const fn from_micros(micros: i64) -> Self {
        Self(micros)
    }

    pub const fn from_secs(secs: i64) -> Self {
        Self(secs.saturating_mul(MICROS_PER_SECOND))
    }

    pub const fn from_hours(hours: i64) -> Self {
        Self::from_secs(hours.saturating_mul(3600))
    }

    pub const fn from_days(days: i64) -> Self {
        Self(days.saturating_mul(MICROS_PER_DAY))
    }

    pub const fn as_micros(self) -> i64 {
        self.0
    }

    /// Parses a policy duration: a positive whole number and one unit.
    pub fn parse(text: &str) -> Result<Self, String> {
        let text = text.trim();
        let split = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
        let (digits, unit) = text.split_at(split);
        let expected = "expected a whole number followed by s, m, h, d or w (e.g. \"30d\")";
        let Ok(n) = digits.parse::<i64>() else {
            return Err(format!("bad duration {text:?}: {expected}"));
        };
        let unit_secs = match unit {
            "s" => 1,
            "m" => 60,
            "h" => 3600,
            "d" => 86_400,
            "w" => 7 * 86_400,
            _ => return Err(format!("bad duration {text:?}: {expected}")),
        };
        if n == 0 {
            return Err(format!("bad duration {text:?}: must be longer than zero"));
        }
        // Ten thousand years is plenty; beyond it the microsecond count overflows.
        let max_secs = 10_000 * 366 * 86_400;
        match n.checked_mul(unit_secs) {
            Some(secs) if secs <= max_secs => Ok(Self::from_secs(secs)),
            _ => Err(format!("bad duration {text:?}: longer than 10000 years")),
        }
    }
}

impl std::ops::Add for Span {
    type Output = Self;

    fn add(self, other: Self) -> Self {
        Self(self.0.saturating_add(other.0))
    }
}

impl std::ops::Sub for Span {
    type Output = Self;

    fn sub(self, other: Self) -> Self {
        Self(self.0.saturating_sub(other.0))
    }
}

impl fmt::Display for Span {
    /// The largest unit that divides the span evenly, so `Span::parse` round-trips.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const UNITS: [(i64, &str); 5] = [
            (7 * MICROS_PER_DAY, "w"),
            (MICROS_PER_DAY, "d"),
            (3600 * MICROS_PER_SECOND, "h"),
            (60 * MICROS_PER_SECOND, "m"),
            (MICROS_PER_SECOND, "s"),
        ];
        for (size, unit) in UNITS {
            if self.0 != 0 && self.0 % size == 0 {
                return write!(f, "{}{unit}", self.0 / size);
            }
        }
        write!(f, "{}us", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_in_every_unit() {
        assert_eq!(Span::parse("90s"), Ok(Span::from_secs(90)));
        assert_eq!(Span::parse("90m"), Ok(Span::from_secs(90 * 60)));
        assert_eq!(Span::parse("24h"), Ok(Span::from_hours(24)));
        assert_eq!(Span::parse("30d"), Ok(Span::from_days(30)));
        assert_eq!(Span::parse("2w"), Ok(Span::from_days(14)));
    }

    #[test]
    fn bad_durations_are_refused_with_the_text() {
        for bad in [
            "",
            "d",
            "30",
            "30 days",
            "-3d",
            "1.5h",
            "0d",
            "3y",
            "99999999999999w",
        ] {
            let err = Span::parse(bad).expect_err(bad);
            assert!(err.contains("bad duration"), "{bad}: {err}");
        }
    }

    #[test]
    fn spans_print_in_their_largest_unit_and_parse_back() {
        for (text, shown) in [
            ("90s", "90s"),
            ("90m", "90m"),
            ("24h", "1d"),
            ("30d", "30d"),
            ("14d", "2w"),
        ] {
            let span = Span::parse(text).expect(text);
            assert_eq!(span.to_string(), shown);
            assert_eq!(Span::parse(shown), Ok(span));
        }
    }

    #[test]
    fn utc_days_split_at_midnight() {
        let midnight = Timestamp::from_secs(86_400);
        assert_eq!(midnight.utc_day(), 1);
        assert_eq!(Timestamp::from_micros(midnight.as_micros() - 1).utc_day(), 0);
        assert_eq!(Timestamp::from_micros(-1).utc_day(), -1);
    }

    #[test]
    fn timestamps_print_as_rfc3339() {
        assert_eq!(Timestamp::from_secs(86_400).to_string(), "1970-01-02T00:00:00Z");
        assert_eq!(
            Timestamp::from_micros(1_500_000).to_string(),
            "1970-01-01T00:00:01.500Z"
        );
    }
}
