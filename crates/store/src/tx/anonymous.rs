//! Anonymous activity in a write transaction: recording an engagement under
//! an anonymous id (its events share the engagements table, and so the
//! workspace's event ids, with an empty lead), keeping at most a limit of
//! them per id, and joining an id's events to a lead.

use leadflow_domain::{Engagement, Timestamp};
use sea_orm::sea_query::{Expr, LockType, OnConflict};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter, QueryOrder, QuerySelect,
    QueryTrait,
};

use super::Tx;
use super::engagements::engagement_row;
use crate::entity::{anonymous_id, engagement};
use crate::error::StoreError;

/// The lead id of an anonymous id's events until it is identified.
pub const UNIDENTIFIED: &str = "";

/// An anonymous id as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AnonymousRecord {
    pub anonymous_id: String,
    /// The lead it joined, once identified.
    pub lead_id: Option<String>,
    pub identified_at: Option<Timestamp>,
    /// Events kept while unidentified.
    pub kept: i64,
    /// Its oldest events dropped over the limit.
    pub dropped: i64,
    pub first_seen_at: Timestamp,
    pub last_seen_at: Timestamp,
}

pub(crate) fn anonymous_record(row: anonymous_id::Model) -> AnonymousRecord {
    use crate::convert::ts;
    AnonymousRecord {
        anonymous_id: row.anonymous_id,
        lead_id: row.lead_id,
        identified_at: row.identified_at.map(ts),
        kept: row.kept,
        dropped: row.dropped,
        first_seen_at: ts(row.first_seen_at),
        last_seen_at: ts(row.last_seen_at),
    }
}

impl Tx {
    /// An anonymous id, locked until commit (PostgreSQL): its events and its
    /// identification are written one after the other.
    pub async fn lock_anonymous(&self, ws: &str, id: &str) -> Result<Option<AnonymousRecord>, StoreError> {
        Ok(anonymous_id::Entity::find_by_id((ws.to_owned(), id.to_owned()))
            .lock(LockType::Update)
            .one(self.db().await?)
            .await?
            .map(anonymous_record))
    }

    /// The lead an anonymous id was identified as, if it was.
    pub async fn anonymous_lead(&self, ws: &str, id: &str) -> Result<Option<String>, StoreError> {
        Ok(anonymous_lead(ws, id).one(self.db().await?).await?.flatten())
    }

    /// Notes an anonymous id as seen at `now` (creating it), and returns it
    /// locked until commit: the first statement of recording its event, so
    /// that an identification in between is seen.
    pub async fn touch_anonymous(
        &self,
        ws: &str,
        id: &str,
        now: Timestamp,
    ) -> Result<AnonymousRecord, StoreError> {
        let row = anonymous_id::ActiveModel {
            workspace_id: Set(ws.to_owned()),
            anonymous_id: Set(id.to_owned()),
            lead_id: Set(None),
            identified_at: Set(None),
            kept: Set(0),
            dropped: Set(0),
            first_seen_at: Set(now.as_micros()),
            last_seen_at: Set(now.as_micros()),
        };
        anonymous_id::Entity::insert(row)
            .on_conflict(
                OnConflict::columns([
                    anonymous_id::Column::WorkspaceId,
                    anonymous_id::Column::AnonymousId,
                ])
                .update_column(anonymous_id::Column::LastSeenAt)
                .to_owned(),
            )
            .exec_without_returning(self.db().await?)
            .await?;
        let row = anonymous_id::Entity::find_by_id((ws.to_owned(), id.to_owned()))
            .lock(LockType::Update)
            .one(self.db().await?)
            .await?
            .ok_or_else(|| StoreError::corrupt("anonymous_ids", id, "vanished after its upsert"))?;
        Ok(anonymous_record(row))
    }

    /// Records an engagement under an unidentified anonymous id, `seen` as
    /// [`Tx::touch_anonymous`] returned it, unless its event id is already
    /// recorded — false then, nothing written. Past `limit` kept events the
    /// id's oldest are dropped: their rows keep the event id, the type, the
    /// instant and the content's hash, nothing else.
    pub async fn insert_anonymous_engagement(
        &self,
        ws: &str,
        seen: &AnonymousRecord,
        e: &Engagement,
        fingerprint: &str,
        now: Timestamp,
        limit: u64,
    ) -> Result<bool, StoreError> {
        let id = seen.anonymous_id.as_str();
        let mut row = engagement_row(ws, UNIDENTIFIED, e, fingerprint, now)?;
        row.anonymous_id = Some(id.to_owned());
        let result = engagement::Entity::insert(engagement::ActiveModel::from(row))
            .on_conflict_do_nothing_on([engagement::Column::WorkspaceId, engagement::Column::EventId])
            .exec_without_returning(self.db().await?)
            .await?;
        if !matches!(result, sea_orm::TryInsertResult::Inserted(n) if n > 0) {
            return Ok(false);
        }
        // The count kept with the id, counted again only past the limit: a
        // purge may have taken old events away since.
        let mut kept = u64::try_from(seen.kept).unwrap_or(0) + 1;
        let mut over = 0;
        if kept > limit {
            kept = kept_events(ws, id).count(self.db().await?).await?;
            over = kept.saturating_sub(limit);
        }
        if over > 0 {
            let oldest: Vec<String> = kept_events(ws, id)
                .select_only()
                .column(engagement::Column::EventId)
                .limit(over)
                .into_tuple::<String>()
                .all(self.db().await?)
                .await?;
            engagement::Entity::update_many()
                .col_expr(engagement::Column::Dropped, Expr::value(true))
                .col_expr(engagement::Column::Properties, Expr::value("{}"))
                .col_expr(engagement::Column::Channel, Expr::value(Option::<String>::None))
                .filter(engagement::Column::WorkspaceId.eq(ws))
                .filter(engagement::Column::EventId.is_in(oldest.iter().map(String::as_str)))
                .exec(self.db().await?)
                .await?;
        }
        let over = i64::try_from(over).unwrap_or(i64::MAX);
        anonymous_id::Entity::update_many()
            .col_expr(
                anonymous_id::Column::Kept,
                Expr::value(i64::try_from(kept.min(limit)).unwrap_or(i64::MAX)),
            )
            .col_expr(anonymous_id::Column::Dropped, Expr::value(seen.dropped + over))
            .filter(anonymous_id::Column::WorkspaceId.eq(ws))
            .filter(anonymous_id::Column::AnonymousId.eq(id))
            .exec(self.db().await?)
            .await?;
        Ok(true)
    }

    /// Joins an unidentified anonymous id (locked) to a lead at `at`: its
    /// kept events become the lead's. Returns them in log order.
    pub async fn join_anonymous(
        &self,
        ws: &str,
        id: &str,
        lead_id: &str,
        at: Timestamp,
    ) -> Result<Vec<Engagement>, StoreError> {
        engagement::Entity::update_many()
            .col_expr(engagement::Column::LeadId, Expr::value(lead_id))
            .filter(engagement::Column::WorkspaceId.eq(ws))
            .filter(engagement::Column::AnonymousId.eq(id))
            .filter(engagement::Column::LeadId.eq(UNIDENTIFIED))
            .filter(engagement::Column::Dropped.eq(false))
            .exec(self.db().await?)
            .await?;
        // What was moved, read back: a row purged meanwhile is not among them.
        let events: Vec<Engagement> = engagement::Entity::find()
            .filter(engagement::Column::WorkspaceId.eq(ws))
            .filter(engagement::Column::AnonymousId.eq(id))
            .filter(engagement::Column::LeadId.eq(lead_id))
            .filter(engagement::Column::Dropped.eq(false))
            .order_by_asc(engagement::Column::OccurredAt)
            .order_by_asc(engagement::Column::EventId)
            .all(self.db().await?)
            .await?
            .into_iter()
            .map(|row| crate::convert::engagement(row).map(|s| s.engagement))
            .collect::<Result<_, _>>()?;
        anonymous_id::Entity::update_many()
            .col_expr(anonymous_id::Column::LeadId, Expr::value(lead_id))
            .col_expr(anonymous_id::Column::IdentifiedAt, Expr::value(at.as_micros()))
            .col_expr(anonymous_id::Column::Kept, Expr::value(0_i64))
            .filter(anonymous_id::Column::WorkspaceId.eq(ws))
            .filter(anonymous_id::Column::AnonymousId.eq(id))
            .exec(self.db().await?)
            .await?;
        Ok(events)
    }
}

impl Tx {
    /// Removes an unidentified anonymous id's activity (its events, dropped
    /// ones included, and the id): how many events. Call with it locked.
    pub async fn erase_anonymous(&self, ws: &str, id: &str) -> Result<u64, StoreError> {
        let erased = engagement::Entity::delete_many()
            .filter(engagement::Column::WorkspaceId.eq(ws))
            .filter(engagement::Column::AnonymousId.eq(id))
            .filter(engagement::Column::LeadId.eq(UNIDENTIFIED))
            .exec(self.db().await?)
            .await?
            .rows_affected;
        anonymous_id::Entity::delete_many()
            .filter(anonymous_id::Column::WorkspaceId.eq(ws))
            .filter(anonymous_id::Column::AnonymousId.eq(id))
            .filter(anonymous_id::Column::LeadId.is_null())
            .exec(self.db().await?)
            .await?;
        Ok(erased)
    }

    /// Purges a workspace's unidentified activity received before `cutoff`,
    /// and the ids not seen since: how many events.
    pub async fn purge_anonymous(&self, ws: &str, cutoff: Timestamp) -> Result<u64, StoreError> {
        // Not the dropped events of an identified id: their event ids are
        // its lead's to know.
        let identified = anonymous_id::Entity::find()
            .select_only()
            .column(anonymous_id::Column::AnonymousId)
            .filter(anonymous_id::Column::WorkspaceId.eq(ws))
            .filter(anonymous_id::Column::LeadId.is_not_null())
            .into_query();
        let purged = engagement::Entity::delete_many()
            .filter(engagement::Column::WorkspaceId.eq(ws))
            .filter(engagement::Column::LeadId.eq(UNIDENTIFIED))
            .filter(engagement::Column::RecordedAt.lt(cutoff.as_micros()))
            .filter(engagement::Column::AnonymousId.not_in_subquery(identified))
            .exec(self.db().await?)
            .await?
            .rows_affected;
        anonymous_id::Entity::delete_many()
            .filter(anonymous_id::Column::WorkspaceId.eq(ws))
            .filter(anonymous_id::Column::LeadId.is_null())
            .filter(anonymous_id::Column::LastSeenAt.lt(cutoff.as_micros()))
            .exec(self.db().await?)
            .await?;
        Ok(purged)
    }
}

/// The lead an anonymous id joined.
pub(crate) fn anonymous_lead(
    ws: &str,
    id: &str,
) -> sea_orm::Selector<sea_orm::SelectGetableTuple<Option<String>>> {
    anonymous_id::Entity::find()
        .select_only()
        .column(anonymous_id::Column::LeadId)
        .filter(anonymous_id::Column::WorkspaceId.eq(ws))
        .filter(anonymous_id::Column::AnonymousId.eq(id))
        .into_tuple::<Option<String>>()
}

impl crate::Store {
    /// The leads of those of `ids` that were identified, by anonymous id.
    pub async fn anonymous_leads(
        &self,
        ws: &str,
        ids: &[&str],
    ) -> Result<std::collections::HashMap<String, String>, StoreError> {
        let mut found = std::collections::HashMap::new();
        for chunk in ids.chunks(super::INSERT_CHUNK) {
            let rows: Vec<(String, Option<String>)> = anonymous_id::Entity::find()
                .select_only()
                .column(anonymous_id::Column::AnonymousId)
                .column(anonymous_id::Column::LeadId)
                .filter(anonymous_id::Column::WorkspaceId.eq(ws))
                .filter(anonymous_id::Column::AnonymousId.is_in(chunk.iter().copied()))
                .into_tuple()
                .all(self.reader())
                .await
                .map_err(|e| self.on_reader(e))?;
            found.extend(rows.into_iter().filter_map(|(id, lead)| Some((id, lead?))));
        }
        Ok(found)
    }

    /// The lead an anonymous id was identified as, if it was.
    pub async fn anonymous_lead(&self, ws: &str, id: &str) -> Result<Option<String>, StoreError> {
        Ok(anonymous_lead(ws, id)
            .one(self.reader())
            .await
            .map_err(|e| self.on_reader(e))?
            .flatten())
    }
}

/// An unidentified id's kept events, oldest first (in log order).
fn kept_events(ws: &str, id: &str) -> sea_orm::Select<engagement::Entity> {
    engagement::Entity::find()
        .filter(engagement::Column::WorkspaceId.eq(ws))
        .filter(engagement::Column::AnonymousId.eq(id))
        .filter(engagement::Column::LeadId.eq(UNIDENTIFIED))
        .filter(engagement::Column::Dropped.eq(false))
        .order_by_asc(engagement::Column::OccurredAt)
        .order_by_asc(engagement::Column::EventId)
}
