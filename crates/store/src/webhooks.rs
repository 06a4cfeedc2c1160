//! Webhook endpoints and their deliveries. An endpoint's durable cursor and
//! lease are its relay row, named [`relay_name`]; creating an endpoint
//! makes it, and deleting or disabling one removes it, which releases the
//! events it held.

use leadflow_domain::Timestamp;
use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveValue, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect,
    TransactionTrait,
};

use crate::Store;
use crate::convert::ts;
use crate::entity::{relay, webhook, webhook_delivery};
use crate::error::StoreError;
use crate::records::NewOutboxEvent;

/// What every endpoint's relay row is named with, before its id.
pub const RELAY_PREFIX: &str = "webhook:";

/// The relay row of endpoint `id`.
pub fn relay_name(id: &str) -> String {
    format!("{RELAY_PREFIX}{id}")
}

/// A webhook endpoint as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WebhookRecord {
    pub id: String,
    pub url: String,
    pub description: String,
    /// The event filter, JSON.
    pub filter: String,
    pub secret: String,
    pub previous_secret: Option<String>,
    /// The previous secret signs too until then (micros).
    pub previous_until: i64,
    pub enabled: bool,
    pub disabled_reason: Option<String>,
    /// The highest sequence read into its deliveries.
    pub read: i64,
    pub failing_since: Option<Timestamp>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

/// Where a delivery stands.
pub const DELIVERY_PENDING: &str = "PENDING";
pub const DELIVERY_RETRYING: &str = "RETRYING";
pub const DELIVERY_PARKED: &str = "PARKED";
pub const DELIVERY_DELIVERED: &str = "DELIVERED";
pub const DELIVERY_SKIPPED: &str = "SKIPPED";

/// One event's delivery to one endpoint.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeliveryRecord {
    pub seq: i64,
    pub event_id: String,
    pub subject: String,
    /// One of the `DELIVERY_*` statuses.
    pub status: String,
    pub attempts: i32,
    pub first_attempt_at: Option<Timestamp>,
    pub next_attempt_at: Timestamp,
    pub last_attempt_at: Option<Timestamp>,
    pub last_status_code: Option<i32>,
    pub last_error: String,
    pub resolved_at: Option<Timestamp>,
}

/// Removes endpoint `id`'s relay row: the events it held are released.
async fn release_retention(tx: &sea_orm::DatabaseTransaction, ws: &str, id: &str) -> Result<(), StoreError> {
    relay::Entity::delete_many()
        .filter(relay::Column::WorkspaceId.eq(ws))
        .filter(relay::Column::Name.eq(relay_name(id)))
        .exec(tx)
        .await?;
    Ok(())
}

fn webhook_record(row: webhook::Model) -> WebhookRecord {
    WebhookRecord {
        id: row.id,
        url: row.url,
        description: row.description,
        filter: row.filter,
        secret: row.secret,
        previous_secret: row.previous_secret,
        previous_until: row.previous_until,
        enabled: row.enabled,
        disabled_reason: row.disabled_reason,
        read: row.read_to,
        failing_since: row.failing_since.map(ts),
        created_at: ts(row.created_at),
        updated_at: ts(row.updated_at),
    }
}

fn delivery_record(row: webhook_delivery::Model) -> DeliveryRecord {
    DeliveryRecord {
        seq: row.seq,
        event_id: row.event_id,
        subject: row.subject,
        status: row.status,
        attempts: row.attempts,
        first_attempt_at: row.first_attempt_at.map(ts),
        next_attempt_at: ts(row.next_attempt_at),
        last_attempt_at: row.last_attempt_at.map(ts),
        last_status_code: row.last_status_code,
        last_error: row.last_error,
        resolved_at: row.resolved_at.map(ts),
    }
}

fn delivery_model(ws: &str, webhook_id: &str, d: &DeliveryRecord) -> webhook_delivery::Model {
    webhook_delivery::Model {
        workspace_id: ws.to_owned(),
        webhook_id: webhook_id.to_owned(),
        seq: d.seq,
        event_id: d.event_id.clone(),
        subject: d.subject.clone(),
        status: d.status.clone(),
        attempts: d.attempts,
        first_attempt_at: d.first_attempt_at.map(Timestamp::as_micros),
        next_attempt_at: d.next_attempt_at.as_micros(),
        last_attempt_at: d.last_attempt_at.map(Timestamp::as_micros),
        last_status_code: d.last_status_code,
        last_error: d.last_error.clone(),
        resolved_at: d.resolved_at.map(Timestamp::as_micros),
    }
}

impl Store {
    /// Stores a new endpoint of `ws` and its relay row at `cursor` (every
    /// event up to it is before the endpoint's start).
    pub async fn insert_webhook(&self, ws: &str, w: &WebhookRecord, cursor: i64) -> Result<(), StoreError> {
        let tx = self.writer().begin().await.map_err(|e| self.on_writer(e))?;
        webhook::Entity::insert(webhook::ActiveModel::from(webhook::Model {
            workspace_id: ws.to_owned(),
            id: w.id.clone(),
            url: w.url.clone(),
            description: w.description.clone(),
            filter: w.filter.clone(),
            secret: w.secret.clone(),
            previous_secret: w.previous_secret.clone(),
            previous_until: w.previous_until,
            enabled: w.enabled,
            disabled_reason: w.disabled_reason.clone(),
            read_to: cursor,
            failing_since: w.failing_since.map(Timestamp::as_micros),
            created_at: w.created_at.as_micros(),
            updated_at: w.updated_at.as_micros(),
        }))
        .exec(&tx)
        .await?;
        relay::Entity::insert(relay::ActiveModel::from(relay::Model {
            workspace_id: ws.to_owned(),
            name: relay_name(&w.id),
            cursor,
            holder: String::new(),
            lease_until: 0,
            created_at: w.created_at.as_micros(),
            moved_at: w.created_at.as_micros(),
        }))
        .exec(&tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    pub async fn webhook(&self, ws: &str, id: &str) -> Result<Option<WebhookRecord>, StoreError> {
        Ok(webhook::Entity::find_by_id((ws.to_owned(), id.to_owned()))
            .one(self.reader())
            .await
            .map_err(|e| self.on_reader(e))?
            .map(webhook_record))
    }

    /// The endpoints of `ws`, oldest first.
    pub async fn list_webhooks(&self, ws: &str) -> Result<Vec<WebhookRecord>, StoreError> {
        Ok(webhook::Entity::find()
            .filter(webhook::Column::WorkspaceId.eq(ws))
            .order_by_asc(webhook::Column::CreatedAt)
            .order_by_asc(webhook::Column::Id)
            .all(self.reader())
            .await
            .map_err(|e| self.on_reader(e))?
            .into_iter()
            .map(webhook_record)
            .collect())
    }

    /// Each endpoint's open deliveries by status: (webhook id, status, count),
    /// in one statement.
    pub async fn open_delivery_counts(&self, ws: &str) -> Result<Vec<(String, String, i64)>, StoreError> {
        webhook_delivery::Entity::find()
            .select_only()
            .column(webhook_delivery::Column::WebhookId)
            .column(webhook_delivery::Column::Status)
            .column_as(webhook_delivery::Column::Seq.count(), "n")
            .filter(webhook_delivery::Column::WorkspaceId.eq(ws))
            .filter(webhook_delivery::Column::ResolvedAt.is_null())
            .group_by(webhook_delivery::Column::WebhookId)
            .group_by(webhook_delivery::Column::Status)
            .into_tuple()
            .all(self.reader())
            .await
            .map_err(|e| self.on_reader(e))
    }

    /// Removes an endpoint, its deliveries and its relay row: false if unknown.
    pub async fn delete_webhook(&self, ws: &str, id: &str) -> Result<bool, StoreError> {
        let tx = self.writer().begin().await.map_err(|e| self.on_writer(e))?;
        let deleted = webhook::Entity::delete_many()
            .filter(webhook::Column::WorkspaceId.eq(ws))
            .filter(webhook::Column::Id.eq(id))
            .exec(&tx)
            .await?
            .rows_affected
            > 0;
        webhook_delivery::Entity::delete_many()
            .filter(webhook_delivery::Column::WorkspaceId.eq(ws))
            .filter(webhook_delivery::Column::WebhookId.eq(id))
            .exec(&tx)
            .await?;
        release_retention(&tx, ws, id).await?;
        tx.commit().await?;
        Ok(deleted)
    }

    /// A new signing secret; the current one keeps signing until
    /// `previous_until` (micros). `None` if unknown.
    pub async fn rotate_webhook_secret(
        &self,
        ws: &str,
        id: &str,
        secret: &str,
        previous_until: i64,
        now: Timestamp,
    ) -> Result<Option<WebhookRecord>, StoreError> {
        let tx = self.writer().begin().await.map_err(|e| self.on_writer(e))?;
        let Some(row) = webhook::Entity::find_by_id((ws.to_owned(), id.to_owned()))
            .lock_exclusive()
            .one(&tx)
            .await?
        else {
            return Ok(None);
        };
        let mut active: webhook::ActiveModel = row.clone().into();
        active.previous_secret = ActiveValue::Set(Some(row.secret));
        active.previous_until = ActiveValue::Set(previous_until);
        active.secret = ActiveValue::Set(secret.to_owned());
        active.updated_at = ActiveValue::Set(now.as_micros());
        let updated = webhook::Entity::update(active).exec(&tx).await?;
        tx.commit().await?;
        Ok(Some(webhook_record(updated)))
    }

    /// Disables an endpoint, saying why, removes its relay row (it no
    /// longer holds events) and writes `event`, which says so, in the same
    /// transaction: false, and nothing written, if unknown or already
    /// disabled.
    pub async fn disable_webhook(
        &self,
        ws: &str,
        id: &str,
        reason: &str,
        now: Timestamp,
        event: NewOutboxEvent,
    ) -> Result<bool, StoreError> {
        let tx = self.begin().await?;
        let db = tx.db().await?;
        let disabled = webhook::Entity::update_many()
            .col_expr(webhook::Column::Enabled, Expr::value(false))
            .col_expr(webhook::Column::DisabledReason, Expr::value(reason))
            .col_expr(webhook::Column::UpdatedAt, Expr::value(now.as_micros()))
            .filter(webhook::Column::WorkspaceId.eq(ws))
            .filter(webhook::Column::Id.eq(id))
            .filter(webhook::Column::Enabled.eq(true))
            .exec(db)
            .await?
            .rows_affected
            > 0;
        if !disabled {
            return Ok(false);
        }
        release_retention(db, ws, id).await?;
        tx.append_outbox(ws, vec![event]);
        tx.commit().await?;
        Ok(true)
    }

    /// Notes since when every attempt to the endpoint fails (`None`: one succeeded).
    pub async fn set_webhook_failing(
        &self,
        ws: &str,
        id: &str,
        since: Option<Timestamp>,
    ) -> Result<(), StoreError> {
        webhook::Entity::update_many()
            .col_expr(
                webhook::Column::FailingSince,
                Expr::value(since.map(Timestamp::as_micros)),
            )
            .filter(webhook::Column::WorkspaceId.eq(ws))
            .filter(webhook::Column::Id.eq(id))
            .exec(self.writer())
            .await
            .map_err(|e| self.on_writer(e))?;
        Ok(())
    }

    /// The endpoint's deliveries not yet resolved, by sequence.
    pub async fn open_deliveries(&self, ws: &str, id: &str) -> Result<Vec<DeliveryRecord>, StoreError> {
        Ok(webhook_delivery::Entity::find()
            .filter(webhook_delivery::Column::WorkspaceId.eq(ws))
            .filter(webhook_delivery::Column::WebhookId.eq(id))
            .filter(webhook_delivery::Column::ResolvedAt.is_null())
            .order_by_asc(webhook_delivery::Column::Seq)
            .all(self.reader())
            .await
            .map_err(|e| self.on_reader(e))?
            .into_iter()
            .map(delivery_record)
            .collect())
    }

    /// New deliveries of the events read up to `read`, in one transaction
    /// with the endpoint's read position (never moved back): false, and
    /// nothing written, when the endpoint is gone.
    pub async fn add_deliveries(
        &self,
        ws: &str,
        id: &str,
        deliveries: &[DeliveryRecord],
        read: i64,
    ) -> Result<bool, StoreError> {
        let tx = self.writer().begin().await.map_err(|e| self.on_writer(e))?;
        let moved = tx
            .execute_raw(self.sql(
                "UPDATE webhooks SET read_to = CASE WHEN read_to < $3 THEN $3 ELSE read_to END \
                 WHERE workspace_id = $1 AND id = $2",
                vec![ws.into(), id.into(), read.into()],
            ))
            .await?;
        if moved.rows_affected() == 0 {
            tx.rollback().await?;
            return Ok(false);
        }
        if !deliveries.is_empty() {
            webhook_delivery::Entity::insert_many(
                deliveries
                    .iter()
                    .map(|d| webhook_delivery::ActiveModel::from(delivery_model(ws, id, d))),
            )
            .on_conflict_do_nothing_on([
                webhook_delivery::Column::WorkspaceId,
                webhook_delivery::Column::WebhookId,
                webhook_delivery::Column::Seq,
            ])
            .exec(&tx)
            .await?;
        }
        tx.commit().await?;
        Ok(true)
    }

    /// Writes a delivery's new state if it still stands as `was` says
    /// (open, with that status and that many attempts): false if it
    /// changed meanwhile (skipped or retried by a call, attempted by
    /// another replica) or is gone.
    pub async fn update_delivery(
        &self,
        ws: &str,
        id: &str,
        was: &DeliveryRecord,
        d: &DeliveryRecord,
    ) -> Result<bool, StoreError> {
        Ok(self.update_deliveries(ws, id, &[(was, d)]).await?.first() == Some(&true))
    }

    /// [`Store::update_delivery`] for several deliveries, in one
    /// transaction: whether each was written.
    pub async fn update_deliveries(
        &self,
        ws: &str,
        id: &str,
        changes: &[(&DeliveryRecord, &DeliveryRecord)],
    ) -> Result<Vec<bool>, StoreError> {
        let tx = self.writer().begin().await.map_err(|e| self.on_writer(e))?;
        let mut written = Vec::with_capacity(changes.len());
        for (was, d) in changes {
            let row = delivery_model(ws, id, d);
            let n = webhook_delivery::Entity::update_many()
                .col_expr(webhook_delivery::Column::Status, Expr::value(row.status))
                .col_expr(webhook_delivery::Column::Attempts, Expr::value(row.attempts))
                .col_expr(
                    webhook_delivery::Column::FirstAttemptAt,
                    Expr::value(row.first_attempt_at),
                )
                .col_expr(
                    webhook_delivery::Column::NextAttemptAt,
                    Expr::value(row.next_attempt_at),
                )
                .col_expr(
                    webhook_delivery::Column::LastAttemptAt,
                    Expr::value(row.last_attempt_at),
                )
                .col_expr(
                    webhook_delivery::Column::LastStatusCode,
                    Expr::value(row.last_status_code),
                )
                .col_expr(webhook_delivery::Column::LastError, Expr::value(row.last_error))
                .col_expr(webhook_delivery::Column::ResolvedAt, Expr::value(row.resolved_at))
                .filter(webhook_delivery::Column::WorkspaceId.eq(ws))
                .filter(webhook_delivery::Column::WebhookId.eq(id))
                .filter(webhook_delivery::Column::Seq.eq(d.seq))
                .filter(webhook_delivery::Column::ResolvedAt.is_null())
                .filter(webhook_delivery::Column::Status.eq(was.status.as_str()))
                .filter(webhook_delivery::Column::Attempts.eq(was.attempts))
                .exec(&tx)
                .await
                .map_err(|e| self.on_writer(e))?
                .rows_affected;
            written.push(n > 0);
        }
        tx.commit().await.map_err(|e| self.on_writer(e))?;
        Ok(written)
    }

    /// A page of an endpoint's deliveries, newest first, below sequence
    /// `before` (0: from the newest), of `status` if given.
    pub async fn list_deliveries(
        &self,
        ws: &str,
        id: &str,
        status: Option<&str>,
        before: i64,
        limit: u64,
    ) -> Result<Vec<DeliveryRecord>, StoreError> {
        let mut query = webhook_delivery::Entity::find()
            .filter(webhook_delivery::Column::WorkspaceId.eq(ws))
            .filter(webhook_delivery::Column::WebhookId.eq(id));
        if before > 0 {
            query = query.filter(webhook_delivery::Column::Seq.lt(before));
        }
        if let Some(status) = status {
            query = query.filter(webhook_delivery::Column::Status.eq(status));
        }
        Ok(query
            .order_by_desc(webhook_delivery::Column::Seq)
            .limit(limit)
            .all(self.reader())
            .await
            .map_err(|e| self.on_reader(e))?
            .into_iter()
            .map(delivery_record)
            .collect())
    }

    /// Forgets deliveries resolved before `before`: how many.
    pub async fn trim_deliveries(&self, before: Timestamp) -> Result<u64, StoreError> {
        Ok(webhook_delivery::Entity::delete_many()
            .filter(webhook_delivery::Column::ResolvedAt.lt(before.as_micros()))
            .exec(self.writer())
            .await
            .map_err(|e| self.on_writer(e))?
            .rows_affected)
    }

    /// One delivery.
    pub async fn delivery(&self, ws: &str, id: &str, seq: i64) -> Result<Option<DeliveryRecord>, StoreError> {
        Ok(
            webhook_delivery::Entity::find_by_id((ws.to_owned(), id.to_owned(), seq))
                .one(self.reader())
                .await
                .map_err(|e| self.on_reader(e))?
                .map(delivery_record),
        )
    }
}
