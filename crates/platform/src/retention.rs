//! The retention sweep: every `retention.sweep_interval_secs` (±10 %), each kind of record older
//! than its `[retention]` period is removed a batch at a time ([`Store::sweep_expired`]), with a
//! short pause between batches so the sweep never holds a lock for long. Every worker host runs
//! it; on PostgreSQL concurrent sweepers take disjoint rows (`FOR UPDATE SKIP LOCKED`), so two
//! workers sweeping at once share the work instead of waiting for each other.

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, TimeDelta, Utc};
use rand::Rng as _;
use tokio_util::sync::CancellationToken;
use wbd_store::{RetentionTable, Store};

use crate::settings::RetentionSettings;

/// What one sweep removed from one table.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TableSweep {
    /// Rows of the table.
    pub rows: u64,
    /// Rows of dependent tables removed with them (a delivery's attempts).
    pub dependent_rows: u64,
    /// Batches run (the last one found less than a full batch).
    pub batches: u32,
    /// The slowest single batch.
    pub longest_batch: Duration,
    /// Time spent deleting, pauses excluded.
    pub busy: Duration,
}

/// Sweeps `table` of every row older than `cutoff`, about `batch_size` rows a batch, pausing
/// `pause` between batches, until a batch comes back short or `cancel` fires.
pub async fn sweep_table(
    store: &dyn Store,
    table: RetentionTable,
    cutoff: DateTime<Utc>,
    batch_size: u32,
    pause: Duration,
    cancel: &CancellationToken,
) -> wbd_store::Result<TableSweep> {
    let mut done = TableSweep::default();
    loop {
        let started = Instant::now();
        let batch = store.sweep_expired(table, cutoff, batch_size).await?;
        let took = started.elapsed();
        done.rows += batch.rows;
        done.dependent_rows += batch.dependent_rows;
        done.batches += 1;
        done.busy += took;
        done.longest_batch = done.longest_batch.max(took);
        if !batch.full || cancel.is_cancelled() {
            return Ok(done);
        }
        tokio::select! {
            () = cancel.cancelled() => return Ok(done),
            () = tokio::time::sleep(pause) => {}
        }
    }
}

/// One sweep of every table with a retention period, as of `now`; logs what each removed. A
/// table that fails is logged and skipped (the next sweep tries again).
pub async fn sweep_once(
    store: &dyn Store,
    settings: &RetentionSettings,
    now: DateTime<Utc>,
    cancel: &CancellationToken,
) -> Vec<(RetentionTable, TableSweep)> {
    let pause = Duration::from_millis(settings.batch_pause_ms);
    let mut report = Vec::new();
    for table in RetentionTable::ALL {
        let Some(period) = settings.period(table) else { continue };
        let Some(cutoff) = TimeDelta::from_std(period).ok().and_then(|p| now.checked_sub_signed(p)) else {
            continue;
        };
        match sweep_table(store, table, cutoff, settings.batch_size, pause, cancel).await {
            Ok(done) => {
                if done.rows > 0 {
                    tracing::info!(
                        table = table.as_str(),
                        rows = done.rows,
                        dependent_rows = done.dependent_rows,
                        batches = done.batches,
                        longest_batch_ms = done.longest_batch.as_millis(),
                        %cutoff,
                        "retention sweep removed old rows"
                    );
                } else {
                    tracing::debug!(table = table.as_str(), %cutoff, "retention sweep: nothing old");
                }
                report.push((table, done));
            }
            Err(e) => tracing::warn!(table = table.as_str(), error = ?e, "retention sweep failed"),
        }
        if cancel.is_cancelled() {
            break;
        }
    }
    report
}

/// Sweeps every `retention.sweep_interval_secs` ±10 % until cancelled; the first sweep comes
/// after a random part of one interval, so processes started together do not sweep in step.
pub async fn run(store: Arc<dyn Store>, settings: RetentionSettings, cancel: CancellationToken) {
    let interval = Duration::from_secs(settings.sweep_interval_secs);
    let mut wait = interval.mul_f64(rand::rng().random_range(0.1..1.0));
    loop {
        tokio::select! {
            () = cancel.cancelled() => return,
            () = tokio::time::sleep(wait) => {}
        }
        let span = tracing::info_span!("retention_sweep");
        let _ =
            tracing::Instrument::instrument(sweep_once(store.as_ref(), &settings, Utc::now(), &cancel), span)
                .await;
        wait = interval.mul_f64(rand::rng().random_range(0.9..1.1));
    }
}
