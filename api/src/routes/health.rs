//! Liveness and readiness.

use actix_web::{HttpResponse, get, web};
use serde::Serialize;
use utoipa::ToSchema;

use crate::error::{ApiError, ApiResult};
use crate::state::AppState;

#[derive(Serialize, ToSchema)]
pub struct Health {
    /// `ok` when the check passed.
    pub status: &'static str,
}

/// Liveness: the process serves requests.
#[utoipa::path(tag = "health", responses((status = 200, body = Health)))]
#[get("/healthz")]
pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(Health { status: "ok" })
}

/// Readiness: the database and the queue answer.
#[utoipa::path(tag = "health", responses(
    (status = 200, body = Health),
    (status = 503, description = "The database or the queue is unreachable", body = crate::error::Problem, content_type = "application/problem+json"),
))]
#[get("/readyz")]
pub async fn readyz(state: web::Data<AppState>) -> ApiResult<HttpResponse> {
    if let Err(e) = state.store.ping().await {
        tracing::warn!(error = %e, "readiness: database unreachable");
        return Err(ApiError::unavailable("the database is unreachable", 5));
    }
    if !state.queue.ready().await {
        return Err(ApiError::unavailable("the queue is unreachable", 5));
    }
    Ok(HttpResponse::Ok().json(Health { status: "ok" }))
}
