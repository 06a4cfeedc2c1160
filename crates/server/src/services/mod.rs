//! The tonic services: proto in, engine call, proto out.

mod accounts;
mod analytics;
mod leads;
mod learn;
mod owners;
mod policies;
mod search;
pub(crate) mod triggers;
mod webhooks;

pub use accounts::AccountApi;
pub use analytics::AnalyticsApi;
pub(crate) use analytics::period_out;
pub use leads::LeadApi;
pub use owners::OwnerApi;
pub use policies::PolicyApi;
pub use triggers::TriggerApi;
pub use webhooks::WebhookApi;

use leadflow_engine::{Method, Request, fingerprint};

/// An engine request for a call: its idempotency key and a hash of its
/// content without that key (so a retry with the same id is recognised and
/// the same id with other content is not).
pub(crate) fn engine_request<M: prost::Message + Clone>(
    caller: &crate::auth::Principal,
    method: Method,
    request_id: &str,
    message: &M,
    clear_id: impl FnOnce(&mut M),
    traceparent: Option<String>,
) -> Request {
    let mut copy = message.clone();
    clear_id(&mut copy);
    Request {
        workspace: caller.workspace.clone(),
        request_id: (!request_id.is_empty()).then(|| request_id.to_owned()),
        fingerprint: fingerprint([method.as_str().as_bytes(), copy.encode_to_vec().as_slice()]),
        traceparent,
        principal: caller.recorded_name(),
    }
}
