//! Integrations as the API manages them: create, read, update from the version the caller
//! read, delete; every change audited without its secrets.
//!
//! On PostgreSQL an integration row is read `FOR NO KEY UPDATE` before it changes: enough to
//! serialise writers and claims of its slots and budget, and no conflict with the `KEY SHARE`
//! lock that inserting a delivery (its foreign key) takes, so enqueues never wait for them.

use super::integration_health::resolve_integration_findings;
use super::prelude::*;

pub(super) async fn create_integration(
    pool: &DbPool,
    org: OrgScope,
    write: &IntegrationWrite,
    actor: &str,
    now: DateTime<Utc>,
) -> Result<Integration> {
    let now = micros(now);
    let id = Uuid::now_v7();
    let mut tx = write_tx(pool).await?;
    let row = sqlx::query(concat!(
        "INSERT INTO integrations (id, org_id, name, kind, url, config, secrets, filter, routing,
             max_in_flight, hourly_budget, budget_used, enabled, created_at, updated_at, version)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, 0, $12, $13, $13, 1)
         RETURNING ",
        integration_cols!()
    ))
    .bind(id)
    .bind(org.org_id.0)
    .bind(&write.name)
    .bind(&write.kind)
    .bind(&write.url)
    .bind(Json(&write.config))
    .bind(&write.secrets)
    .bind(Json(&write.filter))
    .bind(write.routing.as_str())
    .bind(i64::from(write.max_in_flight))
    .bind(write.hourly_budget.map(i64::from))
    .bind(write.enabled)
    .bind(now)
    .fetch_one(&mut *tx)
    .await?;
    let created = rows::integration(&row)?;
    audit_integration(&mut tx, org, actor, "integration.create", id, None, Some(&created), now).await?;
    tx.commit().await?;
    Ok(created)
}

pub(super) async fn list_integrations(pool: &DbPool, org: OrgScope) -> Result<Vec<Integration>> {
    let rows = sqlx::query(concat!(
        "SELECT ",
        integration_cols!(),
        " FROM integrations WHERE org_id = $1 ORDER BY id"
    ))
    .bind(org.org_id.0)
    .fetch_all(pool.read())
    .await?;
    rows.iter().map(rows::integration).collect()
}

pub(super) async fn enabled_integrations(pool: &DbPool, org: OrgScope) -> Result<Vec<Integration>> {
    let rows = sqlx::query(concat!(
        "SELECT ",
        integration_cols!(),
        " FROM integrations WHERE org_id = $1 AND enabled ORDER BY id"
    ))
    .bind(org.org_id.0)
    .fetch_all(pool.read())
    .await?;
    rows.iter().map(rows::integration).collect()
}

pub(super) async fn get_integration(pool: &DbPool, org: OrgScope, id: Uuid) -> Result<Option<Integration>> {
    let row = sqlx::query(concat!(
        "SELECT ",
        integration_cols!(),
        " FROM integrations WHERE org_id = $1 AND id = $2"
    ))
    .bind(org.org_id.0)
    .bind(id)
    .fetch_optional(pool.read())
    .await?;
    row.as_ref().map(rows::integration).transpose()
}

/// The organisation's integration, locked for a change (PostgreSQL).
async fn integration_to_change(tx: &mut Tx, org: OrgScope, id: Uuid) -> Result<Option<Integration>> {
    let row = sqlx::query(concat!(
        "SELECT ",
        integration_cols!(),
        " FROM integrations WHERE org_id = $1 AND id = $2",
        row_lock!(for_no_key_update)
    ))
    .bind(org.org_id.0)
    .bind(id)
    .fetch_optional(&mut **tx)
    .await?;
    row.as_ref().map(rows::integration).transpose()
}

pub(super) async fn update_integration(
    pool: &DbPool,
    org: OrgScope,
    id: Uuid,
    expected_version: i64,
    write: &IntegrationWrite,
    actor: &str,
    now: DateTime<Utc>,
) -> Result<IntegrationUpdate> {
    let now = micros(now);
    let mut tx = write_tx(pool).await?;
    let Some(before) = integration_to_change(&mut tx, org, id).await? else {
        return Ok(IntegrationUpdate::NotFound);
    };
    // The write was made from what the caller read: if the row changed since (the engine
    // switched it off, another request rotated its secret), it would undo that.
    if before.version != expected_version {
        return Ok(IntegrationUpdate::Changed { current_version: before.version });
    }
    // Switching an integration (back) on forgets its failure streak: it starts over.
    let reenabled = write.enabled && !before.enabled;
    let row = sqlx::query(concat!(
        "UPDATE integrations SET name = $3, kind = $4, url = $5, config = $6, secrets = $7,
             filter = $8, routing = $9, max_in_flight = $10, hourly_budget = $11, enabled = $12,
             disabled_reason = CASE WHEN $12 THEN NULL ELSE disabled_reason END,
             disabled_at = CASE WHEN $12 THEN NULL ELSE disabled_at END,
             failing_since = CASE WHEN $13 THEN NULL ELSE failing_since END,
             updated_at = $14, version = version + 1
         WHERE org_id = $1 AND id = $2 AND version = $15
         RETURNING ",
        integration_cols!()
    ))
    .bind(org.org_id.0)
    .bind(id)
    .bind(&write.name)
    .bind(&write.kind)
    .bind(&write.url)
    .bind(Json(&write.config))
    .bind(&write.secrets)
    .bind(Json(&write.filter))
    .bind(write.routing.as_str())
    .bind(i64::from(write.max_in_flight))
    .bind(write.hourly_budget.map(i64::from))
    .bind(write.enabled)
    .bind(reenabled)
    .bind(now)
    .bind(expected_version)
    .fetch_optional(&mut *tx)
    .await?;
    // The row is locked (PostgreSQL) or the transaction alone (SQLite): it cannot have changed
    // since it was read, but a lost race must never become a blind write.
    let Some(row) = row else {
        return Ok(IntegrationUpdate::Changed { current_version: before.version });
    };
    let after = rows::integration(&row)?;
    audit_integration(&mut tx, org, actor, "integration.update", id, Some(&before), Some(&after), now)
        .await?;
    tx.commit().await?;
    Ok(IntegrationUpdate::Updated(Box::new(after)))
}

pub(super) async fn delete_integration(
    pool: &DbPool,
    org: OrgScope,
    id: Uuid,
    actor: &str,
    now: DateTime<Utc>,
) -> Result<bool> {
    let now = micros(now);
    let mut tx = write_tx(pool).await?;
    let Some(before) = integration_to_change(&mut tx, org, id).await? else { return Ok(false) };
    // Its `integration-disabled` findings have nothing left to wait for.
    resolve_integration_findings(&mut tx, org.org_id, id, now).await?;
    // Deliveries, attempts and tickets go with it (ON DELETE CASCADE).
    sqlx::query("DELETE FROM integrations WHERE org_id = $1 AND id = $2")
        .bind(org.org_id.0)
        .bind(id)
        .execute(&mut *tx)
        .await?;
    audit_integration(&mut tx, org, actor, "integration.delete", id, Some(&before), None, now).await?;
    tx.commit().await?;
    Ok(true)
}

/// The audit entry of an integration change: what a person sees, never the secrets.
#[allow(clippy::too_many_arguments)]
async fn audit_integration(
    tx: &mut Tx,
    org: OrgScope,
    actor: &str,
    action: &str,
    id: Uuid,
    before: Option<&Integration>,
    after: Option<&Integration>,
    now: DateTime<Utc>,
) -> Result<()> {
    fn public(i: &Integration) -> serde_json::Value {
        serde_json::json!({
            "name": i.name, "kind": i.kind, "url": i.url, "config": i.config, "filter": i.filter,
            "routing": i.routing, "max_in_flight": i.max_in_flight, "hourly_budget": i.hourly_budget,
            "enabled": i.enabled,
        })
    }
    let (before, after) = (before.map(public), after.map(public));
    let entry = NewAuditEntry {
        org_id: org.org_id,
        tenant_id: None,
        actor,
        action,
        target: &id.to_string(),
        before: before.as_ref(),
        after: after.as_ref(),
        at: now,
    };
    insert_audit(tx, entry).await
}
