//! `leadflow.v1.TriggerService`: the event stream and its consumers.

use std::pin::Pin;

use leadflow_engine::{
    AccountPayload, Consumer, ConsumerKind, Engine, Filter, Payload, Start, StreamEvent, StreamItem,
};
use leadflow_proto::frame::SubscribeFrame;
use leadflow_proto::v1 as pb;
use tokio_stream::{Stream, StreamExt as _};
use tonic::{Request, Response, Status};

use crate::convert::{
    level_change_out, scores_out, sla_breach_out, stage_in, stage_out, timestamp_in, timestamp_out,
    transition_out, trigger_out,
};
use crate::error::status;
use crate::limits::{Check, MAX_ID_CHARS, MAX_MAP_ENTRIES};

#[derive(Clone, Debug)]
pub struct TriggerApi {
    engine: Engine,
}

impl TriggerApi {
    pub fn new(engine: Engine) -> Self {
        Self { engine }
    }
}

fn kind_out(kind: &str) -> pb::EventKind {
    match kind {
        "TRANSITION" => pb::EventKind::Transition,
        "TRIGGER" => pb::EventKind::Trigger,
        "SLA_BREACHED" => pb::EventKind::SlaBreached,
        "LEAD_ERASED" => pb::EventKind::LeadErased,
        "LEVEL_CHANGED" => pb::EventKind::LevelChanged,
        "ACCOUNT_TRANSITION" => pb::EventKind::AccountTransition,
        "ACCOUNT_TRIGGER" => pb::EventKind::AccountTrigger,
        "LEAD_MERGED" => pb::EventKind::LeadMerged,
        "LEAD_UNMERGED" => pb::EventKind::LeadUnmerged,
        "LEAD_ASSIGNED" => pb::EventKind::LeadAssigned,
        "LEAD_UNROUTED" => pb::EventKind::LeadUnrouted,
        "WEBHOOK_DISABLED" => pb::EventKind::WebhookDisabled,
        _ => pb::EventKind::Unspecified,
    }
}

fn kind_in(check: &mut Check, field: &str, value: i32) -> Option<String> {
    let name = match pb::EventKind::try_from(value) {
        Ok(pb::EventKind::Transition) => "TRANSITION",
        Ok(pb::EventKind::Trigger) => "TRIGGER",
        Ok(pb::EventKind::SlaBreached) => "SLA_BREACHED",
        Ok(pb::EventKind::LeadErased) => "LEAD_ERASED",
        Ok(pb::EventKind::LevelChanged) => "LEVEL_CHANGED",
        Ok(pb::EventKind::AccountTransition) => "ACCOUNT_TRANSITION",
        Ok(pb::EventKind::AccountTrigger) => "ACCOUNT_TRIGGER",
        Ok(pb::EventKind::LeadMerged) => "LEAD_MERGED",
        Ok(pb::EventKind::LeadUnmerged) => "LEAD_UNMERGED",
        Ok(pb::EventKind::LeadAssigned) => "LEAD_ASSIGNED",
        Ok(pb::EventKind::LeadUnrouted) => "LEAD_UNROUTED",
        Ok(pb::EventKind::WebhookDisabled) => "WEBHOOK_DISABLED",
        _ => {
            check.fail(field, format!("{value} is not an event kind"));
            return None;
        }
    };
    Some(name.to_owned())
}

/// Where a subscription (or a webhook) starts, as the request gives it.
pub(crate) fn start_in(
    check: &mut Check,
    start: i32,
    at_sequence: i64,
    at_time: Option<&prost_types::Timestamp>,
) -> Start {
    let position = match pb::StartPosition::try_from(start) {
        Ok(pb::StartPosition::Unspecified) => Start::Default,
        Ok(pb::StartPosition::Resume) => Start::Resume,
        Ok(pb::StartPosition::Earliest) => Start::Earliest,
        Ok(pb::StartPosition::Latest) => Start::Latest,
        Ok(pb::StartPosition::AtSequence) => Start::AtSequence(at_sequence),
        Ok(pb::StartPosition::AtTime) => match timestamp_in(check, "at_time", at_time) {
            Some(t) => Start::AtTime(t),
            None => {
                if at_time.is_none() {
                    check.fail("at_time", "required with START_POSITION_AT_TIME");
                }
                Start::Default
            }
        },
        Err(_) => {
            check.fail("start", format!("{start} is not a start position"));
            Start::Default
        }
    };
    if at_sequence != 0 && !matches!(position, Start::AtSequence(_)) {
        check.fail("at_sequence", "given without START_POSITION_AT_SEQUENCE");
    }
    if at_time.is_some() && start != pb::StartPosition::AtTime as i32 {
        check.fail("at_time", "given without START_POSITION_AT_TIME");
    }
    position
}

/// An event filter, as the request gives it.
pub(crate) fn filter_in(check: &mut Check, f: pb::EventFilter) -> Filter {
    let mut filter = Filter::default();
    if f.kinds.len() + f.stages.len() + f.workflows.len() + f.account_stages.len() > MAX_MAP_ENTRIES {
        check.fail("filter", format!("at most {MAX_MAP_ENTRIES} entries in all"));
    }
    for (i, k) in f.kinds.iter().enumerate() {
        filter
            .kinds
            .extend(kind_in(check, &format!("filter.kinds[{i}]"), *k));
    }
    for (i, s) in f.stages.iter().enumerate() {
        let field = format!("filter.stages[{i}]");
        match stage_in(check, &field, *s) {
            Some(stage) => filter.stages.push(stage),
            None if *s == 0 => check.fail(&field, "a stage is required"),
            None => {}
        }
    }
    for (i, w) in f.workflows.iter().enumerate() {
        check.text(&format!("filter.workflows[{i}]"), w, MAX_ID_CHARS, true);
        filter.workflows.push(w.clone());
    }
    for (i, s) in f.account_stages.iter().enumerate() {
        let field = format!("filter.account_stages[{i}]");
        filter
            .account_stages
            .extend(super::accounts::account_stage_in(check, &field, *s));
    }
    filter
}

/// A filter as the API shows it.
pub(crate) fn filter_out(f: &Filter) -> pb::EventFilter {
    pb::EventFilter {
        kinds: f.kinds.iter().map(|k| kind_out(k).into()).collect(),
        stages: f.stages.iter().map(|s| stage_out(*s).into()).collect(),
        workflows: f.workflows.clone(),
        account_stages: f
            .account_stages
            .iter()
            .map(|s| super::accounts::account_stage_out(*s).into())
            .collect(),
    }
}

pub(crate) fn event_out(e: &StreamEvent) -> pb::Event {
    let p = match &e.payload {
        Payload::Lead(p) => p,
        Payload::Account(a) => return account_event_out(e, a),
        Payload::Webhook(w) => {
            return pb::Event {
                payload: Some(pb::event::Payload::WebhookDisabled(pb::WebhookDisabled {
                    webhook_id: w.webhook_id.clone(),
                    url: w.url.clone(),
                    reason: w.reason.clone(),
                    failing_since: Some(timestamp_out(w.failing_since)),
                    open_deliveries: w.open_deliveries,
                })),
                ..header(e)
            };
        }
    };
    let payload = if let Some(t) = &p.transition {
        Some(pb::event::Payload::Transition(transition_out(t)))
    } else if let Some(t) = &p.trigger {
        Some(pb::event::Payload::Trigger(trigger_out(t)))
    } else if let Some(l) = &p.level_change {
        Some(pb::event::Payload::LevelChange(level_change_out(
            l,
            &p.lead_id,
            p.policy_version,
        )))
    } else if let Some(m) = &p.merge {
        Some(pb::event::Payload::Merge(pb::LeadMerge {
            survivor_id: m.survivor_id.clone(),
            duplicate_id: m.duplicate_id.clone(),
            duplicate_stage: stage_out(m.duplicate_stage).into(),
            automatic: m.automatic,
        }))
    } else if let Some(a) = &p.assignment {
        Some(pb::event::Payload::Assignment(pb::Assignment {
            from_owner: a.from.clone().unwrap_or_default(),
            to_owner: a.to.clone().unwrap_or_default(),
            cause: crate::convert::assignment_cause_out(&a.cause).into(),
            route_id: a.route_id.clone().unwrap_or_default(),
            explanation: a.explanation.clone(),
            reason: a.reason.clone().unwrap_or_default(),
            at: Some(timestamp_out(e.occurred_at)),
            stage: stage_out(p.stage).into(),
            principal: a.principal.clone().unwrap_or_default(),
        }))
    } else {
        p.sla_breach
            .as_ref()
            .map(|b| pb::event::Payload::SlaBreach(sla_breach_out(b)))
    };
    pb::Event {
        lead: Some(pb::LeadSnapshot {
            id: p.lead_id.clone(),
            external_key: p.external_key.clone().unwrap_or_default(),
            stage: stage_out(p.stage).into(),
            version: p.lead_version,
            scores: Some(scores_out(&p.scores, e.occurred_at)),
            policy_version: p.policy_version,
        }),
        payload,
        ..header(e)
    }
}

/// What every event says of itself: its sequence, id, kind, instants and
/// trace context.
fn header(e: &StreamEvent) -> pb::Event {
    pb::Event {
        sequence: e.seq,
        event_id: e.event_id.clone(),
        kind: kind_out(&e.kind).into(),
        occurred_at: Some(timestamp_out(e.occurred_at)),
        committed_at: Some(timestamp_out(e.committed_at)),
        traceparent: e.traceparent.clone().unwrap_or_default(),
        ..pb::Event::default()
    }
}

/// An account's event: its snapshot, and its transition or trigger.
fn account_event_out(e: &StreamEvent, a: &AccountPayload) -> pb::Event {
    let payload = if let Some(t) = &a.transition {
        Some(pb::event::Payload::AccountTransition(
            super::accounts::account_transition_out(t),
        ))
    } else {
        a.trigger.as_ref().map(|t| {
            pb::event::Payload::AccountTrigger(pb::AccountTrigger {
                workflow_id: t.workflow_id.clone(),
                emit: t.emit.clone(),
                on: t.on.clone(),
                at: Some(timestamp_out(t.at)),
                stage: super::accounts::account_stage_out(t.stage).into(),
            })
        })
    };
    pb::Event {
        payload,
        account: Some(pb::AccountSnapshot {
            id: a.account_id.clone(),
            external_key: a.external_key.clone().unwrap_or_default(),
            domain: a.domain.clone().unwrap_or_default(),
            stage: super::accounts::account_stage_out(a.stage).into(),
            version: a.account_version,
            engagement: a.engagement,
            fit: a.fit,
            engaged_members: i32::try_from(a.engaged_members).unwrap_or(i32::MAX),
            policy_version: a.policy_version,
        }),
        ..header(e)
    }
}

fn consumer_out(c: &Consumer, head: i64, now: leadflow_domain::Timestamp) -> pb::Consumer {
    let behind = c
        .oldest_pending
        .map_or(0, |t| (now.as_micros() - t.as_micros()).max(0));
    pb::Consumer {
        name: c.name.clone(),
        cursor: c.cursor,
        head,
        lag: (head - c.cursor).max(0),
        created_at: Some(timestamp_out(c.created_at)),
        last_seen_at: Some(timestamp_out(c.last_seen_at)),
        kind: match c.kind {
            ConsumerKind::Stream => pb::ConsumerKind::Stream,
            ConsumerKind::Relay => pb::ConsumerKind::Relay,
            ConsumerKind::Webhook => pb::ConsumerKind::Webhook,
        }
        .into(),
        lag_time: Some(super::analytics::duration_out(
            leadflow_domain::Span::from_micros(behind),
        )),
    }
}

/// An event as a stream sends it: encoded by the first stream that sends it
/// and shared by every other.
fn event_frame(e: &StreamEvent) -> SubscribeFrame {
    let bytes = e.wire.get_or_init(|| {
        SubscribeFrame::encode(&pb::SubscribeResponse {
            item: Some(pb::subscribe_response::Item::Event(event_out(e))),
        })
        .into_bytes()
    });
    SubscribeFrame::from_encoded(bytes.clone())
}

type EventStream = Pin<Box<dyn Stream<Item = Result<SubscribeFrame, Status>> + Send>>;

#[tonic::async_trait]
impl leadflow_proto::framed::trigger_service_server::TriggerService for TriggerApi {
    type SubscribeStream = EventStream;

    async fn subscribe(
        &self,
        request: Request<pb::SubscribeRequest>,
    ) -> Result<Response<EventStream>, Status> {
        let caller = crate::auth::caller(&request)?;
        let r = request.into_inner();
        let mut check = Check::default();
        let consumer = check.key("consumer", &r.consumer, true);
        let start = start_in(&mut check, r.start, r.at_sequence, r.at_time.as_ref());
        let filter = filter_in(&mut check, r.filter.unwrap_or_default());
        check.into_result()?;
        let subscription = self
            .engine
            .subscribe(&caller.workspace, &consumer, start, filter)
            .await
            .map_err(status)?;
        let items = tokio_stream::wrappers::ReceiverStream::new(subscription.into_receiver()).map(|item| {
            Ok(match item.map_err(status)? {
                StreamItem::Event(e) => event_frame(&e),
                StreamItem::Checkpoint { head, at } => SubscribeFrame::encode(&pb::SubscribeResponse {
                    item: Some(pb::subscribe_response::Item::Checkpoint(pb::Checkpoint {
                        head_sequence: head,
                        at: Some(timestamp_out(at)),
                    })),
                }),
            })
        });
        Ok(Response::new(Box::pin(items)))
    }

    async fn ack(&self, request: Request<pb::AckRequest>) -> Result<Response<pb::AckResponse>, Status> {
        let caller = crate::auth::caller(&request)?;
        let r = request.into_inner();
        let mut check = Check::default();
        let consumer = check.key("consumer", &r.consumer, true);
        check.into_result()?;
        let (consumer, head) = self
            .engine
            .ack(&caller.workspace, &consumer, r.sequence)
            .await
            .map_err(status)?;
        Ok(Response::new(pb::AckResponse {
            consumer: Some(consumer_out(&consumer, head, self.engine.now())),
        }))
    }

    async fn list_consumers(
        &self,
        request: Request<pb::ListConsumersRequest>,
    ) -> Result<Response<pb::ListConsumersResponse>, Status> {
        let caller = crate::auth::caller(&request)?;
        let (consumers, head) = self.engine.consumers(&caller.workspace).await.map_err(status)?;
        Ok(Response::new(pb::ListConsumersResponse {
            consumers: consumers
                .iter()
                .map(|c| consumer_out(c, head, self.engine.now()))
                .collect(),
        }))
    }

    async fn delete_consumer(
        &self,
        request: Request<pb::DeleteConsumerRequest>,
    ) -> Result<Response<pb::DeleteConsumerResponse>, Status> {
        let caller = crate::auth::caller(&request)?;
        let r = request.into_inner();
        let mut check = Check::default();
        let consumer = check.key("consumer", &r.consumer, true);
        check.into_result()?;
        self.engine
            .delete_consumer(&caller.workspace, &consumer)
            .await
            .map_err(status)?;
        Ok(Response::new(pb::DeleteConsumerResponse {}))
    }
}
