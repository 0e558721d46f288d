//! Findings: filtered, cursor-paginated lists, one finding with its evidence, its history and the
//! tickets integrations keep for it, and what people do with them — acknowledge, suppress until
//! a date, unsuppress, re-test now.
//!
//! Every action is an event on the finding with its actor (`api_key:<id>`) and time. Actions are
//! guarded by the finding's `version`: send the version you saw (optional) and a finding that
//! changed meanwhile answers 409 `finding_changed` instead of acting on something you did not
//! see. Org admins and technicians may act; read-only keys may only read.

use std::collections::{BTreeMap, HashMap};

use actix_web::{HttpRequest, HttpResponse, get, post, web};
use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;
use wbd_findings::lifecycle::is_stale;
use wbd_rules::Lang;
use wbd_store::{
    ActionOutcome, Collector, CollectorStatus, CommandWrite, Finding, FindingAction, FindingEvent,
    FindingFilter, FindingId, FindingStatus, Severity, TenantId, TenantScope,
};
use wbd_wire::{CommandAction, ProbeKind};

use crate::auth::Principal;
use crate::error::{ApiError, ApiResult, ErrorCode, Problem};
use crate::input::{JsonObject, OptionalBody, optional_json};
use crate::paging::{Listed, Page, PageCursor, PageSize};
use crate::params::{LangQuery, LangTag, TenantFilter, query_value, request_lang};
use crate::responses::{BadRequest, Forbidden, NotFound, Unauthenticated, Unprocessable};
use crate::routes::rule_config::SeverityName;
use crate::state::AppState;

/// The longest suppression: past it, a problem must be looked at again.
pub const MAX_SUPPRESSION_DAYS: i64 = 90;
const MAX_NOTE_CHARS: usize = 2_000;
const MAX_REASON_CHARS: usize = 500;

#[derive(Serialize, ToSchema)]
pub struct FindingView {
    pub id: Uuid,
    pub tenant_id: Uuid,
    pub rule_id: String,
    pub subject: String,
    /// The collector whose probe results the finding rests on; absent for a tenant-wide finding.
    pub collector_id: Option<Uuid>,
    #[schema(value_type = SeverityName)]
    pub severity: &'static str,
    #[schema(value_type = FindingStatusName)]
    pub status: &'static str,
    /// The collector behind it is silent, so it rests on old results: it is held as it is
    /// (neither opened, resolved nor re-announced) until the collector reports again.
    pub stale: bool,
    pub title: String,
    /// What is wrong and what to do, in one paragraph.
    pub summary: String,
    /// What the finding rests on (from the collector's probe results).
    #[schema(value_type = Object)]
    pub evidence: serde_json::Value,
    pub opened_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub resolved_at: Option<DateTime<Utc>>,
    pub reopen_count: u32,
    /// Who acknowledged it, and when (status `acknowledged`).
    pub acknowledged_at: Option<DateTime<Utc>>,
    pub acknowledged_by: Option<String>,
    /// Until when, why and by whom it is suppressed (status `suppressed`). When the suppression
    /// runs out and the problem is still there, the finding is announced again (back to `open`).
    pub suppressed_until: Option<DateTime<Utc>>,
    pub suppression_reason: Option<String>,
    pub suppressed_by: Option<String>,
    /// Changes with every transition; send it with an action to act only on what you saw.
    pub version: i64,
    /// The active finding whose failure explains this one (the rule pack's `explained_by`):
    /// this one is its consequence — fix the root cause first; it usually clears this one. A
    /// consequence is not counted in the tenant's health score, and one that opened under its
    /// root has no ticket of its own. On a resolved finding: its root when it resolved.
    pub root_cause_id: Option<Uuid>,
    /// The tickets (or alerts) integrations keep for it.
    pub tickets: Vec<TicketView>,
}

impl FindingView {
    /// `collectors` are the finding's tenant's (they decide `stale`).
    pub fn new(f: Finding, collectors: &[Collector], now: DateTime<Utc>, lang: Lang) -> Self {
        // Shipped rules have their title in every language; a custom rule's is the MSP's own.
        let title = wbd_rules::rule_info(&f.rule_id, lang).map_or(f.title, |info| info.problem.to_owned());
        // The summary as stored is English; render the rule's message in another language.
        let summary = match (&f.message, lang) {
            (Some(message), l) if l != Lang::En => {
                serde_json::from_value::<wbd_rules::Message>(message.clone())
                    .map_or(f.summary, |m| wbd_rules::render(&m, l))
            }
            _ => f.summary,
        };
        FindingView {
            stale: is_stale(&f.rule_id, f.collector_id, collectors, now),
            id: f.id.0,
            tenant_id: f.tenant_id.0,
            rule_id: f.rule_id,
            subject: f.subject,
            collector_id: f.collector_id.map(|c| c.0),
            severity: f.severity.as_str(),
            status: f.status.as_str(),
            title,
            summary,
            evidence: f.evidence,
            opened_at: f.opened_at,
            updated_at: f.updated_at,
            resolved_at: f.resolved_at,
            reopen_count: f.reopen_count,
            acknowledged_at: f.acknowledged_at,
            acknowledged_by: f.acknowledged_by,
            suppressed_until: f.suppressed_until,
            suppression_reason: f.suppression_reason,
            suppressed_by: f.suppressed_by,
            version: f.version,
            root_cause_id: f.root_finding_id.map(|id| id.0),
            tickets: Vec::new(),
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct FindingEventView {
    /// `opened`, `updated`, `resolved`, `reopened`, `acknowledged`, `suppressed`,
    /// `unsuppressed`, `suppression_expired`, `retest_requested` or `root_cause_resolved` (it
    /// opened as the consequence of another finding, which resolved while this one still fails:
    /// announced on its own from then on).
    pub kind: &'static str,
    /// `system` for the evaluator, `api_key:<id>` for a person or automation.
    pub actor: String,
    pub at: DateTime<Utc>,
    #[schema(value_type = SeverityName)]
    pub severity: &'static str,
    pub summary: String,
    /// What the person wrote: the acknowledgement note or the suppression reason; for a re-test,
    /// which collectors were asked to run which probes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    /// Until when a `suppressed` event suppresses.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub suppressed_until: Option<DateTime<Utc>>,
    /// The root cause the finding was grouped under when this happened, if it had no ticket of
    /// its own: integrations were not told of this event (the root's ticket stands for it).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub root_cause_id: Option<Uuid>,
}

impl From<FindingEvent> for FindingEventView {
    fn from(e: FindingEvent) -> Self {
        FindingEventView {
            kind: e.kind.as_str(),
            actor: e.actor,
            at: e.at,
            severity: e.severity.as_str(),
            summary: e.summary,
            note: e.note,
            suppressed_until: e.suppressed_until,
            root_cause_id: e.root_finding_id.map(|id| id.0),
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct FindingDetail {
    #[serde(flatten)]
    pub finding: FindingView,
    /// What the rule checks and why it matters, in the response language (shipped rules).
    pub description: Option<&'static str>,
    /// What to do, step by step, in the response language (shipped rules).
    pub remediation_steps: Vec<&'static str>,
    /// Every transition, oldest first.
    pub events: Vec<FindingEventView>,
}

/// A page of findings.
pub type FindingPage = Page<FindingView>;

impl Listed for FindingView {
    const PAGE_SCHEMA: &'static str = "FindingPage";
}

/// The status of a finding.
#[derive(ToSchema)]
#[serde(rename_all = "snake_case")]
#[allow(dead_code)]
pub enum FindingStatusName {
    Open,
    Acknowledged,
    Suppressed,
    Resolved,
}

query_value!(
    /// `status` of findings.
    FindingStatusFilter(FindingStatus),
    |text| text.parse().ok(),
    "`status` must be one of: open, acknowledged, suppressed, resolved",
);

query_value!(
    /// `severity` of findings.
    SeverityFilter(Severity),
    |text| text.parse().ok(),
    "`severity` must be one of: critical, high, medium, low, info",
);

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct FindingQuery {
    #[param(value_type = Option<Uuid>)]
    pub tenant_id: Option<TenantFilter>,
    #[param(value_type = Option<FindingStatusName>)]
    pub status: Option<FindingStatusFilter>,
    #[param(value_type = Option<SeverityName>)]
    pub severity: Option<SeverityFilter>,
    pub rule_id: Option<String>,
    /// From `next_cursor` of the previous page.
    #[param(value_type = Option<Uuid>)]
    pub cursor: Option<PageCursor>,
    /// Page size, 1 to 200 (default 50).
    #[param(value_type = Option<u32>, minimum = 1, maximum = 200)]
    pub limit: Option<PageSize>,
    /// `en`, `pl` or `uk` for rule titles; overrides `Accept-Language`.
    #[param(value_type = Option<String>)]
    pub lang: Option<LangTag>,
}

/// The collectors of each tenant in `tenants`, to decide which findings are stale.
async fn collectors_by_tenant(
    state: &AppState,
    who: &Principal,
    tenant: Option<TenantId>,
) -> ApiResult<HashMap<TenantId, Vec<Collector>>> {
    let mut by_tenant: HashMap<TenantId, Vec<Collector>> = HashMap::new();
    for collector in state.store.list_collectors(who.org, tenant).await? {
        by_tenant.entry(collector.tenant_id).or_default().push(collector);
    }
    Ok(by_tenant)
}

/// Findings, newest first, filtered by tenant, status, severity and rule.
#[utoipa::path(tag = "findings", operation_id = "list_findings", security(("bearer" = [])), params(FindingQuery), responses(
    (status = 200, body = FindingPage),
    BadRequest, Unauthenticated, NotFound,
))]
#[get("/v1/findings")]
pub async fn list(
    state: web::Data<AppState>,
    who: Principal,
    query: web::Query<FindingQuery>,
    req: HttpRequest,
) -> ApiResult<HttpResponse> {
    let q = query.into_inner();
    let lang = request_lang(&req, q.lang);
    let limit = q.limit.unwrap_or_default();
    let tenant = super::tenants::tenant_filter(&state, &who, q.tenant_id).await?;
    let filter = FindingFilter {
        tenant_id: tenant,
        status: q.status.map(|s| s.0),
        severity: q.severity.map(|s| s.0),
        rule_id: q.rule_id,
        before: q.cursor.map(|c| FindingId(c.0)),
        limit: limit.get(),
    };
    let findings = state.store.list_findings(who.org, &filter).await?;
    let collectors = collectors_by_tenant(&state, &who, tenant).await?;
    let now = Utc::now();
    let ids: Vec<FindingId> = findings.iter().map(|f| f.id).collect();
    let mut tickets = tickets_of(&state, &who, &ids).await?;
    let page = FindingPage::of(
        findings,
        limit,
        |f| f.id.0,
        |f| {
            let of_tenant = collectors.get(&f.tenant_id).map_or(&[][..], Vec::as_slice);
            let tickets = tickets.remove(&f.id.0).unwrap_or_default();
            FindingView { tickets, ..FindingView::new(f, of_tenant, now, lang) }
        },
    );
    Ok(HttpResponse::Ok().json(page))
}

/// One finding with its evidence and history.
#[utoipa::path(tag = "findings", operation_id = "get_finding", security(("bearer" = [])), params(("id" = Uuid, Path), LangQuery), responses(
    (status = 200, body = FindingDetail),
    Unauthenticated, NotFound,
))]
#[get("/v1/findings/{id}")]
pub async fn get(
    state: web::Data<AppState>,
    who: Principal,
    id: web::Path<Uuid>,
    req: HttpRequest,
    q: web::Query<LangQuery>,
) -> ApiResult<HttpResponse> {
    let finding = find(&state, &who, FindingId(id.into_inner())).await?;
    detail(&state, &who, finding, request_lang(&req, q.lang)).await
}

async fn find(state: &AppState, who: &Principal, id: FindingId) -> ApiResult<Finding> {
    state.store.get_finding(who.org, id).await?.ok_or_else(|| ApiError::not_found("finding"))
}

async fn detail(state: &AppState, who: &Principal, finding: Finding, lang: Lang) -> ApiResult<HttpResponse> {
    let events = state.store.list_finding_events(who.org, finding.id).await?;
    let collectors = state.store.list_collectors(who.org, Some(finding.tenant_id)).await?;
    let tickets = tickets_of(state, who, &[finding.id]).await?.remove(&finding.id.0).unwrap_or_default();
    let info = wbd_rules::rule_info(&finding.rule_id, lang);
    Ok(HttpResponse::Ok().json(FindingDetail {
        description: info.map(|i| i.description),
        remediation_steps: info.map(|i| i.remediation_steps.to_vec()).unwrap_or_default(),
        finding: FindingView { tickets, ..FindingView::new(finding, &collectors, Utc::now(), lang) },
        events: events.into_iter().map(Into::into).collect(),
    }))
}

// ---- actions ----------------------------------------------------------------------------------

/// `POST /v1/findings/{id}/acknowledge` body (optional).
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AcknowledgeRequest {
    /// What you are doing about it (at most 2000 characters).
    #[serde(default)]
    #[schema(max_length = 2000)]
    pub note: Option<String>,
    /// The version you saw; if the finding changed since, nothing happens (409).
    #[serde(default)]
    pub version: Option<i64>,
}

/// `POST /v1/findings/{id}/suppress` body.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SuppressRequest {
    /// Why the problem is accepted for now (1 to 500 characters, not only whitespace).
    #[schema(min_length = 1, max_length = 500, pattern = r"\S")]
    pub reason: String,
    /// RFC 3339 instant in the future, at most 90 days ahead. When it passes and the problem is
    /// still there, the finding is announced again.
    #[serde(deserialize_with = "rfc3339")]
    pub until: DateTime<Utc>,
    /// The version you saw; if the finding changed since, nothing happens (409).
    #[serde(default)]
    pub version: Option<i64>,
}

/// `POST /v1/findings/{id}/unsuppress` body (optional).
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UnsuppressRequest {
    /// The version you saw; if the finding changed since, nothing happens (409).
    #[serde(default)]
    pub version: Option<i64>,
}

/// An RFC 3339 instant, refused with a message that names the field and the format.
fn rfc3339<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<DateTime<Utc>, D::Error> {
    let text = String::deserialize(deserializer)?;
    DateTime::parse_from_rfc3339(&text).map(|t| t.with_timezone(&Utc)).map_err(|_| {
        serde::de::Error::custom(format!(
            "`until` must be an RFC 3339 instant such as 2026-01-31T17:00:00Z, not {text:?}"
        ))
    })
}

fn validation(detail: impl Into<String>) -> ApiError {
    ApiError::new(ErrorCode::Validation, detail)
}

/// Applies a person's action; answers the finding as it is now, with its history.
async fn act(
    state: &AppState,
    who: &Principal,
    id: FindingId,
    version: Option<i64>,
    action: FindingAction,
    lang: Lang,
) -> ApiResult<HttpResponse> {
    let finding = act_on(state, who, id, version, action).await?;
    detail(state, who, finding, lang).await
}

/// A person's action on a finding (the REST routes and the console both act through this):
/// checks the role, applies `action` to the version the person saw (`version`, else the
/// current one) with an event naming them, and answers the finding as it is now.
pub async fn act_on(
    state: &AppState,
    who: &Principal,
    id: FindingId,
    version: Option<i64>,
    action: FindingAction,
) -> ApiResult<Finding> {
    who.require_finding_work()?;
    let finding = find(state, who, id).await?;
    let expected = version.unwrap_or(finding.version);
    let outcome =
        state.store.act_on_finding(who.org, id, expected, &action, &who.actor(), Utc::now()).await?;
    match outcome {
        ActionOutcome::Applied(finding) => {
            tracing::info!(finding_id = %id, kind = action.event_kind().as_str(), "finding action");
            Ok(*finding)
        }
        ActionOutcome::NotFound => Err(ApiError::not_found("finding")),
        ActionOutcome::Changed { current_version } => Err(ApiError::new(
            ErrorCode::FindingChanged,
            format!(
                "the finding changed meanwhile (it is at version {current_version}, the action was for \
                 version {expected}); reload it and decide again"
            ),
        )),
        ActionOutcome::Refused(why) => Err(ApiError::new(ErrorCode::InvalidTransition, why.0)),
    }
}

/// Acknowledge a finding: someone is on it (open → acknowledged).
#[utoipa::path(tag = "findings", security(("bearer" = [])), params(("id" = Uuid, Path)),
    request_body(content = Option<AcknowledgeRequest>, content_type = "application/json", description = "Optional."),
    responses(
        (status = 200, body = FindingDetail),
        BadRequest, Unauthenticated, Forbidden, NotFound,
        (status = 409, description = "`invalid_transition` (not open) or `finding_changed`", body = Problem, content_type = "application/problem+json"),
        Unprocessable,
    ))]
#[post("/v1/findings/{id}/acknowledge")]
pub async fn acknowledge(
    state: web::Data<AppState>,
    who: Principal,
    id: web::Path<Uuid>,
    req: HttpRequest,
    body: OptionalBody,
) -> ApiResult<HttpResponse> {
    who.require_finding_work()?;
    let request: AcknowledgeRequest = optional_json(&req, &body.0)?;
    let action = acknowledgement(request.note.as_deref())?;
    act(&state, &who, FindingId(id.into_inner()), request.version, action, request_lang(&req, None)).await
}

/// Suppress a finding until a date: the problem is known and accepted for now (open,
/// acknowledged or suppressed → suppressed). When the date passes and the problem is still there,
/// the finding is announced again.
#[utoipa::path(tag = "findings", security(("bearer" = [])), params(("id" = Uuid, Path)),
    request_body = SuppressRequest,
    responses(
        (status = 200, body = FindingDetail),
        BadRequest, Unauthenticated, Forbidden, NotFound,
        (status = 409, description = "`invalid_transition` (resolved) or `finding_changed`", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Blank reason, or `until` not in the next 90 days", body = Problem, content_type = "application/problem+json"),
    ))]
#[post("/v1/findings/{id}/suppress")]
pub async fn suppress(
    state: web::Data<AppState>,
    who: Principal,
    id: web::Path<Uuid>,
    req: HttpRequest,
    body: JsonObject<SuppressRequest>,
) -> ApiResult<HttpResponse> {
    who.require_finding_work()?;
    let request = body.into_inner();
    let action = suppression(&request.reason, request.until, Utc::now())?;
    act(&state, &who, FindingId(id.into_inner()), request.version, action, request_lang(&req, None)).await
}

/// An acknowledgement with `note` (at most 2000 characters; blank is none).
pub fn acknowledgement(note: Option<&str>) -> ApiResult<FindingAction> {
    // Lengths are counted as sent (blanks around included), as the document's maxLength counts.
    if note.is_some_and(|n| n.chars().count() > MAX_NOTE_CHARS) {
        return Err(validation(format!("`note` may be at most {MAX_NOTE_CHARS} characters")));
    }
    let note = note.map(str::trim).filter(|n| !n.is_empty());
    Ok(FindingAction::Acknowledge { note: note.map(str::to_owned) })
}

/// A suppression for `reason` until `until`: a reason that says something, and an end in the
/// next 90 days.
pub fn suppression(reason: &str, until: DateTime<Utc>, now: DateTime<Utc>) -> ApiResult<FindingAction> {
    // Counted as sent (blanks around included), as the document's maxLength counts.
    if reason.chars().count() > MAX_REASON_CHARS {
        return Err(validation(format!("`reason` may be at most {MAX_REASON_CHARS} characters")));
    }
    let reason = reason.trim();
    if reason.is_empty() {
        return Err(validation("`reason` must say why the problem is accepted for now"));
    }
    if until <= now {
        return Err(validation(format!("`until` must be in the future (it is {now} now)")));
    }
    if until > now + Duration::days(MAX_SUPPRESSION_DAYS) {
        return Err(validation(format!(
            "`until` may be at most {MAX_SUPPRESSION_DAYS} days ahead; suppress again later if needed"
        )));
    }
    Ok(FindingAction::Suppress { reason: reason.to_owned(), until })
}

/// End a suppression early (suppressed → open).
#[utoipa::path(tag = "findings", security(("bearer" = [])), params(("id" = Uuid, Path)),
    request_body(content = Option<UnsuppressRequest>, content_type = "application/json", description = "Optional."),
    responses(
        (status = 200, body = FindingDetail),
        BadRequest, Unauthenticated, Forbidden, NotFound,
        (status = 409, description = "`invalid_transition` (not suppressed) or `finding_changed`", body = Problem, content_type = "application/problem+json"),
    ))]
#[post("/v1/findings/{id}/unsuppress")]
pub async fn unsuppress(
    state: web::Data<AppState>,
    who: Principal,
    id: web::Path<Uuid>,
    req: HttpRequest,
    body: OptionalBody,
) -> ApiResult<HttpResponse> {
    who.require_finding_work()?;
    let request: UnsuppressRequest = optional_json(&req, &body.0)?;
    act(
        &state,
        &who,
        FindingId(id.into_inner()),
        request.version,
        FindingAction::Unsuppress,
        request_lang(&req, None),
    )
    .await
}

/// What a re-test asked for.
#[derive(Serialize, ToSchema)]
pub struct RetestAccepted {
    pub finding_id: Uuid,
    /// One command per collector; each is handed to its collector in the answer to its next push.
    pub commands: Vec<RetestCommandView>,
}

#[derive(Serialize, ToSchema)]
pub struct RetestCommandView {
    /// The command id the collector sees.
    pub id: Uuid,
    pub collector_id: Uuid,
    /// The probe kinds it will run (empty: every probe it has configured).
    pub probes: Vec<&'static str>,
    pub requested_at: DateTime<Utc>,
    /// Not picked up by then (`collectors.command_ttl_secs`), it never is; see
    /// `GET /v1/collectors/{id}/commands`.
    pub expires_at: DateTime<Utc>,
}

/// Re-test now: ask the collector(s) behind the finding to run the probes its rule reads, at
/// their next contact. A per-collector finding asks its collector, a tenant-wide one every active
/// collector of the tenant. Asking again before the collector picked the request up does not
/// queue it twice (the waiting command's expiry moves on). A command not picked up within
/// `collectors.command_ttl_secs` expires. A finding on facts of the central Graph reader has the
/// tenant read again at once instead.
#[utoipa::path(tag = "findings", security(("bearer" = [])), params(("id" = Uuid, Path)), responses(
    (status = 202, body = RetestAccepted),
    Unauthenticated, Forbidden, NotFound,
    (status = 409, description = "`retest_unavailable`: the finding rests on no probe, or no active collector is behind it", body = Problem, content_type = "application/problem+json"),
))]
#[post("/v1/findings/{id}/retest")]
pub async fn retest(
    state: web::Data<AppState>,
    who: Principal,
    id: web::Path<Uuid>,
) -> ApiResult<HttpResponse> {
    let accepted = request_retest(&state, &who, FindingId(id.into_inner())).await?;
    Ok(HttpResponse::Accepted().json(accepted))
}

/// Re-test now (the REST route and the console both ask through this): stores a command for
/// each collector behind the finding, with an event naming the person.
pub async fn request_retest(state: &AppState, who: &Principal, id: FindingId) -> ApiResult<RetestAccepted> {
    who.require_finding_work()?;
    let finding = find(state, who, id).await?;
    let rule = wbd_rules::rules().iter().find(|info| info.id == finding.rule_id);
    // A rule outside the pack (a custom rule) reads facts without saying which: run everything.
    let probes: Vec<ProbeKind> = rule.map(|info| info.reads.to_vec()).unwrap_or_default();
    if rule.is_some() && probes.is_empty() {
        return Err(ApiError::new(
            ErrorCode::RetestUnavailable,
            "this finding rests on no probe result but on the collector's own reports; it clears when the \
             collector pushes again",
        ));
    }
    let collectors = state.store.list_collectors(who.org, Some(finding.tenant_id)).await?;
    let active = |c: &&Collector| c.status == CollectorStatus::Active;
    let mut targets: Vec<&Collector> = match finding.collector_id {
        Some(id) => collectors.iter().filter(|c| c.id == id).filter(active).collect(),
        None => collectors.iter().filter(active).collect(),
    };
    let scope = TenantScope { org_id: who.org.org_id, tenant_id: finding.tenant_id };
    let now = Utc::now();
    // The central Graph reader takes no commands: its next read falls due at once instead.
    let graph_reader = state.store.get_graph_connection(scope).await?.and_then(|c| c.collector_id);
    let reread = graph_reader.is_some_and(|id| {
        (probes.is_empty() || probes.contains(&ProbeKind::Graph)) && targets.iter().any(|c| c.id == id)
    });
    targets.retain(|c| Some(c.id) != graph_reader);
    if reread {
        state.store.request_graph_read(scope, now).await?;
    }
    if targets.is_empty() && !reread {
        let detail = match finding.collector_id {
            Some(_) => "the collector behind this finding is no longer active (revoked?); enroll a new one",
            None => "the tenant has no active collector to run the probes",
        };
        return Err(ApiError::new(ErrorCode::RetestUnavailable, detail));
    }

    let action = CommandAction::RunProbes {
        probes: probes.clone(),
        reason: Some(format!("re-test of \"{}\" for {}", finding.title, finding.subject)),
    };
    let action = serde_json::to_value(&action).map_err(ApiError::internal)?;
    let commands: Vec<CommandWrite> =
        targets.iter().map(|c| CommandWrite { collector_id: c.id, action: action.clone() }).collect();
    let probe_names: Vec<&'static str> = probes.iter().map(|p| p.as_str()).collect();
    let mut names: Vec<&str> = targets.iter().map(|c| c.name.as_str()).collect();
    if reread {
        names.push(wbd_store::GRAPH_READER_COLLECTOR);
    }
    let note = format!(
        "asked {} to run {}",
        names.join(", "),
        if probe_names.is_empty() { "every probe".to_owned() } else { probe_names.join(", ") }
    );
    let ttl = chrono::Duration::seconds(
        i64::try_from(state.settings.collectors.command_ttl_secs).unwrap_or(86_400),
    );
    let stored = state
        .store
        .request_retest(scope, finding.id, &commands, &who.actor(), &note, now + ttl, now)
        .await?
        .ok_or_else(|| ApiError::not_found("finding"))?;
    tracing::info!(finding_id = %finding.id, collectors = stored.len(), "re-test requested");
    Ok(RetestAccepted {
        finding_id: finding.id.0,
        commands: stored
            .into_iter()
            .map(|c| RetestCommandView {
                id: c.id,
                collector_id: c.collector_id.0,
                probes: probe_names.clone(),
                requested_at: c.created_at,
                expires_at: c.expires_at,
            })
            .collect(),
    })
}

// ---- the tickets integrations keep for findings ----------------------------------------------

/// A ticket (or alert) an integration keeps for a finding.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct TicketView {
    pub integration_id: Uuid,
    pub integration_name: String,
    pub kind: String,
    /// The destination's id (ticket number, issue key …); absent while being created.
    pub external_id: Option<String>,
    /// A link to open it, when the destination has one.
    pub url: Option<String>,
    /// `creating`, `open` or `closed`.
    pub state: &'static str,
}

/// The tickets of `findings`, by finding.
pub async fn tickets_of(
    state: &AppState,
    who: &Principal,
    findings: &[wbd_store::FindingId],
) -> ApiResult<BTreeMap<Uuid, Vec<TicketView>>> {
    let mut by_finding: BTreeMap<Uuid, Vec<TicketView>> = BTreeMap::new();
    if findings.is_empty() {
        return Ok(by_finding);
    }
    for t in state.store.list_finding_tickets(who.org, findings).await? {
        by_finding.entry(t.finding_id.0).or_default().push(TicketView {
            integration_id: t.integration_id,
            integration_name: t.integration_name,
            kind: t.kind,
            external_id: t.external_id,
            url: t.url,
            state: t.state.as_str(),
        });
    }
    Ok(by_finding)
}
