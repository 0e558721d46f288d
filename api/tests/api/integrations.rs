//! Integrations and their deliveries through the API: what is saved is checked in full and kept
//! secret, destinations are checked against the network policy, other organisations see nothing,
//! read-only keys change nothing, tests are queued, failed deliveries replayed, and findings show
//! their tickets.
//!
//! The delivery engine is off in these servers: deliveries stay as the test leaves them, and a
//! test plays the engine's part through the store where it needs an attempt.

use std::time::Duration;

use chrono::Utc;
use reqwest::StatusCode;
use serde_json::{Value, json};
use uuid::Uuid;
use wbd_store::{
    AttemptRecord, FindingId, NewDelivery, OrgId, OrgScope, TenantId, TicketState, TicketUpdate,
};

use crate::helpers::*;

const SLACK_URL: &str = "https://hooks.slack.com/services/T0001/B0001/slacksecretpath123";
const JIRA_TOKEN: &str = "jira-token-s3cret";

/// A server whose delivery engine does not run; `tweak` adjusts its settings further.
async fn spawn_quiet_app(tweak: impl FnOnce(&mut wbd_platform::Settings)) -> TestApp {
    spawn_app_with(|s| {
        s.delivery.enabled = false;
        tweak(s);
    })
    .await
}

fn webhook() -> Value {
    json!({ "name": "Our receiver", "kind": "webhook", "url": "https://receiver.example.com/hooks" })
}

fn slack() -> Value {
    json!({ "name": "#alerts", "kind": "slack", "url": SLACK_URL })
}

fn jira() -> Value {
    json!({
        "name": "Service desk",
        "kind": "jira",
        "url": "https://contoso.atlassian.net",
        "config": { "email": "bot@contoso.example", "project_key": "WBD" },
        "credentials": { "api_token": JIRA_TOKEN },
    })
}

impl TestApp {
    async fn add_integration(&self, token: &str, body: &Value) -> Value {
        let res = self.post(token, "/v1/integrations", body).await;
        assert_eq!(res.status(), StatusCode::CREATED, "{}", res.text().await.unwrap_or_default());
        res.json().await.unwrap()
    }

    async fn integrations(&self, token: &str) -> Vec<Value> {
        let res = self.get(token, "/v1/integrations").await;
        assert_eq!(res.status(), StatusCode::OK);
        res.json().await.unwrap()
    }

    async fn integration(&self, token: &str, id: &str) -> Value {
        let res = self.get(token, &format!("/v1/integrations/{id}")).await;
        assert_eq!(res.status(), StatusCode::OK);
        res.json().await.unwrap()
    }

    async fn test_integration(&self, token: &str, id: &str) -> Value {
        let res = self.post(token, &format!("/v1/integrations/{id}/test"), &json!({})).await;
        assert_eq!(res.status(), StatusCode::ACCEPTED, "{}", res.text().await.unwrap_or_default());
        res.json().await.unwrap()
    }

    async fn delivery(&self, token: &str, id: &str) -> Value {
        let res = self.get(token, &format!("/v1/deliveries/{id}")).await;
        assert_eq!(res.status(), StatusCode::OK);
        res.json().await.unwrap()
    }

    /// Plays the engine: every due delivery gets one failed attempt, its last.
    async fn fail_due_deliveries(&self) -> usize {
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

fn id_of(v: &Value) -> String {
    v["id"].as_str().expect("id").to_owned()
}

/// The fields a 422 lists.
fn fields(problem: &Value) -> Vec<String> {
    problem["errors"]
        .as_array()
        .expect("errors")
        .iter()
        .map(|e| e["field"].as_str().expect("field").to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhook_slack_and_jira_are_saved_and_never_show_a_secret_again() {
    let app = spawn_quiet_app(|_| {}).await;
    let org = app.bootstrap_org("MSP").await;

    let hook = app.add_integration(&org.token, &webhook()).await;
    let secret = hook["signing_secret"].as_str().expect("the webhook's secret, once").to_owned();
    assert!(secret.starts_with("whsec_"), "{secret}");
    assert_eq!(hook["signing_secret_count"], 1);
    assert_eq!(hook["url"], "https://receiver.example.com/hooks");
    assert_eq!(hook["enabled"], true);
    assert_eq!(hook["max_in_flight"], 8, "the kind's default");

    let chat = app.add_integration(&org.token, &slack()).await;
    assert_eq!(chat["url"], "https://hooks.slack.com/…", "a secret URL shows its origin only");
    assert!(chat.get("signing_secret").is_none() && chat.get("signing_secret_count").is_none());
    assert_eq!(chat["hourly_budget"], 1800);

    let desk = app.add_integration(&org.token, &jira()).await;
    assert_eq!(desk["credentials_set"], json!(["api_token"]));
    assert_eq!(desk["config"]["project_key"], "WBD");
    assert_eq!(desk["routing"], "per_tenant");

    let got = app.integration(&org.token, &id_of(&hook)).await;
    assert!(got.get("signing_secret").is_none(), "shown once only: {got:#}");
    assert_eq!(got["signing_secret_count"], 1);
    assert_eq!(app.integration(&org.token, &id_of(&chat)).await["url"], "https://hooks.slack.com/…");
    assert_eq!(app.integrations(&org.token).await.len(), 3);

    // No secret in any answer, nor in the audit log.
    let no_secret = |text: &str, what: &str| {
        for secret in [secret.as_str(), "whsec_", "slacksecretpath123", "/services/", JIRA_TOKEN] {
            assert!(!text.contains(secret), "{what} shows {secret:?}: {text}");
        }
    };
    for path in [
        "/v1/integrations".to_owned(),
        format!("/v1/integrations/{}", id_of(&hook)),
        format!("/v1/integrations/{}", id_of(&chat)),
        format!("/v1/integrations/{}", id_of(&desk)),
        "/v1/audit-log".to_owned(),
    ] {
        let text = app.get(&org.token, &path).await.text().await.unwrap();
        no_secret(&text, &path);
    }
    // At rest, the secrets are sealed; a secret URL is not in the row.
    let org_scope = OrgScope { org_id: OrgId(org.id) };
    for row in app.store.list_integrations(org_scope).await.unwrap() {
        let sealed = String::from_utf8_lossy(&row.secrets).into_owned();
        no_secret(&sealed, "the sealed secrets");
        no_secret(&row.config.to_string(), "the config");
    }
    let chat_row =
        app.store.get_integration(org_scope, id_of(&chat).parse().unwrap()).await.unwrap().unwrap();
    assert_eq!(chat_row.url, None);

    let audit: Value = app.get(&org.token, "/v1/audit-log").await.json().await.unwrap();
    let actions: Vec<&str> =
        audit["items"].as_array().unwrap().iter().map(|e| e["action"].as_str().unwrap()).collect();
    assert_eq!(actions, ["integration.create"; 3]);
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotated_webhook_secret_stays_valid_beside_the_new_one_for_a_while() {
    let app = spawn_quiet_app(|_| {}).await;
    let org = app.bootstrap_org("MSP").await;
    let hook = app.add_integration(&org.token, &webhook()).await;
    let id = id_of(&hook);
    let rotate = |body: Option<Value>| {
        let req =
            app.client.post(app.url(&format!("/v1/integrations/{id}/rotate-secret"))).bearer_auth(&org.token);
        let req = match body {
            Some(body) => req.json(&body),
            None => req,
        };
        async move { req.send().await.unwrap() }
    };

    let res = rotate(None).await;
    assert_eq!(res.status(), StatusCode::OK);
    let rotated: Value = res.json().await.unwrap();
    let new_secret = rotated["signing_secret"].as_str().unwrap();
    assert!(new_secret.starts_with("whsec_") && new_secret != hook["signing_secret"].as_str().unwrap());
    assert_eq!(rotated["signing_secret_count"], 2, "new and previous sign during the rotation");
    assert_eq!(app.integration(&org.token, &id).await["signing_secret_count"], 2);

    // The previous secrets may be dropped at once.
    let res = rotate(Some(json!({ "previous_valid_for_secs": 0 }))).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.json::<Value>().await.unwrap()["signing_secret_count"], 1);

    let res = rotate(Some(json!({ "previous_valid_for_secs": 8 * 24 * 3600 }))).await;
    let p = problem(res, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").await;
    assert_eq!(fields(&p), ["previous_valid_for_secs"]);

    let chat = app.add_integration(&org.token, &slack()).await;
    let res =
        app.post(&org.token, &format!("/v1/integrations/{}/rotate-secret", id_of(&chat)), &json!({})).await;
    problem(res, StatusCode::CONFLICT, "integration_not_signed").await;
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_problem_of_an_integration_is_listed_and_nothing_is_stored() {
    let app = spawn_quiet_app(|_| {}).await;
    let org = app.bootstrap_org("MSP").await;
    let other = app.bootstrap_org("Other MSP").await;
    let own_tenant = app.create_tenant(&org, "Contoso").await;
    let foreign_tenant = app.create_tenant(&other, "Fabrikam").await;

    let cases: Vec<(Value, Vec<&str>)> = vec![
        (json!({}), vec!["name", "kind", "url"]),
        (
            json!({ "name": "x".repeat(101), "kind": "webhook", "url": "https://r.example.com/" }),
            vec!["name"],
        ),
        (
            json!({ "name": "Pigeon", "kind": "carrier-pigeon", "url": "https://r.example.com/" }),
            vec!["kind"],
        ),
        (json!({ "name": "Hook", "kind": "webhook", "url": "ftp://r.example.com/" }), vec!["url"]),
        (json!({ "name": "Hook", "kind": "webhook", "url": "not a url" }), vec!["url"]),
        (
            json!({ "name": "Desk", "kind": "jira", "url": "https://contoso.atlassian.net" }),
            vec!["config.email", "config.project_key", "credentials.api_token"],
        ),
        (
            json!({ "name": "Desk", "kind": "jira", "url": "https://contoso.atlassian.net",
                    "config": "board 7", "credentials": ["token"] }),
            vec!["config", "credentials"],
        ),
        (
            json!({ "name": "Hook", "kind": "webhook", "url": "https://r.example.com/", "filter": {
                "tenant_ids": [own_tenant, foreign_tenant],
                "severities": ["high", "urgent"],
                "rule_ids": ["endpoint-reachable", "no-such-rule"],
                "event_types": ["finding.opened", "finding.exploded"],
            }}),
            vec![
                "filter.tenant_ids[1]",
                "filter.severities[1]",
                "filter.rule_ids[1]",
                "filter.event_types[1]",
            ],
        ),
        (
            json!({ "name": "Hook", "kind": "webhook", "url": "https://r.example.com/",
                    "routing": "sometimes", "max_in_flight": 0, "hourly_budget": 0 }),
            vec!["routing", "max_in_flight", "hourly_budget"],
        ),
        (
            json!({ "name": "Hook", "kind": "webhook", "url": "https://r.example.com/", "max_in_flight": 65 }),
            vec!["max_in_flight"],
        ),
        (
            json!({ "name": "Pager", "kind": "pagerduty", "credentials": { "routing_key": "short" } }),
            vec!["credentials.routing_key"],
        ),
    ];
    for (body, expected) in cases {
        let res = app.post(&org.token, "/v1/integrations", &body).await;
        let p = problem(res, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").await;
        assert_eq!(fields(&p), expected, "{body:#} → {p:#}");
        assert!(p["errors"][0]["detail"].is_string());
    }
    // The foreign tenant is named as unknown, like any id that is not the organisation's.
    let res = app
        .post(
            &org.token,
            "/v1/integrations",
            &json!({ "name": "Hook", "kind": "webhook", "url": "https://r.example.com/",
                     "filter": { "tenant_ids": [foreign_tenant] } }),
        )
        .await;
    let p = problem(res, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").await;
    assert!(p["errors"][0]["detail"].as_str().unwrap().contains("no tenant of your organisation"), "{p:#}");

    // Not JSON, or JSON of the wrong shape: the usual 400.
    let res = app
        .client
        .post(app.url("/v1/integrations"))
        .bearer_auth(&org.token)
        .header("content-type", "application/json")
        .body("{\"name\": ")
        .send()
        .await
        .unwrap();
    problem(res, StatusCode::BAD_REQUEST, "malformed_json").await;
    let mut unknown_field = webhook();
    unknown_field["colour"] = json!("red");
    let res = app.post(&org.token, "/v1/integrations", &unknown_field).await;
    problem(res, StatusCode::BAD_REQUEST, "malformed_json").await;

    assert!(app.integrations(&org.token).await.is_empty(), "nothing was stored");

    // A filter of the organisation's own tenant, known rules, severities and event types is fine.
    let mut filtered = webhook();
    filtered["filter"] = json!({
        "tenant_ids": [own_tenant], "severities": ["critical", "high"],
        "rule_ids": ["endpoint-reachable"], "event_types": ["finding.opened", "finding.resolved"],
    });
    filtered["routing"] = json!("digest");
    let saved = app.add_integration(&org.token, &filtered).await;
    assert_eq!(saved["filter"], filtered["filter"]);
    assert_eq!(saved["routing"], "digest");
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn internal_destinations_are_refused_when_saved() {
    let app = spawn_quiet_app(|s| s.delivery.https_only = false).await;
    let org = app.bootstrap_org("MSP").await;
    for (url, shown) in [
        ("http://10.0.0.5/", "10.0.0.5"),
        ("http://169.254.169.254/latest/meta-data/", "169.254.169.254"),
        ("http://[::ffff:127.0.0.1]/", "::ffff:127.0.0.1"),
        ("https://127.1/", "127.0.0.1"),
    ] {
        let body = json!({ "name": "Hook", "kind": "webhook", "url": url });
        let res = app.post(&org.token, "/v1/integrations", &body).await;
        let p = problem(res, StatusCode::UNPROCESSABLE_ENTITY, "destination_refused").await;
        assert_eq!(fields(&p), ["url"], "{p:#}");
        let detail = p["errors"][0]["detail"].as_str().unwrap();
        assert!(detail.contains(shown), "{url}: {detail}");
    }
    // A PSA's base URL is a destination too, and it is refused along with the other problems.
    let mut desk = jira();
    desk["url"] = json!("https://192.168.1.20");
    desk["name"] = json!("");
    let p = problem(
        app.post(&org.token, "/v1/integrations", &desk).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation_failed",
    )
    .await;
    assert_eq!(fields(&p), ["name", "url"], "{p:#}");
    assert!(app.integrations(&org.token).await.is_empty());

    // A public http URL is fine here; a server that delivers to https only refuses it.
    let plain = json!({ "name": "Hook", "kind": "webhook", "url": "http://receiver.example.com/" });
    app.add_integration(&org.token, &plain).await;
    app.shutdown().await;

    let strict = spawn_quiet_app(|_| {}).await;
    let org = strict.bootstrap_org("MSP").await;
    let res = strict.post(&org.token, "/v1/integrations", &plain).await;
    let p = problem(res, StatusCode::UNPROCESSABLE_ENTITY, "destination_refused").await;
    assert!(p["detail"].as_str().unwrap().contains("https"), "{p:#}");
    strict.shutdown().await;

    // The operator may allow-list an internal network (an on-premises PSA).
    let on_prem = spawn_quiet_app(|s| s.delivery.allow_networks = vec!["10.20.0.0/16".into()]).await;
    let org = on_prem.bootstrap_org("MSP").await;
    let mut desk = jira();
    desk["url"] = json!("https://10.20.1.5");
    on_prem.add_integration(&org.token, &desk).await;
    on_prem.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_network_allow_list_stops_the_server_naming_the_entry() {
    let dir = tempfile::tempdir().unwrap();
    let mut settings = test_settings(dir.path());
    settings.delivery.allow_networks = vec!["10.0.0.0/33".into()];
    let err = wbd_api::Application::build(settings).await.err().expect("refused");
    let text = format!("{err:#}");
    assert!(text.contains("delivery.allow_networks") && text.contains("10.0.0.0/33"), "{text}");

    let mut settings = test_settings(dir.path());
    settings.delivery.secrets_key = "not base64 of 32 bytes".into();
    let err = wbd_api::Application::build(settings).await.err().expect("refused");
    assert!(format!("{err:#}").contains("delivery.secrets_key"), "{err:#}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_secrets_key_integrations_cannot_be_saved() {
    let app = spawn_app_without_secrets_key().await;
    let org = app.bootstrap_org("MSP").await;
    let res = app.post(&org.token, "/v1/integrations", &jira()).await;
    let p = problem(res, StatusCode::SERVICE_UNAVAILABLE, "secrets_key_missing").await;
    assert!(p["detail"].as_str().unwrap().contains("delivery.secrets_key"), "{p:#}");
    assert!(app.integrations(&org.token).await.is_empty());
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_organisations_integrations_and_deliveries_are_not_found() {
    let app = spawn_quiet_app(|_| {}).await;
    let org = app.bootstrap_org("MSP").await;
    let other = app.bootstrap_org("Other MSP").await;
    let hook = app.add_integration(&org.token, &webhook()).await;
    let id = id_of(&hook);
    let queued = app.test_integration(&org.token, &id).await;
    let delivery = queued["delivery_id"].as_str().expect("delivery id").to_owned();

    let t = &other.token;
    let answers = [
        app.get(t, &format!("/v1/integrations/{id}")).await,
        app.patch(t, &format!("/v1/integrations/{id}"), &json!({ "enabled": false })).await,
        app.post(t, &format!("/v1/integrations/{id}/test"), &json!({})).await,
        app.post(t, &format!("/v1/integrations/{id}/rotate-secret"), &json!({})).await,
        app.post(t, &format!("/v1/integrations/{id}/replay"), &json!({ "since": "2026-01-01T00:00:00Z" }))
            .await,
        app.get(t, &format!("/v1/integrations/{id}/deliveries")).await,
        app.get(t, &format!("/v1/deliveries/{delivery}")).await,
        app.post(t, &format!("/v1/deliveries/{delivery}/replay"), &json!({})).await,
        app.delete(t, &format!("/v1/integrations/{id}")).await,
        app.get(t, "/v1/integrations/not-a-uuid").await,
    ];
    for res in answers {
        problem(res, StatusCode::NOT_FOUND, "not_found").await;
    }
    assert!(app.integrations(t).await.is_empty());
    // Untouched.
    let still = app.integration(&org.token, &id).await;
    assert_eq!((still["enabled"].clone(), still["version"].clone()), (json!(true), hook["version"].clone()));
    assert_eq!(app.delivery(&org.token, &delivery).await["status"], "pending");
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_org_admins_change_integrations() {
    let app = spawn_quiet_app(|_| {}).await;
    let org = app.bootstrap_org("MSP").await;
    let hook = app.add_integration(&org.token, &webhook()).await;
    let id = id_of(&hook);
    let delivery = app.test_integration(&org.token, &id).await["delivery_id"].as_str().unwrap().to_owned();

    for role in ["read_only", "technician"] {
        let t = app.login_as(&org, role).await;
        assert_eq!(app.integrations(&t).await.len(), 1, "{role} reads");
        assert_eq!(app.integration(&t, &id).await["id"], hook["id"]);
        let res = app.get(&t, &format!("/v1/integrations/{id}/deliveries")).await;
        assert_eq!(res.status(), StatusCode::OK);
        assert_eq!(app.delivery(&t, &delivery).await["id"], json!(delivery));
        let answers = [
            app.post(&t, "/v1/integrations", &webhook()).await,
            app.patch(&t, &format!("/v1/integrations/{id}"), &json!({ "name": "Mine now" })).await,
            app.post(&t, &format!("/v1/integrations/{id}/test"), &json!({})).await,
            app.post(&t, &format!("/v1/integrations/{id}/rotate-secret"), &json!({})).await,
            app.post(
                &t,
                &format!("/v1/integrations/{id}/replay"),
                &json!({ "since": "2026-01-01T00:00:00Z" }),
            )
            .await,
            app.post(&t, &format!("/v1/deliveries/{delivery}/replay"), &json!({})).await,
            app.delete(&t, &format!("/v1/integrations/{id}")).await,
        ];
        for res in answers {
            problem(res, StatusCode::FORBIDDEN, "forbidden").await;
        }
    }
    assert_eq!(app.integrations(&org.token).await.len(), 1);
    assert_eq!(app.integration(&org.token, &id).await["name"], "Our receiver");
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_integration_is_changed_switched_off_and_on_and_deleted() {
    let app = spawn_quiet_app(|_| {}).await;
    let org = app.bootstrap_org("MSP").await;
    let desk = app.add_integration(&org.token, &jira()).await;
    let id = id_of(&desk);
    let path = format!("/v1/integrations/{id}");

    // Credentials merge key by key; the rest stays.
    let res = app
        .patch(
            &org.token,
            &path,
            &json!({ "name": "Desk", "credentials": { "api_token": "rotated-token" }, "max_in_flight": 4 }),
        )
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    let changed: Value = res.json().await.unwrap();
    assert_eq!(changed["name"], "Desk");
    assert_eq!(changed["max_in_flight"], 4);
    assert_eq!(changed["credentials_set"], json!(["api_token"]));
    assert_eq!(changed["config"], desk["config"]);
    assert_eq!(changed["version"], desk["version"].as_i64().unwrap() + 1);

    // The whole result is checked again; nothing changes on a refusal.
    let res =
        app.patch(&org.token, &path, &json!({ "credentials": { "api_token": null }, "name": " " })).await;
    let p = problem(res, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").await;
    assert_eq!(fields(&p), ["name", "credentials.api_token"]);
    let res = app.patch(&org.token, &path, &json!({ "kind": "webhook" })).await;
    let p = problem(res, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").await;
    assert_eq!(fields(&p), ["kind"]);
    let res = app
        .patch(
            &org.token,
            &path,
            &json!({ "url": "https://169.254.169.254", "credentials": { "api_token": "x" } }),
        )
        .await;
    problem(res, StatusCode::UNPROCESSABLE_ENTITY, "destination_refused").await;
    assert_eq!(app.integration(&org.token, &id).await["version"], changed["version"]);

    // Switched off by hand: no test then.
    let res = app.patch(&org.token, &path, &json!({ "enabled": false })).await;
    assert_eq!(res.json::<Value>().await.unwrap()["enabled"], false);
    let res = app.post(&org.token, &format!("{path}/test"), &json!({})).await;
    problem(res, StatusCode::CONFLICT, "integration_disabled").await;

    // Switched off by the engine, with a reason; switching it on forgets it.
    let res = app.patch(&org.token, &path, &json!({ "enabled": true })).await;
    assert_eq!(res.status(), StatusCode::OK);
    let org_scope = OrgScope { org_id: OrgId(org.id) };
    let id_uuid: Uuid = id.parse().unwrap();
    let reason = "every attempt failed for 3 days";
    assert!(app.store.disable_integration(org_scope, id_uuid, reason, &[], Utc::now()).await.unwrap());
    let off = app.integration(&org.token, &id).await;
    assert_eq!((off["enabled"].clone(), off["disabled_reason"].clone()), (json!(false), json!(reason)));
    assert!(off["disabled_at"].is_string());
    let res = app.patch(&org.token, &path, &json!({ "enabled": true })).await;
    let on: Value = res.json().await.unwrap();
    assert_eq!(on["enabled"], true);
    assert!(on["disabled_reason"].is_null() && on["disabled_at"].is_null() && on["failing_since"].is_null());

    // A Slack URL can be replaced, and stays secret.
    let chat = app.add_integration(&org.token, &slack()).await;
    let res = app
        .patch(
            &org.token,
            &format!("/v1/integrations/{}", id_of(&chat)),
            &json!({ "url": "https://hooks.slack.com/services/T0002/B0002/othersecret" }),
        )
        .await;
    let text = res.text().await.unwrap();
    assert!(!text.contains("othersecret") && text.contains("https://hooks.slack.com/…"), "{text}");

    let res = app.delete(&org.token, &path).await;
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    problem(app.get(&org.token, &path).await, StatusCode::NOT_FOUND, "not_found").await;
    problem(app.delete(&org.token, &path).await, StatusCode::NOT_FOUND, "not_found").await;
    assert_eq!(app.integrations(&org.token).await.len(), 1);

    let audit: Value = app.get(&org.token, "/v1/audit-log").await.json().await.unwrap();
    let text = audit.to_string();
    assert!(!text.contains("rotated-token") && !text.contains(JIRA_TOKEN) && !text.contains("othersecret"));
    assert_eq!(audit["items"][0]["action"], "integration.delete");
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_test_is_queued_and_failed_deliveries_are_replayed() {
    let app = spawn_quiet_app(|_| {}).await;
    let org = app.bootstrap_org("MSP").await;
    let hook = app.add_integration(&org.token, &webhook()).await;
    let id = id_of(&hook);

    let queued = app.test_integration(&org.token, &id).await;
    let delivery_id = queued["delivery_id"].as_str().expect("delivery id").to_owned();
    let delivery = app.delivery(&org.token, &delivery_id).await;
    assert_eq!(delivery["status"], "pending");
    assert_eq!(delivery["event_type"], "integration.test");
    assert_eq!(delivery["event_id"], queued["event_id"]);
    assert_eq!(delivery["payload"]["type"], "integration.test");
    assert_eq!(delivery["attempts"], json!([]));
    let res = app.post(&org.token, &format!("/v1/deliveries/{delivery_id}/replay"), &json!({})).await;
    problem(res, StatusCode::CONFLICT, "delivery_pending").await;

    // Its last attempt fails: the log shows it, and a replay sends it again from the start.
    assert_eq!(app.fail_due_deliveries().await, 1);
    let failed = app.delivery(&org.token, &delivery_id).await;
    assert_eq!(failed["status"], "failed");
    assert_eq!(failed["attempt_count"], 1);
    assert_eq!(failed["last_status"], 503);
    let attempt = &failed["attempts"][0];
    assert_eq!((attempt["attempt"].clone(), attempt["succeeded"].clone()), (json!(1), json!(false)));
    assert_eq!(attempt["response_excerpt"], "down for maintenance");
    assert_eq!(attempt["exchanges"][0]["status"], 503);

    let res = app.post(&org.token, &format!("/v1/deliveries/{delivery_id}/replay"), &json!({})).await;
    assert_eq!(res.status(), StatusCode::ACCEPTED);
    assert_eq!(res.json::<Value>().await.unwrap(), json!({ "replayed": 1 }));
    let again = app.delivery(&org.token, &delivery_id).await;
    assert_eq!((again["status"].clone(), again["attempt_count"].clone()), (json!("pending"), json!(0)));

    // Every failed delivery since a moment, at once.
    app.test_integration(&org.token, &id).await;
    assert_eq!(app.fail_due_deliveries().await, 2);
    let (a, token) = (&app, org.token.as_str());
    let replay = |since: String| {
        let (path, body) = (format!("/v1/integrations/{id}/replay"), json!({ "since": since }));
        async move { a.post(token, &path, &body).await }
    };
    let res = replay((Utc::now() + chrono::Duration::hours(1)).to_rfc3339()).await;
    assert_eq!(res.json::<Value>().await.unwrap(), json!({ "replayed": 0 }));
    let res = replay((Utc::now() - chrono::Duration::hours(1)).to_rfc3339()).await;
    assert_eq!(res.status(), StatusCode::ACCEPTED);
    assert_eq!(res.json::<Value>().await.unwrap(), json!({ "replayed": 2 }));
    let res = app
        .post(&org.token, &format!("/v1/integrations/{id}/replay"), &json!({ "since": "yesterday" }))
        .await;
    problem(res, StatusCode::BAD_REQUEST, "malformed_json").await;

    // The list: newest first, filtered, a page at a time.
    let list = |query: &str| {
        let path = format!("/v1/integrations/{id}/deliveries?{query}");
        async move { a.get(token, &path).await }
    };
    let page: Value = list("").await.json().await.unwrap();
    let items = page["items"].as_array().unwrap();
    assert_eq!(items.len(), 2);
    assert!(items[0]["id"].as_str() > items[1]["id"].as_str(), "newest first");
    assert!(items[0].get("payload").is_none());
    let first: Value = list("limit=1").await.json().await.unwrap();
    let cursor = first["next_cursor"].as_str().expect("a next page");
    let second: Value = list(&format!("limit=1&before={cursor}")).await.json().await.unwrap();
    assert_eq!(second["items"][0]["id"], items[1]["id"]);
    let failed: Value = list("status=failed").await.json().await.unwrap();
    assert!(failed["items"].as_array().unwrap().is_empty());
    let later: Value =
        list(&format!("since={}", (Utc::now() + chrono::Duration::hours(1)).format("%Y-%m-%dT%H:%M:%SZ")))
            .await
            .json()
            .await
            .unwrap();
    assert!(later["items"].as_array().unwrap().is_empty());
    problem(list("limit=0").await, StatusCode::BAD_REQUEST, "invalid_parameter").await;
    problem(list("status=lost").await, StatusCode::BAD_REQUEST, "invalid_parameter").await;
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_finding_shows_the_tickets_integrations_keep_for_it() {
    let app = spawn_quiet_app(|_| {}).await;
    let org = app.bootstrap_org("MSP").await;
    let (tenant, collector) = app.tenant_with_collector(&org).await;
    collector
        .push_evaluated(&app, &org, &batch(vec![refused_endpoint("passwordreset.microsoftonline.com", 443)]))
        .await;
    let open = app
        .wait_for_findings(
            &org.token,
            &format!("tenant_id={tenant}&rule_id=endpoint-reachable&status=open"),
            |f| f.len() == 1,
        )
        .await;
    let finding_id: Uuid = open[0]["id"].as_str().unwrap().parse().unwrap();
    assert_eq!(open[0]["tickets"], json!([]));
    let desk = app.add_integration(&org.token, &jira()).await;

    // The engine opens a ticket for the finding.
    let now = Utc::now();
    let delivery = NewDelivery {
        org_id: OrgId(org.id),
        integration_id: id_of(&desk).parse().unwrap(),
        event_id: Uuid::now_v7(),
        event_type: "finding.opened".into(),
        tenant_id: Some(TenantId(tenant)),
        finding_id: Some(FindingId(finding_id)),
        ticket_key: Some("wbd-test-ticket".into()),
        payload: json!({}),
        occurred_at: now,
    };
    app.store.enqueue_deliveries(&[delivery], now).await.unwrap();
    let claimed = app.store.claim_deliveries(10, Duration::from_secs(60), Utc::now()).await.unwrap();
    assert_eq!(claimed.len(), 1);
    let record = AttemptRecord {
        lease_id: claimed[0].lease_id,
        at: Utc::now(),
        succeeded: true,
        status: Some(201),
        latency_ms: 40,
        error: None,
        response_excerpt: None,
        exchanges: json!([]),
        retry_at: None,
        ticket: Some(TicketUpdate::Set {
            external_id: "WBD-7".into(),
            url: Some("https://contoso.atlassian.net/browse/WBD-7".into()),
            state: TicketState::Open,
        }),
        finding_open: Some(true),
        throttle_until: None,
    };
    assert!(app.store.complete_attempt(&claimed[0].delivery, &record).await.unwrap());

    let expected = json!([{
        "integration_id": desk["id"], "integration_name": "Service desk", "kind": "jira",
        "external_id": "WBD-7", "url": "https://contoso.atlassian.net/browse/WBD-7", "state": "open",
    }]);
    assert_eq!(app.finding(&org.token, &finding_id.to_string()).await["tickets"], expected);
    let listed = app.findings(&org.token, &format!("tenant_id={tenant}&rule_id=endpoint-reachable")).await;
    assert_eq!(listed[0]["tickets"], expected);
    app.shutdown().await;
}

// ---- defects found in review: each bad request is a problem and changes nothing --------------

fn halo() -> Value {
    json!({
        "name": "Halo",
        "kind": "halopsa",
        "url": "https://contoso.halopsa.com",
        "credentials": { "client_id": "halo-client", "client_secret": "halo-s3cret" },
    })
}

/// What the store holds for an integration, for "nothing changed".
async fn stored_row(app: &TestApp, org: &Org, id: &str) -> wbd_store::Integration {
    let scope = OrgScope { org_id: OrgId(org.id) };
    app.store.get_integration(scope, id.parse().unwrap()).await.unwrap().expect("stored")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stored_credentials_never_follow_the_destination_to_another_origin() {
    let app = spawn_quiet_app(|_| {}).await;
    let org = app.bootstrap_org("MSP").await;
    let desk = app.add_integration(&org.token, &jira()).await;
    let path = format!("/v1/integrations/{}", id_of(&desk));
    let before = stored_row(&app, &org, &id_of(&desk)).await;

    // Another host, or another port: the stored API token would go there.
    for url in ["https://attacker.example", "https://contoso.atlassian.net:8443"] {
        let res = app.patch(&org.token, &path, &json!({ "url": url })).await;
        let p = problem(res, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").await;
        assert_eq!(fields(&p), ["credentials"], "{url}: {p:#}");
        assert!(p["errors"][0]["detail"].as_str().unwrap().contains("entered again"), "{p:#}");
    }
    assert_eq!(stored_row(&app, &org, &id_of(&desk)).await, before, "nothing changed");

    // The same origin keeps them; a new one with the credentials given is fine.
    let res = app.patch(&org.token, &path, &json!({ "url": "https://contoso.atlassian.net/" })).await;
    assert_eq!(res.status(), StatusCode::OK, "{}", res.text().await.unwrap());
    let res = app
        .patch(
            &org.token,
            &path,
            &json!({ "url": "https://desk.contoso.example", "credentials": { "api_token": "new-token" } }),
        )
        .await;
    assert_eq!(res.status(), StatusCode::OK, "{}", res.text().await.unwrap());
    assert_eq!(res.json::<Value>().await.unwrap()["url"], "https://desk.contoso.example/");

    // HaloPSA sends its client secret to the authorisation server the config names.
    let halo = app.add_integration(&org.token, &halo()).await;
    let halo_path = format!("/v1/integrations/{}", id_of(&halo));
    let halo_before = stored_row(&app, &org, &id_of(&halo)).await;
    let res = app
        .patch(&org.token, &halo_path, &json!({ "config": { "auth_url": "https://attacker.example/auth" } }))
        .await;
    let p = problem(res, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").await;
    assert_eq!(fields(&p), ["credentials"], "{p:#}");
    // Credentials given for a new origin replace the stored ones: the rest are not carried over.
    let res = app
        .patch(
            &org.token,
            &halo_path,
            &json!({ "url": "https://halo.contoso.example", "credentials": { "client_secret": "new" } }),
        )
        .await;
    let p = problem(res, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").await;
    assert_eq!(fields(&p), ["credentials.client_id"], "{p:#}");
    assert_eq!(stored_row(&app, &org, &id_of(&halo)).await, halo_before, "nothing changed");

    // A webhook has no credentials to follow it.
    let hook = app.add_integration(&org.token, &webhook()).await;
    let res = app
        .patch(
            &org.token,
            &format!("/v1/integrations/{}", id_of(&hook)),
            &json!({ "url": "https://elsewhere.example/in" }),
        )
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_made_from_an_older_version_is_refused_and_undoes_nothing() {
    let app = spawn_quiet_app(|_| {}).await;
    let org = app.bootstrap_org("MSP").await;
    let hook = app.add_integration(&org.token, &webhook()).await;
    let id = id_of(&hook);
    let path = format!("/v1/integrations/{id}");
    let seen = hook["version"].as_i64().unwrap();

    // The engine switches it off after the client read it.
    let scope = OrgScope { org_id: OrgId(org.id) };
    let reason = "every attempt failed for 5 days";
    assert!(
        app.store.disable_integration(scope, id.parse().unwrap(), reason, &[], Utc::now()).await.unwrap()
    );
    let off = stored_row(&app, &org, &id).await;
    assert_eq!(off.version, seen + 1);
    let res = app.patch(&org.token, &path, &json!({ "name": "Renamed", "version": seen })).await;
    let p = problem(res, StatusCode::CONFLICT, "integration_changed").await;
    assert!(p["detail"].as_str().unwrap().contains(&format!("version {}", seen + 1)), "{p:#}");
    assert_eq!(stored_row(&app, &org, &id).await, off, "still off, with its reason");

    // A rename from what is there now renames it, and leaves it off.
    let res = app.patch(&org.token, &path, &json!({ "name": "Renamed" })).await;
    let renamed: Value = res.json().await.unwrap();
    assert_eq!((renamed["name"].clone(), renamed["enabled"].clone()), (json!("Renamed"), json!(false)));
    assert_eq!(renamed["disabled_reason"], reason);

    // Two rotations at once: none of the secrets answered is lost.
    let (rotate_path, empty) = (format!("{path}/rotate-secret"), json!({}));
    let rotate = || app.post(&org.token, &rotate_path, &empty);
    let (a, b) = tokio::join!(rotate(), rotate());
    let mut rotated = 0;
    for res in [a, b] {
        match res.status() {
            StatusCode::OK => rotated += 1,
            _ => {
                problem(res, StatusCode::CONFLICT, "integration_changed").await;
            }
        }
    }
    assert!(rotated >= 1);
    assert_eq!(
        app.integration(&org.token, &id).await["signing_secret_count"],
        json!(1 + rotated),
        "the first secret and each new one sign"
    );
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chat_webhook_sent_back_as_shown_keeps_its_secret_url() {
    let key = wbd_notify::sealing::Sealer::generate_key();
    let sealer = wbd_notify::sealing::Sealer::new(&key, &[]).unwrap();
    let app = spawn_quiet_app(|s| s.delivery.secrets_key = key.clone()).await;
    let org = app.bootstrap_org("MSP").await;
    let chat = app.add_integration(&org.token, &slack()).await;
    let id = id_of(&chat);
    let path = format!("/v1/integrations/{id}");
    let secret_url = async || {
        let row = stored_row(&app, &org, &id).await;
        wbd_delivery::secrets::open(&sealer, row.org_id, &row.secrets).unwrap().url
    };

    // The client saves what it read, with a new name.
    let shown = app.integration(&org.token, &id).await;
    let mut back = json!({});
    for field in [
        "name",
        "kind",
        "url",
        "config",
        "filter",
        "routing",
        "max_in_flight",
        "hourly_budget",
        "enabled",
        "version",
    ] {
        back[field] = shown[field].clone();
    }
    back["name"] = json!("#ops");
    let res = app.patch(&org.token, &path, &back).await;
    assert_eq!(res.status(), StatusCode::OK, "{}", res.text().await.unwrap());
    assert_eq!(secret_url().await.as_deref(), Some(SLACK_URL));
    let res = app.patch(&org.token, &path, &json!({ "url": "https://hooks.slack.com/%E2%80%A6" })).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(secret_url().await.as_deref(), Some(SLACK_URL));

    // A redacted URL of another origin is no webhook URL, nor is one on create.
    let before = stored_row(&app, &org, &id).await;
    let res = app.patch(&org.token, &path, &json!({ "url": "https://hooks.example.com/…" })).await;
    let p = problem(res, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").await;
    assert_eq!(fields(&p), ["url"]);
    assert!(p["errors"][0]["detail"].as_str().unwrap().contains("redacted"), "{p:#}");
    assert_eq!(stored_row(&app, &org, &id).await, before);
    let mut redacted = slack();
    redacted["url"] = json!("https://hooks.slack.com/…");
    let p = problem(
        app.post(&org.token, "/v1/integrations", &redacted).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation_failed",
    )
    .await;
    assert_eq!(fields(&p), ["url"]);
    assert_eq!(app.integrations(&org.token).await.len(), 1);
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn integer_settings_beyond_their_range_are_refused() {
    let app = spawn_quiet_app(|_| {}).await;
    let org = app.bootstrap_org("MSP").await;
    for budget in [json!(2_147_483_648_i64), json!(4_294_967_296_i64), json!(1_000_001), json!(-1)] {
        let mut body = webhook();
        body["hourly_budget"] = budget.clone();
        let res = app.post(&org.token, "/v1/integrations", &body).await;
        let p = problem(res, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").await;
        assert_eq!(fields(&p), ["hourly_budget"], "{budget}: {p:#}");
        assert!(p["errors"][0]["detail"].as_str().unwrap().contains("1000000"), "{p:#}");
    }
    assert!(app.integrations(&org.token).await.is_empty());

    let mut body = webhook();
    body["hourly_budget"] = json!(1_000_000);
    let hook = app.add_integration(&org.token, &body).await;
    assert_eq!(hook["hourly_budget"], 1_000_000);
    let path = format!("/v1/integrations/{}", id_of(&hook));
    for change in
        [json!({ "hourly_budget": 2_147_483_648_i64 }), json!({ "max_in_flight": 1_099_511_627_776_i64 })]
    {
        let p = problem(
            app.patch(&org.token, &path, &change).await,
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
        )
        .await;
        assert_eq!(fields(&p).len(), 1, "{p:#}");
    }
    assert_eq!(app.integration(&org.token, &id_of(&hook)).await["version"], hook["version"]);
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn control_characters_in_names_and_nul_in_config_are_refused() {
    let app = spawn_quiet_app(|_| {}).await;
    let org = app.bootstrap_org("MSP").await;
    for name in ["Our\u{0}hook", "Our\nhook", "Bell\u{7}"] {
        let mut body = webhook();
        body["name"] = json!(name);
        let p = problem(
            app.post(&org.token, "/v1/integrations", &body).await,
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
        )
        .await;
        assert_eq!(fields(&p), ["name"], "{name:?}: {p:#}");
    }
    let mut desk = jira();
    desk["config"] = json!({
        "email": "bot@contoso.example",
        "project_key": "W\u{0}BD",
        "labels": ["ok", "b\u{0}"],
        "k\u{0}": 1,
    });
    let p = problem(
        app.post(&org.token, "/v1/integrations", &desk).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation_failed",
    )
    .await;
    let mut refused = fields(&p);
    refused.sort();
    assert_eq!(refused, ["config.k\\u0000", "config.labels[1]", "config.project_key"], "{p:#}");
    assert!(app.integrations(&org.token).await.is_empty());

    let hook = app.add_integration(&org.token, &webhook()).await;
    let path = format!("/v1/integrations/{}", id_of(&hook));
    let before = stored_row(&app, &org, &id_of(&hook)).await;
    for change in [json!({ "name": "x\u{0}" }), json!({ "config": { "format": "a\u{0}" } })] {
        let p = problem(
            app.patch(&org.token, &path, &change).await,
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
        )
        .await;
        assert_eq!(fields(&p).len(), 1, "{p:#}");
    }
    assert_eq!(stored_row(&app, &org, &id_of(&hook)).await, before);
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_switched_off_integration_replays_nothing() {
    let app = spawn_quiet_app(|_| {}).await;
    let org = app.bootstrap_org("MSP").await;
    let hook = app.add_integration(&org.token, &webhook()).await;
    let id = id_of(&hook);
    let delivery = app.test_integration(&org.token, &id).await["delivery_id"].as_str().unwrap().to_owned();
    assert_eq!(app.fail_due_deliveries().await, 1);
    let scope = OrgScope { org_id: OrgId(org.id) };
    assert!(
        app.store.disable_integration(scope, id.parse().unwrap(), "410 Gone", &[], Utc::now()).await.unwrap()
    );

    let since = json!({ "since": (Utc::now() - chrono::Duration::hours(1)).to_rfc3339() });
    let res = app.post(&org.token, &format!("/v1/deliveries/{delivery}/replay"), &json!({})).await;
    problem(res, StatusCode::CONFLICT, "integration_disabled").await;
    let res = app.post(&org.token, &format!("/v1/integrations/{id}/replay"), &since).await;
    problem(res, StatusCode::CONFLICT, "integration_disabled").await;
    assert_eq!(app.delivery(&org.token, &delivery).await["status"], "failed", "not replayed");

    // Switched on, it is.
    let res = app.patch(&org.token, &format!("/v1/integrations/{id}"), &json!({ "enabled": true })).await;
    assert_eq!(res.status(), StatusCode::OK);
    let res = app.post(&org.token, &format!("/v1/integrations/{id}/replay"), &since).await;
    assert_eq!(res.json::<Value>().await.unwrap(), json!({ "replayed": 1 }));
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_organisations_integration_is_not_found_whatever_the_role() {
    let app = spawn_quiet_app(|_| {}).await;
    let org = app.bootstrap_org("MSP").await;
    let other = app.bootstrap_org("Other MSP").await;
    let hook = app.add_integration(&org.token, &webhook()).await;
    let id = id_of(&hook);
    let delivery = app.test_integration(&org.token, &id).await["delivery_id"].as_str().unwrap().to_owned();

    for role in ["read_only", "technician"] {
        let t = app.login_as(&other, role).await;
        let answers = [
            app.get(&t, &format!("/v1/integrations/{id}")).await,
            app.patch(&t, &format!("/v1/integrations/{id}"), &json!({ "enabled": false })).await,
            app.post(&t, &format!("/v1/integrations/{id}/test"), &json!({})).await,
            app.post(&t, &format!("/v1/integrations/{id}/rotate-secret"), &json!({})).await,
            app.post(
                &t,
                &format!("/v1/integrations/{id}/replay"),
                &json!({ "since": "2026-01-01T00:00:00Z" }),
            )
            .await,
            app.get(&t, &format!("/v1/integrations/{id}/deliveries")).await,
            app.get(&t, &format!("/v1/deliveries/{delivery}")).await,
            app.post(&t, &format!("/v1/deliveries/{delivery}/replay"), &json!({})).await,
            app.delete(&t, &format!("/v1/integrations/{id}")).await,
        ];
        for res in answers {
            problem(res, StatusCode::NOT_FOUND, "not_found").await;
        }
    }
    let still = app.integration(&org.token, &id).await;
    assert_eq!((still["enabled"].clone(), still["version"].clone()), (json!(true), hook["version"].clone()));
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_custom_rule_deleted_since_it_was_filtered_on_does_not_block_other_changes() {
    let app = spawn_quiet_app(|_| {}).await;
    let org = app.bootstrap_org("MSP").await;
    let rule = json!({ "title": "Non-standard port", "severity": "medium", "condition": "facts.endpoint.exists(e, e.port != 443)" });
    let rule_path = app.url("/v1/custom-rules/non-standard-port");
    let res = app.client.put(&rule_path).bearer_auth(&org.token).json(&rule).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::OK, "{}", res.text().await.unwrap());
    let mut body = webhook();
    body["filter"] = json!({ "rule_ids": ["non-standard-port"] });
    let hook = app.add_integration(&org.token, &body).await;
    let path = format!("/v1/integrations/{}", id_of(&hook));
    let res = app.client.delete(&rule_path).bearer_auth(&org.token).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::NO_CONTENT);

    // The filter is kept as it was saved (dropping the rule would widen it to every rule).
    let res = app.patch(&org.token, &path, &json!({ "enabled": false })).await;
    assert_eq!(res.status(), StatusCode::OK, "{}", res.text().await.unwrap());
    let off: Value = res.json().await.unwrap();
    assert_eq!(
        (off["enabled"].clone(), off["filter"]["rule_ids"].clone()),
        (json!(false), json!(["non-standard-port"]))
    );
    // A filter that is given is checked.
    let res = app.patch(&org.token, &path, &json!({ "filter": { "rule_ids": ["non-standard-port"] } })).await;
    let p = problem(res, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").await;
    assert_eq!(fields(&p), ["filter.rule_ids[0]"]);
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_credential_with_a_control_character_inside_is_refused() {
    let app = spawn_quiet_app(|_| {}).await;
    let org = app.bootstrap_org("MSP").await;
    let mut desk = jira();
    desk["credentials"] = json!({ "api_token": "jira-tok\nen" });
    let p = problem(
        app.post(&org.token, "/v1/integrations", &desk).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation_failed",
    )
    .await;
    assert_eq!(fields(&p), ["credentials.api_token"], "{p:#}");
    assert!(!p.to_string().contains("jira-tok"), "a credential is never shown: {p:#}");
    assert!(app.integrations(&org.token).await.is_empty());

    // A pasted line break at the end is trimmed, as before.
    desk["credentials"] = json!({ "api_token": "jira-token\n" });
    let saved = app.add_integration(&org.token, &desk).await;
    let res = app
        .patch(
            &org.token,
            &format!("/v1/integrations/{}", id_of(&saved)),
            &json!({ "credentials": { "api_token": "a\tb" } }),
        )
        .await;
    let p = problem(res, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").await;
    assert_eq!(fields(&p), ["credentials.api_token"], "{p:#}");
    app.shutdown().await;
}
