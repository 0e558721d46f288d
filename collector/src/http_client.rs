//! The HTTPS client for the central server, and the server's error documents.
//!
//! Unlike the endpoint probe, the server connection trusts the operating system's store (via
//! reqwest's platform verifier): an MSP that routes the collector through its own TLS proxy
//! has installed that proxy's CA there, and the push must still get through. A private server
//! CA can be added with `server_ca_file`.
//!
//! With `[proxy]` configured, every request goes through that proxy (HTTP CONNECT, with Basic
//! credentials when given); without it reqwest follows the environment and the system setting.

use std::time::Duration;

use reqwest::StatusCode;
use rustls_pki_types::CertificateDer;
use serde::Deserialize;

use crate::config::ProxySettings;

/// How long one request to the server may take in total (a 1 MiB batch on a slow uplink).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(120);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(20);

#[derive(Debug, thiserror::Error)]
#[error("cannot set up the HTTPS client for the server: {0}")]
pub struct ClientSetupError(String);

/// Builds the client used for enrollment and pushes.
pub fn server_client(
    extra_roots: &[CertificateDer<'static>],
    proxy: Option<&ProxySettings>,
) -> Result<reqwest::Client, ClientSetupError> {
    outbound_client(extra_roots, proxy, REQUEST_TIMEOUT)
}

/// Builds an HTTPS client that trusts the OS store plus `extra_roots`, goes through `proxy`
/// when given, never follows redirects, and bounds each request by `timeout`.
pub fn outbound_client(
    extra_roots: &[CertificateDer<'static>],
    proxy: Option<&ProxySettings>,
    timeout: Duration,
) -> Result<reqwest::Client, ClientSetupError> {
    let certs = extra_roots
        .iter()
        .map(|der| reqwest::Certificate::from_der(der.as_ref()))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| ClientSetupError(format!("server_ca_file: {e}")))?;
    let mut builder = reqwest::Client::builder();
    if let Some(proxy) = proxy {
        let mut p =
            reqwest::Proxy::all(proxy.url()).map_err(|e| ClientSetupError(format!("proxy.url: {e}")))?;
        if let (Some(user), Some(password)) = (&proxy.username, &proxy.password) {
            p = p.basic_auth(user, password.expose());
        }
        builder = builder.proxy(p);
    }
    builder
        .user_agent(concat!("wbd-collector/", env!("CARGO_PKG_VERSION")))
        .tls_version_min(reqwest::tls::Version::TLS_1_2)
        .tls_certs_merge(certs)
        // A redirect would carry our bearer token somewhere we did not choose; the server
        // never redirects API calls, so treat one as an error.
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(CONNECT_TIMEOUT)
        .timeout(timeout)
        .build()
        .map_err(|e| ClientSetupError(error_chain(&e)))
}

/// An RFC 9457 `application/problem+json` document, as the server sends for every error.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
pub struct Problem {
    #[serde(rename = "type")]
    pub kind: Option<String>,
    pub title: Option<String>,
    pub status: Option<u16>,
    pub detail: Option<String>,
    pub code: Option<String>,
}

/// A one-line description of an error answer, from its problem document when it has one.
pub fn describe_error_response(status: StatusCode, body: &[u8]) -> String {
    let reason = status.canonical_reason().unwrap_or("");
    match serde_json::from_slice::<Problem>(body) {
        Ok(p) if p.title.is_some() || p.detail.is_some() => {
            let mut text = format!("{} {reason}", status.as_u16());
            if let Some(title) = &p.title {
                text.push_str(": ");
                text.push_str(title);
            }
            if let Some(detail) = &p.detail {
                text.push_str(" — ");
                text.push_str(detail);
            }
            if let Some(code) = &p.code {
                text.push_str(&format!(" [code {code}]"));
            }
            text
        }
        _ => {
            let body = String::from_utf8_lossy(body);
            let body: String = body.trim().chars().take(300).collect();
            if body.is_empty() {
                format!("{} {reason}", status.as_u16())
            } else {
                format!("{} {reason}: {body}", status.as_u16())
            }
        }
    }
}

/// An error with all its causes, `a: b: c` (one implementation, shared with the Graph reader).
pub use wbd_graph::error_chain;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn problem_documents_are_summarised() {
        let body = br#"{"type":"about:blank","title":"Invalid enrollment token","status":401,"detail":"The token has expired.","code":"enrollment_token_invalid"}"#;
        let text = describe_error_response(StatusCode::UNAUTHORIZED, body);
        assert_eq!(
            text,
            "401 Unauthorized: Invalid enrollment token — The token has expired. [code enrollment_token_invalid]"
        );
    }

    #[test]
    fn other_bodies_are_shown_shortened() {
        assert_eq!(describe_error_response(StatusCode::BAD_GATEWAY, b""), "502 Bad Gateway");
        let long = vec![b'x'; 1000];
        assert_eq!(
            describe_error_response(StatusCode::BAD_GATEWAY, &long).len(),
            "502 Bad Gateway: ".len() + 300
        );
    }
}
