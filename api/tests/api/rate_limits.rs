//! Rate limits: per client address and per credential on token exchange and enrollment, per
//! organisation on the API, per collector on pushes; 429 problem+json with Retry-After; on
//! PostgreSQL shared by every API process.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};
use sqlx::Connection as _;
use wbd_store::{OrgId, TenantId, TenantScope};

use crate::helpers::*;

/// Checks a 429: problem+json `rate_limited`, and a `Retry-After` of whole seconds within
/// `1..=max_secs`; answers it.
async fn rate_limited(res: reqwest::Response, max_secs: u64) -> u64 {
    let retry_after = res
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
        .expect("a Retry-After of whole seconds");
    assert!((1..=max_secs).contains(&retry_after), "Retry-After {retry_after} not in 1..={max_secs}");
    problem(res, StatusCode::TOO_MANY_REQUESTS, "rate_limited").await;
    retry_after
}

async fn exchange(app: &TestApp, api_key: &str, forwarded_for: Option<&str>) -> reqwest::Response {
    let mut req = app.client.post(app.url("/v1/auth/token")).json(&json!({ "api_key": api_key }));
    if let Some(addr) = forwarded_for {
        req = req.header("x-forwarded-for", addr);
    }
    req.send().await.unwrap()
}

async fn new_api_key(app: &TestApp, org: &Org) -> String {
    let res =
        app.post(&org.token, "/v1/api-keys", &json!({ "name": "automation", "role": "read_only" })).await;
    assert_eq!(res.status(), StatusCode::CREATED);
    let created: Value = res.json().await.unwrap();
    created["key"].as_str().expect("key").to_owned()
}

#[tokio::test]
async fn guessing_api_keys_from_one_address_is_stopped_with_429_and_retry_after() {
    let app = spawn_app_with(|s| {
        s.rate_limits.auth_per_address = 5;
        s.rate_limits.auth_per_credential = 100;
    })
    .await;
    let org = app.bootstrap_org("Acme MSP").await; // one exchange from this address
    let key = new_api_key(&app, &org).await;

    for i in 0..4 {
        let res = exchange(&app, &format!("wbdk_guess{i}"), None).await;
        problem(res, StatusCode::UNAUTHORIZED, "invalid_credentials").await;
    }
    // 5 a minute: one every 12 s once the allowance is spent.
    rate_limited(exchange(&app, "wbdk_guess4", None).await, 12).await;
    // The address is stopped, whatever key it sends next, the right one included; enrolling
    // counts against the same allowance.
    rate_limited(exchange(&app, &key, None).await, 12).await;
    let enroll = app
        .client
        .post(app.url("/v1/collectors/enroll"))
        .json(&json!({ "enrollment_token": "wbde_guess", "public_key": "AAAA", "hostname": "x", "version": "1" }))
        .send()
        .await
        .unwrap();
    rate_limited(enroll, 12).await;
    // Tokens already issued keep working: the API's own limit is per organisation.
    assert_eq!(app.get(&org.token, "/v1/tenants").await.status(), StatusCode::OK);
    app.shutdown().await;
}

#[tokio::test]
async fn behind_a_trusted_proxy_each_client_and_each_key_has_its_own_allowance() {
    let app = spawn_app_with(|s| {
        s.server.trusted_proxies = vec!["127.0.0.0/8".into()];
        s.rate_limits.auth_per_address = 2;
        s.rate_limits.auth_per_credential = 3;
    })
    .await;
    let org = app.bootstrap_org("Acme MSP").await;
    let (key, other_key) = (new_api_key(&app, &org).await, new_api_key(&app, &org).await);

    // The proxy appends the client it saw; what the client wrote before that is its own.
    assert_eq!(exchange(&app, &key, Some("198.51.100.1")).await.status(), StatusCode::OK);
    assert_eq!(exchange(&app, &key, Some("10.9.9.9, 198.51.100.1")).await.status(), StatusCode::OK);
    rate_limited(exchange(&app, &other_key, Some("10.9.9.8, 198.51.100.1")).await, 30).await;
    // One key from many addresses is stopped by its own allowance (3 a minute).
    assert_eq!(exchange(&app, &key, Some("198.51.100.2")).await.status(), StatusCode::OK);
    rate_limited(exchange(&app, &key, Some("198.51.100.3")).await, 20).await;
    // Another key from a fresh address is not.
    assert_eq!(exchange(&app, &other_key, Some("198.51.100.4")).await.status(), StatusCode::OK);
    app.shutdown().await;
}

#[tokio::test]
async fn x_forwarded_for_from_an_untrusted_peer_changes_nothing() {
    let app = spawn_app_with(|s| s.rate_limits.auth_per_address = 2).await;
    for i in 0..2 {
        let res = exchange(&app, "wbdk_guess", Some(&format!("203.0.113.{i}"))).await;
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    }
    rate_limited(exchange(&app, "wbdk_guess", Some("203.0.113.77")).await, 30).await;
    app.shutdown().await;
}

#[tokio::test]
async fn an_organisation_over_its_limit_is_slowed_and_no_other_is() {
    let app = spawn_app_with(|s| s.rate_limits.api_per_organisation = 6).await;
    let (acme, globex) = (app.bootstrap_org("Acme MSP").await, app.bootstrap_org("Globex MSP").await);

    for _ in 0..6 {
        assert_eq!(app.get(&acme.token, "/v1/tenants").await.status(), StatusCode::OK);
    }
    rate_limited(app.get(&acme.token, "/v1/tenants").await, 10).await;
    // A refused write changes nothing.
    rate_limited(app.post(&acme.token, "/v1/tenants", &json!({ "name": "Contoso" })).await, 10).await;
    assert_eq!(app.get(&globex.token, "/v1/tenants").await.status(), StatusCode::OK);

    // One request a 10 s later: wait it out and the organisation is served again.
    tokio::time::sleep(Duration::from_secs(10)).await;
    let tenants: Value = app.get(&acme.token, "/v1/tenants").await.json().await.unwrap();
    assert_eq!(tenants.as_array().map(Vec::len), Some(0), "the refused create made nothing: {tenants}");
    app.shutdown().await;
}

#[tokio::test]
async fn a_collector_pushing_too_often_is_told_to_wait_and_its_batch_is_not_stored() {
    let app = spawn_app_with(|s| s.rate_limits.ingest_per_collector = 2).await;
    let org = app.bootstrap_org("Acme MSP").await;
    let (tenant, collector) = app.tenant_with_collector(&org).await;
    let other = app.add_collector(&org, tenant).await;

    for port in [443, 444] {
        let res = collector.push(&app, &batch(vec![healthy_endpoint("a.example", port)])).await;
        assert_eq!(res.status(), StatusCode::ACCEPTED);
    }
    let third = batch(vec![healthy_endpoint("a.example", 445)]);
    rate_limited(collector.push(&app, &third).await, 30).await;
    // The other collector of the same tenant pushes on.
    let res = other.push(&app, &batch(vec![healthy_endpoint("b.example", 443)])).await;
    assert_eq!(res.status(), StatusCode::ACCEPTED);

    let scope = TenantScope { org_id: OrgId(org.id), tenant_id: TenantId(tenant) };
    let subjects: Vec<String> =
        app.store.list_facts(scope).await.unwrap().into_iter().map(|f| f.subject).collect();
    assert!(subjects.iter().any(|s| s == "a.example:444"), "{subjects:?}");
    assert!(!subjects.iter().any(|s| s == "a.example:445"), "the refused batch was stored: {subjects:?}");
    app.shutdown().await;
}

/// Two API processes on one PostgreSQL database: an address that spent its allowance on one is
/// refused by the other.
#[tokio::test]
#[ignore = "needs PostgreSQL: set WBD_TEST_DATABASE_URL and run with -- --include-ignored"]
async fn on_postgresql_every_api_process_shares_each_limit() {
    let (mut admin, db_name, one, two) = two_apis_on_one_database(|limits| limits.auth_per_address = 4).await;
    for app in [&one, &two, &one, &two] {
        assert_eq!(exchange(app, "wbdk_guess", None).await.status(), StatusCode::UNAUTHORIZED);
    }
    rate_limited(exchange(&one, "wbdk_guess", None).await, 15).await;
    rate_limited(exchange(&two, "wbdk_guess", None).await, 15).await;

    one.shutdown().await;
    two.shutdown().await;
    drop_database(&mut admin, &db_name).await;
}

/// Two API processes on one PostgreSQL database: a collector's pushes count wherever they land
/// (its push token and its limit are taken in one statement there).
#[tokio::test]
#[ignore = "needs PostgreSQL: set WBD_TEST_DATABASE_URL and run with -- --include-ignored"]
async fn on_postgresql_a_collectors_pushes_count_in_every_api_process() {
    let (mut admin, db_name, one, two) =
        two_apis_on_one_database(|limits| limits.ingest_per_collector = 2).await;
    let org = one.bootstrap_org("Acme MSP").await;
    let (tenant, collector) = one.tenant_with_collector(&org).await;
    for (app, port) in [(&one, 443), (&two, 444)] {
        let res = collector.push(app, &batch(vec![healthy_endpoint("a.example", port)])).await;
        assert_eq!(res.status(), StatusCode::ACCEPTED);
    }
    rate_limited(collector.push(&one, &batch(vec![healthy_endpoint("a.example", 445)])).await, 30).await;
    rate_limited(collector.push(&two, &batch(vec![healthy_endpoint("a.example", 446)])).await, 30).await;
    let scope = TenantScope { org_id: OrgId(org.id), tenant_id: TenantId(tenant) };
    let subjects: Vec<String> =
        one.store.list_facts(scope).await.unwrap().into_iter().map(|f| f.subject).collect();
    assert!(subjects.iter().any(|s| s == "a.example:444"), "{subjects:?}");
    assert!(
        !subjects.iter().any(|s| s.ends_with(":445") || s.ends_with(":446")),
        "refused batches were stored: {subjects:?}"
    );

    one.shutdown().await;
    two.shutdown().await;
    drop_database(&mut admin, &db_name).await;
}

/// Two API processes (no worker, no delivery) on a database of their own on
/// `WBD_TEST_DATABASE_URL`'s server, with these rate limits: the admin connection, the database's
/// name and the two apps.
async fn two_apis_on_one_database(
    limits: impl Fn(&mut wbd_platform::settings::RateLimitSettings),
) -> (sqlx::PgConnection, String, TestApp, TestApp) {
    let (admin, db_name, db_url) = fresh_database().await;
    let on_postgres = |s: &mut wbd_platform::Settings| {
        s.database.url = db_url.clone();
        s.worker.embedded = Some(false);
        s.delivery.enabled = false;
        limits(&mut s.rate_limits);
    };
    let (one, two) = (spawn_app_with(on_postgres).await, spawn_app_with(on_postgres).await);
    (admin, db_name, one, two)
}

/// A database of its own on `WBD_TEST_DATABASE_URL`'s server: the admin connection, its name
/// and its URL.
async fn fresh_database() -> (sqlx::PgConnection, String, String) {
    let admin_url = std::env::var("WBD_TEST_DATABASE_URL")
        .ok()
        .filter(|u| !u.trim().is_empty())
        .expect("WBD_TEST_DATABASE_URL is not set: this test needs PostgreSQL");
    let db_name = format!("wbd_test_{}", uuid::Uuid::new_v4().simple());
    let mut admin = sqlx::PgConnection::connect(&admin_url)
        .await
        .unwrap_or_else(|e| panic!("WBD_TEST_DATABASE_URL is set but PostgreSQL is unreachable: {e}"));
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {db_name}"))).execute(&mut admin).await.unwrap();
    let db_url = format!("{}/{db_name}", admin_url.rsplit_once('/').expect("a database in the URL").0);
    (admin, db_name, db_url)
}

async fn drop_database(admin: &mut sqlx::PgConnection, db_name: &str) {
    sqlx::query(sqlx::AssertSqlSafe(format!("DROP DATABASE {db_name} WITH (FORCE)")))
        .execute(admin)
        .await
        .unwrap();
}
