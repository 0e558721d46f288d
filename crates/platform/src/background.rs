//! The background work of a worker host: `wbd-worker` runs it alone, `wbd-api` runs it in
//! process in the embedded deployment.
//!
//! - [`consume`] takes messages from the queue (RabbitMQ or the local outbox queue), evaluates
//!   the tenant they name ([`wbd_findings::evaluate_tenant`]) and acknowledges only after the
//!   evaluation is committed. Each message carries the `traceparent` of the ingest that produced
//!   it, so one trace shows ingest and evaluation.
//! - [`sweep_silent_collectors`] periodically evaluates tenants whose collectors missed their
//!   pushes, and tenants with a suppression that ran out: neither produces a message, so time
//!   has to.
//! - The delivery engine ([`wbd_delivery::engine`]) carries finding events to integrations.
//! - The retention sweep ([`crate::retention`]) removes what is older than `[retention]` says.
//! - The central Graph reader ([`crate::graph_reader`]) reads connected tenants as they fall due.
//!
//! Evaluation is idempotent: a redelivered message is recognised by its id (recorded in the same
//! transaction as the findings it changed), and an evaluation over unchanged facts changes
//! nothing.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::Instrument as _;
use wbd_findings::{DampingDefaults, EvaluationOutcome, evaluate_tenant};
use wbd_queue::{Delivery, Queue};
use wbd_store::{MessageKind, Store};

use crate::Settings;

/// The server-wide flap-damping defaults of `settings` (`[rules]`).
pub fn damping_defaults(settings: &Settings) -> DampingDefaults {
    DampingDefaults { open_after: settings.rules.open_after, resolve_after: settings.rules.resolve_after }
}

/// Starts the consumers, the silence and retention sweeps and (unless `delivery.enabled` is off) the delivery
/// of finding events to integrations; they stop when `cancel` fires. Fails on unusable delivery
/// settings (the secrets key, the network allow-list).
pub fn spawn(
    store: Arc<dyn Store>,
    queue: Queue,
    settings: &Settings,
    cancel: CancellationToken,
) -> anyhow::Result<JoinSet<()>> {
    let mut tasks = JoinSet::new();
    let damping = damping_defaults(settings);
    for n in 0..settings.worker.concurrency {
        tasks.spawn(
            consume(store.clone(), queue.clone(), damping, cancel.clone())
                .instrument(tracing::info_span!("consumer", n)),
        );
    }
    if settings.delivery.enabled {
        wbd_delivery::engine::spawn(
            store.clone(),
            &settings.delivery,
            &settings.database.url,
            cancel.clone(),
            &mut tasks,
        )?;
    }
    crate::graph_reader::spawn(store.clone(), settings, cancel.clone(), &mut tasks)?;
    let every = Duration::from_secs(settings.worker.silence_sweep_secs);
    tasks.spawn(sweep_silent_collectors(store.clone(), damping, every, cancel.clone()));
    tasks.spawn(crate::retention::run(store, settings.retention.clone(), cancel));
    Ok(tasks)
}

/// Consumers of this process that are connected and taking messages (a worker's readiness).
static ACTIVE_CONSUMERS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// How many of this process's consumers are connected and taking messages.
pub fn active_consumers() -> usize {
    ACTIVE_CONSUMERS.load(std::sync::atomic::Ordering::Relaxed)
}

/// Counts a consumer as active while it lives.
struct ActiveConsumer;

impl ActiveConsumer {
    fn new() -> Self {
        ACTIVE_CONSUMERS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        ActiveConsumer
    }
}

impl Drop for ActiveConsumer {
    fn drop(&mut self) {
        ACTIVE_CONSUMERS.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
    }
}

/// Runs one consumer until cancelled.
pub async fn consume(
    store: Arc<dyn Store>,
    queue: Queue,
    damping: DampingDefaults,
    cancel: CancellationToken,
) {
    let mut consumer = loop {
        match queue.consumer(cancel.clone()).await {
            Ok(c) => break c,
            Err(e) => {
                tracing::error!(error = %e, "cannot start consuming; retrying");
                tokio::select! {
                    () = cancel.cancelled() => return,
                    () = tokio::time::sleep(Duration::from_secs(2)) => {}
                }
            }
        }
    };
    let _active = ActiveConsumer::new();
    while let Some(delivery) = consumer.next().await {
        handle(store.as_ref(), damping, delivery, &cancel).await;
    }
}

/// Evaluates the tenant a delivery names, then acknowledges it. A store failure is retried
/// here with backoff rather than sent back to the queue, so a database outage does not burn
/// through the delivery limit and dead-letter good messages.
async fn handle(store: &dyn Store, damping: DampingDefaults, delivery: Delivery, cancel: &CancellationToken) {
    let message = delivery.message.clone();
    let span = tracing::info_span!(
        "evaluate",
        message_id = %message.id,
        org_id = %message.org_id,
        tenant_id = %message.tenant_id,
        redelivered = delivery.redelivered,
    );
    if let Some(tp) = &message.traceparent {
        wbd_trace::continue_trace(&span, tp);
    }
    async {
        match &message.kind {
            MessageKind::BatchIngested { batch_id, .. } => tracing::debug!(%batch_id, "evaluating a new batch"),
            MessageKind::RulesChanged => tracing::debug!("evaluating under changed rules"),
        }
        let mut backoff = Duration::from_millis(200);
        for attempt in 1.. {
            let started = std::time::Instant::now();
            let result = evaluate_tenant(store, damping, message.scope(), Some(message.id), Utc::now(), true).await;
            count_evaluation(&result, started, message.created_at);
            match result {
                Ok(outcome) => {
                    log_outcome(&outcome);
                    if let Err(e) = delivery.ack().await {
                        // The broker will redeliver; the message id makes that harmless.
                        tracing::warn!(error = %e, "ack failed after evaluation");
                    }
                    return;
                }
                Err(e) if attempt >= MAX_IN_PROCESS_ATTEMPTS => {
                    // Persistent failure: hand it back; the queue's delivery limit decides
                    // when it is dead-lettered.
                    tracing::error!(error = ?e, attempt, "evaluation keeps failing; returning the message to the queue");
                    let _ = delivery.retry_later().await;
                    return;
                }
                Err(e) => {
                    tracing::error!(error = ?e, attempt, "evaluation failed; retrying");
                    tokio::select! {
                        () = cancel.cancelled() => {
                            // Leave it to be redelivered to whoever runs next.
                            let _ = delivery.retry_later().await;
                            return;
                        }
                        () = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(10));
                }
            }
        }
    }
    .instrument(span)
    .await;
}

/// Store failures retried in process before a message goes back to the queue.
const MAX_IN_PROCESS_ATTEMPTS: u32 = 8;

/// Evaluation metrics: how long it took, how long after its batch was stored it was committed,
/// and what came of it (`applied`, `unchanged` when nothing was left to do, `failed`).
fn count_evaluation<E>(
    result: &Result<EvaluationOutcome, E>,
    started: std::time::Instant,
    written_at: chrono::DateTime<Utc>,
) {
    let outcome = match result {
        Ok(EvaluationOutcome::Applied { .. }) => {
            metrics::histogram!("wbd_evaluation_duration_seconds").record(started.elapsed().as_secs_f64());
            let lag = (Utc::now() - written_at).as_seconds_f64().max(0.0);
            metrics::histogram!("wbd_evaluation_lag_seconds").record(lag);
            "applied"
        }
        Ok(_) => "unchanged",
        Err(_) => "failed",
    };
    metrics::counter!("wbd_evaluations_total", "outcome" => outcome).increment(1);
}

fn log_outcome(outcome: &EvaluationOutcome) {
    tracing::info!(?outcome, "evaluation done");
}

/// Every `every`, evaluates the tenants that have a collector past its silence deadline or a
/// suppressed finding whose suppression ran out.
pub async fn sweep_silent_collectors(
    store: Arc<dyn Store>,
    damping: DampingDefaults,
    every: Duration,
    cancel: CancellationToken,
) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = cancel.cancelled() => return,
            _ = tick.tick() => {}
        }
        let now = Utc::now();
        let mut tenants = match store.tenants_with_silent_collectors(now).await {
            Ok(t) => t,
            Err(e) => {
                tracing::warn!(error = ?e, "silence sweep: listing tenants failed");
                continue;
            }
        };
        match store.tenants_with_expired_suppressions(now).await {
            Ok(more) => tenants.extend(more),
            Err(e) => tracing::warn!(error = ?e, "sweep: listing expired suppressions failed"),
        }
        tenants.sort_by_key(|scope| (scope.org_id, scope.tenant_id));
        tenants.dedup();
        for scope in tenants {
            let span =
                tracing::info_span!("silence_sweep", org_id = %scope.org_id, tenant_id = %scope.tenant_id);
            match evaluate_tenant(store.as_ref(), damping, scope, None, now, false).instrument(span).await {
                Ok(outcome) => log_outcome(&outcome),
                Err(e) => {
                    tracing::warn!(error = ?e, tenant_id = %scope.tenant_id, "silence sweep: evaluation failed")
                }
            }
        }
    }
}
