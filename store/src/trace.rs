//! Trace context across the system: a command's HTTP request span travels in its events'
//! metadata (`traceparent`, W3C Trace Context), the relay puts it on each Kafka message, and
//! projections, the saga and the notifier continue the trace from it. Spans are exported over
//! OTLP only when `shop` installs the OpenTelemetry layer (`OTEL_EXPORTER_OTLP_ENDPOINT`);
//! without it these functions do nothing and cost next to nothing.

use std::sync::atomic::{AtomicBool, Ordering};

use opentelemetry::trace::{SpanContext, SpanId, TraceContextExt as _, TraceFlags, TraceId, TraceState};
use tracing_opentelemetry::OpenTelemetrySpanExt as _;

static ENABLED: AtomicBool = AtomicBool::new(false);

/// Set once at start when spans are exported. Off, the spans below are not even created
/// (an info-level span per request and per order is work for nobody when no one collects
/// them), and requests keep tower-http's debug-level span.
pub fn set_enabled(on: bool) {
    ENABLED.store(on, Ordering::Relaxed);
}

/// Whether spans are exported.
pub fn enabled() -> bool {
    ENABLED.load(Ordering::Relaxed)
}

/// An info-level span built by `make` when spans are exported, otherwise a disabled one.
pub fn span(make: impl FnOnce() -> tracing::Span) -> tracing::Span {
    if enabled() {
        make()
    } else {
        tracing::Span::none()
    }
}

/// `00-<trace id>-<span id>-<flags>` of `span`, if it belongs to a trace.
pub fn traceparent_of(span: &tracing::Span) -> Option<String> {
    if !enabled() {
        return None;
    }
    let context = span.context();
    let sc = context.span().span_context().clone();
    sc.is_valid().then(|| format!("00-{}-{}-{:02x}", sc.trace_id(), sc.span_id(), sc.trace_flags().to_u8()))
}

/// The trace id (32 hex digits) of `span`, if it belongs to a trace.
pub fn trace_id_of(span: &tracing::Span) -> Option<String> {
    if !enabled() {
        return None;
    }
    let context = span.context();
    let sc = context.span().span_context().clone();
    sc.is_valid().then(|| sc.trace_id().to_string())
}

/// Parses a W3C `traceparent` header value.
pub fn parse(traceparent: &str) -> Option<SpanContext> {
    let mut parts = traceparent.trim().split('-');
    let (version, trace, span, flags) = (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    if version != "00" || trace.len() != 32 || span.len() != 16 || flags.len() != 2 {
        return None;
    }
    let trace = TraceId::from_hex(trace).ok()?;
    let span = SpanId::from_hex(span).ok()?;
    let flags = TraceFlags::new(u8::from_str_radix(flags, 16).ok()?);
    let sc = SpanContext::new(trace, span, flags, true, TraceState::default());
    sc.is_valid().then_some(sc)
}

/// Makes `span` a child of the remote span `traceparent` (a malformed one is ignored).
pub fn continue_from(span: &tracing::Span, traceparent: Option<&str>) {
    if let Some(sc) = traceparent.and_then(parse) {
        let _ = span.set_parent(opentelemetry::Context::new().with_remote_span_context(sc));
    }
}

/// Links `span` to the remote span `traceparent`: a batch that served several traces.
pub fn link_to(span: &tracing::Span, traceparent: Option<&str>) {
    if let Some(sc) = traceparent.and_then(parse) {
        span.add_link(sc);
    }
}

/// The `traceparent` stored in an event's metadata.
pub fn of_metadata(metadata: &serde_json::Value) -> Option<&str> {
    metadata.get("traceparent").and_then(|v| v.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traceparents_parse_and_bad_ones_do_not() {
        let sc = parse("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01").expect("valid");
        assert_eq!(sc.trace_id().to_string(), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(sc.span_id().to_string(), "00f067aa0ba902b7");
        assert!(sc.is_sampled() && sc.is_remote());
        for bad in [
            "",
            "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-xyz-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
        ] {
            assert!(parse(bad).is_none(), "{bad}");
        }
    }
}
