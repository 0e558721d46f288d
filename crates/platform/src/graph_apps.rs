//! A tenant's own Microsoft Graph app ("bring your own app"): its credential sealed at rest like
//! integration credentials (AES-256-GCM under `delivery.secrets_key`, see
//! `wbd_notify::sealing`), bound to the organisation and the tenant so that a sealed value copied
//! to another tenant's row does not open there; and the [`GraphApp`] the central reader reads the
//! tenant with. Neither the API nor the reader ever shows or logs the credential.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use wbd_graph::{AssertionAlgorithm, CertificateCredential, ClientCredential, Cloud, GraphApp, Secret};
use wbd_notify::sealing::Sealer;
use wbd_store::{GraphOwnApp, TenantScope};

use crate::settings::GraphSettings;

/// What an own app keeps sealed.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum OwnAppCredential {
    ClientSecret {
        secret: String,
    },
    /// PEM texts: the certificate uploaded to the app registration and its RSA private key.
    Certificate {
        certificate: String,
        private_key: String,
    },
}

impl fmt::Debug for OwnAppCredential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            OwnAppCredential::ClientSecret { .. } => "OwnAppCredential::ClientSecret(<redacted>)",
            OwnAppCredential::Certificate { .. } => "OwnAppCredential::Certificate(<redacted>)",
        })
    }
}

impl OwnAppCredential {
    /// The credential the reader proves the app with (a certificate is read and checked
    /// against its key).
    pub fn client_credential(&self) -> Result<ClientCredential, wbd_graph::CredentialError> {
        Ok(match self {
            OwnAppCredential::ClientSecret { secret } => {
                ClientCredential::Secret(Secret::new(secret.clone()))
            }
            OwnAppCredential::Certificate { certificate, private_key } => {
                ClientCredential::Certificate(Arc::new(CertificateCredential::from_pem(
                    certificate.as_bytes(),
                    private_key.as_bytes(),
                    AssertionAlgorithm::Ps256,
                )?))
            }
        })
    }
}

/// Why a stored own app cannot be read with.
#[derive(Debug, thiserror::Error)]
pub enum OwnAppError {
    #[error("the tenant's Graph app credential cannot be opened: this process has no delivery.secrets_key")]
    NoKey,
    #[error(
        "the tenant's Graph app credential cannot be opened ({0}); was delivery.secrets_key changed without keeping the old key in delivery.previous_secrets_keys?"
    )]
    Open(String),
    #[error("the tenant's Graph app is unusable: {0}")]
    Corrupt(String),
}

/// Binds a sealed credential to its organisation and tenant.
fn aad(scope: TenantScope) -> Vec<u8> {
    format!("wbd-graph-own-app:{}:{}", scope.org_id, scope.tenant_id).into_bytes()
}

pub fn seal(sealer: &Sealer, scope: TenantScope, credential: &OwnAppCredential) -> Vec<u8> {
    let plain = serde_json::to_vec(credential).expect("a credential serialises");
    sealer.seal(&plain, &aad(scope))
}

pub fn open(sealer: &Sealer, scope: TenantScope, sealed: &[u8]) -> Result<OwnAppCredential, OwnAppError> {
    let plain = sealer.open(sealed, &aad(scope)).map_err(|e| OwnAppError::Open(e.to_string()))?;
    serde_json::from_slice(&plain).map_err(|e| OwnAppError::Corrupt(format!("sealed credential: {e}")))
}

/// The app a stored own app reads its tenant with. Its cloud names the hosts, unless the
/// installation overrides them (`graph.authority`, `graph.graph_base_url`: a proxy, or tests),
/// which then hold for every app; the request time limit is `graph.timeout_secs`.
pub fn graph_app(
    stored: &GraphOwnApp,
    credential: &OwnAppCredential,
    graph: &GraphSettings,
) -> Result<GraphApp, OwnAppError> {
    let cloud: Cloud =
        stored.cloud.parse().map_err(|e: wbd_graph::UnknownCloud| OwnAppError::Corrupt(e.to_string()))?;
    let authority = if graph.authority.is_empty() { cloud.authority() } else { graph.authority.as_str() };
    let graph_base =
        if graph.graph_base_url.is_empty() { cloud.graph_base_url() } else { graph.graph_base_url.as_str() };
    let url = |text: &str| {
        wbd_graph::Url::parse(text.trim_end_matches('/'))
            .map_err(|e| OwnAppError::Corrupt(format!("`{text}`: {e}")))
    };
    Ok(GraphApp {
        client_id: stored.client_id.clone(),
        credential: credential.client_credential().map_err(|e| OwnAppError::Corrupt(e.to_string()))?,
        authority: url(authority)?,
        graph_base_url: url(graph_base)?,
        timeout: Duration::from_secs(graph.timeout_secs.max(1)),
        settings_hint: "the tenant's own app, PUT /v1/tenants/{id}/graph/app".to_owned(),
        secret_expires_at: stored.credential_expires_at,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use wbd_store::{OrgId, TenantId};

    #[test]
    fn a_credential_opens_only_for_its_tenant_and_never_shows() {
        let sealer = Sealer::new(&Sealer::generate_key(), &[]).unwrap();
        let scope = TenantScope { org_id: OrgId::new(), tenant_id: TenantId::new() };
        let credential = OwnAppCredential::ClientSecret { secret: "s3cr3t-value".into() };
        let sealed = seal(&sealer, scope, &credential);
        assert!(!String::from_utf8_lossy(&sealed).contains("s3cr3t"));
        assert_eq!(open(&sealer, scope, &sealed).unwrap(), credential);
        let elsewhere = TenantScope { tenant_id: TenantId::new(), ..scope };
        assert!(matches!(open(&sealer, elsewhere, &sealed), Err(OwnAppError::Open(_))));
        assert!(!format!("{credential:?}").contains("s3cr3t"));
    }
}
