//! `LearnPolicy` and `GetLearnReport`: a learning job in, its progress and
//! report out.

use std::pin::Pin;
use std::time::Duration;

use leadflow_domain::analytics::learn::{LearnOutcome, LearnReport, Metrics, Proposal};
use leadflow_engine::{Engine, LearnJob, LearnPhase, LearnQuery, LearnStatus, Method};
use leadflow_proto::v1 as pb;
use tokio_stream::Stream;
use tonic::Status;

use super::analytics::{period_in, period_out};
use super::engine_request;
use crate::convert::timestamp_out;
use crate::error::{learning_ended, status};
use crate::limits::{Check, MAX_NAME_CHARS};

/// How often a `LearnPolicy` stream looks at its job.
const WATCH_EVERY: Duration = Duration::from_millis(250);

pub(crate) type LearnStream = Pin<Box<dyn Stream<Item = Result<pb::LearnPolicyResponse, Status>> + Send>>;

fn count(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// The request, checked field by field.
pub(crate) fn query_in(r: &pb::LearnPolicyRequest) -> Result<(LearnQuery, String), Status> {
    let mut check = Check::default();
    let period = period_in(&mut check, "period", r.period.as_ref());
    let outcome = match pb::LearnOutcome::try_from(r.outcome) {
        Ok(pb::LearnOutcome::Sql) => LearnOutcome::Sql,
        Ok(pb::LearnOutcome::Unspecified | pb::LearnOutcome::Customer) => LearnOutcome::Customer,
        Err(_) => {
            check.fail(
                "outcome",
                format!("{} is not a learning outcome (SQL or CUSTOMER)", r.outcome),
            );
            LearnOutcome::Customer
        }
    };
    if r.base_version < 0 {
        check.fail(
            "base_version",
            format!("{} is negative; 0 means the active version", r.base_version),
        );
    }
    if let Some(p) = r.target_precision
        && !(p > 0.0 && p <= 1.0)
    {
        check.fail("target_precision", format!("{p} is not in (0, 1]"));
    }
    check.text("model", &r.model, MAX_NAME_CHARS, false);
    let request_id = check.key("request_id", &r.request_id, false);
    check.into_result()?;
    Ok((
        LearnQuery {
            period: period.ok_or_else(|| Status::internal("a checked period is missing"))?,
            outcome,
            base_version: (r.base_version > 0).then_some(r.base_version),
            model: (!r.model.is_empty()).then(|| r.model.clone()),
            target_precision: r.target_precision,
            choose_fit: r.choose_fit,
        },
        request_id,
    ))
}

fn metrics_out(m: &Metrics) -> pb::BackTest {
    pb::BackTest {
        leads: count(m.leads),
        positives: count(m.positives),
        qualified: count(m.qualified),
        precision: m.precision,
        recall: m.recall,
        lift: m.lift,
        auc: m.auc,
    }
}

fn report_out(r: &LearnReport) -> pb::LearnReport {
    pb::LearnReport {
        outcomes: count(r.outcomes),
        positives: count(r.positives),
        training: count(r.training),
        held_out: count(r.held_out),
        rules: r
            .rules
            .iter()
            .map(|rule| {
                let (attribute, equals, engagement_type) = match &rule.proposed {
                    Some(Proposal::Attribute { attribute, equals }) => {
                        (attribute.clone(), equals.clone(), String::new())
                    }
                    Some(Proposal::Type { kind }) => (String::new(), String::new(), kind.clone()),
                    None => Default::default(),
                };
                pb::LearnedRule {
                    rule_id: rule.rule_id.clone(),
                    kind: rule.kind.clone(),
                    proposed: rule.proposed.is_some(),
                    attribute,
                    equals,
                    engagement_type,
                    old_points: rule.old_points,
                    learned_points: rule.learned_points,
                    weight: rule.weight,
                    interval_low: rule.interval.0,
                    interval_high: rule.interval.1,
                    support: count(rule.support),
                    in_draft: rule.in_draft,
                }
            })
            .collect(),
        base_engagement_at_least: r.base_engagement_at_least,
        engagement_at_least: r.engagement_at_least,
        fit_at_least: r.fit_at_least,
        // Reports kept before the fit bar could be chosen kept it.
        base_fit_at_least: r.base_fit_at_least.unwrap_or(r.fit_at_least),
        training_precision: r.training_precision,
        training_recall: r.training_recall,
        base: Some(metrics_out(&r.base)),
        draft: Some(metrics_out(&r.draft)),
        draft_source: r.draft_source.clone(),
    }
}

pub(crate) fn job_out(job: &LearnJob) -> pb::LearnJob {
    pb::LearnJob {
        id: job.id,
        status: match job.status {
            LearnStatus::Running => pb::LearnStatus::Running,
            LearnStatus::Done => pb::LearnStatus::Done,
            LearnStatus::Failed => pb::LearnStatus::Failed,
            LearnStatus::Superseded => pb::LearnStatus::Superseded,
        }
        .into(),
        phase: match job.phase {
            LearnPhase::Reading => pb::LearnPhase::Reading,
            LearnPhase::Fitting => pb::LearnPhase::Fitting,
            LearnPhase::Done => pb::LearnPhase::Done,
        }
        .into(),
        period: Some(period_out(job.period)),
        outcome: match job.outcome {
            LearnOutcome::Sql => pb::LearnOutcome::Sql,
            LearnOutcome::Customer => pb::LearnOutcome::Customer,
        }
        .into(),
        base_version: job.base_version,
        model: job.model.clone(),
        target_precision: job.target_precision,
        choose_fit: job.choose_fit,
        as_of: Some(timestamp_out(job.as_of)),
        leads_total: job.total,
        leads_read: job.read,
        outcomes: job.outcomes,
        positives: job.positives,
        report: job.report.as_ref().map(report_out),
        error_code: job.error_code.clone().unwrap_or_default(),
        error: job.error.clone().unwrap_or_default(),
        started_at: Some(timestamp_out(job.started_at)),
        updated_at: Some(timestamp_out(job.updated_at)),
        finished_at: job.finished_at.map(timestamp_out),
    }
}

/// Starts (or, for a retried request id, finds) a learning and streams it
/// until it ends.
pub(crate) async fn learn_policy(
    engine: &Engine,
    caller: &crate::auth::Principal,
    r: &pb::LearnPolicyRequest,
    traceparent: Option<String>,
) -> Result<LearnStream, Status> {
    let (query, request_id) = query_in(r)?;
    let req = engine_request(
        caller,
        Method::LearnPolicy,
        &request_id,
        r,
        |m| m.request_id.clear(),
        traceparent,
    );
    let first = engine.start_learning(&req, &query).await.map_err(status)?;
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    let watcher = engine.clone();
    let ws = caller.workspace.clone();
    let stopping = engine.stopping();
    engine.spawn(async move {
        let mut job = first;
        // The job's lease renewals (every 10 s while fitting) move
        // `updated_at`: a quiet phase still sends a message that often.
        let mut sent = None;
        loop {
            let key = (job.status, job.phase, job.read, job.updated_at);
            if sent != Some(key) {
                let item = if job.status == LearnStatus::Done && job.report.is_none() {
                    // A retry of a request whose report a later one replaced.
                    Err(status(leadflow_engine::EngineError::FailedPrecondition {
                        reason: "REPORT_REPLACED",
                        message: format!(
                            "learning job {} is done and its report was replaced by a later one: GetLearnReport reads the last",
                            job.id
                        ),
                    }))
                } else if job.status == LearnStatus::Done || job.is_running() {
                    Ok(pb::LearnPolicyResponse {
                        job: Some(job_out(&job)),
                    })
                } else {
                    Err(learning_ended(&job))
                };
                let last = item.is_err();
                if tx.send(item).await.is_err() || last {
                    return;
                }
                sent = Some(key);
            }
            if !job.is_running() {
                return;
            }
            tokio::select! {
                () = tokio::time::sleep(WATCH_EVERY) => {}
                () = tx.closed() => return,
                () = stopping.cancelled() => {
                    let message = format!(
                        "the server is shutting down; learning job {} goes on: GetLearnReport follows it",
                        job.id
                    );
                    let _ = tx.send(Err(status(leadflow_engine::EngineError::ShuttingDown(message)))).await;
                    return;
                }
            }
            job = match watcher.learn_job(&ws, job.id).await {
                Ok(job) => job,
                Err(e) => {
                    let _ = tx.send(Err(status(e))).await;
                    return;
                }
            };
        }
    });
    Ok(Box::pin(tokio_stream::wrappers::ReceiverStream::new(rx)))
}

/// A job by id, or the workspace's last report.
pub(crate) async fn learn_report(
    engine: &Engine,
    caller: &crate::auth::Principal,
    r: &pb::GetLearnReportRequest,
) -> Result<pb::GetLearnReportResponse, Status> {
    if r.job_id < 0 {
        let mut check = Check::default();
        check.fail(
            "job_id",
            format!("{} is negative; 0 means the last report", r.job_id),
        );
        check.into_result()?;
    }
    let job = if r.job_id == 0 {
        engine
            .last_learn_report(&caller.workspace)
            .await
            .map_err(status)?
            .ok_or_else(|| {
                status(leadflow_engine::EngineError::NotFound {
                    what: "learning report",
                    key: caller.workspace.clone(),
                })
            })?
    } else {
        engine
            .learn_job(&caller.workspace, r.job_id)
            .await
            .map_err(status)?
    };
    Ok(pb::GetLearnReportResponse {
        job: Some(job_out(&job)),
    })
}
