//! Traces the engine starts itself: a timer firing or a re-score batch
//! begins a trace of its own, linked to the call that scheduled the timer
//! or activated the policy.

use opentelemetry::trace::{SpanContext, SpanId, TraceContextExt as _, TraceFlags, TraceId, TraceState};
use tracing_opentelemetry::OpenTelemetrySpanExt as _;

/// The span context a W3C `traceparent` names, if it is well formed.
pub(crate) fn parse(text: &str) -> Option<SpanContext> {
    let mut parts = text.split('-');
    let (version, trace, span, flags) = (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    if version.len() != 2
        || trace.len() != 32
        || span.len() != 16
        || flags.len() != 2
        || parts.next().is_some()
    {
        return None;
    }
    let context = SpanContext::new(
        TraceId::from_hex(trace).ok()?,
        SpanId::from_hex(span).ok()?,
        TraceFlags::new(u8::from_str_radix(flags, 16).ok()?),
        true,
        TraceState::default(),
    );
    context.is_valid().then_some(context)
}

/// The W3C `traceparent` of `span`, when spans are traced.
pub fn traceparent(span: &tracing::Span) -> Option<String> {
    let context = span.context();
    let otel = context.span();
    let sc = otel.span_context();
    sc.is_valid().then(|| {
        format!(
            "00-{}-{}-{:02x}",
            sc.trace_id(),
            sc.span_id(),
            sc.trace_flags().to_u8()
        )
    })
}

/// `span`, the root of a new trace, linked to the call `cause` names; its
/// `trace_id` and `span_id` fields (when it declares them) set, for the log
/// lines written inside it.
pub(crate) fn linked(span: tracing::Span, cause: Option<&str>) -> tracing::Span {
    link(&span, cause);
    record_ids(&span);
    span
}

/// Links `span` to the span `traceparent` names, if any.
pub(crate) fn link(span: &tracing::Span, traceparent: Option<&str>) {
    if let Some(context) = traceparent.and_then(parse) {
        span.add_link(context);
    }
}

/// Sets `span`'s `trace_id` and `span_id` fields to its OpenTelemetry ids.
pub fn record_ids(span: &tracing::Span) {
    let context = span.context();
    let otel = context.span();
    let ids = otel.span_context();
    if ids.is_valid() {
        span.record("trace_id", tracing::field::display(ids.trace_id()));
        span.record("span_id", tracing::field::display(ids.span_id()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traceparents_parse_only_when_well_formed() {
        let context = parse("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01").expect("valid");
        assert_eq!(context.trace_id().to_string(), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(context.span_id().to_string(), "00f067aa0ba902b7");
        assert!(context.is_sampled() && context.is_remote());
        for bad in [
            "",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00-4bf92f3577b34da6a3ce929d0e0e473g-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
        ] {
            assert!(parse(bad).is_none(), "{bad:?}");
        }
    }
}
