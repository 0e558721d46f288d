//! A collector's commands: listed with what became of each (pending, delivered, expired,
//! cancelled), a pending one cancelled once (audited), an expired one never delivered, and
//! another organisation's collector or command answering 404.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::helpers::*;

const HOST: &str = "passwordreset.microsoftonline.com";

fn endpoint(broken: bool) -> wbd_wire::IngestBatch {
    batch(vec![if broken { refused_endpoint(HOST, 443) } else { healthy_endpoint(HOST, 443) }])
}

/// A tenant whose collector reported the endpoint blocked, with the finding that opened.
async fn site_with_finding(app: &TestApp, org: &Org) -> (TestCollector, String) {
    let (tenant, site) = app.tenant_with_collector(org).await;
    site.push_evaluated(app, org, &endpoint(true)).await;
    let query = format!("tenant_id={tenant}&rule_id=endpoint-reachable");
    let findings = app.wait_for_findings(&org.token, &query, |f| f.len() == 1).await;
    (site, findings[0]["id"].as_str().expect("finding id").to_owned())
}

/// Asks for a re-test of `finding`; the id of the command stored for its collector.
async fn retest(app: &TestApp, token: &str, finding: &str) -> String {
    let res = app.act_on_finding(token, finding, "retest", None).await;
    assert_eq!(res.status(), StatusCode::ACCEPTED);
    let body: Value = res.json().await.unwrap();
    body["commands"][0]["id"].as_str().expect("command id").to_owned()
}

async fn commands(app: &TestApp, token: &str, collector: Uuid, query: &str) -> Value {
    let res = app.get(token, &format!("/v1/collectors/{collector}/commands{query}")).await;
    assert_eq!(res.status(), StatusCode::OK);
    res.json().await.unwrap()
}

fn cancel_path(collector: Uuid, command: &str) -> String {
    format!("/v1/collectors/{collector}/commands/{command}/cancel")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commands_are_listed_with_their_state_and_a_pending_one_is_cancelled_once() {
    let app = spawn_app().await;
    let org = app.bootstrap_org("Northwind MSP").await;
    let (site, finding) = site_with_finding(&app, &org).await;
    let first = retest(&app, &org.token, &finding).await;

    let page = commands(&app, &org.token, site.id, "").await;
    let items = page["items"].as_array().unwrap();
    assert_eq!(items.len(), 1);
    assert_eq!(
        (items[0]["id"].as_str(), items[0]["state"].as_str()),
        (Some(first.as_str()), Some("pending"))
    );
    assert_eq!(items[0]["finding_id"], finding.as_str());
    assert_eq!(items[0]["action"]["command"], "run_probes");
    assert!(items[0]["expires_at"].is_string() && items[0]["delivered_at"].is_null(), "{page}");

    // A read-only key sees the commands but cannot cancel one.
    let reader = app.login_as(&org, "read_only").await;
    assert_eq!(commands(&app, &reader, site.id, "").await["items"].as_array().unwrap().len(), 1);
    let res = app.post(&reader, &cancel_path(site.id, &first), &json!({})).await;
    problem(res, StatusCode::FORBIDDEN, "forbidden").await;

    let technician = app.login_as(&org, "technician").await;
    let res = app.post(&technician, &cancel_path(site.id, &first), &json!({})).await;
    assert_eq!(res.status(), StatusCode::OK);
    let cancelled: Value = res.json().await.unwrap();
    assert_eq!(
        (cancelled["id"].as_str(), cancelled["state"].as_str()),
        (Some(first.as_str()), Some("cancelled"))
    );
    assert!(cancelled["cancelled_by"].as_str().unwrap().starts_with("api_key:"), "{cancelled}");
    let res = app.post(&technician, &cancel_path(site.id, &first), &json!({})).await;
    let refused = problem(res, StatusCode::CONFLICT, "command_not_pending").await;
    assert!(refused["detail"].as_str().unwrap().contains("cancelled"), "{refused}");
    // The collector's next push does not get it.
    let answer = site.push_evaluated(&app, &org, &endpoint(true)).await;
    assert!(answer.get("commands").is_none(), "a cancelled command was delivered: {answer}");
    // The cancellation is in the audit log.
    let audit: Value = app.get(&org.token, "/v1/audit-log").await.json().await.unwrap();
    let entry = &audit["items"][0];
    assert_eq!(
        (entry["action"].as_str(), entry["target"].as_str()),
        (Some("collector_command.cancel"), Some(first.as_str()))
    );
    assert_eq!(
        (entry["before"]["state"].as_str(), entry["after"]["state"].as_str()),
        (Some("pending"), Some("cancelled"))
    );

    // A new request is delivered with the next push; a delivered command cannot be cancelled.
    let second = retest(&app, &org.token, &finding).await;
    assert_ne!(second, first);
    let answer = site.push_evaluated(&app, &org, &endpoint(true)).await;
    assert_eq!(answer["commands"][0]["id"], second.as_str());
    let res = app.post(&org.token, &cancel_path(site.id, &second), &json!({})).await;
    problem(res, StatusCode::CONFLICT, "command_not_pending").await;

    // Newest first, a page at a time.
    let page = commands(&app, &org.token, site.id, "?limit=1").await;
    assert_eq!(
        (page["items"][0]["id"].as_str(), page["items"][0]["state"].as_str()),
        (Some(second.as_str()), Some("delivered"))
    );
    assert!(page["items"][0]["delivered_at"].is_string());
    let cursor = page["next_cursor"].as_str().expect("a next page");
    let page = commands(&app, &org.token, site.id, &format!("?limit=1&cursor={cursor}")).await;
    assert_eq!(page["items"][0]["id"], first.as_str());
    let res = app.get(&org.token, &format!("/v1/collectors/{}/commands?limit=0", site.id)).await;
    problem(res, StatusCode::BAD_REQUEST, "invalid_parameter").await;
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_command_not_picked_up_in_time_expires_and_is_never_delivered() {
    let app = spawn_app_with(|s| s.collectors.command_ttl_secs = 1).await;
    let org = app.bootstrap_org("Northwind MSP").await;
    let (site, finding) = site_with_finding(&app, &org).await;
    let command = retest(&app, &org.token, &finding).await;
    tokio::time::sleep(Duration::from_millis(1_200)).await;

    let page = commands(&app, &org.token, site.id, "").await;
    assert_eq!(page["items"][0]["state"], "expired", "{page}");
    let answer = site.push_evaluated(&app, &org, &endpoint(true)).await;
    assert!(answer.get("commands").is_none(), "an expired command was delivered: {answer}");
    let res = app.post(&org.token, &cancel_path(site.id, &command), &json!({})).await;
    problem(res, StatusCode::CONFLICT, "command_not_pending").await;
    // Asking again makes a new command, which waits.
    let fresh = retest(&app, &org.token, &finding).await;
    assert_ne!(fresh, command);
    assert_eq!(commands(&app, &org.token, site.id, "").await["items"][0]["state"], "pending");
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_organisations_collector_or_command_is_not_found() {
    let app = spawn_app().await;
    let northwind = app.bootstrap_org("Northwind MSP").await;
    let (site, finding) = site_with_finding(&app, &northwind).await;
    let command = retest(&app, &northwind.token, &finding).await;
    let contoso = app.bootstrap_org("Contoso MSP").await;

    let res = app.get(&contoso.token, &format!("/v1/collectors/{}/commands", site.id)).await;
    problem(res, StatusCode::NOT_FOUND, "not_found").await;
    let res = app.post(&contoso.token, &cancel_path(site.id, &command), &json!({})).await;
    problem(res, StatusCode::NOT_FOUND, "not_found").await;
    // Under another of the organisation's own collectors, or an id it never had: 404 too.
    let (_, other_site) = app.tenant_with_collector(&northwind).await;
    let res = app.post(&northwind.token, &cancel_path(other_site.id, &command), &json!({})).await;
    problem(res, StatusCode::NOT_FOUND, "not_found").await;
    let res =
        app.post(&northwind.token, &cancel_path(site.id, &Uuid::now_v7().to_string()), &json!({})).await;
    problem(res, StatusCode::NOT_FOUND, "not_found").await;
    let res = app.get(&northwind.token, &format!("/v1/collectors/{}/commands", Uuid::now_v7())).await;
    problem(res, StatusCode::NOT_FOUND, "not_found").await;

    // Nothing changed: the command still waits and is delivered.
    let page = commands(&app, &northwind.token, site.id, "").await;
    assert_eq!(page["items"][0]["state"], "pending");
    let answer = site.push_evaluated(&app, &northwind, &endpoint(true)).await;
    assert_eq!(answer["commands"][0]["id"], command.as_str());
    app.shutdown().await;
}
