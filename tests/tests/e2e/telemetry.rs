//! Telemetry end to end: `leadflow serve` exports spans and metrics over
//! OTLP to a real OTLP/gRPC receiver; the caller's `traceparent` is
//! continued from the RPC to the engine's use case, to the database
//! transaction, and onto the event the call caused.

use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use leadflow_e2e::*;
use leadflow_proto::v1 as pb;
use leadflow_proto::v1::lead_service_client::LeadServiceClient;
use leadflow_proto::v1::trigger_service_client::TriggerServiceClient;
use leadflow_store::testing::TestDatabase;
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

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

async fn spans_reach_the_collector_with_their_parents(db: Db) -> anyhow::Result<()> {
    let Some(database) = TestDatabase::new(db).await else {
        return Ok(());
    };
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
        let mut request = tonic::Request::new(pb::CreateLeadRequest {
            profile: good_fit("ann@acme.com"),
            ..Default::default()
        });
        request
            .metadata_mut()
            .insert("traceparent", format!("00-{TRACE}-{CALLER}-01").parse()?);
        let lead = LeadServiceClient::new(channel.clone())
            .create_lead(request)
            .await?
            .into_inner()
            .lead
            .expect("a lead");
        let mut events = TriggerServiceClient::new(channel)
            .subscribe(pb::SubscribeRequest {
                consumer: "crm".into(),
                start: pb::StartPosition::Earliest.into(),
                ..Default::default()
            })
            .await?
            .into_inner();
        let captured = loop {
            let event = next_event(&mut events, Duration::from_secs(5))
                .await?
                .ok_or_else(|| anyhow::anyhow!("no event for the new lead"))?;
            if event.lead.as_ref().is_some_and(|l| l.id == lead.id) {
                break event;
            }
        };
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
    let event = result?;
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
    let tx = named("db.transaction");
    assert_eq!(
        tx.parent_span_id, use_case.span_id,
        "the transaction runs inside the use case"
    );
    assert!(tx.end_time_unix_nano >= tx.start_time_unix_nano && tx.end_time_unix_nano > 0);
    // the call's log line, in JSON, names its trace and span
    let line = log
        .lines()
        .find(|l| l.contains("/leadflow.v1.LeadService/CreateLead") && l.contains("\"rpc\""))
        .unwrap_or_else(|| panic!("no log line of the call in {log}"));
    let line: serde_json::Value = serde_json::from_str(line)?;
    assert_eq!(line["span"]["trace_id"], TRACE, "{line}");
    assert_eq!(line["span"]["span_id"], hex(&rpc.span_id), "{line}");
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spans_reach_the_collector_with_their_parents_sqlite() {
    spans_reach_the_collector_with_their_parents(Db::Sqlite)
        .await
        .expect("scenario");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spans_reach_the_collector_with_their_parents_postgres() {
    spans_reach_the_collector_with_their_parents(Db::Postgres)
        .await
        .expect("scenario");
}
