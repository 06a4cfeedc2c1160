//! The workspaces table, in a write transaction: a workspace's row holds its
//! active policy version (its lock serialises policy changes) and the head
//! of its outbox (see `outbox.rs`).

use leadflow_domain::Timestamp;
use sea_orm::{ActiveValue::Set, EntityTrait, QuerySelect};

use super::Tx;
use crate::entity::workspace;
use crate::error::StoreError;

impl Tx {
    /// Creates the workspace if it does not exist.
    pub async fn ensure_workspace(&self, ws: &str, now: Timestamp) -> Result<(), StoreError> {
        workspace::Entity::insert(workspace::ActiveModel {
            id: Set(ws.to_owned()),
            active_policy_version: Set(None),
            outbox_head: Set(0),
            outbox_floor: Set(0),
            created_at: Set(now.as_micros()),
        })
        .on_conflict_do_nothing_on([workspace::Column::Id])
        .exec_without_returning(self.db().await?)
        .await?;
        Ok(())
    }

    /// The workspace's active policy version (`None` if the workspace does not exist).
    pub async fn active_policy_version(&self, ws: &str) -> Result<Option<Option<i64>>, StoreError> {
        Ok(workspace::Entity::find_by_id(ws.to_owned())
            .one(self.db().await?)
            .await?
            .map(|w| w.active_policy_version))
    }

    /// The workspace's active policy version, locking the workspace row until
    /// commit (policy changes are serialised per workspace).
    pub async fn lock_workspace(&self, ws: &str) -> Result<Option<Option<i64>>, StoreError> {
        Ok(workspace::Entity::find_by_id(ws.to_owned())
            .lock_exclusive()
            .one(self.db().await?)
            .await?
            .map(|w| w.active_policy_version))
    }
}
