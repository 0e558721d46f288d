//! Proxy probe: the outbound proxy a site uses, whether writeback endpoints are reachable
//! through it, and whether it inspects (re-signs) TLS.

use serde::{Deserialize, Serialize};

use crate::{EndpointRole, TlsReport};

/// The proxy as the collector found it, and one tunnel attempt per target endpoint.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ProxyReport {
    /// Where the proxy setting came from.
    pub source: ProxySource,
    /// `host:port` of the proxy (never credentials); `None` when no proxy is configured.
    #[serde(default)]
    pub proxy: Option<String>,
    /// The authentication the collector used towards the proxy.
    pub auth_used: ProxyAuthScheme,
    /// Schemes the proxy offered in `Proxy-Authenticate` on a 407, lower-case (`basic`,
    /// `ntlm`, `negotiate`, …). Empty when it never asked.
    #[serde(default)]
    pub offered_auth_schemes: Vec<String>,
    /// The proxy requires NTLM or Negotiate (Windows integrated) authentication, which the
    /// collector does not perform: the result says so instead of guessing. `None`: not asked.
    #[serde(default)]
    pub integrated_auth_required: Option<bool>,
    #[serde(default)]
    pub targets: Vec<ProxyTargetReport>,
}

/// Where the proxy setting came from.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Hash)]
#[serde(rename_all = "snake_case")]
pub enum ProxySource {
    /// The collector's configuration file or environment (`probes.proxy.url`).
    Configured,
    /// `HTTPS_PROXY` / `https_proxy` of the collector's environment.
    Environment,
    /// The Windows system (WinINet/WinHTTP) setting.
    System,
    /// The .NET `machine.config` (`<system.net><defaultProxy><proxy proxyaddress=…>`), which is
    /// what Entra Connect uses.
    MachineConfig,
    /// No proxy found: targets were tried directly.
    None,
}

/// Authentication the collector sent to the proxy.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Hash)]
#[serde(rename_all = "snake_case")]
pub enum ProxyAuthScheme {
    None,
    Basic,
}

/// One endpoint tried through the proxy: CONNECT, then a TLS handshake inside the tunnel.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ProxyTargetReport {
    pub host: String,
    pub port: u16,
    pub role: EndpointRole,
    /// HTTP status of the proxy's answer to CONNECT (200, 403, 407, …), if it answered.
    #[serde(default)]
    pub connect_status: Option<u16>,
    /// The proxy opened a tunnel to the target.
    pub tunnel_established: bool,
    /// The TLS handshake inside the tunnel, if the tunnel opened and the handshake completed.
    #[serde(default)]
    pub tls: Option<TlsReport>,
    /// `Some(true)`: the certificate presented through the proxy does not chain to the public
    /// roots the real endpoint uses — a TLS-inspecting proxy re-signed it (issuer in
    /// `tls.chain_top_issuer`). `None`: no handshake, so unknown.
    #[serde(default)]
    pub tls_inspection: Option<bool>,
    /// The first step that failed, if any; later steps did not run.
    #[serde(default)]
    pub failure: Option<ProxyFailure>,
}

/// The steps of a proxied connection, in order.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Hash)]
#[serde(rename_all = "snake_case")]
pub enum ProxyStep {
    /// Reaching the proxy itself (DNS, TCP).
    ProxyConnect,
    /// The proxy refused the credentials or asked for a scheme the collector does not do.
    ProxyAuth,
    /// The proxy refused or failed the CONNECT to the target.
    Tunnel,
    /// The TLS handshake inside the tunnel.
    Tls,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ProxyFailure {
    pub step: ProxyStep,
    pub error: String,
}
