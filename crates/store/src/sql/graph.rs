//! The central Graph connector: consents asked for and spent, a tenant's connection to the
//! installation's app or to an app of its own, disconnecting, and problems of the installation's
//! app itself.

use super::outbox::insert_outbox;
use super::prelude::*;

pub(super) async fn create_graph_consent_request(
    pool: &DbPool,
    scope: TenantScope,
    nonce: Uuid,
    actor: &str,
    expires_at: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Result<()> {
    let now = micros(now);
    let mut tx = write_tx(pool).await?;
    // The tenant's requests that ran out are of no use to anyone: they go as new ones come.
    sqlx::query("DELETE FROM graph_consent_states WHERE tenant_id = $1 AND org_id = $2 AND expires_at <= $3")
        .bind(scope.tenant_id.0)
        .bind(scope.org_id.0)
        .bind(now)
        .execute(&mut *tx)
        .await?;
    sqlx::query(
        "INSERT INTO graph_consent_states (nonce, org_id, tenant_id, created_by, created_at, expires_at)
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(nonce)
    .bind(scope.org_id.0)
    .bind(scope.tenant_id.0)
    .bind(actor)
    .bind(now)
    .bind(micros(expires_at))
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(())
}

pub(super) async fn pending_graph_consent(
    pool: &DbPool,
    scope: TenantScope,
    now: DateTime<Utc>,
) -> Result<Option<GraphConsentRequest>> {
    let row = sqlx::query(
        "SELECT nonce, created_by, created_at, expires_at FROM graph_consent_states
         WHERE tenant_id = $1 AND org_id = $2 AND used_at IS NULL AND expires_at > $3
         ORDER BY created_at DESC LIMIT 1",
    )
    .bind(scope.tenant_id.0)
    .bind(scope.org_id.0)
    .bind(micros(now))
    .fetch_optional(pool.read())
    .await?;
    row.map(|r| {
        Ok(GraphConsentRequest {
            nonce: r.try_get("nonce")?,
            created_by: r.try_get("created_by")?,
            created_at: r.try_get("created_at")?,
            expires_at: r.try_get("expires_at")?,
        })
    })
    .transpose()
}

/// What the audit log keeps of a connection.
fn audit_document(c: &GraphConnection) -> serde_json::Value {
    serde_json::json!({
        "app": c.app.as_str(),
        "entra_tenant_id": c.entra_tenant_id,
        "state": c.state.as_str(),
        "consented_at": c.consented_at,
        "consented_by": c.consented_by,
    })
}

async fn connection_in(tx: &mut Tx, scope: TenantScope) -> Result<Option<GraphConnection>> {
    let row = sqlx::query(concat!(
        "SELECT ",
        graph_connection_cols!(),
        " FROM graph_connections WHERE tenant_id = $1 AND org_id = $2",
        row_lock!(for_update)
    ))
    .bind(scope.tenant_id.0)
    .bind(scope.org_id.0)
    .fetch_optional(&mut **tx)
    .await?;
    row.as_ref().map(rows::graph_connection).transpose()
}

pub(super) async fn complete_graph_consent(
    pool: &DbPool,
    scope: TenantScope,
    nonce: Uuid,
    entra_tenant_id: Option<&str>,
    now: DateTime<Utc>,
) -> Result<GraphConsentOutcome> {
    let now = micros(now);
    let mut tx = write_tx(pool).await?;
    // Spent at most once: of two callbacks with one state, one updates the row, the other finds
    // it used.
    let spent = sqlx::query(
        "UPDATE graph_consent_states SET used_at = $4
         WHERE nonce = $1 AND org_id = $2 AND tenant_id = $3 AND used_at IS NULL AND expires_at > $4
         RETURNING created_by",
    )
    .bind(nonce)
    .bind(scope.org_id.0)
    .bind(scope.tenant_id.0)
    .bind(now)
    .fetch_optional(&mut *tx)
    .await?;
    let Some(spent) = spent else {
        tx.rollback().await?;
        return Ok(GraphConsentOutcome::StateUnusable);
    };
    let requested_by: String = spent.try_get("created_by")?;
    let Some(entra_tenant_id) = entra_tenant_id else {
        tx.commit().await?;
        return Ok(GraphConsentOutcome::Declined { requested_by });
    };
    let before = connection_in(&mut tx, scope).await?;
    // Consenting to the installation's app switches the tenant to it: an own app goes.
    let own_app = own_app_in(&mut tx, scope).await?;
    if own_app.is_some() {
        delete_own_app_row(&mut tx, scope).await?;
    }
    let row = sqlx::query(concat!(
        "INSERT INTO graph_connections (tenant_id, org_id, app, entra_tenant_id, state, consented_at, consented_by,
             missing_permissions, next_read_at)
         VALUES ($1, $2, 'installation', $3, 'connected', $4, $5, $6, $4)
         ON CONFLICT (tenant_id) DO UPDATE SET app = 'installation', entra_tenant_id = excluded.entra_tenant_id,
             state = 'connected', consented_at = excluded.consented_at,
             consented_by = excluded.consented_by, missing_permissions = excluded.missing_permissions,
             throttled_until = NULL, last_read_at = NULL, last_error = NULL,
             next_read_at = excluded.next_read_at, lease_id = NULL, lease_until = NULL
         RETURNING ",
        graph_connection_cols!()
    ))
    .bind(scope.tenant_id.0)
    .bind(scope.org_id.0)
    .bind(entra_tenant_id)
    .bind(now)
    .bind(&requested_by)
    .bind(Json(Vec::<String>::new()))
    .fetch_one(&mut *tx)
    .await?;
    let mut connection = rows::graph_connection(&row)?;
    connection.collector_id = Some(reader_collector(&mut tx, scope, connection.collector_id, now).await?);
    let target = scope.tenant_id.to_string();
    let before = before.as_ref().map(|c| with_own_app(audit_document(c), own_app.as_ref()));
    insert_audit(
        &mut tx,
        NewAuditEntry {
            org_id: scope.org_id,
            tenant_id: Some(scope.tenant_id),
            actor: &requested_by,
            action: "graph.connect",
            target: &target,
            before: before.as_ref(),
            after: Some(&audit_document(&connection)),
            at: now,
        },
    )
    .await?;
    tx.commit().await?;
    Ok(GraphConsentOutcome::Connected(Box::new(connection)))
}

/// The tenant's collector row standing for the central reader, active: made the first time the
/// tenant connects, switched on again when it reconnects. It has a public key nobody holds the
/// private key of, so no push can be made in its name.
async fn reader_collector(
    tx: &mut Tx,
    scope: TenantScope,
    existing: Option<CollectorId>,
    now: DateTime<Utc>,
) -> Result<CollectorId> {
    if let Some(id) = existing {
        let updated = sqlx::query(
            "UPDATE collectors SET status = 'active', revoked_at = NULL
             WHERE id = $1 AND org_id = $2 AND tenant_id = $3",
        )
        .bind(id.0)
        .bind(scope.org_id.0)
        .bind(scope.tenant_id.0)
        .execute(&mut **tx)
        .await?;
        if updated.rows_affected() == 1 {
            return Ok(id);
        }
    }
    let id = CollectorId::new();
    let unusable_key = Uuid::new_v4().as_bytes().repeat(2);
    sqlx::query(
        "INSERT INTO collectors (id, org_id, tenant_id, name, status, public_key, hostname, version, os,
                                 push_interval_secs, enrolled_at, created_at)
         VALUES ($1, $2, $3, $4, 'active', $5, 'graph.microsoft.com', 'central', '', 3600, $6, $6)",
    )
    .bind(id.0)
    .bind(scope.org_id.0)
    .bind(scope.tenant_id.0)
    .bind(GRAPH_READER_COLLECTOR)
    .bind(unusable_key)
    .bind(now)
    .execute(&mut **tx)
    .await?;
    sqlx::query("UPDATE graph_connections SET collector_id = $3 WHERE tenant_id = $1 AND org_id = $2")
        .bind(scope.tenant_id.0)
        .bind(scope.org_id.0)
        .bind(id.0)
        .execute(&mut **tx)
        .await?;
    Ok(id)
}

pub(super) async fn get_graph_connection(
    pool: &DbPool,
    scope: TenantScope,
) -> Result<Option<GraphConnection>> {
    let row = sqlx::query(concat!(
        "SELECT ",
        graph_connection_cols!(),
        " FROM graph_connections WHERE tenant_id = $1 AND org_id = $2"
    ))
    .bind(scope.tenant_id.0)
    .bind(scope.org_id.0)
    .fetch_optional(pool.read())
    .await?;
    row.as_ref().map(rows::graph_connection).transpose()
}

pub(super) async fn delete_graph_connection(
    pool: &DbPool,
    scope: TenantScope,
    actor: &str,
    now: DateTime<Utc>,
) -> Result<bool> {
    let now = micros(now);
    let mut tx = write_tx(pool).await?;
    let before = connection_in(&mut tx, scope).await?;
    // Disconnecting forgets the tenant's own app too (its credential with it).
    let own_app = own_app_in(&mut tx, scope).await?;
    if own_app.is_some() {
        delete_own_app_row(&mut tx, scope).await?;
    }
    let pending = sqlx::query(
        "DELETE FROM graph_consent_states WHERE tenant_id = $1 AND org_id = $2 AND used_at IS NULL AND expires_at > $3",
    )
    .bind(scope.tenant_id.0)
    .bind(scope.org_id.0)
    .bind(now)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    if before.is_none() && pending == 0 && own_app.is_none() {
        tx.rollback().await?;
        return Ok(false);
    }
    end_connection(&mut tx, scope, before.as_ref(), now).await?;
    let target = scope.tenant_id.to_string();
    let before = before.as_ref().map(|c| with_own_app(audit_document(c), own_app.as_ref()));
    insert_audit(
        &mut tx,
        NewAuditEntry {
            org_id: scope.org_id,
            tenant_id: Some(scope.tenant_id),
            actor,
            action: "graph.disconnect",
            target: &target,
            before: before.as_ref(),
            after: None,
            at: now,
        },
    )
    .await?;
    tx.commit().await?;
    Ok(true)
}

/// Removes the tenant's connection, if it has one, and stops its reader's facts counting as
/// current.
async fn end_connection(
    tx: &mut Tx,
    scope: TenantScope,
    connection: Option<&GraphConnection>,
    now: DateTime<Utc>,
) -> Result<()> {
    sqlx::query("DELETE FROM graph_connections WHERE tenant_id = $1 AND org_id = $2")
        .bind(scope.tenant_id.0)
        .bind(scope.org_id.0)
        .execute(&mut **tx)
        .await?;
    // The reader's facts stop counting as current with it.
    if let Some(collector) = connection.and_then(|c| c.collector_id) {
        sqlx::query(
            "UPDATE collectors SET status = 'revoked', revoked_at = $4
             WHERE id = $1 AND org_id = $2 AND tenant_id = $3 AND status <> 'revoked'",
        )
        .bind(collector.0)
        .bind(scope.org_id.0)
        .bind(scope.tenant_id.0)
        .bind(now)
        .execute(&mut **tx)
        .await?;
        // Evaluated again without them.
        insert_outbox(tx, scope, &MessageKind::RulesChanged, None, now).await?;
    }
    Ok(())
}

pub(super) async fn claim_graph_reads(
    pool: &DbPool,
    limit: u32,
    lease: Duration,
    installation: bool,
    now: DateTime<Utc>,
) -> Result<Vec<GraphReadClaim>> {
    let now = micros(now);
    let until = lease_until(now, lease);
    let mut tx = write_tx(pool).await?;
    // PostgreSQL: rows another claimer holds are skipped, so concurrent claimers take disjoint
    // tenants instead of the same first ones (of which the later would then get none). Tenants
    // read with the installation's app only when the reader has it and it has no problem of its
    // own waiting to be tried again.
    let due: Vec<Uuid> = sqlx::query_scalar(concat!(
        "SELECT tenant_id FROM graph_connections
         WHERE state = 'connected' AND next_read_at <= $1
           AND (lease_until IS NULL OR lease_until <= $1)
           AND (throttled_until IS NULL OR throttled_until <= $1)
           AND (app = 'own' OR ($3 AND NOT EXISTS (
                SELECT 1 FROM graph_app_problems WHERE app = 'installation' AND retry_at > $1)))
         ORDER BY next_read_at, tenant_id LIMIT $2",
        row_lock!(skip_locked "graph_connections")
    ))
    .bind(now)
    .bind(i64::from(limit))
    .bind(installation)
    .fetch_all(&mut *tx)
    .await?;
    let mut claims = Vec::with_capacity(due.len());
    for tenant_id in due {
        let lease_id = Uuid::new_v4();
        // The conditions again: another claimer that took the row meanwhile (PostgreSQL re-checks
        // them after waiting for its lock) leaves nothing to take.
        let row = sqlx::query(
            "UPDATE graph_connections SET lease_id = $2, lease_until = $3
             WHERE tenant_id = $1 AND state = 'connected' AND next_read_at <= $4
               AND (lease_until IS NULL OR lease_until <= $4)
               AND (throttled_until IS NULL OR throttled_until <= $4)
             RETURNING org_id, app, entra_tenant_id, next_read_at, collector_id, test_user",
        )
        .bind(tenant_id)
        .bind(lease_id)
        .bind(until)
        .bind(now)
        .fetch_optional(&mut *tx)
        .await?;
        if let Some(row) = row {
            let Some(collector_id) = row.try_get::<Option<Uuid>, _>("collector_id")? else {
                return Err(StoreError::Corrupt(format!(
                    "graph_connections.collector_id of {tenant_id}: NULL"
                )));
            };
            let scope = TenantScope { org_id: OrgId(row.try_get("org_id")?), tenant_id: TenantId(tenant_id) };
            let app: GraphAppKind = parse_enum(&row.try_get::<String, _>("app")?, "graph_connections.app")?;
            let own_app = match app {
                GraphAppKind::Installation => None,
                GraphAppKind::Own => Some(own_app_in(&mut tx, scope).await?.ok_or_else(|| {
                    StoreError::Corrupt(format!("graph_own_apps of {tenant_id}: missing for app = 'own'"))
                })?),
            };
            claims.push(GraphReadClaim {
                scope,
                own_app,
                entra_tenant_id: row.try_get("entra_tenant_id")?,
                collector_id: CollectorId(collector_id),
                test_user: row.try_get("test_user")?,
                lease_id,
                due_at: row.try_get("next_read_at")?,
            });
        }
    }
    tx.commit().await?;
    Ok(claims)
}

pub(super) async fn finish_graph_read(
    pool: &DbPool,
    scope: TenantScope,
    lease_id: Uuid,
    result: &GraphReadResult,
    now: DateTime<Utc>,
) -> Result<bool> {
    let done = sqlx::query(
        "UPDATE graph_connections
         SET lease_id = NULL, lease_until = NULL, last_read_at = $4, last_error = $5,
             missing_permissions = $6, throttled_until = $7, next_read_at = $8,
             state = CASE WHEN $9 THEN 'consent_revoked' WHEN $10 THEN 'credential_invalid' ELSE state END
         WHERE tenant_id = $1 AND org_id = $2 AND lease_id = $3",
    )
    .bind(scope.tenant_id.0)
    .bind(scope.org_id.0)
    .bind(lease_id)
    .bind(micros(now))
    .bind(result.error.as_deref())
    .bind(Json(&result.missing_permissions))
    .bind(result.throttled_until.map(micros))
    .bind(micros(result.next_read_at))
    .bind(result.consent_revoked)
    .bind(result.credential_invalid)
    .execute(pool.write())
    .await?;
    Ok(done.rows_affected() == 1)
}

pub(super) async fn request_graph_read(
    pool: &DbPool,
    scope: TenantScope,
    now: DateTime<Utc>,
) -> Result<bool> {
    let done = sqlx::query(
        "UPDATE graph_connections SET next_read_at = $3
         WHERE tenant_id = $1 AND org_id = $2 AND state = 'connected' AND next_read_at > $3",
    )
    .bind(scope.tenant_id.0)
    .bind(scope.org_id.0)
    .bind(micros(now))
    .execute(pool.write())
    .await?;
    Ok(done.rows_affected() == 1)
}

pub(super) async fn set_graph_test_user(
    pool: &DbPool,
    scope: TenantScope,
    test_user: Option<&str>,
    actor: &str,
    now: DateTime<Utc>,
) -> Result<Option<GraphConnection>> {
    let now = micros(now);
    let mut tx = write_tx(pool).await?;
    let Some(before) = connection_in(&mut tx, scope).await? else {
        tx.rollback().await?;
        return Ok(None);
    };
    // Read again soon with the new user (a connected tenant only: a revoked one stays stopped).
    let row = sqlx::query(concat!(
        "UPDATE graph_connections SET test_user = $3,
             next_read_at = CASE WHEN state = 'connected' AND next_read_at > $4 THEN $4 ELSE next_read_at END
         WHERE tenant_id = $1 AND org_id = $2
         RETURNING ",
        graph_connection_cols!()
    ))
    .bind(scope.tenant_id.0)
    .bind(scope.org_id.0)
    .bind(test_user)
    .bind(now)
    .fetch_one(&mut *tx)
    .await?;
    let after = rows::graph_connection(&row)?;
    let target = scope.tenant_id.to_string();
    insert_audit(
        &mut tx,
        NewAuditEntry {
            org_id: scope.org_id,
            tenant_id: Some(scope.tenant_id),
            actor,
            action: "graph.test_user",
            target: &target,
            before: Some(&serde_json::json!({ "test_user": before.test_user })),
            after: Some(&serde_json::json!({ "test_user": after.test_user })),
            at: now,
        },
    )
    .await?;
    tx.commit().await?;
    Ok(Some(after))
}

/// What the audit log keeps of an own app: everything but the credential.
fn own_app_document(a: &GraphOwnApp) -> serde_json::Value {
    serde_json::json!({
        "client_id": a.client_id,
        "entra_tenant_id": a.entra_tenant_id,
        "cloud": a.cloud,
        "credential_kind": a.credential_kind.as_str(),
        "credential_expires_at": a.credential_expires_at,
        "version": a.version,
    })
}

/// A connection's audit document with the own app it had, if any.
fn with_own_app(mut document: serde_json::Value, app: Option<&GraphOwnApp>) -> serde_json::Value {
    if let (Some(app), Some(map)) = (app, document.as_object_mut()) {
        map.insert("own_app".to_owned(), own_app_document(app));
    }
    document
}

async fn own_app_in(tx: &mut Tx, scope: TenantScope) -> Result<Option<GraphOwnApp>> {
    let row = sqlx::query(concat!(
        "SELECT ",
        graph_own_app_cols!(),
        " FROM graph_own_apps WHERE tenant_id = $1 AND org_id = $2",
        row_lock!(for_update)
    ))
    .bind(scope.tenant_id.0)
    .bind(scope.org_id.0)
    .fetch_optional(&mut **tx)
    .await?;
    row.as_ref().map(rows::graph_own_app).transpose()
}

async fn delete_own_app_row(tx: &mut Tx, scope: TenantScope) -> Result<()> {
    sqlx::query("DELETE FROM graph_own_apps WHERE tenant_id = $1 AND org_id = $2")
        .bind(scope.tenant_id.0)
        .bind(scope.org_id.0)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

pub(super) async fn get_graph_own_app(pool: &DbPool, scope: TenantScope) -> Result<Option<GraphOwnApp>> {
    let row = sqlx::query(concat!(
        "SELECT ",
        graph_own_app_cols!(),
        " FROM graph_own_apps WHERE tenant_id = $1 AND org_id = $2"
    ))
    .bind(scope.tenant_id.0)
    .bind(scope.org_id.0)
    .fetch_optional(pool.read())
    .await?;
    row.as_ref().map(rows::graph_own_app).transpose()
}

pub(super) async fn set_graph_own_app(
    pool: &DbPool,
    scope: TenantScope,
    expected_version: Option<i64>,
    write: &GraphOwnAppWrite,
    actor: &str,
    now: DateTime<Utc>,
) -> Result<GraphOwnAppOutcome> {
    let now = micros(now);
    let mut tx = write_tx(pool).await?;
    let before = own_app_in(&mut tx, scope).await?;
    let current_version = before.as_ref().map(|a| a.version);
    if expected_version.is_some_and(|expected| current_version != Some(expected)) {
        tx.rollback().await?;
        return Ok(GraphOwnAppOutcome::Changed { current_version });
    }
    let row = sqlx::query(concat!(
        "INSERT INTO graph_own_apps (tenant_id, org_id, client_id, entra_tenant_id, cloud, credential_kind,
             credential_expires_at, sealed_credential, version, updated_at, updated_by)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 1, $9, $10)
         ON CONFLICT (tenant_id) DO UPDATE SET client_id = excluded.client_id,
             entra_tenant_id = excluded.entra_tenant_id, cloud = excluded.cloud,
             credential_kind = excluded.credential_kind,
             credential_expires_at = excluded.credential_expires_at,
             sealed_credential = excluded.sealed_credential, version = graph_own_apps.version + 1,
             updated_at = excluded.updated_at, updated_by = excluded.updated_by
         RETURNING ",
        graph_own_app_cols!()
    ))
    .bind(scope.tenant_id.0)
    .bind(scope.org_id.0)
    .bind(&write.client_id)
    .bind(&write.entra_tenant_id)
    .bind(&write.cloud)
    .bind(write.credential_kind.as_str())
    .bind(write.credential_expires_at.map(micros))
    .bind(&write.sealed_credential)
    .bind(now)
    .bind(actor)
    .fetch_one(&mut *tx)
    .await?;
    let app = rows::graph_own_app(&row)?;
    // Connected through it at once, read at once: no consent redirect (the customer's
    // administrator granted the app its permissions in their own tenant). Its first read says
    // whether it may read.
    let row = sqlx::query(concat!(
        "INSERT INTO graph_connections (tenant_id, org_id, app, entra_tenant_id, state, consented_at, consented_by,
             missing_permissions, next_read_at)
         VALUES ($1, $2, 'own', $3, 'connected', $4, $5, $6, $4)
         ON CONFLICT (tenant_id) DO UPDATE SET app = 'own', entra_tenant_id = excluded.entra_tenant_id,
             state = 'connected', consented_at = excluded.consented_at,
             consented_by = excluded.consented_by, missing_permissions = excluded.missing_permissions,
             throttled_until = NULL, last_read_at = NULL, last_error = NULL,
             next_read_at = excluded.next_read_at, lease_id = NULL, lease_until = NULL
         RETURNING ",
        graph_connection_cols!()
    ))
    .bind(scope.tenant_id.0)
    .bind(scope.org_id.0)
    .bind(&write.entra_tenant_id)
    .bind(now)
    .bind(actor)
    .bind(Json(Vec::<String>::new()))
    .fetch_one(&mut *tx)
    .await?;
    let mut connection = rows::graph_connection(&row)?;
    connection.collector_id = Some(reader_collector(&mut tx, scope, connection.collector_id, now).await?);
    let target = scope.tenant_id.to_string();
    insert_audit(
        &mut tx,
        NewAuditEntry {
            org_id: scope.org_id,
            tenant_id: Some(scope.tenant_id),
            actor,
            action: "graph.app.set",
            target: &target,
            before: before.as_ref().map(own_app_document).as_ref(),
            after: Some(&own_app_document(&app)),
            at: now,
        },
    )
    .await?;
    tx.commit().await?;
    Ok(GraphOwnAppOutcome::Set { app: Box::new(app), connection: Box::new(connection) })
}

pub(super) async fn delete_graph_own_app(
    pool: &DbPool,
    scope: TenantScope,
    actor: &str,
    now: DateTime<Utc>,
) -> Result<bool> {
    let now = micros(now);
    let mut tx = write_tx(pool).await?;
    let Some(before) = own_app_in(&mut tx, scope).await? else {
        tx.rollback().await?;
        return Ok(false);
    };
    delete_own_app_row(&mut tx, scope).await?;
    // Reading with it stops: the connection was the app's.
    let connection = connection_in(&mut tx, scope).await?;
    if let Some(connection) = connection.as_ref().filter(|c| c.app == GraphAppKind::Own) {
        end_connection(&mut tx, scope, Some(connection), now).await?;
    }
    let target = scope.tenant_id.to_string();
    insert_audit(
        &mut tx,
        NewAuditEntry {
            org_id: scope.org_id,
            tenant_id: Some(scope.tenant_id),
            actor,
            action: "graph.app.remove",
            target: &target,
            before: Some(&own_app_document(&before)),
            after: None,
            at: now,
        },
    )
    .await?;
    tx.commit().await?;
    Ok(true)
}

pub(super) async fn record_graph_app_problem(
    pool: &DbPool,
    problem: &str,
    retry_at: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Result<bool> {
    let now = micros(now);
    let since: DateTime<Utc> = sqlx::query_scalar(
        "INSERT INTO graph_app_problems (app, problem, since, seen_at, retry_at)
         VALUES ('installation', $1, $2, $2, $3)
         ON CONFLICT (app) DO UPDATE SET problem = excluded.problem, seen_at = excluded.seen_at,
             retry_at = excluded.retry_at
         RETURNING since",
    )
    .bind(problem)
    .bind(now)
    .bind(micros(retry_at))
    .fetch_one(pool.write())
    .await?;
    Ok(since == now)
}

pub(super) async fn clear_graph_app_problem(pool: &DbPool) -> Result<bool> {
    let done = sqlx::query("DELETE FROM graph_app_problems WHERE app = 'installation'")
        .execute(pool.write())
        .await?;
    Ok(done.rows_affected() > 0)
}

pub(super) async fn graph_app_problem(pool: &DbPool) -> Result<Option<GraphAppProblem>> {
    let row = sqlx::query(
        "SELECT problem, since, seen_at, retry_at FROM graph_app_problems WHERE app = 'installation'",
    )
    .fetch_optional(pool.read())
    .await?;
    row.map(|r| {
        Ok(GraphAppProblem {
            problem: r.try_get("problem")?,
            since: r.try_get("since")?,
            seen_at: r.try_get("seen_at")?,
            retry_at: r.try_get("retry_at")?,
        })
    })
    .transpose()
}
