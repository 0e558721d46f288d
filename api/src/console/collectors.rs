//! `POST /tenants/{id}/collectors`: an org admin adds a collector to a tenant, through the REST
//! route's own call, and sees its one-time enrollment token once, as the command to run at the
//! customer's site. The answer is a page, not a redirect (the token must not sit in a URL or
//! history) and is never cached; the server keeps only the token's hash.

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use askama::Template;
use chrono::Utc;
use serde::Deserialize;
use wbd_store::TenantId;

use super::error::ConsoleError;
use super::page::{Chrome, render};
use super::session::ConsoleUser;
use super::tenant::parse_id;
use super::view::When;
use crate::routes::collectors::create_collector;
use crate::state::AppState;

#[derive(Deserialize)]
struct NewCollectorForm {
    #[serde(default)]
    name: String,
}

#[derive(Template)]
#[template(path = "console/collector_created.html")]
struct CreatedPage {
    chrome: Chrome,
    tenant_id: String,
    tenant_name: String,
    name: String,
    token: String,
    expires: When,
    enroll: String,
}

pub async fn create(
    req: HttpRequest,
    state: web::Data<AppState>,
    user: ConsoleUser,
    id: web::Path<String>,
    body: web::Bytes,
) -> Result<HttpResponse, ConsoleError> {
    let form: NewCollectorForm = user.checked_form(&req, &body)?;
    let tenant = TenantId(parse_id(&id, "tenant")?);
    let created = create_collector(&state, &user.who, tenant, &form.name, None).await?;
    let tenant_name = state.store.get_tenant(user.who.org, tenant).await?.map(|t| t.name).unwrap_or_default();
    let server = server_url(&req, &state);
    let token = created.enrollment_token;
    let page = CreatedPage {
        chrome: Chrome::new(&format!("/tenants/{}", tenant.0), user.lang, Some(user.signed_in())),
        tenant_id: tenant.0.to_string(),
        tenant_name,
        name: created.collector.name,
        expires: When::new(created.enrollment_expires_at, Utc::now()),
        enroll: format!(
            "wbd-collector enroll --server {server} --token {token} --state-dir ./collector-state"
        ),
        token,
    };
    tracing::info!(org_id = %user.who.org.org_id, tenant_id = %tenant, "collector created in the console");
    render(user.builder(StatusCode::CREATED), &page)
}

/// Where collectors reach this server: `delivery.public_url` when set, else the address the
/// browser used.
fn server_url(req: &HttpRequest, state: &AppState) -> String {
    let public = state.settings.delivery.public_url.trim_end_matches('/');
    if !public.is_empty() {
        return public.to_owned();
    }
    let scheme = if state.settings.tls_enabled() { "https" } else { "http" };
    format!("{scheme}://{}", req.connection_info().host())
}
