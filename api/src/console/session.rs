//! Signing in to the console, the session that follows, and the checks on every write.
//!
//! - **Sign-in** takes an API key and checks it exactly as `POST /v1/auth/token` does (the same
//!   hash lookup, a revoked key refused, the same rate limits per client address and per
//!   presented key, counted before the lookup).
//! - **The session** is a random 256-bit id in a cookie (`HttpOnly`, `SameSite=Strict`,
//!   `Path=/`; `Secure` and the `__Host-` name under TLS). The server keeps only its SHA-256,
//!   with the API key it was opened with and when it ends (`auth.session_ttl_secs`). We chose a
//!   stored session over a signed or sealed cookie because a cookie that is its own proof cannot
//!   be ended: with a row, sign-out deletes it and the old cookie opens nothing any more, in
//!   every API process, and revoking the key ends its sessions at once (the key is read with the
//!   session on every request, so the role is always the key's current one). A copy of the
//!   database holds no usable session id.
//! - **Every write** (a POST) must come from our own pages: `Sec-Fetch-Site`, when the browser
//!   sends it, must be `same-origin`, and `Origin`, when sent, must be this server; and the form
//!   must carry the session's synchronizer token, an HMAC of the session id under a server
//!   secret shared through the database (so any API process checks it, and it dies with the
//!   session). The cookie's `SameSite=Strict` is a third line.

use std::future::Future;
use std::pin::Pin;

use actix_web::http::header::{self, HeaderValue};
use actix_web::{FromRequest, HttpRequest, HttpResponse, dev::Payload, web};
use askama::Template;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{Duration, Utc};
use hmac::{Hmac, Mac as _};
use rand::RngCore as _;
use serde::Deserialize;
use sha2::Sha256;
use wbd_store::OrgScope;

use super::error::ConsoleError;
use super::page::{Chrome, SignedIn, builder, render, see_other};
use crate::auth::Principal;
use crate::credentials::hash_secret;
use crate::rate_limit::Subject;
use crate::state::AppState;

/// The session cookie over plain HTTP (development, tests).
pub const SESSION_COOKIE: &str = "wbd_session";
/// …and under TLS: the `__Host-` prefix makes browsers insist on `Secure`, `Path=/` and no
/// `Domain`, so no other host can plant one.
pub const SESSION_COOKIE_TLS: &str = "__Host-wbd_session";

/// Name of the server secret that keys the CSRF tokens.
const CSRF_SECRET: &str = "console-csrf-hmac";

/// The console's keys, loaded once at start-up (shared by every API process through the
/// database, like the access-token secret).
pub struct ConsoleKeys {
    csrf: Vec<u8>,
}

impl ConsoleKeys {
    pub async fn load(store: &dyn wbd_store::Store) -> wbd_store::Result<ConsoleKeys> {
        let mut generated = vec![0u8; 32];
        rand::rng().fill_bytes(&mut generated);
        Ok(ConsoleKeys { csrf: store.get_or_create_secret(CSRF_SECRET, generated).await? })
    }
}

fn csrf_mac(keys: &ConsoleKeys, session_id: &str) -> Hmac<Sha256> {
    let mut mac = Hmac::<Sha256>::new_from_slice(&keys.csrf).expect("HMAC takes a key of any length");
    mac.update(b"wbd-console-csrf\0");
    mac.update(session_id.as_bytes());
    mac
}

/// The synchronizer token of the session whose id is `session_id`.
pub fn csrf_token(keys: &ConsoleKeys, session_id: &str) -> String {
    URL_SAFE_NO_PAD.encode(csrf_mac(keys, session_id).finalize().into_bytes())
}

fn csrf_matches(keys: &ConsoleKeys, session_id: &str, sent: &str) -> bool {
    URL_SAFE_NO_PAD.decode(sent.trim()).is_ok_and(|tag| csrf_mac(keys, session_id).verify_slice(&tag).is_ok())
}

fn cookie_name(state: &AppState) -> &'static str {
    if state.settings.tls_enabled() { SESSION_COOKIE_TLS } else { SESSION_COOKIE }
}

/// The value of cookie `name` the request carries.
pub fn cookie<'a>(req: &'a HttpRequest, name: &str) -> Option<&'a str> {
    req.headers()
        .get_all(header::COOKIE)
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(n, _)| *n == name)
        .map(|(_, value)| value.trim())
}

/// The `Set-Cookie` value that stores (or, with `max_age` 0, removes) the session cookie.
fn session_cookie(state: &AppState, value: &str, max_age: i64) -> String {
    let secure = if state.settings.tls_enabled() { "; Secure" } else { "" };
    format!("{}={value}; Path=/; HttpOnly; SameSite=Strict; Max-Age={max_age}{secure}", cookie_name(state))
}

/// A signed-in person: the API key's principal, and the session they act in.
pub struct ConsoleUser {
    pub who: Principal,
    session_id: String,
    pub csrf: String,
    /// The language of this page: `?lang=`, else the one remembered, else `Accept-Language`.
    pub lang: wbd_rules::Lang,
    /// The `Set-Cookie` that remembers a language picked with `?lang=`.
    remember_lang: Option<String>,
}

impl ConsoleUser {
    /// What the layout shows of them (and the token their forms carry).
    pub fn signed_in(&self) -> SignedIn {
        SignedIn { role: self.who.role.as_str(), csrf: self.csrf.clone() }
    }

    /// A page answer with `status` that remembers the language picked, if one was.
    pub fn builder(&self, status: actix_web::http::StatusCode) -> actix_web::HttpResponseBuilder {
        let mut response = super::page::page_builder(self.remember_lang.clone());
        response.status(status);
        response
    }

    /// The checks every write passes before anything is read from its form: the request comes
    /// from our own page (`Sec-Fetch-Site`, `Origin`) and carries this session's token.
    pub fn check_write(&self, req: &HttpRequest, sent_token: &str) -> Result<(), ConsoleError> {
        let keys = keys(req)?;
        let public_url = &state(req)?.settings.delivery.public_url;
        if !from_this_origin(req, public_url) || !csrf_matches(keys, &self.session_id, sent_token) {
            tracing::warn!(org_id = %self.who.org.org_id, "console write refused: CSRF checks failed");
            return Err(ConsoleError::forged());
        }
        Ok(())
    }

    /// A write's form, read once it passed the checks every write passes (`check_write`): the
    /// console's write handlers all start here.
    pub fn checked_form<T: serde::de::DeserializeOwned>(
        &self,
        req: &HttpRequest,
        body: &[u8],
    ) -> Result<T, ConsoleError> {
        let token: TokenForm = read_form(body)?;
        self.check_write(req, &token.csrf)?;
        read_form(body)
    }
}

fn state(req: &HttpRequest) -> Result<&web::Data<AppState>, ConsoleError> {
    req.app_data::<web::Data<AppState>>()
        .ok_or_else(|| ConsoleError::internal(anyhow::anyhow!("state missing")))
}

fn keys(req: &HttpRequest) -> Result<&ConsoleKeys, ConsoleError> {
    req.app_data::<web::Data<ConsoleKeys>>()
        .map(|k| k.get_ref())
        .ok_or_else(|| ConsoleError::internal(anyhow::anyhow!("console keys missing")))
}

/// Whether a browser says the request comes from a page of this server: `Sec-Fetch-Site` is
/// `same-origin`, and `Origin` names the host the request was sent to (or `delivery.public_url`,
/// where a reverse proxy rewrites `Host`). A request without either header (not a browser, or a
/// very old one) passes here; the token still decides.
fn from_this_origin(req: &HttpRequest, public_url: &str) -> bool {
    let headers = req.headers();
    if headers.get("sec-fetch-site").is_some_and(|site| site.as_bytes() != b"same-origin") {
        return false;
    }
    match headers.get(header::ORIGIN).map(HeaderValue::to_str) {
        None => true,
        Some(Ok(origin)) => {
            let authority = origin.strip_prefix("https://").or_else(|| origin.strip_prefix("http://"));
            let info = req.connection_info();
            authority.is_some_and(|a| a.eq_ignore_ascii_case(info.host()))
                || (!public_url.is_empty() && origin.eq_ignore_ascii_case(origin_of(public_url)))
        }
        Some(Err(_)) => false,
    }
}

/// `https://wbd.example.com` of `https://wbd.example.com/some/path`.
fn origin_of(url: &str) -> &str {
    let after_scheme = url.find("://").map_or(0, |i| i + 3);
    match url[after_scheme..].find('/') {
        Some(slash) => &url[..after_scheme + slash],
        None => url,
    }
}

impl FromRequest for ConsoleUser {
    type Error = ConsoleError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, Self::Error>>>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let req = req.clone();
        Box::pin(async move {
            let state = state(&req)?;
            let Some(session_id) = cookie(&req, cookie_name(state)) else {
                return Err(ConsoleError::SignedOut);
            };
            let now = Utc::now();
            let session = state
                .store
                .find_console_session(&hash_secret(session_id), now)
                .await?
                .ok_or(ConsoleError::SignedOut)?;
            // Pages count against the organisation's allowance, as API requests do.
            state.rate_limits.check(Subject::Organisation(session.org_id), now).await?;
            let who = Principal {
                org: OrgScope { org_id: session.org_id },
                role: session.role,
                key_id: session.api_key_id,
            };
            tracing::Span::current().record("org_id", tracing::field::display(who.org.org_id));
            let csrf = csrf_token(keys(&req)?, session_id);
            let asked = web::Query::<LangParam>::from_query(req.query_string()).ok().and_then(|q| q.0.lang);
            let (lang, remember_lang) = super::page::page_lang(&req, asked.as_deref());
            Ok(ConsoleUser { who, session_id: session_id.to_owned(), csrf, lang, remember_lang })
        })
    }
}

/// `?lang=` of any page.
#[derive(Deserialize)]
struct LangParam {
    lang: Option<String>,
}

/// The console's own reading of a form body: fields it does not know are ignored, a body that
/// is not a form is a 400 page.
pub fn read_form<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ConsoleError> {
    serde_urlencoded::from_bytes(body)
        .map_err(|e| ConsoleError::bad_request(format!("The form is incomplete: {e}")))
}

#[derive(Template)]
#[template(path = "console/sign_in.html")]
struct SignInPage {
    chrome: Chrome,
    error: Option<String>,
}

fn sign_in_page(
    req: &HttpRequest,
    status: actix_web::http::StatusCode,
    error: Option<String>,
) -> Result<HttpResponse, ConsoleError> {
    let (lang, _) = super::page::page_lang(req, None);
    let page = SignInPage { chrome: Chrome::new("/sign-in", lang, None), error };
    render(builder(status), &page)
}

/// `GET /sign-in`
pub async fn sign_in_form(req: HttpRequest) -> Result<HttpResponse, ConsoleError> {
    // Already signed in: straight to the overview.
    let mut payload = Payload::None;
    if ConsoleUser::from_request(&req, &mut payload).await.is_ok() {
        return Ok(see_other("/").finish());
    }
    sign_in_page(&req, actix_web::http::StatusCode::OK, None)
}

#[derive(Deserialize)]
struct SignInForm {
    api_key: String,
}

/// `POST /sign-in`: an API key in, a session cookie out.
pub async fn sign_in(req: HttpRequest, body: web::Bytes) -> Result<HttpResponse, ConsoleError> {
    let state = state(&req)?;
    if !from_this_origin(&req, &state.settings.delivery.public_url) {
        return Err(ConsoleError::forged());
    }
    let form: SignInForm = read_form(&body)?;
    let now = Utc::now();
    let digest = hash_secret(form.api_key.trim());
    state.rate_limits.check_secret_attempt(&req, &digest, now).await?;
    let key = state.store.find_api_key_by_hash(&digest).await?.filter(|k| k.revoked_at.is_none());
    let Some(key) = key else {
        tracing::info!("console sign-in refused: unknown or revoked API key");
        return sign_in_page(
            &req,
            actix_web::http::StatusCode::UNAUTHORIZED,
            Some("This API key is unknown or was revoked.".to_owned()),
        );
    };
    let mut id = [0u8; 32];
    rand::rng().fill_bytes(&mut id);
    let session_id = URL_SAFE_NO_PAD.encode(id);
    let ttl = i64::try_from(state.settings.auth.session_ttl_secs).unwrap_or(28_800);
    let opened = state
        .store
        .create_console_session(
            OrgScope { org_id: key.org_id },
            key.id,
            &hash_secret(&session_id),
            now,
            now + Duration::seconds(ttl),
        )
        .await?;
    if !opened {
        // Revoked between the look-up and now.
        return sign_in_page(
            &req,
            actix_web::http::StatusCode::UNAUTHORIZED,
            Some("This API key is unknown or was revoked.".to_owned()),
        );
    }
    tracing::info!(org_id = %key.org_id, api_key_id = %key.id, "console session opened");
    Ok(see_other("/").insert_header((header::SET_COOKIE, session_cookie(state, &session_id, ttl))).finish())
}

#[derive(Deserialize)]
struct TokenForm {
    #[serde(default)]
    csrf: String,
}

/// `POST /sign-out`: ends the session for good and forgets the cookie.
pub async fn sign_out(req: HttpRequest, body: web::Bytes) -> Result<HttpResponse, ConsoleError> {
    let state = state(&req)?;
    let mut payload = Payload::None;
    let user = match ConsoleUser::from_request(&req, &mut payload).await {
        Ok(user) => user,
        // Nothing to end.
        Err(ConsoleError::SignedOut) => return Ok(see_other("/sign-in").finish()),
        Err(e) => return Err(e),
    };
    let _: TokenForm = user.checked_form(&req, &body)?;
    state.store.end_console_session(user.who.org, &hash_secret(&user.session_id)).await?;
    tracing::info!(org_id = %user.who.org.org_id, "console session ended");
    Ok(see_other("/sign-in").insert_header((header::SET_COOKIE, session_cookie(state, "", 0))).finish())
}

#[cfg(test)]
mod tests {
    use actix_web::test::TestRequest;

    use super::*;

    #[test]
    fn a_write_counts_as_ours_only_from_our_origin() {
        let ours = |headers: &[(&str, &str)], public_url: &str| {
            let mut req = TestRequest::default().insert_header(("host", "wbd.internal:8080"));
            for (name, value) in headers {
                req = req.insert_header((*name, *value));
            }
            from_this_origin(&req.to_http_request(), public_url)
        };
        assert!(ours(&[], ""), "no browser headers: the token decides");
        assert!(ours(&[("origin", "http://wbd.internal:8080"), ("sec-fetch-site", "same-origin")], ""));
        assert!(!ours(&[("origin", "https://evil.example")], ""));
        assert!(!ours(&[("origin", "null")], ""));
        assert!(!ours(&[("sec-fetch-site", "same-site")], ""));
        assert!(!ours(&[("sec-fetch-site", "cross-site"), ("origin", "http://wbd.internal:8080")], ""));
        // Behind a proxy that rewrites Host, the public address counts.
        let public = "https://wbd.example.com/";
        assert!(ours(&[("origin", "https://wbd.example.com")], public));
        assert!(!ours(&[("origin", "https://wbd.example.com.evil.example")], public));
        assert_eq!(origin_of("https://wbd.example.com/x/y"), "https://wbd.example.com");
        assert_eq!(origin_of("https://wbd.example.com"), "https://wbd.example.com");
    }

    #[test]
    fn the_token_is_bound_to_its_session() {
        let keys = ConsoleKeys { csrf: b"a server secret of some length".to_vec() };
        let token = csrf_token(&keys, "session-a");
        assert!(csrf_matches(&keys, "session-a", &token));
        assert!(!csrf_matches(&keys, "session-b", &token));
        assert!(!csrf_matches(&keys, "session-a", ""));
        assert!(!csrf_matches(&keys, "session-a", "not base64 !"));
        let other = ConsoleKeys { csrf: b"another server".to_vec() };
        assert!(!csrf_matches(&other, "session-a", &token));
    }
}
