//! The central Microsoft Graph connector of a tenant: onboarding through Microsoft's admin
//! consent, the connection's state, disconnecting.
//!
//! An org admin asks for the consent URL (`POST /v1/tenants/{id}/graph/consent`) and hands it to
//! the customer's Entra administrator, who consents once to the installation's multi-tenant app
//! (`[graph]` settings). Microsoft then redirects the administrator's browser to
//! `GET /v1/graph/consent/callback`, which carries no access token: its signed, single-use,
//! ten-minute `state` (`crate::consent_state`) names the organisation, the tenant and whoever
//! asked, and the Entra tenant Microsoft names is recorded as the tenant's connection. Another
//! organisation's tenant answers 404 everywhere; a forged, replayed or expired state, a declined
//! consent, or a consent from a directory other than the tenant's changes nothing.
//!
//! **Bring your own app.** A customer who will not consent to the installation's app registers
//! one in their own tenant, grants it the application permissions, and an org admin sets it here
//! (`PUT /v1/tenants/{id}/graph/app`): client id, credential (a client secret, or a certificate
//! and its RSA key in PEM), cloud and the customer's Entra tenant. The credential is sealed like
//! integration credentials and never shown: the API answers which fields are set and the
//! credential's expiry. The tenant is connected through it at once (no consent redirect) and read
//! with it, whether or not this server has an installation app; its first read says whether it
//! may (`permissions_missing`, `consent_revoked`, `credential_invalid`). `DELETE …/graph/app`
//! removes it and stops reading; consenting to the installation's app replaces it.

use actix_web::{HttpResponse, delete, get, post, put, web};
use chrono::{DateTime, SubsecRound as _, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;
use wbd_platform::graph_apps::{self, OwnAppCredential};
use wbd_store::{
    GraphAppKind, GraphAppProblem, GraphConnection, GraphConnectionState, GraphConsentOutcome,
    GraphCredentialKind, GraphOwnApp, GraphOwnAppOutcome, GraphOwnAppWrite, Tenant, TenantId, TenantScope,
};

use crate::auth::Principal;
use crate::consent_state::CONSENT_STATE_TTL;
use crate::error::{ApiError, ApiResult, ErrorCode, Problem};
use crate::responses::{
    BadRequest, Forbidden, GraphNotConfigured, NotFound, SecretsKeyMissing, Unauthenticated, Unprocessable,
};
use crate::state::AppState;

/// The state of a tenant's connection to Microsoft Graph.
#[derive(ToSchema)]
#[serde(rename_all = "snake_case")]
#[allow(dead_code)]
pub enum GraphStateName {
    NotConfigured,
    NotConnected,
    ConsentPending,
    Connected,
    ConsentRevoked,
    CredentialInvalid,
    AppCredentialInvalid,
    PermissionsMissing,
    Throttled,
}

/// Which app reads the tenant.
#[derive(ToSchema)]
#[serde(rename_all = "snake_case")]
#[allow(dead_code)]
pub enum GraphAppName {
    Installation,
    Own,
}

/// A Microsoft cloud.
#[derive(ToSchema)]
#[serde(rename_all = "snake_case")]
#[allow(dead_code)]
pub enum GraphCloudName {
    Global,
    UsGovernment,
    China,
}

/// How an own app proves who it is.
#[derive(ToSchema)]
#[serde(rename_all = "snake_case")]
#[allow(dead_code)]
pub enum GraphCredentialKindName {
    ClientSecret,
    Certificate,
}

/// A tenant's own Entra app, as the API shows it: never its credential.
#[derive(Serialize, ToSchema)]
pub struct GraphOwnAppView {
    /// The app's (client) id.
    pub client_id: String,
    /// The customer's Entra tenant the app reads (a GUID or a verified domain).
    pub entra_tenant_id: String,
    #[schema(value_type = GraphCloudName)]
    pub cloud: String,
    #[schema(value_type = GraphCredentialKindName)]
    pub credential_kind: &'static str,
    /// Which credential fields are set (`client_secret`, or `certificate` and `private_key`);
    /// their values are never shown.
    pub credentials_set: Vec<&'static str>,
    /// When the credential expires, if known (a certificate's, or the secret's as given). Within
    /// 30 days of it the tenant gets the finding `graph-app-credential-expiry`.
    pub credential_expires_at: Option<DateTime<Utc>>,
    /// Send it back as `version` to change the app only if nobody changed it meanwhile.
    pub version: i64,
    pub updated_at: DateTime<Utc>,
    /// Who set it (`api_key:<id>`).
    pub updated_by: String,
}

impl GraphOwnAppView {
    fn new(app: &GraphOwnApp) -> Self {
        GraphOwnAppView {
            client_id: app.client_id.clone(),
            entra_tenant_id: app.entra_tenant_id.clone(),
            cloud: app.cloud.clone(),
            credential_kind: app.credential_kind.as_str(),
            credentials_set: match app.credential_kind {
                GraphCredentialKind::ClientSecret => vec!["client_secret"],
                GraphCredentialKind::Certificate => vec!["certificate", "private_key"],
            },
            credential_expires_at: app.credential_expires_at,
            version: app.version,
            updated_at: app.updated_at,
            updated_by: app.updated_by.clone(),
        }
    }
}

/// A tenant's connection to Microsoft Graph: through the installation's app, or its own.
#[derive(Serialize, ToSchema)]
pub struct GraphConnectionView {
    /// `not_configured` (the server has no Graph app and the tenant none of its own),
    /// `not_connected`, `consent_pending` (a consent URL was made and can still be used),
    /// `connected`, `consent_revoked` (the tenant no longer lets the app in; connect again, or
    /// with an own app grant it consent and set it again), `credential_invalid` (the tenant's own
    /// app was refused for its credential: set the app again with a current one),
    /// `app_credential_invalid` (the installation's app was refused for its credential, for every
    /// tenant alike: the operator must fix it; see `app_problem`), `permissions_missing` (reads
    /// refused; see `missing_permissions`), `throttled` (Graph asked to wait until
    /// `throttled_until`).
    #[schema(value_type = GraphStateName)]
    pub state: &'static str,
    /// The app that reads the tenant: `installation` (consented to the installation's app) or
    /// `own` (its own app, `own_app`).
    #[schema(value_type = GraphAppName)]
    pub app: &'static str,
    /// The tenant's own app, if it has one.
    pub own_app: Option<GraphOwnAppView>,
    /// The installation's app's own problem (its credential refused), when the tenant is read
    /// with it: nothing the tenant can fix; reading resumes when the operator has.
    pub app_problem: Option<String>,
    /// The Entra tenant that consented (or the own app's).
    pub entra_tenant_id: Option<String>,
    /// The app's cloud: `global`, `us_government` or `china`.
    pub cloud: Option<String>,
    /// When the administrator consented (with an own app: when it was set).
    pub consented_at: Option<DateTime<Utc>>,
    /// Who asked for the consent, or set the own app (`api_key:<id>`).
    pub consented_by: Option<String>,
    /// Until when the consent URL last made can be used.
    pub consent_pending_until: Option<DateTime<Utc>>,
    /// Application permissions the last read was refused.
    pub missing_permissions: Vec<String>,
    /// Every application permission the reads need (least privilege).
    pub required_permissions: Vec<&'static str>,
    pub throttled_until: Option<DateTime<Utc>>,
    pub last_read_at: Option<DateTime<Utc>>,
    pub last_error: Option<String>,
    pub next_read_at: Option<DateTime<Utc>>,
    /// The tenant's test user (UPN), whose self-service password reset registration the reader
    /// reads (`PUT /v1/tenants/{id}/graph/test-user`); without one, the test-user rules stay
    /// undecided.
    pub test_user: Option<String>,
}

impl GraphConnectionView {
    fn new(
        state: &AppState,
        connection: Option<GraphConnection>,
        own_app: Option<&GraphOwnApp>,
        app_problem: Option<&GraphAppProblem>,
        pending_until: Option<DateTime<Utc>>,
        now: DateTime<Utc>,
    ) -> Self {
        let configured = state.settings.graph.enabled();
        let own = own_app.is_some() || connection.as_ref().is_some_and(|c| c.app == GraphAppKind::Own);
        // The installation's problem shows on the tenants it reads.
        let app_problem = app_problem.filter(|_| !own && configured);
        let name = match &connection {
            _ if !configured && !own => "not_configured",
            None if pending_until.is_some() => "consent_pending",
            None => "not_connected",
            Some(c) if c.state == GraphConnectionState::ConsentRevoked => "consent_revoked",
            Some(c) if c.state == GraphConnectionState::CredentialInvalid => "credential_invalid",
            Some(_) if app_problem.is_some() => "app_credential_invalid",
            Some(c) if !c.missing_permissions.is_empty() => "permissions_missing",
            Some(c) if c.throttled_until.is_some_and(|t| t > now) => "throttled",
            Some(_) => "connected",
        };
        let c = connection.as_ref();
        let cloud = match own_app {
            Some(app) => Some(app.cloud.clone()),
            None => configured.then(|| state.settings.graph.cloud().as_str().to_owned()),
        };
        GraphConnectionView {
            state: name,
            app: if own { GraphAppKind::Own.as_str() } else { GraphAppKind::Installation.as_str() },
            own_app: own_app.map(GraphOwnAppView::new),
            app_problem: app_problem.map(|p| p.problem.clone()),
            entra_tenant_id: c.map(|c| c.entra_tenant_id.clone()),
            cloud,
            consented_at: c.map(|c| c.consented_at),
            consented_by: c.map(|c| c.consented_by.clone()),
            consent_pending_until: pending_until,
            missing_permissions: c.map(|c| c.missing_permissions.clone()).unwrap_or_default(),
            required_permissions: wbd_graph::permissions::required_permissions(),
            throttled_until: c.and_then(|c| c.throttled_until),
            last_read_at: c.and_then(|c| c.last_read_at),
            last_error: c.and_then(|c| c.last_error.clone()),
            next_read_at: c.map(|c| c.next_read_at),
            test_user: c.and_then(|c| c.test_user.clone()),
        }
    }
}

/// Where the customer's administrator consents.
#[derive(Serialize, ToSchema)]
pub struct GraphConsentView {
    /// Microsoft's admin-consent page for the app; open it signed in as a Global Administrator
    /// (or Privileged Role Administrator) of the customer's tenant.
    pub consent_url: String,
    /// The URL works once, until then.
    pub expires_at: DateTime<Utc>,
    /// Where Microsoft sends the administrator back (a redirect URI of the app).
    pub redirect_uri: String,
    /// The application permissions the administrator grants.
    pub permissions: Vec<&'static str>,
}

async fn own_tenant(state: &AppState, who: &Principal, id: Uuid) -> ApiResult<(TenantScope, Tenant)> {
    let tenant =
        state.store.get_tenant(who.org, TenantId(id)).await?.ok_or_else(|| ApiError::not_found("tenant"))?;
    Ok((TenantScope { org_id: who.org.org_id, tenant_id: tenant.id }, tenant))
}

/// The view of a tenant's `connection`, with its own app and the installation app's problem.
async fn view(
    state: &AppState,
    scope: TenantScope,
    connection: Option<GraphConnection>,
    pending_until: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
) -> ApiResult<GraphConnectionView> {
    let own_app = state.store.get_graph_own_app(scope).await?;
    let problem = state.store.graph_app_problem().await?;
    Ok(GraphConnectionView::new(state, connection, own_app.as_ref(), problem.as_ref(), pending_until, now))
}

/// The consent URL for a tenant (org admins). Each call makes a new URL; it works once, within
/// ten minutes.
#[utoipa::path(tag = "graph", operation_id = "create_graph_consent", security(("bearer" = [])), params(("id" = Uuid, Path)), responses(
    (status = 200, body = GraphConsentView),
    Unauthenticated, Forbidden, NotFound, GraphNotConfigured,
))]
#[post("/v1/tenants/{id}/graph/consent")]
#[tracing::instrument(skip_all, fields(org_id = %who.org.org_id, tenant_id = %id))]
pub async fn consent(
    state: web::Data<AppState>,
    who: Principal,
    id: web::Path<Uuid>,
) -> ApiResult<HttpResponse> {
    let made = consent_url(&state, &who, id.into_inner()).await?;
    Ok(HttpResponse::Ok().json(made))
}

/// Makes the admin-consent URL of the organisation's tenant `id` (the REST route and the console
/// both ask through this): org admins only; `graph_not_configured` when this server has no app.
pub async fn consent_url(state: &AppState, who: &Principal, id: Uuid) -> ApiResult<GraphConsentView> {
    who.require_admin()?;
    let (scope, tenant) = own_tenant(state, who, id).await?;
    let graph = &state.settings.graph;
    let redirect_uri = graph.redirect_uri(&state.settings.delivery.public_url);
    let (true, Some(redirect_uri)) = (graph.enabled(), redirect_uri) else {
        return Err(ApiError::bare(ErrorCode::GraphNotConfigured));
    };
    let now = Utc::now();
    // As stored (whole microseconds), so the answer and GET …/graph agree.
    let expires_at = (now + CONSENT_STATE_TTL).trunc_subsecs(6);
    let nonce = Uuid::new_v4();
    state.store.create_graph_consent_request(scope, nonce, &who.actor(), expires_at, now).await?;
    let signed = state.consent_states.sign(scope, nonce, expires_at);
    let authority = reqwest_url(&graph.authority_url())?;
    let graph_base = reqwest_url(&graph.graph_url())?;
    let directory = tenant.entra_tenant_id.as_deref().unwrap_or("organizations");
    let url = wbd_graph::admin_consent_url(
        &authority,
        directory,
        graph.client_id.trim(),
        &graph_base,
        &redirect_uri,
        &signed,
    );
    tracing::info!(tenant_id = %scope.tenant_id, "Graph consent URL made");
    Ok(GraphConsentView {
        consent_url: url.to_string(),
        expires_at,
        redirect_uri,
        permissions: wbd_graph::permissions::required_permissions(),
    })
}

fn reqwest_url(text: &str) -> ApiResult<wbd_graph::Url> {
    wbd_graph::Url::parse(text).map_err(ApiError::internal)
}

/// What Microsoft's redirect carries.
#[derive(Deserialize, IntoParams)]
pub struct ConsentCallback {
    /// The state `POST /v1/tenants/{id}/graph/consent` made.
    pub state: Option<String>,
    /// The Entra tenant whose administrator consented.
    pub tenant: Option<String>,
    /// `True` when consent was granted.
    pub admin_consent: Option<String>,
    /// Set when consent was not granted (e.g. `access_denied`).
    pub error: Option<String>,
    pub error_description: Option<String>,
}

/// Microsoft's redirect after the administrator's consent (no access token: the `state`
/// authenticates). Connects the tenant the state names to the Entra tenant Microsoft names.
#[utoipa::path(tag = "graph", operation_id = "graph_consent_callback", params(ConsentCallback), responses(
    (status = 200, body = GraphConnectionView),
    (status = 400, description = "`consent_state_invalid` (forged, used already or expired), `consent_declined` (the administrator did not consent; `detail` says Microsoft's reason) or `validation_failed`", body = Problem, content_type = "application/problem+json"),
    (status = 409, description = "`graph_tenant_mismatch`: the administrator consented in another Entra tenant than the tenant's own", body = Problem, content_type = "application/problem+json"),
))]
#[get("/v1/graph/consent/callback")]
#[tracing::instrument(skip_all)]
pub async fn callback(state: web::Data<AppState>, q: web::Query<ConsentCallback>) -> ApiResult<HttpResponse> {
    let invalid_state = || {
        ApiError::new(
            ErrorCode::ConsentStateInvalid,
            "the state is not one this server made, was used, or expired",
        )
    };
    let verified =
        q.state.as_deref().and_then(|s| state.consent_states.verify(s)).ok_or_else(invalid_state)?;
    let scope = verified.scope;
    let now = Utc::now();
    let tenant = state
        .store
        .get_tenant(wbd_store::OrgScope { org_id: scope.org_id }, scope.tenant_id)
        .await?
        .ok_or_else(invalid_state)?;
    if let Some(error) = q.error.as_deref() {
        return match state.store.complete_graph_consent(scope, verified.nonce, None, now).await? {
            GraphConsentOutcome::StateUnusable => Err(invalid_state()),
            _ => {
                let description = q.error_description.as_deref().unwrap_or("").lines().next().unwrap_or("");
                tracing::info!(tenant_id = %scope.tenant_id, error, "Graph consent declined");
                Err(ApiError::new(
                    ErrorCode::ConsentDeclined,
                    format!("Microsoft answered {error}: {description}").trim_end_matches(": ").to_owned(),
                ))
            }
        };
    }
    let granted = q.admin_consent.as_deref().is_some_and(|a| a.eq_ignore_ascii_case("true"));
    let entra = q.tenant.as_deref().map(str::trim).and_then(|t| Uuid::parse_str(t).ok());
    let (true, Some(entra)) = (granted, entra) else {
        return Err(ApiError::new(
            ErrorCode::Validation,
            "the redirect carries neither admin_consent=True with the Entra tenant id (`tenant`) nor an error",
        ));
    };
    let entra = entra.to_string();
    if let Some(own) = tenant.entra_tenant_id.as_deref()
        && !own.eq_ignore_ascii_case(&entra)
    {
        return Err(ApiError::new(
            ErrorCode::GraphTenantMismatch,
            format!("the administrator consented in Entra tenant {entra}, but this tenant is {own}"),
        ));
    }
    match state.store.complete_graph_consent(scope, verified.nonce, Some(&entra), now).await? {
        GraphConsentOutcome::Connected(connection) => {
            tracing::info!(tenant_id = %scope.tenant_id, entra_tenant_id = %entra, "tenant connected to Graph");
            Ok(HttpResponse::Ok().json(view(&state, scope, Some(*connection), None, now).await?))
        }
        _ => Err(invalid_state()),
    }
}

/// The tenant's connection to Microsoft Graph.
#[utoipa::path(tag = "graph", operation_id = "get_graph_connection", security(("bearer" = [])), params(("id" = Uuid, Path)), responses(
    (status = 200, body = GraphConnectionView),
    Unauthenticated, NotFound,
))]
#[get("/v1/tenants/{id}/graph")]
#[tracing::instrument(skip_all, fields(org_id = %who.org.org_id, tenant_id = %id))]
pub async fn get(state: web::Data<AppState>, who: Principal, id: web::Path<Uuid>) -> ApiResult<HttpResponse> {
    Ok(HttpResponse::Ok().json(connection_of(&state, &who, id.into_inner()).await?))
}

/// The connection of the organisation's tenant `id` (the REST route and the console both read
/// it through this).
pub async fn connection_of(state: &AppState, who: &Principal, id: Uuid) -> ApiResult<GraphConnectionView> {
    let (scope, _) = own_tenant(state, who, id).await?;
    let now = Utc::now();
    let connection = state.store.get_graph_connection(scope).await?;
    let pending = match &connection {
        None => state.store.pending_graph_consent(scope, now).await?.map(|p| p.expires_at),
        Some(_) => None,
    };
    view(state, scope, connection, pending, now).await
}

/// Disconnect the tenant from Microsoft Graph (org admins): central reads stop, a consent
/// pending is withdrawn and the tenant's own app, if it has one, is forgotten; recorded in the
/// audit log. Remove the app in the customer's tenant
/// (Enterprise applications) to revoke its permissions there too.
#[utoipa::path(tag = "graph", operation_id = "delete_graph_connection", security(("bearer" = [])), params(("id" = Uuid, Path)), responses(
    (status = 204, description = "Disconnected"),
    Unauthenticated, Forbidden,
    (status = 404, description = "`not_found` (no such tenant) or `graph_not_connected`", body = Problem, content_type = "application/problem+json"),
))]
#[delete("/v1/tenants/{id}/graph")]
#[tracing::instrument(skip_all, fields(org_id = %who.org.org_id, tenant_id = %id))]
pub async fn disconnect(
    state: web::Data<AppState>,
    who: Principal,
    id: web::Path<Uuid>,
) -> ApiResult<HttpResponse> {
    disconnect_tenant(&state, &who, id.into_inner()).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// Disconnects the organisation's tenant `id` (the REST route and the console both disconnect
/// through this): org admins only; `graph_not_connected` when there is nothing to end.
pub async fn disconnect_tenant(state: &AppState, who: &Principal, id: Uuid) -> ApiResult<()> {
    who.require_admin()?;
    let (scope, _) = own_tenant(state, who, id).await?;
    if !state.store.delete_graph_connection(scope, &who.actor(), Utc::now()).await? {
        return Err(ApiError::new(
            ErrorCode::GraphNotConnected,
            "the tenant is not connected to Microsoft Graph",
        ));
    }
    tracing::info!(tenant_id = %scope.tenant_id, "tenant disconnected from Graph");
    Ok(())
}

/// The tenant's test user for the central reader.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct GraphTestUserBody {
    /// The user's UPN (`sspr.test@contoso.com`): one `@` with something on each side, no
    /// white space or control characters; `null` clears it.
    #[schema(
        pattern = r"^[^@\x00-\x20\x7f-\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000\ufeff]+@[^@\x00-\x20\x7f-\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000\ufeff]+$",
        max_length = 256
    )]
    pub user_principal_name: Option<String>,
}

/// A character a UPN may hold: the schema's pattern, written out so that it means the same in
/// every regular-expression dialect (no `\s`, whose members differ between them).
fn upn_char(c: char) -> bool {
    !matches!(
        c,
        '@' | '\0'..=' '
            | '\u{7f}'..='\u{a0}'
            | '\u{1680}'
            | '\u{2000}'..='\u{200a}'
            | '\u{2028}'
            | '\u{2029}'
            | '\u{202f}'
            | '\u{205f}'
            | '\u{3000}'
            | '\u{feff}'
    )
}

/// The longest UPN Entra accepts (113 characters before the `@`, 256 in all).
const MAX_UPN_LEN: usize = 256;

/// Set the tenant's test user (org admins): the reader reads that user's self-service password
/// reset registration, as a collector's Graph probe reads `probes.graph.test_user`, and reads the
/// tenant again at once. Recorded in the audit log.
#[utoipa::path(tag = "graph", operation_id = "set_graph_test_user", security(("bearer" = [])), params(("id" = Uuid, Path)),
    request_body = GraphTestUserBody, responses(
    (status = 200, body = GraphConnectionView),
    BadRequest, Unauthenticated, Forbidden, Unprocessable,
    (status = 404, description = "`not_found` (no such tenant) or `graph_not_connected`", body = Problem, content_type = "application/problem+json"),
))]
#[put("/v1/tenants/{id}/graph/test-user")]
#[tracing::instrument(skip_all, fields(org_id = %who.org.org_id, tenant_id = %id))]
pub async fn set_test_user(
    state: web::Data<AppState>,
    who: Principal,
    id: web::Path<Uuid>,
    body: web::Json<GraphTestUserBody>,
) -> ApiResult<HttpResponse> {
    who.require_admin()?;
    let (scope, _) = own_tenant(&state, &who, id.into_inner()).await?;
    let upn = body.into_inner().user_principal_name;
    if let Some(upn) = &upn {
        // What the schema says, exactly: a value it refuses is refused here and the other way round.
        let valid = upn.chars().count() <= MAX_UPN_LEN
            && upn.split_once('@').is_some_and(|(user, domain)| {
                !user.is_empty() && !domain.is_empty() && user.chars().chain(domain.chars()).all(upn_char)
            });
        if !valid {
            return Err(ApiError::new(
                ErrorCode::Validation,
                "user_principal_name must be a user principal name such as sspr.test@contoso.com",
            ));
        }
    }
    let now = Utc::now();
    let Some(connection) = state.store.set_graph_test_user(scope, upn.as_deref(), &who.actor(), now).await?
    else {
        return Err(ApiError::new(
            ErrorCode::GraphNotConnected,
            "the tenant is not connected to Microsoft Graph",
        ));
    };
    Ok(HttpResponse::Ok().json(view(&state, scope, Some(connection), None, now).await?))
}

/// The tenant's own Entra app: set or replace it (a new credential, say) whole.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct GraphOwnAppBody {
    /// The app's (client) id, as its app registration shows it (a GUID).
    #[schema(pattern = r"^[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}$")]
    pub client_id: String,
    /// The customer's Entra tenant: its id (a GUID) or one of its verified domains
    /// (`contoso.com`).
    #[schema(
        pattern = r"^([0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}|([0-9A-Za-z]([0-9A-Za-z-]{0,61}[0-9A-Za-z])?\.)+[A-Za-z]{2,63})$",
        max_length = 253
    )]
    pub entra_tenant_id: String,
    /// The app's cloud; absent or `null`: `global`.
    #[schema(value_type = Option<GraphCloudName>)]
    pub cloud: Option<String>,
    /// The app's client secret. Give either this or `certificate` with `private_key`
    /// (preferred).
    #[schema(min_length = 1, max_length = 256)]
    pub client_secret: Option<String>,
    /// When the client secret expires, as the app registration shows it (a certificate says it
    /// itself): within 30 days of it the tenant gets the finding `graph-app-credential-expiry`.
    pub client_secret_expires_at: Option<DateTime<Utc>>,
    /// The certificate uploaded to the app registration, PEM (`-----BEGIN CERTIFICATE-----`).
    #[schema(max_length = 16384)]
    pub certificate: Option<String>,
    /// The certificate's RSA private key (2048 to 8192 bits), PEM, PKCS#8 or PKCS#1; it must
    /// belong to `certificate`. Client assertions are signed PS256.
    #[schema(max_length = 16384)]
    pub private_key: Option<String>,
    /// The version you saw (`own_app.version`); if the app changed since, or there is none,
    /// nothing changes (409 `graph_app_changed`). Absent: set it whatever is there.
    pub version: Option<i64>,
}

/// Longest client secret (Entra's are 40 characters).
const MAX_SECRET_LEN: usize = 256;
/// Longest PEM text of a certificate or a key (an 8192-bit key in PKCS#8 is about 6,400).
const MAX_PEM_LEN: usize = 16_384;
/// Longest domain name.
const MAX_DOMAIN_LEN: usize = 253;

/// `8-4-4-4-12` hexadecimal digits, as the schema's pattern says (no braces, no URN).
fn is_guid(text: &str) -> bool {
    let groups: Vec<&str> = text.split('-').collect();
    groups.len() == 5
        && groups
            .iter()
            .zip([8, 4, 4, 4, 12])
            .all(|(g, len)| g.len() == len && g.chars().all(|c| c.is_ascii_hexdigit()))
}

/// A DNS name of at least two labels, as the schema's pattern says: labels of 1–63 letters,
/// digits and hyphens, neither starting nor ending with a hyphen; the last 2–63 letters.
fn is_domain(text: &str) -> bool {
    let labels: Vec<&str> = text.split('.').collect();
    let Some((last, rest)) = labels.split_last() else { return false };
    !rest.is_empty()
        && (2..=63).contains(&last.len())
        && last.chars().all(|c| c.is_ascii_alphabetic())
        && rest.iter().all(|label| {
            (1..=63).contains(&label.len())
                && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}

fn invalid(field: &str, detail: impl Into<String>) -> ApiError {
    let detail = detail.into();
    ApiError::new(ErrorCode::Validation, format!("{field}: {detail}"))
        .with_errors(serde_json::json!([{ "pointer": format!("/{field}"), "detail": detail }]))
}

/// What a valid body sets: the app (credential not yet sealed) and its credential.
struct CheckedOwnApp {
    client_id: String,
    entra_tenant_id: String,
    cloud: wbd_graph::Cloud,
    kind: GraphCredentialKind,
    expires_at: Option<DateTime<Utc>>,
    credential: OwnAppCredential,
}

/// Checks a body in full, as the schema says and beyond (a certificate must be one, and its key
/// must belong to it), before anything is stored.
fn check_own_app(body: GraphOwnAppBody) -> ApiResult<CheckedOwnApp> {
    if !is_guid(&body.client_id) {
        return Err(invalid(
            "client_id",
            "must be the app's (client) id, a GUID such as 5f0c1a2b-0000-4000-8000-00000000a11a",
        ));
    }
    let entra = &body.entra_tenant_id;
    if entra.chars().count() > MAX_DOMAIN_LEN || !(is_guid(entra) || is_domain(entra)) {
        return Err(invalid(
            "entra_tenant_id",
            "must be the customer's Entra tenant id (a GUID) or one of its verified domains (contoso.com)",
        ));
    }
    let cloud = match body.cloud.as_deref() {
        None => wbd_graph::Cloud::Global,
        // Exactly the schema's names: no trimming.
        Some(name) => wbd_graph::Cloud::ALL
            .into_iter()
            .find(|c| c.as_str() == name)
            .ok_or_else(|| invalid("cloud", "must be global, us_government or china"))?,
    };
    let (kind, expires_at, credential) = match (body.client_secret, body.certificate, body.private_key) {
        (Some(secret), None, None) => {
            let len = secret.chars().count();
            if len == 0 || len > MAX_SECRET_LEN {
                return Err(invalid("client_secret", format!("must be 1 to {MAX_SECRET_LEN} characters")));
            }
            (
                GraphCredentialKind::ClientSecret,
                body.client_secret_expires_at,
                OwnAppCredential::ClientSecret { secret },
            )
        }
        (None, Some(certificate), Some(private_key)) => {
            if body.client_secret_expires_at.is_some() {
                return Err(invalid(
                    "client_secret_expires_at",
                    "goes with client_secret only: a certificate says when it expires",
                ));
            }
            for (field, text) in [("certificate", &certificate), ("private_key", &private_key)] {
                if text.chars().count() > MAX_PEM_LEN {
                    return Err(invalid(field, format!("must be at most {MAX_PEM_LEN} characters of PEM")));
                }
            }
            let cert = wbd_graph::CertificateCredential::from_pem(
                certificate.as_bytes(),
                private_key.as_bytes(),
                wbd_graph::AssertionAlgorithm::Ps256,
            )
            .map_err(|e| {
                let field = match e {
                    wbd_graph::CredentialError::NoCertificate
                    | wbd_graph::CredentialError::BadCertificate(_) => "certificate",
                    _ => "private_key",
                };
                invalid(field, e.to_string())
            })?;
            (
                GraphCredentialKind::Certificate,
                cert.not_after(),
                OwnAppCredential::Certificate { certificate, private_key },
            )
        }
        (None, None, None) => {
            return Err(invalid(
                "client_secret",
                "give the app's credential: client_secret, or certificate with private_key",
            ));
        }
        (Some(_), _, _) => {
            return Err(invalid(
                "client_secret",
                "give either client_secret or certificate with private_key, not both",
            ));
        }
        (None, Some(_), None) => return Err(invalid("private_key", "is required with certificate")),
        (None, None, Some(_)) => return Err(invalid("certificate", "is required with private_key")),
    };
    Ok(CheckedOwnApp {
        client_id: body.client_id,
        entra_tenant_id: body.entra_tenant_id,
        cloud,
        kind,
        expires_at,
        credential,
    })
}

/// Set (or replace) the tenant's own Entra app (org admins): the tenant is then read with it,
/// at once and without a consent redirect (the customer's administrator granted the app its
/// application permissions in their tenant: the ones `required_permissions` lists). The
/// credential is sealed and never shown. Recorded in the audit log (without the credential).
#[utoipa::path(tag = "graph", operation_id = "set_graph_app", security(("bearer" = [])), params(("id" = Uuid, Path)),
    request_body = GraphOwnAppBody, responses(
    (status = 200, body = GraphConnectionView),
    BadRequest, Unauthenticated, Forbidden, NotFound,
    (status = 409, description = "`graph_app_changed` (the app is not at the `version` sent) or `graph_tenant_mismatch` (the tenant's Entra tenant id is another)", body = Problem, content_type = "application/problem+json"),
    Unprocessable, SecretsKeyMissing,
))]
#[put("/v1/tenants/{id}/graph/app")]
#[tracing::instrument(skip_all, fields(org_id = %who.org.org_id, tenant_id = %id))]
pub async fn set_app(
    state: web::Data<AppState>,
    who: Principal,
    id: web::Path<Uuid>,
    body: web::Json<GraphOwnAppBody>,
) -> ApiResult<HttpResponse> {
    let shown = set_own_app(&state, &who, id.into_inner(), body.into_inner()).await?;
    Ok(HttpResponse::Ok().json(shown))
}

/// Sets the own app of the organisation's tenant `id` (the REST route, and any other door, go
/// through this): org admins only, checked in full before anything is stored.
pub async fn set_own_app(
    state: &AppState,
    who: &Principal,
    id: Uuid,
    body: GraphOwnAppBody,
) -> ApiResult<GraphConnectionView> {
    who.require_admin()?;
    let (scope, tenant) = own_tenant(state, who, id).await?;
    let expected_version = body.version;
    let checked = check_own_app(body)?;
    if let Some(own) = tenant.entra_tenant_id.as_deref()
        && is_guid(&checked.entra_tenant_id)
        && !own.eq_ignore_ascii_case(&checked.entra_tenant_id)
    {
        return Err(ApiError::new(
            ErrorCode::GraphTenantMismatch,
            format!("the app is for Entra tenant {}, but this tenant is {own}", checked.entra_tenant_id),
        ));
    }
    let sealer = state.sealer.as_deref().ok_or_else(|| {
        ApiError::new(
            ErrorCode::SecretsKeyMissing,
            "the app's credential cannot be sealed: the operator must set delivery.secrets_key \
             (WBD_DELIVERY__SECRETS_KEY) to the base64 of 32 random bytes, the same in every process",
        )
    })?;
    let write = GraphOwnAppWrite {
        client_id: checked.client_id.to_ascii_lowercase(),
        entra_tenant_id: checked.entra_tenant_id,
        cloud: checked.cloud.as_str().to_owned(),
        credential_kind: checked.kind,
        credential_expires_at: checked.expires_at.map(|t| t.trunc_subsecs(6)),
        sealed_credential: graph_apps::seal(sealer, scope, &checked.credential),
    };
    let now = Utc::now();
    match state.store.set_graph_own_app(scope, expected_version, &write, &who.actor(), now).await? {
        GraphOwnAppOutcome::Set { app, connection } => {
            tracing::info!(tenant_id = %scope.tenant_id, client_id = %app.client_id, version = app.version, "tenant's own Graph app set");
            let problem = state.store.graph_app_problem().await?;
            Ok(GraphConnectionView::new(state, Some(*connection), Some(&app), problem.as_ref(), None, now))
        }
        GraphOwnAppOutcome::Changed { current_version } => Err(ApiError::new(
            ErrorCode::GraphAppChanged,
            match current_version {
                Some(current) => format!(
                    "the app changed meanwhile (it is at version {current}, the change was made from version {}); reload it and try again",
                    expected_version.unwrap_or_default()
                ),
                None => "the tenant has no own app (it was removed meanwhile); send no version to set one"
                    .to_owned(),
            },
        )),
    }
}

/// Remove the tenant's own app (org admins): reading with it stops and its credential is
/// forgotten; recorded in the audit log. To read the tenant again, set an app again or connect
/// it to the installation's app.
#[utoipa::path(tag = "graph", operation_id = "delete_graph_app", security(("bearer" = [])), params(("id" = Uuid, Path)), responses(
    (status = 204, description = "Removed"),
    Unauthenticated, Forbidden,
    (status = 404, description = "`not_found` (no such tenant) or `graph_app_not_set`", body = Problem, content_type = "application/problem+json"),
))]
#[delete("/v1/tenants/{id}/graph/app")]
#[tracing::instrument(skip_all, fields(org_id = %who.org.org_id, tenant_id = %id))]
pub async fn delete_app(
    state: web::Data<AppState>,
    who: Principal,
    id: web::Path<Uuid>,
) -> ApiResult<HttpResponse> {
    who.require_admin()?;
    let (scope, _) = own_tenant(&state, &who, id.into_inner()).await?;
    if !state.store.delete_graph_own_app(scope, &who.actor(), Utc::now()).await? {
        return Err(ApiError::new(ErrorCode::GraphAppNotSet, "the tenant has no own Graph app"));
    }
    tracing::info!(tenant_id = %scope.tenant_id, "tenant's own Graph app removed");
    Ok(HttpResponse::NoContent().finish())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guids_and_domains_are_what_the_schema_says() {
        assert!(is_guid("84b7c5e1-0000-4000-8000-000000000001"));
        assert!(is_guid("84B7C5E1-0000-4000-8000-00000000000A"));
        for bad in [
            "{84b7c5e1-0000-4000-8000-000000000001}",
            "84b7c5e100004000800000000000001",
            "84b7c5e1-0000-4000-8000-00000000000g",
            "",
        ] {
            assert!(!is_guid(bad), "{bad}");
        }
        for good in ["contoso.com", "contoso.onmicrosoft.com", "a-b.c1.io", "x.co"] {
            assert!(is_domain(good), "{good}");
        }
        for bad in [
            "contoso",
            "-contoso.com",
            "contoso-.com",
            "contoso.c0m",
            "contoso..com",
            "contoso.com.",
            ".com",
            "con toso.com",
            "contoso.c",
        ] {
            assert!(!is_domain(bad), "{bad}");
        }
    }
}
