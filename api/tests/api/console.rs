//! The console, as a browser uses it: sign-in and the session cookie, the CSRF checks on every
//! write, roles, tenancy, expiry, the Content-Security-Policy and HTML escaping. What a page
//! did is checked through the REST API, which must agree.

use chrono::{Duration, Utc};
use reqwest::StatusCode;
use reqwest::header::{CONTENT_SECURITY_POLICY, LOCATION, SET_COOKIE};
use serde_json::{Value, json};
use uuid::Uuid;
use wbd_store::{ApiKeyId, OrgId, OrgScope};

use crate::helpers::*;
use crate::tls::TestCa;

const HOST: &str = "passwordreset.microsoftonline.com";

/// A form body as a browser sends it (reqwest's own `form` is a feature this workspace leaves off).
trait FormBody {
    fn form_of(self, fields: &(impl serde::Serialize + ?Sized)) -> Self;
}

impl FormBody for reqwest::RequestBuilder {
    fn form_of(self, fields: &(impl serde::Serialize + ?Sized)) -> Self {
        self.header("content-type", "application/x-www-form-urlencoded")
            .body(serde_urlencoded::to_string(fields).unwrap())
    }
}

/// Form fields or headers, as name and value.
type Fields<'a> = &'a [(&'a str, &'a str)];

/// A client that shows redirects instead of following them, and keeps no cookies of its own.
fn browser() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(std::time::Duration::from_secs(30))
        .build()
        .unwrap()
}

/// An organisation bootstrapped as `wbd-api bootstrap` does: its admin key and a REST token.
async fn org_with_key(app: &TestApp, name: &str) -> (Org, String) {
    let done = wbd_api::bootstrap::bootstrap(app.store.as_ref(), name).await.expect("bootstrap");
    let token = app.login(&done.secret).await;
    (Org { id: done.organization.id.0, token }, done.secret)
}

/// A new API key with `role`; answers the secret.
async fn new_key(app: &TestApp, org: &Org, role: &str) -> String {
    let res = app
        .post(&org.token, "/v1/api-keys", &json!({ "name": format!("{role} person"), "role": role }))
        .await;
    assert_eq!(res.status(), StatusCode::CREATED);
    let created: Value = res.json().await.unwrap();
    created["key"].as_str().unwrap().to_owned()
}

async fn post_sign_in(app: &TestApp, api_key: &str) -> reqwest::Response {
    browser().post(app.url("/sign-in")).form_of(&[("api_key", api_key)]).send().await.unwrap()
}

/// Signs in; answers the `Cookie` header value that carries the session.
async fn sign_in(app: &TestApp, api_key: &str) -> String {
    let res = post_sign_in(app, api_key).await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER, "{}", res.text().await.unwrap_or_default());
    let set = res.headers()[SET_COOKIE].to_str().unwrap();
    set.split(';').next().unwrap().to_owned()
}

async fn page(app: &TestApp, cookie: &str, path: &str) -> reqwest::Response {
    browser().get(app.url(path)).header("cookie", cookie).send().await.unwrap()
}

async fn page_text(app: &TestApp, cookie: &str, path: &str) -> String {
    let res = page(app, cookie, path).await;
    assert_eq!(res.status(), StatusCode::OK, "GET {path}");
    res.text().await.unwrap()
}

/// The session's CSRF token, from a page's forms (the sign-out form is on every page).
fn csrf_of(html: &str) -> String {
    let start =
        html.find(r#"name="csrf" value=""#).expect("a form with the token") + r#"name="csrf" value=""#.len();
    html[start..].split('"').next().unwrap().to_owned()
}

async fn post_form(
    app: &TestApp,
    cookie: &str,
    path: &str,
    form: &[(&str, &str)],
    headers: &[(&str, &str)],
) -> reqwest::Response {
    let mut req = browser().post(app.url(path)).header("cookie", cookie).form_of(form);
    for (name, value) in headers {
        req = req.header(*name, *value);
    }
    req.send().await.unwrap()
}

/// A tenant with a collector that reported an unreachable endpoint: one open finding.
async fn tenant_with_finding(app: &TestApp, org: &Org) -> (Uuid, String) {
    let (tenant, site) = app.tenant_with_collector(org).await;
    site.push_evaluated(app, org, &batch(vec![refused_endpoint(HOST, 443)])).await;
    let query = format!("tenant_id={tenant}&rule_id=endpoint-reachable");
    let findings = app.wait_for_findings(&org.token, &query, |f| f.len() == 1).await;
    (tenant, findings[0]["id"].as_str().unwrap().to_owned())
}

/// The start of `text` up to its first character HTML escapes, to look for in a page.
fn plain(text: &str) -> &str {
    text.split(['\'', '"', '&', '<', '>']).next().unwrap_or_default()
}

fn assert_console_headers(res: &reqwest::Response, what: &str) {
    let csp = res.headers().get(CONTENT_SECURITY_POLICY).unwrap_or_else(|| panic!("{what}: no CSP"));
    assert_eq!(csp.to_str().unwrap(), wbd_api::console::CONTENT_SECURITY_POLICY, "{what}");
    assert_eq!(res.headers()["x-content-type-options"], "nosniff", "{what}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_key_is_refused_and_sets_nothing() {
    let app = spawn_app().await;
    org_with_key(&app, "Northwind MSP").await;
    for key in ["wbdk_not-a-key", "", "   "] {
        let res = post_sign_in(&app, key).await;
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED, "{key:?}");
        assert!(res.headers().get(SET_COOKIE).is_none(), "{key:?} set a cookie");
        assert_console_headers(&res, "refused sign-in");
        assert!(res.text().await.unwrap().contains("unknown or was revoked"));
    }
    // Signed out, every page leads to the sign-in page.
    let res = browser().get(app.url("/")).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    assert_eq!(res.headers()[LOCATION], "/sign-in");
    assert_console_headers(&res, "redirect");
    let res = browser().get(app.url("/sign-in")).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let html = res.text().await.unwrap();
    assert!(html.contains(r#"<label for="api_key">"#), "{html}");
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_good_key_opens_a_session_with_a_strict_cookie() {
    let app = spawn_app().await;
    let (_, key) = org_with_key(&app, "Northwind MSP").await;
    let res = post_sign_in(&app, &format!("  {key} ")).await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    assert_eq!(res.headers()[LOCATION], "/");
    assert_console_headers(&res, "sign-in");
    let cookies: Vec<&str> = res.headers().get_all(SET_COOKIE).iter().map(|v| v.to_str().unwrap()).collect();
    assert_eq!(cookies.len(), 1, "{cookies:?}");
    let mut parts = cookies[0].split("; ");
    let (name, value) = parts.next().unwrap().split_once('=').unwrap();
    assert_eq!(name, wbd_api::console::SESSION_COOKIE);
    assert_eq!(value.len(), 43, "256 random bits, base64url: {value}");
    let mut attributes: Vec<&str> = parts.collect();
    attributes.sort_unstable();
    assert_eq!(
        attributes,
        ["HttpOnly", "Max-Age=28800", "Path=/", "SameSite=Strict"],
        "no Secure without TLS"
    );
    // Only the hash of the id is stored.
    assert!(app.store.find_console_session(value, Utc::now()).await.unwrap().is_none());
    let stored =
        app.store.find_console_session(&wbd_api::credentials::hash_secret(value), Utc::now()).await.unwrap();
    assert!(stored.is_some());

    let cookie = format!("{name}={value}");
    let html = page_text(&app, &cookie, "/").await;
    assert!(html.contains("<h1>Tenants</h1>"), "{html}");
    // Signed in, the sign-in page leads to the overview.
    let res = page(&app, &cookie, "/sign-in").await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    assert_eq!(res.headers()[LOCATION], "/");
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_tls_the_cookie_is_secure_and_host_only() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new("WBD Console Test CA");
    let (cert, key_file) = ca.write_leaf(dir.path(), "server");
    let app = spawn_app_with(|s| {
        s.server.tls_cert_file = cert.display().to_string();
        s.server.tls_key_file = key_file.display().to_string();
    })
    .await;
    let trust = reqwest::Certificate::from_pem(ca.pem().as_bytes()).unwrap();
    let client = reqwest::Client::builder()
        .tls_certs_only([trust])
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let app = app.with_client(client.clone());
    let (_, key) = org_with_key(&app, "Northwind MSP").await;
    let res = client.post(app.url("/sign-in")).form_of(&[("api_key", key.as_str())]).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    let cookie = res.headers()[SET_COOKIE].to_str().unwrap().to_owned();
    assert!(cookie.starts_with(&format!("{}=", wbd_api::console::SESSION_COOKIE_TLS)), "{cookie}");
    let mut attributes: Vec<&str> = cookie.split("; ").skip(1).collect();
    attributes.sort_unstable();
    assert_eq!(attributes, ["HttpOnly", "Max-Age=28800", "Path=/", "SameSite=Strict", "Secure"]);
    let session = cookie.split(';').next().unwrap();
    let res = client.get(app.url("/")).header("cookie", session).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_without_the_token_or_from_another_origin_changes_nothing() {
    let app = spawn_app().await;
    let (org, key) = org_with_key(&app, "Northwind MSP").await;
    let (_, finding) = tenant_with_finding(&app, &org).await;
    let cookie = sign_in(&app, &key).await;
    let html = page_text(&app, &cookie, &format!("/findings/{finding}")).await;
    let csrf = csrf_of(&html);
    let path = format!("/findings/{finding}/acknowledge");
    let own_origin = app.base.clone();
    let forged: [(Fields<'_>, Fields<'_>); 5] = [
        (&[], &[]),
        (&[("csrf", "bm90IHRoZSB0b2tlbg")], &[]),
        (&[("csrf", csrf.as_str())], &[("origin", "https://evil.example")]),
        (&[("csrf", csrf.as_str())], &[("origin", "null")]),
        (&[("csrf", csrf.as_str())], &[("sec-fetch-site", "cross-site"), ("origin", own_origin.as_str())]),
    ];
    for (form, headers) in forged {
        let res = post_form(&app, &cookie, &path, form, headers).await;
        assert_eq!(res.status(), StatusCode::FORBIDDEN, "{form:?} {headers:?}");
        assert_console_headers(&res, "refused write");
        assert!(res.text().await.unwrap().contains("Nothing was changed"));
    }
    // Another session's token is no good either.
    let other = sign_in(&app, &key).await;
    let other_csrf = csrf_of(&page_text(&app, &other, "/").await);
    assert_ne!(other_csrf, csrf);
    let res = post_form(&app, &cookie, &path, &[("csrf", other_csrf.as_str())], &[]).await;
    assert_eq!(res.status(), StatusCode::FORBIDDEN);

    let seen = app.finding(&org.token, &finding).await;
    assert_eq!(seen["status"], "open");
    assert_eq!(seen["events"].as_array().unwrap().len(), 1, "{seen:#}");

    // From our own page, with the token: done, as the REST route does it.
    let headers = [("origin", own_origin.as_str()), ("sec-fetch-site", "same-origin")];
    let res = post_form(&app, &cookie, &path, &[("csrf", csrf.as_str()), ("note", "on it")], &headers).await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    assert_eq!(res.headers()[LOCATION], format!("/findings/{finding}?done=acknowledge").as_str());
    let seen = app.finding(&org.token, &finding).await;
    assert_eq!(seen["status"], "acknowledged");
    let event = seen["events"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(event["kind"], "acknowledged");
    assert_eq!(event["note"], "on it");
    assert!(event["actor"].as_str().unwrap().starts_with("api_key:"), "{event}");
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acting_on_a_finding_goes_through_the_rest_calls_and_shows_in_its_history() {
    let app = spawn_app().await;
    let (org, key) = org_with_key(&app, "Northwind MSP").await;
    let (tenant, finding) = tenant_with_finding(&app, &org).await;
    let cookie = sign_in(&app, &key).await;
    let tenant_page = page_text(&app, &cookie, &format!("/tenants/{tenant}")).await;
    assert!(tenant_page.contains(&format!(r#"href="/findings/{finding}""#)), "{tenant_page}");
    let rule = wbd_rules::rule_info("endpoint-reachable", wbd_rules::Lang::En).unwrap();
    assert!(tenant_page.contains(plain(rule.remediation_steps[0])), "fix steps shown");

    let html = page_text(&app, &cookie, &format!("/findings/{finding}")).await;
    let csrf = csrf_of(&html);
    for action in ["acknowledge", "suppress", "retest"] {
        assert!(html.contains(&format!(r#"action="/findings/{finding}/{action}""#)), "{action} form");
    }
    assert!(!html.contains("/unsuppress\""), "an open finding cannot be unsuppressed");
    let act = |action: &'static str, fields: Vec<(&'static str, String)>| {
        let (app, cookie, csrf, finding) = (&app, cookie.clone(), csrf.clone(), finding.clone());
        async move {
            let mut form: Vec<(&str, String)> = vec![("csrf", csrf)];
            form.extend(fields);
            browser()
                .post(app.url(&format!("/findings/{finding}/{action}")))
                .header("cookie", cookie)
                .form_of(&form)
                .send()
                .await
                .unwrap()
        }
    };

    // A suppression needs a reason and a day in the next 90; refused, nothing changes.
    let tomorrow = (Utc::now() + Duration::days(2)).format("%Y-%m-%d").to_string();
    let res = act("suppress", vec![("reason", " ".into()), ("until", tomorrow.clone())]).await;
    assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let res = act("suppress", vec![("reason", "vendor fix".into()), ("until", "2020-01-01".into())]).await;
    assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(app.finding(&org.token, &finding).await["status"], "open");

    let res =
        act("suppress", vec![("reason", "vendor fix on Friday".into()), ("until", tomorrow.clone())]).await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    let seen = app.finding(&org.token, &finding).await;
    assert_eq!(seen["status"], "suppressed");
    assert_eq!(seen["suppression_reason"], "vendor fix on Friday");
    assert!(seen["suppressed_until"].as_str().unwrap().starts_with(&tomorrow), "{seen:#}");

    // An action on a version the person did not see is refused.
    let res = act("unsuppress", vec![("version", "1".into())]).await;
    assert_eq!(res.status(), StatusCode::CONFLICT);
    let res = act("unsuppress", vec![]).await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    assert_eq!(app.finding(&org.token, &finding).await["status"], "open");

    let res = act("retest", vec![]).await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    let res = act("delete", vec![]).await;
    assert_eq!(res.status(), StatusCode::NOT_FOUND);

    let seen = app.finding(&org.token, &finding).await;
    let kinds: Vec<&str> =
        seen["events"].as_array().unwrap().iter().map(|e| e["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["opened", "suppressed", "unsuppressed", "retest_requested"]);
    let html = page_text(&app, &cookie, &format!("/findings/{finding}?done=retest")).await;
    assert!(html.contains("Re-test asked for"), "{html}");
    assert!(html.contains("retest_requested") && html.contains("vendor fix on Friday"), "history shown");

    // The language picker: Polish rule texts, remembered in a cookie; the first visit follows
    // Accept-Language.
    let polish = wbd_rules::rule_info("endpoint-reachable", wbd_rules::Lang::Pl).unwrap();
    let res = browser()
        .get(app.url(&format!("/findings/{finding}")))
        .header("cookie", &cookie)
        .header("accept-language", "uk-UA,uk;q=0.9")
        .send()
        .await
        .unwrap();
    let ukrainian = wbd_rules::rule_info("endpoint-reachable", wbd_rules::Lang::Uk).unwrap();
    assert!(res.text().await.unwrap().contains(plain(ukrainian.problem)), "Accept-Language decides first");
    let res = page(&app, &cookie, &format!("/findings/{finding}?lang=pl")).await;
    let remembered = res.headers()[SET_COOKIE].to_str().unwrap().to_owned();
    assert!(remembered.starts_with("wbd_lang=pl;"), "{remembered}");
    assert!(res.text().await.unwrap().contains(plain(polish.problem)));
    let both = format!("{cookie}; wbd_lang=pl");
    assert!(page_text(&app, &both, &format!("/tenants/{tenant}")).await.contains(plain(polish.problem)));
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_only_session_sees_no_write_controls_and_its_writes_are_refused() {
    let app = spawn_app().await;
    let (org, _) = org_with_key(&app, "Northwind MSP").await;
    let (_, finding) = tenant_with_finding(&app, &org).await;
    let reader = new_key(&app, &org, "read_only").await;
    let cookie = sign_in(&app, &reader).await;
    let html = page_text(&app, &cookie, &format!("/findings/{finding}")).await;
    assert!(html.contains("read_only"));
    assert!(!html.contains(&format!("/findings/{finding}/")), "no action form for a read-only key: {html}");
    let csrf = csrf_of(&html);
    for action in ["acknowledge", "suppress", "unsuppress", "retest"] {
        let until = (Utc::now() + Duration::days(3)).format("%Y-%m-%d").to_string();
        let form = [("csrf", csrf.as_str()), ("reason", "x"), ("until", until.as_str())];
        let res = post_form(&app, &cookie, &format!("/findings/{finding}/{action}"), &form, &[]).await;
        assert_eq!(res.status(), StatusCode::FORBIDDEN, "{action}");
        assert!(res.text().await.unwrap().contains("Your role does not allow this"));
    }
    let seen = app.finding(&org.token, &finding).await;
    assert_eq!((seen["status"].as_str(), seen["events"].as_array().unwrap().len()), (Some("open"), 1));
    // A technician may.
    let technician = new_key(&app, &org, "technician").await;
    let cookie = sign_in(&app, &technician).await;
    let html = page_text(&app, &cookie, &format!("/findings/{finding}")).await;
    let res = post_form(
        &app,
        &cookie,
        &format!("/findings/{finding}/acknowledge"),
        &[("csrf", csrf_of(&html).as_str())],
        &[],
    )
    .await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_organisations_tenant_and_finding_are_not_found() {
    let app = spawn_app().await;
    let (theirs, _) = org_with_key(&app, "Northwind MSP").await;
    let (tenant, finding) = tenant_with_finding(&app, &theirs).await;
    let (_, key) = org_with_key(&app, "Fabrikam MSP").await;
    let cookie = sign_in(&app, &key).await;
    let overview = page_text(&app, &cookie, "/").await;
    assert!(!overview.contains("Contoso"), "another organisation's tenant listed");
    for path in [
        format!("/tenants/{tenant}"),
        format!("/findings/{finding}"),
        format!("/tenants/{}", Uuid::new_v4()),
        "/tenants/not-an-id".to_owned(),
    ] {
        let res = page(&app, &cookie, &path).await;
        assert_eq!(res.status(), StatusCode::NOT_FOUND, "{path}");
        assert_console_headers(&res, "not found");
        assert!(res.headers()["content-type"].to_str().unwrap().starts_with("text/html"));
    }
    let csrf = csrf_of(&overview);
    let res = post_form(
        &app,
        &cookie,
        &format!("/findings/{finding}/acknowledge"),
        &[("csrf", csrf.as_str())],
        &[],
    )
    .await;
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
    assert_eq!(app.finding(&theirs.token, &finding).await["status"], "open");
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_sign_out_the_old_cookie_opens_nothing() {
    let app = spawn_app().await;
    let (_, key) = org_with_key(&app, "Northwind MSP").await;
    let cookie = sign_in(&app, &key).await;
    let csrf = csrf_of(&page_text(&app, &cookie, "/").await);
    // Signing out is a write like any other.
    let res = post_form(&app, &cookie, "/sign-out", &[], &[]).await;
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    assert_eq!(page(&app, &cookie, "/").await.status(), StatusCode::OK);

    let res = post_form(&app, &cookie, "/sign-out", &[("csrf", csrf.as_str())], &[]).await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    assert_eq!(res.headers()[LOCATION], "/sign-in");
    let cleared = res.headers()[SET_COOKIE].to_str().unwrap();
    assert!(cleared.starts_with("wbd_session=;") && cleared.contains("Max-Age=0"), "{cleared}");
    // The browser may keep the old cookie; it opens nothing any more.
    let res = page(&app, &cookie, "/").await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    assert_eq!(res.headers()[LOCATION], "/sign-in");
    let res = post_form(&app, &cookie, "/sign-out", &[("csrf", csrf.as_str())], &[]).await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_session_or_a_revoked_key_is_refused() {
    let app = spawn_app().await;
    let (org, key) = org_with_key(&app, "Northwind MSP").await;
    let api_key =
        app.store.find_api_key_by_hash(&wbd_api::credentials::hash_secret(&key)).await.unwrap().unwrap();
    let scope = OrgScope { org_id: OrgId(org.id) };
    let now = Utc::now();
    let key_id: ApiKeyId = api_key.id;
    let open = |id: &'static str, from: i64, to: i64| {
        let store = app.store.clone();
        let hash = wbd_api::credentials::hash_secret(id);
        async move {
            let (from, to) = (now + Duration::seconds(from), now + Duration::seconds(to));
            assert!(store.create_console_session(scope, key_id, &hash, from, to).await.unwrap());
        }
    };
    open("expired-session-id", -7200, -1).await;
    open("current-session-id", -60, 3600).await;
    let res = page(&app, "wbd_session=expired-session-id", "/").await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    assert_eq!(res.headers()[LOCATION], "/sign-in");
    assert_eq!(page(&app, "wbd_session=current-session-id", "/").await.status(), StatusCode::OK);

    // Revoking the key ends its sessions at once.
    let res = app.post(&org.token, &format!("/v1/api-keys/{}/revoke", api_key.id), &json!({})).await;
    assert!(res.status().is_success(), "{}", res.status());
    assert_eq!(page(&app, "wbd_session=current-session-id", "/").await.status(), StatusCode::SEE_OTHER);
    let res = post_sign_in(&app, &key).await;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_console_page_has_the_strict_csp_and_no_inline_code() {
    let app = spawn_app().await;
    let (org, key) = org_with_key(&app, "Northwind MSP").await;
    let (tenant, finding) = tenant_with_finding(&app, &org).await;
    let cookie = sign_in(&app, &key).await;
    let mut assets = Vec::new();
    for (path, status) in [
        ("/".to_owned(), StatusCode::OK),
        ("/?q=con&status=degraded&page=9".to_owned(), StatusCode::OK),
        (format!("/tenants/{tenant}"), StatusCode::OK),
        (format!("/findings/{finding}"), StatusCode::OK),
        (format!("/findings/{}", Uuid::new_v4()), StatusCode::NOT_FOUND),
        ("/sign-in".to_owned(), StatusCode::SEE_OTHER),
    ] {
        let res = page(&app, &cookie, &path).await;
        assert_eq!(res.status(), status, "{path}");
        assert_console_headers(&res, &path);
        assert_eq!(res.headers()["cache-control"], "no-store", "{path}");
        let html = res.text().await.unwrap();
        assert!(!html.contains("style="), "{path}: an inline style");
        assert!(!html.contains("<style"), "{path}: an inline stylesheet");
        for script in html.split("<script").skip(1) {
            assert!(script.trim_start().starts_with("src=\"/assets/"), "{path}: an inline script");
        }
        for attribute in html.split("src=\"").skip(1) {
            assert!(attribute.starts_with("/assets/"), "{path}: a script from elsewhere");
        }
        for link in html.split("<link ").skip(1) {
            assert!(link.contains("href=\"/assets/"), "{path}: a stylesheet from elsewhere");
        }
        for piece in html.split('"').filter(|p| p.starts_with("/assets/")) {
            assets.push(piece.to_owned());
        }
    }
    assets.sort();
    assets.dedup();
    assert_eq!(assets.len(), 3, "stylesheet, script and icon: {assets:?}");
    for asset in assets {
        let res = browser().get(app.url(&asset)).send().await.unwrap();
        assert_eq!(res.status(), StatusCode::OK, "{asset}");
        assert_eq!(res.headers()["cache-control"], "public, max-age=31536000, immutable");
        assert_console_headers(&res, &asset);
        let etag = res.headers()["etag"].to_str().unwrap().to_owned();
        let again = browser().get(app.url(&asset)).header("if-none-match", &etag).send().await.unwrap();
        assert_eq!(again.status(), StatusCode::NOT_MODIFIED);
    }
    assert_eq!(
        browser().get(app.url("/assets/console.0000.css")).send().await.unwrap().status(),
        StatusCode::NOT_FOUND
    );
    // HEAD is served where GET is, without a body.
    let head = browser().head(app.url("/")).header("cookie", &cookie).send().await.unwrap();
    assert_eq!(head.status(), StatusCode::OK);
    assert!(head.bytes().await.unwrap().is_empty());
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn names_are_escaped() {
    let app = spawn_app().await;
    let (org, key) = org_with_key(&app, "Northwind MSP").await;
    let tenant = app.create_tenant(&org, "<script>alert(1)</script> & \"Co\"").await;
    let cookie = sign_in(&app, &key).await;
    for path in ["/".to_owned(), format!("/tenants/{tenant}"), "/?q=%3Cscript%3E".to_owned()] {
        let html = page_text(&app, &cookie, &path).await;
        assert!(!html.contains("<script>alert(1)"), "{path}: {html}");
        // askama writes numeric character references.
        assert!(
            html.contains("&#60;script&#62;alert(1)&#60;/script&#62; &#38; &#34;Co&#34;"),
            "{path}: {html}"
        );
    }
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sign_in_is_rate_limited_like_the_token_exchange() {
    // The bootstrap's token exchange spends one attempt of three; two guesses the rest.
    let app = spawn_app_with(|s| s.rate_limits.auth_per_address = 3).await;
    org_with_key(&app, "Northwind MSP").await;
    for _ in 0..2 {
        assert_eq!(post_sign_in(&app, "wbdk_guess").await.status(), StatusCode::UNAUTHORIZED);
    }
    let res = post_sign_in(&app, "wbdk_guess").await;
    assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(res.headers().get("retry-after").is_some());
    assert_console_headers(&res, "rate limited");
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_overview_lists_every_tenant_worst_first_with_search_filter_and_pages() {
    let app = spawn_app().await;
    let (org, key) = org_with_key(&app, "Northwind MSP").await;
    let (broken, _) = tenant_with_finding(&app, &org).await;
    for i in 0..60 {
        app.create_tenant(&org, &format!("Quiet {i:02}")).await;
    }
    let cookie = sign_in(&app, &key).await;
    let html = page_text(&app, &cookie, "/").await;
    let first_row = html.find("<tbody>").map(|i| &html[i..]).unwrap();
    let first_link = first_row.split("href=\"/tenants/").nth(1).unwrap();
    assert!(first_link.starts_with(&broken.to_string()), "the broken tenant comes first");
    assert!(html.contains("Page 1 of 2"), "{html}");
    assert!(html.contains(r#"href="/?page=2""#), "{html}");
    let html = page_text(&app, &cookie, "/?page=2").await;
    assert_eq!(html.matches("href=\"/tenants/").count(), 11);
    let html = page_text(&app, &cookie, "/?q=quiet+0").await;
    assert_eq!(html.matches("href=\"/tenants/").count(), 10);
    let view: Value = app.get(&org.token, &format!("/v1/tenants/{broken}")).await.json().await.unwrap();
    let status = view["health"]["status"].as_str().unwrap().to_owned();
    assert!(status == "critical" || status == "degraded", "{view}");
    let html = page_text(&app, &cookie, &format!("/?status={status}")).await;
    assert_eq!(html.matches("href=\"/tenants/").count(), 1, "{html}");
    assert!(
        html.contains(&format!("{} score", view["health"]["score"]))
            || html.contains(&format!(">{}<", view["health"]["score"]))
    );
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admin_adds_a_collector_and_sees_its_enrollment_command_once() {
    let app = spawn_app().await;
    let (org, key) = org_with_key(&app, "Northwind MSP").await;
    let tenant = app.create_tenant(&org, "Contoso").await;
    let cookie = sign_in(&app, &key).await;
    let html = page_text(&app, &cookie, &format!("/tenants/{tenant}")).await;
    let path = format!("/tenants/{tenant}/collectors");
    assert!(html.contains(&format!(r#"action="{path}""#)), "{html}");
    let csrf = csrf_of(&html);
    let res = post_form(&app, &cookie, &path, &[("csrf", csrf.as_str()), ("name", "AADC01")], &[]).await;
    assert_eq!(res.status(), StatusCode::CREATED);
    assert_console_headers(&res, "collector created");
    assert_eq!(res.headers()["cache-control"], "no-store");
    let shown = res.text().await.unwrap();
    let token = shown.split("--token ").nth(1).unwrap().split_whitespace().next().unwrap().to_owned();
    assert!(token.starts_with("wbde_"), "{shown}");
    assert!(
        shown.contains(&format!("wbd-collector enroll --server {} --token {token}", app.base)),
        "{shown}"
    );
    // The token works, once: the collector enrolls with it.
    TestCollector::enroll(&app, &token).await;
    let html = page_text(&app, &cookie, &format!("/tenants/{tenant}")).await;
    assert!(html.contains("AADC01") && !html.contains(&token), "the token is never shown again");

    // Only org admins add collectors.
    let technician = new_key(&app, &org, "technician").await;
    let cookie = sign_in(&app, &technician).await;
    let html = page_text(&app, &cookie, &format!("/tenants/{tenant}")).await;
    assert!(!html.contains(&format!(r#"action="{path}""#)));
    let form = [("csrf", csrf_of(&html)), ("name", "rogue".to_owned())];
    let res = browser().post(app.url(&path)).header("cookie", &cookie).form_of(&form).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    let collectors: Value =
        app.get(&org.token, &format!("/v1/collectors?tenant_id={tenant}")).await.json().await.unwrap();
    assert_eq!(collectors.as_array().map(Vec::len), Some(1), "{collectors}");
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn integrations_are_listed_and_an_admin_sends_a_test() {
    let app = crate::integrations::spawn_quiet_app(|_| {}).await;
    let (org, key) = org_with_key(&app, "Northwind MSP").await;
    let created = app.add_integration(&org.token, &crate::integrations::webhook()).await;
    let id = created["id"].as_str().unwrap().to_owned();
    let cookie = sign_in(&app, &key).await;
    let html = page_text(&app, &cookie, "/integrations").await;
    assert!(html.contains("Our receiver") && html.contains("https://receiver.example.com/hooks"), "{html}");
    let path = format!("/integrations/{id}/test");
    assert!(html.contains(&format!(r#"action="{path}""#)));
    let res = post_form(&app, &cookie, &path, &[("csrf", csrf_of(&html).as_str())], &[]).await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    let location = res.headers()[LOCATION].to_str().unwrap().to_owned();
    assert_eq!(location, format!("/integrations/{id}?done=tested"));
    let html = page_text(&app, &cookie, &location).await;
    assert!(html.contains("A test event is on its way"), "{html}");
    assert!(html.contains("integration.test"), "the delivery log shows it: {html}");
    let deliveries: Value =
        app.get(&org.token, &format!("/v1/integrations/{id}/deliveries")).await.json().await.unwrap();
    assert_eq!(deliveries["items"].as_array().map(Vec::len), Some(1), "{deliveries}");

    // A read-only key sees the list, no button, and its test is refused.
    let reader = new_key(&app, &org, "read_only").await;
    let cookie = sign_in(&app, &reader).await;
    let html = page_text(&app, &cookie, "/integrations").await;
    assert!(html.contains("Our receiver") && !html.contains(&format!(r#"action="{path}""#)));
    let res = post_form(&app, &cookie, &path, &[("csrf", csrf_of(&html).as_str())], &[]).await;
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    let deliveries: Value =
        app.get(&org.token, &format!("/v1/integrations/{id}/deliveries")).await.json().await.unwrap();
    assert_eq!(deliveries["items"].as_array().map(Vec::len), Some(1));
    app.shutdown().await;
}

// ---- integrations: add, change, the delivery log, replays ---------------------------------------

/// The audit log's actions, newest first.
async fn audit_actions(app: &TestApp, org: &Org) -> Vec<(String, String)> {
    let log: Value = app.get(&org.token, "/v1/audit-log").await.json().await.unwrap();
    log["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["action"].as_str().unwrap().to_owned(), e["actor"].as_str().unwrap().to_owned()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admin_adds_an_integration_and_a_refused_form_shows_each_problem_at_its_field() {
    use crate::integrations::JIRA_TOKEN;
    let app = crate::integrations::spawn_quiet_app(|_| {}).await;
    let (org, key) = org_with_key(&app, "Northwind MSP").await;
    let cookie = sign_in(&app, &key).await;
    let html = page_text(&app, &cookie, "/integrations").await;
    assert!(html.contains(r#"href="/integrations/new""#), "{html}");
    let html = page_text(&app, &cookie, "/integrations/new").await;
    assert!(
        html.contains(r#"<select id="integration-kind""#) && !html.contains("integration-name"),
        "{html}"
    );
    let html = page_text(&app, &cookie, "/integrations/new?kind=jira").await;
    assert!(html.contains(r#"name="credential.api_token" type="password" value="""#), "{html}");
    let csrf = csrf_of(&html);

    // Everything missing: each problem next to its field, nothing saved.
    let form =
        [("csrf", csrf.as_str()), ("kind", "jira"), ("name", ""), ("url", ""), ("routing", "per_tenant")];
    let res = post_form(&app, &cookie, "/integrations", &form, &[]).await;
    assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert_console_headers(&res, "refused form");
    let html = res.text().await.unwrap();
    assert!(html.contains(r#"role="alert""#), "{html}");
    for id in ["integration-name-problem", "integration-url-problem", "credential-api_token-problem"] {
        assert!(html.contains(&format!(r#"id="{id}""#)), "{id}: {html}");
    }
    assert!(html.contains(r#"aria-describedby="integration-name-problem""#), "{html}");
    // Settings that are not JSON are this form's own problem.
    let form = [("csrf", csrf.as_str()), ("kind", "jira"), ("name", "Desk"), ("config", "{ board")];
    let res = post_form(&app, &cookie, "/integrations", &form, &[]).await;
    assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let html = res.text().await.unwrap();
    assert!(html.contains(r#"id="integration-config-problem">is not a JSON object"#), "{html}");
    // A secret typed into a refused form is not sent back.
    let form =
        [("csrf", csrf.as_str()), ("kind", "jira"), ("name", ""), ("credential.api_token", JIRA_TOKEN)];
    let res = post_form(&app, &cookie, "/integrations", &form, &[]).await;
    assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert!(!res.text().await.unwrap().contains(JIRA_TOKEN));
    // Nor a secret URL.
    let form =
        [("csrf", csrf.as_str()), ("kind", "slack"), ("name", ""), ("url", crate::integrations::SLACK_URL)];
    let res = post_form(&app, &cookie, "/integrations", &form, &[]).await;
    assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert!(!res.text().await.unwrap().contains("slacksecretpath"));
    assert!(app.integrations(&org.token).await.is_empty(), "nothing was saved");

    let config = r#"{ "email": "bot@contoso.example", "project_key": "WBD" }"#;
    let form = [
        ("csrf", csrf.as_str()),
        ("kind", "jira"),
        ("name", "Service desk"),
        ("url", "https://contoso.atlassian.net"),
        ("config", config),
        ("credential.api_token", JIRA_TOKEN),
        ("routing", "per_tenant"),
        ("enabled", "on"),
    ];
    let res = post_form(&app, &cookie, "/integrations", &form, &[]).await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER, "{}", res.text().await.unwrap_or_default());
    let location = res.headers()[LOCATION].to_str().unwrap().to_owned();
    let saved = app.integrations(&org.token).await;
    assert_eq!(saved.len(), 1);
    let id = saved[0]["id"].as_str().unwrap();
    assert_eq!(location, format!("/integrations/{id}?done=created"));
    assert_eq!(saved[0]["credentials_set"], json!(["api_token"]));
    assert_eq!(saved[0]["config"]["project_key"], "WBD");
    let html = page_text(&app, &cookie, &location).await;
    assert!(html.contains("The integration was added.") && !html.contains(JIRA_TOKEN), "{html}");
    // The same audit entry as the REST route's, naming the key.
    let actions = audit_actions(&app, &org).await;
    assert_eq!(actions[0].0, "integration.create");
    assert!(actions[0].1.starts_with("api_key:"), "{actions:?}");

    // A webhook's signing secret is shown once.
    let form = [
        ("csrf", csrf.as_str()),
        ("kind", "webhook"),
        ("name", "Our receiver"),
        ("url", "https://receiver.example.com/hooks"),
        ("enabled", "on"),
    ];
    let res = post_form(&app, &cookie, "/integrations", &form, &[]).await;
    assert_eq!(res.status(), StatusCode::CREATED);
    assert_eq!(res.headers()["cache-control"], "no-store");
    assert!(res.text().await.unwrap().contains("whsec_"));
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admin_changes_an_integration_and_an_empty_secret_keeps_the_stored_one() {
    use crate::integrations::{JIRA_TOKEN, jira};
    let app = crate::integrations::spawn_quiet_app(|_| {}).await;
    let (org, key) = org_with_key(&app, "Northwind MSP").await;
    let created = app.add_integration(&org.token, &jira()).await;
    let id = created["id"].as_str().unwrap().to_owned();
    let path = format!("/integrations/{id}");
    let cookie = sign_in(&app, &key).await;
    let html = page_text(&app, &cookie, &path).await;
    assert!(html.contains(&format!(r#"action="{path}""#)), "{html}");
    assert!(html.contains(r#"value="Service desk""#) && !html.contains(JIRA_TOKEN), "{html}");
    assert!(html.contains(r#"name="credential.api_token" type="password" value="""#), "{html}");
    let csrf = csrf_of(&html);
    let version = created["version"].to_string();
    let config = r#"{ "email": "bot@contoso.example", "project_key": "OPS" }"#;
    let change = |name: &'static str, url: &'static str| {
        vec![
            ("csrf", csrf.clone()),
            ("version", version.clone()),
            ("name", name.to_owned()),
            ("url", url.to_owned()),
            ("config", config.to_owned()),
            ("credential.api_token", String::new()),
            ("routing", "per_tenant".to_owned()),
            ("enabled", "on".to_owned()),
        ]
    };

    // A refused change: the problem at its field, nothing changed.
    let res = browser()
        .post(app.url(&path))
        .header("cookie", &cookie)
        .form_of(&change("Service desk", "ftp://contoso.example"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let html = res.text().await.unwrap();
    assert!(html.contains(r#"id="integration-url-problem""#), "{html}");
    assert_eq!(app.integration(&org.token, &id).await["version"], created["version"]);

    let res = browser()
        .post(app.url(&path))
        .header("cookie", &cookie)
        .form_of(&change("Service desk (ops)", "https://contoso.atlassian.net"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::SEE_OTHER, "{}", res.text().await.unwrap_or_default());
    assert_eq!(res.headers()[LOCATION].to_str().unwrap(), format!("{path}?done=saved"));
    let now = app.integration(&org.token, &id).await;
    assert_eq!(now["name"], "Service desk (ops)");
    assert_eq!(now["config"]["project_key"], "OPS");
    assert_eq!(now["credentials_set"], json!(["api_token"]), "the empty field kept the stored token");
    assert_eq!(audit_actions(&app, &org).await[0].0, "integration.update");

    // Sent from a version that is no longer current: refused, and said so.
    let res = browser()
        .post(app.url(&path))
        .header("cookie", &cookie)
        .form_of(&change("Old", ""))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert!(res.text().await.unwrap().contains("changed meanwhile"));
    assert_eq!(app.integration(&org.token, &id).await["name"], "Service desk (ops)");
    app.shutdown().await;
}

/// The integration and its failed delivery as they were.
async fn assert_untouched(app: &TestApp, token: &str, id: &str, delivery: &str, version: &Value) {
    assert_eq!(app.integrations(token).await.len(), 1);
    assert_eq!(&app.integration(token, id).await["version"], version);
    assert_eq!(app.delivery(token, delivery).await["status"], "failed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn integration_writes_need_the_token_the_role_and_the_organisation() {
    let app = crate::integrations::spawn_quiet_app(|_| {}).await;
    let (org, key) = org_with_key(&app, "Northwind MSP").await;
    let created = app.add_integration(&org.token, &crate::integrations::webhook()).await;
    let id = created["id"].as_str().unwrap().to_owned();
    let delivery = app.test_integration(&org.token, &id).await["delivery_id"].as_str().unwrap().to_owned();
    app.fail_due_deliveries().await;
    let since = "2020-01-01T00:00";
    let writes = |csrf: String| {
        vec![
            (
                "/integrations".to_owned(),
                vec![("csrf", csrf.clone()), ("kind", "webhook".into()), ("name", "X".into())],
            ),
            (format!("/integrations/{id}"), vec![("csrf", csrf.clone()), ("name", "Mine now".into())]),
            (format!("/integrations/{id}/replay"), vec![("csrf", csrf.clone()), ("since", since.into())]),
            (format!("/deliveries/{delivery}/replay"), vec![("csrf", csrf)]),
        ]
    };
    let unchanged = || assert_untouched(&app, &org.token, &id, &delivery, &created["version"]);
    // Without the token, or from another origin: refused.
    let cookie = sign_in(&app, &key).await;
    let csrf = csrf_of(&page_text(&app, &cookie, "/integrations").await);
    for (path, form) in writes("forged".into()) {
        let res =
            browser().post(app.url(&path)).header("cookie", &cookie).form_of(&form).send().await.unwrap();
        assert_eq!(res.status(), StatusCode::FORBIDDEN, "{path}");
    }
    for (path, form) in writes(csrf.clone()) {
        let res = browser()
            .post(app.url(&path))
            .header("cookie", &cookie)
            .header("origin", "https://evil.example")
            .header("sec-fetch-site", "cross-site")
            .form_of(&form)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::FORBIDDEN, "{path}");
    }
    unchanged().await;

    // A read-only person sees the integration and its log, no form, and is refused.
    let reader = new_key(&app, &org, "read_only").await;
    let cookie = sign_in(&app, &reader).await;
    let html = page_text(&app, &cookie, &format!("/integrations/{id}")).await;
    assert!(html.contains("Delivery log") && html.contains(&format!("/deliveries/{delivery}")), "{html}");
    assert!(!html.contains(r#"method="post" action="/integrations/"#) && !html.contains("/replay"), "{html}");
    assert!(!page_text(&app, &cookie, "/integrations").await.contains("/integrations/new"));
    assert_eq!(page(&app, &cookie, "/integrations/new?kind=jira").await.status(), StatusCode::FORBIDDEN);
    let csrf = csrf_of(&html);
    for (path, form) in writes(csrf) {
        let res =
            browser().post(app.url(&path)).header("cookie", &cookie).form_of(&form).send().await.unwrap();
        assert_eq!(res.status(), StatusCode::FORBIDDEN, "{path}");
    }
    unchanged().await;

    // Another organisation's admin finds nothing.
    let (_, other_key) = org_with_key(&app, "Other MSP").await;
    let cookie = sign_in(&app, &other_key).await;
    assert_eq!(page(&app, &cookie, &format!("/integrations/{id}")).await.status(), StatusCode::NOT_FOUND);
    assert_eq!(page(&app, &cookie, &format!("/deliveries/{delivery}")).await.status(), StatusCode::NOT_FOUND);
    let csrf = csrf_of(&page_text(&app, &cookie, "/integrations").await);
    for (path, form) in writes(csrf).into_iter().skip(1) {
        let res =
            browser().post(app.url(&path)).header("cookie", &cookie).form_of(&form).send().await.unwrap();
        assert_eq!(res.status(), StatusCode::NOT_FOUND, "{path}");
    }
    unchanged().await;
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_delivery_log_shows_every_attempt_and_failed_deliveries_are_sent_again() {
    let app = crate::integrations::spawn_quiet_app(|_| {}).await;
    let (org, key) = org_with_key(&app, "Northwind MSP").await;
    let created = app.add_integration(&org.token, &crate::integrations::webhook()).await;
    let id = created["id"].as_str().unwrap().to_owned();
    let delivery = app.test_integration(&org.token, &id).await["delivery_id"].as_str().unwrap().to_owned();
    assert_eq!(app.fail_due_deliveries().await, 1);
    let cookie = sign_in(&app, &key).await;

    let html = page_text(&app, &cookie, &format!("/integrations/{id}?status=failed")).await;
    assert!(html.contains(&format!(r#"href="/deliveries/{delivery}""#)), "{html}");
    assert!(html.contains("HTTP 503"), "{html}");
    let html = page_text(&app, &cookie, &format!("/integrations/{id}?status=succeeded")).await;
    assert!(!html.contains(&format!("/deliveries/{delivery}")), "{html}");
    let html = page_text(&app, &cookie, &format!("/deliveries/{delivery}")).await;
    assert!(html.contains("Every attempt (1)") && html.contains("down for maintenance"), "{html}");
    assert!(html.contains("integration.test"), "{html}");

    // One delivery again.
    let path = format!("/deliveries/{delivery}/replay");
    let res = post_form(&app, &cookie, &path, &[("csrf", csrf_of(&html).as_str())], &[]).await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    assert_eq!(app.delivery(&org.token, &delivery).await["status"], "pending");
    assert_eq!(audit_actions(&app, &org).await[0].0, "delivery.replay");
    // Pending already: said so, not done twice.
    let res = post_form(&app, &cookie, &path, &[("csrf", csrf_of(&html).as_str())], &[]).await;
    assert_eq!(res.status(), StatusCode::CONFLICT);

    // Every failed one since a moment.
    assert_eq!(app.fail_due_deliveries().await, 1);
    let html = page_text(&app, &cookie, &format!("/deliveries/{delivery}")).await;
    assert!(html.contains("Every attempt (2)"), "{html}");
    let path = format!("/integrations/{id}/replay");
    let csrf = csrf_of(&html);
    let res = post_form(&app, &cookie, &path, &[("csrf", csrf.as_str()), ("since", "yesterday")], &[]).await;
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    assert_eq!(app.delivery(&org.token, &delivery).await["status"], "failed");
    let since = (Utc::now() - Duration::hours(1)).format("%Y-%m-%dT%H:%M").to_string();
    let res =
        post_form(&app, &cookie, &path, &[("csrf", csrf.as_str()), ("since", since.as_str())], &[]).await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    let location = res.headers()[LOCATION].to_str().unwrap().to_owned();
    assert_eq!(location, format!("/integrations/{id}?replayed=1"));
    assert!(page_text(&app, &cookie, &location).await.contains("1 delivery is queued to be sent again."));
    assert_eq!(app.delivery(&org.token, &delivery).await["status"], "pending");
    app.shutdown().await;
}

// ---- custom rules: the editor, the compiler's errors, a dry run ---------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rule_editor_shows_the_compiler_s_error_at_its_line_and_column_and_a_dry_run_stores_nothing() {
    let app = spawn_app().await;
    let (org, key) = org_with_key(&app, "Northwind MSP").await;
    let (_, site) = app.tenant_with_collector(&org).await;
    let res = site.push(&app, &batch(vec![healthy_endpoint(HOST, 8443)])).await;
    assert_eq!(res.status(), StatusCode::ACCEPTED);
    app.create_tenant(&org, "Fabrikam").await;
    let cookie = sign_in(&app, &key).await;
    let html = page_text(&app, &cookie, "/custom-rules").await;
    assert!(html.contains(r#"action="/custom-rules""#) && html.contains(r#"value="save""#), "{html}");
    let csrf = csrf_of(&html);
    let rule = |op: &'static str, condition: &'static str| {
        vec![
            ("csrf", csrf.clone()),
            ("op", op.to_owned()),
            ("id", "non-standard-port".to_owned()),
            ("title", "Non-standard port".to_owned()),
            ("severity", "medium".to_owned()),
            ("condition", condition.to_owned()),
            ("subject_expr", String::new()),
        ]
    };
    let send = |form: Vec<(&'static str, String)>| {
        browser().post(app.url("/custom-rules")).header("cookie", &cookie).form_of(&form).send()
    };

    // A typo on the second line: refused at line 2 and its column, next to the condition.
    let typo = "facts.endpoint.exists(e,\n  e.prot != 443)";
    for op in ["save", "dry-run"] {
        let res = send(rule(op, typo)).await.unwrap();
        assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY, "{op}");
        let html = res.text().await.unwrap();
        assert!(html.contains(r#"aria-describedby="rule-condition-problem""#), "{html}");
        assert!(html.contains("<code>condition</code>, line 2, column"), "{html}");
        assert!(html.contains("prot"), "{html}");
        assert!(html.contains("e.prot != 443)</textarea>"), "the editor keeps what was typed: {html}");
    }
    let stored: Value = app.get(&org.token, "/v1/custom-rules").await.json().await.unwrap();
    assert_eq!(stored, json!([]));

    // A dry run on every tenant: the one with the odd port fails, the other cannot be decided
    // or passes; nothing is stored.
    let res = send(rule("dry-run", "facts.endpoint.exists(e, e.port != 443)")).await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let html = res.text().await.unwrap();
    assert!(html.contains("Dry run: 1 failing"), "{html}");
    assert!(html.contains("Fabrikam"), "{html}");
    let stored: Value = app.get(&org.token, "/v1/custom-rules").await.json().await.unwrap();
    assert_eq!(stored, json!([]));
    assert!(app.findings(&org.token, "rule_id=non-standard-port").await.is_empty());

    // Saved: listed, in the audit log as the REST route writes it.
    let res = send(rule("save", "facts.endpoint.exists(e, e.port != 443)")).await.unwrap();
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    let stored: Value = app.get(&org.token, "/v1/custom-rules").await.json().await.unwrap();
    assert_eq!(stored[0]["id"], "non-standard-port");
    let html = page_text(&app, &cookie, res.headers()[LOCATION].to_str().unwrap()).await;
    assert!(html.contains("was saved") && html.contains(r#"value="Non-standard port""#), "{html}");
    assert_eq!(audit_actions(&app, &org).await[0].0, "custom_rule.put");

    // Without the token: refused. A read-only person may dry-run but not save.
    let mut forged = rule("save", "facts.endpoint.exists(e, e.port != 80)");
    forged[0].1 = "forged".to_owned();
    assert_eq!(send(forged).await.unwrap().status(), StatusCode::FORBIDDEN);
    let reader = new_key(&app, &org, "read_only").await;
    let reader_cookie = sign_in(&app, &reader).await;
    let html = page_text(&app, &reader_cookie, "/custom-rules").await;
    assert!(!html.contains(r#"value="save""#) && html.contains(r#"value="dry-run""#), "{html}");
    let reader_csrf = csrf_of(&html);
    let mut form = rule("save", "facts.endpoint.exists(e, e.port != 80)");
    form[0].1 = reader_csrf.clone();
    let res = browser()
        .post(app.url("/custom-rules"))
        .header("cookie", &reader_cookie)
        .form_of(&form)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    form[1].1 = "dry-run".to_owned();
    let res = browser()
        .post(app.url("/custom-rules"))
        .header("cookie", &reader_cookie)
        .form_of(&form)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let stored: Value = app.get(&org.token, "/v1/custom-rules").await.json().await.unwrap();
    assert_eq!(stored[0]["condition"], "facts.endpoint.exists(e, e.port != 443)", "unchanged");

    // Another organisation sees none of it.
    let (_, other_key) = org_with_key(&app, "Other MSP").await;
    let other = sign_in(&app, &other_key).await;
    assert!(!page_text(&app, &other, "/custom-rules").await.contains("?edit=non-standard-port"));
    assert_eq!(
        page(&app, &other, "/custom-rules?edit=non-standard-port").await.status(),
        StatusCode::NOT_FOUND
    );
    app.shutdown().await;
}

// ---- rule settings on the tenant page ------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admin_changes_a_rule_for_one_tenant_and_a_refused_value_changes_nothing() {
    let app = spawn_app().await;
    let (org, key) = org_with_key(&app, "Northwind MSP").await;
    let tenant = app.create_tenant(&org, "Contoso").await;
    let cookie = sign_in(&app, &key).await;
    let html = page_text(&app, &cookie, &format!("/tenants/{tenant}")).await;
    let path = format!("/tenants/{tenant}/rules/idle-connection-survives");
    assert!(html.contains(&format!(r#"action="{path}""#)), "{html}");
    assert!(html.contains(r#"name="param.min_idle_secs""#), "{html}");
    let csrf = csrf_of(&html);
    let settings = || async {
        let v: Value =
            app.get(&org.token, &format!("/v1/rule-settings?tenant_id={tenant}")).await.json().await.unwrap();
        v
    };

    // Out of range: refused next to the rule's form, nothing stored.
    let form = [
        ("csrf", csrf.as_str()),
        ("op", "save"),
        ("state", "inherit"),
        ("severity", ""),
        ("param.min_idle_secs", "5"),
    ];
    let res = post_form(&app, &cookie, &path, &form, &[]).await;
    assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let html = res.text().await.unwrap();
    assert!(html.contains(r#"id="rule-idle-connection-survives-problems""#), "{html}");
    assert!(
        html.contains(r#"name="param.min_idle_secs" type="text" value="5""#),
        "the value typed stays: {html}"
    );
    assert_eq!(settings().await, json!([]));

    // Off, with another severity: stored for this tenant only, audited like the REST route.
    let endpoint = format!("/tenants/{tenant}/rules/endpoint-reachable");
    let form = [("csrf", csrf.as_str()), ("op", "save"), ("state", "off"), ("severity", "low")];
    let res = post_form(&app, &cookie, &endpoint, &form, &[]).await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    let stored = settings().await;
    assert_eq!(stored[0]["tenant_id"], json!(tenant));
    assert_eq!(stored[0]["settings"], json!({ "disabled": true, "severity": "low" }));
    assert_eq!(audit_actions(&app, &org).await[0].0, "rule_setting.put");
    let html = page_text(&app, &cookie, res.headers()[LOCATION].to_str().unwrap()).await;
    assert!(html.contains("were saved for this tenant") && html.contains("off, severity low"), "{html}");

    // Without the token, from a read-only session, or for another organisation: refused.
    let forged = [("csrf", "forged"), ("op", "reset")];
    assert_eq!(post_form(&app, &cookie, &endpoint, &forged, &[]).await.status(), StatusCode::FORBIDDEN);
    let reader = new_key(&app, &org, "read_only").await;
    let reader_cookie = sign_in(&app, &reader).await;
    let html = page_text(&app, &reader_cookie, &format!("/tenants/{tenant}")).await;
    assert!(html.contains("Rule settings") && !html.contains(&format!(r#"action="{endpoint}""#)), "{html}");
    let reader_csrf = csrf_of(&html);
    for op in ["save", "reset"] {
        let form = [("csrf", reader_csrf.as_str()), ("op", op), ("state", "on")];
        assert_eq!(
            post_form(&app, &reader_cookie, &endpoint, &form, &[]).await.status(),
            StatusCode::FORBIDDEN
        );
    }
    let (_, other_key) = org_with_key(&app, "Other MSP").await;
    let other = sign_in(&app, &other_key).await;
    let other_csrf = csrf_of(&page_text(&app, &other, "/").await);
    let form = [("csrf", other_csrf.as_str()), ("op", "reset")];
    assert_eq!(post_form(&app, &other, &endpoint, &form, &[]).await.status(), StatusCode::NOT_FOUND);
    assert_eq!(settings().await[0]["settings"], json!({ "disabled": true, "severity": "low" }));

    // Removed: the organisation's settings apply again.
    let form = [("csrf", csrf.as_str()), ("op", "reset")];
    let res = post_form(&app, &cookie, &endpoint, &form, &[]).await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    assert_eq!(settings().await, json!([]));
    assert_eq!(audit_actions(&app, &org).await[0].0, "rule_setting.delete");
    app.shutdown().await;
}

// ---- the tenant's Microsoft Graph connection ----------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_graph_app_the_tenant_page_says_so_and_offers_no_button() {
    let app = spawn_app().await;
    let (org, key) = org_with_key(&app, "Northwind MSP").await;
    let tenant = app.create_tenant(&org, "Contoso").await;
    let cookie = sign_in(&app, &key).await;
    let html = page_text(&app, &cookie, &format!("/tenants/{tenant}")).await;
    assert!(html.contains("This server has no Microsoft Graph app configured"), "{html}");
    assert!(!html.contains("/graph/consent"), "{html}");
    // Asked anyway: back to the page, which says why.
    let form = [("csrf", csrf_of(&html))];
    let res = post_form(
        &app,
        &cookie,
        &format!("/tenants/{tenant}/graph/consent"),
        &[("csrf", form[0].1.as_str())],
        &[],
    )
    .await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    app.shutdown().await;
}

/// A tenant read with its own app says so, with the app (never its credential) and no consent
/// button, even on a server without an app of its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_tenant_page_shows_that_the_tenant_reads_with_its_own_app() {
    let app = spawn_app_with(|s| s.graph.reader_enabled = false).await;
    let (org, key) = org_with_key(&app, "Northwind MSP").await;
    let tenant = app.create_tenant(&org, "Contoso").await;
    let body = json!({
        "client_id": "0a1b2c3d-0000-4000-8000-0000000000b1",
        "entra_tenant_id": "contoso.com",
        "client_secret": "own-secret-value",
        "client_secret_expires_at": chrono::Utc::now() + chrono::Duration::days(20),
    });
    let res = app.put(&org.token, &format!("/v1/tenants/{tenant}/graph/app"), &body).await;
    assert_eq!(res.status(), StatusCode::OK);
    let cookie = sign_in(&app, &key).await;
    let html = page_text(&app, &cookie, &format!("/tenants/{tenant}")).await;
    assert!(html.contains("own app: this server reads the tenant"), "{html}");
    assert!(
        html.contains("0a1b2c3d-0000-4000-8000-0000000000b1") && html.contains("client secret"),
        "{html}"
    );
    assert!(!html.contains("own-secret-value"), "{html}");
    assert!(!html.contains("/graph/consent"), "{html}");
    assert!(html.contains("/graph/disconnect"), "{html}");
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admin_gets_the_consent_link_sees_the_connection_and_disconnects() {
    use crate::graph::{ENTRA, redirect, spawn_with_graph};
    let app = spawn_with_graph().await;
    let (org, key) = org_with_key(&app, "Northwind MSP").await;
    let tenant = app.create_tenant(&org, "Contoso").await;
    let cookie = sign_in(&app, &key).await;
    let page_path = format!("/tenants/{tenant}");
    let consent = format!("/tenants/{tenant}/graph/consent");
    let disconnect = format!("/tenants/{tenant}/graph/disconnect");
    let html = page_text(&app, &cookie, &page_path).await;
    assert!(html.contains("Not connected") && html.contains(&format!(r#"action="{consent}""#)), "{html}");
    assert!(!html.contains(&format!(r#"action="{disconnect}""#)), "nothing to disconnect yet");
    let csrf = csrf_of(&html);
    let state_of = |graph: Value| graph["state"].as_str().unwrap().to_owned();
    let graph = || async {
        let v: Value =
            app.get(&org.token, &format!("/v1/tenants/{tenant}/graph")).await.json().await.unwrap();
        v
    };

    // Refused without the token, for a read-only person, and for another organisation.
    assert_eq!(
        post_form(&app, &cookie, &consent, &[("csrf", "forged")], &[]).await.status(),
        StatusCode::FORBIDDEN
    );
    let reader = new_key(&app, &org, "read_only").await;
    let reader_cookie = sign_in(&app, &reader).await;
    let html = page_text(&app, &reader_cookie, &page_path).await;
    assert!(html.contains("Not connected") && !html.contains(&format!(r#"action="{consent}""#)), "{html}");
    let reader_csrf = csrf_of(&html);
    for path in [&consent, &disconnect] {
        let res = post_form(&app, &reader_cookie, path, &[("csrf", reader_csrf.as_str())], &[]).await;
        assert_eq!(res.status(), StatusCode::FORBIDDEN, "{path}");
    }
    let (_, other_key) = org_with_key(&app, "Other MSP").await;
    let other = sign_in(&app, &other_key).await;
    let other_csrf = csrf_of(&page_text(&app, &other, "/").await);
    for path in [&consent, &disconnect] {
        let res = post_form(&app, &other, path, &[("csrf", other_csrf.as_str())], &[]).await;
        assert_eq!(res.status(), StatusCode::NOT_FOUND, "{path}");
    }
    assert_eq!(state_of(graph().await), "not_connected");

    // The link, on a page of its own.
    let res = post_form(&app, &cookie, &consent, &[("csrf", csrf.as_str())], &[]).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.headers()["cache-control"], "no-store");
    let html = res.text().await.unwrap();
    let link = html
        .split(r#"class="consent-link" href=""#)
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap()
        .replace("&#38;", "&");
    let url = reqwest::Url::parse(&link).unwrap();
    assert!(url.as_str().contains("adminconsent"), "{url}");
    assert!(url.query_pairs().any(|(k, _)| k == "state"), "{link}");
    assert_eq!(state_of(graph().await), "consent_pending");
    let html = page_text(&app, &cookie, &page_path).await;
    assert!(html.contains("Waiting for the customer") && html.contains("Make a new consent link"), "{html}");

    // The customer's administrator consents: connected.
    let signed = url.query_pairs().find(|(k, _)| k == "state").map(|(_, v)| v.into_owned()).unwrap();
    let res = redirect(&app, &[("state", &signed), ("tenant", ENTRA), ("admin_consent", "True")]).await;
    assert_eq!(res.status(), StatusCode::OK);
    let html = page_text(&app, &cookie, &page_path).await;
    assert!(html.contains("Connected: this server reads") && html.contains(ENTRA), "{html}");
    assert!(
        !html.contains(&format!(r#"action="{consent}""#))
            && html.contains(&format!(r#"action="{disconnect}""#))
    );

    let res = post_form(&app, &cookie, &disconnect, &[("csrf", csrf.as_str())], &[]).await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    assert_eq!(state_of(graph().await), "not_connected");
    assert!(
        page_text(&app, &cookie, res.headers()[LOCATION].to_str().unwrap())
            .await
            .contains("The tenant is disconnected")
    );
    let actions = audit_actions(&app, &org).await;
    assert!(actions[0].0.starts_with("graph"), "{actions:?}");
    app.shutdown().await;
}

// ---- the layout in English, Polish and Ukrainian -------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_layout_speaks_the_language_picked_on_every_page() {
    let app = spawn_app().await;
    let (_, key) = org_with_key(&app, "Northwind MSP").await;
    let res =
        browser().get(app.url("/sign-in")).header("accept-language", "uk-UA,uk;q=0.9").send().await.unwrap();
    let html = res.text().await.unwrap();
    assert!(
        html.contains("Перейти до вмісту") && html.contains(r#"<footer class="site" lang="uk">"#),
        "{html}"
    );
    let cookie = sign_in(&app, &key).await;
    let polish = browser()
        .get(app.url("/"))
        .header("cookie", &cookie)
        .header("accept-language", "pl-PL,pl;q=0.9,en;q=0.5")
        .send()
        .await
        .unwrap();
    let html = polish.text().await.unwrap();
    assert!(
        html.contains(r#"<header class="site" lang="pl">"#)
            && html.contains("Wyloguj")
            && html.contains("Przegląd"),
        "{html}"
    );
    // Picked on a page that shows no rule text: remembered, and every page follows.
    let res = page(&app, &cookie, "/integrations?lang=uk").await;
    assert_eq!(res.status(), StatusCode::OK);
    let remembered = res.headers()[SET_COOKIE].to_str().unwrap().split(';').next().unwrap().to_owned();
    assert_eq!(remembered, "wbd_lang=uk");
    let html = res.text().await.unwrap();
    assert!(html.contains("Вийти") && html.contains("Інтеграції"), "{html}");
    let both = format!("{cookie}; {remembered}");
    for path in ["/", "/custom-rules", "/integrations"] {
        let html = page_text(&app, &both, path).await;
        assert!(
            html.contains("Вийти") && html.contains(r#"<option value="uk" lang="uk" selected>"#),
            "{path}: {html}"
        );
    }
    let html = page_text(&app, &cookie, "/custom-rules?lang=en").await;
    assert!(html.contains("Sign out") && html.contains("Skip to content"), "{html}");
    app.shutdown().await;
}
