//! The Graph probe against a local stand-in that answers the documented shapes: the token
//! endpoint (client credentials), collections with `@odata.nextLink` paging, a 429 with
//! `Retry-After`, and a tenant whose app lacks a permission.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use reqwest::Url;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;
use wbd_collector::config::{GraphSettings, Schedule, Secret};
use wbd_collector::probe::GraphProber;
use wbd_wire::{GraphReport, ProbeOutput};

use crate::helpers::*;

const TOKEN: &str = "eyJ0eXAiOiJKV1QiLCJub25jZSI6InRlc3QifQ.stand-in";
const GA: &str = "62e90394-69f5-4237-9190-012177145e10";

/// One request the stand-in saw, and when.
#[derive(Debug, Clone)]
struct Seen {
    method: String,
    path: String,
    at: Instant,
    authorization: Option<String>,
    body: String,
}

#[derive(Clone)]
struct GraphStandIn {
    base: String,
    seen: Arc<Mutex<Vec<Seen>>>,
    /// Calls answered 429 once before the real answer.
    throttle_once: Arc<Mutex<HashMap<String, bool>>>,
    /// Paths answered 403 Authorization_RequestDenied.
    denied: Arc<Vec<&'static str>>,
    /// The tenant's subscribed SKUs on one page, instead of the two default pages.
    skus: Arc<Option<Vec<serde_json::Value>>>,
}

impl GraphStandIn {
    async fn start(denied: Vec<&'static str>) -> GraphStandIn {
        Self::start_with(denied, None).await
    }

    async fn start_with(denied: Vec<&'static str>, skus: Option<Vec<serde_json::Value>>) -> GraphStandIn {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://127.0.0.1:{}", listener.local_addr().unwrap().port());
        let stand_in = GraphStandIn {
            base,
            seen: Arc::new(Mutex::new(Vec::new())),
            throttle_once: Arc::new(Mutex::new(HashMap::from([(
                "/graph/v1.0/subscribedSkus?page=2".to_owned(),
                true,
            )]))),
            denied: Arc::new(denied),
            skus: Arc::new(skus),
        };
        let handle = stand_in.clone();
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                let handle = handle.clone();
                tokio::spawn(async move {
                    let Some(request) = read_request(&mut stream).await else { return };
                    let (status, headers, body) = handle.answer(&request);
                    let mut head = format!(
                        "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n",
                        body.len()
                    );
                    for (k, v) in headers {
                        head.push_str(&format!("{k}: {v}\r\n"));
                    }
                    head.push_str("\r\n");
                    let _ = stream.write_all(head.as_bytes()).await;
                    let _ = stream.write_all(body.as_bytes()).await;
                    let _ = stream.shutdown().await;
                });
            }
        });
        stand_in
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    fn answer(&self, r: &Recorded) -> (u16, Vec<(&'static str, String)>, String) {
        let body = String::from_utf8_lossy(&r.body).into_owned();
        self.seen.lock().unwrap().push(Seen {
            method: r.method.clone(),
            path: r.path.clone(),
            at: Instant::now(),
            authorization: r.headers.get("authorization").cloned(),
            body: body.clone(),
        });
        let url = Url::parse(&format!("{}{}", self.base, r.path)).unwrap();
        let query: HashMap<String, String> = url.query_pairs().into_owned().collect();
        if url.path() == "/login/contoso.onmicrosoft.com/oauth2/v2.0/token" {
            let form: HashMap<String, String> =
                Url::parse(&format!("http://form/?{body}")).unwrap().query_pairs().into_owned().collect();
            if form.get("client_secret").map(String::as_str) != Some("app-secret") {
                let e = serde_json::json!({"error": "invalid_client", "error_description": "AADSTS7000215: Invalid client secret provided.\r\nTrace ID: 1"});
                return (401, vec![], e.to_string());
            }
            assert_eq!(form["grant_type"], "client_credentials");
            assert_eq!(form["scope"], format!("{}/graph/.default", self.base));
            let t = serde_json::json!({"token_type": "Bearer", "expires_in": 3599, "ext_expires_in": 3599, "access_token": TOKEN});
            return (200, vec![], t.to_string());
        }
        if r.headers.get("authorization").map(String::as_str) != Some(&format!("Bearer {TOKEN}")) {
            return (401, vec![], graph_error("InvalidAuthenticationToken", "Access token is empty."));
        }
        let path = url.path().trim_start_matches("/graph/v1.0");
        if self.denied.contains(&path) {
            return (
                403,
                vec![],
                graph_error(
                    "Authorization_RequestDenied",
                    "Insufficient privileges to complete the operation.",
                ),
            );
        }
        let full = format!("{}{}", url.path(), url.query().map(|q| format!("?{q}")).unwrap_or_default());
        if let Some(pending) = self.throttle_once.lock().unwrap().get_mut(&full)
            && *pending
        {
            *pending = false;
            return (
                429,
                vec![("Retry-After", "1".to_owned())],
                graph_error("TooManyRequests", "Too many requests."),
            );
        }
        let v = match path {
            "/subscribedSkus" if self.skus.is_some() => serde_json::json!({ "value": *self.skus }),
            "/subscribedSkus" if query.get("page").map(String::as_str) == Some("2") => serde_json::json!({
                "value": [sku("SPB", "cbdc14ab-d96c-4c30-b9f4-6ada7cdc1d46", "Enabled", 25, 22,
                    &[("41781fb2-bc02-4b7c-bd55-b576c07bb09d", "AAD_PREMIUM", "Success"), ("de377cbc-0019-4ec2-b77c-3f223947e102", "AAD_SMB", "Success")])]
            }),
            "/subscribedSkus" => serde_json::json!({
                "@odata.nextLink": format!("{}/graph/v1.0/subscribedSkus?page=2", self.base),
                "value": [sku("O365_BUSINESS_ESSENTIALS", "3b555118-da6a-4418-894f-7df1e2096870", "Enabled", 40, 38,
                    &[("5e62787c-c316-451f-b873-1d05acd4d12c", "BPOS_S_TODO_1", "Success")]),
                    sku("AAD_PREMIUM", "078d2b04-f1bd-4111-bbd4-b4b1b354cef4", "Suspended", 0, 5,
                    &[("41781fb2-bc02-4b7c-bd55-b576c07bb09d", "AAD_PREMIUM", "Success")])]
            }),
            "/organization" => {
                assert_eq!(
                    query["$select"],
                    "id,displayName,onPremisesSyncEnabled,onPremisesLastSyncDateTime"
                );
                serde_json::json!({"value": [{"id": "84b7c5e1-0000-4000-8000-000000000001", "displayName": "Contoso",
                    "onPremisesSyncEnabled": true, "onPremisesLastSyncDateTime": "2026-11-20T09:22:55Z"}]})
            }
            "/policies/authorizationPolicy" => serde_json::json!({
                "@odata.context": "https://graph.microsoft.com/v1.0/$metadata#policies/authorizationPolicy/$entity",
                "id": "authorizationPolicy", "displayName": "Authorization Policy", "allowedToUseSSPR": false,
                "allowEmailVerifiedUsersToJoinOrganization": false
            }),
            "/reports/authenticationMethods/userRegistrationDetails" => {
                if query["$filter"] == "userPrincipalName eq 'sspr.test@contoso.com'" {
                    serde_json::json!({"value": [{"id": "u-test", "userPrincipalName": "sspr.test@contoso.com", "isAdmin": false,
                        "isSsprRegistered": true, "isSsprEnabled": true, "isSsprCapable": false,
                        "methodsRegistered": ["email"], "lastUpdatedDateTime": "2026-11-19T07:00:00Z"}]})
                } else {
                    serde_json::json!({"value": []})
                }
            }
            "/roleManagement/directory/roleAssignments" => {
                assert_eq!(query["$expand"], "principal");
                if query["$filter"] == format!("roleDefinitionId eq '{GA}'") {
                    serde_json::json!({"value": [
                        {"id": "a1", "principalId": "u-synced", "roleDefinitionId": GA, "principal": {"@odata.type": "#microsoft.graph.user", "id": "u-synced", "displayName": "Pat Admin", "userPrincipalName": "pat@contoso.com"}},
                        {"id": "a2", "principalId": "u-cloud", "roleDefinitionId": GA, "principal": {"@odata.type": "#microsoft.graph.user", "id": "u-cloud", "displayName": "Break Glass", "userPrincipalName": "bg@contoso.onmicrosoft.com"}},
                        {"id": "a3", "principalId": "sp-1", "roleDefinitionId": GA, "principal": {"@odata.type": "#microsoft.graph.servicePrincipal", "id": "sp-1", "displayName": "Automation"}}
                    ]})
                } else {
                    serde_json::json!({"value": []})
                }
            }
            "/users/u-synced" => {
                serde_json::json!({"id": "u-synced", "userPrincipalName": "pat@contoso.com", "onPremisesSyncEnabled": true})
            }
            "/users/u-cloud" => {
                serde_json::json!({"id": "u-cloud", "userPrincipalName": "bg@contoso.onmicrosoft.com", "onPremisesSyncEnabled": null})
            }
            "/domains/contoso.com" | "/domains/contoso.onmicrosoft.com" => {
                serde_json::json!({"id": path.trim_start_matches("/domains/"), "authenticationType": "Managed"})
            }
            _ => return (404, vec![], graph_error("Request_ResourceNotFound", "no such resource")),
        };
        (200, vec![], v.to_string())
    }
}

fn graph_error(code: &str, message: &str) -> String {
    serde_json::json!({"error": {"code": code, "message": message, "innerError": {"request-id": "r"}}})
        .to_string()
}

fn sku(
    part: &str,
    id: &str,
    capability: &str,
    enabled: u64,
    consumed: u64,
    plans: &[(&str, &str, &str)],
) -> serde_json::Value {
    serde_json::json!({
        "capabilityStatus": capability, "consumedUnits": consumed, "skuId": id, "skuPartNumber": part, "appliesTo": "User",
        "prepaidUnits": {"enabled": enabled, "suspended": 0, "warning": 0, "lockedOut": 0},
        "servicePlans": plans.iter().map(|(pid, name, status)| serde_json::json!(
            {"servicePlanId": pid, "servicePlanName": name, "provisioningStatus": status, "appliesTo": "User"})).collect::<Vec<_>>()
    })
}

/// A SKU as Graph lists it, applying to `applies_to` (`User`, or `Company` for device and room
/// SKUs), SKU and plans alike.
fn sku_for(
    applies_to: &str,
    part: &str,
    enabled: u64,
    consumed: u64,
    plans: &[(&str, &str, &str)],
) -> serde_json::Value {
    let mut sku = sku(part, "6070a4c8-34c6-4937-8dfb-39bbc6397a60", "Enabled", enabled, consumed, plans);
    sku["appliesTo"] = applies_to.into();
    for plan in sku["servicePlans"].as_array_mut().into_iter().flatten() {
        plan["appliesTo"] = applies_to.into();
    }
    sku
}

const P1: (&str, &str, &str) = ("41781fb2-bc02-4b7c-bd55-b576c07bb09d", "AAD_PREMIUM", "Success");

fn settings(stand_in: &GraphStandIn, secret: &str) -> GraphSettings {
    GraphSettings {
        schedule: Schedule { enabled: true, interval: Duration::from_secs(3600), jitter_percent: 0 },
        tenant: "contoso.onmicrosoft.com".into(),
        client_id: "7d1c5a8e-0000-4000-8000-0000000000aa".into(),
        client_secret: Secret::new(secret),
        authority: Url::parse(&format!("{}/login", stand_in.base)).unwrap(),
        graph_base_url: Url::parse(&format!("{}/graph", stand_in.base)).unwrap(),
        test_user: Some("sspr.test@contoso.com".into()),
        timeout: Duration::from_secs(10),
    }
}

async fn probe(prober: &GraphProber) -> GraphReport {
    match prober.probe().await.output {
        ProbeOutput::Graph(report) => report,
        other => panic!("graph result expected, got {other:?}"),
    }
}

fn client() -> reqwest::Client {
    wbd_collector::http_client::outbound_client(&[], None, Duration::from_secs(10)).unwrap()
}

#[tokio::test]
async fn the_tenant_facts_are_read_across_pages_and_through_a_429() {
    init_test_log();
    let stand_in = GraphStandIn::start(vec![]).await;
    let prober = GraphProber::new(settings(&stand_in, "app-secret"), client());

    let r = probe(&prober).await;

    assert!(r.errors.is_empty() && r.failure.is_none(), "{r:#?}");
    assert_eq!(r.graph_base_url, format!("{}/graph", stand_in.base));
    // AAD_PREMIUM is in a suspended SKU (page 1) and in SPB (page 2, behind a 429): only the
    // usable SKU's units count.
    let plans = r.service_plans.as_ref().unwrap();
    let p1 = plans.iter().find(|p| p.service_plan_name == "AAD_PREMIUM").unwrap();
    assert_eq!(p1.skus, vec!["AAD_PREMIUM", "SPB"]);
    assert!(p1.provisioned);
    assert_eq!((p1.enabled_units, p1.assigned_units), (25, 22));
    assert!(plans.iter().any(|p| p.service_plan_name == "BPOS_S_TODO_1"));
    let org = r.organization.as_ref().unwrap();
    assert_eq!(org.on_premises_sync_enabled, Some(true));
    assert_eq!(org.on_premises_last_sync.unwrap().to_rfc3339(), "2026-11-20T09:22:55+00:00");
    assert_eq!(r.allowed_to_use_sspr, Some(false));
    let user = r.test_user.as_ref().unwrap();
    assert_eq!((user.found, user.is_sspr_enabled, user.is_sspr_capable), (true, Some(true), Some(false)));
    assert_eq!(user.methods_registered, vec!["email"]);
    let roles = r.admin_roles.as_ref().unwrap();
    assert_eq!(roles.len(), 6);
    let ga = roles.iter().find(|role| role.role_template_id == GA).unwrap();
    assert_eq!((ga.members.len(), ga.synced_count(), ga.cloud_only_count()), (3, 1, 2));
    assert_eq!(ga.members[2].principal_type, "servicePrincipal");

    let seen = stand_in.seen();
    let page2: Vec<&Seen> = seen.iter().filter(|s| s.path == "/graph/v1.0/subscribedSkus?page=2").collect();
    assert_eq!(page2.len(), 2, "the throttled page was asked for again");
    assert!(
        page2[1].at.duration_since(page2[0].at) >= Duration::from_millis(950),
        "Retry-After: 1 was honoured"
    );
    let token_calls = seen.iter().filter(|s| s.method == "POST" && s.path.contains("/oauth2/")).count();
    assert_eq!(token_calls, 1);
    assert!(seen[0].body.contains("client_id=7d1c5a8e-0000-4000-8000-0000000000aa"));
    assert!(
        seen.iter()
            .filter(|s| s.method == "GET")
            .all(|s| s.authorization.as_deref() == Some(&format!("Bearer {TOKEN}") as &str))
    );

    // A second run reuses the token.
    let again = probe(&prober).await;
    assert!(again.errors.is_empty());
    assert_eq!(
        stand_in.seen().iter().filter(|s| s.method == "POST" && s.path.contains("/oauth2/")).count(),
        1
    );
}

#[tokio::test]
async fn a_missing_permission_leaves_only_that_fact_unknown() {
    let stand_in = GraphStandIn::start(vec![
        "/policies/authorizationPolicy",
        "/roleManagement/directory/roleAssignments",
    ])
    .await;

    let r = probe(&GraphProber::new(settings(&stand_in, "app-secret"), client())).await;

    assert_eq!(r.allowed_to_use_sspr, None);
    assert_eq!(r.admin_roles, None);
    assert!(r.organization.is_some() && r.service_plans.is_some() && r.test_user.is_some());
    assert_eq!(r.errors.len(), 2, "one error per missing permission, not one per role: {:#?}", r.errors);
    assert_eq!(r.errors[0].call, "authorizationPolicy");
    assert_eq!(
        (r.errors[0].status, r.errors[0].code.as_deref()),
        (Some(403), Some("Authorization_RequestDenied"))
    );
}

#[tokio::test]
async fn a_wrong_secret_fails_the_report_with_the_token_endpoint_s_reason() {
    let stand_in = GraphStandIn::start(vec![]).await;

    let r = probe(&GraphProber::new(settings(&stand_in, "wrong"), client())).await;

    let failure = r.failure.as_deref().unwrap();
    assert!(failure.contains("invalid_client") && failure.contains("AADSTS7000215"), "{failure}");
    assert!(failure.contains("probes.graph.client_id / client_secret"), "{failure}");
    assert!(r.service_plans.is_none() && r.organization.is_none());
    assert!(stand_in.seen().iter().all(|s| s.method == "POST"), "no Graph call without a token");
}

/// The rule pack's verdict of `rule` on one Graph report.
fn verdict(report: GraphReport, rule: &str) -> wbd_rules::Outcome {
    let now = chrono::Utc::now();
    let facts = wbd_rules::TenantFacts {
        now,
        collectors: vec![wbd_rules::CollectorState {
            id: uuid::Uuid::nil(),
            name: "site".into(),
            active: true,
            last_seen_at: Some(now),
            silent_after: Some(now + chrono::Duration::minutes(15)),
            push_interval_secs: 300,
        }],
        facts: vec![wbd_rules::FactInput {
            collector_id: uuid::Uuid::nil(),
            subject: format!("graph:{}", report.tenant),
            observed_at: now,
            output: ProbeOutput::Graph(report),
        }],
    };
    wbd_rules::evaluate(&facts).into_iter().find(|e| e.rule_id == rule).expect("evaluated").outcome
}

#[tokio::test]
async fn room_and_device_skus_are_not_counted_as_user_licences() {
    // Entra ID P1 only through Teams Rooms Pro, a room SKU that does not apply to users.
    let rooms_only = vec![
        sku_for(
            "User",
            "O365_BUSINESS_ESSENTIALS",
            40,
            38,
            &[("5e62787c-c316-451f-b873-1d05acd4d12c", "BPOS_S_TODO_1", "Success")],
        ),
        sku_for("Company", "Microsoft_Teams_Rooms_Pro", 10, 4, &[P1]),
    ];
    let stand_in = GraphStandIn::start_with(vec![], Some(rooms_only)).await;
    let r = probe(&GraphProber::new(settings(&stand_in, "app-secret"), client())).await;

    let p1 = r.service_plans.as_ref().unwrap().iter().find(|p| p.service_plan_name == "AAD_PREMIUM").unwrap();
    assert_eq!((p1.enabled_units, p1.assigned_units, p1.provisioned), (0, 0, false), "{p1:?}");
    assert_eq!(p1.non_user_skus, vec!["Microsoft_Teams_Rooms_Pro"]);
    let outcome = verdict(r, "tenant-writeback-licence");
    let text = outcome.text(wbd_rules::Lang::En).unwrap_or_default();
    assert!(outcome.is_fail(), "rooms licences do not license writeback: {outcome:?}");
    assert!(text.contains("Microsoft_Teams_Rooms_Pro") && text.contains("not user licences"), "{text}");

    // One user licence, and room licences beside it: one licence is too few for an administrator
    // and a test user, whatever the rooms hold. A plan disabled in a user SKU does not count either.
    let mixed = vec![
        sku_for("User", "AAD_PREMIUM", 1, 1, &[P1]),
        sku_for(
            "User",
            "SPE_E3",
            30,
            25,
            &[("41781fb2-bc02-4b7c-bd55-b576c07bb09d", "AAD_PREMIUM", "Disabled")],
        ),
        sku_for("Company", "Microsoft_Teams_Rooms_Pro", 10, 10, &[P1]),
    ];
    let stand_in = GraphStandIn::start_with(vec![], Some(mixed)).await;
    let r = probe(&GraphProber::new(settings(&stand_in, "app-secret"), client())).await;
    let p1 = r.service_plans.as_ref().unwrap().iter().find(|p| p.service_plan_name == "AAD_PREMIUM").unwrap();
    assert_eq!((p1.enabled_units, p1.assigned_units), (1, 1), "{p1:?}");
    assert!(verdict(r.clone(), "tenant-writeback-licence").is_pass());
    assert!(verdict(r, "licensed-admin-and-test-user").is_fail());
}
