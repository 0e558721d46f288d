//! Jira Cloud against its local receiver: the ticket lifecycle, lost answers, rate limits,
//! credentials and settings.

use std::time::Duration;

use serde_json::json;
use url::Url;
use wbd_notify::connectors::jira;
use wbd_notify::{
    Action, Connector, ConnectorSettings, DeliveryError, EventType, IntegrationKind, Outcome, TicketRef,
};
use wbd_receivers::jira::JiraState;
use wbd_receivers::{Faults, Receiver};

use crate::support::{event, http, key};

const EMAIL: &str = "wbd@msp.example";
const TOKEN: &str = "ATATT3xFfGF0-test-token";

fn settings(url: &str, token: &str) -> ConnectorSettings {
    ConnectorSettings {
        kind: IntegrationKind::Jira,
        url: Url::parse(url).unwrap(),
        config: json!({"email": EMAIL, "project_key": "OPS"}),
        credentials: json!({"api_token": token}),
        signing_secrets: Vec::new(),
    }
}

async fn site() -> (Receiver<JiraState>, Box<dyn Connector>) {
    let receiver = Receiver::spawn(JiraState::new(EMAIL, TOKEN, "OPS")).await;
    let connector = jira::build(&settings(&receiver.url(), TOKEN)).expect("valid settings");
    (receiver, connector)
}

fn ticket_of(outcome: Outcome) -> TicketRef {
    match outcome {
        Outcome::Ticket(t) => t,
        other => panic!("expected a ticket, got {other:?}"),
    }
}

#[tokio::test]
async fn one_issue_lives_through_open_recurrence_resolve_and_reopen() {
    let (receiver, jira) = site().await;
    let k = key(1);
    let opened = event(EventType::FindingOpened, 1);
    let ticket = ticket_of(jira.perform(&http(), Action::Create { event: &opened, key: &k }).await.unwrap());
    assert_eq!(ticket.external_id, "OPS-1");
    assert_eq!(ticket.url.as_deref(), Some(format!("{}/browse/OPS-1", receiver.url()).as_str()));

    let issue = receiver.state.issue("OPS-1").unwrap();
    assert_eq!(issue.summary, "[Writeback Doctor] Contoso: Password reset endpoint unreachable");
    assert!(issue.labels.contains(&k), "{:?}", issue.labels);
    assert_eq!(issue.issue_type, "Task");
    assert!(issue.description_text().contains("Severity: high"), "{}", issue.description_text());
    assert!(issue.description_text().contains("1. Allow outbound TCP 443"));

    let again = event(EventType::FindingReopened, 1);
    assert_eq!(
        jira.perform(&http(), Action::Note { event: &again, ticket: &ticket }).await.unwrap(),
        Outcome::Done
    );

    let resolved = event(EventType::FindingResolved, 1);
    assert_eq!(
        jira.perform(&http(), Action::Close { event: &resolved, ticket: &ticket }).await.unwrap(),
        Outcome::Done
    );
    assert_eq!(receiver.state.issue("OPS-1").unwrap().status, "Done");

    let reopened = event(EventType::FindingReopened, 1);
    let outcome =
        jira.perform(&http(), Action::Reopen { event: &reopened, ticket: &ticket, key: &k }).await.unwrap();
    assert_eq!(outcome, Outcome::Done);

    let issues = receiver.state.issues();
    assert_eq!(issues.len(), 1, "one issue for the problem");
    assert_eq!(issues[0].status, "To Do");
    let comments = issues[0].comment_texts();
    assert_eq!(comments.len(), 3, "{comments:?}");
    assert!(comments[0].contains(&again.headline()), "{comments:?}");
    assert!(comments[1].contains(&resolved.headline()), "{comments:?}");
    assert!(comments[2].contains(&reopened.headline()), "{comments:?}");
}

#[tokio::test]
async fn closing_an_issue_a_person_already_closed_only_adds_the_note() {
    let (receiver, jira) = site().await;
    let opened = event(EventType::FindingOpened, 2);
    let ticket =
        ticket_of(jira.perform(&http(), Action::Create { event: &opened, key: &key(2) }).await.unwrap());
    receiver.state.set_status(&ticket.external_id, "Done");
    let resolved = event(EventType::FindingResolved, 2);
    assert_eq!(
        jira.perform(&http(), Action::Close { event: &resolved, ticket: &ticket }).await.unwrap(),
        Outcome::Done
    );
    let issue = receiver.state.issue(&ticket.external_id).unwrap();
    assert_eq!(issue.status, "Done");
    assert_eq!(issue.comment_texts().len(), 1);
}

#[tokio::test]
async fn reopening_an_issue_a_person_already_reopened_only_adds_the_note() {
    let (receiver, jira) = site().await;
    let k = key(9);
    let opened = event(EventType::FindingOpened, 9);
    let ticket = ticket_of(jira.perform(&http(), Action::Create { event: &opened, key: &k }).await.unwrap());
    receiver.state.set_status(&ticket.external_id, "In Progress");
    let reopened = event(EventType::FindingReopened, 9);
    let outcome =
        jira.perform(&http(), Action::Reopen { event: &reopened, ticket: &ticket, key: &k }).await.unwrap();
    assert_eq!(outcome, Outcome::Done);
    let issue = receiver.state.issue(&ticket.external_id).unwrap();
    assert_eq!(issue.status, "In Progress", "left where the person put it");
    assert_eq!(issue.comment_texts().len(), 1);
    assert_eq!(receiver.state.issues().len(), 1);
}

#[tokio::test]
async fn a_workflow_without_reopen_gets_a_new_linked_issue_once() {
    let receiver = Receiver::spawn(JiraState::new(EMAIL, TOKEN, "OPS").done_is_final()).await;
    let jira = jira::build(&settings(&receiver.url(), TOKEN)).unwrap();
    let k = key(3);
    let opened = event(EventType::FindingOpened, 3);
    let first = ticket_of(jira.perform(&http(), Action::Create { event: &opened, key: &k }).await.unwrap());
    let resolved = event(EventType::FindingResolved, 3);
    jira.perform(&http(), Action::Close { event: &resolved, ticket: &first }).await.unwrap();

    let reopened = event(EventType::FindingReopened, 3);
    let second = ticket_of(
        jira.perform(&http(), Action::Reopen { event: &reopened, ticket: &first, key: &k }).await.unwrap(),
    );
    assert_eq!(second.external_id, "OPS-2");
    // A retry (as after a lost answer) finds the linked issue instead of making a third.
    let retried = ticket_of(
        jira.perform(&http(), Action::Reopen { event: &reopened, ticket: &first, key: &k }).await.unwrap(),
    );
    assert_eq!(retried, second);

    assert_eq!(receiver.state.issues().len(), 2);
    assert_eq!(receiver.state.links(), vec![("Relates".to_owned(), "OPS-2".to_owned(), "OPS-1".to_owned())]);
    assert_eq!(receiver.state.issue("OPS-1").unwrap().status, "Done");
    assert_eq!(receiver.state.issue("OPS-2").unwrap().status, "To Do");
}

#[tokio::test]
async fn a_lost_create_answer_is_found_by_its_label_and_not_created_twice() {
    let (receiver, jira) = site().await;
    let k = key(4);
    let opened = event(EventType::FindingOpened, 4);
    assert_eq!(
        jira.perform(&http(), Action::Find { event: &opened, key: &k }).await.unwrap(),
        Outcome::NotFound
    );

    receiver.common().set_faults(Faults { lose_answer_next: 1, ..Faults::default() });
    let lost = jira.perform(&http(), Action::Create { event: &opened, key: &k }).await;
    assert!(matches!(lost, Err(DeliveryError::Status { status: 500, .. })), "{lost:?}");

    let found = ticket_of(jira.perform(&http(), Action::Find { event: &opened, key: &k }).await.unwrap());
    assert_eq!(found.external_id, "OPS-1");
    assert_eq!(receiver.state.issues().len(), 1);
    let other = jira.perform(&http(), Action::Find { event: &opened, key: &key(5) }).await.unwrap();
    assert_eq!(other, Outcome::NotFound);
}

#[tokio::test]
async fn rate_limits_keep_their_retry_after() {
    let (receiver, jira) = site().await;
    receiver.common().set_faults(Faults { rate_limit_next: 1, retry_after_secs: 30, ..Faults::default() });
    let opened = event(EventType::FindingOpened, 6);
    let err = jira.perform(&http(), Action::Create { event: &opened, key: &key(6) }).await.unwrap_err();
    assert_eq!(err.status(), Some(429));
    assert_eq!(err.retry_after(), Some(std::time::Duration::from_secs(30)));
    assert!(receiver.state.issues().is_empty());
}

#[tokio::test]
async fn a_wrong_token_is_refused_and_never_shown() {
    let receiver = Receiver::spawn(JiraState::new(EMAIL, TOKEN, "OPS")).await;
    let jira = jira::build(&settings(&receiver.url(), "wrong-token-secret")).unwrap();
    let opened = event(EventType::FindingOpened, 7);
    let http = http();
    let err = jira.perform(&http, Action::Create { event: &opened, key: &key(7) }).await.unwrap_err();
    assert!(matches!(err, DeliveryError::Status { status: 401, .. }), "{err:?}");
    let log = format!("{err:?} {:?} {:?}", http.exchanges(), settings(&receiver.url(), "wrong-token-secret"));
    assert!(!log.contains("wrong-token-secret"), "{log}");
}

#[tokio::test]
async fn a_project_that_does_not_exist_is_a_jira_field_error() {
    let receiver = Receiver::spawn(JiraState::new(EMAIL, TOKEN, "OPS")).await;
    let mut s = settings(&receiver.url(), TOKEN);
    s.config["project_key"] = json!("NOPE");
    let jira = jira::build(&s).unwrap();
    let opened = event(EventType::FindingOpened, 8);
    let err = jira.perform(&http(), Action::Create { event: &opened, key: &key(8) }).await.unwrap_err();
    match err {
        DeliveryError::Status { status: 400, excerpt, .. } => {
            assert!(excerpt.contains("project"), "{excerpt}")
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn empty_settings_name_every_missing_field() {
    let s = ConnectorSettings {
        kind: IntegrationKind::Jira,
        url: Url::parse("https://acme.atlassian.net").unwrap(),
        config: json!({}),
        credentials: json!({}),
        signing_secrets: Vec::new(),
    };
    let errors = jira::build(&s).err().expect("invalid");
    let fields: Vec<&str> = errors.iter().map(|e| e.field.as_str()).collect();
    assert_eq!(fields, ["config.email", "config.project_key", "credentials.api_token"]);
}

#[tokio::test]
async fn a_search_that_lags_behind_creates_hides_a_lost_create_for_the_connectors_search_lag() {
    let lag = Duration::from_millis(400);
    let receiver = Receiver::spawn(JiraState::new(EMAIL, TOKEN, "OPS").with_search_lag(lag)).await;
    let jira = jira::build(&settings(&receiver.url(), TOKEN)).unwrap();
    let k = key(10);
    let opened = event(EventType::FindingOpened, 10);
    receiver.common().set_faults(Faults { lose_answer_next: 1, ..Faults::default() });
    let lost = jira.perform(&http(), Action::Create { event: &opened, key: &k }).await;
    assert!(matches!(lost, Err(DeliveryError::Status { status: 500, .. })), "{lost:?}");

    // The issue exists, but the search does not show it yet: "not found" proves nothing…
    assert_eq!(receiver.state.issues().len(), 1);
    assert_eq!(
        jira.perform(&http(), Action::Find { event: &opened, key: &k }).await.unwrap(),
        Outcome::NotFound
    );
    // …for as long as the connector says, so the engine waits instead of creating a second one.
    assert_eq!(jira.search_lag(), Duration::from_secs(180));
    assert!(jira.search_lag() >= lag);

    tokio::time::sleep(lag).await;
    let found = ticket_of(jira.perform(&http(), Action::Find { event: &opened, key: &k }).await.unwrap());
    assert_eq!(found.external_id, "OPS-1");
}

#[tokio::test]
async fn a_deleted_issue_is_gone_for_notes_closes_and_reopens() {
    let (receiver, jira) = site().await;
    let k = key(11);
    let opened = event(EventType::FindingOpened, 11);
    let ticket = ticket_of(jira.perform(&http(), Action::Create { event: &opened, key: &k }).await.unwrap());
    receiver.state.delete_issue(&ticket.external_id);
    let gone = DeliveryError::TicketGone(ticket.external_id.clone());

    let ack = event(EventType::FindingAcknowledged, 11);
    assert_eq!(jira.perform(&http(), Action::Note { event: &ack, ticket: &ticket }).await, Err(gone.clone()));
    let resolved = event(EventType::FindingResolved, 11);
    assert_eq!(
        jira.perform(&http(), Action::Close { event: &resolved, ticket: &ticket }).await,
        Err(gone.clone())
    );
    let again = event(EventType::FindingReopened, 11);
    assert_eq!(
        jira.perform(&http(), Action::Reopen { event: &again, ticket: &ticket, key: &k }).await,
        Err(gone)
    );
    assert!(receiver.state.issues().is_empty(), "no linked issue for an issue that is gone");

    // A key is never handed out twice, so a new issue is not mistaken for the deleted one.
    let next = ticket_of(jira.perform(&http(), Action::Create { event: &opened, key: &k }).await.unwrap());
    assert_eq!(next.external_id, "OPS-2");
}
