//! Console sessions: a browser signed in with an API key. The lookup by the hash of the
//! session id establishes a scope (as the API key lookup does), so it is unscoped on purpose;
//! it reads the key with the session, so a revoked key ends its sessions at once.

use super::prelude::*;

pub(super) async fn create_console_session(
    pool: &DbPool,
    org: OrgScope,
    key: ApiKeyId,
    id_hash: &str,
    now: DateTime<Utc>,
    expires_at: DateTime<Utc>,
) -> Result<bool> {
    let mut tx = write_tx(pool).await?;
    // Sessions are opened rarely; forgetting the expired ones here keeps the table small without
    // a sweeper of its own.
    sqlx::query("DELETE FROM console_sessions WHERE expires_at <= $1")
        .bind(micros(now))
        .execute(&mut *tx)
        .await?;
    let stored = sqlx::query(
        "INSERT INTO console_sessions (id_hash, org_id, api_key_id, created_at, expires_at)
         SELECT $1, org_id, id, $4, $5 FROM api_keys
         WHERE id = $2 AND org_id = $3 AND revoked_at IS NULL",
    )
    .bind(id_hash)
    .bind(key.0)
    .bind(org.org_id.0)
    .bind(micros(now))
    .bind(micros(expires_at))
    .execute(&mut *tx)
    .await?
    .rows_affected();
    tx.commit().await?;
    Ok(stored == 1)
}

pub(super) async fn find_console_session(
    pool: &DbPool,
    id_hash: &str,
    now: DateTime<Utc>,
) -> Result<Option<ConsoleSession>> {
    let row = sqlx::query(
        "SELECT s.org_id, s.api_key_id, k.role, s.created_at, s.expires_at
         FROM console_sessions s
         JOIN api_keys k ON k.id = s.api_key_id AND k.org_id = s.org_id
         WHERE s.id_hash = $1 AND s.expires_at > $2 AND k.revoked_at IS NULL",
    )
    .bind(id_hash)
    .bind(micros(now))
    .fetch_optional(pool.read())
    .await?;
    row.as_ref()
        .map(|row| -> Result<ConsoleSession> {
            Ok(ConsoleSession {
                org_id: OrgId(row.try_get("org_id")?),
                api_key_id: ApiKeyId(row.try_get("api_key_id")?),
                role: parse_enum(row.try_get("role")?, "api_keys.role")?,
                created_at: row.try_get("created_at")?,
                expires_at: row.try_get("expires_at")?,
            })
        })
        .transpose()
}

pub(super) async fn end_console_session(pool: &DbPool, org: OrgScope, id_hash: &str) -> Result<bool> {
    let done = sqlx::query("DELETE FROM console_sessions WHERE id_hash = $1 AND org_id = $2")
        .bind(id_hash)
        .bind(org.org_id.0)
        .execute(pool.write())
        .await?;
    Ok(done.rows_affected() == 1)
}
