//! Liveness and readiness, for a load balancer and an orchestrator.
//!
//! Readiness is whether *this process* can serve: its database answers. A broker outage does
//! not take an API out of a load balancer: pushes are still stored (the outbox holds their
//! messages until the broker is back, and nothing is lost), and every read is served. The
//! broker's state shows in `/healthz`'s details and in `/metrics` (`wbd_queue_ready`,
//! `wbd_outbox_oldest_age_seconds`), where an alert belongs.

use actix_web::{HttpResponse, get, web};
use serde::Serialize;
use utoipa::ToSchema;

use crate::error::{ApiError, ApiResult};
use crate::state::AppState;

/// `ok` or `unavailable`.
#[derive(Serialize, ToSchema, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Dependency {
    Ok,
    Unavailable,
}

impl Dependency {
    fn of(ok: bool) -> Self {
        if ok { Dependency::Ok } else { Dependency::Unavailable }
    }
}

/// The installation's Microsoft Graph app: `not_configured` (no `graph.client_id`), `ok`, or
/// `credential_invalid` (the identity platform refused its credential: no tenant is read with it
/// until it is fixed; the tenants it reads show `app_credential_invalid`).
#[derive(Serialize, ToSchema, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum GraphAppHealth {
    NotConfigured,
    Ok,
    CredentialInvalid,
}

#[derive(Serialize, ToSchema)]
pub struct Health {
    /// `ok` when the check passed.
    pub status: &'static str,
}

/// What `/healthz` tells beside "the process runs".
#[derive(Serialize, ToSchema)]
pub struct Liveness {
    /// Always `ok`: the process serves requests.
    pub status: &'static str,
    pub database: Dependency,
    /// The queue (RabbitMQ in the distributed deployment); while it is unavailable pushes are
    /// stored and wait in the outbox.
    pub queue: Dependency,
    pub graph_app: GraphAppHealth,
}

/// Liveness: the process serves requests (always 200), with the state of what it depends on.
#[utoipa::path(tag = "health", responses((status = 200, body = Liveness)))]
#[get("/healthz")]
pub async fn healthz(state: web::Data<AppState>) -> HttpResponse {
    let database = state.store.ping().await.is_ok();
    let queue = state.queue.ready().await;
    let graph_app = if !state.settings.graph.enabled() {
        GraphAppHealth::NotConfigured
    } else if database && matches!(state.store.graph_app_problem().await, Ok(Some(_))) {
        GraphAppHealth::CredentialInvalid
    } else {
        GraphAppHealth::Ok
    };
    HttpResponse::Ok().json(Liveness {
        status: "ok",
        database: Dependency::of(database),
        queue: Dependency::of(queue),
        graph_app,
    })
}

/// Readiness: this process can serve, that is, its database answers. The queue is not part of
/// it (see `/healthz`).
#[utoipa::path(tag = "health", responses(
    (status = 200, body = Health),
    (status = 503, description = "The database is unreachable", body = crate::error::Problem, content_type = "application/problem+json"),
))]
#[get("/readyz")]
pub async fn readyz(state: web::Data<AppState>) -> ApiResult<HttpResponse> {
    if let Err(e) = state.store.ping().await {
        tracing::warn!(error = %e, "readiness: database unreachable");
        return Err(ApiError::unavailable("the database is unreachable", 5));
    }
    Ok(HttpResponse::Ok().json(Health { status: "ok" }))
}
