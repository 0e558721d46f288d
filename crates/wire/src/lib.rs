//! The versioned contract between `wbd-collector` and `wbd-api`.
//!
//! Everything a collector sends or receives is defined here, with no I/O, so that the collector
//! can depend on it without pulling in any server crate. A change that an older server could not
//! read bumps [`SCHEMA_VERSION`]; the server refuses versions it does not know with a clear error.

use std::net::IpAddr;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// The batch schema version this build writes and reads.
pub const SCHEMA_VERSION: u32 = 1;

/// Path of the ingest endpoint, relative to the server's base URL.
pub const INGEST_PATH: &str = "/v1/ingest";
/// Path of the enrollment endpoint, relative to the server's base URL.
pub const ENROLL_PATH: &str = "/v1/collectors/enroll";

/// `aud` of the short-lived JWT a collector signs for each push.
pub const COLLECTOR_TOKEN_AUDIENCE: &str = "wbd-ingest";
/// Longest lifetime the server accepts for a collector push token, in seconds.
pub const COLLECTOR_TOKEN_MAX_TTL_SECS: i64 = 300;

/// Server-side limits a collector must respect when it forms batches.
pub const MAX_RESULTS_PER_BATCH: usize = 1_000;
/// Largest accepted request body (after gzip decoding), in bytes.
pub const MAX_BATCH_BYTES: usize = 4 * 1024 * 1024;

/// Claims of the JWT (EdDSA, signed with the collector's private key) that authenticates a push.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct CollectorTokenClaims {
    /// The collector id (also carried as the JWT `kid`).
    pub sub: Uuid,
    /// Always [`COLLECTOR_TOKEN_AUDIENCE`].
    pub aud: String,
    /// Issued at, seconds since the epoch.
    pub iat: i64,
    /// Expiry, seconds since the epoch; at most [`COLLECTOR_TOKEN_MAX_TTL_SECS`] after `iat`.
    pub exp: i64,
    /// Unique token id.
    pub jti: Uuid,
}

/// `POST /v1/collectors/enroll` request: a one-time enrollment token and the collector's new
/// public key.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct EnrollRequest {
    /// The one-time token an org admin received when creating the collector.
    pub enrollment_token: String,
    /// Raw 32-byte Ed25519 public key, base64url without padding.
    pub public_key: String,
    /// Host name of the machine the collector runs on.
    pub hostname: String,
    /// Collector build version.
    pub version: String,
}

/// `POST /v1/collectors/enroll` answer.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct EnrollResponse {
    pub collector_id: Uuid,
    pub tenant_id: Uuid,
    /// Seconds between pushes the server expects; a collector silent for several of these
    /// intervals raises a "collector silent" finding.
    pub push_interval_secs: u32,
}

/// One push: a batch of probe results, idempotent by `batch_id`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct IngestBatch {
    pub schema_version: u32,
    /// Chosen by the collector when the batch is sealed; a retry reuses it.
    pub batch_id: Uuid,
    /// When the collector sealed the batch.
    pub sent_at: DateTime<Utc>,
    pub collector: CollectorInfo,
    pub results: Vec<ProbeResult>,
}

/// What the collector says about itself on every push (the push is also its heartbeat).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct CollectorInfo {
    pub version: String,
    pub hostname: String,
    pub os: String,
    /// How often this collector intends to push, in seconds.
    pub push_interval_secs: u32,
    /// Results dropped from the local spool because it reached its size bound.
    #[serde(default)]
    pub spool_dropped: u64,
}

/// `POST /v1/ingest` answer (202). A retried batch gets the same answer.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct IngestAccepted {
    pub batch_id: Uuid,
    pub accepted: u32,
}

/// One probe run about one subject.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ProbeResult {
    /// What was probed, stable across runs (e.g. `passwordreset.microsoftonline.com:443`).
    pub subject: String,
    pub observed_at: DateTime<Utc>,
    /// How long the probe ran, in milliseconds.
    pub duration_ms: u64,
    #[serde(flatten)]
    pub output: ProbeOutput,
}

/// The typed output of each probe kind. `probe` names the kind on the wire.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "probe", content = "data", rename_all = "snake_case")]
pub enum ProbeOutput {
    Endpoint(EndpointReport),
}

impl ProbeOutput {
    /// The probe kind as it appears on the wire and in the API.
    pub fn kind(&self) -> ProbeKind {
        match self {
            ProbeOutput::Endpoint(_) => ProbeKind::Endpoint,
        }
    }

    /// The same output without the fields that vary on every run (timings), so that two runs
    /// that saw the same thing compare equal.
    pub fn without_timings(&self) -> ProbeOutput {
        match self {
            ProbeOutput::Endpoint(report) => ProbeOutput::Endpoint(EndpointReport {
                dns_ms: None,
                tcp_connect_ms: None,
                tls: report.tls.as_ref().map(|tls| TlsReport { handshake_ms: 0, ..tls.clone() }),
                ..report.clone()
            }),
        }
    }
}

/// Probe kinds, as named on the wire.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[serde(rename_all = "snake_case")]
pub enum ProbeKind {
    Endpoint,
}

impl ProbeKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ProbeKind::Endpoint => "endpoint",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "endpoint" => Some(ProbeKind::Endpoint),
            _ => None,
        }
    }
}

/// What a writeback endpoint is for; decides which rule texts apply.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Hash)]
#[serde(rename_all = "snake_case")]
pub enum EndpointRole {
    /// `passwordreset.microsoftonline.com`: the password reset service.
    PasswordReset,
    /// `*.servicebus.windows.net`: the Azure Service Bus relay that carries reset requests.
    ServiceBusRelay,
    /// Anything else the MSP asked to check.
    Other,
}

/// Result of probing one endpoint: DNS, TCP connect, then TLS handshake.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct EndpointReport {
    pub host: String,
    pub port: u16,
    pub role: EndpointRole,
    /// Addresses DNS returned, in order.
    #[serde(default)]
    pub resolved: Vec<IpAddr>,
    pub dns_ms: Option<u64>,
    /// The address the TCP connection was made to.
    pub connected_to: Option<IpAddr>,
    pub tcp_connect_ms: Option<u64>,
    pub tls: Option<TlsReport>,
    /// The first step that failed, if any; later steps did not run.
    pub failure: Option<StepFailure>,
}

/// The steps of an endpoint probe, in order.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Hash)]
#[serde(rename_all = "snake_case")]
pub enum ProbeStep {
    Dns,
    Tcp,
    Tls,
}

impl ProbeStep {
    pub fn as_str(self) -> &'static str {
        match self {
            ProbeStep::Dns => "dns",
            ProbeStep::Tcp => "tcp",
            ProbeStep::Tls => "tls",
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct StepFailure {
    pub step: ProbeStep,
    pub error: String,
}

/// What the TLS handshake showed.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct TlsReport {
    pub handshake_ms: u64,
    /// Negotiated protocol, e.g. `TLSv1.3`.
    pub protocol: String,
    pub cipher_suite: String,
    /// Whether the presented chain validates against public roots (plus any CA the collector
    /// was configured to trust) for this host name.
    pub chain_trusted: bool,
    /// Why validation failed, when it did.
    pub trust_error: Option<String>,
    /// Leaf certificate details.
    pub subject: Option<String>,
    pub issuer: Option<String>,
    pub not_before: Option<DateTime<Utc>>,
    pub not_after: Option<DateTime<Utc>>,
    /// Issuer of the top certificate the server sent (where a TLS-inspecting proxy shows its
    /// own CA).
    pub chain_top_issuer: Option<String>,
    pub chain_len: u32,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probe_result_wire_form_names_probe_and_data() {
        let r = ProbeResult {
            subject: "example.org:443".into(),
            observed_at: DateTime::from_timestamp(1_700_000_000, 0).unwrap(),
            duration_ms: 12,
            output: ProbeOutput::Endpoint(EndpointReport {
                host: "example.org".into(),
                port: 443,
                role: EndpointRole::Other,
                resolved: vec![],
                dns_ms: None,
                connected_to: None,
                tcp_connect_ms: None,
                tls: None,
                failure: Some(StepFailure { step: ProbeStep::Dns, error: "no such host".into() }),
            }),
        };
        let v = serde_json::to_value(&r).unwrap();
        assert_eq!(v["probe"], "endpoint");
        assert_eq!(v["data"]["failure"]["step"], "dns");
        let back: ProbeResult = serde_json::from_value(v).unwrap();
        assert_eq!(back, r);
    }

    #[test]
    fn unknown_probe_kind_is_rejected() {
        let v = serde_json::json!({
            "subject": "x", "observed_at": "2026-01-01T00:00:00Z", "duration_ms": 1,
            "probe": "teleport", "data": {}
        });
        assert!(serde_json::from_value::<ProbeResult>(v).is_err());
    }
}
