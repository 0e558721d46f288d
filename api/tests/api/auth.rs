//! API keys, access tokens, roles and collector enrollment.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_api_key_buys_a_short_lived_token_and_a_revoked_key_stops_at_once() {
    let app = spawn_app().await;
    let org = app.bootstrap_org("MSP").await;

    let res = app
        .client
        .post(app.url("/v1/auth/token"))
        .json(&json!({ "api_key": "wbdk_nope" }))
        .send()
        .await
        .unwrap();
    problem(res, StatusCode::UNAUTHORIZED, "invalid_credentials").await;

    let res = app.client.get(app.url("/v1/tenants")).send().await.unwrap();
    problem(res, StatusCode::UNAUTHORIZED, "unauthenticated").await;
    let res = app.get("not-a-jwt", "/v1/tenants").await;
    problem(res, StatusCode::UNAUTHORIZED, "invalid_token").await;

    let res =
        app.post(&org.token, "/v1/api-keys", &json!({ "name": "dashboards", "role": "read_only" })).await;
    assert_eq!(res.status(), StatusCode::CREATED);
    let created: Value = res.json().await.unwrap();
    let key = created["key"].as_str().unwrap().to_owned();
    assert!(key.starts_with(created["prefix"].as_str().unwrap()));
    let reader = app.login(&key).await;
    assert_eq!(app.get(&reader, "/v1/tenants").await.status(), StatusCode::OK);

    // Read-only may not create.
    let res = app.post(&reader, "/v1/tenants", &json!({ "name": "x" })).await;
    problem(res, StatusCode::FORBIDDEN, "forbidden").await;

    // The key list never shows secrets.
    let list: Value = app.get(&org.token, "/v1/api-keys").await.json().await.unwrap();
    assert_eq!(list.as_array().unwrap().len(), 2);
    assert!(!list.to_string().contains(&key));

    let res = app
        .post(&org.token, &format!("/v1/api-keys/{}/revoke", created["id"].as_str().unwrap()), &json!({}))
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    let res = app.get(&reader, "/v1/tenants").await;
    problem(res, StatusCode::UNAUTHORIZED, "invalid_token").await;
    let res =
        app.client.post(app.url("/v1/auth/token")).json(&json!({ "api_key": key })).send().await.unwrap();
    problem(res, StatusCode::UNAUTHORIZED, "invalid_credentials").await;
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn access_tokens_expire() {
    let app = spawn_app_with(|s| {
        s.auth.token_ttl_secs = 1;
        s.auth.leeway_secs = 0;
    })
    .await;
    let org = app.bootstrap_org("MSP").await;
    assert_eq!(app.get(&org.token, "/v1/tenants").await.status(), StatusCode::OK);
    tokio::time::sleep(Duration::from_millis(2_100)).await;
    let res = app.get(&org.token, "/v1/tenants").await;
    problem(res, StatusCode::UNAUTHORIZED, "token_expired").await;
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_enrollment_token_works_once() {
    let app = spawn_app().await;
    let org = app.bootstrap_org("MSP").await;
    let tenant = app.create_tenant(&org, "Contoso").await;
    let (id, token) = app.create_collector(&org, tenant, 60).await;

    let pending: Value = app.get(&org.token, &format!("/v1/collectors/{id}")).await.json().await.unwrap();
    assert_eq!(pending["status"], "pending");

    let bad_key =
        json!({ "enrollment_token": token, "public_key": "dG9vIHNob3J0", "hostname": "h", "version": "1" });
    let res = app.client.post(app.url("/v1/collectors/enroll")).json(&bad_key).send().await.unwrap();
    problem(res, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").await;

    let collector = TestCollector::enroll(&app, &token).await;
    assert_eq!(collector.id, id);
    assert_eq!(collector.tenant_id, tenant);
    let active: Value = app.get(&org.token, &format!("/v1/collectors/{id}")).await.json().await.unwrap();
    assert_eq!(active["status"], "active");
    assert_eq!(active["hostname"], "AADC01");

    let again = json!({ "enrollment_token": token, "public_key": "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", "hostname": "h", "version": "1" });
    let res = app.client.post(app.url("/v1/collectors/enroll")).json(&again).send().await.unwrap();
    problem(res, StatusCode::CONFLICT, "enrollment_token_used").await;

    let unknown = json!({ "enrollment_token": "wbde_unknown", "public_key": "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", "hostname": "h", "version": "1" });
    let res = app.client.post(app.url("/v1/collectors/enroll")).json(&unknown).send().await.unwrap();
    problem(res, StatusCode::UNAUTHORIZED, "enrollment_token_invalid").await;
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_enrollment_token_is_refused() {
    let app = spawn_app_with(|s| s.auth.enrollment_ttl_secs = 1).await;
    let org = app.bootstrap_org("MSP").await;
    let tenant = app.create_tenant(&org, "Contoso").await;
    let (_, token) = app.create_collector(&org, tenant, 60).await;
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    let body = json!({ "enrollment_token": token, "public_key": "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", "hostname": "h", "version": "1" });
    let res = app.client.post(app.url("/v1/collectors/enroll")).json(&body).send().await.unwrap();
    problem(res, StatusCode::UNAUTHORIZED, "enrollment_token_expired").await;
    app.shutdown().await;
}

/// A key revoked through another API process (here: straight in the shared store, as another
/// process does) stops working within `auth.key_cache_secs`, and no later.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_revoked_elsewhere_stops_within_the_cache_bound() {
    /// An app with the given bound, and the token of a key it used once and that was then
    /// revoked behind its back.
    async fn revoked_elsewhere(key_cache_secs: u64) -> (TestApp, String) {
        use wbd_store::{ApiKeyId, OrgId, OrgScope};
        let app = spawn_app_with(|s| s.auth.key_cache_secs = key_cache_secs).await;
        let org = app.bootstrap_org("MSP").await;
        let res = app.post(&org.token, "/v1/api-keys", &json!({ "name": "dash", "role": "read_only" })).await;
        let created: Value = res.json().await.unwrap();
        let id = ApiKeyId(created["id"].as_str().unwrap().parse().unwrap());
        let token = app.login(created["key"].as_str().unwrap()).await;
        assert_eq!(app.get(&token, "/v1/tenants").await.status(), StatusCode::OK);
        let scope = OrgScope { org_id: OrgId(org.id) };
        app.store.revoke_api_key(scope, id, chrono::Utc::now()).await.unwrap().expect("revoked");
        (app, token)
    }

    // With a long bound, the process keeps trusting what it saw: the cache is real.
    let (app, token) = revoked_elsewhere(3_600).await;
    assert_eq!(app.get(&token, "/v1/tenants").await.status(), StatusCode::OK);
    app.shutdown().await;

    // With a bound of 1 s, it is refused once the bound has passed.
    let (app, token) = revoked_elsewhere(1).await;
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    problem(app.get(&token, "/v1/tenants").await, StatusCode::UNAUTHORIZED, "invalid_token").await;
    app.shutdown().await;

    // With 0, every request reads the key.
    let (app, token) = revoked_elsewhere(0).await;
    problem(app.get(&token, "/v1/tenants").await, StatusCode::UNAUTHORIZED, "invalid_token").await;
    app.shutdown().await;
}
