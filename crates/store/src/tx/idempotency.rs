//! The idempotent results table, in a write transaction: a request id's
//! stored answer, so that a retried call gets the first one's.

use leadflow_domain::Timestamp;
use sea_orm::{ActiveValue::Set, ColumnTrait, EntityTrait, QueryFilter};

use super::Tx;
use crate::convert;
use crate::entity::idempotency;
use crate::error::StoreError;
use crate::records::StoredResult;

impl Tx {
    pub async fn stored_result(
        &self,
        ws: &str,
        request_id: &str,
    ) -> Result<Option<StoredResult>, StoreError> {
        Ok(
            idempotency::Entity::find_by_id((ws.to_owned(), request_id.to_owned()))
                .one(self.db().await?)
                .await?
                .map(|r| StoredResult {
                    method: r.method,
                    fingerprint: r.fingerprint,
                    response: r.response,
                    created_at: convert::ts(r.created_at),
                }),
        )
    }

    pub async fn save_result(
        &self,
        ws: &str,
        request_id: &str,
        result: &StoredResult,
    ) -> Result<(), StoreError> {
        idempotency::Entity::insert(idempotency::ActiveModel {
            workspace_id: Set(ws.to_owned()),
            request_id: Set(request_id.to_owned()),
            method: Set(result.method.clone()),
            fingerprint: Set(result.fingerprint.clone()),
            response: Set(result.response.clone()),
            created_at: Set(result.created_at.as_micros()),
        })
        .exec_without_returning(self.db().await?)
        .await?;
        Ok(())
    }

    /// Forgets idempotent results recorded before `before`.
    pub async fn purge_results(&self, before: Timestamp) -> Result<u64, StoreError> {
        Ok(idempotency::Entity::delete_many()
            .filter(idempotency::Column::CreatedAt.lt(before.as_micros()))
            .exec(self.db().await?)
            .await?
            .rows_affected)
    }
}
