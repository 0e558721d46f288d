//! The idle connection probe: does a TLS connection to a writeback endpoint survive being idle?
//!
//! The Service Bus relay keeps long-lived connections that sit idle between reset requests; a
//! firewall or proxy that drops idle sessions after less than two to three minutes breaks
//! writeback. For each endpoint the probe opens one TLS connection per configured hold (directly,
//! or through the site's proxy as the relay traffic would go), all at once, keeps each silent for
//! its hold while watching for the other side closing it, then sends a bare `HEAD /` and waits
//! for any answer. Outcomes per hold: survived, cut while idle (closed or reset during the hold,
//! with when), cut on use (the connection looked open but the request got no answer: a silent
//! drop), or not connected at all.

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::time::timeout;
use wbd_wire::{IdleConnectionReport, IdleHold, IdleOutcome, ProbeOutput, ProbeResult};

use super::endpoint::connect_host;
use super::proxy::{SiteProxy, open_tunnel};
use super::tls::{TlsChecker, millis};
use crate::config::EndpointTarget;

/// Runs the idle connection probe.
#[derive(Debug, Clone)]
pub struct IdleConnectionProber {
    tls: Arc<TlsChecker>,
    proxy: Option<SiteProxy>,
    holds: Vec<Duration>,
    /// Bound of connecting, the handshake, and waiting for the answer after a hold.
    timeout: Duration,
    /// Told when a connection is actually held idle (for `probe --once` to say it is waiting).
    holding: Option<Arc<tokio::sync::Notify>>,
}

impl IdleConnectionProber {
    pub fn new(
        tls: Arc<TlsChecker>,
        proxy: Option<SiteProxy>,
        holds: Vec<Duration>,
        timeout: Duration,
    ) -> Self {
        IdleConnectionProber { tls, proxy, holds, timeout, holding: None }
    }

    /// Notifies `holding` whenever a hold starts (a connection is open and now sits idle).
    pub fn notify_holds(mut self, holding: Arc<tokio::sync::Notify>) -> Self {
        self.holding = Some(holding);
        self
    }

    /// Probes one endpoint with every hold; the result's subject is the endpoint's.
    #[tracing::instrument(skip_all, fields(endpoint = %target.subject()))]
    pub async fn probe(&self, target: &EndpointTarget) -> ProbeResult {
        let observed_at = Utc::now();
        let started = Instant::now();
        let mut tasks = tokio::task::JoinSet::new();
        for hold in self.holds.clone() {
            let this = self.clone();
            let target = target.clone();
            tasks.spawn(async move { this.hold_once(&target, hold).await });
        }
        let mut holds = Vec::with_capacity(self.holds.len());
        while let Some(joined) = tasks.join_next().await {
            match joined {
                Ok(hold) => holds.push(hold),
                Err(e) => tracing::error!(error = %e, "an idle hold task failed"),
            }
        }
        holds.sort_by_key(|h| h.hold_secs);
        ProbeResult {
            subject: target.subject(),
            observed_at,
            duration_ms: millis(started.elapsed()),
            output: ProbeOutput::IdleConnection(IdleConnectionReport {
                host: target.host.clone(),
                port: target.port,
                role: target.role,
                via_proxy: self.proxy.as_ref().map(|p| p.settings.address()),
                holds,
            }),
        }
    }

    async fn hold_once(&self, target: &EndpointTarget, hold: Duration) -> IdleHold {
        let hold_secs = u32::try_from(hold.as_secs()).unwrap_or(u32::MAX);
        let not_connected = |error: String| IdleHold {
            hold_secs,
            outcome: IdleOutcome::ConnectFailed,
            cut_after_ms: None,
            error: Some(error),
        };
        let tcp = match &self.proxy {
            Some(proxy) => {
                match open_tunnel(&proxy.settings, &target.host, target.port, self.timeout).await {
                    Ok(tunnel) => tunnel.stream,
                    Err(e) => return not_connected(e.message),
                }
            }
            None => match connect_host(&target.host, target.port, self.timeout).await {
                Ok(stream) => stream,
                Err(e) => return not_connected(e),
            },
        };
        let stream = match self.tls.handshake(&target.server_name, tcp).await {
            Ok((stream, _)) => stream,
            Err(e) => return not_connected(e),
        };
        if let Some(holding) = &self.holding {
            holding.notify_one();
        }
        hold_and_use(stream, &target.server_name, hold, self.timeout, hold_secs).await
    }
}

/// Keeps `stream` silent for `hold`, watching for a close, then uses it.
async fn hold_and_use<S>(
    mut stream: S,
    host: &str,
    hold: Duration,
    answer_timeout: Duration,
    hold_secs: u32,
) -> IdleHold
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let idle_since = Instant::now();
    let deadline = tokio::time::Instant::now() + hold;
    let mut buf = [0u8; 4096];
    // While idle, a read returns only if the other side sends something (unexpected, ignored),
    // closes (0 bytes, or a TLS close_notify) or resets the connection.
    loop {
        tokio::select! {
            () = tokio::time::sleep_until(deadline) => break,
            read = stream.read(&mut buf) => match read {
                Ok(0) => return cut(hold_secs, IdleOutcome::CutWhileIdle, idle_since,
                    "the other side or a middlebox closed the connection while it was idle".to_owned()),
                Ok(_) => continue,
                Err(e) => return cut(hold_secs, IdleOutcome::CutWhileIdle, idle_since,
                    format!("the connection failed while idle: {}", describe_io(&e))),
            },
        }
    }
    let request =
        format!("HEAD / HTTP/1.1\r\nHost: {host}\r\nUser-Agent: wbd-collector\r\nConnection: close\r\n\r\n");
    let used = async {
        stream.write_all(request.as_bytes()).await?;
        stream.flush().await?;
        stream.read(&mut buf).await
    };
    match timeout(answer_timeout, used).await {
        Ok(Ok(n)) if n > 0 => {
            let _ = timeout(Duration::from_secs(1), stream.shutdown()).await;
            IdleHold { hold_secs, outcome: IdleOutcome::Survived, cut_after_ms: None, error: None }
        }
        Ok(Ok(_)) => cut(
            hold_secs,
            IdleOutcome::CutOnUse,
            idle_since,
            "the connection was closed when it was used after the hold".to_owned(),
        ),
        Ok(Err(e)) => cut(
            hold_secs,
            IdleOutcome::CutOnUse,
            idle_since,
            format!("using the connection after the hold failed: {}", describe_io(&e)),
        ),
        Err(_) => cut(
            hold_secs,
            IdleOutcome::CutOnUse,
            idle_since,
            format!(
                "no answer within {}s after the hold: the connection was silently dropped while idle",
                answer_timeout.as_secs()
            ),
        ),
    }
}

fn cut(hold_secs: u32, outcome: IdleOutcome, idle_since: Instant, error: String) -> IdleHold {
    IdleHold { hold_secs, outcome, cut_after_ms: Some(millis(idle_since.elapsed())), error: Some(error) }
}

fn describe_io(e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::ConnectionReset => format!("reset ({e})"),
        std::io::ErrorKind::UnexpectedEof => format!("closed without a TLS close_notify ({e})"),
        std::io::ErrorKind::BrokenPipe => format!("broken pipe ({e})"),
        _ => e.to_string(),
    }
}
