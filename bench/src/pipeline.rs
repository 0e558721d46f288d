//! The product under load: simulated collectors push to `wbd-api`, and the benchmark follows
//! the evaluation through the database.
//!
//! Throughput run (closed loop): `concurrency` pushes in flight at all times, each task cycling
//! through its own collectors, for a warm-up and then the measured window. Figures:
//! - *accepted*: results in batches answered 202 during the window, per second;
//! - *evaluated*: every accepted batch adds one to its tenant's `facts_version`, and an
//!   evaluation records the `facts_version` it covered as `evaluated_facts_version`, so
//!   Σ evaluated_facts_version × results per batch counts the results that an evaluation has
//!   covered. Growth of that sum during the window, per second;
//! - *ingest and evaluate*: after the window the load stops and the benchmark waits until every
//!   accepted batch is evaluated (the drain). The sustained end-to-end rate is the results
//!   accepted during the window over the window plus the drain: a pipeline that accepts fast
//!   but evaluates slowly pays for its backlog here. (The drain also evaluates what the warm-up
//!   left behind, so this is a lower bound.)
//!
//! Latency run (open loop, rate-limited): each collector pushes on a fixed schedule so that the
//! whole fleet sends `rate` results per second. Every batch carries a marker endpoint whose error
//! text names the batch's sequence number, so the tenant's `endpoint-reachable` finding for it
//! changes with every batch. A poller reads those findings every few milliseconds; a batch's
//! accept-to-finding latency is from its 202 to the first poll that shows its sequence number
//! (or a later one: the worker may cover several batches with one evaluation).

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use tokio::sync::Mutex;
use uuid::Uuid;

use crate::deploy::{DbView, Deployment, Versions};
use crate::machine::{CpuSnapshot, CpuUse};
use crate::sim::{PushOutcome, SimCollector};
use crate::stats::{LatencySummary, Samples, per_second};
use crate::workload::marker_sequence;

/// How long the benchmark waits for the evaluation to catch up after a throughput window.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(180);

#[derive(Debug, Clone)]
pub struct ThroughputRun {
    pub warmup: Duration,
    pub window: Duration,
    pub concurrency: usize,
}

#[derive(Debug, Clone)]
pub struct ThroughputFigures {
    pub window: Duration,
    pub results_per_batch: usize,
    pub accepted_batches: u64,
    pub accepted_results: u64,
    pub refused: HashMap<String, u64>,
    pub accepted_results_per_s: f64,
    pub evaluated_results_per_s: f64,
    pub backlog_results_at_end: i64,
    pub drain: Option<Duration>,
    pub e2e_results_per_s: Option<f64>,
    pub ingest_latency: Option<LatencySummary>,
    pub evaluations: Option<i64>,
    /// Batches evaluated from the window's start to the drain's end.
    pub batches_evaluated: i64,
    pub cpu: CpuUse,
    /// (seconds since the window started, Σ facts_version, Σ evaluated_facts_version).
    pub timeline: Vec<(f64, i64, i64)>,
}

/// Drives the throughput run; `results_per_batch` must be what every collector's batch holds.
pub async fn throughput(
    deployment: &mut Deployment,
    client: &reqwest::Client,
    collectors: Vec<SimCollector>,
    results_per_batch: usize,
    run: &ThroughputRun,
    ticks: u64,
) -> anyhow::Result<ThroughputFigures> {
    let concurrency = run.concurrency.clamp(1, collectors.len().max(1));
    let mut groups: Vec<Vec<SimCollector>> = (0..concurrency).map(|_| Vec::new()).collect();
    for (i, c) in collectors.into_iter().enumerate() {
        groups[i % concurrency].push(c);
    }
    let started = Instant::now();
    let window_start = started + run.warmup;
    let window_end = window_start + run.window;
    // Bounded in count as well as time: no run pushes more than this many batches per task.
    let max_pushes = (run.warmup + run.window).as_secs().max(1) * 2_000;

    let mut tasks = Vec::new();
    for (i, mut group) in groups.into_iter().enumerate() {
        let client = client.clone();
        let base = deployment.bases[i % deployment.bases.len()].clone();
        tasks.push(tokio::spawn(async move {
            let mut outcomes: Vec<PushOutcome> = Vec::new();
            let mut next = 0usize;
            while Instant::now() < window_end && (outcomes.len() as u64) < max_pushes {
                let index = next % group.len();
                let collector = &mut group[index];
                next += 1;
                let (body, results, _) = collector.next_body(false)?;
                outcomes.push(collector.push(&client, &base, body, results).await?);
            }
            anyhow::Ok(outcomes)
        }));
    }

    // Window start: sample versions and CPU.
    tokio::time::sleep_until(window_start.into()).await;
    let cpu_start = CpuSnapshot::take();
    let at_start = deployment.db.versions().await?;
    let applied_start = deployment.db.applied_evaluations().await.ok();
    let mut timeline = vec![(0.0, at_start.facts, at_start.evaluated)];
    while Instant::now() + Duration::from_secs(1) < window_end {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let v = deployment.db.versions().await?;
        timeline.push((window_start.elapsed().as_secs_f64(), v.facts, v.evaluated));
    }
    tokio::time::sleep_until(window_end.into()).await;
    let at_end = deployment.db.versions().await?;
    let cpu = cpu_start.until(&CpuSnapshot::take(), ticks);
    timeline.push((window_start.elapsed().as_secs_f64(), at_end.facts, at_end.evaluated));

    let mut outcomes = Vec::new();
    for task in tasks {
        outcomes.extend(task.await.context("a load task panicked")??);
    }
    deployment.check_alive()?;

    // Drain: wait until everything accepted (by now, in-flight pushes included) is evaluated.
    let total = deployment.db.versions().await?;
    let drain_started = Instant::now();
    let drained = wait_evaluated(&deployment.db, total.facts, DRAIN_TIMEOUT).await?;
    let drain = drained.then(|| drain_started.elapsed());
    // The drain is measured from the window's end; in-flight pushes finished in between.
    let drain_from_window_end = drain.map(|d| d + drain_started.duration_since(window_end));
    let applied_end = deployment.db.applied_evaluations().await.ok();

    let in_window = |o: &&PushOutcome| o.answered_at >= window_start && o.answered_at <= window_end;
    let mut latency = Samples::new();
    let mut accepted_batches = 0u64;
    let mut accepted_results = 0u64;
    let mut refused: HashMap<String, u64> = HashMap::new();
    for o in outcomes.iter().filter(in_window) {
        if o.accepted() {
            accepted_batches += 1;
            accepted_results += o.results as u64;
            latency.push(o.latency);
        } else {
            let key = o.status.map(|s| s.as_u16().to_string()).unwrap_or_else(|| "transport error".into());
            *refused.entry(key).or_default() += 1;
        }
    }
    let per_batch = results_per_batch as f64;
    let evaluated_in_window = (at_end.evaluated - at_start.evaluated) as f64 * per_batch;
    // Only what was accepted in the window counts, while the time runs until everything (also
    // the warm-up's backlog) is evaluated: a lower bound of the sustainable rate.
    let e2e = drain_from_window_end.map(|drain| per_second(accepted_results as f64, run.window + drain));
    Ok(ThroughputFigures {
        window: run.window,
        results_per_batch,
        accepted_batches,
        accepted_results,
        refused,
        accepted_results_per_s: per_second(accepted_results as f64, run.window),
        evaluated_results_per_s: per_second(evaluated_in_window, run.window),
        backlog_results_at_end: (at_end.facts - at_end.evaluated) * results_per_batch as i64,
        drain: drain_from_window_end,
        e2e_results_per_s: e2e,
        ingest_latency: latency.summary(),
        evaluations: applied_start.zip(applied_end).map(|(a, b)| b - a),
        batches_evaluated: deployment.db.versions().await?.evaluated - at_start.evaluated,
        cpu,
        timeline,
    })
}

/// Waits until Σ evaluated_facts_version reaches `facts`; false on timeout.
pub async fn wait_evaluated(db: &DbView, facts: i64, timeout: Duration) -> anyhow::Result<bool> {
    let deadline = Instant::now() + timeout;
    loop {
        let Versions { evaluated, .. } = db.versions().await?;
        if evaluated >= facts {
            return Ok(true);
        }
        if Instant::now() >= deadline {
            return Ok(false);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[derive(Debug, Clone)]
pub struct LatencyRun {
    pub rate_results_per_s: f64,
    pub window: Duration,
    pub poll_every: Duration,
}

#[derive(Debug, Clone)]
pub struct LatencyFigures {
    pub achieved_results_per_s: f64,
    pub accepted_batches: u64,
    pub refused: u64,
    /// Pushes that started more than 100 ms after their slot (the client fell behind).
    pub late_starts: u64,
    pub ingest: Option<LatencySummary>,
    pub accept_to_finding: Option<LatencySummary>,
    /// Accepted batches whose finding did not show within the wait.
    pub unseen: u64,
    /// How many times the poller read the findings.
    pub polls: u64,
    pub cpu: CpuUse,
}

/// A batch waiting to be seen in its tenant's finding.
#[derive(Debug, Clone, Copy)]
struct Pending {
    sequence: u64,
    accepted_at: Instant,
}

/// Before the measured run: pushes marker batches, one at a time per collector, until every
/// marker finding is open. A rule may need several failing evaluations in a row before it opens
/// a finding (flap damping: `endpoint-reachable` opens after two), so the first batches of a
/// marker would show late by design; after this every batch only changes an open finding.
async fn open_marker_findings(
    deployment: &Deployment,
    client: &reqwest::Client,
    collectors: &mut [SimCollector],
) -> anyhow::Result<()> {
    let base = deployment.bases[0].clone();
    let deadline = Instant::now() + Duration::from_secs(60);
    // Bounded: at most 10 rounds.
    for _ in 0..10 {
        let open: std::collections::HashSet<Uuid> = deployment
            .db
            .marker_errors(&collectors.iter().map(|c| c.tenant_id).collect::<Vec<_>>())
            .await?
            .into_iter()
            .map(|(tenant, _)| tenant)
            .collect();
        let waiting: Vec<&mut SimCollector> =
            collectors.iter_mut().filter(|c| !open.contains(&c.tenant_id)).collect();
        if waiting.is_empty() {
            return Ok(());
        }
        anyhow::ensure!(Instant::now() < deadline, "marker findings did not open within 60 s");
        let mut before = deployment.db.versions().await?;
        for collector in waiting {
            let (body, results, _) = collector.next_body(true)?;
            collector.push(client, &base, body, results).await?;
            before.facts += 1;
        }
        // Wait until those batches are evaluated, so the next round is a new evaluation.
        wait_evaluated(&deployment.db, before.facts, Duration::from_secs(30)).await?;
    }
    anyhow::bail!("marker findings did not open after 10 rounds of batches")
}

/// Drives the rate-limited run with markers (see the module docs).
pub async fn latency(
    deployment: &mut Deployment,
    client: &reqwest::Client,
    collectors: Vec<SimCollector>,
    run: &LatencyRun,
    ticks: u64,
) -> anyhow::Result<LatencyFigures> {
    anyhow::ensure!(!collectors.is_empty(), "the latency run needs collectors");
    let mut collectors = collectors;
    open_marker_findings(deployment, client, &mut collectors).await?;
    let results_per_batch = collectors[0].site.results_per_cycle() as f64;
    let batches_per_s = run.rate_results_per_s / results_per_batch;
    // Every collector pushes every `period`; collector i at offset i / batches_per_s.
    let period = Duration::from_secs_f64(collectors.len() as f64 / batches_per_s);
    let tenants: Vec<Uuid> = collectors.iter().map(|c| c.tenant_id).collect();
    let pending: Arc<Mutex<HashMap<Uuid, Vec<Pending>>>> = Arc::new(Mutex::new(HashMap::new()));
    let seen: Arc<Mutex<Samples>> = Arc::new(Mutex::new(Samples::new()));

    let started = Instant::now() + Duration::from_millis(200);
    let end = started + run.window;
    let cpu_start = CpuSnapshot::take();
    let running = Arc::new(AtomicUsize::new(collectors.len()));
    let mut tasks = Vec::new();
    for (i, mut collector) in collectors.into_iter().enumerate() {
        let client = client.clone();
        let base = deployment.bases[i % deployment.bases.len()].clone();
        let pending = pending.clone();
        let running = running.clone();
        let offset = Duration::from_secs_f64(i as f64 / batches_per_s);
        tasks.push(tokio::spawn(async move {
            // Counted down however the task ends, so the poller never waits for a dead task.
            struct Done(Arc<AtomicUsize>);
            impl Drop for Done {
                fn drop(&mut self) {
                    self.0.fetch_sub(1, Ordering::SeqCst);
                }
            }
            let _done = Done(running);
            let mut outcomes = Vec::new();
            let mut late = 0u64;
            for k in 0u32.. {
                let slot = started + offset + period * k;
                // Bounded in time and in count.
                if slot >= end || k >= 1_000_000 {
                    break;
                }
                tokio::time::sleep_until(slot.into()).await;
                if slot.elapsed() > Duration::from_millis(100) {
                    late += 1;
                }
                let (body, results, sequence) = collector.next_body(true)?;
                let outcome = collector.push(&client, &base, body, results).await?;
                if outcome.accepted() {
                    pending
                        .lock()
                        .await
                        .entry(collector.tenant_id)
                        .or_default()
                        .push(Pending { sequence, accepted_at: outcome.answered_at });
                }
                outcomes.push(outcome);
            }
            anyhow::Ok((outcomes, late))
        }));
    }

    // The poller runs until every load task ended and every accepted batch was seen, or a
    // timeout.
    let poll_deadline = end + Duration::from_secs(30);
    let poller = {
        let pending = pending.clone();
        let seen = seen.clone();
        let running = running.clone();
        let poll_every = run.poll_every;
        let db = &deployment.db;
        async move {
            let mut polls = 0u64;
            loop {
                let rows = db.marker_errors(&tenants).await?;
                let now = Instant::now();
                polls += 1;
                let mut pending = pending.lock().await;
                for (tenant, error) in rows {
                    let Some(shown) = marker_sequence(&error) else { continue };
                    if let Some(waiting) = pending.get_mut(&tenant) {
                        let mut seen = seen.lock().await;
                        waiting.retain(|p| {
                            if p.sequence <= shown {
                                seen.push(now.saturating_duration_since(p.accepted_at));
                                false
                            } else {
                                true
                            }
                        });
                    }
                }
                let outstanding: usize = pending.values().map(Vec::len).sum();
                drop(pending);
                let load_done = running.load(Ordering::SeqCst) == 0;
                if (load_done && outstanding == 0) || now >= poll_deadline {
                    return anyhow::Ok(polls);
                }
                tokio::time::sleep(poll_every).await;
            }
        }
    };
    let polls = poller.await?;
    let cpu = cpu_start.until(&CpuSnapshot::take(), ticks);

    let mut ingest = Samples::new();
    let mut accepted_batches = 0u64;
    let mut accepted_results = 0u64;
    let mut refused = 0u64;
    let mut late_starts = 0u64;
    for task in tasks {
        let (outcomes, late) = task.await.context("a load task panicked")??;
        late_starts += late;
        for o in outcomes {
            if o.accepted() {
                accepted_batches += 1;
                accepted_results += o.results as u64;
                ingest.push(o.latency);
            } else {
                refused += 1;
            }
        }
    }
    deployment.check_alive()?;
    let unseen: usize = pending.lock().await.values().map(Vec::len).sum();
    let seen = seen.lock().await.clone();
    Ok(LatencyFigures {
        achieved_results_per_s: per_second(accepted_results as f64, run.window),
        accepted_batches,
        refused,
        late_starts,
        ingest: ingest.summary(),
        accept_to_finding: seen.summary(),
        unseen: unseen as u64,
        polls,
        cpu,
    })
}
