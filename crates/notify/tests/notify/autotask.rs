//! Autotask PSA against its local receiver: the ticket lifecycle, lost answers, rate limits,
//! credentials and settings.

use serde_json::json;
use url::Url;
use wbd_notify::connectors::autotask;
use wbd_notify::{
    Action, Connector, ConnectorSettings, DeliveryError, EventType, IntegrationKind, Outcome, TicketRef,
};
use wbd_receivers::autotask::AutotaskState;
use wbd_receivers::{Faults, Receiver};

use crate::support::{event, http, key};

const USER: &str = "wbd-api@contoso-msp.example";
const SECRET: &str = "s3cr3t*Value";
const CODE: &str = "WBDINTEGRATIONCODE123";

fn settings(url: &str, secret: &str) -> ConnectorSettings {
    ConnectorSettings {
        kind: IntegrationKind::Autotask,
        url: Url::parse(url).unwrap(),
        config: json!({"company_id": 175, "queue_id": 29_683_481, "web_url": "https://ww5.autotask.net"}),
        credentials: json!({"username": USER, "secret": secret, "integration_code": CODE}),
        signing_secrets: Vec::new(),
    }
}

async fn psa() -> (Receiver<AutotaskState>, Box<dyn Connector>) {
    let receiver = Receiver::spawn(AutotaskState::new(USER, SECRET, CODE)).await;
    let connector = autotask::build(&settings(&receiver.url(), SECRET)).expect("valid settings");
    (receiver, connector)
}

fn ticket_of(outcome: Outcome) -> TicketRef {
    match outcome {
        Outcome::Ticket(t) => t,
        other => panic!("expected a ticket, got {other:?}"),
    }
}

#[tokio::test]
async fn one_ticket_lives_through_open_suppress_resolve_reopen_and_resolve_again() {
    let (receiver, at) = psa().await;
    let k = key(1);
    let opened = event(EventType::FindingOpened, 1);
    let ticket = ticket_of(at.perform(&http(), Action::Create { event: &opened, key: &k }).await.unwrap());
    let id: u64 = ticket.external_id.parse().unwrap();
    assert_eq!(
        ticket.url.as_deref(),
        Some(
            format!(
                "https://ww5.autotask.net/Autotask/AutotaskExtend/ExecuteCommand.aspx?Code=OpenTicketDetail&TicketID={id}"
            )
            .as_str()
        )
    );

    let created = receiver.state.ticket(id).unwrap();
    assert_eq!(created.title, "[Writeback Doctor] Contoso: Password reset endpoint unreachable");
    assert_eq!(created.external_id.as_deref(), Some(k.as_str()));
    assert_eq!(created.company_id, 175);
    assert_eq!(created.queue_id, Some(29_683_481));
    assert_eq!(created.status, 1, "New");
    assert_eq!(created.priority, 1, "high severity → Autotask's stock High (1)");
    assert!(created.description.contains("1. Allow outbound TCP 443"), "{}", created.description);

    let mut suppressed = event(EventType::FindingSuppressed, 1);
    suppressed.data.actor = "bob".into();
    suppressed.data.note = Some("Maintenance window".into());
    assert_eq!(
        at.perform(&http(), Action::Note { event: &suppressed, ticket: &ticket }).await.unwrap(),
        Outcome::Done
    );

    let resolved = event(EventType::FindingResolved, 1);
    assert_eq!(
        at.perform(&http(), Action::Close { event: &resolved, ticket: &ticket }).await.unwrap(),
        Outcome::Done
    );
    let closed = receiver.state.ticket(id).unwrap();
    assert_eq!(closed.status, 5, "Complete");
    assert!(closed.completed_date.is_some());

    let reopened = event(EventType::FindingReopened, 1);
    let outcome =
        at.perform(&http(), Action::Reopen { event: &reopened, ticket: &ticket, key: &k }).await.unwrap();
    assert_eq!(outcome, Outcome::Done, "Autotask reopens the same ticket");
    let open_again = receiver.state.ticket(id).unwrap();
    assert_eq!(open_again.status, 1);
    assert!(open_again.completed_date.is_none());

    let resolved_again = event(EventType::FindingResolved, 1);
    at.perform(&http(), Action::Close { event: &resolved_again, ticket: &ticket }).await.unwrap();

    let tickets = receiver.state.tickets();
    assert_eq!(tickets.len(), 1, "one ticket for the problem");
    assert_eq!(tickets[0].status, 5);
    let notes = tickets[0].note_texts();
    assert_eq!(notes.len(), 4, "{notes:?}");
    assert!(
        notes[0].contains(&suppressed.headline()) && notes[0].contains("Maintenance window"),
        "{notes:?}"
    );
    assert!(notes[1].contains(&resolved.headline()), "{notes:?}");
    assert!(notes[2].contains(&reopened.headline()), "{notes:?}");
    assert!(notes[3].contains(&resolved_again.headline()), "{notes:?}");
    assert_eq!(tickets[0].notes[0].title, suppressed.headline());

    let first = &receiver.requests()[0];
    assert_eq!(first.header("username"), Some(USER));
    assert_eq!(first.header("apiintegrationcode"), Some(CODE));
}

#[tokio::test]
async fn a_create_whose_answer_was_lost_is_found_by_its_external_id() {
    let (receiver, at) = psa().await;
    let k = key(2);
    let opened = event(EventType::FindingOpened, 2);
    assert_eq!(
        at.perform(&http(), Action::Find { event: &opened, key: &k }).await.unwrap(),
        Outcome::NotFound
    );

    receiver.common().set_faults(Faults { lose_answer_next: 1, ..Faults::default() });
    let err = at.perform(&http(), Action::Create { event: &opened, key: &k }).await.unwrap_err();
    assert!(matches!(err, DeliveryError::Status { status: 500, .. }), "{err:?}");

    let found = ticket_of(at.perform(&http(), Action::Find { event: &opened, key: &k }).await.unwrap());
    let tickets = receiver.state.tickets();
    assert_eq!(tickets.len(), 1, "the lost create made exactly one ticket");
    assert_eq!(found.external_id, tickets[0].id.to_string());

    let query = receiver.requests().into_iter().rfind(|r| r.path.ends_with("/Tickets/query")).unwrap();
    assert_eq!(query.json()["filter"][0], json!({"op": "eq", "field": "externalID", "value": k}));

    assert_eq!(
        at.perform(&http(), Action::Find { event: &opened, key: &key(3) }).await.unwrap(),
        Outcome::NotFound,
        "another problem's key finds nothing"
    );
}

#[tokio::test]
async fn rate_limits_carry_retry_after() {
    let (receiver, at) = psa().await;
    receiver.common().set_faults(Faults { rate_limit_next: 1, retry_after_secs: 30, ..Faults::default() });
    let opened = event(EventType::FindingOpened, 4);
    let err = at.perform(&http(), Action::Create { event: &opened, key: &key(4) }).await.unwrap_err();
    assert!(
        matches!(err, DeliveryError::Status { status: 429, retry_after: Some(d), .. } if d.as_secs() == 30),
        "{err:?}"
    );
    assert!(receiver.state.tickets().is_empty());
}

#[tokio::test]
async fn a_wrong_secret_is_refused_with_401() {
    let receiver = Receiver::spawn(AutotaskState::new(USER, SECRET, CODE)).await;
    let at = autotask::build(&settings(&receiver.url(), "wrong-secret")).unwrap();
    let opened = event(EventType::FindingOpened, 5);
    let err = at.perform(&http(), Action::Create { event: &opened, key: &key(5) }).await.unwrap_err();
    assert!(matches!(err, DeliveryError::Status { status: 401, .. }), "{err:?}");
    assert!(!format!("{err:?}").contains("wrong-secret"));
}

#[tokio::test]
async fn configured_picklist_values_reach_the_ticket() {
    let receiver = Receiver::spawn(AutotaskState::new(USER, SECRET, CODE)).await;
    let mut s = settings(&receiver.url(), SECRET);
    s.config["priority_ids"] = json!({"high": 4});
    s.config["complete_status"] = json!(8);
    let at = autotask::build(&s).unwrap();
    let opened = event(EventType::FindingOpened, 6);
    let ticket =
        ticket_of(at.perform(&http(), Action::Create { event: &opened, key: &key(6) }).await.unwrap());
    let id = ticket.external_id.parse().unwrap();
    assert_eq!(receiver.state.ticket(id).unwrap().priority, 4);
    let resolved = event(EventType::FindingResolved, 6);
    at.perform(&http(), Action::Close { event: &resolved, ticket: &ticket }).await.unwrap();
    assert_eq!(receiver.state.ticket(id).unwrap().status, 8);
}

#[test]
fn empty_settings_name_every_missing_field() {
    let settings = ConnectorSettings {
        kind: IntegrationKind::Autotask,
        url: Url::parse("https://webservices5.autotask.net").unwrap(),
        config: json!({}),
        credentials: json!({}),
        signing_secrets: Vec::new(),
    };
    let Err(errors) = autotask::build(&settings) else { panic!("empty settings were accepted") };
    let mut fields: Vec<&str> = errors.iter().map(|e| e.field.as_str()).collect();
    fields.sort_unstable();
    assert_eq!(
        fields,
        [
            "config.company_id",
            "config.queue_id",
            "credentials.integration_code",
            "credentials.secret",
            "credentials.username",
        ]
    );

    let wrong_types = ConnectorSettings {
        config: json!({"company_id": "175", "queue_id": 1, "priority_ids": {"low": "three"}}),
        credentials: json!({"username": "u", "secret": "do-not-echo", "integration_code": "c"}),
        ..settings
    };
    let Err(errors) = autotask::build(&wrong_types) else { panic!("wrong types accepted") };
    let fields: Vec<&str> = errors.iter().map(|e| e.field.as_str()).collect();
    assert_eq!(fields, ["config.company_id", "config.priority_ids.low"]);
    assert!(!format!("{errors:?}").contains("do-not-echo"));
}

#[tokio::test]
async fn reopen_and_close_leave_the_status_a_person_set_and_only_add_the_note() {
    let (receiver, at) = psa().await;
    let k = key(7);
    let opened = event(EventType::FindingOpened, 7);
    let ticket = ticket_of(at.perform(&http(), Action::Create { event: &opened, key: &k }).await.unwrap());
    let id: u64 = ticket.external_id.parse().unwrap();

    receiver.state.set_status(id, 8);
    let again = event(EventType::FindingReopened, 7);
    let outcome =
        at.perform(&http(), Action::Reopen { event: &again, ticket: &ticket, key: &k }).await.unwrap();
    assert_eq!(outcome, Outcome::Done);
    assert_eq!(receiver.state.ticket(id).unwrap().status, 8, "In Progress stays In Progress");

    receiver.state.close_by_person(id);
    let resolved = event(EventType::FindingResolved, 7);
    at.perform(&http(), Action::Close { event: &resolved, ticket: &ticket }).await.unwrap();
    let reopened = event(EventType::FindingReopened, 7);
    at.perform(&http(), Action::Reopen { event: &reopened, ticket: &ticket, key: &k }).await.unwrap();

    let now = receiver.state.ticket(id).unwrap();
    assert_eq!(now.status, 1, "a completed ticket is reopened");
    assert!(now.completed_date.is_none());
    let patches = receiver.requests().iter().filter(|r| r.method == "PATCH").count();
    assert_eq!(patches, 1, "only the reopen of the completed ticket changed a status");
    assert_eq!(now.note_texts().len(), 3);
}

#[tokio::test]
async fn a_deleted_ticket_is_gone_for_notes_closes_and_reopens() {
    let (receiver, at) = psa().await;
    let k = key(8);
    let opened = event(EventType::FindingOpened, 8);
    let ticket = ticket_of(at.perform(&http(), Action::Create { event: &opened, key: &k }).await.unwrap());
    receiver.state.delete_ticket(ticket.external_id.parse().unwrap());
    let gone = DeliveryError::TicketGone(ticket.external_id.clone());

    let ack = event(EventType::FindingAcknowledged, 8);
    assert_eq!(at.perform(&http(), Action::Note { event: &ack, ticket: &ticket }).await, Err(gone.clone()));
    let resolved = event(EventType::FindingResolved, 8);
    assert_eq!(
        at.perform(&http(), Action::Close { event: &resolved, ticket: &ticket }).await,
        Err(gone.clone())
    );
    let again = event(EventType::FindingReopened, 8);
    assert_eq!(
        at.perform(&http(), Action::Reopen { event: &again, ticket: &ticket, key: &k }).await,
        Err(gone)
    );
    assert!(receiver.state.tickets().is_empty());

    // An outage is not a deleted ticket.
    receiver.common().set_faults(Faults { fail_next: 1, fail_status: Some(500), ..Faults::default() });
    let err = at.perform(&http(), Action::Close { event: &resolved, ticket: &ticket }).await.unwrap_err();
    assert!(matches!(err, DeliveryError::Status { status: 500, .. }), "{err:?}");
}
