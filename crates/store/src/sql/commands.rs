//! What people do with a collector's commands besides asking for them (`findings::request_retest`):
//! list them and cancel one that still waits.

use super::prelude::*;

pub(super) async fn list_collector_commands(
    pool: &DbPool,
    org: OrgScope,
    collector: CollectorId,
    before: Option<Uuid>,
    limit: u32,
) -> Result<Vec<CollectorCommandRecord>> {
    let rows = sqlx::query(concat!(
        "SELECT ",
        command_cols!(),
        " FROM collector_commands
         WHERE collector_id = $1 AND org_id = $2 AND ($3 IS NULL OR id < $3)
         ORDER BY id DESC LIMIT $4"
    ))
    .bind(collector.0)
    .bind(org.org_id.0)
    .bind(before)
    .bind(i64::from(limit))
    .fetch_all(pool.read())
    .await?;
    rows.iter().map(rows::command).collect()
}

pub(super) async fn cancel_collector_command(
    pool: &DbPool,
    org: OrgScope,
    collector: CollectorId,
    id: Uuid,
    actor: &str,
    now: DateTime<Utc>,
) -> Result<CommandCancel> {
    let now = micros(now);
    let mut tx = write_tx(pool).await?;
    // Locked against the push that would deliver it meanwhile: one of the two wins.
    let row = sqlx::query(concat!(
        "SELECT tenant_id, ",
        command_cols!(),
        " FROM collector_commands WHERE id = $1 AND collector_id = $2 AND org_id = $3",
        row_lock!(for_update)
    ))
    .bind(id)
    .bind(collector.0)
    .bind(org.org_id.0)
    .fetch_optional(&mut *tx)
    .await?;
    let Some(row) = row else {
        tx.rollback().await?;
        return Ok(CommandCancel::NotFound);
    };
    let before = rows::command(&row)?;
    if before.state(now) != CommandState::Pending {
        tx.rollback().await?;
        return Ok(CommandCancel::NotPending(Box::new(before)));
    }
    let tenant_id = TenantId(row.try_get("tenant_id")?);
    let after = sqlx::query(concat!(
        "UPDATE collector_commands SET cancelled_at = $2, cancelled_by = $3 WHERE id = $1 RETURNING ",
        command_cols!()
    ))
    .bind(id)
    .bind(now)
    .bind(actor)
    .fetch_one(&mut *tx)
    .await?;
    let after = rows::command(&after)?;
    let document = |c: &CollectorCommandRecord| {
        serde_json::json!({
            "collector_id": c.collector_id.0,
            "finding_id": c.finding_id.map(|f| f.0),
            "action": c.action,
            "state": c.state(now).as_str(),
            "expires_at": c.expires_at,
        })
    };
    let target = id.to_string();
    insert_audit(
        &mut tx,
        NewAuditEntry {
            org_id: org.org_id,
            tenant_id: Some(tenant_id),
            actor,
            action: "collector_command.cancel",
            target: &target,
            before: Some(&document(&before)),
            after: Some(&document(&after)),
            at: now,
        },
    )
    .await?;
    tx.commit().await?;
    Ok(CommandCancel::Cancelled(Box::new(after)))
}
