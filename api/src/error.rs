//! The one error type at the HTTP edge. Every error a client can see is a row of
//! [`ErrorCode`]: a stable machine code, an HTTP status and a title, rendered as
//! `application/problem+json` (RFC 9457). Unexpected errors are logged with their whole cause
//! chain and answered as an opaque 500 that carries the request id.

use std::fmt;

use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpResponse, ResponseError};
use serde::Serialize;
use utoipa::ToSchema;

macro_rules! error_codes {
    ($($variant:ident => ($status:ident, $code:literal, $title:literal),)*) => {
        /// Every problem the API answers with.
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub enum ErrorCode { $($variant,)* }

        impl ErrorCode {
            pub fn status(self) -> StatusCode {
                match self { $(ErrorCode::$variant => StatusCode::$status,)* }
            }
            /// Stable machine-readable code, also the last part of the problem `type`.
            pub fn code(self) -> &'static str {
                match self { $(ErrorCode::$variant => $code,)* }
            }
            pub fn title(self) -> &'static str {
                match self { $(ErrorCode::$variant => $title,)* }
            }
            pub const ALL: &'static [ErrorCode] = &[$(ErrorCode::$variant,)*];
        }
    };
}

error_codes! {
    MalformedJson => (BAD_REQUEST, "malformed_json", "The request body is not valid JSON for this operation"),
    InvalidParameter => (BAD_REQUEST, "invalid_parameter", "A path or query parameter is invalid"),
    UnsupportedSchemaVersion => (BAD_REQUEST, "unsupported_schema_version", "The batch uses a schema version this server does not know"),
    UnsupportedMediaType => (UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type", "The request body has an unsupported content type or encoding"),
    PayloadTooLarge => (PAYLOAD_TOO_LARGE, "payload_too_large", "The request body is larger than allowed"),
    Validation => (UNPROCESSABLE_ENTITY, "validation_failed", "The request is well-formed but a value is not acceptable"),
    TooManyResults => (UNPROCESSABLE_ENTITY, "too_many_results", "The batch holds more results than allowed"),
    Unauthenticated => (UNAUTHORIZED, "unauthenticated", "Authentication is required"),
    InvalidCredentials => (UNAUTHORIZED, "invalid_credentials", "The credentials are not valid"),
    TokenExpired => (UNAUTHORIZED, "token_expired", "The access token has expired"),
    InvalidToken => (UNAUTHORIZED, "invalid_token", "The access token is not valid"),
    CollectorRevoked => (UNAUTHORIZED, "collector_revoked", "This collector has been revoked"),
    TokenReplayed => (UNAUTHORIZED, "token_replayed", "This push token was already used"),
    EnrollmentTokenInvalid => (UNAUTHORIZED, "enrollment_token_invalid", "The enrollment token is not valid"),
    EnrollmentTokenExpired => (UNAUTHORIZED, "enrollment_token_expired", "The enrollment token has expired"),
    EnrollmentTokenUsed => (CONFLICT, "enrollment_token_used", "The enrollment token was already used"),
    Forbidden => (FORBIDDEN, "forbidden", "Your role does not allow this operation"),
    NotFound => (NOT_FOUND, "not_found", "No such resource"),
    MethodNotAllowed => (METHOD_NOT_ALLOWED, "method_not_allowed", "This method is not allowed on this resource"),
    BatchConflict => (CONFLICT, "batch_id_conflict", "This batch id was already used for a different batch"),
    InvalidTransition => (CONFLICT, "invalid_transition", "The finding's status does not allow this action"),
    FindingChanged => (CONFLICT, "finding_changed", "The finding changed meanwhile; reload it and try again"),
    RetestUnavailable => (CONFLICT, "retest_unavailable", "Nothing can re-test this finding now"),
    CommandNotPending => (CONFLICT, "command_not_pending", "The command was delivered, ran out or was cancelled already"),
    InvalidRuleSettings => (UNPROCESSABLE_ENTITY, "invalid_rule_settings", "The rule override is not acceptable"),
    InvalidCustomRule => (UNPROCESSABLE_ENTITY, "invalid_custom_rule", "The custom rule does not compile"),
    DestinationRefused => (UNPROCESSABLE_ENTITY, "destination_refused", "Deliveries may not reach this destination"),
    NotSigned => (CONFLICT, "integration_not_signed", "Only webhook integrations have a signing secret"),
    IntegrationDisabled => (CONFLICT, "integration_disabled", "The integration is switched off"),
    IntegrationChanged => (CONFLICT, "integration_changed", "The integration changed meanwhile; reload it and try again"),
    DeliveryPending => (CONFLICT, "delivery_pending", "The delivery is waiting to be sent already"),
    RateLimited => (TOO_MANY_REQUESTS, "rate_limited", "Too many requests; wait as Retry-After says"),
    ConsentStateInvalid => (BAD_REQUEST, "consent_state_invalid", "The consent state is forged, used already or expired; ask for a new consent URL"),
    ConsentDeclined => (BAD_REQUEST, "consent_declined", "The administrator did not consent to the app"),
    GraphTenantMismatch => (CONFLICT, "graph_tenant_mismatch", "Consent came from another Entra tenant than the tenant's own"),
    GraphNotConnected => (NOT_FOUND, "graph_not_connected", "The tenant is not connected to Microsoft Graph"),
    GraphNotConfigured => (CONFLICT, "graph_not_configured", "The server has no Microsoft Graph app (graph.client_id)"),
    GraphAppChanged => (CONFLICT, "graph_app_changed", "The tenant's own Graph app changed meanwhile; reload it and try again"),
    GraphAppNotSet => (NOT_FOUND, "graph_app_not_set", "The tenant has no own Graph app"),
    SecretsKeyMissing => (SERVICE_UNAVAILABLE, "secrets_key_missing", "The server has no key to seal integration secrets (delivery.secrets_key)"),
    Unavailable => (SERVICE_UNAVAILABLE, "unavailable", "The service is temporarily unavailable"),
    Internal => (INTERNAL_SERVER_ERROR, "internal_error", "An unexpected error occurred"),
}

/// The problem document (RFC 9457) every error response carries.
#[derive(Debug, Serialize, ToSchema)]
pub struct Problem {
    /// `urn:wbd:problem:<code>`.
    #[serde(rename = "type")]
    pub type_: String,
    pub title: String,
    pub status: u16,
    /// What exactly was wrong, in words a person can act on.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// Stable machine-readable code.
    pub code: String,
    /// The request id, also in the logs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    /// Each refused field, where one request has several problems or a position to point at.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Vec<Object>>)]
    pub errors: Option<serde_json::Value>,
}

pub struct ApiError {
    pub code: ErrorCode,
    pub detail: Option<String>,
    /// Seconds a client should wait before retrying (429, 503).
    pub retry_after: Option<u64>,
    /// Per-field problems shown as the problem's `errors`.
    pub errors: Option<serde_json::Value>,
    /// The cause of an internal error, logged but never shown.
    source: Option<anyhow::Error>,
}

pub type ApiResult<T> = Result<T, ApiError>;

impl ApiError {
    pub fn new(code: ErrorCode, detail: impl Into<String>) -> Self {
        ApiError { code, detail: Some(detail.into()), retry_after: None, errors: None, source: None }
    }

    pub fn bare(code: ErrorCode) -> Self {
        ApiError { code, detail: None, retry_after: None, errors: None, source: None }
    }

    pub fn not_found(what: &str) -> Self {
        ApiError::new(ErrorCode::NotFound, format!("no {what} with this id exists in your organisation"))
    }

    pub fn internal(source: impl Into<anyhow::Error>) -> Self {
        ApiError {
            code: ErrorCode::Internal,
            detail: None,
            retry_after: None,
            errors: None,
            source: Some(source.into()),
        }
    }

    /// Attaches per-field problems (`errors` in the problem document).
    pub fn with_errors(mut self, errors: serde_json::Value) -> Self {
        self.errors = Some(errors);
        self
    }

    pub fn rate_limited(detail: impl Into<String>, retry_after: u64) -> Self {
        ApiError { retry_after: Some(retry_after), ..ApiError::new(ErrorCode::RateLimited, detail) }
    }

    /// Logs an unexpected error with its whole cause chain (as its problem answer would); for
    /// the console, which answers with a page instead.
    pub fn log_if_unexpected(&self) {
        if let Some(source) = &self.source {
            tracing::error!(error = ?source, "request failed unexpectedly");
        }
    }

    pub fn unavailable(detail: impl Into<String>, retry_after: u64) -> Self {
        ApiError { retry_after: Some(retry_after), ..ApiError::new(ErrorCode::Unavailable, detail) }
    }
}

impl fmt::Debug for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.code.code())?;
        if let Some(d) = &self.detail {
            write!(f, ": {d}")?;
        }
        if let Some(source) = &self.source {
            write!(f, ": {source:#}")?;
        }
        Ok(())
    }
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.detail.as_deref().unwrap_or(self.code.title()))
    }
}

impl From<wbd_store::StoreError> for ApiError {
    fn from(e: wbd_store::StoreError) -> Self {
        ApiError::internal(e)
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        self.code.status()
    }

    fn error_response(&self) -> HttpResponse {
        if let Some(source) = &self.source {
            tracing::error!(error = ?source, "request failed unexpectedly");
        }
        let request_id = current_request_id();
        let problem = Problem {
            type_: format!("urn:wbd:problem:{}", self.code.code()),
            title: self.code.title().to_owned(),
            status: self.code.status().as_u16(),
            detail: self.detail.clone(),
            code: self.code.code().to_owned(),
            request_id,
            errors: self.errors.clone(),
        };
        let mut response = HttpResponse::build(self.code.status());
        response.insert_header((header::CONTENT_TYPE, HeaderValue::from_static("application/problem+json")));
        if let Some(secs) = self.retry_after {
            response.insert_header((header::RETRY_AFTER, secs.to_string()));
        }
        if self.code.status() == StatusCode::UNAUTHORIZED {
            response.insert_header((header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer")));
        }
        match serde_json::to_vec(&problem) {
            Ok(body) => response.body(body),
            Err(_) => response.finish(),
        }
    }
}

tokio::task_local! {
    /// The id of the request being served, for problem documents.
    pub static REQUEST_ID: String;
}

fn current_request_id() -> Option<String> {
    REQUEST_ID.try_with(Clone::clone).ok()
}

/// Turns actix's own extractor errors (bad JSON, bad query, oversize bodies) into problems.
pub fn json_error(
    err: actix_web::error::JsonPayloadError,
    _req: &actix_web::HttpRequest,
) -> actix_web::Error {
    use actix_web::error::JsonPayloadError as E;
    let api = match &err {
        E::OverflowKnownLength { .. } | E::Overflow { .. } => {
            ApiError::new(ErrorCode::PayloadTooLarge, err.to_string())
        }
        E::ContentType => {
            ApiError::new(ErrorCode::UnsupportedMediaType, "send Content-Type: application/json")
        }
        E::Deserialize(e) => ApiError::new(ErrorCode::MalformedJson, e.to_string()),
        _ => ApiError::new(ErrorCode::MalformedJson, err.to_string()),
    };
    api.into()
}

pub fn query_error(
    err: actix_web::error::QueryPayloadError,
    _req: &actix_web::HttpRequest,
) -> actix_web::Error {
    ApiError::new(ErrorCode::InvalidParameter, query_detail(&err)).into()
}

/// What was wrong with a query: the refusal of a typed parameter (which names it) as it is,
/// without actix's "Query deserialize error: " in front.
pub fn query_detail(err: &actix_web::error::QueryPayloadError) -> String {
    match err {
        actix_web::error::QueryPayloadError::Deserialize(e) => e.to_string(),
        other => other.to_string(),
    }
}

pub fn path_error(err: actix_web::error::PathError, _req: &actix_web::HttpRequest) -> actix_web::Error {
    // A malformed id cannot name anything that exists.
    ApiError::new(ErrorCode::NotFound, format!("invalid id in the path: {err}")).into()
}

pub fn payload_error(err: actix_web::error::PayloadError, _req: &actix_web::HttpRequest) -> actix_web::Error {
    use actix_web::error::PayloadError as P;
    let api = match &err {
        P::Overflow | P::UnknownLength => ApiError::new(ErrorCode::PayloadTooLarge, err.to_string()),
        P::EncodingCorrupted => ApiError::new(ErrorCode::MalformedJson, "the gzip body is corrupt"),
        _ => ApiError::new(ErrorCode::MalformedJson, err.to_string()),
    };
    api.into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_unique() {
        let mut codes: Vec<_> = ErrorCode::ALL.iter().map(|c| c.code()).collect();
        codes.sort_unstable();
        let before = codes.len();
        codes.dedup();
        assert_eq!(before, codes.len());
    }
}
