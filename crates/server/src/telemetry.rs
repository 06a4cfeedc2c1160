//! Tracing and OpenTelemetry in one place. OTLP export switches on with
//! `otlp_endpoint` (or the standard `OTEL_EXPORTER_OTLP_ENDPOINT`); without
//! it spans still get trace ids, so outbox events carry a `traceparent`
//! either way.

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::WithExportConfig as _;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing::Level;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::Layer as _;
use tracing_subscriber::filter::Targets;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

use crate::config::{Config, LogFormat};

/// Flushes spans still buffered when dropped.
#[derive(Debug)]
pub struct TelemetryGuard {
    provider: SdkTracerProvider,
}

impl Drop for TelemetryGuard {
    fn drop(&mut self) {
        let _ = self.provider.shutdown();
    }
}

/// The tracer provider: exporting over OTLP/gRPC to `endpoint`, if any.
pub fn tracer_provider(endpoint: Option<&str>, service_name: &str) -> anyhow::Result<SdkTracerProvider> {
    let resource = opentelemetry_sdk::Resource::builder()
        .with_service_name(service_name.to_owned())
        .build();
    let builder = SdkTracerProvider::builder().with_resource(resource);
    let builder = match endpoint {
        Some(endpoint) => {
            let exporter = opentelemetry_otlp::SpanExporter::builder()
                .with_tonic()
                .with_endpoint(endpoint)
                .build()?;
            builder.with_batch_exporter(exporter)
        }
        None => builder,
    };
    Ok(builder.build())
}

/// Installs the global subscriber: logs to `writer`, spans to OpenTelemetry.
/// Pretty logs are in colour only with `colour`: the caller knows whether
/// `writer` is a terminal, and escape codes in a file are noise.
pub fn init<W>(config: &Config, writer: W, colour: bool) -> anyhow::Result<TelemetryGuard>
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    let provider = tracer_provider(config.otlp_endpoint.as_deref(), &config.service_name)?;
    opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
    opentelemetry::global::set_tracer_provider(provider.clone());
    // The log level filters log lines only: leadflow's spans go to
    // OpenTelemetry (and give events their traceparent) whatever it is.
    let spans = Targets::new()
        .with_target("leadflow_server", Level::INFO)
        .with_target("leadflow_engine", Level::INFO)
        .with_target("leadflow_store", Level::INFO);
    // Spans are entered and left at every await of a command: nothing in
    // leadflow reads the OpenTelemetry context a span entry would activate
    // (trace ids come from the span itself), and busy/idle timings per
    // span would cost two clock reads and a lock at each.
    let otel = tracing_opentelemetry::layer()
        .with_tracer(provider.tracer("leadflow"))
        .with_context_activation(false)
        .with_tracked_inactivity(false)
        .with_filter(spans);
    // `log_level` is already layered: RUST_LOG counts as a variable of it,
    // below LEADFLOW_LOG_LEVEL and the --log-level flag.
    let logs = EnvFilter::try_new(&config.log_level)?;
    let registry = tracing_subscriber::registry().with(otel);
    match config.log_format {
        LogFormat::Json => registry
            .with(
                tracing_subscriber::fmt::layer()
                    .json()
                    .flatten_event(true)
                    .with_writer(writer)
                    .with_filter(logs),
            )
            .try_init()?,
        LogFormat::Pretty => registry
            .with(
                tracing_subscriber::fmt::layer()
                    .compact()
                    .with_ansi(colour)
                    .with_writer(writer)
                    .with_filter(logs),
            )
            .try_init()?,
    }
    Ok(TelemetryGuard { provider })
}
