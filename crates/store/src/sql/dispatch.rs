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
    // The oldest waiting events, leased in one statement; then their findings with their
    // tenants' names in one more (`dialect::findings_by_id`), however many were claimed.
    let rows = sqlx::query(concat!(
        "UPDATE finding_events SET dispatch_lease_until = $3 WHERE ",
        in_batch!(
            "id",
            concat!(
                "SELECT d.id FROM finding_events d
                 WHERE d.dispatched_at IS NULL
                   AND (d.dispatch_lease_until IS NULL OR d.dispatch_lease_until <= $1)
                 ORDER BY d.at, d.id
                 LIMIT $2",
                row_lock!(skip_locked "d")
            )
        ),
        " RETURNING ",
        event_cols!(),
        ", org_id, tenant_id"
    ))
    .bind(now)
    .bind(i64::from(limit))
    .bind(lease_until(now, lease))
    .fetch_all(&mut *tx)
    .await?;
    if rows.is_empty() {
        tx.commit().await?;
        return Ok(Vec::new());
    }
    let mut events = rows
        .iter()
        .map(|row| {
            Ok((rows::event(row)?, OrgId(row.try_get("org_id")?), TenantId(row.try_get("tenant_id")?)))
        })
        .collect::<Result<Vec<_>>>()?;
    // RETURNING keeps no order: the dispatcher sends in the order events happened.
    events.sort_by_key(|(event, ..)| (event.at, event.id));
    let mut finding_ids: Vec<Uuid> = events.iter().map(|(event, ..)| event.finding_id.0).collect();
    finding_ids.sort_unstable();
    finding_ids.dedup();
    let mut findings = std::collections::HashMap::with_capacity(finding_ids.len());
    for row in dialect::findings_by_id(&mut tx, &finding_ids).await? {
        let tenant_name: String = row.try_get("tenant_name")?;
        let finding = rows::finding(&row)?;
        findings.insert(finding.id, (finding, tenant_name));
    }
    tx.commit().await?;
    events
        .into_iter()
        .map(|(event, org_id, tenant_id)| {
            // A finding is deleted only with its events (its tenant's deletion), in one transaction.
            let (finding, tenant_name) = findings.get(&event.finding_id).cloned().ok_or_else(|| {
                StoreError::Corrupt(format!("finding_events.finding_id: {} not found", event.finding_id.0))
            })?;
            Ok(UndispatchedEvent { org_id, tenant_id, tenant_name, event, finding })
        })
        .collect()
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
    dialect::mark_dispatched(&mut tx, event_ids, now).await?;
    tx.commit().await?;
    Ok(inserted)
}
