//! What is saved is checked in full, every problem listed at once, and secrets never shown
//! again; destinations are checked against the network policy; without a secrets key nothing
//! can be saved.

use reqwest::StatusCode;
use serde_json::{Value, json};
use wbd_store::{OrgId, OrgScope};

use super::*;
use crate::helpers::*;

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
