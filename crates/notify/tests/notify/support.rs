//! What every connector test needs: an HTTP side that may reach the local receivers, and
//! events as the engine builds them.

#![allow(dead_code)]

use std::time::Duration;

use chrono::{DateTime, Utc};
use uuid::Uuid;
use wbd_notify::ssrf::{Guard, NetworkPolicy};
use wbd_notify::{Event, EventData, EventType, FindingData, Http, TenantRef};

/// An attempt's HTTP side that may reach 127.0.0.1 (where the receivers listen), through the
/// real SSRF guard: everything else internal stays refused.
pub fn http() -> Http {
    http_with_timeout(Duration::from_secs(5))
}

/// [`http`] with another attempt timeout.
pub fn http_with_timeout(attempt_timeout: Duration) -> Http {
    let policy = NetworkPolicy::new(&["127.0.0.1/32".into()], false).expect("allow-list");
    Http::new(&Guard::new(policy, attempt_timeout), false)
}

/// An event about finding `n` of tenant "Contoso" (`n` varies ids and the fingerprint).
pub fn event(event_type: EventType, n: u128) -> Event {
    let at = DateTime::parse_from_rfc3339("2026-11-20T10:00:00Z").unwrap().with_timezone(&Utc);
    let status = match event_type {
        EventType::FindingResolved | EventType::CollectorBack => "resolved",
        EventType::FindingAcknowledged => "acknowledged",
        EventType::FindingSuppressed => "suppressed",
        _ => "open",
    };
    Event {
        id: Uuid::from_u128(0x0193_0000_0000_7000_8000_0000_0000_0000 + n * 1000 + event_type as u128),
        event_type,
        timestamp: at,
        data: EventData {
            organization_id: Uuid::from_u128(1),
            tenant: Some(TenantRef { id: Uuid::from_u128(2), name: "Contoso".into() }),
            finding: Some(FindingData {
                id: Uuid::from_u128(100 + n),
                rule_id: "endpoint-reachable".into(),
                fingerprint: format!("endpoint-reachable|host{n}.servicebus.windows.net:443"),
                subject: format!("host{n}.servicebus.windows.net:443"),
                severity: "high".into(),
                status: status.into(),
                title: "Password reset endpoint unreachable".into(),
                summary: "The collector could not open TCP 443 to the Service Bus endpoint.".into(),
                remediation: vec![
                    "Allow outbound TCP 443 to *.servicebus.windows.net.".into(),
                    "Re-test from the finding.".into(),
                ],
                opened_at: at,
                resolved_at: (status == "resolved").then_some(at),
                reopen_count: 0,
                collector_id: None,
                url: Some(format!("https://wbd.example/v1/findings/{}", 100 + n)),
            }),
            actor: "system".into(),
            note: None,
            suppressed_until: None,
            integration_id: None,
            affected_tenants: Vec::new(),
        },
    }
}

/// The dedup key the engine would use for finding `n`.
pub fn key(n: u128) -> String {
    format!("wbd-{:032x}", 0xabc000 + n)
}
