//! The short-lived HS256 access tokens an API key is exchanged for: issued and checked with the
//! server secret every API process shares through the database.

use chrono::{DateTime, Utc};
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use uuid::Uuid;
use wbd_store::{ApiKeyId, OrgId, Role};

use crate::error::{ApiError, ApiResult, ErrorCode};

/// Claims of the access tokens this server issues.
#[derive(Debug, Serialize, Deserialize)]
pub struct AccessClaims {
    pub iss: String,
    pub aud: String,
    /// The API key the token was exchanged for.
    pub sub: Uuid,
    pub org: Uuid,
    pub role: Role,
    pub iat: i64,
    pub exp: i64,
    pub jti: Uuid,
}

/// Signs and checks access tokens with the server secret shared through the database.
pub struct TokenIssuer {
    encoding: EncodingKey,
    decoding: DecodingKey,
    issuer: String,
    audience: String,
    ttl_secs: i64,
    leeway_secs: u64,
}

impl TokenIssuer {
    pub fn new(secret: &[u8], settings: &wbd_platform::settings::AuthSettings) -> Self {
        TokenIssuer {
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
            issuer: settings.issuer.clone(),
            audience: settings.audience.clone(),
            ttl_secs: i64::try_from(settings.token_ttl_secs).unwrap_or(900),
            leeway_secs: settings.leeway_secs,
        }
    }

    pub fn ttl_secs(&self) -> i64 {
        self.ttl_secs
    }

    pub fn issue(&self, key_id: ApiKeyId, org: OrgId, role: Role, now: DateTime<Utc>) -> ApiResult<String> {
        let claims = AccessClaims {
            iss: self.issuer.clone(),
            aud: self.audience.clone(),
            sub: key_id.0,
            org: org.0,
            role,
            iat: now.timestamp(),
            exp: now.timestamp() + self.ttl_secs,
            jti: Uuid::new_v4(),
        };
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
            .map_err(ApiError::internal)
    }

    pub fn verify(&self, token: &str) -> ApiResult<AccessClaims> {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_issuer(&[&self.issuer]);
        validation.set_audience(&[&self.audience]);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        // jsonwebtoken leaves `nbf` unchecked unless asked; a token that says it is not valid
        // yet is refused, with the same leeway as `exp`.
        validation.validate_nbf = true;
        validation.leeway = self.leeway_secs;
        jsonwebtoken::decode::<AccessClaims>(token, &self.decoding, &validation)
            .map(|data| data.claims)
            .map_err(|e| match e.kind() {
                ErrorKind::ExpiredSignature => {
                    ApiError::new(ErrorCode::TokenExpired, "get a new token from POST /v1/auth/token")
                }
                ErrorKind::ImmatureSignature => ApiError::new(
                    ErrorCode::InvalidToken,
                    "the token is not valid yet (its nbf is in the future)",
                ),
                _ => ApiError::new(ErrorCode::InvalidToken, e.to_string()),
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use wbd_platform::settings::AuthSettings;

    const SECRET: &[u8] = b"a test secret of enough length for HS256";

    fn issuer() -> TokenIssuer {
        let settings = AuthSettings {
            issuer: "wbd".into(),
            audience: "wbd-api".into(),
            token_ttl_secs: 900,
            leeway_secs: 30,
            enrollment_ttl_secs: 3600,
            key_cache_secs: 10,
            session_ttl_secs: 28_800,
        };
        TokenIssuer::new(SECRET, &settings)
    }

    /// A token signed with the server secret, with `nbf` `ahead` seconds from now.
    fn token_valid_from(ahead: i64) -> String {
        let now = Utc::now().timestamp();
        let claims = json!({
            "iss": "wbd", "aud": "wbd-api", "sub": Uuid::new_v4(), "org": Uuid::new_v4(),
            "role": "technician", "iat": now, "exp": now + 600, "nbf": now + ahead, "jti": Uuid::new_v4(),
        });
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &EncodingKey::from_secret(SECRET))
            .unwrap()
    }

    #[test]
    fn a_token_not_valid_yet_is_refused_beyond_the_leeway() {
        let err = issuer().verify(&token_valid_from(300)).unwrap_err();
        assert_eq!(err.code, ErrorCode::InvalidToken);
        assert!(err.to_string().contains("not valid yet"), "{err}");
        // Within the leeway (a clock a little ahead of ours) it is accepted.
        issuer().verify(&token_valid_from(10)).unwrap();
        issuer().verify(&token_valid_from(-10)).unwrap();
    }

    #[test]
    fn an_issued_token_verifies() {
        let issuer = issuer();
        let token = issuer
            .issue(ApiKeyId(Uuid::new_v4()), OrgId(Uuid::new_v4()), Role::OrgAdmin, Utc::now())
            .unwrap();
        assert_eq!(issuer.verify(&token).unwrap().role, Role::OrgAdmin);
    }
}
