//! The event stream's storage: outbox bounds, consumer cursors, trimming,
//! and the PostgreSQL wake-up channel.

use leadflow_domain::{Span, Timestamp};
use sea_orm::sea_query::Expr;
use sea_orm::{
    ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect, TransactionTrait,
};

use crate::convert::ts;
use crate::entity::{consumer, outbox, relay, workspace};
use crate::error::StoreError;
use crate::{Backend, Store};

/// The PostgreSQL channel a commit with outbox events is announced on; the
/// payload is the workspace id.
pub const OUTBOX_CHANNEL: &str = "leadflow_outbox";

/// Events are kept at least this long, and until every consumer seen in
/// that time has acked them and every relay has relayed them.
pub const RETENTION: Span = Span::from_days(7);

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConsumerRecord {
    pub name: String,
    /// The last sequence acked.
    pub cursor: i64,
    pub session: String,
    pub created_at: Timestamp,
    pub last_seen_at: Timestamp,
}

fn record(row: consumer::Model) -> ConsumerRecord {
    ConsumerRecord {
        name: row.name,
        cursor: row.cursor,
        session: row.session,
        created_at: ts(row.created_at),
        last_seen_at: ts(row.last_seen_at),
    }
}

/// A stream's claim of a consumer: created at `cursor` if new.
#[derive(Clone, Copy, Debug)]
pub struct Claim<'a> {
    pub name: &'a str,
    pub cursor: i64,
    pub session: &'a str,
    pub now: Timestamp,
}

/// Sequences of a workspace's outbox: at or below `floor` trimmed, `head`
/// the newest handed out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OutboxBounds {
    pub floor: i64,
    pub head: i64,
}

impl Store {
    pub async fn outbox_bounds(&self, ws: &str) -> Result<OutboxBounds, StoreError> {
        let w = workspace::Entity::find_by_id(ws.to_owned())
            .one(self.reader())
            .await
            .map_err(|e| self.on_reader(e))?;
        Ok(w.map_or(OutboxBounds { floor: 0, head: 0 }, |w| OutboxBounds {
            floor: w.outbox_floor,
            head: w.outbox_head,
        }))
    }

    /// The lowest sequence above `floor` committed at or after `t`.
    pub async fn first_sequence_since(
        &self,
        ws: &str,
        t: Timestamp,
        floor: i64,
    ) -> Result<Option<i64>, StoreError> {
        outbox::Entity::find()
            .select_only()
            .column(outbox::Column::Seq)
            .filter(outbox::Column::WorkspaceId.eq(ws))
            .filter(outbox::Column::Seq.gt(floor))
            .filter(outbox::Column::CreatedAt.gte(t.as_micros()))
            .order_by_asc(outbox::Column::Seq)
            .into_tuple::<i64>()
            .one(self.reader())
            .await
            .map_err(|e| self.on_reader(e))
    }

    /// When the first event after `seq` was committed, if there is one.
    pub async fn committed_after(&self, ws: &str, seq: i64) -> Result<Option<Timestamp>, StoreError> {
        Ok(outbox::Entity::find()
            .select_only()
            .column(outbox::Column::CreatedAt)
            .filter(outbox::Column::WorkspaceId.eq(ws))
            .filter(outbox::Column::Seq.gt(seq))
            .order_by_asc(outbox::Column::Seq)
            .into_tuple::<i64>()
            .one(self.reader())
            .await
            .map_err(|e| self.on_reader(e))?
            .map(ts))
    }

    pub async fn workspaces(&self) -> Result<Vec<String>, StoreError> {
        workspace::Entity::find()
            .select_only()
            .column(workspace::Column::Id)
            .into_tuple::<String>()
            .all(self.reader())
            .await
            .map_err(|e| self.on_reader(e))
    }

    pub async fn consumer(&self, ws: &str, name: &str) -> Result<Option<ConsumerRecord>, StoreError> {
        Ok(consumer::Entity::find_by_id((ws.to_owned(), name.to_owned()))
            .one(self.reader())
            .await
            .map_err(|e| self.on_reader(e))?
            .map(record))
    }

    /// Makes `session` the owner of the consumer, creating it with
    /// `cursor` if it is new (an existing consumer keeps its cursor). One
    /// statement, committed on its own: two first subscribes of one name
    /// cannot both insert, and the later claim wins.
    pub async fn claim_consumer(
        &self,
        ws: &str,
        name: &str,
        cursor: i64,
        session: &str,
        now: Timestamp,
    ) -> Result<ConsumerRecord, StoreError> {
        let claim = Claim {
            name,
            cursor,
            session,
            now,
        };
        self.claim_consumers(ws, &[claim])
            .await?
            .pop()
            .ok_or_else(|| StoreError::corrupt("consumers", name, "no row after the claim"))
    }

    /// [`Store::claim_consumer`] for several consumers of one workspace in
    /// one statement (names must differ: one statement cannot claim a row
    /// twice). The records come back in the claims' order. Rows are
    /// claimed in name order, so that two replicas claiming overlapping
    /// names queue instead of deadlocking.
    pub async fn claim_consumers(
        &self,
        ws: &str,
        claims: &[Claim<'_>],
    ) -> Result<Vec<ConsumerRecord>, StoreError> {
        use sea_orm::QueryTrait as _;
        use sea_orm::sea_query::OnConflict;
        if claims.is_empty() {
            return Ok(Vec::new());
        }
        let mut ordered: Vec<&Claim<'_>> = claims.iter().collect();
        ordered.sort_unstable_by_key(|c| c.name);
        let rows = ordered.into_iter().map(|c| {
            consumer::ActiveModel::from(consumer::Model {
                workspace_id: ws.to_owned(),
                name: c.name.to_owned(),
                cursor: c.cursor,
                session: c.session.to_owned(),
                created_at: c.now.as_micros(),
                last_seen_at: c.now.as_micros(),
            })
        });
        let mut insert = consumer::Entity::insert_many(rows).on_conflict(
            OnConflict::columns([consumer::Column::WorkspaceId, consumer::Column::Name])
                .update_columns([consumer::Column::Session, consumer::Column::LastSeenAt])
                .to_owned(),
        );
        insert.query().returning_all();
        let statement = insert.build(self.writer().get_database_backend());
        let rows = self
            .writer()
            .query_all_raw(statement)
            .await
            .map_err(|e| self.on_writer(e))?;
        let mut claimed = std::collections::HashMap::with_capacity(rows.len());
        for row in &rows {
            let row = <consumer::Model as sea_orm::FromQueryResult>::from_query_result(row, "")?;
            claimed.insert(row.name.clone(), record(row));
        }
        claims
            .iter()
            .map(|c| {
                claimed
                    .remove(c.name)
                    .ok_or_else(|| StoreError::corrupt("consumers", c.name, "no row after the claim"))
            })
            .collect()
    }

    /// Moves the cursor forward to `seq` (never back). `None` if unknown.
    pub async fn ack(
        &self,
        ws: &str,
        name: &str,
        seq: i64,
        now: Timestamp,
    ) -> Result<Option<ConsumerRecord>, StoreError> {
        let tx = self.writer().begin().await.map_err(|e| self.on_writer(e))?;
        let Some(mut row) = consumer::Entity::find_by_id((ws.to_owned(), name.to_owned()))
            .lock_exclusive()
            .one(&tx)
            .await?
        else {
            return Ok(None);
        };
        row.cursor = row.cursor.max(seq);
        row.last_seen_at = now.as_micros();
        consumer::Entity::update_many()
            .col_expr(consumer::Column::Cursor, Expr::value(row.cursor))
            .col_expr(consumer::Column::LastSeenAt, Expr::value(row.last_seen_at))
            .filter(consumer::Column::WorkspaceId.eq(ws))
            .filter(consumer::Column::Name.eq(name))
            .exec(&tx)
            .await?;
        tx.commit().await?;
        Ok(Some(record(row)))
    }

    /// Notes that a consumer's stream is alive (it counts for retention).
    pub async fn touch_consumer(&self, ws: &str, name: &str, now: Timestamp) -> Result<(), StoreError> {
        consumer::Entity::update_many()
            .col_expr(consumer::Column::LastSeenAt, Expr::value(now.as_micros()))
            .filter(consumer::Column::WorkspaceId.eq(ws))
            .filter(consumer::Column::Name.eq(name))
            .exec(self.writer())
            .await
            .map_err(|e| self.on_writer(e))?;
        Ok(())
    }

    pub async fn list_consumers(&self, ws: &str) -> Result<Vec<ConsumerRecord>, StoreError> {
        Ok(consumer::Entity::find()
            .filter(consumer::Column::WorkspaceId.eq(ws))
            .order_by_asc(consumer::Column::Name)
            .all(self.reader())
            .await
            .map_err(|e| self.on_reader(e))?
            .into_iter()
            .map(record)
            .collect())
    }

    pub async fn delete_consumer(&self, ws: &str, name: &str) -> Result<bool, StoreError> {
        Ok(consumer::Entity::delete_many()
            .filter(consumer::Column::WorkspaceId.eq(ws))
            .filter(consumer::Column::Name.eq(name))
            .exec(self.writer())
            .await
            .map_err(|e| self.on_writer(e))?
            .rows_affected
            > 0)
    }

    /// Trims events older than the retention that every consumer seen
    /// within it has acked; raises the floor. Returns how many went.
    pub async fn trim_outbox(&self, ws: &str, now: Timestamp) -> Result<u64, StoreError> {
        let since = now.saturating_sub(RETENTION).as_micros();
        let tx = self.writer().begin().await.map_err(|e| self.on_writer(e))?;
        let Some(w) = workspace::Entity::find_by_id(ws.to_owned())
            .lock_exclusive()
            .one(&tx)
            .await?
        else {
            return Ok(0);
        };
        let slowest = consumer::Entity::find()
            .filter(consumer::Column::WorkspaceId.eq(ws))
            .filter(consumer::Column::LastSeenAt.gte(since))
            .all(&tx)
            .await?
            .into_iter()
            .map(|c| c.cursor)
            .min()
            .unwrap_or(w.outbox_head);
        // Relays hold the retention however long they have not been seen.
        let slowest = relay::Entity::find()
            .filter(relay::Column::WorkspaceId.eq(ws))
            .all(&tx)
            .await?
            .into_iter()
            .map(|r| r.cursor)
            .fold(slowest, i64::min);
        let newest_old = outbox::Entity::find()
            .select_only()
            .column(outbox::Column::Seq)
            .filter(outbox::Column::WorkspaceId.eq(ws))
            .filter(outbox::Column::Seq.lte(slowest))
            .filter(outbox::Column::CreatedAt.lt(since))
            .order_by_desc(outbox::Column::Seq)
            .into_tuple::<i64>()
            .one(&tx)
            .await?;
        let Some(bound) = newest_old else {
            return Ok(0);
        };
        let trimmed = outbox::Entity::delete_many()
            .filter(outbox::Column::WorkspaceId.eq(ws))
            .filter(outbox::Column::Seq.lte(bound))
            .exec(&tx)
            .await?
            .rows_affected;
        workspace::Entity::update_many()
            .col_expr(
                workspace::Column::OutboxFloor,
                Expr::value(bound.max(w.outbox_floor)),
            )
            .filter(workspace::Column::Id.eq(ws))
            .exec(&tx)
            .await?;
        tx.commit().await?;
        Ok(trimmed)
    }

    /// Announces new outbox events of `ws` to other replicas (PostgreSQL);
    /// a hint only: readers poll as well.
    pub async fn notify_outbox(&self, ws: &str) -> Result<(), StoreError> {
        if self.backend() != Backend::Postgres {
            return Ok(());
        }
        let db = self.writer();
        db.execute_raw(sea_orm::Statement::from_sql_and_values(
            db.get_database_backend(),
            "SELECT pg_notify($1, $2)",
            [OUTBOX_CHANNEL.into(), ws.into()],
        ))
        .await?;
        Ok(())
    }

    /// A listener on [`OUTBOX_CHANNEL`] (PostgreSQL only). It reconnects by itself.
    pub async fn outbox_listener(&self) -> Result<Option<sqlx::postgres::PgListener>, StoreError> {
        let Some(pool) = self.postgres_pool() else {
            return Ok(None);
        };
        let mut listener = sqlx::postgres::PgListener::connect_with(pool)
            .await
            .map_err(|e| {
                StoreError::Db(sea_orm::DbErr::Conn(sea_orm::RuntimeErr::Internal(e.to_string())))
            })?;
        listener.listen(OUTBOX_CHANNEL).await.map_err(|e| {
            StoreError::Db(sea_orm::DbErr::Conn(sea_orm::RuntimeErr::Internal(e.to_string())))
        })?;
        Ok(Some(listener))
    }
}
