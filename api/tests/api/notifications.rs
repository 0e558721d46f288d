//! Findings reach the MSP's tools, end to end on the embedded product: a collector's push opens a
//! finding, the delivery engine running in the server signs it to a webhook and opens a Jira
//! issue; a person's acknowledgement is noted on the issue; the fix closes it; the finding shows
//! its ticket and every delivery its attempts.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};
use wbd_receivers::jira::JiraState;
use wbd_receivers::webhook::WebhookReceiver;
use wbd_receivers::{Faults, Receiver};

use crate::helpers::*;

async fn spawn_delivering_app() -> TestApp {
    spawn_app_with(|s| {
        s.delivery.https_only = false;
        s.delivery.allow_networks = vec!["127.0.0.1/32".into()];
        s.delivery.retry_schedule_secs = vec![0.2; 9];
        s.delivery.poll_interval_ms = 50;
        s.delivery.public_url = "https://wbd.example".into();
    })
    .await
}

async fn until<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while !check().await {
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn webhook_events(hook: &Receiver<WebhookReceiver>) -> Vec<Value> {
    hook.state.deliveries().iter().map(|d| d.json()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_finding_reaches_a_signed_webhook_and_one_jira_issue_that_closes_when_it_is_fixed() {
    let app = spawn_delivering_app().await;
    let org = app.bootstrap_org("Northwind MSP").await;
    let (tenant, collector) = app.tenant_with_collector(&org).await;
    let hook = Receiver::spawn(WebhookReceiver::new()).await;
    // The first delivery to the webhook fails: it is retried, and the attempt is on record.
    hook.common().set_faults(Faults { fail_next: 1, ..Default::default() });
    let jira = Receiver::spawn(JiraState::new("bot@northwind.example", "jira-token", "OPS")).await;

    let res = app
        .post(
            &org.token,
            "/v1/integrations",
            &json!({"name": "SIEM", "kind": "webhook", "url": format!("{}/wbd", hook.url())}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::CREATED);
    let created: Value = res.json().await.unwrap();
    let secret = created["signing_secret"].as_str().unwrap().to_owned();
    let hook_id = created["id"].as_str().unwrap().to_owned();
    let res = app
        .post(
            &org.token,
            "/v1/integrations",
            &json!({
                "name": "Service desk",
                "kind": "jira",
                "url": jira.url(),
                "config": {"email": "bot@northwind.example", "project_key": "OPS"},
                "credentials": {"api_token": "jira-token"},
                "filter": {"event_types": ["finding.opened", "finding.reopened", "finding.acknowledged", "finding.resolved"]},
            }),
        )
        .await;
    assert_eq!(res.status(), StatusCode::CREATED, "{}", res.text().await.unwrap_or_default());

    // The collector finds the Service Bus endpoint refused; its push starts a trace.
    let host = "ssprdedicatedsbprodscu.servicebus.windows.net";
    let trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";
    let b = batch(vec![refused_endpoint(host, 443)]);
    let res = app
        .client
        .post(app.url("/v1/ingest"))
        .bearer_auth(collector.token(&b))
        .header("traceparent", format!("00-{trace_id}-00f067aa0ba902b7-01"))
        .json(&b)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::ACCEPTED);
    let findings = app
        .wait_for_findings(&org.token, &format!("tenant_id={tenant}&status=open"), |f| !f.is_empty())
        .await;
    let finding_id = findings[0]["id"].as_str().unwrap().to_owned();
    until("the Jira issue exists", || async { jira.state.issues().len() == 1 }).await;
    until("the webhook has the event", || async { !webhook_events(&hook).is_empty() }).await;

    let opened = &hook.state.deliveries()[0];
    let mut headers = reqwest::header::HeaderMap::new();
    for name in ["webhook-id", "webhook-timestamp", "webhook-signature"] {
        headers.insert(name, opened.header(name).unwrap().parse().unwrap());
    }
    standardwebhooks::Webhook::new(&secret)
        .unwrap()
        .verify(&opened.body, &headers)
        .expect("signed with the secret we were given");
    let body = opened.json();
    assert_eq!(body["type"], "finding.opened");
    assert_eq!(body["data"]["finding"]["id"], finding_id.as_str());
    assert_eq!(body["data"]["tenant"]["name"], "Contoso");
    assert_eq!(body["data"]["finding"]["url"], format!("https://wbd.example/v1/findings/{finding_id}"));

    let issue = jira.state.issues()[0].clone();
    assert!(issue.summary.starts_with("[Writeback Doctor] Contoso: "), "{}", issue.summary);
    let until_ticket = || async {
        let f = app.finding(&org.token, &finding_id).await;
        f["tickets"].as_array().is_some_and(|t| t.iter().any(|t| t["external_id"] == "OPS-1"))
    };
    until("the finding shows its ticket", until_ticket).await;

    // A technician acknowledges: the issue gets the note.
    let res = app
        .act_on_finding(
            &org.token,
            &finding_id,
            "acknowledge",
            Some(json!({"note": "Firewall change CHG-42 booked"})),
        )
        .await;
    assert!(res.status().is_success(), "{}", res.status());
    until("the acknowledgement is on the issue", || async {
        jira.state.issues()[0].comment_texts().iter().any(|c| c.contains("CHG-42"))
    })
    .await;

    // Fixed: the issue closes and the webhook hears of it.
    assert_eq!(
        collector.push(&app, &batch(vec![healthy_endpoint(host, 443)])).await.status(),
        StatusCode::ACCEPTED
    );
    until("the issue is done", || async { jira.state.issues()[0].status == "Done" }).await;
    until("the webhook has the resolution", || async {
        webhook_events(&hook).iter().any(|e| e["type"] == "finding.resolved")
    })
    .await;
    assert_eq!(jira.state.issues().len(), 1, "one issue for the finding");

    // The delivery log: the webhook's first delivery needed two attempts.
    let res = app.get(&org.token, &format!("/v1/integrations/{hook_id}/deliveries")).await;
    let page: Value = res.json().await.unwrap();
    let items = page["items"].as_array().unwrap();
    let first = items.iter().find(|d| d["event_type"] == "finding.opened").expect("the opened delivery");
    assert_eq!(first["status"], "succeeded");
    assert_eq!(first["trace_id"], trace_id, "one trace from the collector's push to the delivery");
    let detail = app.get(&org.token, &format!("/v1/deliveries/{}", first["id"].as_str().unwrap())).await;
    let detail: Value = detail.json().await.unwrap();
    let attempts = detail["attempts"].as_array().unwrap();
    assert_eq!(attempts.len(), 2, "{detail:#}");
    assert_eq!(attempts[0]["succeeded"], false);
    assert_eq!(attempts[0]["status"], 500);
    assert_eq!(attempts[1]["succeeded"], true);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_suppression_that_runs_out_while_the_fault_persists_announces_the_finding_again() {
    let app = spawn_delivering_app().await;
    let org = app.bootstrap_org("Northwind MSP").await;
    let (tenant, collector) = app.tenant_with_collector(&org).await;
    let hook = Receiver::spawn(WebhookReceiver::new()).await;
    let jira = Receiver::spawn(JiraState::new("bot@northwind.example", "jira-token", "OPS")).await;
    // Both hear every event (no filter).
    for body in [
        json!({"name": "SIEM", "kind": "webhook", "url": format!("{}/wbd", hook.url())}),
        json!({
            "name": "Service desk",
            "kind": "jira",
            "url": jira.url(),
            "config": {"email": "bot@northwind.example", "project_key": "OPS"},
            "credentials": {"api_token": "jira-token"},
        }),
    ] {
        let res = app.post(&org.token, "/v1/integrations", &body).await;
        assert_eq!(res.status(), StatusCode::CREATED, "{}", res.text().await.unwrap_or_default());
    }

    // The relay is refused: a finding, a webhook event, a Jira issue.
    let host = "ssprdedicatedsbprodscu.servicebus.windows.net";
    let res = collector.push(&app, &batch(vec![refused_endpoint(host, 443)])).await;
    assert_eq!(res.status(), StatusCode::ACCEPTED);
    let findings = app
        .wait_for_findings(&org.token, &format!("tenant_id={tenant}&status=open"), |f| !f.is_empty())
        .await;
    let finding_id = findings[0]["id"].as_str().unwrap().to_owned();
    until("the Jira issue exists", || async { jira.state.issues().len() == 1 }).await;
    let key = jira.state.issues()[0].key.clone();
    until("the webhook has the opening", || async {
        webhook_events(&hook).iter().any(|e| e["type"] == "finding.opened")
    })
    .await;

    // Suppressed for a few seconds: the webhook hears of it, and the issue gets the reason as a
    // note and is otherwise left as it is (open).
    let suppressed_until = chrono::Utc::now() + chrono::Duration::seconds(5);
    let res = app
        .act_on_finding(
            &org.token,
            &finding_id,
            "suppress",
            Some(json!({
                "reason": "Firewall change CHG-77 waits for Saturday's maintenance window",
                "until": suppressed_until.to_rfc3339(),
            })),
        )
        .await;
    let status = res.status();
    assert!(status.is_success(), "{status}: {}", res.text().await.unwrap_or_default());
    let issue_notes = || jira.state.issue(&key).expect("the issue").comment_texts();
    until("the suppression is noted on the issue", || async {
        issue_notes().iter().any(|c| c.contains("CHG-77"))
    })
    .await;
    assert_eq!(jira.state.issue(&key).unwrap().status, "To Do", "a suppression does not close the issue");
    until("the webhook has the suppression", || async {
        webhook_events(&hook).iter().any(|e| e["type"] == "finding.suppressed")
    })
    .await;
    // The service desk closes the issue meanwhile: the risk is accepted for now.
    jira.state.set_status(&key, "Done");
    assert_eq!(
        app.finding(&org.token, &finding_id).await["status"],
        "suppressed",
        "the suppression ran out before the issue was closed; the rest of the test means nothing"
    );

    // Nothing is pushed: the fault persists. The suppression runs out and the finding is
    // announced again: to the webhook, and on the issue, which is reopened.
    until("the webhook hears the finding again", || async {
        webhook_events(&hook).iter().any(|e| e["type"] == "finding.reopened")
    })
    .await;
    until("the issue is reopened", || async { jira.state.issue(&key).unwrap().status == "To Do" }).await;

    let events = webhook_events(&hook);
    let types: Vec<&str> = events.iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert_eq!(types, ["finding.opened", "finding.suppressed", "finding.reopened"]);
    let again = &events[2];
    assert_eq!(again["data"]["finding"]["id"], finding_id.as_str());
    assert_eq!(again["data"]["finding"]["status"], "open", "{again:#}");
    assert_eq!(jira.state.issues().len(), 1, "the same issue is reopened, no second one");
    let notes = issue_notes();
    let suppressed_note = notes.iter().position(|c| c.contains("CHG-77")).unwrap();
    let reopened_note = notes.iter().position(|c| c.contains("(finding.reopened)"));
    assert!(
        reopened_note.is_some_and(|i| i > suppressed_note),
        "the issue says why it was reopened, after the suppression note: {notes:#?}"
    );

    let finding = app.finding(&org.token, &finding_id).await;
    assert_eq!(finding["status"], "open", "{finding:#}");
    assert_eq!(finding["suppressed_until"], Value::Null);
    let kinds: Vec<&str> =
        finding["events"].as_array().unwrap().iter().map(|e| e["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["opened", "suppressed", "suppression_expired"]);
    app.shutdown().await;
}

/// The Graph probe's report of a healthy tenant (P1 licences, a cloud-only Global Administrator,
/// a recent sync), except for the test user: SSPR enabled for them or not, able to reset or not.
fn graph_result(sspr_enabled: bool, capable: bool) -> wbd_wire::ProbeResult {
    use wbd_wire::{
        AdminRoleMembers, GraphReport, OrganizationSync, ProbeOutput, ProbeResult, RoleMember,
        ServicePlanLicences, UserRegistration,
    };
    let now = chrono::Utc::now();
    let report = GraphReport {
        tenant: "contoso.onmicrosoft.com".into(),
        graph_base_url: "https://graph.microsoft.com".into(),
        service_plans: Some(vec![ServicePlanLicences {
            service_plan_id: "41781fb2-bc02-4b7c-bd55-b576c07bb09d".into(),
            service_plan_name: "AAD_PREMIUM".into(),
            skus: vec!["SPB".into()],
            provisioned: true,
            enabled_units: 25,
            assigned_units: 18,
            non_user_skus: vec![],
        }]),
        organization: Some(OrganizationSync {
            id: "7f3c0000-0000-0000-0000-000000000001".into(),
            display_name: Some("Contoso".into()),
            on_premises_sync_enabled: Some(true),
            on_premises_last_sync: Some(now - chrono::Duration::minutes(12)),
        }),
        allowed_to_use_sspr: Some(true),
        test_user: Some(UserRegistration {
            user_principal_name: "wbd.test@contoso.com".into(),
            found: true,
            is_admin: Some(false),
            is_sspr_enabled: Some(sspr_enabled),
            is_sspr_registered: Some(true),
            is_sspr_capable: Some(capable),
            methods_registered: vec!["mobilePhone".into(), "email".into()],
            last_updated: Some(now - chrono::Duration::days(3)),
        }),
        admin_roles: Some(vec![AdminRoleMembers {
            role_template_id: "62e90394-69f5-4237-9190-012177145e10".into(),
            role_name: "Global Administrator".into(),
            members: vec![RoleMember {
                id: "0b1e0000-0000-0000-0000-000000000001".into(),
                principal_type: "user".into(),
                display_name: Some("Cloud admin".into()),
                user_principal_name: Some("admin@contoso.onmicrosoft.com".into()),
                on_premises_sync_enabled: None,
            }],
        }]),
        errors: vec![],
        failure: None,
        access_refused: None,
        app_credential_expires_at: None,
        own_app: false,
        admin_registrations: None,
        admin_domains: None,
    };
    ProbeResult {
        subject: "contoso.onmicrosoft.com".into(),
        observed_at: now,
        duration_ms: 900,
        output: ProbeOutput::Graph(report),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cascade_is_one_problem_with_one_ticket_and_one_score_penalty_until_its_root_is_fixed() {
    let app = spawn_delivering_app().await;
    let org = app.bootstrap_org("Northwind MSP").await;
    let (tenant, collector) = app.tenant_with_collector(&org).await;
    let hook = Receiver::spawn(WebhookReceiver::new()).await;
    let res = app
        .post(
            &org.token,
            "/v1/integrations",
            &json!({"name": "SIEM", "kind": "webhook", "url": format!("{}/wbd", hook.url())}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::CREATED);

    // SSPR is off for the test user, so they cannot reset either: the second follows from the first.
    assert_eq!(
        collector.push(&app, &batch(vec![graph_result(false, false)])).await.status(),
        StatusCode::ACCEPTED
    );
    let open =
        app.wait_for_findings(&org.token, &format!("tenant_id={tenant}&status=open"), |f| f.len() == 2).await;
    let by_rule = |rule: &str| {
        open.iter().find(|f| f["rule_id"] == rule).cloned().unwrap_or_else(|| panic!("{rule}: {open:#?}"))
    };
    let (root, consequence) = (by_rule("sspr-enabled"), by_rule("test-user-sspr-capable"));
    assert_eq!(root["root_cause_id"], Value::Null);
    assert_eq!(consequence["root_cause_id"], root["id"], "grouped under its root cause");
    let summary = consequence["summary"].as_str().unwrap();
    assert!(
        summary.contains("need not register anything more"),
        "never contradicts the root cause: {summary}"
    );

    // Counted once: the root's penalty (high, −20), not the consequence's as well (medium, −8).
    let view: Value = app.get(&org.token, &format!("/v1/tenants/{tenant}")).await.json().await.unwrap();
    let health = &view["health"];
    assert_eq!(
        (health["open_findings"]["high"].as_u64(), health["open_findings"]["medium"].as_u64()),
        (Some(1), Some(0))
    );
    assert_eq!(health["consequences"], 1);
    let undecided = health["unknown_rules"].as_u64().unwrap().min(10);
    assert_eq!(health["score"].as_u64().unwrap(), 100 - 20 - undecided);

    // One ticket: the root's. The consequence's events say why they were not delivered.
    until("the root's opening is delivered", || async {
        webhook_events(&hook)
            .iter()
            .any(|e| e["type"] == "finding.opened" && e["data"]["finding"]["id"] == root["id"])
    })
    .await;
    let detail = app.finding(&org.token, consequence["id"].as_str().unwrap()).await;
    assert_eq!(detail["events"][0]["kind"], "opened");
    assert_eq!(detail["events"][0]["root_cause_id"], root["id"]);

    // SSPR is enabled, but the user still cannot reset: the root resolves, the consequence is a
    // problem of its own now and is announced as one.
    assert_eq!(
        collector.push(&app, &batch(vec![graph_result(true, false)])).await.status(),
        StatusCode::ACCEPTED
    );
    until("the former consequence is announced on its own", || async {
        webhook_events(&hook)
            .iter()
            .any(|e| e["type"] == "finding.opened" && e["data"]["finding"]["id"] == consequence["id"])
    })
    .await;
    let detail = app.finding(&org.token, consequence["id"].as_str().unwrap()).await;
    assert_eq!(detail["root_cause_id"], Value::Null);
    assert_eq!(detail["status"], "open");
    let last = detail["events"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(last["kind"], "root_cause_resolved");
    assert!(last.get("root_cause_id").is_none(), "{last}");
    let view: Value = app.get(&org.token, &format!("/v1/tenants/{tenant}")).await.json().await.unwrap();
    assert_eq!(view["health"]["open_findings"]["medium"], 1);
    assert_eq!(view["health"]["consequences"], 0);
    let consequence_events =
        webhook_events(&hook).iter().filter(|e| e["data"]["finding"]["id"] == consequence["id"]).count();
    assert_eq!(consequence_events, 1, "nothing about it was delivered while it was a consequence");
}
