//! Microsoft's identity platform and Graph, as far as the Graph reader uses them.
//!
//! Routes: `POST /{tenant}/oauth2/v2.0/token` (client credentials, form-encoded, with a
//! `client_secret` or a JWT `client_assertion`) and `GET /graph/v1.0/…`: `subscribedSkus` (paged
//! through `@odata.nextLink` with `$skiptoken`), `organization`, `policies/authorizationPolicy`,
//! `reports/authenticationMethods/userRegistrationDetails` (`$filter=userPrincipalName eq '…'`),
//! `roleManagement/directory/roleAssignments` (`$filter=roleDefinitionId eq '…'`) and
//! `users/{id}`, `domains/{id}`. Use the receiver's URL as the authority and `{url}/graph` as the Graph base URL.
//!
//! As the real ones do: a client assertion is checked like Entra checks it — signature with the
//! public key of the registered certificate named by `x5t#S256`, `aud` = the token endpoint's URL,
//! `iss` = `sub` = the client id, `nbf`/`exp` live and at most 10 minutes apart, each `jti` once —
//! and refused with `invalid_client` and an AADSTS code; a tenant that has not consented (or
//! whose consent was revoked, [`EntraState::revoke_consent`]) gets `unauthorized_client`
//! AADSTS700016; each tenant gets its own tokens, which Graph accepts for that tenant only
//! (401 `InvalidAuthenticationToken` otherwise); a path the app lacks the permission for answers
//! 403 `Authorization_RequestDenied`; a tenant can be throttled (429 with `Retry-After`).
//!
//! With [`EntraState::enforce_limits`] Graph's documented limits for identity and access are
//! enforced too ([`GraphLimits::DOCUMENTED`]): token buckets of resource units per app and
//! tenant and per app across all tenants, Graph's global request limit per app, and the
//! reports' limit per app and tenant, each refused with 429, `Retry-After` and the scope Graph
//! names (`x-ms-throttle-scope`).
//!
//! Besides the multi-tenant app, a tenant may have apps of its own ([`EntraState::register_app`]:
//! an MSP's customer that brings its own app registration): the token endpoint knows them in
//! those tenants only, and every token remembers the app it was issued to
//! ([`EntraState::graph_calls`]).

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use actix_web::{HttpRequest, HttpResponse, web};
use serde_json::{Value, json};

use crate::{Api, Common, Observed, bearer};

/// The registered app: its id and the credentials it may use.
#[derive(Debug, Clone, Default)]
pub struct EntraApp {
    pub client_id: String,
    pub client_secret: Option<String>,
    /// The registered certificate: its `x5t#S256` and its RSA public key (PKCS#1 DER).
    pub certificate: Option<(String, Vec<u8>)>,
}

/// What one customer tenant holds, in Graph's shapes.
#[derive(Debug, Clone)]
pub struct EntraTenant {
    pub consented: bool,
    pub skus: Vec<Value>,
    /// SKUs per page of `subscribedSkus`.
    pub sku_page_size: usize,
    pub organization: Value,
    pub authorization_policy: Value,
    /// `userRegistrationDetails` rows.
    pub registrations: Vec<Value>,
    /// Role assignments (with `principal` expanded) by role template id.
    pub role_assignments: HashMap<String, Vec<Value>>,
    /// Users by id.
    pub users: HashMap<String, Value>,
    /// Verified domains by name (`GET /domains/{id}`).
    pub domains: HashMap<String, Value>,
    /// Paths under `/v1.0` (e.g. `/policies/authorizationPolicy`) answered 403.
    pub denied: HashSet<String>,
    /// The next N Graph requests of the tenant are answered 429 with `Retry-After:
    /// {throttle_retry_after}` and `x-ms-throttle-scope: Tenant_Application/…` (this tenant's
    /// limit for the app).
    pub throttle_next: u32,
    /// Seconds of that `Retry-After` (1 unless set).
    pub throttle_retry_after: u64,
}

/// Global Administrator's role template id.
pub const GLOBAL_ADMIN: &str = "62e90394-69f5-4237-9190-012177145e10";
/// Entra ID P1's service plan id.
pub const AAD_PREMIUM: &str = "41781fb2-bc02-4b7c-bd55-b576c07bb09d";

impl EntraTenant {
    /// A tenant where writeback's cloud side is fine: consented, 25 P1 licences on user SKUs,
    /// syncing, SSPR for admins on, the test user `sspr.test@{domain}` enabled and registered,
    /// one cloud-only Global Administrator.
    pub fn healthy(tenant_id: &str, domain: &str) -> EntraTenant {
        let sku = |part: &str, enabled: u64, consumed: u64| {
            json!({"skuId": uuid::Uuid::new_v4(), "skuPartNumber": part, "capabilityStatus": "Enabled",
                "appliesTo": "User", "consumedUnits": consumed,
                "prepaidUnits": {"enabled": enabled, "suspended": 0, "warning": 0, "lockedOut": 0},
                "servicePlans": [{"servicePlanId": AAD_PREMIUM, "servicePlanName": "AAD_PREMIUM",
                    "provisioningStatus": "Success", "appliesTo": "User"}]})
        };
        let admin = format!("admin@{domain}");
        EntraTenant {
            consented: true,
            skus: vec![sku("AAD_PREMIUM", 10, 8), sku("SPB", 15, 12)],
            sku_page_size: 1,
            organization: json!({"id": tenant_id, "displayName": domain,
                "onPremisesSyncEnabled": true, "onPremisesLastSyncDateTime": chrono::Utc::now().to_rfc3339()}),
            authorization_policy: json!({"id": "authorizationPolicy", "allowedToUseSSPR": true}),
            registrations: vec![
                json!({"id": "u-test", "userPrincipalName": format!("sspr.test@{domain}"),
                    "isAdmin": false, "isSsprRegistered": true, "isSsprEnabled": true, "isSsprCapable": true,
                    "methodsRegistered": ["mobilePhone", "email"], "lastUpdatedDateTime": "2026-11-19T07:00:00Z"}),
                json!({"id": "u-admin", "userPrincipalName": admin.clone(),
                    "isAdmin": true, "isSsprRegistered": true, "isSsprEnabled": true, "isSsprCapable": true,
                    "methodsRegistered": ["microsoftAuthenticatorPush"], "lastUpdatedDateTime": "2026-11-19T07:00:00Z"}),
            ],
            role_assignments: HashMap::from([(
                GLOBAL_ADMIN.to_owned(),
                vec![json!({"id": "a1", "principalId": "u-admin", "roleDefinitionId": GLOBAL_ADMIN,
                    "principal": {"@odata.type": "#microsoft.graph.user", "id": "u-admin",
                        "displayName": "Cloud Admin", "userPrincipalName": admin}})],
            )]),
            users: HashMap::from([(
                "u-admin".to_owned(),
                json!({"id": "u-admin", "userPrincipalName": admin, "onPremisesSyncEnabled": null}),
            )]),
            domains: HashMap::from([(
                domain.to_owned(),
                json!({"id": domain, "authenticationType": "Managed", "isVerified": true}),
            )]),
            denied: HashSet::new(),
            throttle_next: 0,
            throttle_retry_after: 1,
        }
    }
}

#[derive(Debug)]
pub struct EntraState {
    common: Common,
    pub app: Mutex<EntraApp>,
    /// Tenants by tenant id (or domain, as the token endpoint is asked).
    pub tenants: Mutex<HashMap<String, EntraTenant>>,
    /// Issued tokens: value → (tenant, expiry, client id).
    tokens: Mutex<HashMap<String, (String, Instant, String)>>,
    /// Apps registered in customer tenants: each with the tenants that consented to it.
    own_apps: Mutex<Vec<(EntraApp, HashSet<String>)>>,
    seen_jtis: Mutex<HashSet<String>>,
    pub token_lifetime: Mutex<Duration>,
    /// The next N Graph requests of any tenant are answered 429 with `Retry-After: {secs}` and
    /// `x-ms-throttle-scope: Application/…`: the app's limit across all tenants.
    pub app_throttle_next: Mutex<(u32, u64)>,
    /// Graph's documented limits, when enforced, and what each bucket holds.
    limits: Mutex<Option<Limiter>>,
}

/// Microsoft Graph's documented throttling limits for what the reader reads ("Microsoft Graph
/// service-specific throttling limits": identity and access, identity and access reports, and
/// the global limit).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GraphLimits {
    /// Resource units per app and tenant per 10 s (a tenant under 50 users: 3,500).
    pub tenant_units_per_10s: u32,
    /// Resource units per app across all tenants per 20 s (150,000).
    pub app_units_per_20s: u32,
    /// Requests per app across all tenants per 10 s (Graph's global limit: 130,000).
    pub app_requests_per_10s: u32,
    /// Identity and access reports (`/reports/…`): requests per app and tenant per 10 s (5).
    pub reports_per_10s: u32,
}

impl GraphLimits {
    pub const DOCUMENTED: GraphLimits = GraphLimits {
        tenant_units_per_10s: 3_500,
        app_units_per_20s: 150_000,
        app_requests_per_10s: 130_000,
        reports_per_10s: 5,
    };
}

/// A token bucket: `capacity` tokens, refilled at `capacity / window`.
#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    capacity: f64,
    per_sec: f64,
    at: Instant,
}

impl Bucket {
    fn new(capacity: u32, window_secs: u32, now: Instant) -> Bucket {
        let capacity = f64::from(capacity.max(1));
        Bucket { tokens: capacity, capacity, per_sec: capacity / f64::from(window_secs.max(1)), at: now }
    }

    /// Refills to `now`; `None` if `cost` can be taken now, else the whole seconds to wait.
    fn wait_for(&mut self, cost: f64, now: Instant) -> Option<u64> {
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.per_sec).min(self.capacity);
        self.at = now;
        (self.tokens < cost).then(|| ((cost - self.tokens) / self.per_sec).ceil().max(1.0) as u64)
    }
}

#[derive(Debug)]
struct Limiter {
    limits: GraphLimits,
    app_requests: Bucket,
    app_units: Bucket,
    tenant_units: HashMap<String, Bucket>,
    reports: HashMap<String, Bucket>,
    /// 429s answered, by scope.
    throttled: HashMap<&'static str, u64>,
}

impl Limiter {
    fn new(limits: GraphLimits, now: Instant) -> Limiter {
        Limiter {
            limits,
            app_requests: Bucket::new(limits.app_requests_per_10s, 10, now),
            app_units: Bucket::new(limits.app_units_per_20s, 20, now),
            tenant_units: HashMap::new(),
            reports: HashMap::new(),
            throttled: HashMap::new(),
        }
    }

    /// Takes one request of `cost` resource units for `tenant` (`reports`: an identity and
    /// access report), or names the scope that refuses it and the seconds to wait. A refused
    /// request takes nothing.
    fn take(&mut self, tenant: &str, cost: u32, reports: bool, now: Instant) -> Option<(&'static str, u64)> {
        let limits = self.limits;
        let cost = f64::from(cost);
        let tenant_units = self
            .tenant_units
            .entry(tenant.to_owned())
            .or_insert_with(|| Bucket::new(limits.tenant_units_per_10s, 10, now));
        let mut report = reports.then(|| {
            self.reports
                .entry(tenant.to_owned())
                .or_insert_with(|| Bucket::new(limits.reports_per_10s, 10, now))
        });
        let refusal = if let Some(wait) = self.app_requests.wait_for(1.0, now) {
            Some(("Application", wait))
        } else if let Some(wait) = self.app_units.wait_for(cost, now) {
            Some(("Application", wait))
        } else if let Some(wait) = tenant_units.wait_for(cost, now) {
            Some(("Tenant_Application", wait))
        } else {
            report
                .as_mut()
                .and_then(|bucket| bucket.wait_for(1.0, now))
                .map(|wait| ("Tenant_Application", wait))
        };
        if let Some((scope, _)) = refusal {
            *self.throttled.entry(scope).or_default() += 1;
            return refusal;
        }
        self.app_requests.tokens -= 1.0;
        self.app_units.tokens -= cost;
        tenant_units.tokens -= cost;
        if let Some(bucket) = report {
            bucket.tokens -= 1.0;
        }
        None
    }
}

/// What a GET costs in resource units, as the documented table says for what the reader reads:
/// `subscribedSkus` 3, the `users` list 2, anything else 1; `$select` takes one off, `$top`
/// under 20 one more; never below 1.
fn resource_units(path: &str, query: &[(String, String)]) -> u32 {
    let base: i64 = match path {
        "/subscribedSkus" => 3,
        "/users" => 2,
        _ => 1,
    };
    let select = i64::from(param(query, "$select").is_some());
    let top = i64::from(param(query, "$top").and_then(|t| t.parse::<u32>().ok()).is_some_and(|t| t < 20));
    (base - select - top).max(1) as u32
}

impl EntraState {
    pub fn new(app: EntraApp) -> EntraState {
        EntraState {
            common: Common::default(),
            app: Mutex::new(app),
            tenants: Mutex::default(),
            tokens: Mutex::default(),
            own_apps: Mutex::default(),
            seen_jtis: Mutex::default(),
            token_lifetime: Mutex::new(Duration::from_secs(3599)),
            app_throttle_next: Mutex::new((0, 1)),
            limits: Mutex::new(None),
        }
    }

    /// Enforces `limits` on every Graph request from now on (each request of a `$batch` too).
    pub fn enforce_limits(&self, limits: GraphLimits) {
        *self.limits.lock().unwrap() = Some(Limiter::new(limits, Instant::now()));
    }

    /// The 429s the enforced limits answered so far, by scope (`Application`,
    /// `Tenant_Application`).
    pub fn limit_refusals(&self) -> HashMap<&'static str, u64> {
        self.limits.lock().unwrap().as_ref().map(|l| l.throttled.clone()).unwrap_or_default()
    }

    pub fn add_tenant(&self, id: &str, tenant: EntraTenant) {
        self.tenants.lock().unwrap().insert(id.to_owned(), tenant);
    }

    /// Changes what a tenant holds.
    pub fn update_tenant(&self, id: &str, change: impl FnOnce(&mut EntraTenant)) {
        if let Some(t) = self.tenants.lock().unwrap().get_mut(id) {
            change(t);
        }
    }

    /// The tenant's administrator removed the app: no more tokens, and issued ones stop working.
    pub fn revoke_consent(&self, id: &str) {
        self.update_tenant(id, |t| t.consented = false);
        self.tokens.lock().unwrap().retain(|_, (tenant, _, _)| tenant != id);
    }

    /// An app registered by a customer (not the multi-tenant one), consented to in `tenants`.
    pub fn register_app(&self, app: EntraApp, tenants: &[&str]) {
        let tenants = tenants.iter().map(|t| (*t).to_owned()).collect();
        self.own_apps.lock().unwrap().push((app, tenants));
    }

    /// Graph requests (`$batch` included) made with a token issued to `client_id` for `tenant`.
    pub fn graph_calls(&self, tenant: &str, client_id: &str) -> usize {
        let tokens = self.tokens.lock().unwrap();
        self.common
            .requests()
            .iter()
            .filter(|r| r.path.starts_with("/graph/"))
            .filter_map(|r| r.header("authorization")?.strip_prefix("Bearer ").map(str::to_owned))
            .filter(|token| tokens.get(token).is_some_and(|(t, _, c)| t == tenant && c == client_id))
            .count()
    }

    /// Token requests for `tenant` that named `client_id`.
    pub fn token_requests_by(&self, tenant: &str, client_id: &str) -> usize {
        let path = format!("/{tenant}/oauth2/v2.0/token");
        self.common
            .requests()
            .iter()
            .filter(|r| r.method == "POST" && r.path == path)
            .filter(|r| {
                param(&pairs(std::str::from_utf8(&r.body).unwrap_or("")), "client_id") == Some(client_id)
            })
            .count()
    }

    /// Token requests answered so far (successful or not), per tenant.
    pub fn token_requests(&self, tenant: &str) -> usize {
        let path = format!("/{tenant}/oauth2/v2.0/token");
        self.common.requests().iter().filter(|r| r.method == "POST" && r.path == path).count()
    }
}

impl Api for EntraState {
    fn common(&self) -> &Common {
        &self.common
    }

    fn configure(cfg: &mut web::ServiceConfig) {
        cfg.route("/{tenant}/oauth2/v2.0/token", web::post().to(token))
            .route("/graph/v1.0/$batch", web::post().to(batch))
            .route("/graph/v1.0/{tail:.*}", web::get().to(graph));
    }
}

fn pairs(text: &str) -> Vec<(String, String)> {
    web::Query::<Vec<(String, String)>>::from_query(text).map(|q| q.into_inner()).unwrap_or_default()
}

fn param<'a>(pairs: &'a [(String, String)], name: &str) -> Option<&'a str> {
    pairs.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
}

/// An identity-platform error: `error`, `error_description` starting with the AADSTS code, and
/// `error_codes`.
fn aad_error(status: u16, error: &str, code: u32, text: &str) -> HttpResponse {
    let status =
        actix_web::http::StatusCode::from_u16(status).unwrap_or(actix_web::http::StatusCode::BAD_REQUEST);
    HttpResponse::build(status).json(json!({
        "error": error,
        "error_description": format!("AADSTS{code}: {text}\r\nTrace ID: 00000000-0000-0000-0000-000000000000\r\nCorrelation ID: 00000000-0000-0000-0000-000000000000\r\nTimestamp: 2026-12-06 00:00:00Z"),
        "error_codes": [code],
        "trace_id": "00000000-0000-0000-0000-000000000000",
    }))
}

fn graph_error(status: u16, code: &str, message: &str) -> HttpResponse {
    let status =
        actix_web::http::StatusCode::from_u16(status).unwrap_or(actix_web::http::StatusCode::BAD_REQUEST);
    HttpResponse::build(status)
        .json(json!({"error": {"code": code, "message": message, "innerError": {"request-id": uuid::Uuid::new_v4()}}}))
}

/// A 429 as Graph's identity-and-access limits answer it: `Retry-After`, and the scope of the
/// limit reached (`<Scope>/<Limit>/<ApplicationId>/<TenantId>`).
fn throttled(scope: &str, retry_after: u64, client_id: &str, tenant: &str) -> HttpResponse {
    HttpResponse::TooManyRequests()
        .insert_header(("Retry-After", retry_after.to_string()))
        .insert_header(("x-ms-throttle-scope", format!("{scope}/ReadWrite/{client_id}/{tenant}")))
        .insert_header(("x-ms-throttle-information", "ResourceUnitLimitExceeded"))
        .json(json!({"error": {"code": "TooManyRequests", "message": "Too many requests."}}))
}

fn origin(req: &HttpRequest) -> String {
    let info = req.connection_info();
    format!("{}://{}", info.scheme(), info.host())
}

async fn token(req: HttpRequest, body: web::Bytes, state: web::Data<EntraState>) -> HttpResponse {
    let lose_answer = match state.common().observe(&req, &body).await {
        Observed::Answer(response) => return response,
        Observed::Handle { lose_answer } => lose_answer,
    };
    let tenant = req.match_info().get("tenant").unwrap_or_default().to_owned();
    let form = pairs(std::str::from_utf8(&body).unwrap_or(""));
    if param(&form, "grant_type") != Some("client_credentials") {
        return aad_error(
            400,
            "unsupported_grant_type",
            70003,
            "The app requested an unsupported grant type.",
        );
    }
    let origin = origin(&req);
    let client_id = param(&form, "client_id").unwrap_or_default();
    let multi_tenant = state.app.lock().unwrap().clone();
    // The multi-tenant app, or an app of the customer's own, known in its tenants only.
    let own = state
        .own_apps
        .lock()
        .unwrap()
        .iter()
        .find(|(app, tenants)| app.client_id == client_id && tenants.contains(&tenant))
        .map(|(app, _)| app.clone());
    let app = own.clone().unwrap_or(multi_tenant);
    if client_id != app.client_id {
        return aad_error(
            400,
            "unauthorized_client",
            700016,
            &format!("Application with identifier '{client_id}' was not found in the directory '{tenant}'."),
        );
    }
    if param(&form, "scope") != Some(format!("{origin}/graph/.default").as_str()) {
        return aad_error(400, "invalid_scope", 1002012, "The provided value for scope is not valid.");
    }
    let audience = format!("{origin}{}", req.path());
    let authenticated = match (param(&form, "client_secret"), param(&form, "client_assertion")) {
        (Some(secret), None) => {
            if app.client_secret.as_deref() == Some(secret) {
                Ok(())
            } else {
                Err(aad_error(401, "invalid_client", 7000215, "Invalid client secret provided."))
            }
        }
        (None, Some(assertion)) => {
            if param(&form, "client_assertion_type")
                != Some("urn:ietf:params:oauth:client-assertion-type:jwt-bearer")
            {
                Err(aad_error(400, "invalid_request", 700024, "Client assertion type is not supported."))
            } else {
                check_assertion(&state, &app, assertion, &audience)
            }
        }
        _ => Err(aad_error(
            401,
            "invalid_client",
            7000218,
            "The request body must contain the following parameter: 'client_assertion' or 'client_secret'.",
        )),
    };
    if let Err(refused) = authenticated {
        return refused;
    }
    let consented = state.tenants.lock().unwrap().get(&tenant).is_some_and(|t| t.consented || own.is_some());
    if !consented {
        return aad_error(
            400,
            "unauthorized_client",
            700016,
            &format!(
                "Application with identifier '{client_id}' was not found in the directory '{tenant}'. This can happen if the application has not been installed by the administrator of the tenant or consented to by any user in the tenant."
            ),
        );
    }
    let lifetime = *state.token_lifetime.lock().unwrap();
    let value = format!("eyJ0eXAiOiJKV1QifQ.{}.{}", tenant, uuid::Uuid::new_v4().simple());
    state.tokens.lock().unwrap().insert(value.clone(), (tenant, Instant::now() + lifetime, app.client_id));
    Common::answer(
        lose_answer,
        HttpResponse::Ok().json(json!({
            "token_type": "Bearer",
            "expires_in": lifetime.as_secs(),
            "ext_expires_in": lifetime.as_secs(),
            "access_token": value,
        })),
    )
}

// The refusal is the answer itself, built once and sent as is.
#[allow(clippy::result_large_err)]
fn check_assertion(
    state: &EntraState,
    app: &EntraApp,
    assertion: &str,
    audience: &str,
) -> Result<(), HttpResponse> {
    use jsonwebtoken::{Algorithm, DecodingKey, Validation};
    let refuse = |code: u32, text: &str| aad_error(401, "invalid_client", code, text);
    let Some((thumbprint, public_key)) = &app.certificate else {
        return Err(refuse(
            700027,
            "Client assertion contains an invalid signature. [Reason - The key was not found.]",
        ));
    };
    let header = jsonwebtoken::decode_header(assertion)
        .map_err(|_| refuse(50027, "JWT token is invalid or malformed."))?;
    if !matches!(header.alg, Algorithm::PS256 | Algorithm::RS256) {
        return Err(refuse(5002738, "Invalid JWT token. The algorithm is not supported."));
    }
    if header.x5t_s256.as_deref() != Some(thumbprint.as_str()) {
        return Err(refuse(
            700027,
            "Client assertion failed signature validation. [Reason - The key was not found., Thumbprint of key used by client: …]",
        ));
    }
    let mut validation = Validation::new(header.alg);
    validation.set_audience(&[audience]);
    validation.set_issuer(&[app.client_id.as_str()]);
    validation.sub = Some(app.client_id.clone());
    validation.validate_nbf = true;
    validation.leeway = 0;
    validation.set_required_spec_claims(&["exp", "nbf", "aud", "iss", "sub"]);
    let data = jsonwebtoken::decode::<Value>(assertion, &DecodingKey::from_rsa_der(public_key), &validation)
        .map_err(|e| match e.kind() {
            jsonwebtoken::errors::ErrorKind::InvalidSignature => {
                refuse(700027, "Client assertion failed signature validation.")
            }
            jsonwebtoken::errors::ErrorKind::InvalidAudience => refuse(
                700212,
                &format!("No matching federated identity record found for presented assertion audience (expected '{audience}')."),
            ),
            jsonwebtoken::errors::ErrorKind::ExpiredSignature => {
                refuse(700024, "Client assertion is not within its valid time range.")
            }
            _ => refuse(700023, &format!("Client assertion is invalid: {e}")),
        })?;
    let claims = data.claims;
    let nbf = claims.get("nbf").and_then(Value::as_i64).unwrap_or(0);
    let exp = claims.get("exp").and_then(Value::as_i64).unwrap_or(0);
    if exp - nbf > 600 {
        return Err(refuse(
            700024,
            "Client assertion is not within its valid time range (longer than 10 minutes).",
        ));
    }
    let Some(jti) = claims.get("jti").and_then(Value::as_str) else {
        return Err(refuse(700023, "Client assertion has no jti."));
    };
    if !state.seen_jtis.lock().unwrap().insert(jti.to_owned()) {
        return Err(refuse(700023, "Client assertion was replayed (jti already used)."));
    }
    Ok(())
}

async fn graph(req: HttpRequest, state: web::Data<EntraState>) -> HttpResponse {
    let lose_answer = match state.common().observe(&req, &[]).await {
        Observed::Answer(response) => return response,
        Observed::Handle { lose_answer } => lose_answer,
    };
    let tenant = match token_tenant(&req, &state) {
        Ok(tenant) => tenant,
        Err(refused) => return refused,
    };
    let path = format!("/{}", req.match_info().get("tail").unwrap_or_default());
    let answer = serve(&state, &tenant, &path, req.query_string(), &origin(&req));
    Common::answer(lose_answer, answer)
}

/// The tenant whose token `req` bears, or Graph's 401.
#[allow(clippy::result_large_err)]
fn token_tenant(req: &HttpRequest, state: &EntraState) -> Result<String, HttpResponse> {
    let Some(token) = bearer(req) else {
        return Err(graph_error(401, "InvalidAuthenticationToken", "Access token is empty."));
    };
    match state.tokens.lock().unwrap().get(&token) {
        Some((tenant, expiry, _)) if *expiry > Instant::now() => Ok(tenant.clone()),
        Some(_) => Err(graph_error(
            401,
            "InvalidAuthenticationToken",
            "Lifetime validation failed, the token is expired.",
        )),
        None => Err(graph_error(
            401,
            "InvalidAuthenticationToken",
            "Access token validation failure. Invalid audience.",
        )),
    }
}

/// Most requests in one `$batch`, as Graph allows.
const MAX_BATCH: usize = 20;

/// `POST /v1.0/$batch`: each request answered as its own GET would be (each counts against the
/// throttles), with its status, the headers that matter and its body.
async fn batch(req: HttpRequest, body: web::Bytes, state: web::Data<EntraState>) -> HttpResponse {
    let lose_answer = match state.common().observe(&req, &body).await {
        Observed::Answer(response) => return response,
        Observed::Handle { lose_answer } => lose_answer,
    };
    let tenant = match token_tenant(&req, &state) {
        Ok(tenant) => tenant,
        Err(refused) => return refused,
    };
    let requests: Vec<Value> = serde_json::from_slice::<Value>(&body)
        .ok()
        .and_then(|b| b.get("requests").and_then(Value::as_array).cloned())
        .unwrap_or_default();
    if requests.is_empty() || requests.len() > MAX_BATCH {
        return graph_error(400, "BadRequest", "Invalid batch payload format.");
    }
    let origin = origin(&req);
    let mut responses = Vec::new();
    for r in requests {
        let id = r.get("id").and_then(Value::as_str).unwrap_or_default().to_owned();
        let url = r.get("url").and_then(Value::as_str).unwrap_or_default();
        if r.get("method").and_then(Value::as_str) != Some("GET") {
            responses.push(json!({"id": id, "status": 405, "body": {"error": {"code": "BadRequest", "message": "GET only here."}}}));
            continue;
        }
        let (path, query) = url.split_once('?').unwrap_or((url, ""));
        let answer = serve(&state, &tenant, path, query, &origin);
        let status = answer.status().as_u16();
        let headers: serde_json::Map<String, Value> = answer
            .headers()
            .iter()
            .filter(|(name, _)| *name == "retry-after" || name.as_str().starts_with("x-ms-throttle"))
            .map(|(name, value)| (name.to_string(), json!(value.to_str().unwrap_or_default())))
            .collect();
        let bytes = actix_web::body::to_bytes(answer.into_body()).await.unwrap_or_default();
        let body: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        responses.push(json!({"id": id, "status": status, "headers": headers, "body": body}));
    }
    Common::answer(lose_answer, HttpResponse::Ok().json(json!({ "responses": responses })))
}

/// One Graph GET of `tenant` (`path` under `/v1.0`).
fn serve(state: &EntraState, tenant: &str, path: &str, query_string: &str, origin: &str) -> HttpResponse {
    let query = pairs(query_string);
    let tenant = tenant.to_owned();
    let path = path.to_owned();
    let client_id = state.app.lock().unwrap().client_id.clone();
    {
        let mut app_throttle = state.app_throttle_next.lock().unwrap();
        if app_throttle.0 > 0 {
            app_throttle.0 -= 1;
            return throttled("Application", app_throttle.1, &client_id, &tenant);
        }
    }
    if let Some(limiter) = state.limits.lock().unwrap().as_mut() {
        let cost = resource_units(&path, &query);
        if let Some((scope, wait)) =
            limiter.take(&tenant, cost, path.starts_with("/reports/"), Instant::now())
        {
            return throttled(scope, wait, &client_id, &tenant);
        }
    }
    let mut tenants = state.tenants.lock().unwrap();
    let Some(t) = tenants.get_mut(&tenant) else {
        return graph_error(401, "InvalidAuthenticationToken", "The tenant is gone.");
    };
    if t.throttle_next > 0 {
        t.throttle_next -= 1;
        return throttled("Tenant_Application", t.throttle_retry_after, &client_id, &tenant);
    }
    if t.denied.contains(&path)
        || (path.starts_with("/users/") && t.denied.contains("/users"))
        || (path.starts_with("/domains/") && t.denied.contains("/domains"))
    {
        return graph_error(
            403,
            "Authorization_RequestDenied",
            "Insufficient privileges to complete the operation.",
        );
    }
    let filter = param(&query, "$filter").unwrap_or_default().to_owned();
    let quoted = |prefix: &str| -> Option<String> {
        filter.strip_prefix(prefix)?.strip_prefix('\'')?.strip_suffix('\'').map(|v| v.replace("''", "'"))
    };
    let answer = match path.as_str() {
        "/subscribedSkus" => {
            let skip: usize = param(&query, "$skiptoken").and_then(|s| s.parse().ok()).unwrap_or(0);
            let size = t.sku_page_size.max(1);
            let page: Vec<Value> = t.skus.iter().skip(skip).take(size).cloned().collect();
            let mut body = json!({"@odata.context": format!("{origin}/graph/v1.0/$metadata#subscribedSkus"), "value": page});
            if skip + size < t.skus.len() {
                body["@odata.nextLink"] =
                    json!(format!("{origin}/graph/v1.0/subscribedSkus?$skiptoken={}", skip + size));
            }
            body
        }
        "/organization" => json!({"value": [t.organization]}),
        "/policies/authorizationPolicy" => t.authorization_policy.clone(),
        "/reports/authenticationMethods/userRegistrationDetails" => {
            let upn = quoted("userPrincipalName eq ");
            let admins_only = filter == "isAdmin eq true";
            let rows: Vec<Value> = t
                .registrations
                .iter()
                .filter(|r| {
                    upn.as_deref()
                        .is_none_or(|u| r.get("userPrincipalName").and_then(Value::as_str) == Some(u))
                })
                .filter(|r| !admins_only || r.get("isAdmin").and_then(Value::as_bool) == Some(true))
                .cloned()
                .collect();
            json!({"value": rows})
        }
        "/roleManagement/directory/roleAssignments" => {
            let role = quoted("roleDefinitionId eq ").unwrap_or_default();
            json!({"value": t.role_assignments.get(&role).cloned().unwrap_or_default()})
        }
        user if user.starts_with("/users/") => match t.users.get(user.trim_start_matches("/users/")) {
            Some(u) => u.clone(),
            None => return graph_error(404, "Request_ResourceNotFound", "Resource does not exist."),
        },
        domain if domain.starts_with("/domains/") => {
            match t.domains.get(&domain.trim_start_matches("/domains/").to_ascii_lowercase()) {
                Some(d) => d.clone(),
                None => return graph_error(404, "Request_ResourceNotFound", "Resource does not exist."),
            }
        }
        _ => return graph_error(404, "Request_ResourceNotFound", "Resource not found for the segment."),
    };
    HttpResponse::Ok().json(answer)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tenant_s_reports_are_limited_per_ten_seconds_and_other_tenants_go_on() {
        let now = Instant::now();
        let mut l = Limiter::new(GraphLimits::DOCUMENTED, now);
        for _ in 0..5 {
            assert_eq!(l.take("a", 1, true, now), None);
        }
        assert_eq!(
            l.take("a", 1, true, now),
            Some(("Tenant_Application", 2)),
            "one report refills every 2 s"
        );
        assert_eq!(l.take("a", 1, false, now), None, "other reads of the tenant go on");
        assert_eq!(l.take("b", 1, true, now), None, "another tenant has its own bucket");
        assert_eq!(l.take("a", 1, true, now + Duration::from_secs(2)), None);
        assert_eq!(l.throttled.get("Tenant_Application"), Some(&1));
    }

    #[test]
    fn resource_units_run_out_per_tenant_then_for_the_app() {
        let now = Instant::now();
        let limits =
            GraphLimits { tenant_units_per_10s: 10, app_units_per_20s: 12, ..GraphLimits::DOCUMENTED };
        let mut l = Limiter::new(limits, now);
        for _ in 0..3 {
            assert_eq!(l.take("a", 3, false, now), None);
        }
        // 1 unit left for the tenant: a 3-unit request waits 2 s (1 unit a second).
        assert_eq!(l.take("a", 3, false, now), Some(("Tenant_Application", 2)));
        // The app has 3 units left: another tenant's request of 3 passes, then the app is out.
        assert_eq!(l.take("b", 3, false, now), None);
        assert_eq!(l.take("c", 1, false, now).map(|(scope, _)| scope), Some("Application"));
    }

    #[test]
    fn request_costs_follow_the_documented_table() {
        let q = |s: &str| pairs(s);
        assert_eq!(resource_units("/subscribedSkus", &q("")), 3);
        assert_eq!(resource_units("/subscribedSkus", &q("$select=skuId")), 2);
        assert_eq!(resource_units("/users", &q("$select=id&$top=5")), 1);
        assert_eq!(resource_units("/organization", &q("$select=id&$top=5")), 1, "never below 1");
        assert_eq!(resource_units("/domains/contoso.com", &q("")), 1);
    }
}
