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

/// A site whose workflow cannot reopen a done issue, with `OPS-1` made for finding `n` and
/// closed; search lags a minute behind creates, as Jira Cloud's may.
async fn final_site_with_a_closed_issue(n: u128) -> (Receiver<JiraState>, Box<dyn Connector>, TicketRef) {
    let state = JiraState::new(EMAIL, TOKEN, "OPS").done_is_final().with_search_lag(Duration::from_secs(60));
    let receiver = Receiver::spawn(state).await;
    let jira = jira::build(&settings(&receiver.url(), TOKEN)).unwrap();
    let opened = event(EventType::FindingOpened, n);
    let first =
        ticket_of(jira.perform(&http(), Action::Create { event: &opened, key: &key(n) }).await.unwrap());
    let resolved = event(EventType::FindingResolved, n);
    jira.perform(&http(), Action::Close { event: &resolved, ticket: &first }).await.unwrap();
    assert_eq!(receiver.state.issue(&first.external_id).unwrap().status, "Done");
    (receiver, jira, first)
}

/// A request to the receiver as a person's browser or script would make it.
async fn raw(
    receiver: &Receiver<JiraState>,
    method: reqwest::Method,
    path: &str,
    body: Option<serde_json::Value>,
) -> (u16, serde_json::Value) {
    let mut request = reqwest::Client::new()
        .request(method, format!("{}{path}", receiver.url()))
        .basic_auth(EMAIL, Some(TOKEN))
        .header("accept", "application/json");
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let text = response.text().await.unwrap();
    (status, serde_json::from_str(&text).unwrap_or(serde_json::Value::Null))
}

fn replacement_body(summary: &str, link: serde_json::Value) -> serde_json::Value {
    json!({
        "fields": {
            "project": {"key": "OPS"},
            "issuetype": {"name": "Task"},
            "summary": summary,
            "labels": ["by-hand"],
        },
        "update": {"issuelinks": [{"add": link}]},
    })
}

#[tokio::test]
async fn a_lost_answer_to_the_replacement_create_is_found_through_the_old_issue_within_the_search_lag() {
    let (receiver, jira, first) = final_site_with_a_closed_issue(12).await;
    let k = key(12);
    let reopened = event(EventType::FindingReopened, 12);

    // The replacement is made, but its answer is lost (a timeout, a worker crash)…
    receiver.state.set_faults_at_next_create(Faults { lose_answer_next: 1, ..Faults::default() });
    let lost = jira.perform(&http(), Action::Reopen { event: &reopened, ticket: &first, key: &k }).await;
    assert!(matches!(lost, Err(DeliveryError::Status { status: 500, .. })), "{lost:?}");
    assert_eq!(receiver.state.issues().len(), 2, "the create took effect");
    // …and the search does not show it yet.
    assert_eq!(
        jira.perform(&http(), Action::Find { event: &reopened, key: &k }).await.unwrap(),
        Outcome::NotFound
    );

    // The engine retries at once: the retry reads the old issue's links and finds it.
    let retried = ticket_of(
        jira.perform(&http(), Action::Reopen { event: &reopened, ticket: &first, key: &k }).await.unwrap(),
    );
    assert_eq!(retried.external_id, "OPS-2");
    assert_eq!(retried.url.as_deref(), Some(format!("{}/browse/OPS-2", receiver.url()).as_str()));

    assert_eq!(receiver.state.issues().len(), 2, "one replacement issue");
    assert_eq!(receiver.state.links(), vec![("Relates".to_owned(), "OPS-2".to_owned(), "OPS-1".to_owned())]);
    let replacement = receiver.state.issue("OPS-2").unwrap();
    assert!(replacement.labels.contains(&k), "{:?}", replacement.labels);
    assert_eq!(replacement.status, "To Do");
    assert_eq!(receiver.state.issue("OPS-1").unwrap().status, "Done");
    let creates =
        receiver.requests().iter().filter(|r| r.method == "POST" && r.path == "/rest/api/3/issue").count();
    assert_eq!(creates, 2, "the first issue and one replacement");
}

#[tokio::test]
async fn a_replacement_issue_is_created_with_its_link_in_one_request() {
    let (receiver, jira, first) = final_site_with_a_closed_issue(13).await;
    let k = key(13);
    let before = receiver.requests().len();
    let reopened = event(EventType::FindingReopened, 13);
    let second = ticket_of(
        jira.perform(&http(), Action::Reopen { event: &reopened, ticket: &first, key: &k }).await.unwrap(),
    );
    assert_eq!(second.external_id, "OPS-2");

    let requests = receiver.requests().split_off(before);
    let writes: Vec<_> = requests.iter().filter(|r| r.method != "GET").collect();
    assert_eq!(writes.len(), 1, "{:?}", requests.iter().map(|r| (&r.method, &r.path)).collect::<Vec<_>>());
    assert_eq!(writes[0].path, "/rest/api/3/issue");
    assert!(requests.iter().all(|r| r.path != "/rest/api/3/issueLink"));
    assert!(requests.iter().all(|r| !r.path.starts_with("/rest/api/3/search")), "consistent reads only");
    let body = writes[0].json();
    assert_eq!(
        body["update"],
        json!({"issuelinks": [{"add": {"type": {"name": "Relates"}, "outwardIssue": {"key": "OPS-1"}}}]})
    );
    assert_eq!(body["fields"]["labels"], json!(["writeback-doctor", k]));
    assert_eq!(receiver.state.links(), vec![("Relates".to_owned(), "OPS-2".to_owned(), "OPS-1".to_owned())]);
}

#[tokio::test]
async fn the_old_issue_shows_its_replacement_as_the_inward_issue_as_jira_does() {
    let (receiver, jira, first) = final_site_with_a_closed_issue(14).await;
    let reopened = event(EventType::FindingReopened, 14);
    jira.perform(&http(), Action::Reopen { event: &reopened, ticket: &first, key: &key(14) }).await.unwrap();

    let (status, old) =
        raw(&receiver, reqwest::Method::GET, "/rest/api/3/issue/OPS-1?fields=issuelinks", None).await;
    assert_eq!(status, 200);
    let links = old["fields"]["issuelinks"].as_array().unwrap();
    assert_eq!(links.len(), 1, "{old}");
    assert!(links[0]["id"].is_string(), "{old}");
    assert_eq!(links[0]["type"]["name"], "Relates");
    assert_eq!(links[0]["type"]["inward"], "relates to");
    assert_eq!(links[0]["type"]["outward"], "relates to");
    assert!(links[0].get("outwardIssue").is_none(), "{old}");
    let inward = &links[0]["inwardIssue"];
    assert_eq!(inward["key"], "OPS-2");
    assert!(inward["id"].is_string());
    assert_eq!(inward["fields"]["status"]["name"], "To Do");
    assert!(inward["fields"]["summary"].as_str().unwrap().contains("Password reset endpoint"));

    let (_, new) = raw(&receiver, reqwest::Method::GET, "/rest/api/3/issue/OPS-2", None).await;
    let links = new["fields"]["issuelinks"].as_array().unwrap();
    assert_eq!(links.len(), 1, "{new}");
    assert_eq!(links[0]["outwardIssue"]["key"], "OPS-1");
    assert_eq!(links[0]["outwardIssue"]["fields"]["status"]["statusCategory"]["key"], "done");

    let (_, plain) =
        raw(&receiver, reqwest::Method::GET, "/rest/api/3/issue/OPS-1?fields=status", None).await;
    assert!(plain["fields"].get("issuelinks").is_none(), "only when asked: {plain}");
}

#[tokio::test]
async fn a_create_whose_link_cannot_be_made_is_refused_whole() {
    let (receiver, _jira, _first) = final_site_with_a_closed_issue(15).await;
    let unknown_type = replacement_body(
        "no such link type",
        json!({"type": {"name": "Mentions"}, "outwardIssue": {"key": "OPS-1"}}),
    );
    let (status, answer) =
        raw(&receiver, reqwest::Method::POST, "/rest/api/3/issue", Some(unknown_type)).await;
    assert_eq!(status, 400);
    assert_eq!(answer["errorMessages"], json!([]));
    assert!(answer["errors"]["issuelinks"].as_str().unwrap().contains("Mentions"), "{answer}");

    let missing_issue = replacement_body(
        "no such issue",
        json!({"type": {"name": "Relates"}, "outwardIssue": {"key": "OPS-99"}}),
    );
    let (status, answer) =
        raw(&receiver, reqwest::Method::POST, "/rest/api/3/issue", Some(missing_issue)).await;
    assert_eq!(status, 400);
    assert!(answer["errors"]["issuelinks"].as_str().unwrap().contains("OPS-99"), "{answer}");

    assert_eq!(receiver.state.issues().len(), 1, "no issue without its link");
    assert!(receiver.state.links().is_empty());

    // The connector's own create meets the same check: a link type the site lacks is a 400.
    let mut s = settings(&receiver.url(), TOKEN);
    s.config["link_type"] = json!("Mentions");
    let jira = jira::build(&s).unwrap();
    let first = TicketRef { external_id: "OPS-1".into(), url: None };
    let reopened = event(EventType::FindingReopened, 15);
    let err = jira
        .perform(&http(), Action::Reopen { event: &reopened, ticket: &first, key: &key(15) })
        .await
        .unwrap_err();
    assert!(matches!(err, DeliveryError::Status { status: 400, .. }), "{err:?}");
    assert_eq!(receiver.state.issues().len(), 1);
}

#[tokio::test]
async fn a_replacement_is_told_from_other_linked_issues_by_its_labels_and_direction() {
    let (receiver, jira, first) = final_site_with_a_closed_issue(16).await;
    let k = key(16);
    let reopened = event(EventType::FindingReopened, 16);
    let second = ticket_of(
        jira.perform(&http(), Action::Reopen { event: &reopened, ticket: &first, key: &k }).await.unwrap(),
    );
    assert_eq!(second.external_id, "OPS-2");
    // A person links a newer issue of their own to the old one, the same way round.
    let theirs = replacement_body(
        "a person's issue",
        json!({"type": {"name": "Relates"}, "outwardIssue": {"key": "OPS-1"}}),
    );
    let (status, _) = raw(&receiver, reqwest::Method::POST, "/rest/api/3/issue", Some(theirs)).await;
    assert_eq!(status, 201);
    let retried = ticket_of(
        jira.perform(&http(), Action::Reopen { event: &reopened, ticket: &first, key: &k }).await.unwrap(),
    );
    assert_eq!(retried, second, "the person's OPS-3 has no problem label");

    // The problem comes back once more after OPS-2 is closed: OPS-2 links to OPS-1 (labelled
    // too) the other way round, so a new issue is made rather than OPS-1 taken.
    let resolved = event(EventType::FindingResolved, 16);
    jira.perform(&http(), Action::Close { event: &resolved, ticket: &second }).await.unwrap();
    let third = ticket_of(
        jira.perform(&http(), Action::Reopen { event: &reopened, ticket: &second, key: &k }).await.unwrap(),
    );
    assert_eq!(third.external_id, "OPS-4");
    let links = receiver.state.links();
    assert!(links.contains(&("Relates".to_owned(), "OPS-4".to_owned(), "OPS-2".to_owned())), "{links:?}");
    assert_eq!(links.len(), 3, "{links:?}");
    let again = ticket_of(
        jira.perform(&http(), Action::Reopen { event: &reopened, ticket: &second, key: &k }).await.unwrap(),
    );
    assert_eq!(again, third);
    assert_eq!(receiver.state.issues().len(), 4);
}
