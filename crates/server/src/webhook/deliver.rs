//! The delivery workers: each endpoint is delivered by one replica at a
//! time (its relay row's lease, as the JetStream relay's), which reads the
//! events its filter lets through into deliveries, sends those the domain
//! says may go (the first open one of each lead, when due), writes each
//! outcome, and moves the endpoint's cursor to below its first open
//! delivery.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use leadflow_domain::webhook::MAX_OPEN;
use leadflow_engine::webhooks::{delivered, failed, schedule};
use leadflow_engine::{DeliveryRecord, WebhookRecord};
use leadflow_engine::{Engine, EngineError, StreamEvent};
use prost::Message as _;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::http::{self, Reach};
use super::sign;
use crate::leases::{Held, LEASE, RENEW, pause};

/// Every endpoint's relay row is named so.
pub const PREFIX: &str = leadflow_engine::WEBHOOK_RELAY_PREFIX;
/// How often an endpoint looks for new events and due retries unwoken.
const POLL: Duration = Duration::from_secs(1);
/// Requests of one endpoint in flight at most (to different leads).
const CONCURRENCY: usize = 16;
/// Events read at a time.
const BATCH: u64 = 500;

/// The event as proto3 JSON (the canonical mapping of `leadflow.v1.Event`).
pub fn event_json(event: &leadflow_proto::v1::Event) -> Result<Vec<u8>, String> {
    static DESCRIPTOR: OnceLock<Option<prost_reflect::MessageDescriptor>> = OnceLock::new();
    let descriptor = DESCRIPTOR
        .get_or_init(|| {
            prost_reflect::DescriptorPool::decode(leadflow_proto::FILE_DESCRIPTOR_SET)
                .ok()?
                .get_message_by_name("leadflow.v1.Event")
        })
        .as_ref()
        .ok_or("the Event descriptor is missing")?;
    let message = prost_reflect::DynamicMessage::decode(descriptor.clone(), event.encode_to_vec().as_slice())
        .map_err(|e| e.to_string())?;
    serde_json::to_vec(&message).map_err(|e| e.to_string())
}

/// Delivers every endpoint this replica can take, until `stopping`.
pub async fn run(engine: Engine, reach: Reach, stopping: CancellationToken) {
    let holder = uuid::Uuid::new_v4().to_string();
    let mut held = Held::new("webhook");
    loop {
        match engine.hold_relays_prefixed(PREFIX, &holder, LEASE).await {
            Ok(rows) => held.renewed(rows, |record, lost| {
                Worker {
                    engine: engine.clone(),
                    reach,
                    commits: engine.commits(&record.workspace),
                    id: record.name.trim_start_matches(PREFIX).to_owned(),
                    lease: (holder.clone(), record.created_at.as_micros()),
                    ws: record.workspace,
                    name: record.name,
                    stopping: stopping.child_token(),
                    lost,
                }
                .run()
            }),
            Err(e) => tracing::warn!(error = %e, "the webhook workers cannot renew their leases"),
        }
        if !pause(RENEW, &stopping).await {
            break;
        }
    }
    held.join().await;
}

/// An attempt's delivery as it was, as it is after, and whether it was taken.
type Outcome = (DeliveryRecord, DeliveryRecord, bool);

struct Worker {
    engine: Engine,
    reach: Reach,
    commits: Arc<tokio::sync::Notify>,
    ws: String,
    id: String,
    name: String,
    lease: (String, i64),
    stopping: CancellationToken,
    lost: CancellationToken,
}

/// What a worker knows of its endpoint between rounds. The open
/// deliveries are read from the store when it starts, every [`POLL`] after
/// (a call on any replica may have retried or skipped one) and whenever a
/// write of its own was refused, and kept up to date with its own writes in
/// between, so that a round reads the endpoint's row only. The endpoint is
/// read at every round.
struct State {
    /// As the last round read it, with this worker's own changes since.
    hook: Option<WebhookRecord>,
    /// The open deliveries, by sequence.
    open: BTreeMap<i64, DeliveryRecord>,
    /// The events of open deliveries this worker read (the others are read
    /// when attempted).
    events: HashMap<i64, Arc<StreamEvent>>,
    /// Each delivery in flight's subject, by sequence, and each attempt's
    /// sequence by its task.
    flying: HashMap<i64, String>,
    tasks: HashMap<tokio::task::Id, i64>,
    /// The cursor last written, and when.
    cursor: Option<i64>,
    fenced: Option<Instant>,
    /// When the endpoint and its open deliveries were last read.
    synced: Option<Instant>,
    /// Events may wait to be read (a commit, or a batch that was full).
    unread: bool,
}

impl State {
    fn new() -> Self {
        Self {
            hook: None,
            open: BTreeMap::new(),
            events: HashMap::new(),
            flying: HashMap::new(),
            tasks: HashMap::new(),
            cursor: None,
            fenced: None,
            synced: None,
            unread: true,
        }
    }
}

impl Worker {
    async fn run(self) {
        let stopped = self.deliver().await;
        if stopped
            && let Err(e) = self
                .engine
                .release_relay(&self.ws, &self.name, &self.lease.0)
                .await
        {
            tracing::warn!(webhook = %self.id, error = %e, "could not give the webhook's lease up");
        }
    }

    /// Delivers until stopped (true: a shutdown) or the lease is lost or
    /// the endpoint gone or disabled (false). Attempts run beside the
    /// rounds: a slow endpoint answer holds its own lead only.
    async fn deliver(&self) -> bool {
        let mut flight: JoinSet<Outcome> = JoinSet::new();
        let mut state = State::new();
        loop {
            let commits = Arc::clone(&self.commits);
            let commit = commits.notified();
            let pause = match self.round(&mut flight, &mut state).await {
                Ok(Some(pause)) => pause,
                Ok(None) => return false,
                Err(e) => {
                    tracing::warn!(webhook = %self.id, error = %e, "a webhook round failed; tried again");
                    state.synced = None;
                    POLL
                }
            };
            if pause.is_zero() {
                // Straight on to the next round, but never past a shutdown,
                // a lost lease or attempts that ended.
                if self.stopping.is_cancelled() {
                    return true;
                }
                if self.lost.is_cancelled() {
                    return false;
                }
                if let Some(done) = flight.try_join_next_with_id()
                    && !self.ended(done, &mut flight, &mut state).await
                {
                    return false;
                }
                continue;
            }
            tokio::select! {
                done = flight.join_next_with_id(), if !flight.is_empty() => {
                    if let Some(done) = done
                        && !self.ended(done, &mut flight, &mut state).await
                    {
                        return false;
                    }
                }
                () = commit => state.unread = true,
                () = tokio::time::sleep(pause) => {}
                () = self.stopping.cancelled() => return true,
                () = self.lost.cancelled() => return false,
            }
        }
    }

    /// Writes the outcome of an attempt that ended, and of every other
    /// that ended meanwhile: false once the endpoint is disabled.
    async fn ended(
        &self,
        done: Result<(tokio::task::Id, Outcome), tokio::task::JoinError>,
        flight: &mut JoinSet<Outcome>,
        state: &mut State,
    ) -> bool {
        let mut ended = vec![done];
        while let Some(more) = flight.try_join_next_with_id() {
            ended.push(more);
        }
        match self.finished(ended, state).await {
            Ok(enabled) => enabled,
            Err(e) => {
                tracing::warn!(webhook = %self.id, error = %e, "deliveries' outcomes could not be written; they are attempted again");
                state.synced = None;
                true
            }
        }
    }

    /// Writes attempts' outcomes, each over its delivery as it was (a call
    /// that skipped or retried one meanwhile wins), in one transaction.
    /// False once the endpoint is disabled.
    async fn finished(
        &self,
        ended: Vec<Result<(tokio::task::Id, Outcome), tokio::task::JoinError>>,
        state: &mut State,
    ) -> Result<bool, EngineError> {
        let mut outcomes = Vec::with_capacity(ended.len());
        for done in ended {
            match done {
                Ok((task, outcome)) => {
                    state.tasks.remove(&task);
                    state.flying.remove(&outcome.1.seq);
                    outcomes.push(outcome);
                }
                Err(e) => {
                    // The attempt's task broke: its delivery is attempted again.
                    tracing::error!(webhook = %self.id, error = %e, "a webhook attempt failed unexpectedly");
                    if let Some(seq) = state.tasks.remove(&e.id()) {
                        state.flying.remove(&seq);
                    }
                }
            }
        }
        let pairs: Vec<(&DeliveryRecord, &DeliveryRecord)> =
            outcomes.iter().map(|(was, d, _)| (was, d)).collect();
        let written = self.engine.record_attempts(&self.ws, &self.id, &pairs).await?;
        for ((_, d, ok), written) in outcomes.into_iter().zip(written) {
            if !written {
                // Changed meanwhile: read it again.
                state.synced = None;
            } else if d.resolved_at.is_some() {
                state.open.remove(&d.seq);
            } else {
                state.open.insert(d.seq, d.clone());
            }
            // A kept event serves the first attempt only: a retry reads the
            // stored one, which an erasure may have scrubbed meanwhile.
            state.events.remove(&d.seq);
            let Some(hook) = state.hook.as_mut() else {
                continue;
            };
            if self.engine.note_webhook_health(&self.ws, hook, ok).await? {
                tracing::error!(webhook = %self.id, "every delivery failed for 24 h: the webhook is disabled");
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// Reads the endpoint's open deliveries from the store.
    async fn sync(&self, state: &mut State) -> Result<(), EngineError> {
        state.open = self
            .engine
            .open_deliveries(&self.ws, &self.id)
            .await?
            .into_iter()
            .map(|d| (d.seq, d))
            .collect();
        let open = &state.open;
        state.events.retain(|seq, _| open.contains_key(seq));
        state.synced = Some(Instant::now());
        state.unread = true;
        Ok(())
    }

    /// One round: read new events into deliveries, start the attempts that
    /// may go (the first open delivery of each lead, when due, its lead not
    /// in flight), move the cursor. The pause before the next round (zero:
    /// at once); `None` when the worker must stop.
    async fn round(
        &self,
        flight: &mut JoinSet<Outcome>,
        state: &mut State,
    ) -> Result<Option<Duration>, EngineError> {
        // The endpoint itself at every round (one row): a rotated secret
        // signs the next request, a deleted or disabled endpoint stops.
        let mut hook = match self.engine.webhook(&self.ws, &self.id).await {
            Ok(hook) if hook.enabled => hook,
            Ok(_) | Err(EngineError::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(e),
        };
        if state.synced.is_none_or(|at| at.elapsed() >= POLL) {
            self.sync(state).await?;
        }
        let read = if state.unread && state.open.len() < MAX_OPEN {
            let room = MAX_OPEN - state.open.len();
            self.engine
                .read_for_webhook(&self.ws, &mut hook, BATCH, room)
                .await
        } else {
            Ok((Vec::new(), false))
        };
        let hook = &*state.hook.insert(hook);
        let (new, read_any) = read?;
        if state.open.len() < MAX_OPEN {
            state.unread = read_any;
        }
        for (d, e) in new {
            state.events.insert(d.seq, e);
            state.open.insert(d.seq, d);
        }
        let now = self.engine.now();
        let deliveries = schedule(state.open.values());
        let busy: HashSet<&str> = state.flying.values().map(String::as_str).collect();
        let ready: Vec<i64> = deliveries
            .ready(now)
            .into_iter()
            .filter(|seq| !state.flying.contains_key(seq))
            .filter(|seq| {
                state
                    .open
                    .get(seq)
                    .is_some_and(|d| !busy.contains(d.subject.as_str()))
            })
            .take(CONCURRENCY.saturating_sub(flight.len()))
            .collect();
        for seq in ready {
            let Some(d) = state.open.get(&seq).cloned() else {
                continue;
            };
            state.flying.insert(seq, d.subject.clone());
            let task = flight.spawn(attempt(
                self.engine.clone(),
                self.ws.clone(),
                hook.clone(),
                d,
                state.events.get(&seq).cloned(),
                self.reach,
            ));
            state.tasks.insert(task.id(), seq);
        }
        let cursor = deliveries.cursor(hook.read);
        // Written when it moves, and at least every renewal: the write is
        // also this worker's check that it still holds the lease.
        if state.cursor != Some(cursor) || state.fenced.is_none_or(|at| at.elapsed() >= RENEW) {
            let (holder, epoch) = &self.lease;
            if !self
                .engine
                .advance_relay(&self.ws, &self.name, (holder, *epoch), cursor, LEASE)
                .await?
            {
                return Ok(None);
            }
            state.cursor = Some(cursor);
            state.fenced = Some(Instant::now());
        }
        // More to read, and room for it: at once. (Stalled at the bound,
        // a resolved delivery makes room for the next round.)
        if state.unread && state.open.len() < MAX_OPEN {
            return Ok(Some(Duration::ZERO));
        }
        // Subjects in flight wait for their attempt, which wakes the worker.
        let busy: HashSet<&str> = state.flying.values().map(String::as_str).collect();
        let waiting = schedule(state.open.values().filter(|d| !busy.contains(d.subject.as_str())));
        let until_due = waiting.next_due().map(|at| {
            Duration::from_micros(u64::try_from((at.as_micros() - now.as_micros()).max(0)).unwrap_or(0))
        });
        // Something due now but held (no room for another request): the
        // next finished attempt wakes the worker.
        Ok(Some(
            until_due.map_or(POLL, |d| d.clamp(Duration::from_millis(50), POLL)),
        ))
    }
}

/// One attempt of delivery `d` (of `event`, when the worker has it): the
/// delivery as it was, as it stands after the attempt, and whether the
/// endpoint answered 2xx.
async fn attempt(
    engine: Engine,
    ws: String,
    hook: WebhookRecord,
    d: DeliveryRecord,
    event: Option<Arc<StreamEvent>>,
    reach: Reach,
) -> (DeliveryRecord, DeliveryRecord, bool) {
    let was = d.clone();
    let (after, ok) = attempt_once(engine, ws, hook, d, event, reach).await;
    (was, after, ok)
}

async fn attempt_once(
    engine: Engine,
    ws: String,
    hook: WebhookRecord,
    d: DeliveryRecord,
    event: Option<Arc<StreamEvent>>,
    reach: Reach,
) -> (DeliveryRecord, bool) {
    let at = engine.now();
    let jitter = {
        let mut b = [0u8; 1];
        getrandom::fill(&mut b).map_or(0.5, |()| f64::from(b[0]) / 255.0)
    };
    let event = match event {
        Some(e) => Ok(e),
        None => match engine.relay_batch(&ws, d.seq - 1, 1).await {
            Ok(batch) => batch
                .events
                .into_iter()
                .find(|e| e.seq == d.seq)
                .ok_or_else(|| format!("event {} is no longer kept", d.seq)),
            Err(e) => Err(e.to_string()),
        },
    };
    let body = event.and_then(|e| event_json(&crate::services::triggers::event_out(&e)));
    let body = match body {
        Ok(body) => Bytes::from(body),
        Err(why) => return (failed(d, at, None, why, jitter), false),
    };
    let timestamp = at.as_micros().div_euclid(1_000_000);
    let mut secrets = vec![hook.secret.as_str()];
    if let Some(previous) = &hook.previous_secret
        && hook.previous_until > at.as_micros()
    {
        secrets.push(previous.as_str());
    }
    let headers = [
        ("content-type", "application/json".to_owned()),
        ("webhook-id", d.event_id.clone()),
        ("webhook-timestamp", timestamp.to_string()),
        (
            "webhook-signature",
            sign::signature_header(secrets, &d.event_id, timestamp, &body),
        ),
    ];
    match http::post(&hook.url, &headers, body, reach).await {
        Ok(answer) if (200..300).contains(&answer.status) => (delivered(d, at, answer.status), true),
        Ok(answer) => {
            let why = format!(
                "HTTP {}: {}",
                answer.status,
                answer.body.chars().take(200).collect::<String>()
            );
            (failed(d, at, Some(answer.status), why, jitter), false)
        }
        Err(e) => (failed(d, at, None, e.to_string(), jitter), false),
    }
}
