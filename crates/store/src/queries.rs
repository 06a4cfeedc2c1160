//! Queries run alike in a write transaction and outside one.

use leadflow_domain::Engagement;
use sea_orm::{ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder};

use crate::convert;
use crate::entity::engagement;
use crate::error::StoreError;

/// A lead's whole log, in scoring order.
pub(crate) async fn engagements_of<C: ConnectionTrait>(
    db: &C,
    ws: &str,
    lead_id: &str,
) -> Result<Vec<Engagement>, StoreError> {
    engagement::Entity::find()
        .filter(engagement::Column::WorkspaceId.eq(ws))
        .filter(engagement::Column::LeadId.eq(lead_id))
        .order_by_asc(engagement::Column::OccurredAt)
        .order_by_asc(engagement::Column::EventId)
        .all(db)
        .await?
        .into_iter()
        .map(|row| convert::engagement(row).map(|s| s.engagement))
        .collect()
}
