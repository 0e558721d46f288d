//! Building and running the server: binds the listener (port 0 in tests), starts the outbox
//! relay (RabbitMQ mode) and, in embedded mode, the worker in the same process.

use std::net::TcpListener;
use std::sync::Arc;

use actix_web::dev::{Server, ServerHandle, Service as _};
use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::{App, HttpMessage as _, HttpResponse, HttpServer, web};
use anyhow::Context as _;
use futures_util::future::{Either, ready};
use rand::RngCore as _;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing_actix_web::{DefaultRootSpanBuilder, RequestId, RootSpanBuilder, TracingLogger};
use utoipa_actix_web::AppExt as _;
use wbd_notify::ssrf::NetworkPolicy;
use wbd_platform::Settings;
use wbd_queue::Queue;
use wbd_store::Store;

use crate::error::{self, REQUEST_ID};
use crate::fallback::KnownRoutes;
use crate::key_cache::ApiKeyCache;
use crate::rate_limit::RateLimiter;
use crate::state::AppState;
use crate::tokens::TokenIssuer;

/// Name of the server secret that signs access tokens (shared by all API processes through the
/// database).
const TOKEN_SECRET: &str = "access-token-hs256";

/// Where the OpenAPI document is served (as JSON), beside the routes it describes.
const OPENAPI_JSON: &str = "/v1/openapi.json";

/// …and as YAML (the same as `openapi.yaml` in the repository).
const OPENAPI_YAML: &str = "/v1/openapi.yaml";

/// Where people browse the API (Swagger UI, served from the binary; no CDN).
const DOCS: &str = "/docs";

/// Where Prometheus scrapes this process (`wbd_platform::metrics`).
const METRICS: &str = "/metrics";

pub struct Application {
    port: u16,
    server: Server,
    cancel: CancellationToken,
    background: JoinSet<()>,
    store: Arc<dyn Store>,
}

impl Application {
    /// Opens the store and queue the settings name, then builds the server.
    pub async fn build(settings: Settings) -> anyhow::Result<Application> {
        let (store, queue) = wbd_platform::open_backends(&settings).await?;
        Application::build_with(settings, store, queue).await
    }

    pub async fn build_with(
        settings: Settings,
        store: Arc<dyn Store>,
        queue: Queue,
    ) -> anyhow::Result<Application> {
        wbd_platform::metrics::install();
        let mut generated = vec![0u8; 32];
        rand::rng().fill_bytes(&mut generated);
        let secret =
            store.get_or_create_secret(TOKEN_SECRET, generated).await.context("loading the token secret")?;
        let sealer = wbd_delivery::secrets::sealer_from_settings(&settings.delivery, &settings.database.url)?
            .map(Arc::new);
        let network = NetworkPolicy::new(&settings.delivery.allow_networks, settings.delivery.https_only)
            .map_err(|e| anyhow::anyhow!("delivery.allow_networks: {e}"))?;
        let rate_limits = Arc::new(
            RateLimiter::new(&settings.rate_limits, &settings.server.trusted_proxies, store.clone())
                .map_err(|e| anyhow::anyhow!(e))?,
        );
        let state = web::Data::new(AppState {
            store: store.clone(),
            queue: queue.clone(),
            tokens: TokenIssuer::new(&secret, &settings.auth),
            api_keys: ApiKeyCache::new(std::time::Duration::from_secs(settings.auth.key_cache_secs)),
            rate_limits: rate_limits.clone(),
            settings: settings.clone(),
            sealer,
            network,
            consent_states: crate::consent_state::ConsentStateKey::derive(&secret),
        });
        let document = crate::openapi::document();
        let openapi_text = web::Data::new(OpenApiText {
            json: serde_json::to_string_pretty(&document).context("rendering the OpenAPI document")?,
            yaml: crate::openapi::yaml().context("rendering the OpenAPI document as YAML")?,
        });
        let mut unlisted =
            vec![(OPENAPI_JSON, "GET"), (OPENAPI_YAML, "GET"), (DOCS, "GET"), (METRICS, "GET")];
        unlisted.extend_from_slice(crate::console::ROUTES);
        let known_routes = web::Data::new(KnownRoutes::new(&document, &unlisted));
        let console_keys = web::Data::new(
            crate::console::ConsoleKeys::load(store.as_ref()).await.context("loading the console's keys")?,
        );

        let listener = TcpListener::bind(&settings.server.listen)
            .with_context(|| format!("binding server.listen = {}", settings.server.listen))?;
        let port = listener.local_addr()?.port();
        let factory = move || {
            let (app, _) = App::new()
                .app_data(state.clone())
                .app_data(openapi_text.clone())
                .app_data(known_routes.clone())
                .app_data(console_keys.clone())
                .app_data(
                    web::JsonConfig::default()
                        .limit(crate::input::MAX_JSON_BYTES)
                        .error_handler(error::json_error),
                )
                .app_data(web::QueryConfig::default().error_handler(error::query_error))
                .app_data(web::PathConfig::default().error_handler(error::path_error))
                .app_data(web::PayloadConfig::default().limit(wbd_wire::MAX_BATCH_BYTES))
                .wrap_fn(|mut req, srv| {
                    let known = req.app_data::<web::Data<KnownRoutes>>().cloned();
                    if let Some(known) = &known {
                        crate::fallback::head_as_get(&mut req, known);
                    }
                    let refusal =
                        known.and_then(|known| crate::fallback::refused_at_fixed_path(req.request(), &known));
                    match refusal {
                        Some(response) => Either::Left(ready(Ok(req.into_response(response)))),
                        None => Either::Right(srv.call(req)),
                    }
                })
                .wrap_fn(|req, srv| {
                    let request_id =
                        req.extensions().get::<RequestId>().map(ToString::to_string).unwrap_or_default();
                    let fut = srv.call(req);
                    REQUEST_ID.scope(request_id.clone(), async move {
                        let mut res = fut.await?;
                        if let Ok(v) = HeaderValue::from_str(&request_id) {
                            res.headers_mut().insert(HeaderName::from_static("x-request-id"), v);
                        }
                        Ok(res)
                    })
                })
                .wrap(TracingLogger::<RootSpan>::new())
                .wrap_fn(|req, srv| {
                    // By the route's pattern (`/v1/findings/{id}`), never the path: ids would
                    // make a series per object.
                    let route = req.match_pattern().unwrap_or_else(|| "unmatched".to_owned());
                    let method = metric_method(req.method());
                    let started = std::time::Instant::now();
                    let fut = srv.call(req);
                    async move {
                        let res = fut.await;
                        let status = match &res {
                            Ok(res) => res.status(),
                            Err(e) => e.as_response_error().status_code(),
                        };
                        let labels = [("route", route), ("method", method.to_owned())];
                        metrics::histogram!("wbd_http_request_duration_seconds", &labels)
                            .record(started.elapsed().as_secs_f64());
                        let status = status.as_u16().to_string();
                        metrics::counter!("wbd_http_requests_total", "route" => labels[0].1.clone(), "method" => method, "status" => status)
                            .increment(1);
                        res
                    }
                })
                .into_utoipa_app()
                .configure(crate::routes::configure)
                .split_for_parts();
            app.route(OPENAPI_JSON, web::get().to(openapi_json))
                .route(OPENAPI_YAML, web::get().to(openapi_yaml))
                .route(DOCS, web::get().to(docs_folder))
                .service(docs())
                .route(METRICS, web::get().to(metrics_text))
                // The console: pages for people, outside the OpenAPI document.
                .configure(crate::console::configure)
                .default_service(web::to(crate::fallback::unrouted))
        };
        let mut server = HttpServer::new(factory).disable_signals().shutdown_timeout(10);
        if settings.server.workers > 0 {
            server = server.workers(settings.server.workers);
        }
        let server = if settings.tls_enabled() {
            let tls = load_tls(&settings)?;
            server.listen_rustls_0_23(listener, tls)?.run()
        } else {
            server.listen(listener)?.run()
        };

        let cancel = CancellationToken::new();
        let mut background = JoinSet::new();
        if let Some(relay) = queue.spawn_relay(cancel.child_token()) {
            background.spawn(async move {
                if let Err(e) = relay.await {
                    tracing::error!(error = %e, "outbox relay task failed");
                }
            });
        }
        background.spawn(forget_rate_limits(rate_limits, cancel.child_token()));
        if settings.worker_embedded() {
            let mut worker =
                wbd_platform::background::spawn(store.clone(), queue, &settings, cancel.child_token())?;
            background.spawn(async move { while worker.join_next().await.is_some() {} });
        }
        tracing::info!(
            port,
            tls = settings.tls_enabled(),
            database = %settings.database.redacted_url(),
            queue = if settings.queue.amqp_url.is_empty() { "local" } else { "rabbitmq" },
            embedded_worker = settings.worker_embedded(),
            "wbd-api listening"
        );
        Ok(Application { port, server, cancel, background, store })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn store(&self) -> Arc<dyn Store> {
        self.store.clone()
    }

    /// Stops the server and the background tasks when `stop` resolves.
    pub async fn run_until(self, stop: impl std::future::Future<Output = ()>) -> anyhow::Result<()> {
        let Application { server, cancel, mut background, .. } = self;
        let handle: ServerHandle = server.handle();
        let server = tokio::spawn(server);
        tokio::select! {
            () = stop => {}
            () = cancel.cancelled() => {}
        }
        tracing::info!("shutting down");
        handle.stop(true).await;
        cancel.cancel();
        while background.join_next().await.is_some() {}
        server.await.context("server task")??;
        Ok(())
    }

    pub async fn run_until_stopped(self) -> anyhow::Result<()> {
        self.run_until(wbd_platform::shutdown_signal()).await
    }
}

/// A method as a metric label: the standard ones by name, anything else as `other`.
fn metric_method(method: &actix_web::http::Method) -> &'static str {
    use actix_web::http::Method;
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    }
}

/// `GET /metrics`: this process's metrics in the Prometheus text format. In embedded mode the
/// process runs the evaluation consumers too, and counts them.
async fn metrics_text(state: web::Data<AppState>) -> HttpResponse {
    let consumers = state.settings.worker_embedded().then(wbd_platform::background::active_consumers);
    let body = wbd_platform::metrics::render(state.store.as_ref(), &state.queue, consumers).await;
    HttpResponse::Ok().content_type(wbd_platform::metrics::CONTENT_TYPE).body(body)
}

/// Every minute, forgets the rate-limited things whose allowance is whole again (on PostgreSQL
/// every API process does it; the statement is cheap and any of them may stop).
async fn forget_rate_limits(limits: Arc<RateLimiter>, cancel: CancellationToken) {
    let mut every = tokio::time::interval(std::time::Duration::from_secs(60));
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = cancel.cancelled() => return,
            _ = every.tick() => {}
        }
        match limits.forget_expired(chrono::Utc::now()).await {
            Ok(forgotten) => tracing::debug!(forgotten, "rate limits forgotten"),
            Err(e) => tracing::warn!(error = %e, "forgetting rate limits failed; retrying in a minute"),
        }
    }
}

/// The request's root span, with the organisation and tenant filled in once known (and the
/// incoming `traceparent` as its parent, so a collector's push continues the collector's trace).
struct RootSpan;

impl RootSpanBuilder for RootSpan {
    fn on_request_start(request: &actix_web::dev::ServiceRequest) -> tracing::Span {
        tracing_actix_web::root_span!(
            request,
            org_id = tracing::field::Empty,
            tenant_id = tracing::field::Empty,
            collector_id = tracing::field::Empty
        )
    }

    fn on_request_end<B: actix_web::body::MessageBody>(
        span: tracing::Span,
        outcome: &Result<actix_web::dev::ServiceResponse<B>, actix_web::Error>,
    ) {
        DefaultRootSpanBuilder::on_request_end(span, outcome);
    }
}

/// The OpenAPI document, rendered once at start-up.
struct OpenApiText {
    json: String,
    yaml: String,
}

async fn openapi_json(doc: web::Data<OpenApiText>) -> HttpResponse {
    HttpResponse::Ok().content_type("application/json").body(doc.json.clone())
}

async fn openapi_yaml(doc: web::Data<OpenApiText>) -> HttpResponse {
    HttpResponse::Ok().content_type("application/yaml").body(doc.yaml.clone())
}

/// `/docs` is the folder `/docs/` (Swagger UI's files are addressed relative to it).
async fn docs_folder() -> HttpResponse {
    HttpResponse::PermanentRedirect().insert_header(("location", "/docs/")).finish()
}

/// Swagger UI at `/docs/`, reading the document from `/v1/openapi.json`; its files are compiled
/// into the binary.
fn docs() -> utoipa_swagger_ui::SwaggerUi {
    let config = utoipa_swagger_ui::Config::new([OPENAPI_JSON]).try_it_out_enabled(true);
    utoipa_swagger_ui::SwaggerUi::new(format!("{DOCS}/{{_:.*}}")).config(config)
}

pub(crate) fn load_tls(settings: &Settings) -> anyhow::Result<rustls::ServerConfig> {
    use rustls_pki_types::pem::PemObject as _;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    let cert_file = &settings.server.tls_cert_file;
    let key_file = &settings.server.tls_key_file;
    let certs = CertificateDer::pem_file_iter(cert_file)
        .and_then(Iterator::collect::<Result<Vec<_>, _>>)
        .with_context(|| format!("reading server.tls_cert_file = {cert_file}"))?;
    let key = PrivateKeyDer::from_pem_file(key_file)
        .with_context(|| format!("reading server.tls_key_file = {key_file}"))?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .context("server.tls_cert_file and server.tls_key_file do not form a usable certificate")
}
