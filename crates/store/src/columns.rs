//! The column lists of the rows the store reads whole, spelled once so that every query (the
//! shared ones in `sql/` and a backend's own) and its row mapper (`sql/rows.rs`) agree. Macros
//! rather than constants, so that queries stay `&'static str` built with `concat!`.

macro_rules! org_cols {
    () => {
        "id, name, created_at"
    };
}
macro_rules! api_key_cols {
    () => {
        "id, org_id, name, role, prefix, created_at, revoked_at"
    };
}
macro_rules! tenant_cols {
    () => {
        "id, org_id, name, entra_tenant_id, created_at"
    };
}
macro_rules! collector_cols {
    () => {
        "id, org_id, tenant_id, name, status, enrollment_expires_at, public_key, hostname, version, os, \
         push_interval_secs, enrolled_at, last_seen_at, silent_after, spool_dropped, created_at, revoked_at"
    };
}
macro_rules! fact_cols {
    () => {
        "collector_id, probe, subject, observed_at, payload, timings, digest, first_seen_at, repeat_count"
    };
}
macro_rules! outbox_cols {
    () => {
        "id, org_id, tenant_id, kind, traceparent, created_at, attempts"
    };
}
macro_rules! finding_cols {
    () => {
        "id, org_id, tenant_id, fingerprint, rule_id, subject, severity, status, title, summary, evidence, \
         opened_at, updated_at, resolved_at, reopen_count, version, collector_id, acknowledged_at, \
         acknowledged_by, suppressed_until, suppression_reason, suppressed_by, message, root_finding_id, \
         announced"
    };
}
macro_rules! event_cols {
    () => {
        "id, finding_id, kind, actor, at, severity, summary, note, suppressed_until, root_finding_id"
    };
}
macro_rules! command_cols {
    () => {
        "id, collector_id, finding_id, action, requested_by, created_at, delivered_batch_id, delivered_at, \
         expires_at, cancelled_at, cancelled_by"
    };
}
macro_rules! integration_cols {
    () => {
        "id, org_id, name, kind, url, config, secrets, filter, routing, max_in_flight, hourly_budget, \
         budget_window_start, budget_used, enabled, disabled_reason, disabled_at, failing_since, \
         last_success_at, throttled_until, throttle_streak, created_at, updated_at, version"
    };
}
macro_rules! delivery_cols {
    () => {
        "id, org_id, integration_id, event_id, event_type, tenant_id, finding_id, ticket_key, payload, \
         occurred_at, traceparent, status, attempts, next_attempt_at, lease_id, lease_until, last_attempt_at, \
         last_status, last_error, created_at, updated_at"
    };
}
macro_rules! attempt_cols {
    () => {
        "id, delivery_id, attempt, at, succeeded, status, latency_ms, error, response_excerpt, exchanges"
    };
}
macro_rules! ticket_cols {
    () => {
        "id, integration_id, ticket_key, external_id, url, state, created_at, updated_at"
    };
}
macro_rules! graph_connection_cols {
    () => {
        "tenant_id, org_id, app, entra_tenant_id, state, consented_at, consented_by, missing_permissions, \
         throttled_until, last_read_at, last_error, next_read_at, collector_id, test_user"
    };
}
macro_rules! graph_own_app_cols {
    () => {
        "tenant_id, org_id, client_id, entra_tenant_id, cloud, credential_kind, credential_expires_at, \
         sealed_credential, version, updated_at, updated_by"
    };
}
