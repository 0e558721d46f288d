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

use actix_web::{HttpResponse, delete, get, post, put, web};
use chrono::{DateTime, SubsecRound as _, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;
use wbd_store::{GraphConnection, GraphConnectionState, GraphConsentOutcome, Tenant, TenantId, TenantScope};

use crate::auth::Principal;
use crate::consent_state::CONSENT_STATE_TTL;
use crate::error::{ApiError, ApiResult, ErrorCode, Problem};
use crate::responses::{BadRequest, Forbidden, GraphNotConfigured, NotFound, Unauthenticated, Unprocessable};
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
    PermissionsMissing,
    Throttled,
}

/// A tenant's connection to the installation's Microsoft Graph app.
#[derive(Serialize, ToSchema)]
pub struct GraphConnectionView {
    /// `not_configured` (the server has no Graph app), `not_connected`, `consent_pending` (a
    /// consent URL was made and can still be used), `connected`, `consent_revoked` (the tenant
    /// no longer lets the app in; connect again), `permissions_missing` (reads refused; see
    /// `missing_permissions`), `throttled` (Graph asked to wait until `throttled_until`).
    #[schema(value_type = GraphStateName)]
    pub state: &'static str,
    /// The Entra tenant that consented.
    pub entra_tenant_id: Option<String>,
    /// The app's cloud: `global`, `us_government` or `china`.
    pub cloud: Option<String>,
    pub consented_at: Option<DateTime<Utc>>,
    /// Who asked for the consent (`api_key:<id>`).
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
        pending_until: Option<DateTime<Utc>>,
        now: DateTime<Utc>,
    ) -> Self {
        let configured = state.settings.graph.enabled();
        let name = match &connection {
            _ if !configured => "not_configured",
            None if pending_until.is_some() => "consent_pending",
            None => "not_connected",
            Some(c) if c.state == GraphConnectionState::ConsentRevoked => "consent_revoked",
            Some(c) if !c.missing_permissions.is_empty() => "permissions_missing",
            Some(c) if c.throttled_until.is_some_and(|t| t > now) => "throttled",
            Some(_) => "connected",
        };
        let c = connection.as_ref();
        GraphConnectionView {
            state: name,
            entra_tenant_id: c.map(|c| c.entra_tenant_id.clone()),
            cloud: configured.then(|| state.settings.graph.cloud().as_str().to_owned()),
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
            Ok(HttpResponse::Ok().json(GraphConnectionView::new(&state, Some(*connection), None, now)))
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
    Ok(GraphConnectionView::new(state, connection, pending, now))
}

/// Disconnect the tenant from Microsoft Graph (org admins): central reads stop and a consent
/// pending is withdrawn; recorded in the audit log. Remove the app in the customer's tenant
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
    Ok(HttpResponse::Ok().json(GraphConnectionView::new(&state, Some(connection), None, now)))
}
