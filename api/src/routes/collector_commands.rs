//! A collector's commands ("re-test now" asks for them, `findings::retest`): what became of each
//! (pending, delivered, expired, cancelled), and cancelling one that still waits.

use actix_web::{HttpResponse, get, post, web};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;
use wbd_store::{CollectorCommandRecord, CollectorId, CommandCancel};

use crate::auth::Principal;
use crate::error::{ApiError, ApiResult, ErrorCode, Problem};
use crate::paging::{Listed, Page, PageCursor, PageSize};
use crate::responses::{BadRequest, Forbidden, NotFound, Unauthenticated};
use crate::state::AppState;

/// What became of a command.
#[derive(ToSchema)]
#[serde(rename_all = "snake_case")]
#[allow(dead_code)]
pub enum CommandStateName {
    Pending,
    Delivered,
    Expired,
    Cancelled,
}

#[derive(Serialize, ToSchema)]
pub struct CollectorCommandView {
    /// Also the id the collector sees; it acts on each id once.
    pub id: Uuid,
    pub collector_id: Uuid,
    /// The finding whose re-test asked for it.
    pub finding_id: Option<Uuid>,
    /// `pending` (waits for the collector's next push), `delivered` (handed out in the answer to
    /// a push), `expired` (not delivered before `expires_at`; it never will be) or `cancelled`.
    #[schema(value_type = CommandStateName)]
    pub state: &'static str,
    /// The command as the collector receives it, e.g.
    /// `{"command": "run_probes", "probes": ["endpoint"], "reason": "…"}`.
    #[schema(value_type = Object)]
    pub action: Value,
    /// Who asked for it (`api_key:<id>`).
    pub requested_by: String,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    pub delivered_at: Option<DateTime<Utc>>,
    pub cancelled_at: Option<DateTime<Utc>>,
    pub cancelled_by: Option<String>,
}

impl CollectorCommandView {
    fn new(c: CollectorCommandRecord, now: DateTime<Utc>) -> Self {
        CollectorCommandView {
            id: c.id,
            collector_id: c.collector_id.0,
            finding_id: c.finding_id.map(|f| f.0),
            state: c.state(now).as_str(),
            action: c.action,
            requested_by: c.requested_by,
            created_at: c.created_at,
            expires_at: c.expires_at,
            delivered_at: c.delivered_at,
            cancelled_at: c.cancelled_at,
            cancelled_by: c.cancelled_by,
        }
    }
}

/// A page of a collector's commands.
pub type CollectorCommandPage = Page<CollectorCommandView>;

impl Listed for CollectorCommandView {
    const PAGE_SCHEMA: &'static str = "CollectorCommandPage";
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct CommandQuery {
    /// From `next_cursor` of the previous page.
    #[param(value_type = Option<Uuid>)]
    pub cursor: Option<PageCursor>,
    /// Page size, 1 to 200 (default 50).
    #[param(value_type = Option<u32>, minimum = 1, maximum = 200)]
    pub limit: Option<PageSize>,
}

/// A collector's commands, newest first, with what became of each. Commands are kept for
/// `retention.collector_commands_days` after they ran out.
#[utoipa::path(tag = "collectors", operation_id = "list_collector_commands", security(("bearer" = [])), params(("id" = Uuid, Path), CommandQuery), responses(
    (status = 200, body = CollectorCommandPage),
    BadRequest, Unauthenticated, NotFound,
))]
#[get("/v1/collectors/{id}/commands")]
pub async fn list(
    state: web::Data<AppState>,
    who: Principal,
    id: web::Path<Uuid>,
    q: web::Query<CommandQuery>,
) -> ApiResult<HttpResponse> {
    let collector = CollectorId(id.into_inner());
    state.store.get_collector(who.org, collector).await?.ok_or_else(|| ApiError::not_found("collector"))?;
    let limit = q.limit.unwrap_or_default();
    let commands =
        state.store.list_collector_commands(who.org, collector, q.cursor.map(|c| c.0), limit.get()).await?;
    let now = Utc::now();
    Ok(HttpResponse::Ok().json(CollectorCommandPage::of(
        commands,
        limit,
        |c| c.id,
        |c| CollectorCommandView::new(c, now),
    )))
}

/// Cancel a command that still waits for the collector's next push; recorded in the audit log.
#[utoipa::path(tag = "collectors", operation_id = "cancel_collector_command", security(("bearer" = [])), params(("id" = Uuid, Path), ("command_id" = Uuid, Path)), responses(
    (status = 200, body = CollectorCommandView),
    Unauthenticated, Forbidden, NotFound,
    (status = 409, description = "`command_not_pending`: the command was delivered, ran out or was cancelled already", body = Problem, content_type = "application/problem+json"),
))]
#[post("/v1/collectors/{id}/commands/{command_id}/cancel")]
pub async fn cancel(
    state: web::Data<AppState>,
    who: Principal,
    path: web::Path<(Uuid, Uuid)>,
) -> ApiResult<HttpResponse> {
    who.require_finding_work()?;
    let (collector, command) = path.into_inner();
    let now = Utc::now();
    match state
        .store
        .cancel_collector_command(who.org, CollectorId(collector), command, &who.actor(), now)
        .await?
    {
        CommandCancel::Cancelled(c) => {
            tracing::info!(collector_id = %collector, command_id = %command, "collector command cancelled");
            Ok(HttpResponse::Ok().json(CollectorCommandView::new(*c, now)))
        }
        CommandCancel::NotPending(c) => Err(ApiError::new(
            ErrorCode::CommandNotPending,
            format!("the command is {} and can no longer be cancelled", c.state(now).as_str()),
        )),
        CommandCancel::NotFound => Err(ApiError::not_found("command")),
    }
}
