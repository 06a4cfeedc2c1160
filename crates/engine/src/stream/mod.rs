//! The event stream: a tail per workspace reads new outbox rows once and
//! broadcasts them; each subscription catches up from the table, then
//! follows the broadcast, and falls back to the table whenever it lags;
//! streams catching up over the same stretch share what the tail keeps of
//! it. No subscriber can make the process hold more than the broadcast's
//! bounded buffer, the tail's bounded store of recent events and its own
//! bounded channel.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use tokio::time::Instant;

use leadflow_domain::{Stage, Timestamp};
use leadflow_store::{OutboxRecord, Store};

use crate::tasks::Tasks;
use run::Run;

mod claims;
mod run;
use crate::views::Consumer;
use tokio::sync::{Notify, broadcast, mpsc};

use crate::Engine;
use crate::error::EngineError;
use crate::model::OutboxPayload;

/// How often a stream says where it is, at the longest.
pub const CHECKPOINT_EVERY: Duration = Duration::from_secs(5);
/// How often a tail looks at the table without being woken (the safety net
/// under in-process and LISTEN/NOTIFY wake-ups).
const POLL_EVERY: Duration = Duration::from_millis(500);
const BATCH: u64 = 500;
/// Events a tail holds for subscribers that are behind.
const BROADCAST_CAPACITY: usize = 4_096;
/// Items a subscription holds for a client that reads slowly.
const SUBSCRIPTION_BUFFER: usize = 256;
/// Decoded events a tail keeps for subscriptions catching up, newest first
/// kept: subscribers reading the same stretch share one read and decoding.
const RECENT_CAPACITY: usize = 2_048;

/// An outbox event, decoded.
#[derive(Clone, Debug, PartialEq)]
pub struct StreamEvent {
    pub seq: i64,
    pub event_id: String,
    /// TRANSITION, TRIGGER, SLA_BREACHED, LEAD_ERASED, LEVEL_CHANGED,
    /// ACCOUNT_TRANSITION, ACCOUNT_TRIGGER, LEAD_MERGED, LEAD_UNMERGED,
    /// LEAD_ASSIGNED, LEAD_UNROUTED, WEBHOOK_DISABLED.
    pub kind: String,
    pub occurred_at: Timestamp,
    pub committed_at: Timestamp,
    pub traceparent: Option<String>,
    pub suppressed: bool,
    pub payload: Payload,
    /// The event as the API sends it, encoded by the first stream that
    /// sends it and sent as is by every other.
    pub wire: OnceLock<bytes::Bytes>,
}

impl StreamEvent {
    /// Whose event it is: ("lead" | "account" | "webhook", id). A relay
    /// or a webhook keeps each owner's events in sequence order.
    pub fn owner(&self) -> (&'static str, &str) {
        match &self.payload {
            Payload::Lead(p) => ("lead", &p.lead_id),
            Payload::Account(a) => ("account", &a.account_id),
            Payload::Webhook(w) => ("webhook", &w.webhook_id),
        }
    }

    fn decode(record: OutboxRecord) -> Result<Self, EngineError> {
        let undecodable = |e: serde_json::Error| {
            EngineError::Internal(format!("outbox event {} does not decode: {e}", record.seq))
        };
        let payload = match record.event.subject {
            leadflow_store::Subject::Lead => {
                Payload::Lead(serde_json::from_str(&record.event.payload).map_err(undecodable)?)
            }
            leadflow_store::Subject::Account => {
                Payload::Account(serde_json::from_str(&record.event.payload).map_err(undecodable)?)
            }
            leadflow_store::Subject::Webhook => {
                Payload::Webhook(serde_json::from_str(&record.event.payload).map_err(undecodable)?)
            }
        };
        Ok(Self {
            seq: record.seq,
            event_id: record.event.event_id,
            kind: record.event.kind,
            occurred_at: record.event.occurred_at,
            committed_at: record.event.created_at,
            traceparent: record.event.traceparent,
            suppressed: record.event.suppressed,
            payload,
            wire: OnceLock::new(),
        })
    }
}

/// Outbox records read after sequence `after`, decoded: `OUT_OF_RANGE` when
/// they skip a sequence (sequences have no holes: those were trimmed under
/// the reader).
pub(crate) fn decode_after(
    after: i64,
    records: Vec<OutboxRecord>,
) -> Result<Vec<Arc<StreamEvent>>, EngineError> {
    let mut events = Vec::with_capacity(records.len());
    let mut want = after + 1;
    for record in records {
        if record.seq > want {
            return Err(EngineError::OutOfRange(format!(
                "events {want} to {} are no longer kept",
                record.seq - 1
            )));
        }
        want = record.seq + 1;
        events.push(Arc::new(StreamEvent::decode(record)?));
    }
    Ok(events)
}

/// Whose event it is, and what it says.
#[derive(Clone, Debug, PartialEq)]
pub enum Payload {
    Lead(Box<OutboxPayload>),
    Account(Box<crate::accounts::AccountPayload>),
    /// A webhook endpoint's own event.
    Webhook(Box<crate::webhooks::WebhookPayload>),
}

/// What a stream sends.
#[derive(Clone, Debug, PartialEq)]
pub enum StreamItem {
    Event(Arc<StreamEvent>),
    /// Everything up to `head` has been looked at.
    Checkpoint {
        head: i64,
        at: Timestamp,
    },
}

/// Where a subscription starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Start {
    /// RESUME for a known consumer, EARLIEST for a new one.
    Default,
    Resume,
    Earliest,
    Latest,
    AtSequence(i64),
    /// The lowest sequence committed at or after the instant.
    AtTime(Timestamp),
}

/// Narrows a subscription; empty lists let everything through.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct Filter {
    pub kinds: Vec<String>,
    /// Transitions entering these stages.
    pub stages: Vec<Stage>,
    /// Account transitions entering these account stages.
    pub account_stages: Vec<leadflow_domain::AccountStage>,
    /// Triggers of these workflows.
    pub workflows: Vec<String>,
}

impl Filter {
    pub fn admits(&self, e: &StreamEvent) -> bool {
        if e.suppressed {
            return false;
        }
        if !self.kinds.is_empty() && !self.kinds.contains(&e.kind) {
            return false;
        }
        let (entered_lead, entered_account, workflow) = match &e.payload {
            Payload::Lead(p) => (
                p.transition.as_ref().map(|t| t.record.to),
                None,
                p.trigger.as_ref().map(|t| t.workflow_id.as_str()),
            ),
            Payload::Account(p) => (
                None,
                p.transition.as_ref().map(|t| t.record.to),
                p.trigger.as_ref().map(|t| t.workflow_id.as_str()),
            ),
            Payload::Webhook(_) => (None, None, None),
        };
        if let Some(to) = entered_lead
            && !self.stages.is_empty()
            && !self.stages.contains(&to)
        {
            return false;
        }
        if let Some(to) = entered_account
            && !self.account_stages.is_empty()
            && !self.account_stages.contains(&to)
        {
            return false;
        }
        if let Some(id) = workflow
            && !self.workflows.is_empty()
            && !self.workflows.iter().any(|w| w == id)
        {
            return false;
        }
        true
    }
}

/// A workspace's tail: the last sequence read, and the broadcast of what follows.
#[derive(Debug)]
struct Tail {
    wake: Notify,
    events: broadcast::Sender<Arc<StreamEvent>>,
    /// The last sequence the tail has read and broadcast.
    read: AtomicI64,
    /// Events lately read from the table, by the tail or a catch-up.
    recent: Mutex<BTreeMap<i64, Arc<StreamEvent>>>,
}

impl Tail {
    /// Keeps events just read, dropping the oldest beyond the capacity, and
    /// hands back the ones to send: an event already kept is the kept one
    /// (with its encoding, if a stream has made it), not a second copy.
    fn remember(&self, events: Vec<Arc<StreamEvent>>) -> Vec<Arc<StreamEvent>> {
        let mut recent = lock(&self.recent);
        let shared = events
            .into_iter()
            .map(|e| Arc::clone(recent.entry(e.seq).or_insert(e)))
            .collect();
        while recent.len() > RECENT_CAPACITY {
            recent.pop_first();
        }
        shared
    }

    /// The events kept from `from` on without a gap, at most `limit`.
    fn recall(&self, from: i64, limit: usize) -> Vec<Arc<StreamEvent>> {
        let recent = lock(&self.recent);
        recent
            .range(from..)
            .zip(from..)
            .take_while(|((seq, _), want)| **seq == *want)
            .take(limit)
            .map(|((_, e), _)| Arc::clone(e))
            .collect()
    }
}

/// The local stream owning each (workspace, consumer): its session, and how
/// to tell it a newer one took over.
type Owners = HashMap<(String, String), (String, Arc<Notify>)>;

/// A tail with no subscriber stops after this many quiet polls.
const IDLE_POLLS: u32 = 20;

/// Wake-ups and fan-out for every workspace of this process.
#[derive(Debug, Default)]
pub(crate) struct Hub {
    tails: Mutex<HashMap<String, Arc<Tail>>>,
    /// The local stream owning each consumer, to end it on a takeover.
    owners: Mutex<Owners>,
    /// Workspaces whose commits other replicas are yet to hear of.
    unannounced: Mutex<HashSet<String>>,
    announcer: Notify,
    announcer_started: AtomicBool,
    /// Consumer claims waiting to be written together.
    claims: Arc<claims::Claims>,
    /// Per workspace, woken at every commit with events: relays wait on it.
    commits: Mutex<HashMap<String, Arc<Notify>>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Hub {
    /// The tail of `ws` (started on first use) and a receiver of its
    /// broadcast. The tail starts after the head as it is *before* the
    /// caller reads the table, so whatever commits from then on is either in
    /// that read or in the broadcast. The receiver is taken under the map's
    /// lock, so an idle tail cannot stop between the two.
    async fn follow(
        self: &Arc<Self>,
        store: &Store,
        tasks: &Tasks,
        ws: &str,
    ) -> Result<(Arc<Tail>, broadcast::Receiver<Arc<StreamEvent>>), EngineError> {
        if let Some(t) = lock(&self.tails).get(ws) {
            return Ok((Arc::clone(t), t.events.subscribe()));
        }
        let head = store.outbox_bounds(ws).await?.head;
        let mut tails = lock(&self.tails);
        if let Some(t) = tails.get(ws) {
            return Ok((Arc::clone(t), t.events.subscribe()));
        }
        let (events, receiver) = broadcast::channel(BROADCAST_CAPACITY);
        let tail = Arc::new(Tail {
            wake: Notify::new(),
            events,
            read: AtomicI64::new(head),
            recent: Mutex::new(BTreeMap::new()),
        });
        tails.insert(ws.to_owned(), Arc::clone(&tail));
        tasks.spawn_until_stopped(run_tail(
            Arc::clone(self),
            store.clone(),
            ws.to_owned(),
            Arc::clone(&tail),
        ));
        Ok((tail, receiver))
    }

    /// Wakes the tail of `ws`, if it runs here.
    pub(crate) fn wake(&self, ws: &str) {
        if let Some(t) = lock(&self.tails).get(ws) {
            t.wake.notify_one();
        }
        if let Some(commits) = lock(&self.commits).get(ws) {
            commits.notify_waiters();
        }
    }

    /// What a commit with events in `ws` notifies (made on first use).
    pub(crate) fn commits(&self, ws: &str) -> Arc<Notify> {
        Arc::clone(lock(&self.commits).entry(ws.to_owned()).or_default())
    }

    /// Forgets a stream's ownership of its consumer, if it still has it.
    fn release(&self, ws: &str, consumer: &str, session: &str) {
        let mut owners = lock(&self.owners);
        let key = (ws.to_owned(), consumer.to_owned());
        if owners.get(&key).is_some_and(|(s, _)| s == session) {
            owners.remove(&key);
        }
    }
}

/// Forgets a tail when it stops, however it stops (idle, or at a
/// shutdown): the next subscriber of its workspace starts another.
struct TailEnd {
    hub: Arc<Hub>,
    ws: String,
    tail: Arc<Tail>,
}

impl Drop for TailEnd {
    fn drop(&mut self) {
        let mut tails = lock(&self.hub.tails);
        if tails.get(&self.ws).is_some_and(|t| Arc::ptr_eq(t, &self.tail)) {
            tails.remove(&self.ws);
        }
    }
}

async fn run_tail(hub: Arc<Hub>, store: Store, ws: String, tail: Arc<Tail>) {
    let _end = TailEnd {
        hub: Arc::clone(&hub),
        ws: ws.clone(),
        tail: Arc::clone(&tail),
    };
    let mut last = tail.read.load(Ordering::SeqCst);
    let mut idle = 0;
    loop {
        tokio::select! {
            () = tail.wake.notified() => {}
            () = tokio::time::sleep(POLL_EVERY) => {}
        }
        if tail.events.receiver_count() == 0 {
            idle += 1;
            if idle >= IDLE_POLLS {
                let mut tails = lock(&hub.tails);
                if tail.events.receiver_count() == 0 {
                    tails.remove(&ws);
                    return;
                }
            }
            continue;
        }
        idle = 0;
        loop {
            let batch = match store.outbox_after(&ws, last, BATCH).await {
                Ok(batch) => batch,
                Err(e) => {
                    tracing::warn!(workspace = %ws, error = %e, "event tail cannot read the outbox");
                    break;
                }
            };
            let full = batch.len() as u64 == BATCH;
            let mut read = Vec::with_capacity(batch.len());
            for record in batch {
                last = record.seq;
                match StreamEvent::decode(record) {
                    Ok(event) => read.push(Arc::new(event)),
                    Err(e) => {
                        tracing::error!(workspace = %ws, error = %e, "skipping an event that does not decode")
                    }
                }
            }
            for event in tail.remember(read) {
                drop(tail.events.send(event));
            }
            tail.read.store(last, Ordering::SeqCst);
            if !full {
                break;
            }
        }
    }
}

/// Tells other replicas, one `pg_notify` per workspace per round however
/// many commits there were.
async fn announce_loop(hub: Arc<Hub>, store: Store) {
    /// Lets the next commit start another announcer once this one stops.
    struct Stopped(Arc<Hub>);
    impl Drop for Stopped {
        fn drop(&mut self) {
            self.0.announcer_started.store(false, Ordering::SeqCst);
        }
    }
    let _stopped = Stopped(Arc::clone(&hub));
    loop {
        hub.announcer.notified().await;
        let workspaces: Vec<String> = lock(&hub.unannounced).drain().collect();
        for ws in workspaces {
            if let Err(e) = store.notify_outbox(&ws).await {
                tracing::debug!(error = %e, "could not announce events; readers poll anyway");
            }
        }
    }
}

/// A running subscription: items arrive on a bounded channel; dropping it
/// stops the producer.
#[derive(Debug)]
pub struct Subscription {
    pub consumer: Consumer,
    /// The first sequence it will deliver.
    pub from: i64,
    items: mpsc::Receiver<Result<StreamItem, EngineError>>,
}

impl Subscription {
    pub async fn next(&mut self) -> Option<Result<StreamItem, EngineError>> {
        self.items.recv().await
    }

    pub fn into_receiver(self) -> mpsc::Receiver<Result<StreamItem, EngineError>> {
        self.items
    }
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 128
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

impl Engine {
    /// Announces a commit with outbox events: wakes local subscribers now,
    /// other replicas through the database.
    pub(crate) fn announce(&self, ws: &str) {
        self.hub.wake(ws);
        if self.store.backend() != leadflow_store::Backend::Postgres {
            return;
        }
        lock(&self.hub.unannounced).insert(ws.to_owned());
        if !self.hub.announcer_started.swap(true, Ordering::SeqCst) {
            self.tasks
                .spawn_until_stopped(announce_loop(Arc::clone(&self.hub), self.store.clone()));
        }
        self.hub.announcer.notify_one();
    }

    /// Wakes the tail of a workspace after another replica's commit.
    pub fn wake_stream(&self, ws: &str) {
        self.hub.wake(ws);
    }

    /// The lowest kept sequence committed at or after `t`, or the next one
    /// when none is yet: OUT_OF_RANGE when events committed at or after `t`
    /// may have been trimmed (`t` older than the retention, and some were).
    pub(crate) async fn first_at_or_after(
        &self,
        ws: &str,
        t: Timestamp,
        bounds: leadflow_store::OutboxBounds,
    ) -> Result<i64, EngineError> {
        let now = self.now();
        if t > now.saturating_add(leadflow_domain::lifecycle::MAX_FUTURE) {
            return Err(EngineError::invalid(
                "INVALID_FIELD",
                "at_time",
                format!("{t} is in the future"),
            ));
        }
        let kept_from = now.saturating_sub(leadflow_store::RETENTION);
        if t < kept_from && bounds.floor > 0 {
            return Err(EngineError::OutOfRange(format!(
                "{t} is older than the retention: events committed since {kept_from} are kept, the oldest kept is sequence {}",
                bounds.floor + 1
            )));
        }
        Ok(self
            .store
            .first_sequence_since(ws, t, bounds.floor)
            .await?
            .unwrap_or(bounds.head + 1))
    }

    /// Starts a subscription for `consumer`.
    #[tracing::instrument(name = "engine.subscribe", skip_all)]
    pub async fn subscribe(
        &self,
        ws: &str,
        consumer: &str,
        start: Start,
        filter: Filter,
    ) -> Result<Subscription, EngineError> {
        if !valid_name(consumer) {
            return Err(EngineError::invalid(
                "INVALID_FIELD",
                "consumer",
                "a consumer name is 1 to 128 of A-Z a-z 0-9 . _ -",
            ));
        }
        let bounds = self.store.outbox_bounds(ws).await?;
        let known = self.store.consumer(ws, consumer).await?;
        let from = match (start, &known) {
            (Start::Resume, None) => {
                return Err(EngineError::NotFound {
                    what: "consumer",
                    key: consumer.to_owned(),
                });
            }
            (Start::Resume | Start::Default, Some(c)) => c.cursor + 1,
            (Start::Default | Start::Earliest, _) => bounds.floor + 1,
            (Start::Latest, _) => bounds.head + 1,
            (Start::AtSequence(n), _) if n < 1 => {
                return Err(EngineError::invalid(
                    "INVALID_FIELD",
                    "at_sequence",
                    format!("{n}: sequences start at 1"),
                ));
            }
            (Start::AtSequence(n), _) if n > bounds.head + 1 => {
                return Err(EngineError::OutOfRange(format!(
                    "sequence {n} has not been handed out: the head is {}",
                    bounds.head
                )));
            }
            (Start::AtSequence(n), _) => n,
            (Start::AtTime(t), _) => self.first_at_or_after(ws, t, bounds).await?,
        };
        if from <= bounds.floor {
            return Err(EngineError::OutOfRange(format!(
                "sequence {from} is no longer kept: the oldest event kept is {}",
                bounds.floor + 1
            )));
        }
        let session = uuid::Uuid::new_v4().to_string();
        let record = self
            .hub
            .claims
            .claim(
                &self.store,
                &self.tasks,
                ws,
                consumer,
                from - 1,
                &session,
                self.now(),
            )
            .await?;
        let taken = Arc::new(Notify::new());
        if let Some((_, previous)) = lock(&self.hub.owners).insert(
            (ws.to_owned(), consumer.to_owned()),
            (session.clone(), Arc::clone(&taken)),
        ) {
            previous.notify_one();
        }
        let (tail, events) = self.hub.follow(&self.store, &self.tasks, ws).await?;
        let (out, items) = mpsc::channel(SUBSCRIPTION_BUFFER);
        let run = Run {
            engine: self.clone(),
            ws: ws.to_owned(),
            consumer: consumer.to_owned(),
            session,
            filter,
            next: from,
            out,
            taken,
            tail,
            checkpointed: Instant::now(),
        };
        // At a shutdown the subscriber is told to come back (to another
        // replica, or to this one restarted), not that the stream is over.
        let (stop, farewell) = (self.tasks.stopping(), run.out.clone());
        self.tasks.spawn(async move {
            tokio::select! {
                () = run.go(events) => {}
                () = stop.cancelled() => {
                    let unavailable = EngineError::ShuttingDown("the server is shutting down; subscribe again".to_owned());
                    let _ = tokio::time::timeout(Duration::from_secs(1), farewell.send(Err(unavailable))).await;
                }
            }
        });
        Ok(Subscription {
            consumer: record.into(),
            from,
            items,
        })
    }

    #[tracing::instrument(name = "engine.ack", skip_all)]
    pub async fn ack(&self, ws: &str, consumer: &str, seq: i64) -> Result<(Consumer, i64), EngineError> {
        let head = self.store.outbox_bounds(ws).await?.head;
        if seq < 0 || seq > head {
            return Err(EngineError::invalid(
                "INVALID_FIELD",
                "sequence",
                format!("{seq} is not a sequence handed out (the head is {head})"),
            ));
        }
        let record = self
            .store
            .ack(ws, consumer, seq, self.now())
            .await?
            .ok_or_else(|| EngineError::NotFound {
                what: "consumer",
                key: consumer.to_owned(),
            })?;
        let mut acked = Consumer::from(record);
        acked.oldest_pending = self.store.committed_after(ws, acked.cursor).await?;
        Ok((acked, head))
    }

    /// Consumers, with the head to measure their lag against.
    #[tracing::instrument(name = "engine.consumers", skip_all)]
    pub async fn consumers(&self, ws: &str) -> Result<(Vec<Consumer>, i64), EngineError> {
        let head = self.store.outbox_bounds(ws).await?.head;
        let mut consumers: Vec<Consumer> = Vec::new();
        for record in self.store.list_consumers(ws).await? {
            let mut consumer = Consumer::from(record);
            consumer.oldest_pending = self.store.committed_after(ws, consumer.cursor).await?;
            consumers.push(consumer);
        }
        consumers.extend(self.store.list_relays(ws).await?.into_iter().map(Consumer::from));
        Ok((consumers, head))
    }

    #[tracing::instrument(name = "engine.delete_consumer", skip_all)]
    pub async fn delete_consumer(&self, ws: &str, consumer: &str) -> Result<(), EngineError> {
        if consumer.starts_with(leadflow_store::WEBHOOK_RELAY_PREFIX) {
            return Err(EngineError::FailedPrecondition {
                reason: "WEBHOOK_CONSUMER",
                message: format!("{consumer} is a webhook's: DeleteWebhook removes it"),
            });
        }
        if !self.store.delete_consumer(ws, consumer).await? && !self.store.delete_relay(ws, consumer).await? {
            return Err(EngineError::NotFound {
                what: "consumer",
                key: consumer.to_owned(),
            });
        }
        if let Some((_, stream)) = lock(&self.hub.owners).remove(&(ws.to_owned(), consumer.to_owned())) {
            stream.notify_one();
        }
        Ok(())
    }

    /// Trims, in every workspace, events past the retention that every
    /// consumer seen within it has acked.
    pub async fn trim_events(&self) -> Result<u64, EngineError> {
        let now = self.now();
        let mut trimmed = 0;
        for ws in self.store.workspaces().await? {
            trimmed += self.store.trim_outbox(&ws, now).await?;
        }
        Ok(trimmed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(seq: i64) -> Arc<StreamEvent> {
        Arc::new(StreamEvent {
            seq,
            event_id: format!("e{seq}"),
            kind: "TRANSITION".to_owned(),
            occurred_at: Timestamp::from_micros(0),
            committed_at: Timestamp::from_micros(0),
            traceparent: None,
            suppressed: false,
            payload: Payload::Lead(Box::new(OutboxPayload {
                lead_id: "l".to_owned(),
                external_key: None,
                stage: Stage::Iql,
                lead_version: 1,
                scores: leadflow_domain::lifecycle::Scores {
                    fit: 0.0,
                    grade: String::new(),
                    engagement: 0.0,
                    qualifying_engagement: 0.0,
                    level: None,
                    models: Default::default(),
                },
                policy_version: 1,
                transition: None,
                trigger: None,
                sla_breach: None,
                level_change: None,
                merge: None,
                assignment: None,
            })),
            wire: OnceLock::new(),
        })
    }

    fn tail() -> Tail {
        Tail {
            wake: Notify::new(),
            events: broadcast::channel(1).0,
            read: AtomicI64::new(0),
            recent: Mutex::new(BTreeMap::new()),
        }
    }

    fn seqs(events: &[Arc<StreamEvent>]) -> Vec<i64> {
        events.iter().map(|e| e.seq).collect()
    }

    #[test]
    fn recall_stops_at_a_gap_and_at_the_limit() {
        let tail = tail();
        tail.remember(vec![event(3), event(4), event(5), event(7), event(8)]);
        assert_eq!(seqs(&tail.recall(3, 10)), [3, 4, 5]);
        assert_eq!(seqs(&tail.recall(4, 1)), [4]);
        assert_eq!(seqs(&tail.recall(7, 10)), [7, 8]);
        // Nothing kept at the start: nothing recalled, even with later ones kept.
        assert!(tail.recall(2, 10).is_empty());
        assert!(tail.recall(6, 10).is_empty());
        assert!(tail.recall(9, 10).is_empty());
        // The one read fills the gap; the same event read twice is kept
        // once, and the copy kept first is the one handed back.
        let kept = tail.recall(7, 1);
        let handed = tail.remember(vec![event(6), event(7)]);
        assert_eq!(seqs(&handed), [6, 7]);
        assert!(Arc::ptr_eq(&handed[1], &kept[0]));
        assert_eq!(seqs(&tail.recall(3, 10)), [3, 4, 5, 6, 7, 8]);
    }

    #[test]
    fn the_newest_events_are_kept_within_the_capacity() {
        let tail = tail();
        let n = i64::try_from(RECENT_CAPACITY).unwrap_or(i64::MAX);
        let old: Vec<_> = (1..=n).map(event).collect();
        tail.remember(old);
        tail.remember(vec![event(n + 1), event(n + 2)]);
        assert!(tail.recall(1, 10).is_empty());
        assert!(tail.recall(2, 10).is_empty());
        assert_eq!(seqs(&tail.recall(3, 2)), [3, 4]);
        assert_eq!(lock(&tail.recent).len(), RECENT_CAPACITY);
        // An older event read late is the first to go.
        tail.remember(vec![event(1)]);
        assert!(tail.recall(1, 10).is_empty());
        assert_eq!(seqs(&tail.recall(n + 1, 10)), [n + 1, n + 2]);
    }
}
