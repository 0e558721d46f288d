//! Collectors: created pending with an enrollment token, enrolled once, looked up to
//! authenticate a push, revoked.

use super::prelude::*;
use crate::convert::unique_violation;
use crate::policy::{self, TokenHolder};

pub(super) async fn create_collector(
    pool: &DbPool,
    scope: TenantScope,
    name: &str,
    enrollment_token_hash: &str,
    enrollment_expires_at: DateTime<Utc>,
    push_interval_secs: u32,
    now: DateTime<Utc>,
) -> Result<Collector> {
    let row = sqlx::query(concat!(
        "INSERT INTO collectors (id, org_id, tenant_id, name, status, enrollment_token_hash,
                                 enrollment_expires_at, push_interval_secs, created_at)
         VALUES ($1, $2, $3, $4, 'pending', $5, $6, $7, $8) RETURNING ",
        collector_cols!()
    ))
    .bind(CollectorId::new().0)
    .bind(scope.org_id.0)
    .bind(scope.tenant_id.0)
    .bind(name)
    .bind(enrollment_token_hash)
    .bind(micros(enrollment_expires_at))
    .bind(i64::from(push_interval_secs))
    .bind(micros(now))
    .fetch_one(pool.write())
    .await
    .map_err(|e| unique_violation(e, "collector", "enrollment token"))?;
    rows::collector(&row)
}

pub(super) async fn enroll_collector(
    pool: &DbPool,
    enrollment: &Enrollment,
) -> Result<Result<Collector, EnrollError>> {
    let mut tx = write_tx(pool).await?;
    // The lock (PostgreSQL) or the write transaction (SQLite) makes a concurrent enrollment with
    // the same token wait, then see `active`.
    let holder = sqlx::query(concat!(
        "SELECT id, status, enrolled_at, enrollment_expires_at FROM collectors WHERE enrollment_token_hash = $1",
        row_lock!(for_update)
    ))
    .bind(&enrollment.enrollment_token_hash)
    .fetch_optional(&mut *tx)
    .await?;
    let holder = holder
        .map(|row| -> Result<(Uuid, TokenHolder)> {
            Ok((
                row.try_get("id")?,
                TokenHolder {
                    status: parse_enum(row.try_get("status")?, "collectors.status")?,
                    enrolled_at: row.try_get("enrolled_at")?,
                    enrollment_expires_at: row.try_get("enrollment_expires_at")?,
                },
            ))
        })
        .transpose()?;
    let now = micros(enrollment.now);
    if let Err(refused) = policy::check_enrollment(holder.map(|(_, h)| h), now) {
        tx.rollback().await?;
        return Ok(Err(refused));
    }
    let Some((id, _)) = holder else { return Ok(Err(EnrollError::UnknownToken)) };
    let row = sqlx::query(concat!(
        "UPDATE collectors
         SET status = 'active', public_key = $2, hostname = $3, version = $4, enrolled_at = $5,
             silent_after = $6, enrollment_expires_at = NULL
         WHERE id = $1 AND status = 'pending' RETURNING ",
        collector_cols!()
    ))
    .bind(id)
    .bind(&enrollment.public_key)
    .bind(&enrollment.hostname)
    .bind(&enrollment.version)
    .bind(now)
    .bind(micros(enrollment.silent_after))
    .fetch_one(&mut *tx)
    .await?;
    let collector = rows::collector(&row)?;
    tx.commit().await?;
    Ok(Ok(collector))
}

/// The collector, and whether a command waits for it (one index probe), so that the push that
/// finds none spares the statement that would hand them out.
pub(super) async fn find_collector_for_auth(
    pool: &DbPool,
    id: CollectorId,
    now: DateTime<Utc>,
) -> Result<Option<PushingCollector>> {
    let row = sqlx::query(concat!(
        "SELECT ",
        collector_cols!(),
        ", EXISTS (SELECT 1 FROM collector_commands k
                   WHERE k.collector_id = collectors.id AND k.delivered_batch_id IS NULL
                     AND k.cancelled_at IS NULL AND k.expires_at > $2) AS commands_waiting
         FROM collectors WHERE id = $1"
    ))
    .bind(id.0)
    .bind(micros(now))
    .fetch_optional(pool.read())
    .await?;
    let Some(row) = row else { return Ok(None) };
    Ok(Some(PushingCollector {
        collector: rows::collector(&row)?,
        commands_waiting: row.try_get("commands_waiting")?,
    }))
}

/// Records a push token's one use: `false` if it was used before. The collector's tokens that
/// can no longer be presented are forgotten at the same time (their `expires_at` includes the
/// clock leeway), which keeps the table at a few rows per collector without a sweep of its own.
/// How is the dialect's: one statement on PostgreSQL, one connection on SQLite.
pub(super) async fn use_push_token(
    pool: &DbPool,
    id: CollectorId,
    jti: Uuid,
    expires_at: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Result<bool> {
    dialect::use_push_token(pool.write(), id, jti, micros(expires_at), micros(now)).await
}

/// A push token's use and its collector's rate limit: the dialect's one statement where it has
/// one (PostgreSQL), else the two in turn (SQLite, whose API keeps its limits in memory anyway).
pub(super) async fn use_push_token_counted(
    pool: &DbPool,
    id: CollectorId,
    jti: Uuid,
    expires_at: DateTime<Utc>,
    bucket: &str,
    limit: RateLimit,
    now: DateTime<Utc>,
) -> Result<PushTokenUse> {
    if let Some(used) =
        dialect::use_push_token_counted(pool.write(), id, jti, micros(expires_at), bucket, limit, micros(now))
            .await?
    {
        return Ok(used);
    }
    if !use_push_token(pool, id, jti, expires_at, now).await? {
        return Ok(PushTokenUse::Replayed);
    }
    Ok(PushTokenUse::Used(super::rate_limits::take_rate_limit(pool, bucket, limit, now).await?))
}

pub(super) async fn get_collector(
    pool: &DbPool,
    org: OrgScope,
    id: CollectorId,
) -> Result<Option<Collector>> {
    let row =
        sqlx::query(concat!("SELECT ", collector_cols!(), " FROM collectors WHERE id = $1 AND org_id = $2"))
            .bind(id.0)
            .bind(org.org_id.0)
            .fetch_optional(pool.read())
            .await?;
    row.as_ref().map(rows::collector).transpose()
}

pub(super) async fn list_collectors(
    pool: &DbPool,
    org: OrgScope,
    tenant: Option<TenantId>,
) -> Result<Vec<Collector>> {
    let rows = sqlx::query(concat!(
        "SELECT ",
        collector_cols!(),
        " FROM collectors WHERE org_id = $1 AND ($2 IS NULL OR tenant_id = $2) ORDER BY created_at, id"
    ))
    .bind(org.org_id.0)
    .bind(tenant.map(|t| t.0))
    .fetch_all(pool.read())
    .await?;
    rows.iter().map(rows::collector).collect()
}

pub(super) async fn revoke_collector(
    pool: &DbPool,
    org: OrgScope,
    id: CollectorId,
    now: DateTime<Utc>,
) -> Result<Option<Collector>> {
    let row = sqlx::query(concat!(
        "UPDATE collectors SET status = 'revoked', revoked_at = COALESCE(revoked_at, $3)
         WHERE id = $1 AND org_id = $2 RETURNING ",
        collector_cols!()
    ))
    .bind(id.0)
    .bind(org.org_id.0)
    .bind(micros(now))
    .fetch_optional(pool.write())
    .await?;
    row.as_ref().map(rows::collector).transpose()
}
