//! The column lists of the rows the delivery store reads whole, spelled once so that every query (the
//! shared ones in `sql/` and a backend's own) and its row mapper (`sql/rows.rs`) agree. Macros
//! rather than constants, so that queries stay `&'static str` built with `concat!`.

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
