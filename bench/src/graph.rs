//! The central Graph reader at scale: connected tenants, all due at once, read by one worker's
//! reader ([`wbd_platform::graph_reader`]) against the identity-platform and Graph stand-in of
//! `wbd-receivers`, on the embedded store, the stand-in enforcing Graph's documented limits
//! ([`GraphLimits::DOCUMENTED`]). Reports tenants read per minute, the Graph requests a read
//! makes, the CPU of the whole process per read, and how often the limits answered 429.

use std::time::{Duration, Instant};

use anyhow::{Context as _, ensure};
use chrono::Utc;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;
use wbd_receivers::Receiver;
use wbd_receivers::entra::{EntraApp, EntraState, EntraTenant, GraphLimits};
use wbd_store::{GraphConsentOutcome, OrgScope, TenantScope};

use crate::machine::process_cpu_secs;

const CLIENT_ID: &str = "5f0c1a2b-0000-4000-8000-00000000be4c";

/// How many tenants, how many read at once, and every how many a tenant is throttled once.
#[derive(Debug, Clone, Copy)]
pub struct ReadLoad {
    pub tenants: usize,
    pub concurrency: u32,
    pub throttle_every: usize,
}

#[derive(Debug, Clone)]
pub struct Measured {
    pub wall: Duration,
    pub tenants_per_min: f64,
    pub requests_per_tenant: f64,
    pub cpu_ms_per_tenant: f64,
    /// 429s the stand-in's documented limits answered: per app across all tenants, per app and
    /// tenant.
    pub refused_app: u64,
    pub refused_tenant: u64,
}

pub async fn measure(load: ReadLoad, ticks: u64) -> anyhow::Result<Measured> {
    let entra = Receiver::spawn(EntraState::new(EntraApp {
        client_id: CLIENT_ID.into(),
        client_secret: Some("bench-secret".into()),
        certificate: None,
    }))
    .await;
    entra.state.enforce_limits(GraphLimits::DOCUMENTED);
    let dir = tempfile::tempdir()?;
    let url = format!("sqlite://{}", dir.path().join("graph.db").display());
    let store = wbd_store::connect(&url, 4).await.context("the embedded store")?;
    let now = Utc::now();
    let org = OrgScope { org_id: store.create_organization("Benchmark MSP", now).await?.id };
    let mut scopes = Vec::with_capacity(load.tenants);
    for i in 0..load.tenants {
        let tenant = store.create_tenant(org, &format!("Tenant {i:04}"), None, now).await?;
        let scope = TenantScope { org_id: org.org_id, tenant_id: tenant.id };
        let entra_id = Uuid::new_v4().to_string();
        let mut data = EntraTenant::healthy(&entra_id, &format!("t{i}.example.com"));
        if load.throttle_every > 0 && i % load.throttle_every == 0 {
            data.throttle_next = 1;
        }
        entra.state.add_tenant(&entra_id, data);
        let nonce = Uuid::new_v4();
        store
            .create_graph_consent_request(scope, nonce, "bench", now + chrono::Duration::minutes(10), now)
            .await?;
        let outcome = store.complete_graph_consent(scope, nonce, Some(&entra_id), now).await?;
        ensure!(matches!(outcome, GraphConsentOutcome::Connected(_)), "not connected: {outcome:?}");
        scopes.push(scope);
    }

    let mut settings = wbd_platform::Settings::defaults();
    // The store read (else the reader's sealing key file would go beside the default wbd.db).
    settings.database.url = url.clone();
    settings.graph.client_id = CLIENT_ID.into();
    settings.graph.client_secret = "bench-secret".into();
    settings.graph.authority = entra.url();
    settings.graph.graph_base_url = format!("{}/graph", entra.url());
    settings.graph.reader_concurrency = load.concurrency;
    settings.graph.reader_poll_secs = 1;
    let cancel = CancellationToken::new();
    let mut tasks = tokio::task::JoinSet::new();
    let pid = std::process::id();
    let cpu_before = process_cpu_secs(pid, ticks).unwrap_or(0.0);
    let started = Instant::now();
    wbd_platform::graph_reader::spawn(store.clone(), &settings, cancel.clone(), &mut tasks)?;
    let deadline = started + Duration::from_secs(600);
    loop {
        let mut read = 0;
        for scope in &scopes {
            let connection = store.get_graph_connection(*scope).await?.context("a connection")?;
            read += usize::from(connection.last_read_at.is_some());
        }
        if read == scopes.len() {
            break;
        }
        ensure!(Instant::now() < deadline, "only {read} of {} tenants read in 10 minutes", scopes.len());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let wall = started.elapsed();
    let cpu = process_cpu_secs(pid, ticks).unwrap_or(0.0) - cpu_before;
    cancel.cancel();
    while tasks.join_next().await.is_some() {}
    let graph_requests = entra.requests().iter().filter(|r| r.path.starts_with("/graph/")).count();
    let n = scopes.len() as f64;
    let refusals = entra.state.limit_refusals();
    Ok(Measured {
        refused_app: refusals.get("Application").copied().unwrap_or(0),
        refused_tenant: refusals.get("Tenant_Application").copied().unwrap_or(0),
        wall,
        tenants_per_min: n / wall.as_secs_f64() * 60.0,
        requests_per_tenant: graph_requests as f64 / n,
        cpu_ms_per_tenant: cpu * 1000.0 / n,
    })
}
