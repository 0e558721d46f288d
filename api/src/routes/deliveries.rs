//! Deliveries: what was sent to an integration (the event as sent, every attempt of it),
//! listed newest first a page at a time, and sent again — one delivery, or every failed one
//! since a moment. Every role of the organisation reads them; org admins replay them.

use actix_web::{HttpResponse, get, post, web};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;
use wbd_store::{Delivery, DeliveryAttempt, DeliveryFilter, DeliveryStatus};

use crate::auth::Principal;
use crate::error::{ApiError, ApiResult, ErrorCode, Problem};
use crate::input::JsonObject;
use crate::paging::{LegacyBefore, Listed, Page, PageCursor, PageSize};
use crate::params::query_value;
use crate::responses::{BadRequest, Forbidden, IntegrationSwitchedOff, NotFound, Unauthenticated};
use crate::routes::integrations::{find, switched_off};
use crate::state::AppState;

#[derive(Serialize, ToSchema)]
pub struct DeliveryView {
    pub id: Uuid,
    pub integration_id: Uuid,
    pub event_id: Uuid,
    /// `finding.opened` …
    pub event_type: String,
    pub tenant_id: Option<Uuid>,
    pub finding_id: Option<Uuid>,
    /// `pending` (waiting or in flight), `succeeded` or `failed` (attempts exhausted).
    #[schema(value_type = DeliveryStatusName)]
    pub status: &'static str,
    /// Attempts made in the current round (a replay starts a new one).
    pub attempt_count: u32,
    pub next_attempt_at: Option<DateTime<Utc>>,
    pub last_attempt_at: Option<DateTime<Utc>>,
    /// The HTTP status of the last answer.
    pub last_status: Option<u16>,
    pub last_error: Option<String>,
    /// When the event happened.
    pub occurred_at: DateTime<Utc>,
    /// The OpenTelemetry trace of the event (the collector's push, its evaluation, and every
    /// attempt of this delivery), when it has one.
    pub trace_id: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl From<&Delivery> for DeliveryView {
    fn from(d: &Delivery) -> Self {
        DeliveryView {
            id: d.id,
            integration_id: d.integration_id,
            event_id: d.event_id,
            event_type: d.event_type.clone(),
            tenant_id: d.tenant_id.map(|t| t.0),
            finding_id: d.finding_id.map(|f| f.0),
            status: d.status.as_str(),
            attempt_count: d.attempts,
            next_attempt_at: d.next_attempt_at,
            last_attempt_at: d.last_attempt_at,
            last_status: d.last_status,
            last_error: d.last_error.clone(),
            occurred_at: d.occurred_at,
            trace_id: d
                .traceparent
                .as_deref()
                .and_then(wbd_platform::telemetry::trace_id_of)
                .map(str::to_owned),
            created_at: d.created_at,
            updated_at: d.updated_at,
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct AttemptView {
    /// 1 for the first attempt of a round.
    pub attempt: u32,
    pub at: DateTime<Utc>,
    pub succeeded: bool,
    pub status: Option<u16>,
    pub latency_ms: u64,
    pub error: Option<String>,
    /// The start of the last answer's body.
    pub response_excerpt: Option<String>,
    /// Every request the attempt made (`request`, `status`, `latency_ms`, `response_excerpt`,
    /// `error`); paths of secret URLs are redacted.
    #[schema(value_type = Vec<Object>)]
    pub exchanges: Value,
}

impl From<DeliveryAttempt> for AttemptView {
    fn from(a: DeliveryAttempt) -> Self {
        AttemptView {
            attempt: a.attempt,
            at: a.at,
            succeeded: a.succeeded,
            status: a.status,
            latency_ms: a.latency_ms,
            error: a.error,
            response_excerpt: a.response_excerpt,
            exchanges: a.exchanges,
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct DeliveryDetail {
    #[serde(flatten)]
    pub delivery: DeliveryView,
    /// The event as sent (the Standard Webhooks payload).
    #[schema(value_type = Object)]
    pub payload: Value,
    /// Every attempt, oldest first.
    pub attempts: Vec<AttemptView>,
}

/// A page of deliveries.
pub type DeliveryPage = Page<DeliveryView>;

impl Listed for DeliveryView {
    const PAGE_SCHEMA: &'static str = "DeliveryPage";
}

/// The status of a delivery.
#[derive(ToSchema)]
#[serde(rename_all = "snake_case")]
#[allow(dead_code)]
pub enum DeliveryStatusName {
    Pending,
    Succeeded,
    Failed,
}

query_value!(
    /// `status` of deliveries.
    DeliveryStatusFilter(DeliveryStatus),
    |text| text.parse().ok(),
    "`status` must be one of: pending, succeeded, failed",
);

query_value!(
    /// `since`: an instant.
    SinceFilter(DateTime<Utc>),
    |text| text.parse().ok(),
    "`since` must be an RFC 3339 instant such as 2026-01-31T17:00:00Z",
);

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct DeliveryQuery {
    #[param(value_type = Option<DeliveryStatusName>)]
    pub status: Option<DeliveryStatusFilter>,
    /// Only deliveries of events at or after this RFC 3339 instant.
    #[param(value_type = Option<DateTime<Utc>>)]
    pub since: Option<SinceFilter>,
    /// From `next_cursor` of the previous page.
    #[param(value_type = Option<Uuid>)]
    pub cursor: Option<PageCursor>,
    /// Deprecated: the name this listing gave `cursor` before every listing paged the same way.
    #[deprecated = "send `cursor`"]
    #[param(value_type = Option<Uuid>)]
    pub before: Option<LegacyBefore>,
    /// Page size, 1 to 200 (default 50).
    #[param(value_type = Option<u32>, minimum = 1, maximum = 200)]
    pub limit: Option<PageSize>,
}

impl DeliveryQuery {
    /// Where the page starts: `cursor`, or the deprecated `before`; not both.
    #[allow(deprecated)]
    fn cursor(&self) -> ApiResult<Option<Uuid>> {
        match (self.cursor, self.before) {
            (Some(_), Some(_)) => Err(ApiError::new(
                ErrorCode::InvalidParameter,
                "`before` is the deprecated name of `cursor`; send only `cursor`",
            )),
            (cursor, before) => Ok(cursor.map(|c| c.0).or(before.map(|b| b.0))),
        }
    }
}

/// An integration's deliveries, newest first.
#[utoipa::path(tag = "deliveries", operation_id = "list_deliveries", security(("bearer" = [])),
    params(("id" = Uuid, Path), DeliveryQuery), responses(
    (status = 200, body = DeliveryPage),
    BadRequest, Unauthenticated, NotFound,
))]
#[get("/v1/integrations/{id}/deliveries")]
pub async fn list_deliveries(
    state: web::Data<AppState>,
    who: Principal,
    id: web::Path<Uuid>,
    q: web::Query<DeliveryQuery>,
) -> ApiResult<HttpResponse> {
    let q = q.into_inner();
    let limit = q.limit.unwrap_or_default();
    let filter = DeliveryFilter {
        status: q.status.map(|s| s.0),
        since: q.since.map(|s| s.0),
        before: q.cursor()?,
        limit: limit.get(),
    };
    let integration = find(&state, &who, id.into_inner()).await?;
    let deliveries = state.store.list_deliveries(who.org, integration.id, &filter).await?;
    Ok(HttpResponse::Ok().json(DeliveryPage::of(deliveries, limit, |d| d.id, |d| DeliveryView::from(&d))))
}

/// One delivery with the event sent and every attempt.
#[utoipa::path(tag = "deliveries", operation_id = "get_delivery", security(("bearer" = [])),
    params(("id" = Uuid, Path)), responses(
    (status = 200, body = DeliveryDetail),
    Unauthenticated, NotFound,
))]
#[get("/v1/deliveries/{id}")]
pub async fn get_delivery(
    state: web::Data<AppState>,
    who: Principal,
    id: web::Path<Uuid>,
) -> ApiResult<HttpResponse> {
    let (delivery, attempts) =
        state.store.get_delivery(who.org, *id).await?.ok_or_else(|| ApiError::not_found("delivery"))?;
    Ok(HttpResponse::Ok().json(DeliveryDetail {
        delivery: DeliveryView::from(&delivery),
        payload: delivery.payload,
        attempts: attempts.into_iter().map(Into::into).collect(),
    }))
}

#[derive(Serialize, ToSchema)]
pub struct Replayed {
    /// How many deliveries were queued again.
    pub replayed: u64,
}

/// Send a delivery again from a fresh schedule (org admins), whatever became of it; the
/// receiver sees the same event id. Its integration must be switched on.
#[utoipa::path(tag = "deliveries", operation_id = "replay_delivery", security(("bearer" = [])),
    params(("id" = Uuid, Path)), responses(
    (status = 202, body = Replayed),
    Unauthenticated, Forbidden, NotFound,
    (status = 409, description = "`delivery_pending`: it is waiting to be sent already; `integration_disabled`: switch the integration on first", body = Problem, content_type = "application/problem+json"),
))]
#[post("/v1/deliveries/{id}/replay")]
#[tracing::instrument(skip_all, fields(org_id = %who.org.org_id, delivery_id = %id))]
pub async fn replay_delivery(
    state: web::Data<AppState>,
    who: Principal,
    id: web::Path<Uuid>,
) -> ApiResult<HttpResponse> {
    let replayed = replay_one(&state, &who, *id).await?;
    Ok(HttpResponse::Accepted().json(Replayed { replayed }))
}

/// Queues the organisation's delivery `id` again (the REST route and the console both replay
/// through this): org admins only, not while it is pending, not to a switched-off integration.
pub async fn replay_one(state: &AppState, who: &Principal, id: Uuid) -> ApiResult<u64> {
    let (delivery, _) =
        state.store.get_delivery(who.org, id).await?.ok_or_else(|| ApiError::not_found("delivery"))?;
    who.require_admin()?;
    let pending = || ApiError::new(ErrorCode::DeliveryPending, "the delivery is waiting to be sent already");
    if delivery.status == DeliveryStatus::Pending {
        return Err(pending());
    }
    let integration = state
        .store
        .get_integration(who.org, delivery.integration_id)
        .await?
        .ok_or_else(|| ApiError::not_found("delivery"))?;
    if !integration.enabled {
        return Err(switched_off());
    }
    let replayed = state
        .store
        .replay_deliveries(
            who.org,
            delivery.integration_id,
            Some(delivery.id),
            None,
            &who.actor(),
            Utc::now(),
        )
        .await?;
    if replayed == 0 {
        // Something happened meanwhile: say what.
        return Err(match state.store.get_integration(who.org, delivery.integration_id).await? {
            // Deleted, with its deliveries.
            None => ApiError::not_found("delivery"),
            Some(i) if !i.enabled => switched_off(),
            // It turned pending (another replay).
            Some(_) => pending(),
        });
    }
    tracing::info!(delivery_id = %id, "delivery replayed");
    Ok(replayed)
}

/// `POST /v1/integrations/{id}/replay` body.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReplaySince {
    /// RFC 3339: every failed delivery of an event at or after this instant is sent again.
    pub since: DateTime<Utc>,
}

/// Send again every failed delivery of events since a moment (org admins), e.g. after the
/// receiver was down for longer than the retry schedule.
#[utoipa::path(tag = "deliveries", operation_id = "replay_failed_deliveries", security(("bearer" = [])),
    params(("id" = Uuid, Path)),
    request_body = ReplaySince, responses(
    (status = 202, body = Replayed),
    BadRequest, Unauthenticated, Forbidden, NotFound, IntegrationSwitchedOff,
))]
#[post("/v1/integrations/{id}/replay")]
#[tracing::instrument(skip_all, fields(org_id = %who.org.org_id, integration_id = %id))]
pub async fn replay_failed(
    state: web::Data<AppState>,
    who: Principal,
    id: web::Path<Uuid>,
    body: JsonObject<ReplaySince>,
) -> ApiResult<HttpResponse> {
    let replayed = replay_failed_since(&state, &who, *id, body.since).await?;
    Ok(HttpResponse::Accepted().json(Replayed { replayed }))
}

/// Queues again every failed delivery of the organisation's integration `id` of events at or
/// after `since` (the REST route and the console both replay through this): org admins only,
/// not to a switched-off integration.
pub async fn replay_failed_since(
    state: &AppState,
    who: &Principal,
    id: Uuid,
    since: DateTime<Utc>,
) -> ApiResult<u64> {
    let integration = find(state, who, id).await?;
    who.require_admin()?;
    if !integration.enabled {
        return Err(switched_off());
    }
    let replayed = state
        .store
        .replay_deliveries(who.org, integration.id, None, Some(since), &who.actor(), Utc::now())
        .await?;
    if replayed == 0 {
        // Nothing to replay, or switched off or deleted meanwhile.
        match state.store.get_integration(who.org, integration.id).await? {
            None => return Err(ApiError::not_found("integration")),
            Some(i) if !i.enabled => return Err(switched_off()),
            Some(_) => {}
        }
    }
    tracing::info!(replayed, since = %since, "failed deliveries replayed");
    Ok(replayed)
}
