//! The OpenAPI document, generated from the same handler list the server registers
//! (`routes::configure`), so the two cannot drift. `openapi.yaml` at the repository root is
//! this document, committed; a test fails when they differ (`wbd-api openapi > openapi.yaml`).

use actix_web::http::StatusCode;
use utoipa::openapi::RefOr;
use utoipa::openapi::path::{Operation, ParameterIn};
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::{Modify, OpenApi};
use utoipa_actix_web::AppExt as _;

use crate::error::Problem;
use crate::routes::deliveries::DeliveryStatusName;
use crate::routes::findings::FindingStatusName;
use crate::routes::rule_config::SeverityName;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Writeback Doctor API",
        description = "Diagnoses Microsoft Entra SSPR password writeback for every tenant an MSP looks after. \
Errors are `application/problem+json` documents with a stable `code`. Authenticate with \
`POST /v1/auth/token` and send `Authorization: Bearer <token>`; objects of another organisation answer 404.",
        license(name = "Apache-2.0"),
    ),
    // Schemas that only query parameters name (`IntoParams` does not collect them).
    components(schemas(Problem, FindingStatusName, SeverityName, DeliveryStatusName)),
    modifiers(&Security),
    tags(
        (name = "health", description = "Liveness and readiness"),
        (name = "auth", description = "Access tokens"),
        (name = "api-keys", description = "API keys of your organisation"),
        (name = "overview", description = "All your tenants at a glance, worst first"),
        (name = "tenants", description = "Your customers, with their health"),
        (name = "graph", description = "The central Microsoft Graph connector: a tenant's admin consent to the installation's app, its connection state"),
        (name = "collectors", description = "On-site collectors"),
        (name = "ingest", description = "Probe results from collectors"),
        (name = "findings", description = "What is wrong, with evidence; acknowledge, suppress, re-test"),
        (name = "rules", description = "The shipped rule pack"),
        (name = "integrations", description = "Where findings go: signed webhooks, PSA tickets, PagerDuty, Slack and Teams"),
        (name = "deliveries", description = "What was sent to an integration, every attempt, replays"),
    )
)]
struct ApiDoc;

struct Security;

impl Modify for Security {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                Http::builder()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .description(Some("Access token from POST /v1/auth/token"))
                    .build(),
            ),
        );
        components.add_security_scheme(
            "collector",
            SecurityScheme::Http(
                Http::builder()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .description(Some(
                        "EdDSA JWT signed by the collector's enrolled key: kid = collector id, aud = wbd-ingest, at most 5 minutes",
                    ))
                    .build(),
            ),
        );
    }
}

/// Every answer has a description (OpenAPI requires one): a success answer that says nothing
/// more is described by its status's reason phrase; problem answers carry their own
/// (`crate::responses`).
struct Descriptions;

impl Modify for Descriptions {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        for operation in operations(openapi) {
            for (status, response) in &mut operation.responses.responses {
                if let RefOr::T(response) = response
                    && response.description.is_empty()
                {
                    let reason = status.parse::<u16>().ok().and_then(|s| StatusCode::from_u16(s).ok());
                    response.description =
                        reason.and_then(|s| s.canonical_reason()).unwrap_or("Answer").to_owned();
                }
            }
        }
    }
}

/// What the shared extractors (`startup`'s `JsonConfig`, `QueryConfig`, `PathConfig`) answer for
/// every operation, so that no handler can forget to say so: an operation with a body answers
/// 400 (not JSON of its shape), 413 (larger than allowed) and 415 (not `application/json`); one
/// with query parameters 400 (a parameter refused); one with path parameters 404 (an id that
/// cannot name anything). Every operation that takes a token (an access token, whose
/// organisation is rate-limited, or a collector's push token) answers 429 too. A handler that
/// says more about one of them keeps its own answer.
struct SharedAnswers;

impl Modify for SharedAnswers {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::IntoResponses as _;

        use crate::responses::{
            BadRequest, NotFound, PayloadTooLarge, TooManyRequests, UnsupportedMediaType,
        };

        for operation in operations(openapi) {
            let parameters = operation.parameters.as_deref().unwrap_or_default();
            let is_in =
                |at: ParameterIn| parameters.iter().any(|p| matches!(p, RefOr::T(p) if p.parameter_in == at));
            let mut shared = Vec::new();
            if operation.request_body.is_some() {
                shared.extend([BadRequest::responses(), PayloadTooLarge::responses()]);
                shared.push(UnsupportedMediaType::responses());
            }
            if is_in(ParameterIn::Query) {
                shared.push(BadRequest::responses());
            }
            if is_in(ParameterIn::Path) {
                shared.push(NotFound::responses());
            }
            if operation.security.as_ref().is_some_and(|s| !s.is_empty()) {
                shared.push(TooManyRequests::responses());
            }
            for (status, response) in shared.into_iter().flatten() {
                operation.responses.responses.entry(status).or_insert(response);
            }
        }
    }
}

fn operations(openapi: &mut utoipa::openapi::OpenApi) -> impl Iterator<Item = &mut Operation> {
    openapi.paths.paths.values_mut().flat_map(|item| {
        [&mut item.get, &mut item.put, &mut item.post, &mut item.delete, &mut item.patch]
            .into_iter()
            .flatten()
    })
}

/// The whole document.
pub fn document() -> utoipa::openapi::OpenApi {
    let (_, mut doc) = actix_web::App::new()
        .into_utoipa_app()
        .openapi(ApiDoc::openapi())
        .configure(crate::routes::configure)
        .split_for_parts();
    // After the routes are in: `ApiDoc`'s own modifiers run before there are any.
    SharedAnswers.modify(&mut doc);
    Descriptions.modify(&mut doc);
    doc.info.version = env!("CARGO_PKG_VERSION").to_owned();
    doc
}

/// The document as YAML, as committed in `openapi.yaml`.
pub fn yaml() -> anyhow::Result<String> {
    Ok(document().to_yaml()?)
}
