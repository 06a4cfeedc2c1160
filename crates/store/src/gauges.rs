//! What metrics sample from the database: the state of every workspace,
//! read in a few aggregate queries.

use sea_orm::{ConnectionTrait, Value};

use crate::Store;
use crate::error::StoreError;
use crate::rescore::RESCORE_RUNNING;

/// The database's numbers, per workspace.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Gauges {
    /// (workspace, stage, leads).
    pub leads: Vec<(String, String, i64)>,
    /// (workspace, the last event's sequence).
    pub outbox_heads: Vec<(String, i64)>,
    /// (workspace, consumer, its acknowledged cursor).
    pub consumers: Vec<(String, String, i64)>,
    /// (workspace, relay, its cursor, how long ago in micros the oldest
    /// event it has not relayed was committed: 0 when none is left).
    pub relays: Vec<(String, String, i64, i64)>,
    /// (workspace, timers due and not yet fired).
    pub due_timers: Vec<(String, i64)>,
    /// (workspace, job id, leads done, leads in all) of running re-scores.
    pub rescores: Vec<(String, i64, i64, i64)>,
}

impl Store {
    /// The numbers metrics show, as of `now_micros`.
    pub async fn gauges(&self, now_micros: i64) -> Result<Gauges, StoreError> {
        let db = self.reader();
        let rows = |sql: &str, values: Vec<Value>| db.query_all_raw(self.sql(sql, values));
        let mut gauges = Gauges::default();
        for row in rows(
            "SELECT workspace_id, stage, COUNT(*) AS n FROM leads GROUP BY workspace_id, stage",
            vec![],
        )
        .await?
        {
            gauges.leads.push((
                row.try_get("", "workspace_id")?,
                row.try_get("", "stage")?,
                row.try_get("", "n")?,
            ));
        }
        for row in rows("SELECT id, outbox_head FROM workspaces", vec![]).await? {
            gauges
                .outbox_heads
                .push((row.try_get("", "id")?, row.try_get("", "outbox_head")?));
        }
        for row in rows("SELECT workspace_id, name, cursor FROM consumers", vec![]).await? {
            gauges.consumers.push((
                row.try_get("", "workspace_id")?,
                row.try_get("", "name")?,
                row.try_get("", "cursor")?,
            ));
        }
        for row in rows(
            "SELECT r.workspace_id, r.name, r.cursor, \
             (SELECT o.created_at FROM outbox o WHERE o.workspace_id = r.workspace_id AND o.seq > r.cursor \
              ORDER BY o.seq LIMIT 1) AS oldest_pending FROM relays r",
            vec![],
        )
        .await?
        {
            let oldest: Option<i64> = row.try_get("", "oldest_pending")?;
            gauges.relays.push((
                row.try_get("", "workspace_id")?,
                row.try_get("", "name")?,
                row.try_get("", "cursor")?,
                oldest.map_or(0, |t| (now_micros - t).max(0)),
            ));
        }
        for row in rows(
            "SELECT workspace_id, COUNT(*) AS n FROM timers WHERE due_at <= $1 GROUP BY workspace_id",
            vec![now_micros.into()],
        )
        .await?
        {
            gauges
                .due_timers
                .push((row.try_get("", "workspace_id")?, row.try_get("", "n")?));
        }
        for row in rows(
            "SELECT workspace_id, id, done, total FROM rescore_jobs WHERE status = $1",
            vec![RESCORE_RUNNING.into()],
        )
        .await?
        {
            gauges.rescores.push((
                row.try_get("", "workspace_id")?,
                row.try_get("", "id")?,
                row.try_get("", "done")?,
                row.try_get("", "total")?,
            ));
        }
        Ok(gauges)
    }
}
