//! Re-score jobs, and leads with their logs for simulations.

use std::collections::HashMap;

use leadflow_domain::{Engagement, Stage, Timestamp};
use sea_orm::sea_query::{Expr, LockBehavior, LockType};
use sea_orm::{ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter, QueryOrder, QuerySelect};

use crate::convert::{self, ts};
use crate::entity::{engagement, lead, rescore_job};
use crate::error::StoreError;
use crate::records::LeadRecord;
use crate::{Store, Tx};

pub const RESCORE_RUNNING: &str = "RUNNING";
pub const RESCORE_DONE: &str = "DONE";
pub const RESCORE_FAILED: &str = "FAILED";
pub const RESCORE_SUPERSEDED: &str = "SUPERSEDED";

#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RescoreJobRecord {
    pub workspace: String,
    pub id: i64,
    pub policy_version: i64,
    /// Every lead is decided at this instant.
    pub activated_at: Timestamp,
    pub status: String,
    /// The last lead id re-scored ("" before the first).
    pub cursor: String,
    /// The newest lead when the job started; later ones are born under its version.
    pub last_lead: String,
    pub total: i64,
    pub done: i64,
    pub transitions: i64,
    pub error: Option<String>,
    pub started_at: Timestamp,
    pub updated_at: Timestamp,
    pub finished_at: Option<Timestamp>,
    /// W3C trace context of the activation that started it: what its
    /// batches link to.
    pub traceparent: Option<String>,
    /// The second phase, under a policy with `[accounts]`: once every lead
    /// is done, the last account id decided ("" before the first).
    #[serde(default)]
    pub account_cursor: Option<String>,
}

fn job(row: rescore_job::Model) -> RescoreJobRecord {
    RescoreJobRecord {
        workspace: row.workspace_id,
        id: row.id,
        policy_version: row.policy_version,
        activated_at: ts(row.activated_at),
        status: row.status,
        cursor: row.cursor,
        last_lead: row.last_lead,
        total: row.total,
        done: row.done,
        transitions: row.transitions,
        error: row.error,
        started_at: ts(row.started_at),
        updated_at: ts(row.updated_at),
        finished_at: row.finished_at.map(ts),
        traceparent: row.traceparent,
        account_cursor: row.account_cursor,
    }
}

impl Tx {
    /// Supersedes the workspace's running re-score and starts one for
    /// `version`, decided at `at`. Call under [`Tx::lock_workspace`].
    pub async fn start_rescore(
        &self,
        ws: &str,
        version: i64,
        at: Timestamp,
        traceparent: Option<&str>,
    ) -> Result<RescoreJobRecord, StoreError> {
        rescore_job::Entity::update_many()
            .col_expr(
                rescore_job::Column::Status,
                Expr::value(crate::rescore::RESCORE_SUPERSEDED),
            )
            .col_expr(rescore_job::Column::FinishedAt, Expr::value(at.as_micros()))
            .col_expr(rescore_job::Column::UpdatedAt, Expr::value(at.as_micros()))
            .filter(rescore_job::Column::WorkspaceId.eq(ws))
            .filter(rescore_job::Column::Status.eq(RESCORE_RUNNING))
            .exec(self.db().await?)
            .await?;
        let id = rescore_job::Entity::find()
            .select_only()
            .column(rescore_job::Column::Id)
            .filter(rescore_job::Column::WorkspaceId.eq(ws))
            .order_by_desc(rescore_job::Column::Id)
            .into_tuple::<i64>()
            .one(self.db().await?)
            .await?
            .unwrap_or(0)
            + 1;
        let last_lead = lead::Entity::find()
            .select_only()
            .column(lead::Column::Id)
            .filter(lead::Column::WorkspaceId.eq(ws))
            .order_by_desc(lead::Column::Id)
            .into_tuple::<String>()
            .one(self.db().await?)
            .await?
            .unwrap_or_default();
        let total = lead::Entity::find()
            .filter(lead::Column::WorkspaceId.eq(ws))
            .filter(lead::Column::ErasedAt.is_null())
            .filter(lead::Column::Stage.ne(Stage::Merged.as_str()))
            .count(self.db().await?)
            .await?;
        let row = rescore_job::Model {
            workspace_id: ws.to_owned(),
            id,
            policy_version: version,
            activated_at: at.as_micros(),
            status: RESCORE_RUNNING.to_owned(),
            cursor: String::new(),
            last_lead,
            total: i64::try_from(total).unwrap_or(i64::MAX),
            done: 0,
            transitions: 0,
            error: None,
            started_at: at.as_micros(),
            updated_at: at.as_micros(),
            finished_at: None,
            traceparent: traceparent.map(str::to_owned),
            account_cursor: None,
        };
        rescore_job::Entity::insert(rescore_job::ActiveModel::from(row.clone()))
            .exec_without_returning(self.db().await?)
            .await?;
        Ok(job(row))
    }

    /// A running re-score no other worker holds, locked until commit.
    pub async fn take_running_rescore(&self) -> Result<Option<RescoreJobRecord>, StoreError> {
        Ok(rescore_job::Entity::find()
            .filter(rescore_job::Column::Status.eq(RESCORE_RUNNING))
            .order_by_asc(rescore_job::Column::StartedAt)
            .lock_with_behavior(LockType::Update, LockBehavior::SkipLocked)
            .one(self.db().await?)
            .await?
            .map(job))
    }

    /// The next leads of a re-score, in id order, locked.
    pub async fn lock_leads_after(
        &self,
        ws: &str,
        after: &str,
        up_to: &str,
        limit: u64,
    ) -> Result<Vec<LeadRecord>, StoreError> {
        lead::Entity::find()
            .filter(lead::Column::WorkspaceId.eq(ws))
            .filter(lead::Column::Id.gt(after))
            .filter(lead::Column::Id.lte(up_to))
            .filter(lead::Column::ErasedAt.is_null())
            .filter(lead::Column::Stage.ne(Stage::Merged.as_str()))
            .order_by_asc(lead::Column::Id)
            .limit(limit)
            .lock_exclusive()
            .all(self.db().await?)
            .await?
            .into_iter()
            .map(convert::lead_record)
            .collect()
    }

    /// Records a batch's progress; `finished` ends the job.
    pub async fn advance_rescore(
        &self,
        job: &RescoreJobRecord,
        now: Timestamp,
        status: &str,
        error: Option<&str>,
    ) -> Result<(), StoreError> {
        let finished = (status != RESCORE_RUNNING).then_some(now.as_micros());
        rescore_job::Entity::update_many()
            .col_expr(rescore_job::Column::Cursor, Expr::value(job.cursor.clone()))
            .col_expr(
                rescore_job::Column::AccountCursor,
                Expr::value(job.account_cursor.clone()),
            )
            .col_expr(rescore_job::Column::Done, Expr::value(job.done))
            .col_expr(rescore_job::Column::Transitions, Expr::value(job.transitions))
            .col_expr(rescore_job::Column::Status, Expr::value(status))
            .col_expr(rescore_job::Column::Error, Expr::value(error.map(str::to_owned)))
            .col_expr(rescore_job::Column::UpdatedAt, Expr::value(now.as_micros()))
            .col_expr(rescore_job::Column::FinishedAt, Expr::value(finished))
            .filter(rescore_job::Column::WorkspaceId.eq(&job.workspace))
            .filter(rescore_job::Column::Id.eq(job.id))
            .exec(self.db().await?)
            .await?;
        Ok(())
    }
}

impl Store {
    pub async fn rescore_job(&self, ws: &str, id: i64) -> Result<Option<RescoreJobRecord>, StoreError> {
        Ok(rescore_job::Entity::find_by_id((ws.to_owned(), id))
            .one(self.reader())
            .await
            .map_err(|e| self.on_reader(e))?
            .map(job))
    }

    /// Leads after `after` in id order, each with its whole log.
    pub async fn leads_with_logs(
        &self,
        ws: &str,
        after: &str,
        limit: u64,
    ) -> Result<Vec<(LeadRecord, Vec<Engagement>)>, StoreError> {
        let leads: Vec<LeadRecord> = lead::Entity::find()
            .filter(lead::Column::WorkspaceId.eq(ws))
            .filter(lead::Column::Id.gt(after))
            .filter(lead::Column::ErasedAt.is_null())
            .filter(lead::Column::Stage.ne(Stage::Merged.as_str()))
            .order_by_asc(lead::Column::Id)
            .limit(limit)
            .all(self.reader())
            .await
            .map_err(|e| self.on_reader(e))?
            .into_iter()
            .map(convert::lead_record)
            .collect::<Result<_, _>>()?;
        if leads.is_empty() {
            return Ok(Vec::new());
        }
        let ids: Vec<&str> = leads.iter().map(|l| l.id.as_str()).collect();
        let mut logs: HashMap<String, Vec<Engagement>> = HashMap::with_capacity(leads.len());
        for chunk in ids.chunks(1_000) {
            let rows = engagement::Entity::find()
                .filter(engagement::Column::WorkspaceId.eq(ws))
                .filter(engagement::Column::LeadId.is_in(chunk.iter().copied()))
                .order_by_asc(engagement::Column::LeadId)
                .order_by_asc(engagement::Column::OccurredAt)
                .order_by_asc(engagement::Column::EventId)
                .all(self.reader())
                .await
                .map_err(|e| self.on_reader(e))?;
            for row in rows {
                let stored = convert::engagement(row)?;
                logs.entry(stored.lead_id).or_default().push(stored.engagement);
            }
        }
        Ok(leads
            .into_iter()
            .map(|l| {
                let log = logs.remove(&l.id).unwrap_or_default();
                (l, log)
            })
            .collect())
    }
}
