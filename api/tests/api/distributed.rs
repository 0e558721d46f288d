//! The distributed deployment: PostgreSQL + RabbitMQ, `wbd-api` and `wbd-worker` as separate
//! processes. These tests show as ignored unless the run asks for them (`-- --include-ignored`);
//! asked for, they fail unless `WBD_TEST_DATABASE_URL` and `WBD_TEST_AMQP_URL` are both set and
//! both services answer. The broker-restart test also needs `WBD_TEST_RABBITMQ_RESTART=1` (it
//! stops and starts this machine's RabbitMQ).

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::Value;
use sqlx::Connection as _;
use tokio::process::{Child, Command};
use tokio::sync::Mutex;

use crate::e2e::{assert_success, on_port, run_collector, write_collector_config};
use crate::helpers::*;
use crate::tls::{RefusingPort, TestCa, TlsServer};

/// Distributed tests share the one broker and are heavy: one at a time.
static SERIAL: Mutex<()> = Mutex::const_new(());

struct Cluster {
    db_url: String,
    admin_url: String,
    db_name: String,
    amqp_url: String,
    prefix: String,
    dir: tempfile::TempDir,
    client: reqwest::Client,
    /// The key every process seals and opens integration secrets with.
    secrets_key: String,
}

impl Cluster {
    /// A fresh database and queue prefix. Fails the test when either service is not named: a
    /// run that asked for the distributed tests must not pass having run nothing.
    async fn new() -> Cluster {
        let required = |name: &str| match std::env::var(name) {
            Ok(value) if !value.trim().is_empty() => value.trim().to_owned(),
            _ => panic!("{name} is not set: the distributed tests need PostgreSQL and RabbitMQ"),
        };
        let (admin_url, amqp_url) = (required("WBD_TEST_DATABASE_URL"), required("WBD_TEST_AMQP_URL"));
        wbd_platform::telemetry::init_for_tests();
        let db_name = format!("wbd_test_{}", uuid::Uuid::new_v4().simple());
        let mut admin = sqlx::PgConnection::connect(&admin_url)
            .await
            .unwrap_or_else(|e| panic!("WBD_TEST_DATABASE_URL is set but PostgreSQL is unreachable: {e}"));
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {db_name}")))
            .execute(&mut admin)
            .await
            .unwrap();
        let db_url = match admin_url.rsplit_once('/') {
            Some((base, _)) => format!("{base}/{db_name}"),
            None => panic!("WBD_TEST_DATABASE_URL must name a database"),
        };
        Cluster {
            db_url,
            admin_url,
            db_name,
            amqp_url,
            prefix: format!("wbdtest.{}", uuid::Uuid::new_v4().simple()),
            dir: tempfile::tempdir().unwrap(),
            client: reqwest::Client::builder().timeout(Duration::from_secs(30)).build().unwrap(),
            secrets_key: wbd_notify::sealing::Sealer::generate_key(),
        }
    }

    fn command(&self, bin: PathBuf, log: &str) -> Command {
        let mut cmd = Command::new(bin);
        cmd.env("DATABASE_URL", &self.db_url)
            .env("AMQP_URL", &self.amqp_url)
            .env("WBD_QUEUE__PREFIX", &self.prefix)
            .env("WBD_COLLECTORS__MIN_SILENCE_SECS", "1")
            .env("WBD_WORKER__SILENCE_SWEEP_SECS", "1")
            // Open and resolve on the first evaluation, whatever the rule pack's flap damping.
            .env("WBD_RULES__OPEN_AFTER", "1")
            .env("WBD_RULES__RESOLVE_AFTER", "1")
            .env("WBD_SERVER__WORKERS", "1")
            // Deliveries reach the local receivers, quickly retried.
            .env("WBD_DELIVERY__SECRETS_KEY", &self.secrets_key)
            .env("WBD_DELIVERY__HTTPS_ONLY", "false")
            .env("WBD_DELIVERY__ALLOW_NETWORKS", r#"["127.0.0.1/32"]"#)
            .env("WBD_DELIVERY__ATTEMPT_TIMEOUT_SECS", "2")
            .env("WBD_DELIVERY__RETRY_SCHEDULE_SECS", "[0.3, 0.3, 0.5, 0.5, 1, 1, 1, 1, 1]")
            .env("WBD_DELIVERY__POLL_INTERVAL_MS", "100")
            .env("RUST_LOG", "info")
            .env("WBD_TELEMETRY__LOG_FORMAT", "json")
            .env_remove("WBD_CONFIG")
            .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(self.dir.path().join(log)).unwrap())
            .kill_on_drop(true);
        cmd
    }

    /// Starts a `wbd-api` process on a port of its choosing and waits until it is ready.
    async fn api(&self, name: &str) -> (Child, String) {
        let mut cmd = self.command(PathBuf::from(env!("CARGO_BIN_EXE_wbd-api")), &format!("{name}.log"));
        cmd.env("WBD_SERVER__LISTEN", "127.0.0.1:0");
        let mut child = cmd.spawn().expect("wbd-api starts");
        let port = self.listening_port(&mut child, name).await;
        let base = format!("http://127.0.0.1:{port}");
        self.wait_ready(&base, name).await;
        (child, base)
    }

    /// The port `wbd-api` reports in its (JSON) "listening" log line.
    async fn listening_port(&self, child: &mut Child, name: &str) -> u16 {
        for _ in 0..150 {
            for line in self.log(name).lines() {
                let Ok(entry) = serde_json::from_str::<Value>(line) else { continue };
                if entry["fields"]["message"] == "wbd-api listening" {
                    return entry["fields"]["port"]
                        .as_u64()
                        .and_then(|p| u16::try_from(p).ok())
                        .expect("port");
                }
            }
            if let Some(status) = child.try_wait().unwrap() {
                panic!("{name} exited at start ({status}):\n{}", self.log(name));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("{name} never said where it listens:\n{}", self.log(name));
    }

    async fn worker(&self, name: &str) -> Child {
        let mut child = self
            .command(workspace_bin("wbd-worker"), &format!("{name}.log"))
            .spawn()
            .expect("wbd-worker starts");
        // A worker that cannot start (bad settings, stale binary) says so here, not as a timeout later.
        tokio::time::sleep(Duration::from_millis(500)).await;
        if let Some(status) = child.try_wait().unwrap() {
            panic!("{name} exited at start ({status}):\n{}", self.log(name));
        }
        child
    }

    async fn wait_ready(&self, base: &str, name: &str) {
        for _ in 0..150 {
            if let Ok(res) = self.client.get(format!("{base}/readyz")).send().await
                && res.status() == StatusCode::OK
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        panic!("{name} never became ready:\n{}", self.log(name));
    }

    fn log(&self, name: &str) -> String {
        std::fs::read_to_string(self.dir.path().join(format!("{name}.log"))).unwrap_or_default()
    }

    /// `wbd-api bootstrap` as an operator runs it; returns the org and an access token.
    async fn bootstrap(&self, base: &str) -> (String, String) {
        let out = self
            .command(PathBuf::from(env!("CARGO_BIN_EXE_wbd-api")), "bootstrap.log")
            .args(["bootstrap", "--org-name", "Northwind MSP"])
            .stdout(Stdio::piped())
            .output()
            .await
            .unwrap();
        assert!(out.status.success(), "bootstrap failed: {}", self.log("bootstrap"));
        let stdout = String::from_utf8(out.stdout).unwrap();
        let key =
            stdout.lines().find(|l| l.starts_with("wbdk_")).expect("bootstrap prints the key").to_owned();
        let res = self
            .client
            .post(format!("{base}/v1/auth/token"))
            .json(&serde_json::json!({ "api_key": key }))
            .send()
            .await
            .unwrap();
        let token = res.json::<Value>().await.unwrap()["access_token"].as_str().unwrap().to_owned();
        (key, token)
    }

    async fn post(&self, base: &str, token: &str, path: &str, body: Value) -> Value {
        let res =
            self.client.post(format!("{base}{path}")).bearer_auth(token).json(&body).send().await.unwrap();
        assert!(res.status().is_success(), "POST {path}: {}", res.status());
        res.json().await.unwrap()
    }

    async fn tenant_with_collector(&self, base: &str, token: &str, name: &str) -> (String, TestCollector) {
        let tenant = self.post(base, token, "/v1/tenants", serde_json::json!({ "name": name })).await;
        let tenant = tenant["id"].as_str().unwrap().to_owned();
        let created = self
            .post(
                base,
                token,
                &format!("/v1/tenants/{tenant}/collectors"),
                serde_json::json!({ "name": "c" }),
            )
            .await;
        let collector =
            TestCollector::enroll_at(&self.client, base, created["enrollment_token"].as_str().unwrap()).await;
        (tenant, collector)
    }

    async fn store(&self) -> std::sync::Arc<dyn wbd_store::Store> {
        wbd_store::connect(&self.db_url, 2).await.unwrap()
    }

    async fn teardown(self) {
        if let Ok(mut admin) = sqlx::PgConnection::connect(&self.admin_url).await {
            let _ = sqlx::query(sqlx::AssertSqlSafe(format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                self.db_name
            )))
            .execute(&mut admin)
            .await;
        }
        if let Ok(conn) =
            lapin::Connection::connect(&self.amqp_url, lapin::ConnectionProperties::default()).await
            && let Ok(ch) = conn.create_channel().await
        {
            for q in [format!("{}.evaluate", self.prefix), format!("{}.evaluate.dead", self.prefix)] {
                let _ =
                    ch.queue_delete(q.as_str().into(), lapin::options::QueueDeleteOptions::default()).await;
            }
            let _ = ch
                .exchange_delete(
                    format!("{}.dead", self.prefix).as_str().into(),
                    lapin::options::ExchangeDeleteOptions::default(),
                )
                .await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs PostgreSQL and RabbitMQ: set WBD_TEST_DATABASE_URL and WBD_TEST_AMQP_URL, run with -- --include-ignored"]
async fn separate_api_and_worker_processes_on_postgres_and_rabbitmq() {
    let cluster = Cluster::new().await;
    let _serial = SERIAL.lock().await;
    // Two API processes and two workers share the database and the queue.
    let (_api1, base1) = cluster.api("api1").await;
    let (_api2, base2) = cluster.api("api2").await;
    let _w1 = cluster.worker("worker1").await;
    let _w2 = cluster.worker("worker2").await;
    let (_, token) = cluster.bootstrap(&base1).await;
    let tenant = cluster.post(&base1, &token, "/v1/tenants", serde_json::json!({ "name": "Contoso" })).await;
    let tenant = tenant["id"].as_str().unwrap().to_owned();
    let created = cluster
        .post(
            &base2,
            &token,
            &format!("/v1/tenants/{tenant}/collectors"),
            serde_json::json!({ "name": "AADC01" }),
        )
        .await;

    let public_ca = TestCa::new("WBD Test Public Root");
    let proxy_ca = TestCa::new("Contoso TLS Inspection CA");
    let ca_file = public_ca.write_pem(cluster.dir.path(), "public-root.pem");
    let good = TlsServer::start(&public_ca, 0).await;
    let refusing = RefusingPort::new();
    let closed = refusing.port;
    let inspected = TlsServer::start(&proxy_ca, 0).await;
    let inspected_port = inspected.port;
    let config =
        write_collector_config(cluster.dir.path(), None, &ca_file, [good.port, closed, inspected_port]);
    let state = cluster.dir.path().join("state").display().to_string();
    let out = run_collector(&[
        "enroll",
        "--server",
        &base1,
        "--token",
        created["enrollment_token"].as_str().unwrap(),
        "--state-dir",
        &state,
    ])
    .await;
    assert_success(&out, "enroll");
    assert_success(&run_collector(&["run", "--config", &config, "--once"]).await, "first run");

    let query = format!("tenant_id={tenant}&status=open");
    let findings = wait_for_findings_at(&cluster.client, &base2, &token, &query, |f| {
        on_port(f, "endpoint-reachable", closed).is_some()
            && on_port(f, "endpoint-tls-trusted", inspected_port).is_some()
    })
    .await;
    assert_eq!(findings.len(), 2, "{findings:#?}");

    drop(refusing);
    let _fixed = TlsServer::start(&public_ca, closed).await;
    drop(inspected);
    let _clean = TlsServer::start(&public_ca, inspected_port).await;
    assert_success(&run_collector(&["run", "--config", &config, "--once"]).await, "second run");
    wait_for_findings_at(&cluster.client, &base1, &token, &format!("tenant_id={tenant}"), |f| {
        f.len() == 2 && f.iter().all(|x| x["status"] == "resolved")
    })
    .await;

    // A push token accepted by one API process is a replay at the other.
    let (_, c) = cluster.tenant_with_collector(&base1, &token, "Fabrikam").await;
    let b = batch(vec![healthy_endpoint("passwordreset.microsoftonline.com", 443)]);
    let once = c.token(&b);
    assert_eq!(push_at(&cluster.client, &base1, &once, &b).await.status(), StatusCode::ACCEPTED);
    problem(push_at(&cluster.client, &base2, &once, &b).await, StatusCode::UNAUTHORIZED, "token_replayed")
        .await;
    cluster.teardown().await;
}

/// Pushes one batch per tenant making `per_tenant` findings; returns how many findings.
async fn push_failures(
    cluster: &Cluster,
    base: &str,
    collectors: &[(String, TestCollector)],
    round: usize,
    per_tenant: usize,
) -> usize {
    for (_, c) in collectors {
        let results = (0..per_tenant)
            .map(|i| refused_endpoint(&format!("r{round}-{i}.servicebus.windows.net"), 443))
            .collect();
        let b = batch(results);
        let res = push_at(&cluster.client, base, &c.token(&b), &b).await;
        assert_eq!(res.status(), StatusCode::ACCEPTED);
    }
    collectors.len() * per_tenant
}

/// Every open finding of the org has exactly one `opened` event: nothing was duplicated.
async fn assert_each_finding_opened_once(cluster: &Cluster, base: &str, token: &str, findings: &[Value]) {
    let mut ids: Vec<&str> = findings.iter().map(|f| f["id"].as_str().unwrap()).collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), findings.len());
    for id in ids {
        let detail: Value = cluster
            .client
            .get(format!("{base}/v1/findings/{id}"))
            .bearer_auth(token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let opened = detail["events"].as_array().unwrap().iter().filter(|e| e["kind"] == "opened").count();
        assert_eq!(opened, 1, "finding {id} was opened {opened} times: {detail:#}");
    }
}

async fn all_findings(cluster: &Cluster, base: &str, token: &str, expected: usize) -> Vec<Value> {
    // Page through everything (several tenants).
    let mut all = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(90);
    loop {
        all.clear();
        let mut cursor = String::new();
        loop {
            let url = format!("{base}/v1/findings?limit=200{cursor}");
            let page: Value =
                cluster.client.get(url).bearer_auth(token).send().await.unwrap().json().await.unwrap();
            all.extend(page["items"].as_array().unwrap().iter().cloned());
            match page["next_cursor"].as_str() {
                Some(c) => cursor = format!("&cursor={c}"),
                None => break,
            }
        }
        if all.len() >= expected {
            return all;
        }
        assert!(tokio::time::Instant::now() < deadline, "only {} of {expected} findings arrived", all.len());
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs PostgreSQL and RabbitMQ: set WBD_TEST_DATABASE_URL and WBD_TEST_AMQP_URL, run with -- --include-ignored"]
async fn killing_the_worker_loses_nothing_and_duplicates_nothing() {
    let cluster = Cluster::new().await;
    let _serial = SERIAL.lock().await;
    let (_api, base) = cluster.api("api").await;
    let (_, token) = cluster.bootstrap(&base).await;
    let mut collectors = Vec::new();
    for i in 0..4 {
        collectors.push(cluster.tenant_with_collector(&base, &token, &format!("Tenant {i}")).await);
    }

    // Ingested while no worker runs: accepted, relayed to RabbitMQ, not evaluated.
    let mut expected = push_failures(&cluster, &base, &collectors, 0, 3).await;
    let store = cluster.store().await;
    for _ in 0..100 {
        if store.count_outbox().await.unwrap() == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(store.count_outbox().await.unwrap(), 0, "the relay did not hand the batches to RabbitMQ");
    assert!(
        wait_briefly_for_no_findings(&cluster, &base, &token).await,
        "findings appeared with no worker running"
    );

    // A worker starts, is killed hard in the middle of the work, and another takes over.
    let mut worker = cluster.worker("worker1").await;
    expected += push_failures(&cluster, &base, &collectors, 1, 3).await;
    all_findings(&cluster, &base, &token, 1).await;
    worker.start_kill().unwrap();
    worker.wait().await.unwrap();
    expected += push_failures(&cluster, &base, &collectors, 2, 3).await;
    let _worker2 = cluster.worker("worker2").await;

    let findings = all_findings(&cluster, &base, &token, expected).await;
    assert_eq!(findings.len(), expected, "lost or duplicated findings");
    assert_each_finding_opened_once(&cluster, &base, &token, &findings).await;
    assert_eq!(store.count_dead_letters().await.unwrap(), 0);
    cluster.teardown().await;
}

async fn wait_briefly_for_no_findings(cluster: &Cluster, base: &str, token: &str) -> bool {
    tokio::time::sleep(Duration::from_secs(1)).await;
    let page: Value = cluster
        .client
        .get(format!("{base}/v1/findings"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    page["items"].as_array().unwrap().is_empty()
}

async fn rabbitmqctl(arg: &str) {
    let out = Command::new("rabbitmqctl").arg(arg).output().await.expect("rabbitmqctl runs");
    assert!(out.status.success(), "rabbitmqctl {arg}: {}", String::from_utf8_lossy(&out.stderr));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "stops this machine's RabbitMQ: needs WBD_TEST_RABBITMQ_RESTART=1 and both URLs, run with -- --include-ignored"]
async fn restarting_rabbitmq_mid_run_loses_nothing_and_duplicates_nothing() {
    assert_eq!(
        std::env::var("WBD_TEST_RABBITMQ_RESTART").as_deref(),
        Ok("1"),
        "WBD_TEST_RABBITMQ_RESTART is not 1: this test restarts the machine's RabbitMQ and runs only when allowed to"
    );
    let cluster = Cluster::new().await;
    let _serial = SERIAL.lock().await;
    let (_api, base) = cluster.api("api").await;
    let _worker = cluster.worker("worker").await;
    let (_, token) = cluster.bootstrap(&base).await;
    let mut collectors = Vec::new();
    for i in 0..3 {
        collectors.push(cluster.tenant_with_collector(&base, &token, &format!("Tenant {i}")).await);
    }
    let mut expected = push_failures(&cluster, &base, &collectors, 0, 2).await;

    rabbitmqctl("stop_app").await;
    // Accepted while the broker is down: held in the outbox.
    let pushed = push_failures(&cluster, &base, &collectors, 1, 2).await;
    // The API stays ready (a load balancer keeps sending it what it can serve); its liveness
    // details and metrics say the queue is down.
    let ready = cluster.client.get(format!("{base}/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), StatusCode::OK, "readiness must not follow the broker");
    let health: Value =
        cluster.client.get(format!("{base}/healthz")).send().await.unwrap().json().await.unwrap();
    assert_eq!((health["database"].as_str(), health["queue"].as_str()), (Some("ok"), Some("unavailable")));
    let metrics = cluster.client.get(format!("{base}/metrics")).send().await.unwrap().text().await.unwrap();
    let queue_ready = metrics.lines().find_map(|l| l.strip_prefix("wbd_queue_ready "));
    assert_eq!(queue_ready.and_then(|v| v.parse::<f64>().ok()), Some(0.0), "{metrics}");
    rabbitmqctl("start_app").await;
    rabbitmqctl("await_startup").await;
    expected += pushed;
    expected += push_failures(&cluster, &base, &collectors, 2, 2).await;

    let findings = all_findings(&cluster, &base, &token, expected).await;
    assert_eq!(findings.len(), expected, "lost or duplicated findings");
    assert_each_finding_opened_once(&cluster, &base, &token, &findings).await;
    let store = cluster.store().await;
    assert_eq!(store.count_outbox().await.unwrap(), 0);
    cluster.teardown().await;
}

/// Tickets in the distributed deployment: two workers deliver to a (slow) ConnectWise; one is
/// killed hard in the middle. Afterwards every finding has exactly one ticket, and every
/// ticket closes when its finding resolves.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs PostgreSQL and RabbitMQ: set WBD_TEST_DATABASE_URL and WBD_TEST_AMQP_URL, run with -- --include-ignored"]
async fn a_worker_killed_mid_delivery_leaves_one_ticket_per_finding_closed_on_resolve() {
    use wbd_receivers::connectwise::ConnectwiseState;
    use wbd_receivers::{Faults, Receiver};

    let cluster = Cluster::new().await;
    let _serial = SERIAL.lock().await;
    let psa = Receiver::spawn(ConnectwiseState::new("northwind", "pub", "priv", "client-1")).await;
    psa.common().set_faults(Faults { delay: Some(Duration::from_millis(700)), ..Default::default() });
    let (_api, base) = cluster.api("api").await;
    let (_, token) = cluster.bootstrap(&base).await;
    let mut collectors = Vec::new();
    for i in 0..2 {
        collectors.push(cluster.tenant_with_collector(&base, &token, &format!("Tenant {i}")).await);
    }
    let store = cluster.store().await;
    let tenant: uuid::Uuid = collectors[0].0.parse().unwrap();
    let org = wbd_store::OrgScope { org_id: org_of(&cluster, tenant).await };
    let sealer = wbd_notify::sealing::Sealer::new(&cluster.secrets_key, &[]).unwrap();
    let sealed = wbd_delivery::secrets::SealedSecrets {
        credentials: serde_json::json!({"public_key": "pub", "private_key": "priv", "client_id": "client-1"}),
        ..Default::default()
    };
    let write = wbd_store::IntegrationWrite {
        name: "ConnectWise".into(),
        kind: "connectwise".into(),
        url: Some(psa.url()),
        config: serde_json::json!({"login_company": "northwind", "board_id": 7, "company_identifier": "Contoso"}),
        secrets: wbd_delivery::secrets::seal(&sealer, org.org_id, &sealed),
        filter: wbd_store::IntegrationFilter::default(),
        routing: wbd_store::Routing::PerTenant,
        max_in_flight: 2,
        hourly_budget: None,
        enabled: true,
    };
    let integration = store.create_integration(org, &write, "test", chrono::Utc::now()).await.unwrap();

    let mut worker = cluster.worker("worker1").await;
    let expected = push_failures(&cluster, &base, &collectors, 0, 3).await;
    // Killed once the first tickets exist: others are in flight (each request takes 0.7 s).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while psa.state.tickets().is_empty() {
        assert!(tokio::time::Instant::now() < deadline, "no ticket arrived:\n{}", cluster.log("worker1"));
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    worker.start_kill().unwrap();
    worker.wait().await.unwrap();
    let _worker2 = cluster.worker("worker2").await;

    let settled = |status: &'static str| {
        let store = store.clone();
        async move {
            let deliveries = store
                .list_deliveries(
                    org,
                    integration.id,
                    &wbd_store::DeliveryFilter { limit: 200, ..Default::default() },
                )
                .await
                .unwrap();
            (deliveries.len(), deliveries.iter().filter(|d| d.status.as_str() == status).count())
        }
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(90);
    loop {
        let (all, done) = settled("succeeded").await;
        if all == expected && done == expected {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{done} of {expected} deliveries succeeded ({all} made)"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let tickets = psa.state.tickets();
    let mut keys: Vec<_> = tickets.iter().map(|t| t.external_x_ref.clone().unwrap()).collect();
    keys.sort();
    keys.dedup();
    assert_eq!(tickets.len(), expected, "one ticket per finding, no duplicate after the kill");
    assert_eq!(keys.len(), expected);

    // Everything is fixed: every ticket closes.
    for (_, c) in &collectors {
        let results =
            (0..3).map(|i| healthy_endpoint(&format!("r0-{i}.servicebus.windows.net"), 443)).collect();
        assert_eq!(
            {
                let b = batch(results);
                push_at(&cluster.client, &base, &c.token(&b), &b).await.status()
            },
            StatusCode::ACCEPTED
        );
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(90);
    while !psa.state.tickets().iter().all(|t| t.status.closed) {
        assert!(tokio::time::Instant::now() < deadline, "tickets still open:\n{}", cluster.log("worker2"));
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(psa.state.tickets().len(), expected);
    cluster.teardown().await;
}

async fn org_of(cluster: &Cluster, tenant: uuid::Uuid) -> wbd_store::OrgId {
    let mut conn = sqlx::PgConnection::connect(&cluster.db_url).await.unwrap();
    let org: uuid::Uuid = sqlx::query_scalar("SELECT org_id FROM tenants WHERE id = $1")
        .bind(tenant)
        .fetch_one(&mut conn)
        .await
        .unwrap();
    wbd_store::OrgId(org)
}
