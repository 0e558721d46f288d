//! Findings people can act on: flap damping, acknowledgement, suppression and its expiry, stale
//! findings of silent collectors, "re-test now" reaching the collector, the MSP overview, and
//! the guards around all of it (roles, other organisations, bad input, races).

use std::time::Duration;

use chrono::Utc;
use reqwest::StatusCode;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::helpers::*;

const HOST: &str = "passwordreset.microsoftonline.com";

/// What the collector reports about the password reset endpoint.
fn endpoint(broken: bool) -> wbd_wire::IngestBatch {
    batch(vec![if broken { refused_endpoint(HOST, 443) } else { healthy_endpoint(HOST, 443) }])
}

fn reachable(tenant: Uuid) -> String {
    format!("tenant_id={tenant}&rule_id=endpoint-reachable")
}

fn id_of(finding: &Value) -> String {
    finding["id"].as_str().expect("finding id").to_owned()
}

fn event_kinds(detail: &Value) -> Vec<String> {
    detail["events"].as_array().unwrap().iter().map(|e| e["kind"].as_str().unwrap().to_owned()).collect()
}

/// A tenant whose collector reported the endpoint blocked once, and the finding that opened.
async fn open_finding(app: &TestApp, org: &Org) -> (Uuid, TestCollector, String) {
    let (tenant, site) = app.tenant_with_collector(org).await;
    site.push_evaluated(app, org, &endpoint(true)).await;
    let findings = app.wait_for_findings(&org.token, &reachable(tenant), |f| f.len() == 1).await;
    assert_eq!(findings[0]["status"], "open");
    (tenant, site, id_of(&findings[0]))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flapping_facts_do_not_flap_findings() {
    let app = spawn_app_with(|s| {
        s.rules.open_after = Some(2);
        s.rules.resolve_after = Some(2);
    })
    .await;
    let org = app.bootstrap_org("Northwind MSP").await;
    let (tenant, site) = app.tenant_with_collector(&org).await;

    // Broken, fixed, broken, fixed: never broken twice in a row, so nothing opens.
    for broken in [true, false, true, false, true] {
        site.push_evaluated(&app, &org, &endpoint(broken)).await;
        assert!(app.findings(&org.token, &reachable(tenant)).await.is_empty(), "opened after {broken}");
    }
    // Broken a second time in a row: now it opens.
    site.push_evaluated(&app, &org, &endpoint(true)).await;
    let findings = app.findings(&org.token, &reachable(tenant)).await;
    assert_eq!(findings.len(), 1);
    assert_eq!(findings[0]["status"], "open");
    let id = id_of(&findings[0]);

    // Fixed, broken, fixed: never fixed twice in a row, so it stays open.
    for broken in [false, true, false] {
        site.push_evaluated(&app, &org, &endpoint(broken)).await;
        assert_eq!(app.finding(&org.token, &id).await["status"], "open");
    }
    // Fixed a second time in a row: it resolves, after exactly two transitions.
    site.push_evaluated(&app, &org, &endpoint(false)).await;
    let detail = app.finding(&org.token, &id).await;
    assert_eq!(detail["status"], "resolved");
    assert_eq!(event_kinds(&detail), ["opened", "resolved"]);
    assert_eq!(detail["reopen_count"], 0);
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenants_damping_override_applies_to_that_tenant_alone() {
    let app = spawn_app().await;
    let org = app.bootstrap_org("Northwind MSP").await;
    let (patient, patient_site) = app.tenant_with_collector(&org).await;
    let (eager, eager_site) = app.tenant_with_collector(&org).await;
    let res = app
        .client
        .put(app.url(&format!("/v1/rule-settings/endpoint-reachable?tenant_id={patient}")))
        .bearer_auth(&org.token)
        .json(&json!({ "open_after": 2 }))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK, "{}", res.text().await.unwrap_or_default());

    patient_site.push_evaluated(&app, &org, &endpoint(true)).await;
    eager_site.push_evaluated(&app, &org, &endpoint(true)).await;
    assert_eq!(
        app.findings(&org.token, &reachable(eager)).await.len(),
        1,
        "the server-wide default opens at once"
    );
    assert!(
        app.findings(&org.token, &reachable(patient)).await.is_empty(),
        "the override waits for a second failure"
    );
    patient_site.push_evaluated(&app, &org, &endpoint(true)).await;
    assert_eq!(app.findings(&org.token, &reachable(patient)).await.len(), 1);
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_acknowledged_finding_resolves_when_fixed_and_reopens_as_news() {
    let app = spawn_app().await;
    let org = app.bootstrap_org("Northwind MSP").await;
    let (tenant, site, id) = open_finding(&app, &org).await;

    let res = app
        .act_on_finding(&org.token, &id, "acknowledge", Some(json!({ "note": "calling their ISP" })))
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    let acked: Value = res.json().await.unwrap();
    assert_eq!(acked["status"], "acknowledged");
    assert!(acked["acknowledged_by"].as_str().unwrap().starts_with("api_key:"));
    assert!(acked["acknowledged_at"].is_string());
    let event = acked["events"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(
        (event["kind"].as_str(), event["note"].as_str()),
        (Some("acknowledged"), Some("calling their ISP"))
    );
    assert_eq!(event["actor"], acked["acknowledged_by"]);

    site.push_evaluated(&app, &org, &endpoint(false)).await;
    let detail = app.finding(&org.token, &id).await;
    assert_eq!(detail["status"], "resolved");
    assert_eq!(event_kinds(&detail), ["opened", "acknowledged", "resolved"]);
    assert_eq!(detail["events"][2]["actor"], "system");
    assert!(detail["acknowledged_by"].is_null(), "resolving ends the acknowledgement");

    // A resolved finding cannot be acknowledged; when it fails again it is news again.
    let res = app.act_on_finding(&org.token, &id, "acknowledge", None).await;
    let body = problem(res, StatusCode::CONFLICT, "invalid_transition").await;
    assert!(body["detail"].as_str().unwrap().contains("resolved"), "{body}");
    site.push_evaluated(&app, &org, &endpoint(true)).await;
    let findings = app.findings(&org.token, &reachable(tenant)).await;
    assert_eq!(
        (findings[0]["status"].as_str(), findings[0]["reopen_count"].as_u64()),
        (Some("open"), Some(1))
    );
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn suppression_expiry_announces_the_finding_again() {
    let app = spawn_app().await;
    let org = app.bootstrap_org("Northwind MSP").await;
    let (tenant, _site, id) = open_finding(&app, &org).await;

    let until = Utc::now() + chrono::Duration::seconds(2);
    let res = app
        .act_on_finding(
            &org.token,
            &id,
            "suppress",
            Some(json!({ "reason": "firewall change on Friday", "until": until })),
        )
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    let suppressed: Value = res.json().await.unwrap();
    assert_eq!(suppressed["status"], "suppressed");
    assert_eq!(suppressed["suppression_reason"], "firewall change on Friday");
    assert!(suppressed["suppressed_by"].as_str().unwrap().starts_with("api_key:"));
    let suppressed_findings =
        app.findings(&org.token, &format!("tenant_id={tenant}&status=suppressed")).await;
    assert_eq!(suppressed_findings.len(), 1);
    let tenant_view: Value =
        app.get(&org.token, &format!("/v1/tenants/{tenant}")).await.json().await.unwrap();
    assert_eq!(tenant_view["health"]["suppressed_findings"], 1);
    assert_eq!(
        tenant_view["health"]["open_findings"]["critical"], 0,
        "a suppressed finding is not counted as open"
    );

    // Nobody pushes: the sweep notices the suppression ran out while the problem is still there.
    let findings = app.wait_for_findings(&org.token, &reachable(tenant), |f| f[0]["status"] == "open").await;
    assert!(findings[0]["suppressed_until"].is_null());
    let detail = app.finding(&org.token, &id).await;
    assert_eq!(event_kinds(&detail), ["opened", "suppressed", "suppression_expired"]);
    let suppressed_event = &detail["events"][1];
    assert_eq!(suppressed_event["note"], "firewall change on Friday");
    assert!(suppressed_event["suppressed_until"].is_string());
    assert_eq!(detail["events"][2]["actor"], "system");
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_collectors_finding_is_held_until_it_pushes_again() {
    let app = spawn_app_with(|s| {
        s.rules.open_after = Some(2);
        s.rules.resolve_after = Some(2);
    })
    .await;
    let org = app.bootstrap_org("Northwind MSP").await;
    let (tenant, site_a) = app.tenant_with_collector(&org).await;
    let site_b = app.add_collector(&org, tenant).await;

    site_a.push_evaluated(&app, &org, &endpoint(true)).await;
    site_a.push_evaluated(&app, &org, &endpoint(true)).await;
    let findings = app.findings(&org.token, &reachable(tenant)).await;
    assert_eq!(findings.len(), 1);
    let id = id_of(&findings[0]);
    assert_eq!(findings[0]["collector_id"], site_a.id.to_string());

    // Site A sees the endpoint fixed once (one pass of the two needed), then goes quiet.
    site_a.push_evaluated(&app, &org, &last_push(endpoint(false))).await;
    let detail = app.finding(&org.token, &id).await;
    assert_eq!((detail["status"].as_str(), detail["stale"].as_bool()), (Some("open"), Some(false)));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while app.finding(&org.token, &id).await["stale"] != true {
        assert!(tokio::time::Instant::now() < deadline, "site A never went silent");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }

    // Site B pushes new facts. Site A's last result would be the second pass in a row, but it
    // rests on a silent collector's old data: the finding is held, not resolved.
    site_b
        .push_evaluated(
            &app,
            &org,
            &batch(vec![healthy_endpoint("ssprdedicatedsbprodscu.servicebus.windows.net", 443)]),
        )
        .await;
    site_b
        .push_evaluated(
            &app,
            &org,
            &batch(vec![healthy_endpoint("ssprdedicatedsbprodscu.servicebus.windows.net", 443)]),
        )
        .await;
    let held = app.finding(&org.token, &id).await;
    assert_eq!((held["status"].as_str(), held["stale"].as_bool()), (Some("open"), Some(true)));
    assert_eq!(event_kinds(&held), ["opened"]);
    let tenant_view: Value =
        app.get(&org.token, &format!("/v1/tenants/{tenant}")).await.json().await.unwrap();
    assert_eq!(tenant_view["health"]["silent_collectors"], 1);

    // Site A is back and still sees the endpoint fixed: released, and resolved.
    site_a.push_evaluated(&app, &org, &endpoint(false)).await;
    let released = app.finding(&org.token, &id).await;
    assert_eq!((released["status"].as_str(), released["stale"].as_bool()), (Some("resolved"), Some(false)));
    assert_eq!(event_kinds(&released), ["opened", "resolved"]);
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retest_request_reaches_the_collector_in_the_answer_to_its_next_push() {
    let app = spawn_app().await;
    let org = app.bootstrap_org("Northwind MSP").await;
    let (_tenant, site, id) = open_finding(&app, &org).await;

    let res = app.act_on_finding(&org.token, &id, "retest", None).await;
    assert_eq!(res.status(), StatusCode::ACCEPTED);
    let requested: Value = res.json().await.unwrap();
    assert_eq!(requested["finding_id"], id.as_str());
    let commands = requested["commands"].as_array().unwrap();
    assert_eq!(commands.len(), 1);
    assert_eq!(commands[0]["collector_id"], site.id.to_string());
    assert_eq!(commands[0]["probes"], json!(["endpoint"]));
    let command_id = commands[0]["id"].clone();
    let detail = app.finding(&org.token, &id).await;
    let event = detail["events"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(event["kind"], "retest_requested");
    assert!(event["actor"].as_str().unwrap().starts_with("api_key:"));
    assert!(event["note"].as_str().unwrap().contains("endpoint"), "{event}");
    assert_eq!(detail["status"], "open", "asking for a re-test changes nothing else");

    // Asking again before the collector came by does not queue a second command.
    let again: Value = app.act_on_finding(&org.token, &id, "retest", None).await.json().await.unwrap();
    assert_eq!(again["commands"][0]["id"], command_id);

    // The collector's next push gets the command in its 202.
    let next = endpoint(true);
    let answer = site.push_evaluated(&app, &org, &next).await;
    let delivered = answer["commands"].as_array().expect("commands in the 202");
    assert_eq!(delivered.len(), 1);
    assert_eq!(delivered[0]["id"], command_id);
    assert_eq!(delivered[0]["command"], "run_probes");
    assert_eq!(delivered[0]["probes"], json!(["endpoint"]));
    // The answer was lost and the collector retries the same batch: the same command again.
    let retried: Value = site.push(&app, &next).await.json().await.unwrap();
    assert_eq!(retried["commands"], answer["commands"]);
    // Its next batch does not carry it any more.
    let later = site.push_evaluated(&app, &org, &endpoint(true)).await;
    assert!(later.get("commands").is_none(), "{later}");

    // Once the collector is revoked, nothing can re-test the finding.
    let res = app.post(&org.token, &format!("/v1/collectors/{}/revoke", site.id), &json!({})).await;
    assert_eq!(res.status(), StatusCode::OK);
    let res = app.act_on_finding(&org.token, &id, "retest", None).await;
    problem(res, StatusCode::CONFLICT, "retest_unavailable").await;
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_overview_lists_tenants_worst_first_with_totals() {
    let app = spawn_app().await;
    let org = app.bootstrap_org("Northwind MSP").await;
    let quiet = app.create_tenant(&org, "Alpha (no collector yet)").await;
    let (broken, broken_site) = app.tenant_with_collector(&org).await;
    broken_site.push_evaluated(&app, &org, &endpoint(true)).await;
    let fine = app.create_tenant(&org, "Charlie").await;
    let fine_site = app.add_collector(&org, fine).await;
    fine_site.push_evaluated(&app, &org, &endpoint(false)).await;

    let res = app.get(&org.token, "/v1/overview").await;
    assert_eq!(res.status(), StatusCode::OK);
    let overview: Value = res.json().await.unwrap();
    let tenants = overview["tenants"].as_array().unwrap();
    let order: Vec<&str> = tenants.iter().map(|t| t["id"].as_str().unwrap()).collect();
    assert_eq!(order, [broken.to_string(), fine.to_string(), quiet.to_string()]);
    let scores: Vec<u64> = tenants.iter().map(|t| t["health"]["score"].as_u64().unwrap()).collect();
    assert!(scores.windows(2).all(|w| w[0] <= w[1]), "{scores:?}");
    assert!(scores[0] <= 60, "a critical finding costs 40 points: {scores:?}");
    assert_eq!(scores[2], 100);
    assert_eq!(tenants[0]["health"]["status"], "critical");
    assert_eq!(tenants[2]["health"]["status"], "unknown");
    // The tenant with data knows which rules it could not decide (no collector runs their probes).
    assert!(tenants[1]["health"]["unknown_rules"].as_u64().unwrap() > 0, "{}", tenants[1]);

    let totals = &overview["totals"];
    assert_eq!(totals["tenants"], 3);
    assert_eq!(totals["critical_tenants"], 1);
    assert_eq!(totals["unknown_tenants"], 1);
    assert_eq!(totals["open_findings"]["critical"], tenants[0]["health"]["open_findings"]["critical"]);
    assert_eq!(totals["collectors"], 2);
    assert_eq!(totals["lowest_score"], scores[0]);

    // The tenant list tells the same story in the same order.
    let list: Value = app.get(&org.token, "/v1/tenants").await.json().await.unwrap();
    let listed: Vec<&str> = list.as_array().unwrap().iter().map(|t| t["id"].as_str().unwrap()).collect();
    assert_eq!(listed, order);
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_organisations_finding_is_not_found_for_every_action() {
    let app = spawn_app().await;
    let owner = app.bootstrap_org("MSP A").await;
    let other = app.bootstrap_org("MSP B").await;
    let (_tenant, _site, id) = open_finding(&app, &owner).await;
    let before = app.finding(&owner.token, &id).await;

    let until = Utc::now() + chrono::Duration::days(1);
    for (action, body) in [
        ("acknowledge", None),
        ("suppress", Some(json!({ "reason": "not mine", "until": until }))),
        ("unsuppress", None),
        ("retest", None),
    ] {
        let res = app.act_on_finding(&other.token, &id, action, body).await;
        problem(res, StatusCode::NOT_FOUND, "not_found").await;
    }
    for action in ["acknowledge", "unsuppress", "retest"] {
        let res = app.act_on_finding(&owner.token, &Uuid::new_v4().to_string(), action, None).await;
        problem(res, StatusCode::NOT_FOUND, "not_found").await;
    }
    assert_eq!(app.finding(&owner.token, &id).await, before);
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_only_keys_may_look_but_not_act_and_technicians_may_act() {
    let app = spawn_app().await;
    let org = app.bootstrap_org("Northwind MSP").await;
    let (_tenant, _site, id) = open_finding(&app, &org).await;
    let reader = app.login_as(&org, "read_only").await;
    let technician = app.login_as(&org, "technician").await;

    let until = Utc::now() + chrono::Duration::days(1);
    for (action, body) in [
        ("acknowledge", None),
        ("suppress", Some(json!({ "reason": "x", "until": until }))),
        ("unsuppress", None),
        ("retest", None),
    ] {
        let res = app.act_on_finding(&reader, &id, action, body).await;
        problem(res, StatusCode::FORBIDDEN, "forbidden").await;
    }
    let detail = app.finding(&reader, &id).await;
    assert_eq!((detail["status"].as_str(), event_kinds(&detail).len()), (Some("open"), 1));
    assert_eq!(app.get(&reader, "/v1/overview").await.status(), StatusCode::OK);

    let res = app
        .act_on_finding(
            &technician,
            &id,
            "suppress",
            Some(json!({ "reason": "vendor ticket 4711", "until": until })),
        )
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    let res = app.act_on_finding(&technician, &id, "unsuppress", Some(json!({}))).await;
    assert_eq!(res.status(), StatusCode::OK);
    let detail: Value = res.json().await.unwrap();
    assert_eq!(detail["status"], "open");
    assert_eq!(event_kinds(&detail), ["opened", "suppressed", "unsuppressed"]);
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_invalid_transitions_and_races_change_nothing() {
    let app = spawn_app().await;
    let org = app.bootstrap_org("Northwind MSP").await;
    let (_tenant, _site, id) = open_finding(&app, &org).await;
    let before = app.finding(&org.token, &id).await;
    let soon = Utc::now() + chrono::Duration::hours(1);

    let refused = [
        (json!({ "until": soon }), StatusCode::BAD_REQUEST, "malformed_json", "reason"),
        (
            json!({ "reason": "x", "until": soon, "forever": true }),
            StatusCode::BAD_REQUEST,
            "malformed_json",
            "forever",
        ),
        (
            json!({ "reason": "x", "until": "next friday" }),
            StatusCode::BAD_REQUEST,
            "malformed_json",
            "until",
        ),
        (
            json!({ "reason": "  ", "until": soon }),
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
            "reason",
        ),
        (
            json!({ "reason": "x", "until": Utc::now() - chrono::Duration::minutes(1) }),
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
            "future",
        ),
        (
            json!({ "reason": "x", "until": Utc::now() + chrono::Duration::days(91) }),
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
            "90 days",
        ),
        (
            json!({ "reason": "x".repeat(501), "until": soon }),
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
            "500",
        ),
    ];
    for (body, status, code, mentions) in refused {
        let res = app.act_on_finding(&org.token, &id, "suppress", Some(body.clone())).await;
        let problem = problem(res, status, code).await;
        assert!(problem["detail"].as_str().unwrap().contains(mentions), "{body} → {problem}");
    }
    let res = app.act_on_finding(&org.token, &id, "acknowledge", Some(json!({ "notes": "typo" }))).await;
    problem(res, StatusCode::BAD_REQUEST, "malformed_json").await;
    let res =
        app.act_on_finding(&org.token, &id, "acknowledge", Some(json!({ "note": "x".repeat(2001) }))).await;
    problem(res, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").await;
    let res = app
        .client
        .post(app.url(&format!("/v1/findings/{id}/acknowledge")))
        .bearer_auth(&org.token)
        .header("content-type", "text/plain")
        .body("on it")
        .send()
        .await
        .unwrap();
    problem(res, StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type").await;

    // Transitions the status does not allow.
    let res = app.act_on_finding(&org.token, &id, "unsuppress", None).await;
    let body = problem(res, StatusCode::CONFLICT, "invalid_transition").await;
    assert!(body["detail"].as_str().unwrap().contains("not suppressed"), "{body}");
    assert_eq!(app.finding(&org.token, &id).await, before, "nothing changed");

    // Someone else acts first: acting on the version you saw is refused.
    let seen = before["version"].as_i64().unwrap();
    let res = app.act_on_finding(&org.token, &id, "acknowledge", Some(json!({ "version": seen }))).await;
    assert_eq!(res.status(), StatusCode::OK);
    let res = app
        .act_on_finding(
            &org.token,
            &id,
            "suppress",
            Some(json!({ "reason": "x", "until": soon, "version": seen })),
        )
        .await;
    let body = problem(res, StatusCode::CONFLICT, "finding_changed").await;
    assert!(body["detail"].as_str().unwrap().contains("reload"), "{body}");
    let res = app.act_on_finding(&org.token, &id, "acknowledge", None).await;
    problem(res, StatusCode::CONFLICT, "invalid_transition").await;
    let after = app.finding(&org.token, &id).await;
    assert_eq!(event_kinds(&after), ["opened", "acknowledged"]);
    assert_eq!(after["version"].as_i64(), Some(seen + 1));
    app.shutdown().await;
}
