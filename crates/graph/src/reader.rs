//! The Graph reader: one app, any number of tenants that consented to it, one token per tenant
//! kept until shortly before it expires.
//!
//! Reads (v1.0): `subscribedSkus` (licences, aggregated by service plan), `organization` (sync
//! enabled, last sync), `policies/authorizationPolicy` (`allowedToUseSSPR`),
//! `reports/authenticationMethods/userRegistrationDetails` for the test user and for the
//! administrators, the members of the admin roles that matter for writeback with whether each is
//! synced from on-premises, and how those admins' domains sign in (`domains/{id}`).
//! Collections are followed through `@odata.nextLink` (only on the Graph host: the token is
//! never sent elsewhere); a 429 or 503 is retried after its `Retry-After`.
//!
//! Each read that fails leaves its fact `None` and adds an entry to `errors` (a 403 names the
//! application permission the app lacks); a failed token request fails the whole report
//! (`failure`).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use reqwest::{StatusCode, Url};
use serde_json::Value;
use tokio::sync::Mutex;
use wbd_wire::{
    AdminRoleMembers, DomainAuthentication, GraphCallError, GraphReport, OrganizationSync, RoleMember,
    ServicePlanLicences, UserRegistration,
};

use crate::credential::{ClientCredential, JWT_BEARER};
use crate::permissions::permission_for;

/// Built-in directory roles whose members matter for writeback (template ids).
pub const ADMIN_ROLES: [(&str, &str); 6] = [
    ("62e90394-69f5-4237-9190-012177145e10", "Global Administrator"),
    ("8ac3fc64-6eca-42ea-9e69-59f4c7b60eb2", "Hybrid Identity Administrator"),
    ("966707d0-3269-4727-9be2-8c3a10f19b9d", "Password Administrator"),
    ("729827e3-9c14-49f7-bb1b-9608f156bbb8", "Helpdesk Administrator"),
    ("fe930be7-5e62-47db-91af-98c3a49a38b1", "User Administrator"),
    ("c4e39bd9-1100-46d3-8c65-fb160da0071f", "Authentication Administrator"),
];

/// Retries of one request after 429/503 before giving up.
const MAX_THROTTLE_RETRIES: u32 = 5;
/// Longest single wait a `Retry-After` may impose on a read.
const MAX_THROTTLE_WAIT: Duration = Duration::from_secs(120);
/// Most pages followed for one collection.
const MAX_PAGES: usize = 100;
/// Role members looked up, per role.
const MAX_MEMBER_LOOKUPS: usize = 50;
/// Requests in one `$batch` (Graph's limit).
const MAX_BATCH: usize = 20;
/// Longest a token is kept, whatever its `expires_in` says (Entra's live for about an hour).
pub const MAX_TOKEN_LIFETIME: Duration = Duration::from_secs(24 * 3_600);
/// A token this close to its expiry is renewed rather than used.
const TOKEN_MARGIN: Duration = Duration::from_secs(300);

/// The app that reads: who it is, how it proves it, and where it talks.
#[derive(Debug, Clone)]
pub struct GraphApp {
    pub client_id: String,
    pub credential: ClientCredential,
    /// `https://login.microsoftonline.com` (or a national cloud's, see [`crate::Cloud`]).
    pub authority: Url,
    /// `https://graph.microsoft.com` (or a national cloud's).
    pub graph_base_url: Url,
    /// Time limit of each request.
    pub timeout: Duration,
    /// The settings that configure the app, named when the token endpoint refuses it
    /// (e.g. `probes.graph.client_id / client_secret`).
    pub settings_hint: String,
    /// When the client secret expires, as configured (a certificate says it itself).
    pub secret_expires_at: Option<DateTime<Utc>>,
}

impl GraphApp {
    /// When the credential the app reads with expires, if known: the certificate's `notAfter`,
    /// or the secret's configured expiry.
    pub fn credential_expires_at(&self) -> Option<DateTime<Utc>> {
        match &self.credential {
            ClientCredential::Certificate(cert) => cert.not_after(),
            ClientCredential::Secret(_) => self.secret_expires_at,
        }
    }
}

#[derive(Debug, Clone)]
struct CachedToken {
    token: String,
    expires_at: Instant,
}

/// Reads tenants through one app; keeps each tenant's access token between reads until shortly
/// before it expires. Cheap to clone (the cache is shared).
#[derive(Debug, Clone)]
pub struct GraphReader {
    app: Arc<GraphApp>,
    client: reqwest::Client,
    tokens: Arc<Mutex<HashMap<String, CachedToken>>>,
    /// Until when the whole app waits: Graph throttled it across all tenants (`x-ms-throttle-scope:
    /// Application/…`), or the token endpoint throttled it. Shared by every clone, so by every
    /// read in flight.
    app_pause: Arc<std::sync::Mutex<Option<Instant>>>,
}

/// A failed call, before it is named.
#[derive(Clone)]
struct CallFailure {
    status: Option<u16>,
    code: Option<String>,
    message: String,
}

impl CallFailure {
    fn local(message: String) -> Self {
        CallFailure { status: None, code: None, message }
    }
}

impl GraphReader {
    pub fn new(app: GraphApp, client: reqwest::Client) -> Self {
        GraphReader { app: Arc::new(app), client, tokens: Arc::default(), app_pause: Arc::default() }
    }

    /// Until when Graph asked the whole app to wait, if it still does.
    pub fn app_paused_until(&self) -> Option<Instant> {
        let pause = *self.app_pause.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        pause.filter(|until| *until > Instant::now())
    }

    /// Every read of the app waits `wait` from now (a later pause already set stays).
    fn pause_app(&self, wait: Duration) {
        let until = Instant::now() + wait;
        let mut pause = self.app_pause.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if pause.is_none_or(|current| current < until) {
            *pause = Some(until);
        }
    }

    /// Waits out an app-wide pause (one set meanwhile is waited out too).
    async fn wait_for_app(&self) {
        while let Some(until) = self.app_paused_until() {
            tokio::time::sleep_until(until.into()).await;
        }
    }

    pub fn app(&self) -> &GraphApp {
        &self.app
    }

    /// Forgets a tenant's token (after its consent was revoked, say).
    pub async fn forget_token(&self, tenant: &str) {
        self.tokens.lock().await.remove(tenant);
    }

    /// Reads one tenant (`tenant`: its Entra tenant id or a verified domain). `test_user`: the
    /// UPN whose `userRegistrationDetails` to read.
    ///
    /// A cached token Graph answers 401 is dropped and the tenant read once more with a fresh
    /// one: only the token endpoint's answer then says whether the tenant still lets the app in
    /// (`access_refused`), so a token revoked early or a key rolled over costs one retry, not a
    /// false "consent revoked".
    #[tracing::instrument(skip_all, fields(tenant = %tenant))]
    pub async fn read(&self, tenant: &str, test_user: Option<&str>) -> GraphReport {
        let empty = || GraphReport {
            tenant: tenant.to_owned(),
            graph_base_url: self.app.graph_base_url.as_str().trim_end_matches('/').to_owned(),
            service_plans: None,
            organization: None,
            allowed_to_use_sspr: None,
            test_user: None,
            admin_roles: None,
            admin_registrations: None,
            admin_domains: None,
            errors: Vec::new(),
            failure: None,
            access_refused: None,
            app_credential_expires_at: self.app.credential_expires_at(),
            own_app: false,
        };
        let mut report = empty();
        let mut cached = self.has_token(tenant).await;
        loop {
            match self.access_token(tenant).await {
                Ok(token) => {
                    self.read_all(&token, test_user, &mut report).await;
                    if cached && report.errors.iter().any(|e| e.status == Some(401)) {
                        tracing::info!("Graph refused the cached token; reading again with a fresh one");
                        self.forget_token(tenant).await;
                        report = empty();
                        cached = false;
                        continue;
                    }
                }
                Err(e) => {
                    tracing::info!(error = %e, "Graph token request failed");
                    // Refused for good, whether for the tenant or for the app's credential: the
                    // collector's own app is the site's problem either way; the central reader
                    // tells the two apart (an installation credential is nobody's tenant's).
                    report.access_refused = token_refusal(&e).map(|r| r.code().to_owned());
                    report.failure = Some(e);
                }
            }
            return report;
        }
    }

    async fn has_token(&self, tenant: &str) -> bool {
        self.tokens.lock().await.get(tenant).is_some_and(|t| t.expires_at > Instant::now() + TOKEN_MARGIN)
    }

    async fn read_all(&self, token: &str, test_user: Option<&str>, report: &mut GraphReport) {
        let mut record = |call: &str, f: CallFailure| {
            let message = match (f.status, permission_for(call)) {
                (Some(403), Some(permission)) => {
                    format!("{} (the app lacks the application permission {permission})", f.message)
                }
                _ => f.message,
            };
            report.errors.push(GraphCallError {
                call: call.to_owned(),
                status: f.status,
                code: f.code,
                message,
            })
        };
        let mut service_plans = None;
        match self.get_collection(token, self.url("v1.0/subscribedSkus", &[])).await {
            Ok(skus) => service_plans = Some(aggregate_service_plans(&skus)),
            Err(f) => record("subscribedSkus", f),
        }
        let mut organization = None;
        let org_url = self.url(
            "v1.0/organization",
            &[("$select", "id,displayName,onPremisesSyncEnabled,onPremisesLastSyncDateTime")],
        );
        match self.get_collection(token, org_url).await {
            Ok(orgs) => organization = orgs.first().map(parse_organization),
            Err(f) => record("organization", f),
        }
        let mut allowed = None;
        match self.get_json(token, self.url("v1.0/policies/authorizationPolicy", &[])).await {
            Ok(policy) => {
                // v1.0 answers with the policy itself; older answers wrapped it in `value`.
                let policy = policy.get("value").and_then(|v| v.get(0)).unwrap_or(&policy);
                allowed = policy.get("allowedToUseSSPR").and_then(Value::as_bool);
            }
            Err(f) => record("authorizationPolicy", f),
        }
        let mut test_registration = None;
        if let Some(upn) = test_user {
            let filter = format!("userPrincipalName eq '{}'", upn.replace('\'', "''"));
            let url = self
                .url("v1.0/reports/authenticationMethods/userRegistrationDetails", &[("$filter", &filter)]);
            match self.get_collection(token, url).await {
                Ok(rows) => test_registration = Some(parse_registration(upn, rows.first())),
                Err(f) => record("userRegistrationDetails", f),
            }
        }
        let mut roles = Vec::new();
        let mut roles_ok = true;
        for (id, name) in ADMIN_ROLES {
            match self.role_members(token, id).await {
                Ok(members) => roles.push(AdminRoleMembers {
                    role_template_id: id.to_owned(),
                    role_name: name.to_owned(),
                    members,
                }),
                Err(f) => {
                    roles_ok = false;
                    record(&format!("roleAssignments:{name}"), f);
                    // The same permission is missing for every role; one error says it.
                    break;
                }
            }
        }
        if roles_ok && let Err((call, f)) = self.look_up_members(token, &mut roles).await {
            roles_ok = false;
            // The same permission is missing for every user; one error says it.
            record(&call, f);
        }
        // The administrators' own registration: one filtered collection, not a read per admin.
        let mut admin_registrations = None;
        let url = self.url(
            "v1.0/reports/authenticationMethods/userRegistrationDetails",
            &[("$filter", "isAdmin eq true")],
        );
        match self.get_collection(token, url).await {
            Ok(rows) => {
                admin_registrations = Some(rows.iter().map(|row| parse_registration("", Some(row))).collect())
            }
            Err(f) => record("userRegistrationDetails:admins", f),
        }
        // How the admin users' domains sign in: a cloud admin on a federated domain is not one.
        let mut admin_domains = None;
        if roles_ok {
            let names = admin_domain_names(&roles);
            let paths: Vec<String> =
                names.iter().map(|d| format!("domains/{d}?$select=id,authenticationType")).collect();
            let mut domains = Vec::new();
            let mut domains_ok = true;
            for (domain, answer) in names.into_iter().zip(self.get_many(token, &paths).await) {
                match answer {
                    Ok(answer) => domains.push(DomainAuthentication {
                        authentication_type: answer
                            .get("authenticationType")
                            .and_then(Value::as_str)
                            .unwrap_or("unknown")
                            .to_owned(),
                        id: domain,
                    }),
                    Err(f) => {
                        record(&format!("domains:{domain}"), f);
                        // The same permission is missing for every domain; one error says it.
                        domains_ok = false;
                        break;
                    }
                }
            }
            admin_domains = domains_ok.then_some(domains);
        }
        report.service_plans = service_plans;
        report.organization = organization;
        report.allowed_to_use_sspr = allowed;
        report.test_user = test_registration;
        report.admin_roles = roles_ok.then_some(roles);
        report.admin_registrations = admin_registrations;
        report.admin_domains = admin_domains;
    }

    /// A role's members as the assignments (with `principal` expanded) name them.
    async fn role_members(&self, token: &str, role_id: &str) -> Result<Vec<RoleMember>, CallFailure> {
        let filter = format!("roleDefinitionId eq '{role_id}'");
        let url = self.url(
            "v1.0/roleManagement/directory/roleAssignments",
            &[("$filter", &filter), ("$expand", "principal")],
        );
        let assignments = self.get_collection(token, url).await?;
        Ok(assignments
            .iter()
            .map(|a| {
                let principal = a.get("principal");
                let text = |name: &str| principal.and_then(|p| p.get(name)).and_then(Value::as_str);
                let id =
                    text("id").or_else(|| a.get("principalId").and_then(Value::as_str)).unwrap_or_default();
                let principal_type =
                    text("@odata.type").unwrap_or("").trim_start_matches("#microsoft.graph.");
                RoleMember {
                    id: id.to_owned(),
                    principal_type: if principal_type.is_empty() { "unknown" } else { principal_type }
                        .to_owned(),
                    display_name: text("displayName").map(str::to_owned),
                    user_principal_name: text("userPrincipalName").map(str::to_owned),
                    on_premises_sync_enabled: principal
                        .and_then(|p| p.get("onPremisesSyncEnabled"))
                        .and_then(Value::as_bool),
                }
            })
            .collect())
    }

    /// `$expand=principal` returns a user's default properties only, which do not include
    /// onPremisesSyncEnabled: the users are looked up, in `$batch`es. A failure names the lookup.
    async fn look_up_members(
        &self,
        token: &str,
        roles: &mut [AdminRoleMembers],
    ) -> Result<(), (String, CallFailure)> {
        let mut ids: Vec<String> = Vec::new();
        for role in roles.iter() {
            let users = role
                .members
                .iter()
                .filter(|m| m.principal_type == "user" && m.on_premises_sync_enabled.is_none());
            for m in users.take(MAX_MEMBER_LOOKUPS) {
                if !m.id.is_empty() && !ids.contains(&m.id) {
                    ids.push(m.id.clone());
                }
            }
        }
        let paths: Vec<String> = ids
            .iter()
            .map(|id| format!("users/{id}?$select=id,displayName,userPrincipalName,onPremisesSyncEnabled"))
            .collect();
        let answers = self.get_many(token, &paths).await;
        let mut users = HashMap::new();
        for (id, answer) in ids.into_iter().zip(answers) {
            let user = answer.map_err(|f| (format!("users:{id}"), f))?;
            users.insert(id, user);
        }
        for member in roles.iter_mut().flat_map(|r| r.members.iter_mut()) {
            let Some(user) = users.get(&member.id) else { continue };
            member.on_premises_sync_enabled = user.get("onPremisesSyncEnabled").and_then(Value::as_bool);
            if member.user_principal_name.is_none() {
                member.user_principal_name =
                    user.get("userPrincipalName").and_then(Value::as_str).map(str::to_owned);
            }
        }
        Ok(())
    }

    /// The URL of `path` under `v1.0/` with its query as written.
    fn url_of(&self, path: &str) -> Option<Url> {
        let base = self.app.graph_base_url.as_str().trim_end_matches('/');
        Url::parse(&format!("{base}/v1.0/{path}")).ok()
    }

    fn url(&self, path: &str, query: &[(&str, &str)]) -> Url {
        let mut url = self.app.graph_base_url.clone();
        let base = url.path().trim_end_matches('/').to_owned();
        url.set_path(&format!("{base}/{path}"));
        if !query.is_empty() {
            url.query_pairs_mut().extend_pairs(query);
        }
        url
    }

    /// `{authority}/{tenant}/oauth2/v2.0/token`.
    pub fn token_endpoint(&self, tenant: &str) -> Url {
        let mut url = self.app.authority.clone();
        let base = url.path().trim_end_matches('/').to_owned();
        url.set_path(&format!("{base}/{tenant}/oauth2/v2.0/token"));
        url
    }

    /// The tenant's cached token, or a new one.
    async fn access_token(&self, tenant: &str) -> Result<String, String> {
        if let Some(t) = self.tokens.lock().await.get(tenant)
            && t.expires_at > Instant::now() + TOKEN_MARGIN
        {
            return Ok(t.token.clone());
        }
        let url = self.token_endpoint(tenant);
        let scope = format!("{}/.default", self.app.graph_base_url.as_str().trim_end_matches('/'));
        let mut form: Vec<(&str, String)> = vec![
            ("grant_type", "client_credentials".to_owned()),
            ("client_id", self.app.client_id.clone()),
            ("scope", scope),
        ];
        match &self.app.credential {
            ClientCredential::Secret(secret) => form.push(("client_secret", secret.expose().to_owned())),
            ClientCredential::Certificate(cert) => {
                let assertion = cert
                    .client_assertion(&self.app.client_id, url.as_str(), Utc::now())
                    .map_err(|e| format!("the client assertion cannot be made: {e}"))?;
                form.push(("client_assertion_type", JWT_BEARER.to_owned()));
                form.push(("client_assertion", assertion));
            }
        }
        let mut attempt = 0;
        let response = loop {
            self.wait_for_app().await;
            let response = self
                .client
                .post(url.clone())
                .form(&form)
                .timeout(self.app.timeout)
                .send()
                .await
                .map_err(|e| format!("token request to {url} failed: {}", error_chain(&e)))?;
            let status = response.status();
            // The identity platform throttles the app, not one tenant: everyone waits.
            if is_throttled(status) && attempt < MAX_THROTTLE_RETRIES {
                attempt += 1;
                let wait = throttle_wait(response.headers(), attempt);
                tracing::info!(%url, status = status.as_u16(), wait = ?wait, "the token endpoint asked the app to wait");
                self.pause_app(wait);
                continue;
            }
            break response;
        };
        let status = response.status();
        let body = response.bytes().await.unwrap_or_default();
        let (token, lifetime) = read_token_answer(status, &body, &self.app.settings_hint)?;
        self.tokens.lock().await.insert(
            tenant.to_owned(),
            CachedToken { token: token.clone(), expires_at: Instant::now() + lifetime },
        );
        Ok(token)
    }

    /// Every item of a collection, following `@odata.nextLink`.
    async fn get_collection(&self, token: &str, first: Url) -> Result<Vec<Value>, CallFailure> {
        let mut items = Vec::new();
        let mut next = Some(first);
        let mut pages = 0;
        while let Some(url) = next.take() {
            pages += 1;
            if pages > MAX_PAGES {
                return Err(CallFailure::local(format!("more than {MAX_PAGES} pages")));
            }
            let page = self.get_json(token, url).await?;
            if let Some(values) = page.get("value").and_then(Value::as_array) {
                items.extend(values.iter().cloned());
            }
            if let Some(link) = page.get("@odata.nextLink").and_then(Value::as_str) {
                let link = Url::parse(link)
                    .map_err(|e| CallFailure::local(format!("unusable @odata.nextLink `{link}`: {e}")))?;
                if link.origin() != self.app.graph_base_url.origin() {
                    return Err(CallFailure::local(format!(
                        "@odata.nextLink points away from the Graph host: {link}"
                    )));
                }
                next = Some(link);
            }
        }
        Ok(items)
    }

    /// One GET, retried after 429/503 as the server says.
    async fn get_json(&self, token: &str, url: Url) -> Result<Value, CallFailure> {
        self.call_json(token, url, None).await
    }

    /// GETs `paths` (under `v1.0/`, with their query) through `$batch`, at most
    /// [`MAX_BATCH`] to a batch: one round trip instead of one per path. Answers come in the
    /// order of `paths`. Requests of a batch that Graph throttled are asked again after the
    /// longest `Retry-After` among them (for the whole app when its scope is `Application`).
    async fn get_many(&self, token: &str, paths: &[String]) -> Vec<Result<Value, CallFailure>> {
        let mut answers: Vec<Option<Result<Value, CallFailure>>> = vec![None; paths.len()];
        let batch_url = self.url("v1.0/$batch", &[]);
        for start in (0..paths.len()).step_by(MAX_BATCH) {
            let mut pending: Vec<usize> = (start..(start + MAX_BATCH).min(paths.len())).collect();
            let mut attempt = 0;
            while !pending.is_empty() {
                let requests: Vec<Value> = pending
                    .iter()
                    .map(|i| serde_json::json!({"id": i.to_string(), "method": "GET", "url": format!("/{}", paths[*i])}))
                    .collect();
                let body = serde_json::json!({ "requests": requests });
                let batch = match self.call_json(token, batch_url.clone(), Some(&body)).await {
                    Ok(batch) => batch,
                    // A Graph endpoint without `$batch` (a proxy or stand-in in front of it):
                    // one request each.
                    Err(f) if matches!(f.status, Some(400 | 404 | 405 | 501)) && attempt == 0 => {
                        for i in pending {
                            let url = self.url_of(&paths[i]);
                            answers[i] = Some(match url {
                                Some(url) => self.get_json(token, url).await,
                                None => Err(CallFailure::local(format!("unusable path {}", paths[i]))),
                            });
                        }
                        break;
                    }
                    Err(f) => {
                        for i in pending {
                            answers[i] = Some(Err(f.clone()));
                        }
                        break;
                    }
                };
                let mut again = Vec::new();
                let mut wait = Duration::ZERO;
                let mut app_wide_throttle = false;
                for r in batch.get("responses").and_then(Value::as_array).into_iter().flatten() {
                    let Some(i) = r.get("id").and_then(Value::as_str).and_then(|id| id.parse::<usize>().ok())
                    else {
                        continue;
                    };
                    if !pending.contains(&i) {
                        continue;
                    }
                    let status = r.get("status").and_then(Value::as_u64).and_then(|s| u16::try_from(s).ok());
                    let status =
                        status.and_then(|s| StatusCode::from_u16(s).ok()).unwrap_or(StatusCode::BAD_GATEWAY);
                    let header = |name: &str| {
                        r.get("headers")
                            .and_then(Value::as_object)
                            .and_then(|h| h.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)))
                            .and_then(|(_, v)| v.as_str())
                    };
                    if is_throttled(status) && attempt < MAX_THROTTLE_RETRIES {
                        again.push(i);
                        let this = header("Retry-After")
                            .and_then(|v| parse_retry_after(v, Utc::now()))
                            .unwrap_or_else(|| Duration::from_secs(2u64.pow(attempt + 1)));
                        wait = wait.max(this.min(MAX_THROTTLE_WAIT));
                        app_wide_throttle |= header("x-ms-throttle-scope")
                            .and_then(|v| v.split('/').next())
                            .is_some_and(|scope| scope.eq_ignore_ascii_case("Application"));
                        continue;
                    }
                    let body = r.get("body").cloned().unwrap_or(Value::Null);
                    answers[i] =
                        Some(if status.is_success() { Ok(body) } else { Err(failure_of(status, &body)) });
                }
                for i in &pending {
                    if answers[*i].is_none() && !again.contains(i) {
                        answers[*i] =
                            Some(Err(CallFailure::local("no answer in the $batch response".to_owned())));
                    }
                }
                if again.is_empty() {
                    break;
                }
                attempt += 1;
                if app_wide_throttle {
                    tracing::info!(wait = ?wait, "Graph throttled the app across tenants in a $batch: every read waits");
                    self.pause_app(wait);
                } else {
                    tracing::info!(wait = ?wait, requests = again.len(), "Graph asked us to wait (in a $batch)");
                    tokio::time::sleep(wait).await;
                }
                pending = again;
            }
        }
        answers
            .into_iter()
            .map(|a| {
                a.unwrap_or_else(|| Err(CallFailure::local("no answer in the $batch response".to_owned())))
            })
            .collect()
    }

    /// One GET (or, with `body`, a POST of JSON), retried after 429/503 as the server says.
    async fn call_json(&self, token: &str, url: Url, body: Option<&Value>) -> Result<Value, CallFailure> {
        let mut attempt = 0;
        loop {
            self.wait_for_app().await;
            let request = match body {
                Some(body) => self.client.post(url.clone()).json(body),
                None => self.client.get(url.clone()),
            };
            let response = request
                .bearer_auth(token)
                .header("Accept", "application/json")
                .timeout(self.app.timeout)
                .send()
                .await
                .map_err(|e| CallFailure::local(error_chain(&e)))?;
            let status = response.status();
            if is_throttled(status) && attempt < MAX_THROTTLE_RETRIES {
                attempt += 1;
                let wait = throttle_wait(response.headers(), attempt);
                if app_wide(response.headers()) {
                    tracing::info!(%url, wait = ?wait, "Graph throttled the app across tenants: every read waits");
                    self.pause_app(wait);
                } else {
                    // This tenant's limit: only this read waits.
                    tracing::info!(%url, status = status.as_u16(), wait = ?wait, "Graph asked us to wait");
                    tokio::time::sleep(wait).await;
                }
                continue;
            }
            let body: Value = response.json().await.unwrap_or(Value::Null);
            if status.is_success() {
                return Ok(body);
            }
            return Err(failure_of(status, &body));
        }
    }
}

/// Graph's error answer (`{"error": {"code", "message"}}`), named.
fn failure_of(status: StatusCode, body: &Value) -> CallFailure {
    let error = body.get("error");
    CallFailure {
        status: Some(status.as_u16()),
        code: error.and_then(|e| e.get("code")).and_then(Value::as_str).map(str::to_owned),
        message: error
            .and_then(|e| e.get("message"))
            .and_then(Value::as_str)
            .map(str::to_owned)
            .unwrap_or_else(|| status.canonical_reason().unwrap_or("error").to_owned()),
    }
}

fn is_throttled(status: StatusCode) -> bool {
    status == StatusCode::TOO_MANY_REQUESTS || status == StatusCode::SERVICE_UNAVAILABLE
}

/// How long a throttled answer asks to wait: its `Retry-After`, else a backoff by attempt.
fn throttle_wait(headers: &reqwest::header::HeaderMap, attempt: u32) -> Duration {
    headers
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| parse_retry_after(v, Utc::now()))
        .unwrap_or_else(|| Duration::from_secs(2u64.pow(attempt)))
        .min(MAX_THROTTLE_WAIT)
}

/// Whether Graph throttled the app across all tenants: `x-ms-throttle-scope` is
/// `<Scope>/<Limit>/<ApplicationId>/<TenantId…>` with scope `Application` (the others,
/// `Tenant_Application` and `Tenant`, hold for one tenant).
pub fn app_wide(headers: &reqwest::header::HeaderMap) -> bool {
    headers
        .get("x-ms-throttle-scope")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split('/').next())
        .is_some_and(|scope| scope.eq_ignore_ascii_case("Application"))
}

/// The token endpoint's answer: the access token and how long it lives (at most
/// [`MAX_TOKEN_LIFETIME`], so that adding it to a clock cannot overflow), or why there is none.
/// `settings_hint` names the settings that configure the app.
pub fn read_token_answer(
    status: StatusCode,
    body: &[u8],
    settings_hint: &str,
) -> Result<(String, Duration), String> {
    let body: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    if !status.is_success() {
        let code = body.get("error").and_then(Value::as_str).unwrap_or("unknown_error");
        let description = body
            .get("error_description")
            .and_then(Value::as_str)
            .map(|d| d.lines().next().unwrap_or(d).to_owned())
            .unwrap_or_default();
        return Err(format!(
            "the token endpoint refused the app ({settings_hint}): {} {code}: {description}",
            status.as_u16()
        ));
    }
    let token = body
        .get("access_token")
        .and_then(Value::as_str)
        .ok_or_else(|| "the token endpoint answered without an access_token".to_owned())?
        .to_owned();
    let lifetime = body.get("expires_in").and_then(Value::as_u64).unwrap_or(3_599);
    Ok((token, Duration::from_secs(lifetime).min(MAX_TOKEN_LIFETIME)))
}

/// Why the identity platform refused a token for good, as opposed to a passing fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenRefusal {
    /// This tenant no longer lets the app in: consent revoked, the app or its service principal
    /// not in the tenant. Only this tenant is affected.
    ConsentGone(&'static str),
    /// The app's own credential is wrong or expired (a bad secret, an expired one, an assertion
    /// signed with a key the app registration does not have): every tenant read with the app is
    /// refused alike, so it is the app's problem, not any one tenant's.
    CredentialInvalid(&'static str),
}

impl TokenRefusal {
    /// The error code that decided it (an AADSTS code, or the OAuth error).
    pub fn code(self) -> &'static str {
        match self {
            TokenRefusal::ConsentGone(code) | TokenRefusal::CredentialInvalid(code) => code,
        }
    }
}

/// Identity-platform errors that mean this tenant no longer lets the app in.
const CONSENT_GONE: [&str; 3] = ["AADSTS65001", "AADSTS700016", "AADSTS7000229"];

/// Identity-platform errors about the app's credential itself, whichever tenant asked: an invalid
/// secret (7000215), an expired one (7000222), no credential (7000218), a client assertion whose
/// signature or key does not match the app registration (700027), that is malformed (50027,
/// 700023) or out of its time range (700024).
const CREDENTIAL_INVALID: [&str; 7] = [
    "AADSTS7000215",
    "AADSTS7000222",
    "AADSTS7000218",
    "AADSTS700027",
    "AADSTS700023",
    "AADSTS700024",
    "AADSTS50027",
];

/// How a report's token `failure` refused the app for good, if it did. The AADSTS codes come
/// first: they say more than the OAuth error they come with. Without one, `unauthorized_client`
/// is about the tenant (the app is not allowed in it) and `invalid_client` about the app's
/// credential.
pub fn token_refusal(failure: &str) -> Option<TokenRefusal> {
    // `AADSTS7000215` contains `AADSTS700021`…: match whole codes (the next character is not a
    // digit).
    let has = |code: &str| {
        failure
            .match_indices(code)
            .any(|(at, _)| !failure[at + code.len()..].starts_with(|c: char| c.is_ascii_digit()))
    };
    if let Some(code) = CONSENT_GONE.into_iter().find(|c| has(c)) {
        return Some(TokenRefusal::ConsentGone(code));
    }
    if let Some(code) = CREDENTIAL_INVALID.into_iter().find(|c| has(c)) {
        return Some(TokenRefusal::CredentialInvalid(code));
    }
    if has("unauthorized_client") {
        return Some(TokenRefusal::ConsentGone("unauthorized_client"));
    }
    if has("invalid_client") {
        return Some(TokenRefusal::CredentialInvalid("invalid_client"));
    }
    None
}

/// Whether a report's `failure` says the tenant no longer lets the app read it (not the app's
/// credential: see [`token_refusal`]).
pub fn failure_means_consent_gone(failure: &str) -> bool {
    consent_gone_code(failure).is_some()
}

/// The error code in a token failure that means the tenant no longer lets the app in.
pub fn consent_gone_code(failure: &str) -> Option<&'static str> {
    match token_refusal(failure)? {
        TokenRefusal::ConsentGone(code) => Some(code),
        TokenRefusal::CredentialInvalid(_) => None,
    }
}

/// Sums licences per service plan over the SKUs that are enabled (or in their grace period) and
/// apply to users, counting a SKU's units for a plan only where that plan is enabled in it
/// (provisioning status `Success`). SKUs for devices and rooms (`appliesTo` other than `User`, on
/// the SKU or the plan) carry P1/P2 plans too but license no user: they are only named.
pub fn aggregate_service_plans(skus: &[Value]) -> Vec<ServicePlanLicences> {
    let applies_to_users =
        |v: &Value| v.get("appliesTo").and_then(Value::as_str).is_none_or(|a| a.eq_ignore_ascii_case("User"));
    let mut plans: BTreeMap<String, ServicePlanLicences> = BTreeMap::new();
    for sku in skus {
        let capability = sku.get("capabilityStatus").and_then(Value::as_str).unwrap_or("");
        let usable = capability.eq_ignore_ascii_case("Enabled") || capability.eq_ignore_ascii_case("Warning");
        let part = sku.get("skuPartNumber").and_then(Value::as_str).unwrap_or("unknown").to_owned();
        let enabled_units =
            sku.get("prepaidUnits").and_then(|p| p.get("enabled")).and_then(Value::as_u64).unwrap_or(0);
        let consumed = sku.get("consumedUnits").and_then(Value::as_u64).unwrap_or(0);
        for plan in sku.get("servicePlans").and_then(Value::as_array).into_iter().flatten() {
            let Some(id) = plan.get("servicePlanId").and_then(Value::as_str) else { continue };
            let name = plan.get("servicePlanName").and_then(Value::as_str).unwrap_or("unknown");
            let success = plan.get("provisioningStatus").and_then(Value::as_str) == Some("Success");
            let entry = plans.entry(id.to_ascii_lowercase()).or_insert_with(|| ServicePlanLicences {
                service_plan_id: id.to_ascii_lowercase(),
                service_plan_name: name.to_owned(),
                skus: Vec::new(),
                provisioned: false,
                enabled_units: 0,
                assigned_units: 0,
                non_user_skus: Vec::new(),
            });
            if !(applies_to_users(sku) && applies_to_users(plan)) {
                if !entry.non_user_skus.contains(&part) {
                    entry.non_user_skus.push(part.clone());
                }
                continue;
            }
            if !entry.skus.contains(&part) {
                entry.skus.push(part.clone());
            }
            if usable && success {
                entry.provisioned = true;
                // Counts from the answer: a nonsense one must not overflow.
                entry.enabled_units = entry.enabled_units.saturating_add(enabled_units);
                entry.assigned_units = entry.assigned_units.saturating_add(consumed);
            }
        }
    }
    plans.into_values().collect()
}

/// Most domains looked up per read.
const MAX_DOMAIN_LOOKUPS: usize = 20;

/// The domains of the admin roles' users, lower-case, each once; names that could not be a DNS
/// name are left out (they would be put in a URL path).
fn admin_domain_names(roles: &[AdminRoleMembers]) -> Vec<String> {
    let mut names: Vec<String> = roles
        .iter()
        .flat_map(|r| r.members.iter())
        .filter(|m| m.principal_type.eq_ignore_ascii_case("user"))
        .filter_map(|m| {
            m.user_principal_name.as_deref()?.rsplit_once('@').map(|(_, d)| d.to_ascii_lowercase())
        })
        .filter(|d| !d.is_empty() && d.chars().all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-'))
        .collect();
    names.sort_unstable();
    names.dedup();
    names.truncate(MAX_DOMAIN_LOOKUPS);
    names
}

fn parse_time(v: Option<&Value>) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(v?.as_str()?).ok().map(|t| t.with_timezone(&Utc))
}

fn parse_organization(org: &Value) -> OrganizationSync {
    OrganizationSync {
        id: org.get("id").and_then(Value::as_str).unwrap_or_default().to_owned(),
        display_name: org.get("displayName").and_then(Value::as_str).map(str::to_owned),
        on_premises_sync_enabled: org.get("onPremisesSyncEnabled").and_then(Value::as_bool),
        on_premises_last_sync: parse_time(org.get("onPremisesLastSyncDateTime")),
    }
}

fn parse_registration(upn: &str, row: Option<&Value>) -> UserRegistration {
    let Some(row) = row else {
        return UserRegistration {
            user_principal_name: upn.to_owned(),
            found: false,
            is_admin: None,
            is_sspr_enabled: None,
            is_sspr_registered: None,
            is_sspr_capable: None,
            methods_registered: Vec::new(),
            last_updated: None,
        };
    };
    let flag = |name: &str| row.get(name).and_then(Value::as_bool);
    UserRegistration {
        user_principal_name: row.get("userPrincipalName").and_then(Value::as_str).unwrap_or(upn).to_owned(),
        found: true,
        is_admin: flag("isAdmin"),
        is_sspr_enabled: flag("isSsprEnabled"),
        is_sspr_registered: flag("isSsprRegistered"),
        is_sspr_capable: flag("isSsprCapable"),
        methods_registered: row
            .get("methodsRegistered")
            .and_then(Value::as_array)
            .map(|m| m.iter().filter_map(Value::as_str).map(str::to_owned).collect())
            .unwrap_or_default(),
        last_updated: parse_time(row.get("lastUpdatedDateTime")),
    }
}

/// Longest wait a `Retry-After` may ask for.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(3600);

/// `Retry-After` as seconds or an HTTP date, capped at an hour.
pub fn parse_retry_after(value: &str, now: DateTime<Utc>) -> Option<Duration> {
    let value = value.trim();
    let delay = if let Ok(secs) = value.parse::<u64>() {
        Duration::from_secs(secs)
    } else {
        let at = DateTime::parse_from_rfc2822(value).ok()?.with_timezone(&Utc);
        (at - now).to_std().unwrap_or(Duration::ZERO)
    };
    Some(delay.min(MAX_RETRY_AFTER))
}

/// An error with all its causes, `a: b: c`, each once; reqwest's top-level message alone
/// ("error sending request") does not say what went wrong.
pub fn error_chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn licences_add_up_per_service_plan_over_usable_skus() {
        let skus = serde_json::json!([
            {"skuPartNumber": "SPB", "capabilityStatus": "Enabled", "consumedUnits": 18,
             "prepaidUnits": {"enabled": 20, "suspended": 0, "warning": 0},
             "servicePlans": [{"servicePlanId": "41781FB2-BC02-4B7C-BD55-B576C07BB09D", "servicePlanName": "AAD_PREMIUM", "provisioningStatus": "Success", "appliesTo": "User"}]},
            {"skuPartNumber": "EMS", "capabilityStatus": "Suspended", "consumedUnits": 5,
             "prepaidUnits": {"enabled": 0, "suspended": 5, "warning": 0},
             "servicePlans": [{"servicePlanId": "41781fb2-bc02-4b7c-bd55-b576c07bb09d", "servicePlanName": "AAD_PREMIUM", "provisioningStatus": "Success", "appliesTo": "User"}]}
        ]);
        let plans = aggregate_service_plans(skus.as_array().unwrap());
        assert_eq!(plans.len(), 1);
        let p1 = &plans[0];
        assert_eq!(p1.service_plan_id, "41781fb2-bc02-4b7c-bd55-b576c07bb09d");
        assert_eq!(p1.skus, vec!["SPB", "EMS"]);
        assert!(p1.provisioned);
        assert_eq!((p1.enabled_units, p1.assigned_units), (20, 18));
        assert!(p1.non_user_skus.is_empty());
    }

    #[test]
    fn licence_counts_past_u64_saturate_rather_than_crash() {
        let sku = |part: &str| {
            serde_json::json!({"skuPartNumber": part, "capabilityStatus": "Enabled",
                "consumedUnits": u64::MAX, "prepaidUnits": {"enabled": u64::MAX},
                "servicePlans": [{"servicePlanId": "p", "provisioningStatus": "Success"}]})
        };
        let plans = aggregate_service_plans(&[sku("A"), sku("B")]);
        assert_eq!((plans[0].enabled_units, plans[0].assigned_units), (u64::MAX, u64::MAX));
    }

    #[test]
    fn a_token_answer_is_read_with_a_bounded_lifetime() {
        let hint = "probes.graph.client_id / client_secret";
        let answer =
            |body: serde_json::Value| read_token_answer(StatusCode::OK, body.to_string().as_bytes(), hint);
        let (token, lifetime) =
            answer(serde_json::json!({"access_token": "t", "expires_in": 3599})).expect("a token");
        assert_eq!((token.as_str(), lifetime), ("t", Duration::from_secs(3599)));
        // A lifetime no clock can add (it crashed the probe: `Instant + Duration` overflows).
        let (_, lifetime) =
            answer(serde_json::json!({"access_token": "t", "expires_in": u64::MAX})).expect("a token");
        assert_eq!(lifetime, MAX_TOKEN_LIFETIME);
        assert!(Instant::now().checked_add(lifetime).is_some());
        assert!(
            answer(serde_json::json!({"expires_in": 10})).unwrap_err().contains("without an access_token")
        );
        let refused = read_token_answer(
            StatusCode::UNAUTHORIZED,
            br#"{"error": "invalid_client", "error_description": "AADSTS7000215: Invalid client secret.\r\nTrace ID: x"}"#,
            hint,
        )
        .unwrap_err();
        assert!(refused.ends_with("401 invalid_client: AADSTS7000215: Invalid client secret."), "{refused}");
        assert!(refused.contains(hint), "{refused}");
        // A wrong secret is the app's problem, not the tenant's consent.
        assert!(!failure_means_consent_gone(&refused));
        assert_eq!(token_refusal(&refused), Some(TokenRefusal::CredentialInvalid("AADSTS7000215")));
        assert_eq!(consent_gone_code("400 unauthorized_client: no code"), Some("unauthorized_client"));
        assert!(!failure_means_consent_gone("token request to https://login failed: connection refused"));
        assert!(
            read_token_answer(StatusCode::OK, b"<html>", hint)
                .unwrap_err()
                .contains("without an access_token")
        );
    }

    #[test]
    fn a_tenant_s_consent_is_told_from_the_app_s_credential() {
        let refusal = |text: &str| token_refusal(text);
        use TokenRefusal::*;
        assert_eq!(refusal("400 invalid_grant: AADSTS65001: consent"), Some(ConsentGone("AADSTS65001")));
        assert_eq!(
            refusal("400 unauthorized_client: AADSTS700016: not found in the directory"),
            Some(ConsentGone("AADSTS700016"))
        );
        // Entra sometimes names 700016 with invalid_client: the code decides.
        assert_eq!(refusal("401 invalid_client: AADSTS700016: x"), Some(ConsentGone("AADSTS700016")));
        assert_eq!(refusal("400 invalid_client: AADSTS7000229: no SP"), Some(ConsentGone("AADSTS7000229")));
        assert_eq!(refusal("400 unauthorized_client: no code"), Some(ConsentGone("unauthorized_client")));
        assert_eq!(
            refusal("401 invalid_client: AADSTS7000222: expired secret"),
            Some(CredentialInvalid("AADSTS7000222"))
        );
        assert_eq!(
            refusal("401 invalid_client: AADSTS700027: bad signature"),
            Some(CredentialInvalid("AADSTS700027"))
        );
        assert_eq!(refusal("401 invalid_client: whatever"), Some(CredentialInvalid("invalid_client")));
        // Whole codes only: 7000215 is not 700021.
        assert_eq!(refusal("AADSTS7000215"), Some(CredentialInvalid("AADSTS7000215")));
        assert_eq!(refusal("token request failed: connection refused"), None);
        assert_eq!(refusal("500 temporarily_unavailable: AADSTS90033"), None);
    }

    #[test]
    fn retry_after_is_read_as_seconds_or_a_date() {
        let now = Utc::now();
        assert_eq!(parse_retry_after("7", now), Some(Duration::from_secs(7)));
        assert_eq!(parse_retry_after("99999", now), Some(MAX_RETRY_AFTER));
        assert_eq!(parse_retry_after("soon", now), None);
    }
}
