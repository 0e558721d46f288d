//! The Graph reader against the identity-platform and Graph stand-in of `wbd-receivers`
//! (`entra`), which checks client assertions as Entra does, issues per-tenant tokens, pages,
//! throttles and refuses what the app may not read.

use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_lc_rs::encoding::AsDer as _;
use base64::Engine as _;
use chrono::Utc;
use reqwest::Url;
use wbd_graph::permissions::missing_permissions;
use wbd_graph::{
    AssertionAlgorithm, AssertionClaims, CertificateCredential, ClientCredential, CredentialError, GraphApp,
    GraphReader, Secret, failure_means_consent_gone,
};
use wbd_receivers::Receiver;
use wbd_receivers::entra::{EntraApp, EntraState, EntraTenant, GLOBAL_ADMIN};

const CLIENT_ID: &str = "5f0c1a2b-0000-4000-8000-00000000a11a";
const CONTOSO: &str = "84b7c5e1-0000-4000-8000-000000000001";
const FABRIKAM: &str = "84b7c5e1-0000-4000-8000-000000000002";

/// A self-signed certificate with an RSA key, as PEM: (certificate, PKCS#8 key).
fn certificate() -> (String, String) {
    let key = aws_lc_rs::rsa::KeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048).unwrap();
    let pkcs8 = key.as_der().unwrap();
    let pkcs8 = rustls_pki_types::PrivatePkcs8KeyDer::from(pkcs8.as_ref().to_vec());
    let key = rcgen::KeyPair::from_pkcs8_der_and_sign_algo(&pkcs8, &rcgen::PKCS_RSA_SHA256).unwrap();
    let cert = rcgen::CertificateParams::new(vec!["writeback-doctor".to_owned()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    (cert.pem(), key.serialize_pem())
}

/// The certificate's `x5t#S256` and RSA public key (PKCS#1 DER), as the app registration has them.
fn registered(cert_pem: &str) -> (String, Vec<u8>) {
    use rustls_pki_types::pem::PemObject as _;
    let der = rustls_pki_types::CertificateDer::from_pem_slice(cert_pem.as_bytes()).unwrap();
    let (_, parsed) = x509_parser::parse_x509_certificate(der.as_ref()).unwrap();
    let public_key = parsed.public_key().subject_public_key.data.to_vec();
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, der.as_ref());
    (base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(digest), public_key)
}

struct Setup {
    entra: Receiver<EntraState>,
    cert_pem: String,
    key_pem: String,
}

async fn stand_in() -> Setup {
    let (cert_pem, key_pem) = certificate();
    // Over HTTPS, as the real ones: the stand-in's certificate chains to a CA made for it.
    let entra = Receiver::spawn_https(EntraState::new(EntraApp {
        client_id: CLIENT_ID.into(),
        client_secret: Some("app-secret".into()),
        certificate: Some(registered(&cert_pem)),
    }))
    .await;
    entra.state.add_tenant(CONTOSO, EntraTenant::healthy(CONTOSO, "contoso.com"));
    entra.state.add_tenant(FABRIKAM, EntraTenant::healthy(FABRIKAM, "fabrikam.com"));
    Setup { entra, cert_pem, key_pem }
}

fn app(entra: &Receiver<EntraState>, credential: ClientCredential) -> GraphApp {
    GraphApp {
        client_id: CLIENT_ID.into(),
        credential,
        authority: Url::parse(&entra.url()).unwrap(),
        graph_base_url: Url::parse(&format!("{}/graph", entra.url())).unwrap(),
        timeout: Duration::from_secs(10),
        settings_hint: "graph.client_id / graph.certificate_file".into(),
        secret_expires_at: None,
    }
}

fn cert_credential(s: &Setup, algorithm: AssertionAlgorithm) -> ClientCredential {
    ClientCredential::Certificate(Arc::new(
        CertificateCredential::from_pem(s.cert_pem.as_bytes(), s.key_pem.as_bytes(), algorithm).unwrap(),
    ))
}

/// A client that trusts the stand-in's CA only.
fn https_client(entra: &Receiver<EntraState>) -> reqwest::Client {
    let ca = reqwest::Certificate::from_pem(entra.ca_pem().expect("an HTTPS stand-in").as_bytes()).unwrap();
    reqwest::Client::builder().tls_certs_only([ca]).build().unwrap()
}

fn reader(s: &Setup, credential: ClientCredential) -> GraphReader {
    GraphReader::new(app(&s.entra, credential), https_client(&s.entra))
}

#[tokio::test]
async fn a_client_assertion_verifies_with_the_certificate_s_key_and_says_who_where_and_until_when() {
    let (cert_pem, key_pem) = certificate();
    let (thumbprint, public_key) = registered(&cert_pem);
    for algorithm in [AssertionAlgorithm::Ps256, AssertionAlgorithm::Rs256] {
        let credential =
            CertificateCredential::from_pem(cert_pem.as_bytes(), key_pem.as_bytes(), algorithm).unwrap();
        assert_eq!(credential.thumbprint_s256(), thumbprint);
        assert!(credential.not_after().is_some_and(|t| t > Utc::now()), "{credential:?}");
        let endpoint = "https://login.microsoftonline.com/contoso.onmicrosoft.com/oauth2/v2.0/token";
        let now = Utc::now();
        let assertion = credential.client_assertion(CLIENT_ID, endpoint, now).unwrap();
        let second = credential.client_assertion(CLIENT_ID, endpoint, now).unwrap();

        let header = jsonwebtoken::decode_header(&assertion).unwrap();
        let expected = match algorithm {
            AssertionAlgorithm::Ps256 => jsonwebtoken::Algorithm::PS256,
            AssertionAlgorithm::Rs256 => jsonwebtoken::Algorithm::RS256,
        };
        assert_eq!(header.alg, expected);
        assert_eq!(header.x5t_s256.as_deref(), Some(thumbprint.as_str()));
        let mut validation = jsonwebtoken::Validation::new(expected);
        validation.set_audience(&[endpoint]);
        validation.set_issuer(&[CLIENT_ID]);
        validation.validate_nbf = true;
        let claims = jsonwebtoken::decode::<AssertionClaims>(
            &assertion,
            &jsonwebtoken::DecodingKey::from_rsa_der(&public_key),
            &validation,
        )
        .expect("the certificate's public key verifies the assertion")
        .claims;
        assert_eq!(
            (claims.iss.as_str(), claims.sub.as_str(), claims.aud.as_str()),
            (CLIENT_ID, CLIENT_ID, endpoint)
        );
        assert_eq!(claims.nbf, now.timestamp());
        assert!(claims.exp > claims.nbf && claims.exp - claims.nbf <= 600, "{claims:?}");
        let second: AssertionClaims = jsonwebtoken::dangerous::insecure_decode(&second).unwrap().claims;
        assert_ne!(claims.jti, second.jti, "a fresh jti each time");
        // Debug shows the thumbprint, never the key.
        assert!(!format!("{credential:?}").contains("PRIVATE"));
    }
}

#[tokio::test]
async fn a_key_that_is_not_the_certificate_s_is_refused_when_loaded() {
    let (cert_pem, _) = certificate();
    let (_, other_key) = certificate();
    let refused =
        CertificateCredential::from_pem(cert_pem.as_bytes(), other_key.as_bytes(), AssertionAlgorithm::Ps256)
            .unwrap_err();
    assert_eq!(refused, CredentialError::KeyMismatch);
    let missing =
        CertificateCredential::from_pem(cert_pem.as_bytes(), cert_pem.as_bytes(), AssertionAlgorithm::Ps256)
            .unwrap_err();
    assert_eq!(missing, CredentialError::NoPrivateKey);
    // One file holding both works.
    let (cert_pem, key_pem) = certificate();
    let both = format!("{cert_pem}{key_pem}");
    CertificateCredential::from_pem(both.as_bytes(), both.as_bytes(), AssertionAlgorithm::Ps256).unwrap();
}

#[tokio::test]
async fn with_a_certificate_every_fact_is_read_across_pages_and_the_token_is_kept_to_its_expiry() {
    let s = stand_in().await;
    let reader = reader(&s, cert_credential(&s, AssertionAlgorithm::Ps256));

    let r = reader.read(CONTOSO, Some("sspr.test@contoso.com")).await;

    assert!(r.errors.is_empty() && r.failure.is_none(), "{r:#?}");
    let p1 = r.service_plans.as_ref().unwrap().iter().find(|p| p.service_plan_name == "AAD_PREMIUM").unwrap();
    assert_eq!(p1.skus, vec!["AAD_PREMIUM", "SPB"], "both pages were read");
    assert_eq!((p1.enabled_units, p1.assigned_units), (25, 20));
    assert_eq!(r.organization.as_ref().unwrap().on_premises_sync_enabled, Some(true));
    assert_eq!(r.allowed_to_use_sspr, Some(true));
    assert_eq!(r.test_user.as_ref().unwrap().is_sspr_enabled, Some(true));
    let ga = r.admin_roles.as_ref().unwrap().iter().find(|a| a.role_template_id == GLOBAL_ADMIN).unwrap();
    assert_eq!((ga.members.len(), ga.cloud_only_count()), (1, 1));
    let skus: Vec<_> =
        s.entra.requests().into_iter().filter(|r| r.path == "/graph/v1.0/subscribedSkus").collect();
    assert_eq!(skus.len(), 2, "one request per page");

    // The token is kept: a second read asks for none.
    reader.read(CONTOSO, None).await;
    assert_eq!(s.entra.state.token_requests(CONTOSO), 1);
    // Another tenant gets its own token, which Graph takes for that tenant only.
    let f = reader.read(FABRIKAM, None).await;
    assert!(f.errors.is_empty() && f.failure.is_none(), "{f:#?}");
    assert_eq!(f.organization.unwrap().id, FABRIKAM);
    assert_eq!(s.entra.state.token_requests(FABRIKAM), 1);
    let tokens: std::collections::HashSet<_> =
        s.entra.requests().iter().filter_map(|r| r.header("authorization").map(str::to_owned)).collect();
    assert_eq!(tokens.len(), 2, "one token per tenant");
}

#[tokio::test]
async fn a_token_about_to_expire_is_renewed_and_rs256_works_too() {
    let s = stand_in().await;
    // Tokens that live less than the renewal margin are used once.
    *s.entra.state.token_lifetime.lock().unwrap() = Duration::from_secs(60);
    let reader = reader(&s, cert_credential(&s, AssertionAlgorithm::Rs256));
    assert!(reader.read(CONTOSO, None).await.failure.is_none());
    assert!(reader.read(CONTOSO, None).await.failure.is_none());
    assert_eq!(s.entra.state.token_requests(CONTOSO), 2);
}

#[tokio::test]
async fn a_client_secret_is_still_accepted() {
    let s = stand_in().await;
    let r = reader(&s, ClientCredential::Secret(Secret::new("app-secret"))).read(CONTOSO, None).await;
    assert!(r.errors.is_empty() && r.failure.is_none(), "{r:#?}");
    let body = String::from_utf8(s.entra.requests()[0].body.clone()).unwrap();
    assert!(body.contains("client_secret=app-secret") && !body.contains("client_assertion"), "{body}");
}

#[tokio::test]
async fn a_429_is_waited_out_as_retry_after_says() {
    let s = stand_in().await;
    s.entra.state.update_tenant(CONTOSO, |t| t.throttle_next = 1);
    let started = Instant::now();
    let r = reader(&s, cert_credential(&s, AssertionAlgorithm::Ps256)).read(CONTOSO, None).await;
    assert!(r.errors.is_empty() && r.failure.is_none(), "{r:#?}");
    assert!(r.service_plans.is_some());
    assert!(started.elapsed() >= Duration::from_millis(950), "Retry-After: 1 was honoured");
    let first: Vec<_> = s
        .entra
        .requests()
        .into_iter()
        .filter(|r| r.path == "/graph/v1.0/subscribedSkus" && r.query.is_empty())
        .collect();
    assert_eq!(first.len(), 2, "the throttled request was asked again");
}

#[tokio::test]
async fn a_403_leaves_only_that_fact_unknown_and_names_the_missing_permission() {
    let s = stand_in().await;
    s.entra.state.update_tenant(CONTOSO, |t| {
        t.denied.insert("/policies/authorizationPolicy".into());
        t.denied.insert("/users".into());
    });
    let r = reader(&s, cert_credential(&s, AssertionAlgorithm::Ps256)).read(CONTOSO, None).await;

    assert_eq!(r.allowed_to_use_sspr, None, "unknown, not false");
    assert_eq!(r.admin_roles, None);
    assert!(r.service_plans.is_some() && r.organization.is_some());
    assert_eq!(r.errors.len(), 2, "{:#?}", r.errors);
    assert_eq!((r.errors[0].call.as_str(), r.errors[0].status), ("authorizationPolicy", Some(403)));
    assert!(
        r.errors[0].message.contains("application permission Policy.Read.All"),
        "{}",
        r.errors[0].message
    );
    assert_eq!(r.errors[1].call, "users:u-admin");
    assert!(r.errors[1].message.contains("User.Read.All"), "{}", r.errors[1].message);
    assert_eq!(missing_permissions(&r), vec!["Policy.Read.All", "User.Read.All"]);
}

#[tokio::test]
async fn revoked_consent_and_a_foreign_certificate_fail_the_read_with_entra_s_reason() {
    let s = stand_in().await;
    let reader = reader(&s, cert_credential(&s, AssertionAlgorithm::Ps256));
    assert!(reader.read(CONTOSO, None).await.failure.is_none());

    s.entra.state.revoke_consent(CONTOSO);
    reader.forget_token(CONTOSO).await;
    let r = reader.read(CONTOSO, None).await;
    let failure = r.failure.as_deref().unwrap();
    assert!(failure.contains("unauthorized_client") && failure.contains("AADSTS700016"), "{failure}");
    assert!(failure.contains("graph.client_id / graph.certificate_file"), "{failure}");
    assert!(failure_means_consent_gone(failure));
    assert!(r.service_plans.is_none() && r.errors.is_empty());

    // A certificate the app registration does not have.
    let (other_cert, other_key) = certificate();
    let foreign = ClientCredential::Certificate(Arc::new(
        CertificateCredential::from_pem(
            other_cert.as_bytes(),
            other_key.as_bytes(),
            AssertionAlgorithm::Ps256,
        )
        .unwrap(),
    ));
    let r = GraphReader::new(app(&s.entra, foreign), https_client(&s.entra)).read(FABRIKAM, None).await;
    let failure = r.failure.as_deref().unwrap();
    assert!(failure.contains("invalid_client") && failure.contains("AADSTS700027"), "{failure}");
}

#[tokio::test]
async fn a_cached_token_graph_refuses_is_dropped_and_the_read_decided_with_a_fresh_one() {
    let s = stand_in().await;
    let reader = reader(&s, cert_credential(&s, AssertionAlgorithm::Ps256));
    assert!(reader.read(CONTOSO, None).await.failure.is_none());

    // Graph stops taking the token though the tenant still lets the app in (a token revoked
    // early, keys rolled over): one more read with a fresh token, and nothing is lost.
    s.entra.state.revoke_consent(CONTOSO);
    s.entra.state.update_tenant(CONTOSO, |t| t.consented = true);
    let r = reader.read(CONTOSO, None).await;
    assert!(r.errors.is_empty() && r.failure.is_none() && r.access_refused.is_none(), "{r:#?}");
    assert!(r.service_plans.is_some() && r.admin_roles.is_some());
    assert_eq!(s.entra.state.token_requests(CONTOSO), 2);

    // Consent revoked while a token is cached: Graph answers 401, the fresh token is refused,
    // and only that refusal decides.
    s.entra.state.revoke_consent(CONTOSO);
    let r = reader.read(CONTOSO, None).await;
    assert_eq!(r.access_refused.as_deref(), Some("AADSTS700016"), "{r:#?}");
    assert!(r.failure.as_deref().unwrap().contains("unauthorized_client"));
    assert!(r.service_plans.is_none() && r.allowed_to_use_sspr.is_none() && r.admin_roles.is_none());
    assert!(r.errors.is_empty(), "the 401s of the stale token are not the report's: {:#?}", r.errors);
    assert_eq!(s.entra.state.token_requests(CONTOSO), 3);
}

#[tokio::test]
async fn the_report_says_when_the_app_s_credential_expires() {
    let s = stand_in().await;
    let cert = cert_credential(&s, AssertionAlgorithm::Ps256);
    let ClientCredential::Certificate(c) = &cert else { unreachable!() };
    let not_after = c.not_after().expect("rcgen's certificate has a notAfter");
    let r = reader(&s, cert).read(CONTOSO, None).await;
    assert_eq!(r.app_credential_expires_at, Some(not_after));

    let mut with_secret = app(&s.entra, ClientCredential::Secret(Secret::new("app-secret")));
    let r = GraphReader::new(with_secret.clone(), https_client(&s.entra)).read(CONTOSO, None).await;
    assert_eq!(r.app_credential_expires_at, None, "a secret does not say");
    let expiry = Utc::now() + chrono::Duration::days(12);
    with_secret.secret_expires_at = Some(expiry);
    let r = GraphReader::new(with_secret, https_client(&s.entra)).read(CONTOSO, None).await;
    assert_eq!(r.app_credential_expires_at, Some(expiry));
}

#[tokio::test]
async fn the_admins_registration_and_their_domains_are_read_and_a_403_names_domain_read_all() {
    let s = stand_in().await;
    s.entra.state.update_tenant(CONTOSO, |t| {
        t.domains.insert(
            "contoso.com".into(),
            serde_json::json!({"id": "contoso.com", "authenticationType": "Federated"}),
        );
    });
    let reader = reader(&s, ClientCredential::Secret(Secret::new("app-secret")));
    let r = reader.read(CONTOSO, Some("sspr.test@contoso.com")).await;
    assert!(r.errors.is_empty() && r.failure.is_none(), "{r:#?}");
    let admins = r.admin_registrations.as_ref().unwrap();
    assert_eq!(admins.len(), 1, "only the administrators: {admins:#?}");
    assert_eq!(admins[0].user_principal_name, "admin@contoso.com");
    assert_eq!(admins[0].is_admin, Some(true));
    let domains = r.admin_domains.as_ref().unwrap();
    assert_eq!(domains.len(), 1);
    assert_eq!(domains[0].id, "contoso.com");
    assert!(domains[0].is_federated());

    s.entra.state.update_tenant(CONTOSO, |t| {
        t.denied.insert("/domains".into());
    });
    let r = reader.read(CONTOSO, None).await;
    assert_eq!(r.admin_domains, None, "unknown, not managed");
    assert!(r.admin_roles.is_some() && r.admin_registrations.is_some());
    assert_eq!(missing_permissions(&r), vec!["Domain.Read.All"]);
}

/// Waits until the stand-in has answered the throttled requests it was told to.
async fn until(check: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !check() {
        assert!(Instant::now() < deadline, "the stand-in never throttled");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_s_throttle_holds_only_that_tenant_and_an_app_wide_one_pauses_every_read() {
    let s = stand_in().await;
    let reader = reader(&s, ClientCredential::Secret(Secret::new("app-secret")));
    // Tokens first, so that only Graph's waits are timed.
    assert!(reader.read(CONTOSO, None).await.failure.is_none());
    assert!(reader.read(FABRIKAM, None).await.failure.is_none());
    let throttle_left = |tenant: &str| s.entra.state.tenants.lock().unwrap()[tenant].throttle_next;

    // Contoso's own limit (Tenant_Application): Contoso waits 3 s, Fabrikam does not.
    s.entra.state.update_tenant(CONTOSO, |t| {
        t.throttle_next = 1;
        t.throttle_retry_after = 3;
    });
    let started = Instant::now();
    let contoso = tokio::spawn({
        let reader = reader.clone();
        async move { reader.read(CONTOSO, None).await }
    });
    until(|| throttle_left(CONTOSO) == 0).await;
    assert!(reader.app_paused_until().is_none(), "a tenant's limit is not the app's");
    let fabrikam_started = Instant::now();
    let f = reader.read(FABRIKAM, None).await;
    assert!(f.errors.is_empty() && f.failure.is_none(), "{f:#?}");
    assert!(fabrikam_started.elapsed() < Duration::from_secs(2), "Fabrikam waited for Contoso's throttle");
    let c = contoso.await.unwrap();
    assert!(c.errors.is_empty() && c.failure.is_none(), "{c:#?}");
    assert!(started.elapsed() >= Duration::from_millis(2900), "Contoso's Retry-After: 3 was honoured");

    // The app's limit across tenants (x-ms-throttle-scope: Application/…): every read waits.
    *s.entra.state.app_throttle_next.lock().unwrap() = (1, 2);
    let contoso = tokio::spawn({
        let reader = reader.clone();
        async move { reader.read(CONTOSO, None).await }
    });
    until(|| s.entra.state.app_throttle_next.lock().unwrap().0 == 0).await;
    assert!(reader.app_paused_until().is_some(), "the app is paused");
    let fabrikam_started = Instant::now();
    let f = reader.read(FABRIKAM, None).await;
    assert!(f.errors.is_empty() && f.failure.is_none(), "{f:#?}");
    assert!(fabrikam_started.elapsed() >= Duration::from_millis(1500), "Fabrikam waited out the app's pause");
    let c = contoso.await.unwrap();
    assert!(c.errors.is_empty() && c.failure.is_none(), "{c:#?}");
    assert!(reader.app_paused_until().is_none());
}

#[tokio::test]
async fn lookups_go_in_batches_of_twenty_over_https() {
    let s = stand_in().await;
    assert!(s.entra.url().starts_with("https://127.0.0.1:"), "{}", s.entra.url());
    // 25 Global Administrators, every other one synced.
    s.entra.state.update_tenant(CONTOSO, |t| {
        let mut assignments = Vec::new();
        for i in 0..25 {
            let id = format!("u-{i}");
            let upn = format!("admin{i}@contoso.com");
            assignments.push(serde_json::json!({"id": format!("a{i}"), "principalId": id, "roleDefinitionId": GLOBAL_ADMIN,
                "principal": {"@odata.type": "#microsoft.graph.user", "id": id, "userPrincipalName": upn}}));
            t.users.insert(id.clone(), serde_json::json!({"id": id, "userPrincipalName": upn, "onPremisesSyncEnabled": (i % 2 == 0).then_some(true)}));
        }
        t.role_assignments.insert(GLOBAL_ADMIN.to_owned(), assignments);
    });
    let r = reader(&s, ClientCredential::Secret(Secret::new("app-secret"))).read(CONTOSO, None).await;
    assert!(r.errors.is_empty() && r.failure.is_none(), "{r:#?}");
    let ga = r.admin_roles.as_ref().unwrap().iter().find(|a| a.role_template_id == GLOBAL_ADMIN).unwrap();
    assert_eq!((ga.members.len(), ga.synced_count()), (25, 13));
    assert_eq!(r.admin_domains.as_ref().unwrap().len(), 1);

    let requests = s.entra.requests();
    let batches: Vec<_> =
        requests.iter().filter(|r| r.method == "POST" && r.path == "/graph/v1.0/$batch").collect();
    assert_eq!(batches.len(), 3, "25 users in two batches, one domain in a third");
    let sizes: Vec<usize> = batches
        .iter()
        .map(|b| {
            serde_json::from_slice::<serde_json::Value>(&b.body).unwrap()["requests"]
                .as_array()
                .unwrap()
                .len()
        })
        .collect();
    assert_eq!(sizes, vec![20, 5, 1]);
    assert!(!requests.iter().any(|r| r.path.starts_with("/graph/v1.0/users/")), "no lookup one by one");
}
