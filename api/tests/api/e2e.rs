//! End to end on the embedded default: the real `wbd-collector` binary enrolls against the
//! server (over HTTPS with a test CA), probes real TLS endpoints on loopback, pushes, and the
//! findings appear over REST; fix the endpoints and they resolve.

use std::path::Path;
use std::process::Output;

use reqwest::StatusCode;
use serde_json::Value;
use tokio::process::Command;

use crate::helpers::*;
use crate::tls::{RefusingPort, TestCa, TlsServer};

pub async fn run_collector(args: &[&str]) -> Output {
    let out = Command::new(workspace_bin("wbd-collector"))
        .args(args)
        .env("RUST_LOG", "info")
        .kill_on_drop(true)
        .output()
        .await
        .expect("wbd-collector runs");
    if std::env::var_os("TEST_LOG").is_some() {
        eprintln!("wbd-collector {args:?}:\n{}", String::from_utf8_lossy(&out.stderr));
    }
    out
}

pub fn assert_success(out: &Output, what: &str) {
    assert!(
        out.status.success(),
        "{what} failed ({}):\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Writes the collector's configuration: three loopback endpoints and the CA it trusts.
pub fn write_collector_config(
    dir: &Path,
    server_ca: Option<&Path>,
    trusted_ca: &Path,
    ports: [u16; 3],
) -> String {
    let server_ca =
        server_ca.map(|p| format!("server_ca_file = {:?}\n", p.display().to_string())).unwrap_or_default();
    let config = format!(
        r#"state_dir = {state:?}
{server_ca}extra_trusted_ca_files = [{ca:?}]
connect_timeout_secs = 5
retry_base_ms = 50
retry_cap_secs = 2

# These tests are about the endpoint probe; the loopback test servers do not keep idle sessions.
[probes.idle_connection]
enabled = false

[[endpoints]]
host = "127.0.0.1"
port = {good}
role = "password_reset"
server_name = "localhost"

[[endpoints]]
host = "127.0.0.1"
port = {closed}
role = "service_bus_relay"
server_name = "localhost"

[[endpoints]]
host = "127.0.0.1"
port = {inspected}
role = "other"
server_name = "localhost"
"#,
        state = dir.join("state").display().to_string(),
        ca = trusted_ca.display().to_string(),
        good = ports[0],
        closed = ports[1],
        inspected = ports[2],
    );
    let path = dir.join("collector.toml");
    std::fs::write(&path, config).unwrap();
    path.display().to_string()
}

pub fn on_port(findings: &[Value], rule: &str, port: u16) -> Option<Value> {
    findings
        .iter()
        .find(|f| {
            f["rule_id"] == rule
                && f["subject"].as_str().is_some_and(|s| s.contains(&format!("127.0.0.1:{port}")))
        })
        .cloned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn collector_to_findings_and_back_on_the_embedded_default() {
    let dir = tempfile::tempdir().unwrap();
    // The API serves HTTPS with a certificate from its own CA, which the collector is told to trust.
    let server_ca = TestCa::new("WBD Test Server CA");
    let (cert, key) = server_ca.write_leaf(dir.path(), "server");
    let server_ca_file = server_ca.write_pem(dir.path(), "server-ca.pem");
    let app = spawn_app_with(|s| {
        s.server.tls_cert_file = cert.display().to_string();
        s.server.tls_key_file = key.display().to_string();
    })
    .await;
    let app = app.with_client(https_client(&server_ca));
    let org = app.bootstrap_org("Northwind MSP").await;
    let tenant = app.create_tenant(&org, "Contoso").await;
    let (collector_id, enrollment_token) = app.create_collector(&org, tenant, 60).await;

    // Endpoints: one healthy, one closed port, one re-signed by a CA the collector does not trust.
    let public_ca = TestCa::new("WBD Test Public Root");
    let proxy_ca = TestCa::new("Contoso TLS Inspection CA");
    let trusted_ca_file = public_ca.write_pem(dir.path(), "public-root.pem");
    let good = TlsServer::start(&public_ca, 0).await;
    let refusing = RefusingPort::new();
    let closed = refusing.port;
    let inspected = TlsServer::start(&proxy_ca, 0).await;
    let inspected_port = inspected.port;
    let config = write_collector_config(
        dir.path(),
        Some(&server_ca_file),
        &trusted_ca_file,
        [good.port, closed, inspected_port],
    );

    let state = dir.path().join("state").display().to_string();
    let out = run_collector(&[
        "enroll",
        "--server",
        &app.base,
        "--token",
        &enrollment_token,
        "--state-dir",
        &state,
        "--server-ca",
        &server_ca_file.display().to_string(),
    ])
    .await;
    assert_success(&out, "enroll");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let key = dir.path().join("state").join("private_key.pk8");
        let mode = std::fs::metadata(&key).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "the private key must be readable by its owner only");
    }

    assert_success(&run_collector(&["run", "--config", &config, "--once"]).await, "first run");
    let query = format!("tenant_id={tenant}&status=open");
    let findings = app
        .wait_for_findings(&org.token, &query, |f| {
            on_port(f, "endpoint-reachable", closed).is_some()
                && on_port(f, "endpoint-tls-trusted", inspected_port).is_some()
        })
        .await;
    let unreachable = on_port(&findings, "endpoint-reachable", closed).unwrap();
    assert_eq!(unreachable["severity"], "critical");
    assert_eq!(unreachable["evidence"]["failed_step"], "tcp", "{unreachable:#}");
    let inspected_finding = on_port(&findings, "endpoint-tls-trusted", inspected_port).unwrap();
    assert!(inspected_finding.to_string().contains("Contoso TLS Inspection CA"), "{inspected_finding:#}");
    assert!(on_port(&findings, "endpoint-reachable", good.port).is_none());
    assert!(on_port(&findings, "endpoint-tls-trusted", good.port).is_none());
    assert_eq!(findings.len(), 2, "exactly the two expected findings: {findings:#?}");

    // One finding, with its evidence and history.
    let detail: Value = app
        .get(&org.token, &format!("/v1/findings/{}", unreachable["id"].as_str().unwrap()))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(detail["events"][0]["kind"], "opened");

    // The tenant overview and the collector reflect it.
    let t: Value = app.get(&org.token, &format!("/v1/tenants/{tenant}")).await.json().await.unwrap();
    assert_eq!(t["health"]["status"], "critical");
    // The relay is critical; the third ("other") endpoint is rated high.
    assert_eq!(t["health"]["open_findings"]["critical"], 1, "{t:#}");
    assert_eq!(t["health"]["open_findings"]["high"], 1, "{t:#}");
    let c: Value = app.get(&org.token, &format!("/v1/collectors/{collector_id}")).await.json().await.unwrap();
    assert_eq!(c["status"], "active");
    assert!(c["last_seen_at"].is_string());
    assert!(c["version"].is_string());

    // Fix both: the closed port now serves TLS, and the inspecting proxy is gone.
    drop(refusing);
    let _fixed = TlsServer::start(&public_ca, closed).await;
    drop(inspected);
    let _clean = TlsServer::start(&public_ca, inspected_port).await;
    assert_success(&run_collector(&["run", "--config", &config, "--once"]).await, "second run");
    let all = app
        .wait_for_findings(&org.token, &format!("tenant_id={tenant}"), |f| {
            f.len() == 2 && f.iter().all(|x| x["status"] == "resolved")
        })
        .await;
    for f in &all {
        assert!(f["resolved_at"].is_string());
    }
    let t: Value = app.get(&org.token, &format!("/v1/tenants/{tenant}")).await.json().await.unwrap();
    assert_eq!(t["health"]["status"], "healthy");
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_collector_that_stops_pushing_becomes_a_finding_and_recovers() {
    let app = spawn_app().await;
    let org = app.bootstrap_org("MSP").await;
    let tenant = app.create_tenant(&org, "Contoso").await;
    let (_, token) = app.create_collector(&org, tenant, 1).await;
    let collector = TestCollector::enroll(&app, &token).await;
    let mut b = batch(vec![healthy_endpoint("passwordreset.microsoftonline.com", 443)]);
    b.collector.push_interval_secs = 1;
    assert_eq!(collector.push(&app, &b).await.status(), StatusCode::ACCEPTED);

    // Silent after 3 missed one-second intervals; the sweep runs every second.
    let silent = app
        .wait_for_findings(
            &org.token,
            &format!("tenant_id={tenant}&rule_id=collector-silent&status=open"),
            |f| f.len() == 1,
        )
        .await;
    assert_eq!(silent[0]["severity"], "high");
    let t: Value = app.get(&org.token, &format!("/v1/tenants/{tenant}")).await.json().await.unwrap();
    assert_eq!(t["health"]["silent_collectors"], 1);

    let mut b = batch(vec![healthy_endpoint("passwordreset.microsoftonline.com", 443)]);
    b.collector.push_interval_secs = 60;
    assert_eq!(collector.push(&app, &b).await.status(), StatusCode::ACCEPTED);
    app.wait_for_findings(
        &org.token,
        &format!("tenant_id={tenant}&rule_id=collector-silent&status=resolved"),
        |f| f.len() == 1,
    )
    .await;
    app.shutdown().await;
}

fn https_client(ca: &TestCa) -> reqwest::Client {
    let cert = reqwest::Certificate::from_pem(ca.pem().as_bytes()).unwrap();
    reqwest::Client::builder()
        .tls_certs_only([cert])
        .timeout(std::time::Duration::from_secs(30))
        .build()
        .unwrap()
}
