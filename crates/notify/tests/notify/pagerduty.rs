//! PagerDuty Events API v2 against its local receiver: one alert per problem through trigger,
//! acknowledge, resolve and re-trigger; retries; rate limits; routing keys; settings.

use serde_json::json;
use url::Url;
use wbd_notify::connectors::pagerduty;
use wbd_notify::{
    Action, Connector, ConnectorSettings, DeliveryError, EventType, IntegrationKind, Outcome, TicketRef,
};
use wbd_receivers::pagerduty::{AlertStatus, PagerDutyState};
use wbd_receivers::{Faults, Receiver};

use crate::support::{event, http, key};

const ROUTING_KEY: &str = "R0ut1ngKeyR0ut1ngKeyR0ut1ngKey32";

fn settings(url: &str, routing_key: &str) -> ConnectorSettings {
    ConnectorSettings {
        kind: IntegrationKind::Pagerduty,
        url: Url::parse(&format!("{url}/v2/enqueue")).unwrap(),
        config: json!({}),
        credentials: json!({"routing_key": routing_key}),
        signing_secrets: Vec::new(),
    }
}

async fn service() -> (Receiver<PagerDutyState>, Box<dyn Connector>) {
    let receiver = Receiver::spawn(PagerDutyState::new(&[ROUTING_KEY])).await;
    let connector = pagerduty::build(&settings(&receiver.url(), ROUTING_KEY)).expect("valid settings");
    (receiver, connector)
}

#[tokio::test]
async fn one_alert_per_problem_through_trigger_ack_resolve_and_a_new_incident_on_reopen() {
    let (receiver, pd) = service().await;
    let k = key(1);
    let opened = event(EventType::FindingOpened, 1);
    let outcome = pd.perform(&http(), Action::Create { event: &opened, key: &k }).await.unwrap();
    let ticket = TicketRef { external_id: k.clone(), url: None };
    assert_eq!(outcome, Outcome::Ticket(ticket.clone()));

    let alerts = receiver.state.alerts_for(&k);
    assert_eq!(alerts.len(), 1);
    let payload = &alerts[0].payload;
    assert_eq!(payload["summary"], "[Writeback Doctor] Contoso: Password reset endpoint unreachable");
    assert_eq!(payload["severity"], "error", "high → error");
    assert_eq!(payload["source"], "host1.servicebus.windows.net:443");
    assert_eq!(payload["group"], "Contoso");
    assert_eq!(payload["class"], "endpoint-reachable");
    assert_eq!(
        payload["custom_details"]["remediation"][0],
        "Allow outbound TCP 443 to *.servicebus.windows.net."
    );
    assert_eq!(alerts[0].links[0]["href"], "https://wbd.example/v1/findings/101");

    let again = event(EventType::FindingReopened, 1);
    pd.perform(&http(), Action::Note { event: &again, ticket: &ticket }).await.unwrap();
    let mut ack = event(EventType::FindingAcknowledged, 1);
    ack.data.actor = "alice".into();
    pd.perform(&http(), Action::Note { event: &ack, ticket: &ticket }).await.unwrap();
    assert_eq!(receiver.state.alerts_for(&k)[0].status, AlertStatus::Acknowledged);

    let resolved = event(EventType::FindingResolved, 1);
    assert_eq!(
        pd.perform(&http(), Action::Close { event: &resolved, ticket: &ticket }).await.unwrap(),
        Outcome::Done
    );
    let alerts = receiver.state.alerts_for(&k);
    assert_eq!(alerts.len(), 1, "recurrence and acknowledgement went to the same alert");
    assert_eq!(alerts[0].status, AlertStatus::Resolved);
    assert_eq!(alerts[0].actions(), ["trigger", "trigger", "acknowledge", "resolve"]);
    assert_eq!(alerts[0].log[1]["payload"]["custom_details"]["headline"], again.headline());

    let reopened = event(EventType::FindingReopened, 1);
    let outcome =
        pd.perform(&http(), Action::Reopen { event: &reopened, ticket: &ticket, key: &k }).await.unwrap();
    assert_eq!(outcome, Outcome::Done);
    let alerts = receiver.state.alerts_for(&k);
    assert_eq!(alerts.len(), 2, "PagerDuty opens a new incident for a resolved dedup key");
    assert_eq!(alerts[1].status, AlertStatus::Triggered);
    assert_eq!(alerts[0].status, AlertStatus::Resolved);
}

#[tokio::test]
async fn a_retried_trigger_after_a_lost_answer_leaves_one_alert() {
    let (receiver, pd) = service().await;
    let k = key(2);
    let opened = event(EventType::FindingOpened, 2);
    receiver.common().set_faults(Faults { lose_answer_next: 1, ..Faults::default() });
    let lost = pd.perform(&http(), Action::Create { event: &opened, key: &k }).await;
    assert!(matches!(lost, Err(DeliveryError::Status { status: 500, .. })), "{lost:?}");

    // Find cannot look alerts up and says so; the engine creates again, which dedups.
    assert_eq!(
        pd.perform(&http(), Action::Find { event: &opened, key: &k }).await.unwrap(),
        Outcome::NotFound
    );
    pd.perform(&http(), Action::Create { event: &opened, key: &k }).await.unwrap();

    let alerts = receiver.state.alerts();
    assert_eq!(alerts.len(), 1);
    assert_eq!(alerts[0].actions(), ["trigger", "trigger"]);
    assert_eq!(alerts[0].status, AlertStatus::Triggered);
}

#[tokio::test]
async fn a_recovery_note_leaves_the_alert_other_tenants_share_open() {
    let (receiver, pd) = service().await;
    let k = key(6);
    let opened = event(EventType::FindingOpened, 6);
    pd.perform(&http(), Action::Create { event: &opened, key: &k }).await.unwrap();
    let ticket = TicketRef { external_id: k.clone(), url: None };

    // Digest routing: one tenant recovered, others still fail, so the engine notes the recovery.
    for recovery in [EventType::FindingResolved, EventType::CollectorBack] {
        let recovered = event(recovery, 6);
        let outcome = pd.perform(&http(), Action::Note { event: &recovered, ticket: &ticket }).await.unwrap();
        assert_eq!(outcome, Outcome::Done);
    }
    let alerts = receiver.state.alerts_for(&k);
    assert_eq!(alerts[0].status, AlertStatus::Triggered, "only Close resolves");
    assert_eq!(alerts[0].actions(), ["trigger"]);
    assert_eq!(receiver.requests().len(), 1, "a recovery note sends nothing");

    let resolved = event(EventType::FindingResolved, 6);
    pd.perform(&http(), Action::Close { event: &resolved, ticket: &ticket }).await.unwrap();
    assert_eq!(receiver.state.alerts_for(&k)[0].status, AlertStatus::Resolved);
}

#[tokio::test]
async fn the_integration_test_says_pagerduty_cannot_be_tested_without_paging() {
    let (receiver, pd) = service().await;
    let mut test = event(EventType::IntegrationTest, 7);
    test.data.finding = None;
    test.data.tenant = None;
    let err = pd.perform(&http(), Action::Find { event: &test, key: &key(7) }).await.unwrap_err();
    match &err {
        DeliveryError::Protocol(message) => {
            assert!(message.contains("cannot be tested without opening an alert"), "{message}")
        }
        other => panic!("{other:?}"),
    }
    assert!(receiver.requests().is_empty(), "nobody was paged");
    assert!(pd.key_is_ticket_id(), "the dedup key is the alert");
}

#[tokio::test]
async fn rate_limits_keep_their_retry_after() {
    let (receiver, pd) = service().await;
    receiver.common().set_faults(Faults { rate_limit_next: 1, retry_after_secs: 60, ..Faults::default() });
    let opened = event(EventType::FindingOpened, 3);
    let err = pd.perform(&http(), Action::Create { event: &opened, key: &key(3) }).await.unwrap_err();
    assert!(
        matches!(err, DeliveryError::Status { status: 429, retry_after: Some(d), .. } if d.as_secs() == 60),
        "{err:?}"
    );
    assert!(receiver.state.alerts().is_empty());
}

#[tokio::test]
async fn an_unknown_routing_key_is_an_invalid_event_and_never_shown() {
    let receiver = Receiver::spawn(PagerDutyState::new(&[ROUTING_KEY])).await;
    let other = "0therKey0therKey0therKey0therKey";
    let pd = pagerduty::build(&settings(&receiver.url(), other)).unwrap();
    let opened = event(EventType::FindingOpened, 4);
    let http = http();
    let err = pd.perform(&http, Action::Create { event: &opened, key: &key(4) }).await.unwrap_err();
    // PagerDuty answers a routing key it does not know with 400, not 401.
    match &err {
        DeliveryError::Status { status: 400, excerpt, .. } => {
            assert!(excerpt.contains("Invalid routing key"))
        }
        other => panic!("{other:?}"),
    }
    assert!(!format!("{err:?} {:?}", http.exchanges()).contains(other));
    assert!(receiver.state.alerts().is_empty());
}

#[tokio::test]
async fn every_event_we_send_passes_pagerdutys_checks() {
    let (receiver, pd) = service().await;
    let mut long = event(EventType::FindingOpened, 5);
    if let Some(f) = long.data.finding.as_mut() {
        f.title = "x".repeat(3000);
        f.severity = "critical".into();
    }
    pd.perform(&http(), Action::Create { event: &long, key: &key(5) }).await.unwrap();
    let alert = &receiver.state.alerts()[0];
    assert_eq!(alert.payload["severity"], "critical");
    assert!(alert.payload["summary"].as_str().unwrap().chars().count() <= 1024);
}

#[test]
fn settings_name_every_problem() {
    let mut s = settings("https://events.pagerduty.com", "");
    s.credentials = json!({});
    let errors = pagerduty::build(&s).err().expect("invalid");
    let fields: Vec<&str> = errors.iter().map(|e| e.field.as_str()).collect();
    assert_eq!(fields, ["credentials.routing_key"]);
    s.credentials = json!({"routing_key": "too-short"});
    let errors = pagerduty::build(&s).err().expect("invalid");
    assert_eq!(errors[0].field, "credentials.routing_key");
    assert!(!errors[0].message.contains("too-short"), "the key is never echoed");
}
