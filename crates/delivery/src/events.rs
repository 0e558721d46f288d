//! From stored finding events to the events integrations receive, and the ticket key of each
//! problem.

use chrono::{DateTime, Utc};
use sha2::{Digest as _, Sha256};
use uuid::Uuid;
use wbd_notify::{Event, EventData, EventType, FindingData, IntegrationKind, TenantRef};
use wbd_store::{
    Finding, FindingEvent, FindingEventKind, Integration, NewDelivery, OrgId, Routing, TenantId,
    UndispatchedEvent,
};

/// The rule whose findings mean "a collector stopped pushing".
const COLLECTOR_SILENT: &str = "collector-silent";

/// What integrations hear of a stored finding event; `None` for changes they do not hear
/// about (a severity or summary update, a re-test request, lifting a suppression by hand). The
/// events of a finding that is a consequence not announced on its own are not heard at all
/// ([`is_delivered`]).
pub fn event_type_of(kind: FindingEventKind, rule_id: &str) -> Option<EventType> {
    let collector = rule_id == COLLECTOR_SILENT;
    Some(match kind {
        FindingEventKind::Opened
        | FindingEventKind::Reopened
        | FindingEventKind::SuppressionExpired
        | FindingEventKind::RootCauseResolved
            if collector =>
        {
            EventType::CollectorSilent
        }
        // A consequence whose root cause resolved while it still fails: news on its own now.
        FindingEventKind::Opened | FindingEventKind::RootCauseResolved => EventType::FindingOpened,
        // A suppression that ran out while the problem is still there announces it again.
        FindingEventKind::Reopened | FindingEventKind::SuppressionExpired => EventType::FindingReopened,
        FindingEventKind::Resolved if collector => EventType::CollectorBack,
        FindingEventKind::Resolved => EventType::FindingResolved,
        FindingEventKind::Acknowledged => EventType::FindingAcknowledged,
        FindingEventKind::Suppressed => EventType::FindingSuppressed,
        FindingEventKind::Updated | FindingEventKind::Unsuppressed | FindingEventKind::RetestRequested => {
            return None;
        }
    })
}

/// Whether integrations hear of the event at all: not while its finding is the consequence of
/// another (the root's ticket stands for it; see `wbd_findings::lifecycle`, "Root causes").
pub fn is_delivered(event: &FindingEvent) -> bool {
    event.root_finding_id.is_none()
}

/// The finding as an event shows it. `public_url` (no trailing slash) makes the link.
pub fn finding_data(finding: &Finding, public_url: Option<&str>) -> FindingData {
    let remediation = wbd_rules::rules()
        .iter()
        .find(|r| r.id == finding.rule_id)
        .map(|r| r.remediation_steps.iter().map(|s| (*s).to_owned()).collect())
        .unwrap_or_default();
    FindingData {
        id: finding.id.0,
        rule_id: finding.rule_id.clone(),
        fingerprint: finding.fingerprint.clone(),
        subject: finding.subject.clone(),
        severity: finding.severity.as_str().to_owned(),
        status: finding.status.as_str().to_owned(),
        title: finding.title.clone(),
        summary: finding.summary.clone(),
        remediation,
        opened_at: finding.opened_at,
        resolved_at: finding.resolved_at,
        reopen_count: finding.reopen_count,
        collector_id: finding.collector_id.map(|c| c.0),
        url: public_url.map(|base| format!("{base}/v1/findings/{}", finding.id)),
    }
}

/// The event of a stored finding event (the same for every integration: its id is the stored
/// event's, so receivers can de-duplicate across retries and replays).
pub fn finding_event(item: &UndispatchedEvent, event_type: EventType, public_url: Option<&str>) -> Event {
    Event {
        id: item.event.id,
        event_type,
        timestamp: item.event.at,
        data: EventData {
            organization_id: item.org_id.0,
            tenant: Some(TenantRef { id: item.tenant_id.0, name: item.tenant_name.clone() }),
            finding: Some(finding_data(&item.finding, public_url)),
            actor: item.event.actor.clone(),
            note: item.event.note.clone(),
            suppressed_until: item.event.suppressed_until,
            integration_id: None,
            affected_tenants: Vec::new(),
        },
    }
}

/// `integration.test`: proves the integration works without creating a ticket.
pub fn test_event(org: OrgId, integration_id: Uuid, actor: &str, now: DateTime<Utc>) -> Event {
    Event {
        id: Uuid::now_v7(),
        event_type: EventType::IntegrationTest,
        timestamp: now,
        data: EventData {
            organization_id: org.0,
            tenant: None,
            finding: None,
            actor: actor.to_owned(),
            note: Some("A test event: if you can read this, the integration works.".into()),
            suppressed_until: None,
            integration_id: Some(integration_id),
            affected_tenants: Vec::new(),
        },
    }
}

/// `integration.disabled`, told to the organisation's other integrations.
pub fn disabled_event(org: OrgId, disabled: &Integration, reason: &str, now: DateTime<Utc>) -> Event {
    Event {
        id: Uuid::now_v7(),
        event_type: EventType::IntegrationDisabled,
        timestamp: now,
        data: EventData {
            organization_id: org.0,
            tenant: None,
            finding: None,
            actor: "system".into(),
            note: Some(format!(
                "Integration \"{}\" ({}) was switched off: {reason}. Events for it wait until it is switched on again.",
                disabled.name, disabled.kind
            )),
            suppressed_until: None,
            integration_id: Some(disabled.id),
            affected_tenants: Vec::new(),
        },
    }
}

/// The key of the ticket an event about `fingerprint` in `tenant` belongs to, for one
/// integration: per tenant, or (digest routing) one per problem across tenants. Scoped to the
/// integration, so two integrations writing into one PSA never find each other's tickets.
pub fn ticket_key(integration: &Integration, tenant: Option<TenantId>, fingerprint: &str) -> String {
    let material = match (integration.routing, tenant) {
        (Routing::PerTenant, Some(tenant)) => format!("{}|{tenant}|{fingerprint}", integration.id),
        _ => format!("{}|*|{fingerprint}", integration.id),
    };
    let digest = Sha256::digest(material.as_bytes());
    format!("wbd-{}", &hex::encode(digest)[..32])
}

/// The delivery of `event` to `integration` (with its ticket key for ticket kinds).
pub fn delivery_for(integration: &Integration, event: &Event, finding: Option<&Finding>) -> NewDelivery {
    let kind = IntegrationKind::parse(&integration.kind);
    let keeps_tickets = kind.is_some_and(IntegrationKind::keeps_tickets);
    let tenant = event.data.tenant.as_ref().map(|t| TenantId(t.id));
    let ticket_key = keeps_tickets.then(|| match (finding, event.event_type) {
        (Some(f), _) => ticket_key(integration, tenant, &f.fingerprint),
        (None, EventType::IntegrationDisabled) => ticket_key(
            integration,
            None,
            &format!("integration-disabled|{}", event.data.integration_id.unwrap_or_default()),
        ),
        // A test has a ticket key of its own so it never waits behind (or holds up) a problem.
        (None, _) => ticket_key(integration, None, &format!("test|{}", event.id)),
    });
    NewDelivery {
        org_id: integration.org_id,
        integration_id: integration.id,
        event_id: event.id,
        event_type: event.event_type.as_str().to_owned(),
        tenant_id: tenant,
        finding_id: finding.map(|f| f.id),
        ticket_key,
        payload: serde_json::to_value(event).expect("events serialise"),
        occurred_at: event.timestamp,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn collector_silence_has_event_types_of_its_own() {
        assert_eq!(
            event_type_of(FindingEventKind::Opened, "collector-silent"),
            Some(EventType::CollectorSilent)
        );
        assert_eq!(
            event_type_of(FindingEventKind::Resolved, "collector-silent"),
            Some(EventType::CollectorBack)
        );
        assert_eq!(
            event_type_of(FindingEventKind::Opened, "endpoint-reachable"),
            Some(EventType::FindingOpened)
        );
        assert_eq!(
            event_type_of(FindingEventKind::SuppressionExpired, "endpoint-reachable"),
            Some(EventType::FindingReopened)
        );
        assert_eq!(event_type_of(FindingEventKind::Updated, "endpoint-reachable"), None);
    }
}
