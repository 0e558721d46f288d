//! `POST /v1/auth/token`: an API key in, a short-lived access token out.

use actix_web::{HttpRequest, HttpResponse, post, web};
use chrono::Utc;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::credentials::hash_secret;
use crate::error::{ApiError, ApiResult, ErrorCode, Problem};
use crate::input::JsonObject;
use crate::responses::{BadRequest, TooManyRequests};
use crate::state::AppState;

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TokenRequest {
    /// An API key (`wbdk_…`).
    pub api_key: String,
}

#[derive(Serialize, ToSchema)]
pub struct TokenResponse {
    pub access_token: String,
    /// Always `Bearer`.
    pub token_type: &'static str,
    /// Seconds until the token expires.
    pub expires_in: i64,
}

/// Exchange an API key for an access token.
#[utoipa::path(tag = "auth", request_body = TokenRequest, responses(
    (status = 200, body = TokenResponse),
    BadRequest,
    (status = 401, description = "Unknown or revoked key", body = Problem, content_type = "application/problem+json"),
    TooManyRequests,
))]
#[post("/v1/auth/token")]
pub async fn issue_token(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: JsonObject<TokenRequest>,
) -> ApiResult<HttpResponse> {
    let now = Utc::now();
    let digest = hash_secret(body.api_key.trim());
    state.rate_limits.check_secret_attempt(&req, &digest, now).await?;
    let key = state
        .store
        .find_api_key_by_hash(&digest)
        .await?
        .filter(|k| k.revoked_at.is_none())
        .ok_or_else(|| ApiError::new(ErrorCode::InvalidCredentials, "unknown or revoked API key"))?;
    let token = state.tokens.issue(key.id, key.org_id, key.role, now)?;
    Ok(HttpResponse::Ok().json(TokenResponse {
        access_token: token,
        token_type: "Bearer",
        expires_in: state.tokens.ttl_secs(),
    }))
}
