//! Slack incoming webhook: one message per event.
//!
//! `POST <webhook URL>` with `{"text": <fallback>, "blocks": [...]}` (Block Kit): a header with
//! the ticket title, the headline and finding summary, fields for tenant, severity, rule and
//! status, the remediation steps, the note of the person who acted, and a button to the finding.
//! `text` is what notifications and screen readers show. Slack answers `200 ok` as text/plain,
//! or an error code as text: `400 invalid_payload`, `403 invalid_token` / `action_prohibited`,
//! `404 no_service` / `channel_not_found`, `410 channel_is_archived` (the integration is then
//! disabled), `429` with `Retry-After`.
//!
//! Slack keeps no tickets: every action the engine asks for (normally `Send`) posts a message
//! about its event.
//!
//! Settings:
//! - `url`: the webhook URL, `https://hooks.slack.com/services/T…/B…/…`, made by a Slack app's
//!   "Incoming Webhooks" feature for one channel. The URL is the credential: it is stored
//!   encrypted and its path never appears in attempt logs.

use async_trait::async_trait;
use serde_json::{Value, json};
use url::Url;

use super::Fields;
use crate::connector::{
    Action, ConfigError, Connector, ConnectorSettings, DeliveryError, Http, IntegrationKind, Outcome,
};
use crate::event::{Event, truncate};

pub fn build(settings: &ConnectorSettings) -> Result<Box<dyn Connector>, Vec<ConfigError>> {
    let mut errors = Vec::new();
    Fields::new("config", &settings.config, &mut errors);
    if !matches!(settings.url.scheme(), "https" | "http")
        || settings.url.host().is_none()
        || settings.url.path().trim_matches('/').is_empty()
    {
        errors.push(ConfigError::new(
            "url",
            "must be the webhook URL Slack shows, https://hooks.slack.com/services/…",
        ));
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    Ok(Box::new(Slack { webhook: settings.url.clone() }))
}

struct Slack {
    webhook: Url,
}

impl std::fmt::Debug for Slack {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Slack").field("webhook", &"<secret>").finish()
    }
}

/// Text safe inside Slack `mrkdwn` (Slack's three control characters escaped).
fn escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

/// Cuts escaped mrkdwn to `max` characters (Slack counts them as sent) like [`truncate`], but
/// never inside an entity: a cut `&amp;` would show as `&am`.
fn cut(escaped: &str, max: usize) -> String {
    if escaped.chars().count() <= max {
        return escaped.to_owned();
    }
    let mut kept: String = escaped.chars().take(max.saturating_sub(1)).collect();
    // Every `&` of escaped text starts an entity; one without its `;` was cut.
    if let Some(at) = kept.rfind('&')
        && !kept[at..].contains(';')
    {
        kept.truncate(at);
    }
    kept.push('…');
    kept
}

/// `text` escaped and cut to `max`, as a mrkdwn text object.
fn mrkdwn(text: &str, max: usize) -> Value {
    escaped_mrkdwn(&escape(text), max)
}

fn escaped_mrkdwn(escaped: &str, max: usize) -> Value {
    json!({"type": "mrkdwn", "text": cut(escaped, max)})
}

/// A person's note as a mrkdwn block quote: Slack quotes lines starting with a literal `>`, so
/// only the note itself is escaped, and every line gets its marker.
fn quote(note: &str, by: &str) -> String {
    let mut quoted: Vec<String> = note.lines().map(|line| format!("> {}", escape(line))).collect();
    if quoted.is_empty() {
        quoted.push(">".to_owned());
    }
    if let Some(last) = quoted.last_mut() {
        last.push_str(&escape(by));
    }
    quoted.join("\n")
}

/// The Block Kit message for `event`.
pub(crate) fn message(event: &Event) -> Value {
    let tenant = event.data.tenant.as_ref().map(|t| t.name.as_str()).unwrap_or("all tenants");
    let mut blocks = vec![json!({
        "type": "header",
        "text": {"type": "plain_text", "text": truncate(&event.ticket_title(), 150), "emoji": false},
    })];
    let finding = event.data.finding.as_ref();
    let mut intro = format!("*{}*", escape(&event.headline()));
    if let Some(f) = finding {
        intro.push('\n');
        intro.push_str(&escape(&f.summary));
    }
    blocks.push(json!({"type": "section", "text": escaped_mrkdwn(&intro, 3000)}));
    let mut fields = vec![mrkdwn(&format!("*Tenant*\n{tenant}"), 2000)];
    if let Some(f) = finding {
        fields.push(mrkdwn(&format!("*Severity*\n{}", f.severity), 2000));
        fields.push(mrkdwn(&format!("*Rule*\n{}", f.rule_id), 2000));
        fields.push(mrkdwn(&format!("*Subject*\n{}", f.subject), 2000));
        fields.push(mrkdwn(&format!("*Status*\n{}", f.status), 2000));
    }
    if !event.data.affected_tenants.is_empty() {
        let names: Vec<&str> = event.data.affected_tenants.iter().map(|t| t.name.as_str()).collect();
        fields.push(mrkdwn(&format!("*Affected tenants*\n{}", names.join(", ")), 2000));
    }
    blocks.push(json!({"type": "section", "fields": fields}));
    if let Some(f) = finding.filter(|f| !f.remediation.is_empty() && event.event_type.is_problem()) {
        let steps: Vec<String> =
            f.remediation.iter().enumerate().map(|(i, s)| format!("{}. {s}", i + 1)).collect();
        blocks.push(json!({
            "type": "section",
            "text": mrkdwn(&format!("*What to do*\n{}", steps.join("\n")), 3000),
        }));
    }
    if let Some(note) = &event.data.note {
        let by =
            if event.data.actor == "system" { String::new() } else { format!(" ({})", event.data.actor) };
        blocks.push(json!({"type": "section", "text": escaped_mrkdwn(&quote(note, &by), 3000)}));
    }
    blocks.push(json!({
        "type": "context",
        "elements": [mrkdwn(&format!("{} · event {} · Writeback Doctor", event.event_type, event.id), 2000)],
    }));
    if let Some(url) = finding.and_then(|f| f.url.as_deref()).filter(|u| u.len() <= 3000) {
        blocks.push(json!({
            "type": "actions",
            "elements": [{
                "type": "button",
                "text": {"type": "plain_text", "text": "Open finding"},
                "url": url,
                "action_id": "open_finding",
            }],
        }));
    }
    let mut fallback = format!("{} ({tenant}", event.headline());
    if let Some(f) = finding {
        fallback.push_str(&format!(", severity {}", f.severity));
    }
    fallback.push(')');
    // `text` is mrkdwn too: unescaped, a `<!channel>` in a title would notify the channel.
    json!({"text": cut(&escape(&fallback), 3000), "blocks": blocks})
}

#[async_trait]
impl Connector for Slack {
    fn kind(&self) -> IntegrationKind {
        IntegrationKind::Slack
    }

    fn destinations(&self) -> Vec<Url> {
        vec![self.webhook.clone()]
    }

    #[tracing::instrument(skip_all, fields(action = action.name()))]
    async fn perform(&self, http: &Http, action: Action<'_>) -> Result<Outcome, DeliveryError> {
        let request = http.client().post(self.webhook.clone()).json(&message(action.event()));
        let answer = http.send(request).await?;
        // Slack says "ok"; anything else in a 2xx means the message may not have been posted.
        let text = String::from_utf8_lossy(&answer.body);
        if text.trim() != "ok" {
            return Err(DeliveryError::Protocol(format!(
                "Slack answered {:?} instead of ok",
                truncate(text.trim(), 80)
            )));
        }
        Ok(Outcome::Done)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::EventType;
    use crate::event::tests::sample;

    #[test]
    fn messages_escape_slack_control_characters() {
        let mut e = sample(EventType::FindingOpened);
        if let Some(f) = e.data.finding.as_mut() {
            f.summary = "a <b> & c".into();
        }
        let body = message(&e).to_string();
        assert!(body.contains("a &lt;b&gt; &amp; c"), "{body}");
    }

    #[test]
    fn cuts_never_split_an_entity() {
        assert_eq!(cut("a&amp;b", 10), "a&amp;b");
        assert_eq!(cut("abc&amp;def", 6), "abc…");
        assert_eq!(cut("abc&amp;def", 9), "abc&amp;…");
        assert_eq!(cut("&lt;&lt;", 5), "&lt;…");
    }
}
