//! The W3C `traceparent` that travels with a batch: stored with the outbox message, carried on
//! the queue, stored with each finding event and delivery, so that one trace shows a
//! collector's push, its evaluation and the webhook or ticket it caused. The exporter and the
//! subscriber are set up by the binaries (`wbd_platform::telemetry`); this crate only reads and
//! continues trace context, so the domain crates need nothing else of telemetry.

use std::collections::HashMap;

use opentelemetry::propagation::TextMapPropagator as _;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use tracing_opentelemetry::OpenTelemetrySpanExt as _;

/// The W3C `traceparent` of `span`, if it belongs to a sampled trace.
pub fn traceparent_of(span: &tracing::Span) -> Option<String> {
    let cx = span.context();
    let mut carrier = HashMap::new();
    TraceContextPropagator::new().inject_context(&cx, &mut carrier);
    carrier.remove("traceparent")
}

/// Makes `span` a child of the trace named by `traceparent` (from a batch or a message).
pub fn continue_trace(span: &tracing::Span, traceparent: &str) {
    let carrier = HashMap::from([("traceparent".to_owned(), traceparent.to_owned())]);
    let cx = TraceContextPropagator::new().extract(&carrier);
    // A malformed traceparent leaves the span as the root of a new trace.
    let _ = span.set_parent(cx);
}

/// The trace id (32 hex digits) of a `traceparent` value.
pub fn trace_id_of(traceparent: &str) -> Option<&str> {
    let mut parts = traceparent.split('-');
    let (_version, trace_id) = (parts.next()?, parts.next()?);
    (trace_id.len() == 32).then_some(trace_id)
}
