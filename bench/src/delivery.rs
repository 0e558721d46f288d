//! The delivery phase: how fast and how promptly the delivery engine
//! (`wbd_delivery::engine`) carries `finding.opened` events to signed webhooks, on SQLite
//! and on PostgreSQL.
//!
//! The engine runs in this process, wired as the worker wires it (sealed signing secret, network
//! policy allowing 127.0.0.1, the product's default schedule and timeouts) against a store of
//! its own: a SQLite file in a temporary directory or a fresh PostgreSQL database. Deliveries are
//! queued with `store.enqueue_deliveries`, as the dispatcher queues them, and go to local
//! webhook receivers (`wbd_receivers::webhook`, actix-web, one worker thread), which record when
//! each request arrived. Three runs:
//!
//! - **throughput**: N deliveries queued first, then the engine started; deliveries per second
//!   from the start until none is pending;
//! - **latency**: deliveries queued one at a time at a steady rate; from each one's commit to its
//!   receiver getting the request;
//! - **isolation**: the same rate, each event also to a second integration whose receiver answers
//!   after 2 s with two requests in flight at most; the latency of the fast one.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use chrono::{DateTime, Utc};
use serde_json::json;
use sqlx::{PgPool, SqlitePool};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;
use wbd_delivery::events::{delivery_for, finding_data};
use wbd_delivery::secrets::{self, SealedSecrets, StoredSigningSecret};
use wbd_delivery::{Engine, EngineConfig, start};
use wbd_notify::schedule::RetrySchedule;
use wbd_notify::sealing::Sealer;
use wbd_notify::ssrf::{Guard, NetworkPolicy};
use wbd_notify::{Event, EventData, EventType, TenantRef};
use wbd_receivers::webhook::WebhookReceiver;
use wbd_receivers::{Faults, Receiver};
use wbd_store::{
    Finding, FindingId, FindingStatus, Integration, IntegrationFilter, IntegrationWrite, NewDelivery,
    OrgScope, Routing, Severity, Store, TenantId,
};

use crate::deploy::PgDatabase;
use crate::machine::{CpuSnapshot, CpuUse, process_cpu_secs, threads_cpu_secs};
use crate::stats::{LatencySummary, Samples, per_second};

/// A Standard Webhooks secret (32 random bytes, base64), as the API generates them.
const SIGNING_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
/// Threads of the actix receivers ("actix-server worker N", "actix-rt|system…"), whose CPU is
/// not the engine's.
const RECEIVER_THREADS: &str = "actix";
/// The product's defaults (`crates/platform/config.default.toml`, `[delivery]`).
pub const DEFAULT_POLL_INTERVAL: Duration = Duration::from_millis(500);
const DEFAULT_ATTEMPT_TIMEOUT: Duration = Duration::from_secs(15);
/// Queued per `enqueue_deliveries` call before the throughput run (the dispatcher's batch is 200
/// events, each to every matching integration).
const ENQUEUE_BATCH: usize = 500;
/// Longest wait for the throughput run's deliveries to succeed.
const SETTLE_TIMEOUT: Duration = Duration::from_secs(120);

/// Where the engine keeps its deliveries.
#[derive(Debug, Clone, Copy)]
pub enum Backend<'a> {
    Sqlite,
    Postgres { admin_url: &'a str },
}

/// The shape of the three runs.
#[derive(Debug, Clone)]
pub struct DeliveryLoad {
    pub deliveries: usize,
    pub concurrency: usize,
    pub max_in_flight: u32,
    pub rate_per_s: f64,
    pub window: Duration,
    pub poll_interval: Duration,
    pub slow_delay: Duration,
    pub slow_max_in_flight: u32,
}

/// A store with one organisation, two tenants and a sealer, and a direct view of its tables.
pub struct TestBed {
    store: Arc<dyn Store>,
    sealer: Arc<Sealer>,
    org: OrgScope,
    tenants: Vec<(TenantId, String)>,
    db: Tables,
}

/// Read-only queries the store has no method for (counts by status).
enum Tables {
    Sqlite { pool: SqlitePool, _dir: tempfile::TempDir },
    Postgres { pool: PgPool, database: PgDatabase },
}

impl TestBed {
    pub async fn new(backend: Backend<'_>, connections: u32) -> anyhow::Result<TestBed> {
        let (store, db) = match backend {
            Backend::Sqlite => {
                let dir = tempfile::tempdir()?;
                let path = dir.path().join("wbd.db");
                let store = wbd_store::connect(&format!("sqlite://{}", path.display()), connections)
                    .await
                    .context("opening the SQLite store")?;
                let pool = SqlitePool::connect(&format!("sqlite://{}", path.display())).await?;
                (store, Tables::Sqlite { pool, _dir: dir })
            }
            Backend::Postgres { admin_url } => {
                let database = PgDatabase::create(admin_url).await?;
                let store = match wbd_store::connect(&database.url, connections).await {
                    Ok(store) => store,
                    Err(e) => {
                        database.drop_database().await;
                        return Err(anyhow::Error::new(e).context("opening the PostgreSQL store"));
                    }
                };
                let pool = PgPool::connect(&database.url).await?;
                (store, Tables::Postgres { pool, database })
            }
        };
        let now = Utc::now();
        let org = OrgScope { org_id: store.create_organization("Benchmark MSP", now).await?.id };
        let mut tenants = Vec::new();
        for name in ["Contoso", "Fabrikam"] {
            tenants.push((store.create_tenant(org, name, None, now).await?.id, name.to_owned()));
        }
        let sealer = Arc::new(Sealer::new(&Sealer::generate_key(), &[]).map_err(|e| anyhow::anyhow!("{e}"))?);
        Ok(TestBed { store, sealer, org, tenants, db })
    }

    /// Drops the PostgreSQL database (the SQLite directory goes with `self`).
    pub async fn teardown(self) {
        if let Tables::Postgres { pool, database } = self.db {
            pool.close().await;
            database.drop_database().await;
        }
    }

    /// A webhook integration to `url` with a signing secret, as the API saves one.
    async fn webhook(&self, name: &str, url: &str, max_in_flight: u32) -> anyhow::Result<Integration> {
        let sealed = SealedSecrets {
            credentials: serde_json::Value::Null,
            url: None,
            signing_secrets: vec![StoredSigningSecret { secret: SIGNING_SECRET.into(), expires_at: None }],
        };
        let write = IntegrationWrite {
            name: name.into(),
            kind: "webhook".into(),
            url: Some(url.into()),
            config: json!({}),
            secrets: secrets::seal(&self.sealer, self.org.org_id, &sealed),
            filter: IntegrationFilter::default(),
            routing: Routing::PerTenant,
            max_in_flight,
            hourly_budget: None,
            enabled: true,
        };
        Ok(self.store.create_integration(self.org, &write, "wbd-bench", Utc::now()).await?)
    }

    /// A `finding.opened` event about a new finding of tenant `n % 2`, with its finding.
    fn opened(&self, n: usize) -> (Finding, Event) {
        let (tenant, tenant_name) = self.tenants[n % self.tenants.len()].clone();
        let now = Utc::now();
        let subject = format!("host{n}.servicebus.windows.net:443");
        let finding = Finding {
            id: FindingId(Uuid::new_v4()),
            org_id: self.org.org_id,
            tenant_id: tenant,
            fingerprint: format!("endpoint-reachable|{subject}"),
            rule_id: "endpoint-reachable".into(),
            subject,
            severity: Severity::High,
            status: FindingStatus::Open,
            title: "Password reset endpoint unreachable".into(),
            summary: "The collector could not open TCP 443 to the Service Bus endpoint.".into(),
            evidence: json!({"error": "connection refused", "port": 443}),
            opened_at: now,
            updated_at: now,
            resolved_at: None,
            reopen_count: 0,
            version: 1,
            collector_id: None,
            acknowledged_at: None,
            acknowledged_by: None,
            suppressed_until: None,
            suppression_reason: None,
            suppressed_by: None,
            message: None,
            root_finding_id: None,
            announced: true,
        };
        let event = Event {
            id: Uuid::now_v7(),
            event_type: EventType::FindingOpened,
            timestamp: now,
            data: EventData {
                organization_id: self.org.org_id.0,
                tenant: Some(TenantRef { id: tenant.0, name: tenant_name }),
                finding: Some(finding_data(&finding, Some("https://wbd.example"))),
                actor: "system".into(),
                note: None,
                suppressed_until: None,
                integration_id: None,
                affected_tenants: Vec::new(),
            },
        };
        (finding, event)
    }

    /// Deliveries of one new event to each of `integrations`, as the dispatcher makes them.
    fn deliveries(&self, n: usize, integrations: &[&Integration]) -> (String, Vec<NewDelivery>) {
        let (finding, event) = self.opened(n);
        let made = integrations.iter().map(|i| delivery_for(i, &event, Some(&finding))).collect();
        (event.message_id(), made)
    }

    fn start_engine(&self, load: &DeliveryLoad, poll_interval: Duration) -> RunningEngine {
        let config = EngineConfig {
            schedule: RetrySchedule::standard(),
            attempt_timeout: DEFAULT_ATTEMPT_TIMEOUT,
            disable_after: chrono::TimeDelta::days(5),
            concurrency: load.concurrency,
            poll_interval,
            public_url: Some("https://wbd.example".into()),
        };
        let policy =
            NetworkPolicy::new(&["127.0.0.1/32".to_owned()], false).expect("127.0.0.1/32 is a valid network");
        let guard = Guard::new(policy, config.attempt_timeout);
        let engine = Arc::new(Engine::new(self.store.clone(), Some(self.sealer.clone()), guard, config));
        let cancel = CancellationToken::new();
        let mut tasks = JoinSet::new();
        start(engine, cancel.clone(), &mut tasks);
        RunningEngine { cancel, tasks }
    }

    /// Deliveries still pending, of one integration or all.
    async fn pending(&self, integration: Option<Uuid>) -> anyhow::Result<i64> {
        self.count("SELECT COUNT(*) FROM deliveries WHERE status = 'pending'", integration).await
    }

    async fn succeeded(&self, integration: Option<Uuid>) -> anyhow::Result<i64> {
        self.count("SELECT COUNT(*) FROM deliveries WHERE status = 'succeeded'", integration).await
    }

    async fn failed_attempts(&self) -> anyhow::Result<i64> {
        self.count("SELECT COUNT(*) FROM delivery_attempts WHERE NOT succeeded", None).await
    }

    async fn count(&self, sql: &'static str, integration: Option<Uuid>) -> anyhow::Result<i64> {
        let sql = match integration {
            Some(_) => format!("{sql} AND integration_id = $1"),
            None => sql.to_owned(),
        };
        let sql = sqlx::AssertSqlSafe(sql);
        Ok(match &self.db {
            Tables::Sqlite { pool, .. } => {
                let mut query = sqlx::query_scalar(sql);
                if let Some(id) = integration {
                    query = query.bind(id);
                }
                query.fetch_one(pool).await?
            }
            Tables::Postgres { pool, .. } => {
                let mut query = sqlx::query_scalar(sql);
                if let Some(id) = integration {
                    query = query.bind(id);
                }
                query.fetch_one(pool).await?
            }
        })
    }

    /// Waits until no delivery (of `integration`, or at all) is pending; `false` on timeout.
    async fn settle(
        &self,
        integration: Option<Uuid>,
        every: Duration,
        timeout: Duration,
    ) -> anyhow::Result<bool> {
        let deadline = Instant::now() + timeout;
        loop {
            if self.pending(integration).await? == 0 {
                return Ok(true);
            }
            if Instant::now() >= deadline {
                return Ok(false);
            }
            tokio::time::sleep(every).await;
        }
    }
}

/// The engine's dispatcher and deliverer, until [`RunningEngine::stop`].
struct RunningEngine {
    cancel: CancellationToken,
    tasks: JoinSet<()>,
}

impl RunningEngine {
    /// Stops claiming and waits for the attempts in flight.
    async fn stop(mut self) {
        self.cancel.cancel();
        while self.tasks.join_next().await.is_some() {}
    }
}

/// What the throughput run measured.
pub struct Throughput {
    pub queued: usize,
    pub enqueue: Duration,
    /// From the engine's start until none was pending; `None` if that took over the timeout.
    pub elapsed: Option<Duration>,
    pub waited: Duration,
    /// Until half of them had succeeded (the first half is delivered with the larger backlog).
    pub to_half: Option<Duration>,
    pub succeeded: i64,
    pub failed_attempts: i64,
    pub cpu: CpuUse,
    /// CPU of this process (engine, store client, receiver) during the run.
    pub process_cpu_secs: f64,
    /// CPU of the receiver's threads (part of the process's).
    pub receiver_cpu_secs: f64,
}

impl Throughput {
    pub fn per_second(&self) -> Option<f64> {
        self.elapsed.map(|e| per_second(self.succeeded as f64, e))
    }

    /// Deliveries per second while the first half was delivered, and while the second was.
    pub fn halves_per_second(&self) -> Option<(f64, f64)> {
        let (half, all) = (self.to_half?, self.elapsed?);
        let n = (self.queued / 2) as f64;
        Some((per_second(n, half), per_second(self.queued as f64 - n, all.saturating_sub(half))))
    }
}

/// Queues `load.deliveries` deliveries, then starts the engine and times it until all succeeded.
pub async fn throughput(bed: &TestBed, load: &DeliveryLoad, ticks: u64) -> anyhow::Result<Throughput> {
    let receiver = Receiver::spawn(WebhookReceiver::new()).await;
    let integration = bed
        .webhook("Throughput webhook", &format!("{}/hooks/wbd", receiver.url()), load.max_in_flight)
        .await?;
    let queueing = Instant::now();
    let mut queued = 0;
    while queued < load.deliveries {
        let batch: Vec<NewDelivery> = (queued..(queued + ENQUEUE_BATCH).min(load.deliveries))
            .flat_map(|n| bed.deliveries(n, &[&integration]).1)
            .collect();
        queued += batch.len();
        bed.store.enqueue_deliveries(&batch, Utc::now()).await.context("queueing deliveries")?;
    }
    let enqueue = queueing.elapsed();

    let pid = std::process::id();
    let cpu_before = CpuSnapshot::take();
    let process_before = process_cpu_secs(pid, ticks).unwrap_or(0.0);
    let receiver_before = threads_cpu_secs(RECEIVER_THREADS, ticks);
    let started = Instant::now();
    let engine = bed.start_engine(load, load.poll_interval);
    let half = (queued / 2) as i64;
    let mut to_half = None;
    let settled = async {
        loop {
            let pending = bed.pending(Some(integration.id)).await?;
            if to_half.is_none() && pending <= half {
                to_half = Some(started.elapsed());
            }
            if pending == 0 {
                return Ok::<bool, anyhow::Error>(true);
            }
            if started.elapsed() >= SETTLE_TIMEOUT {
                return Ok(false);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    .await;
    let waited = started.elapsed();
    let cpu = cpu_before.until(&CpuSnapshot::take(), ticks);
    let process_cpu_secs = process_cpu_secs(pid, ticks).unwrap_or(0.0) - process_before;
    let receiver_cpu_secs = threads_cpu_secs(RECEIVER_THREADS, ticks) - receiver_before;
    engine.stop().await;
    let settled = settled?;
    Ok(Throughput {
        queued,
        enqueue,
        elapsed: settled.then_some(waited),
        waited,
        to_half,
        succeeded: bed.succeeded(Some(integration.id)).await?,
        failed_attempts: bed.failed_attempts().await?,
        cpu,
        process_cpu_secs,
        receiver_cpu_secs,
    })
}

/// What a run at a steady rate measured.
pub struct AtRate {
    pub offered: usize,
    pub achieved_per_s: f64,
    /// Commit of the delivery row to its receiver reading the request.
    pub latency: Option<LatencySummary>,
    /// `enqueue_deliveries` of one event, call to return.
    pub enqueue: Option<LatencySummary>,
    /// Events never seen by the fast receiver within the timeout.
    pub unseen: usize,
    /// `enqueue_deliveries` calls that failed (e.g. SQLite's busy timeout), with the first error.
    pub enqueue_errors: usize,
    pub first_enqueue_error: Option<String>,
    pub late_starts: usize,
    /// Requests that arrived before the enqueue returned (counted as 0 ms).
    pub before_commit_returned: usize,
    /// The slow integration, when there is one: requests it got, deliveries still pending.
    pub slow: Option<(usize, i64)>,
    pub cpu: CpuUse,
}

/// Queues one event's deliveries every 1/rate s for the window, each in its own transaction; the
/// latency of each from its commit to the (fast) receiver getting it. With `slow`, each event also
/// goes to an integration whose receiver takes `load.slow_delay` to answer.
pub async fn at_rate(
    bed: &TestBed,
    load: &DeliveryLoad,
    poll_interval: Duration,
    slow: bool,
    ticks: u64,
) -> anyhow::Result<AtRate> {
    let fast = Receiver::spawn(WebhookReceiver::new()).await;
    let fast_integration =
        bed.webhook("Fast webhook", &format!("{}/hooks/wbd", fast.url()), load.max_in_flight).await?;
    let slow_side = if slow {
        let receiver = Receiver::spawn(WebhookReceiver::new()).await;
        receiver.common().set_faults(Faults { delay: Some(load.slow_delay), ..Default::default() });
        let integration = bed
            .webhook("Slow webhook", &format!("{}/hooks/wbd", receiver.url()), load.slow_max_in_flight)
            .await?;
        Some((receiver, integration))
    } else {
        None
    };
    let mut integrations = vec![&fast_integration];
    if let Some((_, slow_integration)) = &slow_side {
        integrations.push(slow_integration);
    }

    let engine = bed.start_engine(load, poll_interval);
    let committed: Arc<Mutex<HashMap<String, DateTime<Utc>>>> = Arc::default();
    let enqueue_times: Arc<Mutex<Samples>> = Arc::default();
    let offered = (load.rate_per_s * load.window.as_secs_f64()).round().max(1.0) as usize;
    let every = Duration::from_secs_f64(1.0 / load.rate_per_s);
    let cpu_before = CpuSnapshot::take();
    let started = tokio::time::Instant::now();
    let mut late_starts = 0;
    let mut enqueue_errors = 0;
    let mut first_enqueue_error = None;
    let mut enqueues = JoinSet::new();
    for n in 0..offered {
        let slot = started + every.mul_f64(n as f64);
        tokio::time::sleep_until(slot).await;
        if slot.elapsed() > Duration::from_millis(50) {
            late_starts += 1;
        }
        let (message_id, deliveries) = bed.deliveries(n, &integrations);
        let store = bed.store.clone();
        let committed = committed.clone();
        let enqueue_times = enqueue_times.clone();
        enqueues.spawn(async move {
            let call = Instant::now();
            let result = store.enqueue_deliveries(&deliveries, Utc::now()).await;
            let at = Utc::now();
            enqueue_times.lock().expect("samples").push(call.elapsed());
            if result.is_ok() {
                committed.lock().expect("commit times").insert(message_id, at);
            }
            result
        });
        while let Some(done) = enqueues.try_join_next() {
            if let Err(e) = done.context("enqueue task")? {
                enqueue_errors += 1;
                first_enqueue_error.get_or_insert_with(|| e.to_string());
            }
        }
    }
    while let Some(done) = enqueues.join_next().await {
        if let Err(e) = done.context("enqueue task")? {
            enqueue_errors += 1;
            first_enqueue_error.get_or_insert_with(|| e.to_string());
        }
    }
    let sent_for = started.elapsed();
    bed.settle(Some(fast_integration.id), Duration::from_millis(50), Duration::from_secs(60)).await?;
    let cpu = cpu_before.until(&CpuSnapshot::take(), ticks);
    let slow = match &slow_side {
        Some((receiver, integration)) => {
            Some((receiver.requests().len(), bed.pending(Some(integration.id)).await?))
        }
        None => None,
    };
    // Stopping waits for the slow receiver's answers in flight (up to its delay).
    engine.stop().await;

    let committed = std::mem::take(&mut *committed.lock().expect("commit times"));
    let mut latency = Samples::new();
    let mut before_commit_returned = 0;
    let mut seen = 0;
    for request in fast.state.deliveries() {
        let Some(at) = request.header("webhook-id").and_then(|id| committed.get(id)) else { continue };
        seen += 1;
        let ms = (request.at - *at).num_microseconds().unwrap_or(0) as f64 / 1_000.0;
        if ms < 0.0 {
            before_commit_returned += 1;
        }
        latency.push_ms(ms.max(0.0));
    }
    let enqueue = enqueue_times.lock().expect("samples").summary();
    Ok(AtRate {
        offered,
        achieved_per_s: per_second(committed.len() as f64, sent_for),
        latency: latency.summary(),
        enqueue,
        unseen: committed.len().saturating_sub(seen),
        enqueue_errors,
        first_enqueue_error,
        late_starts,
        before_commit_returned,
        slow,
        cpu,
    })
}
