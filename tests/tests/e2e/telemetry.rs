//! Telemetry end to end: `leadflow serve` exports spans and metrics over
//! OTLP to a real OTLP/gRPC receiver; the caller's `traceparent` is
//! continued from the RPC to the engine's use case, to the database
//! transaction, and onto the event the call caused; a timer and a
//! re-score start traces of their own, linked to the call that caused them.

use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use leadflow_e2e::*;
use leadflow_proto::v1 as pb;
use leadflow_proto::v1::lead_service_client::LeadServiceClient;
use leadflow_proto::v1::policy_service_client::PolicyServiceClient;
use leadflow_proto::v1::trigger_service_client::TriggerServiceClient;
use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_server::{
    MetricsService, MetricsServiceServer,
};
use opentelemetry_proto::tonic::collector::metrics::v1::{
    ExportMetricsServiceRequest, ExportMetricsServiceResponse,
};
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::trace::v1::Span;

/// The caller's trace and span.
const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CALLER: &str = "00f067aa0ba902b7";

/// An OTLP/gRPC receiver that keeps every span, and the name of every
/// metric, it is sent.
#[derive(Clone, Default)]
struct Receiver(Arc<Mutex<Vec<Span>>>, Arc<Mutex<Vec<String>>>);

#[tonic::async_trait]
impl MetricsService for Receiver {
    async fn export(
        &self,
        request: tonic::Request<ExportMetricsServiceRequest>,
    ) -> Result<tonic::Response<ExportMetricsServiceResponse>, tonic::Status> {
        let mut names = self.1.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        for resource in request.into_inner().resource_metrics {
            for scope in resource.scope_metrics {
                names.extend(scope.metrics.into_iter().map(|m| m.name));
            }
        }
        Ok(tonic::Response::new(ExportMetricsServiceResponse::default()))
    }
}

#[tonic::async_trait]
impl TraceService for Receiver {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let mut spans = self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        for resource in request.into_inner().resource_spans {
            for scope in resource.scope_spans {
                spans.extend(scope.spans);
            }
        }
        Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
    }
}

/// `message` as a call of the caller's trace.
fn traced<T>(message: T) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request.metadata_mut().insert(
        "traceparent",
        format!("00-{TRACE}-{CALLER}-01").parse().expect("ascii"),
    );
    request
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

async fn spans_reach_the_collector_with_their_parents(db: Db) -> anyhow::Result<()> {
    let database = fresh_database(db).await?;
    let receiver = Receiver::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let collector: SocketAddr = listener.local_addr()?;
    let server = tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(TraceServiceServer::new(receiver.clone()))
            .add_service(MetricsServiceServer::new(receiver.clone()))
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
    );

    let port = free_port()?;
    let dir = std::env::temp_dir().join(format!("leadflow-telemetry-{port}-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let mut child = Command::new(env!("CARGO_BIN_EXE_leadflow-e2e-server"))
        .args([
            "serve",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--http-listen",
            "127.0.0.1:0",
        ])
        .args(["--otlp-endpoint", &format!("http://{collector}")])
        .args(["--timer-poll-ms", "100"])
        .env("LEADFLOW_DATABASE_URL", &database.url)
        .env("OTEL_SERVICE_NAME", "leadflow-under-test")
        .args(["--log-format", "json"])
        .current_dir(&dir)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.join("serve.log"))?)
        .spawn()?;
    let result = async {
        let endpoint = tonic::transport::Endpoint::from_shared(format!("http://127.0.0.1:{port}"))?;
        let mut channel = None;
        for _ in 0..200 {
            if let Ok(c) = endpoint.connect().await {
                channel = Some(c);
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let channel = channel.ok_or_else(|| anyhow::anyhow!("the server did not come up"))?;
        // the follow-up of the example policy, due a second after MQL
        let mut policies = PolicyServiceClient::new(channel.clone());
        let version = policies
            .create_policy_version(pb::CreatePolicyVersionRequest {
                source: leadflow_server::DEFAULT_POLICY.replace("after = \"3d\"", "after = \"1s\""),
                ..Default::default()
            })
            .await?
            .into_inner()
            .policy
            .map(|p| p.version)
            .ok_or_else(|| anyhow::anyhow!("no policy"))?;
        policies
            .activate_policy(traced(pb::ActivatePolicyRequest {
                version,
                ..Default::default()
            }))
            .await?;
        let mut leads = LeadServiceClient::new(channel.clone());
        let lead = leads
            .create_lead(traced(pb::CreateLeadRequest {
                profile: good_fit("ann@acme.com"),
                ..Default::default()
            }))
            .await?
            .into_inner()
            .lead
            .expect("a lead");
        // these make Ann an MQL, which schedules the follow-up
        for (i, kind) in [
            "trial_started",
            "webinar_attended",
            "ebook_downloaded",
            "ebook_downloaded",
        ]
        .iter()
        .enumerate()
        {
            leads
                .record_engagement(traced(record(&lead.id, engagement(&format!("e{i}"), kind))))
                .await?;
        }
        let mut events = TriggerServiceClient::new(channel)
            .subscribe(pb::SubscribeRequest {
                consumer: "crm".into(),
                start: pb::StartPosition::Earliest.into(),
                ..Default::default()
            })
            .await?
            .into_inner();
        let (mut captured, mut followup) = (None, None);
        while captured.is_none() || followup.is_none() {
            let event = next_event(&mut events, Duration::from_secs(10))
                .await?
                .ok_or_else(|| anyhow::anyhow!("the capture and the follow-up did not both come"))?;
            if event.lead.as_ref().is_none_or(|l| l.id != lead.id) {
                continue;
            }
            match describe(&event).as_str() {
                "TRANSITION:IQL" => captured = Some(event),
                "TRIGGER:mql_followup_day3" => followup = Some(event),
                _ => {}
            }
        }
        let captured = (captured.expect("captured"), followup.expect("followed up"));
        anyhow::Ok(captured)
    }
    .await;
    // SIGTERM: the server stops and sends the spans it still holds.
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let stopped = tokio::task::spawn_blocking(move || child.wait()).await??;
    let log = std::fs::read_to_string(dir.join("serve.log"))?;
    let _ = std::fs::remove_dir_all(&dir);
    let (event, followup) = result?;
    assert!(stopped.success(), "leadflow serve exited with {stopped}");
    server.abort();

    let spans = receiver
        .0
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .clone();
    let in_trace: Vec<&Span> = spans.iter().filter(|s| hex(&s.trace_id) == TRACE).collect();
    let named = |name: &str| {
        in_trace
            .iter()
            .find(|s| s.name == name)
            .copied()
            .unwrap_or_else(|| panic!("no span {name:?} in the caller's trace: {:?}", names(&spans)))
    };
    let rpc = named("/leadflow.v1.LeadService/CreateLead");
    assert_eq!(
        hex(&rpc.parent_span_id),
        CALLER,
        "the RPC continues the caller's span"
    );
    let use_case = named("engine.create_lead");
    assert_eq!(
        use_case.parent_span_id, rpc.span_id,
        "the use case runs inside the RPC"
    );
    let tx = in_trace
        .iter()
        .find(|s| s.name == "db.transaction" && s.parent_span_id == use_case.span_id)
        .unwrap_or_else(|| panic!("no transaction inside the use case: {:?}", names(&spans)));
    assert!(tx.end_time_unix_nano >= tx.start_time_unix_nano && tx.end_time_unix_nano > 0);
    // a single engagement is written in a group commit: the group's span,
    // and its transaction, sit under the caller's use case
    let child_of = |parent: &Span, name: &str| -> Option<Span> {
        in_trace
            .iter()
            .find(|s| s.name == name && s.parent_span_id == parent.span_id)
            .map(|s| (*s).clone())
    };
    let recorded = in_trace
        .iter()
        .filter(|s| s.name == "/leadflow.v1.LeadService/RecordEngagement")
        .filter_map(|rpc| child_of(rpc, "engine.record_engagement"))
        .filter_map(|use_case| child_of(&use_case, "engine.engagement_group"))
        .filter_map(|group| child_of(&group, "db.transaction"))
        .count();
    assert_eq!(recorded, 4, "{:?}", names(&spans));
    // the call's log line, in JSON, names its trace and span
    let line = log
        .lines()
        .find(|l| l.contains("/leadflow.v1.LeadService/CreateLead") && l.contains("\"rpc\""))
        .unwrap_or_else(|| panic!("no log line of the call in {log}"));
    let line: serde_json::Value = serde_json::from_str(line)?;
    assert_eq!(line["span"]["trace_id"], TRACE, "{line}");
    assert_eq!(line["span"]["span_id"], hex(&rpc.span_id), "{line}");
    // the timer fired in a trace of its own, linked to the call that made
    // Ann an MQL; the follow-up it emitted carries that trace
    let calls: Vec<&Vec<u8>> = in_trace
        .iter()
        .filter(|s| s.name == "/leadflow.v1.LeadService/RecordEngagement")
        .map(|s| &s.span_id)
        .collect();
    assert_eq!(calls.len(), 4, "{:?}", names(&spans));
    let fired = spans
        .iter()
        .find(|s| s.name == "timer.fire")
        .unwrap_or_else(|| panic!("no timer.fire span: {:?}", names(&spans)));
    assert!(fired.parent_span_id.is_empty(), "a root span");
    assert_ne!(hex(&fired.trace_id), TRACE, "a trace of its own");
    assert_eq!(fired.links.len(), 1, "{:?}", fired.links);
    assert_eq!(hex(&fired.links[0].trace_id), TRACE);
    assert!(
        calls.contains(&&fired.links[0].span_id),
        "linked to one of the calls"
    );
    assert_eq!(
        followup.traceparent,
        format!("00-{}-{}-01", hex(&fired.trace_id), hex(&fired.span_id)),
        "the follow-up's traceparent"
    );
    // so did the re-score the activation started
    let activation = named("/leadflow.v1.PolicyService/ActivatePolicy");
    let batch = spans
        .iter()
        .find(|s| s.name == "rescore.batch")
        .unwrap_or_else(|| panic!("no rescore.batch span: {:?}", names(&spans)));
    assert!(batch.parent_span_id.is_empty() && hex(&batch.trace_id) != TRACE);
    assert_eq!(
        batch
            .links
            .iter()
            .map(|l| (hex(&l.trace_id), &l.span_id))
            .collect::<Vec<_>>(),
        [(TRACE.to_owned(), &activation.span_id)]
    );
    assert!(
        spans
            .iter()
            .any(|s| s.name == "db.transaction" && s.parent_span_id == batch.span_id),
        "the batch's transaction is a span of its trace"
    );
    // and the metrics went the same way
    let metrics = receiver
        .1
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .clone();
    for name in [
        "rpc.server.call.duration",
        "leadflow.leads",
        "leadflow.engagements.recorded",
    ] {
        assert!(metrics.iter().any(|m| m == name), "{name} not in {metrics:?}");
    }
    // the event the call caused carries the call's trace
    assert_eq!(
        event.traceparent,
        format!("00-{TRACE}-{}-01", hex(&rpc.span_id)),
        "the CAPTURE event's traceparent"
    );
    Ok(())
}

fn names(spans: &[Span]) -> Vec<(String, String)> {
    spans.iter().map(|s| (s.name.clone(), hex(&s.trace_id))).collect()
}

scenarios! {
    spans_reach_the_collector_with_their_parents = each_database(),
}
