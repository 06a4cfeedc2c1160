//! How the funnel's numbers read to a person, wherever they are shown: the
//! dashboard and `leadflow funnel` print the same durations, shares and
//! dates, so a number copied from one is found in the other.
//!
//! Everything here returns plain text; whoever shows it escapes it for its
//! medium (the dashboard's templates do, a terminal needs no escaping).

use leadflow_domain::Timestamp;
use leadflow_domain::analytics::funnel::Period;
use leadflow_domain::time::Span;

/// What stands for a number that does not exist: the time to convert of a
/// cohort none converted, the precision of a cut-off no lead passes.
pub(crate) const NONE: &str = "–";

/// A duration in its two largest units, as people say it: `2d 3h`,
/// `4h 10m`, `45m`, `12s`; [`NONE`] for none. Two units, because a p90 of
/// `2d 3h 12m 5s` is read as "about two days" anyway and the columns stay
/// narrow; seconds are cut, not rounded, so `59m 59s` is never `60m`.
pub(crate) fn duration(span: Option<Span>) -> String {
    let Some(span) = span else {
        return NONE.to_owned();
    };
    let secs = span.as_micros() / 1_000_000;
    let (d, h, m) = (secs / 86_400, secs % 86_400 / 3_600, secs % 3_600 / 60);
    if d > 0 {
        format!("{d}d {h}h")
    } else if h > 0 {
        format!("{h}h {m}m")
    } else if m > 0 {
        format!("{m}m")
    } else {
        format!("{secs}s")
    }
}

/// A rate from 0 to 1 as a percentage with one decimal: `12.5%`, `100.0%`.
/// One decimal whatever the value, so a column of them lines up.
pub(crate) fn percent(rate: f64) -> String {
    format!("{:.1}%", rate * 100.0)
}

/// A percentage as short as it can be, for an axis's marks: `0%`, `25%`,
/// `100%` (and `12.5%` where a mark falls there).
pub(crate) fn round_percent(rate: f64) -> String {
    format!("{}%", rate * 100.0)
}

/// `2 of 4`: how many of how many, for the counts beside a rate. Counts
/// come as `u64` from the domain and as `i64` over the wire; either reads
/// the same.
pub(crate) fn part_of(part: impl Into<i128>, whole: impl Into<i128>) -> String {
    format!("{} of {}", part.into(), whole.into())
}

/// A rate with the counts it comes from: `50.0% (2 of 4)`.
pub(crate) fn share(rate: f64, part: impl Into<i128>, whole: impl Into<i128>) -> String {
    format!("{} ({})", percent(rate), part_of(part, whole))
}

/// A score (a cut-off, a peak of engagement) to one decimal at most:
/// `40`, `12.5`.
pub(crate) fn score(value: f64) -> String {
    format!("{}", (value * 10.0).round() / 10.0)
}

/// The UTC day of an instant: `2026-10-01`; empty for an instant no
/// calendar holds.
pub(crate) fn date(t: Timestamp) -> String {
    t.to_chrono()
        .map(|d| d.format("%Y-%m-%d").to_string())
        .unwrap_or_default()
}

/// A period of whole days as people name it, by its first and its last
/// day: `2026-10-01 to 2026-10-20 (UTC)` for [2026-10-01, 2026-10-21).
pub(crate) fn days(period: Period) -> String {
    let last = period.end.saturating_sub(Span::from_micros(1));
    format!("{} to {} (UTC)", date(period.start), date(last))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spans_read_as_people_read_them() {
        assert_eq!(duration(None), "–");
        assert_eq!(duration(Some(Span::from_secs(0))), "0s");
        assert_eq!(duration(Some(Span::from_secs(12))), "12s");
        assert_eq!(duration(Some(Span::from_secs(2_700))), "45m");
        assert_eq!(duration(Some(Span::from_secs(3_599))), "59m");
        assert_eq!(
            duration(Some(Span::from_hours(4) + Span::from_secs(600))),
            "4h 10m"
        );
        assert_eq!(duration(Some(Span::from_hours(50))), "2d 2h");
        assert_eq!(duration(Some(Span::from_days(2))), "2d 0h");
    }

    #[test]
    fn rates_read_as_percentages() {
        assert_eq!(percent(0.125), "12.5%");
        assert_eq!(percent(1.0), "100.0%");
        assert_eq!(percent(2.0 / 3.0), "66.7%");
        assert_eq!(round_percent(0.25), "25%");
        assert_eq!(round_percent(0.0), "0%");
        assert_eq!(round_percent(1.0), "100%");
        assert_eq!(share(0.5, 2_u64, 4_u64), "50.0% (2 of 4)");
        assert_eq!(share(0.25, 1_i64, 4_i64), "25.0% (1 of 4)");
        assert_eq!(part_of(0_u64, 0_u64), "0 of 0");
    }

    #[test]
    fn scores_keep_one_decimal_at_most() {
        assert_eq!(score(40.0), "40");
        assert_eq!(score(12.5), "12.5");
        assert_eq!(score(12.34), "12.3");
        assert_eq!(score(0.0), "0");
    }

    #[test]
    fn periods_read_by_their_first_and_last_day() {
        let day = |n: i64| Timestamp::from_secs(1_790_812_800 + n * 86_400); // 2026-10-01 + n
        assert_eq!(date(day(0)), "2026-10-01");
        let period = Period {
            start: day(0),
            end: day(20),
        };
        assert_eq!(days(period), "2026-10-01 to 2026-10-20 (UTC)");
        let one = Period {
            start: day(3),
            end: day(4),
        };
        assert_eq!(days(one), "2026-10-04 to 2026-10-04 (UTC)");
    }
}
