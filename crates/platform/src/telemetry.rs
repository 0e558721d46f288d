//! Logs and traces: `tracing` everywhere, formatted to stderr (pretty or JSON). When
//! `OTEL_EXPORTER_OTLP_ENDPOINT` (or `…_TRACES_ENDPOINT`) is set, an OpenTelemetry layer gives
//! every span a trace id and exports it over OTLP/HTTP; without one, spans are only what the log
//! shows, and cost no more. The metrics follow the same variable (`crate::metrics`). The W3C
//! `traceparent` of a span is what travels with a batch through the outbox and the queue
//! (`wbd_trace`, re-exported here).

use std::sync::Once;

use opentelemetry::metrics::MeterProvider as _;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::metrics::SdkMeterProvider;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;
use tracing_subscriber::{EnvFilter, Layer as _};

pub use wbd_trace::{continue_trace, trace_id_of, traceparent_of};

use crate::settings::{LogFormat, TelemetrySettings};

/// Flushes and shuts the trace pipeline down when dropped: keep it alive for the process.
pub struct TelemetryGuard {
    provider: SdkTracerProvider,
    meters: Option<SdkMeterProvider>,
}

impl Drop for TelemetryGuard {
    fn drop(&mut self) {
        if let Err(e) = self.provider.shutdown() {
            eprintln!("telemetry: shutting down the trace exporter failed: {e}");
        }
        if let Some(meters) = &self.meters
            && let Err(e) = meters.shutdown()
        {
            eprintln!("telemetry: shutting down the metrics exporter failed: {e}");
        }
    }
}

/// Whether metrics are pushed over OTLP too (the standard OTLP endpoint variables).
pub fn otlp_metrics_configured() -> bool {
    ["OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT"]
        .iter()
        .any(|k| std::env::var(k).is_ok_and(|v| !v.is_empty()))
}

/// Whether spans are exported (the standard OTLP endpoint variables).
pub fn otlp_configured() -> bool {
    ["OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"]
        .iter()
        .any(|k| std::env::var(k).is_ok_and(|v| !v.is_empty()))
}

/// Installs the global subscriber. Call it before the async runtime starts: the OTLP exporter
/// uses a blocking HTTP client that must not be built inside the runtime.
pub fn init(settings: &TelemetrySettings, component: &str) -> anyhow::Result<TelemetryGuard> {
    let provider = tracer_provider(&settings.service_name, component)?;
    let tracer = provider.tracer(component.to_owned());
    let filter = EnvFilter::try_from_default_env().or_else(|_| EnvFilter::try_new(&settings.log_filter))?;
    let fmt = match settings.log_format {
        LogFormat::Pretty => tracing_subscriber::fmt::layer().with_writer(std::io::stderr).boxed(),
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .json()
            .with_current_span(true)
            .with_span_list(false)
            .with_writer(std::io::stderr)
            .boxed(),
    };
    // Spans become OpenTelemetry spans (and carry the trace through the queue) only where they
    // are exported: without an exporter nobody reads them, and building one per span cost the
    // ingest 2-3% of its CPU. Each layer has its own filter: a quiet log level must not switch
    // tracing off.
    let spans = otlp_configured()
        .then(|| tracing_opentelemetry::layer().with_tracer(tracer).with_filter(LevelFilter::INFO));
    tracing_subscriber::registry().with(fmt.with_filter(filter)).with(spans).try_init()?;
    opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
    let meters = meter_provider(&settings.service_name, component)?;
    if let Some(meters) = &meters {
        crate::metrics::export_over_otlp(meters.meter("writeback-doctor"));
    }
    Ok(TelemetryGuard { provider, meters })
}

/// For tests: silent unless `TEST_LOG` is set; trace ids work as in production.
pub fn init_for_tests() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let provider = SdkTracerProvider::builder().build();
        let tracer = provider.tracer("test");
        // Kept for the whole test process.
        std::mem::forget(provider);
        let otel = tracing_opentelemetry::layer().with_tracer(tracer).with_filter(LevelFilter::INFO);
        let fmt = std::env::var_os("TEST_LOG").map(|_| {
            let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
            tracing_subscriber::fmt::layer().with_test_writer().with_filter(filter)
        });
        let result = tracing_subscriber::registry().with(otel).with(fmt).try_init();
        // Another test harness may have installed a subscriber first; that one stays.
        let _ = result;
        opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
    });
}

fn resource(service_name: &str, component: &str) -> opentelemetry_sdk::Resource {
    opentelemetry_sdk::Resource::builder()
        .with_service_name(service_name.to_owned())
        .with_attribute(opentelemetry::KeyValue::new("service.component", component.to_owned()))
        .build()
}

/// The OTLP metrics pipeline when an endpoint is configured: a periodic reader (every
/// `OTEL_METRIC_EXPORT_INTERVAL` ms, 60 s by default) on its own thread, as the span exporter.
fn meter_provider(service_name: &str, component: &str) -> anyhow::Result<Option<SdkMeterProvider>> {
    if !otlp_metrics_configured() {
        return Ok(None);
    }
    use opentelemetry_otlp::WithExportConfig as _;
    let exporter = opentelemetry_otlp::MetricExporter::builder()
        .with_http()
        .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
        .build()?;
    let reader = opentelemetry_sdk::metrics::PeriodicReader::builder(exporter).build();
    Ok(Some(
        SdkMeterProvider::builder()
            .with_resource(resource(service_name, component))
            .with_reader(reader)
            .build(),
    ))
}

fn tracer_provider(service_name: &str, component: &str) -> anyhow::Result<SdkTracerProvider> {
    let builder = SdkTracerProvider::builder().with_resource(resource(service_name, component));
    if !otlp_configured() {
        return Ok(builder.build());
    }
    use opentelemetry_otlp::WithExportConfig as _;
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
        .build()?;
    Ok(builder.with_batch_exporter(exporter).build())
}
