//! The delivery engine's side: claiming due deliveries within each integration's slots, budget
//! and ticket order; recording a ticket create before it is sent; writing an attempt and all it
//! changes. Every write after a claim checks the lease first, so a worker whose lease ran out
//! writes nothing.

use std::collections::hash_map::Entry;
use std::collections::{HashMap, HashSet};

use super::integration_health::resolve_integration_findings;
use super::prelude::*;
use crate::delivery_model::AttemptRow;

pub(super) async fn claim_deliveries(
    pool: &DbPool,
    limit: u32,
    lease: Duration,
    now: DateTime<Utc>,
) -> Result<Vec<ClaimedDelivery>> {
    let now = micros(now);
    let mut tx = write_tx(pool).await?;
    // The integrations that can take a delivery now: enabled, not throttled, budget left, a free
    // slot (in-flight counts from the small set of leased rows), and something due — the ones
    // whose oldest due delivery is oldest first, at most `limit` of them.
    let open: Vec<(Uuid, i64)> = sqlx::query_as(concat!(
        "WITH busy AS (
             SELECT integration_id, COUNT(*) AS n FROM deliveries",
        indexed_by!("deliveries_leased_idx"),
        "
             WHERE status = 'pending' AND lease_until > $1
             GROUP BY integration_id
         ),
         open AS (
             SELECT i.id, i.max_in_flight - COALESCE(b.n, 0) AS free,
                    (SELECT MIN(d.next_attempt_at) FROM deliveries d
                     WHERE d.integration_id = i.id AND d.status = 'pending' AND d.next_attempt_at <= $1)
                        AS oldest
             FROM integrations i LEFT JOIN busy b ON b.integration_id = i.id
             WHERE i.enabled AND COALESCE(b.n, 0) < i.max_in_flight
               AND (i.throttled_until IS NULL OR i.throttled_until <= $1)
               AND (i.hourly_budget IS NULL OR i.budget_window_start IS NULL
                    OR i.budget_window_start <= $3 OR i.budget_used < i.hourly_budget)
         )
         SELECT id, free FROM open WHERE oldest IS NOT NULL ORDER BY oldest, id LIMIT $2",
    ))
    .bind(now)
    .bind(i64::from(limit))
    .bind(now - chrono::TimeDelta::hours(1))
    .fetch_all(&mut *tx)
    .await?;
    // From each, its oldest due deliveries, no more than it has free slots: not held, and each
    // the oldest pending one of its ticket (a ticket's events go in order: never close before the
    // create went through). Read through the (integration, next attempt) index and stopped at the
    // limit, so a claim costs what it takes, whatever the backlog; one integration's backlog never
    // crowds out another's. PostgreSQL skips rows another claimer holds.
    let mut candidates = Vec::new();
    for (integration_id, free) in open {
        let rows = sqlx::query(concat!(
            "SELECT ",
            delivery_cols!(),
            " FROM deliveries d
             WHERE d.integration_id = $1 AND d.status = 'pending' AND d.next_attempt_at <= $2
               AND (d.lease_until IS NULL OR d.lease_until <= $2)
               AND (d.ticket_key IS NULL OR NOT EXISTS (
                    SELECT 1 FROM deliveries e
                    WHERE e.integration_id = d.integration_id AND e.ticket_key = d.ticket_key
                      AND e.status = 'pending' AND e.id <> d.id
                      AND (e.occurred_at < d.occurred_at
                           OR (e.occurred_at = d.occurred_at AND e.id < d.id)
                           OR e.lease_until > $2)))
             ORDER BY d.next_attempt_at, d.id
             LIMIT $3",
            row_lock!(skip_locked "d")
        ))
        .bind(integration_id)
        .bind(now)
        .bind(free.clamp(0, i64::from(limit)))
        .fetch_all(&mut *tx)
        .await?;
        for row in &rows {
            candidates.push(rows::delivery(row)?);
        }
    }
    candidates.sort_by_key(|d| (d.next_attempt_at, d.id));

    // Each integration's free slots and budget left, as this claim takes them.
    let mut integrations: HashMap<Uuid, (Integration, u32, Option<u32>)> = HashMap::new();
    let mut taken = Vec::new();
    // How many of a budgeted integration's deliveries this claim starts.
    let mut budget_taken: HashMap<Uuid, i64> = HashMap::new();
    for delivery in candidates {
        if taken.len() as u32 >= limit {
            break;
        }
        let (integration, free, budget_left) = match integrations.entry(delivery.integration_id) {
            Entry::Occupied(held) => held.into_mut(),
            Entry::Vacant(slot) => {
                slot.insert(lock_integration(&mut tx, delivery.integration_id, now).await?)
            }
        };
        if *free == 0 || *budget_left == Some(0) {
            continue;
        }
        *free -= 1;
        if let Some(left) = budget_left.as_mut() {
            *left -= 1;
            *budget_taken.entry(integration.id).or_default() += 1;
        }
        taken.push(delivery);
    }
    for (integration_id, n) in budget_taken {
        sqlx::query(
            "UPDATE integrations SET
                 budget_used = CASE WHEN budget_window_start IS NULL OR budget_window_start <= $2
                                    THEN $4 ELSE budget_used + $4 END,
                 budget_window_start = CASE WHEN budget_window_start IS NULL OR budget_window_start <= $2
                                    THEN $3 ELSE budget_window_start END
             WHERE id = $1",
        )
        .bind(integration_id)
        .bind(now - chrono::TimeDelta::hours(1))
        .bind(now)
        .bind(n)
        .execute(&mut *tx)
        .await?;
    }
    // One lease for everything this claim takes, written in one statement: the lease id tells
    // this claim's later writes from those of whoever claims a delivery after its lease ran out.
    let lease_id = Uuid::now_v7();
    let ids: Vec<Uuid> = taken.iter().map(|d| d.id).collect();
    dialect::lease_deliveries(&mut tx, &ids, lease_id, lease_until(now, lease)).await?;
    let mut claimed = Vec::with_capacity(taken.len());
    for delivery in taken {
        let ticket = match &delivery.ticket_key {
            None => None,
            Some(key) => {
                let row = sqlx::query(concat!(
                    "SELECT ",
                    ticket_cols!(),
                    " FROM tickets WHERE integration_id = $1 AND ticket_key = $2"
                ))
                .bind(delivery.integration_id)
                .bind(key)
                .fetch_optional(&mut *tx)
                .await?;
                row.as_ref().map(rows::ticket).transpose()?
            }
        };
        let (integration, ..) = &integrations[&delivery.integration_id];
        claimed.push(ClaimedDelivery { delivery, lease_id, integration: integration.clone(), ticket });
    }
    tx.commit().await?;
    Ok(claimed)
}

/// Locks a claimed delivery's integration (PostgreSQL) and reads what it has free: in-flight
/// slots and what is left of its hourly budget (`None`: no budget).
async fn lock_integration(
    tx: &mut Tx,
    id: Uuid,
    now: DateTime<Utc>,
) -> Result<(Integration, u32, Option<u32>)> {
    let row = sqlx::query(concat!(
        "SELECT ",
        integration_cols!(),
        " FROM integrations WHERE id = $1",
        row_lock!(for_no_key_update)
    ))
    .bind(id)
    .fetch_one(&mut **tx)
    .await?;
    let integration = rows::integration(&row)?;
    // Switched off or throttled (an attempt just heard a 429) since the candidates were chosen:
    // on PostgreSQL the candidate query does not lock, and this lock may have waited for that.
    let paused = !integration.enabled || integration.throttled_until.is_some_and(|until| until > now);
    // Through the leased rows (a handful), not the integration's whole backlog.
    let in_flight: i64 = sqlx::query_scalar(concat!(
        "SELECT COUNT(*) FROM deliveries",
        indexed_by!("deliveries_leased_idx"),
        " WHERE integration_id = $1 AND status = 'pending' AND lease_until > $2"
    ))
    .bind(id)
    .bind(now)
    .fetch_one(&mut **tx)
    .await?;
    let free = if paused { 0 } else { integration.max_in_flight.saturating_sub(in_flight.max(0) as u32) };
    // The hourly budget counts deliveries started in the current one-hour window.
    let window: Option<DateTime<Utc>> = row.try_get("budget_window_start")?;
    let used = rows::int(&row, "budget_used")?;
    let budget_left = integration.hourly_budget.map(|budget| match window {
        Some(start) if now - start < chrono::TimeDelta::hours(1) => budget.saturating_sub(used.max(0) as u32),
        _ => budget,
    });
    Ok((integration, free, budget_left))
}

/// Whether `lease_id` still holds the delivery, locking it (PostgreSQL) for the writes that follow.
async fn holds_lease(tx: &mut Tx, delivery_id: Uuid, lease_id: Uuid) -> Result<bool> {
    let held: Option<Uuid> = sqlx::query_scalar(concat!(
        "SELECT lease_id FROM deliveries WHERE id = $1 AND status = 'pending'",
        row_lock!(for_no_key_update)
    ))
    .bind(delivery_id)
    .fetch_optional(&mut **tx)
    .await?
    .flatten();
    Ok(held == Some(lease_id))
}

pub(super) async fn mark_ticket_creating(
    pool: &DbPool,
    delivery: &Delivery,
    lease_id: Uuid,
    now: DateTime<Utc>,
) -> Result<bool> {
    let now = micros(now);
    let Some(key) = &delivery.ticket_key else { return Ok(false) };
    let mut tx = write_tx(pool).await?;
    if !holds_lease(&mut tx, delivery.id, lease_id).await? {
        return Ok(false);
    }
    sqlx::query(
        "INSERT INTO tickets (id, org_id, integration_id, ticket_key, external_id, url, state, created_at, updated_at)
         VALUES ($1, $2, $3, $4, NULL, NULL, 'creating', $5, $5)
         ON CONFLICT (integration_id, ticket_key) DO UPDATE SET
             external_id = NULL, url = NULL, state = 'creating', updated_at = excluded.updated_at
         WHERE tickets.external_id IS NOT NULL",
    )
    .bind(Uuid::now_v7())
    .bind(delivery.org_id.0)
    .bind(delivery.integration_id)
    .bind(key)
    .bind(now)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(true)
}

/// Records finished attempts in one transaction: the deliveries' states and attempt rows in one
/// statement on PostgreSQL, then, in the order given, what each changes of its integration's
/// health and of its ticket. An attempt whose lease ran out writes nothing: whoever holds the
/// delivery now records.
pub(super) async fn complete_attempts(
    pool: &DbPool,
    done: &[(&Delivery, &AttemptRecord)],
) -> Result<Vec<bool>> {
    if done.is_empty() {
        return Ok(Vec::new());
    }
    let rows: Vec<AttemptRow<'_>> =
        done.iter().map(|(delivery, record)| attempt_row(delivery, record)).collect();
    let mut tx = write_tx(pool).await?;
    let held: HashSet<Uuid> = dialect::finish_attempts(&mut tx, &rows).await?.into_iter().collect();
    if held.is_empty() {
        tx.rollback().await?;
        return Ok(vec![false; done.len()]);
    }
    // Each integration's health as this batch leaves it, read once.
    let mut health: HashMap<Uuid, Health> = HashMap::new();
    for ((delivery, record), row) in done.iter().zip(&rows) {
        if !held.contains(&delivery.id) {
            continue;
        }
        let state = match health.entry(delivery.integration_id) {
            Entry::Occupied(known) => known.into_mut(),
            Entry::Vacant(slot) => slot.insert(Health::read(&mut tx, delivery.integration_id).await?),
        };
        record_health(&mut tx, state, delivery, record, row.at).await?;
        record_ticket(&mut tx, delivery, record, row.at).await?;
    }
    tx.commit().await?;
    Ok(done.iter().map(|(delivery, _)| held.contains(&delivery.id)).collect())
}

fn attempt_row<'a>(delivery: &Delivery, record: &'a AttemptRecord) -> AttemptRow<'a> {
    let (status, next_attempt_at) = match (record.succeeded, record.retry_at) {
        (true, _) => (DeliveryStatus::Succeeded, None),
        (false, Some(retry)) => (DeliveryStatus::Pending, Some(micros(retry))),
        (false, None) => (DeliveryStatus::Failed, None),
    };
    AttemptRow {
        delivery_id: delivery.id,
        lease_id: record.lease_id,
        org_id: delivery.org_id.0,
        status: status.as_str(),
        attempt: i64::from(delivery.attempts) + 1,
        next_attempt_at,
        at: micros(record.at),
        succeeded: record.succeeded,
        http_status: record.status.map(i64::from),
        latency_ms: saturating_i64(record.latency_ms),
        error: record.error.as_deref(),
        response_excerpt: record.response_excerpt.as_deref(),
        exchanges: &record.exchanges,
    }
}

/// What an attempt's outcome changes of its integration's row.
struct Health {
    alerted: bool,
    failing: bool,
    throttle_streak: i64,
    last_success_at: Option<DateTime<Utc>>,
}

impl Health {
    async fn read(tx: &mut Tx, integration_id: Uuid) -> Result<Health> {
        let row = sqlx::query(
            "SELECT alerted, failing_since IS NOT NULL AS failing, throttle_streak, last_success_at
             FROM integrations WHERE id = $1",
        )
        .bind(integration_id)
        .fetch_one(&mut **tx)
        .await?;
        Ok(Health {
            alerted: row.try_get("alerted")?,
            failing: row.try_get("failing")?,
            throttle_streak: rows::int(&row, "throttle_streak")?,
            last_success_at: row.try_get("last_success_at")?,
        })
    }
}

async fn record_health(
    tx: &mut Tx,
    health: &mut Health,
    delivery: &Delivery,
    record: &AttemptRecord,
    at: DateTime<Utc>,
) -> Result<()> {
    if record.succeeded {
        // A healthy integration's row is left alone unless its last success is over a second
        // old: every delivery writing it would make concurrent completions queue for its lock.
        let stale = health.last_success_at.is_none_or(|last| at - last >= chrono::TimeDelta::seconds(1));
        let alerted = health.alerted;
        if alerted || health.failing || health.throttle_streak != 0 || stale {
            sqlx::query(
                "UPDATE integrations SET failing_since = NULL, alerted = FALSE, throttle_streak = 0,
                     last_success_at = CASE WHEN last_success_at IS NULL OR last_success_at < $2
                                            THEN $2 ELSE last_success_at END
                 WHERE id = $1",
            )
            .bind(delivery.integration_id)
            .bind(at)
            .execute(&mut **tx)
            .await?;
            *health = Health {
                alerted: false,
                failing: false,
                throttle_streak: 0,
                last_success_at: health.last_success_at.max(Some(at)),
            };
        }
        if alerted {
            resolve_integration_findings(tx, delivery.org_id, delivery.integration_id, at).await?;
        }
    } else {
        // A throttling answer pauses the integration (never shortening a pause another attempt
        // set) and lengthens the next pause; any other answer ends the streak.
        sqlx::query(
            "UPDATE integrations SET failing_since = COALESCE(failing_since, $2),
                 throttled_until = CASE WHEN $3 IS NOT NULL AND (throttled_until IS NULL OR throttled_until < $3)
                                        THEN $3 ELSE throttled_until END,
                 throttle_streak = CASE WHEN $3 IS NULL THEN 0 ELSE throttle_streak + 1 END
             WHERE id = $1",
        )
        .bind(delivery.integration_id)
        .bind(at)
        .bind(record.throttle_until.map(micros))
        .execute(&mut **tx)
        .await?;
        health.failing = true;
        health.throttle_streak = if record.throttle_until.is_some() { health.throttle_streak + 1 } else { 0 };
    }
    Ok(())
}

/// The ticket an attempt made or changed, and whether the delivery's finding is open on it.
async fn record_ticket(
    tx: &mut Tx,
    delivery: &Delivery,
    record: &AttemptRecord,
    at: DateTime<Utc>,
) -> Result<()> {
    if let (Some(key), Some(update)) = (&delivery.ticket_key, &record.ticket) {
        let (external_id, url, state) = match update {
            TicketUpdate::Set { external_id, url, state } => {
                (Some(external_id.as_str()), url.as_deref(), *state)
            }
            TicketUpdate::State(state) => (None, None, *state),
        };
        sqlx::query(
            "INSERT INTO tickets (id, org_id, integration_id, ticket_key, external_id, url, state, created_at,
                                  updated_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8)
             ON CONFLICT (integration_id, ticket_key) DO UPDATE SET
                 external_id = COALESCE(excluded.external_id, tickets.external_id),
                 url = CASE WHEN excluded.external_id IS NULL THEN tickets.url ELSE excluded.url END,
                 state = excluded.state, updated_at = excluded.updated_at",
        )
        .bind(Uuid::now_v7())
        .bind(delivery.org_id.0)
        .bind(delivery.integration_id)
        .bind(key)
        .bind(external_id)
        .bind(url)
        .bind(state.as_str())
        .bind(at)
        .execute(&mut **tx)
        .await?;
    }
    if let (Some(key), Some(open), Some(finding), Some(tenant)) =
        (&delivery.ticket_key, record.finding_open, delivery.finding_id, delivery.tenant_id)
    {
        let ticket_id: Option<Uuid> =
            sqlx::query_scalar("SELECT id FROM tickets WHERE integration_id = $1 AND ticket_key = $2")
                .bind(delivery.integration_id)
                .bind(key)
                .fetch_optional(&mut **tx)
                .await?;
        if let Some(ticket_id) = ticket_id {
            sqlx::query(
                "INSERT INTO ticket_findings (ticket_id, finding_id, org_id, tenant_id, open)
                 VALUES ($1, $2, $3, $4, $5)
                 ON CONFLICT (ticket_id, finding_id) DO UPDATE SET open = excluded.open",
            )
            .bind(ticket_id)
            .bind(finding.0)
            .bind(delivery.org_id.0)
            .bind(tenant.0)
            .bind(open)
            .execute(&mut **tx)
            .await?;
        }
    }
    Ok(())
}

pub(super) async fn ticket_open_findings(
    pool: &DbPool,
    integration_id: Uuid,
    ticket_key: &str,
) -> Result<Vec<(FindingId, TenantId, String)>> {
    let rows = sqlx::query(
        "SELECT tf.finding_id, tf.tenant_id, tn.name
         FROM tickets t
         JOIN ticket_findings tf ON tf.ticket_id = t.id
         JOIN tenants tn ON tn.id = tf.tenant_id
         WHERE t.integration_id = $1 AND t.ticket_key = $2 AND tf.open
         ORDER BY tn.name, tf.tenant_id",
    )
    .bind(integration_id)
    .bind(ticket_key)
    .fetch_all(pool.read())
    .await?;
    rows.iter()
        .map(|row| {
            Ok((
                FindingId(row.try_get("finding_id")?),
                TenantId(row.try_get("tenant_id")?),
                row.try_get("name")?,
            ))
        })
        .collect()
}
