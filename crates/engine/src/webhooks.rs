//! Webhook endpoints: made, listed, deleted, their secrets rotated, their
//! deliveries listed, retried and skipped; and what their delivery workers
//! read and write. The server signs and sends the requests.

use std::sync::Arc;

use leadflow_domain::Timestamp;
use leadflow_domain::webhook::{Deliveries, Open};
use leadflow_store::{
    DELIVERY_DELIVERED, DELIVERY_PARKED, DELIVERY_PENDING, DELIVERY_RETRYING, DELIVERY_SKIPPED,
    DeliveryRecord, WebhookRecord,
};

use crate::stream::{Filter, Start, StreamEvent};
use crate::{Engine, EngineError};

/// How long a delivered or skipped delivery stays listed.
pub const DELIVERIES_KEPT: leadflow_domain::Span = leadflow_domain::Span::from_days(7);

/// How long the secret a rotation replaces keeps signing beside the new one.
pub const ROTATION_OVERLAP: leadflow_domain::Span = leadflow_domain::Span::from_hours(24);

/// The kind of the event saying an endpoint was disabled.
pub const WEBHOOK_DISABLED: &str = "WEBHOOK_DISABLED";

/// What a webhook endpoint's own outbox event carries (`WEBHOOK_DISABLED`).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct WebhookPayload {
    pub webhook_id: String,
    pub url: String,
    pub reason: String,
    pub failing_since: Timestamp,
    /// Deliveries not resolved when it was disabled.
    pub open_deliveries: i64,
}

/// What `CreateWebhook` asks for (the URL already checked by the caller).
#[derive(Clone, Debug)]
pub struct NewWebhook {
    pub url: String,
    pub description: String,
    pub filter: Filter,
    pub start: Start,
    /// Made by the caller (`whsec_…`).
    pub secret: String,
}

/// An endpoint as the API shows it.
#[derive(Clone, Debug, PartialEq)]
pub struct WebhookView {
    pub record: WebhookRecord,
    pub filter: Filter,
    pub open: i64,
    pub parked: i64,
}

fn not_found(id: &str) -> EngineError {
    EngineError::NotFound {
        what: "webhook",
        key: id.to_owned(),
    }
}

/// The stored filter.
pub fn filter_of(record: &WebhookRecord) -> Result<Filter, EngineError> {
    serde_json::from_str(&record.filter)
        .map_err(|e| EngineError::Internal(format!("webhook {}'s filter does not decode: {e}", record.id)))
}

/// An endpoint's open deliveries, as the domain schedules them.
pub fn schedule<'a>(open: impl IntoIterator<Item = &'a DeliveryRecord>) -> Deliveries {
    let mut d = Deliveries::new();
    for r in open {
        let state = if r.status == DELIVERY_PARKED {
            Open::Parked
        } else {
            Open::Due(r.next_attempt_at)
        };
        d.insert(r.seq, r.subject.clone(), state);
    }
    d
}

impl Engine {
    /// A new endpoint, starting after the event `start` designates, and
    /// its secret. With a `request_id`, a retry gets the endpoint (and
    /// secret) the first call made; the same id with another endpoint is
    /// `ALREADY_EXISTS`.
    pub async fn create_webhook(
        &self,
        ws: &str,
        request_id: Option<&str>,
        new: NewWebhook,
    ) -> Result<(WebhookView, String), EngineError> {
        let id = match request_id {
            Some(key) => {
                let digest = crate::fingerprint(["webhook".as_bytes(), ws.as_bytes(), key.as_bytes()]);
                format!("wh_{}", &digest[..24])
            }
            None => format!("wh_{}", &uuid::Uuid::new_v4().simple().to_string()[..24]),
        };
        let same = |existing: &WebhookRecord| {
            existing.url == new.url
                && existing.description == new.description
                && filter_of(existing).is_ok_and(|f| f == new.filter)
        };
        if let Some(existing) = self.store.webhook(ws, &id).await? {
            return Self::replayed(existing, same);
        }
        let secret = new.secret.clone();
        match self.insert_webhook(ws, id.clone(), new.clone()).await {
            Ok(view) => Ok((view, secret)),
            Err(e) => match self.store.webhook(ws, &id).await? {
                // Two first calls at once: the other one made it.
                Some(existing) => Self::replayed(existing, same),
                None => Err(e),
            },
        }
    }

    fn replayed(
        existing: WebhookRecord,
        same: impl Fn(&WebhookRecord) -> bool,
    ) -> Result<(WebhookView, String), EngineError> {
        if !same(&existing) {
            return Err(EngineError::AlreadyExists {
                what: "webhook made with this request_id (another url, description or filter)",
                key: existing.id.clone(),
                id: existing.id,
            });
        }
        let secret = existing.secret.clone();
        Ok((
            WebhookView {
                filter: filter_of(&existing)?,
                record: existing,
                open: 0,
                parked: 0,
            },
            secret,
        ))
    }

    async fn insert_webhook(
        &self,
        ws: &str,
        id: String,
        new: NewWebhook,
    ) -> Result<WebhookView, EngineError> {
        let bounds = self.store.outbox_bounds(ws).await?;
        let first = match new.start {
            Start::Default | Start::Latest | Start::Resume => bounds.head + 1,
            Start::Earliest => bounds.floor + 1,
            Start::AtSequence(n) if n < 1 || n > bounds.head + 1 => {
                return Err(EngineError::invalid(
                    "INVALID_FIELD",
                    "at_sequence",
                    format!("{n}: sequences handed out run from 1 to {}", bounds.head),
                ));
            }
            Start::AtSequence(n) if n <= bounds.floor => {
                return Err(EngineError::OutOfRange(format!(
                    "sequence {n} is no longer kept: the oldest event kept is {}",
                    bounds.floor + 1
                )));
            }
            Start::AtSequence(n) => n,
            Start::AtTime(t) => self.first_at_or_after(ws, t, bounds).await?,
        };
        let now = self.now();
        let record = WebhookRecord {
            id,
            url: new.url,
            description: new.description,
            filter: serde_json::to_string(&new.filter)
                .map_err(|e| EngineError::Internal(format!("a filter does not encode: {e}")))?,
            secret: new.secret,
            previous_secret: None,
            previous_until: 0,
            enabled: true,
            disabled_reason: None,
            read: first - 1,
            failing_since: None,
            created_at: now,
            updated_at: now,
        };
        self.store.insert_webhook(ws, &record, first - 1).await?;
        Ok(WebhookView {
            filter: new.filter,
            record,
            open: 0,
            parked: 0,
        })
    }

    /// The endpoints of `ws`, with their open and parked deliveries.
    pub async fn webhooks(&self, ws: &str) -> Result<Vec<WebhookView>, EngineError> {
        let mut counts: std::collections::HashMap<String, (i64, i64)> = std::collections::HashMap::new();
        for (id, status, n) in self.store.open_delivery_counts(ws).await? {
            let (open, parked) = counts.entry(id).or_default();
            *open += n;
            if status == DELIVERY_PARKED {
                *parked += n;
            }
        }
        self.store
            .list_webhooks(ws)
            .await?
            .into_iter()
            .map(|record| {
                let (open, parked) = counts.get(&record.id).copied().unwrap_or_default();
                Ok(WebhookView {
                    filter: filter_of(&record)?,
                    record,
                    open,
                    parked,
                })
            })
            .collect()
    }

    pub async fn webhook(&self, ws: &str, id: &str) -> Result<WebhookRecord, EngineError> {
        self.store.webhook(ws, id).await?.ok_or_else(|| not_found(id))
    }

    pub async fn delete_webhook(&self, ws: &str, id: &str) -> Result<(), EngineError> {
        if !self.store.delete_webhook(ws, id).await? {
            return Err(not_found(id));
        }
        Ok(())
    }

    /// Signs with `secret` from now on, and with the current one too for
    /// [`ROTATION_OVERLAP`]: the previous secret's end.
    pub async fn rotate_webhook_secret(
        &self,
        ws: &str,
        id: &str,
        secret: &str,
    ) -> Result<Timestamp, EngineError> {
        let now = self.now();
        let until = now.saturating_add(ROTATION_OVERLAP);
        self.store
            .rotate_webhook_secret(ws, id, secret, until.as_micros(), now)
            .await?
            .ok_or_else(|| not_found(id))?;
        Ok(until)
    }

    /// A page of an endpoint's deliveries, newest first, below `before`.
    pub async fn webhook_deliveries(
        &self,
        ws: &str,
        id: &str,
        status: Option<&str>,
        before: i64,
        limit: u64,
    ) -> Result<Vec<DeliveryRecord>, EngineError> {
        self.webhook(ws, id).await?;
        Ok(self.store.list_deliveries(ws, id, status, before, limit).await?)
    }

    /// An open delivery, for RetryDelivery and SkipDelivery, and its endpoint.
    async fn open_delivery(
        &self,
        ws: &str,
        id: &str,
        seq: i64,
    ) -> Result<(WebhookRecord, DeliveryRecord), EngineError> {
        let hook = self.webhook(ws, id).await?;
        let d = self
            .store
            .delivery(ws, id, seq)
            .await?
            .ok_or_else(|| EngineError::NotFound {
                what: "delivery",
                key: format!("{id}/{seq}"),
            })?;
        if d.status != DELIVERY_PARKED && d.status != DELIVERY_RETRYING {
            return Err(EngineError::FailedPrecondition {
                reason: "DELIVERY_NOT_FAILED",
                message: format!(
                    "delivery {seq} is {}: only a parked or retrying one can be",
                    d.status
                ),
            });
        }
        Ok((hook, d))
    }

    /// Tries a parked or retrying delivery again now, with a fresh 24 h of
    /// retries.
    pub async fn retry_delivery(&self, ws: &str, id: &str, seq: i64) -> Result<DeliveryRecord, EngineError> {
        let (hook, was) = self.open_delivery(ws, id, seq).await?;
        if !hook.enabled {
            // Nothing would attempt it: a disabled endpoint has no worker.
            return Err(EngineError::FailedPrecondition {
                reason: "WEBHOOK_DISABLED",
                message: format!("webhook {id} is disabled: delete it and create it again"),
            });
        }
        let now = self.now();
        let mut d = was.clone();
        d.status = DELIVERY_RETRYING.to_owned();
        d.next_attempt_at = now;
        d.first_attempt_at = Some(now);
        // The schedule starts over: attempts count from this retry.
        d.attempts = 0;
        self.changed(ws, id, &was, &d).await?;
        Ok(d)
    }

    /// Writes a call's change of a delivery, unless an attempt changed it first.
    async fn changed(
        &self,
        ws: &str,
        id: &str,
        was: &DeliveryRecord,
        d: &DeliveryRecord,
    ) -> Result<(), EngineError> {
        if !self.store.update_delivery(ws, id, was, d).await? {
            return Err(EngineError::Aborted(format!(
                "delivery {} changed meanwhile (an attempt ended): read it again",
                d.seq
            )));
        }
        Ok(())
    }

    /// Gives a parked or retrying delivery up: its lead's later deliveries go on.
    pub async fn skip_delivery(&self, ws: &str, id: &str, seq: i64) -> Result<DeliveryRecord, EngineError> {
        let (_, was) = self.open_delivery(ws, id, seq).await?;
        let mut d = was.clone();
        d.status = DELIVERY_SKIPPED.to_owned();
        d.resolved_at = Some(self.now());
        self.changed(ws, id, &was, &d).await?;
        Ok(d)
    }

    /// Forgets deliveries resolved more than [`DELIVERIES_KEPT`] ago.
    pub async fn trim_deliveries(&self) -> Result<u64, EngineError> {
        Ok(self
            .store
            .trim_deliveries(self.now().saturating_sub(DELIVERIES_KEPT))
            .await?)
    }

    // ---- for the delivery workers ----------------------------------------

    /// The endpoint's open deliveries.
    pub async fn open_deliveries(&self, ws: &str, id: &str) -> Result<Vec<DeliveryRecord>, EngineError> {
        Ok(self.store.open_deliveries(ws, id).await?)
    }

    /// Reads up to `limit` events after the endpoint's read position and
    /// records a delivery of each its filter lets through, at most `room`
    /// of them (the read position stops just before the first left out):
    /// the new open deliveries with their events, and whether more events
    /// may follow. `hook.read` moves to where the endpoint has read.
    pub async fn read_for_webhook(
        &self,
        ws: &str,
        hook: &mut WebhookRecord,
        limit: u64,
        room: usize,
    ) -> Result<(Vec<(DeliveryRecord, Arc<StreamEvent>)>, bool), EngineError> {
        let filter = filter_of(hook)?;
        let batch = match self.relay_batch(ws, hook.read, limit).await {
            Ok(batch) => batch,
            Err(EngineError::OutOfRange(why)) => {
                // Only an endpoint made while old events were trimmed can
                // be behind what is kept: it goes on from the oldest.
                tracing::error!(workspace = %ws, webhook = %hook.id, "{why}: the webhook goes on from the oldest event kept");
                let floor = self.store.outbox_bounds(ws).await?.floor;
                if !self.store.add_deliveries(ws, &hook.id, &[], floor).await? {
                    return Err(not_found(&hook.id));
                }
                hook.read = hook.read.max(floor);
                return Ok((Vec::new(), true));
            }
            Err(e) => return Err(e),
        };
        let Some(mut last) = batch.last else {
            return Ok((Vec::new(), false));
        };
        let mut admitted: Vec<Arc<StreamEvent>> = Vec::new();
        for e in batch.events {
            if !filter.admits(&e) {
                continue;
            }
            if admitted.len() >= room {
                // Read up to just before it: the next read starts there.
                last = e.seq - 1;
                break;
            }
            admitted.push(e);
        }
        let now = self.now();
        let deliveries: Vec<(DeliveryRecord, Arc<StreamEvent>)> = admitted
            .into_iter()
            .map(|e| {
                let (whose, id) = e.owner();
                let d = DeliveryRecord {
                    seq: e.seq,
                    event_id: e.event_id.clone(),
                    subject: format!("{whose}:{id}"),
                    status: DELIVERY_PENDING.to_owned(),
                    attempts: 0,
                    first_attempt_at: None,
                    next_attempt_at: now,
                    last_attempt_at: None,
                    last_status_code: None,
                    last_error: String::new(),
                    resolved_at: None,
                };
                (d, e)
            })
            .collect();
        let records: Vec<DeliveryRecord> = deliveries.iter().map(|(d, _)| d.clone()).collect();
        if !self.store.add_deliveries(ws, &hook.id, &records, last).await? {
            return Err(not_found(&hook.id));
        }
        hook.read = hook.read.max(last);
        Ok((deliveries, true))
    }

    /// Writes attempts' outcomes (delivered, to be tried again, or parked),
    /// in one transaction, each over its delivery as it was before the
    /// attempt: whether each was written — not if it changed meanwhile
    /// (skipped or retried by a call, or attempted by another replica) or
    /// is gone.
    pub async fn record_attempts(
        &self,
        ws: &str,
        id: &str,
        outcomes: &[(&DeliveryRecord, &DeliveryRecord)],
    ) -> Result<Vec<bool>, EngineError> {
        Ok(self.store.update_deliveries(ws, id, outcomes).await?)
    }

    /// Notes whether the endpoint's attempts fail, and disables it once
    /// they have for 24 h: true when it was disabled now. `hook.failing_since`
    /// follows.
    pub async fn note_webhook_health(
        &self,
        ws: &str,
        hook: &mut WebhookRecord,
        succeeded: bool,
    ) -> Result<bool, EngineError> {
        let now = self.now();
        match (succeeded, hook.failing_since) {
            (true, Some(_)) => {
                self.store.set_webhook_failing(ws, &hook.id, None).await?;
                hook.failing_since = None;
            }
            (false, None) => {
                self.store.set_webhook_failing(ws, &hook.id, Some(now)).await?;
                hook.failing_since = Some(now);
            }
            (false, Some(since)) if leadflow_domain::webhook::disable_due(since, now) => {
                return self.disable_failing(ws, hook, since, now).await;
            }
            _ => {}
        }
        Ok(false)
    }
}

impl Engine {
    /// Disables an endpoint whose attempts have all failed since `since`,
    /// with a `WEBHOOK_DISABLED` event for every other consumer.
    async fn disable_failing(
        &self,
        ws: &str,
        hook: &WebhookRecord,
        since: Timestamp,
        now: Timestamp,
    ) -> Result<bool, EngineError> {
        let reason = "every delivery failed for 24 h";
        let open = self.store.open_deliveries(ws, &hook.id).await?.len();
        let payload = WebhookPayload {
            webhook_id: hook.id.clone(),
            url: hook.url.clone(),
            reason: reason.to_owned(),
            failing_since: since,
            open_deliveries: i64::try_from(open).unwrap_or(i64::MAX),
        };
        let event = leadflow_store::NewOutboxEvent {
            event_id: uuid::Uuid::now_v7().to_string(),
            lead_id: hook.id.clone(),
            subject: leadflow_store::Subject::Webhook,
            kind: WEBHOOK_DISABLED.to_owned(),
            payload: serde_json::to_string(&payload).map_err(|e| EngineError::Internal(e.to_string()))?,
            occurred_at: now,
            created_at: now,
            traceparent: crate::trace::traceparent(&tracing::Span::current()),
            suppressed: false,
        };
        let disabled = self
            .store
            .disable_webhook(ws, &hook.id, reason, now, event)
            .await?;
        if disabled {
            self.announce(ws);
        }
        Ok(disabled)
    }
}

/// A delivery that succeeded at `at` with `status`.
pub fn delivered(mut d: DeliveryRecord, at: Timestamp, status: u16) -> DeliveryRecord {
    d.attempts += 1;
    d.first_attempt_at.get_or_insert(at);
    d.last_attempt_at = Some(at);
    d.last_status_code = Some(i32::from(status));
    d.last_error = String::new();
    d.status = DELIVERY_DELIVERED.to_owned();
    d.resolved_at = Some(at);
    d
}

/// A delivery that failed at `at` (`status` if the endpoint answered), to
/// be tried again per the domain's schedule or parked.
pub fn failed(
    mut d: DeliveryRecord,
    at: Timestamp,
    status: Option<u16>,
    error: String,
    jitter: f64,
) -> DeliveryRecord {
    d.attempts += 1;
    let first = *d.first_attempt_at.get_or_insert(at);
    d.last_attempt_at = Some(at);
    d.last_status_code = status.map(i32::from);
    d.last_error = error.chars().take(500).collect();
    let failures = u32::try_from(d.attempts).unwrap_or(u32::MAX);
    match leadflow_domain::webhook::retry_at(first, at, failures, jitter) {
        Some(next) => {
            d.status = DELIVERY_RETRYING.to_owned();
            d.next_attempt_at = next;
        }
        None => d.status = DELIVERY_PARKED.to_owned(),
    }
    d
}
