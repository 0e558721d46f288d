//! Deliveries as the API and the dispatcher see them: queued once per (integration, event),
//! listed and read with their attempts, replayed; and the tickets a page of findings has.

use super::prelude::*;

/// Queues one delivery; a duplicate of an (integration, event) pair counts 0.
pub(super) async fn insert_delivery(tx: &mut Tx, d: &NewDelivery, now: DateTime<Utc>) -> Result<u64> {
    Ok(sqlx::query(
        "INSERT INTO deliveries (id, org_id, integration_id, event_id, event_type, tenant_id, finding_id,
             ticket_key, payload, occurred_at, traceparent, status, attempts, next_attempt_at, created_at,
             updated_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10,
                 (SELECT traceparent FROM finding_events WHERE id = $4), 'pending', 0, $11, $11, $11)
         ON CONFLICT (integration_id, event_id) DO NOTHING",
    )
    .bind(Uuid::now_v7())
    .bind(d.org_id.0)
    .bind(d.integration_id)
    .bind(d.event_id)
    .bind(&d.event_type)
    .bind(d.tenant_id.map(|t| t.0))
    .bind(d.finding_id.map(|f| f.0))
    .bind(&d.ticket_key)
    .bind(Json(&d.payload))
    .bind(micros(d.occurred_at))
    .bind(now)
    .execute(&mut **tx)
    .await?
    .rows_affected())
}

pub(super) async fn enqueue_deliveries(
    pool: &DbPool,
    deliveries: &[NewDelivery],
    now: DateTime<Utc>,
) -> Result<u64> {
    let now = micros(now);
    let mut tx = write_tx(pool).await?;
    let mut inserted = 0;
    for d in deliveries {
        inserted += insert_delivery(&mut tx, d, now).await?;
    }
    tx.commit().await?;
    Ok(inserted)
}

pub(super) async fn list_deliveries(
    pool: &DbPool,
    org: OrgScope,
    integration_id: Uuid,
    filter: &DeliveryFilter,
) -> Result<Vec<Delivery>> {
    // Only the conditions asked for, so each shape of the query can use its index
    // (`($n IS NULL OR status = $n)` keeps the planners off them). The status is one of the
    // enum's own names, written into the query so the planner can use the partial index of
    // failed deliveries.
    let mut conditions =
        filter.status.map(|status| format!(" AND status = '{}'", status.as_str())).unwrap_or_default();
    let mut next = 3;
    for (given, condition) in [(filter.since.is_some(), "occurred_at >="), (filter.before.is_some(), "id <")]
    {
        if given {
            conditions.push_str(&format!(" AND {condition} ${next}"));
            next += 1;
        }
    }
    let sql = format!(
        "SELECT {} FROM deliveries WHERE org_id = $1 AND integration_id = $2{conditions}
         ORDER BY id DESC LIMIT ${next}",
        delivery_cols!()
    );
    let mut query = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(org.org_id.0).bind(integration_id);
    if let Some(since) = filter.since {
        query = query.bind(micros(since));
    }
    if let Some(before) = filter.before {
        query = query.bind(before);
    }
    let rows = query.bind(i64::from(filter.limit.max(1))).fetch_all(pool.read()).await?;
    rows.iter().map(rows::delivery).collect()
}

pub(super) async fn get_delivery(
    pool: &DbPool,
    org: OrgScope,
    id: Uuid,
) -> Result<Option<(Delivery, Vec<DeliveryAttempt>)>> {
    let row =
        sqlx::query(concat!("SELECT ", delivery_cols!(), " FROM deliveries WHERE org_id = $1 AND id = $2"))
            .bind(org.org_id.0)
            .bind(id)
            .fetch_optional(pool.read())
            .await?;
    let Some(delivery) = row.as_ref().map(rows::delivery).transpose()? else {
        return Ok(None);
    };
    let rows = sqlx::query(concat!(
        "SELECT ",
        attempt_cols!(),
        " FROM delivery_attempts WHERE org_id = $1 AND delivery_id = $2 ORDER BY at, id"
    ))
    .bind(org.org_id.0)
    .bind(id)
    .fetch_all(pool.read())
    .await?;
    let attempts = rows.iter().map(rows::attempt).collect::<Result<Vec<_>>>()?;
    Ok(Some((delivery, attempts)))
}

pub(super) async fn replay_deliveries(
    pool: &DbPool,
    org: OrgScope,
    integration_id: Uuid,
    delivery_id: Option<Uuid>,
    failed_since: Option<DateTime<Utc>>,
    actor: &str,
    now: DateTime<Utc>,
) -> Result<u64> {
    let now = micros(now);
    let mut tx = write_tx(pool).await?;
    // One delivery is replayed whatever its state (a succeeded one is sent again, same event id);
    // "all failed since T" takes the failed ones only. Nothing is replayed for a switched-off
    // integration (its deliveries would only wait), nor for one deleted meanwhile. Each shape is
    // its own statement, so that `status = 'failed'` and the time bound reach the planner as they
    // are (partial index `deliveries_failed_idx`), and no bound is bound as `DateTime::MIN_UTC`,
    // which PostgreSQL cannot represent.
    macro_rules! replay {
        ($which:literal) => {
            sqlx::query(concat!(
                "UPDATE deliveries SET status = 'pending', attempts = 0, next_attempt_at = $3,
                     lease_id = NULL, lease_until = NULL, updated_at = $3
                 WHERE org_id = $1 AND integration_id = $2 AND ",
                $which,
                " AND EXISTS (SELECT 1 FROM integrations i WHERE i.org_id = $1 AND i.id = $2 AND i.enabled)"
            ))
            .bind(org.org_id.0)
            .bind(integration_id)
            .bind(now)
        };
    }
    let query = match (delivery_id, failed_since) {
        (Some(id), _) => replay!("id = $4 AND status <> 'pending'").bind(id),
        (None, Some(since)) => replay!("status = 'failed' AND occurred_at >= $4").bind(micros(since)),
        (None, None) => replay!("status = 'failed'"),
    };
    let done = query.execute(&mut *tx).await?.rows_affected();
    if done > 0 {
        let after = serde_json::json!({
            "integration_id": integration_id,
            "delivery_id": delivery_id,
            "failed_since": failed_since,
            "replayed": done,
        });
        let entry = NewAuditEntry {
            org_id: org.org_id,
            tenant_id: None,
            actor,
            action: "delivery.replay",
            target: &delivery_id.unwrap_or(integration_id).to_string(),
            before: None,
            after: Some(&after),
            at: now,
        };
        insert_audit(&mut tx, entry).await?;
    }
    tx.commit().await?;
    Ok(done)
}

pub(super) async fn list_finding_tickets(
    pool: &DbPool,
    org: OrgScope,
    finding_ids: &[FindingId],
) -> Result<Vec<FindingTicket>> {
    // One query for a page of findings (`IN ($2, $3, …)`, the same SQL on both backends); a very
    // long list goes in chunks, below either backend's limit of bound values.
    const CHUNK: usize = 500;
    let mut wanted: Vec<Uuid> = Vec::with_capacity(finding_ids.len());
    for f in finding_ids {
        if !wanted.contains(&f.0) {
            wanted.push(f.0);
        }
    }
    let mut out = Vec::new();
    for chunk in wanted.chunks(CHUNK) {
        let placeholders = (2..chunk.len() + 2).map(|i| format!("${i}")).collect::<Vec<_>>().join(", ");
        let sql = format!(
            "SELECT tf.finding_id, t.integration_id, i.name, i.kind, t.external_id, t.url, t.state
             FROM ticket_findings tf
             JOIN tickets t ON t.id = tf.ticket_id
             JOIN integrations i ON i.id = t.integration_id
             WHERE tf.org_id = $1 AND tf.finding_id IN ({placeholders})
             ORDER BY t.created_at, t.id"
        );
        let mut query = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(org.org_id.0);
        for id in chunk {
            query = query.bind(*id);
        }
        for row in &query.fetch_all(pool.read()).await? {
            out.push(FindingTicket {
                finding_id: FindingId(row.try_get("finding_id")?),
                integration_id: row.try_get("integration_id")?,
                integration_name: row.try_get("name")?,
                kind: row.try_get("kind")?,
                external_id: row.try_get("external_id")?,
                url: row.try_get("url")?,
                state: parse_enum(row.try_get("state")?, "tickets.state")?,
            });
        }
    }
    // The findings in the order asked, each one's tickets oldest first (stable sort).
    out.sort_by_key(|t| wanted.iter().position(|w| *w == t.finding_id.0));
    Ok(out)
}

pub(super) async fn count_pending_deliveries(pool: &DbPool) -> Result<u64> {
    let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM deliveries WHERE status = 'pending'")
        .fetch_one(pool.read())
        .await?;
    to_u64(n, "count")
}
