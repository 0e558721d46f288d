//! HaloPSA against its local receiver: the ticket lifecycle, the cached OAuth token, lost
//! answers, rate limits, credentials and settings.

use std::time::Duration;

use serde_json::json;
use url::Url;
use wbd_notify::connectors::halopsa;
use wbd_notify::{
    Action, Connector, ConnectorSettings, DeliveryError, EventType, IntegrationKind, Outcome, TicketRef,
};
use wbd_receivers::halopsa::HaloState;
use wbd_receivers::{Faults, Receiver};

use crate::support::{event, http, key};

const CLIENT_ID: &str = "0b1f5d8e-4c1a-4e55-9a3e-6f1d2c3b4a59";
const CLIENT_SECRET: &str = "halo-client-secret-value";

fn settings(url: &str, secret: &str) -> ConnectorSettings {
    ConnectorSettings {
        kind: IntegrationKind::Halopsa,
        url: Url::parse(url).unwrap(),
        config: json!({"customer_id": 12, "site_id": 3, "tickettype_id": 21, "team_id": 4}),
        credentials: json!({"client_id": CLIENT_ID, "client_secret": secret}),
        signing_secrets: Vec::new(),
    }
}

async fn halo() -> (Receiver<HaloState>, Box<dyn Connector>) {
    let receiver = Receiver::spawn(HaloState::new(CLIENT_ID, CLIENT_SECRET)).await;
    let connector = halopsa::build(&settings(&receiver.url(), CLIENT_SECRET)).expect("valid settings");
    (receiver, connector)
}

fn ticket_of(outcome: Outcome) -> TicketRef {
    match outcome {
        Outcome::Ticket(t) => t,
        other => panic!("expected a ticket, got {other:?}"),
    }
}

#[tokio::test]
async fn one_ticket_lives_through_open_acknowledge_resolve_reopen_and_resolve_again_on_one_token() {
    let (receiver, halo) = halo().await;
    let k = key(1);
    let opened = event(EventType::FindingOpened, 1);
    let ticket = ticket_of(halo.perform(&http(), Action::Create { event: &opened, key: &k }).await.unwrap());
    let id: u64 = ticket.external_id.parse().unwrap();
    assert_eq!(ticket.url.as_deref(), Some(format!("{}/ticket?id={id}", receiver.url()).as_str()));

    let created = receiver.state.ticket(id).unwrap();
    assert_eq!(created.summary, "[Writeback Doctor] Contoso: Password reset endpoint unreachable");
    assert_eq!(created.third_party_id_string.as_deref(), Some(k.as_str()));
    assert_eq!(
        (created.client_id, created.site_id, created.tickettype_id, created.team_id),
        (Some(12), Some(3), Some(21), Some(4))
    );
    assert_eq!(created.priority_id, Some(2), "high severity → Halo's stock priority 2");
    assert_eq!(created.status_id, 1);
    assert!(created.details.contains("Severity: high<br>"), "{}", created.details);

    let mut ack = event(EventType::FindingAcknowledged, 1);
    ack.data.actor = "alice".into();
    ack.data.note = Some("Firewall change <scheduled> & approved".into());
    assert_eq!(
        halo.perform(&http(), Action::Note { event: &ack, ticket: &ticket }).await.unwrap(),
        Outcome::Done
    );

    let resolved = event(EventType::FindingResolved, 1);
    assert_eq!(
        halo.perform(&http(), Action::Close { event: &resolved, ticket: &ticket }).await.unwrap(),
        Outcome::Done
    );
    assert_eq!(receiver.state.ticket(id).unwrap().status_id, 9, "Closed");

    let reopened = event(EventType::FindingReopened, 1);
    let outcome =
        halo.perform(&http(), Action::Reopen { event: &reopened, ticket: &ticket, key: &k }).await.unwrap();
    assert_eq!(outcome, Outcome::Done, "Halo reopens the same ticket");
    assert_eq!(receiver.state.ticket(id).unwrap().status_id, 1);

    let resolved_again = event(EventType::FindingResolved, 1);
    halo.perform(&http(), Action::Close { event: &resolved_again, ticket: &ticket }).await.unwrap();

    let tickets = receiver.state.tickets();
    assert_eq!(tickets.len(), 1, "one ticket for the problem");
    assert_eq!(tickets[0].status_id, 9);
    let notes = tickets[0].note_texts();
    assert_eq!(notes.len(), 4, "{notes:?}");
    assert!(notes[0].contains(&ack.headline()), "{notes:?}");
    assert!(notes[0].contains("Firewall change &lt;scheduled&gt; &amp; approved"), "{notes:?}");
    assert!(notes[1].contains(&resolved.headline()), "{notes:?}");
    assert!(notes[2].contains(&reopened.headline()), "{notes:?}");
    assert!(notes[3].contains(&resolved_again.headline()), "{notes:?}");
    assert!(tickets[0].actions.iter().all(|a| a.hidden_from_user && a.outcome == "Private Note"));

    assert_eq!(receiver.state.token_requests(), 1, "one token serves every action until it expires");
    let token_request = receiver.requests().into_iter().find(|r| r.path == "/auth/token").unwrap();
    let form = String::from_utf8(token_request.body).unwrap();
    assert!(form.contains("grant_type=client_credentials") && form.contains("scope=all"), "{form}");
}

#[tokio::test]
async fn an_expired_token_is_renewed() {
    // Halo refuses a token from the instant it expires. Whatever the machine's speed, the
    // connector must renew before that instant (or at the latest on the 401) and never lose a
    // call; that one token serves many calls is shown above, with Halo's usual lifetime.
    let (receiver, halo) = halo().await;
    receiver.state.set_token_lifetime(Duration::from_secs(1));
    let opened = event(EventType::FindingOpened, 2);
    let ticket =
        ticket_of(halo.perform(&http(), Action::Create { event: &opened, key: &key(2) }).await.unwrap());
    let first_token = receiver.state.token_requests();

    tokio::time::sleep(Duration::from_millis(1100)).await;
    let ack = event(EventType::FindingAcknowledged, 2);
    assert_eq!(
        halo.perform(&http(), Action::Note { event: &ack, ticket: &ticket }).await.unwrap(),
        Outcome::Done
    );
    assert!(receiver.state.token_requests() > first_token, "a new token after the first expired");
    let api_calls = receiver.requests().iter().filter(|r| r.path.starts_with("/api/")).count();
    assert_eq!(api_calls, 2, "no call was refused and repeated: the expired token was never sent");
    assert_eq!(receiver.state.ticket(ticket.external_id.parse().unwrap()).unwrap().actions.len(), 1);
}

#[tokio::test]
async fn a_refused_token_is_renewed_and_the_call_repeated_once() {
    let (receiver, halo) = halo().await;
    let opened = event(EventType::FindingOpened, 3);
    let ticket =
        ticket_of(halo.perform(&http(), Action::Create { event: &opened, key: &key(3) }).await.unwrap());
    receiver.state.revoke_tokens();

    let ack = event(EventType::FindingAcknowledged, 3);
    assert_eq!(
        halo.perform(&http(), Action::Note { event: &ack, ticket: &ticket }).await.unwrap(),
        Outcome::Done
    );
    assert_eq!(receiver.state.token_requests(), 2);
    assert_eq!(receiver.state.ticket(ticket.external_id.parse().unwrap()).unwrap().actions.len(), 1);

    // A 401 that persists after renewing is the answer: tokens now die as they are issued.
    receiver.state.set_token_lifetime(Duration::ZERO);
    receiver.state.revoke_tokens();
    let before = receiver.state.token_requests();
    let err = halo.perform(&http(), Action::Note { event: &ack, ticket: &ticket }).await.unwrap_err();
    assert!(matches!(err, DeliveryError::Status { status: 401, .. }), "{err:?}");
    assert_eq!(receiver.state.token_requests() - before, 1, "renewed once, not in a loop");
}

#[tokio::test]
async fn a_create_whose_answer_was_lost_is_found_by_its_reference() {
    let (receiver, halo) = halo().await;
    let k = key(4);
    let opened = event(EventType::FindingOpened, 4);
    assert_eq!(
        halo.perform(&http(), Action::Find { event: &opened, key: &k }).await.unwrap(),
        Outcome::NotFound
    );

    // The token is cached by now, so the lost answer is the create's.
    receiver.common().set_faults(Faults { lose_answer_next: 1, ..Faults::default() });
    let err = halo.perform(&http(), Action::Create { event: &opened, key: &k }).await.unwrap_err();
    assert!(matches!(err, DeliveryError::Status { status: 500, .. }), "{err:?}");

    let found = ticket_of(halo.perform(&http(), Action::Find { event: &opened, key: &k }).await.unwrap());
    let tickets = receiver.state.tickets();
    assert_eq!(tickets.len(), 1, "the lost create made exactly one ticket");
    assert_eq!(found.external_id, tickets[0].id.to_string());
    assert_eq!(
        halo.perform(&http(), Action::Find { event: &opened, key: &key(5) }).await.unwrap(),
        Outcome::NotFound,
        "another problem's key finds nothing"
    );
}

#[tokio::test]
async fn rate_limits_carry_retry_after() {
    let (receiver, halo) = halo().await;
    receiver.common().set_faults(Faults { rate_limit_next: 1, retry_after_secs: 20, ..Faults::default() });
    let opened = event(EventType::FindingOpened, 6);
    let err = halo.perform(&http(), Action::Create { event: &opened, key: &key(6) }).await.unwrap_err();
    assert!(
        matches!(err, DeliveryError::Status { status: 429, retry_after: Some(d), .. } if d.as_secs() == 20),
        "{err:?}"
    );
    assert!(receiver.state.tickets().is_empty());
}

#[tokio::test]
async fn a_wrong_client_secret_is_refused_by_the_authorisation_server() {
    let receiver = Receiver::spawn(HaloState::new(CLIENT_ID, CLIENT_SECRET)).await;
    let halo = halopsa::build(&settings(&receiver.url(), "not-the-secret")).unwrap();
    let opened = event(EventType::FindingOpened, 7);
    let err = halo.perform(&http(), Action::Create { event: &opened, key: &key(7) }).await.unwrap_err();
    // RFC 6749 §5.2: the token endpoint answers 400 invalid_client.
    assert!(
        matches!(&err, DeliveryError::Status { status: 400, excerpt, .. } if excerpt.contains("invalid_client")),
        "{err:?}"
    );
    assert!(!format!("{err:?}").contains("not-the-secret"));
    assert_eq!(receiver.requests().iter().filter(|r| r.path.starts_with("/api/")).count(), 0);
}

#[test]
fn settings_name_every_missing_or_wrong_field() {
    let settings = ConnectorSettings {
        kind: IntegrationKind::Halopsa,
        url: Url::parse("https://contoso.halopsa.com").unwrap(),
        config: json!({}),
        credentials: json!({}),
        signing_secrets: Vec::new(),
    };
    let Err(errors) = halopsa::build(&settings) else { panic!("empty settings were accepted") };
    let mut fields: Vec<&str> = errors.iter().map(|e| e.field.as_str()).collect();
    fields.sort_unstable();
    assert_eq!(fields, ["credentials.client_id", "credentials.client_secret"]);

    let wrong = ConnectorSettings {
        config: json!({"closed_status_id": "Closed", "auth_url": "not a url", "priority_ids": [1, 2]}),
        credentials: json!({"client_id": "x", "client_secret": "keep-this-quiet"}),
        ..settings
    };
    let Err(errors) = halopsa::build(&wrong) else { panic!("wrong settings accepted") };
    let mut fields: Vec<&str> = errors.iter().map(|e| e.field.as_str()).collect();
    fields.sort_unstable();
    assert_eq!(fields, ["config.auth_url", "config.closed_status_id", "config.priority_ids"]);
    assert!(!format!("{errors:?}").contains("keep-this-quiet"));
}

#[tokio::test]
async fn the_access_token_never_reaches_the_attempt_log() {
    let (receiver, halo) = halo().await;
    let http = http();
    let opened = event(EventType::FindingOpened, 7);
    halo.perform(&http, Action::Create { event: &opened, key: &key(7) }).await.unwrap();
    let exchanges = http.exchanges();
    let token_answer =
        receiver.requests().iter().position(|r| r.path.ends_with("/token")).expect("a token was fetched");
    assert!(token_answer < exchanges.len());
    let logged = serde_json::to_string(&exchanges).unwrap();
    assert!(!logged.contains("access_token"), "the token answer was logged: {logged}");
    assert!(logged.contains("withheld"), "{logged}");
}

#[tokio::test]
async fn find_takes_only_an_exact_reference_even_where_the_list_ignores_the_filter() {
    let receiver =
        Receiver::spawn(HaloState::new(CLIENT_ID, CLIENT_SECRET).ignoring_reference_filter()).await;
    let halo = halopsa::build(&settings(&receiver.url(), CLIENT_SECRET)).unwrap();
    let (k, other) = (key(10), key(11));
    let opened = event(EventType::FindingOpened, 10);
    let ours = ticket_of(halo.perform(&http(), Action::Create { event: &opened, key: &k }).await.unwrap());
    // Newer tickets: another problem's, one a tool filed with a reference of its own, and one a
    // person logged without any reference.
    let others = event(EventType::FindingOpened, 11);
    halo.perform(&http(), Action::Create { event: &others, key: &other }).await.unwrap();
    receiver.state.add_ticket("[Writeback Doctor] imported by hand", Some(&format!("{k}-copy")));
    receiver.state.add_ticket("Printer on fire", None);

    let found = ticket_of(halo.perform(&http(), Action::Find { event: &opened, key: &k }).await.unwrap());
    assert_eq!(found, ours);
    assert_eq!(
        halo.perform(&http(), Action::Find { event: &opened, key: &key(12) }).await.unwrap(),
        Outcome::NotFound,
        "tickets without our reference are not ours"
    );

    let lists: Vec<_> =
        receiver.requests().into_iter().filter(|r| r.method == "GET" && r.path == "/api/Tickets").collect();
    assert!(!lists.is_empty());
    for list in lists {
        assert!(
            list.query.contains("pageinate=true") && list.query.contains("page_size=50"),
            "{}",
            list.query
        );
        assert!(list.query.contains("order=id&orderdesc=true"), "newest first: {}", list.query);
    }
}

#[tokio::test]
async fn find_reads_a_bounded_number_of_the_newest_tickets() {
    let receiver =
        Receiver::spawn(HaloState::new(CLIENT_ID, CLIENT_SECRET).ignoring_reference_filter()).await;
    let halo = halopsa::build(&settings(&receiver.url(), CLIENT_SECRET)).unwrap();
    for n in 0..300 {
        receiver.state.add_ticket(&format!("Password reset for user {n}"), None);
    }
    let opened = event(EventType::FindingOpened, 13);
    assert_eq!(
        halo.perform(&http(), Action::Find { event: &opened, key: &key(13) }).await.unwrap(),
        Outcome::NotFound
    );
    let api: Vec<_> = receiver.requests().into_iter().filter(|r| r.path.starts_with("/api/")).collect();
    assert_eq!(api.len(), 4, "four pages of 50, no ticket read: none is ours by its summary");
}

#[tokio::test]
async fn reopen_and_close_leave_the_status_a_person_set_and_only_add_the_note() {
    let (receiver, halo) = halo().await;
    let k = key(14);
    let opened = event(EventType::FindingOpened, 14);
    let ticket = ticket_of(halo.perform(&http(), Action::Create { event: &opened, key: &k }).await.unwrap());
    let id: u64 = ticket.external_id.parse().unwrap();

    receiver.state.set_status(id, 2);
    let again = event(EventType::FindingReopened, 14);
    let outcome =
        halo.perform(&http(), Action::Reopen { event: &again, ticket: &ticket, key: &k }).await.unwrap();
    assert_eq!(outcome, Outcome::Done);
    assert_eq!(receiver.state.ticket(id).unwrap().status_id, 2, "In Progress stays In Progress");

    receiver.state.close_by_person(id);
    let resolved = event(EventType::FindingResolved, 14);
    halo.perform(&http(), Action::Close { event: &resolved, ticket: &ticket }).await.unwrap();
    assert_eq!(receiver.state.ticket(id).unwrap().status_id, 9);
    let updates =
        receiver.requests().iter().filter(|r| r.method == "POST" && r.path == "/api/Tickets").count();
    assert_eq!(updates, 1, "only the create: no status was posted");

    let reopened = event(EventType::FindingReopened, 14);
    halo.perform(&http(), Action::Reopen { event: &reopened, ticket: &ticket, key: &k }).await.unwrap();
    let ticket_now = receiver.state.ticket(id).unwrap();
    assert_eq!(ticket_now.status_id, 1, "a closed ticket is reopened");
    assert_eq!(ticket_now.note_texts().len(), 3);
}

#[tokio::test]
async fn a_deleted_ticket_is_gone_for_notes_closes_and_reopens() {
    let (receiver, halo) = halo().await;
    let k = key(15);
    let opened = event(EventType::FindingOpened, 15);
    let ticket = ticket_of(halo.perform(&http(), Action::Create { event: &opened, key: &k }).await.unwrap());
    receiver.state.delete_ticket(ticket.external_id.parse().unwrap());
    let gone = DeliveryError::TicketGone(ticket.external_id.clone());

    let ack = event(EventType::FindingAcknowledged, 15);
    assert_eq!(halo.perform(&http(), Action::Note { event: &ack, ticket: &ticket }).await, Err(gone.clone()));
    let resolved = event(EventType::FindingResolved, 15);
    assert_eq!(
        halo.perform(&http(), Action::Close { event: &resolved, ticket: &ticket }).await,
        Err(gone.clone())
    );
    let again = event(EventType::FindingReopened, 15);
    assert_eq!(
        halo.perform(&http(), Action::Reopen { event: &again, ticket: &ticket, key: &k }).await,
        Err(gone)
    );
    assert!(receiver.state.tickets().is_empty(), "nothing was posted to a ticket that is not there");

    // A refusal that is not about the ticket stays what it is.
    let ticket = ticket_of(halo.perform(&http(), Action::Create { event: &opened, key: &k }).await.unwrap());
    receiver.common().set_faults(Faults { fail_next: 1, fail_status: Some(400), ..Faults::default() });
    let err = halo.perform(&http(), Action::Note { event: &ack, ticket: &ticket }).await.unwrap_err();
    assert!(matches!(err, DeliveryError::Status { status: 400, .. }), "{err:?}");
}
