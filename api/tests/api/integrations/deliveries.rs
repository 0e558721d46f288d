//! Deliveries: tests are queued, the log shows every attempt, failed deliveries are replayed
//! (not through a switched-off integration), and the log pages like every listing.

use chrono::Utc;
use reqwest::StatusCode;
use serde_json::{Value, json};
use wbd_store::{OrgId, OrgScope};

use super::*;
use crate::helpers::*;
use crate::parameters::page_ids;

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
async fn the_log_pages_with_cursor_and_still_with_the_deprecated_before() {
    let app = spawn_quiet_app(|_| {}).await;
    let org = app.bootstrap_org("MSP").await;
    let id = id_of(&app.add_integration(&org.token, &webhook()).await);
    for _ in 0..3 {
        app.test_integration(&org.token, &id).await;
    }
    let path = format!("/v1/integrations/{id}/deliveries");
    let all = page_ids(&app.page(&org.token, &path, "").await);
    assert_eq!(all.len(), 3);

    // A page at a time, with `cursor` as every listing, or `before` as this one did.
    for name in ["cursor", "before"] {
        let pages = app.page_through(&org.token, &path, name, 1).await;
        assert_eq!(pages.iter().flat_map(page_ids).collect::<Vec<_>>(), all, "paging with {name}");
        assert!(pages.iter().all(|p| p["items"].as_array().unwrap().len() <= 1));
    }

    // Not both at once.
    let first = app.page(&org.token, &path, "limit=1").await;
    let cursor = first["next_cursor"].as_str().expect("a next page");
    let res = app.get(&org.token, &format!("{path}?cursor={cursor}&before={cursor}")).await;
    let p = problem(res, StatusCode::BAD_REQUEST, "invalid_parameter").await;
    assert!(p["detail"].as_str().unwrap().contains("`before`"), "{p}");
    app.shutdown().await;
}
