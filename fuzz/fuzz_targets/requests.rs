//! Any bytes as a request to any unary RPC: decoded as the protocol buffer
//! the RPC takes, then through the service's checks, the engine and an
//! in-memory SQLite, exactly as a call over the network would go. An error
//! is fine; a panic is a bug.

#![no_main]

use std::sync::{Arc, OnceLock};

use leadflow_proto::v1 as pb;
use leadflow_proto::v1::lead_service_server::LeadService;
use leadflow_proto::v1::policy_service_server::PolicyService;
use leadflow_proto::v1::trigger_service_server::TriggerService;
use leadflow_server::auth::Principal;
use leadflow_server::{LeadApi, PolicyApi, TriggerApi};
use libfuzzer_sys::fuzz_target;
use prost::Message;

struct Target {
    runtime: tokio::runtime::Runtime,
    leads: LeadApi,
    policies: PolicyApi,
    triggers: TriggerApi,
}

fn target() -> &'static Target {
    static TARGET: OnceLock<Target> = OnceLock::new();
    TARGET.get_or_init(|| {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let config = leadflow_server::Config {
            database_url: leadflow_server::DatabaseUrl::new("sqlite::memory:"),
            ..leadflow_server::Config::default()
        };
        let engine = runtime
            .block_on(leadflow_server::open_engine(
                &config,
                Arc::new(leadflow_engine::SystemClock),
            ))
            .expect("engine");
        Target {
            leads: LeadApi::new(engine.clone()),
            policies: PolicyApi::new(engine.clone()),
            triggers: TriggerApi::new(engine),
            runtime,
        }
    })
}

/// A request as the auth layer hands it to a service.
fn request<M: Message + Default>(bytes: &[u8]) -> Option<tonic::Request<M>> {
    let message = M::decode(bytes).ok()?;
    let mut request = tonic::Request::new(message);
    request.extensions_mut().insert(Principal {
        workspace: leadflow_server::DEFAULT_WORKSPACE.to_owned(),
        name: "fuzz".to_owned(),
        token: None,
    });
    Some(request)
}

macro_rules! call {
    ($service:expr, $method:ident, $bytes:expr) => {
        if let Some(r) = request($bytes) {
            let _ = $service.$method(r).await;
        }
    };
}

fuzz_target!(|data: &[u8]| {
    let Some((&which, bytes)) = data.split_first() else {
        return;
    };
    let t = target();
    t.runtime.block_on(async {
        match which % 18 {
            0 => call!(t.leads, create_lead, bytes),
            1 => call!(t.leads, get_lead, bytes),
            2 => call!(t.leads, list_leads, bytes),
            3 => call!(t.leads, update_lead_profile, bytes),
            4 => call!(t.leads, record_engagement, bytes),
            5 => call!(t.leads, record_engagements, bytes),
            6 => call!(t.leads, transition, bytes),
            7 => call!(t.leads, get_lead_history, bytes),
            8 => call!(t.leads, explain_score, bytes),
            9 => call!(t.leads, erase_lead, bytes),
            10 => call!(t.policies, validate_policy, bytes),
            11 => call!(t.policies, create_policy_version, bytes),
            12 => call!(t.policies, list_policy_versions, bytes),
            13 => call!(t.policies, simulate_policy, bytes),
            14 => call!(t.policies, get_active_policy, bytes),
            15 => call!(t.triggers, ack, bytes),
            16 => call!(t.triggers, list_consumers, bytes),
            _ => call!(t.triggers, delete_consumer, bytes),
        }
    });
});
