//! Ingest: a collector's batch becomes latest facts, fact history, a heartbeat and an outbox
//! message, in one transaction. What to write is planned in Rust (`ingest_plan`); how the plan's
//! rows are read and written is the dialect's (`stored_fact_rows`, `write_plan`: `UNNEST` arrays
//! on PostgreSQL, multi-row `VALUES` on SQLite).

use std::collections::HashMap;

use super::outbox::insert_outbox;
use super::prelude::*;
use crate::ingest_plan;

pub(super) async fn ingest_batch(
    pool: &DbPool,
    scope: TenantScope,
    batch: &BatchWrite,
) -> Result<IngestOutcome> {
    let received_at = micros(batch.received_at);
    let mut tx = write_tx(pool).await?;

    // A concurrent retry of the same batch waits here for the first one and then conflicts.
    let inserted = sqlx::query(
        "INSERT INTO batches (collector_id, batch_id, org_id, tenant_id, body_hash, result_count, received_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7)
         ON CONFLICT (collector_id, batch_id) DO NOTHING",
    )
    .bind(batch.collector_id.0)
    .bind(batch.batch_id)
    .bind(scope.org_id.0)
    .bind(scope.tenant_id.0)
    .bind(&batch.body_hash)
    .bind(count_to_i64(batch.results.len()))
    .bind(received_at)
    .execute(&mut *tx)
    .await?;
    if inserted.rows_affected() == 0 {
        let stored = sqlx::query(
            "SELECT body_hash, result_count FROM batches
             WHERE collector_id = $1 AND batch_id = $2 AND org_id = $3 AND tenant_id = $4",
        )
        .bind(batch.collector_id.0)
        .bind(batch.batch_id)
        .bind(scope.org_id.0)
        .bind(scope.tenant_id.0)
        .fetch_optional(&mut *tx)
        .await?;
        tx.rollback().await?;
        return match stored {
            Some(row) if row.try_get::<String, _>("body_hash")? == batch.body_hash => {
                Ok(IngestOutcome::Duplicate {
                    accepted: to_u32(row.try_get("result_count")?, "batches.result_count")?,
                })
            }
            _ => Ok(IngestOutcome::Conflict),
        };
    }

    // Heartbeat first: on PostgreSQL the row lock serialises ingests of one collector, which owns
    // its facts, so the plan below cannot race another ingest.
    let heartbeat = sqlx::query(
        "UPDATE collectors
         SET last_seen_at = $4, version = $5, hostname = $6, os = $7, push_interval_secs = $8,
             spool_dropped = $9, silent_after = $10
         WHERE id = $1 AND org_id = $2 AND tenant_id = $3 AND status = 'active'",
    )
    .bind(batch.collector_id.0)
    .bind(scope.org_id.0)
    .bind(scope.tenant_id.0)
    .bind(received_at)
    .bind(&batch.collector_version)
    .bind(&batch.collector_hostname)
    .bind(&batch.collector_os)
    .bind(i64::from(batch.push_interval_secs))
    .bind(saturating_i64(batch.spool_dropped))
    .bind(micros(batch.silent_after))
    .execute(&mut *tx)
    .await?;
    if heartbeat.rows_affected() == 0 {
        tx.rollback().await?;
        return Err(StoreError::Database(sqlx::Error::RowNotFound));
    }

    if !batch.results.is_empty() {
        let keys = ingest_plan::keys(&batch.results);
        let rows = dialect::stored_fact_rows(&mut tx, batch.collector_id, keys).await?;
        let stored = rows.iter().map(rows::stored_fact).collect::<Result<HashMap<_, _>>>()?;
        let plan = ingest_plan::plan(&batch.results, &stored);
        dialect::write_plan(&mut tx, scope, batch.collector_id, &plan).await?;
    }

    let facts_version: i64 = sqlx::query_scalar(
        "UPDATE tenants SET facts_version = facts_version + 1 WHERE id = $1 AND org_id = $2
         RETURNING facts_version",
    )
    .bind(scope.tenant_id.0)
    .bind(scope.org_id.0)
    .fetch_one(&mut *tx)
    .await?;
    // Which probes reported in this version (a handful per batch): flap damping reads it. One
    // statement for all of them.
    let probes: std::collections::BTreeSet<&str> = batch.results.iter().map(|r| r.probe.as_str()).collect();
    if !probes.is_empty() {
        let mut query = sqlx::QueryBuilder::<dialect::Db>::new(
            "INSERT INTO probe_versions (tenant_id, probe, org_id, facts_version) ",
        );
        query.push_values(probes, |mut row, probe| {
            row.push_bind(scope.tenant_id.0)
                .push_bind(probe)
                .push_bind(scope.org_id.0)
                .push_bind(facts_version);
        });
        query.push(" ON CONFLICT (tenant_id, probe) DO UPDATE SET facts_version = excluded.facts_version");
        query.build().persistent(false).execute(&mut *tx).await?;
    }
    let kind = MessageKind::BatchIngested { collector_id: batch.collector_id, batch_id: batch.batch_id };
    insert_outbox(&mut tx, scope, &kind, batch.traceparent.as_deref(), received_at).await?;

    tx.commit().await?;
    Ok(IngestOutcome::Accepted { accepted: u32::try_from(batch.results.len()).unwrap_or(u32::MAX) })
}

pub(super) async fn list_facts(pool: &DbPool, scope: TenantScope) -> Result<Vec<Fact>> {
    let rows = sqlx::query(concat!(
        "SELECT ",
        fact_cols!(),
        " FROM facts WHERE tenant_id = $1 AND org_id = $2 ORDER BY collector_id, probe, subject"
    ))
    .bind(scope.tenant_id.0)
    .bind(scope.org_id.0)
    .fetch_all(pool.read())
    .await?;
    rows.iter().map(rows::fact).collect()
}
