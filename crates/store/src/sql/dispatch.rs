//! The dispatcher's side: finding events not yet turned into deliveries are claimed with a
//! lease (PostgreSQL: skipping those another dispatcher holds), then stamped in the transaction
//! that stores their deliveries.

use super::deliveries::insert_delivery;
use super::prelude::*;

pub(super) async fn claim_undispatched_events(
    pool: &DbPool,
    limit: u32,
    lease: Duration,
    now: DateTime<Utc>,
) -> Result<Vec<UndispatchedEvent>> {
    let now = micros(now);
    let mut tx = write_tx(pool).await?;
    let rows = sqlx::query(concat!(
        "SELECT e.id AS event_id, e.finding_id AS event_finding_id, e.org_id AS event_org_id,
                e.tenant_id AS event_tenant_id
         FROM finding_events e
         WHERE e.dispatched_at IS NULL
           AND (e.dispatch_lease_until IS NULL OR e.dispatch_lease_until <= $1)
         ORDER BY e.at, e.id
         LIMIT $2",
        row_lock!(skip_locked "e")
    ))
    .bind(now)
    .bind(i64::from(limit))
    .fetch_all(&mut *tx)
    .await?;
    let mut out = Vec::with_capacity(rows.len());
    for row in &rows {
        let event_id: Uuid = row.try_get("event_id")?;
        let finding_id: Uuid = row.try_get("event_finding_id")?;
        let org_id: Uuid = row.try_get("event_org_id")?;
        let tenant_id: Uuid = row.try_get("event_tenant_id")?;
        sqlx::query("UPDATE finding_events SET dispatch_lease_until = $2 WHERE id = $1")
            .bind(event_id)
            .bind(lease_until(now, lease))
            .execute(&mut *tx)
            .await?;
        let event = sqlx::query(concat!("SELECT ", event_cols!(), " FROM finding_events WHERE id = $1"))
            .bind(event_id)
            .fetch_one(&mut *tx)
            .await?;
        let finding = sqlx::query(concat!("SELECT ", finding_cols!(), " FROM findings WHERE id = $1"))
            .bind(finding_id)
            .fetch_one(&mut *tx)
            .await?;
        let tenant_name: String = sqlx::query_scalar("SELECT name FROM tenants WHERE id = $1")
            .bind(tenant_id)
            .fetch_one(&mut *tx)
            .await?;
        out.push(UndispatchedEvent {
            org_id: OrgId(org_id),
            tenant_id: TenantId(tenant_id),
            tenant_name,
            event: rows::event(&event)?,
            finding: rows::finding(&finding)?,
        });
    }
    tx.commit().await?;
    Ok(out)
}

pub(super) async fn record_dispatch(
    pool: &DbPool,
    event_ids: &[Uuid],
    deliveries: &[NewDelivery],
    now: DateTime<Utc>,
) -> Result<u64> {
    let now = micros(now);
    let mut tx = write_tx(pool).await?;
    let mut inserted = 0;
    for d in deliveries {
        inserted += insert_delivery(&mut tx, d, now).await?;
    }
    for id in event_ids {
        sqlx::query(
            "UPDATE finding_events SET dispatched_at = $2, dispatch_lease_until = NULL WHERE id = $1",
        )
        .bind(id)
        .bind(now)
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await?;
    Ok(inserted)
}
