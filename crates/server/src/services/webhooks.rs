//! `WebhookService`: endpoints that receive events as signed JSON POSTs.

use leadflow_engine::Engine;
use leadflow_engine::webhooks::{NewWebhook, WebhookView};
use leadflow_engine::{
    DELIVERY_DELIVERED, DELIVERY_PARKED, DELIVERY_PENDING, DELIVERY_RETRYING, DELIVERY_SKIPPED,
    DeliveryRecord,
};
use leadflow_proto::v1 as pb;
use tonic::{Request, Response, Status};

use super::triggers::{filter_in, filter_out, start_in};
use crate::convert::{timestamp_out, token_in, token_out};
use crate::error::status;
use crate::limits::{Check, MAX_PAGE};
use crate::webhook::http::{Reach, check_url};

/// Characters of a URL and of a description at most.
const MAX_URL_CHARS: usize = 2_000;
const MAX_DESCRIPTION_CHARS: usize = 500;

#[derive(Clone, Debug)]
pub struct WebhookApi {
    engine: Engine,
    reach: Reach,
}

impl WebhookApi {
    pub fn new(engine: Engine, reach: Reach) -> Self {
        Self { engine, reach }
    }
}

fn webhook_out(v: &WebhookView) -> pb::Webhook {
    let r = &v.record;
    pb::Webhook {
        id: r.id.clone(),
        url: r.url.clone(),
        description: r.description.clone(),
        filter: Some(filter_out(&v.filter)),
        enabled: r.enabled,
        disabled_reason: r.disabled_reason.clone().unwrap_or_default(),
        created_at: Some(timestamp_out(r.created_at)),
        open_deliveries: v.open,
        parked_deliveries: v.parked,
        stalled: usize::try_from(v.open).unwrap_or(usize::MAX) >= leadflow_domain::webhook::MAX_OPEN,
        failing_since: r.failing_since.map(timestamp_out),
    }
}

fn status_out(s: &str) -> pb::DeliveryStatus {
    match s {
        DELIVERY_PENDING => pb::DeliveryStatus::Pending,
        DELIVERY_RETRYING => pb::DeliveryStatus::Retrying,
        DELIVERY_PARKED => pb::DeliveryStatus::Parked,
        DELIVERY_DELIVERED => pb::DeliveryStatus::Delivered,
        DELIVERY_SKIPPED => pb::DeliveryStatus::Skipped,
        _ => pb::DeliveryStatus::Unspecified,
    }
}

fn delivery_out(webhook_id: &str, d: &DeliveryRecord) -> pb::Delivery {
    let open = d.resolved_at.is_none() && d.status != DELIVERY_PARKED;
    pb::Delivery {
        webhook_id: webhook_id.to_owned(),
        sequence: d.seq,
        event_id: d.event_id.clone(),
        status: status_out(&d.status).into(),
        attempts: d.attempts,
        last_status_code: d.last_status_code.unwrap_or(0),
        last_attempt_at: d.last_attempt_at.map(timestamp_out),
        next_attempt_at: open.then(|| timestamp_out(d.next_attempt_at)),
        last_error: d.last_error.clone(),
    }
}

fn id_in(check: &mut Check, field: &str, id: &str) -> String {
    check.key(field, id, true)
}

/// What a call does to a failed delivery.
#[derive(Clone, Copy, Debug)]
enum Resolve {
    Retry,
    Skip,
}

impl WebhookApi {
    /// RetryDelivery and SkipDelivery: the delivery as it is after.
    async fn resolve(
        &self,
        caller: &crate::auth::Principal,
        webhook_id: &str,
        sequence: i64,
        what: Resolve,
    ) -> Result<pb::Delivery, Status> {
        let mut check = Check::default();
        let id = id_in(&mut check, "webhook_id", webhook_id);
        if sequence < 1 {
            check.fail("sequence", "required: a delivery's sequence");
        }
        check.into_result()?;
        let ws = caller.workspace.as_str();
        let d = match what {
            Resolve::Retry => self.engine.retry_delivery(ws, &id, sequence).await,
            Resolve::Skip => self.engine.skip_delivery(ws, &id, sequence).await,
        }
        .map_err(status)?;
        // The endpoint's worker reads its open deliveries again within a second.
        Ok(delivery_out(&id, &d))
    }
}

#[tonic::async_trait]
impl pb::webhook_service_server::WebhookService for WebhookApi {
    async fn create_webhook(
        &self,
        request: Request<pb::CreateWebhookRequest>,
    ) -> Result<Response<pb::CreateWebhookResponse>, Status> {
        let caller = crate::auth::caller(&request)?;
        let r = request.into_inner();
        let mut check = Check::default();
        let request_id = check.key("request_id", &r.request_id, false);
        check.text("url", &r.url, MAX_URL_CHARS, true);
        if !r.url.is_empty()
            && let Err(why) = check_url(&r.url, self.reach)
        {
            check.fail("url", why);
        }
        check.text("description", &r.description, MAX_DESCRIPTION_CHARS, false);
        let start = match start_in(&mut check, r.start, r.at_sequence, r.at_time.as_ref()) {
            leadflow_engine::Start::Default => leadflow_engine::Start::Latest,
            leadflow_engine::Start::Resume => {
                check.fail(
                    "start",
                    "a new webhook has nothing to resume: EARLIEST, LATEST, AT_SEQUENCE or AT_TIME",
                );
                leadflow_engine::Start::Latest
            }
            other => other,
        };
        let filter = filter_in(&mut check, r.filter.clone().unwrap_or_default());
        check.into_result()?;
        let secret = crate::webhook::sign::new_secret()
            .map_err(|e| Status::unavailable(format!("no randomness for a secret: {e}")))?;
        let (view, secret) = self
            .engine
            .create_webhook(
                &caller.workspace,
                (!request_id.is_empty()).then_some(request_id.as_str()),
                NewWebhook {
                    url: r.url.clone(),
                    description: r.description.clone(),
                    filter,
                    start,
                    secret,
                },
            )
            .await
            .map_err(status)?;
        Ok(Response::new(pb::CreateWebhookResponse {
            webhook: Some(webhook_out(&view)),
            secret,
        }))
    }

    async fn list_webhooks(
        &self,
        request: Request<pb::ListWebhooksRequest>,
    ) -> Result<Response<pb::ListWebhooksResponse>, Status> {
        let caller = crate::auth::caller(&request)?;
        let webhooks = self.engine.webhooks(&caller.workspace).await.map_err(status)?;
        Ok(Response::new(pb::ListWebhooksResponse {
            webhooks: webhooks.iter().map(webhook_out).collect(),
        }))
    }

    async fn delete_webhook(
        &self,
        request: Request<pb::DeleteWebhookRequest>,
    ) -> Result<Response<pb::DeleteWebhookResponse>, Status> {
        let caller = crate::auth::caller(&request)?;
        let r = request.into_inner();
        let mut check = Check::default();
        let id = id_in(&mut check, "id", &r.id);
        check.into_result()?;
        self.engine
            .delete_webhook(&caller.workspace, &id)
            .await
            .map_err(status)?;
        Ok(Response::new(pb::DeleteWebhookResponse {}))
    }

    async fn rotate_webhook_secret(
        &self,
        request: Request<pb::RotateWebhookSecretRequest>,
    ) -> Result<Response<pb::RotateWebhookSecretResponse>, Status> {
        let caller = crate::auth::caller(&request)?;
        let r = request.into_inner();
        let mut check = Check::default();
        let id = id_in(&mut check, "id", &r.id);
        check.into_result()?;
        let secret = crate::webhook::sign::new_secret()
            .map_err(|e| Status::unavailable(format!("no randomness for a secret: {e}")))?;
        let until = self
            .engine
            .rotate_webhook_secret(&caller.workspace, &id, &secret)
            .await
            .map_err(status)?;
        Ok(Response::new(pb::RotateWebhookSecretResponse {
            secret,
            previous_valid_until: Some(timestamp_out(until)),
        }))
    }

    async fn list_deliveries(
        &self,
        request: Request<pb::ListDeliveriesRequest>,
    ) -> Result<Response<pb::ListDeliveriesResponse>, Status> {
        let caller = crate::auth::caller(&request)?;
        let r = request.into_inner();
        let mut check = Check::default();
        let id = id_in(&mut check, "webhook_id", &r.webhook_id);
        let wanted = match pb::DeliveryStatus::try_from(r.status) {
            Ok(pb::DeliveryStatus::Unspecified) => None,
            Ok(pb::DeliveryStatus::Pending) => Some(DELIVERY_PENDING),
            Ok(pb::DeliveryStatus::Retrying) => Some(DELIVERY_RETRYING),
            Ok(pb::DeliveryStatus::Parked) => Some(DELIVERY_PARKED),
            Ok(pb::DeliveryStatus::Delivered) => Some(DELIVERY_DELIVERED),
            Ok(pb::DeliveryStatus::Skipped) => Some(DELIVERY_SKIPPED),
            Err(_) => {
                check.fail("status", format!("{} is not a delivery status", r.status));
                None
            }
        };
        let size = check.page_size_at_most("page_size", r.page_size, 100, MAX_PAGE);
        let before = match token_in(&mut check, "deliveries", &r.page_token) {
            None => 0,
            Some(t) => t.parse::<i64>().ok().filter(|s| *s > 0).unwrap_or_else(|| {
                check.fail("page_token", "not a page token of this list");
                0
            }),
        };
        check.into_result()?;
        let page = self
            .engine
            .webhook_deliveries(&caller.workspace, &id, wanted, before, size)
            .await
            .map_err(status)?;
        let next = if page.len() as u64 == size {
            page.last()
                .map(|d| token_out("deliveries", &d.seq.to_string()))
                .unwrap_or_default()
        } else {
            String::new()
        };
        Ok(Response::new(pb::ListDeliveriesResponse {
            deliveries: page.iter().map(|d| delivery_out(&id, d)).collect(),
            next_page_token: next,
        }))
    }

    async fn retry_delivery(
        &self,
        request: Request<pb::RetryDeliveryRequest>,
    ) -> Result<Response<pb::RetryDeliveryResponse>, Status> {
        let caller = crate::auth::caller(&request)?;
        let r = request.into_inner();
        let delivery = self
            .resolve(&caller, &r.webhook_id, r.sequence, Resolve::Retry)
            .await?;
        Ok(Response::new(pb::RetryDeliveryResponse {
            delivery: Some(delivery),
        }))
    }

    async fn skip_delivery(
        &self,
        request: Request<pb::SkipDeliveryRequest>,
    ) -> Result<Response<pb::SkipDeliveryResponse>, Status> {
        let caller = crate::auth::caller(&request)?;
        let r = request.into_inner();
        let delivery = self
            .resolve(&caller, &r.webhook_id, r.sequence, Resolve::Skip)
            .await?;
        Ok(Response::new(pb::SkipDeliveryResponse {
            delivery: Some(delivery),
        }))
    }
}
