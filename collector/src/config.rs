//! The collector's settings: defaults compiled in, then the TOML file, then `WBD_COLLECTOR_*`
//! environment variables, validated once at start-up into [`Settings`].
//!
//! Every error names the setting it is about, because the person reading it is an MSP
//! technician at a customer site, not the author of the code.
//!
//! ```toml
//! state_dir = "/var/lib/wbd-collector"
//! # server_ca_file = "/etc/wbd-collector/server-ca.pem"
//! probe_interval_secs = 300
//! connect_timeout_secs = 10
//! spool_max_bytes = 268435456
//! extra_trusted_ca_files = []
//!
//! [[endpoints]]
//! host = "passwordreset.microsoftonline.com"
//! role = "password_reset"
//! ```

mod probes;

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName};
use serde::Deserialize;
use wbd_wire::EndpointRole;

pub use probes::{
    AdSettings, ConnectSettings, EventLogSettings, GraphSettings, IdleSettings, ProbeSettings,
    ProxyProbeSettings, ProxySettings, Schedule, ScriptSettings, Secret, WindowsSource,
};

/// The password reset service every writeback deployment needs.
pub const DEFAULT_PASSWORD_RESET_HOST: &str = "passwordreset.microsoftonline.com";
/// The Service Bus relay host Microsoft's own connectivity test uses.
pub const DEFAULT_RELAY_HOST: &str = "ssprdedicatedsbprodscu.servicebus.windows.net";

pub const DEFAULT_PROBE_INTERVAL_SECS: u64 = 300;
pub const DEFAULT_CONNECT_TIMEOUT_SECS: u64 = 10;
pub const DEFAULT_SPOOL_MAX_BYTES: u64 = 256 * 1024 * 1024;
pub const DEFAULT_RETRY_BASE_MS: u64 = 1_000;
pub const DEFAULT_RETRY_CAP_SECS: u64 = 300;

/// Smallest spool bound we accept: it must hold at least a few full batches.
const MIN_SPOOL_MAX_BYTES: u64 = 1024 * 1024;
const ENV_PREFIX: &str = "WBD_COLLECTOR_";

/// The file as written by the user. Unknown keys are an error, so that a typo such as
/// `probe_intervall_secs` is reported instead of silently ignored.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    state_dir: Option<PathBuf>,
    server_ca_file: Option<PathBuf>,
    push_interval_secs: Option<u32>,
    probe_interval_secs: Option<u64>,
    endpoints: Option<Vec<RawEndpoint>>,
    #[serde(default)]
    extra_trusted_ca_files: Vec<PathBuf>,
    connect_timeout_secs: Option<u64>,
    spool_max_bytes: Option<u64>,
    retry_base_ms: Option<u64>,
    retry_cap_secs: Option<u64>,
    proxy: Option<probes::RawProxy>,
    probes: Option<probes::RawProbes>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEndpoint {
    host: String,
    #[serde(default = "default_port")]
    port: u16,
    role: EndpointRole,
    server_name: Option<String>,
}

fn default_port() -> u16 {
    443
}

/// One endpoint to probe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndpointTarget {
    pub host: String,
    pub port: u16,
    pub role: EndpointRole,
    /// The name sent as SNI and verified against the certificate (defaults to `host`).
    pub server_name: String,
}

impl EndpointTarget {
    pub fn new(host: impl Into<String>, port: u16, role: EndpointRole) -> Self {
        let host = host.into();
        EndpointTarget { server_name: host.clone(), host, port, role }
    }

    /// The stable subject of this endpoint's results: `host:port`.
    pub fn subject(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }
}

/// The endpoints probed when the configuration names none.
pub fn default_endpoints() -> Vec<EndpointTarget> {
    vec![
        EndpointTarget::new(DEFAULT_PASSWORD_RESET_HOST, 443, EndpointRole::PasswordReset),
        EndpointTarget::new(DEFAULT_RELAY_HOST, 443, EndpointRole::ServiceBusRelay),
    ]
}

/// Validated settings.
#[derive(Debug, Clone)]
pub struct Settings {
    pub state_dir: PathBuf,
    /// Extra CA the push connection trusts besides the OS store (a private server CA).
    pub server_ca_file: Option<PathBuf>,
    pub server_ca: Vec<CertificateDer<'static>>,
    /// Overrides the push interval the server handed out at enrollment.
    pub push_interval_secs: Option<u32>,
    pub probe_interval: Duration,
    pub endpoints: Vec<EndpointTarget>,
    pub extra_trusted_ca_files: Vec<PathBuf>,
    /// CAs the endpoint probe trusts in addition to the public roots.
    pub extra_trusted_cas: Vec<CertificateDer<'static>>,
    pub connect_timeout: Duration,
    pub spool_max_bytes: u64,
    /// First retry delay of the push backoff.
    pub retry_base: Duration,
    /// Longest delay between push retries.
    pub retry_cap: Duration,
    /// The site's outbound proxy, for pushes, Graph and the network probes.
    pub proxy: Option<ProxySettings>,
    pub probes: ProbeSettings,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read the config file {}: {source}", path.display())]
    Read { path: PathBuf, source: std::io::Error },
    #[error("config file {}: {message}", path.display())]
    Parse { path: PathBuf, message: String },
    #[error("setting `{setting}`: {message}")]
    Invalid { setting: String, message: String },
}

fn invalid(setting: impl Into<String>, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid { setting: setting.into(), message: message.into() }
}

impl Settings {
    /// Loads the settings from an optional TOML file and the process environment.
    pub fn load(path: Option<&Path>) -> Result<Settings, ConfigError> {
        Self::load_with_env(path, |name| std::env::var(name).ok())
    }

    /// Like [`Settings::load`], with the environment given as a lookup function (for tests).
    pub fn load_with_env(
        path: Option<&Path>,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Settings, ConfigError> {
        let (raw, base_dir) = match path {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .map_err(|source| ConfigError::Read { path: path.to_owned(), source })?;
                let raw = Self::parse_toml(&text)
                    .map_err(|message| ConfigError::Parse { path: path.to_owned(), message })?;
                // Relative paths in the file are relative to the file, not to wherever the
                // service manager happened to start us.
                let base = path.parent().map(Path::to_path_buf).unwrap_or_default();
                (raw, Some(base))
            }
            None => (RawConfig::default(), None),
        };
        Self::from_raw(raw, base_dir.as_deref(), &env)
    }

    /// Validates a TOML text (no file, no environment); handy for checking a config in tests.
    pub fn from_toml_str(text: &str, base_dir: Option<&Path>) -> Result<Settings, ConfigError> {
        let raw = Self::parse_toml(text)
            .map_err(|message| ConfigError::Parse { path: PathBuf::from("<inline>"), message })?;
        Self::from_raw(raw, base_dir, &|_: &str| None)
    }

    fn parse_toml(text: &str) -> Result<RawConfig, String> {
        toml::from_str::<RawConfig>(text).map_err(|e| e.to_string())
    }

    fn from_raw(
        mut raw: RawConfig,
        base_dir: Option<&Path>,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Settings, ConfigError> {
        apply_env(&mut raw, env)?;
        let resolve = |p: PathBuf| match base_dir {
            Some(base) if p.is_relative() => base.join(p),
            _ => p,
        };

        let state_dir = resolve(raw.state_dir.unwrap_or_else(default_state_dir));
        if state_dir.as_os_str().is_empty() {
            return Err(invalid("state_dir", "must not be empty"));
        }

        let server_ca_file = raw.server_ca_file.map(resolve);
        let server_ca = match &server_ca_file {
            Some(path) => load_pem_certs(path).map_err(|m| invalid("server_ca_file", m))?,
            None => Vec::new(),
        };

        if let Some(secs) = raw.push_interval_secs
            && !(10..=86_400).contains(&secs)
        {
            return Err(invalid("push_interval_secs", format!("{secs} is out of range 10..=86400")));
        }

        let probe_secs = raw.probe_interval_secs.unwrap_or(DEFAULT_PROBE_INTERVAL_SECS);
        if !(10..=86_400).contains(&probe_secs) {
            return Err(invalid("probe_interval_secs", format!("{probe_secs} is out of range 10..=86400")));
        }

        let connect_secs = raw.connect_timeout_secs.unwrap_or(DEFAULT_CONNECT_TIMEOUT_SECS);
        if !(1..=300).contains(&connect_secs) {
            return Err(invalid("connect_timeout_secs", format!("{connect_secs} is out of range 1..=300")));
        }

        let spool_max_bytes = raw.spool_max_bytes.unwrap_or(DEFAULT_SPOOL_MAX_BYTES);
        if spool_max_bytes < MIN_SPOOL_MAX_BYTES {
            return Err(invalid(
                "spool_max_bytes",
                format!("{spool_max_bytes} is below the minimum of {MIN_SPOOL_MAX_BYTES} bytes (1 MiB)"),
            ));
        }

        let retry_base_ms = raw.retry_base_ms.unwrap_or(DEFAULT_RETRY_BASE_MS);
        if !(1..=60_000).contains(&retry_base_ms) {
            return Err(invalid("retry_base_ms", format!("{retry_base_ms} is out of range 1..=60000")));
        }
        let retry_cap_secs = raw.retry_cap_secs.unwrap_or(DEFAULT_RETRY_CAP_SECS);
        if !(1..=3_600).contains(&retry_cap_secs) {
            return Err(invalid("retry_cap_secs", format!("{retry_cap_secs} is out of range 1..=3600")));
        }
        if Duration::from_millis(retry_base_ms) > Duration::from_secs(retry_cap_secs) {
            return Err(invalid("retry_base_ms", "must not exceed retry_cap_secs"));
        }

        let endpoints = match raw.endpoints {
            None => default_endpoints(),
            Some(list) => validate_endpoints(list)?,
        };

        let extra_trusted_ca_files: Vec<PathBuf> =
            raw.extra_trusted_ca_files.into_iter().map(resolve).collect();
        let mut extra_trusted_cas = Vec::new();
        for (i, path) in extra_trusted_ca_files.iter().enumerate() {
            let certs =
                load_pem_certs(path).map_err(|m| invalid(format!("extra_trusted_ca_files[{i}]"), m))?;
            extra_trusted_cas.extend(certs);
        }

        let proxy = probes::proxy(raw.proxy, env, &resolve)?;
        let probes =
            probes::probes(raw.probes.unwrap_or_default(), Duration::from_secs(probe_secs), env, &resolve)?;

        Ok(Settings {
            proxy,
            probes,
            state_dir,
            server_ca_file,
            server_ca,
            push_interval_secs: raw.push_interval_secs,
            probe_interval: Duration::from_secs(probe_secs),
            endpoints,
            extra_trusted_ca_files,
            extra_trusted_cas,
            connect_timeout: Duration::from_secs(connect_secs),
            spool_max_bytes,
            retry_base: Duration::from_millis(retry_base_ms),
            retry_cap: Duration::from_secs(retry_cap_secs),
        })
    }
}

fn validate_endpoints(list: Vec<RawEndpoint>) -> Result<Vec<EndpointTarget>, ConfigError> {
    if list.is_empty() {
        return Err(invalid("endpoints", "the list is empty; remove it to probe the default endpoints"));
    }
    let mut seen = HashSet::new();
    let mut out = Vec::with_capacity(list.len());
    for (i, ep) in list.into_iter().enumerate() {
        let host = ep.host.trim().to_owned();
        if host.is_empty() {
            return Err(invalid(format!("endpoints[{i}].host"), "must not be empty"));
        }
        if host.contains(['/', ':', ' ', '@']) && host.parse::<std::net::IpAddr>().is_err() {
            return Err(invalid(
                format!("endpoints[{i}].host"),
                format!("`{host}` must be a bare host name or IP address (no scheme, port or path)"),
            ));
        }
        if ep.port == 0 {
            return Err(invalid(format!("endpoints[{i}].port"), "must be between 1 and 65535"));
        }
        let server_name = ep.server_name.map(|s| s.trim().to_owned()).unwrap_or_else(|| host.clone());
        if ServerName::try_from(server_name.as_str()).is_err() {
            let setting = format!("endpoints[{i}].server_name");
            return Err(invalid(setting, format!("`{server_name}` is not a valid DNS name or IP address")));
        }
        let target = EndpointTarget { host, port: ep.port, role: ep.role, server_name };
        if !seen.insert(target.subject().to_ascii_lowercase()) {
            return Err(invalid(format!("endpoints[{i}]"), format!("{} is listed twice", target.subject())));
        }
        out.push(target);
    }
    Ok(out)
}

fn apply_env(raw: &mut RawConfig, env: &dyn Fn(&str) -> Option<String>) -> Result<(), ConfigError> {
    fn number<T: std::str::FromStr>(
        env: &dyn Fn(&str) -> Option<String>,
        key: &str,
    ) -> Result<Option<T>, ConfigError> {
        let name = format!("{ENV_PREFIX}{key}");
        match env(&name) {
            None => Ok(None),
            Some(v) => v
                .trim()
                .parse::<T>()
                .map(Some)
                .map_err(|_| invalid(name, format!("`{v}` is not a valid non-negative integer"))),
        }
    }
    if let Some(v) = env(&format!("{ENV_PREFIX}STATE_DIR")) {
        raw.state_dir = Some(PathBuf::from(v));
    }
    if let Some(v) = env(&format!("{ENV_PREFIX}SERVER_CA_FILE")) {
        raw.server_ca_file = Some(PathBuf::from(v));
    }
    if let Some(v) = number(env, "PUSH_INTERVAL_SECS")? {
        raw.push_interval_secs = Some(v);
    }
    if let Some(v) = number(env, "PROBE_INTERVAL_SECS")? {
        raw.probe_interval_secs = Some(v);
    }
    if let Some(v) = number(env, "CONNECT_TIMEOUT_SECS")? {
        raw.connect_timeout_secs = Some(v);
    }
    if let Some(v) = number(env, "SPOOL_MAX_BYTES")? {
        raw.spool_max_bytes = Some(v);
    }
    if let Some(v) = number(env, "RETRY_BASE_MS")? {
        raw.retry_base_ms = Some(v);
    }
    if let Some(v) = number(env, "RETRY_CAP_SECS")? {
        raw.retry_cap_secs = Some(v);
    }
    Ok(())
}

/// Where the collector keeps its identity and spool when nothing else is configured.
pub fn default_state_dir() -> PathBuf {
    #[cfg(windows)]
    {
        let program_data = std::env::var_os("ProgramData").unwrap_or_else(|| "C:\\ProgramData".into());
        PathBuf::from(program_data).join("WritebackDoctor").join("collector")
    }
    #[cfg(not(windows))]
    {
        PathBuf::from("/var/lib/wbd-collector")
    }
}

/// Reads every certificate from a PEM file; a file with none is an error (it is almost always
/// the wrong file, e.g. a private key).
pub fn load_pem_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let certs = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("{} is not valid PEM: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!("{} contains no PEM certificate (-----BEGIN CERTIFICATE-----)", path.display()));
    }
    Ok(certs)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err_setting(r: Result<Settings, ConfigError>) -> String {
        match r {
            Err(ConfigError::Invalid { setting, .. }) => setting,
            Err(other) => panic!("unexpected error kind: {other}"),
            Ok(_) => panic!("expected an error"),
        }
    }

    #[test]
    fn the_example_config_is_valid_and_matches_the_defaults() {
        let s = Settings::from_toml_str(include_str!("../collector.example.toml"), None).unwrap();
        let d = Settings::from_toml_str("", None).unwrap();
        assert_eq!(s.endpoints, d.endpoints);
        assert_eq!(s.state_dir, PathBuf::from("/var/lib/wbd-collector"));
        assert_eq!(
            (&s.probes.endpoint, &s.probes.idle_connection, &s.probes.proxy),
            (&d.probes.endpoint, &d.probes.idle_connection, &d.probes.proxy)
        );
        assert!(s.probes.endpoint_via_proxy && d.probes.endpoint_via_proxy);
        let direct_only = Settings::from_toml_str("[probes.endpoint]\nvia_proxy = false", None).unwrap();
        assert!(!direct_only.probes.endpoint_via_proxy);
        assert_eq!(
            (s.probe_interval, s.connect_timeout, s.spool_max_bytes, s.retry_base, s.retry_cap),
            (d.probe_interval, d.connect_timeout, d.spool_max_bytes, d.retry_base, d.retry_cap)
        );
    }

    #[test]
    fn empty_config_gets_the_defaults() {
        let s = Settings::from_toml_str("state_dir = \"/tmp/x\"", None).unwrap();
        assert_eq!(s.endpoints, default_endpoints());
        assert_eq!(s.probe_interval, Duration::from_secs(300));
        assert_eq!(s.connect_timeout, Duration::from_secs(10));
        assert_eq!(s.spool_max_bytes, 256 * 1024 * 1024);
        assert_eq!(s.endpoints[1].host, DEFAULT_RELAY_HOST);
        assert_eq!(s.endpoints[1].role, EndpointRole::ServiceBusRelay);
    }

    #[test]
    fn endpoints_take_port_and_server_name_defaults() {
        let s = Settings::from_toml_str(
            r#"
            state_dir = "x"
            [[endpoints]]
            host = "relay.example.net"
            role = "service_bus_relay"
            [[endpoints]]
            host = "127.0.0.1"
            port = 8443
            role = "other"
            server_name = "localhost"
            "#,
            Some(Path::new("/etc/wbd")),
        )
        .unwrap();
        assert_eq!(s.state_dir, PathBuf::from("/etc/wbd/x"));
        assert_eq!(s.endpoints[0].port, 443);
        assert_eq!(s.endpoints[0].server_name, "relay.example.net");
        assert_eq!(s.endpoints[1].subject(), "127.0.0.1:8443");
        assert_eq!(s.endpoints[1].server_name, "localhost");
    }

    #[test]
    fn unknown_keys_are_rejected_with_their_name() {
        let e = Settings::from_toml_str("probe_intervall_secs = 5", None).unwrap_err().to_string();
        assert!(e.contains("probe_intervall_secs"), "{e}");
        let e = Settings::from_toml_str("[[endpoints]]\nhost = \"a\"\nrole = \"other\"\nprot = 1", None)
            .unwrap_err()
            .to_string();
        assert!(e.contains("prot"), "{e}");
    }

    #[test]
    fn bad_values_name_the_setting() {
        assert_eq!(
            err_setting(Settings::from_toml_str("probe_interval_secs = 1", None)),
            "probe_interval_secs"
        );
        assert_eq!(
            err_setting(Settings::from_toml_str("connect_timeout_secs = 0", None)),
            "connect_timeout_secs"
        );
        assert_eq!(err_setting(Settings::from_toml_str("spool_max_bytes = 10", None)), "spool_max_bytes");
        assert_eq!(err_setting(Settings::from_toml_str("endpoints = []", None)), "endpoints");
        assert_eq!(
            err_setting(Settings::from_toml_str(
                "[[endpoints]]\nhost = \"https://x/\"\nrole = \"other\"",
                None
            )),
            "endpoints[0].host"
        );
        assert_eq!(
            err_setting(Settings::from_toml_str(
                "[[endpoints]]\nhost = \"a\"\nrole = \"other\"\n[[endpoints]]\nhost = \"A\"\nrole = \"other\"",
                None
            )),
            "endpoints[1]"
        );
        assert_eq!(
            err_setting(Settings::from_toml_str("extra_trusted_ca_files = [\"/nonexistent/ca.pem\"]", None)),
            "extra_trusted_ca_files[0]"
        );
        let e = Settings::from_toml_str("[[endpoints]]\nhost = \"a\"\nrole = \"mail\"", None).unwrap_err();
        assert!(e.to_string().contains("role") || e.to_string().contains("mail"), "{e}");
    }

    #[test]
    fn environment_overrides_the_file() {
        let env = |k: &str| match k {
            "WBD_COLLECTOR_PROBE_INTERVAL_SECS" => Some("60".to_owned()),
            "WBD_COLLECTOR_STATE_DIR" => Some("/srv/wbd".to_owned()),
            _ => None,
        };
        let s = Settings::from_raw(
            RawConfig { probe_interval_secs: Some(900), ..Default::default() },
            None,
            &env,
        )
        .unwrap();
        assert_eq!(s.probe_interval, Duration::from_secs(60));
        assert_eq!(s.state_dir, PathBuf::from("/srv/wbd"));
        let bad = |k: &str| (k == "WBD_COLLECTOR_SPOOL_MAX_BYTES").then(|| "lots".to_owned());
        assert_eq!(
            err_setting(Settings::from_raw(RawConfig::default(), None, &bad)),
            "WBD_COLLECTOR_SPOOL_MAX_BYTES"
        );
    }
}
