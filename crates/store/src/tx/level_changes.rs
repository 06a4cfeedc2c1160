//! The level_changes table, in a write transaction: a lead's MQL level
//! history, appended (held back under [`Tx::defer_writes`] like transitions).

use leadflow_domain::workflow::LevelChange;
use sea_orm::{ActiveValue::Set, EntityTrait};

use super::{INSERT_CHUNK, Tx};
use crate::convert;
use crate::entity::level_change;
use crate::error::StoreError;

impl Tx {
    /// Appends a lead's level changes (each numbered by the domain).
    pub async fn insert_level_changes(
        &self,
        ws: &str,
        lead_id: &str,
        changes: &[&LevelChange],
        policy_version: i64,
    ) -> Result<(), StoreError> {
        if changes.is_empty() {
            return Ok(());
        }
        let mut rows = Vec::with_capacity(changes.len());
        for l in changes {
            let (cause, cause_ref) = convert::cause_parts(&l.cause);
            rows.push(level_change::ActiveModel {
                workspace_id: Set(ws.to_owned()),
                lead_id: Set(lead_id.to_owned()),
                seq: Set(i64::try_from(l.seq).map_err(|e| StoreError::corrupt("level_changes", lead_id, e))?),
                from_level: Set(l.from.clone()),
                to_level: Set(l.to.clone()),
                at: Set(l.at.as_micros()),
                stage: Set(l.stage.as_str().to_owned()),
                cause: Set(cause.to_owned()),
                cause_ref: Set(cause_ref),
                fit: Set(l.fit),
                engagement: Set(l.engagement),
                policy_version: Set(policy_version),
                suppressed: Set(l.suppressed),
            });
        }
        if self.deferring() {
            self.pending().level_changes.extend(rows);
            return Ok(());
        }
        self.write_deferred_level_changes(&rows).await
    }

    pub(super) async fn write_deferred_level_changes(
        &self,
        rows: &[level_change::ActiveModel],
    ) -> Result<(), StoreError> {
        for chunk in rows.chunks(INSERT_CHUNK) {
            level_change::Entity::insert_many(chunk.to_vec())
                .exec_without_returning(&self.txn)
                .await?;
        }
        Ok(())
    }
}
