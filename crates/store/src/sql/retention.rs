//! The retention sweep's deletes: one batch of one table per call, oldest first, through the
//! index `migrations/*/0009_retention.sql` made for it.
//!
//! Each batch is one short write: a single statement (a transaction of its own), or for
//! deliveries two statements in one write transaction (attempts first, then the deliveries).
//! On PostgreSQL the batch's rows are chosen `FOR UPDATE … SKIP LOCKED`, so sweepers in several
//! worker processes take disjoint rows instead of waiting on each other or on the delivery
//! engine; a row changed meanwhile is checked again against the condition before it is locked
//! (a replayed delivery that became pending is not taken). On SQLite a write holds the database,
//! so the batch size bounds how long others wait.

use super::prelude::*;

/// `DELETE` of at most `$2` rows of `$table` that match `$cond` (which compares with `$1`),
/// oldest first by `$order`.
macro_rules! batch_delete {
    ($table:literal, $cond:literal, $order:literal) => {
        concat!(
            "DELETE FROM ",
            $table,
            " WHERE ",
            in_batch!(
                row_address!(),
                concat!(
                    "SELECT ",
                    row_address!(),
                    " FROM ",
                    $table,
                    " WHERE ",
                    $cond,
                    " ORDER BY ",
                    $order,
                    " LIMIT $2",
                    row_lock!(skip_locked $table)
                )
            )
        )
    };
}

/// The finished deliveries of one batch: the same rows for the attempts' delete and the
/// deliveries' own (the transaction holds them; see the module documentation).
macro_rules! finished_deliveries {
    () => {
        concat!(
            "SELECT id FROM deliveries WHERE status <> 'pending' AND updated_at < $1
             ORDER BY updated_at, id LIMIT $2",
            row_lock!(skip_locked "deliveries")
        )
    };
}

pub(super) async fn sweep_expired(
    pool: &DbPool,
    table: RetentionTable,
    cutoff: DateTime<Utc>,
    limit: u32,
) -> Result<SweptBatch> {
    let cutoff = micros(cutoff);
    let single = |sql: &'static str| async move {
        let rows =
            sqlx::query(sql).bind(cutoff).bind(i64::from(limit)).execute(pool.write()).await?.rows_affected();
        Ok::<_, StoreError>(SweptBatch { rows, dependent_rows: 0, full: rows >= u64::from(limit) })
    };
    match table {
        RetentionTable::Deliveries => {
            let limit = (limit / ATTEMPTS_PER_DELIVERY).max(1);
            let mut tx = write_tx(pool).await?;
            let attempts = sqlx::query(concat!(
                "DELETE FROM delivery_attempts WHERE ",
                in_batch!("delivery_id", finished_deliveries!())
            ))
            .bind(cutoff)
            .bind(i64::from(limit))
            .execute(&mut *tx)
            .await?
            .rows_affected();
            let deliveries = sqlx::query(concat!(
                "DELETE FROM deliveries WHERE ",
                in_batch!("id", finished_deliveries!())
            ))
            .bind(cutoff)
            .bind(i64::from(limit))
            .execute(&mut *tx)
            .await?
            .rows_affected();
            tx.commit().await?;
            Ok(SweptBatch {
                rows: deliveries,
                dependent_rows: attempts,
                full: deliveries >= u64::from(limit),
            })
        }
        // A run ends when the next one begins, so `first_seen_at` (indexed, never updated)
        // narrows the scan and `last_seen_at` decides. The run a latest fact belongs to stays,
        // however old: it is the subject's current value.
        RetentionTable::FactHistory => {
            single(batch_delete!(
                "fact_history",
                "first_seen_at < $1 AND last_seen_at < $1
                 AND NOT EXISTS (SELECT 1 FROM facts WHERE facts.history_id = fact_history.id)",
                "first_seen_at"
            ))
            .await
        }
        RetentionTable::AuditLog => single(batch_delete!("audit_log", "at < $1", "at")).await,
        RetentionTable::ProcessedMessages => {
            single(batch_delete!("processed_messages", "processed_at < $1", "processed_at")).await
        }
        RetentionTable::Batches => single(batch_delete!("batches", "received_at < $1", "received_at")).await,
        RetentionTable::DeadLetters => single(batch_delete!("dead_letters", "dead_at < $1", "dead_at")).await,
        // A pending command expires after `cutoff` by definition, so none is taken.
        RetentionTable::CollectorCommands => {
            single(batch_delete!("collector_commands", "expires_at < $1", "expires_at")).await
        }
    }
}
