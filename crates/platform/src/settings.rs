//! The one typed settings tree: compiled-in defaults (`config.default.toml`), then an optional
//! TOML file, then `WBD_<SECTION>__<KEY>` environment variables (plus the conventional
//! `DATABASE_URL` and `AMQP_URL`). Validated once, with messages that name the setting.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use serde::{Deserialize, Serialize};
pub use wbd_delivery::DeliverySettings;

const DEFAULTS: &str = include_str!("../config.default.toml");
const SECTIONS: &[&str] = &[
    "server",
    "database",
    "queue",
    "worker",
    "auth",
    "rate_limits",
    "collectors",
    "rules",
    "delivery",
    "telemetry",
    "retention",
    "graph",
];

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    pub server: ServerSettings,
    pub database: DatabaseSettings,
    pub queue: QueueSection,
    pub worker: WorkerSettings,
    pub auth: AuthSettings,
    pub rate_limits: RateLimitSettings,
    pub collectors: CollectorSettings,
    #[serde(default)]
    pub rules: RulesSettings,
    pub delivery: DeliverySettings,
    pub telemetry: TelemetrySettings,
    pub retention: RetentionSettings,
    #[serde(default)]
    pub graph: GraphSettings,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ServerSettings {
    pub listen: String,
    pub tls_cert_file: String,
    pub tls_key_file: String,
    pub workers: usize,
    /// Reverse proxies (CIDRs or addresses) whose `X-Forwarded-For` names the client; from any
    /// other peer the header is ignored.
    #[serde(default)]
    pub trusted_proxies: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct DatabaseSettings {
    pub url: String,
    pub max_connections: u32,
}

impl DatabaseSettings {
    /// The URL without any password, for logs and error messages.
    pub fn redacted_url(&self) -> String {
        redact_url(&self.url)
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct QueueSection {
    pub amqp_url: String,
    pub prefix: String,
    pub prefetch: u16,
    pub delivery_limit: u32,
}

impl QueueSection {
    pub fn to_queue_settings(&self) -> wbd_queue::QueueSettings {
        wbd_queue::QueueSettings {
            prefix: self.prefix.clone(),
            prefetch: self.prefetch,
            delivery_limit: self.delivery_limit,
            ..wbd_queue::QueueSettings::default()
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct WorkerSettings {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub embedded: Option<bool>,
    pub concurrency: usize,
    pub silence_sweep_secs: u64,
    /// Where a `wbd-worker` process serves its health endpoints; empty: nowhere.
    #[serde(default)]
    pub listen: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct AuthSettings {
    pub issuer: String,
    pub audience: String,
    pub token_ttl_secs: u64,
    pub leeway_secs: u64,
    pub enrollment_ttl_secs: u64,
    /// How long an API process trusts its last look at an active API key. A key revoked
    /// through this process stops at once; through another, within this many seconds.
    /// 0 looks the key up on every request.
    pub key_cache_secs: u64,
    /// How long a console sign-in lasts (then the browser signs in again); sign-out and
    /// revoking the API key end it sooner.
    pub session_ttl_secs: u64,
}

/// Requests per minute; 0 switches a limit off. A limit lets its whole minute's allowance through
/// at once, then one request per 60/n seconds.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RateLimitSettings {
    /// Per client address, on exchanging an API key for a token and on enrolling a collector.
    pub auth_per_address: u32,
    /// Per presented API key or enrollment token, on the same two operations.
    pub auth_per_credential: u32,
    /// Per organisation, on every operation that takes an access token.
    pub api_per_organisation: u32,
    /// Per collector, on pushes.
    pub ingest_per_collector: u32,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct CollectorSettings {
    pub push_interval_secs: u32,
    pub silence_factor: u32,
    pub min_silence_secs: u64,
    /// How long a command ("re-test now") waits for the collector's next push; not delivered
    /// by then, it never is (`expired`).
    pub command_ttl_secs: u64,
}

impl CollectorSettings {
    /// How long after a push a collector with this interval counts as silent.
    pub fn silence_after(&self, push_interval_secs: u32) -> Duration {
        let missed = u64::from(push_interval_secs) * u64::from(self.silence_factor);
        Duration::from_secs(missed.max(self.min_silence_secs))
    }
}

/// Server-wide flap damping: when set, replaces every rule's default from the rule pack (a
/// tenant's own override still wins). Unset: each rule's default.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RulesSettings {
    /// Consecutive failing evaluations before a finding opens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub open_after: Option<u32>,
    /// Consecutive passing evaluations before a finding resolves.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resolve_after: Option<u32>,
}

/// How long what grows with use is kept, and how the sweep that removes it runs. A period of 0
/// keeps forever. Nothing pending is ever removed (see `wbd_store::RetentionTable`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RetentionSettings {
    /// Seconds between sweeps (each process waits this ±10 %).
    pub sweep_interval_secs: u64,
    /// Rows removed per batch (a batch of deliveries is a tenth as many deliveries, each with up
    /// to ten attempts: `wbd_store::ATTEMPTS_PER_DELIVERY`).
    pub batch_size: u32,
    /// Pause between two batches, so other writers get their turn.
    pub batch_pause_ms: u64,
    /// Deliveries that succeeded or failed for good, with their attempts, after they finished.
    pub deliveries_days: u32,
    /// Fact history runs after they ended (the run of a subject's latest fact is kept).
    pub fact_history_days: u32,
    pub audit_log_days: u32,
    /// Ids of evaluated queue messages (a redelivery older than this is evaluated again, which
    /// changes nothing when the facts did not).
    pub processed_messages_days: u32,
    /// Ingest batch ids (a retry older than this is stored again instead of answered as before).
    pub batches_days: u32,
    /// Dead-lettered outbox messages, after they died.
    pub dead_letters_days: u32,
    /// Collector commands, after they ran out.
    pub collector_commands_days: u32,
}

impl RetentionSettings {
    /// How long rows of `table` are kept; `None`: forever.
    pub fn period(&self, table: wbd_store::RetentionTable) -> Option<Duration> {
        use wbd_store::RetentionTable as T;
        let days = match table {
            T::Deliveries => self.deliveries_days,
            T::FactHistory => self.fact_history_days,
            T::AuditLog => self.audit_log_days,
            T::ProcessedMessages => self.processed_messages_days,
            T::Batches => self.batches_days,
            T::DeadLetters => self.dead_letters_days,
            T::CollectorCommands => self.collector_commands_days,
        };
        (days > 0).then(|| Duration::from_secs(u64::from(days) * 86_400))
    }
}

/// The installation's multi-tenant Entra app (`[graph]`): the central Microsoft Graph reads.
/// Unconfigured (no `client_id`), nothing reads Graph centrally. `Debug` hides the secret.
#[derive(Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct GraphSettings {
    pub client_id: String,
    /// PEM with the app's certificate (and its key, unless `key_file` is set).
    pub certificate_file: String,
    pub key_file: String,
    /// `PS256` or `RS256`.
    pub assertion_algorithm: String,
    pub client_secret: String,
    /// When the client secret expires (RFC 3339, as the app registration shows it); empty:
    /// unknown. A certificate's expiry is read from the certificate.
    pub client_secret_expires_at: String,
    pub cloud: String,
    /// The API's public base URL, for the consent redirect; empty: `delivery.public_url`.
    pub redirect_base_url: String,
    pub timeout_secs: u64,
    /// Overrides of the cloud's identity platform and Graph host (tests).
    pub authority: String,
    pub graph_base_url: String,
    /// A PEM file of further certificate authorities the reader trusts beside the system's
    /// (an egress proxy that inspects TLS, a test stand-in); empty: the system's only.
    pub ca_file: String,
    /// Run the central reader in this process's worker host.
    pub reader_enabled: bool,
    /// Seconds between two reads of a tenant, and their jitter (± percent).
    pub read_interval_secs: u64,
    pub read_jitter_percent: u8,
    /// Tenants read at once per process; how often due reads are looked for (seconds).
    pub reader_concurrency: u32,
    pub reader_poll_secs: u64,
}

impl Default for GraphSettings {
    fn default() -> Self {
        GraphSettings {
            client_id: String::new(),
            certificate_file: String::new(),
            key_file: String::new(),
            assertion_algorithm: "PS256".to_owned(),
            client_secret: String::new(),
            client_secret_expires_at: String::new(),
            cloud: "global".to_owned(),
            redirect_base_url: String::new(),
            timeout_secs: 30,
            authority: String::new(),
            graph_base_url: String::new(),
            ca_file: String::new(),
            reader_enabled: true,
            read_interval_secs: 3600,
            read_jitter_percent: 10,
            reader_concurrency: 4,
            reader_poll_secs: 30,
        }
    }
}

impl std::fmt::Debug for GraphSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GraphSettings")
            .field("client_id", &self.client_id)
            .field("certificate_file", &self.certificate_file)
            .field("key_file", &self.key_file)
            .field("assertion_algorithm", &self.assertion_algorithm)
            .field("client_secret", &if self.client_secret.is_empty() { "" } else { "***" })
            .field("client_secret_expires_at", &self.client_secret_expires_at)
            .field("cloud", &self.cloud)
            .field("redirect_base_url", &self.redirect_base_url)
            .field("timeout_secs", &self.timeout_secs)
            .field("authority", &self.authority)
            .field("graph_base_url", &self.graph_base_url)
            .field("reader_enabled", &self.reader_enabled)
            .field("read_interval_secs", &self.read_interval_secs)
            .field("read_jitter_percent", &self.read_jitter_percent)
            .field("reader_concurrency", &self.reader_concurrency)
            .field("reader_poll_secs", &self.reader_poll_secs)
            .finish()
    }
}

impl GraphSettings {
    /// Whether the central Graph reads are configured.
    pub fn enabled(&self) -> bool {
        !self.client_id.trim().is_empty()
    }

    /// The cloud (validated at start-up).
    pub fn cloud(&self) -> wbd_graph::Cloud {
        self.cloud.parse().unwrap_or_default()
    }

    /// The identity platform's base URL: the override, or the cloud's.
    pub fn authority_url(&self) -> String {
        let s = if self.authority.is_empty() { self.cloud().authority() } else { &self.authority };
        s.trim_end_matches('/').to_owned()
    }

    /// Graph's base URL: the override, or the cloud's.
    pub fn graph_url(&self) -> String {
        let s =
            if self.graph_base_url.is_empty() { self.cloud().graph_base_url() } else { &self.graph_base_url };
        s.trim_end_matches('/').to_owned()
    }

    /// The redirect URI of the consent flow, given `delivery.public_url` as the fallback base.
    pub fn redirect_uri(&self, public_url: &str) -> Option<String> {
        let base = if self.redirect_base_url.is_empty() { public_url } else { &self.redirect_base_url };
        (!base.is_empty()).then(|| format!("{}/v1/graph/consent/callback", base.trim_end_matches('/')))
    }

    /// The app as the Graph reader takes it: the credential is loaded (the certificate read and
    /// checked against its key). `None` when unconfigured.
    /// The reader's HTTP client: the request time limit, and the system's certificate
    /// authorities with those of `ca_file` added.
    pub fn http_client(&self) -> Result<reqwest::Client, SettingsError> {
        let invalid = |problem: String| SettingsError::Invalid { key: "graph.ca_file", problem };
        let mut builder = reqwest::Client::builder().timeout(Duration::from_secs(self.timeout_secs.max(1)));
        if !self.ca_file.is_empty() {
            let pem = std::fs::read(&self.ca_file)
                .map_err(|e| invalid(format!("cannot read `{}`: {e}", self.ca_file)))?;
            let authorities = reqwest::Certificate::from_pem_bundle(&pem)
                .map_err(|e| invalid(format!("`{}` is not PEM certificates: {e}", self.ca_file)))?;
            if authorities.is_empty() {
                return Err(invalid(format!("`{}` holds no certificate", self.ca_file)));
            }
            builder = builder.tls_certs_merge(authorities);
        }
        builder.build().map_err(|e| invalid(format!("the HTTP client: {e}")))
    }

    pub fn app(&self) -> Result<Option<wbd_graph::GraphApp>, SettingsError> {
        if !self.enabled() {
            return Ok(None);
        }
        let invalid = |key: &'static str, problem: String| SettingsError::Invalid { key, problem };
        let credential = if !self.certificate_file.is_empty() {
            let algorithm = self
                .assertion_algorithm
                .parse()
                .map_err(|e: String| invalid("graph.assertion_algorithm", e))?;
            let key_file = (!self.key_file.is_empty()).then(|| Path::new(&self.key_file));
            let cert = wbd_graph::CertificateCredential::from_files(
                Path::new(&self.certificate_file),
                key_file,
                algorithm,
            )
            .map_err(|e| invalid("graph.certificate_file", e.to_string()))?;
            wbd_graph::ClientCredential::Certificate(std::sync::Arc::new(cert))
        } else {
            wbd_graph::ClientCredential::Secret(wbd_graph::Secret::new(self.client_secret.clone()))
        };
        let url = |key: &'static str, value: String| {
            reqwest::Url::parse(&value).map_err(|e| invalid(key, format!("`{value}` is not a URL: {e}")))
        };
        Ok(Some(wbd_graph::GraphApp {
            client_id: self.client_id.trim().to_owned(),
            credential,
            authority: url("graph.authority", self.authority_url())?,
            graph_base_url: url("graph.graph_base_url", self.graph_url())?,
            timeout: Duration::from_secs(self.timeout_secs.max(1)),
            settings_hint: "graph.client_id / graph.certificate_file or graph.client_secret".to_owned(),
            secret_expires_at: self.secret_expiry(),
        }))
    }

    /// `client_secret_expires_at`, read (validated at start-up).
    fn secret_expiry(&self) -> Option<chrono::DateTime<chrono::Utc>> {
        chrono::DateTime::parse_from_rfc3339(self.client_secret_expires_at.trim())
            .ok()
            .map(|t| t.with_timezone(&chrono::Utc))
    }

    fn validate(&self) -> Result<(), SettingsError> {
        let invalid = |key: &'static str, problem: &str| {
            Err(SettingsError::Invalid { key, problem: problem.to_owned() })
        };
        if let Err(e) = self.cloud.parse::<wbd_graph::Cloud>() {
            return invalid("graph.cloud", &e.to_string());
        }
        if let Err(e) = self.assertion_algorithm.parse::<wbd_graph::AssertionAlgorithm>() {
            return invalid("graph.assertion_algorithm", &e);
        }
        if self.timeout_secs == 0 || self.timeout_secs > 300 {
            return invalid("graph.timeout_secs", "must be between 1 and 300");
        }
        if !(60..=7 * 86_400).contains(&self.read_interval_secs) {
            return invalid("graph.read_interval_secs", "must be between 60 and 604800 (7 days)");
        }
        if self.read_jitter_percent > 50 {
            return invalid("graph.read_jitter_percent", "must be at most 50");
        }
        if !(1..=64).contains(&self.reader_concurrency) {
            return invalid("graph.reader_concurrency", "must be between 1 and 64");
        }
        if !(1..=3600).contains(&self.reader_poll_secs) {
            return invalid("graph.reader_poll_secs", "must be between 1 and 3600");
        }
        if !self.ca_file.is_empty() {
            self.http_client()?;
        }
        for (key, value) in [
            ("graph.redirect_base_url", &self.redirect_base_url),
            ("graph.authority", &self.authority),
            ("graph.graph_base_url", &self.graph_base_url),
        ] {
            if !(value.is_empty() || value.starts_with("https://") || value.starts_with("http://")) {
                return invalid(key, "must be empty or an http(s) URL");
            }
        }
        if !self.client_secret_expires_at.trim().is_empty() && self.secret_expiry().is_none() {
            return invalid(
                "graph.client_secret_expires_at",
                "must be empty or an RFC 3339 time, e.g. 2027-06-30T00:00:00Z",
            );
        }
        if !self.enabled() {
            return Ok(());
        }
        if self.certificate_file.is_empty() && self.client_secret.is_empty() {
            return invalid(
                "graph.certificate_file",
                "or graph.client_secret is required with graph.client_id (a certificate is preferred)",
            );
        }
        if !self.certificate_file.is_empty() && !self.client_secret.is_empty() {
            return invalid(
                "graph.client_secret",
                "must be empty when graph.certificate_file is set (one credential)",
            );
        }
        // The certificate is read and checked against its key now, not at the first read.
        self.app().map(|_| ())
    }
}

/// Highest `retention.batch_size`.
pub const MAX_RETENTION_BATCH: u32 = 100_000;

/// Highest `rules.open_after` / `rules.resolve_after`.
pub const MAX_DAMPING: u32 = 20;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TelemetrySettings {
    pub log_format: LogFormat,
    pub log_filter: String,
    pub service_name: String,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    Pretty,
    Json,
}

/// A setting that is present but wrong, named by its dotted path.
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    #[error("configuration: {0}")]
    Parse(#[from] Box<figment::Error>),
    #[error("configuration: `{key}` {problem}")]
    Invalid { key: &'static str, problem: String },
}

impl Settings {
    /// Defaults, then `file` (if given, or `WBD_CONFIG`), then the environment.
    pub fn load(file: Option<&Path>) -> Result<Settings, SettingsError> {
        let env_file = std::env::var_os("WBD_CONFIG").map(PathBuf::from);
        let file = file.map(Path::to_path_buf).or(env_file);
        let mut figment = Figment::from(Toml::string(DEFAULTS));
        if let Some(file) = &file {
            if !file.exists() {
                return Err(SettingsError::Invalid {
                    key: "--config",
                    problem: format!("names {}, which does not exist", file.display()),
                });
            }
            figment = figment.merge(Toml::file(file));
        }
        // Only `WBD_<SECTION>__<KEY>` names are settings: other WBD_* variables on the machine
        // (the collector's WBD_COLLECTOR_*, the test suite's WBD_TEST_*) are not ours.
        figment = figment.merge(
            Env::prefixed("WBD_")
                .filter(|key| {
                    key.as_str()
                        .split_once("__")
                        .is_some_and(|(section, _)| SECTIONS.iter().any(|s| s.eq_ignore_ascii_case(section)))
                })
                .split("__"),
        );
        if let Ok(url) = std::env::var("DATABASE_URL") {
            figment = figment.merge(Serialized::default("database.url", url));
        }
        if let Ok(url) = std::env::var("AMQP_URL") {
            figment = figment.merge(Serialized::default("queue.amqp_url", url));
        }
        let settings: Settings = figment.extract().map_err(Box::new)?;
        settings.validate()?;
        Ok(settings)
    }

    /// The compiled-in defaults alone (tests start from these).
    pub fn defaults() -> Settings {
        // The defaults are a compile-time constant checked by a unit test.
        Figment::from(Toml::string(DEFAULTS)).extract().unwrap_or_else(|e| panic!("config.default.toml: {e}"))
    }

    pub fn validate(&self) -> Result<(), SettingsError> {
        let invalid = |key: &'static str, problem: &str| {
            Err(SettingsError::Invalid { key, problem: problem.to_owned() })
        };
        if self.server.listen.parse::<SocketAddr>().is_err() {
            return invalid("server.listen", "must be an address such as 127.0.0.1:8080");
        }
        if self.server.tls_cert_file.is_empty() != self.server.tls_key_file.is_empty() {
            return invalid("server.tls_cert_file", "and server.tls_key_file must be set together");
        }
        let url = &self.database.url;
        if !(url.starts_with("sqlite:") || url.starts_with("postgres://") || url.starts_with("postgresql://"))
        {
            return invalid("database.url", "must start with sqlite:, postgres:// or postgresql://");
        }
        if self.database.max_connections == 0 {
            return invalid("database.max_connections", "must be at least 1");
        }
        let amqp = &self.queue.amqp_url;
        if !(amqp.is_empty() || amqp.starts_with("amqp://") || amqp.starts_with("amqps://")) {
            return invalid(
                "queue.amqp_url",
                "must be empty (local queue) or start with amqp:// or amqps://",
            );
        }
        if self.queue.prefix.is_empty()
            || !self.queue.prefix.chars().all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
        {
            return invalid("queue.prefix", "must be letters, digits, '.', '_' or '-'");
        }
        if self.queue.prefetch == 0 {
            return invalid("queue.prefetch", "must be at least 1");
        }
        if self.queue.delivery_limit == 0 {
            return invalid("queue.delivery_limit", "must be at least 1");
        }
        if self.worker.concurrency == 0 {
            return invalid("worker.concurrency", "must be at least 1");
        }
        if self.worker.silence_sweep_secs == 0 {
            return invalid("worker.silence_sweep_secs", "must be at least 1");
        }
        if !self.worker.listen.is_empty() && self.worker.listen.parse::<SocketAddr>().is_err() {
            return invalid("worker.listen", "must be empty or an address such as 0.0.0.0:8090");
        }
        if self.auth.token_ttl_secs == 0 || self.auth.token_ttl_secs > 24 * 3600 {
            return invalid("auth.token_ttl_secs", "must be between 1 and 86400");
        }
        if self.auth.session_ttl_secs < 60 || self.auth.session_ttl_secs > 7 * 86_400 {
            return invalid("auth.session_ttl_secs", "must be between 60 and 604800 (7 days)");
        }
        if self.auth.enrollment_ttl_secs == 0 {
            return invalid("auth.enrollment_ttl_secs", "must be at least 1");
        }
        if self.collectors.push_interval_secs == 0 {
            return invalid("collectors.push_interval_secs", "must be at least 1");
        }
        if self.collectors.silence_factor == 0 {
            return invalid("collectors.silence_factor", "must be at least 1");
        }
        if self.collectors.command_ttl_secs == 0 || self.collectors.command_ttl_secs > 30 * 86_400 {
            return invalid("collectors.command_ttl_secs", "must be between 1 and 2592000 (30 days)");
        }
        let r = &self.retention;
        if r.sweep_interval_secs == 0 {
            return invalid("retention.sweep_interval_secs", "must be at least 1");
        }
        if !(1..=MAX_RETENTION_BATCH).contains(&r.batch_size) {
            return invalid("retention.batch_size", &format!("must be between 1 and {MAX_RETENTION_BATCH}"));
        }
        if r.batch_pause_ms > 60_000 {
            return invalid("retention.batch_pause_ms", "must be at most 60000");
        }
        let d = &self.delivery;
        if d.attempt_timeout_secs == 0 || d.attempt_timeout_secs > 300 {
            return invalid("delivery.attempt_timeout_secs", "must be between 1 and 300");
        }
        if d.retry_schedule_secs.iter().any(|s| !s.is_finite() || *s < 0.0) {
            return invalid("delivery.retry_schedule_secs", "must be waits of 0 seconds or more");
        }
        if d.concurrency == 0 {
            return invalid("delivery.concurrency", "must be at least 1");
        }
        if d.poll_interval_ms == 0 {
            return invalid("delivery.poll_interval_ms", "must be at least 1");
        }
        if d.disable_after_secs == 0 {
            return invalid("delivery.disable_after_secs", "must be at least 1");
        }
        if !(d.public_url.is_empty()
            || d.public_url.starts_with("https://")
            || d.public_url.starts_with("http://"))
        {
            return invalid("delivery.public_url", "must be empty or an http(s) URL");
        }
        let damping_range = format!("must be between 1 and {MAX_DAMPING} when set");
        if self.rules.open_after.is_some_and(|n| !(1..=MAX_DAMPING).contains(&n)) {
            return invalid("rules.open_after", &damping_range);
        }
        if self.rules.resolve_after.is_some_and(|n| !(1..=MAX_DAMPING).contains(&n)) {
            return invalid("rules.resolve_after", &damping_range);
        }
        self.graph.validate()?;
        if self.graph.enabled() && self.graph.redirect_uri(&self.delivery.public_url).is_none() {
            return invalid(
                "graph.redirect_base_url",
                "is required with graph.client_id (or set delivery.public_url): Microsoft sends administrators back there after consent",
            );
        }
        Ok(())
    }

    /// Whether this process runs the worker next to the API.
    pub fn worker_embedded(&self) -> bool {
        self.worker.embedded.unwrap_or(self.queue.amqp_url.is_empty())
    }

    pub fn tls_enabled(&self) -> bool {
        !self.server.tls_cert_file.is_empty()
    }
}

/// Replaces the password of a URL (`scheme://user:password@host`) with `***`.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else { return url.to_owned() };
    let Some((userinfo, host)) = rest.split_once('@') else { return url.to_owned() };
    match userinfo.split_once(':') {
        Some((user, _)) => format!("{scheme}://{user}:***@{host}"),
        None => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compiled_in_defaults_are_valid_and_embedded() {
        let s = Settings::defaults();
        s.validate().unwrap();
        assert!(s.database.url.starts_with("sqlite:"));
        assert!(s.queue.amqp_url.is_empty());
        assert!(s.worker_embedded());
        assert_eq!(s.server.listen, "127.0.0.1:8080");
    }

    #[test]
    fn invalid_values_name_the_setting() {
        let mut s = Settings::defaults();
        s.database.url = "mysql://x".into();
        let err = s.validate().unwrap_err().to_string();
        assert!(err.contains("database.url"), "{err}");
        let mut s = Settings::defaults();
        s.server.tls_key_file = "k.pem".into();
        assert!(s.validate().unwrap_err().to_string().contains("server.tls_cert_file"));
    }

    #[test]
    #[allow(clippy::result_large_err)] // figment::Jail fixes the closure's error type.
    fn only_section_variables_are_read_from_the_environment() {
        figment::Jail::expect_with(|jail| {
            jail.set_env("WBD_SERVER__LISTEN", "127.0.0.1:9999");
            jail.set_env("WBD_TEST_AMQP_URL", "amqp://elsewhere");
            jail.set_env("WBD_COLLECTOR_STATE_DIR", "/tmp/x");
            jail.set_env("AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/%2f");
            let s = Settings::load(None).map_err(|e| e.to_string())?;
            assert_eq!(s.server.listen, "127.0.0.1:9999");
            assert_eq!(s.queue.amqp_url, "amqp://guest:guest@127.0.0.1:5672/%2f");
            assert!(!s.worker_embedded());
            Ok(())
        });
    }

    #[test]
    #[allow(clippy::result_large_err)] // figment::Jail fixes the closure's error type.
    fn damping_defaults_come_from_the_rules_section() {
        figment::Jail::expect_with(|jail| {
            assert_eq!(Settings::load(None).map_err(|e| e.to_string())?.rules, RulesSettings::default());
            jail.set_env("WBD_RULES__OPEN_AFTER", "2");
            let s = Settings::load(None).map_err(|e| e.to_string())?;
            assert_eq!((s.rules.open_after, s.rules.resolve_after), (Some(2), None));
            jail.set_env("WBD_RULES__RESOLVE_AFTER", "0");
            let err = Settings::load(None).map(|_| ()).unwrap_err().to_string();
            assert!(err.contains("rules.resolve_after"), "{err}");
            Ok(())
        });
    }

    #[test]
    fn retention_defaults_keep_a_period_per_table_and_zero_keeps_forever() {
        use wbd_store::RetentionTable as T;
        let mut s = Settings::defaults();
        let days = |d: u64| Some(Duration::from_secs(d * 86_400));
        assert_eq!(s.retention.period(T::Deliveries), days(30));
        assert_eq!(s.retention.period(T::FactHistory), days(90));
        assert_eq!(s.retention.period(T::AuditLog), days(365));
        assert_eq!(s.retention.period(T::ProcessedMessages), days(7));
        assert_eq!(s.collectors.command_ttl_secs, 86_400);
        s.retention.audit_log_days = 0;
        assert_eq!(s.retention.period(T::AuditLog), None);
        s.retention.batch_size = 0;
        assert!(s.validate().unwrap_err().to_string().contains("retention.batch_size"));
    }

    #[test]
    fn silence_deadline_has_a_floor() {
        let c = CollectorSettings {
            push_interval_secs: 300,
            silence_factor: 3,
            min_silence_secs: 120,
            command_ttl_secs: 86_400,
        };
        assert_eq!(c.silence_after(300), Duration::from_secs(900));
        assert_eq!(c.silence_after(10), Duration::from_secs(120));
    }

    #[test]
    fn graph_is_off_until_an_app_is_configured_and_its_secret_never_shows() {
        let mut s = Settings::defaults();
        assert!(!s.graph.enabled());
        assert!(s.graph.app().unwrap().is_none());
        s.graph.client_id = "5f0c1a2b-0000-4000-8000-00000000a11a".into();
        assert!(s.validate().unwrap_err().to_string().contains("graph.certificate_file"));
        s.graph.client_secret = "hush-hush".into();
        assert!(s.validate().unwrap_err().to_string().contains("graph.redirect_base_url"));
        s.delivery.public_url = "https://wbd.example.com".into();
        s.validate().unwrap();
        assert!(!format!("{s:?}").contains("hush-hush"), "Debug hides the secret");
        let app = s.graph.app().unwrap().unwrap();
        assert_eq!(app.authority.as_str(), "https://login.microsoftonline.com/");
        assert_eq!(app.graph_base_url.as_str(), "https://graph.microsoft.com/");
        assert!(!format!("{app:?}").contains("hush-hush"));

        s.graph.cloud = "us_government".into();
        assert_eq!(s.graph.app().unwrap().unwrap().graph_base_url.as_str(), "https://graph.microsoft.us/");
        s.graph.cloud = "mars".into();
        assert!(s.validate().unwrap_err().to_string().contains("graph.cloud"));
        s.graph.cloud = "china".into();

        assert_eq!(s.graph.redirect_uri(""), None);
        assert_eq!(
            s.graph.redirect_uri("https://wbd.example.com/").as_deref(),
            Some("https://wbd.example.com/v1/graph/consent/callback")
        );
        s.graph.client_secret.clear();
        s.graph.certificate_file = "/nonexistent/app.pem".into();
        let err = s.validate().unwrap_err().to_string();
        assert!(err.contains("graph.certificate_file") && err.contains("/nonexistent/app.pem"), "{err}");
    }

    #[test]
    fn further_certificate_authorities_must_read_as_certificates() {
        let mut s = Settings::defaults();
        s.graph.ca_file = "/nonexistent/authorities.pem".into();
        let err = s.validate().unwrap_err().to_string();
        assert!(err.contains("graph.ca_file") && err.contains("/nonexistent/authorities.pem"), "{err}");

        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("authorities.pem");
        std::fs::write(&file, "not a certificate").unwrap();
        s.graph.ca_file = file.display().to_string();
        let err = s.validate().unwrap_err().to_string();
        assert!(err.contains("graph.ca_file") && err.contains("no certificate"), "{err}");

        let authority = rcgen::generate_simple_self_signed(vec!["ca.test".into()]).unwrap();
        std::fs::write(&file, authority.cert.pem()).unwrap();
        s.validate().unwrap();
        s.graph.http_client().unwrap();
    }

    #[test]
    fn passwords_are_redacted() {
        assert_eq!(redact_url("amqp://guest:secret@h:5672/%2f"), "amqp://guest:***@h:5672/%2f");
        assert_eq!(redact_url("sqlite://wbd.db"), "sqlite://wbd.db");
    }
}
