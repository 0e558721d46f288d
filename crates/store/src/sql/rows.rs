//! Rows to model values, for the column lists of `columns.rs`. A stored value the model cannot
//! hold (an unknown enum text, a negative count, JSON that does not decode) is
//! [`StoreError::Corrupt`], never guessed.

use serde::de::DeserializeOwned;

use super::prelude::*;
use crate::convert::message_kind;
use crate::ingest_plan::StoredFact;

/// A JSON column (`jsonb` on PostgreSQL, TEXT on SQLite), named `table.column` for the error;
/// the row holds it as `column`.
fn json<T: DeserializeOwned>(row: &DbRow, name: &str) -> Result<T> {
    opt_json(row, name)?.ok_or_else(|| StoreError::Corrupt(format!("{name}: NULL")))
}

fn opt_json<T: DeserializeOwned>(row: &DbRow, name: &str) -> Result<Option<T>> {
    let column = name.rsplit('.').next().unwrap_or(name);
    match row.try_get::<Option<Json<T>>, _>(column) {
        Ok(value) => Ok(value.map(|Json(v)| v)),
        Err(sqlx::Error::ColumnDecode { source, .. }) => {
            Err(StoreError::Corrupt(format!("{name}: {source}")))
        }
        Err(e) => Err(e.into()),
    }
}

/// An INTEGER column: INT4 on PostgreSQL, which does not decode as `i64`.
pub(super) fn int(row: &DbRow, column: &str) -> Result<i64> {
    Ok(i64::from(row.try_get::<i32, _>(column)?))
}

fn opt_int(row: &DbRow, column: &str) -> Result<Option<i64>> {
    Ok(row.try_get::<Option<i32>, _>(column)?.map(i64::from))
}

/// An HTTP status stored as INTEGER.
fn http_status(row: &DbRow, column: &str, name: &str) -> Result<Option<u16>> {
    opt_int(row, column)?
        .map(|s| u16::try_from(s).map_err(|_| StoreError::Corrupt(format!("{name}: {s} is out of range"))))
        .transpose()
}

pub(super) fn org(row: &DbRow) -> Result<Organization> {
    Ok(Organization {
        id: OrgId(row.try_get("id")?),
        name: row.try_get("name")?,
        created_at: row.try_get("created_at")?,
    })
}

pub(super) fn api_key(row: &DbRow) -> Result<ApiKey> {
    Ok(ApiKey {
        id: ApiKeyId(row.try_get("id")?),
        org_id: OrgId(row.try_get("org_id")?),
        name: row.try_get("name")?,
        role: parse_enum(row.try_get("role")?, "api_keys.role")?,
        prefix: row.try_get("prefix")?,
        created_at: row.try_get("created_at")?,
        revoked_at: row.try_get("revoked_at")?,
    })
}

pub(super) fn tenant(row: &DbRow) -> Result<Tenant> {
    Ok(Tenant {
        id: TenantId(row.try_get("id")?),
        org_id: OrgId(row.try_get("org_id")?),
        name: row.try_get("name")?,
        entra_tenant_id: row.try_get("entra_tenant_id")?,
        created_at: row.try_get("created_at")?,
    })
}

pub(super) fn tenant_scope(row: &DbRow) -> Result<TenantScope> {
    Ok(TenantScope { org_id: OrgId(row.try_get("org_id")?), tenant_id: TenantId(row.try_get("tenant_id")?) })
}

pub(super) fn summary(row: &DbRow) -> Result<TenantSummary> {
    let count = |column: &'static str| -> Result<u32> { to_u32(row.try_get(column)?, column) };
    Ok(TenantSummary {
        tenant: tenant(row)?,
        open_critical: count("open_critical")?,
        open_high: count("open_high")?,
        open_medium: count("open_medium")?,
        open_low: count("open_low")?,
        open_info: count("open_info")?,
        suppressed: count("suppressed")?,
        consequences: count("consequences")?,
        collectors: count("collectors")?,
        silent_collectors: count("silent_collectors")?,
        unknown_rules: count("unknown_rules")?,
        last_seen_at: row.try_get("last_seen_at")?,
    })
}

pub(super) fn collector(row: &DbRow) -> Result<Collector> {
    collector_with_version(row, "version")
}

/// A collector whose version is in the column `version_column` (the tenant snapshot's rows
/// name it apart from a finding's).
pub(super) fn collector_with_version(row: &DbRow, version_column: &str) -> Result<Collector> {
    Ok(Collector {
        id: CollectorId(row.try_get("id")?),
        org_id: OrgId(row.try_get("org_id")?),
        tenant_id: TenantId(row.try_get("tenant_id")?),
        name: row.try_get("name")?,
        status: parse_enum(row.try_get("status")?, "collectors.status")?,
        enrollment_expires_at: row.try_get("enrollment_expires_at")?,
        public_key: row.try_get("public_key")?,
        hostname: row.try_get("hostname")?,
        version: row.try_get(version_column)?,
        os: row.try_get("os")?,
        push_interval_secs: to_u32(row.try_get("push_interval_secs")?, "collectors.push_interval_secs")?,
        enrolled_at: row.try_get("enrolled_at")?,
        last_seen_at: row.try_get("last_seen_at")?,
        silent_after: row.try_get("silent_after")?,
        spool_dropped: to_u64(row.try_get("spool_dropped")?, "collectors.spool_dropped")?,
        created_at: row.try_get("created_at")?,
        revoked_at: row.try_get("revoked_at")?,
    })
}

/// A latest fact: the payload of its run with the newest result's timings laid over it.
pub(super) fn fact(row: &DbRow) -> Result<Fact> {
    let mut payload: serde_json::Value = json(row, "facts.payload")?;
    if let Some(timings) = row.try_get::<Option<&str>, _>("timings")? {
        let timings: wbd_wire::Timings =
            serde_json::from_str(timings).map_err(|e| StoreError::Corrupt(format!("facts.timings: {e}")))?;
        wbd_wire::apply_timings(&mut payload, &timings);
    }
    Ok(Fact {
        collector_id: CollectorId(row.try_get("collector_id")?),
        probe: row.try_get("probe")?,
        subject: row.try_get("subject")?,
        observed_at: row.try_get("observed_at")?,
        payload,
        digest: row.try_get("digest")?,
        first_seen_at: row.try_get("first_seen_at")?,
        repeat_count: to_u64(row.try_get("repeat_count")?, "facts.repeat_count")?,
    })
}

/// A latest fact as an evaluation reads it: its payload, or only its timings when the reader
/// holds the output of its digest (the query then returns no payload).
pub(super) fn snapshot_fact(row: &DbRow) -> Result<SnapshotFact> {
    let timings = row.try_get::<Option<&str>, _>("timings")?;
    let timings: Option<wbd_wire::Timings> = timings
        .map(serde_json::from_str)
        .transpose()
        .map_err(|e| StoreError::Corrupt(format!("facts.timings: {e}")))?;
    let payload = match (opt_json::<serde_json::Value>(row, "facts.payload")?, timings) {
        (Some(mut payload), timings) => {
            if let Some(timings) = &timings {
                wbd_wire::apply_timings(&mut payload, timings);
            }
            SnapshotPayload::Read(payload)
        }
        (None, Some(timings)) => SnapshotPayload::Known(timings),
        (None, None) => return Err(StoreError::Corrupt("facts.payload: NULL".into())),
    };
    Ok(SnapshotFact {
        collector_id: CollectorId(row.try_get("collector_id")?),
        probe: row.try_get("probe")?,
        subject: row.try_get("subject")?,
        observed_at: row.try_get("observed_at")?,
        digest: row.try_get("digest")?,
        payload,
    })
}

/// A stored latest fact as an ingest plans with it, keyed by (probe, subject).
pub(super) fn stored_fact(row: &DbRow) -> Result<((String, String), StoredFact)> {
    Ok((
        (row.try_get("probe")?, row.try_get("subject")?),
        StoredFact {
            observed_at: row.try_get("observed_at")?,
            digest: row.try_get("digest")?,
            first_seen_at: row.try_get("first_seen_at")?,
            repeat_count: row.try_get("repeat_count")?,
            history_id: row.try_get("history_id")?,
        },
    ))
}

pub(super) fn outbox_message(row: &DbRow) -> Result<OutboxMessage> {
    Ok(OutboxMessage {
        id: row.try_get("id")?,
        org_id: OrgId(row.try_get("org_id")?),
        tenant_id: TenantId(row.try_get("tenant_id")?),
        kind: message_kind(json(row, "outbox.kind")?)?,
        traceparent: row.try_get("traceparent")?,
        created_at: row.try_get("created_at")?,
        attempts: to_u32(row.try_get("attempts")?, "outbox.attempts")?,
    })
}

pub(super) fn finding(row: &DbRow) -> Result<Finding> {
    Ok(Finding {
        id: FindingId(row.try_get("id")?),
        org_id: OrgId(row.try_get("org_id")?),
        tenant_id: TenantId(row.try_get("tenant_id")?),
        fingerprint: row.try_get("fingerprint")?,
        rule_id: row.try_get("rule_id")?,
        subject: row.try_get("subject")?,
        severity: parse_enum(row.try_get("severity")?, "findings.severity")?,
        status: parse_enum(row.try_get("status")?, "findings.status")?,
        title: row.try_get("title")?,
        summary: row.try_get("summary")?,
        evidence: json(row, "findings.evidence")?,
        opened_at: row.try_get("opened_at")?,
        updated_at: row.try_get("updated_at")?,
        resolved_at: row.try_get("resolved_at")?,
        reopen_count: to_u32(row.try_get("reopen_count")?, "findings.reopen_count")?,
        version: row.try_get("version")?,
        collector_id: row.try_get::<Option<Uuid>, _>("collector_id")?.map(CollectorId),
        acknowledged_at: row.try_get("acknowledged_at")?,
        acknowledged_by: row.try_get("acknowledged_by")?,
        suppressed_until: row.try_get("suppressed_until")?,
        suppression_reason: row.try_get("suppression_reason")?,
        suppressed_by: row.try_get("suppressed_by")?,
        message: opt_json(row, "findings.message")?,
        root_finding_id: row.try_get::<Option<Uuid>, _>("root_finding_id")?.map(FindingId),
        announced: row.try_get("announced")?,
    })
}

pub(super) fn event(row: &DbRow) -> Result<FindingEvent> {
    Ok(FindingEvent {
        id: row.try_get("id")?,
        finding_id: FindingId(row.try_get("finding_id")?),
        kind: parse_enum(row.try_get("kind")?, "finding_events.kind")?,
        actor: row.try_get("actor")?,
        at: row.try_get("at")?,
        severity: parse_enum(row.try_get("severity")?, "finding_events.severity")?,
        summary: row.try_get("summary")?,
        note: row.try_get("note")?,
        suppressed_until: row.try_get("suppressed_until")?,
        root_finding_id: row.try_get::<Option<Uuid>, _>("root_finding_id")?.map(FindingId),
    })
}

pub(super) fn streak(row: &DbRow) -> Result<FindingStreak> {
    Ok(FindingStreak {
        fingerprint: row.try_get("fingerprint")?,
        fails: to_u32(row.try_get("fails")?, "finding_streaks.fails")?,
        passes: to_u32(row.try_get("passes")?, "finding_streaks.passes")?,
        updated_at: row.try_get("updated_at")?,
    })
}

pub(super) fn command(row: &DbRow) -> Result<CollectorCommandRecord> {
    Ok(CollectorCommandRecord {
        id: row.try_get("id")?,
        collector_id: CollectorId(row.try_get("collector_id")?),
        finding_id: row.try_get::<Option<Uuid>, _>("finding_id")?.map(FindingId),
        action: json(row, "collector_commands.action")?,
        requested_by: row.try_get("requested_by")?,
        created_at: row.try_get("created_at")?,
        delivered_batch_id: row.try_get("delivered_batch_id")?,
        delivered_at: row.try_get("delivered_at")?,
        expires_at: row.try_get("expires_at")?,
        cancelled_at: row.try_get("cancelled_at")?,
        cancelled_by: row.try_get("cancelled_by")?,
    })
}

pub(super) fn rule_setting(row: &DbRow) -> Result<StoredRuleSetting> {
    Ok(StoredRuleSetting {
        tenant_id: row.try_get::<Option<Uuid>, _>("tenant_id")?.map(TenantId),
        rule_id: row.try_get("rule_id")?,
        settings: json(row, "rule_settings.settings")?,
        updated_at: row.try_get("updated_at")?,
        updated_by: row.try_get("updated_by")?,
    })
}

pub(super) fn custom_rule(row: &DbRow) -> Result<StoredCustomRule> {
    Ok(StoredCustomRule {
        tenant_id: row.try_get::<Option<Uuid>, _>("tenant_id")?.map(TenantId),
        rule_id: row.try_get("rule_id")?,
        definition: json(row, "custom_rules.definition")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
        updated_by: row.try_get("updated_by")?,
    })
}

/// The document of a rule setting or custom rule, read `AS document`.
pub(super) fn rule_document(row: &DbRow) -> Result<serde_json::Value> {
    json(row, "rule configuration.document")
}

pub(super) fn audit_entry(row: &DbRow) -> Result<AuditEntry> {
    Ok(AuditEntry {
        id: row.try_get("id")?,
        tenant_id: row.try_get::<Option<Uuid>, _>("tenant_id")?.map(TenantId),
        actor: row.try_get("actor")?,
        action: row.try_get("action")?,
        target: row.try_get("target")?,
        before: opt_json(row, "audit_log.before")?,
        after: opt_json(row, "audit_log.after")?,
        at: row.try_get("at")?,
    })
}

pub(super) fn integration(row: &DbRow) -> Result<Integration> {
    Ok(Integration {
        id: row.try_get("id")?,
        org_id: OrgId(row.try_get("org_id")?),
        name: row.try_get("name")?,
        kind: row.try_get("kind")?,
        url: row.try_get("url")?,
        config: json(row, "integrations.config")?,
        secrets: row.try_get("secrets")?,
        filter: json(row, "integrations.filter")?,
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

pub(super) fn delivery(row: &DbRow) -> Result<Delivery> {
    Ok(Delivery {
        id: row.try_get("id")?,
        org_id: OrgId(row.try_get("org_id")?),
        integration_id: row.try_get("integration_id")?,
        event_id: row.try_get("event_id")?,
        event_type: row.try_get("event_type")?,
        tenant_id: row.try_get::<Option<Uuid>, _>("tenant_id")?.map(TenantId),
        finding_id: row.try_get::<Option<Uuid>, _>("finding_id")?.map(FindingId),
        ticket_key: row.try_get("ticket_key")?,
        payload: json(row, "deliveries.payload")?,
        occurred_at: row.try_get("occurred_at")?,
        traceparent: row.try_get("traceparent")?,
        status: parse_enum(row.try_get("status")?, "deliveries.status")?,
        attempts: to_u32(int(row, "attempts")?, "deliveries.attempts")?,
        next_attempt_at: row.try_get("next_attempt_at")?,
        last_attempt_at: row.try_get("last_attempt_at")?,
        last_status: http_status(row, "last_status", "deliveries.last_status")?,
        last_error: row.try_get("last_error")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
    })
}

pub(super) fn attempt(row: &DbRow) -> Result<DeliveryAttempt> {
    Ok(DeliveryAttempt {
        id: row.try_get("id")?,
        delivery_id: row.try_get("delivery_id")?,
        attempt: to_u32(int(row, "attempt")?, "delivery_attempts.attempt")?,
        at: row.try_get("at")?,
        succeeded: row.try_get("succeeded")?,
        status: http_status(row, "status", "delivery_attempts.status")?,
        latency_ms: to_u64(row.try_get("latency_ms")?, "delivery_attempts.latency_ms")?,
        error: row.try_get("error")?,
        response_excerpt: row.try_get("response_excerpt")?,
        exchanges: json(row, "delivery_attempts.exchanges")?,
    })
}

pub(super) fn ticket(row: &DbRow) -> Result<Ticket> {
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

pub(super) fn graph_connection(row: &DbRow) -> Result<GraphConnection> {
    Ok(GraphConnection {
        tenant_id: TenantId(row.try_get("tenant_id")?),
        org_id: OrgId(row.try_get("org_id")?),
        app: parse_enum(&row.try_get::<String, _>("app")?, "graph_connections.app")?,
        entra_tenant_id: row.try_get("entra_tenant_id")?,
        state: parse_enum(&row.try_get::<String, _>("state")?, "graph_connections.state")?,
        consented_at: row.try_get("consented_at")?,
        consented_by: row.try_get("consented_by")?,
        missing_permissions: json(row, "graph_connections.missing_permissions")?,
        throttled_until: row.try_get("throttled_until")?,
        last_read_at: row.try_get("last_read_at")?,
        last_error: row.try_get("last_error")?,
        next_read_at: row.try_get("next_read_at")?,
        collector_id: row.try_get::<Option<Uuid>, _>("collector_id")?.map(CollectorId),
        test_user: row.try_get("test_user")?,
    })
}

pub(super) fn graph_own_app(row: &DbRow) -> Result<GraphOwnApp> {
    Ok(GraphOwnApp {
        tenant_id: TenantId(row.try_get("tenant_id")?),
        org_id: OrgId(row.try_get("org_id")?),
        client_id: row.try_get("client_id")?,
        entra_tenant_id: row.try_get("entra_tenant_id")?,
        cloud: row.try_get("cloud")?,
        credential_kind: parse_enum(
            &row.try_get::<String, _>("credential_kind")?,
            "graph_own_apps.credential_kind",
        )?,
        credential_expires_at: row.try_get("credential_expires_at")?,
        sealed_credential: row.try_get("sealed_credential")?,
        version: row.try_get("version")?,
        updated_at: row.try_get("updated_at")?,
        updated_by: row.try_get("updated_by")?,
    })
}
