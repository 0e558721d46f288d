//! Generic webhook: every event is POSTed to one endpoint, signed per Standard Webhooks.
//!
//! The body is the event's JSON ([`crate::event::Event`]: `{"type", "timestamp", "data"}`),
//! with `webhook-id` (stable across retries, for the receiver's de-duplication),
//! `webhook-timestamp` (this attempt, in unix seconds, against replays) and
//! `webhook-signature` (one `v1` signature per secret: two during a rotation).
//!
//! Settings:
//! - `url`: the endpoint.
//! - `signing_secrets`: the `whsec_…` secrets, newest first; at least one.
//!
//! A webhook keeps no ticket: every action delivers the event as a message, except
//! [`Action::Find`], which has nothing to look up.

use async_trait::async_trait;
use chrono::Utc;
use reqwest::header::CONTENT_TYPE;
use url::Url;

use crate::connector::{
    Action, ConfigError, Connector, ConnectorSettings, DeliveryError, Http, IntegrationKind, Outcome,
};
use crate::signing::{SigningSecret, signature_header};

pub fn build(settings: &ConnectorSettings) -> Result<Box<dyn Connector>, Vec<ConfigError>> {
    let mut errors = Vec::new();
    let url = &settings.url;
    if !matches!(url.scheme(), "https" | "http") || url.host().is_none() {
        errors.push(ConfigError::new("url", "must be the endpoint's https:// address"));
    }
    if settings.signing_secrets.is_empty() {
        errors.push(ConfigError::new("signing_secrets", "at least one signing secret is required"));
    }
    let mut secrets = Vec::with_capacity(settings.signing_secrets.len());
    for (i, text) in settings.signing_secrets.iter().enumerate() {
        match SigningSecret::parse(text) {
            Ok(secret) => secrets.push(secret),
            Err(why) => errors.push(ConfigError::new("signing_secrets", format!("secret {}: {why}", i + 1))),
        }
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    Ok(Box::new(Webhook { url: url.clone(), secrets }))
}

/// A configured webhook endpoint.
pub struct Webhook {
    url: Url,
    /// Newest first.
    secrets: Vec<SigningSecret>,
}

impl Webhook {
    async fn deliver(&self, http: &Http, action: &Action<'_>) -> Result<(), DeliveryError> {
        let event = action.event();
        let body = serde_json::to_vec(event)
            .map_err(|e| DeliveryError::Protocol(format!("cannot serialise the event: {e}")))?;
        let msg_id = event.message_id();
        // The attempt's time, not the event's: receivers reject stale timestamps (replays).
        let timestamp = Utc::now().timestamp();
        let signature = signature_header(&msg_id, timestamp, &body, &self.secrets);
        let request = http
            .client()
            .post(self.url.clone())
            .header(CONTENT_TYPE, "application/json")
            .header("webhook-id", msg_id)
            .header("webhook-timestamp", timestamp.to_string())
            .header("webhook-signature", signature)
            .body(body);
        http.send(request).await.map(drop)
    }
}

#[async_trait]
impl Connector for Webhook {
    fn kind(&self) -> IntegrationKind {
        IntegrationKind::Webhook
    }

    fn destinations(&self) -> Vec<Url> {
        vec![self.url.clone()]
    }

    #[tracing::instrument(skip_all, fields(action = action.name(), event_id = %action.event().id))]
    async fn perform(&self, http: &Http, action: Action<'_>) -> Result<Outcome, DeliveryError> {
        match action {
            // A lookup must not deliver: that would duplicate the message the engine sends
            // with the `Create` that follows.
            Action::Find { .. } => Ok(Outcome::NotFound),
            // The engine sends `Send` to message destinations; anything else is delivered the
            // same way rather than dropped.
            _ => {
                self.deliver(http, &action).await?;
                Ok(Outcome::Done)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn settings(secrets: &[&str]) -> ConnectorSettings {
        ConnectorSettings {
            kind: IntegrationKind::Webhook,
            url: Url::parse("https://hooks.example.com/wbd").unwrap(),
            config: json!({}),
            credentials: json!({}),
            signing_secrets: secrets.iter().map(|s| (*s).to_owned()).collect(),
        }
    }

    #[test]
    fn needs_at_least_one_valid_secret() {
        let errors = build(&settings(&[])).err().unwrap();
        assert_eq!(errors[0].field, "signing_secrets");
        let good = SigningSecret::generate().to_whsec();
        let errors = build(&settings(&[&good, "whsec_!!"])).err().unwrap();
        assert_eq!(errors.len(), 1);
        assert_eq!(errors[0].field, "signing_secrets");
        assert!(errors[0].message.starts_with("secret 2:"), "{}", errors[0].message);
        let webhook = build(&settings(&[&good])).unwrap();
        assert_eq!(webhook.kind(), IntegrationKind::Webhook);
        assert_eq!(webhook.destinations(), vec![Url::parse("https://hooks.example.com/wbd").unwrap()]);
    }

    #[test]
    fn refuses_other_schemes() {
        let mut s = settings(&[&SigningSecret::generate().to_whsec()]);
        s.url = Url::parse("ftp://hooks.example.com/").unwrap();
        assert_eq!(build(&s).err().unwrap()[0].field, "url");
    }
}
