//! Relays of the outbox to other systems: the durable cursor and lease of
//! each (workspace, relay), and the events a relay reads. What a relay
//! sends is what `Subscribe` delivers: every event but the suppressed ones,
//! in sequence order.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use leadflow_store::{Lease, RelayRecord};

use crate::stream::{Start, StreamEvent};

use crate::{Engine, EngineError};

/// Wall-clock micros: leases are compared across replicas, whatever clock
/// the engine's use cases run on.
fn wall_micros() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
}

/// `holder`'s lease from now on, for `ttl`.
fn lease(holder: &str, ttl: Duration) -> Lease<'_> {
    let now = wall_micros();
    Lease {
        holder,
        now,
        until: now.saturating_add(micros(ttl)),
    }
}

fn micros(d: Duration) -> i64 {
    i64::try_from(d.as_micros()).unwrap_or(i64::MAX)
}

/// The events a relay reads in one go.
#[derive(Clone, Debug, Default)]
pub struct RelayBatch {
    /// The events to send, in sequence order (suppressed ones left out).
    pub events: Vec<Arc<StreamEvent>>,
    /// The highest sequence read, sent or not: the cursor once every event
    /// of the batch is acknowledged.
    pub last: Option<i64>,
}

impl Engine {
    /// Creates relay `name` in every workspace that has none, at `start`:
    /// a start time older than what is kept starts at the oldest event kept.
    pub async fn create_missing_relays(&self, name: &str, start: Start) -> Result<(), EngineError> {
        for ws in self.store.workspaces_without_relay(name).await? {
            let bounds = self.store.outbox_bounds(&ws).await?;
            let first = match start {
                Start::AtTime(t) => match self.first_at_or_after(&ws, t, bounds).await {
                    Ok(first) => first,
                    Err(EngineError::OutOfRange(why)) => {
                        tracing::warn!(workspace = %ws, relay = %name, "{why}; the relay starts at the oldest event kept");
                        bounds.floor + 1
                    }
                    Err(e) => return Err(e),
                },
                Start::Latest => bounds.head + 1,
                _ => bounds.floor + 1,
            };
            self.store
                .create_relay(&ws, name, first - 1, wall_micros())
                .await?;
        }
        Ok(())
    }

    /// Renews, for `ttl`, the leases of relay `name` that `holder` holds
    /// and takes the free ones, in every workspace: the relays `holder`
    /// holds now.
    pub async fn hold_relays(
        &self,
        name: &str,
        holder: &str,
        ttl: Duration,
    ) -> Result<Vec<RelayRecord>, EngineError> {
        let lease = lease(holder, ttl);
        Ok(self.store.hold_relays(name, lease).await?)
    }

    /// [`Engine::hold_relays`] for every relay whose name starts with `prefix`.
    pub async fn hold_relays_prefixed(
        &self,
        prefix: &str,
        holder: &str,
        ttl: Duration,
    ) -> Result<Vec<RelayRecord>, EngineError> {
        let lease = lease(holder, ttl);
        Ok(self.store.hold_relays_prefixed(prefix, lease).await?)
    }

    /// Moves the relay's cursor to `cursor` and renews the lease for
    /// `ttl`: false when `holder` lost the lease or the relay of `epoch`
    /// (its creation instant, micros) was deleted (then it must stop).
    pub async fn advance_relay(
        &self,
        ws: &str,
        name: &str,
        (holder, epoch): (&str, i64),
        cursor: i64,
        ttl: Duration,
    ) -> Result<bool, EngineError> {
        let lease = lease(holder, ttl);
        Ok(self.store.advance_relay(ws, name, epoch, cursor, lease).await?)
    }

    /// The highest trimmed sequence of `ws`: events after it are kept.
    pub async fn outbox_floor(&self, ws: &str) -> Result<i64, EngineError> {
        Ok(self.store.outbox_bounds(ws).await?.floor)
    }

    /// Gives the lease up, so another replica takes the relay at once.
    pub async fn release_relay(&self, ws: &str, name: &str, holder: &str) -> Result<(), EngineError> {
        Ok(self.store.release_relay(ws, name, holder).await?)
    }

    /// The relays of a workspace.
    pub async fn relays(&self, ws: &str) -> Result<Vec<RelayRecord>, EngineError> {
        Ok(self.store.list_relays(ws).await?)
    }

    /// Up to `limit` events after `after`, the suppressed ones left out.
    /// `OUT_OF_RANGE` when events after `after` were trimmed.
    pub async fn relay_batch(&self, ws: &str, after: i64, limit: u64) -> Result<RelayBatch, EngineError> {
        let records = self.store.outbox_after(ws, after, limit).await?;
        let events = crate::stream::decode_after(after, records)?;
        Ok(RelayBatch {
            last: events.last().map(|e| e.seq),
            events: events.into_iter().filter(|e| !e.suppressed).collect(),
        })
    }

    /// Notified at every commit with events in `ws`, in this process or,
    /// on PostgreSQL, another replica. Take its `notified()` before reading
    /// the table: it hears of a commit from its creation on, polled or not.
    pub fn commits(&self, ws: &str) -> Arc<tokio::sync::Notify> {
        self.hub.commits(ws)
    }
}
