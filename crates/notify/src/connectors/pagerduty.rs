//! PagerDuty Events API v2: one alert per problem, keyed by the problem key as `dedup_key`.
//!
//! Every action is one `POST` of an event to the events endpoint (202 `{"status": "success",
//! "dedup_key": …}`):
//! - **Create** → `trigger` with the key as `dedup_key`; the ticket is the dedup key.
//! - **Find** → `Outcome::NotFound` without a request: the Events API cannot look alerts up, and
//!   needs not, because a `trigger` whose `dedup_key` matches an open alert is folded into that
//!   alert. The engine's `Create` after a lost answer therefore never makes a second alert (and
//!   [`Connector::key_is_ticket_id`] says the dedup key is the ticket).
//! - **Find for `integration.test`** → an error, without a request. The Events API is
//!   asynchronous (a `202` only says the event was queued, not that the key routes anywhere) and
//!   has no read-only call, so the only proof a routing key works is a `trigger`, which pages the
//!   on-call person. We say so rather than report a test that checked nothing.
//! - **Note** → `trigger` again for problem events (PagerDuty appends the event to the open
//!   alert's log), `acknowledge` for acknowledgements and suppressions (someone owns it: stop
//!   escalating). A recovery note is not sent: the engine notes a recovery when the alert stays
//!   open for other tenants (digest routing), and a `resolve` would close the shared alert. Other
//!   events have no Events API counterpart and are not sent either.
//! - **Close** → `resolve`, the only action that resolves.
//! - **Reopen** → `trigger`: for a resolved dedup key PagerDuty opens a new incident under the
//!   same key, so there is nothing to link and the ticket stays the same (`Outcome::Done`).
//!
//! The payload: `summary` (the ticket title, ≤ 1,024 characters), `source` (the finding's
//! subject, the thing that fails), `severity` (critical → critical, high → error, medium →
//! warning, low and info → info), `component` (the collector, if any), `group` (the tenant),
//! `class` (the rule id), `custom_details` (summary, remediation, ids), and a link to the finding.
//!
//! Settings:
//! - `url`: the events endpoint, `https://events.pagerduty.com/v2/enqueue` (EU accounts may use
//!   `https://events.eu.pagerduty.com/v2/enqueue`).
//! - `credentials.routing_key`: the 32-character Integration Key of an "Events API v2"
//!   integration on the PagerDuty service that should page.

use async_trait::async_trait;
use serde_json::{Value, json};
use url::Url;

use super::Fields;
use crate::connector::{
    Action, ConfigError, Connector, ConnectorSettings, DeliveryError, Http, IntegrationKind, Outcome,
    TicketRef,
};
use crate::event::{Event, EventType, truncate};

/// Why "test this integration" cannot work for PagerDuty.
const UNTESTABLE: &str = "PagerDuty cannot be tested without opening an alert: the Events API has no \
     call that checks a routing key without paging the on-call person. Check the Integration Key on \
     the service's Integrations tab; the first finding will open an alert";

pub fn build(settings: &ConnectorSettings) -> Result<Box<dyn Connector>, Vec<ConfigError>> {
    let mut errors = Vec::new();
    Fields::new("config", &settings.config, &mut errors);
    let mut credentials = Fields::new("credentials", &settings.credentials, &mut errors);
    let routing_key = credentials.required_str("routing_key");
    if !routing_key.is_empty()
        && (routing_key.len() != 32 || !routing_key.chars().all(|c| c.is_ascii_alphanumeric()))
    {
        errors.push(ConfigError::new(
            "credentials.routing_key",
            "must be the 32-letter Integration Key of an Events API v2 integration",
        ));
    }
    if !matches!(settings.url.scheme(), "https" | "http") || settings.url.host().is_none() {
        errors.push(ConfigError::new(
            "url",
            "must be the events endpoint, https://events.pagerduty.com/v2/enqueue",
        ));
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    Ok(Box::new(PagerDuty { endpoint: settings.url.clone(), routing_key }))
}

struct PagerDuty {
    endpoint: Url,
    routing_key: String,
}

impl std::fmt::Debug for PagerDuty {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PagerDuty").field("endpoint", &self.endpoint.as_str()).finish_non_exhaustive()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum EventAction {
    Trigger,
    Acknowledge,
    Resolve,
}

impl EventAction {
    fn as_str(self) -> &'static str {
        match self {
            EventAction::Trigger => "trigger",
            EventAction::Acknowledge => "acknowledge",
            EventAction::Resolve => "resolve",
        }
    }
}

/// PagerDuty's severity for a finding severity.
fn severity(event: &Event) -> &'static str {
    match event.data.finding.as_ref().map(|f| f.severity.as_str()) {
        Some("critical") => "critical",
        Some("high") => "error",
        Some("medium") => "warning",
        _ => "info",
    }
}

impl PagerDuty {
    /// The Events API v2 body of `action` for `event` under `dedup_key`.
    fn body(&self, action: EventAction, event: &Event, dedup_key: &str) -> Value {
        let mut body = json!({
            "routing_key": self.routing_key,
            "event_action": action.as_str(),
            "dedup_key": dedup_key,
        });
        if action != EventAction::Trigger {
            return body;
        }
        let finding = event.data.finding.as_ref();
        let tenant =
            event.data.tenant.as_ref().map(|t| t.name.clone()).unwrap_or_else(|| "all tenants".into());
        let source =
            finding.map(|f| f.subject.clone()).filter(|s| !s.is_empty()).unwrap_or_else(|| tenant.clone());
        let mut payload = json!({
            "summary": truncate(&event.ticket_title(), 1024),
            "source": truncate(&source, 255),
            "severity": severity(event),
            "timestamp": event.timestamp.to_rfc3339(),
            "group": tenant,
            "custom_details": {
                "event": event.event_type.as_str(),
                "event_id": event.id.to_string(),
                "headline": event.headline(),
                "summary": finding.map(|f| f.summary.as_str()),
                "remediation": finding.map(|f| f.remediation.clone()),
                "rule": finding.map(|f| f.rule_id.as_str()),
                "subject": finding.map(|f| f.subject.as_str()),
                "finding_severity": finding.map(|f| f.severity.as_str()),
                "reopen_count": finding.map(|f| f.reopen_count),
                "note": event.data.note,
                "actor": event.data.actor,
            },
        });
        if let Some(f) = finding {
            payload["class"] = json!(f.rule_id);
            if let Some(collector) = f.collector_id {
                payload["component"] = json!(format!("collector {collector}"));
            }
        }
        body["payload"] = payload;
        body["client"] = json!("Writeback Doctor");
        if let Some(url) = finding.and_then(|f| f.url.as_deref()) {
            body["client_url"] = json!(url);
            body["links"] = json!([{"href": url, "text": "Finding in Writeback Doctor"}]);
        }
        body
    }

    async fn send(
        &self,
        http: &Http,
        action: EventAction,
        event: &Event,
        dedup_key: &str,
    ) -> Result<String, DeliveryError> {
        let request = http.client().post(self.endpoint.clone()).json(&self.body(action, event, dedup_key));
        read_event_answer(&http.send(request).await?.json()?)
    }
}

/// The Events API's answer: the alert's `dedup_key`, if it says success.
pub fn read_event_answer(answer: &Value) -> Result<String, DeliveryError> {
    if answer.get("status").and_then(Value::as_str) != Some("success") {
        return Err(DeliveryError::Protocol("PagerDuty's answer does not say success".into()));
    }
    match answer.get("dedup_key").and_then(Value::as_str) {
        Some(key) if !key.is_empty() => Ok(key.to_owned()),
        _ => Err(DeliveryError::Protocol("PagerDuty's answer has no dedup_key".into())),
    }
}

#[async_trait]
impl Connector for PagerDuty {
    fn kind(&self) -> IntegrationKind {
        IntegrationKind::Pagerduty
    }

    fn destinations(&self) -> Vec<Url> {
        vec![self.endpoint.clone()]
    }

    fn key_is_ticket_id(&self) -> bool {
        true
    }

    #[tracing::instrument(skip_all, fields(action = action.name()))]
    async fn perform(&self, http: &Http, action: Action<'_>) -> Result<Outcome, DeliveryError> {
        match action {
            Action::Create { event, key } => {
                let dedup_key = self.send(http, EventAction::Trigger, event, key).await?;
                Ok(Outcome::Ticket(TicketRef { external_id: dedup_key, url: None }))
            }
            Action::Find { event, .. } if event.event_type == EventType::IntegrationTest => {
                Err(DeliveryError::Protocol(UNTESTABLE.into()))
            }
            // Triggers are idempotent per dedup key: the engine's next Create is safe.
            Action::Find { .. } => Ok(Outcome::NotFound),
            Action::Note { event, ticket } => {
                let action = match event.event_type {
                    t if t.is_problem() => EventAction::Trigger,
                    EventType::FindingAcknowledged | EventType::FindingSuppressed => EventAction::Acknowledge,
                    // Recoveries included: the alert is shared by tenants still failing.
                    _ => return Ok(Outcome::Done),
                };
                self.send(http, action, event, &ticket.external_id).await?;
                Ok(Outcome::Done)
            }
            Action::Close { event, ticket } => {
                self.send(http, EventAction::Resolve, event, &ticket.external_id).await?;
                Ok(Outcome::Done)
            }
            Action::Reopen { event, ticket, .. } => {
                self.send(http, EventAction::Trigger, event, &ticket.external_id).await?;
                Ok(Outcome::Done)
            }
            Action::Send { event } => Err(DeliveryError::Protocol(format!(
                "PagerDuty keeps alerts; the engine sent a message action for {}",
                event.event_type
            ))),
        }
    }
}
