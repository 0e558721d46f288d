//! Changing an integration: checked like a create, guarded by its version, credentials never
//! following the destination elsewhere, secret URLs kept when sent back as shown, signing secrets
//! rotated, switched off and on, deleted.

use chrono::Utc;
use reqwest::StatusCode;
use serde_json::{Value, json};
use uuid::Uuid;
use wbd_store::{OrgId, OrgScope};

use super::*;
use crate::helpers::*;

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
