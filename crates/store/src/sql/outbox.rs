//! The transactional outbox: messages written with the change they announce, claimed with a
//! lease by whoever publishes (or, embedded, processes) them. Deleting and dead-lettering are
//! the dialect's (`delete_outbox`, `dead_letter_outbox`).

use super::prelude::*;

/// Writes a message in the transaction of the change it announces.
pub(super) async fn insert_outbox(
    tx: &mut Tx,
    scope: TenantScope,
    kind: &MessageKind,
    traceparent: Option<&str>,
    now: DateTime<Utc>,
) -> Result<()> {
    insert_outbox_with_id(tx, scope, Uuid::now_v7(), kind, traceparent, now).await
}

/// [`insert_outbox`] with the message's id chosen by the caller.
pub(super) async fn insert_outbox_with_id(
    tx: &mut Tx,
    scope: TenantScope,
    id: Uuid,
    kind: &MessageKind,
    traceparent: Option<&str>,
    now: DateTime<Utc>,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO outbox (id, org_id, tenant_id, kind, traceparent, created_at, lease_until, attempts)
         VALUES ($1, $2, $3, $4, $5, $6, NULL, 0)",
    )
    .bind(id)
    .bind(scope.org_id.0)
    .bind(scope.tenant_id.0)
    .bind(Json(kind))
    .bind(traceparent)
    .bind(now)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

pub(super) async fn claim_outbox(
    pool: &DbPool,
    limit: u32,
    lease: Duration,
    now: DateTime<Utc>,
) -> Result<Vec<OutboxMessage>> {
    // One statement, atomic on its own: on PostgreSQL SKIP LOCKED lets concurrent claimers take
    // disjoint rows instead of waiting on each other; on SQLite it takes the write lock.
    let rows = sqlx::query(concat!(
        "WITH due AS (
             SELECT id AS due_id FROM outbox
             WHERE lease_until IS NULL OR lease_until <= $1
             ORDER BY created_at, id
             LIMIT $2",
        row_lock!(skip_locked "outbox"),
        "
         )
         UPDATE outbox AS o SET lease_until = $3, attempts = o.attempts + 1
         FROM due WHERE o.id = due.due_id
         RETURNING ",
        outbox_cols!()
    ))
    .bind(micros(now))
    .bind(i64::from(limit))
    .bind(lease_until(now, lease))
    .fetch_all(pool.write())
    .await?;
    let mut messages = rows.iter().map(rows::outbox_message).collect::<Result<Vec<_>>>()?;
    // RETURNING has no order of its own.
    messages.sort_by_key(|m| (m.created_at, m.id));
    Ok(messages)
}

pub(super) async fn count_outbox(pool: &DbPool) -> Result<u64> {
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM outbox").fetch_one(pool.read()).await?;
    to_u64(n, "count(outbox)")
}

/// When the oldest message waiting in the outbox was written (`None`: the outbox is empty).
pub(super) async fn oldest_outbox_message(pool: &DbPool) -> Result<Option<DateTime<Utc>>> {
    let row = sqlx::query("SELECT created_at FROM outbox ORDER BY created_at, id LIMIT 1")
        .fetch_optional(pool.read())
        .await?;
    Ok(row.map(|r| r.try_get::<DateTime<Utc>, _>("created_at")).transpose()?)
}

pub(super) async fn count_dead_letters(pool: &DbPool) -> Result<u64> {
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM dead_letters").fetch_one(pool.read()).await?;
    to_u64(n, "count(dead_letters)")
}
