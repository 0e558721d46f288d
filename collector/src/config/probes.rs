//! The `[proxy]` and `[probes.*]` sections: which probes run, how often, and what each needs.
//!
//! Every probe has a schedule (`enabled`, `interval_secs`, `jitter_percent`). A probe whose
//! facts cannot exist on this machine is off unless configured: the Active Directory, Graph and
//! script probes need their settings; the Connect server and event log probes read the live
//! system on Windows and an export file elsewhere. Secrets are never written in the file itself:
//! each is read from an environment variable (`*_env`) or a file (`*_file`) that the service
//! account alone can read.

use std::collections::HashSet;
use std::path::PathBuf;
use std::time::Duration;

use reqwest::Url;
use rustls_pki_types::CertificateDer;
use serde::Deserialize;

use super::{ConfigError, invalid, load_pem_certs};

pub const DEFAULT_IDLE_HOLDS_SECS: [u64; 3] = [60, 120, 180];
pub const DEFAULT_IDLE_INTERVAL_SECS: u64 = 6 * 3600;
pub const DEFAULT_PROXY_INTERVAL_SECS: u64 = 900;
pub const DEFAULT_AD_INTERVAL_SECS: u64 = 3600;
pub const DEFAULT_CONNECT_INTERVAL_SECS: u64 = 900;
pub const DEFAULT_EVENT_LOG_INTERVAL_SECS: u64 = 300;
pub const DEFAULT_GRAPH_INTERVAL_SECS: u64 = 3600;
pub const DEFAULT_SCRIPT_INTERVAL_SECS: u64 = 900;
pub const DEFAULT_SCRIPT_TIMEOUT_SECS: u64 = 60;
pub const DEFAULT_JITTER_PERCENT: u8 = 10;
pub const DEFAULT_AD_SCAN_LIMIT: u32 = 5_000;
pub const DEFAULT_EVENT_LOG_MAX_ENTRIES: u32 = 200;
pub const DEFAULT_GRAPH_AUTHORITY: &str = "https://login.microsoftonline.com";
pub const DEFAULT_GRAPH_BASE_URL: &str = "https://graph.microsoft.com";
/// Event providers read by default (catalogue §2b).
pub const DEFAULT_EVENT_PROVIDERS: [&str; 2] = ["PasswordResetService", "ADSync"];

/// A secret read from the environment or a file; never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// When a probe runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Schedule {
    pub enabled: bool,
    pub interval: Duration,
    /// Each wait is the interval ± this percentage, so collectors started together drift apart.
    pub jitter_percent: u8,
}

/// The outbound HTTP proxy of the site.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProxySettings {
    pub host: String,
    pub port: u16,
    pub username: Option<String>,
    pub password: Option<Secret>,
}

impl ProxySettings {
    /// `host:port`, for reports (never credentials).
    pub fn address(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }

    /// `http://host:port` (without credentials).
    pub fn url(&self) -> String {
        format!("http://{}", self.address())
    }

    /// Parses an `http://[user[:password]@]host[:port]` URL, as in `HTTPS_PROXY`.
    pub fn parse_url(setting: &str, raw: &str) -> Result<ProxySettings, ConfigError> {
        let with_scheme = if raw.contains("://") { raw.to_owned() } else { format!("http://{raw}") };
        let url =
            Url::parse(&with_scheme).map_err(|e| invalid(setting, format!("`{raw}` is not a URL: {e}")))?;
        if url.scheme() != "http" {
            return Err(invalid(
                setting,
                format!("`{raw}`: only http:// proxies are supported (the tunnel itself carries TLS)"),
            ));
        }
        let host = url
            .host_str()
            .map(|h| h.trim_start_matches('[').trim_end_matches(']').to_owned())
            .filter(|h| !h.is_empty())
            .ok_or_else(|| invalid(setting, format!("`{raw}` has no host")))?;
        let port = url.port().unwrap_or(8080);
        let username = (!url.username().is_empty()).then(|| percent_decode(url.username()));
        let password = url.password().map(|p| Secret::new(percent_decode(p)));
        Ok(ProxySettings { host, port, username, password })
    }
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let Ok(v) = u8::from_str_radix(&s[i + 1..i + 3], 16)
        {
            out.push(v);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Idle connection probe settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdleSettings {
    pub schedule: Schedule,
    /// Hold durations, shortest first; each is tried on its own connection, all at once.
    pub holds: Vec<Duration>,
    /// Go through the site's proxy when there is one (as the relay traffic does).
    pub via_proxy: bool,
}

/// Proxy probe settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProxyProbeSettings {
    pub schedule: Schedule,
}

/// Active Directory probe settings.
#[derive(Debug, Clone)]
pub struct AdSettings {
    pub schedule: Schedule,
    /// `ldaps://dc01.corp.example:636` or `ldap://…` with `starttls`.
    pub url: String,
    pub starttls: bool,
    pub bind_dn: Option<String>,
    pub bind_password: Option<Secret>,
    /// Trusted for the DC's certificate besides the OS store: CA certificates, or the DC's own
    /// (self-signed) certificate, which is then trusted as exactly that certificate.
    pub ca_certs: Vec<CertificateDer<'static>>,
    /// The name the DC's certificate is checked against, when it differs from the URL's host.
    pub tls_server_name: Option<String>,
    /// The AD DS connector account (`MSOL_…`), by sAMAccountName, UPN or DN.
    pub connector_account: Option<String>,
    /// The OUs Entra Connect synchronises; the domain head is always checked too.
    pub synced_ous: Vec<String>,
    /// Most objects read by one search (DCs, protected accounts, objects with inheritance blocked).
    pub scan_limit: u32,
    pub timeout: Duration,
}

/// Where a Windows-side probe reads from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WindowsSource {
    /// The live system (Windows only).
    Live,
    /// An export file (any OS).
    Export(PathBuf),
}

/// Entra Connect server probe settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectSettings {
    pub schedule: Schedule,
    pub source: WindowsSource,
    /// Bound of the live PowerShell run.
    pub timeout: Duration,
}

/// Event log probe settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventLogSettings {
    pub schedule: Schedule,
    pub source: WindowsSource,
    pub providers: Vec<String>,
    pub max_entries: u32,
}

/// Microsoft Graph probe settings.
#[derive(Debug, Clone)]
pub struct GraphSettings {
    pub schedule: Schedule,
    /// Entra tenant id or primary domain.
    pub tenant: String,
    pub client_id: String,
    pub client_secret: Secret,
    /// `https://login.microsoftonline.com` (or a national cloud's).
    pub authority: Url,
    /// `https://graph.microsoft.com` (or a national cloud's).
    pub graph_base_url: Url,
    /// UPN of the MSP's test user, for `userRegistrationDetails`.
    pub test_user: Option<String>,
    pub timeout: Duration,
}

/// One script probe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScriptSettings {
    pub schedule: Schedule,
    pub name: String,
    pub program: PathBuf,
    pub args: Vec<String>,
    pub timeout: Duration,
}

/// Every probe's settings.
#[derive(Debug, Clone)]
pub struct ProbeSettings {
    pub endpoint: Schedule,
    /// Also reach each endpoint through the site's proxy, when there is one (the path writeback
    /// takes); `probes.endpoint.via_proxy`, default true.
    pub endpoint_via_proxy: bool,
    pub idle_connection: IdleSettings,
    pub proxy: ProxyProbeSettings,
    pub active_directory: Option<AdSettings>,
    pub connect_server: Option<ConnectSettings>,
    pub event_log: Option<EventLogSettings>,
    pub graph: Option<GraphSettings>,
    pub scripts: Vec<ScriptSettings>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawProxy {
    url: Option<String>,
    username: Option<String>,
    password_env: Option<String>,
    password_file: Option<PathBuf>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawProbes {
    endpoint: Option<RawEndpointProbe>,
    idle_connection: Option<RawIdle>,
    proxy: Option<RawScheduleOnly>,
    active_directory: Option<RawAd>,
    connect_server: Option<RawWindowsProbe>,
    event_log: Option<RawEventLog>,
    graph: Option<RawGraph>,
    #[serde(default)]
    script: Vec<RawScript>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEndpointProbe {
    enabled: Option<bool>,
    jitter_percent: Option<u8>,
    via_proxy: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawScheduleOnly {
    enabled: Option<bool>,
    interval_secs: Option<u64>,
    jitter_percent: Option<u8>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawIdle {
    enabled: Option<bool>,
    interval_secs: Option<u64>,
    jitter_percent: Option<u8>,
    holds_secs: Option<Vec<u64>>,
    via_proxy: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAd {
    enabled: Option<bool>,
    interval_secs: Option<u64>,
    jitter_percent: Option<u8>,
    url: Option<String>,
    #[serde(default)]
    starttls: bool,
    bind_dn: Option<String>,
    bind_password_env: Option<String>,
    bind_password_file: Option<PathBuf>,
    ca_file: Option<PathBuf>,
    tls_server_name: Option<String>,
    connector_account: Option<String>,
    #[serde(default)]
    synced_ous: Vec<String>,
    scan_limit: Option<u32>,
    timeout_secs: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWindowsProbe {
    enabled: Option<bool>,
    interval_secs: Option<u64>,
    jitter_percent: Option<u8>,
    export_file: Option<PathBuf>,
    timeout_secs: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEventLog {
    enabled: Option<bool>,
    interval_secs: Option<u64>,
    jitter_percent: Option<u8>,
    export_file: Option<PathBuf>,
    providers: Option<Vec<String>>,
    max_entries: Option<u32>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawGraph {
    enabled: Option<bool>,
    interval_secs: Option<u64>,
    jitter_percent: Option<u8>,
    tenant: Option<String>,
    client_id: Option<String>,
    client_secret_env: Option<String>,
    client_secret_file: Option<PathBuf>,
    authority: Option<String>,
    graph_base_url: Option<String>,
    test_user: Option<String>,
    timeout_secs: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawScript {
    enabled: Option<bool>,
    interval_secs: Option<u64>,
    jitter_percent: Option<u8>,
    name: String,
    program: PathBuf,
    #[serde(default)]
    args: Vec<String>,
    timeout_secs: Option<u64>,
}

/// Resolves relative paths against the config file's directory.
pub(super) type Resolve<'a> = &'a dyn Fn(PathBuf) -> PathBuf;
pub(super) type Env<'a> = &'a dyn Fn(&str) -> Option<String>;

fn schedule(
    prefix: &str,
    enabled: Option<bool>,
    interval_secs: Option<u64>,
    jitter_percent: Option<u8>,
    default_interval: u64,
    default_enabled: bool,
) -> Result<Schedule, ConfigError> {
    let secs = interval_secs.unwrap_or(default_interval);
    if !(10..=7 * 86_400).contains(&secs) {
        return Err(invalid(
            format!("{prefix}.interval_secs"),
            format!("{secs} is out of range 10..=604800"),
        ));
    }
    let jitter = jitter_percent.unwrap_or(DEFAULT_JITTER_PERCENT);
    if jitter > 50 {
        return Err(invalid(format!("{prefix}.jitter_percent"), format!("{jitter} is out of range 0..=50")));
    }
    Ok(Schedule {
        enabled: enabled.unwrap_or(default_enabled),
        interval: Duration::from_secs(secs),
        jitter_percent: jitter,
    })
}

fn timeout(setting: String, secs: Option<u64>, default: u64, max: u64) -> Result<Duration, ConfigError> {
    let secs = secs.unwrap_or(default);
    if !(1..=max).contains(&secs) {
        return Err(invalid(setting, format!("{secs} is out of range 1..={max}")));
    }
    Ok(Duration::from_secs(secs))
}

/// A secret from exactly one of `<name>_env` and `<name>_file`.
fn secret(
    prefix: &str,
    name: &str,
    from_env: Option<String>,
    from_file: Option<PathBuf>,
    env: Env<'_>,
    resolve: Resolve<'_>,
) -> Result<Option<Secret>, ConfigError> {
    match (from_env, from_file) {
        (Some(_), Some(_)) => Err(invalid(
            format!("{prefix}.{name}_env"),
            format!("set either {name}_env or {name}_file, not both"),
        )),
        (Some(var), None) => match env(&var) {
            Some(value) if !value.is_empty() => Ok(Some(Secret::new(value))),
            _ => Err(invalid(
                format!("{prefix}.{name}_env"),
                format!(
                    "the environment variable {var} is not set (or empty) in the collector's environment"
                ),
            )),
        },
        (None, Some(path)) => {
            let path = resolve(path);
            let text = std::fs::read_to_string(&path).map_err(|e| {
                invalid(format!("{prefix}.{name}_file"), format!("cannot read {}: {e}", path.display()))
            })?;
            let value = text.trim_end_matches(['\r', '\n']).to_owned();
            if value.is_empty() {
                return Err(invalid(format!("{prefix}.{name}_file"), format!("{} is empty", path.display())));
            }
            Ok(Some(Secret::new(value)))
        }
        (None, None) => Ok(None),
    }
}

/// An `https://` URL, or `http://` to a loopback address (test stand-ins).
fn https_url(setting: &str, raw: &str) -> Result<Url, ConfigError> {
    let url = Url::parse(raw).map_err(|e| invalid(setting, format!("`{raw}` is not a URL: {e}")))?;
    let host = url.host_str().unwrap_or_default().trim_start_matches('[').trim_end_matches(']');
    let loopback = host.eq_ignore_ascii_case("localhost")
        || host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback());
    match url.scheme() {
        "https" => {}
        "http" if loopback => {}
        _ => {
            return Err(invalid(
                setting,
                format!("`{raw}` must be an https:// URL (http:// only to loopback)"),
            ));
        }
    }
    if host.is_empty() {
        return Err(invalid(setting, format!("`{raw}` has no host")));
    }
    Ok(url)
}

pub(super) fn proxy(
    raw: Option<RawProxy>,
    env: Env<'_>,
    resolve: Resolve<'_>,
) -> Result<Option<ProxySettings>, ConfigError> {
    let Some(raw) = raw else { return Ok(None) };
    let Some(url) = raw.url else {
        if raw.username.is_some() || raw.password_env.is_some() || raw.password_file.is_some() {
            return Err(invalid("proxy.url", "is required when [proxy] has credentials"));
        }
        return Ok(None);
    };
    let mut settings = ProxySettings::parse_url("proxy.url", &url)?;
    if settings.password.is_some() {
        return Err(invalid(
            "proxy.url",
            "must not contain a password; use proxy.password_env or proxy.password_file",
        ));
    }
    if let Some(user) = raw.username {
        settings.username = Some(user);
    }
    settings.password = secret("proxy", "password", raw.password_env, raw.password_file, env, resolve)?;
    if settings.password.is_some() && settings.username.is_none() {
        return Err(invalid("proxy.username", "is required when a proxy password is set"));
    }
    if settings.username.is_some() && settings.password.is_none() {
        return Err(invalid(
            "proxy.password_env",
            "a proxy username needs a password (password_env or password_file)",
        ));
    }
    Ok(Some(settings))
}

pub(super) fn probes(
    raw: RawProbes,
    endpoint_interval: Duration,
    env: Env<'_>,
    resolve: Resolve<'_>,
) -> Result<ProbeSettings, ConfigError> {
    let ep = raw.endpoint.unwrap_or_default();
    let endpoint = schedule(
        "probes.endpoint",
        ep.enabled,
        Some(endpoint_interval.as_secs()),
        ep.jitter_percent,
        endpoint_interval.as_secs(),
        true,
    )?;

    let idle = raw.idle_connection.unwrap_or_default();
    let mut holds_secs = idle.holds_secs.unwrap_or_else(|| DEFAULT_IDLE_HOLDS_SECS.to_vec());
    if holds_secs.is_empty() {
        return Err(invalid("probes.idle_connection.holds_secs", "needs at least one hold"));
    }
    if let Some(bad) = holds_secs.iter().find(|s| !(1..=3_600).contains(*s)) {
        return Err(invalid("probes.idle_connection.holds_secs", format!("{bad} is out of range 1..=3600")));
    }
    holds_secs.sort_unstable();
    holds_secs.dedup();
    let idle_connection = IdleSettings {
        schedule: schedule(
            "probes.idle_connection",
            idle.enabled,
            idle.interval_secs,
            idle.jitter_percent,
            DEFAULT_IDLE_INTERVAL_SECS,
            true,
        )?,
        holds: holds_secs.into_iter().map(Duration::from_secs).collect(),
        via_proxy: idle.via_proxy.unwrap_or(true),
    };

    let p = raw.proxy.unwrap_or_default();
    // On by default: with no proxy anywhere it reports just that ("direct"), which is a fact too.
    let proxy = ProxyProbeSettings {
        schedule: schedule(
            "probes.proxy",
            p.enabled,
            p.interval_secs,
            p.jitter_percent,
            DEFAULT_PROXY_INTERVAL_SECS,
            true,
        )?,
    };

    let active_directory = raw.active_directory.map(|ad| active_directory(ad, env, resolve)).transpose()?;

    let connect_server =
        windows_probe("probes.connect_server", raw.connect_server, DEFAULT_CONNECT_INTERVAL_SECS, resolve)?;

    let event_log = match raw.event_log {
        None if !cfg!(windows) => None,
        raw_log => {
            let raw_log = raw_log.unwrap_or_default();
            let providers = raw_log
                .providers
                .unwrap_or_else(|| DEFAULT_EVENT_PROVIDERS.iter().map(|s| (*s).to_owned()).collect());
            if providers.is_empty() {
                return Err(invalid("probes.event_log.providers", "needs at least one provider"));
            }
            if let Some(bad) =
                providers.iter().find(|p| p.is_empty() || p.contains(['\'', '"', '<', '>', '&']))
            {
                return Err(invalid("probes.event_log.providers", format!("`{bad}` is not a provider name")));
            }
            let max_entries = raw_log.max_entries.unwrap_or(DEFAULT_EVENT_LOG_MAX_ENTRIES);
            if !(1..=10_000).contains(&max_entries) {
                return Err(invalid(
                    "probes.event_log.max_entries",
                    format!("{max_entries} is out of range 1..=10000"),
                ));
            }
            let source = match raw_log.export_file {
                Some(path) => WindowsSource::Export(resolve(path)),
                None if cfg!(windows) => WindowsSource::Live,
                None => {
                    return Err(invalid(
                        "probes.event_log.export_file",
                        "is required on this OS (the live event log exists only on Windows)",
                    ));
                }
            };
            Some(EventLogSettings {
                schedule: schedule(
                    "probes.event_log",
                    raw_log.enabled,
                    raw_log.interval_secs,
                    raw_log.jitter_percent,
                    DEFAULT_EVENT_LOG_INTERVAL_SECS,
                    true,
                )?,
                source,
                providers,
                max_entries,
            })
        }
    };

    let graph = raw.graph.map(|g| graph(g, env, resolve)).transpose()?;

    let mut scripts = Vec::with_capacity(raw.script.len());
    let mut names = HashSet::new();
    for (i, s) in raw.script.into_iter().enumerate() {
        let prefix = format!("probes.script[{i}]");
        if s.name.is_empty() || !s.name.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c)) {
            return Err(invalid(
                format!("{prefix}.name"),
                "must be non-empty and use only letters, digits, `-`, `_`, `.`",
            ));
        }
        if !names.insert(s.name.clone()) {
            return Err(invalid(format!("{prefix}.name"), format!("`{}` is used twice", s.name)));
        }
        if s.program.as_os_str().is_empty() {
            return Err(invalid(format!("{prefix}.program"), "must not be empty"));
        }
        let program = if s.program.components().count() > 1 { resolve(s.program) } else { s.program };
        scripts.push(ScriptSettings {
            schedule: schedule(
                &prefix,
                s.enabled,
                s.interval_secs,
                s.jitter_percent,
                DEFAULT_SCRIPT_INTERVAL_SECS,
                true,
            )?,
            name: s.name,
            program,
            args: s.args,
            timeout: timeout(
                format!("{prefix}.timeout_secs"),
                s.timeout_secs,
                DEFAULT_SCRIPT_TIMEOUT_SECS,
                3_600,
            )?,
        });
    }

    Ok(ProbeSettings {
        endpoint,
        endpoint_via_proxy: ep.via_proxy.unwrap_or(true),
        idle_connection,
        proxy,
        active_directory,
        connect_server,
        event_log,
        graph,
        scripts,
    })
}

fn windows_probe(
    prefix: &str,
    raw: Option<RawWindowsProbe>,
    default_interval: u64,
    resolve: Resolve<'_>,
) -> Result<Option<ConnectSettings>, ConfigError> {
    let raw = match raw {
        None if !cfg!(windows) => return Ok(None),
        raw => raw.unwrap_or_default(),
    };
    let source = match raw.export_file {
        Some(path) => WindowsSource::Export(resolve(path)),
        None if cfg!(windows) => WindowsSource::Live,
        None => {
            return Err(invalid(
                format!("{prefix}.export_file"),
                "is required on this OS (the live state can only be read on the Windows server); \
                 produce it with deploy/collector/Export-WbdConnectState.ps1",
            ));
        }
    };
    Ok(Some(ConnectSettings {
        schedule: schedule(
            prefix,
            raw.enabled,
            raw.interval_secs,
            raw.jitter_percent,
            default_interval,
            true,
        )?,
        source,
        timeout: timeout(format!("{prefix}.timeout_secs"), raw.timeout_secs, 120, 900)?,
    }))
}

fn active_directory(raw: RawAd, env: Env<'_>, resolve: Resolve<'_>) -> Result<AdSettings, ConfigError> {
    let p = "probes.active_directory";
    let url =
        raw.url.ok_or_else(|| invalid(format!("{p}.url"), "is required, e.g. ldaps://dc01.corp.example"))?;
    let parsed =
        Url::parse(&url).map_err(|e| invalid(format!("{p}.url"), format!("`{url}` is not a URL: {e}")))?;
    match parsed.scheme() {
        "ldaps" => {
            if raw.starttls {
                return Err(invalid(format!("{p}.starttls"), "is for ldap:// URLs; ldaps:// is TLS already"));
            }
        }
        "ldap" => {}
        other => {
            return Err(invalid(
                format!("{p}.url"),
                format!("scheme `{other}`: use ldaps:// (or ldap:// with starttls = true)"),
            ));
        }
    }
    if parsed.host_str().is_none_or(str::is_empty) {
        return Err(invalid(format!("{p}.url"), format!("`{url}` has no host")));
    }
    let bind_password =
        secret(p, "bind_password", raw.bind_password_env, raw.bind_password_file, env, resolve)?;
    if raw.bind_dn.is_some() != bind_password.is_some() {
        return Err(invalid(
            format!("{p}.bind_dn"),
            "bind_dn and a bind password (bind_password_env or bind_password_file) go together",
        ));
    }
    if parsed.scheme() == "ldap" && !raw.starttls && bind_password.is_some() {
        return Err(invalid(
            format!("{p}.url"),
            "refusing to send the bind password over plain LDAP: use ldaps:// or set starttls = true",
        ));
    }
    let ca_certs = match raw.ca_file {
        Some(path) => load_pem_certs(&resolve(path)).map_err(|m| invalid(format!("{p}.ca_file"), m))?,
        None => Vec::new(),
    };
    if let Some(name) = &raw.tls_server_name
        && rustls_pki_types::ServerName::try_from(name.as_str()).is_err()
    {
        return Err(invalid(
            format!("{p}.tls_server_name"),
            format!("`{name}` is not a valid DNS name or IP address"),
        ));
    }
    for (i, ou) in raw.synced_ous.iter().enumerate() {
        if !ou.contains('=') {
            return Err(invalid(
                format!("{p}.synced_ous[{i}]"),
                format!("`{ou}` is not a distinguished name (OU=…,DC=…)"),
            ));
        }
    }
    let scan_limit = raw.scan_limit.unwrap_or(DEFAULT_AD_SCAN_LIMIT);
    if !(1..=1_000_000).contains(&scan_limit) {
        return Err(invalid(format!("{p}.scan_limit"), format!("{scan_limit} is out of range 1..=1000000")));
    }
    Ok(AdSettings {
        schedule: schedule(
            p,
            raw.enabled,
            raw.interval_secs,
            raw.jitter_percent,
            DEFAULT_AD_INTERVAL_SECS,
            true,
        )?,
        url,
        starttls: raw.starttls,
        bind_dn: raw.bind_dn,
        bind_password,
        ca_certs,
        tls_server_name: raw.tls_server_name,
        connector_account: raw.connector_account.filter(|s| !s.trim().is_empty()),
        synced_ous: raw.synced_ous,
        scan_limit,
        timeout: timeout(format!("{p}.timeout_secs"), raw.timeout_secs, 30, 600)?,
    })
}

fn graph(raw: RawGraph, env: Env<'_>, resolve: Resolve<'_>) -> Result<GraphSettings, ConfigError> {
    let p = "probes.graph";
    let tenant = raw
        .tenant
        .filter(|t| !t.trim().is_empty())
        .ok_or_else(|| invalid(format!("{p}.tenant"), "is required (the tenant id or its primary domain)"))?;
    if tenant.contains(['/', '?', '#', ' ']) {
        return Err(invalid(format!("{p}.tenant"), format!("`{tenant}` is not a tenant id or domain")));
    }
    let client_id = raw.client_id.filter(|t| !t.trim().is_empty()).ok_or_else(|| {
        invalid(format!("{p}.client_id"), "is required (the app registration's application id)")
    })?;
    let client_secret =
        secret(p, "client_secret", raw.client_secret_env, raw.client_secret_file, env, resolve)?.ok_or_else(
            || {
                invalid(
                    format!("{p}.client_secret_env"),
                    "a client secret is required (client_secret_env or client_secret_file)",
                )
            },
        )?;
    let authority =
        https_url(&format!("{p}.authority"), raw.authority.as_deref().unwrap_or(DEFAULT_GRAPH_AUTHORITY))?;
    let graph_base_url = https_url(
        &format!("{p}.graph_base_url"),
        raw.graph_base_url.as_deref().unwrap_or(DEFAULT_GRAPH_BASE_URL),
    )?;
    Ok(GraphSettings {
        schedule: schedule(
            p,
            raw.enabled,
            raw.interval_secs,
            raw.jitter_percent,
            DEFAULT_GRAPH_INTERVAL_SECS,
            true,
        )?,
        tenant,
        client_id,
        client_secret,
        authority,
        graph_base_url,
        test_user: raw.test_user.filter(|u| !u.trim().is_empty()),
        timeout: timeout(format!("{p}.timeout_secs"), raw.timeout_secs, 30, 600)?,
    })
}

#[cfg(test)]
mod tests {
    use super::super::{ConfigError, Settings};

    fn load(text: &str, env: &[(&str, &str)]) -> Result<Settings, ConfigError> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(&path, text).unwrap();
        let env: Vec<(String, String)> =
            env.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
        Settings::load_with_env(Some(&path), |name| {
            env.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone())
        })
    }

    fn setting(r: Result<Settings, ConfigError>) -> String {
        match r {
            Err(ConfigError::Invalid { setting, .. }) => setting,
            Err(other) => panic!("unexpected error kind: {other}"),
            Ok(_) => panic!("expected an error"),
        }
    }

    #[test]
    fn defaults_enable_the_network_probes_only() {
        let s = Settings::from_toml_str("", None).unwrap();
        let p = &s.probes;
        assert!(p.endpoint.enabled && p.idle_connection.schedule.enabled && p.proxy.schedule.enabled);
        assert_eq!(
            p.idle_connection.holds.iter().map(|d| d.as_secs()).collect::<Vec<_>>(),
            vec![60, 120, 180]
        );
        assert!(p.active_directory.is_none() && p.graph.is_none() && p.scripts.is_empty());
        if !cfg!(windows) {
            assert!(p.connect_server.is_none() && p.event_log.is_none());
        }
        assert!(s.proxy.is_none());
    }

    #[test]
    fn every_probe_section_is_read() {
        let dir = tempfile::tempdir().unwrap();
        let secret = dir.path().join("graph-secret");
        std::fs::write(&secret, "s3cret\r\n").unwrap();
        let text = format!(
            r#"
            [proxy]
            url = "http://proxy.corp.example:3128"
            username = "svc-wbd"
            password_env = "PROXY_PW"

            [probes.idle_connection]
            holds_secs = [300, 120]
            interval_secs = 7200
            jitter_percent = 20

            [probes.active_directory]
            url = "ldaps://dc01.corp.example"
            bind_dn = "CN=wbd,OU=Service,DC=corp,DC=example"
            bind_password_env = "LDAP_PW"
            connector_account = "MSOL_0123"
            synced_ous = ["OU=Staff,DC=corp,DC=example"]

            [probes.connect_server]
            export_file = "connect.json"

            [probes.event_log]
            export_file = "events.xml"
            max_entries = 50

            [probes.graph]
            tenant = "contoso.onmicrosoft.com"
            client_id = "7d1c5a8e-0000-4000-8000-0000000000aa"
            client_secret_file = {secret:?}
            authority = "https://login.microsoftonline.us"
            graph_base_url = "https://graph.microsoft.us"

            [[probes.script]]
            name = "dc-ports"
            program = "scripts/dc-ports.sh"
            args = ["dc01"]
            timeout_secs = 20
            "#,
            secret = secret.display().to_string()
        );
        let s = load(&text, &[("PROXY_PW", "p"), ("LDAP_PW", "l")]).unwrap();
        let proxy = s.proxy.as_ref().unwrap();
        assert_eq!(
            (proxy.address(), proxy.username.as_deref()),
            ("proxy.corp.example:3128".to_owned(), Some("svc-wbd"))
        );
        assert_eq!(proxy.password.as_ref().unwrap().expose(), "p");
        assert_eq!(format!("{:?}", proxy.password), "Some(Secret(***))", "secrets never print");
        let idle = &s.probes.idle_connection;
        assert_eq!(idle.holds.iter().map(|d| d.as_secs()).collect::<Vec<_>>(), vec![120, 300]);
        assert_eq!((idle.schedule.interval.as_secs(), idle.schedule.jitter_percent), (7200, 20));
        let ad = s.probes.active_directory.as_ref().unwrap();
        assert_eq!(ad.bind_password.as_ref().unwrap().expose(), "l");
        assert_eq!(ad.schedule.interval.as_secs(), super::DEFAULT_AD_INTERVAL_SECS);
        let graph = s.probes.graph.as_ref().unwrap();
        assert_eq!(graph.client_secret.expose(), "s3cret");
        assert_eq!(graph.graph_base_url.as_str(), "https://graph.microsoft.us/");
        let script = &s.probes.scripts[0];
        assert!(script.program.is_absolute(), "relative to the config file: {}", script.program.display());
        assert_eq!(script.timeout.as_secs(), 20);
        assert!(
            matches!(&s.probes.event_log.as_ref().unwrap().source, super::WindowsSource::Export(p) if p.ends_with("events.xml"))
        );
    }

    #[test]
    fn mistakes_name_their_setting() {
        let cases: &[(&str, &str)] = &[
            ("[proxy]\nurl = \"http://u:pw@proxy:8080\"", "proxy.url"),
            ("[proxy]\nurl = \"socks5://proxy:1080\"", "proxy.url"),
            ("[proxy]\nurl = \"http://proxy:8080\"\nusername = \"u\"", "proxy.password_env"),
            ("[proxy]\nurl = \"http://proxy:8080\"\npassword_env = \"UNSET_VAR\"", "proxy.password_env"),
            ("[probes.idle_connection]\nholds_secs = []", "probes.idle_connection.holds_secs"),
            ("[probes.idle_connection]\nholds_secs = [0]", "probes.idle_connection.holds_secs"),
            ("[probes.proxy]\ninterval_secs = 5", "probes.proxy.interval_secs"),
            ("[probes.proxy]\njitter_percent = 80", "probes.proxy.jitter_percent"),
            ("[probes.active_directory]\nbind_dn = \"x\"", "probes.active_directory.url"),
            ("[probes.active_directory]\nurl = \"http://dc\"", "probes.active_directory.url"),
            (
                "[probes.active_directory]\nurl = \"ldap://dc\"\nbind_dn = \"x\"\nbind_password_env = \"PW\"",
                "probes.active_directory.url",
            ),
            (
                "[probes.active_directory]\nurl = \"ldaps://dc\"\nbind_dn = \"x\"",
                "probes.active_directory.bind_dn",
            ),
            (
                "[probes.active_directory]\nurl = \"ldaps://dc\"\nsynced_ous = [\"Staff\"]",
                "probes.active_directory.synced_ous[0]",
            ),
            (
                "[probes.active_directory]\nurl = \"ldaps://dc\"\nca_file = \"/nonexistent.pem\"",
                "probes.active_directory.ca_file",
            ),
            ("[probes.graph]\nclient_id = \"a\"", "probes.graph.tenant"),
            ("[probes.graph]\ntenant = \"t\"\nclient_id = \"a\"", "probes.graph.client_secret_env"),
            (
                "[probes.graph]\ntenant = \"t\"\nclient_id = \"a\"\nclient_secret_env = \"PW\"\ngraph_base_url = \"http://graph.example\"",
                "probes.graph.graph_base_url",
            ),
            ("[[probes.script]]\nname = \"a b\"\nprogram = \"x\"", "probes.script[0].name"),
            (
                "[[probes.script]]\nname = \"a\"\nprogram = \"x\"\n[[probes.script]]\nname = \"a\"\nprogram = \"y\"",
                "probes.script[1].name",
            ),
            (
                "[[probes.script]]\nname = \"a\"\nprogram = \"x\"\ntimeout_secs = 0",
                "probes.script[0].timeout_secs",
            ),
        ];
        for (text, expected) in cases {
            assert_eq!(&setting(load(text, &[("PW", "pw")])), expected, "for:\n{text}");
        }
        if !cfg!(windows) {
            assert_eq!(
                setting(load("[probes.event_log]\nmax_entries = 5", &[])),
                "probes.event_log.export_file"
            );
            assert_eq!(setting(load("[probes.connect_server]\n", &[])), "probes.connect_server.export_file");
        }
        let unknown = load("[probes.graph]\ntennant = \"t\"", &[]).unwrap_err().to_string();
        assert!(unknown.contains("tennant"), "{unknown}");
    }
}
