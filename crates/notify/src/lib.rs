//! Delivery of finding events to the places MSPs work in.
//!
//! - [`event`]: the event every integration receives (the Standard Webhooks payload) and the
//!   ticket texts rendered from it.
//! - [`connector`]: what one integration does with an event ([`connector::Connector`]), the
//!   recorded HTTP exchanges of an attempt, and how failures are classified.
//! - [`connectors`]: one module per destination: generic webhook, ConnectWise PSA, Autotask,
//!   HaloPSA, Jira, ServiceNow, PagerDuty Events v2, Slack and Microsoft Teams.
//! - [`ssrf`]: the HTTP client every delivery uses; destination addresses are checked when the
//!   socket connects (after DNS), redirects are never followed.
//! - [`signing`]: Standard Webhooks signatures (`whsec_` secrets, `v1` HMAC-SHA256, rotation).
//! - [`sealing`]: integration credentials encrypted at rest (AES-256-GCM, key from configuration).
//! - [`schedule`]: the retry schedule (≥ 10 attempts over ≥ 72 h, jitter, `Retry-After`).

pub mod connector;
pub mod connectors;
pub mod event;
pub mod schedule;
pub mod sealing;
pub mod signing;
pub mod ssrf;

pub use connector::{
    Action, ConfigError, Connector, ConnectorSettings, DeliveryError, Exchange, Http, IntegrationKind,
    Outcome, TicketRef,
};
pub use event::{Event, EventData, EventType, FindingData, TenantRef};
