//! Findings: filtered, cursor-paginated lists and one finding with its evidence and history.

use actix_web::{HttpResponse, get, web};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;
use wbd_store::{Finding, FindingEvent, FindingFilter, FindingId, FindingStatus, Severity, TenantId};

use crate::auth::Principal;
use crate::error::{ApiError, ApiResult, ErrorCode, Problem};
use crate::routes::{DEFAULT_PAGE, MAX_PAGE};
use crate::state::AppState;

#[derive(Serialize, ToSchema)]
pub struct FindingView {
    pub id: Uuid,
    pub tenant_id: Uuid,
    pub rule_id: String,
    pub subject: String,
    /// `critical`, `high`, `medium`, `low` or `info`.
    pub severity: &'static str,
    /// `open` or `resolved`.
    pub status: &'static str,
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
}

impl From<Finding> for FindingView {
    fn from(f: Finding) -> Self {
        FindingView {
            id: f.id.0,
            tenant_id: f.tenant_id.0,
            rule_id: f.rule_id,
            subject: f.subject,
            severity: f.severity.as_str(),
            status: f.status.as_str(),
            title: f.title,
            summary: f.summary,
            evidence: f.evidence,
            opened_at: f.opened_at,
            updated_at: f.updated_at,
            resolved_at: f.resolved_at,
            reopen_count: f.reopen_count,
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct FindingEventView {
    /// `opened`, `updated`, `resolved` or `reopened`.
    pub kind: &'static str,
    /// `system` for the evaluator.
    pub actor: String,
    pub at: DateTime<Utc>,
    pub severity: &'static str,
    pub summary: String,
}

impl From<FindingEvent> for FindingEventView {
    fn from(e: FindingEvent) -> Self {
        FindingEventView {
            kind: e.kind.as_str(),
            actor: e.actor,
            at: e.at,
            severity: e.severity.as_str(),
            summary: e.summary,
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct FindingDetail {
    #[serde(flatten)]
    pub finding: FindingView,
    /// Every transition, oldest first.
    pub events: Vec<FindingEventView>,
}

#[derive(Serialize, ToSchema)]
pub struct FindingPage {
    pub items: Vec<FindingView>,
    /// Pass as `cursor` to get the next page; absent on the last page.
    pub next_cursor: Option<String>,
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct FindingQuery {
    pub tenant_id: Option<Uuid>,
    /// `open` or `resolved`.
    pub status: Option<String>,
    /// `critical`, `high`, `medium`, `low` or `info`.
    pub severity: Option<String>,
    pub rule_id: Option<String>,
    /// From `next_cursor` of the previous page.
    pub cursor: Option<String>,
    /// Page size, 1 to 200 (default 50).
    pub limit: Option<u32>,
}

fn invalid(name: &str, allowed: &str) -> ApiError {
    ApiError::new(ErrorCode::InvalidParameter, format!("`{name}` must be one of: {allowed}"))
}

/// Findings, newest first, filtered by tenant, status, severity and rule.
#[utoipa::path(tag = "findings", security(("bearer" = [])), params(FindingQuery), responses(
    (status = 200, body = FindingPage),
    (status = 400, body = Problem, content_type = "application/problem+json"),
    (status = 401, body = Problem, content_type = "application/problem+json"),
))]
#[get("/v1/findings")]
pub async fn list(
    state: web::Data<AppState>,
    who: Principal,
    query: web::Query<FindingQuery>,
) -> ApiResult<HttpResponse> {
    let q = query.into_inner();
    let status = q
        .status
        .as_deref()
        .map(|s| s.parse::<FindingStatus>().map_err(|_| invalid("status", "open, resolved")))
        .transpose()?;
    let severity = q
        .severity
        .as_deref()
        .map(|s| s.parse::<Severity>().map_err(|_| invalid("severity", "critical, high, medium, low, info")))
        .transpose()?;
    let before = q
        .cursor
        .as_deref()
        .map(|c| {
            Uuid::parse_str(c).map(FindingId).map_err(|_| {
                ApiError::new(ErrorCode::InvalidParameter, "`cursor` must be a value from next_cursor")
            })
        })
        .transpose()?;
    let limit = q.limit.unwrap_or(DEFAULT_PAGE);
    if !(1..=MAX_PAGE).contains(&limit) {
        return Err(ApiError::new(
            ErrorCode::InvalidParameter,
            format!("`limit` must be between 1 and {MAX_PAGE}"),
        ));
    }
    let filter = FindingFilter {
        tenant_id: q.tenant_id.map(TenantId),
        status,
        severity,
        rule_id: q.rule_id,
        before,
        limit,
    };
    let findings = state.store.list_findings(who.org, &filter).await?;
    let next_cursor =
        (findings.len() == limit as usize).then(|| findings.last().map(|f| f.id.to_string())).flatten();
    Ok(HttpResponse::Ok()
        .json(FindingPage { items: findings.into_iter().map(Into::into).collect(), next_cursor }))
}

/// One finding with its evidence and history.
#[utoipa::path(tag = "findings", security(("bearer" = [])), params(("id" = Uuid, Path)), responses(
    (status = 200, body = FindingDetail),
    (status = 401, body = Problem, content_type = "application/problem+json"),
    (status = 404, body = Problem, content_type = "application/problem+json"),
))]
#[get("/v1/findings/{id}")]
pub async fn get(state: web::Data<AppState>, who: Principal, id: web::Path<Uuid>) -> ApiResult<HttpResponse> {
    let id = FindingId(id.into_inner());
    let finding =
        state.store.get_finding(who.org, id).await?.ok_or_else(|| ApiError::not_found("finding"))?;
    let events = state.store.list_finding_events(who.org, id).await?;
    Ok(HttpResponse::Ok().json(FindingDetail {
        finding: finding.into(),
        events: events.into_iter().map(Into::into).collect(),
    }))
}
