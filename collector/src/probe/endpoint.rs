//! The endpoint probe: can this machine reach a writeback endpoint, and does it see the
//! endpoint's real certificate?
//!
//! Three steps, each timed, stopping at the first failure: DNS resolution, a TCP connection
//! (each resolved address in turn until one answers), and a TLS handshake offering TLS 1.2 and
//! 1.3. The handshake is allowed to complete even when the certificate chain is not trusted, so
//! that the report can say *who* issued the certificate the collector actually saw; no
//! application data is ever sent over such a connection, it is closed right away.
//!
//! Trust is judged against Mozilla's root program (`webpki-roots`) plus the CAs configured in
//! `extra_trusted_ca_files`, and deliberately NOT against the operating system's store: a
//! TLS-inspecting proxy's CA is typically pushed into the Windows store by group policy, and
//! trusting it would hide exactly the interception that breaks the Service Bus relay.

use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::{
    AlertDescription, CertificateError, ClientConfig, DigitallySignedStruct, PeerIncompatible,
    ProtocolVersion, RootCertStore, SignatureScheme,
};
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::time::timeout;
use tokio_rustls::TlsConnector;
use wbd_wire::{EndpointReport, ProbeOutput, ProbeResult, ProbeStep, StepFailure, TlsReport};

use crate::config::EndpointTarget;

#[derive(Debug, thiserror::Error)]
pub enum ProbeSetupError {
    #[error("extra_trusted_ca_files: certificate #{index} cannot be used as a trust anchor: {message}")]
    BadAnchor { index: usize, message: String },
    #[error("cannot build the certificate verifier: {0}")]
    Verifier(String),
}

/// Runs endpoint probes; cheap to share (`Arc`) between concurrent probes.
#[derive(Debug)]
pub struct EndpointProber {
    provider: Arc<CryptoProvider>,
    verifier: Arc<WebPkiServerVerifier>,
    connect_timeout: Duration,
}

/// What the certificate check said: `Ok` when the chain is trusted for the name.
type TrustVerdict = Result<(), String>;

impl EndpointProber {
    /// `extra_trusted_cas` are trusted in addition to the public roots. `connect_timeout`
    /// bounds each step (DNS, each TCP attempt, the TLS handshake).
    pub fn new(
        extra_trusted_cas: &[CertificateDer<'static>],
        connect_timeout: Duration,
    ) -> Result<Self, ProbeSetupError> {
        // Chosen explicitly rather than through a process-wide default, so that the probe
        // behaves the same whatever else in the process installed one.
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let mut roots = RootCertStore::empty();
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        for (index, der) in extra_trusted_cas.iter().enumerate() {
            roots
                .add(der.clone())
                .map_err(|e| ProbeSetupError::BadAnchor { index, message: e.to_string() })?;
        }
        let verifier = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), Arc::clone(&provider))
            .build()
            .map_err(|e| ProbeSetupError::Verifier(e.to_string()))?;
        Ok(EndpointProber { provider, verifier, connect_timeout })
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
        };
        if let Err(failure) = self.run_steps(target, &mut report).await {
            tracing::info!(step = failure.step.as_str(), error = %failure.error, "endpoint probe failed");
            report.failure = Some(failure);
        }
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
        let (resolved, dns_time) = self.resolve(target).await?;
        report.resolved = resolved;
        report.dns_ms = Some(millis(dns_time));

        let (stream, addr, tcp_time) = self.connect(&report.resolved, target.port).await?;
        report.connected_to = Some(addr);
        report.tcp_connect_ms = Some(millis(tcp_time));

        report.tls = Some(self.handshake(target, stream).await?);
        Ok(())
    }

    async fn resolve(&self, target: &EndpointTarget) -> Result<(Vec<IpAddr>, Duration), StepFailure> {
        let fail = |error: String| StepFailure { step: ProbeStep::Dns, error };
        let t = Instant::now();
        let answer =
            timeout(self.connect_timeout, tokio::net::lookup_host((target.host.as_str(), target.port)))
                .await
                .map_err(|_| {
                    fail(format!(
                        "no DNS answer for {} within {}s (is a DNS server reachable?)",
                        target.host,
                        self.connect_timeout.as_secs()
                    ))
                })?
                .map_err(|e| fail(format!("could not resolve {}: {e}", target.host)))?;
        let elapsed = t.elapsed();
        let mut resolved: Vec<IpAddr> = Vec::new();
        // The resolver may repeat an address (one per socket type); keep the first of each,
        // in the order it was returned.
        for addr in answer {
            if !resolved.contains(&addr.ip()) {
                resolved.push(addr.ip());
            }
        }
        if resolved.is_empty() {
            return Err(fail(format!("{} resolved to no address", target.host)));
        }
        Ok((resolved, elapsed))
    }

    async fn connect(
        &self,
        addrs: &[IpAddr],
        port: u16,
    ) -> Result<(TcpStream, IpAddr, Duration), StepFailure> {
        let mut errors = Vec::new();
        for ip in addrs {
            let addr = SocketAddr::new(*ip, port);
            let t = Instant::now();
            match timeout(self.connect_timeout, TcpStream::connect(addr)).await {
                Ok(Ok(stream)) => return Ok((stream, *ip, t.elapsed())),
                Ok(Err(e)) => errors.push(format!("{addr}: {}", describe_connect_error(&e))),
                Err(_) => errors.push(format!(
                    "{addr}: no answer within {}s (a firewall silently dropping the traffic?)",
                    self.connect_timeout.as_secs()
                )),
            }
        }
        Err(StepFailure { step: ProbeStep::Tcp, error: errors.join("; ") })
    }

    async fn handshake(&self, target: &EndpointTarget, tcp: TcpStream) -> Result<TlsReport, StepFailure> {
        let fail = |error: String| StepFailure { step: ProbeStep::Tls, error };
        let server_name = ServerName::try_from(target.server_name.clone())
            .map_err(|e| fail(format!("`{}` is not a valid TLS server name: {e}", target.server_name)))?;

        // A verifier per handshake, so that each probe records its own verdict.
        let verdict: Arc<Mutex<Option<TrustVerdict>>> = Arc::new(Mutex::new(None));
        let recorder = RecordingVerifier { inner: Arc::clone(&self.verifier), verdict: Arc::clone(&verdict) };
        let config = ClientConfig::builder_with_provider(Arc::clone(&self.provider))
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
            .map_err(|e| fail(format!("TLS configuration error: {e}")))?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(recorder))
            .with_no_client_auth();
        let connector = TlsConnector::from(Arc::new(config));

        let t = Instant::now();
        let mut stream = match timeout(self.connect_timeout, connector.connect(server_name, tcp)).await {
            Ok(Ok(stream)) => stream,
            Ok(Err(e)) => return Err(fail(describe_handshake_error(&e))),
            Err(_) => {
                return Err(fail(format!(
                    "the TLS handshake did not finish within {}s (the server or something in between stopped answering)",
                    self.connect_timeout.as_secs()
                )));
            }
        };
        let handshake_ms = millis(t.elapsed());

        let (_, conn) = stream.get_ref();
        let protocol = match conn.protocol_version() {
            Some(ProtocolVersion::TLSv1_3) => "TLSv1.3".to_owned(),
            Some(ProtocolVersion::TLSv1_2) => "TLSv1.2".to_owned(),
            Some(other) => format!("{other:?}"),
            None => "unknown".to_owned(),
        };
        let cipher_suite = conn
            .negotiated_cipher_suite()
            .map(|s| s.suite().as_str().map(str::to_owned).unwrap_or_else(|| format!("{:?}", s.suite())))
            .unwrap_or_else(|| "unknown".to_owned());
        let chain: Vec<CertificateDer<'static>> = conn
            .peer_certificates()
            .map(|c| c.iter().map(|d| d.clone().into_owned()).collect())
            .unwrap_or_default();

        // We learned what we came for; say goodbye (close_notify) without sending any data.
        let _ = timeout(Duration::from_secs(1), stream.shutdown()).await;
        drop(stream);

        let recorded = verdict.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).take();
        let (chain_trusted, trust_error) = match recorded {
            Some(Ok(())) => (true, None),
            Some(Err(reason)) => (false, Some(reason)),
            None => (false, Some("the server's certificate was never checked".to_owned())),
        };
        let leaf = chain.first().and_then(|der| CertSummary::parse(der));
        let top = chain.last().and_then(|der| CertSummary::parse(der));
        Ok(TlsReport {
            handshake_ms,
            protocol,
            cipher_suite,
            chain_trusted,
            trust_error,
            subject: leaf.as_ref().map(|c| c.subject.clone()),
            issuer: leaf.as_ref().map(|c| c.issuer.clone()),
            not_before: leaf.as_ref().and_then(|c| c.not_before),
            not_after: leaf.as_ref().and_then(|c| c.not_after),
            chain_top_issuer: top.map(|c| c.issuer),
            chain_len: u32::try_from(chain.len()).unwrap_or(u32::MAX),
        })
    }
}

/// Delegates the real verdict to webpki, records it, and lets the handshake go on regardless.
#[derive(Debug)]
struct RecordingVerifier {
    inner: Arc<WebPkiServerVerifier>,
    verdict: Arc<Mutex<Option<TrustVerdict>>>,
}

impl ServerCertVerifier for RecordingVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let verdict = self
            .inner
            .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
            .map(|_| ())
            .map_err(|e| describe_trust_error(&e));
        *self.verdict.lock().unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(verdict);
        // Accepting an untrusted chain is safe here only because the probe never sends or
        // reads application data: it closes the connection as soon as the handshake is done.
        Ok(ServerCertVerified::assertion())
    }

    // The handshake signatures are still checked for real: they prove the server holds the
    // key of the certificate it showed, which is what makes the recorded issuer meaningful.
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// The fields of a certificate the report carries.
struct CertSummary {
    subject: String,
    issuer: String,
    not_before: Option<DateTime<Utc>>,
    not_after: Option<DateTime<Utc>>,
}

impl CertSummary {
    fn parse(der: &CertificateDer<'_>) -> Option<Self> {
        let (_, cert) = x509_parser::parse_x509_certificate(der.as_ref()).ok()?;
        let validity = cert.validity();
        Some(CertSummary {
            subject: cert.subject().to_string(),
            issuer: cert.issuer().to_string(),
            not_before: DateTime::from_timestamp(validity.not_before.timestamp(), 0),
            not_after: DateTime::from_timestamp(validity.not_after.timestamp(), 0),
        })
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

fn describe_connect_error(e: &std::io::Error) -> String {
    use std::io::ErrorKind;
    match e.kind() {
        ErrorKind::ConnectionRefused => {
            format!(
                "connection refused: nothing listens on the port, or a firewall rejects the connection ({e})"
            )
        }
        ErrorKind::TimedOut => format!("timed out: a firewall silently dropping the traffic? ({e})"),
        ErrorKind::NetworkUnreachable | ErrorKind::HostUnreachable => {
            format!("no route to the address: check the default gateway and firewall ({e})")
        }
        _ => e.to_string(),
    }
}

/// Turns the certificate verdict into a sentence a technician can act on.
fn describe_trust_error(e: &rustls::Error) -> String {
    match e {
        rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer) => {
            "the certificate chain does not lead to a public root CA (nor to a configured extra CA); \
             a TLS-inspecting proxy or firewall presenting its own certificate looks like this"
                .to_owned()
        }
        rustls::Error::InvalidCertificate(
            CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
        ) => format!("the certificate is not valid for this host name: {e}"),
        rustls::Error::InvalidCertificate(
            CertificateError::Expired | CertificateError::ExpiredContext { .. },
        ) => format!("the certificate has expired: {e}"),
        rustls::Error::InvalidCertificate(
            CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. },
        ) => format!("the certificate is not valid yet (check this machine's clock): {e}"),
        other => other.to_string(),
    }
}

/// Turns a failed handshake into a sentence a technician can act on.
fn describe_handshake_error(e: &std::io::Error) -> String {
    let no_modern_tls = "the server offered no TLS 1.2+ version: it probably speaks only TLS 1.0/1.1, \
                         which the probe (like Entra's own endpoints) refuses";
    if let Some(tls) = e.get_ref().and_then(|inner| inner.downcast_ref::<rustls::Error>()) {
        return match tls {
            rustls::Error::AlertReceived(AlertDescription::ProtocolVersion) => {
                format!("{no_modern_tls} (it answered with a protocol_version alert)")
            }
            rustls::Error::PeerIncompatible(
                PeerIncompatible::ServerDoesNotSupportTls12Or13
                | PeerIncompatible::ServerTlsVersionIsDisabledByOurConfig,
            ) => format!("{no_modern_tls} ({tls})"),
            rustls::Error::AlertReceived(AlertDescription::HandshakeFailure) => format!(
                "the server ended the handshake (handshake_failure alert): no cipher suite or key exchange in common with a TLS 1.2/1.3 client ({tls})"
            ),
            rustls::Error::InvalidMessage(_) | rustls::Error::InappropriateMessage { .. } => format!(
                "the other side did not answer with TLS ({tls}); something that is not a TLS server (a proxy, captive portal or other service) answered on this port"
            ),
            other => format!("TLS handshake failed: {other}"),
        };
    }
    match e.kind() {
        std::io::ErrorKind::UnexpectedEof => "the connection was closed during the TLS handshake \
             (typical of a firewall or proxy that blocks TLS to this host)"
            .to_owned(),
        std::io::ErrorKind::ConnectionReset => {
            format!("the connection was reset during the TLS handshake (a firewall or proxy?): {e}")
        }
        _ => format!("TLS handshake failed: {e}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn protocol_version_alert_names_the_missing_tls_versions() {
        let e = std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            rustls::Error::AlertReceived(AlertDescription::ProtocolVersion),
        );
        assert!(describe_handshake_error(&e).contains("no TLS 1.2+ version"));
    }

    #[test]
    fn unknown_issuer_mentions_interception() {
        let text = describe_trust_error(&rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer));
        assert!(text.contains("TLS-inspecting proxy"), "{text}");
    }

    #[test]
    fn public_roots_are_loaded() {
        let prober = EndpointProber::new(&[], Duration::from_secs(1)).unwrap();
        assert_eq!(prober.connect_timeout, Duration::from_secs(1));
        let bad = EndpointProber::new(&[CertificateDer::from(vec![1u8, 2, 3])], Duration::from_secs(1));
        assert!(matches!(bad, Err(ProbeSetupError::BadAnchor { index: 0, .. })));
    }
}
