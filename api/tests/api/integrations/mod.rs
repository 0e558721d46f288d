//! Integrations and their deliveries through the API: what is saved is checked in full and kept
//! secret, destinations are checked against the network policy, other organisations see nothing,
//! read-only keys change nothing, tests are queued, failed deliveries replayed, and findings show
//! their tickets.
//!
//! The delivery engine is off in these servers: deliveries stay as the test leaves them, and a
//! test plays the engine's part through the store where it needs an attempt.

mod access;
mod changes;
mod deliveries;
mod saving;
mod tickets;

use std::time::Duration;

use chrono::Utc;
use reqwest::StatusCode;
use serde_json::{Value, json};
use wbd_store::{AttemptRecord, OrgId, OrgScope};

use crate::helpers::*;

pub(crate) const SLACK_URL: &str = "https://hooks.slack.com/services/T0001/B0001/slacksecretpath123";
pub(crate) const JIRA_TOKEN: &str = "jira-token-s3cret";

/// A server whose delivery engine does not run; `tweak` adjusts its settings further.
pub(crate) async fn spawn_quiet_app(tweak: impl FnOnce(&mut wbd_platform::Settings)) -> TestApp {
    spawn_app_with(|s| {
        s.delivery.enabled = false;
        tweak(s);
    })
    .await
}

pub(crate) fn webhook() -> Value {
    json!({ "name": "Our receiver", "kind": "webhook", "url": "https://receiver.example.com/hooks" })
}

pub(crate) fn slack() -> Value {
    json!({ "name": "#alerts", "kind": "slack", "url": SLACK_URL })
}

pub(crate) fn jira() -> Value {
    json!({
        "name": "Service desk",
        "kind": "jira",
        "url": "https://contoso.atlassian.net",
        "config": { "email": "bot@contoso.example", "project_key": "WBD" },
        "credentials": { "api_token": JIRA_TOKEN },
    })
}

impl TestApp {
    pub(crate) async fn add_integration(&self, token: &str, body: &Value) -> Value {
        let res = self.post(token, "/v1/integrations", body).await;
        assert_eq!(res.status(), StatusCode::CREATED, "{}", res.text().await.unwrap_or_default());
        res.json().await.unwrap()
    }

    pub(crate) async fn integrations(&self, token: &str) -> Vec<Value> {
        let res = self.get(token, "/v1/integrations").await;
        assert_eq!(res.status(), StatusCode::OK);
        res.json().await.unwrap()
    }

    pub(crate) async fn integration(&self, token: &str, id: &str) -> Value {
        let res = self.get(token, &format!("/v1/integrations/{id}")).await;
        assert_eq!(res.status(), StatusCode::OK);
        res.json().await.unwrap()
    }

    pub(crate) async fn test_integration(&self, token: &str, id: &str) -> Value {
        let res = self.post(token, &format!("/v1/integrations/{id}/test"), &json!({})).await;
        assert_eq!(res.status(), StatusCode::ACCEPTED, "{}", res.text().await.unwrap_or_default());
        res.json().await.unwrap()
    }

    pub(crate) async fn delivery(&self, token: &str, id: &str) -> Value {
        let res = self.get(token, &format!("/v1/deliveries/{id}")).await;
        assert_eq!(res.status(), StatusCode::OK);
        res.json().await.unwrap()
    }

    /// Plays the engine: every due delivery gets one failed attempt, its last.
    pub(crate) async fn fail_due_deliveries(&self) -> usize {
        let now = Utc::now();
        let claimed = self.store.claim_deliveries(50, Duration::from_secs(60), now).await.unwrap();
        for c in &claimed {
            let record = AttemptRecord {
                lease_id: c.lease_id,
                at: now,
                succeeded: false,
                status: Some(503),
                latency_ms: 12,
                error: Some("HTTP 503".into()),
                response_excerpt: Some("down for maintenance".into()),
                exchanges: json!([{ "request": "POST https://receiver.example.com/hooks", "status": 503 }]),
                retry_at: None,
                ticket: None,
                finding_open: None,
                throttle_until: None,
            };
            assert!(self.store.complete_attempt(&c.delivery, &record).await.unwrap());
        }
        claimed.len()
    }
}

pub(crate) fn id_of(v: &Value) -> String {
    v["id"].as_str().expect("id").to_owned()
}

/// The fields a 422 lists.
pub(crate) fn fields(problem: &Value) -> Vec<String> {
    problem["errors"]
        .as_array()
        .expect("errors")
        .iter()
        .map(|e| e["field"].as_str().expect("field").to_owned())
        .collect()
}

pub(crate) fn halo() -> Value {
    json!({
        "name": "Halo",
        "kind": "halopsa",
        "url": "https://contoso.halopsa.com",
        "credentials": { "client_id": "halo-client", "client_secret": "halo-s3cret" },
    })
}

/// What the store holds for an integration, for "nothing changed".
pub(crate) async fn stored_row(app: &TestApp, org: &Org, id: &str) -> wbd_store::Integration {
    let scope = OrgScope { org_id: OrgId(org.id) };
    app.store.get_integration(scope, id.parse().unwrap()).await.unwrap().expect("stored")
}
