//! `leadflow.v1.AnalyticsService`.

use leadflow_domain::Stage;
use leadflow_domain::analytics::attribution::{self, Attribution};
use leadflow_domain::analytics::evidence::{self, MAX_CUTOFFS, RuleKind, Tally};
use leadflow_domain::analytics::funnel::{self, Bucket, Grouping, Period, Query};
use leadflow_domain::lifecycle::has_score_threshold;
use leadflow_domain::time::Span;
use leadflow_engine::{CalibrationQuery, Engine};
use leadflow_proto::v1 as pb;
use tonic::{Request, Response, Status};

use crate::convert::{move_out, stage_out, timestamp_in, timestamp_out, token_in, token_out};
use crate::error::status;
use crate::limits::{Check, MAX_NAME_CHARS};

#[derive(Clone, Debug)]
pub struct AnalyticsApi {
    engine: Engine,
}

impl AnalyticsApi {
    pub fn new(engine: Engine) -> Self {
        Self { engine }
    }
}

/// Velocity buckets in one funnel, at most.
pub(crate) const MAX_BUCKETS: i64 = 1_000;
/// Funnel groups per page, at most.
pub(crate) const MAX_GROUPS_PAGE: u64 = 200;
/// Periods up to this many days get daily buckets unless asked otherwise.
const DAILY_UP_TO_DAYS: i64 = 92;

/// A period, checked: both ends, start before end.
pub(crate) fn period_in(check: &mut Check, field: &str, period: Option<&pb::Period>) -> Option<Period> {
    let Some(p) = period else {
        check.fail(field, "required");
        return None;
    };
    let start = timestamp_in(check, &format!("{field}.start"), p.start.as_ref());
    let end = timestamp_in(check, &format!("{field}.end"), p.end.as_ref());
    if p.start.is_none() {
        check.fail(format!("{field}.start"), "required");
    }
    if p.end.is_none() {
        check.fail(format!("{field}.end"), "required");
    }
    let (start, end) = (start?, end?);
    if end <= start {
        let what = if end == start { "empty" } else { "reversed" };
        check.fail(
            format!("{field}.end"),
            format!("the period is {what}: end must be after start"),
        );
        return None;
    }
    Some(Period { start, end })
}

pub(crate) fn period_out(p: Period) -> pb::Period {
    pb::Period {
        start: Some(timestamp_out(p.start)),
        end: Some(timestamp_out(p.end)),
    }
}

fn grouping_in(check: &mut Check, value: i32) -> Grouping {
    match pb::FunnelGrouping::try_from(value) {
        Ok(pb::FunnelGrouping::Unspecified) => Grouping::None,
        Ok(pb::FunnelGrouping::SourceChannel) => Grouping::SourceChannel,
        Ok(pb::FunnelGrouping::MqlChannel) => Grouping::MqlChannel,
        Ok(pb::FunnelGrouping::PolicyVersion) => Grouping::PolicyVersion,
        Ok(pb::FunnelGrouping::Owner) => Grouping::Owner,
        Ok(pb::FunnelGrouping::Team) => Grouping::Team,
        Err(_) => {
            check.fail("group_by", format!("unknown grouping {value}"));
            Grouping::None
        }
    }
}

fn bucket_in(check: &mut Check, value: i32, period: Option<Period>) -> Bucket {
    let length = period.map_or(Span::ZERO, |p| p.end.since(p.start));
    let bucket = match pb::VelocityBucket::try_from(value) {
        Ok(pb::VelocityBucket::Unspecified) if length <= Span::from_days(DAILY_UP_TO_DAYS) => Bucket::Day,
        Ok(pb::VelocityBucket::Unspecified | pb::VelocityBucket::Week) => Bucket::Week,
        Ok(pb::VelocityBucket::Day) => Bucket::Day,
        Err(_) => {
            check.fail("bucket", format!("unknown bucket {value}"));
            return Bucket::Day;
        }
    };
    let width = bucket.span().as_micros();
    let count = length.as_micros().div_euclid(width) + i64::from(length.as_micros() % width != 0);
    if count > MAX_BUCKETS {
        let field = if value == 0 { "period" } else { "bucket" };
        check.fail(
            field,
            format!("the period holds {count} buckets of this width; at most {MAX_BUCKETS}: widen the bucket or shorten the period"),
        );
    }
    bucket
}

fn bucket_out(b: Bucket) -> pb::VelocityBucket {
    match b {
        Bucket::Day => pb::VelocityBucket::Day,
        Bucket::Week => pb::VelocityBucket::Week,
    }
}

pub(crate) fn duration_out(span: Span) -> prost_types::Duration {
    let micros = span.as_micros();
    prost_types::Duration {
        seconds: micros.div_euclid(1_000_000),
        nanos: i32::try_from(micros.rem_euclid(1_000_000) * 1_000).unwrap_or(0),
    }
}

fn count(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

fn group_out(g: &funnel::Group, buckets: usize) -> pb::FunnelGroup {
    pb::FunnelGroup {
        key: g.key.clone(),
        entries: g
            .entries
            .iter()
            .map(|e| pb::StageEntries {
                stage: stage_out(e.stage).into(),
                leads: count(e.leads),
                entries: count(e.entries),
            })
            .collect(),
        conversions: g
            .conversions
            .iter()
            .map(|c| pb::Conversion {
                from: stage_out(c.from).into(),
                to: stage_out(c.to).into(),
                cohort: count(c.cohort),
                converted: count(c.converted),
                rate: c.rate,
                p50: c.p50.map(duration_out),
                p90: c.p90.map(duration_out),
                lift: c.lift,
            })
            .collect(),
        time_in_stage: g
            .time_in_stage
            .iter()
            .map(|t| pb::StageTime {
                stage: stage_out(t.stage).into(),
                stays: count(t.stays),
                p50: t.p50.map(duration_out),
                p90: t.p90.map(duration_out),
            })
            .collect(),
        velocity: leadflow_domain::Stage::LIFECYCLE
            .iter()
            .zip(g.velocity.series(buckets))
            .map(|(&stage, series)| pb::Velocity {
                stage: stage_out(stage).into(),
                entries: series.iter().map(|&n| count(n)).collect(),
            })
            .collect(),
        rejected: Some(rate_out(&g.rejected)),
        recycled: Some(rate_out(&g.recycled)),
        reasons: g
            .reasons
            .iter()
            .map(|r| pb::ReasonCount {
                r#move: move_out(r.by).into(),
                reason: r.reason.clone(),
                count: count(r.count),
            })
            .collect(),
        levels: g
            .levels
            .iter()
            .map(|l| pb::LevelConversion {
                level: l.level.clone(),
                leads: count(l.leads),
                to_sql: count(l.to_sql),
                rate: l.rate,
                p50: l.p50.map(duration_out),
                p90: l.p90.map(duration_out),
            })
            .collect(),
        handoff: g.handoff.as_ref().map(|h| pb::Handoff {
            display_name: h.display_name.clone(),
            assigned: count(h.assigned),
            sla_breaches: count(h.sla_breaches),
            sql: count(h.sql),
            touched: count(h.touched),
            first_touch_p50: h.first_touch_p50.map(duration_out),
            first_touch_p90: h.first_touch_p90.map(duration_out),
            converted: count(h.converted),
            conversion_rate: h.conversion_rate,
        }),
    }
}

fn rate_out(r: &funnel::Rate) -> pb::CohortRate {
    pb::CohortRate {
        cohort: count(r.cohort),
        count: count(r.count),
        rate: r.rate,
    }
}

/// A checked `GetFunnelRequest`: the query, the page size and the offset.
impl AnalyticsApi {
    /// `GetFunnel` of accounts: the period only.
    async fn account_funnel(
        &self,
        caller: &crate::auth::Principal,
        r: &pb::GetFunnelRequest,
    ) -> Result<Response<pb::GetFunnelResponse>, Status> {
        let mut check = Check::default();
        let period = period_in(&mut check, "period", r.period.as_ref());
        let bucket = bucket_in(&mut check, r.bucket, period);
        for (field, given) in [
            ("group_by", r.group_by != 0),
            ("group_by_property", !r.group_by_property.is_empty()),
            ("source_channel", !r.source_channel.is_empty()),
            ("page_token", !r.page_token.is_empty()),
        ] {
            if given {
                check.fail(
                    field,
                    "not with subject ACCOUNTS: the account funnel is one, ungrouped",
                );
            }
        }
        check.into_result()?;
        let period = period.ok_or_else(|| Status::internal("a checked period is missing"))?;
        let f = self
            .engine
            .account_funnel(&caller.workspace, period)
            .await
            .map_err(status)?;
        let stage =
            |s: leadflow_domain::AccountStage| -> i32 { super::accounts::account_stage_out(s).into() };
        let micros = |m: Option<i64>| m.map(|m| duration_out(Span::from_micros(m)));
        let count = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
        Ok(Response::new(pb::GetFunnelResponse {
            period: Some(period_out(period)),
            bucket: bucket_out(bucket).into(),
            account_funnel: Some(pb::AccountFunnel {
                entries: f
                    .entries
                    .iter()
                    .map(|e| pb::AccountStageEntries {
                        stage: stage(e.stage),
                        accounts: count(e.accounts),
                        entries: count(e.entries),
                    })
                    .collect(),
                conversions: f
                    .conversions
                    .iter()
                    .map(|c| pb::AccountConversion {
                        from: stage(c.from),
                        to: stage(c.to),
                        cohort: count(c.cohort),
                        converted: count(c.converted),
                        rate: c.rate,
                        p50: micros(c.p50),
                        p90: micros(c.p90),
                    })
                    .collect(),
                time_in_stage: f
                    .time_in_stage
                    .iter()
                    .map(|s| pb::AccountStageTime {
                        stage: stage(s.stage),
                        stays: count(s.stays),
                        p50: micros(s.p50),
                        p90: micros(s.p90),
                    })
                    .collect(),
                reasons: f
                    .reasons
                    .iter()
                    .map(|(by, reason, n)| pb::AccountReasonCount {
                        r#move: by.as_str().to_owned(),
                        reason: reason.clone(),
                        count: count(*n),
                    })
                    .collect(),
            }),
            ..Default::default()
        }))
    }
}

pub(crate) fn funnel_query(r: &pb::GetFunnelRequest) -> Result<(Query, usize, usize), Status> {
    let mut check = Check::default();
    let period = period_in(&mut check, "period", r.period.as_ref());
    let grouping = grouping_in(&mut check, r.group_by);
    let bucket = bucket_in(&mut check, r.bucket, period);
    check.text("source_channel", &r.source_channel, MAX_NAME_CHARS, false);
    let size = check.page_size_at_most("page_size", r.page_size, 50, MAX_GROUPS_PAGE);
    let attribution = attribution_in(&mut check, &r.group_by_property, r.top_groups);
    if attribution.is_some() && grouping != Grouping::None {
        check.fail(
            "group_by",
            "group by a property or by group_by, not both (leave group_by UNSPECIFIED)",
        );
    }
    let offset = match token_in(&mut check, "fg", &r.page_token).map(|t| t.parse::<usize>()) {
        Some(Ok(n)) => n,
        Some(Err(_)) => {
            check.fail("page_token", "not a page token of this list");
            0
        }
        None => 0,
    };
    check.into_result()?;
    let period = period.ok_or_else(|| Status::internal("a checked period is missing"))?;
    let query = Query {
        period,
        grouping,
        bucket,
        source_channel: (!r.source_channel.trim().is_empty()).then(|| r.source_channel.trim().to_owned()),
        top: top_groups(r.top_groups),
        attribution,
        teams: std::collections::BTreeMap::new(),
    };
    Ok((query, usize::try_from(size).unwrap_or(50), offset))
}

/// A checked `top_groups`: 0 is the default.
fn top_groups(top: i32) -> usize {
    usize::try_from(top)
        .ok()
        .filter(|n| *n > 0)
        .unwrap_or(attribution::DEFAULT_TOP)
}

/// A `group_by_property` (`first:`, `mql:` or `touched:` and a property)
/// with its `top_groups`; `None` when empty.
pub(crate) fn attribution_in(check: &mut Check, text: &str, top: i32) -> Option<Attribution> {
    if !(0..=i32::try_from(attribution::MAX_TOP).unwrap_or(100)).contains(&top) {
        check.fail(
            "top_groups",
            format!(
                "{top} is not from 1 to {} (0: {})",
                attribution::MAX_TOP,
                attribution::DEFAULT_TOP
            ),
        );
    }
    if text.is_empty() {
        if top != 0 {
            check.fail("top_groups", "only with group_by_property");
        }
        return None;
    }
    if text.chars().count() > 200 {
        check.fail("group_by_property", "longer than 200 characters");
        return None;
    }
    match text.parse::<Attribution>() {
        Ok(a) => Some(a),
        Err(e) => {
            check.fail("group_by_property", e);
            None
        }
    }
}

fn version_in(check: &mut Check, field: &str, version: i64) -> Option<i64> {
    if version < 0 {
        check.fail(
            field,
            format!("{version} is negative; 0 means the active version"),
        );
    }
    (version > 0).then_some(version)
}

fn tally_out(t: Tally) -> pb::OutcomeCounts {
    pb::OutcomeCounts {
        won: count(t.won),
        lost: count(t.lost),
        open: count(t.open),
    }
}

fn cut_out(p: &evidence::CutPoint) -> pb::CutPoint {
    pb::CutPoint {
        cutoff: p.cutoff,
        qualified: count(p.qualified),
        precision: p.precision,
        recall: p.recall,
        f1: p.f1,
    }
}

/// A checked `CalibrateThresholdRequest`.
pub(crate) fn calibration_query(r: &pb::CalibrateThresholdRequest) -> Result<CalibrationQuery, Status> {
    let mut check = Check::default();
    let thresholds = Stage::LIFECYCLE.into_iter().filter(|s| has_score_threshold(*s));
    match pb::Stage::try_from(r.stage) {
        Ok(pb::Stage::Unspecified) => {}
        Ok(stage) if thresholds.clone().any(|s| stage_out(s) == stage) => {}
        _ => {
            let names: Vec<&str> = thresholds.map(|s| stage_out(s).as_str_name()).collect();
            check.fail(
                "stage",
                format!("only {} has a score threshold to calibrate", names.join(", ")),
            );
        }
    }
    let period = period_in(&mut check, "period", r.period.as_ref());
    let policy_version = version_in(&mut check, "policy_version", r.policy_version);
    if let Some(p) = r.target_precision
        && !(p > 0.0 && p <= 1.0)
    {
        check.fail("target_precision", format!("{p} is not in (0, 1]"));
    }
    let step = r.step.unwrap_or(5.0);
    if !(step.is_finite() && step >= evidence::MIN_STEP) {
        check.fail(
            "step",
            format!("{step} is not a number at or above {}", evidence::MIN_STEP),
        );
    }
    if let Some(max) = r.max_cutoff {
        if !(max.is_finite() && max >= 0.0) {
            check.fail("max_cutoff", format!("{max} is not a number at or above 0"));
        } else if step.is_finite()
            && step > 0.0
            && max / step >= f64::from(u32::try_from(MAX_CUTOFFS).unwrap_or(500))
        {
            check.fail(
                "step",
                format!("{max} / {step} makes more than {MAX_CUTOFFS} cut-offs: take a larger step"),
            );
        }
    }
    check.text("model", &r.model, MAX_NAME_CHARS, false);
    check.text("level", &r.level, MAX_NAME_CHARS, false);
    check.into_result()?;
    Ok(CalibrationQuery {
        period: period.ok_or_else(|| Status::internal("a checked period is missing"))?,
        policy_version,
        target_precision: r.target_precision,
        model: (!r.model.is_empty()).then(|| r.model.clone()),
        level: (!r.level.is_empty()).then(|| r.level.clone()),
        step,
        max_cutoff: r.max_cutoff,
    })
}

#[tonic::async_trait]
impl pb::analytics_service_server::AnalyticsService for AnalyticsApi {
    type LearnPolicyStream = super::learn::LearnStream;

    async fn learn_policy(
        &self,
        request: Request<pb::LearnPolicyRequest>,
    ) -> Result<Response<Self::LearnPolicyStream>, Status> {
        let caller = crate::auth::caller(&request)?;
        let trace = crate::observe::traceparent_of(&request);
        let stream = super::learn::learn_policy(&self.engine, &caller, request.get_ref(), trace).await?;
        Ok(Response::new(stream))
    }

    async fn get_learn_report(
        &self,
        request: Request<pb::GetLearnReportRequest>,
    ) -> Result<Response<pb::GetLearnReportResponse>, Status> {
        let caller = crate::auth::caller(&request)?;
        Ok(Response::new(
            super::learn::learn_report(&self.engine, &caller, request.get_ref()).await?,
        ))
    }

    async fn get_rule_report(
        &self,
        request: Request<pb::GetRuleReportRequest>,
    ) -> Result<Response<pb::GetRuleReportResponse>, Status> {
        let caller = crate::auth::caller(&request)?;
        let r = request.get_ref();
        let mut check = Check::default();
        let period = period_in(&mut check, "period", r.period.as_ref());
        let version = version_in(&mut check, "policy_version", r.policy_version);
        let attribution = attribution_in(&mut check, &r.group_by_property, r.top_groups);
        check.into_result()?;
        let period = period.ok_or_else(|| Status::internal("a checked period is missing"))?;
        let overlap = attribution.as_ref().is_some_and(Attribution::overlaps);
        let top = top_groups(r.top_groups);
        let (version, report, groups) = self
            .engine
            .rule_report(&caller.workspace, period, version, attribution.map(|a| (a, top)))
            .await
            .map_err(status)?;
        Ok(Response::new(pb::GetRuleReportResponse {
            policy_version: version,
            leads: Some(tally_out(report.leads)),
            rules: report
                .rules
                .iter()
                .map(|rule| pb::RuleLift {
                    rule_id: rule.rule_id.clone(),
                    kind: match rule.kind {
                        RuleKind::Fit => pb::RuleKind::Fit,
                        RuleKind::Engagement => pb::RuleKind::Engagement,
                        RuleKind::Undesirable => pb::RuleKind::Undesirable,
                    }
                    .into(),
                    fired: Some(tally_out(rule.fired)),
                    not_fired: Some(tally_out(rule.not_fired)),
                    lift: rule.lift,
                })
                .collect(),
            groups: groups
                .into_iter()
                .map(|g| pb::OutcomeGroup {
                    key: g.key,
                    leads: Some(tally_out(g.leads)),
                    win_rate: g.win_rate,
                    lift: g.lift,
                    p50_to_win: g.p50_to_win.map(duration_out),
                    p90_to_win: g.p90_to_win.map(duration_out),
                })
                .collect(),
            groups_overlap: overlap,
        }))
    }

    async fn calibrate_threshold(
        &self,
        request: Request<pb::CalibrateThresholdRequest>,
    ) -> Result<Response<pb::CalibrateThresholdResponse>, Status> {
        let caller = crate::auth::caller(&request)?;
        let query = calibration_query(request.get_ref())?;
        let result = self
            .engine
            .calibrate(&caller.workspace, &query)
            .await
            .map_err(status)?;
        let c = &result.calibration;
        Ok(Response::new(pb::CalibrateThresholdResponse {
            policy_version: result.policy_version,
            leads: count(c.leads),
            reached_sql: count(c.reached_sql),
            customers: count(c.customers),
            points: c.points.iter().map(cut_out).collect(),
            suggested: c.suggested.as_ref().map(cut_out),
            draft_source: result.draft_source.unwrap_or_default(),
            max_peak: c.max_peak,
            model: result.model,
            level: result.level.unwrap_or_default(),
        }))
    }

    async fn get_funnel(
        &self,
        request: Request<pb::GetFunnelRequest>,
    ) -> Result<Response<pb::GetFunnelResponse>, Status> {
        let caller = crate::auth::caller(&request)?;
        if request.get_ref().subject == pb::FunnelSubject::Accounts as i32 {
            return self.account_funnel(&caller, request.get_ref()).await;
        }
        if pb::FunnelSubject::try_from(request.get_ref().subject).is_err() {
            let mut check = Check::default();
            check.fail(
                "subject",
                format!("{} is not a funnel subject", request.get_ref().subject),
            );
            check.into_result()?;
        }
        let (query, size, offset) = funnel_query(request.get_ref())?;
        let funnel = self
            .engine
            .funnel(&caller.workspace, &query)
            .await
            .map_err(status)?;
        let total = funnel.groups.len();
        let groups: Vec<pb::FunnelGroup> = funnel
            .groups
            .iter()
            .skip(offset)
            .take(size)
            .map(|g| group_out(g, funnel.buckets.len()))
            .collect();
        let next = offset + groups.len();
        Ok(Response::new(pb::GetFunnelResponse {
            period: Some(period_out(query.period)),
            bucket: bucket_out(query.bucket).into(),
            bucket_starts: funnel.buckets.iter().map(|&t| timestamp_out(t)).collect(),
            groups,
            next_page_token: if next < total {
                token_out("fg", &next.to_string())
            } else {
                String::new()
            },
            groups_overlap: funnel.overlapping,
            account_funnel: None,
        }))
    }
}
