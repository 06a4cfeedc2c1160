//! Merges in a write transaction: moving a duplicate's engagements and
//! anonymous ids to its survivor, keeping what it brought, and giving it
//! back on an unmerge.

use leadflow_domain::lifecycle::MergedAttributes;
use leadflow_domain::{Engagement, Stage, Timestamp};
use sea_orm::sea_query::{Expr, Func, OnConflict};
use sea_orm::{ActiveValue::Set, ColumnTrait, Condition, EntityTrait, QueryFilter, QueryOrder};

use super::Tx;
use crate::convert::ts;
use crate::entity::{anonymous_id, engagement, lead_match_key, merge};
use crate::error::StoreError;

/// Merges followed, at most, through merges of merges.
pub const MAX_MERGE_HOPS: usize = 64;

/// A merge as stored: what the duplicate brought to the survivor.
#[derive(Clone, Debug, PartialEq)]
pub struct MergeRecord {
    pub duplicate_id: String,
    pub survivor_id: String,
    pub merged_at: Timestamp,
    /// When it was recorded (the unmerge window counts from here).
    pub recorded_at: Timestamp,
    /// The duplicate's stage before the merge.
    pub stage: Stage,
    pub anonymous_ids: Vec<String>,
    pub attributes: MergedAttributes,
    pub merged_by: Option<String>,
    /// Made by `[identity] auto_merge_on` at a capture.
    pub automatic: bool,
    pub unmerged_at: Option<Timestamp>,
}

pub(crate) fn merge_record(row: merge::Model) -> Result<MergeRecord, StoreError> {
    let key = row.duplicate_id.clone();
    let corrupt = |e: &dyn std::fmt::Display| StoreError::corrupt("merges", key.clone(), e.to_string());
    Ok(MergeRecord {
        stage: row.stage.parse().map_err(|e| corrupt(&e))?,
        anonymous_ids: serde_json::from_str(&row.anonymous_ids).map_err(|e| corrupt(&e))?,
        attributes: serde_json::from_str(&row.attributes).map_err(|e| corrupt(&e))?,
        duplicate_id: row.duplicate_id,
        survivor_id: row.survivor_id,
        merged_at: ts(row.merged_at),
        recorded_at: ts(row.recorded_at),
        merged_by: row.merged_by,
        automatic: row.automatic,
        unmerged_at: row.unmerged_at.map(ts),
    })
}

impl crate::Store {
    /// The merge that made `duplicate_id` MERGED, if it stands.
    pub async fn merge_of(&self, ws: &str, duplicate_id: &str) -> Result<Option<MergeRecord>, StoreError> {
        merge::Entity::find_by_id((ws.to_owned(), duplicate_id.to_owned()))
            .filter(merge::Column::UnmergedAt.is_null())
            .one(self.reader())
            .await
            .map_err(|e| self.on_reader(e))?
            .map(merge_record)
            .transpose()
    }
}

impl crate::Store {
    /// The leads merged into `survivor`, and into those, and so on (their
    /// merges standing), breadth first: at most `limit`.
    pub async fn merged_closure(
        &self,
        ws: &str,
        survivor: &str,
        limit: usize,
    ) -> Result<Vec<String>, StoreError> {
        closure(self.reader(), ws, survivor, limit)
            .await
            .map_err(|e| self.on_reader(e))
    }

    /// The leads other than `except` holding one of `keys` (kind, value),
    /// each with the kinds it holds, by lead id.
    pub async fn leads_matching(
        &self,
        ws: &str,
        keys: &[(&str, &str)],
        except: &str,
        limit: u64,
    ) -> Result<Vec<(String, Vec<String>)>, StoreError> {
        matching(self.reader(), ws, keys, except, limit)
            .await
            .map_err(|e| self.on_reader(e))
    }
}

async fn closure(
    db: &impl sea_orm::ConnectionTrait,
    ws: &str,
    survivor: &str,
    limit: usize,
) -> Result<Vec<String>, sea_orm::DbErr> {
    let mut out: Vec<String> = Vec::new();
    let mut next = survivor.to_owned();
    let mut looked = 0;
    loop {
        let rows = merge::Entity::find()
            .filter(merge::Column::WorkspaceId.eq(ws))
            .filter(merge::Column::SurvivorId.eq(next.as_str()))
            .filter(merge::Column::UnmergedAt.is_null())
            .order_by_asc(merge::Column::DuplicateId)
            .all(db)
            .await?;
        for row in rows {
            if out.len() >= limit {
                return Ok(out);
            }
            out.push(row.duplicate_id);
        }
        let Some(id) = out.get(looked) else {
            return Ok(out);
        };
        next = id.clone();
        looked += 1;
    }
}

async fn matching(
    db: &impl sea_orm::ConnectionTrait,
    ws: &str,
    keys: &[(&str, &str)],
    except: &str,
    limit: u64,
) -> Result<Vec<(String, Vec<String>)>, sea_orm::DbErr> {
    use sea_orm::QuerySelect;
    if keys.is_empty() {
        return Ok(Vec::new());
    }
    let mut any = Condition::any();
    for (kind, value) in keys {
        any = any.add(
            Condition::all()
                .add(lead_match_key::Column::Kind.eq(*kind))
                .add(lead_match_key::Column::Value.eq(*value)),
        );
    }
    let rows = lead_match_key::Entity::find()
        .filter(lead_match_key::Column::WorkspaceId.eq(ws))
        .filter(lead_match_key::Column::LeadId.ne(except))
        .filter(any)
        .order_by_asc(lead_match_key::Column::LeadId)
        .order_by_asc(lead_match_key::Column::Kind)
        .limit(limit.saturating_mul(keys.len() as u64))
        .all(db)
        .await?;
    let mut out: Vec<(String, Vec<String>)> = Vec::new();
    for row in rows {
        match out.last_mut() {
            Some((lead, kinds)) if *lead == row.lead_id => kinds.push(row.kind),
            _ => out.push((row.lead_id, vec![row.kind])),
        }
    }
    out.truncate(usize::try_from(limit).unwrap_or(usize::MAX));
    Ok(out)
}

impl Tx {
    /// Replaces a lead's match keys (kind, value) by `keys` (`replace`:
    /// it may have some; a new lead has none).
    pub async fn set_match_keys(
        &self,
        ws: &str,
        lead_id: &str,
        keys: &[(&str, &str)],
        replace: bool,
    ) -> Result<(), StoreError> {
        if replace {
            lead_match_key::Entity::delete_many()
                .filter(lead_match_key::Column::WorkspaceId.eq(ws))
                .filter(lead_match_key::Column::LeadId.eq(lead_id))
                .exec(self.db().await?)
                .await?;
        }
        if keys.is_empty() {
            return Ok(());
        }
        let rows = keys.iter().map(|(kind, value)| lead_match_key::ActiveModel {
            workspace_id: Set(ws.to_owned()),
            kind: Set((*kind).to_owned()),
            value: Set((*value).to_owned()),
            lead_id: Set(lead_id.to_owned()),
        });
        lead_match_key::Entity::insert_many(rows)
            .on_conflict_do_nothing()
            .exec_without_returning(self.db().await?)
            .await?;
        Ok(())
    }

    /// Takes, until the transaction ends, a lock on each match key (kind,
    /// value) on PostgreSQL, in order: two captures of one person wait on
    /// each other, so the later one sees the first. SQLite has one writer
    /// at a time: nothing to take.
    pub async fn lock_match_keys(&self, ws: &str, keys: &[(&str, &str)]) -> Result<(), StoreError> {
        if self.backend != crate::backend::Backend::Postgres {
            return Ok(());
        }
        let mut names: Vec<String> = keys
            .iter()
            .map(|(k, v)| format!("{ws}\u{1f}{k}\u{1f}{v}"))
            .collect();
        names.sort_unstable();
        names.dedup();
        for name in names {
            let statement = sea_orm::Statement::from_sql_and_values(
                sea_orm::DbBackend::Postgres,
                "SELECT pg_advisory_xact_lock(hashtextextended($1, 7))",
                [name.into()],
            );
            sea_orm::ConnectionTrait::query_one_raw(self.db().await?, statement).await?;
        }
        Ok(())
    }

    /// [`crate::Store::leads_matching`] in this transaction.
    pub async fn leads_matching(
        &self,
        ws: &str,
        keys: &[(&str, &str)],
        except: &str,
        limit: u64,
    ) -> Result<Vec<(String, Vec<String>)>, StoreError> {
        Ok(matching(self.db().await?, ws, keys, except, limit).await?)
    }

    /// The merge that made `duplicate_id` MERGED, if it stands.
    pub async fn merge_of(&self, ws: &str, duplicate_id: &str) -> Result<Option<MergeRecord>, StoreError> {
        merge::Entity::find_by_id((ws.to_owned(), duplicate_id.to_owned()))
            .filter(merge::Column::UnmergedAt.is_null())
            .one(self.db().await?)
            .await?
            .map(merge_record)
            .transpose()
    }

    /// The leads merged into `survivor` (their merges standing).
    pub async fn merged_ids(&self, ws: &str, survivor: &str) -> Result<Vec<String>, StoreError> {
        Ok(merge::Entity::find()
            .filter(merge::Column::WorkspaceId.eq(ws))
            .filter(merge::Column::SurvivorId.eq(survivor))
            .filter(merge::Column::UnmergedAt.is_null())
            .order_by_asc(merge::Column::DuplicateId)
            .all(self.db().await?)
            .await?
            .into_iter()
            .map(|row| row.duplicate_id)
            .collect())
    }

    /// [`crate::Store::merged_closure`] in this transaction.
    pub async fn merged_closure(
        &self,
        ws: &str,
        survivor: &str,
        limit: usize,
    ) -> Result<Vec<String>, StoreError> {
        Ok(closure(self.db().await?, ws, survivor, limit).await?)
    }

    /// The lead that holds `id`'s log now: `id` itself, or, for a merged
    /// lead, its survivor (through merges of merges).
    pub async fn survivor_of(&self, ws: &str, id: &str) -> Result<String, StoreError> {
        let mut id = id.to_owned();
        for _ in 0..MAX_MERGE_HOPS {
            match self.merge_of(ws, &id).await? {
                Some(m) => id = m.survivor_id,
                None => break,
            }
        }
        Ok(id)
    }

    /// Moves every engagement of `from` to `to` and returns them, in log
    /// order.
    pub async fn move_engagements(
        &self,
        ws: &str,
        from: &str,
        to: &str,
    ) -> Result<Vec<Engagement>, StoreError> {
        let moved: Vec<Engagement> = engagement::Entity::find()
            .filter(engagement::Column::WorkspaceId.eq(ws))
            .filter(engagement::Column::LeadId.eq(from))
            .order_by_asc(engagement::Column::OccurredAt)
            .order_by_asc(engagement::Column::EventId)
            .all(self.db().await?)
            .await?
            .into_iter()
            .map(|row| crate::convert::engagement(row).map(|s| s.engagement))
            .collect::<Result<_, _>>()?;
        // Each marked with the lead it came from (unless it came from one
        // merged into that lead before): an unmerge gives back by the mark.
        engagement::Entity::update_many()
            .col_expr(engagement::Column::LeadId, Expr::value(to))
            .col_expr(
                engagement::Column::Via,
                Expr::expr(Func::coalesce([
                    Expr::col(engagement::Column::Via),
                    Expr::val(from),
                ])),
            )
            .filter(engagement::Column::WorkspaceId.eq(ws))
            .filter(engagement::Column::LeadId.eq(from))
            .exec(self.db().await?)
            .await?;
        Ok(moved)
    }

    /// Gives `duplicate` back, from `survivor`, the engagements it brought
    /// and those recorded since under its key — both marked with it, or
    /// with a lead merged into it before (`via`) — and under its anonymous
    /// ids: how many moved. Its own are unmarked.
    pub async fn return_engagements(
        &self,
        ws: &str,
        survivor: &str,
        duplicate: &str,
        anonymous_ids: &[String],
    ) -> Result<u64, StoreError> {
        let mut named = vec![duplicate.to_owned()];
        named.extend(self.merged_closure(ws, duplicate, MAX_MERGE_HOPS).await?);
        let mut whose = Condition::any().add(engagement::Column::Via.is_in(named));
        if !anonymous_ids.is_empty() {
            whose = whose.add(engagement::Column::AnonymousId.is_in(anonymous_ids.iter().cloned()));
        }
        let moved = engagement::Entity::update_many()
            .col_expr(engagement::Column::LeadId, Expr::value(duplicate))
            .filter(engagement::Column::WorkspaceId.eq(ws))
            .filter(engagement::Column::LeadId.eq(survivor))
            .filter(whose)
            .exec(self.db().await?)
            .await?
            .rows_affected;
        engagement::Entity::update_many()
            .col_expr(engagement::Column::Via, Expr::value(Option::<String>::None))
            .filter(engagement::Column::WorkspaceId.eq(ws))
            .filter(engagement::Column::LeadId.eq(duplicate))
            .filter(engagement::Column::Via.eq(duplicate))
            .exec(self.db().await?)
            .await?;
        Ok(moved)
    }

    /// Marks an engagement as recorded under a merged lead's key or
    /// anonymous id.
    pub async fn mark_via(&self, ws: &str, event_id: &str, duplicate: &str) -> Result<(), StoreError> {
        engagement::Entity::update_many()
            .col_expr(engagement::Column::Via, Expr::value(duplicate))
            .filter(engagement::Column::WorkspaceId.eq(ws))
            .filter(engagement::Column::EventId.eq(event_id))
            .exec(self.db().await?)
            .await?;
        Ok(())
    }

    /// Marks an engagement recorded for a lead under one of its anonymous
    /// ids with that id (an unmerge gives it back with the id).
    pub async fn mark_anonymous(
        &self,
        ws: &str,
        event_id: &str,
        anonymous_id: &str,
    ) -> Result<(), StoreError> {
        engagement::Entity::update_many()
            .col_expr(engagement::Column::AnonymousId, Expr::value(anonymous_id))
            .filter(engagement::Column::WorkspaceId.eq(ws))
            .filter(engagement::Column::EventId.eq(event_id))
            .exec(self.db().await?)
            .await?;
        Ok(())
    }

    /// Moves the anonymous ids identified as `from` to `to` (all of them,
    /// or only `only` when given); returns those moved, sorted.
    pub async fn move_anonymous_ids(
        &self,
        ws: &str,
        from: &str,
        to: &str,
        only: Option<&[String]>,
    ) -> Result<Vec<String>, StoreError> {
        let mut filter = Condition::all()
            .add(anonymous_id::Column::WorkspaceId.eq(ws))
            .add(anonymous_id::Column::LeadId.eq(from));
        if let Some(only) = only {
            if only.is_empty() {
                return Ok(Vec::new());
            }
            filter = filter.add(anonymous_id::Column::AnonymousId.is_in(only.iter().cloned()));
        }
        let ids: Vec<String> = anonymous_id::Entity::find()
            .filter(filter.clone())
            .order_by_asc(anonymous_id::Column::AnonymousId)
            .all(self.db().await?)
            .await?
            .into_iter()
            .map(|row| row.anonymous_id)
            .collect();
        anonymous_id::Entity::update_many()
            .col_expr(anonymous_id::Column::LeadId, Expr::value(to))
            .filter(filter)
            .exec(self.db().await?)
            .await?;
        Ok(ids)
    }

    /// Records a merge (replacing an undone one of the same duplicate).
    pub async fn save_merge(&self, ws: &str, m: &MergeRecord) -> Result<(), StoreError> {
        let key = m.duplicate_id.as_str();
        let row = merge::ActiveModel {
            workspace_id: Set(ws.to_owned()),
            duplicate_id: Set(m.duplicate_id.clone()),
            survivor_id: Set(m.survivor_id.clone()),
            merged_at: Set(m.merged_at.as_micros()),
            recorded_at: Set(m.recorded_at.as_micros()),
            stage: Set(m.stage.as_str().to_owned()),
            anonymous_ids: Set(to_json(key, &m.anonymous_ids)?),
            attributes: Set(to_json(key, &m.attributes)?),
            merged_by: Set(m.merged_by.clone()),
            automatic: Set(m.automatic),
            unmerged_at: Set(m.unmerged_at.map(Timestamp::as_micros)),
        };
        merge::Entity::insert(row)
            .on_conflict(
                OnConflict::columns([merge::Column::WorkspaceId, merge::Column::DuplicateId])
                    .update_columns([
                        merge::Column::SurvivorId,
                        merge::Column::MergedAt,
                        merge::Column::RecordedAt,
                        merge::Column::Stage,
                        merge::Column::AnonymousIds,
                        merge::Column::Attributes,
                        merge::Column::MergedBy,
                        merge::Column::Automatic,
                        merge::Column::UnmergedAt,
                    ])
                    .to_owned(),
            )
            .exec(self.db().await?)
            .await?;
        Ok(())
    }

    /// Forgets the merges into `lead` and of it, standing or undone (what
    /// was kept to undo them goes with them: an erase).
    pub async fn delete_merges(&self, ws: &str, lead: &str) -> Result<(), StoreError> {
        merge::Entity::delete_many()
            .filter(merge::Column::WorkspaceId.eq(ws))
            .filter(
                Condition::any()
                    .add(merge::Column::SurvivorId.eq(lead))
                    .add(merge::Column::DuplicateId.eq(lead)),
            )
            .exec(self.db().await?)
            .await?;
        Ok(())
    }

    /// Marks a duplicate's merge undone at `at`.
    pub async fn end_merge(&self, ws: &str, duplicate_id: &str, at: Timestamp) -> Result<(), StoreError> {
        merge::Entity::update_many()
            .col_expr(merge::Column::UnmergedAt, Expr::value(at.as_micros()))
            .filter(merge::Column::WorkspaceId.eq(ws))
            .filter(merge::Column::DuplicateId.eq(duplicate_id))
            .exec(self.db().await?)
            .await?;
        Ok(())
    }
}

fn to_json<T: serde::Serialize>(key: &str, value: &T) -> Result<String, StoreError> {
    serde_json::to_string(value).map_err(|e| StoreError::corrupt("merges", key, e))
}
