//! The generic webhook against a local endpoint: signed deliveries that an independent
//! Standard Webhooks implementation accepts, and how the endpoint's failures are classified.

use std::time::Duration;

use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use serde_json::json;
use standardwebhooks::Webhook;
use url::Url;
use wbd_notify::connectors;
use wbd_notify::signing::SigningSecret;
use wbd_notify::{Action, Connector, ConnectorSettings, DeliveryError, EventType, IntegrationKind, Outcome};
use wbd_receivers::webhook::WebhookReceiver;
use wbd_receivers::{Faults, Receiver, Recorded};

use crate::support::{event, http, http_with_timeout};

fn connector(receiver: &Receiver<WebhookReceiver>, secrets: &[&SigningSecret]) -> Box<dyn Connector> {
    let settings = ConnectorSettings {
        kind: IntegrationKind::Webhook,
        url: Url::parse(&format!("{}/hooks/wbd", receiver.url())).unwrap(),
        config: json!({}),
        credentials: json!({}),
        signing_secrets: secrets.iter().map(|s| s.to_whsec()).collect(),
    };
    connectors::build(&settings).unwrap_or_else(|e| panic!("settings: {e:?}"))
}

fn header_map(delivery: &Recorded) -> HeaderMap {
    delivery
        .headers
        .iter()
        .map(|(n, v)| (HeaderName::from_bytes(n.as_bytes()).unwrap(), HeaderValue::from_str(v).unwrap()))
        .collect()
}

#[tokio::test]
async fn a_delivery_is_the_event_json_signed_with_every_secret() {
    let receiver = Receiver::spawn(WebhookReceiver::new()).await;
    let (new, old) = (SigningSecret::generate(), SigningSecret::generate());
    let webhook = connector(&receiver, &[&new, &old]);
    let e = event(EventType::FindingOpened, 1);
    let http = http();
    assert_eq!(webhook.perform(&http, Action::Send { event: &e }).await, Ok(Outcome::Done));

    let deliveries = receiver.state.deliveries();
    assert_eq!(deliveries.len(), 1);
    let d = &deliveries[0];
    assert_eq!(d.method, "POST");
    assert_eq!(d.path, "/hooks/wbd");
    assert_eq!(d.body, serde_json::to_vec(&e).unwrap(), "the body is the event's JSON");
    assert_eq!(d.header("content-type"), Some("application/json"));
    assert_eq!(d.header("webhook-id"), Some(e.message_id().as_str()));
    assert!(d.header("user-agent").is_some_and(|ua| ua.starts_with("WritebackDoctor/")));
    let headers = header_map(d);
    Webhook::new(&new.to_whsec()).unwrap().verify(&d.body, &headers).expect("the new secret verifies");
    Webhook::new(&old.to_whsec()).unwrap().verify(&d.body, &headers).expect("the old secret verifies");
    let stranger = SigningSecret::generate().to_whsec();
    assert!(Webhook::new(&stranger).unwrap().verify(&d.body, &headers).is_err());

    assert_eq!(http.exchanges().len(), 1);
    assert_eq!(http.exchanges()[0].status, Some(204));
}

#[tokio::test]
async fn retries_keep_the_message_id_and_sign_a_fresh_timestamp() {
    let receiver = Receiver::spawn(WebhookReceiver::new()).await;
    let secret = SigningSecret::generate();
    let webhook = connector(&receiver, &[&secret]);
    let e = event(EventType::FindingResolved, 2);
    receiver.common().set_faults(Faults { fail_next: 1, ..Faults::default() });
    assert!(webhook.perform(&http(), Action::Send { event: &e }).await.is_err());
    assert_eq!(webhook.perform(&http(), Action::Send { event: &e }).await, Ok(Outcome::Done));
    let requests = receiver.requests();
    assert_eq!(requests.len(), 2);
    assert_eq!(requests[0].header("webhook-id"), requests[1].header("webhook-id"));
    for r in &requests {
        Webhook::new(&secret.to_whsec()).unwrap().verify(&r.body, &header_map(r)).unwrap();
    }
}

#[tokio::test]
async fn other_actions_deliver_the_same_message_and_find_nothing() {
    let receiver = Receiver::spawn(WebhookReceiver::new()).await;
    let webhook = connector(&receiver, &[&SigningSecret::generate()]);
    let e = event(EventType::FindingOpened, 3);
    let key = crate::support::key(3);
    assert_eq!(webhook.perform(&http(), Action::Find { event: &e, key: &key }).await, Ok(Outcome::NotFound));
    assert_eq!(receiver.requests().len(), 0, "a lookup delivers nothing");
    assert_eq!(webhook.perform(&http(), Action::Create { event: &e, key: &key }).await, Ok(Outcome::Done));
    assert_eq!(receiver.state.deliveries()[0].body, serde_json::to_vec(&e).unwrap());
}

#[tokio::test]
async fn a_server_error_is_a_retryable_status() {
    let receiver = Receiver::spawn(WebhookReceiver::new()).await;
    receiver.common().set_faults(Faults { fail_next: 1, ..Faults::default() });
    let webhook = connector(&receiver, &[&SigningSecret::generate()]);
    let e = event(EventType::FindingOpened, 4);
    match webhook.perform(&http(), Action::Send { event: &e }).await {
        Err(DeliveryError::Status { status: 500, retry_after: None, .. }) => {}
        other => panic!("expected HTTP 500, got {other:?}"),
    }
}

#[tokio::test]
async fn gone_asks_us_to_stop() {
    let receiver = Receiver::spawn(WebhookReceiver::new().with_answer_status(410)).await;
    let webhook = connector(&receiver, &[&SigningSecret::generate()]);
    let e = event(EventType::FindingOpened, 5);
    assert!(matches!(
        webhook.perform(&http(), Action::Send { event: &e }).await,
        Err(DeliveryError::Gone { .. })
    ));
}

#[tokio::test]
async fn rate_limiting_carries_retry_after() {
    let receiver = Receiver::spawn(WebhookReceiver::new()).await;
    receiver.common().set_faults(Faults { rate_limit_next: 1, retry_after_secs: 30, ..Faults::default() });
    let webhook = connector(&receiver, &[&SigningSecret::generate()]);
    let e = event(EventType::FindingOpened, 6);
    match webhook.perform(&http(), Action::Send { event: &e }).await {
        Err(err @ DeliveryError::Status { status: 429, .. }) => {
            assert_eq!(err.retry_after(), Some(Duration::from_secs(30)));
        }
        other => panic!("expected HTTP 429, got {other:?}"),
    }
}

#[tokio::test]
async fn a_receiver_slower_than_the_attempt_timeout_is_a_transport_error() {
    let receiver = Receiver::spawn(WebhookReceiver::new()).await;
    receiver.common().set_faults(Faults { delay: Some(Duration::from_secs(3)), ..Faults::default() });
    let webhook = connector(&receiver, &[&SigningSecret::generate()]);
    let e = event(EventType::FindingOpened, 7);
    let http = http_with_timeout(Duration::from_millis(300));
    match webhook.perform(&http, Action::Send { event: &e }).await {
        Err(DeliveryError::Transport(why)) => assert!(why.contains("timed out"), "{why}"),
        other => panic!("expected a transport error, got {other:?}"),
    }
    assert_eq!(http.exchanges()[0].status, None);
}
