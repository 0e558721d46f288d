//! The central Graph connector's onboarding: the admin-consent URL, Microsoft's redirect with a
//! signed single-use state, the connection's state, disconnecting; and every bad redirect
//! changing nothing.

use reqwest::{StatusCode, Url};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::helpers::*;

const CLIENT_ID: &str = "5f0c1a2b-0000-4000-8000-00000000a11a";
pub(crate) const ENTRA: &str = "84b7c5e1-0000-4000-8000-000000000001";

pub(crate) async fn spawn_with_graph() -> TestApp {
    spawn_app_with(|s| {
        s.graph.client_id = CLIENT_ID.into();
        s.graph.client_secret = "app-secret".into();
        s.graph.redirect_base_url = "https://wbd.example.com".into();
        // Onboarding only: nothing reads Graph (the app's hosts are not reachable from tests).
        s.graph.reader_enabled = false;
    })
    .await
}

/// `POST /v1/tenants/{id}/graph/consent`: the answer and the `state` in its URL.
pub(crate) async fn ask_consent(app: &TestApp, token: &str, tenant: Uuid) -> (Value, String) {
    let res = app.post(token, &format!("/v1/tenants/{tenant}/graph/consent"), &json!({})).await;
    assert_eq!(res.status(), StatusCode::OK);
    let body: Value = res.json().await.unwrap();
    let url = Url::parse(body["consent_url"].as_str().unwrap()).unwrap();
    let state = url.query_pairs().find(|(k, _)| k == "state").map(|(_, v)| v.into_owned()).expect("state");
    (body, state)
}

/// Microsoft's redirect back, with `query` (no access token).
pub(crate) async fn redirect(app: &TestApp, query: &[(&str, &str)]) -> reqwest::Response {
    let mut url = Url::parse(&app.url("/v1/graph/consent/callback")).unwrap();
    url.query_pairs_mut().extend_pairs(query);
    app.client.get(url).send().await.unwrap()
}

pub(crate) async fn connection(app: &TestApp, token: &str, tenant: Uuid) -> Value {
    let res = app.get(token, &format!("/v1/tenants/{tenant}/graph")).await;
    assert_eq!(res.status(), StatusCode::OK);
    res.json().await.unwrap()
}

async fn audit_actions(app: &TestApp, org: &Org) -> Vec<String> {
    let res = app.get(&org.token, "/v1/audit-log").await;
    let page: Value = res.json().await.unwrap();
    page["items"].as_array().unwrap().iter().map(|e| e["action"].as_str().unwrap().to_owned()).collect()
}

#[tokio::test]
async fn without_a_graph_app_the_connector_says_it_is_not_configured() {
    let app = spawn_app().await;
    let org = app.bootstrap_org("Acme MSP").await;
    let tenant = app.create_tenant(&org, "Contoso").await;

    assert_eq!(connection(&app, &org.token, tenant).await["state"], "not_configured");
    let res = app.post(&org.token, &format!("/v1/tenants/{tenant}/graph/consent"), &json!({})).await;
    problem(res, StatusCode::CONFLICT, "graph_not_configured").await;
}

#[tokio::test]
async fn an_admin_onboards_a_tenant_through_microsoft_s_consent_redirect_and_disconnects_it() {
    let app = spawn_with_graph().await;
    let org = app.bootstrap_org("Acme MSP").await;
    let tenant = app.create_tenant(&org, "Contoso").await;
    assert_eq!(connection(&app, &org.token, tenant).await["state"], "not_connected");

    let technician = app.login_as(&org, "technician").await;
    let res = app.post(&technician, &format!("/v1/tenants/{tenant}/graph/consent"), &json!({})).await;
    problem(res, StatusCode::FORBIDDEN, "forbidden").await;

    let (consent, state) = ask_consent(&app, &org.token, tenant).await;
    let url = Url::parse(consent["consent_url"].as_str().unwrap()).unwrap();
    assert_eq!(url.host_str(), Some("login.microsoftonline.com"));
    assert_eq!(url.path(), "/organizations/v2.0/adminconsent", "no Entra tenant id known yet");
    let q: std::collections::HashMap<_, _> = url.query_pairs().into_owned().collect();
    assert_eq!(q["client_id"], CLIENT_ID);
    assert_eq!(q["scope"], "https://graph.microsoft.com/.default");
    assert_eq!(q["redirect_uri"], "https://wbd.example.com/v1/graph/consent/callback");
    assert_eq!(consent["redirect_uri"], q["redirect_uri"].as_str());
    assert!(consent["permissions"].as_array().unwrap().contains(&json!("Policy.Read.All")));
    let pending = connection(&app, &org.token, tenant).await;
    assert_eq!(pending["state"], "consent_pending");
    assert_eq!(pending["consent_pending_until"], consent["expires_at"]);

    let res = redirect(&app, &[("admin_consent", "True"), ("tenant", ENTRA), ("state", &state)]).await;
    assert_eq!(res.status(), StatusCode::OK);
    let connected: Value = res.json().await.unwrap();
    assert_eq!(connected["state"], "connected");
    assert_eq!(connected["entra_tenant_id"], ENTRA);

    let shown = connection(&app, &org.token, tenant).await;
    assert_eq!(shown["state"], "connected");
    assert_eq!(shown["cloud"], "global");
    assert!(shown["consented_by"].as_str().unwrap().starts_with("api_key:"), "{shown:#}");
    assert!(shown["consented_at"].is_string() && shown["last_read_at"].is_null());
    assert!(!shown.to_string().contains("app-secret"), "the credential is never shown");

    // The same redirect again: the state was spent.
    let res = redirect(&app, &[("admin_consent", "True"), ("tenant", ENTRA), ("state", &state)]).await;
    problem(res, StatusCode::BAD_REQUEST, "consent_state_invalid").await;

    let res = app.delete(&technician, &format!("/v1/tenants/{tenant}/graph")).await;
    problem(res, StatusCode::FORBIDDEN, "forbidden").await;
    let res = app.delete(&org.token, &format!("/v1/tenants/{tenant}/graph")).await;
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    assert_eq!(connection(&app, &org.token, tenant).await["state"], "not_connected");
    let res = app.delete(&org.token, &format!("/v1/tenants/{tenant}/graph")).await;
    problem(res, StatusCode::NOT_FOUND, "graph_not_connected").await;

    let actions = audit_actions(&app, &org).await;
    assert_eq!(actions[..2], ["graph.disconnect".to_owned(), "graph.connect".to_owned()], "{actions:?}");
}

#[tokio::test]
async fn forged_replayed_declined_and_foreign_redirects_change_nothing() {
    let app = spawn_with_graph().await;
    let org = app.bootstrap_org("Acme MSP").await;
    let other = app.bootstrap_org("Other MSP").await;
    let tenant = app.create_tenant(&org, "Contoso").await;

    // Another organisation cannot see or onboard the tenant.
    let res = app.get(&other.token, &format!("/v1/tenants/{tenant}/graph")).await;
    problem(res, StatusCode::NOT_FOUND, "not_found").await;
    let res = app.post(&other.token, &format!("/v1/tenants/{tenant}/graph/consent"), &json!({})).await;
    problem(res, StatusCode::NOT_FOUND, "not_found").await;
    let res = app.delete(&other.token, &format!("/v1/tenants/{tenant}/graph")).await;
    problem(res, StatusCode::NOT_FOUND, "not_found").await;

    // No state, a forged one, a tampered one.
    let (_, state) = ask_consent(&app, &org.token, tenant).await;
    let mut tampered = state.clone();
    tampered.insert(state.len() / 2, 'A');
    let forged = "eyJhbGciOiJIUzI1NiJ9.eyJub25jZSI6IngifQ.c2lnbmF0dXJl";
    for state in [None, Some(forged), Some(tampered.as_str())] {
        let mut query = vec![("admin_consent", "True"), ("tenant", ENTRA)];
        query.extend(state.map(|s| ("state", s)));
        let res = redirect(&app, &query).await;
        problem(res, StatusCode::BAD_REQUEST, "consent_state_invalid").await;
    }
    // A redirect without consent nor error.
    let res = redirect(&app, &[("state", &state)]).await;
    problem(res, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").await;
    assert_eq!(connection(&app, &org.token, tenant).await["state"], "consent_pending");

    // The administrator declined: a clear error; the state is spent, the tenant not connected.
    let res = redirect(
        &app,
        &[
            ("error", "access_denied"),
            ("error_description", "AADSTS65004: User declined to consent to access the app.\r\nTrace ID: x"),
            ("state", &state),
        ],
    )
    .await;
    let p = problem(res, StatusCode::BAD_REQUEST, "consent_declined").await;
    assert!(p["detail"].as_str().unwrap().contains("access_denied: AADSTS65004"), "{p:#}");
    assert_eq!(connection(&app, &org.token, tenant).await["state"], "not_connected");
    let res = redirect(&app, &[("admin_consent", "True"), ("tenant", ENTRA), ("state", &state)]).await;
    problem(res, StatusCode::BAD_REQUEST, "consent_state_invalid").await;

    // A tenant whose Entra id is known: the URL names it, and consent from another directory is
    // refused without spending the state.
    let res =
        app.post(&org.token, "/v1/tenants", &json!({"name": "Fabrikam", "entra_tenant_id": ENTRA})).await;
    let fabrikam: Uuid = res.json::<Value>().await.unwrap()["id"].as_str().unwrap().parse().unwrap();
    let (consent, state) = ask_consent(&app, &org.token, fabrikam).await;
    assert!(consent["consent_url"].as_str().unwrap().contains(&format!("/{ENTRA}/v2.0/adminconsent")));
    let elsewhere = Uuid::new_v4().to_string();
    let res = redirect(&app, &[("admin_consent", "True"), ("tenant", &elsewhere), ("state", &state)]).await;
    problem(res, StatusCode::CONFLICT, "graph_tenant_mismatch").await;
    assert_eq!(connection(&app, &org.token, fabrikam).await["state"], "consent_pending");
    let res = redirect(&app, &[("admin_consent", "True"), ("tenant", ENTRA), ("state", &state)]).await;
    assert_eq!(res.status(), StatusCode::OK);

    assert_eq!(audit_actions(&app, &org).await, vec!["graph.connect"]);
    assert!(audit_actions(&app, &other).await.is_empty());
}

/// With no collector at all: a tenant onboarded through the consent redirect is read by the
/// central reader (against the identity-platform and Graph stand-in), its facts take the ingest
/// path, a Graph rule opens a finding, and the finding resolves once the tenant is fixed.
/// End to end over HTTPS, as the reader talks to Microsoft: the stand-in's certificate chains to
/// a test authority the reader is told to trust (`graph.ca_file`), beside the system's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_without_a_collector_gets_findings_from_the_central_reader() {
    use wbd_receivers::Receiver;
    use wbd_receivers::entra::{EntraApp, EntraState, EntraTenant};

    let entra = Receiver::spawn_https(EntraState::new(EntraApp {
        client_id: CLIENT_ID.into(),
        client_secret: Some("app-secret".into()),
        certificate: None,
    }))
    .await;
    let mut contoso = EntraTenant::healthy(ENTRA, "contoso.com");
    contoso.authorization_policy = json!({"id": "authorizationPolicy", "allowedToUseSSPR": false});
    entra.state.add_tenant(ENTRA, contoso);
    let stand_in = entra.url();
    assert!(stand_in.starts_with("https://"), "{stand_in}");
    let authorities = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(authorities.path(), entra.ca_pem().unwrap()).unwrap();
    let ca_file = authorities.path().display().to_string();
    let app = spawn_app_with(|s| {
        s.graph.client_id = CLIENT_ID.into();
        s.graph.client_secret = "app-secret".into();
        s.graph.redirect_base_url = "https://wbd.example.com".into();
        s.graph.authority = stand_in.clone();
        s.graph.graph_base_url = format!("{stand_in}/graph");
        s.graph.ca_file = ca_file.clone();
        s.graph.reader_poll_secs = 1;
    })
    .await;
    let org = app.bootstrap_org("Acme MSP").await;
    let tenant = app.create_tenant(&org, "Contoso").await;
    let (_, state) = ask_consent(&app, &org.token, tenant).await;
    let res = redirect(&app, &[("admin_consent", "True"), ("tenant", ENTRA), ("state", &state)]).await;
    assert_eq!(res.status(), StatusCode::OK);

    let query = format!("tenant_id={tenant}&rule_id=sspr-for-administrators");
    let open = app.wait_for_findings(&org.token, &query, |f| f.iter().any(|f| f["status"] == "open")).await;
    assert_eq!(open.len(), 1);
    let shown = connection(&app, &org.token, tenant).await;
    assert_eq!(shown["state"], "connected", "{shown:#}");
    assert!(shown["last_read_at"].is_string() && shown["last_error"].is_null(), "{shown:#}");
    assert!(shown["missing_permissions"].as_array().unwrap().is_empty());

    // The facts say where they came from: the tenant's collector row for the central reader.
    let res = app.get(&org.token, &format!("/v1/collectors?tenant_id={tenant}")).await;
    let collectors: Value = res.json().await.unwrap();
    let names: Vec<&str> = collectors.as_array().unwrap().iter().filter_map(|c| c["name"].as_str()).collect();
    assert_eq!(names, vec!["Microsoft Graph (central reader)"]);

    // Fixed in the tenant; re-read now: the finding resolves, with the same token.
    entra.state.update_tenant(ENTRA, |t| t.authorization_policy["allowedToUseSSPR"] = json!(true));
    let scope =
        wbd_store::TenantScope { org_id: wbd_store::OrgId(org.id), tenant_id: wbd_store::TenantId(tenant) };
    assert!(app.store.request_graph_read(scope, chrono::Utc::now()).await.unwrap());
    app.wait_for_findings(&org.token, &query, |f| f.iter().all(|f| f["status"] == "resolved")).await;
    assert_eq!(entra.state.token_requests(ENTRA), 1, "the tenant's token was kept between reads");

    // A missing permission is named, and leaves its fact unknown rather than failing its rule.
    entra.state.update_tenant(ENTRA, |t| {
        t.denied.insert("/policies/authorizationPolicy".into());
    });
    assert!(app.store.request_graph_read(scope, chrono::Utc::now()).await.unwrap());
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let shown = connection(&app, &org.token, tenant).await;
        if shown["state"] == "permissions_missing" {
            assert_eq!(shown["missing_permissions"], json!(["Policy.Read.All"]));
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "never saw the missing permission: {shown:#}");
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    app.shutdown().await;
}

/// Consent revoked in the tenant: the read that finds out stores a report without facts, which
/// opens exactly one finding ("Writeback Doctor can no longer read this tenant", naming the
/// source and the fix) and fails no other rule; reading stops; reconnecting resolves it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_consent_is_one_finding_reading_stops_and_reconnecting_resolves_it() {
    use wbd_receivers::Receiver;
    use wbd_receivers::entra::{EntraApp, EntraState, EntraTenant};

    let entra = Receiver::spawn(EntraState::new(EntraApp {
        client_id: CLIENT_ID.into(),
        client_secret: Some("app-secret".into()),
        certificate: None,
    }))
    .await;
    entra.state.add_tenant(ENTRA, EntraTenant::healthy(ENTRA, "contoso.com"));
    let stand_in = entra.url();
    let app = spawn_app_with(|s| {
        s.graph.client_id = CLIENT_ID.into();
        s.graph.client_secret = "app-secret".into();
        s.graph.redirect_base_url = "https://wbd.example.com".into();
        s.graph.authority = stand_in.clone();
        s.graph.graph_base_url = format!("{stand_in}/graph");
        s.graph.reader_poll_secs = 1;
    })
    .await;
    let org = app.bootstrap_org("Acme MSP").await;
    let tenant = app.create_tenant(&org, "Contoso").await;
    let (_, state) = ask_consent(&app, &org.token, tenant).await;
    let res = redirect(&app, &[("admin_consent", "True"), ("tenant", ENTRA), ("state", &state)]).await;
    assert_eq!(res.status(), StatusCode::OK);
    let wait_for_read = |after: Option<String>| {
        let app = &app;
        let token = org.token.clone();
        async move {
            let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(60);
            loop {
                let shown = connection(app, &token, tenant).await;
                if shown["last_read_at"].is_string()
                    && shown["last_read_at"].as_str().map(str::to_owned) != after
                {
                    return shown;
                }
                assert!(tokio::time::Instant::now() < deadline, "no read: {shown:#}");
                tokio::time::sleep(std::time::Duration::from_millis(200)).await;
            }
        }
    };
    let first = wait_for_read(None).await;
    assert_eq!(first["state"], "connected", "{first:#}");
    let scope =
        wbd_store::TenantScope { org_id: wbd_store::OrgId(org.id), tenant_id: wbd_store::TenantId(tenant) };

    // The tenant's administrator removes the app; the next read finds out.
    entra.state.revoke_consent(ENTRA);
    assert!(app.store.request_graph_read(scope, chrono::Utc::now()).await.unwrap());
    let open_query = format!("tenant_id={tenant}&status=open");
    let open = app.wait_for_findings(&org.token, &open_query, |f| !f.is_empty()).await;
    assert_eq!(open.len(), 1, "exactly one finding: {open:#?}");
    assert_eq!(open[0]["rule_id"], "graph-access");
    let text = open[0].to_string();
    assert!(text.contains("AADSTS700016") && text.contains("/graph/consent"), "{text}");
    assert!(text.contains("Microsoft Graph (central reader)"), "the evidence names the source: {text}");
    let shown = wait_for_read(first["last_read_at"].as_str().map(str::to_owned)).await;
    assert_eq!(shown["state"], "consent_revoked", "{shown:#}");
    assert!(shown["last_error"].as_str().unwrap().contains("AADSTS700016"), "{shown:#}");

    // No false failures: the other Graph rules (all opening on one failure) are undecided,
    // which the single open finding above shows.

    // Reading has stopped: no more token requests, and "re-test now" does not restart it.
    let token_requests = entra.state.token_requests(ENTRA);
    assert_eq!(token_requests, 2, "the first read's token, then the refused one");
    assert!(!app.store.request_graph_read(scope, chrono::Utc::now()).await.unwrap());
    tokio::time::sleep(std::time::Duration::from_secs(3)).await;
    assert_eq!(entra.state.token_requests(ENTRA), token_requests);
    assert_eq!(app.findings(&org.token, &open_query).await.len(), 1);

    // Reconnected through a new consent: read again, and the finding resolves.
    entra.state.update_tenant(ENTRA, |t| t.consented = true);
    let (_, state) = ask_consent(&app, &org.token, tenant).await;
    let res = redirect(&app, &[("admin_consent", "True"), ("tenant", ENTRA), ("state", &state)]).await;
    assert_eq!(res.status(), StatusCode::OK);
    let query = format!("tenant_id={tenant}&rule_id=graph-access");
    app.wait_for_findings(&org.token, &query, |f| f.len() == 1 && f[0]["status"] == "resolved").await;
    assert!(app.findings(&org.token, &open_query).await.is_empty());
    assert_eq!(connection(&app, &org.token, tenant).await["state"], "connected");
    app.shutdown().await;
}

/// The tenant's test user, set through the API, is read centrally: the test-user rules decide
/// without a collector, as they do from a collector's probe; a cloud admin on a federated domain
/// does not count as one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_test_user_and_the_admins_domains_are_read_centrally() {
    use wbd_receivers::Receiver;
    use wbd_receivers::entra::{EntraApp, EntraState, EntraTenant};

    let entra = Receiver::spawn(EntraState::new(EntraApp {
        client_id: CLIENT_ID.into(),
        client_secret: Some("app-secret".into()),
        certificate: None,
    }))
    .await;
    let mut contoso = EntraTenant::healthy(ENTRA, "contoso.com");
    contoso.registrations[0]["isSsprEnabled"] = json!(false);
    contoso
        .domains
        .insert("contoso.com".into(), json!({"id": "contoso.com", "authenticationType": "Federated"}));
    entra.state.add_tenant(ENTRA, contoso);
    let stand_in = entra.url();
    let app = spawn_app_with(|s| {
        s.graph.client_id = CLIENT_ID.into();
        s.graph.client_secret = "app-secret".into();
        s.graph.redirect_base_url = "https://wbd.example.com".into();
        s.graph.authority = stand_in.clone();
        s.graph.graph_base_url = format!("{stand_in}/graph");
        s.graph.reader_poll_secs = 1;
    })
    .await;
    let org = app.bootstrap_org("Acme MSP").await;
    let tenant = app.create_tenant(&org, "Contoso").await;
    let path = format!("/v1/tenants/{tenant}/graph/test-user");
    let body = json!({"user_principal_name": "sspr.test@contoso.com"});
    let res = app.put(&org.token, &path, &body).await;
    problem(res, StatusCode::NOT_FOUND, "graph_not_connected").await;

    let (_, state) = ask_consent(&app, &org.token, tenant).await;
    let res = redirect(&app, &[("admin_consent", "True"), ("tenant", ENTRA), ("state", &state)]).await;
    assert_eq!(res.status(), StatusCode::OK);
    let technician = app.login_as(&org, "technician").await;
    problem(app.put(&technician, &path, &body).await, StatusCode::FORBIDDEN, "forbidden").await;
    // Another organisation's admin cannot set it: the tenant is not theirs to see.
    let stranger = app.bootstrap_org("Other MSP").await;
    problem(app.put(&stranger.token, &path, &body).await, StatusCode::NOT_FOUND, "not_found").await;
    for bad in [
        "no-at-sign",
        "two@@contoso.com",
        "sp ace@contoso.com",
        "@contoso.com",
        "",
        " sspr.test@contoso.com",
        "sspr.test@contoso.com\u{85}",
        "\u{feff}sspr.test@contoso.com",
    ] {
        let res = app.put(&org.token, &path, &json!({"user_principal_name": bad})).await;
        problem(res, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").await;
    }
    let res = app.put(&org.token, &path, &body).await;
    assert_eq!(res.status(), StatusCode::OK);
    let shown: Value = res.json().await.unwrap();
    assert_eq!(shown["test_user"], "sspr.test@contoso.com");

    // No collector: SSPR off for the test user, and only a federated cloud admin, come from
    // the central reads.
    for rule in ["sspr-enabled", "cloud-admin-available"] {
        let query = format!("tenant_id={tenant}&rule_id={rule}");
        let open =
            app.wait_for_findings(&org.token, &query, |f| f.iter().any(|f| f["status"] == "open")).await;
        assert_eq!(open.len(), 1, "{open:#?}");
    }
    let query = format!("tenant_id={tenant}&rule_id=cloud-admin-available");
    let text = app.findings(&org.token, &query).await[0].to_string();
    assert!(text.contains("federated") && text.contains("admin@contoso.com"), "{text}");
    app.shutdown().await;
}

/// Bounded concurrency across tenants: a tenant Graph throttles holds one of the reader's slots
/// while it waits out `Retry-After`; the other tenants are read meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_throttled_tenant_does_not_delay_the_others() {
    use wbd_receivers::Receiver;
    use wbd_receivers::entra::{EntraApp, EntraState, EntraTenant};

    let entra = Receiver::spawn(EntraState::new(EntraApp {
        client_id: CLIENT_ID.into(),
        client_secret: Some("app-secret".into()),
        certificate: None,
    }))
    .await;
    let entra_ids: Vec<String> = (1..=3).map(|i| format!("84b7c5e1-0000-4000-8000-00000000010{i}")).collect();
    for (i, id) in entra_ids.iter().enumerate() {
        let mut t = EntraTenant::healthy(id, &format!("t{i}.example.com"));
        if i == 0 {
            // Throttled for three requests of 3 s each: about 9 s in one read.
            t.throttle_next = 3;
            t.throttle_retry_after = 3;
        }
        entra.state.add_tenant(id, t);
    }
    let stand_in = entra.url();
    let app = spawn_app_with(|s| {
        s.graph.client_id = CLIENT_ID.into();
        s.graph.client_secret = "app-secret".into();
        s.graph.redirect_base_url = "https://wbd.example.com".into();
        s.graph.authority = stand_in.clone();
        s.graph.graph_base_url = format!("{stand_in}/graph");
        s.graph.reader_poll_secs = 1;
        s.graph.reader_concurrency = 2;
    })
    .await;
    let org = app.bootstrap_org("Acme MSP").await;
    let mut tenants = Vec::new();
    for (i, id) in entra_ids.iter().enumerate() {
        let tenant = app.create_tenant(&org, &format!("Tenant {i}")).await;
        let (_, state) = ask_consent(&app, &org.token, tenant).await;
        let res =
            redirect(&app, &[("admin_consent", "True"), ("tenant", id.as_str()), ("state", &state)]).await;
        assert_eq!(res.status(), StatusCode::OK);
        tenants.push(tenant);
    }
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let mut read = Vec::new();
        for t in &tenants {
            read.push(connection(&app, &org.token, *t).await["last_read_at"].is_string());
        }
        if read[1] && read[2] {
            assert!(!read[0], "the throttled tenant was still waiting while the others were read");
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "the others were never read: {read:?}");
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    // And the throttled one gets through once Graph lets it.
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let shown = connection(&app, &org.token, tenants[0]).await;
        if shown["last_read_at"].is_string() {
            assert!(shown["last_error"].is_null(), "{shown:#}");
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "never read: {shown:#}");
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    app.shutdown().await;
}

/// Two workers' readers on one PostgreSQL database and 100 connected tenants: the leases in the
/// database give each tenant to one of them, so each is read exactly once in its period.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs PostgreSQL: set WBD_TEST_DATABASE_URL and run with -- --include-ignored"]
async fn on_postgresql_two_workers_read_each_of_100_tenants_once_a_period() {
    use sqlx::Connection as _;
    use wbd_receivers::Receiver;
    use wbd_receivers::entra::{EntraApp, EntraState, EntraTenant};

    const TENANTS: usize = 100;
    let admin_url = std::env::var("WBD_TEST_DATABASE_URL")
        .ok()
        .filter(|u| !u.trim().is_empty())
        .expect("WBD_TEST_DATABASE_URL is not set: this test needs PostgreSQL");
    let db_name = format!("wbd_test_{}", Uuid::new_v4().simple());
    let mut admin = sqlx::PgConnection::connect(&admin_url)
        .await
        .unwrap_or_else(|e| panic!("WBD_TEST_DATABASE_URL is set but PostgreSQL is unreachable: {e}"));
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {db_name}"))).execute(&mut admin).await.unwrap();
    let db_url = format!("{}/{db_name}", admin_url.rsplit_once('/').expect("a database in the URL").0);

    let entra = Receiver::spawn(EntraState::new(EntraApp {
        client_id: CLIENT_ID.into(),
        client_secret: Some("app-secret".into()),
        certificate: None,
    }))
    .await;
    let stand_in = entra.url();
    // The API only (it migrates the database and onboards); no reader in it.
    let app = spawn_app_with(|s| {
        s.database.url = db_url.clone();
        s.worker.embedded = Some(false);
        s.delivery.enabled = false;
        s.graph.client_id = CLIENT_ID.into();
        s.graph.client_secret = "app-secret".into();
        s.graph.redirect_base_url = "https://wbd.example.com".into();
        s.graph.reader_enabled = false;
    })
    .await;
    let org = app.bootstrap_org("Acme MSP").await;
    let mut entra_ids = Vec::new();
    for i in 0..TENANTS {
        let tenant = app.create_tenant(&org, &format!("Tenant {i:03}")).await;
        let entra_id = Uuid::new_v4().to_string();
        entra.state.add_tenant(&entra_id, EntraTenant::healthy(&entra_id, &format!("t{i}.example.com")));
        let scope = wbd_store::TenantScope {
            org_id: wbd_store::OrgId(org.id),
            tenant_id: wbd_store::TenantId(tenant),
        };
        let nonce = Uuid::new_v4();
        let now = chrono::Utc::now();
        app.store
            .create_graph_consent_request(
                scope,
                nonce,
                "api_key:test",
                now + chrono::Duration::minutes(10),
                now,
            )
            .await
            .unwrap();
        let outcome = app.store.complete_graph_consent(scope, nonce, Some(&entra_id), now).await.unwrap();
        assert!(matches!(outcome, wbd_store::GraphConsentOutcome::Connected(_)), "{outcome:?}");
        entra_ids.push((scope, entra_id));
    }

    // Two workers: each its own connection pool, reader (token cache, app pause) and slots.
    let mut settings = wbd_platform::Settings::defaults();
    // The database the workers use (else the default SQLite path, beside which the reader would
    // make a key file for tenants' own apps).
    settings.database.url = db_url.clone();
    settings.graph.client_id = CLIENT_ID.into();
    settings.graph.client_secret = "app-secret".into();
    settings.graph.authority = stand_in.clone();
    settings.graph.graph_base_url = format!("{stand_in}/graph");
    settings.graph.read_interval_secs = 3600;
    settings.graph.reader_poll_secs = 1;
    settings.graph.reader_concurrency = 8;
    let cancel = tokio_util::sync::CancellationToken::new();
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..2 {
        let store = wbd_store::connect(&db_url, 4).await.unwrap();
        wbd_platform::graph_reader::spawn(store, &settings, cancel.clone(), &mut workers).unwrap();
    }

    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(120);
    loop {
        let mut read = 0;
        for (scope, _) in &entra_ids {
            let c = app.store.get_graph_connection(*scope).await.unwrap().unwrap();
            read += usize::from(c.last_read_at.is_some());
        }
        if read == TENANTS {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "only {read} of {TENANTS} tenants were read");
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    }
    // A few more polls of both workers: nothing is due again within the period.
    tokio::time::sleep(std::time::Duration::from_secs(3)).await;
    cancel.cancel();
    while workers.join_next().await.is_some() {}

    // Which tenant each `organization` read was for (the stand-in's tokens name their tenant).
    let mut reads: std::collections::HashMap<String, usize> = std::collections::HashMap::new();
    for r in entra.requests().iter().filter(|r| r.method == "GET" && r.path == "/graph/v1.0/organization") {
        let token = r.header("authorization").unwrap_or_default();
        let tenant = token.split('.').nth(1).unwrap_or_default().to_owned();
        *reads.entry(tenant).or_default() += 1;
    }
    for (scope, entra_id) in &entra_ids {
        assert_eq!(reads.get(entra_id), Some(&1), "tenant {entra_id} read {:?} times", reads.get(entra_id));
        let c = app.store.get_graph_connection(*scope).await.unwrap().unwrap();
        assert!(c.last_error.is_none(), "{c:?}");
        assert!(
            c.next_read_at > chrono::Utc::now() + chrono::Duration::minutes(50),
            "due again within the period"
        );
    }
    assert_eq!(reads.len(), TENANTS);

    app.shutdown().await;
    sqlx::query(sqlx::AssertSqlSafe(format!("DROP DATABASE {db_name} WITH (FORCE)")))
        .execute(&mut admin)
        .await
        .unwrap();
}
