//! The worker's health endpoints, for an orchestrator:
//!
//! - `GET /healthz` (liveness): the process runs; its body tells how the database, the queue and
//!   the consumers are, without failing on them (restarting a worker does not bring a broker back).
//! - `GET /readyz` (readiness): the database answers, the queue answers, and at least one
//!   consumer is taking messages; `503` otherwise.
//! - `GET /metrics`: the worker's metrics in the Prometheus text format (evaluations, findings,
//!   deliveries, outbox, pool, queue, consumers; `wbd_platform::metrics`).

use std::sync::Arc;

use actix_web::dev::ServerHandle;
use actix_web::{App, HttpResponse, HttpServer, web};
use serde_json::json;
use wbd_queue::Queue;
use wbd_store::Store;

struct Backends {
    store: Arc<dyn Store>,
    queue: Queue,
}

impl Backends {
    async fn status(&self) -> (bool, serde_json::Value) {
        let database = self.store.ping().await.is_ok();
        let queue = self.queue.ready().await;
        let consumers = wbd_platform::background::active_consumers();
        let ready = database && queue && consumers > 0;
        let word = |ok: bool| if ok { "ok" } else { "unavailable" };
        let body = json!({
            "status": if ready { "ok" } else { "degraded" },
            "database": word(database),
            "queue": word(queue),
            "consumers": consumers,
        });
        (ready, body)
    }
}

async fn healthz(backends: web::Data<Backends>) -> HttpResponse {
    HttpResponse::Ok().json(backends.status().await.1)
}

async fn metrics(backends: web::Data<Backends>) -> HttpResponse {
    let consumers = Some(wbd_platform::background::active_consumers());
    let body = wbd_platform::metrics::render(backends.store.as_ref(), &backends.queue, consumers).await;
    HttpResponse::Ok().content_type(wbd_platform::metrics::CONTENT_TYPE).body(body)
}

async fn readyz(backends: web::Data<Backends>) -> HttpResponse {
    match backends.status().await {
        (true, body) => HttpResponse::Ok().json(body),
        (false, body) => HttpResponse::ServiceUnavailable().json(body),
    }
}

/// Starts serving on `listen`; stop it with the returned handle.
pub fn serve(listen: &str, store: Arc<dyn Store>, queue: Queue) -> anyhow::Result<ServerHandle> {
    let backends = web::Data::new(Backends { store, queue });
    let server = HttpServer::new(move || {
        App::new()
            .app_data(backends.clone())
            .route("/healthz", web::get().to(healthz))
            .route("/readyz", web::get().to(readyz))
            .route("/metrics", web::get().to(metrics))
    })
    .workers(1)
    .disable_signals()
    .bind(listen)?
    .run();
    let handle = server.handle();
    tokio::spawn(server);
    Ok(handle)
}
