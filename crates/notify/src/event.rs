//! The event an integration receives, and the texts tickets and messages are made of.
//!
//! The JSON form of [`Event`] is the body of a generic webhook (Standard Webhooks' recommended
//! `{"type", "timestamp", "data"}` shape); the other connectors build their own bodies from it
//! with [`Event::ticket_title`], [`Event::ticket_body`] and [`Event::note_text`].

use std::fmt::Write as _;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// What happened. Integrations subscribe to a subset.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord)]
pub enum EventType {
    #[serde(rename = "finding.opened")]
    FindingOpened,
    #[serde(rename = "finding.acknowledged")]
    FindingAcknowledged,
    #[serde(rename = "finding.suppressed")]
    FindingSuppressed,
    #[serde(rename = "finding.resolved")]
    FindingResolved,
    /// A resolved finding failed again, or a suppression ran out while it still failed.
    #[serde(rename = "finding.reopened")]
    FindingReopened,
    /// A collector stopped pushing (the `collector-silent` finding opened).
    #[serde(rename = "collector.silent")]
    CollectorSilent,
    /// A silent collector pushed again (the `collector-silent` finding resolved).
    #[serde(rename = "collector.back")]
    CollectorBack,
    /// An integration failed for too long and was switched off (told to the organisation's
    /// other integrations).
    #[serde(rename = "integration.disabled")]
    IntegrationDisabled,
    /// Sent by "test this integration"; creates no ticket.
    #[serde(rename = "integration.test")]
    IntegrationTest,
}

impl EventType {
    pub const ALL: [EventType; 9] = [
        EventType::FindingOpened,
        EventType::FindingAcknowledged,
        EventType::FindingSuppressed,
        EventType::FindingResolved,
        EventType::FindingReopened,
        EventType::CollectorSilent,
        EventType::CollectorBack,
        EventType::IntegrationDisabled,
        EventType::IntegrationTest,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            EventType::FindingOpened => "finding.opened",
            EventType::FindingAcknowledged => "finding.acknowledged",
            EventType::FindingSuppressed => "finding.suppressed",
            EventType::FindingResolved => "finding.resolved",
            EventType::FindingReopened => "finding.reopened",
            EventType::CollectorSilent => "collector.silent",
            EventType::CollectorBack => "collector.back",
            EventType::IntegrationDisabled => "integration.disabled",
            EventType::IntegrationTest => "integration.test",
        }
    }

    pub fn parse(s: &str) -> Option<EventType> {
        EventType::ALL.into_iter().find(|t| t.as_str() == s)
    }

    /// Whether the problem is there (open ticket / trigger) after this event.
    pub fn is_problem(self) -> bool {
        matches!(self, EventType::FindingOpened | EventType::FindingReopened | EventType::CollectorSilent)
    }

    /// Whether the problem went away (close ticket / resolve) with this event.
    pub fn is_recovery(self) -> bool {
        matches!(self, EventType::FindingResolved | EventType::CollectorBack)
    }
}

impl std::fmt::Display for EventType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TenantRef {
    pub id: Uuid,
    pub name: String,
}

/// The finding an event is about, as it stood right after the event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FindingData {
    pub id: Uuid,
    pub rule_id: String,
    /// `rule|subject`: stable for the problem within its tenant.
    pub fingerprint: String,
    pub subject: String,
    /// `info`, `low`, `medium`, `high` or `critical`.
    pub severity: String,
    /// `open`, `acknowledged`, `suppressed` or `resolved`.
    pub status: String,
    pub title: String,
    pub summary: String,
    /// What to do about it, one step per entry.
    pub remediation: Vec<String>,
    pub opened_at: DateTime<Utc>,
    pub resolved_at: Option<DateTime<Utc>>,
    pub reopen_count: u32,
    pub collector_id: Option<Uuid>,
    /// Where a person sees the finding (the API's URL of it, or a console link if configured).
    pub url: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EventData {
    pub organization_id: Uuid,
    /// `None` for organisation-wide events (`integration.disabled`, `integration.test`).
    pub tenant: Option<TenantRef>,
    pub finding: Option<FindingData>,
    /// `system` for the evaluator, otherwise the person or key that acted.
    pub actor: String,
    /// What the person wrote (acknowledgement note, suppression reason), or the reason of an
    /// `integration.disabled`.
    pub note: Option<String>,
    pub suppressed_until: Option<DateTime<Utc>>,
    /// For `integration.disabled`: which integration.
    pub integration_id: Option<Uuid>,
    /// Digest routing: every tenant the ticket's problem currently affects (the event's own
    /// tenant included). Empty for per-tenant routing.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub affected_tenants: Vec<TenantRef>,
}

/// One event, as every integration receives it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// Stable across retries and replays: receivers de-duplicate on it (`webhook-id`).
    pub id: Uuid,
    #[serde(rename = "type")]
    pub event_type: EventType,
    /// When it happened (not when it was sent).
    pub timestamp: DateTime<Utc>,
    pub data: EventData,
}

const PRODUCT: &str = "Writeback Doctor";

impl Event {
    /// Standard Webhooks message id: `msg_` + the event id.
    pub fn message_id(&self) -> String {
        format!("msg_{}", self.id.simple())
    }

    fn tenant_name(&self) -> &str {
        self.data.tenant.as_ref().map(|t| t.name.as_str()).unwrap_or("all tenants")
    }

    /// One line naming the problem: `[Writeback Doctor] Contoso: <finding title>`, or for a
    /// digest ticket `[Writeback Doctor] <finding title> (3 tenants)`.
    pub fn ticket_title(&self) -> String {
        let what = match &self.data.finding {
            Some(f) => f.title.clone(),
            None => self.headline(),
        };
        let title = if self.data.affected_tenants.is_empty() {
            format!("[{PRODUCT}] {}: {what}", self.tenant_name())
        } else {
            format!("[{PRODUCT}] {what} ({} tenants)", self.data.affected_tenants.len().max(1))
        };
        truncate(&title, 250)
    }

    /// What happened in a few words, for notes, chat messages and events without a finding.
    pub fn headline(&self) -> String {
        let finding = self.data.finding.as_ref().map(|f| f.title.as_str()).unwrap_or("");
        let tenant = self.tenant_name();
        match self.event_type {
            EventType::FindingOpened => format!("Opened in {tenant}: {finding}"),
            EventType::FindingReopened => format!("Failing again in {tenant}: {finding}"),
            EventType::FindingAcknowledged => format!("Acknowledged in {tenant}: {finding}"),
            EventType::FindingSuppressed => format!("Suppressed in {tenant}: {finding}"),
            EventType::FindingResolved => format!("Resolved in {tenant}: {finding}"),
            EventType::CollectorSilent => format!("Collector silent in {tenant}: {finding}"),
            EventType::CollectorBack => format!("Collector reporting again in {tenant}"),
            EventType::IntegrationDisabled => "An integration was disabled after failing for too long".into(),
            EventType::IntegrationTest => format!("Test event from {PRODUCT}"),
        }
    }

    /// The description of a new ticket: what is wrong, where, how bad, what to do.
    pub fn ticket_body(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "{}", self.headline());
        if let Some(f) = &self.data.finding {
            let _ = writeln!(out);
            let _ = writeln!(out, "{}", f.summary);
            let _ = writeln!(out);
            let _ = writeln!(out, "Tenant: {}", self.tenant_name());
            let _ = writeln!(out, "Severity: {}", f.severity);
            let _ = writeln!(out, "Rule: {} (subject {})", f.rule_id, f.subject);
            let _ = writeln!(out, "First seen: {}", f.opened_at.to_rfc3339());
            if !self.data.affected_tenants.is_empty() {
                let names: Vec<&str> = self.data.affected_tenants.iter().map(|t| t.name.as_str()).collect();
                let _ = writeln!(out, "Affected tenants: {}", names.join(", "));
            }
            if !f.remediation.is_empty() {
                let _ = writeln!(out);
                let _ = writeln!(out, "What to do:");
                for (i, step) in f.remediation.iter().enumerate() {
                    let _ = writeln!(out, "{}. {step}", i + 1);
                }
            }
            if let Some(url) = &f.url {
                let _ = writeln!(out);
                let _ = writeln!(out, "Details: {url}");
            }
        } else if let Some(note) = &self.data.note {
            let _ = writeln!(out);
            let _ = writeln!(out, "{note}");
        }
        let _ = writeln!(out);
        let _ = write!(out, "Event {} ({}) from {PRODUCT}.", self.id, self.event_type);
        out
    }

    /// A note added to an existing ticket: what changed, who did it, what they wrote.
    pub fn note_text(&self) -> String {
        let mut out = self.headline();
        if self.data.actor != "system" {
            let _ = write!(out, " (by {})", self.data.actor);
        }
        out.push('.');
        if let Some(note) = &self.data.note {
            let _ = write!(out, "\n{note}");
        }
        if let Some(until) = self.data.suppressed_until {
            let _ = write!(out, "\nSuppressed until {}.", until.to_rfc3339());
        }
        if let Some(f) = self.data.finding.as_ref().filter(|_| self.event_type.is_problem()) {
            let _ = write!(out, "\n{}", f.summary);
        }
        let _ = write!(out, "\nEvent {} ({}).", self.id, self.event_type);
        out
    }

    /// The finding's severity mapped to a 1 (highest) … 4 (lowest) scale many PSAs use.
    pub fn priority(&self) -> u8 {
        match self.data.finding.as_ref().map(|f| f.severity.as_str()) {
            Some("critical") => 1,
            Some("high") => 2,
            Some("medium") => 3,
            _ => 4,
        }
    }
}

/// Cuts `s` to at most `max` characters (not bytes), marking the cut with `…`.
pub fn truncate(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_owned();
    }
    let mut out: String = s.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// An event as the engine builds it, for connector tests.
    pub fn sample(event_type: EventType) -> Event {
        let at = DateTime::parse_from_rfc3339("2026-11-20T10:00:00Z").unwrap().with_timezone(&Utc);
        Event {
            id: Uuid::from_u128(0x0193_0000_0000_7000_8000_0000_0000_0001),
            event_type,
            timestamp: at,
            data: EventData {
                organization_id: Uuid::from_u128(1),
                tenant: Some(TenantRef { id: Uuid::from_u128(2), name: "Contoso".into() }),
                finding: Some(FindingData {
                    id: Uuid::from_u128(3),
                    rule_id: "endpoint-reachable".into(),
                    fingerprint: "endpoint-reachable|ssprdedicatedsbprodscu.servicebus.windows.net:443"
                        .into(),
                    subject: "ssprdedicatedsbprodscu.servicebus.windows.net:443".into(),
                    severity: "high".into(),
                    status: "open".into(),
                    title: "Password reset endpoint unreachable".into(),
                    summary: "The collector could not open TCP 443 to the Service Bus endpoint.".into(),
                    remediation: vec!["Allow outbound TCP 443 to *.servicebus.windows.net.".into()],
                    opened_at: at,
                    resolved_at: None,
                    reopen_count: 0,
                    collector_id: None,
                    url: Some("https://wbd.example/v1/findings/3".into()),
                }),
                actor: "system".into(),
                note: None,
                suppressed_until: None,
                integration_id: None,
                affected_tenants: Vec::new(),
            },
        }
    }

    #[test]
    fn event_types_round_trip_through_their_names() {
        for t in EventType::ALL {
            assert_eq!(EventType::parse(t.as_str()), Some(t));
            assert_eq!(serde_json::to_value(t).unwrap(), serde_json::json!(t.as_str()));
        }
    }

    #[test]
    fn the_webhook_body_has_the_standard_webhooks_shape() {
        let body = serde_json::to_value(sample(EventType::FindingOpened)).unwrap();
        assert_eq!(body["type"], "finding.opened");
        assert_eq!(body["timestamp"], "2026-11-20T10:00:00Z");
        assert_eq!(body["data"]["tenant"]["name"], "Contoso");
        assert_eq!(body["data"]["finding"]["severity"], "high");
    }

    #[test]
    fn ticket_texts_name_tenant_problem_and_steps() {
        let e = sample(EventType::FindingOpened);
        assert_eq!(e.ticket_title(), "[Writeback Doctor] Contoso: Password reset endpoint unreachable");
        let body = e.ticket_body();
        assert!(body.contains("Severity: high"), "{body}");
        assert!(body.contains("1. Allow outbound TCP 443"), "{body}");
        let mut digest = e.clone();
        digest.data.affected_tenants = vec![
            TenantRef { id: Uuid::from_u128(2), name: "Contoso".into() },
            TenantRef { id: Uuid::from_u128(4), name: "Fabrikam".into() },
        ];
        assert_eq!(
            digest.ticket_title(),
            "[Writeback Doctor] Password reset endpoint unreachable (2 tenants)"
        );
        assert!(digest.ticket_body().contains("Affected tenants: Contoso, Fabrikam"));
        let mut ack = sample(EventType::FindingAcknowledged);
        ack.data.actor = "alice".into();
        ack.data.note = Some("Firewall change scheduled".into());
        assert!(
            ack.note_text()
                .starts_with("Acknowledged in Contoso: Password reset endpoint unreachable (by alice).")
        );
        assert!(ack.note_text().contains("Firewall change scheduled"));
    }
}
