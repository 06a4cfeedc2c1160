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
    pub workspace: String,
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
        workspace: row.workspace_id,
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
    /// The workspaces without a relay called `name` yet.
    pub async fn workspaces_without_relay(&self, name: &str) -> Result<Vec<String>, StoreError> {
        let rows = self
            .reader()
            .query_all_raw(self.sql(
                "SELECT w.id FROM workspaces w WHERE NOT EXISTS \
                 (SELECT 1 FROM relays r WHERE r.workspace_id = w.id AND r.name = $1) ORDER BY w.id",
                vec![name.into()],
            ))
            .await
            .map_err(|e| self.on_reader(e))?;
        rows.iter()
            .map(|row| row.try_get::<String>("", "id").map_err(StoreError::from))
            .collect()
    }

    /// Creates relay `name` of `ws` at `cursor`, unless it exists.
    pub async fn create_relay(&self, ws: &str, name: &str, cursor: i64, now: i64) -> Result<(), StoreError> {
        self.writer()
            .execute_raw(self.sql(
                "INSERT INTO relays (workspace_id, name, cursor, holder, lease_until, created_at, moved_at) \
                 VALUES ($1, $2, $3, '', 0, $4, $4) ON CONFLICT (workspace_id, name) DO NOTHING",
                vec![ws.into(), name.into(), cursor.into(), now.into()],
            ))
            .await
            .map_err(|e| self.on_writer(e))?;
        Ok(())
    }

    /// In one statement, for every workspace: renews the leases of relay
    /// `name` that `lease.holder` holds, and takes those nobody holds or
    /// whose lease ran out. Returns every relay the holder holds now: one
    /// it held and is not among them was taken over by another.
    pub async fn hold_relays(&self, name: &str, lease: Lease<'_>) -> Result<Vec<RelayRecord>, StoreError> {
        self.hold_relays_where("name = $1", name, lease).await
    }

    /// [`Store::hold_relays`] for every relay whose name starts with `prefix`.
    pub async fn hold_relays_prefixed(
        &self,
        prefix: &str,
        lease: Lease<'_>,
    ) -> Result<Vec<RelayRecord>, StoreError> {
        let condition = format!("substr(name, 1, {}) = $1", prefix.chars().count());
        self.hold_relays_where(&condition, prefix, lease).await
    }

    async fn hold_relays_where(
        &self,
        condition: &str,
        name: &str,
        lease: Lease<'_>,
    ) -> Result<Vec<RelayRecord>, StoreError> {
        let rows = self
            .writer()
            .query_all_raw(self.sql(
                &format!(
                    "UPDATE relays SET holder = $2, lease_until = $3 \
                     WHERE {condition} AND (holder = $2 OR holder = '' OR lease_until < $4) {RETURNING}"
                ),
                vec![
                    name.into(),
                    lease.holder.into(),
                    lease.until.into(),
                    lease.now.into(),
                ],
            ))
            .await
            .map_err(|e| self.on_writer(e))?;
        rows.iter()
            .map(|row| {
                let row = <relay::Model as sea_orm::FromQueryResult>::from_query_result(row, "")?;
                Ok(record(row, None))
            })
            .collect()
    }

    /// Moves the cursor forward to `cursor` (never back) and renews the
    /// lease, if `holder` still holds the relay created at `epoch`: false
    /// when it does not (taken over, or deleted and made again).
    pub async fn advance_relay(
        &self,
        ws: &str,
        name: &str,
        epoch: i64,
        cursor: i64,
        lease: Lease<'_>,
    ) -> Result<bool, StoreError> {
        let moved = self
            .writer()
            .execute_raw(self.sql(
                "UPDATE relays SET cursor = CASE WHEN cursor < $4 THEN $4 ELSE cursor END, \
                 moved_at = CASE WHEN cursor < $4 THEN $5 ELSE moved_at END, lease_until = $6 \
                 WHERE workspace_id = $1 AND name = $2 AND holder = $3 AND created_at = $7",
                vec![
                    ws.into(),
                    name.into(),
                    lease.holder.into(),
                    cursor.into(),
                    lease.now.into(),
                    lease.until.into(),
                    epoch.into(),
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
