//! The dashboard's filters — a period of UTC days, a source channel, the
//! velocity's bucket — as a funnel query, or what is wrong with them.
//! `leadflow funnel` reads its `--from`/`--to` the same way.

use leadflow_domain::Timestamp;
use leadflow_domain::analytics::Attribution;
use leadflow_domain::analytics::funnel::{Bucket, Grouping, Period, Query as FunnelQuery};
use leadflow_domain::time::Span;
use serde::Deserialize;

/// The default period: the last 30 days.
const DEFAULT_DAYS: i64 = 30;
/// A period longer than this is refused (the page would not be read).
const MAX_DAYS: i64 = 3_660;

/// The dashboard's filters, as the form sends them.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct Filters {
    /// First day, `YYYY-MM-DD` (UTC).
    from: Option<String>,
    /// Day after the last, `YYYY-MM-DD` (UTC): the period is [from, to).
    to: Option<String>,
    /// Only leads whose first engagement came on this channel.
    channel: Option<String>,
    /// `day` or `week`; by default a day up to 92 days.
    bucket: Option<String>,
    /// Attribution: the top groups by this (`touched:utm_campaign`).
    by: Option<String>,
}

impl Filters {
    pub(crate) fn new(from: Option<String>, to: Option<String>, channel: Option<String>) -> Self {
        Self {
            from,
            to,
            channel,
            bucket: None,
            by: None,
        }
    }

    /// The attribution asked for (`by`), or what is wrong with it.
    pub(crate) fn attribution(&self) -> Result<Option<Attribution>, String> {
        let Some(by) = self.by.as_deref().map(str::trim).filter(|b| !b.is_empty()) else {
            return Ok(None);
        };
        if by.chars().count() > 200 {
            return Err("by: longer than 200 characters".to_owned());
        }
        by.parse().map(Some).map_err(|e| format!("by: {e}"))
    }
}

fn day_start(text: &str, field: &str) -> Result<Timestamp, String> {
    let date = chrono::NaiveDate::parse_from_str(text.trim(), "%Y-%m-%d")
        .map_err(|_| format!("{field}: {text:?} is not a date (YYYY-MM-DD)"))?;
    let midnight = date
        .and_hms_opt(0, 0, 0)
        .ok_or_else(|| format!("{field}: {text:?} is not a date"))?
        .and_utc();
    Ok(Timestamp::from_micros(midnight.timestamp_micros()))
}

/// The filters as a funnel query, or what is wrong with them, naming the
/// field.
pub(crate) fn query_of(filters: &Filters, now: Timestamp) -> Result<FunnelQuery, String> {
    let day = Span::from_days(1).as_micros();
    let tomorrow = Timestamp::from_micros((now.as_micros().div_euclid(day) + 1) * day);
    let end = match filters.to.as_deref().filter(|s| !s.is_empty()) {
        Some(text) => day_start(text, "to")?,
        None => tomorrow,
    };
    let start = match filters.from.as_deref().filter(|s| !s.is_empty()) {
        Some(text) => day_start(text, "from")?,
        None => end.saturating_sub(Span::from_days(DEFAULT_DAYS)),
    };
    if end <= start {
        return Err("to: the period is empty or reversed: 'to' must be after 'from'".to_owned());
    }
    if end.since(start) > Span::from_days(MAX_DAYS) {
        return Err(format!("the period is longer than {MAX_DAYS} days"));
    }
    let bucket = match filters.bucket.as_deref().unwrap_or("") {
        "day" => Bucket::Day,
        "week" => Bucket::Week,
        "" if end.since(start) <= Span::from_days(92) => Bucket::Day,
        "" => Bucket::Week,
        other => return Err(format!("bucket: {other:?} is neither day nor week")),
    };
    if bucket == Bucket::Day && end.since(start) > Span::from_days(1_000) {
        return Err("bucket: more than 1000 days: use week".to_owned());
    }
    let channel = filters
        .channel
        .as_deref()
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .map(str::to_owned);
    if channel.as_ref().is_some_and(|c| c.chars().count() > 128) {
        return Err("channel: longer than 128 characters".to_owned());
    }
    Ok(FunnelQuery {
        period: Period { start, end },
        grouping: Grouping::None,
        bucket,
        source_channel: channel,
        attribution: None,
        top: leadflow_domain::analytics::attribution::DEFAULT_TOP,
        teams: std::collections::BTreeMap::new(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::present::date;

    #[test]
    fn filters_become_a_query_or_a_reason() {
        let now = Timestamp::from_secs(1_790_812_800 + 3_600); // 2026-10-01T01:00Z
        let q = query_of(&Filters::default(), now).expect("defaults");
        assert_eq!(date(q.period.end), "2026-10-02");
        assert_eq!(date(q.period.start), "2026-09-02");
        assert_eq!(q.bucket, Bucket::Day);
        let f = |from: &str, to: &str| Filters {
            from: Some(from.to_owned()),
            to: Some(to.to_owned()),
            ..Filters::default()
        };
        assert!(query_of(&f("2026-10-05", "2026-10-05"), now).is_err());
        assert!(query_of(&f("2026-10-05", "2026-10-01"), now).is_err());
        assert!(query_of(&f("yesterday", "2026-10-01"), now).is_err());
        let long = query_of(&f("2025-01-01", "2026-01-01"), now).expect("a year");
        assert_eq!(long.bucket, Bucket::Week);
        let bad_bucket = Filters {
            bucket: Some("month".to_owned()),
            ..Filters::default()
        };
        assert!(query_of(&bad_bucket, now).is_err());
    }
}
