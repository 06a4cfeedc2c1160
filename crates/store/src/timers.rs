//! Durable timers: finding the due ones, and taking one to fire.

use leadflow_domain::Timestamp;
use sea_orm::sea_query::{LockBehavior, LockType};
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect};

use crate::convert;
use crate::entity::timer;
use crate::error::StoreError;
use crate::records::StoredTimer;
use crate::{Store, Tx};

/// A timer that is due, across workspaces.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DueTimer {
    pub workspace: String,
    pub lead_id: String,
    pub key: String,
    pub due_at: Timestamp,
    /// W3C trace context of the call that scheduled it.
    pub traceparent: Option<String>,
}

impl Store {
    /// Timers due at `now`, soonest first.
    pub async fn due_timers(&self, now: Timestamp, limit: u64) -> Result<Vec<DueTimer>, StoreError> {
        Ok(timer::Entity::find()
            .filter(timer::Column::DueAt.lte(now.as_micros()))
            .order_by_asc(timer::Column::DueAt)
            .limit(limit)
            .all(self.reader())
            .await
            .map_err(|e| self.on_reader(e))?
            .into_iter()
            .map(|t| DueTimer {
                workspace: t.workspace_id,
                lead_id: t.lead_id,
                key: t.key,
                due_at: convert::ts(t.due_at),
                traceparent: t.traceparent,
            })
            .collect())
    }

    /// Moves a timer's due instant (a timer that failed to fire).
    pub async fn postpone_timer(
        &self,
        ws: &str,
        lead_id: &str,
        key: &str,
        to: Timestamp,
    ) -> Result<(), StoreError> {
        timer::Entity::update_many()
            .col_expr(
                timer::Column::DueAt,
                sea_orm::sea_query::Expr::value(to.as_micros()),
            )
            .filter(timer::Column::WorkspaceId.eq(ws))
            .filter(timer::Column::LeadId.eq(lead_id))
            .filter(timer::Column::Key.eq(key))
            .exec(self.writer())
            .await
            .map_err(|e| self.on_writer(e))?;
        Ok(())
    }

    /// When the next timer is due, if any.
    pub async fn next_timer_due(&self) -> Result<Option<Timestamp>, StoreError> {
        Ok(timer::Entity::find()
            .select_only()
            .column(timer::Column::DueAt)
            .order_by_asc(timer::Column::DueAt)
            .into_tuple::<i64>()
            .one(self.reader())
            .await
            .map_err(|e| self.on_reader(e))?
            .map(convert::ts))
    }
}

impl Tx {
    /// Takes a timer to fire: locks its row, skipping it if another worker
    /// holds it (PostgreSQL). Call with the lead locked first.
    pub async fn take_timer(
        &self,
        ws: &str,
        lead_id: &str,
        key: &str,
    ) -> Result<Option<StoredTimer>, StoreError> {
        let row = timer::Entity::find_by_id((ws.to_owned(), lead_id.to_owned(), key.to_owned()))
            .lock_with_behavior(LockType::Update, LockBehavior::SkipLocked)
            .one(self.db().await?)
            .await?;
        let Some(row) = row else { return Ok(None) };
        timer::Entity::delete_many()
            .filter(timer::Column::WorkspaceId.eq(ws))
            .filter(timer::Column::LeadId.eq(lead_id))
            .filter(timer::Column::Key.eq(key))
            .exec(self.db().await?)
            .await?;
        convert::timer(row).map(Some)
    }

    /// A lead's timers due at or before `until`, soonest first.
    pub async fn due_timers_of(
        &self,
        ws: &str,
        lead_id: &str,
        until: Timestamp,
    ) -> Result<Vec<StoredTimer>, StoreError> {
        timer::Entity::find()
            .filter(timer::Column::WorkspaceId.eq(ws))
            .filter(timer::Column::LeadId.eq(lead_id))
            .filter(timer::Column::DueAt.lte(until.as_micros()))
            .order_by_asc(timer::Column::DueAt)
            .order_by_asc(timer::Column::Key)
            .all(self.db().await?)
            .await?
            .into_iter()
            .map(convert::timer)
            .collect()
    }
}
