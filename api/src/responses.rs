//! The problem answers handlers document, each declared once. A handler names the ones it can
//! give beside its own success answer, e.g.
//! `responses((status = 200, body = TenantView), Unauthenticated, NotFound)`; an answer with
//! something to say about that operation only (which `409`, say) stays a tuple of its own.
//!
//! Every answer is `application/problem+json` with the [`Problem`](crate::error::Problem) schema,
//! and its description names the codes it carries (see [`ErrorCode`](crate::error::ErrorCode)).

use std::collections::BTreeMap;

use utoipa::openapi::{ContentBuilder, Ref, RefOr, Response, ResponseBuilder};

macro_rules! problem_responses {
    ($($(#[$doc:meta])* $name:ident => $status:literal, $description:literal;)*) => {$(
        $(#[$doc])*
        pub struct $name;

        impl utoipa::IntoResponses for $name {
            fn responses() -> BTreeMap<String, RefOr<Response>> {
                BTreeMap::from([($status.to_string(), RefOr::T(problem($description)))])
            }
        }
    )*};
}

problem_responses! {
    /// 400: the body or a query parameter cannot be read.
    BadRequest => 400, "`malformed_json` (the body is not JSON of this operation's shape) or `invalid_parameter` (a query parameter, named in `detail`)";
    /// 401: no credentials, or credentials that are not (or no longer) valid.
    Unauthenticated => 401, "`unauthenticated`, `invalid_token` or `token_expired`: get a token from `POST /v1/auth/token` and send it as `Authorization: Bearer`";
    /// 403: the caller's role does not allow the operation.
    Forbidden => 403, "`forbidden`: your role does not allow this operation";
    /// 404: nothing with this id in the caller's organisation (another organisation's objects
    /// answer the same).
    NotFound => 404, "`not_found`: nothing with this id exists in your organisation";
    /// 413: the body is larger than the operation accepts.
    PayloadTooLarge => 413, "`payload_too_large`: the body is larger than allowed";
    /// 415: the body's content type or encoding is not one the operation reads.
    UnsupportedMediaType => 415, "`unsupported_media_type`: send `Content-Type: application/json`";
    /// 422: the request is well-formed but a value is refused.
    Unprocessable => 422, "`validation_failed`: a value is not acceptable; `detail` names it";
    /// 409 of operations that send through an integration.
    IntegrationSwitchedOff => 409, "`integration_disabled`: switch it on first";
    /// 503 of the Graph connector's operations.
    GraphNotConfigured => 409, "`graph_not_configured`: the server has no Microsoft Graph app (`graph.client_id`), so it cannot ask for consent";
    /// 503 of operations that seal integration secrets.
    SecretsKeyMissing => 503, "`secrets_key_missing`: the server cannot seal secrets";
}

/// 429: a rate limit (`rate_limits.*`) is reached; `Retry-After` says when to come back.
pub struct TooManyRequests;

impl utoipa::IntoResponses for TooManyRequests {
    fn responses() -> BTreeMap<String, RefOr<Response>> {
        use utoipa::openapi::schema::{ObjectBuilder, Type};
        use utoipa::openapi::{HeaderBuilder, ResponseBuilder};

        let seconds = ObjectBuilder::new().schema_type(Type::Integer).minimum(Some(1)).build();
        let retry_after = HeaderBuilder::new()
            .schema(Some(seconds))
            .description(Some("Seconds to wait before trying again"))
            .build();
        let content = ContentBuilder::new().schema(Some(Ref::from_schema_name("Problem"))).build();
        let response = ResponseBuilder::new()
            .description("`rate_limited`: too many requests (per client address and credential on token exchange and enrollment, per organisation on the API, per collector on pushes); wait `Retry-After` seconds")
            .header("Retry-After", retry_after)
            .content("application/problem+json", content)
            .build();
        BTreeMap::from([("429".to_owned(), RefOr::T(response))])
    }
}

fn problem(description: &str) -> Response {
    let content = ContentBuilder::new().schema(Some(Ref::from_schema_name("Problem"))).build();
    ResponseBuilder::new().description(description).content("application/problem+json", content).build()
}
