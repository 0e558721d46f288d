//! Tenants of an organisation and the overview of their health.

use super::prelude::*;
use crate::policy;

/// Open (or acknowledged) findings per severity — root causes and findings that stand alone;
/// their consequences apart —, suppressed findings, collectors, silence and undecided rules per
/// tenant; `$3` optionally picks one.
const TENANT_SUMMARIES: &str = "
    SELECT t.id, t.org_id, t.name, t.entra_tenant_id, t.created_at,
           COALESCE(f.critical, 0) AS open_critical, COALESCE(f.high, 0) AS open_high,
           COALESCE(f.medium, 0) AS open_medium, COALESCE(f.low, 0) AS open_low,
           COALESCE(f.info, 0) AS open_info, COALESCE(f.suppressed, 0) AS suppressed,
           COALESCE(f.consequences, 0) AS consequences,
           COALESCE(c.collectors, 0) AS collectors, COALESCE(c.silent, 0) AS silent_collectors,
           t.unknown_rules, c.last_seen_at
    FROM tenants t
    LEFT JOIN (
        SELECT tenant_id,
               count(*) FILTER (WHERE status <> 'suppressed' AND root_finding_id IS NULL AND severity = 'critical') AS critical,
               count(*) FILTER (WHERE status <> 'suppressed' AND root_finding_id IS NULL AND severity = 'high') AS high,
               count(*) FILTER (WHERE status <> 'suppressed' AND root_finding_id IS NULL AND severity = 'medium') AS medium,
               count(*) FILTER (WHERE status <> 'suppressed' AND root_finding_id IS NULL AND severity = 'low') AS low,
               count(*) FILTER (WHERE status <> 'suppressed' AND root_finding_id IS NULL AND severity = 'info') AS info,
               count(*) FILTER (WHERE status <> 'suppressed' AND root_finding_id IS NOT NULL) AS consequences,
               count(*) FILTER (WHERE status = 'suppressed') AS suppressed
        FROM findings
        WHERE org_id = $1 AND status <> 'resolved' AND ($3 IS NULL OR tenant_id = $3)
        GROUP BY tenant_id
    ) f ON f.tenant_id = t.id
    LEFT JOIN (
        SELECT tenant_id,
               count(*) FILTER (WHERE status <> 'revoked') AS collectors,
               count(*) FILTER (WHERE status = 'active' AND silent_after < $2) AS silent,
               max(last_seen_at) AS last_seen_at
        FROM collectors
        WHERE org_id = $1 AND ($3 IS NULL OR tenant_id = $3)
        GROUP BY tenant_id
    ) c ON c.tenant_id = t.id
    WHERE t.org_id = $1 AND ($3 IS NULL OR t.id = $3)";

pub(super) async fn create_tenant(
    pool: &DbPool,
    org: OrgScope,
    name: &str,
    entra_tenant_id: Option<&str>,
    now: DateTime<Utc>,
) -> Result<Tenant> {
    let row = sqlx::query(concat!(
        "INSERT INTO tenants (id, org_id, name, entra_tenant_id, created_at) VALUES ($1, $2, $3, $4, $5)
         RETURNING ",
        tenant_cols!()
    ))
    .bind(TenantId::new().0)
    .bind(org.org_id.0)
    .bind(name)
    .bind(entra_tenant_id)
    .bind(micros(now))
    .fetch_one(pool.write())
    .await?;
    rows::tenant(&row)
}

pub(super) async fn get_tenant(pool: &DbPool, org: OrgScope, id: TenantId) -> Result<Option<Tenant>> {
    let row = sqlx::query(concat!("SELECT ", tenant_cols!(), " FROM tenants WHERE id = $1 AND org_id = $2"))
        .bind(id.0)
        .bind(org.org_id.0)
        .fetch_optional(pool.read())
        .await?;
    row.as_ref().map(rows::tenant).transpose()
}

pub(super) async fn list_tenant_summaries(
    pool: &DbPool,
    org: OrgScope,
    now: DateTime<Utc>,
) -> Result<Vec<TenantSummary>> {
    tenant_summaries(pool, org, None, now).await
}

pub(super) async fn get_tenant_summary(
    pool: &DbPool,
    scope: TenantScope,
    now: DateTime<Utc>,
) -> Result<Option<TenantSummary>> {
    Ok(tenant_summaries(pool, scope.org(), Some(scope.tenant_id), now).await?.into_iter().next())
}

async fn tenant_summaries(
    pool: &DbPool,
    org: OrgScope,
    tenant: Option<TenantId>,
    now: DateTime<Utc>,
) -> Result<Vec<TenantSummary>> {
    let rows = sqlx::query(TENANT_SUMMARIES)
        .bind(org.org_id.0)
        .bind(micros(now))
        .bind(tenant.map(|t| t.0))
        .fetch_all(pool.read())
        .await?;
    let mut summaries = rows.iter().map(rows::summary).collect::<Result<Vec<_>>>()?;
    policy::sort_worst_first(&mut summaries);
    Ok(summaries)
}
