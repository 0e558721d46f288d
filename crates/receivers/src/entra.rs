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
    /// Issued tokens: value → (tenant, expiry).
    tokens: Mutex<HashMap<String, (String, Instant)>>,
    seen_jtis: Mutex<HashSet<String>>,
    pub token_lifetime: Mutex<Duration>,
    /// The next N Graph requests of any tenant are answered 429 with `Retry-After: {secs}` and
    /// `x-ms-throttle-scope: Application/…`: the app's limit across all tenants.
    pub app_throttle_next: Mutex<(u32, u64)>,
}

impl EntraState {
    pub fn new(app: EntraApp) -> EntraState {
        EntraState {
            common: Common::default(),
            app: Mutex::new(app),
            tenants: Mutex::default(),
            tokens: Mutex::default(),
            seen_jtis: Mutex::default(),
            token_lifetime: Mutex::new(Duration::from_secs(3599)),
            app_throttle_next: Mutex::new((0, 1)),
        }
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
        self.tokens.lock().unwrap().retain(|_, (tenant, _)| tenant != id);
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
    let app = state.app.lock().unwrap().clone();
    let client_id = param(&form, "client_id").unwrap_or_default();
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
    let consented = state.tenants.lock().unwrap().get(&tenant).is_some_and(|t| t.consented);
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
    state.tokens.lock().unwrap().insert(value.clone(), (tenant, Instant::now() + lifetime));
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
        Some((tenant, expiry)) if *expiry > Instant::now() => Ok(tenant.clone()),
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
