//! Slack and Microsoft Teams against their local receivers: what a channel shows, and how the
//! webhooks' errors reach the engine.

use serde_json::json;
use url::Url;
use wbd_notify::connectors::{slack, teams};
use wbd_notify::{
    Action, Connector, ConnectorSettings, DeliveryError, EventType, IntegrationKind, Outcome, TicketRef,
};
use wbd_receivers::slack::SlackState;
use wbd_receivers::teams::TeamsState;
use wbd_receivers::{Faults, Receiver};

use crate::support::{event, http, key};

const SECRET: &str = "xoxbSecretPartOfTheHook24";

fn settings(kind: IntegrationKind, url: &str) -> ConnectorSettings {
    ConnectorSettings {
        kind,
        url: Url::parse(url).unwrap(),
        config: json!({}),
        credentials: json!({}),
        signing_secrets: Vec::new(),
    }
}

async fn slack_channel() -> (Receiver<SlackState>, Box<dyn Connector>) {
    let receiver = Receiver::spawn(SlackState::new("T0001", "B0001", SECRET)).await;
    let url = format!("{}{}", receiver.url(), receiver.state.path());
    let connector = slack::build(&settings(IntegrationKind::Slack, &url)).expect("valid settings");
    (receiver, connector)
}

async fn teams_channel() -> (Receiver<TeamsState>, Box<dyn Connector>) {
    let receiver = Receiver::spawn(TeamsState::new("a1b2c3d4e5f6", "SiGnAtUrE-of-the-flow")).await;
    let url = format!("{}{}", receiver.url(), receiver.state.path_and_query());
    let connector = teams::build(&settings(IntegrationKind::Teams, &url)).expect("valid settings");
    (receiver, connector)
}

#[tokio::test]
async fn slack_shows_tenant_severity_steps_and_the_finding_link() {
    let (receiver, slack) = slack_channel().await;
    let opened = event(EventType::FindingOpened, 1);
    assert_eq!(slack.perform(&http(), Action::Send { event: &opened }).await.unwrap(), Outcome::Done);
    let messages = receiver.state.messages();
    assert_eq!(messages.len(), 1);
    let shown = messages[0].all_text();
    assert!(shown.contains("Contoso"), "{shown}");
    assert!(shown.contains("*Severity*\nhigh"), "{shown}");
    assert!(shown.contains("endpoint-reachable"), "{shown}");
    assert!(shown.contains("1. Allow outbound TCP 443"), "{shown}");
    assert!(shown.contains("https://wbd.example/v1/findings/101"), "{shown}");
    assert_eq!(messages[0].blocks[0]["type"], "header");
    let fallback = messages[0].text.clone().unwrap();
    assert!(fallback.contains(&opened.headline()) && fallback.contains("high"), "{fallback}");
}

#[tokio::test]
async fn slack_posts_a_message_for_ticket_actions_too() {
    let (receiver, slack) = slack_channel().await;
    let resolved = event(EventType::FindingResolved, 2);
    let ticket = TicketRef { external_id: "x".into(), url: None };
    slack.perform(&http(), Action::Close { event: &resolved, ticket: &ticket }).await.unwrap();
    let mut ack = event(EventType::FindingAcknowledged, 2);
    ack.data.actor = "alice".into();
    ack.data.note = Some("Firewall change <CHG-42> scheduled".into());
    slack.perform(&http(), Action::Create { event: &ack, key: &key(2) }).await.unwrap();
    let messages = receiver.state.messages();
    assert_eq!(messages.len(), 2);
    assert!(messages[0].all_text().contains(&resolved.headline()));
    assert!(
        messages[1].all_text().contains("&lt;CHG-42&gt; scheduled (alice)"),
        "{}",
        messages[1].all_text()
    );
}

#[tokio::test]
async fn slack_errors_are_what_slack_answers() {
    let (receiver, _) = slack_channel().await;
    let opened = event(EventType::FindingOpened, 3);

    let wrong_secret = format!("{}/services/T0001/B0001/not-the-secret", receiver.url());
    let connector = slack::build(&settings(IntegrationKind::Slack, &wrong_secret)).unwrap();
    let err = connector.perform(&http(), Action::Send { event: &opened }).await.unwrap_err();
    assert!(
        matches!(&err, DeliveryError::Status { status: 403, excerpt, .. } if excerpt == "invalid_token"),
        "{err:?}"
    );

    let removed = format!("{}/services/T0001/B0002/{SECRET}", receiver.url());
    let connector = slack::build(&settings(IntegrationKind::Slack, &removed)).unwrap();
    let err = connector.perform(&http(), Action::Send { event: &opened }).await.unwrap_err();
    assert!(
        matches!(&err, DeliveryError::Status { status: 404, excerpt, .. } if excerpt == "no_service"),
        "{err:?}"
    );

    let (receiver, slack) = slack_channel().await;
    receiver.common().set_faults(Faults { rate_limit_next: 1, retry_after_secs: 30, ..Faults::default() });
    let err = slack.perform(&http(), Action::Send { event: &opened }).await.unwrap_err();
    assert!(
        matches!(err, DeliveryError::Status { status: 429, retry_after: Some(d), .. } if d.as_secs() == 30),
        "{err:?}"
    );

    receiver.state.archive_channel();
    let err = slack.perform(&http(), Action::Send { event: &opened }).await.unwrap_err();
    assert_eq!(err, DeliveryError::Gone { excerpt: "channel_is_archived".into() });
    assert!(receiver.state.messages().is_empty());
}

#[tokio::test]
async fn the_slack_webhook_secret_is_not_in_debug_output_or_errors() {
    let (receiver, _) = slack_channel().await;
    let url = format!("{}{}", receiver.url(), receiver.state.path());
    let s = settings(IntegrationKind::Slack, &url);
    let slack = slack::build(&s).unwrap();
    receiver.common().set_faults(Faults { fail_next: 1, ..Faults::default() });
    let err = slack
        .perform(&http(), Action::Send { event: &event(EventType::FindingOpened, 4) })
        .await
        .unwrap_err();
    let shown = format!("{s:?} {err:?} {err}");
    assert!(!shown.contains(SECRET), "{shown}");
}

#[tokio::test]
async fn teams_posts_an_adaptive_card_with_facts_and_the_finding_link() {
    let (receiver, teams) = teams_channel().await;
    let opened = event(EventType::FindingOpened, 5);
    assert_eq!(teams.perform(&http(), Action::Send { event: &opened }).await.unwrap(), Outcome::Done);
    assert_eq!(receiver.state.failed_runs(), Vec::<String>::new());
    let cards = receiver.state.posted();
    assert_eq!(cards.len(), 1);
    let card = &cards[0];
    assert_eq!(card["version"], "1.4");
    assert_eq!(card["body"][0]["text"], opened.ticket_title());
    let facts =
        card["body"].as_array().unwrap().iter().find(|e| e["type"] == "FactSet").unwrap()["facts"].clone();
    assert!(facts.as_array().unwrap().contains(&json!({"title": "Tenant", "value": "Contoso"})), "{facts}");
    assert!(facts.as_array().unwrap().contains(&json!({"title": "Severity", "value": "high"})), "{facts}");
    assert_eq!(card["actions"][0]["type"], "Action.OpenUrl");
    assert_eq!(card["actions"][0]["url"], "https://wbd.example/v1/findings/105");
    let body = receiver.requests()[0].json();
    assert_eq!(body["type"], "message");
    assert_eq!(body["attachments"][0]["contentType"], "application/vnd.microsoft.card.adaptive");
    assert!(body["attachments"][0]["contentUrl"].is_null());
}

#[tokio::test]
async fn teams_cards_for_events_without_a_finding_still_post() {
    let (receiver, teams) = teams_channel().await;
    let mut test = event(EventType::IntegrationTest, 6);
    test.data.finding = None;
    test.data.tenant = None;
    teams.perform(&http(), Action::Send { event: &test }).await.unwrap();
    assert_eq!(receiver.state.failed_runs(), Vec::<String>::new());
    assert_eq!(receiver.state.posted().len(), 1);
}

#[tokio::test]
async fn teams_errors_are_what_the_flow_answers() {
    let (receiver, _) = teams_channel().await;
    let opened = event(EventType::FindingOpened, 7);
    let wrong = format!(
        "{}/workflows/a1b2c3d4e5f6/triggers/manual/paths/invoke?api-version=2016-06-01&sv=1.0&sig=forged",
        receiver.url()
    );
    let connector = teams::build(&settings(IntegrationKind::Teams, &wrong)).unwrap();
    let err = connector.perform(&http(), Action::Send { event: &opened }).await.unwrap_err();
    assert_eq!(err.status(), Some(401), "{err:?}");

    let gone = format!("{}/workflows/deleted/triggers/manual/paths/invoke?sig=x", receiver.url());
    let connector = teams::build(&settings(IntegrationKind::Teams, &gone)).unwrap();
    let err = connector.perform(&http(), Action::Send { event: &opened }).await.unwrap_err();
    assert_eq!(err.status(), Some(404), "{err:?}");

    let (receiver, teams) = teams_channel().await;
    receiver.common().set_faults(Faults { rate_limit_next: 1, retry_after_secs: 5, ..Faults::default() });
    let err = teams.perform(&http(), Action::Send { event: &opened }).await.unwrap_err();
    assert_eq!(err.retry_after(), Some(std::time::Duration::from_secs(5)));
    assert!(receiver.state.posted().is_empty());
}

#[test]
fn chat_settings_need_a_webhook_url() {
    for kind in [IntegrationKind::Slack, IntegrationKind::Teams] {
        let mut s = settings(kind, "https://hooks.example/");
        s.config = json!("not an object");
        let errors = match kind {
            IntegrationKind::Slack => slack::build(&s).err(),
            _ => teams::build(&s).err(),
        }
        .expect("invalid");
        let fields: Vec<&str> = errors.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(fields, ["config", "url"], "{kind}");
    }
}

#[tokio::test]
async fn slack_quotes_a_persons_note_and_escapes_only_what_they_wrote() {
    let (receiver, slack) = slack_channel().await;
    let mut ack = event(EventType::FindingAcknowledged, 8);
    ack.data.actor = "alice".into();
    ack.data.note = Some("Firewall change <CHG-42>\nscheduled for Friday".into());
    slack.perform(&http(), Action::Send { event: &ack }).await.unwrap();
    let blocks = &receiver.state.messages()[0].blocks;
    let quoted: Vec<&str> = blocks.iter().filter_map(|b| b["text"]["text"].as_str()).collect();
    assert!(
        quoted.contains(&"> Firewall change &lt;CHG-42&gt;\n> scheduled for Friday (alice)"),
        "{quoted:?}"
    );
}

#[tokio::test]
async fn slack_cuts_long_texts_between_entities() {
    let (receiver, slack) = slack_channel().await;
    let mut opened = event(EventType::FindingOpened, 9);
    if let Some(f) = opened.data.finding.as_mut() {
        f.summary = "&".repeat(1000);
        f.title = "<!channel> R&D".into();
    }
    slack.perform(&http(), Action::Send { event: &opened }).await.unwrap();
    let message = &receiver.state.messages()[0];
    let intro = message.blocks[1]["text"]["text"].as_str().unwrap();
    assert!(intro.chars().count() <= 3000);
    let kept = intro.strip_suffix('…').expect("cut");
    assert!(kept.ends_with("&amp;"), "an entity was split: …{}", &kept[kept.len() - 8..]);
    let fallback = message.text.clone().unwrap();
    assert!(fallback.contains("&lt;!channel&gt; R&amp;D"), "the fallback is mrkdwn too: {fallback}");
}

#[tokio::test]
async fn teams_breaks_a_notes_lines_and_lists_the_steps() {
    let (receiver, teams) = teams_channel().await;
    let mut opened = event(EventType::FindingOpened, 10);
    opened.data.actor = "alice".into();
    opened.data.note = Some("Firewall change\nscheduled for Friday".into());
    teams.perform(&http(), Action::Send { event: &opened }).await.unwrap();
    let card = &receiver.state.posted()[0];
    let texts: Vec<&str> =
        card["body"].as_array().unwrap().iter().filter_map(|e| e["text"].as_str()).collect();
    // Teams shows a single `\n` outside a list as a space: a line break takes `\n\n`.
    assert!(texts.contains(&"Firewall change\n\nscheduled for Friday (alice)"), "{texts:?}");
    // Items of a Markdown list are separated by `\r`, as Microsoft's card docs write lists.
    assert!(
        texts.contains(
            &"1. Allow outbound TCP 443 to *.servicebus.windows.net.\r2. Re-test from the finding."
        ),
        "{texts:?}"
    );
}
