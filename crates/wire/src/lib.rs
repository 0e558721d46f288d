//! The versioned contract between `wbd-collector` and `wbd-api`.
//!
//! Everything a collector sends or receives is defined here, with no I/O, so that the collector
//! can depend on it without pulling in any server crate. A change that an older server could not
//! read bumps [`SCHEMA_VERSION`]; the server refuses versions it does not know with a clear error.

use std::net::IpAddr;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

mod active_directory;
mod command;
mod connect_server;
mod event_log;
mod graph;
mod idle_connection;
pub mod ingest;
mod proxy;
mod script;

pub use active_directory::*;
pub use command::*;
pub use connect_server::*;
pub use event_log::*;
pub use graph::*;
pub use idle_connection::*;
pub use proxy::*;
pub use script::*;

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
    /// Unique token id: the server accepts each once.
    pub jti: Uuid,
    /// [`body_sha256`] of the batch the token was signed for. The server refuses a push whose
    /// body does not match, so a token read off the wire cannot carry another batch. Optional
    /// on the wire only to give a token without it a clear refusal.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body_sha256: Option<String>,
}

/// The digest a push token binds its batch with: SHA-256 of the JSON body as it was serialised
/// (before any `Content-Encoding`), base64url without padding.
pub fn body_sha256(json: &[u8]) -> String {
    use base64::Engine as _;
    use sha2::Digest as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(sha2::Sha256::digest(json))
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
    /// What the server asks the collector to do now ("re-test now", schedule changes). Absent
    /// when there is nothing to do; a collector that does not know a command ignores it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub commands: Vec<CollectorCommand>,
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
///
/// Adding a variant keeps [`SCHEMA_VERSION`] at 1: the change is additive, and a collector only
/// sends a kind after its operator configured that probe. A server built before the variant
/// existed refuses a batch that carries it (unknown `probe`), so server and collector are
/// released together; the server in this repository is updated with this crate.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "probe", content = "data", rename_all = "snake_case")]
pub enum ProbeOutput {
    Endpoint(EndpointReport),
    IdleConnection(IdleConnectionReport),
    Proxy(ProxyReport),
    ActiveDirectory(ActiveDirectoryReport),
    ConnectServer(ConnectServerReport),
    EventLog(EventLogReport),
    Graph(GraphReport),
    Script(ScriptReport),
}

impl ProbeOutput {
    /// The probe kind as it appears on the wire and in the API.
    pub fn kind(&self) -> ProbeKind {
        match self {
            ProbeOutput::Endpoint(_) => ProbeKind::Endpoint,
            ProbeOutput::IdleConnection(_) => ProbeKind::IdleConnection,
            ProbeOutput::Proxy(_) => ProbeKind::Proxy,
            ProbeOutput::ActiveDirectory(_) => ProbeKind::ActiveDirectory,
            ProbeOutput::ConnectServer(_) => ProbeKind::ConnectServer,
            ProbeOutput::EventLog(_) => ProbeKind::EventLog,
            ProbeOutput::Graph(_) => ProbeKind::Graph,
            ProbeOutput::Script(_) => ProbeKind::Script,
        }
    }

    /// The same output without the fields that vary on every run (timings, clocks), so that two
    /// runs that saw the same thing compare equal.
    pub fn without_timings(&self) -> ProbeOutput {
        match self {
            ProbeOutput::Endpoint(report) => ProbeOutput::Endpoint(EndpointReport {
                dns_ms: None,
                tcp_connect_ms: None,
                tls: report.tls.as_ref().map(TlsReport::without_timings),
                via_proxy: report.via_proxy.as_ref().map(|p| ProxiedConnection {
                    tls: p.tls.as_ref().map(TlsReport::without_timings),
                    ..p.clone()
                }),
                ..report.clone()
            }),
            ProbeOutput::IdleConnection(report) => ProbeOutput::IdleConnection(IdleConnectionReport {
                holds: report.holds.iter().map(|h| IdleHold { cut_after_ms: None, ..h.clone() }).collect(),
                ..report.clone()
            }),
            ProbeOutput::Proxy(report) => ProbeOutput::Proxy(ProxyReport {
                targets: report
                    .targets
                    .iter()
                    .map(|t| ProxyTargetReport {
                        tls: t.tls.as_ref().map(TlsReport::without_timings),
                        ..t.clone()
                    })
                    .collect(),
                ..report.clone()
            }),
            ProbeOutput::ActiveDirectory(report) => ProbeOutput::ActiveDirectory(ActiveDirectoryReport {
                dc_current_time: None,
                ..report.clone()
            }),
            ProbeOutput::ConnectServer(report) => ProbeOutput::ConnectServer(report.clone()),
            ProbeOutput::EventLog(report) => ProbeOutput::EventLog(report.clone()),
            ProbeOutput::Graph(report) => ProbeOutput::Graph(report.clone()),
            ProbeOutput::Script(report) => {
                ProbeOutput::Script(ScriptReport { duration_ms: 0, ..report.clone() })
            }
        }
    }
}

impl ProbeOutput {
    /// The fields [`ProbeOutput::without_timings`] clears, with their values here: JSON pointers
    /// into this output's JSON form (`/data/dns_ms`, `/data/holds/1/cut_after_ms`, …), each
    /// with its value (`null` for an absent one). Every such field is listed, set or not, so
    /// that [`apply_timings`] turns the JSON of any output that compares equal without timings
    /// into the JSON of this one: a store that keeps a payload once per change and these per
    /// result serves the newest result exactly.
    pub fn timings(&self) -> Timings {
        fn ms(v: Option<u64>) -> serde_json::Value {
            v.map_or(serde_json::Value::Null, serde_json::Value::from)
        }
        let mut t = Timings::new();
        match self {
            ProbeOutput::Endpoint(report) => {
                t.insert("/data/dns_ms".into(), ms(report.dns_ms));
                t.insert("/data/tcp_connect_ms".into(), ms(report.tcp_connect_ms));
                if let Some(tls) = &report.tls {
                    t.insert("/data/tls/handshake_ms".into(), tls.handshake_ms.into());
                }
                if let Some(tls) = report.via_proxy.as_ref().and_then(|p| p.tls.as_ref()) {
                    t.insert("/data/via_proxy/tls/handshake_ms".into(), tls.handshake_ms.into());
                }
            }
            ProbeOutput::IdleConnection(report) => {
                for (i, hold) in report.holds.iter().enumerate() {
                    t.insert(format!("/data/holds/{i}/cut_after_ms"), ms(hold.cut_after_ms));
                }
            }
            ProbeOutput::Proxy(report) => {
                for (i, target) in report.targets.iter().enumerate() {
                    if let Some(tls) = &target.tls {
                        t.insert(format!("/data/targets/{i}/tls/handshake_ms"), tls.handshake_ms.into());
                    }
                }
            }
            ProbeOutput::ActiveDirectory(report) => {
                let time = report.dc_current_time.map_or(serde_json::Value::Null, |at| {
                    serde_json::to_value(at).unwrap_or(serde_json::Value::Null)
                });
                t.insert("/data/dc_current_time".into(), time);
            }
            ProbeOutput::Script(report) => {
                t.insert("/data/duration_ms".into(), report.duration_ms.into());
            }
            ProbeOutput::ConnectServer(_) | ProbeOutput::EventLog(_) | ProbeOutput::Graph(_) => {}
        }
        t
    }
}

impl ProbeOutput {
    /// Lays `timings` (see [`ProbeOutput::timings`]) over this output: the typed twin of
    /// [`apply_timings`], for a reader that keeps the decoded output of an earlier result with
    /// the same digest and must not decode the stored JSON again. A field `timings` does not
    /// name keeps its value, as with [`apply_timings`]; so does one whose value does not read.
    pub fn set_timings(&mut self, timings: &Timings) {
        fn optional_ms(timings: &Timings, pointer: &str, field: &mut Option<u64>) {
            match timings.get(pointer) {
                Some(serde_json::Value::Null) => *field = None,
                Some(value) => {
                    if let Some(ms) = value.as_u64() {
                        *field = Some(ms);
                    }
                }
                None => {}
            }
        }
        fn ms(timings: &Timings, pointer: &str, field: &mut u64) {
            if let Some(ms) = timings.get(pointer).and_then(serde_json::Value::as_u64) {
                *field = ms;
            }
        }
        match self {
            ProbeOutput::Endpoint(report) => {
                optional_ms(timings, "/data/dns_ms", &mut report.dns_ms);
                optional_ms(timings, "/data/tcp_connect_ms", &mut report.tcp_connect_ms);
                if let Some(tls) = &mut report.tls {
                    ms(timings, "/data/tls/handshake_ms", &mut tls.handshake_ms);
                }
                if let Some(tls) = report.via_proxy.as_mut().and_then(|p| p.tls.as_mut()) {
                    ms(timings, "/data/via_proxy/tls/handshake_ms", &mut tls.handshake_ms);
                }
            }
            ProbeOutput::IdleConnection(report) => {
                for (i, hold) in report.holds.iter_mut().enumerate() {
                    optional_ms(timings, &format!("/data/holds/{i}/cut_after_ms"), &mut hold.cut_after_ms);
                }
            }
            ProbeOutput::Proxy(report) => {
                for (i, target) in report.targets.iter_mut().enumerate() {
                    if let Some(tls) = &mut target.tls {
                        ms(timings, &format!("/data/targets/{i}/tls/handshake_ms"), &mut tls.handshake_ms);
                    }
                }
            }
            ProbeOutput::ActiveDirectory(report) => {
                if let Some(time) = timings.get("/data/dc_current_time")
                    && let Ok(time) = Option::<DateTime<Utc>>::deserialize(time)
                {
                    report.dc_current_time = time;
                }
            }
            ProbeOutput::Script(report) => ms(timings, "/data/duration_ms", &mut report.duration_ms),
            ProbeOutput::ConnectServer(_) | ProbeOutput::EventLog(_) | ProbeOutput::Graph(_) => {}
        }
    }
}

/// What varies between runs that saw the same thing (see [`ProbeOutput::timings`]): JSON
/// pointers into an output's JSON form, and their values.
pub type Timings = serde_json::Map<String, serde_json::Value>;

/// Sets each of `timings`' fields in `payload`, the JSON form of a [`ProbeOutput`]. A pointer
/// that does not lead to a field of `payload` is skipped: the payload then keeps its own value
/// (it can only happen if the payload and the timings came from outputs of different shape).
pub fn apply_timings(payload: &mut serde_json::Value, timings: &Timings) {
    for (pointer, value) in timings {
        if let Some(field) = payload.pointer_mut(pointer) {
            field.clone_from(value);
        }
    }
}

/// Probe kinds, as named on the wire.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[serde(rename_all = "snake_case")]
pub enum ProbeKind {
    Endpoint,
    IdleConnection,
    Proxy,
    ActiveDirectory,
    ConnectServer,
    EventLog,
    Graph,
    Script,
}

impl ProbeKind {
    /// Every kind, in the order the collector runs them.
    pub const ALL: [ProbeKind; 8] = [
        ProbeKind::Endpoint,
        ProbeKind::IdleConnection,
        ProbeKind::Proxy,
        ProbeKind::ActiveDirectory,
        ProbeKind::ConnectServer,
        ProbeKind::EventLog,
        ProbeKind::Graph,
        ProbeKind::Script,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ProbeKind::Endpoint => "endpoint",
            ProbeKind::IdleConnection => "idle_connection",
            ProbeKind::Proxy => "proxy",
            ProbeKind::ActiveDirectory => "active_directory",
            ProbeKind::ConnectServer => "connect_server",
            ProbeKind::EventLog => "event_log",
            ProbeKind::Graph => "graph",
            ProbeKind::Script => "script",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        ProbeKind::ALL.into_iter().find(|kind| kind.as_str() == s)
    }
}

impl std::fmt::Display for ProbeKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
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
    /// The same endpoint through the site's proxy, when the site has one: then that is the path
    /// writeback uses, and reachability is judged on it (the fields above are the direct attempt,
    /// which a proxy-only site blocks on purpose).
    #[serde(default)]
    pub via_proxy: Option<ProxiedConnection>,
}

/// One endpoint reached through the site's proxy: CONNECT, then TLS inside the tunnel.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ProxiedConnection {
    /// `host:port` of the proxy (never credentials).
    pub proxy: String,
    pub source: ProxySource,
    /// The proxy's answer to CONNECT, if it answered.
    #[serde(default)]
    pub connect_status: Option<u16>,
    /// The TLS handshake inside the tunnel, if it completed.
    #[serde(default)]
    pub tls: Option<TlsReport>,
    /// The first step that failed, if any.
    #[serde(default)]
    pub failure: Option<ProxyFailure>,
    /// The authentication schemes the proxy asked for (lower case), if it asked.
    #[serde(default)]
    pub offered_auth_schemes: Vec<String>,
}

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
    /// What kind of failure that was, so that an expired certificate is not mistaken for a
    /// re-signed (inspected) one. `None` when the chain is trusted, or from collectors that
    /// predate the field.
    #[serde(default)]
    pub trust_failure: Option<TrustFailure>,
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

/// Why a certificate chain was not trusted.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Hash)]
#[serde(rename_all = "snake_case")]
pub enum TrustFailure {
    /// The chain does not lead to a trusted root: a device that re-signs the traffic (TLS
    /// inspection), or a private CA.
    UntrustedIssuer,
    /// The chain leads to a trusted root, but the certificate has expired.
    Expired,
    /// The certificate is not valid yet (or this machine's clock is behind).
    NotYetValid,
    /// The certificate is not valid for the name that was asked for.
    WrongName,
    /// Anything else (revoked, wrong key usage, …): see `trust_error`.
    Other,
}

impl TlsReport {
    /// The same report with the handshake time zeroed.
    pub fn without_timings(&self) -> TlsReport {
        TlsReport { handshake_ms: 0, ..self.clone() }
    }
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
                via_proxy: Some(ProxiedConnection {
                    proxy: "proxy.corp.example:3128".into(),
                    source: ProxySource::Configured,
                    connect_status: Some(200),
                    tls: Some(tls_report()),
                    failure: None,
                    offered_auth_schemes: Vec::new(),
                }),
            }),
        };
        let v = serde_json::to_value(&r).unwrap();
        assert_eq!(v["probe"], "endpoint");
        assert_eq!(v["data"]["failure"]["step"], "dns");
        let back: ProbeResult = serde_json::from_value(v).unwrap();
        assert_eq!(back, r);
    }

    fn at(secs: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_700_000_000 + secs, 0).unwrap()
    }

    fn tls_report() -> TlsReport {
        TlsReport {
            handshake_ms: 42,
            protocol: "TLSv1.3".into(),
            cipher_suite: "TLS13_AES_256_GCM_SHA384".into(),
            chain_trusted: false,
            trust_error: Some("unknown issuer".into()),
            trust_failure: Some(TrustFailure::UntrustedIssuer),
            subject: Some("CN=passwordreset.microsoftonline.com".into()),
            issuer: Some("CN=Contoso Inspection CA".into()),
            not_before: Some(at(0)),
            not_after: Some(at(86_400)),
            chain_top_issuer: Some("CN=Contoso Inspection CA".into()),
            chain_len: 1,
        }
    }

    /// One output of every kind, with every optional part filled in.
    fn every_output() -> Vec<ProbeOutput> {
        vec![
            ProbeOutput::IdleConnection(IdleConnectionReport {
                host: "ssprdedicatedsbprodscu.servicebus.windows.net".into(),
                port: 443,
                role: EndpointRole::ServiceBusRelay,
                via_proxy: Some("proxy.corp.example:3128".into()),
                holds: vec![
                    IdleHold {
                        hold_secs: 60,
                        outcome: IdleOutcome::Survived,
                        cut_after_ms: None,
                        error: None,
                    },
                    IdleHold {
                        hold_secs: 180,
                        outcome: IdleOutcome::CutWhileIdle,
                        cut_after_ms: Some(120_004),
                        error: Some("connection reset by peer".into()),
                    },
                ],
            }),
            ProbeOutput::Proxy(ProxyReport {
                source: ProxySource::Configured,
                proxy: Some("proxy.corp.example:3128".into()),
                auth_used: ProxyAuthScheme::Basic,
                offered_auth_schemes: vec!["basic".into(), "ntlm".into()],
                integrated_auth_required: Some(false),
                targets: vec![ProxyTargetReport {
                    host: "passwordreset.microsoftonline.com".into(),
                    port: 443,
                    role: EndpointRole::PasswordReset,
                    connect_status: Some(200),
                    tunnel_established: true,
                    tls: Some(tls_report()),
                    tls_inspection: Some(true),
                    failure: None,
                }],
            }),
            ProbeOutput::ActiveDirectory(ActiveDirectoryReport {
                server: "ldaps://dc01.corp.example:636".into(),
                bound_as: Some("CN=wbd-reader,CN=Users,DC=corp,DC=example".into()),
                domain_dn: Some("DC=corp,DC=example".into()),
                domain_dns_name: Some("corp.example".into()),
                netbios_name: Some("CORP".into()),
                domain_functional_level: Some(7),
                forest_functional_level: Some(7),
                pdc_emulator: Some("dc01.corp.example".into()),
                answering_dc: Some("dc01.corp.example".into()),
                policy_hints_control: Some(true),
                dc_current_time: Some(at(5)),
                domain_controllers: vec![DomainController {
                    dn: "CN=DC01,OU=Domain Controllers,DC=corp,DC=example".into(),
                    dns_host_name: Some("dc01.corp.example".into()),
                    operating_system: Some("Windows Server 2022 Standard".into()),
                    operating_system_version: Some("10.0 (20348)".into()),
                    read_only: Some(false),
                    is_pdc_emulator: true,
                }],
                password_policy: Some(DomainPasswordPolicy {
                    min_pwd_age_secs: Some(86_400),
                    max_pwd_age_secs: None,
                    pwd_history_length: Some(24),
                    min_pwd_length: Some(7),
                    pwd_properties: Some(1),
                    lockout_threshold: Some(0),
                }),
                fine_grained_policies: Some(vec![FineGrainedPolicy {
                    dn: "CN=Staff,CN=Password Settings Container,CN=System,DC=corp,DC=example".into(),
                    name: "Staff".into(),
                    precedence: Some(10),
                    min_pwd_age_secs: Some(172_800),
                    applies_to: vec!["CN=Staff,OU=Groups,DC=corp,DC=example".into()],
                    synced_users: Some(42),
                }]),
                sync_scope: Some(SyncScope {
                    included: vec!["OU=Staff,DC=corp,DC=example".into()],
                    excluded: vec!["OU=Disabled,OU=Staff,DC=corp,DC=example".into()],
                    sources: vec![SyncScopeSource::Configuration, SyncScopeSource::Connect],
                }),
                connector_account: Some(ConnectorAccountRights {
                    configured: "MSOL_0123456789ab".into(),
                    dn: Some("CN=MSOL_0123456789ab,CN=Users,DC=corp,DC=example".into()),
                    sid: Some("S-1-5-21-1-2-3-1105".into()),
                    group_sid_count: Some(2),
                    user_account_control: Some(66_048),
                    state: Some(ConnectorAccountState {
                        disabled: Some(false),
                        expires_at: Some(at(86_400)),
                        account_expired: Some(false),
                        password_expired: Some(false),
                        locked_out: Some(true),
                        must_change_password: Some(false),
                        logon_restricted: None,
                        not_found: None,
                        wrong_password: None,
                        bind_refusal_code: Some("775".into()),
                    }),
                    containers: vec![ContainerRights {
                        dn: "OU=Staff,DC=corp,DC=example".into(),
                        reset_password: Some(AccessState::Allowed),
                        change_password: Some(AccessState::NotGranted),
                        write_lockout_time: Some(AccessState::Denied),
                        write_pwd_last_set: None,
                        inheritance_blocked: Some(true),
                        error: None,
                    }],
                    inheritance_blocked: Some(BlockedInheritance {
                        blocked: 2,
                        without_rights: SampledCount {
                            count: 1,
                            sample: vec!["CN=Pat,OU=Staff,DC=corp,DC=example".into()],
                            truncated: false,
                        },
                        truncated: false,
                    }),
                }),
                protected_accounts: Some(ProtectedAccounts {
                    scope: vec!["OU=Staff,DC=corp,DC=example".into()],
                    accounts: SampledCount { count: 3, sample: vec!["adm-pat".into()], truncated: true },
                }),
                errors: vec![AdQueryError { query: "domain_controllers".into(), error: "size limit".into() }],
                failure: None,
            }),
            ProbeOutput::ConnectServer(ConnectServerReport {
                source: ConnectStateSource::Export { path: "C:\\wbd\\connect.json".into() },
                read_at: Some(at(0)),
                hostname: Some("AADC01".into()),
                connect_version: Some("2.5.79.0".into()),
                writeback_enabled: Some(true),
                staging_mode: Some(false),
                connectors: vec![ConnectorState {
                    name: "corp.example".into(),
                    kind: ConnectorKind::ActiveDirectory,
                    identifier: Some("d1c2…".into()),
                    created_at: Some(at(-86_400)),
                    writeback_enabled: None,
                    only_use_preferred_dcs: Some(true),
                    preferred_dcs: vec!["dc01.corp.example".into()],
                    last_dc: Some("dc01.corp.example".into()),
                    sign_and_seal: Some(true),
                    last_full_import: Some(RunSummary {
                        run_profile: "Full Import".into(),
                        result: "success".into(),
                        started_at: Some(at(-3_600)),
                        ended_at: Some(at(-3_500)),
                    }),
                    last_full_sync: None,
                    last_run: None,
                    partitions: vec![SyncedPartition {
                        dn: "DC=corp,DC=example".into(),
                        inclusions: vec!["OU=Staff,DC=corp,DC=example".into()],
                        exclusions: vec!["DC=corp,DC=example".into()],
                    }],
                    runs_in_history: Some(50),
                    remembered_full_import: Some(RunSummary {
                        run_profile: "Full Import".into(),
                        result: "success".into(),
                        started_at: Some(at(-90_000)),
                        ended_at: Some(at(-89_000)),
                    }),
                    remembered_full_sync: None,
                    statistics: Some(ConnectorStatistics { total_connectors: Some(1_834) }),
                }],
                scheduler: Some(SchedulerState {
                    sync_cycle_enabled: Some(true),
                    scheduler_suspended: Some(false),
                    staging_mode_enabled: Some(false),
                    maintenance_enabled: Some(true),
                    sync_cycle_in_progress: Some(false),
                    next_sync_cycle_start: Some(at(1_800)),
                    effective_sync_interval_secs: Some(1_800),
                }),
                adsync_service: Some(ServiceState {
                    status: "Running".into(),
                    start_type: Some("Automatic".into()),
                }),
                machine_role: Some("RoleMemberServer".into()),
                auto_upgrade: Some("Enabled".into()),
                os_caption: Some("Microsoft Windows Server 2022 Standard".into()),
                os_build: Some(20_348),
                tls12: Some(Tls12Settings {
                    dotnet64_system_default_tls_versions: Some(RegistryDword::Set(1)),
                    dotnet64_sch_use_strong_crypto: Some(RegistryDword::Absent),
                    dotnet32_system_default_tls_versions: None,
                    dotnet32_sch_use_strong_crypto: None,
                    schannel_server_enabled: None,
                    schannel_server_disabled_by_default: None,
                    schannel_client_enabled: Some(RegistryDword::Set(1)),
                    schannel_client_disabled_by_default: Some(RegistryDword::Set(0)),
                }),
                dotnet_release: Some(RegistryDword::Set(528_449)),
                restrict_remote_sam: Some(RegistryString::Set("O:BAG:BAD:(A;;RC;;;BA)".into())),
                cloud_sync_agent: Some(CloudSyncAgent { installed: false, version: None, service: None }),
                errors: vec!["Get-ADSyncAutoUpgrade: access denied".into()],
            }),
            ProbeOutput::EventLog(EventLogReport {
                source: EventLogSource::Live { log: "Application".into() },
                since: Some(at(-900)),
                entries: vec![EventEntry {
                    provider: "PasswordResetService".into(),
                    event_id: 31019,
                    level: EventLevel::Information,
                    time_created: at(-60),
                    record_id: Some(4711),
                    message: Some("ServiceBusHeartBeat".into()),
                }],
                entries_omitted: 0,
                counts: vec![EventCount {
                    provider: "PasswordResetService".into(),
                    event_id: 31019,
                    count: 1,
                    newest: at(-60),
                }],
                last_seen: vec![],
                failure: None,
            }),
            ProbeOutput::Graph(GraphReport {
                tenant: "contoso.onmicrosoft.com".into(),
                graph_base_url: "https://graph.microsoft.com".into(),
                service_plans: Some(vec![ServicePlanLicences {
                    service_plan_id: "41781fb2-bc02-4b7c-bd55-b576c07bb09d".into(),
                    service_plan_name: "AAD_PREMIUM".into(),
                    skus: vec!["SPB".into()],
                    provisioned: true,
                    enabled_units: 25,
                    assigned_units: 20,
                    non_user_skus: vec!["Microsoft_Teams_Rooms_Pro".into()],
                }]),
                organization: Some(OrganizationSync {
                    id: "org".into(),
                    display_name: Some("Contoso".into()),
                    on_premises_sync_enabled: None,
                    on_premises_last_sync: Some(at(-1_200)),
                }),
                allowed_to_use_sspr: Some(false),
                test_user: Some(UserRegistration {
                    user_principal_name: "test@contoso.com".into(),
                    found: true,
                    is_admin: Some(false),
                    is_sspr_enabled: Some(true),
                    is_sspr_registered: Some(true),
                    is_sspr_capable: Some(true),
                    methods_registered: vec!["mobilePhone".into()],
                    last_updated: Some(at(-7_200)),
                }),
                admin_roles: Some(vec![AdminRoleMembers {
                    role_template_id: "62e90394-69f5-4237-9190-012177145e10".into(),
                    role_name: "Global Administrator".into(),
                    members: vec![
                        RoleMember {
                            id: "u1".into(),
                            principal_type: "user".into(),
                            display_name: Some("Pat".into()),
                            user_principal_name: Some("pat@contoso.com".into()),
                            on_premises_sync_enabled: Some(true),
                        },
                        RoleMember {
                            id: "u2".into(),
                            principal_type: "user".into(),
                            display_name: None,
                            user_principal_name: None,
                            on_premises_sync_enabled: None,
                        },
                    ],
                }]),
                errors: vec![GraphCallError {
                    call: "authorizationPolicy".into(),
                    status: Some(403),
                    code: Some("Authorization_RequestDenied".into()),
                    message: "Insufficient privileges".into(),
                }],
                failure: None,
                access_refused: None,
                app_credential_expires_at: None,
                own_app: false,
                admin_registrations: None,
                admin_domains: None,
            }),
            ProbeOutput::Script(ScriptReport {
                name: "dc-ports".into(),
                program: "/usr/local/bin/dc-ports".into(),
                exit_code: Some(0),
                timed_out: false,
                duration_ms: 31,
                value: Some(serde_json::json!({"open": [389, 636]})),
                error: None,
                stderr_tail: None,
            }),
        ]
    }

    #[test]
    fn every_probe_kind_round_trips_and_names_itself() {
        let outputs = every_output();
        let mut kinds: Vec<ProbeKind> = outputs.iter().map(ProbeOutput::kind).collect();
        kinds.insert(0, ProbeKind::Endpoint);
        assert_eq!(kinds, ProbeKind::ALL, "every kind but endpoint (tested above) has a sample");
        for output in outputs {
            let result = ProbeResult { subject: "s".into(), observed_at: at(0), duration_ms: 7, output };
            let v = serde_json::to_value(&result).unwrap();
            assert_eq!(v["probe"], result.output.kind().as_str());
            assert!(v["data"].is_object());
            let back: ProbeResult = serde_json::from_value(v).unwrap();
            assert_eq!(back, result);
        }
    }

    #[test]
    fn kind_names_parse_back() {
        for kind in ProbeKind::ALL {
            assert_eq!(ProbeKind::parse(kind.as_str()), Some(kind));
            assert_eq!(serde_json::to_value(kind).unwrap(), kind.as_str());
        }
        assert_eq!(ProbeKind::parse("teleport"), None);
    }

    #[test]
    fn missing_optional_facts_read_as_unknown_not_false() {
        let v = serde_json::json!({
            "subject": "ldap:corp.example", "observed_at": "2026-01-01T00:00:00Z", "duration_ms": 1,
            "probe": "active_directory",
            "data": {"server": "ldaps://dc01:636", "connector_account": {"configured": "MSOL_1",
                "containers": [{"dn": "OU=Staff,DC=corp,DC=example"}]}}
        });
        let r: ProbeResult = serde_json::from_value(v).unwrap();
        let ProbeOutput::ActiveDirectory(ad) = r.output else { panic!("wrong kind") };
        let rights = &ad.connector_account.unwrap().containers[0];
        assert_eq!(rights.reset_password, None);
        assert_eq!(rights.inheritance_blocked, None);
        assert!(ad.domain_controllers.is_empty());
        assert_eq!(ad.policy_hints_control, None);
    }

    #[test]
    fn registry_values_tell_absent_from_unread() {
        let t: Tls12Settings = serde_json::from_value(serde_json::json!({
            "dotnet64_sch_use_strong_crypto": {"state": "absent"},
            "schannel_client_enabled": {"state": "set", "value": 1}
        }))
        .unwrap();
        assert_eq!(t.dotnet64_sch_use_strong_crypto, Some(RegistryDword::Absent));
        assert_eq!(t.schannel_client_enabled, Some(RegistryDword::Set(1)));
        assert_eq!(t.dotnet64_system_default_tls_versions, None);
    }

    #[test]
    fn without_timings_makes_runs_that_saw_the_same_thing_equal() {
        for output in every_output() {
            let mut other = output.clone();
            match &mut other {
                ProbeOutput::IdleConnection(r) => r.holds[1].cut_after_ms = Some(119_870),
                ProbeOutput::Proxy(r) => r.targets[0].tls.as_mut().unwrap().handshake_ms = 7,
                ProbeOutput::ActiveDirectory(r) => r.dc_current_time = Some(at(905)),
                ProbeOutput::Script(r) => r.duration_ms = 99,
                _ => {}
            }
            assert_eq!(output.without_timings(), other.without_timings());
        }
        // A change in what was seen still shows.
        let ProbeOutput::Script(mut script) = every_output().pop().unwrap() else { panic!("script last") };
        let before = ProbeOutput::Script(script.clone()).without_timings();
        script.exit_code = Some(1);
        assert_ne!(before, ProbeOutput::Script(script).without_timings());
    }

    /// An endpoint reached through a proxy, with every timing set.
    fn endpoint_output() -> ProbeOutput {
        ProbeOutput::Endpoint(EndpointReport {
            host: "passwordreset.microsoftonline.com".into(),
            port: 443,
            role: EndpointRole::PasswordReset,
            resolved: vec!["20.190.128.1".parse().unwrap()],
            dns_ms: Some(4),
            connected_to: Some("20.190.128.1".parse().unwrap()),
            tcp_connect_ms: Some(18),
            tls: Some(tls_report()),
            failure: None,
            via_proxy: Some(ProxiedConnection {
                proxy: "proxy.corp.example:3128".into(),
                source: ProxySource::Configured,
                connect_status: Some(200),
                tls: Some(TlsReport { handshake_ms: 77, ..tls_report() }),
                failure: None,
                offered_auth_schemes: Vec::new(),
            }),
        })
    }

    /// `output` with every timing changed (and set where it was absent).
    fn other_timings(output: &ProbeOutput) -> ProbeOutput {
        let mut other = output.clone();
        match &mut other {
            ProbeOutput::Endpoint(r) => {
                r.dns_ms = None;
                r.tcp_connect_ms = Some(250);
                r.tls.as_mut().unwrap().handshake_ms = 310;
                r.via_proxy.as_mut().unwrap().tls.as_mut().unwrap().handshake_ms = 5;
            }
            ProbeOutput::IdleConnection(r) => {
                for (i, hold) in r.holds.iter_mut().enumerate() {
                    hold.cut_after_ms =
                        if hold.cut_after_ms.is_some() { None } else { Some(1_000 + i as u64) };
                }
            }
            ProbeOutput::Proxy(r) => {
                for target in &mut r.targets {
                    if let Some(tls) = &mut target.tls {
                        tls.handshake_ms += 900;
                    }
                }
            }
            ProbeOutput::ActiveDirectory(r) => r.dc_current_time = Some(at(905)),
            ProbeOutput::Script(r) => r.duration_ms = 99,
            ProbeOutput::ConnectServer(_) | ProbeOutput::EventLog(_) | ProbeOutput::Graph(_) => {}
        }
        other
    }

    #[test]
    fn timings_turn_an_earlier_run_into_the_newest_one() {
        let mut outputs = every_output();
        outputs.push(endpoint_output());
        for newest in outputs {
            let earlier = other_timings(&newest);
            assert_eq!(earlier.without_timings(), newest.without_timings(), "{:?}", newest.kind());
            let expected = serde_json::to_value(&newest).unwrap();
            for start in [earlier, newest.without_timings()] {
                let mut stored = serde_json::to_value(&start).unwrap();
                apply_timings(&mut stored, &newest.timings());
                assert_eq!(stored, expected, "{:?}", newest.kind());
                let back: ProbeOutput = serde_json::from_value(stored).unwrap();
                assert_eq!(back, newest);
            }
        }
    }

    #[test]
    fn typed_timings_give_what_the_json_ones_give() {
        let mut outputs = every_output();
        outputs.push(endpoint_output());
        for newest in outputs {
            let mut earlier = other_timings(&newest);
            assert_eq!(earlier == newest, newest.timings().is_empty(), "{:?}", newest.kind());
            earlier.set_timings(&newest.timings());
            assert_eq!(earlier, newest, "{:?}", newest.kind());
            // Cleared timings come back too, and timings of another shape change nothing.
            let mut cleared = newest.without_timings();
            cleared.set_timings(&newest.timings());
            assert_eq!(cleared, newest, "{:?}", newest.kind());
            let mut unchanged = newest.clone();
            unchanged.set_timings(&Timings::from_iter([("/data/nothing_here".to_owned(), 5.into())]));
            assert_eq!(unchanged, newest, "{:?}", newest.kind());
        }
    }

    #[test]
    fn timings_name_only_fields_that_exist() {
        let mut outputs = every_output();
        outputs.push(endpoint_output());
        for output in outputs {
            let json = serde_json::to_value(&output).unwrap();
            for (pointer, value) in output.timings() {
                assert_eq!(json.pointer(&pointer), Some(&value), "{pointer} of {:?}", output.kind());
            }
        }
    }

    #[test]
    fn idle_summary_reads_longest_survived_and_shortest_cut() {
        let ProbeOutput::IdleConnection(idle) = &every_output()[0] else { panic!("idle first") };
        assert_eq!(idle.longest_survived_secs(), Some(60));
        assert_eq!(idle.shortest_cut_secs(), Some(180));
    }

    #[test]
    fn ingest_answer_without_commands_keeps_its_old_shape() {
        let a = IngestAccepted { batch_id: Uuid::nil(), accepted: 3, commands: vec![] };
        let v = serde_json::to_value(&a).unwrap();
        assert!(v.get("commands").is_none());
        let old: IngestAccepted =
            serde_json::from_value(serde_json::json!({"batch_id": Uuid::nil(), "accepted": 3})).unwrap();
        assert_eq!(old, a);
    }

    #[test]
    fn commands_round_trip_and_unknown_ones_are_tolerated() {
        let a = IngestAccepted {
            batch_id: Uuid::nil(),
            accepted: 1,
            commands: vec![
                CollectorCommand {
                    id: Uuid::from_u128(1),
                    action: CommandAction::RunProbes {
                        probes: vec![ProbeKind::ActiveDirectory, ProbeKind::EventLog],
                        reason: Some("re-test from finding".into()),
                    },
                },
                CollectorCommand {
                    id: Uuid::from_u128(2),
                    action: CommandAction::SetProbeSchedule {
                        probe: ProbeKind::IdleConnection,
                        interval_secs: Some(3_600),
                        enabled: None,
                    },
                },
            ],
        };
        let v = serde_json::to_value(&a).unwrap();
        assert_eq!(v["commands"][0]["command"], "run_probes");
        assert_eq!(v["commands"][0]["probes"][0], "active_directory");
        assert_eq!(serde_json::from_value::<IngestAccepted>(v).unwrap(), a);

        let future: IngestAccepted = serde_json::from_value(serde_json::json!({
            "batch_id": Uuid::nil(), "accepted": 1,
            "commands": [{"id": Uuid::from_u128(3), "command": "self_update", "url": "https://x"}]
        }))
        .unwrap();
        assert_eq!(future.commands[0].action, CommandAction::Unknown);
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
