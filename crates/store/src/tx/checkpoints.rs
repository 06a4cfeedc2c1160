//! The score checkpoints table, in a write transaction: a lead's score
//! states after a prefix of its log, so that a late engagement is replayed
//! from the newest one before it. A cache of what the log gives: a late
//! engagement drops those at or after it, and a lead keeps those of one
//! policy version.

use leadflow_domain::score::Checkpoint;
use leadflow_domain::{Engagement, EventKey};
use sea_orm::sea_query::OnConflict;
use sea_orm::{ActiveValue::Set, ColumnTrait, Condition, EntityTrait, QueryFilter, QueryOrder, QuerySelect};

use super::{INSERT_CHUNK, Tx};
use crate::convert;
use crate::entity::{engagement, score_checkpoint};
use crate::error::StoreError;

/// Rows sorting after `key` in scoring order, on a table with these columns.
fn after(occurred_at: impl ColumnTrait, event_id: impl ColumnTrait, key: &EventKey) -> Condition {
    Condition::any()
        .add(occurred_at.gt(key.occurred_at.as_micros()))
        .add(
            Condition::all()
                .add(occurred_at.eq(key.occurred_at.as_micros()))
                .add(event_id.gt(key.event_id.as_str())),
        )
}

/// Rows sorting before `key` in scoring order.
fn before(occurred_at: impl ColumnTrait, event_id: impl ColumnTrait, key: &EventKey) -> Condition {
    Condition::any()
        .add(occurred_at.lt(key.occurred_at.as_micros()))
        .add(
            Condition::all()
                .add(occurred_at.eq(key.occurred_at.as_micros()))
                .add(event_id.lt(key.event_id.as_str())),
        )
}

impl Tx {
    /// The lead's newest checkpoint under `policy_version` that ends before
    /// `key`.
    pub async fn checkpoint_before(
        &self,
        ws: &str,
        lead_id: &str,
        policy_version: i64,
        key: &EventKey,
    ) -> Result<Option<Checkpoint>, StoreError> {
        use score_checkpoint::Column as C;
        let Some(row) = score_checkpoint::Entity::find()
            .filter(C::WorkspaceId.eq(ws))
            .filter(C::LeadId.eq(lead_id))
            .filter(before(C::OccurredAt, C::EventId, key))
            .filter(C::PolicyVersion.eq(policy_version))
            .order_by_desc(C::OccurredAt)
            .order_by_desc(C::EventId)
            .limit(1)
            .one(self.db().await?)
            .await?
        else {
            return Ok(None);
        };
        serde_json::from_str(&row.state)
            .map(Some)
            .map_err(|e| StoreError::corrupt("score_checkpoints", format!("{lead_id}/{}", row.event_id), e))
    }

    /// The lead's engagements that sort after `key` (all of them for
    /// `None`), in scoring order.
    pub async fn engagements_after(
        &self,
        ws: &str,
        lead_id: &str,
        key: Option<&EventKey>,
    ) -> Result<Vec<Engagement>, StoreError> {
        use engagement::Column as C;
        let mut q = engagement::Entity::find()
            .filter(C::WorkspaceId.eq(ws))
            .filter(C::LeadId.eq(lead_id));
        if let Some(key) = key {
            q = q.filter(after(C::OccurredAt, C::EventId, key));
        }
        q.order_by_asc(C::OccurredAt)
            .order_by_asc(C::EventId)
            .all(self.db().await?)
            .await?
            .into_iter()
            .map(|row| convert::engagement(row).map(|s| s.engagement))
            .collect()
    }

    /// Keeps `checkpoints`, the lead's states under `policy_version`.
    pub async fn save_checkpoints(
        &self,
        ws: &str,
        lead_id: &str,
        checkpoints: &[Checkpoint],
        policy_version: i64,
    ) -> Result<(), StoreError> {
        use score_checkpoint::Column as C;
        let db = self.db().await?;
        let mut rows = Vec::with_capacity(checkpoints.len());
        for checkpoint in checkpoints {
            let Some(key) = checkpoint.key() else {
                continue;
            };
            let state = serde_json::to_string(checkpoint)
                .map_err(|e| StoreError::corrupt("score_checkpoints", lead_id, e))?;
            rows.push(score_checkpoint::ActiveModel {
                workspace_id: Set(ws.to_owned()),
                lead_id: Set(lead_id.to_owned()),
                occurred_at: Set(key.occurred_at.as_micros()),
                event_id: Set(key.event_id.clone()),
                policy_version: Set(policy_version),
                state: Set(state),
            });
        }
        // Six parameters a row: well inside PostgreSQL's 65,535 a statement.
        for chunk in rows.chunks(INSERT_CHUNK) {
            score_checkpoint::Entity::insert_many(chunk.to_vec())
                .on_conflict(
                    OnConflict::columns([C::WorkspaceId, C::LeadId, C::OccurredAt, C::EventId])
                        .update_columns([C::PolicyVersion, C::State])
                        .to_owned(),
                )
                .exec_without_returning(db)
                .await?;
        }
        Ok(())
    }

    /// Drops the lead's checkpoints of policy versions other than
    /// `policy_version`, and those that end at or after `from` (a late
    /// engagement there changed the states they hold).
    pub async fn drop_checkpoints(
        &self,
        ws: &str,
        lead_id: &str,
        policy_version: i64,
        from: Option<&EventKey>,
    ) -> Result<(), StoreError> {
        use score_checkpoint::Column as C;
        let mut stale = Condition::any().add(C::PolicyVersion.ne(policy_version));
        if let Some(key) = from {
            stale = stale.add(before(C::OccurredAt, C::EventId, key).not());
        }
        score_checkpoint::Entity::delete_many()
            .filter(C::WorkspaceId.eq(ws))
            .filter(C::LeadId.eq(lead_id))
            .filter(stale)
            .exec(self.db().await?)
            .await?;
        Ok(())
    }
}
