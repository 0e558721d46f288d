//! ConnectWise PSA against its local receiver: the ticket lifecycle, lost answers, rate limits,
//! credentials and settings.

use serde_json::json;
use url::Url;
use wbd_notify::connectors::connectwise;
use wbd_notify::{
    Action, Connector, ConnectorSettings, DeliveryError, EventType, IntegrationKind, Outcome, TicketRef,
};
use wbd_receivers::connectwise::ConnectwiseState;
use wbd_receivers::{Faults, Receiver};

use crate::support::{event, http, key};

const COMPANY: &str = "contosomsp";
const PUBLIC_KEY: &str = "pUbLiC123";
const PRIVATE_KEY: &str = "pRiVaTe456";
const CLIENT_ID: &str = "3c1b7a5e-0000-4000-8000-00000000c11d";

fn settings(url: &str, private_key: &str) -> ConnectorSettings {
    ConnectorSettings {
        kind: IntegrationKind::Connectwise,
        url: Url::parse(url).unwrap(),
        config: json!({
            "login_company": COMPANY,
            "board_id": 7,
            "company_identifier": "Contoso",
            "priority_ids": {"critical": 6, "high": 7, "medium": 8, "low": 9},
        }),
        credentials: json!({"public_key": PUBLIC_KEY, "private_key": private_key, "client_id": CLIENT_ID}),
        signing_secrets: Vec::new(),
    }
}

async fn manage() -> (Receiver<ConnectwiseState>, Box<dyn Connector>) {
    let receiver = Receiver::spawn(ConnectwiseState::new(COMPANY, PUBLIC_KEY, PRIVATE_KEY, CLIENT_ID)).await;
    let connector = connectwise::build(&settings(&receiver.url(), PRIVATE_KEY)).expect("valid settings");
    (receiver, connector)
}

fn ticket_of(outcome: Outcome) -> TicketRef {
    match outcome {
        Outcome::Ticket(t) => t,
        other => panic!("expected a ticket, got {other:?}"),
    }
}

#[tokio::test]
async fn one_ticket_lives_through_open_acknowledge_resolve_reopen_and_resolve_again() {
    let (receiver, cw) = manage().await;
    let k = key(1);
    let opened = event(EventType::FindingOpened, 1);
    let ticket = ticket_of(cw.perform(&http(), Action::Create { event: &opened, key: &k }).await.unwrap());
    let id: u64 = ticket.external_id.parse().unwrap();
    let link = ticket.url.clone().unwrap();
    assert!(link.contains(&format!("service_recid={id}")), "{link}");
    assert!(link.contains("companyName=contosomsp"), "{link}");

    let created = receiver.state.ticket(id).unwrap();
    assert_eq!(created.summary, "[Writeback Doctor] Contoso: Password reset endpoint unreachable");
    assert_eq!(created.external_x_ref.as_deref(), Some(k.as_str()));
    assert_eq!(created.board_id, 7);
    assert_eq!(created.company, json!({"identifier": "Contoso"}));
    assert_eq!(created.priority_id, Some(7), "high severity → the configured high priority");
    assert_eq!(created.status.name, "New");
    assert!(created.notes[0].detail_description);
    assert!(created.notes[0].text.contains("Severity: high"), "{}", created.notes[0].text);

    let mut ack = event(EventType::FindingAcknowledged, 1);
    ack.data.actor = "alice".into();
    ack.data.note = Some("Firewall change scheduled".into());
    assert_eq!(
        cw.perform(&http(), Action::Note { event: &ack, ticket: &ticket }).await.unwrap(),
        Outcome::Done
    );

    let resolved = event(EventType::FindingResolved, 1);
    assert_eq!(
        cw.perform(&http(), Action::Close { event: &resolved, ticket: &ticket }).await.unwrap(),
        Outcome::Done
    );
    let closed = receiver.state.ticket(id).unwrap();
    assert_eq!(closed.status.name, ">Closed");
    assert!(closed.status.closed);
    assert!(closed.notes.last().unwrap().resolution, "the closing note is the resolution");

    let reopened = event(EventType::FindingReopened, 1);
    let outcome =
        cw.perform(&http(), Action::Reopen { event: &reopened, ticket: &ticket, key: &k }).await.unwrap();
    assert_eq!(outcome, Outcome::Done, "ConnectWise reopens the same ticket");
    assert_eq!(receiver.state.ticket(id).unwrap().status.name, "New");

    let resolved_again = event(EventType::FindingResolved, 1);
    cw.perform(&http(), Action::Close { event: &resolved_again, ticket: &ticket }).await.unwrap();

    let tickets = receiver.state.tickets();
    assert_eq!(tickets.len(), 1, "one ticket for the problem");
    assert!(tickets[0].status.closed);
    let notes = tickets[0].note_texts();
    assert_eq!(notes.len(), 5, "{notes:?}");
    assert!(
        notes[1].contains(&ack.headline()) && notes[1].contains("Firewall change scheduled"),
        "{notes:?}"
    );
    assert!(notes[2].contains(&resolved.headline()), "{notes:?}");
    assert!(notes[3].contains(&reopened.headline()), "{notes:?}");
    assert!(notes[4].contains(&resolved_again.headline()), "{notes:?}");

    let auth = receiver.requests()[0].header("authorization").unwrap().to_owned();
    assert!(auth.starts_with("Basic "), "{auth}");
    assert_eq!(receiver.requests()[0].header("clientid"), Some(CLIENT_ID));
}

#[tokio::test]
async fn a_create_whose_answer_was_lost_is_found_by_its_key() {
    let (receiver, cw) = manage().await;
    let k = key(2);
    let opened = event(EventType::FindingOpened, 2);
    assert_eq!(
        cw.perform(&http(), Action::Find { event: &opened, key: &k }).await.unwrap(),
        Outcome::NotFound
    );

    receiver.common().set_faults(Faults { lose_answer_next: 1, ..Faults::default() });
    let err = cw.perform(&http(), Action::Create { event: &opened, key: &k }).await.unwrap_err();
    assert!(matches!(err, DeliveryError::Status { status: 500, .. }), "{err:?}");

    let found = ticket_of(cw.perform(&http(), Action::Find { event: &opened, key: &k }).await.unwrap());
    let tickets = receiver.state.tickets();
    assert_eq!(tickets.len(), 1, "the lost create made exactly one ticket");
    assert_eq!(found.external_id, tickets[0].id.to_string());

    let find = receiver.requests().into_iter().rfind(|r| r.method == "GET").unwrap();
    assert!(find.query.contains("conditions=externalXRef"), "{}", find.query);

    // Another problem's key does not match this ticket.
    let other = key(3);
    assert_eq!(
        cw.perform(&http(), Action::Find { event: &opened, key: &other }).await.unwrap(),
        Outcome::NotFound
    );
}

#[tokio::test]
async fn rate_limits_carry_retry_after() {
    let (receiver, cw) = manage().await;
    receiver.common().set_faults(Faults { rate_limit_next: 1, retry_after_secs: 42, ..Faults::default() });
    let opened = event(EventType::FindingOpened, 4);
    let err = cw.perform(&http(), Action::Create { event: &opened, key: &key(4) }).await.unwrap_err();
    assert!(
        matches!(err, DeliveryError::Status { status: 429, retry_after: Some(d), .. } if d.as_secs() == 42),
        "{err:?}"
    );
    assert!(receiver.state.tickets().is_empty());
}

#[tokio::test]
async fn wrong_keys_are_refused_with_401() {
    let receiver = Receiver::spawn(ConnectwiseState::new(COMPANY, PUBLIC_KEY, PRIVATE_KEY, CLIENT_ID)).await;
    let cw = connectwise::build(&settings(&receiver.url(), "not-the-key")).unwrap();
    let opened = event(EventType::FindingOpened, 5);
    let err = cw.perform(&http(), Action::Create { event: &opened, key: &key(5) }).await.unwrap_err();
    assert!(matches!(err, DeliveryError::Status { status: 401, .. }), "{err:?}");
    assert!(!format!("{err:?}").contains("not-the-key"));
    assert!(receiver.state.tickets().is_empty());
}

#[tokio::test]
async fn long_titles_are_cut_to_connectwise_summary_length() {
    let (receiver, cw) = manage().await;
    let mut opened = event(EventType::FindingOpened, 6);
    if let Some(f) = opened.data.finding.as_mut() {
        f.title = "x".repeat(180);
    }
    let ticket =
        ticket_of(cw.perform(&http(), Action::Create { event: &opened, key: &key(6) }).await.unwrap());
    let summary = receiver.state.ticket(ticket.external_id.parse().unwrap()).unwrap().summary;
    assert_eq!(summary.chars().count(), 100);
}

#[test]
fn empty_settings_name_every_missing_field() {
    let settings = ConnectorSettings {
        kind: IntegrationKind::Connectwise,
        url: Url::parse("https://api-na.myconnectwise.net").unwrap(),
        config: json!({}),
        credentials: json!({}),
        signing_secrets: Vec::new(),
    };
    let Err(errors) = connectwise::build(&settings) else { panic!("empty settings were accepted") };
    let mut fields: Vec<&str> = errors.iter().map(|e| e.field.as_str()).collect();
    fields.sort_unstable();
    assert_eq!(
        fields,
        [
            "config.board_id",
            "config.company_id",
            "config.login_company",
            "credentials.client_id",
            "credentials.private_key",
            "credentials.public_key",
        ]
    );

    let with_bad_priorities = ConnectorSettings {
        config: json!({"login_company": "c", "board_id": 1, "company_id": 2, "priority_ids": {"high": 3}}),
        credentials: json!({"public_key": "p", "private_key": "secret-value", "client_id": "x"}),
        ..settings
    };
    let Err(errors) = connectwise::build(&with_bad_priorities) else {
        panic!("incomplete priorities accepted")
    };
    let fields: Vec<&str> = errors.iter().map(|e| e.field.as_str()).collect();
    assert_eq!(
        fields,
        ["config.priority_ids.critical", "config.priority_ids.medium", "config.priority_ids.low"]
    );
    assert!(!format!("{errors:?}").contains("secret-value"));
}

#[tokio::test]
async fn reopen_and_close_leave_the_status_a_person_set_and_only_add_the_note() {
    let (receiver, cw) = manage().await;
    let k = key(7);
    let opened = event(EventType::FindingOpened, 7);
    let ticket = ticket_of(cw.perform(&http(), Action::Create { event: &opened, key: &k }).await.unwrap());
    let id: u64 = ticket.external_id.parse().unwrap();

    receiver.state.set_status(id, "In Progress");
    let again = event(EventType::FindingReopened, 7);
    let outcome =
        cw.perform(&http(), Action::Reopen { event: &again, ticket: &ticket, key: &k }).await.unwrap();
    assert_eq!(outcome, Outcome::Done);
    assert_eq!(
        receiver.state.ticket(id).unwrap().status.name,
        "In Progress",
        "an open ticket keeps its status"
    );

    receiver.state.close_by_person(id);
    let resolved = event(EventType::FindingResolved, 7);
    cw.perform(&http(), Action::Close { event: &resolved, ticket: &ticket }).await.unwrap();
    let reopened = event(EventType::FindingReopened, 7);
    cw.perform(&http(), Action::Reopen { event: &reopened, ticket: &ticket, key: &k }).await.unwrap();

    let now = receiver.state.ticket(id).unwrap();
    assert_eq!(now.status.name, "New", "a closed ticket is reopened");
    let patches = receiver.requests().iter().filter(|r| r.method == "PATCH").count();
    assert_eq!(patches, 1, "only the reopen of the closed ticket changed a status");
    let notes = now.note_texts();
    assert_eq!(notes.len(), 4, "{notes:?}");
    assert!(now.notes[2].resolution && notes[2].contains(&resolved.headline()), "{notes:?}");
}

#[tokio::test]
async fn a_deleted_ticket_is_gone_for_notes_closes_and_reopens() {
    let (receiver, cw) = manage().await;
    let k = key(8);
    let opened = event(EventType::FindingOpened, 8);
    let ticket = ticket_of(cw.perform(&http(), Action::Create { event: &opened, key: &k }).await.unwrap());
    receiver.state.delete_ticket(ticket.external_id.parse().unwrap());
    let gone = DeliveryError::TicketGone(ticket.external_id.clone());

    let ack = event(EventType::FindingAcknowledged, 8);
    assert_eq!(cw.perform(&http(), Action::Note { event: &ack, ticket: &ticket }).await, Err(gone.clone()));
    let resolved = event(EventType::FindingResolved, 8);
    assert_eq!(
        cw.perform(&http(), Action::Close { event: &resolved, ticket: &ticket }).await,
        Err(gone.clone())
    );
    let again = event(EventType::FindingReopened, 8);
    assert_eq!(
        cw.perform(&http(), Action::Reopen { event: &again, ticket: &ticket, key: &k }).await,
        Err(gone)
    );

    // An outage is not a deleted ticket.
    receiver.common().set_faults(Faults { fail_next: 1, fail_status: Some(503), ..Faults::default() });
    let err = cw.perform(&http(), Action::Note { event: &ack, ticket: &ticket }).await.unwrap_err();
    assert!(matches!(err, DeliveryError::Status { status: 503, .. }), "{err:?}");
}
