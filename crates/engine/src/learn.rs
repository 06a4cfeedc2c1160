//! Learning a lead definition from outcomes: `LearnPolicy` starts a job in
//! a transaction; the replica holding the job's lease reads the period's
//! leads a page at a time, runs the domain's learning off the async
//! threads, and keeps the report. A job whose replica died is taken again
//! when its lease runs out and starts over, as of its own instant.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use leadflow_domain::analytics::Period;
use leadflow_domain::analytics::evidence::Evidence;
use leadflow_domain::analytics::learn::{self, LearnError, LearnOutcome, LearnParams, LearnReport};
use leadflow_domain::{Policy, Span, Timestamp};
use leadflow_store::{
    LEARN_DONE, LEARN_FAILED, LEARN_RUNNING, LEARN_SUPERSEDED, LearnEnd, LearnJobRecord, LearnRequest,
};

use crate::Engine;
use crate::error::EngineError;
use crate::idempotency::{replay, save};
use crate::model::{Method, Request};

/// How long a job's lease lasts unrenewed; it is renewed every page and
/// every [`RENEW_EVERY`] while fitting.
const LEASE: Span = Span::from_secs(60);
const RENEW_EVERY: Duration = Duration::from_secs(10);
/// Times a job is taken before it is failed (its replica died each time).
const MAX_ATTEMPTS: i32 = 3;
/// Leads read at once.
const PAGE: u64 = 1_000;
/// Leads a learning reads at most (those with a known outcome are kept in
/// memory until the fit).
const MAX_LEADS: u64 = 1_000_000;

/// What to learn from.
#[derive(Clone, Debug, PartialEq)]
pub struct LearnQuery {
    /// Leads captured in this period.
    pub period: Period,
    pub outcome: LearnOutcome,
    /// The policy version learned from; the active one by default.
    pub base_version: Option<i64>,
    /// The score model learned (its id); the one the MQL stage reads by default.
    pub model: Option<String>,
    /// The precision the draft's MQL bar is calibrated for (default 0.5).
    pub target_precision: Option<f64>,
    /// Choose the MQL fit bar with the engagement bar; else the base's is kept.
    pub choose_fit: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LearnStatus {
    Running,
    Done,
    Failed,
    Superseded,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LearnPhase {
    Reading,
    Fitting,
    Done,
}

/// A learning job, with its report once done (the workspace's last only).
#[derive(Clone, Debug, PartialEq)]
pub struct LearnJob {
    pub id: i64,
    pub status: LearnStatus,
    pub phase: LearnPhase,
    pub period: Period,
    pub outcome: LearnOutcome,
    pub base_version: i64,
    pub model: String,
    pub target_precision: Option<f64>,
    pub choose_fit: bool,
    pub as_of: Timestamp,
    pub total: i64,
    pub read: i64,
    pub outcomes: Option<i64>,
    pub positives: Option<i64>,
    pub report: Option<LearnReport>,
    pub error_code: Option<String>,
    pub error: Option<String>,
    pub started_at: Timestamp,
    pub updated_at: Timestamp,
    pub finished_at: Option<Timestamp>,
}

impl LearnJob {
    pub fn is_running(&self) -> bool {
        self.status == LearnStatus::Running
    }
}

fn outcome_name(outcome: LearnOutcome) -> &'static str {
    match outcome {
        LearnOutcome::Sql => "SQL",
        LearnOutcome::Customer => "CUSTOMER",
    }
}

fn outcome_of(name: &str) -> Result<LearnOutcome, EngineError> {
    match name {
        "SQL" => Ok(LearnOutcome::Sql),
        "CUSTOMER" => Ok(LearnOutcome::Customer),
        other => Err(EngineError::Internal(format!(
            "a learning job's outcome {other:?} is unknown"
        ))),
    }
}

impl TryFrom<LearnJobRecord> for LearnJob {
    type Error = EngineError;

    fn try_from(r: LearnJobRecord) -> Result<Self, EngineError> {
        let status = match r.status.as_str() {
            LEARN_RUNNING => LearnStatus::Running,
            LEARN_DONE => LearnStatus::Done,
            LEARN_FAILED => LearnStatus::Failed,
            LEARN_SUPERSEDED => LearnStatus::Superseded,
            other => {
                return Err(EngineError::Internal(format!(
                    "a learning job's status {other:?} is unknown"
                )));
            }
        };
        let phase = match r.phase.as_str() {
            "READING" => LearnPhase::Reading,
            "FITTING" => LearnPhase::Fitting,
            _ => LearnPhase::Done,
        };
        let report = r
            .report
            .as_deref()
            .map(serde_json::from_str::<LearnReport>)
            .transpose()
            .map_err(|e| {
                EngineError::Internal(format!("learning job {}'s report does not decode: {e}", r.id))
            })?;
        Ok(Self {
            id: r.id,
            status,
            phase,
            period: r.request.period,
            outcome: outcome_of(&r.request.outcome)?,
            base_version: r.request.base_version,
            model: r.request.model,
            target_precision: r.request.target_precision,
            choose_fit: r.request.choose_fit,
            as_of: r.as_of,
            total: r.total,
            read: r.read,
            outcomes: r.outcomes,
            positives: r.positives,
            report,
            error_code: r.error_code,
            error: r.error,
            started_at: r.started_at,
            updated_at: r.updated_at,
            finished_at: r.finished_at,
        })
    }
}

/// What a retried `LearnPolicy` answers again: the job it started.
#[derive(serde::Serialize, serde::Deserialize)]
struct StartedLearning {
    job_id: i64,
}

impl Engine {
    /// Starts learning a draft of a policy version from the outcomes of
    /// the leads captured in `query.period`; a running learning of the
    /// workspace is superseded.
    #[tracing::instrument(name = "engine.start_learning", skip_all)]
    pub async fn start_learning(&self, req: &Request, query: &LearnQuery) -> Result<LearnJob, EngineError> {
        let ws = req.workspace.as_str();
        let (record, policy) = self.analysed_policy(ws, query.base_version).await?;
        let model = crate::analytics::model_index(&policy, query.model.as_deref())?;
        let request = LearnRequest {
            period: query.period,
            outcome: outcome_name(query.outcome).to_owned(),
            base_version: record.version,
            model: policy.models[model].id.clone(),
            target_precision: query.target_precision,
            choose_fit: query.choose_fit,
        };
        // Counted before the workspace is locked: its writers do not wait on it.
        let total = self.store.count_captured(ws, query.period).await?;
        let tx = self.store.begin().await?;
        if let Some(done) = replay::<StartedLearning>(&tx, req, Method::LearnPolicy).await? {
            drop(tx);
            return self.learn_job(ws, done.job_id).await;
        }
        if total > MAX_LEADS {
            return Err(EngineError::invalid(
                "PERIOD_TOO_LARGE",
                "period",
                format!(
                    "the period holds {total} leads; a learning reads at most {MAX_LEADS}: take a shorter one"
                ),
            ));
        }
        tx.lock_workspace(ws).await?;
        let now = self.now();
        let job = tx
            .start_learn(ws, &request, total, now, req.traceparent.as_deref())
            .await?;
        save(
            &tx,
            req,
            Method::LearnPolicy,
            &StartedLearning { job_id: job.id },
            now,
        )
        .await?;
        tx.commit().await?;
        tracing::info!(
            workspace = ws,
            job = job.id,
            leads = job.total,
            "learning started"
        );
        LearnJob::try_from(job)
    }

    pub async fn learn_job(&self, ws: &str, id: i64) -> Result<LearnJob, EngineError> {
        self.store
            .learn_job(ws, id)
            .await?
            .ok_or_else(|| EngineError::NotFound {
                what: "learning job",
                key: id.to_string(),
            })?
            .try_into()
    }

    /// The workspace's last learning with a report, if any.
    pub async fn last_learn_report(&self, ws: &str) -> Result<Option<LearnJob>, EngineError> {
        self.store
            .last_learn_report(ws)
            .await?
            .map(LearnJob::try_from)
            .transpose()
    }

    /// Takes a running learning whose lease is free and runs it to its end
    /// as `holder`: false when there was none.
    pub async fn run_learning(&self, holder: &str) -> Result<bool, EngineError> {
        let now = self.now();
        let Some(mut job) = self
            .store
            .take_learn_job(holder, now, now.saturating_add(LEASE))
            .await?
        else {
            return Ok(false);
        };
        if job.attempts > MAX_ATTEMPTS {
            let error = format!("taken {MAX_ATTEMPTS} times without finishing; start it again");
            tracing::error!(workspace = %job.workspace, job = job.id, "learning failed: {error}");
            self.store.give_up_learn(&job, &error, now).await?;
            return Ok(true);
        }
        job.holder = Some(holder.to_owned());
        let end = match self.learn(&job).await {
            Ok(Some(report)) => {
                let text =
                    serde_json::to_string(&report).map_err(|e| EngineError::Internal(e.to_string()))?;
                tracing::info!(workspace = %job.workspace, job = job.id, outcomes = report.outcomes, "learning done");
                LearnEnd::Done {
                    outcomes: i64::try_from(report.outcomes).unwrap_or(i64::MAX),
                    positives: i64::try_from(report.positives).unwrap_or(i64::MAX),
                    report: text,
                }
            }
            Ok(None) => return Ok(true), // superseded, or taken over
            Err(LearnFailure::Learn(LearnError::TooLittleData { outcomes, positives })) => LearnEnd::Failed {
                code: "TOO_LITTLE_DATA".to_owned(),
                error: LearnError::TooLittleData { outcomes, positives }.to_string(),
                counts: Some((
                    i64::try_from(outcomes).unwrap_or(i64::MAX),
                    i64::try_from(positives).unwrap_or(i64::MAX),
                )),
            },
            // Asked to stop: the job is no longer this holder's.
            Err(LearnFailure::Learn(LearnError::Stopped)) => return Ok(true),
            Err(LearnFailure::Learn(e @ LearnError::Draft(_))) => LearnEnd::Failed {
                code: "INVALID_DRAFT".to_owned(),
                error: e.to_string(),
                counts: None,
            },
            Err(LearnFailure::Engine(e @ EngineError::NotFound { .. })) => LearnEnd::Failed {
                code: "BASE_NOT_FOUND".to_owned(),
                error: e.to_string(),
                counts: None,
            },
            // Another replica (or this one, later) takes it again.
            Err(LearnFailure::Engine(e)) => return Err(e),
        };
        if let LearnEnd::Failed { code, error, .. } = &end {
            tracing::warn!(workspace = %job.workspace, job = job.id, code, error, "learning failed");
        }
        self.store.finish_learn(&job, &end, self.now()).await?;
        Ok(true)
    }

    /// A held job's learning: `None` once it is no longer this holder's.
    async fn learn(&self, job: &LearnJobRecord) -> Result<Option<LearnReport>, LearnFailure> {
        let ws = job.workspace.as_str();
        let (record, policy) = self.analysed_policy(ws, Some(job.request.base_version)).await?;
        let model = crate::analytics::model_index(&policy, Some(&job.request.model))?;
        let params = LearnParams {
            outcome: outcome_of(&job.request.outcome)?,
            model,
            as_of: job.as_of,
            target_precision: job.request.target_precision,
            choose_fit: job.request.choose_fit,
        };
        // Only labelled leads are kept: the others are read and dropped.
        let mut leads: Vec<Evidence> = Vec::new();
        let mut read = 0_i64;
        let mut after = None;
        loop {
            let (page, next) = self
                .store
                .evidence(ws, job.request.period, after.as_ref(), PAGE, false)
                .await
                .map_err(EngineError::from)?;
            read += i64::try_from(page.len()).unwrap_or(0);
            leads.extend(
                page.into_iter()
                    .filter(|e| learn::labelled(e, params.outcome, params.as_of).is_some()),
            );
            if !self.renew(job, "READING", read).await? {
                return Ok(None);
            }
            match next {
                Some(cursor) => after = Some(cursor),
                None => break,
            }
        }
        if !self.renew(job, "FITTING", read).await? {
            return Ok(None);
        }
        let source = record.source.clone();
        // Told to stop when the job is no longer this holder's, and when
        // this future is dropped (the replica is stopping): the fit then
        // ends at its next step rather than running on unheard.
        let stop = StopOnDrop(Arc::new(AtomicBool::new(false)));
        let stopped = Arc::clone(&stop.0);
        let fitting = tokio::task::spawn_blocking(move || {
            let policy: Arc<Policy> = policy;
            learn::learn_until(&source, &policy, &leads, &params, &|| {
                stopped.load(Ordering::Relaxed)
            })
        });
        tokio::pin!(fitting);
        loop {
            tokio::select! {
                done = &mut fitting => {
                    let report = done.map_err(|e| EngineError::Internal(format!("the learning stopped: {e}")))??;
                    return Ok(Some(report));
                }
                () = tokio::time::sleep(RENEW_EVERY) => {
                    if !self.renew(job, "FITTING", read).await? {
                        // One fit at a time on a replica: this one ends
                        // (at its next step) before the worker takes another job.
                        stop.0.store(true, Ordering::Relaxed);
                        let _ = fitting.await;
                        return Ok(None);
                    }
                }
            }
        }
    }

    async fn renew(&self, job: &LearnJobRecord, phase: &str, read: i64) -> Result<bool, EngineError> {
        let now = self.now();
        Ok(self
            .store
            .advance_learn(job, phase, read, now, now.saturating_add(LEASE))
            .await?)
    }
}

/// Sets its flag when dropped.
struct StopOnDrop(Arc<AtomicBool>);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// Why a learning ended without a report.
enum LearnFailure {
    Learn(LearnError),
    Engine(EngineError),
}

impl From<LearnError> for LearnFailure {
    fn from(e: LearnError) -> Self {
        Self::Learn(e)
    }
}

impl From<EngineError> for LearnFailure {
    fn from(e: EngineError) -> Self {
        Self::Engine(e)
    }
}
