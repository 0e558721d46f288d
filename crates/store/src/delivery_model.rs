//! Domain types of integrations, deliveries, attempts and tickets.
//!
//! The store keeps integration kinds, event types and payloads as plain strings and JSON: what
//! they mean belongs to the delivery layer (`wbd-notify`), which the store does not depend on.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::{FindingEvent, FindingId, OrgId, Severity, TenantId};

string_enum!(
    /// How tickets are cut: one per finding, or one per problem across the tenants it affects.
    Routing { PerTenant = "per_tenant", Digest = "digest" }
);

string_enum!(
    /// `pending` covers waiting for an attempt and an attempt in flight.
    DeliveryStatus { Pending = "pending", Succeeded = "succeeded", Failed = "failed" }
);

string_enum!(
    /// `creating`: a create was sent whose outcome we do not know yet (look before creating
    /// again).
    TicketState { Creating = "creating", Open = "open", Closed = "closed" }
);

/// Which events an integration receives. Every list narrows; an empty list means "all".
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct IntegrationFilter {
    #[serde(default)]
    pub tenant_ids: Vec<TenantId>,
    #[serde(default)]
    pub severities: Vec<Severity>,
    #[serde(default)]
    pub rule_ids: Vec<String>,
    /// Event type names (`finding.opened` …).
    #[serde(default)]
    pub event_types: Vec<String>,
}

impl IntegrationFilter {
    /// Whether an event of `event_type` about a finding of `rule_id` with `severity` in
    /// `tenant` passes. Organisation-wide events (no tenant, no finding) pass the tenant, rule
    /// and severity lists.
    pub fn matches(
        &self,
        event_type: &str,
        tenant: Option<TenantId>,
        rule_id: Option<&str>,
        severity: Option<Severity>,
    ) -> bool {
        (self.event_types.is_empty() || self.event_types.iter().any(|t| t == event_type))
            && (self.tenant_ids.is_empty() || tenant.is_none_or(|t| self.tenant_ids.contains(&t)))
            && (self.rule_ids.is_empty() || rule_id.is_none_or(|r| self.rule_ids.iter().any(|x| x == r)))
            && (self.severities.is_empty() || severity.is_none_or(|s| self.severities.contains(&s)))
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Integration {
    pub id: Uuid,
    pub org_id: OrgId,
    pub name: String,
    /// `webhook`, `connectwise`, … (see `wbd_notify::IntegrationKind`).
    pub kind: String,
    /// `None` when the URL is a secret (sealed with the credentials).
    pub url: Option<String>,
    pub config: serde_json::Value,
    /// Sealed secrets (never leave the server).
    pub secrets: Vec<u8>,
    pub filter: IntegrationFilter,
    pub routing: Routing,
    pub max_in_flight: u32,
    pub hourly_budget: Option<u32>,
    pub enabled: bool,
    pub disabled_reason: Option<String>,
    pub disabled_at: Option<DateTime<Utc>>,
    pub failing_since: Option<DateTime<Utc>>,
    pub last_success_at: Option<DateTime<Utc>>,
    /// The destination asked us to slow down: nothing new is sent to it before this instant.
    pub throttled_until: Option<DateTime<Utc>>,
    /// Throttling answers in a row (0 after an answer that was not one): how long the next
    /// pause is when the destination does not say.
    pub throttle_streak: u32,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub version: i64,
}

/// What an integration is made of; for create and for a full update.
#[derive(Debug, Clone)]
pub struct IntegrationWrite {
    pub name: String,
    pub kind: String,
    pub url: Option<String>,
    pub config: serde_json::Value,
    pub secrets: Vec<u8>,
    pub filter: IntegrationFilter,
    pub routing: Routing,
    pub max_in_flight: u32,
    pub hourly_budget: Option<u32>,
    pub enabled: bool,
}

/// An event for one integration, as the dispatcher (or an API action) makes it.
#[derive(Debug, Clone)]
pub struct NewDelivery {
    pub org_id: OrgId,
    pub integration_id: Uuid,
    pub event_id: Uuid,
    pub event_type: String,
    pub tenant_id: Option<TenantId>,
    pub finding_id: Option<FindingId>,
    pub ticket_key: Option<String>,
    pub payload: serde_json::Value,
    pub occurred_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Delivery {
    pub id: Uuid,
    pub org_id: OrgId,
    pub integration_id: Uuid,
    pub event_id: Uuid,
    pub event_type: String,
    pub tenant_id: Option<TenantId>,
    pub finding_id: Option<FindingId>,
    pub ticket_key: Option<String>,
    pub payload: serde_json::Value,
    pub occurred_at: DateTime<Utc>,
    /// The trace the event happened in (W3C `traceparent`, from its finding event), continued
    /// by every attempt.
    pub traceparent: Option<String>,
    pub status: DeliveryStatus,
    /// Attempts made in the current round (a replay starts a new round).
    pub attempts: u32,
    pub next_attempt_at: Option<DateTime<Utc>>,
    pub last_attempt_at: Option<DateTime<Utc>>,
    pub last_status: Option<u16>,
    pub last_error: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// One try of a delivery, with every request it made.
#[derive(Debug, Clone, PartialEq)]
pub struct DeliveryAttempt {
    pub id: Uuid,
    pub delivery_id: Uuid,
    pub attempt: u32,
    pub at: DateTime<Utc>,
    pub succeeded: bool,
    pub status: Option<u16>,
    pub latency_ms: u64,
    pub error: Option<String>,
    pub response_excerpt: Option<String>,
    pub exchanges: serde_json::Value,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Ticket {
    pub id: Uuid,
    pub integration_id: Uuid,
    pub ticket_key: String,
    pub external_id: Option<String>,
    pub url: Option<String>,
    pub state: TicketState,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// A ticket as a finding shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FindingTicket {
    pub finding_id: FindingId,
    pub integration_id: Uuid,
    pub integration_name: String,
    pub kind: String,
    pub external_id: Option<String>,
    pub url: Option<String>,
    pub state: TicketState,
}

/// A delivery a worker holds (until `lease_until`), with what it needs to carry it out.
#[derive(Debug, Clone)]
pub struct ClaimedDelivery {
    pub delivery: Delivery,
    pub lease_id: Uuid,
    pub integration: Integration,
    /// The stored ticket for the delivery's key, if any.
    pub ticket: Option<Ticket>,
}

/// A finding event waiting to be turned into deliveries, with what the payload needs.
#[derive(Debug, Clone)]
pub struct UndispatchedEvent {
    pub org_id: OrgId,
    pub tenant_id: TenantId,
    pub tenant_name: String,
    pub event: FindingEvent,
    pub finding: crate::Finding,
}

/// What a finished attempt changes about the ticket.
#[derive(Debug, Clone)]
pub enum TicketUpdate {
    /// The ticket exists (created, found or replaced by a linked one) and is in `state`.
    Set { external_id: String, url: Option<String>, state: TicketState },
    /// Only the state changed (noted, closed, reopened).
    State(TicketState),
}

/// The outcome of one attempt, written in one transaction with its consequences.
#[derive(Debug, Clone)]
pub struct AttemptRecord {
    pub lease_id: Uuid,
    pub at: DateTime<Utc>,
    pub succeeded: bool,
    pub status: Option<u16>,
    pub latency_ms: u64,
    pub error: Option<String>,
    pub response_excerpt: Option<String>,
    pub exchanges: serde_json::Value,
    /// On failure: when to try again; `None` means the attempts are exhausted.
    pub retry_at: Option<DateTime<Utc>>,
    /// The ticket change a successful attempt made (or a found ticket after a failure).
    pub ticket: Option<TicketUpdate>,
    /// Link the delivery's finding to the ticket as open (`true`) or no longer open (`false`):
    /// what a finding shows as its tickets, and what keeps a digest ticket open.
    pub finding_open: Option<bool>,
    /// The destination asked us to slow down (`429` …): pause the whole integration until
    /// then. A later pause never shortens an earlier one.
    pub throttle_until: Option<DateTime<Utc>>,
}

/// A page of deliveries of an integration.
#[derive(Debug, Clone, Default)]
pub struct DeliveryFilter {
    pub status: Option<DeliveryStatus>,
    /// Only deliveries of events at or after this instant.
    pub since: Option<DateTime<Utc>>,
    /// Keyset paging: deliveries with a smaller id than this (newest first).
    pub before: Option<Uuid>,
    pub limit: u32,
}

/// A finished attempt as the store writes it: the delivery's new state and the attempt's row
/// (from the delivery engine's `complete_attempts` to each backend's statement).
pub(crate) struct AttemptRow<'a> {
    pub delivery_id: Uuid,
    pub lease_id: Uuid,
    pub org_id: Uuid,
    /// The delivery's status after the attempt.
    pub status: &'static str,
    /// This attempt's number (the delivery's attempts after it).
    pub attempt: i64,
    pub next_attempt_at: Option<DateTime<Utc>>,
    pub at: DateTime<Utc>,
    pub succeeded: bool,
    pub http_status: Option<i64>,
    pub latency_ms: i64,
    pub error: Option<&'a str>,
    pub response_excerpt: Option<&'a str>,
    pub exchanges: &'a serde_json::Value,
}
