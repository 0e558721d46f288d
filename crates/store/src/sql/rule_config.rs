//! Rule configuration: an organisation's and its tenants' overrides of built-in rules (rule
//! settings) and their own rules (custom rules), each write audited and followed by a new
//! evaluation of every tenant it affects.

use super::outbox::insert_outbox;
use super::prelude::*;

pub(super) async fn list_rule_settings(
    pool: &DbPool,
    org: OrgScope,
    tenant: Option<TenantId>,
) -> Result<Vec<StoredRuleSetting>> {
    let rows = sqlx::query(
        "SELECT tenant_id, rule_id, settings, updated_at, updated_by FROM rule_settings
         WHERE org_id = $1 AND (tenant_id IS NULL OR tenant_id = $2)
         ORDER BY scope_key <> 'org', rule_id",
    )
    .bind(org.org_id.0)
    .bind(tenant.map(|t| t.0))
    .fetch_all(pool.read())
    .await?;
    rows.iter().map(rows::rule_setting).collect()
}

pub(super) async fn list_custom_rules(
    pool: &DbPool,
    org: OrgScope,
    tenant: Option<TenantId>,
) -> Result<Vec<StoredCustomRule>> {
    let rows = sqlx::query(
        "SELECT tenant_id, rule_id, definition, created_at, updated_at, updated_by FROM custom_rules
         WHERE org_id = $1 AND (tenant_id IS NULL OR tenant_id = $2)
         ORDER BY scope_key <> 'org', rule_id",
    )
    .bind(org.org_id.0)
    .bind(tenant.map(|t| t.0))
    .fetch_all(pool.read())
    .await?;
    rows.iter().map(rows::custom_rule).collect()
}

/// The statements of one kind of rule configuration, keyed by (org_id, scope_key, rule_id).
struct Statements {
    select: &'static str,
    upsert: &'static str,
    delete: &'static str,
}

const SETTING: Statements = Statements {
    select: "SELECT settings AS document FROM rule_settings WHERE org_id = $1 AND scope_key = $2 AND rule_id = $3",
    upsert: "INSERT INTO rule_settings (org_id, tenant_id, scope_key, rule_id, settings, updated_at, updated_by)
             VALUES ($1, $2, $3, $4, $5, $6, $7)
             ON CONFLICT (org_id, scope_key, rule_id) DO UPDATE
             SET settings = excluded.settings, updated_at = excluded.updated_at, updated_by = excluded.updated_by",
    delete: "DELETE FROM rule_settings WHERE org_id = $1 AND scope_key = $2 AND rule_id = $3",
};

const CUSTOM: Statements = Statements {
    select: "SELECT definition AS document FROM custom_rules WHERE org_id = $1 AND scope_key = $2 AND rule_id = $3",
    upsert: "INSERT INTO custom_rules (org_id, tenant_id, scope_key, rule_id, definition, created_at, updated_at,
                                       updated_by)
             VALUES ($1, $2, $3, $4, $5, $6, $6, $7)
             ON CONFLICT (org_id, scope_key, rule_id) DO UPDATE
             SET definition = excluded.definition, updated_at = excluded.updated_at, updated_by = excluded.updated_by",
    delete: "DELETE FROM custom_rules WHERE org_id = $1 AND scope_key = $2 AND rule_id = $3",
};

#[allow(clippy::too_many_arguments)]
pub(super) async fn write_rule_config(
    pool: &DbPool,
    org: OrgScope,
    scope: RuleScope,
    kind: RuleConfigKind,
    rule_id: &str,
    document: Option<&serde_json::Value>,
    actor: &str,
    now: DateTime<Utc>,
) -> Result<RuleConfigWrite> {
    let now = micros(now);
    let mut tx = write_tx(pool).await?;
    let tenants: Vec<Uuid> = match scope {
        RuleScope::Tenant(t) => {
            let found: Option<Uuid> =
                sqlx::query_scalar("SELECT id FROM tenants WHERE id = $1 AND org_id = $2")
                    .bind(t.0)
                    .bind(org.org_id.0)
                    .fetch_optional(&mut *tx)
                    .await?;
            match found {
                Some(id) => vec![id],
                None => return Ok(RuleConfigWrite::NoSuchTenant),
            }
        }
        RuleScope::Org => {
            sqlx::query_scalar("SELECT id FROM tenants WHERE org_id = $1")
                .bind(org.org_id.0)
                .fetch_all(&mut *tx)
                .await?
        }
    };
    let key = scope.key();
    let statements = match kind {
        RuleConfigKind::Setting => &SETTING,
        RuleConfigKind::Custom => &CUSTOM,
    };
    let before = sqlx::query(statements.select)
        .bind(org.org_id.0)
        .bind(&key)
        .bind(rule_id)
        .fetch_optional(&mut *tx)
        .await?;
    let before = before.as_ref().map(rows::rule_document).transpose()?;
    match (document, &before) {
        (None, None) => return Ok(RuleConfigWrite::Written { before: None }),
        (Some(doc), _) => {
            sqlx::query(statements.upsert)
                .bind(org.org_id.0)
                .bind(scope.tenant_id().map(|t| t.0))
                .bind(&key)
                .bind(rule_id)
                .bind(Json(doc))
                .bind(now)
                .bind(actor)
                .execute(&mut *tx)
                .await?;
        }
        (None, Some(_)) => {
            sqlx::query(statements.delete)
                .bind(org.org_id.0)
                .bind(&key)
                .bind(rule_id)
                .execute(&mut *tx)
                .await?;
        }
    }
    let action = format!("{}.{}", kind.audit_prefix(), if document.is_some() { "put" } else { "delete" });
    let entry = NewAuditEntry {
        org_id: org.org_id,
        tenant_id: scope.tenant_id(),
        actor,
        action: &action,
        target: rule_id,
        before: before.as_ref(),
        after: document,
        at: now,
    };
    insert_audit(&mut tx, entry).await?;
    // A deleted custom rule evaluates nothing any more: its findings resolve now, attributed to
    // whoever deleted it — unless the same rule id is still configured at the other level.
    if kind == RuleConfigKind::Custom && document.is_none() {
        for &tenant in &tenants {
            resolve_deleted_rule_findings(
                &mut tx,
                TenantScope { org_id: org.org_id, tenant_id: TenantId(tenant) },
                rule_id,
                actor,
                now,
            )
            .await?;
        }
    }
    // The affected tenants are evaluated again under the new configuration: the version bump
    // keeps the worker from skipping them as already evaluated, and counts as a new observation
    // for every rule (flap damping: a rule switched off resolves its findings at once). The
    // rules version tells every worker that the configuration it keeps for them is old.
    for tenant in tenants {
        sqlx::query(
            "UPDATE tenants SET facts_version = facts_version + 1, rules_version = rules_version + 1
             WHERE id = $1",
        )
        .bind(tenant)
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "UPDATE probe_versions SET facts_version = (SELECT facts_version FROM tenants WHERE id = $1)
             WHERE tenant_id = $1",
        )
        .bind(tenant)
        .execute(&mut *tx)
        .await?;
        let scope = TenantScope { org_id: org.org_id, tenant_id: TenantId(tenant) };
        insert_outbox(&mut tx, scope, &MessageKind::RulesChanged, None, now).await?;
    }
    tx.commit().await?;
    Ok(RuleConfigWrite::Written { before })
}

/// Resolves the tenant's findings of a deleted custom rule, unless the rule id is still
/// configured for it (at the organisation's level, or the tenant's).
async fn resolve_deleted_rule_findings(
    tx: &mut Tx,
    scope: TenantScope,
    rule_id: &str,
    actor: &str,
    now: DateTime<Utc>,
) -> Result<()> {
    let still: Option<String> = sqlx::query_scalar(
        "SELECT rule_id FROM custom_rules WHERE org_id = $1 AND rule_id = $2
         AND (scope_key = 'org' OR tenant_id = $3) LIMIT 1",
    )
    .bind(scope.org_id.0)
    .bind(rule_id)
    .bind(scope.tenant_id.0)
    .fetch_optional(&mut **tx)
    .await?;
    if still.is_some() {
        return Ok(());
    }
    let summary = format!("The custom rule {rule_id} was deleted.");
    let resolved = sqlx::query(
        "UPDATE findings
         SET status = 'resolved', summary = $4, resolved_at = $5, updated_at = $5,
             acknowledged_at = NULL, acknowledged_by = NULL, suppressed_until = NULL,
             suppression_reason = NULL, suppressed_by = NULL, version = version + 1
         WHERE org_id = $1 AND tenant_id = $2 AND rule_id = $3 AND status <> 'resolved'
         RETURNING id, severity",
    )
    .bind(scope.org_id.0)
    .bind(scope.tenant_id.0)
    .bind(rule_id)
    .bind(&summary)
    .bind(now)
    .fetch_all(&mut **tx)
    .await?;
    for row in resolved {
        let event = NewEvent {
            actor,
            ..NewEvent::system(
                FindingEventKind::Resolved,
                parse_enum(row.try_get("severity")?, "findings.severity")?,
                &summary,
            )
        };
        insert_event(tx, scope, row.try_get("id")?, &event, now).await?;
    }
    Ok(())
}
