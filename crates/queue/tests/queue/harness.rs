//! What the queue tests stand on: a fresh store per test (SQLite on a temporary file always,
//! PostgreSQL in a throw-away database when `WBD_TEST_DATABASE_URL` is set), an enrolled
//! collector that pushes batches, and a view of the real RabbitMQ (when `WBD_TEST_AMQP_URL` is
//! set) under a unique queue prefix that is deleted afterwards.
//!
//! Tests that need a service are `#[ignore]`d, so a plain run reports them as ignored; a run that
//! asks for them (`-- --include-ignored`) fails when a variable is unset or a service unreachable.

use std::future::Future;
use std::io::Write;
use std::sync::Arc;
use std::time::Duration;

use chrono::{TimeDelta, Utc};
use lapin::options::{
    BasicGetOptions, BasicPublishOptions, ConfirmSelectOptions, ExchangeDeleteOptions, QueueDeclareOptions,
    QueueDeleteOptions,
};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties};
use sqlx::{AssertSqlSafe, Connection as _, Executor, PgConnection};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;
use wbd_queue::{Consumer, Delivery, QueueSettings};
use wbd_store::{
    BatchWrite, CollectorId, Enrollment, FactWrite, IngestOutcome, MessageKind, OutboxMessage, Store,
    TenantScope,
};

pub const AMQP_ENV: &str = "WBD_TEST_AMQP_URL";
pub const PG_ENV: &str = "WBD_TEST_DATABASE_URL";
/// `1`: the broker may be stopped and started (`rabbitmqctl stop_app` / `start_app`).
pub const RESTART_ENV: &str = "WBD_TEST_RABBITMQ_RESTART";

/// Broker tests hold it shared; the broker-restart test holds it alone, so that stopping the
/// broker cannot break another test of this binary.
pub static BROKER_LOCK: tokio::sync::RwLock<()> = tokio::sync::RwLock::const_new(());

/// A generous bound for things that normally take milliseconds: tests assert behaviour, not speed.
pub const PATIENCE: Duration = Duration::from_secs(20);

/// Test logs go to stderr when `TEST_LOG` is set (e.g. `TEST_LOG=wbd_queue=debug`), else nowhere.
pub fn init_logs() {
    static INIT: std::sync::Once = std::sync::Once::new();
    INIT.call_once(|| {
        if let Some(filter) = env("TEST_LOG") {
            let filter = if filter == "1" { "wbd_queue=debug".to_owned() } else { filter };
            let _ = tracing_subscriber::fmt()
                .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
                .with_writer(std::io::stderr)
                .try_init();
        }
    });
}

fn note(text: &str) {
    // Straight to stderr: libtest captures `eprintln!` of passing tests.
    let _ = writeln!(std::io::stderr(), "note: {text}");
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().map(|v| v.trim().to_owned()).filter(|v| !v.is_empty())
}

/// The broker URL. Only tests that need the broker call this, and they are ignored unless asked
/// for: asked for without `WBD_TEST_AMQP_URL`, they fail rather than pass having run nothing.
pub fn amqp_url() -> String {
    init_logs();
    env(AMQP_ENV).unwrap_or_else(|| panic!("{AMQP_ENV} is not set: this RabbitMQ test cannot run without it"))
}

/// Fails the test unless `var` is `1`: the switch for tests that disturb the machine's broker.
pub fn require_opt_in(var: &str) {
    if env(var).as_deref() != Some("1") {
        panic!("{var} is not 1: this test stops the machine's RabbitMQ and runs only when allowed to");
    }
}

// ---- stores ---------------------------------------------------------------------------------

pub struct TestStore {
    pub store: Arc<dyn Store>,
    pub label: &'static str,
    _cleanup: Cleanup,
}

enum Cleanup {
    Sqlite { _dir: tempfile::TempDir },
    Postgres { admin_url: String, database: String },
}

impl Drop for Cleanup {
    /// Drops the test database, also after a panic. Own thread and runtime: `Drop` cannot await.
    fn drop(&mut self) {
        let Cleanup::Postgres { admin_url, database } = self else { return };
        let (admin_url, database) = (admin_url.clone(), database.clone());
        let dropper = std::thread::spawn(move || {
            let Ok(runtime) = tokio::runtime::Builder::new_current_thread().enable_all().build() else {
                return;
            };
            runtime.block_on(async {
                if let Ok(mut conn) = PgConnection::connect(&admin_url).await {
                    let sql = format!("DROP DATABASE IF EXISTS \"{database}\" WITH (FORCE)");
                    let _ = conn.execute(AssertSqlSafe(sql)).await;
                    let _ = conn.close().await;
                }
            });
        });
        let _ = dropper.join();
    }
}

pub async fn sqlite_store() -> TestStore {
    init_logs();
    let dir = tempfile::tempdir().expect("create a temporary directory for SQLite");
    let url = format!("sqlite://{}", dir.path().join("store.db").display());
    let store = wbd_store::connect(&url, 4).await.expect("open the SQLite store");
    TestStore { store, label: "sqlite", _cleanup: Cleanup::Sqlite { _dir: dir } }
}

/// A fresh PostgreSQL store; fails the test when `WBD_TEST_DATABASE_URL` is unset or unreachable.
pub async fn postgres_store() -> TestStore {
    init_logs();
    let admin_url = env(PG_ENV)
        .unwrap_or_else(|| panic!("{PG_ENV} is not set: this PostgreSQL test cannot run without it"));
    let database = format!("wbd_test_{}", Uuid::new_v4().simple());
    let mut admin = tokio::time::timeout(Duration::from_secs(15), PgConnection::connect(&admin_url))
        .await
        .unwrap_or_else(|_| panic!("{PG_ENV} is set but PostgreSQL did not answer within 15 s"))
        .unwrap_or_else(|e| panic!("{PG_ENV} is set but PostgreSQL is unreachable: {e}"));
    admin
        .execute(AssertSqlSafe(format!("CREATE DATABASE \"{database}\" TEMPLATE template0")))
        .await
        .unwrap_or_else(|e| panic!("create test database {database}: {e}"));
    let _ = admin.close().await;
    let cleanup = Cleanup::Postgres { admin_url: admin_url.clone(), database: database.clone() };
    let url = with_database(&admin_url, &database);
    let store =
        wbd_store::connect(&url, 8).await.unwrap_or_else(|e| panic!("open the PostgreSQL store: {e}"));
    TestStore { store, label: "postgres", _cleanup: cleanup }
}

/// One store of each backend.
pub async fn all_stores() -> Vec<TestStore> {
    vec![sqlite_store().await, postgres_store().await]
}

/// `admin_url` with its database (path) replaced, keeping any query parameters.
fn with_database(admin_url: &str, database: &str) -> String {
    let (base, query) = match admin_url.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (admin_url, None),
    };
    let authority_start = base.find("://").map_or(0, |i| i + 3);
    let root = match base[authority_start..].find('/') {
        Some(slash) => &base[..authority_start + slash],
        None => base,
    };
    match query {
        Some(query) => format!("{root}/{database}?{query}"),
        None => format!("{root}/{database}"),
    }
}

// ---- a collector site that pushes batches ---------------------------------------------------

/// An MSP with one tenant and one enrolled collector: what an ingest needs.
pub struct Site {
    pub scope: TenantScope,
    pub collector_id: CollectorId,
}

impl Site {
    pub async fn enroll(store: &dyn Store) -> anyhow::Result<Site> {
        let now = Utc::now();
        let org = store.create_organization(&format!("MSP {}", Uuid::new_v4()), now).await?;
        let org_scope = wbd_store::OrgScope { org_id: org.id };
        let tenant = store.create_tenant(org_scope, "Contoso", None, now).await?;
        let scope = TenantScope { org_id: org.id, tenant_id: tenant.id };
        let token_hash = format!("hash-{}", Uuid::new_v4());
        store.create_collector(scope, "site", &token_hash, now + TimeDelta::hours(1), 300, now).await?;
        let enrollment = Enrollment {
            enrollment_token_hash: token_hash,
            public_key: vec![7; 32],
            hostname: "aadc01".into(),
            version: "1.0.0".into(),
            now,
            silent_after: now + TimeDelta::minutes(15),
        };
        let collector = store
            .enroll_collector(&enrollment)
            .await?
            .map_err(|e| anyhow::anyhow!("enrollment refused: {e}"))?;
        Ok(Site { scope, collector_id: collector.id })
    }

    /// Ingests one batch (which writes its outbox message); returns the batch id, which is how
    /// a test recognises the message.
    pub async fn push(&self, store: &dyn Store, traceparent: Option<&str>) -> anyhow::Result<Uuid> {
        let now = Utc::now();
        let batch_id = Uuid::now_v7();
        let batch = BatchWrite {
            collector_id: self.collector_id,
            batch_id,
            body_hash: format!("body-{batch_id}"),
            results: vec![FactWrite {
                probe: "relay_reachability".into(),
                subject: "servicebus".into(),
                observed_at: now,
                payload: serde_json::json!({ "batch": batch_id.to_string() }).to_string(),
                timings: "{}".into(),
                digest: format!("digest-{batch_id}"),
            }],
            received_at: now,
            collector_version: "1.0.0".into(),
            collector_hostname: "aadc01".into(),
            collector_os: "windows".into(),
            push_interval_secs: 300,
            spool_dropped: 0,
            silent_after: now + TimeDelta::minutes(15),
            traceparent: traceparent.map(str::to_owned),
        };
        match store.ingest_batch(self.scope, &batch).await? {
            IngestOutcome::Accepted { .. } => Ok(batch_id),
            other => anyhow::bail!("ingest not accepted: {other:?}"),
        }
    }

    /// `n` batches, each with its own traceparent; returns their ids in push order.
    pub async fn push_many(&self, store: &dyn Store, n: usize) -> anyhow::Result<Vec<Uuid>> {
        let mut ids = Vec::with_capacity(n);
        for _ in 0..n {
            let trace = traceparent();
            ids.push(self.push(store, Some(&trace)).await?);
        }
        Ok(ids)
    }
}

/// A valid, random W3C traceparent.
pub fn traceparent() -> String {
    let trace = Uuid::new_v4().simple().to_string();
    let span = &Uuid::new_v4().simple().to_string()[..16];
    format!("00-{trace}-{span}-01")
}

pub fn batch_id(message: &OutboxMessage) -> Uuid {
    match message.kind {
        MessageKind::BatchIngested { batch_id, .. } => batch_id,
        MessageKind::RulesChanged => panic!("the queue tests only enqueue batches"),
    }
}

/// The consumer's next delivery, or `None` if none came within `within`.
pub async fn receive(consumer: &mut Consumer, within: Duration) -> Option<Delivery> {
    tokio::time::timeout(within, consumer.next()).await.ok().flatten()
}

/// Polls `check` until it answers `true`; fails after `PATIENCE`.
pub async fn eventually<F, Fut>(what: &str, mut check: F) -> anyhow::Result<()>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = anyhow::Result<bool>>,
{
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        if check().await? {
            return Ok(());
        }
        if tokio::time::Instant::now() > deadline {
            anyhow::bail!("timed out waiting until {what}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

// ---- the real broker ------------------------------------------------------------------------

/// Test settings: a unique prefix, and quick polling.
pub fn settings(prefix: &str) -> QueueSettings {
    QueueSettings {
        prefix: prefix.to_owned(),
        poll_interval: Duration::from_millis(200),
        max_backoff: Duration::from_secs(1),
        ..QueueSettings::default()
    }
}

/// A view of the test broker for one test: its unique prefix and an admin connection to look
/// at the queues. Dropping it stops the test's relays and consumers (`cancel`) and deletes the
/// prefix's queues and exchange.
pub struct TestBroker {
    pub url: String,
    pub prefix: String,
    pub cancel: CancellationToken,
    /// Reconnected on demand: a broker restart closes it.
    admin: tokio::sync::Mutex<Connection>,
}

/// A message as an outside client sees it on a queue.
pub struct Peeked {
    pub data: Vec<u8>,
    pub properties: BasicProperties,
}

impl TestBroker {
    pub async fn new(url: &str) -> TestBroker {
        // libtest names the thread after the test: a leftover queue then says who left it.
        let test =
            std::thread::current().name().unwrap_or("test").rsplit("::").next().unwrap_or("test").to_owned();
        let prefix = format!("wbdtest.{test}.{}", Uuid::new_v4().simple());
        let admin = admin_connection(url)
            .await
            .unwrap_or_else(|e| panic!("{AMQP_ENV} is set but RabbitMQ is unreachable: {e:#}"));
        TestBroker { url: url.to_owned(), prefix, cancel: CancellationToken::new(), admin: admin.into() }
    }

    /// A new channel on the admin connection, reconnecting it if the broker dropped it.
    async fn channel(&self) -> anyhow::Result<Channel> {
        let mut admin = self.admin.lock().await;
        if !admin.status().connected() {
            *admin = admin_connection(&self.url).await?;
        }
        Ok(admin.create_channel().await?)
    }

    pub fn settings(&self) -> QueueSettings {
        settings(&self.prefix)
    }

    pub fn work_queue(&self) -> String {
        format!("{}.evaluate", self.prefix)
    }

    pub fn dead_queue(&self) -> String {
        format!("{}.evaluate.dead", self.prefix)
    }

    /// Ready messages on `queue` (a fresh channel each time: a failed passive declare closes it).
    pub async fn count(&self, queue: &str) -> anyhow::Result<u32> {
        let channel = self.channel().await?;
        let options = QueueDeclareOptions { passive: true, ..QueueDeclareOptions::default() };
        let declared = channel.queue_declare(queue.into(), options, FieldTable::default()).await?;
        let _ = channel.close(200, "OK".into()).await;
        Ok(declared.message_count())
    }

    pub async fn wait_count(&self, queue: &str, expected: u32) -> anyhow::Result<()> {
        eventually(&format!("{queue} holds {expected} messages"), || async {
            Ok(self.count(queue).await? == expected)
        })
        .await
    }

    /// Takes every ready message off `queue` (auto-ack).
    pub async fn drain(&self, queue: &str) -> anyhow::Result<Vec<Peeked>> {
        let channel = self.channel().await?;
        let mut taken = Vec::new();
        while let Some(message) = channel.basic_get(queue.into(), BasicGetOptions { no_ack: true }).await? {
            let delivery = message.delivery;
            taken.push(Peeked { data: delivery.data, properties: delivery.properties });
        }
        let _ = channel.close(200, "OK".into()).await;
        Ok(taken)
    }

    /// Publishes a raw body straight onto the work queue, as a foreign or broken client would.
    pub async fn publish_raw(&self, body: &[u8]) -> anyhow::Result<()> {
        let channel = self.channel().await?;
        channel.confirm_select(ConfirmSelectOptions::default()).await?;
        let confirm = channel
            .basic_publish(
                "".into(),
                self.work_queue().as_str().into(),
                BasicPublishOptions { mandatory: true, immediate: false },
                body,
                BasicProperties::default().with_delivery_mode(2).with_message_id("poison".into()),
            )
            .await?
            .await?;
        anyhow::ensure!(confirm.is_ack() && confirm.take_message().is_none(), "raw publish was not routed");
        let _ = channel.close(200, "OK".into()).await;
        Ok(())
    }
}

async fn admin_connection(url: &str) -> anyhow::Result<Connection> {
    let properties = ConnectionProperties::default().with_connection_name("wbd-test-admin".into());
    match tokio::time::timeout(Duration::from_secs(15), Connection::connect(url, properties)).await {
        Ok(connection) => Ok(connection?),
        Err(_) => anyhow::bail!("RabbitMQ did not answer within 15 s"),
    }
}

impl Drop for TestBroker {
    fn drop(&mut self) {
        self.cancel.cancel();
        let (url, prefix) = (self.url.clone(), self.prefix.clone());
        let cleaner = std::thread::spawn(move || {
            let Ok(runtime) = tokio::runtime::Builder::new_current_thread().enable_all().build() else {
                return;
            };
            runtime.block_on(async {
                // Give cancelled relays a moment to stop re-declaring what we delete.
                tokio::time::sleep(Duration::from_millis(200)).await;
                let conn = match tokio::time::timeout(
                    Duration::from_secs(10),
                    Connection::connect(&url, ConnectionProperties::default()),
                )
                .await
                {
                    Ok(Ok(conn)) => conn,
                    Ok(Err(e)) => return note(&format!("cleanup of {prefix}: cannot connect: {e}")),
                    Err(_) => return note(&format!("cleanup of {prefix}: connect timed out")),
                };
                for queue in [format!("{prefix}.evaluate"), format!("{prefix}.evaluate.dead")] {
                    let deleted = match conn.create_channel().await {
                        Ok(channel) => channel
                            .queue_delete(queue.as_str().into(), QueueDeleteOptions::default())
                            .await
                            .map(drop),
                        Err(e) => Err(e),
                    };
                    if let Err(e) = deleted {
                        note(&format!("cleanup: cannot delete queue {queue}: {e}"));
                    }
                }
                let exchange = format!("{prefix}.dead");
                let deleted = match conn.create_channel().await {
                    Ok(channel) => {
                        channel
                            .exchange_delete(exchange.as_str().into(), ExchangeDeleteOptions::default())
                            .await
                    }
                    Err(e) => Err(e),
                };
                if let Err(e) = deleted {
                    note(&format!("cleanup: cannot delete exchange {exchange}: {e}"));
                }
                let _ = conn.close(200, "OK".into()).await;
            });
        });
        let _ = cleaner.join();
    }
}

/// Closes, from the broker's side, every connection whose name carries `prefix` (our relays,
/// consumers and control connection), as a broker restart or a network cut would.
pub fn close_connections(prefix: &str) -> anyhow::Result<usize> {
    let output = std::process::Command::new("rabbitmqctl")
        .args(["-q", "--no-table-headers", "list_connections", "pid", "client_properties"])
        .output()?;
    anyhow::ensure!(output.status.success(), "rabbitmqctl list_connections failed: {output:?}");
    let listing = String::from_utf8_lossy(&output.stdout);
    let mut closed = 0;
    for line in listing.lines().filter(|line| line.contains(prefix)) {
        let Some(pid) = line.split_whitespace().next() else { continue };
        let status = std::process::Command::new("rabbitmqctl")
            .args(["-q", "close_connection", pid, "test: simulated connection loss"])
            .status()?;
        anyhow::ensure!(status.success(), "rabbitmqctl close_connection {pid} failed");
        closed += 1;
    }
    Ok(closed)
}

/// Names of connections to the broker that do not belong to the test with `prefix`.
pub fn foreign_connections(prefix: &str) -> anyhow::Result<Vec<String>> {
    let output = std::process::Command::new("rabbitmqctl")
        .args(["-q", "--no-table-headers", "list_connections", "name", "client_properties"])
        .output()?;
    anyhow::ensure!(output.status.success(), "rabbitmqctl list_connections failed: {output:?}");
    Ok(String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter(|line| !line.trim().is_empty() && !line.contains(prefix) && !line.contains("wbd-test-admin"))
        .map(|line| line.split('\t').next().unwrap_or(line).to_owned())
        .collect())
}

pub fn rabbitmqctl(args: &[&str]) -> anyhow::Result<()> {
    let status = std::process::Command::new("rabbitmqctl").args(args).status()?;
    anyhow::ensure!(status.success(), "rabbitmqctl {args:?} failed");
    Ok(())
}
