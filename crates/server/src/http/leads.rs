//! The dashboard's lead search: the page's filters as a `ListLeads`
//! search, or what is wrong with them.

use leadflow_domain::Stage;
use leadflow_engine::{
    AttributeFilter, AttributeMatch, LeadFilter, LeadOrder, LeadQuery, ScoreColumn, ScoreRange, ScoreRef,
    SearchCursor,
};
use serde::Deserialize;

/// Leads on a page.
pub(super) const PAGE: u64 = 50;

/// The search form, as it sends its fields (every one optional).
#[derive(Debug, Default, Deserialize)]
pub(crate) struct SearchForm {
    pub(super) stage: Option<String>,
    pub(super) level: Option<String>,
    pub(super) grade: Option<String>,
    /// A `[[model]]` id; empty: the default model.
    pub(super) model: Option<String>,
    /// `qualifying` (default), `engagement` or `fit`.
    pub(super) score: Option<String>,
    pub(super) min: Option<String>,
    pub(super) max: Option<String>,
    /// `score` (default, highest first), `entered` or `captured` (latest first).
    pub(super) order: Option<String>,
    /// A profile attribute, and what it `equals` or starts with (`prefix`).
    pub(super) attribute: Option<String>,
    pub(super) equals: Option<String>,
    pub(super) prefix: Option<String>,
    /// Captured, and entered the stage, from and before these days
    /// (`YYYY-MM-DD`, UTC).
    pub(super) captured_from: Option<String>,
    pub(super) captured_to: Option<String>,
    pub(super) entered_from: Option<String>,
    pub(super) entered_to: Option<String>,
    /// Where the page starts: the previous page's last lead (`value|id`).
    pub(super) after: Option<String>,
}

fn given(field: &Option<String>) -> Option<&str> {
    field.as_deref().map(str::trim).filter(|s| !s.is_empty())
}

fn bound(name: &str, field: &Option<String>) -> Result<Option<f64>, String> {
    given(field)
        .map(|text| {
            text.parse::<f64>()
                .ok()
                .filter(|n| n.is_finite())
                .ok_or_else(|| format!("{name}: {text:?} is not a number"))
        })
        .transpose()
}

impl SearchForm {
    /// The search the form asks for, or what is wrong with it (naming the field).
    pub(super) fn query(&self) -> Result<LeadQuery, String> {
        let too_long = [
            &self.stage,
            &self.level,
            &self.grade,
            &self.model,
            &self.after,
            &self.attribute,
            &self.equals,
            &self.prefix,
        ]
        .iter()
        .any(|f| f.as_deref().is_some_and(|t| t.chars().count() > 200));
        if too_long {
            return Err("a field is longer than 200 characters".to_owned());
        }
        let mut filter = LeadFilter::default();
        if let Some(stage) = given(&self.stage) {
            filter
                .stages
                .push(stage.parse::<Stage>().map_err(|e| format!("stage: {e}"))?);
        }
        if let Some(level) = given(&self.level) {
            filter.levels.push(if level == "none" {
                String::new()
            } else {
                level.to_owned()
            });
        }
        if let Some(grade) = given(&self.grade) {
            filter.grades.push(grade.to_owned());
        }
        let score = ScoreRef {
            model: given(&self.model).map(str::to_owned),
            column: match given(&self.score).unwrap_or("qualifying") {
                "qualifying" => ScoreColumn::Qualifying,
                "engagement" => ScoreColumn::Engagement,
                "fit" => ScoreColumn::Fit,
                other => return Err(format!("score: {other:?} is not qualifying, engagement or fit")),
            },
        };
        let (min, max) = (bound("min", &self.min)?, bound("max", &self.max)?);
        if let (Some(lo), Some(hi)) = (min, max)
            && lo > hi
        {
            return Err(format!("max: {hi} is below min {lo}"));
        }
        if min.is_some() || max.is_some() {
            filter.scores.push(ScoreRange {
                score: score.clone(),
                at_least: min,
                at_most: max,
            });
        }
        match (given(&self.attribute), given(&self.equals), given(&self.prefix)) {
            (None, None, None) => {}
            (Some(attribute), Some(value), None) => filter.attributes.push(AttributeFilter {
                attribute: attribute.to_owned(),
                matches: AttributeMatch::Equals(value.to_owned()),
            }),
            (Some(attribute), None, Some(prefix)) => filter.attributes.push(AttributeFilter {
                attribute: attribute.to_owned(),
                matches: AttributeMatch::Prefix(prefix.to_owned()),
            }),
            (None, ..) => return Err("attribute: name the attribute to compare".to_owned()),
            (Some(_), None, None) => {
                return Err("equals: give what the attribute equals, or a prefix".to_owned());
            }
            (Some(_), Some(_), Some(_)) => return Err("prefix: give equals or prefix, not both".to_owned()),
        }
        filter.captured = (
            day("captured_from", &self.captured_from)?,
            day("captured_to", &self.captured_to)?,
        );
        filter.entered_stage = (
            day("entered_from", &self.entered_from)?,
            day("entered_to", &self.entered_to)?,
        );
        for (name, (start, end)) in [
            ("captured_to", filter.captured),
            ("entered_to", filter.entered_stage),
        ] {
            if let (Some(s), Some(e)) = (start, end)
                && e <= s
            {
                return Err(format!("{name}: the range is empty or reversed"));
            }
        }
        let order = match given(&self.order).unwrap_or("score") {
            "score" => LeadOrder::Score(score),
            "entered" => LeadOrder::EnteredStage,
            "captured" => LeadOrder::Captured,
            other => return Err(format!("order: {other:?} is not score, entered or captured")),
        };
        let after = match given(&self.after) {
            None => None,
            Some(text) => {
                let (value, id) = text.split_once('|').ok_or("after: not a page of this search")?;
                let value = match value {
                    "" => None,
                    v => Some(
                        v.parse::<f64>()
                            .ok()
                            .filter(|n| n.is_finite())
                            .ok_or("after: not a page of this search")?,
                    ),
                };
                Some(SearchCursor {
                    value,
                    id: id.to_owned(),
                })
            }
        };
        Ok(LeadQuery {
            filter,
            order,
            descending: true,
            after,
            page_size: PAGE,
        })
    }
}

/// A day's start (UTC), from `YYYY-MM-DD`.
fn day(name: &str, field: &Option<String>) -> Result<Option<leadflow_domain::Timestamp>, String> {
    given(field)
        .map(|text| {
            chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d")
                .ok()
                .and_then(|d| d.and_hms_opt(0, 0, 0))
                .map(|t| leadflow_domain::Timestamp::from_micros(t.and_utc().timestamp_micros()))
                .ok_or_else(|| format!("{name}: {text:?} is not a date (YYYY-MM-DD)"))
        })
        .transpose()
}

/// The `after` of the page that follows one ending at `cursor`.
pub(super) fn after(cursor: &SearchCursor) -> String {
    format!(
        "{}|{}",
        cursor.value.map_or_else(String::new, |v| format!("{v:e}")),
        cursor.id
    )
}
