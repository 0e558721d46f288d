//! The proxy probe, and the HTTP CONNECT tunnel the other network probes use through a proxy.
//!
//! The proxy comes from `[proxy]` in the configuration, else from `HTTPS_PROXY`/`https_proxy`
//! in the environment, else (Windows) from the WinHTTP setting (`netsh winhttp show proxy`),
//! which is what services use. For each writeback endpoint the probe asks the proxy for a tunnel
//! (`CONNECT host:443`, with Basic credentials when configured), then runs a TLS handshake
//! inside it. A certificate that does not chain to the roots the real endpoint uses means the
//! proxy re-signs TLS ("TLS inspection"), which Microsoft does not support for this traffic.
//!
//! NTLM and Negotiate (Windows integrated) proxy authentication are not performed: when the
//! proxy asks only for those, the report says so (`integrated_auth_required`) instead of failing
//! vaguely.

use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine as _;
use chrono::Utc;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::timeout;
use wbd_wire::{
    ProbeOutput, ProbeResult, ProxiedConnection, ProxyAuthScheme, ProxyFailure, ProxyReport, ProxySource,
    ProxyStep, ProxyTargetReport, TrustFailure,
};

use super::endpoint::connect_host;
use super::tls::{TlsChecker, millis};
use crate::config::{EndpointTarget, ProxySettings};

/// Longest proxy answer head we read.
const MAX_HEAD_BYTES: usize = 16 * 1024;

/// A proxy and where its setting came from.
#[derive(Debug, Clone)]
pub struct SiteProxy {
    pub settings: ProxySettings,
    pub source: ProxySource,
}

impl SiteProxy {
    /// The configured proxy, else the environment's, else (Windows) the one in the .NET
    /// `machine.config` (what Entra Connect uses), else the WinHTTP one.
    pub fn discover(configured: Option<&ProxySettings>) -> Option<SiteProxy> {
        if let Some(settings) = configured {
            return Some(SiteProxy { settings: settings.clone(), source: ProxySource::Configured });
        }
        for var in ["HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"] {
            if let Ok(value) = std::env::var(var)
                && !value.trim().is_empty()
            {
                match ProxySettings::parse_url(var, value.trim()) {
                    Ok(settings) => return Some(SiteProxy { settings, source: ProxySource::Environment }),
                    Err(e) => tracing::warn!(error = %e, "ignoring an unusable proxy variable"),
                }
            }
        }
        if let Some(settings) = machine_config_proxy() {
            return Some(SiteProxy { settings, source: ProxySource::MachineConfig });
        }
        system_proxy().map(|settings| SiteProxy { settings, source: ProxySource::System })
    }
}

/// The proxy the 64-bit .NET Framework's `machine.config` sets for every .NET program, Entra
/// Connect's sync engine included.
#[cfg(windows)]
fn machine_config_proxy() -> Option<ProxySettings> {
    let windir = std::env::var_os("WINDIR")?;
    let path =
        std::path::Path::new(&windir).join(r"Microsoft.NET\Framework64\v4.0.30319\Config\machine.config");
    let text = std::fs::read_to_string(path).ok()?;
    parse_machine_config_proxy(&text)
}

#[cfg(not(windows))]
fn machine_config_proxy() -> Option<ProxySettings> {
    None
}

/// Reads `<system.net><defaultProxy><proxy proxyaddress="http://proxy:8080" …/>` out of a
/// `machine.config`; `None` when there is none, or when it is switched off
/// (`defaultProxy enabled="false"`) or defers to the system setting without an address.
pub fn parse_machine_config_proxy(text: &str) -> Option<ProxySettings> {
    let doc = roxmltree::Document::parse(text.trim_start_matches('\u{feff}')).ok()?;
    let default_proxy = doc
        .descendants()
        .filter(|n| n.has_tag_name("defaultProxy"))
        .find(|n| n.parent().is_some_and(|p| p.has_tag_name("system.net")))?;
    if default_proxy.attribute("enabled").is_some_and(|v| v.eq_ignore_ascii_case("false")) {
        return None;
    }
    let proxy = default_proxy.children().find(|n| n.has_tag_name("proxy"))?;
    let address = proxy.attribute("proxyaddress").map(str::trim).filter(|a| !a.is_empty())?;
    ProxySettings::parse_url("machine.config proxyaddress", address).ok()
}

/// Reaches `target` through `proxy` as writeback would: CONNECT (with Basic credentials when
/// configured), then a TLS handshake inside the tunnel.
pub async fn through_proxy(
    proxy: &SiteProxy,
    tls: &TlsChecker,
    target: &EndpointTarget,
    limit: Duration,
) -> ProxiedConnection {
    let mut seen = ProxiedConnection {
        proxy: proxy.settings.address(),
        source: proxy.source,
        connect_status: None,
        tls: None,
        failure: None,
        offered_auth_schemes: Vec::new(),
    };
    let tunnel = match open_tunnel(&proxy.settings, &target.host, target.port, limit).await {
        Ok(tunnel) => tunnel,
        Err(e) => {
            seen.connect_status = e.status;
            seen.failure = Some(ProxyFailure { step: e.step, error: e.message });
            seen.offered_auth_schemes = e.offered;
            return seen;
        }
    };
    seen.connect_status = Some(tunnel.status);
    match tls.handshake(&target.server_name, tunnel.stream).await {
        Ok((mut stream, observed)) => {
            let _ = timeout(Duration::from_secs(1), stream.shutdown()).await;
            seen.tls = Some(observed.report);
        }
        Err(error) => seen.failure = Some(ProxyFailure { step: ProxyStep::Tls, error }),
    }
    seen
}

#[cfg(windows)]
fn system_proxy() -> Option<ProxySettings> {
    let out = std::process::Command::new("netsh").args(["winhttp", "show", "proxy"]).output().ok()?;
    parse_winhttp_proxy(&String::from_utf8_lossy(&out.stdout))
}

#[cfg(not(windows))]
fn system_proxy() -> Option<ProxySettings> {
    None
}

/// Reads the HTTPS proxy out of `netsh winhttp show proxy` output
/// (`Proxy Server(s) :  proxy:8080` or `http=a:80;https=b:8443`).
pub fn parse_winhttp_proxy(text: &str) -> Option<ProxySettings> {
    let line = text.lines().find(|l| l.trim_start().to_ascii_lowercase().starts_with("proxy server"))?;
    let value = line.split_once(':')?.1.trim();
    let chosen = if value.contains('=') {
        let entries: Vec<(&str, &str)> = value.split(';').filter_map(|e| e.split_once('=')).collect();
        entries
            .iter()
            .find(|(k, _)| k.trim().eq_ignore_ascii_case("https"))
            .or_else(|| entries.iter().find(|(k, _)| k.trim().eq_ignore_ascii_case("http")))
            .map(|(_, v)| v.trim())?
    } else {
        value.split(';').next()?.trim()
    };
    ProxySettings::parse_url("winhttp proxy", chosen).ok()
}

/// How a CONNECT request went wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TunnelError {
    pub step: ProxyStep,
    pub status: Option<u16>,
    /// Schemes offered in `Proxy-Authenticate`, lower case.
    pub offered: Vec<String>,
    pub message: String,
}

/// An open tunnel and what the proxy said.
#[derive(Debug)]
pub struct Tunnel {
    pub stream: TcpStream,
    pub status: u16,
}

/// Opens `CONNECT host:port` through `proxy`, sending Basic credentials when it has them.
pub async fn open_tunnel(
    proxy: &ProxySettings,
    host: &str,
    port: u16,
    limit: Duration,
) -> Result<Tunnel, TunnelError> {
    let fail = |step, status, offered, message| TunnelError { step, status, offered, message };
    let mut stream = connect_host(&proxy.host, proxy.port, limit).await.map_err(|e| {
        fail(ProxyStep::ProxyConnect, None, Vec::new(), format!("proxy {}: {e}", proxy.address()))
    })?;
    let authority = if host.contains(':') { format!("[{host}]:{port}") } else { format!("{host}:{port}") };
    let mut request =
        format!("CONNECT {authority} HTTP/1.1\r\nHost: {authority}\r\nUser-Agent: wbd-collector\r\n");
    if let (Some(user), Some(password)) = (&proxy.username, &proxy.password) {
        let token = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{}", password.expose()));
        request.push_str(&format!("Proxy-Authorization: Basic {token}\r\n"));
    }
    request.push_str("\r\n");
    let exchange = async {
        stream.write_all(request.as_bytes()).await?;
        read_head(&mut stream).await
    };
    let head = match timeout(limit, exchange).await {
        Ok(Ok(head)) => head,
        Ok(Err(e)) => {
            return Err(fail(
                ProxyStep::Tunnel,
                None,
                Vec::new(),
                format!("the proxy did not answer CONNECT properly: {e}"),
            ));
        }
        Err(_) => {
            return Err(fail(
                ProxyStep::Tunnel,
                None,
                Vec::new(),
                format!("the proxy did not answer CONNECT within {}s", limit.as_secs()),
            ));
        }
    };
    let answer = parse_head(&head).ok_or_else(|| {
        fail(ProxyStep::Tunnel, None, Vec::new(), "the proxy's answer to CONNECT is not HTTP".to_owned())
    })?;
    let offered = answer.auth_schemes();
    match answer.status {
        200..=299 => Ok(Tunnel { stream, status: answer.status }),
        407 => {
            let integrated = offered.iter().any(|s| s == "ntlm" || s == "negotiate");
            let basic = offered.iter().any(|s| s == "basic");
            let message = match (proxy.username.is_some(), basic, integrated) {
                (true, true, _) => {
                    "407: the proxy refused the configured Basic credentials (proxy.username / password)"
                        .to_owned()
                }
                (false, true, _) => {
                    "407: the proxy requires authentication; set proxy.username and proxy.password_env"
                        .to_owned()
                }
                (_, false, true) => format!(
                    "407: the proxy accepts only Windows integrated authentication ({}), which the collector does not do; \
                     exempt this host or give the collector a Basic-auth account",
                    offered.join(", ")
                ),
                _ => format!("407: the proxy requires authentication ({})", offered.join(", ")),
            };
            Err(fail(ProxyStep::ProxyAuth, Some(407), offered, message))
        }
        status => Err(fail(
            ProxyStep::Tunnel,
            Some(status),
            offered,
            format!("the proxy refused the tunnel: {status} {}", answer.reason),
        )),
    }
}

/// Reads up to and including the blank line that ends an HTTP head.
async fn read_head(stream: &mut TcpStream) -> std::io::Result<Vec<u8>> {
    let mut head = Vec::with_capacity(512);
    let mut byte = [0u8; 1];
    // Byte by byte: nothing of the tunnel's payload may be consumed past the head.
    while !head.ends_with(b"\r\n\r\n") {
        if stream.read(&mut byte).await? == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "the proxy closed the connection",
            ));
        }
        head.push(byte[0]);
        if head.len() > MAX_HEAD_BYTES {
            return Err(std::io::Error::new(std::io::ErrorKind::InvalidData, "answer head too long"));
        }
    }
    Ok(head)
}

/// The head of a proxy's answer to `CONNECT`.
#[derive(Debug)]
pub struct Head {
    pub status: u16,
    pub reason: String,
    pub headers: Vec<(String, String)>,
}

impl Head {
    /// The authentication schemes the proxy offers (`Proxy-Authenticate`), lower case.
    pub fn auth_schemes(&self) -> Vec<String> {
        let mut schemes: Vec<String> = self
            .headers
            .iter()
            .filter(|(name, _)| name.eq_ignore_ascii_case("proxy-authenticate"))
            .filter_map(|(_, value)| value.split_whitespace().next())
            .map(|scheme| scheme.trim_end_matches(',').to_ascii_lowercase())
            .collect();
        schemes.dedup();
        schemes
    }
}

/// Reads the head of a proxy's answer (status line and headers), as [`open_tunnel`] received it.
pub fn parse_head(head: &[u8]) -> Option<Head> {
    let text = String::from_utf8_lossy(head);
    let mut lines = text.split("\r\n");
    let status_line = lines.next()?;
    let mut parts = status_line.splitn(3, ' ');
    if !parts.next()?.starts_with("HTTP/") {
        return None;
    }
    let status = parts.next()?.parse().ok()?;
    let reason = parts.next().unwrap_or("").to_owned();
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect();
    Some(Head { status, reason, headers })
}

/// Runs the proxy probe.
#[derive(Debug, Clone)]
pub struct ProxyProber {
    proxy: Option<SiteProxy>,
    tls: Arc<TlsChecker>,
    timeout: Duration,
}

impl ProxyProber {
    pub fn new(proxy: Option<SiteProxy>, tls: Arc<TlsChecker>, timeout: Duration) -> Self {
        ProxyProber { proxy, tls, timeout }
    }

    /// One result (subject `proxy`) covering every target.
    #[tracing::instrument(skip_all)]
    pub async fn probe(&self, targets: &[EndpointTarget]) -> ProbeResult {
        let observed_at = Utc::now();
        let started = Instant::now();
        let mut report = ProxyReport {
            source: self.proxy.as_ref().map_or(ProxySource::None, |p| p.source),
            proxy: self.proxy.as_ref().map(|p| p.settings.address()),
            auth_used: match &self.proxy {
                Some(p) if p.settings.username.is_some() => ProxyAuthScheme::Basic,
                _ => ProxyAuthScheme::None,
            },
            offered_auth_schemes: Vec::new(),
            integrated_auth_required: None,
            targets: Vec::new(),
        };
        if let Some(proxy) = &self.proxy {
            let mut tasks = tokio::task::JoinSet::new();
            for (index, target) in targets.iter().cloned().enumerate() {
                let this = self.clone();
                let proxy = proxy.clone();
                tasks.spawn(async move { (index, this.probe_target(&proxy, &target).await) });
            }
            let mut done = Vec::with_capacity(targets.len());
            while let Some(joined) = tasks.join_next().await {
                match joined {
                    Ok(pair) => done.push(pair),
                    Err(e) => tracing::error!(error = %e, "a proxy probe task failed"),
                }
            }
            done.sort_by_key(|(index, _)| *index);
            for (_, (target, offered)) in done {
                for scheme in offered {
                    if !report.offered_auth_schemes.contains(&scheme) {
                        report.offered_auth_schemes.push(scheme);
                    }
                }
                report.targets.push(target);
            }
            if !report.offered_auth_schemes.is_empty() {
                let integrated = report.offered_auth_schemes.iter().any(|s| s == "ntlm" || s == "negotiate");
                let basic = report.offered_auth_schemes.iter().any(|s| s == "basic");
                report.integrated_auth_required = Some(integrated && !basic);
            } else if report.targets.iter().any(|t| t.connect_status.is_some()) {
                report.integrated_auth_required = Some(false);
            }
        }
        ProbeResult {
            subject: "proxy".to_owned(),
            observed_at,
            duration_ms: millis(started.elapsed()),
            output: ProbeOutput::Proxy(report),
        }
    }

    async fn probe_target(
        &self,
        proxy: &SiteProxy,
        target: &EndpointTarget,
    ) -> (ProxyTargetReport, Vec<String>) {
        let seen = through_proxy(proxy, &self.tls, target, self.timeout).await;
        let offered = seen.offered_auth_schemes;
        let tls_inspection =
            seen.tls.as_ref().map(|tls| tls.trust_failure == Some(TrustFailure::UntrustedIssuer));
        let report = ProxyTargetReport {
            host: target.host.clone(),
            port: target.port,
            role: target.role,
            connect_status: seen.connect_status,
            tunnel_established: seen.connect_status.is_some_and(|s| (200..300).contains(&s)),
            tls: seen.tls,
            tls_inspection,
            failure: seen.failure,
        };
        (report, offered)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn winhttp_output_gives_the_https_proxy() {
        let direct = "Current WinHTTP proxy settings:\r\n\r\n    Direct access (no proxy server).\r\n";
        assert_eq!(parse_winhttp_proxy(direct), None);
        let single = "Current WinHTTP proxy settings:\n\n    Proxy Server(s) :  proxy.corp.example:3128\n    Bypass List     :  (none)\n";
        let p = parse_winhttp_proxy(single).unwrap();
        assert_eq!((p.host.as_str(), p.port), ("proxy.corp.example", 3128));
        let per_scheme = "    Proxy Server(s) :  http=web:80;https=secure.corp:8443\n";
        let p = parse_winhttp_proxy(per_scheme).unwrap();
        assert_eq!((p.host.as_str(), p.port), ("secure.corp", 8443));
    }

    #[test]
    fn machine_config_gives_the_proxy_dotnet_programs_use() {
        let config = r#"<?xml version="1.0" encoding="utf-8"?>
<configuration>
  <system.net>
    <defaultProxy useDefaultCredentials="true">
      <proxy usesystemdefault="true" proxyaddress="http://proxy.corp.example:8080" bypassonlocal="true" />
    </defaultProxy>
  </system.net>
</configuration>"#;
        let p = parse_machine_config_proxy(config).unwrap();
        assert_eq!((p.host.as_str(), p.port), ("proxy.corp.example", 8080));
        let off = config.replace("<defaultProxy ", "<defaultProxy enabled=\"false\" ");
        assert_eq!(parse_machine_config_proxy(&off), None);
        let system_only = config.replace(" proxyaddress=\"http://proxy.corp.example:8080\"", "");
        assert_eq!(parse_machine_config_proxy(&system_only), None);
        assert_eq!(parse_machine_config_proxy("<configuration/>"), None);
    }

    #[test]
    fn proxy_answers_are_parsed_with_their_schemes() {
        let head = b"HTTP/1.1 407 Proxy Authentication Required\r\nProxy-Authenticate: NTLM\r\nProxy-Authenticate: Negotiate\r\nProxy-Authenticate: Basic realm=\"corp\"\r\n\r\n";
        let h = parse_head(head).unwrap();
        assert_eq!(h.status, 407);
        assert_eq!(h.auth_schemes(), vec!["ntlm", "negotiate", "basic"]);
        assert!(parse_head(b"SSH-2.0-OpenSSH\r\n\r\n").is_none());
    }
}
