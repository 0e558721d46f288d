//! `GET /findings/{id}`: one finding — evidence, why it matters and the fix steps in the
//! language picked, its tickets and its history (every event with its actor and time) — and,
//! for org admins and technicians, what can be done about it now. `POST /findings/{id}/{action}`
//! (`acknowledge`, `suppress`, `unsuppress`, `retest`) acts through the very calls of the REST
//! routes (`routes::findings`): the same checks, the same store call, the same event naming the
//! API key. A read-only session sees no form, and its writes are refused all the same.

use actix_web::{HttpRequest, HttpResponse, web};
use askama::Template;
use chrono::{DateTime, NaiveDate, Utc};
use serde::Deserialize;
use wbd_store::{FindingAction, FindingId, Role};

use super::error::ConsoleError;
use super::page::{Chrome, page_builder, page_lang, render, see_other};
use super::session::ConsoleUser;
use super::tenant::parse_id;
use super::view::When;
use crate::routes::findings::{self as rest, FindingView, MAX_SUPPRESSION_DAYS, TicketView};
use crate::state::AppState;

#[derive(Deserialize)]
pub struct FindingQuery {
    lang: Option<String>,
    /// The action just done, to say so.
    done: Option<String>,
}

pub struct EventRow {
    pub kind: &'static str,
    pub actor: String,
    pub at: When,
    pub note: Option<String>,
    pub until: Option<When>,
}

/// The forms the finding's status allows (none for a read-only session).
pub struct Forms {
    pub acknowledge: bool,
    pub suppress: bool,
    pub unsuppress: bool,
    pub retest: bool,
    /// The earliest and latest day a suppression may end (`YYYY-MM-DD`).
    pub min_day: String,
    pub max_day: String,
}

#[derive(Template)]
#[template(path = "console/finding.html")]
struct FindingPage {
    chrome: Chrome,
    /// The session's token, which every form sends back.
    csrf: String,
    finding: FindingView,
    tenant_name: String,
    why: Option<&'static str>,
    steps: Vec<&'static str>,
    evidence: String,
    opened: When,
    updated: When,
    suppressed_until: Option<When>,
    tickets: Vec<TicketView>,
    events: Vec<EventRow>,
    forms: Option<Forms>,
    done: Option<&'static str>,
}

/// What a page says after an action, by the action's name.
fn done_message(action: &str) -> Option<&'static str> {
    match action {
        "acknowledge" => Some("Acknowledged: the finding shows that someone is on it."),
        "suppress" => {
            Some("Suppressed until the date you gave; it is announced again then if it still fails.")
        }
        "unsuppress" => Some("The suppression has ended; the finding is open again."),
        "retest" => Some("Re-test asked for: the collector runs the probes at its next contact."),
        _ => None,
    }
}

pub async fn finding(
    req: HttpRequest,
    state: web::Data<AppState>,
    user: ConsoleUser,
    id: web::Path<String>,
    query: web::Query<FindingQuery>,
) -> Result<HttpResponse, ConsoleError> {
    let (lang, remember) = page_lang(&req, query.lang.as_deref());
    let id = FindingId(parse_id(&id, "finding")?);
    let org = user.who.org;
    let finding =
        state.store.get_finding(org, id).await?.ok_or_else(|| ConsoleError::not_found("finding"))?;
    let tenant = state
        .store
        .get_tenant(org, finding.tenant_id)
        .await?
        .ok_or_else(|| ConsoleError::not_found("finding"))?;
    let events = state.store.list_finding_events(org, id).await?;
    let collectors = state.store.list_collectors(org, Some(finding.tenant_id)).await?;
    let tickets = rest::tickets_of(&state, &user.who, &[id]).await?.remove(&id.0).unwrap_or_default();
    let now = Utc::now();
    let status = finding.status;
    let view = FindingView::new(finding, &collectors, now, lang);
    let info = wbd_rules::rule_info(&view.rule_id, lang);
    let allows = |action: FindingAction| action.check(status).is_ok();
    let forms = (user.who.role != Role::ReadOnly).then(|| Forms {
        acknowledge: allows(FindingAction::Acknowledge { note: None }),
        suppress: allows(FindingAction::Suppress { reason: String::new(), until: now }),
        unsuppress: allows(FindingAction::Unsuppress),
        retest: status != wbd_store::FindingStatus::Resolved,
        min_day: (now + chrono::Duration::days(1)).format("%Y-%m-%d").to_string(),
        max_day: (now + chrono::Duration::days(MAX_SUPPRESSION_DAYS - 1)).format("%Y-%m-%d").to_string(),
    });
    let page = FindingPage {
        chrome: Chrome::new(&format!("/findings/{}", view.id), lang, Some(user.signed_in())),
        csrf: user.csrf.clone(),
        tenant_name: tenant.name,
        why: info.map(|i| i.description),
        steps: info.map(|i| i.remediation_steps.to_vec()).unwrap_or_default(),
        evidence: serde_json::to_string_pretty(&view.evidence).unwrap_or_default(),
        opened: When::new(view.opened_at, now),
        updated: When::new(view.updated_at, now),
        suppressed_until: When::maybe(view.suppressed_until, now),
        tickets,
        events: events
            .into_iter()
            .rev()
            .map(|e| EventRow {
                kind: e.kind.as_str(),
                actor: e.actor,
                at: When::new(e.at, now),
                note: e.note,
                until: When::maybe(e.suppressed_until, now),
            })
            .collect(),
        forms,
        done: query.done.as_deref().and_then(done_message),
        finding: view,
    };
    render(page_builder(remember), &page)
}

/// Every action's form; each action reads the fields it needs.
#[derive(Deserialize)]
struct ActionForm {
    /// The version the person saw: acting on a finding that changed since is refused.
    version: Option<String>,
    note: Option<String>,
    reason: Option<String>,
    /// The day the suppression ends (`YYYY-MM-DD`, at 00:00 UTC).
    until: Option<String>,
}

/// `POST /findings/{id}/{action}`
pub async fn act(
    req: HttpRequest,
    state: web::Data<AppState>,
    user: ConsoleUser,
    path: web::Path<(String, String)>,
    body: web::Bytes,
) -> Result<HttpResponse, ConsoleError> {
    let (id, action) = path.into_inner();
    let form: ActionForm = user.checked_form(&req, &body)?;
    let id = FindingId(parse_id(&id, "finding")?);
    let version = match form.version.as_deref().map(str::trim).filter(|v| !v.is_empty()) {
        Some(v) => Some(
            v.parse::<i64>().map_err(|_| ConsoleError::bad_request("The form's version is not a number."))?,
        ),
        None => None,
    };
    let who = &user.who;
    match action.as_str() {
        "acknowledge" => {
            let action = rest::acknowledgement(form.note.as_deref())?;
            rest::act_on(&state, who, id, version, action).await?;
        }
        "suppress" => {
            let until = suppression_end(form.until.as_deref())?;
            let action = rest::suppression(form.reason.as_deref().unwrap_or_default(), until, Utc::now())?;
            rest::act_on(&state, who, id, version, action).await?;
        }
        "unsuppress" => {
            rest::act_on(&state, who, id, version, FindingAction::Unsuppress).await?;
        }
        "retest" => {
            rest::request_retest(&state, who, id).await?;
        }
        _ => return Err(ConsoleError::not_found("action")),
    }
    Ok(see_other(&format!("/findings/{}?done={action}", id.0)).finish())
}

/// The end of a suppression from the form's day: the start of that day, UTC.
fn suppression_end(day: Option<&str>) -> Result<DateTime<Utc>, ConsoleError> {
    let day = day.map(str::trim).unwrap_or_default();
    NaiveDate::parse_from_str(day, "%Y-%m-%d")
        .ok()
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(|t| t.and_utc())
        .ok_or_else(|| {
            ConsoleError::from(crate::error::ApiError::new(
                crate::error::ErrorCode::Validation,
                "give the day the suppression ends, such as 2026-01-31",
            ))
        })
}
