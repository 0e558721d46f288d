//! Rate limits shared by every API process (see `rate_limit.rs` for the rule): one row per
//! limited thing, taken in one statement, so concurrent requests in different processes never
//! both spend the last of an allowance.

use super::prelude::*;

/// Takes one request of `limit` for `bucket` at `now`, applying [`RateLimit::take`] in SQL.
pub(super) async fn take_rate_limit(
    pool: &DbPool,
    bucket: &str,
    limit: RateLimit,
    now: DateTime<Utc>,
) -> Result<RateDecision> {
    let now = now.timestamp_micros();
    let (interval, period) = (limit.interval_micros(), limit.period_micros());
    // The row is written only when the request is allowed; a refusal changes nothing.
    let taken = sqlx::query(
        "INSERT INTO rate_limits (bucket, tat) VALUES ($1, $2 + $3)
         ON CONFLICT (bucket) DO UPDATE
            SET tat = (CASE WHEN rate_limits.tat > $2 THEN rate_limits.tat ELSE $2 END) + $3
          WHERE (CASE WHEN rate_limits.tat > $2 THEN rate_limits.tat ELSE $2 END) + $3 <= $2 + $4
         RETURNING tat",
    )
    .bind(bucket)
    .bind(now)
    .bind(interval)
    .bind(period)
    .fetch_optional(pool.write())
    .await?;
    if taken.is_some() {
        return Ok(RateDecision::Allowed);
    }
    let tat: Option<i64> = sqlx::query_scalar("SELECT tat FROM rate_limits WHERE bucket = $1")
        .bind(bucket)
        .fetch_optional(pool.read())
        .await?;
    Ok(limit.refusal(tat, now))
}

/// Forgets the limited things whose allowance is whole again at `now` (a missing row means
/// exactly that), so the table holds only the recently busy ones.
pub(super) async fn forget_rate_limits(pool: &DbPool, now: DateTime<Utc>) -> Result<u64> {
    let done = sqlx::query("DELETE FROM rate_limits WHERE tat <= $1")
        .bind(now.timestamp_micros())
        .execute(pool.write())
        .await?;
    Ok(done.rows_affected())
}
