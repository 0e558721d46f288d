//! Prometheus metrics, served as text on `/metrics` by `wbd-api` (on `server.listen`) and by
//! `wbd-worker` (on `worker.listen`).
//!
//! The code that does the work counts through the `metrics` facade (a no-op until a recorder is
//! installed, so library crates and tests pay nothing); [`install`] puts the Prometheus recorder
//! in place once per process, and [`render`] samples the gauges that are read, not counted
//! (outbox, dead letters, pending deliveries, the database pool, the queue, the consumers) and
//! renders everything in the Prometheus text format.
//!
//! With an OTLP endpoint configured (`OTEL_EXPORTER_OTLP_ENDPOINT`, or
//! `OTEL_EXPORTER_OTLP_METRICS_ENDPOINT`), the same metrics are also pushed over OTLP/HTTP, as
//! the traces are (`otlp`, set up by `telemetry::init`).
//!
//! Labels are bounded sets: a route's pattern (never its ids), a method, a status, an outcome or
//! error code, a rule id, a severity, an integration kind. No tenant, organisation or
//! collector appears in a label.

mod otlp;

use std::sync::OnceLock;

use chrono::Utc;
use metrics::{Unit, describe_counter, describe_gauge, describe_histogram, gauge};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use wbd_queue::Queue;
use wbd_store::Store;

/// The text format's content type.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Buckets of every `_seconds` histogram: from a fast request (5 ms) to a slow delivery (30 s).
const SECONDS_BUCKETS: &[f64] = &[0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0];

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// The OpenTelemetry meter to push through, when OTLP export is on (set before [`install`]).
static OTLP_METER: OnceLock<opentelemetry::metrics::Meter> = OnceLock::new();

/// Pushes every metric through `meter` as well (`telemetry::init` calls it when an OTLP endpoint
/// is configured, before the recorder is installed).
pub(crate) fn export_over_otlp(meter: opentelemetry::metrics::Meter) {
    let _ = OTLP_METER.set(meter);
}

/// Installs the Prometheus recorder for this process (once; later calls, e.g. several servers
/// in one test process, share it) and describes every metric.
pub fn install() -> PrometheusHandle {
    HANDLE
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), SECONDS_BUCKETS)
                .expect("the buckets are not empty")
                .build_recorder();
            let handle = recorder.handle();
            let installed = match OTLP_METER.get() {
                Some(meter) => metrics::set_global_recorder(
                    metrics_util::layers::FanoutBuilder::default()
                        .add_recorder(recorder)
                        .add_recorder(otlp::OtelRecorder::new(meter.clone()))
                        .build(),
                )
                .map_err(|_| ()),
                None => metrics::set_global_recorder(recorder).map_err(|_| ()),
            };
            // Another recorder may be in place already (a test harness's); ours then stays
            // unused and `/metrics` shows only the gauges it samples.
            if installed.is_err() {
                tracing::warn!("a metrics recorder was installed before; /metrics shows sampled gauges only");
            }
            describe();
            gauge!("wbd_build_info", "version" => env!("CARGO_PKG_VERSION")).set(1.0);
            handle
        })
        .clone()
}

/// Samples the gauges that are read rather than counted, then renders every metric.
/// `consumers` is the worker's count of running evaluation consumers (`None` in an API process
/// that runs none).
pub async fn render(store: &dyn Store, queue: &Queue, consumers: Option<usize>) -> String {
    let handle = install();
    sample(store, queue, consumers).await;
    handle.run_upkeep();
    handle.render()
}

async fn sample(store: &dyn Store, queue: &Queue, consumers: Option<usize>) {
    let pool = store.pool_stats();
    gauge!("wbd_db_pool_connections", "state" => "idle").set(f64::from(pool.idle));
    gauge!("wbd_db_pool_connections", "state" => "in_use")
        .set(f64::from(pool.open.saturating_sub(pool.idle)));
    gauge!("wbd_db_pool_max_connections").set(f64::from(pool.max));
    gauge!("wbd_queue_ready").set(if queue.ready().await { 1.0 } else { 0.0 });
    if let Some(consumers) = consumers {
        gauge!("wbd_consumers_active").set(consumers as f64);
    }
    // A database that does not answer leaves these at their last value; `wbd_db_up` says so.
    let counts = async {
        let outbox = store.count_outbox().await?;
        let oldest = store.oldest_outbox_message().await?;
        let dead = store.count_dead_letters().await?;
        let pending = store.count_pending_deliveries().await?;
        Ok::<_, wbd_store::StoreError>((outbox, oldest, dead, pending))
    };
    match counts.await {
        Ok((outbox, oldest, dead, pending)) => {
            gauge!("wbd_db_up").set(1.0);
            gauge!("wbd_outbox_messages").set(outbox as f64);
            let age = oldest.map_or(0.0, |t| (Utc::now() - t).as_seconds_f64().max(0.0));
            gauge!("wbd_outbox_oldest_age_seconds").set(age);
            gauge!("wbd_dead_letters").set(dead as f64);
            gauge!("wbd_deliveries_pending").set(pending as f64);
        }
        Err(e) => {
            tracing::warn!(error = %e, "metrics: the database did not answer");
            gauge!("wbd_db_up").set(0.0);
        }
    }
}

fn describe() {
    describe_gauge!("wbd_build_info", "The running version (always 1)");
    describe_counter!(
        "wbd_http_requests_total",
        "HTTP requests answered, by route pattern, method and status"
    );
    describe_histogram!(
        "wbd_http_request_duration_seconds",
        Unit::Seconds,
        "Time to answer an HTTP request, by route pattern and method"
    );
    describe_counter!(
        "wbd_ingest_batches_total",
        "Batches pushed by collectors, by outcome (accepted, duplicate, refused) and reason (an error code when refused)"
    );
    describe_counter!("wbd_ingest_results_total", "Probe results accepted in new batches");
    describe_counter!(
        "wbd_rate_limited_total",
        "Requests refused with 429, by limit (address, credential, organisation, collector)"
    );
    describe_gauge!("wbd_outbox_messages", "Messages waiting in the outbox to be published or evaluated");
    describe_gauge!(
        "wbd_outbox_oldest_age_seconds",
        Unit::Seconds,
        "Age of the oldest message in the outbox (0: empty)"
    );
    describe_gauge!("wbd_dead_letters", "Messages set aside after failing too often");
    describe_gauge!("wbd_deliveries_pending", "Deliveries waiting to be sent or retried");
    describe_gauge!("wbd_db_up", "Whether the database answered the last scrape (1) or not (0)");
    describe_gauge!(
        "wbd_db_pool_connections",
        "Database connections of this process, by state (idle, in_use)"
    );
    describe_gauge!("wbd_db_pool_max_connections", "The most database connections this process opens");
    describe_gauge!("wbd_queue_ready", "Whether the queue answers (1) or not (0)");
    describe_gauge!("wbd_consumers_active", "Evaluation consumers taking messages in this worker");
    describe_histogram!(
        "wbd_evaluation_duration_seconds",
        Unit::Seconds,
        "Time to evaluate a tenant's rules and commit the result"
    );
    describe_histogram!(
        "wbd_evaluation_lag_seconds",
        Unit::Seconds,
        "Time from a message being written (a batch stored, rules changed) to its evaluation being committed"
    );
    describe_counter!("wbd_evaluations_total", "Evaluations, by outcome (applied, unchanged, failed)");
    describe_counter!("wbd_findings_opened_total", "Findings opened or reopened, by rule and severity");
    describe_counter!("wbd_findings_resolved_total", "Findings resolved, by rule and severity");
    describe_counter!(
        "wbd_deliveries_total",
        "Delivery attempts recorded, by integration kind and outcome (delivered, failed, dead)"
    );
    describe_histogram!(
        "wbd_delivery_attempt_duration_seconds",
        Unit::Seconds,
        "Time of one delivery attempt, by integration kind"
    );
    describe_counter!(
        "wbd_integrations_throttled_total",
        "Delivery attempts the destination throttled, by kind"
    );
    describe_counter!("wbd_integrations_disabled_total", "Integrations switched off after failing, by kind");
}
