//! The score checkpoints table, in a write transaction: a lead's score
//! states after a prefix of its log, so that a late engagement is replayed
//! from the newest one before it. A cache of what the log gives: a late
//! engagement drops those at or after it, and a lead keeps those of one
//! policy version.

use leadflow_domain::score::Checkpoint;
use leadflow_domain::{Engagement, EventKey};
use sea_orm::sea_query::OnConflict;
use sea_orm::{
    ActiveValue::Set, ColumnTrait, Condition, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder,
    QuerySelect,
};

use super::{INSERT_CHUNK, Tx};
use crate::backend::Backend;
use crate::convert;
use crate::entity::score_checkpoint;
use crate::error::StoreError;

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

    /// The lead's newest checkpoint under `policy_version` that ends before
    /// `key`, and the lead's engagements that sort after that checkpoint, in
    /// scoring order: one statement.
    pub async fn checkpoint_and_after(
        &self,
        ws: &str,
        lead_id: &str,
        policy_version: i64,
        key: &EventKey,
    ) -> Result<Option<(Checkpoint, Vec<Engagement>)>, StoreError> {
        // The checkpoint is the first row (part 0); the engagements after
        // it follow. Row values keep both reads on their primary key and
        // index ranges; the checkpoint's key reaches the engagements as
        // scalar subqueries, not a join, so that it bounds the index scan
        // whatever the plan (a join's key was seen applied as a filter over
        // the lead's whole log when PostgreSQL planned on stale statistics).
        let sql = "WITH cp AS (\
               SELECT occurred_at, event_id, state FROM score_checkpoints \
               WHERE workspace_id = $1 AND lead_id = $2 AND policy_version = $3 \
               AND (occurred_at, event_id) < ($4, $5) \
               ORDER BY occurred_at DESC, event_id DESC LIMIT 1) \
             SELECT 0 AS part, cp.state AS state, cp.event_id AS event_id, '' AS type, \
                    NULL AS channel, '' AS properties, cp.occurred_at AS occurred_at FROM cp \
             UNION ALL \
             SELECT 1, NULL, e.event_id, e.type, e.channel, e.properties, e.occurred_at \
             FROM engagements e WHERE e.workspace_id = $1 AND e.lead_id = $2 \
             AND (e.occurred_at, e.event_id) > ((SELECT occurred_at FROM cp), (SELECT event_id FROM cp)) \
             ORDER BY 1, 7, 3";
        let sql = match self.backend {
            Backend::Postgres => sql.to_owned(),
            Backend::Sqlite => sql.replace('$', "?"),
        };
        let statement = sea_orm::Statement::from_sql_and_values(
            self.txn.get_database_backend(),
            sql,
            [
                ws.into(),
                lead_id.into(),
                policy_version.into(),
                key.occurred_at.as_micros().into(),
                key.event_id.as_str().into(),
            ],
        );
        let rows = self.db().await?.query_all_raw(statement).await?;
        let mut rows = rows.into_iter();
        let Some(first) = rows.next() else {
            return Ok(None);
        };
        let state: Option<String> = first.try_get("", "state")?;
        let event_id: String = first.try_get("", "event_id")?;
        let checkpoint = serde_json::from_str(state.as_deref().unwrap_or_default())
            .map_err(|e| StoreError::corrupt("score_checkpoints", format!("{lead_id}/{event_id}"), e))?;
        let mut after = Vec::with_capacity(rows.len());
        for row in rows {
            let event_id: String = row.try_get("", "event_id")?;
            let properties: String = row.try_get("", "properties")?;
            after.push(Engagement {
                properties: serde_json::from_str(&properties)
                    .map_err(|e| StoreError::corrupt("engagements", &event_id, e))?,
                kind: row.try_get("", "type")?,
                channel: row.try_get("", "channel")?,
                occurred_at: convert::ts(row.try_get("", "occurred_at")?),
                event_id,
            });
        }
        Ok(Some((checkpoint, after)))
    }

    /// Keeps `checkpoints`, the lead's states under `policy_version`.
    async fn save_checkpoints(
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
    async fn drop_checkpoints(
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

    /// Drops the lead's checkpoints as [`Tx::drop_checkpoints`] does and
    /// keeps `checkpoints` in their place: on PostgreSQL in one statement.
    pub async fn replace_checkpoints(
        &self,
        ws: &str,
        lead_id: &str,
        policy_version: i64,
        from: Option<&EventKey>,
        checkpoints: &[Checkpoint],
    ) -> Result<(), StoreError> {
        if self.backend != Backend::Postgres || checkpoints.is_empty() || checkpoints.len() > INSERT_CHUNK {
            self.drop_checkpoints(ws, lead_id, policy_version, from).await?;
            return self
                .save_checkpoints(ws, lead_id, checkpoints, policy_version)
                .await;
        }
        let mut values: Vec<sea_orm::Value> = vec![ws.into(), lead_id.into(), policy_version.into()];
        let mut stale = "policy_version <> $3".to_owned();
        if let Some(key) = from {
            stale.push_str(" OR (occurred_at, event_id) >= ($4, $5)");
            values.push(key.occurred_at.as_micros().into());
            values.push(key.event_id.as_str().into());
        }
        let mut rows = Vec::with_capacity(checkpoints.len());
        for checkpoint in checkpoints {
            let Some(key) = checkpoint.key() else {
                continue;
            };
            let state = serde_json::to_string(checkpoint)
                .map_err(|e| StoreError::corrupt("score_checkpoints", lead_id, e))?;
            let n = values.len();
            rows.push(format!(
                "(${}::bigint, ${}::text, ${}::text)",
                n + 1,
                n + 2,
                n + 3
            ));
            values.push(key.occurred_at.as_micros().into());
            values.push(key.event_id.as_str().into());
            values.push(state.into());
        }
        if rows.is_empty() {
            return self.drop_checkpoints(ws, lead_id, policy_version, from).await;
        }
        // The rows kept are left out of the delete: a statement must not
        // both delete and update one row.
        let sql = format!(
            "WITH kept (occurred_at, event_id, state) AS (VALUES {}), \
             dropped AS (DELETE FROM score_checkpoints WHERE workspace_id = $1 AND lead_id = $2 \
               AND ({stale}) AND (occurred_at, event_id) NOT IN (SELECT occurred_at, event_id FROM kept)) \
             INSERT INTO score_checkpoints (workspace_id, lead_id, occurred_at, event_id, policy_version, state) \
             SELECT $1, $2, occurred_at, event_id, $3, state FROM kept \
             ON CONFLICT (workspace_id, lead_id, occurred_at, event_id) \
             DO UPDATE SET policy_version = excluded.policy_version, state = excluded.state",
            rows.join(", ")
        );
        let statement = sea_orm::Statement::from_sql_and_values(self.txn.get_database_backend(), sql, values);
        self.db().await?.execute_raw(statement).await?;
        Ok(())
    }
}
