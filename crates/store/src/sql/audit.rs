//! The audit log: written in the transaction of each change a person (or the delivery engine)
//! makes to configuration, read newest first.

use super::prelude::*;

/// An audit entry to write: who did what to which target, with the document before and after.
pub(super) struct NewAuditEntry<'a> {
    pub(super) org_id: OrgId,
    pub(super) tenant_id: Option<TenantId>,
    pub(super) actor: &'a str,
    pub(super) action: &'a str,
    pub(super) target: &'a str,
    pub(super) before: Option<&'a serde_json::Value>,
    pub(super) after: Option<&'a serde_json::Value>,
    pub(super) at: DateTime<Utc>,
}

pub(super) async fn insert_audit(tx: &mut Tx, entry: NewAuditEntry<'_>) -> Result<()> {
    sqlx::query(
        "INSERT INTO audit_log (id, org_id, tenant_id, actor, action, target, before, after, at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
    )
    .bind(Uuid::now_v7())
    .bind(entry.org_id.0)
    .bind(entry.tenant_id.map(|t| t.0))
    .bind(entry.actor)
    .bind(entry.action)
    .bind(entry.target)
    .bind(entry.before.map(Json))
    .bind(entry.after.map(Json))
    .bind(entry.at)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

pub(super) async fn list_audit_log(
    pool: &DbPool,
    org: OrgScope,
    before: Option<Uuid>,
    limit: u32,
) -> Result<Vec<AuditEntry>> {
    let rows = sqlx::query(
        "SELECT id, tenant_id, actor, action, target, before, after, at FROM audit_log
         WHERE org_id = $1 AND ($2 IS NULL OR id < $2) ORDER BY id DESC LIMIT $3",
    )
    .bind(org.org_id.0)
    .bind(before)
    .bind(i64::from(limit))
    .fetch_all(pool.read())
    .await?;
    rows.iter().map(rows::audit_entry).collect()
}
