//! proto ↔ engine and domain types, at the edge: malformed input becomes
//! INVALID_ARGUMENT with the field's path and never reaches the engine.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use leadflow_domain::explain::{Explanation, FitContribution, NextStep, RuleContribution};
use leadflow_domain::lifecycle::{Cause, GuardCheck, Move, Scores};
use leadflow_domain::workflow::{LevelChange, SlaBreach, Trigger};
use leadflow_domain::{Engagement, Stage, Timestamp};
use leadflow_engine::{EngagementView, LeadKey, LeadView, PolicyVersion, TransitionView};
use leadflow_proto::v1 as pb;

use crate::limits::{Check, MAX_NAME_CHARS};

// ---- time -----------------------------------------------------------------

/// 0001-01-01 to 9999-12-31, as protobuf's Timestamp allows.
const MIN_SECONDS: i64 = -62_135_596_800;
const MAX_SECONDS: i64 = 253_402_300_799;

pub(crate) fn timestamp_in(
    check: &mut Check,
    field: &str,
    t: Option<&prost_types::Timestamp>,
) -> Option<Timestamp> {
    let t = t?;
    if !(0..1_000_000_000).contains(&t.nanos) || !(MIN_SECONDS..=MAX_SECONDS).contains(&t.seconds) {
        check.fail(field, "not a valid timestamp");
        return None;
    }
    // Kept to the microsecond, truncated.
    Some(Timestamp::from_micros(
        t.seconds * 1_000_000 + i64::from(t.nanos / 1_000),
    ))
}

pub(crate) fn timestamp_out(t: Timestamp) -> prost_types::Timestamp {
    let micros = t.as_micros();
    prost_types::Timestamp {
        seconds: micros.div_euclid(1_000_000),
        nanos: i32::try_from(micros.rem_euclid(1_000_000) * 1_000).unwrap_or(0),
    }
}

// ---- enums ----------------------------------------------------------------

pub(crate) fn stage_out(stage: Stage) -> pb::Stage {
    match stage {
        Stage::Iql => pb::Stage::Iql,
        Stage::Mql => pb::Stage::Mql,
        Stage::Sql => pb::Stage::Sql,
        Stage::Customer => pb::Stage::Customer,
        Stage::Disqualified => pb::Stage::Disqualified,
        Stage::Merged => pb::Stage::Merged,
    }
}

/// `None` for unspecified; a violation for a number outside the enum.
pub(crate) fn stage_in(check: &mut Check, field: &str, value: i32) -> Option<Stage> {
    match pb::Stage::try_from(value) {
        Ok(pb::Stage::Unspecified) => None,
        Ok(pb::Stage::Iql) => Some(Stage::Iql),
        Ok(pb::Stage::Mql) => Some(Stage::Mql),
        Ok(pb::Stage::Sql) => Some(Stage::Sql),
        Ok(pb::Stage::Customer) => Some(Stage::Customer),
        Ok(pb::Stage::Disqualified) => Some(Stage::Disqualified),
        Ok(pb::Stage::Merged) => Some(Stage::Merged),
        Err(_) => {
            check.fail(field, format!("{value} is not a stage"));
            None
        }
    }
}

pub(crate) fn move_out(by: Move) -> pb::Move {
    match by {
        Move::Capture => pb::Move::Capture,
        Move::Promote => pb::Move::Promote,
        Move::Accept => pb::Move::Accept,
        Move::Reject => pb::Move::Reject,
        Move::Recycle => pb::Move::Recycle,
        Move::Convert => pb::Move::Convert,
        Move::Disqualify => pb::Move::Disqualify,
        Move::Requalify => pb::Move::Requalify,
        Move::AutoQualify => pb::Move::AutoQualify,
        Move::SalesReady => pb::Move::SalesReady,
        Move::AutoDisqualify => pb::Move::AutoDisqualify,
        Move::SlaRecycle => pb::Move::SlaRecycle,
        Move::Merge => pb::Move::Merge,
        Move::MergedInto => pb::Move::MergedInto,
        Move::Unmerge => pb::Move::Unmerge,
    }
}

fn cause_out(cause: &Cause) -> (pb::Cause, String) {
    match cause {
        Cause::Capture => (pb::Cause::Capture, String::new()),
        Cause::Engagement { event_id } => (pb::Cause::Engagement, event_id.clone()),
        Cause::ProfileUpdate => (pb::Cause::ProfileUpdate, String::new()),
        Cause::Manual => (pb::Cause::Manual, String::new()),
        Cause::Timer { key } => (pb::Cause::Timer, key.clone()),
        Cause::PolicyChange => (pb::Cause::PolicyChange, String::new()),
        Cause::Decay => (pb::Cause::Decay, String::new()),
        Cause::Identify { anonymous_id } => (pb::Cause::Identify, anonymous_id.clone()),
        Cause::Merge { lead_id } => (pb::Cause::Merge, lead_id.clone()),
        Cause::Unmerge { lead_id } => (pb::Cause::Unmerge, lead_id.clone()),
    }
}

// ---- leads ----------------------------------------------------------------

/// A required lead reference.
pub(crate) fn lead_key(check: &mut Check, field: &str, lead: Option<&pb::LeadRef>) -> Option<LeadKey> {
    let key = match lead.and_then(|l| l.key.as_ref()) {
        None => {
            check.fail(field, "required: an id, an external_key or an anonymous_id");
            return None;
        }
        Some(pb::lead_ref::Key::Id(id)) => LeadKey::Id(check.key(&format!("{field}.id"), id, true)),
        Some(pb::lead_ref::Key::ExternalKey(k)) => {
            LeadKey::ExternalKey(check.key(&format!("{field}.external_key"), k, true))
        }
        Some(pb::lead_ref::Key::AnonymousId(a)) => {
            LeadKey::Anonymous(check.key(&format!("{field}.anonymous_id"), a, true))
        }
    };
    Some(key)
}

pub(crate) fn scores_out(scores: &Scores, at: Timestamp) -> pb::Scores {
    pb::Scores {
        fit: scores.fit,
        grade: scores.grade.clone(),
        engagement: scores.engagement,
        qualifying_engagement: scores.qualifying_engagement,
        as_of: Some(timestamp_out(at)),
        level: scores.level.clone().unwrap_or_default(),
        models: scores
            .models
            .iter()
            .map(|(id, m)| {
                let scores = pb::ModelScores {
                    fit: m.fit,
                    engagement: m.engagement,
                    qualifying_engagement: m.qualifying_engagement,
                };
                (id.clone(), scores)
            })
            .collect(),
    }
}

pub(crate) fn lead_out(view: &LeadView) -> pb::Lead {
    let lead = &view.lead;
    pb::Lead {
        id: view.id.clone(),
        external_key: view.external_key.clone().unwrap_or_default(),
        stage: stage_out(lead.stage).into(),
        version: view.version,
        profile: lead.profile.as_map().clone(),
        scores: Some(scores_out(&view.scores, view.scored_at)),
        captured_at: Some(timestamp_out(lead.captured_at)),
        entered_stage_at: Some(timestamp_out(lead.entered_stage_at)),
        updated_at: Some(timestamp_out(view.updated_at)),
        policy_version: view.policy_version,
        qualifying_since: lead.window_start.map(timestamp_out),
        last_engagement_at: lead.last_engagement_at().map(timestamp_out),
        owner_id: view.owner.clone().unwrap_or_default(),
    }
}

pub(crate) fn assignment_cause_out(cause: &str) -> pb::AssignmentCause {
    match cause {
        "ROUTE" => pb::AssignmentCause::Route,
        "MANUAL" => pb::AssignmentCause::Manual,
        "RELEASE" => pb::AssignmentCause::Release,
        "MERGE" => pb::AssignmentCause::Merge,
        "SLA" => pb::AssignmentCause::Sla,
        _ => pb::AssignmentCause::Unspecified,
    }
}

pub(crate) fn assignment_out(a: &leadflow_engine::AssignmentRecord) -> pb::Assignment {
    pb::Assignment {
        from_owner: a.from.clone().unwrap_or_default(),
        to_owner: a.to.clone().unwrap_or_default(),
        cause: assignment_cause_out(&a.cause).into(),
        route_id: a.route_id.clone().unwrap_or_default(),
        explanation: a.explanation.clone(),
        reason: a.reason.clone().unwrap_or_default(),
        at: Some(timestamp_out(a.at)),
        stage: stage_out(a.stage).into(),
        principal: a.principal.clone().unwrap_or_default(),
    }
}

pub(crate) fn guard_out(g: &GuardCheck) -> pb::GuardCheck {
    pb::GuardCheck {
        guard: g.guard.as_str().to_owned(),
        passed: g.passed,
        detail: g.detail.clone(),
        actual: g.actual,
        required: g.required,
    }
}

pub(crate) fn transition_out(t: &TransitionView) -> pb::Transition {
    let r = &t.record;
    let (cause, cause_ref) = cause_out(&r.cause);
    pb::Transition {
        lead_id: t.lead_id.clone(),
        from_stage: r.from.map_or(pb::Stage::Unspecified, stage_out).into(),
        to_stage: stage_out(r.to).into(),
        occurred_at: Some(timestamp_out(r.at)),
        r#move: move_out(r.by).into(),
        cause: cause.into(),
        cause_ref,
        reason: r.reason.clone().unwrap_or_default(),
        actor: r.actor.clone().unwrap_or_default(),
        deal_value: r.deal.as_ref().map(|d| d.value),
        currency: r.deal.as_ref().map(|d| d.currency.clone()).unwrap_or_default(),
        fit: r.fit,
        engagement: r.engagement,
        guards: r.guards.iter().map(guard_out).collect(),
        policy_version: t.policy_version,
        sequence: t.seq,
        principal: t.principal.clone().unwrap_or_default(),
    }
}

pub(crate) fn trigger_out(t: &Trigger) -> pb::WorkflowTrigger {
    pb::WorkflowTrigger {
        workflow_id: t.workflow_id.clone(),
        emit: t.emit.clone(),
        on: t.on.clone(),
        occurred_at: Some(timestamp_out(t.at)),
        stage: stage_out(t.stage).into(),
        suppressed: t.suppressed,
    }
}

pub(crate) fn level_change_out(l: &LevelChange, lead_id: &str, policy_version: i64) -> pb::LevelChange {
    let (cause, cause_ref) = cause_out(&l.cause);
    pb::LevelChange {
        lead_id: lead_id.to_owned(),
        from_level: l.from.clone().unwrap_or_default(),
        to_level: l.to.clone().unwrap_or_default(),
        occurred_at: Some(timestamp_out(l.at)),
        stage: stage_out(l.stage).into(),
        cause: cause.into(),
        cause_ref,
        fit: l.fit,
        engagement: l.engagement,
        policy_version,
        sequence: i64::try_from(l.seq).unwrap_or(i64::MAX),
        suppressed: l.suppressed,
    }
}

pub(crate) fn sla_breach_out(b: &SlaBreach) -> pb::SlaBreach {
    pb::SlaBreach {
        sla_id: b.sla_id.clone(),
        stage: stage_out(b.stage).into(),
        occurred_at: Some(timestamp_out(b.at)),
        suppressed: b.suppressed,
    }
}

// ---- engagements ------------------------------------------------------------

/// A proto engagement, checked; `occurred_at` defaults to `now`. The flag
/// says whether the caller gave one.
pub(crate) fn engagement_in(
    check: &mut Check,
    field: &str,
    e: Option<&pb::Engagement>,
    now: Timestamp,
) -> Option<(Engagement, bool)> {
    let Some(e) = e else {
        check.fail(field, "required");
        return None;
    };
    let event_id = check.key(&format!("{field}.event_id"), &e.event_id, true);
    check.text(&format!("{field}.type"), &e.r#type, MAX_NAME_CHARS, true);
    check.text(&format!("{field}.channel"), &e.channel, MAX_NAME_CHARS, false);
    check.map(&format!("{field}.properties"), &e.properties);
    let occurred_at = timestamp_in(check, &format!("{field}.occurred_at"), e.occurred_at.as_ref());
    Some((
        Engagement {
            event_id,
            kind: e.r#type.clone(),
            channel: (!e.channel.trim().is_empty()).then(|| e.channel.clone()),
            properties: e.properties.clone(),
            occurred_at: occurred_at.unwrap_or(now),
        },
        occurred_at.is_some(),
    ))
}

pub(crate) fn engagement_out(e: &EngagementView) -> pb::Engagement {
    pb::Engagement {
        event_id: e.engagement.event_id.clone(),
        r#type: e.engagement.kind.clone(),
        channel: e.engagement.channel.clone().unwrap_or_default(),
        properties: e.engagement.properties.clone(),
        occurred_at: Some(timestamp_out(e.engagement.occurred_at)),
    }
}

// ---- explanations -----------------------------------------------------------

fn rules_out(rules: &[RuleContribution]) -> Vec<pb::RuleContribution> {
    rules
        .iter()
        .map(|r| pb::RuleContribution {
            rule_id: r.rule_id.clone(),
            matched: i64::from(r.matched),
            counted: i64::from(r.counted),
            raw_points: r.raw_points,
            decayed_points: r.decayed_points,
            cap_reached: r.cap_reached,
            undesirable: r.undesirable,
            disqualify: r.disqualify,
            at_count: i64::from(r.at_count),
            fired: i64::from(r.fired),
            pending: i64::from(r.pending),
            model: r.model.clone().unwrap_or_default(),
        })
        .collect()
}

fn fit_out(f: &FitContribution) -> pb::FitContribution {
    pb::FitContribution {
        rule_id: f.rule_id.clone(),
        attribute: f.attribute.clone(),
        value: f.value.clone(),
        points: f.points,
        undesirable: f.undesirable,
        disqualify: f.disqualify,
        model: f.model.clone().unwrap_or_default(),
    }
}

fn next_out(n: &NextStep) -> pb::NextStep {
    pb::NextStep {
        r#move: move_out(n.by).into(),
        to_stage: stage_out(n.to).into(),
        passes: n.passes,
        guards: n.guards.iter().map(guard_out).collect(),
    }
}

pub(crate) fn explanation_out(view: &LeadView, x: &Explanation) -> pb::ExplainScoreResponse {
    pb::ExplainScoreResponse {
        lead_id: view.id.clone(),
        stage: stage_out(x.stage).into(),
        scores: Some(scores_out(&x.scores, x.at)),
        policy_version: view.policy_version,
        fit: x.fit.iter().map(fit_out).collect(),
        engagement: rules_out(&x.engagement),
        qualifying: rules_out(&x.qualifying),
        qualifying_since: x.qualifying_since.map(timestamp_out),
        next: x.next.iter().map(next_out).collect(),
        next_level: x.next_level.as_ref().map(|l| pb::NextLevel {
            id: l.id.clone(),
            guards: l.guards.iter().map(guard_out).collect(),
        }),
    }
}

// ---- policies -----------------------------------------------------------------

pub(crate) fn policy_out(p: &PolicyVersion) -> pb::PolicyVersion {
    pb::PolicyVersion {
        version: p.version,
        name: p.name.clone(),
        description: p.description.clone(),
        source: p.source.clone(),
        checksum: p.checksum.clone(),
        created_at: Some(timestamp_out(p.created_at)),
        active: p.active,
        activated_at: p.activated_at.map(timestamp_out),
        created_by: p.created_by.clone().unwrap_or_default(),
        activated_by: p.activated_by.clone().unwrap_or_default(),
    }
}

// ---- page tokens ------------------------------------------------------------------

/// An opaque page token around `value`, tagged so one list's token is
/// refused by another.
pub(crate) fn token_out(tag: &str, value: &str) -> String {
    URL_SAFE_NO_PAD.encode(format!("{tag}:{value}"))
}

pub(crate) fn token_in(check: &mut Check, tag: &str, token: &str) -> Option<String> {
    if token.is_empty() {
        return None;
    }
    let decoded = URL_SAFE_NO_PAD
        .decode(token)
        .ok()
        .and_then(|bytes| String::from_utf8(bytes).ok())
        .and_then(|text| text.strip_prefix(&format!("{tag}:")).map(str::to_owned));
    if decoded.is_none() {
        check.fail(
            "page_token",
            "not a page token of this list: pass next_page_token back unchanged",
        );
    }
    decoded
}
