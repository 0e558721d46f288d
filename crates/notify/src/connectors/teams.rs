//! Microsoft Teams through a Workflows (Power Automate) webhook: one card per event.
//!
//! The Office 365 connectors' incoming webhooks are retired; their successor is a flow built on
//! the trigger "When a Teams webhook request is received" (Teams → Workflows → "Post to a
//! channel when a webhook request is received"). That flow accepts the message shape the old
//! connectors took and posts each attachment's Adaptive Card:
//! `{"type": "message", "attachments": [{"contentType": "application/vnd.microsoft.card.adaptive",
//! "contentUrl": null, "content": <AdaptiveCard 1.4>}]}`. Workflows support Adaptive Cards only,
//! not the old MessageCard format. The card has the title, the headline and summary as
//! TextBlocks, a FactSet (tenant, severity, rule, subject, status), the remediation steps, the
//! note of the person who acted, and an `Action.OpenUrl` to the finding.
//!
//! The flow answers `202 Accepted` once the run is queued; a card the flow cannot post fails
//! the run, not the request, so the card is kept to what Teams renders everywhere (1.4).
//! `401` means the URL's signature (`sig`) is wrong, `404` that the flow is gone; `429` comes
//! with `Retry-After`.
//!
//! Teams keeps no tickets: every action the engine asks for (normally `Send`) posts a card
//! about its event.
//!
//! Settings:
//! - `url`: the flow's HTTP URL, shown when the trigger is saved
//!   (`https://….logic.azure.com/workflows/…/triggers/manual/paths/invoke?api-version=…&sig=…`
//!   or `https://….environment.api.powerplatform.com/powerautomate/automations/direct/…`). The
//!   `sig` query parameter is the credential: the URL is stored encrypted and redacted in logs.

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
        errors
            .push(ConfigError::new("url", "must be the HTTP URL the Teams workflow's webhook trigger shows"));
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    Ok(Box::new(Teams { webhook: settings.url.clone() }))
}

struct Teams {
    webhook: Url,
}

impl std::fmt::Debug for Teams {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Teams").field("webhook", &"<secret>").finish()
    }
}

fn text_block(text: &str) -> Value {
    json!({"type": "TextBlock", "text": truncate(&line_breaks(text), 4000), "wrap": true})
}

/// Teams keeps a TextBlock's single `\n` as a space outside lists; a break elsewhere takes
/// `\n\n` ("Format cards in Teams", Adaptive Card line breaks).
fn line_breaks(text: &str) -> String {
    text.lines().collect::<Vec<_>>().join("\n\n")
}

/// The Adaptive Card for `event`.
pub(crate) fn card(event: &Event) -> Value {
    let tenant = event.data.tenant.as_ref().map(|t| t.name.as_str()).unwrap_or("all tenants");
    let finding = event.data.finding.as_ref();
    let color = if event.event_type.is_problem() {
        "Attention"
    } else if event.event_type.is_recovery() {
        "Good"
    } else {
        "Default"
    };
    let mut body = vec![
        json!({"type": "TextBlock", "text": event.ticket_title(), "weight": "Bolder", "size": "Medium", "wrap": true}),
        json!({"type": "TextBlock", "text": event.headline(), "color": color, "wrap": true}),
    ];
    let mut facts = vec![json!({"title": "Tenant", "value": tenant})];
    if let Some(f) = finding {
        body.push(text_block(&f.summary));
        facts.push(json!({"title": "Severity", "value": f.severity}));
        facts.push(json!({"title": "Rule", "value": f.rule_id}));
        facts.push(json!({"title": "Subject", "value": f.subject}));
        facts.push(json!({"title": "Status", "value": f.status}));
    }
    if !event.data.affected_tenants.is_empty() {
        let names: Vec<&str> = event.data.affected_tenants.iter().map(|t| t.name.as_str()).collect();
        facts.push(json!({"title": "Affected tenants", "value": names.join(", ")}));
    }
    body.push(json!({"type": "FactSet", "facts": facts}));
    if let Some(f) = finding.filter(|f| !f.remediation.is_empty() && event.event_type.is_problem()) {
        body.push(json!({"type": "TextBlock", "text": "What to do", "weight": "Bolder", "wrap": true}));
        // A Markdown numbered list: items are separated by `\r` (or `\n`), as both the Adaptive
        // Cards and the Teams formatting docs write lists; `\n\n` would indent the next item, and
        // a step's own line breaks would end the list, so they become spaces.
        let steps: Vec<String> = f
            .remediation
            .iter()
            .enumerate()
            .map(|(i, s)| format!("{}. {}", i + 1, s.split_whitespace().collect::<Vec<_>>().join(" ")))
            .collect();
        body.push(json!({"type": "TextBlock", "text": truncate(&steps.join("\r"), 4000), "wrap": true}));
    }
    if let Some(note) = &event.data.note {
        let by =
            if event.data.actor == "system" { String::new() } else { format!(" ({})", event.data.actor) };
        let text = truncate(&line_breaks(&format!("{note}{by}")), 4000);
        body.push(json!({"type": "TextBlock", "text": text, "wrap": true, "isSubtle": true}));
    }
    body.push(json!({
        "type": "TextBlock",
        "text": format!("{} · event {} · Writeback Doctor", event.event_type, event.id),
        "size": "Small",
        "isSubtle": true,
        "wrap": true,
    }));
    let mut content = json!({
        "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
        "type": "AdaptiveCard",
        "version": "1.4",
        "body": body,
        "msteams": {"width": "Full"},
    });
    if let Some(url) = finding.and_then(|f| f.url.as_deref()) {
        content["actions"] = json!([{"type": "Action.OpenUrl", "title": "Open finding", "url": url}]);
    }
    json!({
        "type": "message",
        "attachments": [{
            "contentType": "application/vnd.microsoft.card.adaptive",
            "contentUrl": null,
            "content": content,
        }],
    })
}

#[async_trait]
impl Connector for Teams {
    fn kind(&self) -> IntegrationKind {
        IntegrationKind::Teams
    }

    fn destinations(&self) -> Vec<Url> {
        vec![self.webhook.clone()]
    }

    #[tracing::instrument(skip_all, fields(action = action.name()))]
    async fn perform(&self, http: &Http, action: Action<'_>) -> Result<Outcome, DeliveryError> {
        http.send(http.client().post(self.webhook.clone()).json(&card(action.event()))).await?;
        Ok(Outcome::Done)
    }
}
