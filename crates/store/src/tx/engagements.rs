//! The engagements table, in a write transaction: a lead's log, and
//! recording engagements once per event id.

use std::collections::HashSet;

use leadflow_domain::workflow::Trigger;
use leadflow_domain::{Engagement, Timestamp};
use sea_orm::sea_query::{Expr, OnConflict};
use sea_orm::{ColumnTrait, ConnectionTrait as _, EntityTrait, QueryFilter};

use super::{INSERT_CHUNK, Tx};
use crate::convert;
use crate::entity::engagement;
use crate::error::StoreError;
use crate::records::{NewEngagement, StoredEngagement};

impl Tx {
    pub async fn engagement(&self, ws: &str, event_id: &str) -> Result<Option<StoredEngagement>, StoreError> {
        engagement::Entity::find_by_id((ws.to_owned(), event_id.to_owned()))
            .one(self.db().await?)
            .await?
            .map(convert::engagement)
            .transpose()
    }

    /// A lead's whole log, in scoring order.
    pub async fn engagements_of(&self, ws: &str, lead_id: &str) -> Result<Vec<Engagement>, StoreError> {
        crate::queries::engagements_of(self.db().await?, ws, lead_id).await
    }

    /// Records an engagement unless its event id is already recorded;
    /// false if it was (nothing written).
    pub async fn insert_engagement_if_new(
        &self,
        ws: &str,
        lead_id: &str,
        e: &Engagement,
        fingerprint: &str,
        now: Timestamp,
    ) -> Result<bool, StoreError> {
        let result = engagement::Entity::insert(engagement_model(ws, lead_id, e, fingerprint, now)?)
            .on_conflict_do_nothing_on([engagement::Column::WorkspaceId, engagement::Column::EventId])
            .exec_without_returning(self.db().await?)
            .await?;
        Ok(matches!(result, sea_orm::TryInsertResult::Inserted(n) if n > 0))
    }

    /// Records each engagement whose event id is not recorded yet, in one
    /// statement (a few for very large batches), and returns the event ids
    /// it recorded: the others were recorded before (or earlier in the
    /// list). The key's own index decides, not a plan.
    pub async fn insert_engagements_if_new(
        &self,
        ws: &str,
        items: &[NewEngagement<'_>],
        now: Timestamp,
    ) -> Result<HashSet<String>, StoreError> {
        use sea_orm::QueryTrait as _;
        let mut inserted = HashSet::with_capacity(items.len());
        let rows = items
            .iter()
            .map(|i| engagement_model(ws, i.lead_id, i.engagement, i.fingerprint, now))
            .collect::<Result<Vec<_>, _>>()?;
        for chunk in rows.chunks(INSERT_CHUNK) {
            let mut insert = engagement::Entity::insert_many(chunk.to_vec()).on_conflict(
                OnConflict::columns([engagement::Column::WorkspaceId, engagement::Column::EventId])
                    .do_nothing()
                    .to_owned(),
            );
            insert.query().returning_col(engagement::Column::EventId);
            let statement = insert.build(self.txn.get_database_backend());
            for row in self.db().await?.query_all_raw(statement).await? {
                inserted.insert(row.try_get::<String>("", "event_id")?);
            }
        }
        Ok(inserted)
    }

    /// Notes the workflow triggers an engagement set off (for a repeat of its event id).
    pub async fn set_engagement_triggers(
        &self,
        ws: &str,
        event_id: &str,
        triggers: &[Trigger],
    ) -> Result<(), StoreError> {
        let json =
            serde_json::to_string(triggers).map_err(|x| StoreError::corrupt("engagements", event_id, x))?;
        engagement::Entity::update_many()
            .col_expr(engagement::Column::CausedTriggers, Expr::value(json))
            .filter(engagement::Column::WorkspaceId.eq(ws))
            .filter(engagement::Column::EventId.eq(event_id))
            .exec(self.db().await?)
            .await?;
        Ok(())
    }
}

/// An engagement's row, as plain values.
pub(super) fn engagement_row(
    ws: &str,
    lead_id: &str,
    e: &Engagement,
    fingerprint: &str,
    now: Timestamp,
) -> Result<engagement::Model, StoreError> {
    let properties = serde_json::to_string(&e.properties)
        .map_err(|x| StoreError::corrupt("engagements", &e.event_id, x))?;
    Ok(engagement::Model {
        workspace_id: ws.to_owned(),
        event_id: e.event_id.clone(),
        lead_id: lead_id.to_owned(),
        kind: e.kind.clone(),
        channel: e.channel.clone(),
        properties,
        occurred_at: e.occurred_at.as_micros(),
        recorded_at: now.as_micros(),
        fingerprint: fingerprint.to_owned(),
        caused_triggers: None,
        anonymous_id: None,
        dropped: false,
        via: None,
    })
}

fn engagement_model(
    ws: &str,
    lead_id: &str,
    e: &Engagement,
    fingerprint: &str,
    now: Timestamp,
) -> Result<engagement::ActiveModel, StoreError> {
    engagement_row(ws, lead_id, e, fingerprint, now).map(engagement::ActiveModel::from)
}
