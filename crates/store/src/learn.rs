//! Learning jobs: started in a caller's transaction, run by whichever
//! replica holds the job's lease, their progress and outcome written only
//! while that lease is theirs. A job whose replica died is taken again
//! once its lease runs out and starts over: it reads as of its own
//! instant, so it learns the same.

use leadflow_domain::Timestamp;
use leadflow_domain::analytics::Period;
use sea_orm::sea_query::{Expr, LockBehavior, LockType};
use sea_orm::{
    ActiveValue, ColumnTrait, Condition, EntityTrait, PaginatorTrait, QueryFilter, QueryOrder, QuerySelect,
    TransactionTrait,
};

use crate::convert::ts;
use crate::entity::{lead, learn_job};
use crate::error::StoreError;
use crate::{Store, Tx};

pub const LEARN_RUNNING: &str = "RUNNING";
pub const LEARN_DONE: &str = "DONE";
pub const LEARN_FAILED: &str = "FAILED";
pub const LEARN_SUPERSEDED: &str = "SUPERSEDED";

/// What a learning job was asked.
#[derive(Clone, Debug, PartialEq)]
pub struct LearnRequest {
    pub period: Period,
    /// `SQL` or `CUSTOMER`.
    pub outcome: String,
    pub base_version: i64,
    /// The score model's id.
    pub model: String,
    pub target_precision: Option<f64>,
    /// Choose the draft's MQL fit bar too.
    pub choose_fit: bool,
}

#[derive(Clone, Debug, PartialEq)]
pub struct LearnJobRecord {
    pub workspace: String,
    pub id: i64,
    pub status: String,
    /// `READING`, `FITTING` or `DONE`.
    pub phase: String,
    pub request: LearnRequest,
    pub as_of: Timestamp,
    /// Leads captured in the period when it started, and read so far.
    pub total: i64,
    pub read: i64,
    pub outcomes: Option<i64>,
    pub positives: Option<i64>,
    /// The report, as JSON (the workspace's last one only).
    pub report: Option<String>,
    pub error_code: Option<String>,
    pub error: Option<String>,
    pub holder: Option<String>,
    pub attempts: i32,
    pub started_at: Timestamp,
    pub updated_at: Timestamp,
    pub finished_at: Option<Timestamp>,
    pub traceparent: Option<String>,
}

impl LearnJobRecord {
    pub fn is_running(&self) -> bool {
        self.status == LEARN_RUNNING
    }
}

fn job(row: learn_job::Model) -> LearnJobRecord {
    LearnJobRecord {
        workspace: row.workspace_id,
        id: row.id,
        status: row.status,
        phase: row.phase,
        request: LearnRequest {
            period: Period {
                start: ts(row.period_start),
                end: ts(row.period_end),
            },
            outcome: row.outcome,
            base_version: row.base_version,
            model: row.model,
            target_precision: row.target_precision,
            choose_fit: row.choose_fit,
        },
        as_of: ts(row.as_of),
        total: row.total,
        read: row.read,
        outcomes: row.outcomes,
        positives: row.positives,
        report: row.report,
        error_code: row.error_code,
        error: row.error,
        holder: row.holder,
        attempts: row.attempts,
        started_at: ts(row.started_at),
        updated_at: ts(row.updated_at),
        finished_at: row.finished_at.map(ts),
        traceparent: row.traceparent,
    }
}

/// How a job ended.
#[derive(Clone, Debug, PartialEq)]
pub enum LearnEnd {
    Done {
        outcomes: i64,
        positives: i64,
        report: String,
    },
    Failed {
        code: String,
        error: String,
        /// Known when it failed for too little data.
        counts: Option<(i64, i64)>,
    },
}

impl Tx {
    /// Supersedes the workspace's running learning and starts one over
    /// `total` leads ([`Store::count_captured`]). Call under
    /// [`Tx::lock_workspace`].
    pub async fn start_learn(
        &self,
        ws: &str,
        request: &LearnRequest,
        total: u64,
        now: Timestamp,
        traceparent: Option<&str>,
    ) -> Result<LearnJobRecord, StoreError> {
        let db = self.db().await?;
        learn_job::Entity::update_many()
            .col_expr(learn_job::Column::Status, Expr::value(LEARN_SUPERSEDED))
            .col_expr(learn_job::Column::FinishedAt, Expr::value(now.as_micros()))
            .col_expr(learn_job::Column::UpdatedAt, Expr::value(now.as_micros()))
            .filter(learn_job::Column::WorkspaceId.eq(ws))
            .filter(learn_job::Column::Status.eq(LEARN_RUNNING))
            .exec(db)
            .await?;
        let id = learn_job::Entity::find()
            .select_only()
            .column(learn_job::Column::Id)
            .filter(learn_job::Column::WorkspaceId.eq(ws))
            .order_by_desc(learn_job::Column::Id)
            .into_tuple::<i64>()
            .one(db)
            .await?
            .unwrap_or(0)
            + 1;
        let row = learn_job::Model {
            workspace_id: ws.to_owned(),
            id,
            status: LEARN_RUNNING.to_owned(),
            phase: "READING".to_owned(),
            period_start: request.period.start.as_micros(),
            period_end: request.period.end.as_micros(),
            outcome: request.outcome.clone(),
            base_version: request.base_version,
            model: request.model.clone(),
            target_precision: request.target_precision,
            choose_fit: request.choose_fit,
            as_of: now.as_micros(),
            total: i64::try_from(total).unwrap_or(i64::MAX),
            read: 0,
            outcomes: None,
            positives: None,
            report: None,
            error_code: None,
            error: None,
            holder: None,
            lease_until: None,
            attempts: 0,
            started_at: now.as_micros(),
            updated_at: now.as_micros(),
            finished_at: None,
            traceparent: traceparent.map(str::to_owned),
        };
        learn_job::Entity::insert(learn_job::ActiveModel::from(row.clone()))
            .exec_without_returning(db)
            .await?;
        Ok(job(row))
    }
}

impl Store {
    /// The leads captured in `period` and not erased.
    pub async fn count_captured(&self, ws: &str, period: Period) -> Result<u64, StoreError> {
        lead::Entity::find()
            .filter(lead::Column::WorkspaceId.eq(ws))
            .filter(lead::Column::CapturedAt.gte(period.start.as_micros()))
            .filter(lead::Column::CapturedAt.lt(period.end.as_micros()))
            .filter(lead::Column::ErasedAt.is_null())
            .count(self.reader())
            .await
            .map_err(|e| self.on_reader(e))
    }

    /// A running job whose lease is free or ran out, now held by `holder`
    /// until `until` (its attempts counted).
    pub async fn take_learn_job(
        &self,
        holder: &str,
        now: Timestamp,
        until: Timestamp,
    ) -> Result<Option<LearnJobRecord>, StoreError> {
        let tx = self.writer().begin().await.map_err(|e| self.on_writer(e))?;
        let Some(row) = learn_job::Entity::find()
            .filter(learn_job::Column::Status.eq(LEARN_RUNNING))
            .filter(
                Condition::any()
                    .add(learn_job::Column::LeaseUntil.is_null())
                    .add(learn_job::Column::LeaseUntil.lt(now.as_micros())),
            )
            .order_by_asc(learn_job::Column::StartedAt)
            .lock_with_behavior(LockType::Update, LockBehavior::SkipLocked)
            .one(&tx)
            .await?
        else {
            return Ok(None);
        };
        let mut active: learn_job::ActiveModel = row.clone().into();
        active.holder = ActiveValue::Set(Some(holder.to_owned()));
        active.lease_until = ActiveValue::Set(Some(until.as_micros()));
        active.attempts = ActiveValue::Set(row.attempts.saturating_add(1));
        active.phase = ActiveValue::Set("READING".to_owned());
        active.read = ActiveValue::Set(0);
        active.updated_at = ActiveValue::Set(now.as_micros());
        let taken = learn_job::Entity::update(active).exec(&tx).await?;
        tx.commit().await?;
        Ok(Some(job(taken)))
    }

    /// Records a held job's progress and extends its lease: false when it
    /// is no longer this holder's to run (superseded, or taken over).
    pub async fn advance_learn(
        &self,
        job: &LearnJobRecord,
        phase: &str,
        read: i64,
        now: Timestamp,
        until: Timestamp,
    ) -> Result<bool, StoreError> {
        Ok(learn_job::Entity::update_many()
            .col_expr(learn_job::Column::Phase, Expr::value(phase))
            .col_expr(learn_job::Column::Read, Expr::value(read))
            .col_expr(learn_job::Column::LeaseUntil, Expr::value(until.as_micros()))
            .col_expr(learn_job::Column::UpdatedAt, Expr::value(now.as_micros()))
            .filter(learn_job::Column::WorkspaceId.eq(&job.workspace))
            .filter(learn_job::Column::Id.eq(job.id))
            .filter(learn_job::Column::Status.eq(LEARN_RUNNING))
            .filter(learn_job::Column::Holder.eq(job.holder.clone()))
            .exec(self.writer())
            .await
            .map_err(|e| self.on_writer(e))?
            .rows_affected
            == 1)
    }

    /// Ends a held job: false, and nothing written, when it is no longer
    /// this holder's. A report replaces the workspace's earlier one.
    pub async fn finish_learn(
        &self,
        job: &LearnJobRecord,
        end: &LearnEnd,
        now: Timestamp,
    ) -> Result<bool, StoreError> {
        let tx = self.writer().begin().await.map_err(|e| self.on_writer(e))?;
        let mut update = learn_job::Entity::update_many()
            .col_expr(learn_job::Column::UpdatedAt, Expr::value(now.as_micros()))
            .col_expr(learn_job::Column::FinishedAt, Expr::value(now.as_micros()))
            .col_expr(learn_job::Column::LeaseUntil, Expr::value(Option::<i64>::None));
        update = match end {
            LearnEnd::Done {
                outcomes,
                positives,
                report,
            } => update
                .col_expr(learn_job::Column::Status, Expr::value(LEARN_DONE))
                .col_expr(learn_job::Column::Phase, Expr::value("DONE"))
                .col_expr(learn_job::Column::Outcomes, Expr::value(*outcomes))
                .col_expr(learn_job::Column::Positives, Expr::value(*positives))
                .col_expr(learn_job::Column::Report, Expr::value(report.clone())),
            LearnEnd::Failed { code, error, counts } => update
                .col_expr(learn_job::Column::Status, Expr::value(LEARN_FAILED))
                .col_expr(learn_job::Column::ErrorCode, Expr::value(code.clone()))
                .col_expr(learn_job::Column::Error, Expr::value(error.clone()))
                .col_expr(learn_job::Column::Outcomes, Expr::value(counts.map(|c| c.0)))
                .col_expr(learn_job::Column::Positives, Expr::value(counts.map(|c| c.1))),
        };
        let ended = update
            .filter(learn_job::Column::WorkspaceId.eq(&job.workspace))
            .filter(learn_job::Column::Id.eq(job.id))
            .filter(learn_job::Column::Status.eq(LEARN_RUNNING))
            .filter(learn_job::Column::Holder.eq(job.holder.clone()))
            .exec(&tx)
            .await?
            .rows_affected
            == 1;
        if ended && matches!(end, LearnEnd::Done { .. }) {
            learn_job::Entity::update_many()
                .col_expr(learn_job::Column::Report, Expr::value(Option::<String>::None))
                .filter(learn_job::Column::WorkspaceId.eq(&job.workspace))
                .filter(learn_job::Column::Id.ne(job.id))
                .filter(learn_job::Column::Report.is_not_null())
                .exec(&tx)
                .await?;
        }
        tx.commit().await?;
        Ok(ended)
    }

    /// Fails a running job that was taken too often (its replica dies
    /// with it, or it cannot finish).
    pub async fn give_up_learn(
        &self,
        job: &LearnJobRecord,
        error: &str,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        learn_job::Entity::update_many()
            .col_expr(learn_job::Column::Status, Expr::value(LEARN_FAILED))
            .col_expr(learn_job::Column::ErrorCode, Expr::value("LEARN_FAILED"))
            .col_expr(learn_job::Column::Error, Expr::value(error))
            .col_expr(learn_job::Column::UpdatedAt, Expr::value(now.as_micros()))
            .col_expr(learn_job::Column::FinishedAt, Expr::value(now.as_micros()))
            .col_expr(learn_job::Column::LeaseUntil, Expr::value(Option::<i64>::None))
            .filter(learn_job::Column::WorkspaceId.eq(&job.workspace))
            .filter(learn_job::Column::Id.eq(job.id))
            .filter(learn_job::Column::Status.eq(LEARN_RUNNING))
            .exec(self.writer())
            .await
            .map_err(|e| self.on_writer(e))?;
        Ok(())
    }

    pub async fn learn_job(&self, ws: &str, id: i64) -> Result<Option<LearnJobRecord>, StoreError> {
        Ok(learn_job::Entity::find_by_id((ws.to_owned(), id))
            .one(self.reader())
            .await
            .map_err(|e| self.on_reader(e))?
            .map(job))
    }

    /// The workspace's last job with a report.
    pub async fn last_learn_report(&self, ws: &str) -> Result<Option<LearnJobRecord>, StoreError> {
        Ok(learn_job::Entity::find()
            .filter(learn_job::Column::WorkspaceId.eq(ws))
            .filter(learn_job::Column::Report.is_not_null())
            .order_by_desc(learn_job::Column::Id)
            .one(self.reader())
            .await
            .map_err(|e| self.on_reader(e))?
            .map(job))
    }
}
