//! The policies table, in a write transaction: versions, stored and activated.

use leadflow_domain::Timestamp;
use sea_orm::sea_query::Expr;
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QueryOrder};

use super::Tx;
use crate::convert;
use crate::entity::{policy, workspace};
use crate::error::StoreError;
use crate::records::{NewPolicy, PolicyRecord};

impl Tx {
    pub async fn policy_by_checksum(
        &self,
        ws: &str,
        checksum: &str,
    ) -> Result<Option<PolicyRecord>, StoreError> {
        let active = self.lock_workspace(ws).await?.flatten();
        Ok(policy::Entity::find()
            .filter(policy::Column::WorkspaceId.eq(ws))
            .filter(policy::Column::Checksum.eq(checksum))
            .order_by_asc(policy::Column::Version)
            .one(self.db().await?)
            .await?
            .map(|row| convert::policy(row, active)))
    }

    /// Stores a new version, numbered one past the last. Call under
    /// [`Tx::lock_workspace`].
    pub async fn insert_policy(
        &self,
        ws: &str,
        new: &NewPolicy<'_>,
        now: Timestamp,
    ) -> Result<PolicyRecord, StoreError> {
        let last = policy::Entity::find()
            .filter(policy::Column::WorkspaceId.eq(ws))
            .order_by_desc(policy::Column::Version)
            .one(self.db().await?)
            .await?
            .map_or(0, |p| p.version);
        let row = policy::Model {
            workspace_id: ws.to_owned(),
            version: last + 1,
            name: new.name.to_owned(),
            description: new.description.to_owned(),
            source: new.source.to_owned(),
            checksum: new.checksum.to_owned(),
            created_at: now.as_micros(),
            activated_at: None,
            created_by: new.created_by.map(str::to_owned),
            activated_by: None,
        };
        policy::Entity::insert(policy::ActiveModel::from(row.clone()))
            .exec_without_returning(self.db().await?)
            .await?;
        Ok(convert::policy(row, None))
    }

    pub async fn policy(&self, ws: &str, version: i64) -> Result<Option<PolicyRecord>, StoreError> {
        let active = workspace::Entity::find_by_id(ws.to_owned())
            .one(self.db().await?)
            .await?
            .and_then(|w| w.active_policy_version);
        Ok(policy::Entity::find_by_id((ws.to_owned(), version))
            .one(self.db().await?)
            .await?
            .map(|row| convert::policy(row, active)))
    }

    /// Makes `version` the active one (it must exist).
    pub async fn activate_policy(
        &self,
        ws: &str,
        version: i64,
        now: Timestamp,
        by: Option<&str>,
    ) -> Result<(), StoreError> {
        workspace::Entity::update_many()
            .col_expr(workspace::Column::ActivePolicyVersion, Expr::value(version))
            .filter(workspace::Column::Id.eq(ws))
            .exec(self.db().await?)
            .await?;
        policy::Entity::update_many()
            .col_expr(policy::Column::ActivatedAt, Expr::value(now.as_micros()))
            .col_expr(policy::Column::ActivatedBy, Expr::value(by.map(str::to_owned)))
            .filter(policy::Column::WorkspaceId.eq(ws))
            .filter(policy::Column::Version.eq(version))
            .exec(self.db().await?)
            .await?;
        Ok(())
    }
}
