//! Owners: the sales reps and queues leads are handed to.

use leadflow_domain::Timestamp;
use leadflow_domain::routing::Owner;
use sea_orm::sea_query::LockType;
use sea_orm::{ActiveValue::Set, ColumnTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect};

use super::Tx;
use crate::convert::ts;
use crate::entity::owner;
use crate::error::StoreError;

/// An owner as stored.
#[derive(Clone, Debug, PartialEq)]
pub struct OwnerRecord {
    pub owner: Owner,
    pub version: i64,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    /// The token (by name) that made the last change.
    pub updated_by: Option<String>,
    /// Leads it owns in IQL, MQL or SQL (kept by routing; ignored when
    /// an owner is written).
    pub open_leads: i64,
}

pub(super) fn owner_record(row: owner::Model) -> Result<OwnerRecord, StoreError> {
    let labels = |json: &str| -> Result<Vec<String>, StoreError> {
        serde_json::from_str(json).map_err(|e| StoreError::corrupt("owners", row.id.clone(), e))
    };
    Ok(OwnerRecord {
        owner: Owner {
            teams: labels(&row.teams)?,
            territories: labels(&row.territories)?,
            capacity: row.capacity.and_then(|c| u32::try_from(c).ok()),
            weight: u32::try_from(row.weight).unwrap_or(1),
            available: row.available,
            display_name: row.display_name,
            id: row.id,
        },
        version: row.version,
        created_at: ts(row.created_at),
        updated_at: ts(row.updated_at),
        updated_by: row.updated_by,
        open_leads: row.open_leads,
    })
}

fn owner_row(ws: &str, r: &OwnerRecord) -> Result<owner::ActiveModel, StoreError> {
    let json = |labels: &[String]| {
        serde_json::to_string(labels).map_err(|e| StoreError::corrupt("owners", r.owner.id.clone(), e))
    };
    Ok(owner::ActiveModel {
        workspace_id: Set(ws.to_owned()),
        id: Set(r.owner.id.clone()),
        display_name: Set(r.owner.display_name.clone()),
        teams: Set(json(&r.owner.teams)?),
        territories: Set(json(&r.owner.territories)?),
        capacity: Set(r.owner.capacity.map(|c| i32::try_from(c).unwrap_or(i32::MAX))),
        weight: Set(i32::try_from(r.owner.weight).unwrap_or(i32::MAX)),
        available: Set(r.owner.available),
        version: Set(r.version),
        created_at: Set(r.created_at.as_micros()),
        updated_at: Set(r.updated_at.as_micros()),
        updated_by: Set(r.updated_by.clone()),
        // Kept by routing alone.
        open_leads: sea_orm::ActiveValue::NotSet,
    })
}

impl Tx {
    /// An owner, locked until commit (PostgreSQL).
    pub async fn lock_owner(&self, ws: &str, id: &str) -> Result<Option<OwnerRecord>, StoreError> {
        owner::Entity::find_by_id((ws.to_owned(), id.to_owned()))
            .lock(LockType::Update)
            .one(self.db().await?)
            .await?
            .map(owner_record)
            .transpose()
    }

    /// Writes a new owner: `false` when the id is taken.
    pub async fn insert_owner(&self, ws: &str, r: &OwnerRecord) -> Result<bool, StoreError> {
        let result = owner::Entity::insert(owner_row(ws, r)?)
            .on_conflict_do_nothing_on([owner::Column::WorkspaceId, owner::Column::Id])
            .exec_without_returning(self.db().await?)
            .await?;
        Ok(matches!(result, sea_orm::TryInsertResult::Inserted(n) if n > 0))
    }

    /// Replaces an owner's row.
    pub async fn update_owner(&self, ws: &str, r: &OwnerRecord) -> Result<(), StoreError> {
        owner::Entity::update(owner_row(ws, r)?)
            .exec(self.db().await?)
            .await?;
        Ok(())
    }
}

impl crate::Store {
    pub async fn owner(&self, ws: &str, id: &str) -> Result<Option<OwnerRecord>, StoreError> {
        owner::Entity::find_by_id((ws.to_owned(), id.to_owned()))
            .one(self.reader())
            .await
            .map_err(|e| self.on_reader(e))?
            .map(owner_record)
            .transpose()
    }

    /// A workspace's owners after `after`, by id, those of `team` only when
    /// given: at most `limit`, and whether more follow.
    pub async fn owners(
        &self,
        ws: &str,
        team: Option<&str>,
        after: Option<&str>,
        limit: usize,
    ) -> Result<(Vec<OwnerRecord>, bool), StoreError> {
        const PAGE: u64 = 500;
        let mut out = Vec::with_capacity(limit);
        let mut cursor = after.map(str::to_owned);
        loop {
            let mut q = owner::Entity::find().filter(owner::Column::WorkspaceId.eq(ws));
            if let Some(c) = &cursor {
                q = q.filter(owner::Column::Id.gt(c.as_str()));
            }
            let rows = q
                .order_by_asc(owner::Column::Id)
                .limit(PAGE)
                .all(self.reader())
                .await
                .map_err(|e| self.on_reader(e))?;
            let n = rows.len();
            for row in rows {
                cursor = Some(row.id.clone());
                let record = owner_record(row)?;
                if team.is_some_and(|t| !record.owner.in_team(t)) {
                    continue;
                }
                if out.len() == limit {
                    return Ok((out, true));
                }
                out.push(record);
            }
            if n < PAGE as usize {
                return Ok((out, false));
            }
        }
    }
}
