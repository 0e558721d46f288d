//! Who is calling: an API caller ([`Principal`], from an access token of a key that is not
//! revoked) or a collector that signs each push with its own Ed25519 key.

use std::future::Future;
use std::pin::Pin;

use actix_web::{FromRequest, HttpRequest, dev::Payload, web};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use uuid::Uuid;
use wbd_store::{ApiKeyId, Collector, CollectorId, CollectorStatus, OrgId, OrgScope, PushingCollector, Role};
use wbd_wire::{COLLECTOR_TOKEN_AUDIENCE, COLLECTOR_TOKEN_MAX_TTL_SECS, CollectorTokenClaims};

use crate::error::{ApiError, ApiResult, ErrorCode};
use crate::rate_limit::Subject;
use crate::state::AppState;

/// An authenticated API caller, scoped to its organisation.
#[derive(Debug, Clone, Copy)]
pub struct Principal {
    pub org: OrgScope,
    pub role: Role,
    pub key_id: ApiKeyId,
}

impl Principal {
    /// Org admins only (keys, tenants, collectors).
    pub fn require_admin(&self) -> ApiResult<()> {
        match self.role {
            Role::OrgAdmin => Ok(()),
            _ => Err(ApiError::new(ErrorCode::Forbidden, "this operation needs the org_admin role")),
        }
    }

    /// Org admins and technicians: acknowledging, suppressing and re-testing findings.
    pub fn require_finding_work(&self) -> ApiResult<()> {
        match self.role {
            Role::OrgAdmin | Role::Technician => Ok(()),
            Role::ReadOnly => Err(ApiError::new(
                ErrorCode::Forbidden,
                "working on findings needs the org_admin or technician role; this key is read_only",
            )),
        }
    }

    /// How events name this principal: `api_key:<id>`.
    pub fn actor(&self) -> String {
        format!("api_key:{}", self.key_id)
    }
}

fn bearer(req: &HttpRequest) -> ApiResult<&str> {
    let value = req
        .headers()
        .get(actix_web::http::header::AUTHORIZATION)
        .ok_or_else(|| ApiError::new(ErrorCode::Unauthenticated, "send Authorization: Bearer <token>"))?;
    let value = value
        .to_str()
        .map_err(|_| ApiError::new(ErrorCode::InvalidToken, "the Authorization header is not text"))?;
    match value.split_once(' ') {
        Some((scheme, token)) if scheme.eq_ignore_ascii_case("bearer") && !token.trim().is_empty() => {
            Ok(token.trim())
        }
        _ => Err(ApiError::new(ErrorCode::Unauthenticated, "send Authorization: Bearer <token>")),
    }
}

impl FromRequest for Principal {
    type Error = ApiError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, Self::Error>>>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let req = req.clone();
        Box::pin(async move {
            let state = req
                .app_data::<web::Data<AppState>>()
                .ok_or_else(|| ApiError::internal(anyhow::anyhow!("state missing")))?;
            let claims = state.tokens.verify(bearer(&req)?)?;
            let (key_id, org_id) = (ApiKeyId(claims.sub), OrgId(claims.org));
            // Tokens are short-lived, but a revoked key stops working at once here, and within
            // `auth.key_cache_secs` in the other API processes.
            let now = std::time::Instant::now();
            let (org_id, role) = match state.api_keys.get(key_id, now).filter(|(org, _)| *org == org_id) {
                Some(seen) => seen,
                None => {
                    let key = state
                        .store
                        .get_api_key(OrgScope { org_id }, key_id)
                        .await?
                        .filter(|k| k.revoked_at.is_none())
                        .ok_or_else(|| {
                            ApiError::new(
                                ErrorCode::InvalidToken,
                                "the API key behind this token was revoked",
                            )
                        })?;
                    state.api_keys.put(key.id, key.org_id, key.role, now);
                    (key.org_id, key.role)
                }
            };
            state.rate_limits.check(Subject::Organisation(org_id), Utc::now()).await?;
            let principal = Principal { org: OrgScope { org_id }, role, key_id };
            tracing::Span::current().record("org_id", tracing::field::display(principal.org.org_id));
            Ok(principal)
        })
    }
}

/// A collector whose push token checked out, and what the token says of its one use.
pub struct PushCredential {
    pub collector: Collector,
    /// Whether commands waited for the collector as its push was authenticated.
    pub commands_waiting: bool,
    jti: Uuid,
    expires_at: DateTime<Utc>,
    body_sha256: Option<String>,
}

impl PushCredential {
    /// The token's last checks, once the body is read: it was signed for this body (its
    /// [`wbd_wire::body_sha256`]), and it is used for the first time, across every API process.
    /// A replay is `401 token_replayed`; the collector signs a fresh token for every request,
    /// retries included, so it never sends one. A first use counts against the collector's rate
    /// limit (`429 rate_limited` beyond it).
    pub async fn spend(&self, state: &AppState, body_sha256: &str, now: DateTime<Utc>) -> ApiResult<()> {
        let invalid = |why: &str| ApiError::new(ErrorCode::InvalidToken, why.to_owned());
        match self.body_sha256.as_deref() {
            None => return Err(invalid("the push token names no body (body_sha256); update the collector")),
            Some(signed) if signed != body_sha256 => {
                return Err(invalid("the push token was signed for a different body"));
            }
            Some(_) => {}
        }
        if state
            .rate_limits
            .use_push_token(state.store.as_ref(), self.collector.id, self.jti, self.expires_at, now)
            .await?
        {
            Ok(())
        } else {
            Err(ApiError::new(ErrorCode::TokenReplayed, "each push token is accepted once; sign a new one"))
        }
    }
}

/// Checks a collector's push token: signed with the key it enrolled, for this audience, short-
/// lived, and the collector still active. What binds the token to one body and one use is
/// checked by [`PushCredential::spend`] once the body is read.
pub async fn authenticate_collector(
    state: &AppState,
    req: &HttpRequest,
    now: DateTime<Utc>,
) -> ApiResult<PushCredential> {
    let token = bearer(req)?;
    let invalid = |why: &str| ApiError::new(ErrorCode::InvalidToken, why.to_owned());
    let header = jsonwebtoken::decode_header(token).map_err(|e| invalid(&format!("malformed token: {e}")))?;
    if header.alg != Algorithm::EdDSA {
        return Err(invalid("collector tokens must be signed with EdDSA"));
    }
    let id = header
        .kid
        .as_deref()
        .and_then(|kid| Uuid::parse_str(kid).ok())
        .ok_or_else(|| invalid("the token's kid must be the collector id"))?;
    let PushingCollector { collector, commands_waiting } =
        state.store.find_collector_for_auth(CollectorId(id), now).await?.ok_or_else(|| {
            ApiError::new(ErrorCode::InvalidCredentials, "no collector with this id is enrolled")
        })?;
    match collector.status {
        CollectorStatus::Active => {}
        CollectorStatus::Revoked => {
            return Err(ApiError::new(
                ErrorCode::CollectorRevoked,
                "this collector was revoked; enroll a new one",
            ));
        }
        CollectorStatus::Pending => {
            return Err(ApiError::new(ErrorCode::InvalidCredentials, "this collector has not enrolled yet"));
        }
    }
    let public_key = collector
        .public_key
        .as_deref()
        .ok_or_else(|| ApiError::internal(anyhow::anyhow!("active collector {id} has no public key")))?;
    let key =
        DecodingKey::from_ed_components(&URL_SAFE_NO_PAD.encode(public_key)).map_err(ApiError::internal)?;
    let mut validation = Validation::new(Algorithm::EdDSA);
    validation.set_audience(&[COLLECTOR_TOKEN_AUDIENCE]);
    validation.set_required_spec_claims(&["exp", "aud", "sub"]);
    validation.validate_nbf = true;
    validation.leeway = state.settings.auth.leeway_secs;
    let claims = jsonwebtoken::decode::<CollectorTokenClaims>(token, &key, &validation)
        .map_err(|e| match e.kind() {
            ErrorKind::ExpiredSignature => ApiError::new(
                ErrorCode::TokenExpired,
                "the push token has expired; check the collector's clock",
            ),
            ErrorKind::InvalidSignature => invalid("the signature does not match this collector's key"),
            ErrorKind::ImmatureSignature => {
                invalid("the token is not valid yet (its nbf is in the future); check the collector's clock")
            }
            _ => invalid(&e.to_string()),
        })?
        .claims;
    if claims.sub != id {
        return Err(invalid("the token's sub and kid differ"));
    }
    if claims.exp - claims.iat > COLLECTOR_TOKEN_MAX_TTL_SECS {
        return Err(invalid("push tokens may live at most 5 minutes"));
    }
    let leeway = i64::try_from(state.settings.auth.leeway_secs).unwrap_or(0);
    if claims.iat > now.timestamp() + leeway {
        return Err(invalid("the token was issued in the future; check the collector's clock"));
    }
    // Remembered until the token can no longer pass the `exp` check.
    let expires_at = DateTime::from_timestamp(claims.exp.saturating_add(leeway), 0)
        .ok_or_else(|| invalid("the token's exp is out of range"))?;
    Ok(PushCredential {
        collector,
        commands_waiting,
        jti: claims.jti,
        expires_at,
        body_sha256: claims.body_sha256,
    })
}
