//! One span and one log line per RPC: method, status, latency. The span
//! continues the caller's trace (W3C `traceparent`), so every event a call
//! causes carries that trace.

use std::sync::Arc;
use std::time::Instant;

use http::HeaderMap;
use opentelemetry::propagation::Extractor;
use tracing::Instrument as _;
use tracing_opentelemetry::OpenTelemetrySpanExt as _;

use crate::layers::{Body, BoxFuture, Middleware};
use crate::metrics::Metrics;

/// One span, one log line and one latency sample per call.
#[derive(Clone, Debug)]
pub(crate) struct Observe {
    metrics: Arc<Metrics>,
}

impl Observe {
    pub(crate) fn new(metrics: Arc<Metrics>) -> Self {
        Self { metrics }
    }
}

struct Headers<'a>(&'a HeaderMap);

impl Extractor for Headers<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(http::HeaderName::as_str).collect()
    }
}

impl Middleware for Observe {
    fn call<S>(
        &self,
        mut req: http::Request<Body>,
        mut inner: S,
    ) -> BoxFuture<Result<http::Response<Body>, S::Error>>
    where
        S: tower::Service<http::Request<Body>, Response = http::Response<Body>> + Send + 'static,
        S::Future: Send + 'static,
    {
        let method = req.uri().path().to_owned();
        if let Some(tp) = req.headers().get("traceparent").and_then(|v| v.to_str().ok()) {
            let tp = IncomingTrace(tp.to_owned());
            req.extensions_mut().insert(tp);
        }
        let parent = opentelemetry::global::get_text_map_propagator(|p| p.extract(&Headers(req.headers())));
        // How a caller may retry the call, from the method table: with its
        // request id, its event ids, or as it is.
        let retry = match crate::methods::lookup(&method) {
            crate::methods::Lookup::Known(rpc) => rpc.retry.as_str(),
            _ => "",
        };
        let span = tracing::info_span!(
            "rpc",
            otel.name = %method,
            otel.kind = "server",
            rpc.system = "grpc",
            rpc.method = %method,
            leadflow.retry = retry,
            lead_id = tracing::field::Empty,
            rpc.grpc.status_code = tracing::field::Empty,
            trace_id = tracing::field::Empty,
            span_id = tracing::field::Empty,
        );
        let _ = span.set_parent(parent);
        // On the span, for the log lines written inside it (JSON logs carry
        // the span's fields).
        leadflow_engine::trace::record_ids(&span);
        let started = Instant::now();
        let metrics = Arc::clone(&self.metrics);
        Box::pin(async move {
            let mut result = inner.call(req).instrument(span.clone()).await;
            let code = match &mut result {
                Ok(response) => status_of(response.headers_mut()),
                Err(_) => tonic::Code::Unknown,
            };
            let elapsed = started.elapsed().as_secs_f64();
            metrics.rpc(&method, code, elapsed);
            let latency_ms = elapsed * 1000.0;
            span.record("rpc.grpc.status_code", code as i32);
            let _entered = span.enter();
            match code {
                tonic::Code::Ok | tonic::Code::Cancelled => {
                    tracing::info!(method = %method, code = ?code, latency_ms, "rpc");
                }
                tonic::Code::Internal
                | tonic::Code::Unknown
                | tonic::Code::DataLoss
                | tonic::Code::Unavailable => {
                    tracing::error!(method = %method, code = ?code, latency_ms, "rpc");
                }
                _ => tracing::warn!(method = %method, code = ?code, latency_ms, "rpc"),
            }
            result
        })
    }
}

/// The status of a response whose headers carry it (an error, or a call
/// refused before it ran); OK otherwise, as that status comes in trailers.
///
/// A request over the size limit is refused by the codec as OUT_OF_RANGE
/// with a bare message; callers are told what any other limit of ours
/// tells them: RESOURCE_EXHAUSTED (gRPC's convention for it), `ErrorInfo`
/// `LIMIT_EXCEEDED` with the limit and the actual size.
fn status_of(headers: &mut HeaderMap) -> tonic::Code {
    let Some(code) = headers
        .get("grpc-status")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<i32>().ok())
    else {
        return tonic::Code::Ok;
    };
    if code == tonic::Code::OutOfRange as i32
        && let Some(message) = headers.get("grpc-message").and_then(|v| v.to_str().ok())
        && let Some(status) = crate::error::from_decode_limit(&percent_decode(message))
    {
        let refused = status.into_http::<tonic::body::Body>();
        for name in ["grpc-status", "grpc-message", "grpc-status-details-bin"] {
            match refused.headers().get(name) {
                Some(value) => {
                    headers.insert(name, value.clone());
                }
                None => {
                    headers.remove(name);
                }
            }
        }
        return tonic::Code::ResourceExhausted;
    }
    tonic::Code::from(code)
}

/// A `grpc-message` as sent: percent-encoded.
fn percent_decode(message: &str) -> String {
    let bytes = message.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => match (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                (Some(h), Some(l)) => {
                    out.push(u8::try_from(h * 16 + l).unwrap_or(b'?'));
                    i += 3;
                    continue;
                }
                _ => out.push(b'%'),
            },
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The caller's `traceparent` header, as received.
#[derive(Clone, Debug)]
pub(crate) struct IncomingTrace(pub(crate) String);

/// The trace a call's events carry: the current span's, or, where spans are
/// not exported (no OpenTelemetry layer), the caller's own.
pub(crate) fn traceparent_of<T>(request: &tonic::Request<T>) -> Option<String> {
    current_traceparent().or_else(|| request.extensions().get::<IncomingTrace>().map(|t| t.0.clone()))
}

/// The W3C `traceparent` of the current span, for the events a call causes.
fn current_traceparent() -> Option<String> {
    leadflow_engine::trace::traceparent(&tracing::Span::current())
}

/// Notes the lead a call is about on its span.
pub(crate) fn record_lead(id: &str) {
    tracing::Span::current().record("lead_id", id);
}
