//! The central Microsoft Graph reader, run by every worker host when the installation has a Graph
//! app (`[graph]`).
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

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use rand::Rng as _;
use sha2::{Digest as _, Sha256};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::Instrument as _;
use wbd_graph::GraphReader;
use wbd_store::{BatchWrite, FactWrite, GraphReadClaim, GraphReadResult, Store};
use wbd_wire::{ProbeOutput, ProbeResult};

use crate::Settings;

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

/// Starts the reader if the installation has a Graph app and `graph.reader_enabled` is on.
pub fn spawn(
    store: Arc<dyn Store>,
    settings: &Settings,
    cancel: CancellationToken,
    tasks: &mut JoinSet<()>,
) -> anyhow::Result<()> {
    let g = &settings.graph;
    let Some(app) = g.app()? else { return Ok(()) };
    if !g.reader_enabled {
        return Ok(());
    }
    let client = reqwest::Client::builder()
        .timeout(app.timeout)
        .build()
        .map_err(|e| anyhow::anyhow!("the Graph reader's HTTP client: {e}"))?;
    let schedule = Schedule {
        interval: Duration::from_secs(g.read_interval_secs),
        jitter_percent: g.read_jitter_percent,
        concurrency: g.reader_concurrency,
        poll: Duration::from_secs(g.reader_poll_secs),
        // A read of a tenant makes a dozen requests, each within the timeout, some after a
        // Retry-After: the lease outlasts a slow read.
        lease: (app.timeout * 20).max(Duration::from_secs(600)),
    };
    tracing::info!(client_id = %app.client_id, cloud = %g.cloud(), "central Graph reader on");
    let reader = GraphReader::new(app, client);
    tasks.spawn(run(store, reader, schedule, cancel).instrument(tracing::info_span!("graph_reader")));
    Ok(())
}

/// Bounded concurrency across tenants: `concurrency` reads at once, each holding one slot until
/// it ends; every poll, and every read that ends, claims only as many tenants as there are free
/// slots. A tenant that Graph
/// throttles (its read waiting out `Retry-After`) thus holds one slot while the others go on.
/// While Graph throttles the whole app, nothing new is claimed (and reads in flight wait, in
/// `wbd-graph`).
async fn run(store: Arc<dyn Store>, reader: GraphReader, schedule: Schedule, cancel: CancellationToken) {
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
        if reader.app_paused_until().is_some() {
            continue;
        }
        let free = u32::try_from(slots.available_permits()).unwrap_or(u32::MAX);
        if free == 0 {
            continue;
        }
        let claims = match store.claim_graph_reads(free, schedule.lease, Utc::now()).await {
            Ok(claims) => claims,
            Err(e) => {
                tracing::warn!(error = ?e, "claiming Graph reads failed");
                continue;
            }
        };
        for claim in claims {
            let Ok(slot) = slots.clone().try_acquire_owned() else { break };
            let span = tracing::info_span!("graph_read", org_id = %claim.scope.org_id, tenant_id = %claim.scope.tenant_id);
            let read = read_one(store.clone(), reader.clone(), claim, schedule);
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

/// Reads one claimed tenant, stores what it found, and finishes the claim.
async fn read_one(store: Arc<dyn Store>, reader: GraphReader, claim: GraphReadClaim, schedule: Schedule) {
    let started_at = Utc::now();
    let started = std::time::Instant::now();
    let report = reader.read(&claim.entra_tenant_id, claim.test_user.as_deref()).await;
    let now = Utc::now();
    let consent_gone = report.failure.as_deref().is_some_and(wbd_graph::failure_means_consent_gone);
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
        tracing::warn!(error = ?error, "the tenant no longer lets the app read it; reading stops until it reconnects");
    }
    let result = ProbeResult {
        subject: format!("graph:{}", claim.entra_tenant_id),
        observed_at: started_at,
        duration_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
        output: ProbeOutput::Graph(report),
    };
    match batch_write(&claim, &result, schedule, consent_gone, now) {
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
    let payload = serde_json::to_value(&result.output)?;
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
