//! `/metrics`: what the API and the worker did, in the Prometheus text format, with bounded
//! labels (no tenant, organisation or collector in them).
//!
//! The recorder is one per process, shared by every test of this binary: the counts asserted
//! here are lower bounds.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::process::{Command, Stdio};
use std::time::Duration;

use reqwest::StatusCode;

use crate::helpers::*;

const HOST: &str = "passwordreset.microsoftonline.com";

/// One sample: the metric's name and its labels, sorted.
type Series = (String, BTreeMap<String, String>);

/// Reads the text format's samples (enough of it for these tests; the real parser is below).
fn samples(text: &str) -> Vec<(Series, f64)> {
    text.lines()
        .filter(|line| !line.starts_with('#') && !line.trim().is_empty())
        .map(|line| {
            let (series, value) = line.rsplit_once(' ').expect("a sample has a value");
            let (name, labels) = match series.split_once('{') {
                Some((name, labels)) => (name, labels.trim_end_matches('}')),
                None => (series, ""),
            };
            let labels = labels
                .split(',')
                .filter(|kv| !kv.is_empty())
                .map(|kv| {
                    let (k, v) = kv.split_once('=').expect("label=value");
                    (k.to_owned(), v.trim_matches('"').to_owned())
                })
                .collect();
            ((name.to_owned(), labels), value.parse().expect("a number"))
        })
        .collect()
}

/// The sum of the samples named `name` whose labels include `with`.
fn total(samples: &[(Series, f64)], name: &str, with: &[(&str, &str)]) -> f64 {
    samples
        .iter()
        .filter(|((n, labels), _)| {
            n == name && with.iter().all(|(k, v)| labels.get(*k).map(String::as_str) == Some(*v))
        })
        .map(|(_, value)| value)
        .sum()
}

async fn scrape(app: &TestApp) -> String {
    let res = app.client.get(app.url("/metrics")).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let ct = res.headers()["content-type"].to_str().unwrap().to_owned();
    assert!(ct.starts_with("text/plain; version=0.0.4"), "{ct}");
    res.text().await.unwrap()
}

#[tokio::test]
async fn the_api_counts_requests_pushes_evaluations_and_findings_without_naming_tenants() {
    let app = spawn_app().await;
    let org = app.bootstrap_org("Acme MSP").await;
    let (tenant, site) = app.tenant_with_collector(&org).await;
    let blocked = batch(vec![refused_endpoint(HOST, 443)]);
    let token = site.token(&blocked);
    let res = push_at(&app.client, &app.base, &token, &blocked).await;
    assert_eq!(res.status(), StatusCode::ACCEPTED);
    // The same token again: refused, and counted by its code.
    let res = push_at(&app.client, &app.base, &token, &blocked).await;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    let query = format!("tenant_id={tenant}&rule_id=endpoint-reachable");
    let findings = app.wait_for_findings(&org.token, &query, |f| f.len() == 1).await;
    let severity = findings[0]["severity"].as_str().unwrap().to_owned();

    let text = scrape(&app).await;
    let all = samples(&text);
    let at_least_one = |name: &str, with: &[(&str, &str)]| {
        assert!(total(&all, name, with) >= 1.0, "no {name} {with:?} in\n{text}");
    };
    at_least_one(
        "wbd_http_requests_total",
        &[("route", "/v1/tenants"), ("method", "POST"), ("status", "201")],
    );
    at_least_one(
        "wbd_http_requests_total",
        &[("route", "/v1/ingest"), ("method", "POST"), ("status", "202")],
    );
    at_least_one("wbd_http_request_duration_seconds_bucket", &[("route", "/v1/ingest"), ("le", "+Inf")]);
    at_least_one("wbd_ingest_batches_total", &[("outcome", "accepted")]);
    at_least_one("wbd_ingest_batches_total", &[("outcome", "refused"), ("reason", "token_replayed")]);
    at_least_one("wbd_ingest_results_total", &[]);
    at_least_one("wbd_evaluations_total", &[("outcome", "applied")]);
    at_least_one("wbd_evaluation_duration_seconds_count", &[]);
    at_least_one("wbd_evaluation_lag_seconds_count", &[]);
    at_least_one("wbd_findings_opened_total", &[("rule", "endpoint-reachable"), ("severity", &severity)]);
    at_least_one("wbd_build_info", &[]);
    at_least_one("wbd_db_pool_max_connections", &[]);
    at_least_one("wbd_queue_ready", &[]);
    at_least_one("wbd_consumers_active", &[]);
    at_least_one("wbd_db_up", &[]);
    assert!(all.iter().any(|((n, _), _)| n == "wbd_outbox_messages"), "{text}");
    // Routes by pattern, and nobody's ids or names.
    assert!(!text.contains(&tenant.to_string()) && !text.contains(&site.id.to_string()), "{text}");
    assert!(!text.contains(&org.id.to_string()) && !text.contains("Acme") && !text.contains("Contoso"));
    let finding_path = format!("/v1/findings/{}", findings[0]["id"].as_str().unwrap());
    assert_eq!(app.get(&org.token, &finding_path).await.status(), StatusCode::OK);
    let text = scrape(&app).await;
    assert!(text.contains("route=\"/v1/findings/{id}\""), "{text}");
    app.shutdown().await;
}

/// The worker's `/metrics`, from a `wbd-worker` process on a SQLite file of its own.
async fn scrape_worker(dir: &std::path::Path) -> (String, tokio::process::Child) {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let child = tokio::process::Command::new(workspace_bin("wbd-worker"))
        .env_remove("AMQP_URL")
        .env_remove("WBD_CONFIG")
        .env("DATABASE_URL", format!("sqlite://{}", dir.join("wbd.db").display()))
        .env("WBD_WORKER__LISTEN", format!("127.0.0.1:{port}"))
        .env("RUST_LOG", "error")
        .stdout(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("wbd-worker starts");
    let client = reqwest::Client::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(res) = client.get(format!("http://127.0.0.1:{port}/metrics")).send().await
            && res.status() == StatusCode::OK
        {
            return (res.text().await.unwrap(), child);
        }
        assert!(std::time::Instant::now() < deadline, "the worker never served /metrics");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Both scrapes read by the Prometheus project's own Python parser (`prometheus_client`): every
/// family parses, with the types and samples we mean.
#[tokio::test]
#[ignore = "needs python3 with prometheus_client: set WBD_TEST_PROMETHEUS_PYTHON and run with -- --include-ignored"]
async fn prometheus_client_reads_the_api_and_the_worker_scrapes() {
    let python = std::env::var("WBD_TEST_PROMETHEUS_PYTHON")
        .ok()
        .filter(|p| !p.trim().is_empty())
        .expect("WBD_TEST_PROMETHEUS_PYTHON is not set: a python3 with prometheus_client (see .ci/run)");
    let app = spawn_app().await;
    let org = app.bootstrap_org("Acme MSP").await;
    let (_, site) = app.tenant_with_collector(&org).await;
    assert_eq!(
        site.push(&app, &batch(vec![healthy_endpoint(HOST, 443)])).await.status(),
        StatusCode::ACCEPTED
    );
    let api = scrape(&app).await;
    let dir = tempfile::tempdir().unwrap();
    let (worker, mut child) = scrape_worker(dir.path()).await;
    child.kill().await.expect("the worker stops");

    // Prints `name type` per family and `sample value` per sample.
    const PARSE: &str = "import sys\nfrom prometheus_client.parser import text_string_to_metric_families as parse\n\
for f in parse(sys.stdin.read()):\n    print('family', f.name, f.type)\n    for s in f.samples:\n        print('sample', s.name, s.value)\n";
    let parsed = |text: &str| {
        let mut child = Command::new(&python)
            .args(["-c", PARSE])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("{python} does not run: {e}"));
        child.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "prometheus_client refused:\n{}\n{text}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    let api = parsed(&api);
    for family in [
        "family wbd_http_requests counter",
        "family wbd_http_request_duration_seconds histogram",
        "family wbd_ingest_batches counter",
        "family wbd_outbox_messages gauge",
        "family wbd_build_info gauge",
    ] {
        assert!(api.contains(family), "{family} missing from the API's scrape:\n{api}");
    }
    let worker = parsed(&worker);
    for family in [
        "family wbd_consumers_active gauge",
        "family wbd_db_pool_connections gauge",
        "family wbd_queue_ready gauge",
    ] {
        assert!(worker.contains(family), "{family} missing from the worker's scrape:\n{worker}");
    }
    let queue_ready = worker.lines().find_map(|l| l.strip_prefix("sample wbd_queue_ready "));
    assert_eq!(queue_ready.and_then(|v| v.parse::<f64>().ok()), Some(1.0), "{worker}");
    app.shutdown().await;
}

/// What an OTLP/HTTP receiver got: each request's path and body.
type Received = std::sync::Arc<std::sync::Mutex<Vec<(String, Vec<u8>)>>>;

/// A minimal OTLP/HTTP receiver (an OpenTelemetry Collector's part we need): takes every POST,
/// keeps its path and body, answers 200.
async fn otlp_receiver() -> (u16, Received) {
    use tokio::io::{AsyncBufReadExt as _, AsyncReadExt as _, AsyncWriteExt as _, BufReader};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let received: Received = Default::default();
    let store = received.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let store = store.clone();
            tokio::spawn(async move {
                let mut stream = BufReader::new(stream);
                loop {
                    let mut request_line = String::new();
                    if stream.read_line(&mut request_line).await.unwrap_or(0) == 0 {
                        return;
                    }
                    let path = request_line.split_whitespace().nth(1).unwrap_or_default().to_owned();
                    let mut length = 0;
                    loop {
                        let mut header = String::new();
                        if stream.read_line(&mut header).await.unwrap_or(0) == 0 {
                            return;
                        }
                        if header.trim().is_empty() {
                            break;
                        }
                        if let Some((name, value)) = header.split_once(':')
                            && name.eq_ignore_ascii_case("content-length")
                        {
                            length = value.trim().parse().unwrap_or(0);
                        }
                    }
                    let mut body = vec![0; length];
                    if stream.read_exact(&mut body).await.is_err() {
                        return;
                    }
                    store.lock().unwrap().push((path, body));
                    let answer = b"HTTP/1.1 200 OK\r\ncontent-type: application/x-protobuf\r\ncontent-length: 0\r\n\r\n";
                    if stream.get_mut().write_all(answer).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    (port, received)
}

/// With an OTLP endpoint configured, `wbd-api` pushes its metrics there too (as it does its
/// spans), while still serving `/metrics`.
#[tokio::test]
async fn with_an_otlp_endpoint_the_metrics_are_pushed_there_too() {
    let (otlp_port, received) = otlp_receiver().await;
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let mut server = tokio::process::Command::new(workspace_bin("wbd-api"))
        .env_remove("AMQP_URL")
        .env_remove("WBD_CONFIG")
        .env("DATABASE_URL", format!("sqlite://{}", dir.path().join("wbd.db").display()))
        .env("WBD_SERVER__LISTEN", format!("127.0.0.1:{port}"))
        .env("OTEL_EXPORTER_OTLP_ENDPOINT", format!("http://127.0.0.1:{otlp_port}"))
        .env("OTEL_METRIC_EXPORT_INTERVAL", "300")
        .env("RUST_LOG", "error")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("wbd-api starts");
    let client = reqwest::Client::new();
    let base = format!("http://127.0.0.1:{port}");
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while client.get(format!("{base}/healthz")).send().await.map(|r| r.status()).ok() != Some(StatusCode::OK)
    {
        assert!(std::time::Instant::now() < deadline, "wbd-api never answered");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let res = client.get(format!("{base}/v1/tenants")).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    let scraped = client.get(format!("{base}/metrics")).send().await.unwrap().text().await.unwrap();
    assert!(scraped.contains("wbd_http_requests_total"), "/metrics is still served");

    let pushed = |name: &str| {
        received.lock().unwrap().iter().any(|(path, body)| {
            path == "/v1/metrics" && body.windows(name.len()).any(|w| w == name.as_bytes())
        })
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while !(pushed("wbd_http_requests_total") && pushed("/v1/tenants")) {
        assert!(std::time::Instant::now() < deadline, "no OTLP metrics push named the request");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    server.kill().await.expect("wbd-api stops");
}
