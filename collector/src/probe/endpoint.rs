//! The endpoint probe: can this machine reach a writeback endpoint, and does it see the
//! endpoint's real certificate?
//!
//! Three steps, each timed, stopping at the first failure: DNS resolution, a TCP connection
//! (each resolved address in turn until one answers), and a TLS handshake offering TLS 1.2 and
//! 1.3 (see [`super::tls`] for how trust is judged). No application data is ever sent; the
//! connection is closed right after the handshake.
//!
//! When the site has a proxy (configured, `HTTPS_PROXY`, the .NET `machine.config` Entra Connect
//! uses, or WinHTTP) the endpoint is also reached through it (CONNECT, then TLS): that is the
//! path writeback takes, so the report carries both and the rules judge the proxied one. A site
//! that lets the Connect server out only through its proxy blocks the direct attempt on purpose.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use rustls_pki_types::CertificateDer;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::time::timeout;
use wbd_wire::{EndpointReport, ProbeOutput, ProbeResult, ProbeStep, StepFailure};

use super::proxy::{SiteProxy, through_proxy};
use super::tls::{TlsChecker, describe_connect_error, millis};
use crate::config::EndpointTarget;
pub use crate::probe::tls::ProbeSetupError;

/// Runs endpoint probes; cheap to share (`Arc`) between concurrent probes.
#[derive(Debug, Clone)]
pub struct EndpointProber {
    tls: Arc<TlsChecker>,
    connect_timeout: Duration,
    /// The proxy writeback goes through, if the site has one.
    proxy: Option<SiteProxy>,
}

impl EndpointProber {
    /// `extra_trusted_cas` are trusted in addition to the public roots. `connect_timeout`
    /// bounds each step (DNS, each TCP attempt, the TLS handshake).
    pub fn new(
        extra_trusted_cas: &[CertificateDer<'static>],
        connect_timeout: Duration,
    ) -> Result<Self, ProbeSetupError> {
        Ok(Self::with_checker(
            Arc::new(TlsChecker::new(extra_trusted_cas, connect_timeout)?),
            connect_timeout,
        ))
    }

    /// Shares an existing TLS checker (and its trust anchors) with other probes.
    pub fn with_checker(tls: Arc<TlsChecker>, connect_timeout: Duration) -> Self {
        EndpointProber { tls, connect_timeout, proxy: None }
    }

    /// Also reaches each endpoint through `proxy`, the path writeback takes at this site.
    pub fn through(mut self, proxy: Option<SiteProxy>) -> Self {
        self.proxy = proxy;
        self
    }

    pub fn connect_timeout(&self) -> Duration {
        self.connect_timeout
    }

    /// Probes one endpoint. Never fails: a failing step is part of the result.
    #[tracing::instrument(skip_all, fields(endpoint = %target.subject()))]
    pub async fn probe(&self, target: &EndpointTarget) -> ProbeResult {
        let observed_at = Utc::now();
        let started = Instant::now();
        let mut report = EndpointReport {
            host: target.host.clone(),
            port: target.port,
            role: target.role,
            resolved: Vec::new(),
            dns_ms: None,
            connected_to: None,
            tcp_connect_ms: None,
            tls: None,
            failure: None,
            via_proxy: None,
        };
        let direct = self.run_steps(target, &mut report);
        let proxied = async {
            match &self.proxy {
                Some(proxy) => Some(through_proxy(proxy, &self.tls, target, self.connect_timeout).await),
                None => None,
            }
        };
        let (direct, proxied) = tokio::join!(direct, proxied);
        if let Err(failure) = direct {
            tracing::info!(step = failure.step.as_str(), error = %failure.error, "direct endpoint probe failed");
            report.failure = Some(failure);
        }
        report.via_proxy = proxied;
        ProbeResult {
            subject: target.subject(),
            observed_at,
            duration_ms: millis(started.elapsed()),
            output: ProbeOutput::Endpoint(report),
        }
    }

    async fn run_steps(
        &self,
        target: &EndpointTarget,
        report: &mut EndpointReport,
    ) -> Result<(), StepFailure> {
        let t = Instant::now();
        report.resolved = resolve(&target.host, target.port, self.connect_timeout)
            .await
            .map_err(|error| StepFailure { step: ProbeStep::Dns, error })?;
        report.dns_ms = Some(millis(t.elapsed()));

        let (stream, addr, tcp_time) = connect_any(&report.resolved, target.port, self.connect_timeout)
            .await
            .map_err(|error| StepFailure { step: ProbeStep::Tcp, error })?;
        report.connected_to = Some(addr);
        report.tcp_connect_ms = Some(millis(tcp_time));

        let (mut stream, seen) = self
            .tls
            .handshake(&target.server_name, stream)
            .await
            .map_err(|error| StepFailure { step: ProbeStep::Tls, error })?;
        // We learned what we came for; say goodbye (close_notify) without sending any data.
        let _ = timeout(Duration::from_secs(1), stream.shutdown()).await;
        report.tls = Some(seen.report);
        Ok(())
    }
}

/// Resolves `host`, keeping each address once in the order the resolver gave them.
pub(crate) async fn resolve(host: &str, port: u16, limit: Duration) -> Result<Vec<IpAddr>, String> {
    let answer = timeout(limit, tokio::net::lookup_host((host, port)))
        .await
        .map_err(|_| {
            format!("no DNS answer for {host} within {}s (is a DNS server reachable?)", limit.as_secs())
        })?
        .map_err(|e| format!("could not resolve {host}: {e}"))?;
    let mut resolved: Vec<IpAddr> = Vec::new();
    // The resolver may repeat an address (one per socket type); keep the first of each.
    for addr in answer {
        if !resolved.contains(&addr.ip()) {
            resolved.push(addr.ip());
        }
    }
    if resolved.is_empty() {
        return Err(format!("{host} resolved to no address"));
    }
    Ok(resolved)
}

/// Connects to each address in turn until one answers.
pub(crate) async fn connect_any(
    addrs: &[IpAddr],
    port: u16,
    limit: Duration,
) -> Result<(TcpStream, IpAddr, Duration), String> {
    let mut errors = Vec::new();
    for ip in addrs {
        let addr = SocketAddr::new(*ip, port);
        let t = Instant::now();
        match timeout(limit, TcpStream::connect(addr)).await {
            Ok(Ok(stream)) => return Ok((stream, *ip, t.elapsed())),
            Ok(Err(e)) => errors.push(format!("{addr}: {}", describe_connect_error(&e))),
            Err(_) => errors.push(format!(
                "{addr}: no answer within {}s (a firewall silently dropping the traffic?)",
                limit.as_secs()
            )),
        }
    }
    Err(errors.join("; "))
}

/// Resolves `host` and connects to the first address that answers.
pub(crate) async fn connect_host(host: &str, port: u16, limit: Duration) -> Result<TcpStream, String> {
    let addrs = resolve(host, port, limit).await?;
    connect_any(&addrs, port, limit).await.map(|(stream, _, _)| stream)
}
