//! `GET /integrations`: where the organisation's findings go — each integration with its kind,
//! destination (a secret URL only by its origin, as the REST API shows it), whether it is on and
//! how its deliveries fare; for org admins, a button that sends a test event
//! (`POST /integrations/{id}/test`, through the REST route's own call).

use actix_web::{HttpRequest, HttpResponse, web};
use askama::Template;
use chrono::Utc;
use serde::Deserialize;
use wbd_rules::Lang;
use wbd_store::Role;

use super::error::ConsoleError;
use super::page::{Chrome, page_builder, render, see_other};
use super::session::{ConsoleUser, read_form};
use super::tenant::parse_id;
use super::view::When;
use crate::routes::integrations::{send_test, view};
use crate::state::AppState;

#[derive(Deserialize)]
pub struct IntegrationsQuery {
    /// The integration a test was just sent to.
    tested: Option<String>,
}

pub struct IntegrationRow {
    pub id: String,
    pub name: String,
    pub kind: String,
    pub url: String,
    pub enabled: bool,
    pub disabled_reason: Option<String>,
    pub failing_since: Option<When>,
    pub last_success: Option<When>,
}

#[derive(Template)]
#[template(path = "console/integrations.html")]
struct IntegrationsPage {
    chrome: Chrome,
    rows: Vec<IntegrationRow>,
    /// Org admins may send tests; the forms carry the session's token.
    test_csrf: Option<String>,
    tested: Option<String>,
}

pub async fn list(
    state: web::Data<AppState>,
    user: ConsoleUser,
    query: web::Query<IntegrationsQuery>,
) -> Result<HttpResponse, ConsoleError> {
    let now = Utc::now();
    let integrations = state.store.list_integrations(user.who.org).await?;
    let rows: Vec<IntegrationRow> = integrations
        .into_iter()
        .map(|i| view(&state, i, now))
        .map(|v| IntegrationRow {
            id: v.id.to_string(),
            name: v.name,
            kind: v.kind,
            url: v.url.unwrap_or_default(),
            enabled: v.enabled,
            disabled_reason: v.disabled_reason,
            failing_since: When::maybe(v.failing_since, now),
            last_success: When::maybe(v.last_success_at, now),
        })
        .collect();
    let tested =
        query.tested.as_deref().and_then(|id| rows.iter().find(|r| r.id == id)).map(|r| r.name.clone());
    let page = IntegrationsPage {
        chrome: Chrome::new("/integrations", Lang::En, Some(user.signed_in())),
        test_csrf: (user.who.role == Role::OrgAdmin).then(|| user.csrf.clone()),
        rows,
        tested,
    };
    render(page_builder(None), &page)
}

#[derive(Deserialize)]
struct TokenForm {
    #[serde(default)]
    csrf: String,
}

pub async fn test(
    req: HttpRequest,
    state: web::Data<AppState>,
    user: ConsoleUser,
    id: web::Path<String>,
    body: web::Bytes,
) -> Result<HttpResponse, ConsoleError> {
    let form: TokenForm = read_form(&body)?;
    user.check_write(&req, &form.csrf)?;
    let id = parse_id(&id, "integration")?;
    send_test(&state, &user.who, id).await?;
    Ok(see_other(&format!("/integrations?tested={id}")).finish())
}
