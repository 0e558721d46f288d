//! "Bring your own app": a tenant read with an Entra app of its own, set through the API, against
//! the identity-platform and Graph stand-in; bad input refused with nothing changed; and the
//! installation's credential refused being one installation problem, not every tenant's.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};
use uuid::Uuid;
use wbd_receivers::Receiver;
use wbd_receivers::entra::{EntraApp, EntraState, EntraTenant};

use crate::graph::{ENTRA, ask_consent, connection, redirect};
use crate::helpers::*;

/// The installation's multi-tenant app.
const INSTALLATION_APP: &str = "5f0c1a2b-0000-4000-8000-00000000a11a";
/// Contoso's own app, registered in Contoso's tenant only.
const OWN_APP: &str = "0a1b2c3d-0000-4000-8000-0000000000b1";
const OWN_SECRET: &str = "own~Secret.0123456789abcdefghijklmnopqrstuv";
/// Fabrikam's Entra tenant.
const FABRIKAM: &str = "84b7c5e1-0000-4000-8000-000000000002";

/// The stand-in, with the installation's app (secret `app-secret`) and Contoso's own app; Contoso
/// never consented to the installation's app, Fabrikam did.
async fn stand_in() -> Receiver<EntraState> {
    let entra = Receiver::spawn(EntraState::new(EntraApp {
        client_id: INSTALLATION_APP.into(),
        client_secret: Some("app-secret".into()),
        certificate: None,
    }))
    .await;
    let mut contoso = EntraTenant::healthy(ENTRA, "contoso.com");
    contoso.consented = false;
    contoso.authorization_policy = json!({"id": "authorizationPolicy", "allowedToUseSSPR": false});
    entra.state.add_tenant(ENTRA, contoso);
    entra.state.add_tenant(FABRIKAM, EntraTenant::healthy(FABRIKAM, "fabrikam.com"));
    entra.state.register_app(
        EntraApp { client_id: OWN_APP.into(), client_secret: Some(OWN_SECRET.into()), certificate: None },
        &[ENTRA],
    );
    entra
}

/// A server reading Graph through the stand-in; `installation_secret`: the installation app's
/// secret (`None`: no installation app at all).
async fn spawn_reading(entra: &Receiver<EntraState>, installation_secret: Option<&str>) -> TestApp {
    let stand_in = entra.url();
    let secret = installation_secret.map(str::to_owned);
    spawn_app_with(move |s| {
        if let Some(secret) = secret {
            s.graph.client_id = INSTALLATION_APP.into();
            s.graph.client_secret = secret;
            s.graph.redirect_base_url = "https://wbd.example.com".into();
        }
        s.graph.authority = stand_in.clone();
        s.graph.graph_base_url = format!("{stand_in}/graph");
        s.graph.reader_poll_secs = 1;
    })
    .await
}

fn own_app_body(secret: &str) -> Value {
    json!({
        "client_id": OWN_APP,
        "entra_tenant_id": ENTRA,
        "cloud": "global",
        "client_secret": secret,
    })
}

async fn put_app(app: &TestApp, token: &str, tenant: Uuid, body: &Value) -> reqwest::Response {
    app.put(token, &format!("/v1/tenants/{tenant}/graph/app"), body).await
}

/// Waits until `done` holds of the tenant's connection.
async fn wait_for_connection(
    app: &TestApp,
    token: &str,
    tenant: Uuid,
    done: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let shown = connection(app, token, tenant).await;
        if done(&shown) {
            return shown;
        }
        assert!(tokio::time::Instant::now() < deadline, "never got there: {shown:#}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// A self-signed certificate with an RSA key, as PEM, and how the app registration has it
/// (`x5t#S256`, the PKCS#1 public key).
fn certificate() -> (String, String, (String, Vec<u8>)) {
    use aws_lc_rs::encoding::AsDer as _;
    use aws_lc_rs::signature::KeyPair as _;
    let key = aws_lc_rs::rsa::KeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048).unwrap();
    let public_key = key.public_key().as_ref().to_vec();
    let pkcs8 = key.as_der().unwrap();
    let pkcs8 = rustls_pki_types::PrivatePkcs8KeyDer::from(pkcs8.as_ref().to_vec());
    let key = rcgen::KeyPair::from_pkcs8_der_and_sign_algo(&pkcs8, &rcgen::PKCS_RSA_SHA256).unwrap();
    let cert =
        rcgen::CertificateParams::new(vec!["contoso-own-app".to_owned()]).unwrap().self_signed(&key).unwrap();
    let (cert_pem, key_pem) = (cert.pem(), key.serialize_pem());
    let parsed = wbd_graph::CertificateCredential::from_pem(
        cert_pem.as_bytes(),
        key_pem.as_bytes(),
        wbd_graph::AssertionAlgorithm::Ps256,
    )
    .unwrap();
    (cert_pem, key_pem, (parsed.thumbprint_s256().to_owned(), public_key))
}

async fn audit(app: &TestApp, token: &str) -> Vec<Value> {
    let page: Value = app.get(token, "/v1/audit-log").await.json().await.unwrap();
    page["items"].as_array().unwrap().clone()
}

/// Contoso brings its own app; Fabrikam consented to the installation's. Contoso is read at once
/// with its app, without a consent redirect; its findings open (a Graph rule, and the expiry of
/// its app's secret); neither app's token is ever used for the other's tenant.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_s_own_app_reads_it_without_consent_and_its_tokens_stay_its_own() {
    let entra = stand_in().await;
    let app = spawn_reading(&entra, Some("app-secret")).await;
    let org = app.bootstrap_org("Acme MSP").await;
    let contoso = app.create_tenant(&org, "Contoso").await;
    let fabrikam = app.create_tenant(&org, "Fabrikam").await;
    let (_, state) = ask_consent(&app, &org.token, fabrikam).await;
    let res = redirect(&app, &[("admin_consent", "True"), ("tenant", FABRIKAM), ("state", &state)]).await;
    assert_eq!(res.status(), StatusCode::OK);

    let expires = chrono::Utc::now() + chrono::Duration::days(10);
    let mut body = own_app_body(OWN_SECRET);
    body["client_secret_expires_at"] = json!(expires);
    let res = put_app(&app, &org.token, contoso, &body).await;
    assert_eq!(res.status(), StatusCode::OK);
    let text = res.text().await.unwrap();
    assert!(!text.contains(OWN_SECRET), "the secret is never shown: {text}");
    let set: Value = serde_json::from_str(&text).unwrap();
    assert_eq!((set["state"].as_str(), set["app"].as_str()), (Some("connected"), Some("own")), "{set:#}");
    assert_eq!(set["own_app"]["client_id"], OWN_APP);
    assert_eq!(set["own_app"]["credentials_set"], json!(["client_secret"]));
    assert_eq!(set["own_app"]["version"], 1);
    assert_eq!(set["cloud"], "global");
    assert!(set["consent_pending_until"].is_null());

    // Read with its own app: the Graph rules decide, and its secret's expiry is its finding.
    let query = format!("tenant_id={contoso}&rule_id=sspr-for-administrators");
    app.wait_for_findings(&org.token, &query, |f| f.iter().any(|f| f["status"] == "open")).await;
    let query = format!("tenant_id={contoso}&rule_id=graph-app-credential-expiry");
    let expiring =
        app.wait_for_findings(&org.token, &query, |f| f.iter().any(|f| f["status"] == "open")).await;
    let summary = expiring[0]["summary"].as_str().unwrap();
    assert!(
        summary.contains("tenant's own Graph app") && summary.contains("/graph/app"),
        "its own fix: {summary}"
    );
    let shown = wait_for_connection(&app, &org.token, contoso, |c| c["last_read_at"].is_string()).await;
    assert_eq!(
        (shown["state"].as_str(), shown["app"].as_str()),
        (Some("connected"), Some("own")),
        "{shown:#}"
    );
    assert_eq!(shown["entra_tenant_id"], ENTRA);
    wait_for_connection(&app, &org.token, fabrikam, |c| c["last_read_at"].is_string()).await;
    let fabrikam_shown = connection(&app, &org.token, fabrikam).await;
    assert_eq!(
        (fabrikam_shown["app"].as_str(), fabrikam_shown["own_app"].is_null()),
        (Some("installation"), true)
    );
    // The installation's credential has no known expiry: no such finding for Fabrikam.
    let query = format!("tenant_id={fabrikam}&rule_id=graph-app-credential-expiry&status=open");
    assert!(app.findings(&org.token, &query).await.is_empty());

    // Each app's tokens for its own tenant only.
    assert!(entra.state.token_requests_by(ENTRA, OWN_APP) >= 1);
    assert!(entra.state.graph_calls(ENTRA, OWN_APP) > 0);
    assert!(entra.state.graph_calls(FABRIKAM, INSTALLATION_APP) > 0);
    assert_eq!(entra.state.token_requests_by(ENTRA, INSTALLATION_APP), 0, "Contoso never consented");
    assert_eq!(entra.state.token_requests_by(FABRIKAM, OWN_APP), 0);
    assert_eq!(entra.state.graph_calls(FABRIKAM, OWN_APP), 0);
    assert_eq!(entra.state.graph_calls(ENTRA, INSTALLATION_APP), 0);

    // Audited, without the credential.
    let entries = audit(&app, &org.token).await;
    let set_entry = entries.iter().find(|e| e["action"] == "graph.app.set").expect("audited");
    assert_eq!(set_entry["after"]["client_id"], OWN_APP);
    assert!(!serde_json::to_string(&entries).unwrap().contains(OWN_SECRET));

    // Removed: reading with it stops.
    let res = app.delete(&org.token, &format!("/v1/tenants/{contoso}/graph/app")).await;
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    let gone = connection(&app, &org.token, contoso).await;
    assert_eq!((gone["state"].as_str(), gone["app"].as_str()), (Some("not_connected"), Some("installation")));
    assert!(gone["own_app"].is_null());
    let res = app.delete(&org.token, &format!("/v1/tenants/{contoso}/graph/app")).await;
    problem(res, StatusCode::NOT_FOUND, "graph_app_not_set").await;
    assert_eq!(audit(&app, &org.token).await[0]["action"], "graph.app.remove");
    app.shutdown().await;
}

/// No installation app at all: a tenant's own app with a certificate is read all the same, and
/// the API shows the certificate's expiry.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_own_app_with_a_certificate_is_read_without_any_installation_app() {
    let (cert_pem, key_pem, registered) = certificate();
    let entra = stand_in().await;
    // The app names the tenant by a verified domain: the stand-in knows it by that name.
    entra.state.add_tenant("fabrikam.com", EntraTenant::healthy(FABRIKAM, "fabrikam.com"));
    entra.state.register_app(
        EntraApp {
            client_id: "0a1b2c3d-0000-4000-8000-0000000000c2".into(),
            client_secret: None,
            certificate: Some(registered),
        },
        &["fabrikam.com"],
    );
    let app = spawn_reading(&entra, None).await;
    let org = app.bootstrap_org("Acme MSP").await;
    let fabrikam = app.create_tenant(&org, "Fabrikam").await;
    assert_eq!(connection(&app, &org.token, fabrikam).await["state"], "not_configured");

    let body = json!({
        "client_id": "0A1B2C3D-0000-4000-8000-0000000000C2",
        "entra_tenant_id": "fabrikam.com",
        "certificate": cert_pem,
        "private_key": key_pem,
    });
    let res = put_app(&app, &org.token, fabrikam, &body).await;
    assert_eq!(res.status(), StatusCode::OK);
    let text = res.text().await.unwrap();
    assert!(!text.contains("PRIVATE KEY") && !text.contains("BEGIN CERTIFICATE"), "{text}");
    let set: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(set["own_app"]["client_id"], "0a1b2c3d-0000-4000-8000-0000000000c2");
    assert_eq!(set["own_app"]["credentials_set"], json!(["certificate", "private_key"]));
    assert_eq!(set["own_app"]["credential_kind"], "certificate");
    assert!(set["own_app"]["credential_expires_at"].is_string(), "{set:#}");

    let shown = wait_for_connection(&app, &org.token, fabrikam, |c| c["last_read_at"].is_string()).await;
    assert_eq!(shown["state"], "connected", "{shown:#}");
    assert!(shown["last_error"].is_null(), "{shown:#}");
    assert!(entra.state.graph_calls("fabrikam.com", "0a1b2c3d-0000-4000-8000-0000000000c2") > 0);
    // The facts arrived: the reader's collector row reported.
    let collectors: Value =
        app.get(&org.token, &format!("/v1/collectors?tenant_id={fabrikam}")).await.json().await.unwrap();
    let reader = &collectors.as_array().unwrap()[0];
    assert_eq!(reader["name"], "Microsoft Graph (central reader)");
    assert!(reader["last_seen_at"].is_string(), "{reader:#}");
    app.shutdown().await;
}

/// Every refusal: 422 problem+json naming the field, and nothing stored or audited; another
/// organisation's tenant is 404, a technician or read-only key 403; a change from a version the
/// app is no longer at is 409.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_changes_nothing_and_only_the_tenant_s_org_admins_may_set_it() {
    let app = spawn_app_with(|s| s.graph.reader_enabled = false).await;
    let org = app.bootstrap_org("Acme MSP").await;
    let tenant = app.create_tenant(&org, "Contoso").await;
    let (cert_pem, key_pem, _) = certificate();
    let (other_cert, _, _) = certificate();
    let with = |change: &dyn Fn(&mut Value)| {
        let mut body = own_app_body(OWN_SECRET);
        change(&mut body);
        body
    };
    let refused = [
        ("client_id", with(&|b| b["client_id"] = json!("not-a-guid"))),
        ("client_id", with(&|b| b["client_id"] = json!(format!("{{{OWN_APP}}}")))),
        ("entra_tenant_id", with(&|b| b["entra_tenant_id"] = json!("contoso"))),
        ("entra_tenant_id", with(&|b| b["entra_tenant_id"] = json!("-contoso.com"))),
        ("entra_tenant_id", with(&|b| b["entra_tenant_id"] = json!(format!("{}.com", "a".repeat(250))))),
        ("cloud", with(&|b| b["cloud"] = json!("usgov"))),
        ("cloud", with(&|b| b["cloud"] = json!(" global"))),
        ("client_secret", with(&|b| b["client_secret"] = json!(""))),
        ("client_secret", with(&|b| b["client_secret"] = json!("s".repeat(257)))),
        (
            "client_secret",
            with(&|b| {
                b.as_object_mut().unwrap().remove("client_secret");
            }),
        ),
        (
            "client_secret",
            with(&|b| {
                b["certificate"] = json!(cert_pem);
                b["private_key"] = json!(key_pem);
            }),
        ),
        (
            "certificate",
            json!({"client_id": OWN_APP, "entra_tenant_id": ENTRA, "certificate": "garbage", "private_key": key_pem}),
        ),
        (
            "private_key",
            json!({"client_id": OWN_APP, "entra_tenant_id": ENTRA, "certificate": cert_pem, "private_key": "garbage"}),
        ),
        (
            "private_key",
            json!({"client_id": OWN_APP, "entra_tenant_id": ENTRA, "certificate": other_cert, "private_key": key_pem}),
        ),
        ("private_key", json!({"client_id": OWN_APP, "entra_tenant_id": ENTRA, "certificate": cert_pem})),
        (
            "certificate",
            json!({"client_id": OWN_APP, "entra_tenant_id": ENTRA, "certificate": "x".repeat(16_385), "private_key": key_pem}),
        ),
    ];
    for (field, body) in &refused {
        let res = put_app(&app, &org.token, tenant, body).await;
        let shown = problem(res, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").await;
        assert!(shown["detail"].as_str().unwrap().starts_with(&format!("{field}:")), "{field}: {shown:#}");
        assert_eq!(shown["errors"][0]["pointer"], format!("/{field}"), "{shown:#}");
    }
    let res = put_app(&app, &org.token, tenant, &with(&|b| b["surprise"] = json!(1))).await;
    problem(res, StatusCode::BAD_REQUEST, "malformed_json").await;
    let shown = connection(&app, &org.token, tenant).await;
    assert!(shown["own_app"].is_null() && shown["app"] == "installation", "{shown:#}");
    assert!(audit(&app, &org.token).await.iter().all(|e| e["action"] != "graph.app.set"));

    // Only the tenant's own organisation, and only its admins.
    let other = app.bootstrap_org("Other MSP").await;
    let res = put_app(&app, &other.token, tenant, &own_app_body(OWN_SECRET)).await;
    problem(res, StatusCode::NOT_FOUND, "not_found").await;
    let res = app.delete(&other.token, &format!("/v1/tenants/{tenant}/graph/app")).await;
    problem(res, StatusCode::NOT_FOUND, "not_found").await;
    for role in ["technician", "read_only"] {
        let token = app.login_as(&org, role).await;
        let res = put_app(&app, &token, tenant, &own_app_body(OWN_SECRET)).await;
        problem(res, StatusCode::FORBIDDEN, "forbidden").await;
        let res = app.delete(&token, &format!("/v1/tenants/{tenant}/graph/app")).await;
        problem(res, StatusCode::FORBIDDEN, "forbidden").await;
        // They see which app reads it.
        assert_eq!(connection(&app, &token, tenant).await["app"], "installation");
    }
    assert!(connection(&app, &org.token, tenant).await["own_app"].is_null());

    // Versions: a change made from a version the app is not at is refused.
    let res = put_app(&app, &org.token, tenant, &with(&|b| b["version"] = json!(1))).await;
    problem(res, StatusCode::CONFLICT, "graph_app_changed").await;
    let res = put_app(&app, &org.token, tenant, &own_app_body(OWN_SECRET)).await;
    assert_eq!(res.status(), StatusCode::OK);
    let res = put_app(&app, &org.token, tenant, &with(&|b| b["version"] = json!(7))).await;
    problem(res, StatusCode::CONFLICT, "graph_app_changed").await;
    let res = put_app(
        &app,
        &org.token,
        tenant,
        &with(&|b| {
            b["version"] = json!(1);
            b["cloud"] = json!("us_government");
        }),
    )
    .await;
    assert_eq!(res.status(), StatusCode::OK);
    let shown: Value = res.json().await.unwrap();
    assert_eq!(
        (shown["own_app"]["version"].as_i64(), shown["cloud"].as_str()),
        (Some(2), Some("us_government"))
    );
    // Another organisation's admin sees nothing of it.
    let res = app.get(&other.token, &format!("/v1/tenants/{tenant}/graph")).await;
    problem(res, StatusCode::NOT_FOUND, "not_found").await;
    app.shutdown().await;
}

/// The installation's secret is wrong: every read with it is refused alike. No tenant is marked
/// revoked and no finding opens; the installation has one problem (in `/healthz`, on each tenant
/// it reads), reading with it pauses, and a tenant's own app goes on. An own app's bad secret is
/// that tenant's problem only.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_installation_secret_is_one_installation_problem_not_every_tenant_s() {
    let entra = stand_in().await;
    entra.state.update_tenant(ENTRA, |t| t.consented = true);
    let app = spawn_reading(&entra, Some("wrong-secret")).await;
    let org = app.bootstrap_org("Acme MSP").await;
    let mut shared = Vec::new();
    for (name, entra_id) in [("Contoso", ENTRA), ("Fabrikam", FABRIKAM)] {
        let tenant = app.create_tenant(&org, name).await;
        let (_, state) = ask_consent(&app, &org.token, tenant).await;
        let res = redirect(&app, &[("admin_consent", "True"), ("tenant", entra_id), ("state", &state)]).await;
        assert_eq!(res.status(), StatusCode::OK);
        shared.push(tenant);
    }
    // A third tenant with its own app, whose secret is wrong too: its own problem.
    let own = app.create_tenant(&org, "Northwind").await;
    let res = put_app(&app, &org.token, own, &own_app_body("not-the-secret")).await;
    assert_eq!(res.status(), StatusCode::OK);

    for tenant in &shared {
        let shown = wait_for_connection(&app, &org.token, *tenant, |c| c["last_read_at"].is_string()).await;
        assert_eq!(shown["state"], "app_credential_invalid", "{shown:#}");
        assert!(shown["app_problem"].as_str().unwrap().contains("AADSTS7000215"), "{shown:#}");
        assert!(shown["last_error"].as_str().unwrap().contains("not for this tenant"), "{shown:#}");
    }
    let health: Value = app.client.get(app.url("/healthz")).send().await.unwrap().json().await.unwrap();
    assert_eq!(health["graph_app"], "credential_invalid", "{health:#}");
    let problem_row = app.store.graph_app_problem().await.unwrap().expect("one installation problem");
    assert!(problem_row.problem.contains("AADSTS7000215"));

    let own_shown = wait_for_connection(&app, &org.token, own, |c| c["state"] == "credential_invalid").await;
    assert!(
        own_shown["last_error"].as_str().unwrap().contains("credential is invalid or expired"),
        "{own_shown:#}"
    );
    assert!(own_shown["app_problem"].is_null(), "the installation's problem is not the own app's");
    let query = format!("tenant_id={own}&status=open");
    let open = app.wait_for_findings(&org.token, &query, |f| !f.is_empty()).await;
    assert_eq!(open.len(), 1, "{open:#?}");
    assert_eq!(open[0]["rule_id"], "graph-access");
    let summary = open[0]["summary"].as_str().unwrap();
    assert!(summary.contains("AADSTS7000215") && summary.contains("/graph/app"), "{summary}");
    assert!(!summary.contains("/graph/consent"), "not the installation's fix: {summary}");

    // Reading with the installation's app paused: no more token requests while the problem stands.
    let installation_asks = || {
        entra.state.token_requests_by(ENTRA, INSTALLATION_APP)
            + entra.state.token_requests_by(FABRIKAM, INSTALLATION_APP)
    };
    let asked = installation_asks();
    assert!(asked <= 2, "one refused request per tenant at most: {asked}");
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(installation_asks(), asked);
    for tenant in &shared {
        let query = format!("tenant_id={tenant}&status=open");
        assert!(
            app.findings(&org.token, &query).await.is_empty(),
            "no finding for the installation's problem"
        );
        let scope = wbd_store::TenantScope {
            org_id: wbd_store::OrgId(org.id),
            tenant_id: wbd_store::TenantId(*tenant),
        };
        let stored = app.store.get_graph_connection(scope).await.unwrap().unwrap();
        assert_eq!(stored.state, wbd_store::GraphConnectionState::Connected, "not revoked");
    }

    // The operator fixes the secret (here: the app registration takes it); at the retry the first
    // token clears the problem and reading resumes for every tenant.
    entra.state.app.lock().unwrap().client_secret = Some("wrong-secret".into());
    let now = chrono::Utc::now();
    app.store.record_graph_app_problem(&problem_row.problem, now, now).await.unwrap();
    for tenant in &shared {
        let scope = wbd_store::TenantScope {
            org_id: wbd_store::OrgId(org.id),
            tenant_id: wbd_store::TenantId(*tenant),
        };
        app.store.request_graph_read(scope, now).await.unwrap();
        let shown = wait_for_connection(&app, &org.token, *tenant, |c| c["state"] == "connected").await;
        assert!(shown["app_problem"].is_null(), "{shown:#}");
    }
    let health: Value = app.client.get(app.url("/healthz")).send().await.unwrap().json().await.unwrap();
    assert_eq!(health["graph_app"], "ok", "{health:#}");

    // The own app removed and set again with its right secret (version 1 again): read with the
    // new secret, not a reader kept from before.
    let res = app.delete(&org.token, &format!("/v1/tenants/{own}/graph/app")).await;
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    let res = put_app(&app, &org.token, own, &own_app_body(OWN_SECRET)).await;
    assert_eq!(res.status(), StatusCode::OK);
    let set: Value = res.json().await.unwrap();
    assert_eq!(set["own_app"]["version"], 1);
    let shown = wait_for_connection(&app, &org.token, own, |c| c["last_read_at"].is_string()).await;
    assert_eq!(shown["state"], "connected", "{shown:#}");
    assert!(shown["last_error"].is_null(), "{shown:#}");
    app.shutdown().await;
}
