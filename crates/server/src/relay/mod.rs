//! The outbox relayed to NATS JetStream.
//!
//! One relay per workspace, a durable consumer of its outbox: its cursor
//! (table `relays`) moves only once JetStream acknowledged every publish up
//! to it, and one replica relays a workspace at a time (a lease, renewed
//! while it relays, taken over once it runs out). Events of one lead or
//! account are published one at a time, in sequence order — at most one
//! unacknowledged publish per owner, pipelining only across owners — so a
//! publish that timed out and is sent again can never land after its
//! successor. Each message carries `Nats-Msg-Id` = the event id: within
//! the stream's duplicate window JetStream drops a publish sent twice (a
//! retry, or a replica taking over before the cursor moved).

mod subject;

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use async_nats::jetstream::{self, stream};
use leadflow_engine::{Engine, RelayBatch, Start, StreamEvent};
use prost::Message as _;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

pub use subject::{NO_DETAIL, PREFIX, escape, subject};

/// The subjects of the stream leadflow creates.
pub const SUBJECTS: &str = "leadflow.>";
/// How long JetStream remembers a message id: longer than any re-publish
/// of the relay short of an outage (lease [`LEASE`] + publish time-out
/// [`ACK_TIMEOUT`] + the longest back-off [`MAX_BACKOFF`] + a cursor
/// write), with room to spare.
pub const DUPLICATE_WINDOW: Duration = Duration::from_secs(10 * 60);
/// How long the stream leadflow creates keeps messages: the outbox's retention.
pub const MAX_AGE: Duration = Duration::from_secs(7 * 24 * 3600);
/// A replica's hold on a workspace's relay, renewed every [`RENEW`] (for
/// every workspace it relays, in one statement), when it also takes the
/// relays nobody holds.
pub use crate::leases::LEASE;
use crate::leases::{Held, RENEW, pause};
/// A publish not acknowledged within this is sent again.
pub const ACK_TIMEOUT: Duration = Duration::from_secs(5);
const MIN_BACKOFF: Duration = Duration::from_millis(100);
pub const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// How often a relay looks at its outbox without being woken by a commit
/// (of this replica, or of another through PostgreSQL's notifications).
const POLL: Duration = Duration::from_secs(1);
/// Events read at a time.
const BATCH: u64 = 1_000;
/// Publishes awaiting their acknowledgement, across owners.
const IN_FLIGHT: usize = 512;

/// What `--nats-*` asks for.
#[derive(Clone, Debug)]
pub struct Settings {
    pub url: String,
    pub stream: String,
    pub replicas: usize,
    /// Where a workspace's relay starts when it is first relayed.
    pub start: Start,
}

impl Settings {
    /// The relay's name among a workspace's consumers.
    pub fn name(&self) -> String {
        format!("jetstream:{}", self.stream)
    }

    fn stream_config(&self) -> stream::Config {
        stream::Config {
            name: self.stream.clone(),
            description: Some("leadflow events: leadflow.<workspace>.<kind>.<detail>".to_owned()),
            subjects: vec![SUBJECTS.to_owned()],
            retention: stream::RetentionPolicy::Limits,
            discard: stream::DiscardPolicy::Old,
            storage: stream::StorageType::File,
            max_age: MAX_AGE,
            duplicate_window: DUPLICATE_WINDOW,
            num_replicas: self.replicas,
            ..Default::default()
        }
    }
}

/// Makes sure the stream is there and fit: created if absent; if present,
/// it must take the subjects `leadflow.>` and de-duplicate over at least
/// [`DUPLICATE_WINDOW`].
async fn ensure_stream(js: &jetstream::Context, settings: &Settings) -> Result<(), Unfit> {
    let info = match js.get_stream(&settings.stream).await {
        Ok(mut s) => s
            .info()
            .await
            .map_err(|e| Unfit::Unreachable(e.to_string()))?
            .clone(),
        Err(e)
            if matches!(e.kind(), jetstream::context::GetStreamErrorKind::JetStream(j)
                if j.error_code() == jetstream::ErrorCode::STREAM_NOT_FOUND) =>
        {
            return js
                .create_stream(settings.stream_config())
                .await
                .map(|_| tracing::info!(stream = %settings.stream, "created the JetStream stream"))
                // A cluster still electing its leader says so too: tried again.
                .map_err(|e| Unfit::Unreachable(format!("cannot create stream {}: {e}", settings.stream)));
        }
        Err(e) => return Err(Unfit::Unreachable(e.to_string())),
    };
    let covers = info.config.subjects.iter().any(|s| s == SUBJECTS || s == ">");
    if !covers {
        return Err(Unfit::Refused(format!(
            "stream {} takes the subjects {:?}, not {SUBJECTS}",
            settings.stream, info.config.subjects
        )));
    }
    if info.config.duplicate_window < DUPLICATE_WINDOW {
        return Err(Unfit::Refused(format!(
            "stream {} de-duplicates over {:?}; the relay needs at least {DUPLICATE_WINDOW:?}",
            settings.stream, info.config.duplicate_window
        )));
    }
    Ok(())
}

/// Why the stream cannot be relayed to.
#[derive(Debug)]
enum Unfit {
    /// NATS or JetStream cannot be reached now: tried again.
    Unreachable(String),
    /// The stream is there and unfit: a setting to fix.
    Refused(String),
}

/// A connection to NATS for the relay, checked at start: a stream that is
/// there and unfit stops the server; NATS not reachable yet does not (the
/// relay keeps trying in the background).
pub async fn connect(settings: &Settings) -> anyhow::Result<jetstream::Context> {
    let client = async_nats::ConnectOptions::new()
        .name("leadflow relay")
        .retry_on_initial_connect()
        .connect(settings.url.split(',').map(str::trim).collect::<Vec<_>>())
        .await
        .context("nats_url: not a NATS server address")?;
    let mut js = jetstream::new(client);
    js.set_timeout(ACK_TIMEOUT);
    match tokio::time::timeout(Duration::from_secs(3), ensure_stream(&js, settings)).await {
        Ok(Ok(())) => {}
        Ok(Err(Unfit::Refused(why))) => anyhow::bail!("nats_stream: {why}"),
        Ok(Err(Unfit::Unreachable(why))) => {
            tracing::warn!(error = %why, "NATS JetStream not reachable yet; the relay keeps trying");
        }
        Err(_) => {
            tracing::warn!("NATS JetStream not reachable yet; the relay keeps trying");
        }
    }
    Ok(js)
}

/// Relays every workspace this replica can take, until `stopping`.
pub async fn run(engine: Engine, js: jetstream::Context, settings: Settings, stopping: CancellationToken) {
    let holder = uuid::Uuid::new_v4().to_string();
    let name = settings.name();
    let mut backoff = Backoff::default();
    // The stream first (NATS may be down at start).
    loop {
        match ensure_stream(&js, &settings).await {
            Ok(()) => break,
            Err(Unfit::Refused(why)) => tracing::error!(error = %why, "the relay cannot use its stream"),
            Err(Unfit::Unreachable(why)) => tracing::warn!(error = %why, "NATS JetStream not reachable"),
        }
        if !pause(backoff.next(), &stopping).await {
            return;
        }
    }
    let settings = Arc::new(settings);
    let mut held = Held::new("relay");
    loop {
        if let Err(e) = engine.create_missing_relays(&name, settings.start).await {
            tracing::warn!(error = %e, "the relay cannot set up new workspaces");
        }
        match engine.hold_relays(&name, &holder, LEASE).await {
            Ok(rows) => held.renewed(rows, |record, lost| {
                tracing::info!(workspace = %record.workspace, relay = %name, cursor = record.cursor, "relaying");
                Worker {
                    engine: engine.clone(),
                    js: js.clone(),
                    settings: Arc::clone(&settings),
                    commits: engine.commits(&record.workspace),
                    ws: record.workspace,
                    name: name.clone(),
                    lease: (holder.clone(), record.created_at.as_micros()),
                    cursor: record.cursor,
                    stopping: stopping.child_token(),
                    lost,
                }
                .run()
            }),
            // The leases run on; workers stop if they run out meanwhile
            // (their cursor writes are fenced).
            Err(e) => tracing::warn!(error = %e, "the relay cannot renew its leases"),
        }
        if !pause(RENEW, &stopping).await {
            break;
        }
    }
    held.join().await;
}

/// Exponential back-off with jitter, from [`MIN_BACKOFF`] to [`MAX_BACKOFF`].
#[derive(Debug, Default)]
struct Backoff {
    attempts: u32,
}

impl Backoff {
    fn next(&mut self) -> Duration {
        let d = backoff(self.attempts);
        self.attempts = self.attempts.saturating_add(1);
        d
    }
}

/// The pause before attempt `attempts + 1`: doubling from [`MIN_BACKOFF`],
/// at most [`MAX_BACKOFF`], with up to a quarter of random jitter.
fn backoff(attempts: u32) -> Duration {
    let base = MIN_BACKOFF
        .saturating_mul(1u32 << attempts.min(16))
        .min(MAX_BACKOFF);
    let mut byte = [0u8; 1];
    let jitter = if getrandom::fill(&mut byte).is_ok() {
        base.mul_f64(f64::from(byte[0]) / 1024.0)
    } else {
        Duration::ZERO
    };
    (base - base / 4 + jitter).min(MAX_BACKOFF)
}

/// One workspace's relay, while this replica holds its lease.
struct Worker {
    engine: Engine,
    js: jetstream::Context,
    settings: Arc<Settings>,
    ws: String,
    name: String,
    /// This replica, and the epoch of the relay it holds.
    lease: (String, i64),
    /// Every event up to it is in JetStream.
    cursor: i64,
    /// Notified at every commit with events in the workspace.
    commits: Arc<tokio::sync::Notify>,
    stopping: CancellationToken,
    /// Cancelled when another replica took the lease.
    lost: CancellationToken,
}

/// Why a worker stopped relaying.
enum Stop {
    /// A shutdown: the lease is given up.
    Stopping,
    /// Another replica holds the lease now, or the relay was deleted.
    Lost,
    /// Something broke: the worker starts again from its stored cursor at
    /// the next renewal (the lease is kept).
    Failed,
}

impl Worker {
    async fn run(mut self) {
        match self.relay().await {
            Stop::Stopping => {
                if let Err(e) = self
                    .engine
                    .release_relay(&self.ws, &self.name, &self.lease.0)
                    .await
                {
                    tracing::warn!(workspace = %self.ws, error = %e, "could not give the relay's lease up");
                }
            }
            Stop::Lost => {
                tracing::warn!(workspace = %self.ws, relay = %self.name, "the relay was taken over or deleted; this replica stops relaying it");
            }
            Stop::Failed => {
                tracing::error!(workspace = %self.ws, relay = %self.name, "the relay stopped; it starts again from its cursor");
            }
        }
    }

    async fn relay(&mut self) -> Stop {
        let mut failures = Backoff::default();
        loop {
            let commits = Arc::clone(&self.commits);
            let commit = commits.notified();
            let batch = match self.engine.relay_batch(&self.ws, self.cursor, BATCH).await {
                Ok(batch) => batch,
                Err(leadflow_engine::EngineError::OutOfRange(why)) => {
                    // Only a relay made while old events were trimmed can
                    // be behind what is kept: it goes on from the oldest.
                    tracing::error!(workspace = %self.ws, "{why}: the relay goes on from the oldest event kept");
                    match self.engine.outbox_floor(&self.ws).await {
                        Ok(floor) => match self.move_to(floor).await {
                            Ok(true) | Err(()) => {}
                            Ok(false) => return Stop::Lost,
                        },
                        Err(e) => {
                            tracing::warn!(workspace = %self.ws, error = %e, "the relay cannot read the outbox")
                        }
                    }
                    if let Some(stop) = self.wait(failures.next()).await {
                        return stop;
                    }
                    continue;
                }
                Err(e) => {
                    tracing::warn!(workspace = %self.ws, error = %e, "the relay cannot read the outbox");
                    if let Some(stop) = self.wait(failures.next()).await {
                        return stop;
                    }
                    continue;
                }
            };
            failures = Backoff::default();
            let Some(last) = batch.last else {
                tokio::select! {
                    () = commit => {}
                    stop = self.wait(POLL) => if let Some(stop) = stop {
                        return stop;
                    },
                }
                continue;
            };
            drop(commit);
            if let Some(stop) = self.publish(batch).await {
                return stop;
            }
            // Nothing more is read until the cursor is written: a batch
            // is not published again for a database that refuses writes.
            loop {
                match self.move_to(last).await {
                    Ok(true) => break,
                    Ok(false) => return Stop::Lost,
                    Err(()) => {
                        if let Some(stop) = self.wait(failures.next()).await {
                            return stop;
                        }
                    }
                }
            }
            failures = Backoff::default();
        }
    }

    /// Waits `d`: `Some` when the worker must stop meanwhile.
    async fn wait(&self, d: Duration) -> Option<Stop> {
        tokio::select! {
            () = tokio::time::sleep(d) => None,
            () = self.stopping.cancelled() => Some(Stop::Stopping),
            () = self.lost.cancelled() => Some(Stop::Lost),
        }
    }

    /// Writes the cursor (renewing the lease): `Ok(false)` once the lease
    /// is lost or the relay deleted; `Err` when the database could not be
    /// written.
    async fn move_to(&mut self, cursor: i64) -> Result<bool, ()> {
        let (holder, epoch) = &self.lease;
        match self
            .engine
            .advance_relay(&self.ws, &self.name, (holder, *epoch), cursor, LEASE)
            .await
        {
            Ok(true) => {
                self.cursor = self.cursor.max(cursor);
                Ok(true)
            }
            Ok(false) => Ok(false),
            Err(e) => {
                tracing::warn!(workspace = %self.ws, error = %e, "the relay cannot write its cursor");
                Err(())
            }
        }
    }

    /// Publishes the batch, one publish in flight per owner, each retried
    /// until acknowledged; moves the cursor over what is done every
    /// [`RENEW`]. `Some` when the worker must stop.
    async fn publish(&mut self, batch: RelayBatch) -> Option<Stop> {
        let events = batch.events;
        // Per owner, its events' indexes in sequence order.
        let mut queues: HashMap<(&'static str, String), VecDeque<usize>> = HashMap::new();
        let mut order = Vec::new();
        for (i, e) in events.iter().enumerate() {
            let (whose, id) = e.owner();
            let queue = queues.entry((whose, id.to_owned())).or_default();
            if queue.is_empty() {
                order.push(i);
            }
            queue.push_back(i);
        }
        let mut done = vec![false; events.len()];
        let mut attempts = vec![0u32; events.len()];
        let mut prefix = 0;
        let mut flight: JoinSet<(usize, Result<async_nats::jetstream::publish::PublishAck, String>)> =
            JoinSet::new();
        // The first event of each owner, in sequence order, as room allows.
        let mut ready: VecDeque<usize> = order.into();
        let mut tick = tokio::time::interval(RENEW);
        tick.reset();
        loop {
            while flight.len() < IN_FLIGHT {
                let Some(i) = ready.pop_front() else { break };
                flight.spawn(send(
                    self.js.clone(),
                    Arc::clone(&self.settings),
                    self.ws.clone(),
                    Arc::clone(&events[i]),
                    i,
                    Duration::ZERO,
                ));
            }
            if prefix == events.len() {
                return None;
            }
            tokio::select! {
                finished = flight.join_next() => {
                    // Nothing in flight with events left, or a publish
                    // that broke: start again from the stored cursor.
                    let Some(Ok((i, result))) = finished else {
                        if let Some(Err(e)) = finished {
                            tracing::error!(workspace = %self.ws, error = %e, "a publish failed unexpectedly");
                        }
                        return Some(Stop::Failed);
                    };
                    match result {
                        Ok(ack) => {
                            if ack.duplicate {
                                tracing::debug!(workspace = %self.ws, seq = events[i].seq, "JetStream had it already");
                            }
                            done[i] = true;
                            let (whose, id) = events[i].owner();
                            if let Some(queue) = queues.get_mut(&(whose, id.to_owned())) {
                                queue.pop_front();
                                if let Some(&next) = queue.front() {
                                    ready.push_back(next);
                                }
                            }
                            while prefix < events.len() && done[prefix] {
                                prefix += 1;
                            }
                        }
                        Err(why) => {
                            attempts[i] += 1;
                            let wait = backoff(attempts[i] - 1);
                            tracing::warn!(
                                workspace = %self.ws, seq = events[i].seq, attempts = attempts[i],
                                retry_in_ms = wait.as_millis() as u64, error = %why,
                                "a publish to JetStream failed; it is sent again"
                            );
                            // The owner's next events wait: this one is sent again first.
                            flight.spawn(send(self.js.clone(), Arc::clone(&self.settings), self.ws.clone(), Arc::clone(&events[i]), i, wait));
                        }
                    }
                }
                _ = tick.tick() => {
                    // Everything before the first event not yet acknowledged is done.
                    let cursor = if prefix < events.len() { events[prefix].seq - 1 } else { self.cursor };
                    if let Ok(false) = self.move_to(cursor).await {
                        return Some(Stop::Lost);
                    }
                }
                () = self.stopping.cancelled() => return Some(Stop::Stopping),
                () = self.lost.cancelled() => return Some(Stop::Lost),
            }
        }
    }
}

/// Publishes one event after `wait`, and waits for JetStream's
/// acknowledgement (at most [`ACK_TIMEOUT`]).
async fn send(
    js: jetstream::Context,
    settings: Arc<Settings>,
    ws: String,
    event: Arc<StreamEvent>,
    i: usize,
    wait: Duration,
) -> (usize, Result<async_nats::jetstream::publish::PublishAck, String>) {
    if !wait.is_zero() {
        tokio::time::sleep(wait).await;
    }
    let body = crate::services::triggers::event_out(&event).encode_to_vec();
    let message = jetstream::message::PublishMessage::build()
        .payload(body.into())
        .headers(subject::headers(&ws, &event));
    let result = async {
        let ack = js
            .send_publish(subject::subject(&ws, &event), message)
            .await
            .map_err(|e| e.to_string())?;
        match ack.await {
            Ok(ack) => Ok(ack),
            // The stream was deleted under the relay: made again before
            // the publish is retried.
            Err(e) if e.kind() == jetstream::context::PublishErrorKind::StreamNotFound => {
                if let Err(Unfit::Refused(why) | Unfit::Unreachable(why)) =
                    ensure_stream(&js, &settings).await
                {
                    tracing::warn!(error = %why, "the relay's stream is missing and cannot be made");
                }
                Err(e.to_string())
            }
            Err(e) => Err(e.to_string()),
        }
    }
    .await;
    (i, result)
}
