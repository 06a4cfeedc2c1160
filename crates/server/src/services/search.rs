//! `ListLeads` with a filter and an order: the request checked field by
//! field, and its page token.

use leadflow_engine::{
    AttributeFilter, AttributeMatch, LeadFilter, LeadOrder, LeadQuery, ScoreColumn, ScoreRange, ScoreRef,
    SearchCursor,
};
use leadflow_proto::v1 as pb;

use crate::convert::{stage_in, timestamp_in, token_in, token_out};
use crate::limits::{Check, MAX_ID_CHARS, MAX_NAME_CHARS, MAX_TEXT_CHARS};

/// Score ranges, attribute filters, at most.
const MAX_CONDITIONS: usize = 8;
/// Stages, levels, grades, attribute values, at most.
const MAX_CHOICES: usize = 100;
/// The page token's tag.
const TAG: &str = "ls";

/// Whether a request asks for more than the plain listing by id.
pub(crate) fn is_search(r: &pb::ListLeadsRequest) -> bool {
    r.filter.is_some()
        || r.order_by != pb::LeadOrder::Unspecified as i32
        || r.descending
        || r.order_score.is_some()
}

fn score_ref(check: &mut Check, field: &str, r: Option<&pb::ScoreRef>) -> ScoreRef {
    let (model, kind) = r.map_or((String::new(), 0), |r| (r.model.clone(), r.kind));
    check.text(&format!("{field}.model"), &model, MAX_NAME_CHARS, false);
    let column = match pb::ScoreKind::try_from(kind) {
        Ok(pb::ScoreKind::Fit) => ScoreColumn::Fit,
        Ok(pb::ScoreKind::Engagement) => ScoreColumn::Engagement,
        Ok(pb::ScoreKind::QualifyingEngagement | pb::ScoreKind::Unspecified) => ScoreColumn::Qualifying,
        Err(_) => {
            check.fail(format!("{field}.kind"), format!("{kind} is not a score kind"));
            ScoreColumn::Qualifying
        }
    };
    ScoreRef {
        model: (!model.is_empty()).then_some(model),
        column,
    }
}

fn choices(check: &mut Check, field: &str, values: &[String], max_chars: usize) -> Vec<String> {
    if values.len() > MAX_CHOICES {
        check.fail(field, format!("at most {MAX_CHOICES} values"));
        return Vec::new();
    }
    for (i, v) in values.iter().enumerate() {
        check.text(&format!("{field}[{i}]"), v, max_chars, false);
    }
    values.to_vec()
}

fn time_range(
    check: &mut Check,
    field: &str,
    r: Option<&pb::TimeRange>,
) -> (
    Option<leadflow_domain::Timestamp>,
    Option<leadflow_domain::Timestamp>,
) {
    let Some(r) = r else { return (None, None) };
    let start = timestamp_in(check, &format!("{field}.start"), r.start.as_ref());
    let end = timestamp_in(check, &format!("{field}.end"), r.end.as_ref());
    if let (Some(s), Some(e)) = (start, end)
        && e <= s
    {
        check.fail(
            format!("{field}.end"),
            "the range is empty or reversed: end must be after start",
        );
    }
    (start, end)
}

fn filter_in(check: &mut Check, stage: i32, f: Option<&pb::LeadFilter>) -> LeadFilter {
    let mut out = LeadFilter::default();
    out.stages.extend(stage_in(check, "stage", stage));
    let Some(f) = f else { return out };
    if f.stages.len() > MAX_CHOICES {
        check.fail("filter.stages", format!("at most {MAX_CHOICES} stages"));
    }
    for (i, s) in f.stages.iter().enumerate().take(MAX_CHOICES) {
        match stage_in(check, &format!("filter.stages[{i}]"), *s) {
            Some(stage) => out.stages.push(stage),
            None if *s == pb::Stage::Unspecified as i32 => {
                check.fail(format!("filter.stages[{i}]"), "a stage is required");
            }
            None => {}
        }
    }
    if stage != pb::Stage::Unspecified as i32 && !f.stages.is_empty() {
        check.fail("stage", "give the stages in filter.stages, or stage alone");
    }
    out.levels = choices(check, "filter.levels", &f.levels, MAX_NAME_CHARS);
    out.grades = choices(check, "filter.grades", &f.grades, MAX_NAME_CHARS);
    if f.scores.len() > MAX_CONDITIONS {
        check.fail("filter.scores", format!("at most {MAX_CONDITIONS} score ranges"));
    }
    for (i, s) in f.scores.iter().enumerate().take(MAX_CONDITIONS) {
        let field = format!("filter.scores[{i}]");
        let score = score_ref(check, &format!("{field}.score"), s.score.as_ref());
        for (key, bound) in [("at_least", s.at_least), ("at_most", s.at_most)] {
            if bound.is_some_and(|b| !b.is_finite()) {
                check.fail(format!("{field}.{key}"), "not a finite number");
            }
        }
        match (s.at_least, s.at_most) {
            (None, None) => check.fail(field.clone(), "needs at_least, at_most or both"),
            (Some(lo), Some(hi)) if lo > hi => {
                check.fail(format!("{field}.at_most"), format!("{hi} is below at_least {lo}"));
            }
            _ => {}
        }
        out.scores.push(ScoreRange {
            score,
            at_least: s.at_least,
            at_most: s.at_most,
        });
    }
    if f.attributes.len() > MAX_CONDITIONS {
        check.fail(
            "filter.attributes",
            format!("at most {MAX_CONDITIONS} attribute filters"),
        );
    }
    for (i, a) in f.attributes.iter().enumerate().take(MAX_CONDITIONS) {
        let field = format!("filter.attributes[{i}]");
        check.text(&format!("{field}.attribute"), &a.attribute, MAX_NAME_CHARS, true);
        let matches = match &a.r#match {
            None => {
                check.fail(field.clone(), "needs equals, one_of or prefix");
                continue;
            }
            Some(pb::attribute_filter::Match::Equals(v)) => {
                check.text(&format!("{field}.equals"), v, MAX_TEXT_CHARS, false);
                AttributeMatch::Equals(v.clone())
            }
            Some(pb::attribute_filter::Match::Prefix(v)) => {
                check.text(&format!("{field}.prefix"), v, MAX_TEXT_CHARS, true);
                AttributeMatch::Prefix(v.clone())
            }
            Some(pb::attribute_filter::Match::OneOf(list)) => {
                if list.values.is_empty() {
                    check.fail(format!("{field}.one_of"), "needs at least one value");
                }
                AttributeMatch::OneOf(choices(
                    check,
                    &format!("{field}.one_of.values"),
                    &list.values,
                    MAX_TEXT_CHARS,
                ))
            }
        };
        out.attributes.push(AttributeFilter {
            attribute: a.attribute.clone(),
            matches,
        });
    }
    out.captured = time_range(check, "filter.captured", f.captured.as_ref());
    out.entered_stage = time_range(check, "filter.entered_stage", f.entered_stage.as_ref());
    out.owners = choices(check, "filter.owner_ids", &f.owner_ids, MAX_ID_CHARS);
    for (i, o) in out.owners.iter().enumerate() {
        if o.trim().is_empty() {
            check.fail(format!("filter.owner_ids[{i}]"), "empty");
        }
    }
    if f.unassigned && !f.owner_ids.is_empty() {
        check.fail(
            "filter.unassigned",
            "given with owner_ids: a lead has an owner or none",
        );
    }
    out.unassigned = f.unassigned;
    out
}

/// What a page token is tied to: the order (and its score), the direction.
fn order_code(order: &LeadOrder, descending: bool) -> String {
    let order = match order {
        LeadOrder::Id => "id".to_owned(),
        LeadOrder::Score(s) => format!(
            "score/{}/{}",
            s.model.as_deref().unwrap_or(""),
            match s.column {
                ScoreColumn::Fit => "fit",
                ScoreColumn::Engagement => "engagement",
                ScoreColumn::Qualifying => "qualifying",
            }
        ),
        LeadOrder::EnteredStage => "entered".to_owned(),
        LeadOrder::Captured => "captured".to_owned(),
    };
    format!("{order}/{}", if descending { "desc" } else { "asc" })
}

/// The next page's token.
pub(crate) fn token(query: &LeadQuery, cursor: &SearchCursor) -> String {
    let value = cursor.value.map_or_else(String::new, |v| format!("{v:e}"));
    token_out(
        TAG,
        &format!(
            "{}|{value}|{}",
            order_code(&query.order, query.descending),
            cursor.id
        ),
    )
}

/// A checked `ListLeadsRequest` with a filter or an order.
pub(crate) fn query_in(check: &mut Check, r: &pb::ListLeadsRequest, page_size: u64) -> LeadQuery {
    let filter = filter_in(check, r.stage, r.filter.as_ref());
    let order = match pb::LeadOrder::try_from(r.order_by) {
        Ok(pb::LeadOrder::Unspecified) => LeadOrder::Id,
        Ok(pb::LeadOrder::Score) => LeadOrder::Score(score_ref(check, "order_score", r.order_score.as_ref())),
        Ok(pb::LeadOrder::EnteredStage) => LeadOrder::EnteredStage,
        Ok(pb::LeadOrder::Captured) => LeadOrder::Captured,
        Err(_) => {
            check.fail("order_by", format!("{} is not an order", r.order_by));
            LeadOrder::Id
        }
    };
    if r.order_score.is_some() && !matches!(order, LeadOrder::Score(_)) {
        check.fail("order_score", "only with order_by LEAD_ORDER_SCORE");
    }
    let mut query = LeadQuery {
        filter,
        order,
        descending: r.descending,
        after: None,
        page_size,
    };
    if let Some(text) = token_in(check, TAG, &r.page_token) {
        let code = order_code(&query.order, query.descending);
        let parsed = text.split_once('|').and_then(|(c, rest)| {
            let (value, id) = rest.split_once('|')?;
            let value = if value.is_empty() {
                // only a score order has leads without a value (no key)
                matches!(query.order, LeadOrder::Id | LeadOrder::Score(_)).then_some(None)?
            } else {
                Some(value.parse::<f64>().ok().filter(|v| v.is_finite())?)
            };
            (c == code && !id.is_empty()).then(|| SearchCursor {
                value,
                id: id.to_owned(),
            })
        });
        match parsed {
            Some(cursor) => query.after = Some(cursor),
            None => check.fail(
                "page_token",
                "not a page token of this order: pass next_page_token back with the same order_by, order_score and descending",
            ),
        }
    }
    query
}
