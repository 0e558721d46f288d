//! An integration's health as findings: switching it off (the engine gives up on a destination)
//! raises an `integration-disabled` finding in every tenant whose findings wait for it; its next
//! success, or its deletion, resolves them.

use super::deliveries::insert_delivery;
use super::prelude::*;

pub(super) async fn disable_integration(
    pool: &DbPool,
    org: OrgScope,
    integration_id: Uuid,
    reason: &str,
    notify: &[NewDelivery],
    now: DateTime<Utc>,
) -> Result<bool> {
    let now = micros(now);
    let mut tx = write_tx(pool).await?;
    let changed = disable(&mut tx, org.org_id, integration_id, reason, now).await?;
    if changed {
        for d in notify {
            insert_delivery(&mut tx, d, now).await?;
        }
    }
    tx.commit().await?;
    Ok(changed)
}

/// Switches an integration off (if on) with an audit entry; pending deliveries wait for it to be
/// switched on again.
async fn disable(
    tx: &mut Tx,
    org: OrgId,
    integration_id: Uuid,
    reason: &str,
    now: DateTime<Utc>,
) -> Result<bool> {
    let changed = sqlx::query(
        "UPDATE integrations SET enabled = FALSE, disabled_reason = $3, disabled_at = $4, updated_at = $4,
             version = version + 1
         WHERE org_id = $1 AND id = $2 AND enabled",
    )
    .bind(org.0)
    .bind(integration_id)
    .bind(reason)
    .bind(now)
    .execute(&mut **tx)
    .await?
    .rows_affected()
        > 0;
    if changed {
        let after = serde_json::json!({ "enabled": false, "disabled_reason": reason });
        let entry = NewAuditEntry {
            org_id: org,
            tenant_id: None,
            actor: "system",
            action: "integration.disable",
            target: &integration_id.to_string(),
            before: None,
            after: Some(&after),
            at: now,
        };
        insert_audit(tx, entry).await?;
        raise_integration_findings(tx, org, integration_id, reason, now).await?;
    }
    Ok(changed)
}

/// The fingerprint of the finding that says an integration is off.
fn integration_fingerprint(integration_id: Uuid) -> (String, String) {
    let subject = format!("integration:{integration_id}");
    (format!("{INTEGRATION_DISABLED_RULE}|{subject}"), subject)
}

/// Opens (or reopens) the `integration-disabled` finding in every tenant whose events were on
/// their way to the integration: those tenants' problems are not reaching it.
async fn raise_integration_findings(
    tx: &mut Tx,
    org: OrgId,
    integration_id: Uuid,
    reason: &str,
    now: DateTime<Utc>,
) -> Result<()> {
    let row = sqlx::query("SELECT name, kind FROM integrations WHERE id = $1")
        .bind(integration_id)
        .fetch_one(&mut **tx)
        .await?;
    let (name, kind): (String, String) = (row.try_get("name")?, row.try_get("kind")?);
    let tenants: Vec<Uuid> = sqlx::query_scalar(
        "SELECT DISTINCT tenant_id FROM deliveries
         WHERE integration_id = $1 AND status IN ('pending', 'failed') AND tenant_id IS NOT NULL",
    )
    .bind(integration_id)
    .fetch_all(&mut **tx)
    .await?;
    if tenants.is_empty() {
        return Ok(());
    }
    sqlx::query("UPDATE integrations SET alerted = TRUE WHERE id = $1")
        .bind(integration_id)
        .execute(&mut **tx)
        .await?;
    let (fingerprint, subject) = integration_fingerprint(integration_id);
    let title = format!("Findings are not reaching {name}");
    let summary = format!(
        "The {kind} integration \"{name}\" was switched off: {reason}. This tenant's findings wait for it; \
         fix the destination and switch the integration on again, and the waiting deliveries go out."
    );
    let evidence = serde_json::json!({ "integration_id": integration_id, "reason": reason });
    for tenant in tenants {
        let scope = TenantScope { org_id: org, tenant_id: TenantId(tenant) };
        let existing =
            sqlx::query("SELECT id, status FROM findings WHERE tenant_id = $1 AND fingerprint = $2")
                .bind(tenant)
                .bind(&fingerprint)
                .fetch_optional(&mut **tx)
                .await?;
        let (finding_id, kind) = match existing {
            None => {
                let id = Uuid::now_v7();
                sqlx::query(
                    "INSERT INTO findings (id, org_id, tenant_id, fingerprint, rule_id, subject, severity, status,
                         title, summary, evidence, opened_at, updated_at, resolved_at, reopen_count, version)
                     VALUES ($1, $2, $3, $4, $5, $6, 'high', 'open', $7, $8, $9, $10, $10, NULL, 0, 1)",
                )
                .bind(id)
                .bind(org.0)
                .bind(tenant)
                .bind(&fingerprint)
                .bind(INTEGRATION_DISABLED_RULE)
                .bind(&subject)
                .bind(&title)
                .bind(&summary)
                .bind(Json(&evidence))
                .bind(now)
                .execute(&mut **tx)
                .await?;
                (id, FindingEventKind::Opened)
            }
            Some(row) => {
                let status: String = row.try_get("status")?;
                if status != "resolved" {
                    continue;
                }
                let id: Uuid = row.try_get("id")?;
                sqlx::query(
                    "UPDATE findings SET status = 'open', resolved_at = NULL, reopen_count = reopen_count + 1,
                         title = $2, summary = $3, evidence = $4, updated_at = $5, version = version + 1
                     WHERE id = $1",
                )
                .bind(id)
                .bind(&title)
                .bind(&summary)
                .bind(Json(&evidence))
                .bind(now)
                .execute(&mut **tx)
                .await?;
                (id, FindingEventKind::Reopened)
            }
        };
        insert_event(tx, scope, finding_id, &NewEvent::system(kind, Severity::High, &summary), now).await?;
    }
    Ok(())
}

/// The integration works again (or is gone): its `integration-disabled` findings resolve.
pub(super) async fn resolve_integration_findings(
    tx: &mut Tx,
    org: OrgId,
    integration_id: Uuid,
    now: DateTime<Utc>,
) -> Result<()> {
    let (fingerprint, _) = integration_fingerprint(integration_id);
    let rows = sqlx::query(
        "SELECT id, tenant_id FROM findings WHERE org_id = $1 AND fingerprint = $2 AND status <> 'resolved'",
    )
    .bind(org.0)
    .bind(&fingerprint)
    .fetch_all(&mut **tx)
    .await?;
    for row in &rows {
        let id: Uuid = row.try_get("id")?;
        let tenant: Uuid = row.try_get("tenant_id")?;
        sqlx::query(
            "UPDATE findings SET status = 'resolved', resolved_at = $2, updated_at = $2, version = version + 1
             WHERE id = $1",
        )
        .bind(id)
        .bind(now)
        .execute(&mut **tx)
        .await?;
        let event =
            NewEvent::system(FindingEventKind::Resolved, Severity::High, "The integration delivers again.");
        insert_event(tx, TenantScope { org_id: org, tenant_id: TenantId(tenant) }, id, &event, now).await?;
    }
    Ok(())
}
