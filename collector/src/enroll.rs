//! `wbd-collector enroll`: trade a one-time enrollment token for a collector identity.
//!
//! The collector makes its own Ed25519 key pair, sends only the public half to the server, and
//! keeps the private half in the state directory. Nothing is written until the server has
//! accepted the enrollment, so a refused or failed attempt leaves an existing identity intact.

use std::path::PathBuf;

use reqwest::StatusCode;
use rustls_pki_types::CertificateDer;
use wbd_wire::{ENROLL_PATH, EnrollRequest, EnrollResponse};

use crate::http_client::{self, ClientSetupError, describe_error_response, error_chain};
use crate::identity::{CollectorKey, Identity, IdentityError, StateDir};
use crate::server_url::{ServerUrl, ServerUrlError};

/// What `wbd-collector enroll` was asked to do.
#[derive(Debug, Clone)]
pub struct EnrollOptions {
    pub server: String,
    pub token: String,
    pub state_dir: PathBuf,
    /// Extra CA certificates the server connection trusts.
    pub server_ca: Vec<CertificateDer<'static>>,
    /// Replace an existing identity.
    pub force: bool,
    /// The host name to register (defaults to this machine's).
    pub hostname: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum EnrollError {
    #[error("--server {0}")]
    ServerUrl(#[from] ServerUrlError),
    #[error("--token must not be empty")]
    EmptyToken,
    #[error(
        "this collector is already enrolled ({} exists); pass --force to replace its identity",
        path.display()
    )]
    AlreadyEnrolled { path: PathBuf },
    #[error(transparent)]
    Identity(#[from] IdentityError),
    #[error(transparent)]
    Client(#[from] ClientSetupError),
    #[error("could not reach the server at {url}: {message}")]
    Network { url: String, message: String },
    #[error("the server refused the enrollment: {0}")]
    Refused(String),
    #[error("the server's answer was not understood: {0}")]
    BadResponse(String),
    #[error(
        "the server enrolled this collector (collector_id {collector_id}, tenant_id {tenant_id}) but the identity could not be saved: {source}; the enrollment token is now used up, so ask for a new one and enroll again with --force"
    )]
    NotSaved {
        collector_id: uuid::Uuid,
        tenant_id: uuid::Uuid,
        #[source]
        source: IdentityError,
    },
}

/// Enrolls this collector and stores its identity; returns what was stored.
pub async fn enroll(opts: EnrollOptions) -> Result<Identity, EnrollError> {
    let server = ServerUrl::parse(&opts.server)?;
    let token = opts.token.trim();
    if token.is_empty() {
        return Err(EnrollError::EmptyToken);
    }
    let state = StateDir::new(&opts.state_dir);
    if state.is_enrolled() && !opts.force {
        return Err(EnrollError::AlreadyEnrolled { path: state.identity_path() });
    }
    // Create the (private) directory before talking to the server, so that a permission
    // problem shows up before the one-time token is spent.
    state.create()?;

    let key = CollectorKey::generate()?;
    let request = EnrollRequest {
        enrollment_token: token.to_owned(),
        public_key: key.public_key_b64(),
        hostname: opts.hostname.clone().unwrap_or_else(crate::host::hostname),
        version: env!("CARGO_PKG_VERSION").to_owned(),
    };
    let client = http_client::server_client(&opts.server_ca, None)?;
    let url = server.endpoint(ENROLL_PATH);
    tracing::info!(%url, hostname = %request.hostname, "enrolling");
    let response = client
        .post(url.clone())
        .json(&request)
        .send()
        .await
        .map_err(|e| EnrollError::Network { url: url.to_string(), message: error_chain(&e) })?;
    let status = response.status();
    let body = response
        .bytes()
        .await
        .map_err(|e| EnrollError::Network { url: url.to_string(), message: error_chain(&e) })?;
    if status != StatusCode::CREATED && status != StatusCode::OK {
        return Err(EnrollError::Refused(describe_error_response(status, &body)));
    }
    let answer: EnrollResponse = serde_json::from_slice(&body)
        .map_err(|e| EnrollError::BadResponse(format!("{e} (status {status})")))?;

    let identity = Identity {
        server: server.to_string(),
        collector_id: answer.collector_id,
        tenant_id: answer.tenant_id,
        push_interval_secs: answer.push_interval_secs,
    };
    // Key first: an identity.json that points at a key we do not have would be worse than a
    // key without an identity (which the next enrollment simply replaces).
    state.save_key(&key).and_then(|()| state.save_identity(&identity)).map_err(|source| {
        EnrollError::NotSaved { collector_id: answer.collector_id, tenant_id: answer.tenant_id, source }
    })?;
    tracing::info!(collector_id = %identity.collector_id, tenant_id = %identity.tenant_id, "enrolled");
    Ok(identity)
}
