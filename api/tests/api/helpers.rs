//! Helpers that read like the user's actions: spawn the server, bootstrap an organisation,
//! create tenants and collectors, enroll, push.

use std::sync::Arc;
use std::time::Duration;

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{Ed25519KeyPair, KeyPair as _};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio::sync::oneshot;
use uuid::Uuid;
use wbd_platform::Settings;
use wbd_store::{OrgId, Store, TenantId, TenantScope};
use wbd_wire::{
    CollectorInfo, CollectorTokenClaims, EndpointReport, EndpointRole, IngestBatch, ProbeOutput, ProbeResult,
    ProbeStep, SCHEMA_VERSION, StepFailure, TlsReport,
};

pub struct TestApp {
    pub base: String,
    pub client: reqwest::Client,
    pub store: Arc<dyn Store>,
    _dir: tempfile::TempDir,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
}

/// Settings for a test server: port 0, a fresh SQLite file, quick silence detection, and no flap
/// damping (a finding opens on the first failing evaluation and resolves on the first passing
/// one) unless a test asks for it.
pub fn test_settings(dir: &std::path::Path) -> Settings {
    let mut s = Settings::defaults();
    s.server.listen = "127.0.0.1:0".into();
    s.server.workers = 2;
    s.database.url = format!("sqlite://{}", dir.join("wbd.db").display());
    s.worker.silence_sweep_secs = 1;
    s.worker.concurrency = 2;
    s.collectors.min_silence_secs = 1;
    s.rules.open_after = Some(1);
    s.rules.resolve_after = Some(1);
    s
}

/// The embedded product (SQLite + local queue + worker in process) on a random port.
pub async fn spawn_app() -> TestApp {
    spawn_app_with(|_| {}).await
}

pub async fn spawn_app_with(tweak: impl FnOnce(&mut Settings)) -> TestApp {
    wbd_platform::telemetry::init_for_tests();
    let dir = tempfile::tempdir().expect("temp dir");
    let mut settings = test_settings(dir.path());
    tweak(&mut settings);
    let tls = settings.tls_enabled();
    let app = wbd_api::Application::build(settings).await.expect("server builds");
    let port = app.port();
    let store = app.store();
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(app.run_until(async move {
        let _ = stopped.await;
    }));
    let scheme = if tls { "https" } else { "http" };
    TestApp {
        base: format!("{scheme}://127.0.0.1:{port}"),
        client: reqwest::Client::builder().timeout(Duration::from_secs(30)).build().expect("client"),
        store,
        _dir: dir,
        stop: Some(stop),
        task: Some(task),
    }
}

/// The product on a database with no key file beside it and no `delivery.secrets_key` (as on
/// PostgreSQL before the operator sets one): integration secrets cannot be sealed. The delivery
/// engine is off.
pub async fn spawn_app_without_secrets_key() -> TestApp {
    wbd_platform::telemetry::init_for_tests();
    let dir = tempfile::tempdir().expect("temp dir");
    let mut settings = test_settings(dir.path());
    settings.delivery.enabled = false;
    let (store, queue) = wbd_platform::open_backends(&settings).await.expect("backends");
    settings.database.url = "postgres://db.invalid/wbd".into();
    let app = wbd_api::Application::build_with(settings, store, queue).await.expect("server builds");
    let (port, store) = (app.port(), app.store());
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(app.run_until(async move {
        let _ = stopped.await;
    }));
    TestApp {
        base: format!("http://127.0.0.1:{port}"),
        client: reqwest::Client::builder().timeout(Duration::from_secs(30)).build().expect("client"),
        store,
        _dir: dir,
        stop: Some(stop),
        task: Some(task),
    }
}

impl TestApp {
    /// Stops the server and waits until it has shut down.
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            task.await.expect("server task").expect("server stopped cleanly");
        }
    }

    /// The same app, reached with another HTTP client (e.g. one that trusts a test CA).
    pub fn with_client(mut self, client: reqwest::Client) -> Self {
        self.client = client;
        self
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Bootstraps an organisation the way `wbd-api bootstrap` does, and logs in as its admin.
    pub async fn bootstrap_org(&self, name: &str) -> Org {
        let done = wbd_api::bootstrap::bootstrap(self.store.as_ref(), name).await.expect("bootstrap");
        let token = self.login(&done.secret).await;
        Org { id: done.organization.id.0, token }
    }

    pub async fn login(&self, api_key: &str) -> String {
        let res = self
            .client
            .post(self.url("/v1/auth/token"))
            .json(&json!({ "api_key": api_key }))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::OK, "login failed: {}", res.text().await.unwrap_or_default());
        let body: Value = res.json().await.unwrap();
        body["access_token"].as_str().expect("access_token").to_owned()
    }

    pub async fn get(&self, token: &str, path: &str) -> reqwest::Response {
        self.client.get(self.url(path)).bearer_auth(token).send().await.expect("GET")
    }

    pub async fn post(&self, token: &str, path: &str, body: &Value) -> reqwest::Response {
        self.client.post(self.url(path)).bearer_auth(token).json(body).send().await.expect("POST")
    }

    pub async fn put(&self, token: &str, path: &str, body: &Value) -> reqwest::Response {
        self.client.put(self.url(path)).bearer_auth(token).json(body).send().await.expect("PUT")
    }

    pub async fn patch(&self, token: &str, path: &str, body: &Value) -> reqwest::Response {
        self.client.patch(self.url(path)).bearer_auth(token).json(body).send().await.expect("PATCH")
    }

    pub async fn delete(&self, token: &str, path: &str) -> reqwest::Response {
        self.client.delete(self.url(path)).bearer_auth(token).send().await.expect("DELETE")
    }

    pub async fn create_tenant(&self, org: &Org, name: &str) -> Uuid {
        let res = self.post(&org.token, "/v1/tenants", &json!({ "name": name })).await;
        assert_eq!(res.status(), StatusCode::CREATED);
        let body: Value = res.json().await.unwrap();
        body["id"].as_str().unwrap().parse().unwrap()
    }

    /// Creates a collector; returns its id and one-time enrollment token.
    pub async fn create_collector(&self, org: &Org, tenant: Uuid, push_interval_secs: u32) -> (Uuid, String) {
        let res = self
            .post(
                &org.token,
                &format!("/v1/tenants/{tenant}/collectors"),
                &json!({ "name": "site collector", "push_interval_secs": push_interval_secs }),
            )
            .await;
        assert_eq!(res.status(), StatusCode::CREATED);
        let body: Value = res.json().await.unwrap();
        let id = body["collector"]["id"].as_str().unwrap().parse().unwrap();
        (id, body["enrollment_token"].as_str().unwrap().to_owned())
    }

    /// A tenant with an enrolled (in-test) collector.
    pub async fn tenant_with_collector(&self, org: &Org) -> (Uuid, TestCollector) {
        let tenant = self.create_tenant(org, "Contoso").await;
        let (_, token) = self.create_collector(org, tenant, 60).await;
        let collector = TestCollector::enroll(self, &token).await;
        (tenant, collector)
    }

    /// Another collector enrolled at `tenant` (a second site of the same customer).
    pub async fn add_collector(&self, org: &Org, tenant: Uuid) -> TestCollector {
        let (_, token) = self.create_collector(org, tenant, 60).await;
        TestCollector::enroll(self, &token).await
    }

    /// A new API key with `role` (`org_admin`, `technician`, `read_only`), logged in.
    pub async fn login_as(&self, org: &Org, role: &str) -> String {
        let res = self
            .post(&org.token, "/v1/api-keys", &json!({ "name": format!("{role} key"), "role": role }))
            .await;
        assert_eq!(res.status(), StatusCode::CREATED);
        let created: Value = res.json().await.unwrap();
        self.login(created["key"].as_str().expect("key")).await
    }

    /// `GET /v1/findings/{id}`: the finding with its events.
    pub async fn finding(&self, token: &str, id: &str) -> Value {
        let res = self.get(token, &format!("/v1/findings/{id}")).await;
        assert_eq!(res.status(), StatusCode::OK);
        res.json().await.unwrap()
    }

    /// `POST /v1/findings/{id}/{action}` (`acknowledge`, `suppress`, `unsuppress`, `retest`), with a
    /// JSON body or none.
    pub async fn act_on_finding(
        &self,
        token: &str,
        id: &str,
        action: &str,
        body: Option<Value>,
    ) -> reqwest::Response {
        let req = self.client.post(self.url(&format!("/v1/findings/{id}/{action}"))).bearer_auth(token);
        let req = match body {
            Some(body) => req.json(&body),
            None => req,
        };
        req.send().await.expect("POST")
    }

    /// Waits until the worker has evaluated everything pushed for `tenant` so far.
    pub async fn wait_for_evaluation(&self, org: &Org, tenant: Uuid) {
        let scope = TenantScope { org_id: OrgId(org.id), tenant_id: TenantId(tenant) };
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        loop {
            let snapshot = self.store.load_tenant_snapshot(scope, &[]).await.unwrap().expect("tenant exists");
            if snapshot.evaluated_facts_version >= snapshot.facts_version {
                return;
            }
            assert!(tokio::time::Instant::now() < deadline, "the tenant was never evaluated");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub async fn findings(&self, token: &str, query: &str) -> Vec<Value> {
        let res = self.get(token, &format!("/v1/findings?{query}")).await;
        assert_eq!(res.status(), StatusCode::OK);
        let body: Value = res.json().await.unwrap();
        body["items"].as_array().unwrap().clone()
    }

    /// Polls `GET /v1/findings?query` until `done` holds (the worker is asynchronous).
    pub async fn wait_for_findings(
        &self,
        token: &str,
        query: &str,
        done: impl Fn(&[Value]) -> bool,
    ) -> Vec<Value> {
        wait_for_findings_at(&self.client, &self.base, token, query, done).await
    }
}

pub async fn wait_for_findings_at(
    client: &reqwest::Client,
    base: &str,
    token: &str,
    query: &str,
    done: impl Fn(&[Value]) -> bool,
) -> Vec<Value> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let res = client
            .get(format!("{base}/v1/findings?{query}&limit=200"))
            .bearer_auth(token)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::OK);
        let body: Value = res.json().await.unwrap();
        let items = body["items"].as_array().unwrap().clone();
        if done(&items) {
            return items;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "findings never reached the expected state; last: {items:#?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

pub struct Org {
    pub id: Uuid,
    pub token: String,
}

/// A collector enrolled by the test itself, to craft pushes the real binary never sends.
pub struct TestCollector {
    pub id: Uuid,
    pub tenant_id: Uuid,
    pkcs8: Vec<u8>,
}

impl TestCollector {
    pub async fn enroll(app: &TestApp, enrollment_token: &str) -> TestCollector {
        Self::enroll_at(&app.client, &app.base, enrollment_token).await
    }

    pub async fn enroll_at(client: &reqwest::Client, base: &str, enrollment_token: &str) -> TestCollector {
        let pkcs8 = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new()).unwrap().as_ref().to_vec();
        let pair = Ed25519KeyPair::from_pkcs8(&pkcs8).unwrap();
        let res = client
            .post(format!("{base}/v1/collectors/enroll"))
            .json(&json!({
                "enrollment_token": enrollment_token,
                "public_key": URL_SAFE_NO_PAD.encode(pair.public_key().as_ref()),
                "hostname": "AADC01",
                "version": "test",
            }))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::CREATED, "{}", res.text().await.unwrap_or_default());
        let body: Value = res.json().await.unwrap();
        TestCollector {
            id: body["collector_id"].as_str().unwrap().parse().unwrap(),
            tenant_id: body["tenant_id"].as_str().unwrap().parse().unwrap(),
            pkcs8,
        }
    }

    /// The collector's private key (PKCS#8).
    pub fn key(&self) -> &[u8] {
        &self.pkcs8
    }

    /// A collector id nobody enrolled, signing with this collector's key.
    pub fn unknown(other: &TestCollector) -> TestCollector {
        TestCollector { id: Uuid::new_v4(), tenant_id: other.tenant_id, pkcs8: other.pkcs8.clone() }
    }

    /// A push token as the real collector makes it for `batch` (sent with `.json(batch)`,
    /// which serialises it as `serde_json::to_vec` does).
    pub fn token(&self, batch: &IngestBatch) -> String {
        self.token_for(&serde_json::to_vec(batch).unwrap())
    }

    /// A push token as the real collector makes it for the JSON body `json` (before any
    /// gzip).
    pub fn token_for(&self, json: &[u8]) -> String {
        let now = Utc::now().timestamp();
        self.sign(now, now + 120, &self.pkcs8, Some(wbd_wire::body_sha256(json)))
    }

    /// A token naming no body: the checks before the body is read refuse it anyway.
    pub fn token_with(&self, iat: i64, exp: i64, pkcs8: &[u8]) -> String {
        self.sign(iat, exp, pkcs8, None)
    }

    /// The exact claims of a push token, signed with `pkcs8`.
    pub fn sign(&self, iat: i64, exp: i64, pkcs8: &[u8], body_sha256: Option<String>) -> String {
        let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::EdDSA);
        header.kid = Some(self.id.to_string());
        let claims = CollectorTokenClaims {
            sub: self.id,
            aud: wbd_wire::COLLECTOR_TOKEN_AUDIENCE.into(),
            iat,
            exp,
            jti: Uuid::new_v4(),
            body_sha256,
        };
        jsonwebtoken::encode(&header, &claims, &jsonwebtoken::EncodingKey::from_ed_der(pkcs8)).unwrap()
    }

    /// A push token otherwise valid that says it is valid only from `nbf` (the real collector
    /// never sets `nbf`).
    pub fn token_not_before(&self, nbf: i64) -> String {
        let now = Utc::now().timestamp();
        let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::EdDSA);
        header.kid = Some(self.id.to_string());
        let claims = json!({
            "sub": self.id,
            "aud": wbd_wire::COLLECTOR_TOKEN_AUDIENCE,
            "iat": now,
            "exp": now + 120,
            "nbf": nbf,
            "jti": Uuid::new_v4(),
        });
        jsonwebtoken::encode(&header, &claims, &jsonwebtoken::EncodingKey::from_ed_der(&self.pkcs8)).unwrap()
    }

    pub async fn push(&self, app: &TestApp, batch: &IngestBatch) -> reqwest::Response {
        push_at(&app.client, &app.base, &self.token(batch), batch).await
    }

    /// Pushes, expects 202, and waits until the push is evaluated, so that each push is one
    /// evaluation (flap damping counts evaluations). Returns the 202's body.
    pub async fn push_evaluated(&self, app: &TestApp, org: &Org, batch: &IngestBatch) -> Value {
        let res = self.push(app, batch).await;
        assert_eq!(res.status(), StatusCode::ACCEPTED, "{}", res.text().await.unwrap_or_default());
        let body = res.json().await.unwrap();
        app.wait_for_evaluation(org, self.tenant_id).await;
        body
    }
}

/// The batch as a collector's last push before it goes quiet: it announces a 5-second push
/// interval, so the server counts it silent 15 seconds later (3 missed intervals).
pub fn last_push(mut batch: IngestBatch) -> IngestBatch {
    batch.collector.push_interval_secs = 5;
    batch
}

pub async fn push_at(
    client: &reqwest::Client,
    base: &str,
    token: &str,
    batch: &IngestBatch,
) -> reqwest::Response {
    client.post(format!("{base}/v1/ingest")).bearer_auth(token).json(batch).send().await.unwrap()
}

/// Another Ed25519 key, not the one enrolled.
pub fn stranger_key() -> Vec<u8> {
    Ed25519KeyPair::generate_pkcs8(&SystemRandom::new()).unwrap().as_ref().to_vec()
}

pub fn batch(results: Vec<ProbeResult>) -> IngestBatch {
    IngestBatch {
        schema_version: SCHEMA_VERSION,
        batch_id: Uuid::new_v4(),
        sent_at: Utc::now(),
        collector: CollectorInfo {
            version: "test".into(),
            hostname: "AADC01".into(),
            os: "windows".into(),
            push_interval_secs: 60,
            spool_dropped: 0,
        },
        results,
    }
}

fn endpoint(
    host: &str,
    port: u16,
    observed_at: DateTime<Utc>,
    report: impl FnOnce(&mut EndpointReport),
) -> ProbeResult {
    let mut r = EndpointReport {
        host: host.into(),
        port,
        role: EndpointRole::PasswordReset,
        resolved: vec!["127.0.0.1".parse().unwrap()],
        dns_ms: Some(1),
        connected_to: Some("127.0.0.1".parse().unwrap()),
        tcp_connect_ms: Some(1),
        tls: None,
        failure: None,
        via_proxy: None,
    };
    report(&mut r);
    ProbeResult {
        subject: format!("{host}:{port}"),
        observed_at,
        duration_ms: 5,
        output: ProbeOutput::Endpoint(r),
    }
}

/// A healthy endpoint as the probe reports it.
pub fn healthy_endpoint(host: &str, port: u16) -> ProbeResult {
    endpoint(host, port, Utc::now(), |r| r.tls = Some(tls_report(true)))
}

/// An endpoint whose TCP connection is refused.
pub fn refused_endpoint(host: &str, port: u16) -> ProbeResult {
    endpoint(host, port, Utc::now(), |r| {
        r.tcp_connect_ms = None;
        r.connected_to = None;
        r.failure = Some(StepFailure { step: ProbeStep::Tcp, error: "connection refused".into() });
    })
}

fn tls_report(trusted: bool) -> TlsReport {
    TlsReport {
        handshake_ms: 3,
        protocol: "TLSv1.3".into(),
        cipher_suite: "TLS13_AES_256_GCM_SHA384".into(),
        chain_trusted: trusted,
        trust_error: (!trusted).then(|| "invalid peer certificate: UnknownIssuer".into()),
        trust_failure: (!trusted).then_some(wbd_wire::TrustFailure::UntrustedIssuer),
        subject: Some("CN=passwordreset.microsoftonline.com".into()),
        issuer: Some(if trusted { "CN=Public Root CA" } else { "CN=Contoso Proxy CA" }.into()),
        not_before: Some(Utc::now() - chrono::Duration::days(10)),
        not_after: Some(Utc::now() + chrono::Duration::days(300)),
        chain_top_issuer: Some(if trusted { "CN=Public Root CA" } else { "CN=Contoso Proxy CA" }.into()),
        chain_len: 2,
    }
}

/// The problem document of an error response, after checking its content type and status.
pub async fn problem(res: reqwest::Response, status: StatusCode, code: &str) -> Value {
    assert_eq!(res.status(), status);
    let ct = res.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
    assert_eq!(ct, "application/problem+json");
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["code"], code, "{body:#}");
    assert_eq!(body["status"], status.as_u16());
    assert!(body["title"].is_string());
    body
}

/// Where cargo put the workspace's binaries (`cargo test --workspace` builds them all).
pub fn workspace_bin(name: &str) -> std::path::PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    let dir = exe.parent().and_then(|deps| deps.parent()).expect("target dir");
    let path = dir.join(format!("{name}{}", std::env::consts::EXE_SUFFIX));
    assert!(
        path.exists(),
        "{} is missing: run the tests with `cargo test --workspace` so cargo builds it",
        path.display()
    );
    path
}
