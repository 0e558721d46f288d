//! The central Microsoft Graph reader, run by every worker host (`graph.reader_enabled`): it
//! reads tenants connected to the installation's Graph app (`[graph]`) and tenants that bring
//! their own app (`PUT /v1/tenants/{id}/graph/app`), with or without an installation app.
//!
//! Reads are scheduled in the database: each poll claims connected tenants whose read is due,
//! each with a lease ([`wbd_store::Store::claim_graph_reads`]), so any number of workers share the
//! tenants and no tenant is read twice in a period. A read goes through `wbd-graph` (a token per
//! tenant, cached to its expiry) and its `GraphReport` takes the very path a collector's push
//! takes ([`wbd_store::Store::ingest_batch`]: latest facts, history, `facts_version`, an outbox
//! message that has the tenant evaluated), for the tenant's collector row that stands for the
//! central reader (so evidence names it). Then the read is finished: the next one due after
//! `graph.read_interval_secs` (± `graph.read_jitter_percent`), the permissions Graph refused, the
//! error if any. A token request the identity platform refuses for the tenant (consent revoked,
//! app removed) marks the connection `consent_revoked`, and reading stops until it reconnects.
//! That read's report is still stored: it has no facts (every Graph rule stays undecided, none
//! fails falsely) but `access_refused`, which the rule `graph-access` turns into the one finding
//! "Writeback Doctor can no longer read this tenant"; the next read after reconnecting resolves
//! it. The reader's collector row is then not expected to report (no `collector-silent` finding
//! beside it).
//!
//! **Whose problem a refusal is.** A token refused for a tenant's consent (AADSTS65001, 700016,
//! 7000229, `unauthorized_client`) is that tenant's. A token refused for the app's own credential
//! (a wrong or expired secret, an assertion the app registration cannot verify: AADSTS7000215,
//! 7000222, 700027, `invalid_client`, see [`wbd_graph::token_refusal`]) is the app's: with a
//! tenant's own app that is still that tenant's problem (state `credential_invalid`, the
//! `graph-access` finding, reading stops until the app is set again), but with the installation's
//! app every tenant would be refused alike. Then no tenant is marked revoked and no finding opens:
//! the problem is recorded once for the installation
//! ([`wbd_store::Store::record_graph_app_problem`], shown in `/healthz` and on every tenant read
//! with that app), logged, and no tenant is read with the app until it is tried again
//! [`APP_PROBLEM_RETRY`] later; the first token it gets clears it.
//!
//! **Tokens.** Each app has its own [`GraphReader`] and so its own token cache: the installation's
//! one reader, and one per tenant with an own app (made again whenever the app is set), so an
//! own app's token is never used for another tenant, nor the installation's for it.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use rand::Rng as _;
use sha2::{Digest as _, Sha256};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::Instrument as _;
use wbd_graph::{GraphReader, TokenRefusal};
use wbd_notify::sealing::Sealer;
use wbd_store::{BatchWrite, FactWrite, GraphReadClaim, GraphReadResult, Store, TenantId};
use wbd_wire::{ProbeOutput, ProbeResult};

use crate::Settings;
use crate::graph_apps;
use crate::settings::GraphSettings;

/// How reads are scheduled.
#[derive(Debug, Clone, Copy)]
struct Schedule {
    interval: Duration,
    jitter_percent: u8,
    concurrency: u32,
    poll: Duration,
    lease: Duration,
}

/// How long Graph is left alone after it kept answering 429/503.
const THROTTLE_BACKOFF: TimeDelta = TimeDelta::minutes(5);

/// How long no tenant is read with the installation's app after its credential was refused;
/// then one round of reads tries it again.
pub const APP_PROBLEM_RETRY: TimeDelta = TimeDelta::minutes(10);

/// The apps reads go through: the installation's, and the tenants' own.
struct Readers {
    installation: Option<GraphReader>,
    /// A reader per tenant with an own app, for the sealed credential it was made from: setting
    /// the app again seals it afresh (a new random nonce, even for the same credential), so a new
    /// credential, another app, or an app removed and set again gets a new reader and so a new
    /// token cache. (Its `version` would not do: it starts at 1 again after a removal.)
    own: std::sync::Mutex<HashMap<TenantId, (Vec<u8>, GraphReader)>>,
    client: reqwest::Client,
    sealer: Option<Arc<Sealer>>,
    graph: GraphSettings,
}

impl Readers {
    /// The reader of the claimed tenant's app.
    fn reader_for(&self, claim: &GraphReadClaim) -> Result<GraphReader, String> {
        let Some(stored) = &claim.own_app else {
            return self
                .installation
                .clone()
                .ok_or_else(|| "this server has no installation Graph app (graph.client_id)".to_owned());
        };
        let mut own = self.own.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some((sealed, reader)) = own.get(&claim.scope.tenant_id)
            && *sealed == stored.sealed_credential
        {
            return Ok(reader.clone());
        }
        let sealer = self.sealer.as_deref().ok_or_else(|| graph_apps::OwnAppError::NoKey.to_string())?;
        let credential =
            graph_apps::open(sealer, claim.scope, &stored.sealed_credential).map_err(|e| e.to_string())?;
        let app = graph_apps::graph_app(stored, &credential, &self.graph).map_err(|e| e.to_string())?;
        let reader = GraphReader::new(app, self.client.clone());
        own.insert(claim.scope.tenant_id, (stored.sealed_credential.clone(), reader.clone()));
        Ok(reader)
    }
}

/// Starts the reader if `graph.reader_enabled` is on and there is an app it could read with: the
/// installation's, or tenants' own (whose credentials need the sealing key).
pub fn spawn(
    store: Arc<dyn Store>,
    settings: &Settings,
    cancel: CancellationToken,
    tasks: &mut JoinSet<()>,
) -> anyhow::Result<()> {
    let g = &settings.graph;
    if !g.reader_enabled {
        return Ok(());
    }
    let installation = g.app()?;
    let sealer = wbd_delivery::secrets::sealer_from_settings(&settings.delivery, &settings.database.url)?
        .map(Arc::new);
    if installation.is_none() && sealer.is_none() {
        return Ok(());
    }
    let timeout = Duration::from_secs(g.timeout_secs.max(1));
    let client = g.http_client()?;
    let schedule = Schedule {
        interval: Duration::from_secs(g.read_interval_secs),
        jitter_percent: g.read_jitter_percent,
        concurrency: g.reader_concurrency,
        poll: Duration::from_secs(g.reader_poll_secs),
        // A read of a tenant makes a dozen requests, each within the timeout, some after a
        // Retry-After: the lease outlasts a slow read.
        lease: (timeout * 20).max(Duration::from_secs(600)),
    };
    match &installation {
        Some(app) => {
            tracing::info!(client_id = %app.client_id, cloud = %g.cloud(), "central Graph reader on")
        }
        None => tracing::info!("central Graph reader on, for tenants with their own app only"),
    }
    let readers = Readers {
        installation: installation.map(|app| GraphReader::new(app, client.clone())),
        own: std::sync::Mutex::default(),
        client,
        sealer,
        graph: g.clone(),
    };
    tasks.spawn(
        run(store, Arc::new(readers), schedule, cancel).instrument(tracing::info_span!("graph_reader")),
    );
    Ok(())
}

/// Bounded concurrency across tenants: `concurrency` reads at once, each holding one slot until
/// it ends; every poll, and every read that ends, claims only as many tenants as there are free
/// slots. A tenant that Graph
/// throttles (its read waiting out `Retry-After`) thus holds one slot while the others go on.
/// While Graph throttles the whole app, nothing new is claimed (and reads in flight wait, in
/// `wbd-graph`).
async fn run(store: Arc<dyn Store>, readers: Arc<Readers>, schedule: Schedule, cancel: CancellationToken) {
    let slots = Arc::new(tokio::sync::Semaphore::new(schedule.concurrency as usize));
    let mut tick = tokio::time::interval(schedule.poll);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut reads = JoinSet::new();
    loop {
        tokio::select! {
            () = cancel.cancelled() => {
                reads.shutdown().await;
                return;
            }
            _ = tick.tick() => {}
            // A read ended: its slot goes to the next due tenant now, not at the next tick (else
            // a worker could read at most `concurrency` tenants per poll interval).
            Some(_) = reads.join_next(), if !reads.is_empty() => {}
        }
        // While Graph throttles the installation's app, its tenants wait; tenants with their own
        // app go on.
        let installation = readers.installation.as_ref().is_some_and(|r| r.app_paused_until().is_none());
        let free = u32::try_from(slots.available_permits()).unwrap_or(u32::MAX);
        if free == 0 {
            continue;
        }
        let claims = match store.claim_graph_reads(free, schedule.lease, installation, Utc::now()).await {
            Ok(claims) => claims,
            Err(e) => {
                tracing::warn!(error = ?e, "claiming Graph reads failed");
                continue;
            }
        };
        for claim in claims {
            let Ok(slot) = slots.clone().try_acquire_owned() else { break };
            let span = tracing::info_span!("graph_read", org_id = %claim.scope.org_id, tenant_id = %claim.scope.tenant_id);
            let read = read_one(store.clone(), readers.clone(), claim, schedule);
            reads.spawn(
                async move {
                    read.await;
                    drop(slot);
                }
                .instrument(span),
            );
        }
    }
}

/// Finishes a read that did not get as far as reading: `error` says why, the next try is due at
/// `next_read_at`, nothing else changes (the tenant is not marked revoked).
async fn finish_unread(
    store: &dyn Store,
    claim: &GraphReadClaim,
    error: String,
    next_read_at: DateTime<Utc>,
) {
    let result = GraphReadResult { error: Some(error), next_read_at, ..GraphReadResult::default() };
    if let Err(e) = store.finish_graph_read(claim.scope, claim.lease_id, &result, Utc::now()).await {
        tracing::warn!(error = ?e, "finishing the Graph read failed");
    }
}

/// Reads one claimed tenant, stores what it found, and finishes the claim.
async fn read_one(store: Arc<dyn Store>, readers: Arc<Readers>, claim: GraphReadClaim, schedule: Schedule) {
    let own_app = claim.own_app.is_some();
    let reader = match readers.reader_for(&claim) {
        Ok(reader) => reader,
        Err(e) => {
            tracing::warn!(error = %e, own_app, "the tenant's Graph app cannot be read with");
            finish_unread(store.as_ref(), &claim, e, Utc::now() + jittered(schedule)).await;
            return;
        }
    };
    let started_at = Utc::now();
    let started = std::time::Instant::now();
    let mut report = reader.read(&claim.entra_tenant_id, claim.test_user.as_deref()).await;
    report.own_app = own_app;
    let now = Utc::now();
    let refusal = report.failure.as_deref().and_then(wbd_graph::token_refusal);
    if !own_app {
        match refusal {
            // The installation's credential: the installation's problem, not this tenant's.
            Some(TokenRefusal::CredentialInvalid(code)) => {
                let failure = report.failure.clone().unwrap_or_default();
                let retry_at = now + APP_PROBLEM_RETRY;
                match store.record_graph_app_problem(&failure, retry_at, now).await {
                    Ok(true) => tracing::error!(
                        code,
                        error = %failure,
                        retry_minutes = APP_PROBLEM_RETRY.num_minutes(),
                        "the identity platform refused the installation's Graph app for its credential                          (graph.client_secret or graph.certificate_file): no tenant is read with it until                          it is accepted again"
                    ),
                    Ok(false) => {
                        tracing::warn!(code, "the installation's Graph app credential is still refused")
                    }
                    Err(e) => {
                        tracing::warn!(error = ?e, "recording the installation's Graph app problem failed")
                    }
                }
                let error = format!(
                    "the installation's Graph app was refused for its credential, not for this tenant: {failure}"
                );
                finish_unread(store.as_ref(), &claim, error, retry_at).await;
                return;
            }
            // A token came: the installation's credential is fine (again).
            _ if report.failure.is_none() => match store.clear_graph_app_problem().await {
                Ok(true) => tracing::info!("the installation's Graph app credential is accepted again"),
                Ok(false) => {}
                Err(e) => tracing::warn!(error = ?e, "clearing the installation's Graph app problem failed"),
            },
            _ => {}
        }
    }
    let consent_gone = matches!(refusal, Some(TokenRefusal::ConsentGone(_)));
    // Only an own app gets this far with its credential refused: the tenant's own problem.
    let credential_invalid = matches!(refusal, Some(TokenRefusal::CredentialInvalid(_)));
    let stopped = consent_gone || credential_invalid;
    let throttled = report.errors.iter().any(|e| matches!(e.status, Some(429 | 503)));
    let missing: Vec<String> =
        wbd_graph::permissions::missing_permissions(&report).into_iter().map(str::to_owned).collect();
    let mut error = report.failure.clone().or_else(|| {
        (!report.errors.is_empty()).then(|| {
            report.errors.iter().map(|e| format!("{}: {}", e.call, e.message)).collect::<Vec<_>>().join("; ")
        })
    });
    if consent_gone {
        reader.forget_token(&claim.entra_tenant_id).await;
        tracing::warn!(error = ?error, own_app, "the tenant no longer lets the app read it; reading stops until it reconnects");
    }
    if credential_invalid {
        error = error.map(|e| format!("the app's credential is invalid or expired: {e}"));
        tracing::warn!(error = ?error, "the tenant's own Graph app was refused for its credential; reading stops until the app is set again");
    }
    let result = ProbeResult {
        subject: format!("graph:{}", claim.entra_tenant_id),
        observed_at: started_at,
        duration_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
        output: ProbeOutput::Graph(report),
    };
    match batch_write(&claim, &result, schedule, stopped, now) {
        Ok(write) => {
            if let Err(e) = store.ingest_batch(claim.scope, &write).await {
                tracing::warn!(error = ?e, "storing the Graph facts failed");
                error = Some(format!("storing the facts failed: {e}"));
            }
        }
        Err(e) => error = Some(format!("the report cannot be stored: {e}")),
    }
    let throttled_until = throttled.then(|| now + THROTTLE_BACKOFF);
    let next_read_at = throttled_until.unwrap_or_else(|| now + jittered(schedule));
    let result = GraphReadResult {
        missing_permissions: missing,
        error,
        throttled_until,
        consent_revoked: consent_gone,
        credential_invalid,
        next_read_at,
    };
    match store.finish_graph_read(claim.scope, claim.lease_id, &result, now).await {
        Ok(true) => tracing::info!(next_read_at = %next_read_at, "Graph read done"),
        Ok(false) => {
            tracing::warn!("the Graph read's lease ran out before it finished; another reader has the tenant")
        }
        Err(e) => tracing::warn!(error = ?e, "finishing the Graph read failed"),
    }
}

/// The write that stores a read as a collector's push is stored: one result, for the collector
/// row of the central reader, with the digest a push's result gets (timings left out).
/// `stopped`: this is the last read until the tenant reconnects.
fn batch_write(
    claim: &GraphReadClaim,
    result: &ProbeResult,
    schedule: Schedule,
    stopped: bool,
    now: DateTime<Utc>,
) -> Result<BatchWrite, serde_json::Error> {
    let payload = serde_json::to_string(&result.output)?;
    let timings = serde_json::to_string(&result.output.timings())?;
    let stable = serde_json::to_vec(&result.output.without_timings())?;
    let body = serde_json::to_vec(result)?;
    let interval = u32::try_from(schedule.interval.as_secs()).unwrap_or(u32::MAX);
    // Silent after three missed reads: a reader that stops unexpectedly is itself a finding, as
    // a collector that stops reporting is. One that stopped because the tenant refused the app
    // is expected to stay quiet: `graph-access` is that tenant's one finding.
    let silence = if stopped {
        TimeDelta::days(365 * 100)
    } else {
        TimeDelta::from_std(schedule.interval * 3).unwrap_or(TimeDelta::days(1))
    };
    Ok(BatchWrite {
        collector_id: claim.collector_id,
        batch_id: uuid::Uuid::now_v7(),
        body_hash: hex::encode(Sha256::digest(&body)),
        results: vec![FactWrite {
            probe: result.output.kind().as_str().to_owned(),
            subject: result.subject.clone(),
            observed_at: result.observed_at,
            payload,
            timings,
            digest: hex::encode(Sha256::digest(&stable)),
        }],
        received_at: now,
        collector_version: "central".to_owned(),
        collector_hostname: "graph.microsoft.com".to_owned(),
        collector_os: String::new(),
        push_interval_secs: interval,
        spool_dropped: 0,
        silent_after: now + silence,
        traceparent: None,
    })
}

/// The interval ± its jitter, so tenants connected together drift apart.
fn jittered(schedule: Schedule) -> TimeDelta {
    let base = schedule.interval.as_secs_f64();
    let spread = base * f64::from(schedule.jitter_percent) / 100.0;
    let secs = if spread > 0.0 { base + rand::rng().random_range(-spread..=spread) } else { base };
    TimeDelta::milliseconds((secs.max(1.0) * 1000.0) as i64)
}
