//! ServiceNow against its local receiver: the incident lifecycle, lost answers, rate limits,
//! credentials and settings.

use serde_json::json;
use url::Url;
use wbd_notify::connectors::servicenow;
use wbd_notify::{
    Action, Connector, ConnectorSettings, DeliveryError, EventType, IntegrationKind, Outcome, TicketRef,
};
use wbd_receivers::servicenow::ServiceNowState;
use wbd_receivers::{Faults, Receiver};

use crate::support::{event, http, key};

const USER: &str = "wbd.integration";
const PASSWORD: &str = "s3cret-Passw0rd";

fn settings(url: &str, password: &str) -> ConnectorSettings {
    ConnectorSettings {
        kind: IntegrationKind::Servicenow,
        url: Url::parse(url).unwrap(),
        config: json!({"username": USER, "assignment_group": "Service Desk", "category": "network"}),
        credentials: json!({"password": password}),
        signing_secrets: Vec::new(),
    }
}

async fn instance() -> (Receiver<ServiceNowState>, Box<dyn Connector>) {
    let receiver = Receiver::spawn(ServiceNowState::new(USER, PASSWORD)).await;
    let connector = servicenow::build(&settings(&receiver.url(), PASSWORD)).expect("valid settings");
    (receiver, connector)
}

fn ticket_of(outcome: Outcome) -> TicketRef {
    match outcome {
        Outcome::Ticket(t) => t,
        other => panic!("expected a ticket, got {other:?}"),
    }
}

#[tokio::test]
async fn one_incident_lives_through_open_recurrence_resolve_and_reopen() {
    let (receiver, snow) = instance().await;
    let k = key(1);
    let opened = event(EventType::FindingOpened, 1);
    let ticket = ticket_of(snow.perform(&http(), Action::Create { event: &opened, key: &k }).await.unwrap());
    let incident = receiver.state.incident(&ticket.external_id).expect("stored under its sys_id");
    assert_eq!(
        ticket.url.as_deref(),
        Some(format!("{}/nav_to.do?uri=incident.do%3Fsys_id%3D{}", receiver.url(), incident.sys_id).as_str())
    );
    assert_eq!(
        incident.field("short_description"),
        "[Writeback Doctor] Contoso: Password reset endpoint unreachable"
    );
    assert!(incident.field("description").contains("1. Allow outbound TCP 443"));
    assert_eq!(incident.field("correlation_id"), k);
    assert_eq!((incident.field("urgency"), incident.field("impact")), ("1", "2"), "high severity");
    assert_eq!(incident.field("assignment_group"), "Service Desk");
    assert_eq!(incident.field("category"), "network");
    assert_eq!(incident.state(), "1");

    let again = event(EventType::FindingReopened, 1);
    snow.perform(&http(), Action::Note { event: &again, ticket: &ticket }).await.unwrap();
    let resolved = event(EventType::FindingResolved, 1);
    assert_eq!(
        snow.perform(&http(), Action::Close { event: &resolved, ticket: &ticket }).await.unwrap(),
        Outcome::Done
    );
    let incident = receiver.state.incident(&ticket.external_id).unwrap();
    assert_eq!(incident.state(), "6");
    assert_eq!(incident.field("close_code"), "Solution provided");
    assert!(incident.field("close_notes").contains(&resolved.headline()));

    let reopened = event(EventType::FindingReopened, 1);
    let outcome =
        snow.perform(&http(), Action::Reopen { event: &reopened, ticket: &ticket, key: &k }).await.unwrap();
    assert_eq!(outcome, Outcome::Done);

    let incidents = receiver.state.incidents();
    assert_eq!(incidents.len(), 1, "one incident for the problem");
    assert_eq!(incidents[0].state(), "2", "in progress again");
    let notes = &incidents[0].work_notes;
    assert_eq!(notes.len(), 3, "{notes:?}");
    assert!(notes[0].contains(&again.headline()));
    assert!(notes[1].contains(&resolved.headline()));
    assert!(notes[2].contains(&reopened.headline()));
}

#[tokio::test]
async fn a_closed_incident_is_followed_by_a_child_incident_once() {
    let (receiver, snow) = instance().await;
    let k = key(2);
    let opened = event(EventType::FindingOpened, 2);
    let first = ticket_of(snow.perform(&http(), Action::Create { event: &opened, key: &k }).await.unwrap());
    let resolved = event(EventType::FindingResolved, 2);
    snow.perform(&http(), Action::Close { event: &resolved, ticket: &first }).await.unwrap();
    // The instance's auto-close business rule ran.
    receiver.state.set_field(&first.external_id, "state", "7");

    let reopened = event(EventType::FindingReopened, 2);
    let child = ticket_of(
        snow.perform(&http(), Action::Reopen { event: &reopened, ticket: &first, key: &k }).await.unwrap(),
    );
    assert_ne!(child.external_id, first.external_id);
    // A retry (as after a lost answer) finds the child instead of making a third incident.
    let retried = ticket_of(
        snow.perform(&http(), Action::Reopen { event: &reopened, ticket: &first, key: &k }).await.unwrap(),
    );
    assert_eq!(retried, child);

    assert_eq!(receiver.state.incidents().len(), 2);
    let child = receiver.state.incident(&child.external_id).unwrap();
    assert_eq!(child.field("parent_incident"), first.external_id);
    assert_eq!(child.field("correlation_id"), k);
    assert_eq!(receiver.state.incident(&first.external_id).unwrap().state(), "7");
}

#[tokio::test]
async fn a_lost_create_answer_is_found_by_correlation_id_and_not_created_twice() {
    let (receiver, snow) = instance().await;
    let k = key(3);
    let opened = event(EventType::FindingOpened, 3);
    assert_eq!(
        snow.perform(&http(), Action::Find { event: &opened, key: &k }).await.unwrap(),
        Outcome::NotFound
    );

    receiver.common().set_faults(Faults { lose_answer_next: 1, ..Faults::default() });
    let lost = snow.perform(&http(), Action::Create { event: &opened, key: &k }).await;
    assert!(matches!(lost, Err(DeliveryError::Status { status: 500, .. })), "{lost:?}");

    let found = ticket_of(snow.perform(&http(), Action::Find { event: &opened, key: &k }).await.unwrap());
    let incidents = receiver.state.incidents();
    assert_eq!(incidents.len(), 1);
    assert_eq!(found.external_id, incidents[0].sys_id);
    let query = receiver.requests().last().unwrap().query.clone();
    assert!(query.contains("sysparm_limit=1"), "{query}");
}

#[tokio::test]
async fn rate_limits_keep_their_retry_after() {
    let (receiver, snow) = instance().await;
    receiver.common().set_faults(Faults { rate_limit_next: 1, retry_after_secs: 12, ..Faults::default() });
    let opened = event(EventType::FindingOpened, 4);
    let err = snow.perform(&http(), Action::Create { event: &opened, key: &key(4) }).await.unwrap_err();
    assert!(
        matches!(err, DeliveryError::Status { status: 429, retry_after: Some(d), .. } if d.as_secs() == 12),
        "{err:?}"
    );
}

#[tokio::test]
async fn a_wrong_password_is_refused_with_servicenows_error() {
    let receiver = Receiver::spawn(ServiceNowState::new(USER, PASSWORD)).await;
    let snow = servicenow::build(&settings(&receiver.url(), "not-the-password")).unwrap();
    let opened = event(EventType::FindingOpened, 5);
    let http = http();
    let err = snow.perform(&http, Action::Create { event: &opened, key: &key(5) }).await.unwrap_err();
    match &err {
        DeliveryError::Status { status: 401, excerpt, .. } => {
            assert!(excerpt.contains("User Not Authenticated"))
        }
        other => panic!("{other:?}"),
    }
    assert!(!format!("{err:?} {:?}", http.exchanges()).contains("not-the-password"));
    assert!(receiver.state.incidents().is_empty());
}

#[tokio::test]
async fn a_close_code_the_instance_does_not_know_is_refused() {
    let receiver = Receiver::spawn(ServiceNowState::new(USER, PASSWORD)).await;
    let mut s = settings(&receiver.url(), PASSWORD);
    s.config["close_code"] = json!("Fixed it");
    let snow = servicenow::build(&s).unwrap();
    let opened = event(EventType::FindingOpened, 6);
    let ticket =
        ticket_of(snow.perform(&http(), Action::Create { event: &opened, key: &key(6) }).await.unwrap());
    let resolved = event(EventType::FindingResolved, 6);
    let err = snow.perform(&http(), Action::Close { event: &resolved, ticket: &ticket }).await.unwrap_err();
    assert_eq!(err.status(), Some(403));
    assert_eq!(receiver.state.incident(&ticket.external_id).unwrap().state(), "1");
}

#[test]
fn empty_settings_name_every_missing_field() {
    let s = ConnectorSettings {
        kind: IntegrationKind::Servicenow,
        url: Url::parse("https://acme.service-now.com").unwrap(),
        config: json!({"resolved_state": "six"}),
        credentials: json!({}),
        signing_secrets: Vec::new(),
    };
    let errors = servicenow::build(&s).err().expect("invalid");
    let fields: Vec<&str> = errors.iter().map(|e| e.field.as_str()).collect();
    assert_eq!(fields, ["config.username", "config.resolved_state", "credentials.password"]);
}
