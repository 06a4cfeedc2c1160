//! Relays of the outbox (to JetStream, to webhooks): each a durable cursor
//! per workspace and target, moved only by the replica holding its lease.
//!
//! A lease is a row's `holder` and `lease_until` (wall-clock micros): a
//! replica takes a relay that has no holder or whose lease ran out, renews
//! it while it relays, and every write of the cursor is fenced on the
//! holder, so a replica that lost its lease (paused, cut off) cannot move
//! the cursor of the one that took over.

use leadflow_domain::Timestamp;
use sea_orm::{ConnectionTrait, Value};

use crate::Store;
use crate::convert::ts;
use crate::entity::relay;
use crate::error::StoreError;

/// A relay's durable state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RelayRecord {
    pub name: String,
    /// Every event up to this sequence has been relayed.
    pub cursor: i64,
    /// The process relaying it, empty when none.
    pub holder: String,
    pub lease_until: i64,
    pub created_at: Timestamp,
    pub moved_at: Timestamp,
    /// When the oldest event not yet relayed was committed, if any is.
    pub oldest_pending: Option<Timestamp>,
}

/// A holder's claim: who, until when, as of when.
#[derive(Clone, Copy, Debug)]
pub struct Lease<'a> {
    pub holder: &'a str,
    /// Wall-clock micros now.
    pub now: i64,
    /// Wall-clock micros the lease lasts to.
    pub until: i64,
}

fn record(row: relay::Model, oldest_pending: Option<i64>) -> RelayRecord {
    RelayRecord {
        name: row.name,
        cursor: row.cursor,
        holder: row.holder,
        lease_until: row.lease_until,
        created_at: ts(row.created_at),
        moved_at: ts(row.moved_at),
        oldest_pending: oldest_pending.map(ts),
    }
}

const RETURNING: &str = "RETURNING workspace_id, name, cursor, holder, lease_until, created_at, moved_at";

impl Store {
    /// Takes the lease of relay `name` of `ws` if it is free, run out or
    /// already ours, creating the relay at `cursor` if it is new (an
    /// existing relay keeps its cursor). `None` while another holds it.
    pub async fn take_relay(
        &self,
        ws: &str,
        name: &str,
        cursor: i64,
        lease: Lease<'_>,
    ) -> Result<Option<RelayRecord>, StoreError> {
        let db = self.writer();
        db.execute_raw(self.sql(
            "INSERT INTO relays (workspace_id, name, cursor, holder, lease_until, created_at, moved_at) \
             VALUES ($1, $2, $3, '', 0, $4, $4) ON CONFLICT (workspace_id, name) DO NOTHING",
            vec![ws.into(), name.into(), cursor.into(), lease.now.into()],
        ))
        .await
        .map_err(|e| self.on_writer(e))?;
        let row = db
            .query_one_raw(self.sql(
                &format!(
                    "UPDATE relays SET holder = $3, lease_until = $4 \
                     WHERE workspace_id = $1 AND name = $2 AND (holder = $3 OR holder = '' OR lease_until < $5) \
                     {RETURNING}"
                ),
                vec![
                    ws.into(),
                    name.into(),
                    lease.holder.into(),
                    lease.until.into(),
                    lease.now.into(),
                ],
            ))
            .await
            .map_err(|e| self.on_writer(e))?;
        row.map(|row| {
            let row = <relay::Model as sea_orm::FromQueryResult>::from_query_result(&row, "")?;
            Ok(record(row, None))
        })
        .transpose()
    }

    /// Moves the cursor forward to `cursor` (never back) and renews the
    /// lease, if `holder` still holds it: false when it does not.
    pub async fn advance_relay(
        &self,
        ws: &str,
        name: &str,
        cursor: i64,
        lease: Lease<'_>,
    ) -> Result<bool, StoreError> {
        let moved = self
            .writer()
            .execute_raw(self.sql(
                "UPDATE relays SET cursor = CASE WHEN cursor < $4 THEN $4 ELSE cursor END, \
                 moved_at = CASE WHEN cursor < $4 THEN $5 ELSE moved_at END, lease_until = $6 \
                 WHERE workspace_id = $1 AND name = $2 AND holder = $3",
                vec![
                    ws.into(),
                    name.into(),
                    lease.holder.into(),
                    cursor.into(),
                    lease.now.into(),
                    lease.until.into(),
                ],
            ))
            .await
            .map_err(|e| self.on_writer(e))?;
        Ok(moved.rows_affected() > 0)
    }

    /// Gives a relay's lease up, if `holder` has it, so that another
    /// replica takes it at once.
    pub async fn release_relay(&self, ws: &str, name: &str, holder: &str) -> Result<(), StoreError> {
        self.writer()
            .execute_raw(self.sql(
                "UPDATE relays SET holder = '', lease_until = 0 \
                 WHERE workspace_id = $1 AND name = $2 AND holder = $3",
                vec![ws.into(), name.into(), holder.into()],
            ))
            .await
            .map_err(|e| self.on_writer(e))?;
        Ok(())
    }

    /// Forgets a relay (and releases the events it held): true if it existed.
    pub async fn delete_relay(&self, ws: &str, name: &str) -> Result<bool, StoreError> {
        let deleted = self
            .writer()
            .execute_raw(self.sql(
                "DELETE FROM relays WHERE workspace_id = $1 AND name = $2",
                vec![ws.into(), name.into()],
            ))
            .await
            .map_err(|e| self.on_writer(e))?;
        Ok(deleted.rows_affected() > 0)
    }

    /// The relays of `ws` by name, each with the commit time of the
    /// oldest event it has not relayed.
    pub async fn list_relays(&self, ws: &str) -> Result<Vec<RelayRecord>, StoreError> {
        let rows = self
            .reader()
            .query_all_raw(self.sql(
                "SELECT r.workspace_id, r.name, r.cursor, r.holder, r.lease_until, r.created_at, r.moved_at, \
                 (SELECT o.created_at FROM outbox o WHERE o.workspace_id = r.workspace_id AND o.seq > r.cursor \
                  ORDER BY o.seq LIMIT 1) AS oldest_pending \
                 FROM relays r WHERE r.workspace_id = $1 ORDER BY r.name",
                vec![Value::from(ws)],
            ))
            .await
            .map_err(|e| self.on_reader(e))?;
        rows.iter()
            .map(|row| {
                let oldest: Option<i64> = row.try_get("", "oldest_pending")?;
                let row = <relay::Model as sea_orm::FromQueryResult>::from_query_result(row, "")?;
                Ok(record(row, oldest))
            })
            .collect()
    }
}
