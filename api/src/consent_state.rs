//! The `state` of the Graph admin-consent flow: what the server sends Microsoft and Microsoft
//! sends back on the redirect, the only thing that authenticates the callback.
//!
//! It is an HS256 JWT under a key derived from the server secret every API process shares
//! (HMAC-SHA256 of the access-token secret with a label of its own, so neither key can stand in
//! for the other), carrying the organisation, the tenant, a nonce and an expiry of ten minutes.
//! The signature makes it unforgeable and binds it to its organisation and tenant; the nonce is
//! recorded when the state is made and spent by the first callback (single use, in the database,
//! so every API process agrees).

use aws_lc_rs::hmac;
use chrono::{DateTime, TimeDelta, Utc};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use uuid::Uuid;
use wbd_store::{OrgId, TenantId, TenantScope};

/// How long an administrator has to consent.
pub const CONSENT_STATE_TTL: TimeDelta = TimeDelta::minutes(10);

const LABEL: &[u8] = b"writeback-doctor/graph-consent-state/v1";
const AUDIENCE: &str = "wbd-graph-consent";

#[derive(Debug, Serialize, Deserialize)]
struct StateClaims {
    aud: String,
    org: Uuid,
    tenant: Uuid,
    nonce: Uuid,
    exp: i64,
}

/// What a valid state names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConsentState {
    pub scope: TenantScope,
    pub nonce: Uuid,
}

/// Signs and checks consent states.
pub struct ConsentStateKey {
    encoding: EncodingKey,
    decoding: DecodingKey,
}

impl ConsentStateKey {
    /// Derived from the server secret.
    pub fn derive(server_secret: &[u8]) -> Self {
        let root = hmac::Key::new(hmac::HMAC_SHA256, server_secret);
        let key = hmac::sign(&root, LABEL);
        ConsentStateKey {
            encoding: EncodingKey::from_secret(key.as_ref()),
            decoding: DecodingKey::from_secret(key.as_ref()),
        }
    }

    /// A state for `scope` naming `nonce`, valid until `expires_at`.
    pub fn sign(&self, scope: TenantScope, nonce: Uuid, expires_at: DateTime<Utc>) -> String {
        let claims = StateClaims {
            aud: AUDIENCE.to_owned(),
            org: scope.org_id.0,
            tenant: scope.tenant_id.0,
            nonce,
            exp: expires_at.timestamp(),
        };
        // Encoding a fixed struct with an HMAC key cannot fail.
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding).unwrap_or_default()
    }

    /// The state's organisation, tenant and nonce, if it is ours and unexpired.
    pub fn verify(&self, state: &str) -> Option<ConsentState> {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_audience(&[AUDIENCE]);
        validation.leeway = 0;
        let claims = jsonwebtoken::decode::<StateClaims>(state, &self.decoding, &validation).ok()?.claims;
        Some(ConsentState {
            scope: TenantScope { org_id: OrgId(claims.org), tenant_id: TenantId(claims.tenant) },
            nonce: claims.nonce,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_state_verifies_under_its_key_only_and_until_it_expires() {
        let key = ConsentStateKey::derive(b"server secret");
        let scope = TenantScope { org_id: OrgId::new(), tenant_id: TenantId::new() };
        let nonce = Uuid::new_v4();
        let state = key.sign(scope, nonce, Utc::now() + CONSENT_STATE_TTL);
        assert_eq!(key.verify(&state), Some(ConsentState { scope, nonce }));
        assert_eq!(ConsentStateKey::derive(b"another secret").verify(&state), None);
        // An access token signed with the server secret itself is not a state.
        let raw = EncodingKey::from_secret(b"server secret");
        let forged = jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &StateClaims {
                aud: AUDIENCE.into(),
                org: Uuid::nil(),
                tenant: Uuid::nil(),
                nonce,
                exp: i64::MAX / 2,
            },
            &raw,
        )
        .unwrap();
        assert_eq!(key.verify(&forged), None);
        let expired = key.sign(scope, nonce, Utc::now() - TimeDelta::seconds(5));
        assert_eq!(key.verify(&expired), None);
        let mut tampered = state.clone();
        tampered.insert(tampered.len() / 2, 'x');
        assert_eq!(key.verify(&tampered), None);
    }
}
