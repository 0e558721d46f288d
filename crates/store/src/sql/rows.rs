//! Rows to model values, for the column lists of `columns.rs` (the delivery store's for now). A stored value the model cannot
//! hold (an unknown enum text, a negative count, JSON that does not decode) is
//! [`StoreError::Corrupt`], never guessed.

use serde::de::DeserializeOwned;

use super::prelude::*;

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
