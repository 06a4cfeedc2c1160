//! Lead search: `ListLeads` with a filter and an order. Scores are read at
//! the request's instant, as `GetLead` shows them: the store narrows the
//! leads by search-key ranges (index range scans), and each lead found is
//! checked here against its exact scores, its level and its profile.

use leadflow_domain::score::key_of_score;
use leadflow_domain::{FieldViolation, Policy, Stage, Timestamp};
use leadflow_store::{KeyRange, LeadSearch, ScoreColumn, SearchCursor, SearchOrder};

use crate::Engine;
use crate::error::EngineError;
use crate::leads::view;
use crate::views::LeadView;

/// At most this many leads are read for one page: a filter the store
/// cannot narrow (a profile attribute, a level) answers a shorter page and
/// a token to go on.
pub const MAX_SCANNED: usize = 5_000;

/// Which score of which model.
#[derive(Clone, Debug, PartialEq)]
pub struct ScoreRef {
    /// `None`: the default model.
    pub model: Option<String>,
    pub column: ScoreColumn,
}

/// A score between two values (both inclusive), compared as shown
/// (rounded to 6 decimals).
#[derive(Clone, Debug, PartialEq)]
pub struct ScoreRange {
    pub score: ScoreRef,
    pub at_least: Option<f64>,
    pub at_most: Option<f64>,
}

/// How a profile attribute is matched: trimmed, case-insensitively.
#[derive(Clone, Debug, PartialEq)]
pub enum AttributeMatch {
    Equals(String),
    OneOf(Vec<String>),
    Prefix(String),
}

#[derive(Clone, Debug, PartialEq)]
pub struct AttributeFilter {
    pub attribute: String,
    pub matches: AttributeMatch,
}

/// What `ListLeads` filters on; every part must hold.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct LeadFilter {
    pub stages: Vec<Stage>,
    /// Level ids; `""` is "no level".
    pub levels: Vec<String>,
    pub grades: Vec<String>,
    pub scores: Vec<ScoreRange>,
    pub attributes: Vec<AttributeFilter>,
    pub captured: (Option<Timestamp>, Option<Timestamp>),
    pub entered_stage: (Option<Timestamp>, Option<Timestamp>),
    /// Leads of any of these owners.
    pub owners: Vec<String>,
    /// Leads without an owner only.
    pub unassigned: bool,
}

#[derive(Clone, Debug, PartialEq)]
pub enum LeadOrder {
    Id,
    Score(ScoreRef),
    EnteredStage,
    Captured,
}

#[derive(Clone, Debug, PartialEq)]
pub struct LeadQuery {
    pub filter: LeadFilter,
    pub order: LeadOrder,
    pub descending: bool,
    pub after: Option<SearchCursor>,
    pub page_size: u64,
}

/// A page of a search, each lead with where a page after it starts, and
/// where the next page starts (`None`: there is none).
#[derive(Clone, Debug)]
pub struct SearchPage {
    pub leads: Vec<(LeadView, SearchCursor)>,
    pub next: Option<SearchCursor>,
}

/// Room around a key bound: keys are computed in floating point.
fn widened(key: f64, up: bool) -> f64 {
    let room = 1e-9 * key.abs().max(1.0);
    if up { key + room } else { key - room }
}

fn fold(text: &str) -> String {
    text.trim().to_lowercase()
}

impl AttributeMatch {
    fn holds(&self, value: Option<&str>) -> bool {
        let Some(value) = value.map(fold) else {
            return false;
        };
        match self {
            Self::Equals(v) => value == fold(v),
            Self::OneOf(vs) => vs.iter().any(|v| value == fold(v)),
            Self::Prefix(p) => value.starts_with(&fold(p)),
        }
    }
}

impl Engine {
    /// A page of the workspace's leads that `query` asks for.
    #[tracing::instrument(name = "engine.search_leads", skip_all)]
    pub async fn search_leads(&self, ws: &str, query: &LeadQuery) -> Result<SearchPage, EngineError> {
        let version = self
            .store
            .active_policy_version(ws)
            .await?
            .ok_or_else(|| EngineError::NotReady(format!("workspace {ws:?} has no active policy")))?;
        let policy = self.policy_of(ws, version).await?;
        let now = self.now();
        let filter = &query.filter;
        let mut violations = Vec::new();
        let mut model_of = |field: String, score: &ScoreRef| match &score.model {
            None => Some(0),
            Some(id) => {
                let found = policy.model_index(id);
                if found.is_none() {
                    let ids: Vec<&str> = policy.models.iter().map(|m| m.id.as_str()).collect();
                    violations.push(FieldViolation::new(
                        field,
                        format!(
                            "the active policy has no model {id:?} (models: {})",
                            ids.join(", ")
                        ),
                    ));
                }
                found
            }
        };
        let mut ranges = Vec::new();
        for (i, range) in filter.scores.iter().enumerate() {
            let Some(model) = model_of(format!("filter.scores[{i}].score.model"), &range.score) else {
                continue;
            };
            ranges.push(key_range(&policy, model, range, now));
        }
        let order = match &query.order {
            LeadOrder::Id => SearchOrder::Id,
            LeadOrder::Score(score) => {
                model_of("order_score.model".to_owned(), score);
                SearchOrder::Score {
                    model: stored_model(score),
                    column: score.column,
                }
            }
            LeadOrder::EnteredStage => SearchOrder::EnteredStage,
            LeadOrder::Captured => SearchOrder::Captured,
        };
        if !violations.is_empty() {
            return Err(EngineError::InvalidArgument {
                reason: "UNKNOWN_MODEL",
                violations,
            });
        }
        let page_size = usize::try_from(query.page_size).unwrap_or(usize::MAX);
        let mut search = LeadSearch {
            stages: filter.stages.clone(),
            grades: filter.grades.clone(),
            captured: micros(filter.captured),
            entered_stage: micros(filter.entered_stage),
            owners: filter.owners.clone(),
            unassigned: filter.unassigned,
            ranges,
            order,
            descending: query.descending,
            after: query.after.clone(),
            limit: query.page_size.clamp(50, 500) + 1,
        };
        let mut leads = Vec::new();
        let mut scanned = 0;
        loop {
            let found = self.store.search_leads(ws, &search).await?;
            let exhausted = (found.len() as u64) < search.limit;
            for f in found {
                scanned += 1;
                let cursor = f.cursor.clone();
                let lead_policy = self.policy_of(ws, f.record.policy_version).await?;
                let lead = LeadView::from(view(&lead_policy, f.record, now));
                if holds(filter, &lead) {
                    leads.push((lead, cursor.clone()));
                }
                search.after = Some(cursor);
                if leads.len() >= page_size || scanned >= MAX_SCANNED {
                    return Ok(SearchPage {
                        leads,
                        next: search.after,
                    });
                }
            }
            if exhausted {
                return Ok(SearchPage { leads, next: None });
            }
        }
    }
}

/// Whether a lead, as `GetLead` shows it now, passes the filter.
fn holds(filter: &LeadFilter, lead: &LeadView) -> bool {
    let scores = &lead.scores;
    let level = scores.level.as_deref().unwrap_or("");
    let value = |score: &ScoreRef| match stored_model(score) {
        None => Some(match score.column {
            ScoreColumn::Fit => scores.fit,
            ScoreColumn::Engagement => scores.engagement,
            ScoreColumn::Qualifying => scores.qualifying_engagement,
        }),
        Some(id) => scores.models.get(&id).map(|m| match score.column {
            ScoreColumn::Fit => m.fit,
            ScoreColumn::Engagement => m.engagement,
            ScoreColumn::Qualifying => m.qualifying_engagement,
        }),
    };
    (filter.levels.is_empty() || filter.levels.iter().any(|l| l == level))
        && filter.scores.iter().all(|range| {
            value(&range.score).is_some_and(|v| {
                range.at_least.is_none_or(|lo| v >= lo) && range.at_most.is_none_or(|hi| v <= hi)
            })
        })
        && filter
            .attributes
            .iter()
            .all(|a| a.matches.holds(lead.lead.profile.get(&a.attribute)))
}

/// The model as the store names it: `None` for the default.
fn stored_model(score: &ScoreRef) -> Option<String> {
    score
        .model
        .clone()
        .filter(|m| m != leadflow_domain::policy::DEFAULT_MODEL)
}

fn micros((start, end): (Option<Timestamp>, Option<Timestamp>)) -> (Option<i64>, Option<i64>) {
    (start.map(Timestamp::as_micros), end.map(Timestamp::as_micros))
}

/// A score range at `now` as a range of the stored values: a fit as it is,
/// an engagement score as its search keys, a little wider (the exact
/// check follows).
fn key_range(policy: &Policy, model: usize, range: &ScoreRange, now: Timestamp) -> KeyRange {
    // A lead whose latest engagement is a little ahead of this clock (at
    // most `MAX_FUTURE`) is shown at that instant: the bounds cover both.
    let later = now.saturating_add(leadflow_domain::lifecycle::MAX_FUTURE);
    let key = |x: f64, up: bool| match range.score.column {
        ScoreColumn::Fit => x,
        // a score shown as x is at least x − 5e-7 (rounding)
        _ => {
            let x = if up { x + 1e-6 } else { x - 1e-6 };
            let (a, b) = (
                key_of_score(policy, model, x, now),
                key_of_score(policy, model, x, later),
            );
            widened(if up { a.max(b) } else { a.min(b) }, up)
        }
    };
    KeyRange {
        model: stored_model(&range.score),
        column: range.score.column,
        at_least: range.at_least.map(|lo| key(lo, false)),
        at_most: range.at_most.map(|hi| key(hi, true)),
    }
}
