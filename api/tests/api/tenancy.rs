//! Organisations never see each other: another organisation's object is a 404.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_organisations_objects_answer_404() {
    let app = spawn_app().await;
    let a = app.bootstrap_org("MSP A").await;
    let b = app.bootstrap_org("MSP B").await;
    let (b_tenant, b_collector) = app.tenant_with_collector(&b).await;
    let res = b_collector
        .push(&app, &batch(vec![refused_endpoint("passwordreset.microsoftonline.com", 443)]))
        .await;
    assert_eq!(res.status(), StatusCode::ACCEPTED);
    let findings = app.wait_for_findings(&b.token, &format!("tenant_id={b_tenant}"), |f| !f.is_empty()).await;
    let b_finding = findings[0]["id"].as_str().unwrap().to_owned();

    for path in [
        format!("/v1/tenants/{b_tenant}"),
        format!("/v1/collectors/{}", b_collector.id),
        format!("/v1/findings/{b_finding}"),
    ] {
        let res = app.get(&a.token, &path).await;
        problem(res, StatusCode::NOT_FOUND, "not_found").await;
        assert_eq!(app.get(&b.token, &path).await.status(), StatusCode::OK, "{path}");
    }
    let res =
        app.post(&a.token, &format!("/v1/tenants/{b_tenant}/collectors"), &json!({ "name": "sneaky" })).await;
    problem(res, StatusCode::NOT_FOUND, "not_found").await;
    let res = app.post(&a.token, &format!("/v1/collectors/{}/revoke", b_collector.id), &json!({})).await;
    problem(res, StatusCode::NOT_FOUND, "not_found").await;

    // A filter naming B's tenant is a 404 on every listing, as for a tenant that does not exist:
    // an empty list would tell A that the tenant exists.
    for tenant in [b_tenant, uuid::Uuid::new_v4()] {
        for path in [
            format!("/v1/findings?tenant_id={tenant}"),
            format!("/v1/collectors?tenant_id={tenant}"),
            format!("/v1/rule-settings?tenant_id={tenant}"),
        ] {
            let res = app.get(&a.token, &path).await;
            problem(res, StatusCode::NOT_FOUND, "not_found").await;
        }
    }
    let res = app.get(&b.token, &format!("/v1/collectors?tenant_id={b_tenant}")).await;
    let b_collectors: Value = res.json().await.unwrap();
    assert_eq!(b_collectors.as_array().unwrap().len(), 1);
    let a_tenants: Value = app.get(&a.token, "/v1/tenants").await.json().await.unwrap();
    assert_eq!(a_tenants, json!([]));
    let a_collectors: Value = app.get(&a.token, "/v1/collectors").await.json().await.unwrap();
    assert_eq!(a_collectors, json!([]));

    // B's collector still works: A's attempts changed nothing.
    let c: Value =
        app.get(&b.token, &format!("/v1/collectors/{}", b_collector.id)).await.json().await.unwrap();
    assert_eq!(c["status"], "active");
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_parameters_and_unknown_routes_are_problems() {
    let app = spawn_app().await;
    let org = app.bootstrap_org("MSP").await;
    let res = app.get(&org.token, "/v1/findings?severity=apocalyptic").await;
    problem(res, StatusCode::BAD_REQUEST, "invalid_parameter").await;
    let res = app.get(&org.token, "/v1/findings?limit=0").await;
    problem(res, StatusCode::BAD_REQUEST, "invalid_parameter").await;
    let res = app.get(&org.token, "/v1/findings?cursor=zzz").await;
    problem(res, StatusCode::BAD_REQUEST, "invalid_parameter").await;
    let res = app.get(&org.token, "/v1/tenants/not-a-uuid").await;
    problem(res, StatusCode::NOT_FOUND, "not_found").await;
    let res = app.get(&org.token, "/v1/nothing-here").await;
    problem(res, StatusCode::NOT_FOUND, "not_found").await;
    let res = app.post(&org.token, "/v1/tenants", &json!({ "name": "" })).await;
    problem(res, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").await;
    let res = app.post(&org.token, "/v1/tenants", &json!({ "nam": "typo" })).await;
    problem(res, StatusCode::BAD_REQUEST, "malformed_json").await;
    let res = app.post(&org.token, "/v1/tenants", &json!({ "name": "x", "entra_tenant_id": "nope" })).await;
    problem(res, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").await;
    let tenants: Value = app.get(&org.token, "/v1/tenants").await.json().await.unwrap();
    assert_eq!(tenants, json!([]), "refused requests created something");
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn findings_paginate_with_a_cursor_and_filter() {
    let app = spawn_app().await;
    let org = app.bootstrap_org("MSP").await;
    let (tenant, collector) = app.tenant_with_collector(&org).await;
    let results =
        (0..5).map(|i| refused_endpoint(&format!("relay{i}.servicebus.windows.net"), 443)).collect();
    assert_eq!(collector.push(&app, &batch(results)).await.status(), StatusCode::ACCEPTED);
    app.wait_for_findings(&org.token, &format!("tenant_id={tenant}&rule_id=endpoint-reachable"), |f| {
        f.len() == 5
    })
    .await;

    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let q = match &cursor {
            Some(c) => format!("/v1/findings?tenant_id={tenant}&limit=2&cursor={c}"),
            None => format!("/v1/findings?tenant_id={tenant}&limit=2"),
        };
        let page: Value = app.get(&org.token, &q).await.json().await.unwrap();
        for f in page["items"].as_array().unwrap() {
            seen.push(f["id"].as_str().unwrap().to_owned());
        }
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => break,
        }
    }
    let mut unique = seen.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(seen.len(), 5);
    assert_eq!(unique.len(), 5, "a page repeated a finding");

    assert_eq!(
        app.findings(&org.token, &format!("tenant_id={tenant}&severity=critical&status=open")).await.len(),
        5
    );
    assert!(app.findings(&org.token, &format!("tenant_id={tenant}&status=resolved")).await.is_empty());
    assert!(
        app.findings(&org.token, &format!("tenant_id={tenant}&rule_id=collector-silent")).await.is_empty()
    );
    app.shutdown().await;
}
