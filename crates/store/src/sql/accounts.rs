//! Server secrets, organisations and their API keys: what authentication establishes a scope
//! from, so the lookups by secret or key hash are unscoped on purpose.

use super::prelude::*;
use crate::convert::unique_violation;

pub(super) async fn ping(pool: &DbPool) -> Result<()> {
    sqlx::query("SELECT 1").execute(pool.read()).await?;
    Ok(())
}

pub(super) async fn get_or_create_secret(pool: &DbPool, name: &str, generated: Vec<u8>) -> Result<Vec<u8>> {
    // Two statements on purpose: after a lost race the SELECT takes a fresh snapshot that sees
    // the winner's row, which a single CTE statement would not (PostgreSQL).
    sqlx::query("INSERT INTO server_secrets (name, value) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING")
        .bind(name)
        .bind(generated)
        .execute(pool.write())
        .await?;
    let value = sqlx::query_scalar("SELECT value FROM server_secrets WHERE name = $1")
        .bind(name)
        .fetch_one(pool.read())
        .await?;
    Ok(value)
}

pub(super) async fn create_organization(
    pool: &DbPool,
    name: &str,
    now: DateTime<Utc>,
) -> Result<Organization> {
    let row = sqlx::query(concat!(
        "INSERT INTO organizations (id, name, created_at) VALUES ($1, $2, $3) RETURNING ",
        org_cols!()
    ))
    .bind(OrgId::new().0)
    .bind(name)
    .bind(micros(now))
    .fetch_one(pool.write())
    .await?;
    rows::org(&row)
}

pub(super) async fn create_api_key(
    pool: &DbPool,
    org: OrgScope,
    name: &str,
    role: Role,
    prefix: &str,
    key_hash: &str,
    now: DateTime<Utc>,
) -> Result<ApiKey> {
    let row = sqlx::query(concat!(
        "INSERT INTO api_keys (id, org_id, name, role, prefix, key_hash, created_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING ",
        api_key_cols!()
    ))
    .bind(ApiKeyId::new().0)
    .bind(org.org_id.0)
    .bind(name)
    .bind(role.as_str())
    .bind(prefix)
    .bind(key_hash)
    .bind(micros(now))
    .fetch_one(pool.write())
    .await
    .map_err(|e| unique_violation(e, "api key", "key hash"))?;
    rows::api_key(&row)
}

pub(super) async fn find_api_key_by_hash(pool: &DbPool, key_hash: &str) -> Result<Option<ApiKey>> {
    let row = sqlx::query(concat!("SELECT ", api_key_cols!(), " FROM api_keys WHERE key_hash = $1"))
        .bind(key_hash)
        .fetch_optional(pool.read())
        .await?;
    row.as_ref().map(rows::api_key).transpose()
}

pub(super) async fn list_api_keys(pool: &DbPool, org: OrgScope) -> Result<Vec<ApiKey>> {
    let rows = sqlx::query(concat!(
        "SELECT ",
        api_key_cols!(),
        " FROM api_keys WHERE org_id = $1 ORDER BY created_at, id"
    ))
    .bind(org.org_id.0)
    .fetch_all(pool.read())
    .await?;
    rows.iter().map(rows::api_key).collect()
}

pub(super) async fn get_api_key(pool: &DbPool, org: OrgScope, id: ApiKeyId) -> Result<Option<ApiKey>> {
    let row =
        sqlx::query(concat!("SELECT ", api_key_cols!(), " FROM api_keys WHERE id = $1 AND org_id = $2"))
            .bind(id.0)
            .bind(org.org_id.0)
            .fetch_optional(pool.read())
            .await?;
    row.as_ref().map(rows::api_key).transpose()
}

pub(super) async fn revoke_api_key(
    pool: &DbPool,
    org: OrgScope,
    id: ApiKeyId,
    now: DateTime<Utc>,
) -> Result<Option<ApiKey>> {
    // Revoking twice keeps the first revocation time.
    let row = sqlx::query(concat!(
        "UPDATE api_keys SET revoked_at = COALESCE(revoked_at, $3)
         WHERE id = $1 AND org_id = $2 RETURNING ",
        api_key_cols!()
    ))
    .bind(id.0)
    .bind(org.org_id.0)
    .bind(micros(now))
    .fetch_optional(pool.write())
    .await?;
    row.as_ref().map(rows::api_key).transpose()
}
