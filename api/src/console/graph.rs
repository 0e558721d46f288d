//! The tenant's Microsoft Graph connection on the tenant page, through the REST routes' own
//! calls (`routes::graph`): its state, and for org admins `POST /tenants/{id}/graph/consent`
//! (a page with the admin-consent link to hand to the customer's Entra administrator) and
//! `POST /tenants/{id}/graph/disconnect`. A server without a Graph app says so in a sentence and
//! offers no button. Whether the tenant is read with its own app ("bring your own app") shows
//! too; that app is set through the REST API (`PUT /v1/tenants/{id}/graph/app`), not here.

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use askama::Template;
use chrono::{DateTime, Utc};
use serde::Deserialize;
use uuid::Uuid;

use super::error::ConsoleError;
use super::page::{Chrome, render, see_other};
use super::session::ConsoleUser;
use super::tenant::parse_id;
use super::view::When;
use crate::auth::Principal;
use crate::error::{ApiResult, ErrorCode};
use crate::routes::graph::{GraphConnectionView, connection_of, consent_url, disconnect_tenant};
use crate::state::AppState;

/// A tenant's own app as the tenant page shows it (never its credential).
pub struct OwnAppPanel {
    pub client_id: String,
    pub cloud: String,
    /// `client secret` or `certificate`.
    pub credential: &'static str,
    pub credential_expires: Option<When>,
}

/// The connection as the tenant page shows it.
pub struct GraphPanel {
    /// The REST API's state name (`connected`, `consent_pending` …).
    pub state: &'static str,
    /// The state in a sentence.
    pub sentence: String,
    pub configured: bool,
    pub entra_tenant_id: Option<String>,
    pub consented: Option<When>,
    pub consented_by: Option<String>,
    pub missing_permissions: String,
    pub last_read: Option<When>,
    pub last_error: Option<String>,
    pub next_read: Option<When>,
    /// There is a connection or a consent pending, which a disconnect ends.
    pub can_disconnect: bool,
    /// A consent link would help: the installation has an app, the tenant is not read with its
    /// own, and it is not reading fine already.
    pub can_consent: bool,
    /// The tenant's own app, when it reads with one.
    pub own_app: Option<OwnAppPanel>,
}

fn when_text(at: Option<DateTime<Utc>>) -> String {
    at.map(|t| t.format("%Y-%m-%d %H:%M UTC").to_string()).unwrap_or_default()
}

impl GraphPanel {
    fn new(v: GraphConnectionView, installation_app: bool, now: DateTime<Utc>) -> GraphPanel {
        let own = v.app == "own";
        let sentence = match v.state {
            "not_configured" => "This server has no Microsoft Graph app configured, so its tenants cannot be \
                                 connected here. The operator sets one up in the [graph] settings (or an org \
                                 admin sets the tenant's own app through the API: PUT /v1/tenants/{id}/graph/app)."
                .to_owned(),
            "not_connected" => "Not connected: findings come from collectors only.".to_owned(),
            "consent_pending" => format!(
                "Waiting for the customer's Entra administrator to consent; the link works until {}.",
                when_text(v.consent_pending_until)
            ),
            "consent_revoked" if own => "The customer's tenant no longer lets its own app in (consent withdrawn or \
                                         the app removed): reads have stopped. Grant the app admin consent in the \
                                         tenant, then set the app again."
                .to_owned(),
            "consent_revoked" => {
                "The customer's administrator withdrew the consent: reads have stopped. Connect again to resume."
                    .to_owned()
            }
            "credential_invalid" => "The tenant's own app was refused for its credential (a wrong or expired secret, \
                                     or a certificate the app registration does not have): reads have stopped. Set \
                                     the app again with a current credential."
                .to_owned(),
            "app_credential_invalid" => "This server's Microsoft Graph app was refused for its credential, for every \
                                         tenant alike: nothing to fix in this tenant. Reads resume once the operator \
                                         has fixed the [graph] credential."
                .to_owned(),
            "permissions_missing" => {
                "Connected, but the app lacks permissions it needs; ask the customer's administrator to consent again."
                    .to_owned()
            }
            "throttled" => format!(
                "Connected; Microsoft asked us to slow down, so the next read waits until {}.",
                when_text(v.throttled_until)
            ),
            _ if own => "Connected through the tenant's own app: this server reads the tenant's directory with it."
                .to_owned(),
            _ => "Connected: this server reads the tenant's directory on its own.".to_owned(),
        };
        let own_app = v.own_app.as_ref().map(|a| OwnAppPanel {
            client_id: a.client_id.clone(),
            cloud: a.cloud.clone(),
            credential: if a.credential_kind == "certificate" { "certificate" } else { "client secret" },
            credential_expires: When::maybe(a.credential_expires_at, now),
        });
        GraphPanel {
            state: v.state,
            sentence,
            configured: v.state != "not_configured",
            can_disconnect: v.entra_tenant_id.is_some() || v.consent_pending_until.is_some() || own,
            can_consent: installation_app && !own && !matches!(v.state, "connected" | "throttled"),
            own_app,
            entra_tenant_id: v.entra_tenant_id,
            consented: When::maybe(v.consented_at, now),
            consented_by: v.consented_by,
            missing_permissions: v.missing_permissions.join(", "),
            last_read: When::maybe(v.last_read_at, now),
            last_error: v.last_error,
            next_read: When::maybe(v.next_read_at, now),
        }
    }
}

/// The panel of the organisation's tenant `id`.
pub async fn panel(state: &AppState, who: &Principal, id: Uuid) -> ApiResult<GraphPanel> {
    let view = connection_of(state, who, id).await?;
    Ok(GraphPanel::new(view, state.settings.graph.enabled(), Utc::now()))
}

#[derive(Template)]
#[template(path = "console/graph_consent.html")]
struct ConsentPage {
    chrome: Chrome,
    tenant_id: String,
    tenant_name: String,
    consent_url: String,
    expires: When,
    permissions: Vec<&'static str>,
}

#[derive(Deserialize)]
struct EmptyForm {}

/// `POST /tenants/{id}/graph/consent`: the admin-consent link, on a page of its own (never in a
/// URL or history), never cached.
pub async fn consent(
    req: HttpRequest,
    state: web::Data<AppState>,
    user: ConsoleUser,
    id: web::Path<String>,
    body: web::Bytes,
) -> Result<HttpResponse, ConsoleError> {
    let _: EmptyForm = user.checked_form(&req, &body)?;
    let id = parse_id(&id, "tenant")?;
    let made = match consent_url(&state, &user.who, id).await {
        Ok(made) => made,
        // The page says so in a sentence.
        Err(e) if e.code == ErrorCode::GraphNotConfigured => {
            return Ok(see_other(&format!("/tenants/{id}#graph-heading")).finish());
        }
        Err(e) => return Err(e.into()),
    };
    let tenant_name = state
        .store
        .get_tenant(user.who.org, wbd_store::TenantId(id))
        .await?
        .map(|t| t.name)
        .unwrap_or_default();
    let page = ConsentPage {
        chrome: Chrome::new(&format!("/tenants/{id}"), user.lang, Some(user.signed_in())),
        tenant_id: id.to_string(),
        tenant_name,
        consent_url: made.consent_url,
        expires: When::new(made.expires_at, Utc::now()),
        permissions: made.permissions,
    };
    render(user.builder(StatusCode::OK), &page)
}

/// `POST /tenants/{id}/graph/disconnect`
pub async fn disconnect(
    req: HttpRequest,
    state: web::Data<AppState>,
    user: ConsoleUser,
    id: web::Path<String>,
    body: web::Bytes,
) -> Result<HttpResponse, ConsoleError> {
    let _: EmptyForm = user.checked_form(&req, &body)?;
    let id = parse_id(&id, "tenant")?;
    disconnect_tenant(&state, &user.who, id).await?;
    Ok(see_other(&format!("/tenants/{id}?graph=disconnected#graph-heading")).finish())
}
