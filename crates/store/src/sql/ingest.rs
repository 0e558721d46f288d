//! Ingest: a collector's batch becomes latest facts, fact history, a heartbeat and an outbox
//! message, in one transaction. What to write is planned in Rust (`ingest_plan`); how the plan's
//! rows are read and written is the dialect's (`record_batch`, `stored_fact_rows`,
//! `write_ingest`). PostgreSQL's round trips are what cost there, not its rows: it takes an
//! ingest in four statements (the batch with the heartbeat, the stored facts, every write as
//! one statement of data-modifying CTEs over `UNNEST` arrays, the commit). SQLite, which has no
//! data-modifying CTEs and no round trips over a network, writes multi-row `VALUES` statements.

use std::collections::{BTreeSet, HashMap};

use super::outbox::insert_outbox_with_id;
use super::prelude::*;
use crate::ingest_plan::{self, BatchRecorded, IngestPlan, IngestWrite, IngestWritten};

pub(super) async fn ingest_batch(
    pool: &DbPool,
    scope: TenantScope,
    batch: &BatchWrite,
) -> Result<IngestOutcome> {
    let received_at = micros(batch.received_at);
    let mut tx = write_tx(pool).await?;

    // The batch row, then the heartbeat (one statement on PostgreSQL). A concurrent retry of the
    // same batch waits for the first one and then conflicts. On PostgreSQL the heartbeat's row
    // lock serialises ingests of one collector, which owns its facts, so the plan below cannot
    // race another ingest.
    match dialect::record_batch(&mut tx, scope, batch, received_at).await? {
        BatchRecorded::New => {}
        BatchRecorded::Seen => {
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
        BatchRecorded::CollectorInactive => {
            tx.rollback().await?;
            return Err(StoreError::Database(sqlx::Error::RowNotFound));
        }
    }

    let plan = if batch.results.is_empty() {
        IngestPlan::default()
    } else {
        let keys = ingest_plan::keys(&batch.results);
        let rows = dialect::stored_fact_rows(&mut tx, batch.collector_id, keys).await?;
        let stored = rows.iter().map(rows::stored_fact).collect::<Result<HashMap<_, _>>>()?;
        ingest_plan::plan(&batch.results, &stored)
    };
    // Which probes reported in this version (a handful per batch): flap damping reads it.
    let probes: BTreeSet<&str> = batch.results.iter().map(|r| r.probe.as_str()).collect();
    let write = IngestWrite {
        scope,
        collector_id: batch.collector_id,
        plan,
        probes: probes.into_iter().collect(),
        message_id: Uuid::now_v7(),
        message: MessageKind::BatchIngested { collector_id: batch.collector_id, batch_id: batch.batch_id },
        traceparent: batch.traceparent.as_deref(),
        received_at,
    };
    if dialect::write_ingest(&mut tx, &write).await? == IngestWritten::PlanOnly {
        let facts_version = bump_facts_version(&mut tx, scope).await?;
        if !write.probes.is_empty() {
            let mut query = sqlx::QueryBuilder::<dialect::Db>::new(
                "INSERT INTO probe_versions (tenant_id, probe, org_id, facts_version) ",
            );
            query.push_values(&write.probes, |mut row, probe| {
                row.push_bind(scope.tenant_id.0)
                    .push_bind(*probe)
                    .push_bind(scope.org_id.0)
                    .push_bind(facts_version);
            });
            query
                .push(" ON CONFLICT (tenant_id, probe) DO UPDATE SET facts_version = excluded.facts_version");
            query.build().persistent(false).execute(&mut *tx).await?;
        }
        insert_outbox_with_id(
            &mut tx,
            scope,
            write.message_id,
            &write.message,
            write.traceparent,
            received_at,
        )
        .await?;
    }

    tx.commit().await?;
    Ok(IngestOutcome::Accepted { accepted: u32::try_from(batch.results.len()).unwrap_or(u32::MAX) })
}

/// Moves the tenant to a new facts version; answers it.
async fn bump_facts_version(tx: &mut Tx, scope: TenantScope) -> Result<i64> {
    Ok(sqlx::query_scalar(
        "UPDATE tenants SET facts_version = facts_version + 1 WHERE id = $1 AND org_id = $2
         RETURNING facts_version",
    )
    .bind(scope.tenant_id.0)
    .bind(scope.org_id.0)
    .fetch_one(&mut **tx)
    .await?)
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
