//! The [`DeliveryStore`](crate::DeliveryStore) implementation, written once and expanded in
//! each backend module (`pg`, `sqlite`): the SQL is the same for both apart from row locking,
//! which PostgreSQL needs (`FOR UPDATE … SKIP LOCKED`, many claimers at once) and SQLite does
//! not have (its `BEGIN IMMEDIATE` write transactions already run one at a time).
//!
//! Integration rows are locked `FOR NO KEY UPDATE` on PostgreSQL: enough to serialise claims of
//! one integration's slots and budget, and no conflict with the `KEY SHARE` lock that inserting a
//! delivery (its foreign key) takes — so enqueues never wait for claims, nor deadlock with them.
//!
//! The invoking module provides `write_tx()`, `finding_from_row`, `event_from_row` and the
//! `finding_cols!`/`event_cols!` column lists.

macro_rules! delivery_store_impl {
    ($store:ty, $row:ty, lock_deliveries = $lock_d:literal, lock_rows = $lock_r:literal, lock_events = $lock_e:literal) => {
        mod delivery_rows {
            use super::*;

            pub(super) const INTEGRATION_COLS: &str = "id, org_id, name, kind, url, config, secrets, filter, routing, \
                 max_in_flight, hourly_budget, budget_window_start, budget_used, enabled, disabled_reason, \
                 disabled_at, failing_since, last_success_at, throttled_until, throttle_streak, created_at, updated_at, \
                 version";
            pub(super) const DELIVERY_COLS: &str = "id, org_id, integration_id, event_id, event_type, tenant_id, \
                 finding_id, ticket_key, payload, occurred_at, traceparent, status, attempts, next_attempt_at, lease_id, \
                 lease_until, last_attempt_at, last_status, last_error, created_at, updated_at";
            pub(super) const TICKET_COLS: &str =
                "id, integration_id, ticket_key, external_id, url, state, created_at, updated_at";

            /// An INTEGER column: INT4 on PostgreSQL, which does not decode as `i64`.
            pub(super) fn int(row: &$row, column: &str) -> Result<i64> {
                Ok(i64::from(row.try_get::<i32, _>(column)?))
            }

            pub(super) fn opt_int(row: &$row, column: &str) -> Result<Option<i64>> {
                Ok(row.try_get::<Option<i32>, _>(column)?.map(i64::from))
            }

            pub(super) fn integration(row: &$row) -> Result<Integration> {
                let filter: Json<serde_json::Value> = row.try_get("filter")?;
                Ok(Integration {
                    id: row.try_get("id")?,
                    org_id: OrgId(row.try_get("org_id")?),
                    name: row.try_get("name")?,
                    kind: row.try_get("kind")?,
                    url: row.try_get("url")?,
                    config: row.try_get::<Json<serde_json::Value>, _>("config")?.0,
                    secrets: row.try_get("secrets")?,
                    filter: serde_json::from_value(filter.0)
                        .map_err(|e| StoreError::Corrupt(format!("integrations.filter: {e}")))?,
                    routing: parse_enum(row.try_get("routing")?, "integrations.routing")?,
                    max_in_flight: to_u32(int(row, "max_in_flight")?, "integrations.max_in_flight")?,
                    hourly_budget: opt_int(row, "hourly_budget")?
                        .map(|b| to_u32(b, "integrations.hourly_budget"))
                        .transpose()?,
                    enabled: row.try_get("enabled")?,
                    disabled_reason: row.try_get("disabled_reason")?,
                    disabled_at: row.try_get("disabled_at")?,
                    failing_since: row.try_get("failing_since")?,
                    last_success_at: row.try_get("last_success_at")?,
                    throttled_until: row.try_get("throttled_until")?,
                    throttle_streak: to_u32(int(row, "throttle_streak")?, "integrations.throttle_streak")?,
                    created_at: row.try_get("created_at")?,
                    updated_at: row.try_get("updated_at")?,
                    version: row.try_get("version")?,
                })
            }

            pub(super) fn delivery(row: &$row) -> Result<Delivery> {
                Ok(Delivery {
                    id: row.try_get("id")?,
                    org_id: OrgId(row.try_get("org_id")?),
                    integration_id: row.try_get("integration_id")?,
                    event_id: row.try_get("event_id")?,
                    event_type: row.try_get("event_type")?,
                    tenant_id: row.try_get::<Option<Uuid>, _>("tenant_id")?.map(TenantId),
                    finding_id: row.try_get::<Option<Uuid>, _>("finding_id")?.map(FindingId),
                    ticket_key: row.try_get("ticket_key")?,
                    payload: row.try_get::<Json<serde_json::Value>, _>("payload")?.0,
                    occurred_at: row.try_get("occurred_at")?,
                    traceparent: row.try_get("traceparent")?,
                    status: parse_enum(row.try_get("status")?, "deliveries.status")?,
                    attempts: to_u32(int(row, "attempts")?, "deliveries.attempts")?,
                    next_attempt_at: row.try_get("next_attempt_at")?,
                    last_attempt_at: row.try_get("last_attempt_at")?,
                    last_status: opt_int(row, "last_status")?
                        .map(|s| to_u32(s, "deliveries.last_status").map(|s| s as u16))
                        .transpose()?,
                    last_error: row.try_get("last_error")?,
                    created_at: row.try_get("created_at")?,
                    updated_at: row.try_get("updated_at")?,
                })
            }

            pub(super) fn attempt(row: &$row) -> Result<DeliveryAttempt> {
                Ok(DeliveryAttempt {
                    id: row.try_get("id")?,
                    delivery_id: row.try_get("delivery_id")?,
                    attempt: to_u32(int(row, "attempt")?, "delivery_attempts.attempt")?,
                    at: row.try_get("at")?,
                    succeeded: row.try_get("succeeded")?,
                    status: opt_int(row, "status")?
                        .map(|s| to_u32(s, "delivery_attempts.status").map(|s| s as u16))
                        .transpose()?,
                    latency_ms: to_u64(row.try_get("latency_ms")?, "delivery_attempts.latency_ms")?,
                    error: row.try_get("error")?,
                    response_excerpt: row.try_get("response_excerpt")?,
                    exchanges: row.try_get::<Json<serde_json::Value>, _>("exchanges")?.0,
                })
            }

            pub(super) fn ticket(row: &$row) -> Result<Ticket> {
                Ok(Ticket {
                    id: row.try_get("id")?,
                    integration_id: row.try_get("integration_id")?,
                    ticket_key: row.try_get("ticket_key")?,
                    external_id: row.try_get("external_id")?,
                    url: row.try_get("url")?,
                    state: parse_enum(row.try_get("state")?, "tickets.state")?,
                    created_at: row.try_get("created_at")?,
                    updated_at: row.try_get("updated_at")?,
                })
            }
        }

        #[async_trait]
        impl crate::DeliveryStore for $store {
            async fn create_integration(
                &self,
                org: OrgScope,
                write: &crate::IntegrationWrite,
                actor: &str,
                now: DateTime<Utc>,
            ) -> Result<crate::Integration> {
                let now = micros(now);
                let id = Uuid::now_v7();
                let mut tx = self.write_tx().await?;
                let row = sqlx::query(sqlx::AssertSqlSafe(format!(
                    "INSERT INTO integrations (id, org_id, name, kind, url, config, secrets, filter, routing,
                         max_in_flight, hourly_budget, budget_used, enabled, created_at, updated_at, version)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, 0, $12, $13, $13, 1)
                     RETURNING {}",
                    delivery_rows::INTEGRATION_COLS
                )))
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
                let created = delivery_rows::integration(&row)?;
                audit_integration(&mut tx, org, actor, "integration.create", id, None, Some(&created), now).await?;
                tx.commit().await?;
                Ok(created)
            }

            async fn list_integrations(&self, org: OrgScope) -> Result<Vec<crate::Integration>> {
                let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
                    "SELECT {} FROM integrations WHERE org_id = $1 ORDER BY id",
                    delivery_rows::INTEGRATION_COLS
                )))
                .bind(org.org_id.0)
                .fetch_all(&self.pool)
                .await?;
                rows.iter().map(delivery_rows::integration).collect()
            }

            async fn get_integration(&self, org: OrgScope, id: Uuid) -> Result<Option<crate::Integration>> {
                let row = sqlx::query(sqlx::AssertSqlSafe(format!(
                    "SELECT {} FROM integrations WHERE org_id = $1 AND id = $2",
                    delivery_rows::INTEGRATION_COLS
                )))
                .bind(org.org_id.0)
                .bind(id)
                .fetch_optional(&self.pool)
                .await?;
                row.as_ref().map(delivery_rows::integration).transpose()
            }

            async fn update_integration(
                &self,
                org: OrgScope,
                id: Uuid,
                expected_version: i64,
                write: &crate::IntegrationWrite,
                actor: &str,
                now: DateTime<Utc>,
            ) -> Result<crate::IntegrationUpdate> {
                let now = micros(now);
                let mut tx = self.write_tx().await?;
                let before = sqlx::query(sqlx::AssertSqlSafe(format!(
                    "SELECT {} FROM integrations WHERE org_id = $1 AND id = $2{}",
                    delivery_rows::INTEGRATION_COLS,
                    $lock_r
                )))
                .bind(org.org_id.0)
                .bind(id)
                .fetch_optional(&mut *tx)
                .await?;
                let Some(before) = before.as_ref().map(delivery_rows::integration).transpose()? else {
                    return Ok(crate::IntegrationUpdate::NotFound);
                };
                // The write was made from what the caller read: if the row changed since (the
                // engine switched it off, another request rotated its secret), it would undo that.
                if before.version != expected_version {
                    return Ok(crate::IntegrationUpdate::Changed { current_version: before.version });
                }
                // Switching an integration (back) on forgets its failure streak: it starts over.
                let reenabled = write.enabled && !before.enabled;
                let row = sqlx::query(sqlx::AssertSqlSafe(format!(
                    "UPDATE integrations SET name = $3, kind = $4, url = $5, config = $6, secrets = $7,
                         filter = $8, routing = $9, max_in_flight = $10, hourly_budget = $11, enabled = $12,
                         disabled_reason = CASE WHEN $12 THEN NULL ELSE disabled_reason END,
                         disabled_at = CASE WHEN $12 THEN NULL ELSE disabled_at END,
                         failing_since = CASE WHEN $13 THEN NULL ELSE failing_since END,
                         updated_at = $14, version = version + 1
                     WHERE org_id = $1 AND id = $2 AND version = $15
                     RETURNING {}",
                    delivery_rows::INTEGRATION_COLS
                )))
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
                // The row is locked (PostgreSQL) or the transaction alone (SQLite): it cannot have
                // changed since it was read, but a lost race must never become a blind write.
                let Some(row) = row else {
                    return Ok(crate::IntegrationUpdate::Changed { current_version: before.version });
                };
                let after = delivery_rows::integration(&row)?;
                audit_integration(&mut tx, org, actor, "integration.update", id, Some(&before), Some(&after), now)
                    .await?;
                tx.commit().await?;
                Ok(crate::IntegrationUpdate::Updated(Box::new(after)))
            }

            async fn delete_integration(
                &self,
                org: OrgScope,
                id: Uuid,
                actor: &str,
                now: DateTime<Utc>,
            ) -> Result<bool> {
                let now = micros(now);
                let mut tx = self.write_tx().await?;
                let before = sqlx::query(sqlx::AssertSqlSafe(format!(
                    "SELECT {} FROM integrations WHERE org_id = $1 AND id = $2{}",
                    delivery_rows::INTEGRATION_COLS,
                    $lock_r
                )))
                .bind(org.org_id.0)
                .bind(id)
                .fetch_optional(&mut *tx)
                .await?;
                let Some(before) = before.as_ref().map(delivery_rows::integration).transpose()? else {
                    return Ok(false);
                };
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

            async fn list_deliveries(
                &self,
                org: OrgScope,
                integration_id: Uuid,
                filter: &crate::DeliveryFilter,
            ) -> Result<Vec<crate::Delivery>> {
                // Only the conditions asked for, so each shape of the query can use its index
                // (`($n IS NULL OR status = $n)` keeps the planners off them).
                // The status is one of the enum's own names, written into the query so the planner
                // can use the partial index of failed deliveries.
                let mut conditions =
                    filter.status.map(|status| format!(" AND status = '{}'", status.as_str())).unwrap_or_default();
                let mut next = 3;
                for (given, condition) in [
                    (filter.since.is_some(), "occurred_at >="),
                    (filter.before.is_some(), "id <"),
                ] {
                    if given {
                        conditions.push_str(&format!(" AND {condition} ${next}"));
                        next += 1;
                    }
                }
                let sql = format!(
                    "SELECT {} FROM deliveries WHERE org_id = $1 AND integration_id = $2{conditions}
                     ORDER BY id DESC LIMIT ${next}",
                    delivery_rows::DELIVERY_COLS
                );
                let mut query = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(org.org_id.0).bind(integration_id);
                if let Some(since) = filter.since {
                    query = query.bind(micros(since));
                }
                if let Some(before) = filter.before {
                    query = query.bind(before);
                }
                let rows = query.bind(i64::from(filter.limit.max(1))).fetch_all(&self.pool).await?;
                rows.iter().map(delivery_rows::delivery).collect()
            }

            async fn get_delivery(
                &self,
                org: OrgScope,
                id: Uuid,
            ) -> Result<Option<(crate::Delivery, Vec<crate::DeliveryAttempt>)>> {
                let row = sqlx::query(sqlx::AssertSqlSafe(format!(
                    "SELECT {} FROM deliveries WHERE org_id = $1 AND id = $2",
                    delivery_rows::DELIVERY_COLS
                )))
                .bind(org.org_id.0)
                .bind(id)
                .fetch_optional(&self.pool)
                .await?;
                let Some(delivery) = row.as_ref().map(delivery_rows::delivery).transpose()? else {
                    return Ok(None);
                };
                let rows = sqlx::query(
                    "SELECT id, delivery_id, attempt, at, succeeded, status, latency_ms, error, response_excerpt,
                            exchanges
                     FROM delivery_attempts WHERE org_id = $1 AND delivery_id = $2 ORDER BY at, id",
                )
                .bind(org.org_id.0)
                .bind(id)
                .fetch_all(&self.pool)
                .await?;
                let attempts = rows.iter().map(delivery_rows::attempt).collect::<Result<Vec<_>>>()?;
                Ok(Some((delivery, attempts)))
            }

            async fn replay_deliveries(
                &self,
                org: OrgScope,
                integration_id: Uuid,
                delivery_id: Option<Uuid>,
                failed_since: Option<DateTime<Utc>>,
                actor: &str,
                now: DateTime<Utc>,
            ) -> Result<u64> {
                let now = micros(now);
                let mut tx = self.write_tx().await?;
                // One delivery is replayed whatever its state (a succeeded one is sent again, same
                // event id); "all failed since T" takes the failed ones only. Nothing is replayed
                // for a switched-off integration (its deliveries would only wait), nor for one
                // deleted meanwhile. Each shape is its own statement, so that `status = 'failed'`
                // and the time bound reach the planner as they are (partial index
                // `deliveries_failed_idx`), and no bound is bound as `DateTime::MIN_UTC`, which
                // PostgreSQL cannot represent.
                const ENABLED: &str = "EXISTS (SELECT 1 FROM integrations i
                                               WHERE i.org_id = $1 AND i.id = $2 AND i.enabled)";
                let replay = |which: &str| {
                    let sql = format!(
                        "UPDATE deliveries SET status = 'pending', attempts = 0, next_attempt_at = $3,
                             lease_id = NULL, lease_until = NULL, updated_at = $3
                         WHERE org_id = $1 AND integration_id = $2 AND {which} AND {ENABLED}"
                    );
                    sqlx::query(sqlx::AssertSqlSafe(sql)).bind(org.org_id.0).bind(integration_id).bind(now)
                };
                let query = match (delivery_id, failed_since) {
                    (Some(id), _) => replay("id = $4 AND status <> 'pending'").bind(id),
                    (None, Some(since)) => replay("status = 'failed' AND occurred_at >= $4").bind(micros(since)),
                    (None, None) => replay("status = 'failed'"),
                };
                let done = query.execute(&mut *tx).await?.rows_affected();
                if done > 0 {
                    let target = delivery_id.unwrap_or(integration_id).to_string();
                    let after = serde_json::json!({
                        "integration_id": integration_id,
                        "delivery_id": delivery_id,
                        "failed_since": failed_since,
                        "replayed": done,
                    });
                    sqlx::query(
                        "INSERT INTO audit_log (id, org_id, tenant_id, actor, action, target, before, after, at)
                         VALUES ($1, $2, NULL, $3, 'delivery.replay', $4, NULL, $5, $6)",
                    )
                    .bind(Uuid::now_v7())
                    .bind(org.org_id.0)
                    .bind(actor)
                    .bind(target)
                    .bind(Json(after))
                    .bind(now)
                    .execute(&mut *tx)
                    .await?;
                }
                tx.commit().await?;
                Ok(done)
            }

            async fn enqueue_deliveries(&self, deliveries: &[crate::NewDelivery], now: DateTime<Utc>) -> Result<u64> {
                let now = micros(now);
                let mut tx = self.write_tx().await?;
                let mut inserted = 0;
                for d in deliveries {
                    inserted += insert_delivery(&mut tx, d, now).await?;
                }
                tx.commit().await?;
                Ok(inserted)
            }

            async fn list_finding_tickets(
                &self,
                org: OrgScope,
                finding_ids: &[FindingId],
            ) -> Result<Vec<crate::FindingTicket>> {
                // One query for a page of findings (`IN ($2, $3, …)`, the same SQL on both
                // backends); a very long list goes in chunks, below either backend's limit of
                // bound values.
                const CHUNK: usize = 500;
                let mut wanted: Vec<Uuid> = Vec::with_capacity(finding_ids.len());
                for f in finding_ids {
                    if !wanted.contains(&f.0) {
                        wanted.push(f.0);
                    }
                }
                let mut out = Vec::new();
                for chunk in wanted.chunks(CHUNK) {
                    let placeholders =
                        (2..chunk.len() + 2).map(|i| format!("${i}")).collect::<Vec<_>>().join(", ");
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
                    for row in &query.fetch_all(&self.pool).await? {
                        out.push(crate::FindingTicket {
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

            async fn claim_undispatched_events(
                &self,
                limit: u32,
                lease: Duration,
                now: DateTime<Utc>,
            ) -> Result<Vec<crate::UndispatchedEvent>> {
                let now = micros(now);
                let mut tx = self.write_tx().await?;
                let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
                    "SELECT e.id AS event_id, e.finding_id AS event_finding_id, e.org_id AS event_org_id,
                            e.tenant_id AS event_tenant_id
                     FROM finding_events e
                     WHERE e.dispatched_at IS NULL
                       AND (e.dispatch_lease_until IS NULL OR e.dispatch_lease_until <= $1)
                     ORDER BY e.at, e.id
                     LIMIT $2{}",
                    $lock_e
                )))
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
                    out.push(crate::UndispatchedEvent {
                        org_id: OrgId(org_id),
                        tenant_id: TenantId(tenant_id),
                        tenant_name,
                        event: event_from_row(&event)?,
                        finding: finding_from_row(&finding)?,
                    });
                }
                tx.commit().await?;
                Ok(out)
            }

            async fn enabled_integrations(&self, org: OrgScope) -> Result<Vec<crate::Integration>> {
                let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
                    "SELECT {} FROM integrations WHERE org_id = $1 AND enabled ORDER BY id",
                    delivery_rows::INTEGRATION_COLS
                )))
                .bind(org.org_id.0)
                .fetch_all(&self.pool)
                .await?;
                rows.iter().map(delivery_rows::integration).collect()
            }

            async fn record_dispatch(
                &self,
                event_ids: &[Uuid],
                deliveries: &[crate::NewDelivery],
                now: DateTime<Utc>,
            ) -> Result<u64> {
                let now = micros(now);
                let mut tx = self.write_tx().await?;
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

            async fn claim_deliveries(
                &self,
                limit: u32,
                lease: Duration,
                now: DateTime<Utc>,
            ) -> Result<Vec<crate::ClaimedDelivery>> {
                let now = micros(now);
                let mut tx = self.write_tx().await?;
                // Due, not held, of an enabled integration with a free slot and budget left, and the
                // oldest pending one of its ticket (a ticket's events go in order: never close before
                // the create went through). At most as many per integration as it has free slots, so
                // one integration's backlog never crowds out another's deliveries, and the in-flight
                // counts are taken once per integration (from the small set of leased rows), not once
                // per candidate: a claim costs what the due rows cost, whatever the backlog.
                let ids: Vec<Uuid> = sqlx::query_scalar(
                    "WITH busy AS (
                         SELECT integration_id, COUNT(*) AS n FROM deliveries
                         WHERE status = 'pending' AND lease_until > $1
                         GROUP BY integration_id
                     ),
                     open AS (
                         SELECT i.id, i.max_in_flight - COALESCE(b.n, 0) AS free
                         FROM integrations i LEFT JOIN busy b ON b.integration_id = i.id
                         WHERE i.enabled AND COALESCE(b.n, 0) < i.max_in_flight
                           AND (i.throttled_until IS NULL OR i.throttled_until <= $1)
                           AND (i.hourly_budget IS NULL OR i.budget_window_start IS NULL
                                OR i.budget_window_start <= $3 OR i.budget_used < i.hourly_budget)
                     ),
                     due AS (
                         SELECT d.id, d.next_attempt_at, o.free,
                                ROW_NUMBER() OVER (PARTITION BY d.integration_id ORDER BY d.next_attempt_at, d.id)
                                    AS place
                         FROM deliveries d JOIN open o ON o.id = d.integration_id
                         WHERE d.status = 'pending' AND d.next_attempt_at <= $1
                           AND (d.lease_until IS NULL OR d.lease_until <= $1)
                           AND (d.ticket_key IS NULL OR NOT EXISTS (
                                SELECT 1 FROM deliveries e
                                WHERE e.integration_id = d.integration_id AND e.ticket_key = d.ticket_key
                                  AND e.status = 'pending' AND e.id <> d.id
                                  AND (e.occurred_at < d.occurred_at
                                       OR (e.occurred_at = d.occurred_at AND e.id < d.id)
                                       OR e.lease_until > $1)))
                     )
                     SELECT id FROM due WHERE place <= free ORDER BY next_attempt_at, id LIMIT $2",
                )
                .bind(now)
                .bind(i64::from(limit))
                .bind(now - chrono::TimeDelta::hours(1))
                .fetch_all(&mut *tx)
                .await?;
                // Take each one, unless another claimer got it first (PostgreSQL: skip its lock).
                let mut rows = Vec::with_capacity(ids.len());
                for id in ids {
                    let row = sqlx::query(sqlx::AssertSqlSafe(format!(
                        "SELECT {cols} FROM deliveries d
                         WHERE d.id = $1 AND d.status = 'pending' AND (d.lease_until IS NULL OR d.lease_until <= $2){lock}",
                        cols = delivery_rows::DELIVERY_COLS,
                        lock = $lock_d
                    )))
                    .bind(id)
                    .bind(now)
                    .fetch_optional(&mut *tx)
                    .await?;
                    rows.extend(row);
                }
                let candidates = rows.iter().map(delivery_rows::delivery).collect::<Result<Vec<_>>>()?;

                let mut integrations: std::collections::HashMap<Uuid, (crate::Integration, u32, Option<u32>)> =
                    std::collections::HashMap::new();
                let mut claimed = Vec::new();
                for delivery in candidates {
                    if claimed.len() as u32 >= limit {
                        break;
                    }
                    if !integrations.contains_key(&delivery.integration_id) {
                        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
                            "SELECT {} FROM integrations WHERE id = $1{}",
                            delivery_rows::INTEGRATION_COLS,
                            $lock_r
                        )))
                        .bind(delivery.integration_id)
                        .fetch_one(&mut *tx)
                        .await?;
                        let integration = delivery_rows::integration(&row)?;
                        // Throttled since the candidates were chosen (an attempt just heard a 429).
                        let throttled = integration.throttled_until.is_some_and(|until| until > now);
                        let in_flight: i64 = sqlx::query_scalar(
                            "SELECT COUNT(*) FROM deliveries
                             WHERE integration_id = $1 AND status = 'pending' AND lease_until > $2",
                        )
                        .bind(delivery.integration_id)
                        .bind(now)
                        .fetch_one(&mut *tx)
                        .await?;
                        let free = if throttled {
                            0
                        } else {
                            integration.max_in_flight.saturating_sub(in_flight.max(0) as u32)
                        };
                        // The hourly budget counts deliveries started in the current one-hour window.
                        let window: Option<DateTime<Utc>> = row.try_get("budget_window_start")?;
                        let used = delivery_rows::int(&row, "budget_used")?;
                        let budget_left = integration.hourly_budget.map(|budget| match window {
                            Some(start) if now - start < chrono::TimeDelta::hours(1) => {
                                budget.saturating_sub(used.max(0) as u32)
                            }
                            _ => budget,
                        });
                        integrations.insert(delivery.integration_id, (integration, free, budget_left));
                    }
                    let (integration, free, budget_left) =
                        integrations.get_mut(&delivery.integration_id).expect("loaded above");
                    if *free == 0 || *budget_left == Some(0) {
                        continue;
                    }
                    *free -= 1;
                    if let Some(left) = budget_left.as_mut() {
                        *left -= 1;
                        sqlx::query(
                            "UPDATE integrations SET
                                 budget_used = CASE WHEN budget_window_start IS NULL OR budget_window_start <= $2
                                                    THEN 1 ELSE budget_used + 1 END,
                                 budget_window_start = CASE WHEN budget_window_start IS NULL OR budget_window_start <= $2
                                                    THEN $3 ELSE budget_window_start END
                             WHERE id = $1",
                        )
                        .bind(integration.id)
                        .bind(now - chrono::TimeDelta::hours(1))
                        .bind(now)
                        .execute(&mut *tx)
                        .await?;
                    }
                    let lease_id = Uuid::now_v7();
                    sqlx::query("UPDATE deliveries SET lease_id = $2, lease_until = $3 WHERE id = $1")
                        .bind(delivery.id)
                        .bind(lease_id)
                        .bind(lease_until(now, lease))
                        .execute(&mut *tx)
                        .await?;
                    let ticket = match &delivery.ticket_key {
                        None => None,
                        Some(key) => {
                            let row = sqlx::query(sqlx::AssertSqlSafe(format!(
                                "SELECT {} FROM tickets WHERE integration_id = $1 AND ticket_key = $2",
                                delivery_rows::TICKET_COLS
                            )))
                            .bind(delivery.integration_id)
                            .bind(key)
                            .fetch_optional(&mut *tx)
                            .await?;
                            row.as_ref().map(delivery_rows::ticket).transpose()?
                        }
                    };
                    claimed.push(crate::ClaimedDelivery {
                        delivery,
                        lease_id,
                        integration: integration.clone(),
                        ticket,
                    });
                }
                tx.commit().await?;
                Ok(claimed)
            }

            async fn mark_ticket_creating(
                &self,
                delivery: &crate::Delivery,
                lease_id: Uuid,
                now: DateTime<Utc>,
            ) -> Result<bool> {
                let now = micros(now);
                let Some(key) = &delivery.ticket_key else { return Ok(false) };
                let mut tx = self.write_tx().await?;
                if !holds_lease(&mut tx, delivery.id, lease_id).await? {
                    return Ok(false);
                }
                sqlx::query(
                    "INSERT INTO tickets (id, org_id, integration_id, ticket_key, external_id, url, state,
                                          created_at, updated_at)
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

            async fn complete_attempt(
                &self,
                delivery: &crate::Delivery,
                record: &crate::AttemptRecord,
            ) -> Result<bool> {
                let at = micros(record.at);
                let mut tx = self.write_tx().await?;
                if !holds_lease(&mut tx, delivery.id, record.lease_id).await? {
                    // The lease ran out and someone else has the delivery now: their word counts.
                    return Ok(false);
                }
                let attempt = i64::from(delivery.attempts) + 1;
                sqlx::query(
                    "INSERT INTO delivery_attempts (id, delivery_id, org_id, attempt, at, succeeded, status,
                         latency_ms, error, response_excerpt, exchanges)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
                )
                .bind(Uuid::now_v7())
                .bind(delivery.id)
                .bind(delivery.org_id.0)
                .bind(attempt)
                .bind(at)
                .bind(record.succeeded)
                .bind(record.status.map(i64::from))
                .bind(saturating_i64(record.latency_ms))
                .bind(&record.error)
                .bind(&record.response_excerpt)
                .bind(Json(&record.exchanges))
                .execute(&mut *tx)
                .await?;
                let (status, next) = if record.succeeded {
                    (crate::DeliveryStatus::Succeeded, None)
                } else {
                    match record.retry_at {
                        Some(retry) => (crate::DeliveryStatus::Pending, Some(micros(retry))),
                        None => (crate::DeliveryStatus::Failed, None),
                    }
                };
                sqlx::query(
                    "UPDATE deliveries SET status = $2, attempts = $3, next_attempt_at = $4, lease_id = NULL,
                         lease_until = NULL, last_attempt_at = $5, last_status = $6, last_error = $7, updated_at = $5
                     WHERE id = $1",
                )
                .bind(delivery.id)
                .bind(status.as_str())
                .bind(attempt)
                .bind(next)
                .bind(at)
                .bind(record.status.map(i64::from))
                .bind(&record.error)
                .execute(&mut *tx)
                .await?;
                if record.succeeded {
                    let alerted: bool = sqlx::query_scalar("SELECT alerted FROM integrations WHERE id = $1")
                        .bind(delivery.integration_id)
                        .fetch_one(&mut *tx)
                        .await?;
                    sqlx::query(
                        "UPDATE integrations SET failing_since = NULL, last_success_at = $2, alerted = FALSE,
                             throttle_streak = 0
                         WHERE id = $1",
                    )
                    .bind(delivery.integration_id)
                    .bind(at)
                    .execute(&mut *tx)
                    .await?;
                    if alerted {
                        resolve_integration_findings(&mut tx, delivery.org_id, delivery.integration_id, at).await?;
                    }
                } else {
                    // A throttling answer pauses the integration (never shortening a pause another
                    // attempt set) and lengthens the next pause; any other answer ends the streak.
                    let throttle_until = record.throttle_until.map(micros);
                    sqlx::query(
                        "UPDATE integrations SET failing_since = COALESCE(failing_since, $2),
                             throttled_until = CASE WHEN $3 IS NOT NULL
                                                     AND (throttled_until IS NULL OR throttled_until < $3)
                                                    THEN $3 ELSE throttled_until END,
                             throttle_streak = CASE WHEN $3 IS NULL THEN 0 ELSE throttle_streak + 1 END
                         WHERE id = $1",
                    )
                    .bind(delivery.integration_id)
                    .bind(at)
                    .bind(throttle_until)
                    .execute(&mut *tx)
                    .await?;
                }
                if let (Some(key), Some(update)) = (&delivery.ticket_key, &record.ticket) {
                    let (external_id, url, state) = match update {
                        crate::TicketUpdate::Set { external_id, url, state } => {
                            (Some(external_id.as_str()), url.as_deref(), *state)
                        }
                        crate::TicketUpdate::State(state) => (None, None, *state),
                    };
                    sqlx::query(
                        "INSERT INTO tickets (id, org_id, integration_id, ticket_key, external_id, url, state,
                                              created_at, updated_at)
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
                    .execute(&mut *tx)
                    .await?;
                }
                if let (Some(key), Some(open), Some(finding), Some(tenant)) =
                    (&delivery.ticket_key, record.finding_open, delivery.finding_id, delivery.tenant_id)
                {
                    let ticket_id: Option<Uuid> =
                        sqlx::query_scalar("SELECT id FROM tickets WHERE integration_id = $1 AND ticket_key = $2")
                            .bind(delivery.integration_id)
                            .bind(key)
                            .fetch_optional(&mut *tx)
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
                        .execute(&mut *tx)
                        .await?;
                    }
                }
                tx.commit().await?;
                Ok(true)
            }

            async fn ticket_open_findings(
                &self,
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
                .fetch_all(&self.pool)
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

            async fn disable_integration(
                &self,
                org: OrgScope,
                integration_id: Uuid,
                reason: &str,
                notify: &[crate::NewDelivery],
                now: DateTime<Utc>,
            ) -> Result<bool> {
                let now = micros(now);
                let mut tx = self.write_tx().await?;
                let changed = disable(&mut tx, org.org_id, integration_id, reason, now).await?;
                if changed {
                    for d in notify {
                        insert_delivery(&mut tx, d, now).await?;
                    }
                }
                tx.commit().await?;
                Ok(changed)
            }

            async fn count_pending_deliveries(&self) -> Result<u64> {
                let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM deliveries WHERE status = 'pending'")
                    .fetch_one(&self.pool)
                    .await?;
                to_u64(n, "count")
            }
        }

        async fn insert_delivery(
            tx: &mut sqlx::Transaction<'static, <$row as sqlx::Row>::Database>,
            d: &crate::NewDelivery,
            now: DateTime<Utc>,
        ) -> Result<u64> {
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

        async fn holds_lease(
            tx: &mut sqlx::Transaction<'static, <$row as sqlx::Row>::Database>,
            delivery_id: Uuid,
            lease_id: Uuid,
        ) -> Result<bool> {
            let held: Option<Uuid> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
                "SELECT lease_id FROM deliveries WHERE id = $1 AND status = 'pending'{}",
                $lock_r
            )))
            .bind(delivery_id)
            .fetch_optional(&mut **tx)
            .await?
            .flatten();
            Ok(held == Some(lease_id))
        }

        /// Switches an integration off (if on) with an audit entry; pending deliveries wait for it
        /// to be switched on again.
        async fn disable(
            tx: &mut sqlx::Transaction<'static, <$row as sqlx::Row>::Database>,
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
                sqlx::query(
                    "INSERT INTO audit_log (id, org_id, tenant_id, actor, action, target, before, after, at)
                     VALUES ($1, $2, NULL, 'system', 'integration.disable', $3, NULL, $4, $5)",
                )
                .bind(Uuid::now_v7())
                .bind(org.0)
                .bind(integration_id.to_string())
                .bind(Json(serde_json::json!({ "enabled": false, "disabled_reason": reason })))
                .bind(now)
                .execute(&mut **tx)
                .await?;
                raise_integration_findings(tx, org, integration_id, reason, now).await?;
            }
            Ok(changed)
        }

        /// The fingerprint of the finding that says an integration is off.
        fn integration_fingerprint(integration_id: Uuid) -> (String, String) {
            let subject = format!("integration:{integration_id}");
            (format!("{}|{subject}", crate::INTEGRATION_DISABLED_RULE), subject)
        }

        /// Opens (or reopens) the `integration-disabled` finding in every tenant whose events
        /// were on their way to the integration: those tenants' problems are not reaching it.
        async fn raise_integration_findings(
            tx: &mut sqlx::Transaction<'static, <$row as sqlx::Row>::Database>,
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
                let existing = sqlx::query("SELECT id, status FROM findings WHERE tenant_id = $1 AND fingerprint = $2")
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
                        .bind(crate::INTEGRATION_DISABLED_RULE)
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
                let event = NewEvent {
                    kind,
                    actor: "system",
                    severity: Severity::High,
                    summary: &summary,
                    note: None,
                    suppressed_until: None,
                    traceparent: None,
                };
                insert_event(tx, scope, finding_id, &event, now).await?;
            }
            Ok(())
        }

        /// The integration works again: its `integration-disabled` findings resolve.
        async fn resolve_integration_findings(
            tx: &mut sqlx::Transaction<'static, <$row as sqlx::Row>::Database>,
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
                let event = NewEvent {
                    kind: FindingEventKind::Resolved,
                    actor: "system",
                    severity: Severity::High,
                    summary: "The integration delivers again.",
                    note: None,
                    suppressed_until: None,
                    traceparent: None,
                };
                insert_event(tx, TenantScope { org_id: org, tenant_id: TenantId(tenant) }, id, &event, now).await?;
            }
            Ok(())
        }

        /// The audit entry of an integration change: what a person sees, never the secrets.
        #[allow(clippy::too_many_arguments)]
        async fn audit_integration(
            tx: &mut sqlx::Transaction<'static, <$row as sqlx::Row>::Database>,
            org: OrgScope,
            actor: &str,
            action: &str,
            id: Uuid,
            before: Option<&crate::Integration>,
            after: Option<&crate::Integration>,
            now: DateTime<Utc>,
        ) -> Result<()> {
            fn public(i: &crate::Integration) -> serde_json::Value {
                serde_json::json!({
                    "name": i.name, "kind": i.kind, "url": i.url, "config": i.config, "filter": i.filter,
                    "routing": i.routing, "max_in_flight": i.max_in_flight, "hourly_budget": i.hourly_budget,
                    "enabled": i.enabled,
                })
            }
            sqlx::query(
                "INSERT INTO audit_log (id, org_id, tenant_id, actor, action, target, before, after, at)
                 VALUES ($1, $2, NULL, $3, $4, $5, $6, $7, $8)",
            )
            .bind(Uuid::now_v7())
            .bind(org.org_id.0)
            .bind(actor)
            .bind(action)
            .bind(id.to_string())
            .bind(before.map(public).map(Json))
            .bind(after.map(public).map(Json))
            .bind(now)
            .execute(&mut **tx)
            .await?;
            Ok(())
        }
    };
}
