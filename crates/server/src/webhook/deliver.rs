//! The delivery workers: each endpoint is delivered by one replica at a
//! time (its relay row's lease, as the JetStream relay's), which reads the
//! events its filter lets through into deliveries, sends those the domain
//! says may go (the first open one of each lead, when due), writes each
//! outcome, and moves the endpoint's cursor to below its first open
//! delivery.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use leadflow_domain::webhook::MAX_OPEN;
use leadflow_engine::webhooks::{delivered, failed, schedule};
use leadflow_engine::{DeliveryRecord, WebhookRecord};
use leadflow_engine::{Engine, EngineError};
use prost::Message as _;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::http::{self, Reach};
use super::sign;
use crate::leases::{Held, LEASE, RENEW, pause};

/// Every endpoint's relay row is named so.
pub const PREFIX: &str = "webhook:";
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
    /// the endpoint gone (false). Attempts run beside the rounds: a slow
    /// endpoint answer holds its own lead only.
    async fn deliver(&self) -> bool {
        let mut flight: JoinSet<Outcome> = JoinSet::new();
        // The subject of each delivery in flight, by sequence, and each
        // attempt's delivery by its task.
        let mut flying: HashMap<i64, String> = HashMap::new();
        let mut tasks: HashMap<tokio::task::Id, i64> = HashMap::new();
        loop {
            let commits = Arc::clone(&self.commits);
            let commit = commits.notified();
            let pause = match self.round(&mut flight, &mut flying, &mut tasks).await {
                Ok(Some(pause)) => pause,
                Ok(None) => return false,
                Err(e) => {
                    tracing::warn!(webhook = %self.id, error = %e, "a webhook round failed; tried again");
                    POLL
                }
            };
            if pause.is_zero() {
                continue;
            }
            tokio::select! {
                done = flight.join_next_with_id(), if !flight.is_empty() => {
                    if let Err(e) = self.finished(done, &mut flying, &mut tasks).await {
                        tracing::warn!(webhook = %self.id, error = %e, "a delivery's outcome could not be written; it is attempted again");
                    }
                }
                () = commit => {}
                () = tokio::time::sleep(pause) => {}
                () = self.stopping.cancelled() => return true,
                () = self.lost.cancelled() => return false,
            }
        }
    }

    /// Writes an attempt's outcome, over the delivery as it was: a call
    /// that skipped or retried it meanwhile wins.
    async fn finished(
        &self,
        done: Option<Result<(tokio::task::Id, Outcome), tokio::task::JoinError>>,
        flying: &mut HashMap<i64, String>,
        tasks: &mut HashMap<tokio::task::Id, i64>,
    ) -> Result<(), EngineError> {
        let (was, d, ok) = match done {
            Some(Ok((id, outcome))) => {
                tasks.remove(&id);
                outcome
            }
            Some(Err(e)) => {
                // The attempt's task broke: its delivery is attempted again.
                tracing::error!(webhook = %self.id, error = %e, "a webhook attempt failed unexpectedly");
                if let Some(seq) = tasks.remove(&e.id()) {
                    flying.remove(&seq);
                }
                return Ok(());
            }
            None => return Ok(()),
        };
        flying.remove(&d.seq);
        self.engine.record_attempt(&self.ws, &self.id, &was, &d).await?;
        let hook = self.engine.webhook(&self.ws, &self.id).await?;
        if self.engine.note_webhook_health(&self.ws, &hook, ok).await? {
            tracing::error!(webhook = %self.id, "every delivery failed for 24 h: the webhook is disabled");
        }
        Ok(())
    }

    /// One round: read new events into deliveries, start the attempts that
    /// may go (the first open delivery of each lead, when due, its lead not
    /// in flight), move the cursor. The pause before the next round (zero:
    /// at once); `None` when the worker must stop.
    async fn round(
        &self,
        flight: &mut JoinSet<Outcome>,
        flying: &mut HashMap<i64, String>,
        tasks: &mut HashMap<tokio::task::Id, i64>,
    ) -> Result<Option<Duration>, EngineError> {
        let mut hook = match self.engine.webhook(&self.ws, &self.id).await {
            Ok(hook) if hook.enabled => hook,
            Ok(_) | Err(EngineError::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(e),
        };
        let mut open = self.engine.open_deliveries(&self.ws, &self.id).await?;
        let mut more = false;
        if open.len() < MAX_OPEN {
            let room = u64::try_from(MAX_OPEN - open.len()).unwrap_or(0).min(BATCH);
            let (new, read_any) = self.engine.read_for_webhook(&self.ws, &mut hook, room).await?;
            more = read_any && !new.is_empty();
            open.extend(new);
        }
        let now = self.engine.now();
        let deliveries = schedule(&open);
        let by_seq: HashMap<i64, DeliveryRecord> = open.into_iter().map(|d| (d.seq, d)).collect();
        let busy: std::collections::HashSet<&str> = flying.values().map(String::as_str).collect();
        let ready: Vec<i64> = deliveries
            .ready(now)
            .into_iter()
            .filter(|seq| !flying.contains_key(seq))
            .filter(|seq| {
                by_seq
                    .get(seq)
                    .is_some_and(|d| !busy.contains(d.subject.as_str()))
            })
            .take(CONCURRENCY.saturating_sub(flight.len()))
            .collect();
        for seq in &ready {
            let Some(d) = by_seq.get(seq).cloned() else {
                continue;
            };
            flying.insert(d.seq, d.subject.clone());
            let seq = d.seq;
            let task = flight.spawn(attempt(
                self.engine.clone(),
                self.ws.clone(),
                hook.clone(),
                d,
                self.reach,
            ));
            tasks.insert(task.id(), seq);
        }
        let cursor = deliveries.cursor(hook.read);
        let (holder, epoch) = &self.lease;
        if !self
            .engine
            .advance_relay(&self.ws, &self.name, (holder, *epoch), cursor, LEASE)
            .await?
        {
            return Ok(None);
        }
        if more {
            return Ok(Some(Duration::ZERO));
        }
        let until_due = deliveries.next_due().map(|at| {
            Duration::from_micros(u64::try_from((at.as_micros() - now.as_micros()).max(0)).unwrap_or(0))
        });
        // Something due now but held (its lead in flight, or no room):
        // the next finished attempt wakes the worker.
        Ok(Some(
            until_due.map_or(POLL, |d| d.clamp(Duration::from_millis(50), POLL)),
        ))
    }
}

/// One attempt of delivery `d`: the delivery as it was, as it stands
/// after the attempt, and whether the endpoint answered 2xx.
async fn attempt(
    engine: Engine,
    ws: String,
    hook: WebhookRecord,
    d: DeliveryRecord,
    reach: Reach,
) -> (DeliveryRecord, DeliveryRecord, bool) {
    let was = d.clone();
    let (after, ok) = attempt_once(engine, ws, hook, d, reach).await;
    (was, after, ok)
}

async fn attempt_once(
    engine: Engine,
    ws: String,
    hook: WebhookRecord,
    d: DeliveryRecord,
    reach: Reach,
) -> (DeliveryRecord, bool) {
    let at = engine.now();
    let jitter = {
        let mut b = [0u8; 1];
        getrandom::fill(&mut b).map_or(0.5, |()| f64::from(b[0]) / 255.0)
    };
    let body = match engine.relay_batch(&ws, d.seq - 1, 1).await {
        Ok(batch) => match batch.events.first().filter(|e| e.seq == d.seq) {
            Some(e) => event_json(&crate::services::triggers::event_out(e)),
            None => Err(format!("event {} is no longer kept", d.seq)),
        },
        Err(e) => Err(e.to_string()),
    };
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
