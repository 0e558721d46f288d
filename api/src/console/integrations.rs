//! The organisation's integrations in the console, all through the REST routes' own calls
//! (`routes::integrations`, `routes::deliveries`): the same checks, the same store calls, the
//! same audit entries naming the API key.
//!
//! - `GET /integrations`: each integration with its kind, destination (a secret URL only by its
//!   origin, as the REST API shows it), whether it is on and how its deliveries fare.
//! - `GET /integrations/new?kind=` and `POST /integrations`: add one (org admins). The kind is
//!   picked first, so the form asks for that kind's credentials without any script.
//! - `GET /integrations/{id}`: one integration, its form (org admins), its delivery log, and
//!   `POST /integrations/{id}` to change it, `…/test` to send a test, `…/replay` to send again
//!   every failed delivery since a moment.
//! - `GET /deliveries/{id}`: one delivery with every attempt and the event as sent;
//!   `POST /deliveries/{id}/replay` sends it again.
//!
//! Credentials are write-only: a form never shows a stored one (only that it is set), and a
//! credential left empty on a change stays as it is. A refused form is shown again with each
//! problem the domain check found next to its field.

use std::collections::HashMap;

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use askama::Template;
use chrono::{DateTime, Duration, NaiveDateTime, Utc};
use serde::Deserialize;
use serde_json::{Map, Value};
use uuid::Uuid;
use wbd_notify::IntegrationKind;
use wbd_store::{DeliveryFilter, DeliveryStatus, Role};

use super::error::ConsoleError;
use super::page::{Chrome, render, see_other};
use super::session::ConsoleUser;
use super::tenant::parse_id;
use super::view::When;
use crate::error::{ApiError, ErrorCode};
use crate::routes::deliveries::{DeliveryView, replay_failed_since, replay_one};
use crate::routes::integrations::{
    CreateIntegration, IntegrationView, UpdateIntegration, create_integration, find, send_test,
    update_integration, view,
};
use crate::state::AppState;

/// Deliveries on one page of an integration's log.
const LOG_PAGE: u32 = 50;

/// The secrets a kind's connector reads (`wbd_notify::connectors`), which its form asks for.
/// Webhooks sign with a secret we make; Slack and Teams keep theirs in the URL.
fn credential_names(kind: IntegrationKind) -> &'static [&'static str] {
    match kind {
        IntegrationKind::Connectwise => &["public_key", "private_key", "client_id"],
        IntegrationKind::Autotask => &["username", "secret", "integration_code"],
        IntegrationKind::Halopsa => &["client_id", "client_secret"],
        IntegrationKind::Jira => &["api_token"],
        IntegrationKind::Servicenow => &["password"],
        IntegrationKind::Pagerduty => &["routing_key"],
        _ => &[],
    }
}

/// What a kind's URL field holds, for its hint.
fn url_hint(kind: IntegrationKind) -> &'static str {
    match kind {
        IntegrationKind::Webhook => "the HTTPS endpoint that receives signed events",
        IntegrationKind::Slack | IntegrationKind::Teams => "the incoming webhook URL; it is kept secret",
        IntegrationKind::Pagerduty => "leave empty for PagerDuty's events endpoint",
        _ => "the base URL of your instance",
    }
}

// ---- the list ---------------------------------------------------------------------------------

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

impl IntegrationRow {
    fn of(v: IntegrationView, now: DateTime<Utc>) -> IntegrationRow {
        IntegrationRow {
            id: v.id.to_string(),
            name: v.name,
            kind: v.kind,
            url: v.url.unwrap_or_default(),
            enabled: v.enabled,
            disabled_reason: v.disabled_reason,
            failing_since: When::maybe(v.failing_since, now),
            last_success: When::maybe(v.last_success_at, now),
        }
    }
}

#[derive(Template)]
#[template(path = "console/integrations.html")]
struct IntegrationsPage {
    chrome: Chrome,
    rows: Vec<IntegrationRow>,
    /// Org admins may add integrations and send tests; the forms carry the session's token.
    admin_csrf: Option<String>,
    tested: Option<String>,
}

fn admin_csrf(user: &ConsoleUser) -> Option<String> {
    (user.who.role == Role::OrgAdmin).then(|| user.csrf.clone())
}

pub async fn list(
    state: web::Data<AppState>,
    user: ConsoleUser,
    query: web::Query<IntegrationsQuery>,
) -> Result<HttpResponse, ConsoleError> {
    let now = Utc::now();
    let integrations = state.store.list_integrations(user.who.org).await?;
    let rows: Vec<IntegrationRow> =
        integrations.into_iter().map(|i| IntegrationRow::of(view(&state, i, now), now)).collect();
    let tested =
        query.tested.as_deref().and_then(|id| rows.iter().find(|r| r.id == id)).map(|r| r.name.clone());
    let page = IntegrationsPage {
        chrome: Chrome::new("/integrations", user.lang, Some(user.signed_in())),
        admin_csrf: admin_csrf(&user),
        rows,
        tested,
    };
    render(user.builder(StatusCode::OK), &page)
}

// ---- the form ---------------------------------------------------------------------------------

/// One problem the domain check found, by the field it names (`name`, `url`,
/// `config.board_id`, `credentials.api_token` …).
pub struct FieldProblem {
    pub field: String,
    pub detail: String,
}

/// A secret field: never filled in; says whether a value is stored.
pub struct CredentialField {
    pub name: &'static str,
    pub set: bool,
}

/// The integration form, as first shown or as sent back with its problems.
pub struct IntegrationForm {
    pub action: String,
    pub kind: &'static str,
    pub name: String,
    /// Empty for a secret URL that is stored: it is never shown.
    pub url: String,
    pub url_hint: &'static str,
    /// A secret URL is stored (it is kept when the field is left empty).
    pub url_kept: Option<String>,
    pub config: String,
    pub routing: String,
    pub enabled: bool,
    pub version: Option<i64>,
    pub credentials: Vec<CredentialField>,
    /// What stopped the last attempt, in a sentence.
    pub refused: Option<String>,
    pub problems: Vec<FieldProblem>,
    pub submit: &'static str,
}

impl IntegrationForm {
    /// The problems with `field` and the fields under it (`config` takes `config.board_id`).
    pub fn problem(&self, field: &str) -> Option<String> {
        let found: Vec<&str> = self
            .problems
            .iter()
            .filter(|p| {
                p.field == field
                    || p.field.strip_prefix(field).is_some_and(|rest| rest.starts_with(['.', '[']))
            })
            .map(|p| p.detail.as_str())
            .collect();
        (!found.is_empty()).then(|| found.join("; "))
    }

    /// The problems shown above the form (all of them, so a screen reader hears each once).
    pub fn has_problems(&self) -> bool {
        self.refused.is_some() || !self.problems.is_empty()
    }

    fn empty(kind: IntegrationKind) -> IntegrationForm {
        IntegrationForm {
            action: "/integrations".to_owned(),
            kind: kind.as_str(),
            name: String::new(),
            url: String::new(),
            url_hint: url_hint(kind),
            url_kept: None,
            config: String::new(),
            routing: "per_tenant".to_owned(),
            enabled: true,
            version: None,
            credentials: credential_names(kind)
                .iter()
                .map(|name| CredentialField { name, set: false })
                .collect(),
            refused: None,
            problems: Vec::new(),
            submit: "Add the integration",
        }
    }

    fn of(v: &IntegrationView, kind: IntegrationKind) -> IntegrationForm {
        let secret_url = kind.url_is_secret();
        IntegrationForm {
            action: format!("/integrations/{}", v.id),
            kind: kind.as_str(),
            name: v.name.clone(),
            url: if secret_url { String::new() } else { v.url.clone().unwrap_or_default() },
            url_hint: url_hint(kind),
            url_kept: if secret_url { v.url.clone() } else { None },
            config: if v.config.as_object().is_some_and(Map::is_empty) || v.config.is_null() {
                String::new()
            } else {
                serde_json::to_string_pretty(&v.config).unwrap_or_default()
            },
            routing: v.routing.to_owned(),
            enabled: v.enabled,
            version: Some(v.version),
            credentials: credential_names(kind)
                .iter()
                .map(|name| CredentialField { name, set: v.credentials_set.iter().any(|s| s == name) })
                .collect(),
            refused: None,
            problems: Vec::new(),
            submit: "Save the changes",
        }
    }

    /// The form as sent, with what stopped it (never with a secret the person typed).
    fn refused_with(mut self, sent: &SentForm, e: ApiError) -> Result<IntegrationForm, ConsoleError> {
        match e.code {
            ErrorCode::Validation | ErrorCode::DestinationRefused | ErrorCode::IntegrationChanged => {}
            _ => return Err(e.into()),
        }
        self.name = sent.text("name").to_owned();
        // A secret URL (Slack, Teams) is not sent back either, like a typed credential.
        if !IntegrationKind::parse(self.kind).is_some_and(IntegrationKind::url_is_secret) {
            self.url = sent.text("url").to_owned();
        }
        self.config = sent.text("config").to_owned();
        self.routing = sent.text("routing").to_owned();
        self.enabled = sent.checked("enabled");
        if let Some(problems) = e.errors.as_ref().and_then(Value::as_array) {
            self.problems = problems
                .iter()
                .map(|p| FieldProblem {
                    field: p["field"].as_str().unwrap_or_default().to_owned(),
                    detail: p["detail"].as_str().unwrap_or_default().to_owned(),
                })
                .collect();
        }
        self.refused = Some(match e.code {
            ErrorCode::IntegrationChanged => format!(
                "{} Open the integration again to see it as it is now.",
                e.detail.as_deref().unwrap_or("It changed meanwhile.")
            ),
            _ => "Nothing was saved. Please correct what is marked below.".to_owned(),
        });
        Ok(self)
    }
}

/// A posted integration form, field by field (a credential is `credential.<name>`).
struct SentForm(HashMap<String, String>);

impl SentForm {
    fn read(user: &ConsoleUser, req: &HttpRequest, body: &[u8]) -> Result<SentForm, ConsoleError> {
        let fields: Vec<(String, String)> = user.checked_form(req, body)?;
        Ok(SentForm(fields.into_iter().collect()))
    }

    fn text(&self, name: &str) -> &str {
        self.0.get(name).map_or("", String::as_str)
    }

    /// A field's value, `None` when empty.
    fn given(&self, name: &str) -> Option<String> {
        let value = self.text(name).trim();
        (!value.is_empty()).then(|| value.to_owned())
    }

    fn checked(&self, name: &str) -> bool {
        self.0.contains_key(name)
    }

    /// The credentials typed in; the ones left empty are not given.
    fn credentials(&self, kind: IntegrationKind) -> Map<String, Value> {
        credential_names(kind)
            .iter()
            .filter_map(|name| {
                self.given(&format!("credential.{name}")).map(|v| ((*name).to_owned(), Value::String(v)))
            })
            .collect()
    }

    /// The config as typed: empty is none; text that is not JSON is this form's own problem.
    fn config(&self) -> Result<Option<Value>, FieldProblem> {
        match self.given("config") {
            None => Ok(None),
            Some(text) => serde_json::from_str(&text).map(Some).map_err(|e| FieldProblem {
                field: "config".to_owned(),
                detail: format!("is not a JSON object ({e})"),
            }),
        }
    }
}

/// The refusal of a form whose config could not even be read.
fn unreadable(problem: FieldProblem) -> ApiError {
    ApiError::new(ErrorCode::Validation, format!("{} {}", problem.field, problem.detail)).with_errors(
        Value::Array(vec![serde_json::json!({ "field": problem.field, "detail": problem.detail })]),
    )
}

#[derive(Template)]
#[template(path = "console/integration_new.html")]
struct NewIntegrationPage {
    chrome: Chrome,
    kinds: Vec<(&'static str, bool)>,
    form: Option<IntegrationForm>,
    csrf: String,
}

#[derive(Deserialize)]
pub struct NewQuery {
    kind: Option<String>,
}

fn kind_of(text: &str) -> Result<IntegrationKind, ConsoleError> {
    IntegrationKind::parse(text)
        .ok_or_else(|| ConsoleError::bad_request(format!("There is no kind {text:?}.")))
}

fn new_page(
    user: &ConsoleUser,
    kind: Option<IntegrationKind>,
    form: Option<IntegrationForm>,
    status: StatusCode,
) -> Result<HttpResponse, ConsoleError> {
    let page = NewIntegrationPage {
        chrome: Chrome::new("/integrations/new", user.lang, Some(user.signed_in())),
        kinds: IntegrationKind::ALL.iter().map(|k| (k.as_str(), Some(*k) == kind)).collect(),
        form,
        csrf: user.csrf.clone(),
    };
    render(user.builder(status), &page)
}

/// `GET /integrations/new?kind=`: the kind picker, then that kind's form (org admins).
pub async fn new_form(user: ConsoleUser, query: web::Query<NewQuery>) -> Result<HttpResponse, ConsoleError> {
    user.who.require_admin()?;
    let kind = query.kind.as_deref().filter(|k| !k.is_empty()).map(kind_of).transpose()?;
    new_page(&user, kind, kind.map(IntegrationForm::empty), StatusCode::OK)
}

#[derive(Template)]
#[template(path = "console/integration_created.html")]
struct CreatedPage {
    chrome: Chrome,
    id: String,
    name: String,
    signing_secret: String,
}

/// `POST /integrations`: adds the integration through the REST route's call; a refused form
/// comes back with its problems (422), a webhook's signing secret is shown once.
pub async fn create(
    req: HttpRequest,
    state: web::Data<AppState>,
    user: ConsoleUser,
    body: web::Bytes,
) -> Result<HttpResponse, ConsoleError> {
    let sent = SentForm::read(&user, &req, &body)?;
    user.who.require_admin()?;
    let kind = kind_of(sent.text("kind"))?;
    let credentials = sent.credentials(kind);
    let created = match sent.config() {
        Err(problem) => Err(unreadable(problem)),
        Ok(config) => {
            let body = CreateIntegration {
                name: sent.text("name").to_owned(),
                kind: kind.as_str().to_owned(),
                url: sent.given("url"),
                config,
                credentials: (!credentials.is_empty()).then_some(Value::Object(credentials)),
                filter: None,
                routing: sent.given("routing"),
                max_in_flight: None,
                hourly_budget: None,
                enabled: Some(sent.checked("enabled")),
            };
            create_integration(&state, &user.who, body).await
        }
    };
    match created {
        Ok(created) => {
            let id = created.integration.id;
            tracing::info!(org_id = %user.who.org.org_id, integration_id = %id, "integration created in the console");
            match created.signing_secret {
                Some(signing_secret) => {
                    let page = CreatedPage {
                        chrome: Chrome::new("/integrations", user.lang, Some(user.signed_in())),
                        id: id.to_string(),
                        name: created.integration.name,
                        signing_secret,
                    };
                    render(user.builder(StatusCode::CREATED), &page)
                }
                None => Ok(see_other(&format!("/integrations/{id}?done=created")).finish()),
            }
        }
        Err(e) => {
            let form = IntegrationForm::empty(kind).refused_with(&sent, e)?;
            new_page(&user, Some(kind), Some(form), StatusCode::UNPROCESSABLE_ENTITY)
        }
    }
}

// ---- one integration and its delivery log -----------------------------------------------------

pub struct DeliveryRow {
    pub id: String,
    pub event_type: String,
    pub status: &'static str,
    pub occurred: When,
    pub attempts: u32,
    pub last_attempt: Option<When>,
    pub last_status: Option<u16>,
    pub last_error: Option<String>,
    pub can_replay: bool,
}

impl DeliveryRow {
    fn of(d: &DeliveryView, now: DateTime<Utc>) -> DeliveryRow {
        DeliveryRow {
            id: d.id.to_string(),
            event_type: d.event_type.clone(),
            status: d.status,
            occurred: When::new(d.occurred_at, now),
            attempts: d.attempt_count,
            last_attempt: When::maybe(d.last_attempt_at, now),
            last_status: d.last_status,
            last_error: d.last_error.clone(),
            can_replay: d.status != DeliveryStatus::Pending.as_str(),
        }
    }
}

#[derive(Template)]
#[template(path = "console/integration.html")]
struct IntegrationPage {
    chrome: Chrome,
    integration: IntegrationRow,
    credentials_set: String,
    version: i64,
    /// Org admins: the form (with the session's token in `csrf`).
    form: Option<IntegrationForm>,
    csrf: Option<String>,
    done: Option<String>,
    deliveries: Vec<DeliveryRow>,
    status_filter: String,
    statuses: [&'static str; 3],
    older: Option<String>,
    /// The replay form's default: a day ago, as `datetime-local` wants it (UTC).
    replay_since: String,
}

#[derive(Deserialize)]
pub struct IntegrationQuery {
    /// What was just done, to say so.
    done: Option<String>,
    replayed: Option<u64>,
    status: Option<String>,
    cursor: Option<String>,
}

fn done_sentence(done: Option<&str>, replayed: Option<u64>) -> Option<String> {
    match (done, replayed) {
        (_, Some(0)) => Some("There was nothing to send again.".to_owned()),
        (_, Some(1)) => Some("1 delivery is queued to be sent again.".to_owned()),
        (_, Some(n)) => Some(format!("{n} deliveries are queued to be sent again.")),
        (Some("created"), _) => Some("The integration was added.".to_owned()),
        (Some("saved"), _) => Some("The changes were saved.".to_owned()),
        (Some("tested"), _) => {
            Some("A test event is on its way; it is at the top of the delivery log.".to_owned())
        }
        _ => None,
    }
}

async fn integration_page(
    state: &AppState,
    user: &ConsoleUser,
    id: Uuid,
    query: &IntegrationQuery,
    refused: Option<IntegrationForm>,
) -> Result<HttpResponse, ConsoleError> {
    let now = Utc::now();
    let integration = find(state, &user.who, id).await?;
    let v = view(state, integration, now);
    let kind = IntegrationKind::parse(&v.kind);
    let status = query.status.as_deref().filter(|s| !s.is_empty());
    let filter = DeliveryFilter {
        status: status.and_then(|s| s.parse().ok()),
        since: None,
        before: query.cursor.as_deref().and_then(|c| Uuid::parse_str(c).ok()),
        limit: LOG_PAGE + 1,
    };
    let mut deliveries = state.store.list_deliveries(user.who.org, id, &filter).await?;
    let older = (deliveries.len() > LOG_PAGE as usize).then(|| {
        deliveries.truncate(LOG_PAGE as usize);
        deliveries.last().map(|d| d.id.to_string()).unwrap_or_default()
    });
    let admin = user.who.role == Role::OrgAdmin;
    let has_refused = refused.is_some();
    let form = match (admin, refused, kind) {
        (false, _, _) | (true, _, None) => None,
        (true, Some(form), _) => Some(form),
        (true, None, Some(kind)) => Some(IntegrationForm::of(&v, kind)),
    };
    let page = IntegrationPage {
        chrome: Chrome::new(&format!("/integrations/{id}"), user.lang, Some(user.signed_in())),
        credentials_set: if v.credentials_set.is_empty() {
            "none".to_owned()
        } else {
            v.credentials_set.join(", ")
        },
        version: v.version,
        form,
        csrf: admin.then(|| user.csrf.clone()),
        done: if has_refused { None } else { done_sentence(query.done.as_deref(), query.replayed) },
        deliveries: deliveries.iter().map(|d| DeliveryRow::of(&DeliveryView::from(d), now)).collect(),
        status_filter: status.unwrap_or_default().to_owned(),
        statuses: ["failed", "pending", "succeeded"],
        older,
        replay_since: (now - Duration::days(1)).format("%Y-%m-%dT%H:%M").to_string(),
        integration: IntegrationRow::of(v, now),
    };
    let status = if has_refused { StatusCode::UNPROCESSABLE_ENTITY } else { StatusCode::OK };
    render(user.builder(status), &page)
}

/// `GET /integrations/{id}`
pub async fn integration(
    state: web::Data<AppState>,
    user: ConsoleUser,
    id: web::Path<String>,
    query: web::Query<IntegrationQuery>,
) -> Result<HttpResponse, ConsoleError> {
    let id = parse_id(&id, "integration")?;
    integration_page(&state, &user, id, &query, None).await
}

/// `POST /integrations/{id}`: changes it through the REST route's call, from the version the
/// form was made from; a credential left empty stays.
pub async fn update(
    req: HttpRequest,
    state: web::Data<AppState>,
    user: ConsoleUser,
    id: web::Path<String>,
    body: web::Bytes,
) -> Result<HttpResponse, ConsoleError> {
    let sent = SentForm::read(&user, &req, &body)?;
    let id = parse_id(&id, "integration")?;
    let current = find(&state, &user.who, id).await?;
    user.who.require_admin()?;
    let kind = IntegrationKind::parse(&current.kind)
        .ok_or_else(|| ConsoleError::bad_request("This integration's kind is not known to this server."))?;
    let version = sent.text("version").parse::<i64>().ok();
    let credentials = sent.credentials(kind);
    let updated = match sent.config() {
        Err(problem) => Err(unreadable(problem)),
        Ok(config) => {
            let change = UpdateIntegration {
                name: Some(sent.text("name").to_owned()),
                kind: None,
                url: sent.given("url"),
                // An emptied config box means no settings.
                config: Some(config.unwrap_or_else(|| Value::Object(Map::new()))),
                credentials: (!credentials.is_empty()).then_some(credentials),
                filter: None,
                routing: sent.given("routing"),
                max_in_flight: None,
                hourly_budget: None,
                enabled: Some(sent.checked("enabled")),
                version,
            };
            update_integration(&state, &user.who, id, change).await
        }
    };
    match updated {
        Ok(_) => {
            tracing::info!(org_id = %user.who.org.org_id, integration_id = %id, "integration changed in the console");
            Ok(see_other(&format!("/integrations/{id}?done=saved")).finish())
        }
        Err(e) => {
            let stored = view(&state, current, Utc::now());
            let mut form = IntegrationForm::of(&stored, kind).refused_with(&sent, e)?;
            // Resent from the version the person saw, unless it changed meanwhile.
            form.version = version;
            let query = IntegrationQuery { done: None, replayed: None, status: None, cursor: None };
            integration_page(&state, &user, id, &query, Some(form)).await
        }
    }
}

/// `POST /integrations/{id}/test`: a test event, through the REST route's call.
pub async fn test(
    req: HttpRequest,
    state: web::Data<AppState>,
    user: ConsoleUser,
    id: web::Path<String>,
    body: web::Bytes,
) -> Result<HttpResponse, ConsoleError> {
    let _: Vec<(String, String)> = user.checked_form(&req, &body)?;
    let id = parse_id(&id, "integration")?;
    send_test(&state, &user.who, id).await?;
    Ok(see_other(&format!("/integrations/{id}?done=tested")).finish())
}

#[derive(Deserialize)]
struct ReplayForm {
    #[serde(default)]
    since: String,
}

/// `datetime-local`'s `2026-01-31T17:00` (read as UTC, as the form says), or RFC 3339.
fn parse_since(text: &str) -> Option<DateTime<Utc>> {
    let text = text.trim();
    text.parse::<DateTime<Utc>>().ok().or_else(|| {
        ["%Y-%m-%dT%H:%M", "%Y-%m-%dT%H:%M:%S"]
            .iter()
            .find_map(|f| NaiveDateTime::parse_from_str(text, f).ok())
            .map(|t| t.and_utc())
    })
}

/// `POST /integrations/{id}/replay`: every failed delivery since a moment, sent again.
pub async fn replay_failed(
    req: HttpRequest,
    state: web::Data<AppState>,
    user: ConsoleUser,
    id: web::Path<String>,
    body: web::Bytes,
) -> Result<HttpResponse, ConsoleError> {
    let form: ReplayForm = user.checked_form(&req, &body)?;
    let id = parse_id(&id, "integration")?;
    let since = parse_since(&form.since).ok_or_else(|| {
        ConsoleError::bad_request("“Failed since” must be a date and time, such as 2026-01-31 17:00.")
    })?;
    let replayed = replay_failed_since(&state, &user.who, id, since).await?;
    Ok(see_other(&format!("/integrations/{id}?replayed={replayed}")).finish())
}

// ---- one delivery -----------------------------------------------------------------------------

pub struct AttemptRow {
    pub attempt: u32,
    pub at: When,
    pub succeeded: bool,
    pub status: Option<u16>,
    pub latency_ms: u64,
    pub error: Option<String>,
    pub response_excerpt: Option<String>,
    pub exchanges: String,
}

#[derive(Template)]
#[template(path = "console/delivery.html")]
struct DeliveryPage {
    chrome: Chrome,
    delivery: DeliveryRow,
    integration_id: String,
    integration_name: String,
    next_attempt: Option<When>,
    trace_id: Option<String>,
    attempts: Vec<AttemptRow>,
    payload: String,
    csrf: Option<String>,
    replayed: bool,
}

#[derive(Deserialize)]
pub struct DeliveryQuery {
    replayed: Option<String>,
}

/// `GET /deliveries/{id}`: the delivery, every attempt, the event as sent.
pub async fn delivery(
    state: web::Data<AppState>,
    user: ConsoleUser,
    id: web::Path<String>,
    query: web::Query<DeliveryQuery>,
) -> Result<HttpResponse, ConsoleError> {
    let id = parse_id(&id, "delivery")?;
    let (delivery, attempts) = state
        .store
        .get_delivery(user.who.org, id)
        .await?
        .ok_or_else(|| ConsoleError::not_found("delivery"))?;
    let integration_name = state
        .store
        .get_integration(user.who.org, delivery.integration_id)
        .await?
        .map(|i| i.name)
        .unwrap_or_default();
    let now = Utc::now();
    let v = DeliveryView::from(&delivery);
    let page = DeliveryPage {
        chrome: Chrome::new(&format!("/deliveries/{id}"), user.lang, Some(user.signed_in())),
        delivery: DeliveryRow::of(&v, now),
        integration_id: delivery.integration_id.to_string(),
        integration_name,
        next_attempt: When::maybe(v.next_attempt_at, now),
        trace_id: v.trace_id,
        attempts: attempts
            .into_iter()
            .map(|a| AttemptRow {
                attempt: a.attempt,
                at: When::new(a.at, now),
                succeeded: a.succeeded,
                status: a.status,
                latency_ms: a.latency_ms,
                error: a.error,
                response_excerpt: a.response_excerpt,
                exchanges: serde_json::to_string_pretty(&a.exchanges).unwrap_or_default(),
            })
            .collect(),
        payload: serde_json::to_string_pretty(&delivery.payload).unwrap_or_default(),
        csrf: admin_csrf(&user),
        replayed: query.replayed.is_some(),
    };
    render(user.builder(StatusCode::OK), &page)
}

/// `POST /deliveries/{id}/replay`: this delivery, sent again.
pub async fn replay(
    req: HttpRequest,
    state: web::Data<AppState>,
    user: ConsoleUser,
    id: web::Path<String>,
    body: web::Bytes,
) -> Result<HttpResponse, ConsoleError> {
    let _: Vec<(String, String)> = user.checked_form(&req, &body)?;
    let id = parse_id(&id, "delivery")?;
    replay_one(&state, &user.who, id).await?;
    Ok(see_other(&format!("/deliveries/{id}?replayed=1")).finish())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failed_since_reads_the_browser_s_and_rfc_3339_times() {
        let at = "2026-01-31T17:00:00Z".parse::<DateTime<Utc>>().unwrap();
        assert_eq!(parse_since("2026-01-31T17:00"), Some(at));
        assert_eq!(parse_since(" 2026-01-31T17:00:00 "), Some(at));
        assert_eq!(parse_since("2026-01-31T18:00:00+01:00"), Some(at));
        assert_eq!(parse_since("yesterday"), None);
    }

    #[test]
    fn a_problem_shows_at_its_field_and_the_fields_under_it() {
        let mut form = IntegrationForm::empty(IntegrationKind::Jira);
        form.problems = vec![
            FieldProblem { field: "config.project_key".into(), detail: "is required".into() },
            FieldProblem { field: "configuration".into(), detail: "not ours".into() },
            FieldProblem { field: "credentials.api_token".into(), detail: "is required".into() },
        ];
        assert_eq!(form.problem("config").as_deref(), Some("is required"));
        assert_eq!(form.problem("credentials.api_token").as_deref(), Some("is required"));
        assert_eq!(form.problem("name"), None);
    }
}
