//! Per-organisation and per-tenant rule configuration: overrides, custom rules in CEL, the audit
//! log, dry runs, and rule texts in the caller's language.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::*;

async fn put(app: &TestApp, token: &str, path: &str, body: &Value) -> reqwest::Response {
    app.client.put(app.url(path)).bearer_auth(token).json(body).send().await.unwrap()
}

async fn delete(app: &TestApp, token: &str, path: &str) -> reqwest::Response {
    app.client.delete(app.url(path)).bearer_auth(token).send().await.unwrap()
}

fn on(findings: &[Value], rule: &str) -> Vec<Value> {
    findings.iter().filter(|f| f["rule_id"] == rule).cloned().collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_override_changes_that_tenant_only_and_is_audited() {
    let app = spawn_app().await;
    let org = app.bootstrap_org("MSP").await;
    let (contoso, c1) = app.tenant_with_collector(&org).await;
    let (fabrikam, c2) = app.tenant_with_collector(&org).await;
    for c in [&c1, &c2] {
        let res =
            c.push(&app, &batch(vec![refused_endpoint("passwordreset.microsoftonline.com", 443)])).await;
        assert_eq!(res.status(), StatusCode::ACCEPTED);
    }
    for t in [contoso, fabrikam] {
        app.wait_for_findings(
            &org.token,
            &format!("tenant_id={t}&rule_id=endpoint-reachable&status=open"),
            |f| f.len() == 1,
        )
        .await;
    }

    // Contoso accepts the risk: the rule is disabled there, so its finding resolves.
    let res = put(
        &app,
        &org.token,
        &format!("/v1/rule-settings/endpoint-reachable?tenant_id={contoso}"),
        &json!({ "disabled": true }),
    )
    .await;
    assert_eq!(res.status(), StatusCode::OK, "{}", res.text().await.unwrap_or_default());
    app.wait_for_findings(
        &org.token,
        &format!("tenant_id={contoso}&rule_id=endpoint-reachable&status=resolved"),
        |f| f.len() == 1,
    )
    .await;
    // Fabrikam is untouched.
    let still = app
        .findings(&org.token, &format!("tenant_id={fabrikam}&rule_id=endpoint-reachable&status=open"))
        .await;
    assert_eq!(still.len(), 1);

    // An organisation-wide severity override reaches Fabrikam.
    let res =
        put(&app, &org.token, "/v1/rule-settings/endpoint-reachable", &json!({ "severity": "medium" })).await;
    assert_eq!(res.status(), StatusCode::OK);
    app.wait_for_findings(
        &org.token,
        &format!("tenant_id={fabrikam}&rule_id=endpoint-reachable&severity=medium"),
        |f| f.len() == 1,
    )
    .await;

    let listed: Value =
        app.get(&org.token, &format!("/v1/rule-settings?tenant_id={contoso}")).await.json().await.unwrap();
    assert_eq!(listed.as_array().unwrap().len(), 2, "organisation and tenant level: {listed:#}");

    // Who changed what, newest first.
    let audit: Value = app.get(&org.token, "/v1/audit-log").await.json().await.unwrap();
    let items = audit["items"].as_array().unwrap();
    assert_eq!(items.len(), 2);
    assert_eq!(items[0]["action"], "rule_setting.put");
    assert_eq!(items[0]["after"], json!({ "severity": "medium" }));
    assert_eq!(items[1]["tenant_id"], json!(contoso));
    assert!(items[0]["actor"].as_str().unwrap().starts_with("api_key:"));

    // Removing the tenant override brings the finding back.
    let res =
        delete(&app, &org.token, &format!("/v1/rule-settings/endpoint-reachable?tenant_id={contoso}")).await;
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    app.wait_for_findings(
        &org.token,
        &format!("tenant_id={contoso}&rule_id=endpoint-reachable&status=open"),
        |f| f.len() == 1,
    )
    .await;
    let res =
        delete(&app, &org.token, &format!("/v1/rule-settings/endpoint-reachable?tenant_id={contoso}")).await;
    problem(res, StatusCode::NOT_FOUND, "not_found").await;
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_overrides_are_refused_and_change_nothing() {
    let app = spawn_app().await;
    let org = app.bootstrap_org("MSP").await;
    let other = app.bootstrap_org("Other MSP").await;
    let (tenant, _) = app.tenant_with_collector(&org).await;

    let res = put(
        &app,
        &org.token,
        "/v1/rule-settings/idle-connection-survives",
        &json!({ "params": { "min_idle_secs": 5 } }),
    )
    .await;
    let p = problem(res, StatusCode::UNPROCESSABLE_ENTITY, "invalid_rule_settings").await;
    assert_eq!(p["errors"][0]["pointer"], "/idle-connection-survives/params/min_idle_secs", "{p:#}");
    let res = put(
        &app,
        &org.token,
        "/v1/rule-settings/idle-connection-survives",
        &json!({ "params": { "nope": 1 } }),
    )
    .await;
    problem(res, StatusCode::UNPROCESSABLE_ENTITY, "invalid_rule_settings").await;
    let res =
        put(&app, &org.token, "/v1/rule-settings/endpoint-reachable", &json!({ "severity": "apocalyptic" }))
            .await;
    problem(res, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").await;
    let res = put(&app, &org.token, "/v1/rule-settings/no-such-rule", &json!({ "disabled": true })).await;
    problem(res, StatusCode::NOT_FOUND, "not_found").await;
    // Another organisation's tenant.
    let res = put(
        &app,
        &other.token,
        &format!("/v1/rule-settings/endpoint-reachable?tenant_id={tenant}"),
        &json!({ "disabled": true }),
    )
    .await;
    problem(res, StatusCode::NOT_FOUND, "not_found").await;
    // Read-only users read but do not write.
    let created: Value = app
        .post(&org.token, "/v1/api-keys", &json!({ "name": "ro", "role": "read_only" }))
        .await
        .json()
        .await
        .unwrap();
    let reader = app.login(created["key"].as_str().unwrap()).await;
    let res = put(&app, &reader, "/v1/rule-settings/endpoint-reachable", &json!({ "disabled": true })).await;
    problem(res, StatusCode::FORBIDDEN, "forbidden").await;

    let listed: Value =
        app.get(&org.token, &format!("/v1/rule-settings?tenant_id={tenant}")).await.json().await.unwrap();
    assert_eq!(listed, json!([]));
    let audit: Value = app.get(&org.token, "/v1/audit-log").await.json().await.unwrap();
    assert_eq!(audit["items"], json!([]));
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn custom_rules_are_checked_when_saved_dry_run_and_then_open_findings() {
    let app = spawn_app().await;
    let org = app.bootstrap_org("MSP").await;
    let (contoso, c1) = app.tenant_with_collector(&org).await;
    let (fabrikam, c2) = app.tenant_with_collector(&org).await;
    let res = c1.push(&app, &batch(vec![healthy_endpoint("passwordreset.microsoftonline.com", 8443)])).await;
    assert_eq!(res.status(), StatusCode::ACCEPTED);
    let res = c2.push(&app, &batch(vec![healthy_endpoint("passwordreset.microsoftonline.com", 8443)])).await;
    assert_eq!(res.status(), StatusCode::ACCEPTED);

    // A typo is refused with the field and its position.
    let typo = json!({ "title": "Non-standard port", "severity": "medium", "condition": "facts.endpoint.exists(e, e.prot != 443)" });
    let res =
        put(&app, &org.token, &format!("/v1/custom-rules/non-standard-port?tenant_id={contoso}"), &typo)
            .await;
    let p = problem(res, StatusCode::UNPROCESSABLE_ENTITY, "invalid_custom_rule").await;
    assert_eq!(p["errors"][0]["field"], "condition");
    assert_eq!(p["errors"][0]["position"]["line"], 1, "{p:#}");
    assert!(p["detail"].as_str().unwrap().contains("prot"), "{p:#}");
    let res = put(
        &app,
        &org.token,
        "/v1/custom-rules/non-standard-port",
        &json!({ "title": "x", "severity": "low", "condition": "facts.endpoint.exists(e," }),
    )
    .await;
    problem(res, StatusCode::UNPROCESSABLE_ENTITY, "invalid_custom_rule").await;

    // A dry run shows what the rule would open, and stores nothing.
    let rule = json!({ "title": "Non-standard port", "severity": "medium", "condition": "facts.endpoint.exists(e, e.port != 443)" });
    let mut candidate = rule.clone();
    candidate["id"] = json!("non-standard-port");
    let res = app
        .post(&org.token, &format!("/v1/tenants/{contoso}/dry-run"), &json!({ "custom_rule": candidate }))
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    let dry: Value = res.json().await.unwrap();
    assert_eq!(on(dry["would_open"].as_array().unwrap(), "non-standard-port").len(), 1, "{dry:#}");
    assert!(
        app.findings(&org.token, &format!("tenant_id={contoso}&rule_id=non-standard-port")).await.is_empty()
    );
    let res = app
        .post(
            &org.token,
            &format!("/v1/tenants/{contoso}/dry-run"),
            &json!({ "custom_rule": { "id": "x", "title": "x", "severity": "low", "condition": "nope" } }),
        )
        .await;
    problem(res, StatusCode::UNPROCESSABLE_ENTITY, "invalid_custom_rule").await;

    // Saved for Contoso: its finding opens; Fabrikam, with the same facts, gets none.
    let res =
        put(&app, &org.token, &format!("/v1/custom-rules/non-standard-port?tenant_id={contoso}"), &rule)
            .await;
    assert_eq!(res.status(), StatusCode::OK, "{}", res.text().await.unwrap_or_default());
    let opened = app
        .wait_for_findings(
            &org.token,
            &format!("tenant_id={contoso}&rule_id=non-standard-port&status=open"),
            |f| f.len() == 1,
        )
        .await;
    assert_eq!(opened[0]["severity"], "medium");
    assert_eq!(opened[0]["title"], "Non-standard port");
    assert!(
        app.findings(&org.token, &format!("tenant_id={fabrikam}&rule_id=non-standard-port")).await.is_empty()
    );
    let listed: Value =
        app.get(&org.token, &format!("/v1/custom-rules?tenant_id={contoso}")).await.json().await.unwrap();
    assert_eq!(listed[0]["condition"], rule["condition"]);

    // Deleted: its finding resolves.
    let res =
        delete(&app, &org.token, &format!("/v1/custom-rules/non-standard-port?tenant_id={contoso}")).await;
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    app.wait_for_findings(
        &org.token,
        &format!("tenant_id={contoso}&rule_id=non-standard-port&status=resolved"),
        |f| f.len() == 1,
    )
    .await;
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rule_texts_follow_the_callers_language() {
    let app = spawn_app().await;
    let org = app.bootstrap_org("MSP").await;
    let title = |rules: &Value| {
        rules.as_array().unwrap().iter().find(|r| r["id"] == "endpoint-reachable").unwrap()["title"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let en: Value = app.get(&org.token, "/v1/rules").await.json().await.unwrap();
    let pl: Value = app.get(&org.token, "/v1/rules?lang=pl").await.json().await.unwrap();
    let uk: Value = app
        .client
        .get(app.url("/v1/rules"))
        .bearer_auth(&org.token)
        .header("accept-language", "uk-UA,uk;q=0.9,en;q=0.5")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let fallback: Value = app.get(&org.token, "/v1/rules?lang=de").await.json().await.unwrap();
    assert_eq!(pl[0]["lang"], "pl");
    assert_eq!(uk[0]["lang"], "uk");
    assert_ne!(title(&en), title(&pl));
    assert_ne!(title(&en), title(&uk));
    assert_eq!(title(&en), title(&fallback), "an unshipped language falls back to English");
    assert!(en.as_array().unwrap().len() >= 40, "the whole pack is listed");
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn findings_carry_rule_texts_in_the_callers_language() {
    let app = spawn_app().await;
    let org = app.bootstrap_org("MSP").await;
    let (tenant, collector) = app.tenant_with_collector(&org).await;
    let res =
        collector.push(&app, &batch(vec![refused_endpoint("passwordreset.microsoftonline.com", 443)])).await;
    assert_eq!(res.status(), StatusCode::ACCEPTED);
    let en = app
        .wait_for_findings(&org.token, &format!("tenant_id={tenant}&rule_id=endpoint-reachable"), |f| {
            f.len() == 1
        })
        .await;
    let pl: Value = app
        .get(&org.token, &format!("/v1/findings?tenant_id={tenant}&rule_id=endpoint-reachable&lang=pl"))
        .await
        .json()
        .await
        .unwrap();
    assert_ne!(en[0]["title"], pl["items"][0]["title"]);
    // The summary names this endpoint in Polish, not the English text.
    let pl_summary = pl["items"][0]["summary"].as_str().unwrap();
    assert_ne!(en[0]["summary"].as_str().unwrap(), pl_summary);
    assert!(pl_summary.contains("passwordreset.microsoftonline.com"), "{pl_summary}");
    let id = en[0]["id"].as_str().unwrap();
    let detail_en: Value = app.get(&org.token, &format!("/v1/findings/{id}")).await.json().await.unwrap();
    let detail_uk: Value = app
        .client
        .get(app.url(&format!("/v1/findings/{id}")))
        .bearer_auth(&org.token)
        .header("accept-language", "uk")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(!detail_en["remediation_steps"].as_array().unwrap().is_empty());
    assert_ne!(detail_en["remediation_steps"], detail_uk["remediation_steps"]);
    assert_ne!(detail_en["description"], detail_uk["description"]);
    app.shutdown().await;
}
