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

#[tokio::test]
async fn a_closed_incident_takes_no_writes_so_notes_are_dropped_and_a_close_is_done() {
    let (receiver, snow) = instance().await;
    let opened = event(EventType::FindingOpened, 7);
    let ticket =
        ticket_of(snow.perform(&http(), Action::Create { event: &opened, key: &key(7) }).await.unwrap());
    receiver.state.close_by_person(&ticket.external_id);

    // The instance refuses any write to it, work notes included, as its ACLs do.
    let url = format!("{}/api/now/table/incident/{}", receiver.url(), ticket.external_id);
    let refused = reqwest::Client::new()
        .patch(url)
        .basic_auth(USER, Some(PASSWORD))
        .json(&json!({"work_notes": "hello"}))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 403);
    assert!(refused.text().await.unwrap().contains("ACL Exception Update Failed"));

    let ack = event(EventType::FindingAcknowledged, 7);
    assert_eq!(snow.perform(&http(), Action::Note { event: &ack, ticket: &ticket }).await, Ok(Outcome::Done));
    let resolved = event(EventType::FindingResolved, 7);
    assert_eq!(
        snow.perform(&http(), Action::Close { event: &resolved, ticket: &ticket }).await,
        Ok(Outcome::Done)
    );
    let incident = receiver.state.incident(&ticket.external_id).unwrap();
    assert_eq!(incident.state(), "7");
    assert!(incident.work_notes.is_empty());
    assert_eq!(receiver.state.incidents().len(), 1, "no child incident for a note");
}

#[tokio::test]
async fn reopen_and_close_keep_what_a_person_set() {
    let (receiver, snow) = instance().await;
    let k = key(8);
    let opened = event(EventType::FindingOpened, 8);
    let ticket = ticket_of(snow.perform(&http(), Action::Create { event: &opened, key: &k }).await.unwrap());
    let sys_id = ticket.external_id.as_str();

    receiver.state.set_field(sys_id, "state", "3");
    let again = event(EventType::FindingReopened, 8);
    assert_eq!(
        snow.perform(&http(), Action::Reopen { event: &again, ticket: &ticket, key: &k }).await,
        Ok(Outcome::Done)
    );
    assert_eq!(receiver.state.incident(sys_id).unwrap().state(), "3", "On Hold stays On Hold");

    for (field, value) in
        [("state", "6"), ("close_code", "Workaround provided"), ("close_notes", "Fixed by hand")]
    {
        receiver.state.set_field(sys_id, field, value);
    }
    let resolved = event(EventType::FindingResolved, 8);
    snow.perform(&http(), Action::Close { event: &resolved, ticket: &ticket }).await.unwrap();
    let incident = receiver.state.incident(sys_id).unwrap();
    assert_eq!(
        (incident.field("close_code"), incident.field("close_notes")),
        ("Workaround provided", "Fixed by hand"),
        "the person's resolution is kept"
    );
    assert_eq!(incident.work_notes.len(), 2);
    assert!(incident.work_notes[1].contains(&resolved.headline()));
}

#[tokio::test]
async fn a_deleted_incident_is_gone_for_notes_closes_and_reopens() {
    let (receiver, snow) = instance().await;
    let k = key(9);
    let opened = event(EventType::FindingOpened, 9);
    let ticket = ticket_of(snow.perform(&http(), Action::Create { event: &opened, key: &k }).await.unwrap());
    receiver.state.delete_incident(&ticket.external_id);
    let gone = DeliveryError::TicketGone(ticket.external_id.clone());

    let ack = event(EventType::FindingAcknowledged, 9);
    assert_eq!(snow.perform(&http(), Action::Note { event: &ack, ticket: &ticket }).await, Err(gone.clone()));
    let resolved = event(EventType::FindingResolved, 9);
    assert_eq!(
        snow.perform(&http(), Action::Close { event: &resolved, ticket: &ticket }).await,
        Err(gone.clone())
    );
    let again = event(EventType::FindingReopened, 9);
    assert_eq!(
        snow.perform(&http(), Action::Reopen { event: &again, ticket: &ticket, key: &k }).await,
        Err(gone)
    );
    assert!(receiver.state.incidents().is_empty(), "no child of an incident that is gone");
}
