//! Workspaces and API tokens, as the CLI manages them and the server checks
//! them.

use leadflow_domain::Timestamp;
use sea_orm::sea_query::Expr;
use sea_orm::{ActiveValue::Set, ColumnTrait, EntityTrait, QueryFilter, QueryOrder};

use crate::Store;
use crate::convert;
use crate::entity::{token, workspace};
use crate::error::StoreError;

/// A stored token, without its secret (only a hash of it is kept).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenRecord {
    pub workspace: String,
    pub id: String,
    pub name: String,
    pub scopes: Vec<String>,
    pub created_at: Timestamp,
    pub expires_at: Option<Timestamp>,
    pub revoked_at: Option<Timestamp>,
}

impl TokenRecord {
    /// Neither revoked nor expired at `now`.
    pub fn is_live(&self, now: Timestamp) -> bool {
        self.revoked_at.is_none() && self.expires_at.is_none_or(|at| at > now)
    }
}

/// A workspace as listed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WorkspaceRecord {
    pub id: String,
    pub created_at: Timestamp,
    pub active_policy_version: Option<i64>,
}

fn record(row: token::Model) -> TokenRecord {
    TokenRecord {
        workspace: row.workspace_id,
        id: row.id,
        name: row.name,
        scopes: row.scopes.split_whitespace().map(str::to_owned).collect(),
        created_at: convert::ts(row.created_at),
        expires_at: row.expires_at.map(convert::ts),
        revoked_at: row.revoked_at.map(convert::ts),
    }
}

impl Store {
    /// Creates a workspace; false if it exists already.
    pub async fn create_workspace(&self, ws: &str, now: Timestamp) -> Result<bool, StoreError> {
        let result = workspace::Entity::insert(workspace::ActiveModel {
            id: Set(ws.to_owned()),
            active_policy_version: Set(None),
            outbox_head: Set(0),
            outbox_floor: Set(0),
            created_at: Set(now.as_micros()),
        })
        .on_conflict_do_nothing_on([workspace::Column::Id])
        .exec_without_returning(self.writer())
        .await
        .map_err(|e| self.on_writer(e))?;
        Ok(matches!(result, sea_orm::TryInsertResult::Inserted(n) if n > 0))
    }

    pub async fn workspace_list(&self) -> Result<Vec<WorkspaceRecord>, StoreError> {
        Ok(workspace::Entity::find()
            .order_by_asc(workspace::Column::Id)
            .all(self.reader())
            .await
            .map_err(|e| self.on_reader(e))?
            .into_iter()
            .map(|w| WorkspaceRecord {
                id: w.id,
                created_at: convert::ts(w.created_at),
                active_policy_version: w.active_policy_version,
            })
            .collect())
    }

    pub async fn workspace_exists(&self, ws: &str) -> Result<bool, StoreError> {
        Ok(workspace::Entity::find_by_id(ws.to_owned())
            .one(self.reader())
            .await
            .map_err(|e| self.on_reader(e))?
            .is_some())
    }

    /// Stores a token (its secret's hash, never the secret).
    pub async fn insert_token(&self, token: &TokenRecord, secret_hash: &str) -> Result<(), StoreError> {
        token::Entity::insert(token::ActiveModel {
            workspace_id: Set(token.workspace.clone()),
            id: Set(token.id.clone()),
            name: Set(token.name.clone()),
            secret_hash: Set(secret_hash.to_owned()),
            scopes: Set(token.scopes.join(" ")),
            created_at: Set(token.created_at.as_micros()),
            expires_at: Set(token.expires_at.map(Timestamp::as_micros)),
            revoked_at: Set(None),
        })
        .exec_without_returning(self.writer())
        .await
        .map_err(|e| self.on_writer(e))?;
        Ok(())
    }

    /// A workspace's tokens, oldest first (every workspace's if `None`).
    pub async fn tokens(&self, ws: Option<&str>) -> Result<Vec<TokenRecord>, StoreError> {
        let mut query = token::Entity::find();
        if let Some(ws) = ws {
            query = query.filter(token::Column::WorkspaceId.eq(ws));
        }
        Ok(query
            .order_by_asc(token::Column::WorkspaceId)
            .order_by_asc(token::Column::CreatedAt)
            .order_by_asc(token::Column::Id)
            .all(self.reader())
            .await
            .map_err(|e| self.on_reader(e))?
            .into_iter()
            .map(record)
            .collect())
    }

    /// The token whose secret hashes to `secret_hash`, if any.
    pub async fn token_by_hash(&self, secret_hash: &str) -> Result<Option<TokenRecord>, StoreError> {
        Ok(token::Entity::find()
            .filter(token::Column::SecretHash.eq(secret_hash))
            .one(self.reader())
            .await
            .map_err(|e| self.on_reader(e))?
            .map(record))
    }

    /// Revokes a token of the workspace, by id or name (every live token of
    /// that name); returns how many were revoked.
    pub async fn revoke_token(&self, ws: &str, id_or_name: &str, now: Timestamp) -> Result<u64, StoreError> {
        Ok(token::Entity::update_many()
            .col_expr(token::Column::RevokedAt, Expr::value(now.as_micros()))
            .filter(token::Column::WorkspaceId.eq(ws))
            .filter(
                sea_orm::Condition::any()
                    .add(token::Column::Id.eq(id_or_name))
                    .add(token::Column::Name.eq(id_or_name)),
            )
            .filter(token::Column::RevokedAt.is_null())
            .exec(self.writer())
            .await
            .map_err(|e| self.on_writer(e))?
            .rows_affected)
    }
}
