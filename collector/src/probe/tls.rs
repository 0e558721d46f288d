//! The TLS handshake every network probe shares: it completes even when the certificate chain is
//! not trusted, records *why* it is not, and describes what the server presented.
//!
//! Trust is judged against Mozilla's root program (`webpki-roots`) plus the CAs configured in
//! `extra_trusted_ca_files`, and deliberately NOT against the operating system's store: a
//! TLS-inspecting proxy's CA is typically pushed into the Windows store by group policy, and
//! trusting it would hide exactly the interception that breaks the Service Bus relay.
//!
//! Accepting an untrusted chain is safe only because the probes never send anything secret over
//! such a connection: the endpoint and proxy probes close it right after the handshake, and the
//! idle-connection probe sends one bare `HEAD /` request without credentials.

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
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::time::timeout;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;
use wbd_wire::{TlsReport, TrustFailure};

#[derive(Debug, thiserror::Error)]
pub enum ProbeSetupError {
    #[error("extra_trusted_ca_files: certificate #{index} cannot be used as a trust anchor: {message}")]
    BadAnchor { index: usize, message: String },
    #[error("cannot build the certificate verifier: {0}")]
    Verifier(String),
    #[error("{setting}: {message}")]
    Setting { setting: String, message: String },
}

/// What a completed handshake showed.
#[derive(Debug, Clone)]
pub struct TlsObservation {
    pub report: TlsReport,
    /// The chain does not lead to a trusted root at all (as opposed to, say, an expired
    /// certificate): what a TLS-inspecting proxy that re-signs traffic looks like.
    pub unknown_issuer: bool,
}

/// Performs recorded handshakes; cheap to share between concurrent probes.
#[derive(Debug)]
pub struct TlsChecker {
    provider: Arc<CryptoProvider>,
    verifier: Arc<WebPkiServerVerifier>,
    handshake_timeout: Duration,
}

/// The certificate check's verdict: `Ok` when the chain is trusted for the name.
type TrustVerdict = Result<(), rustls::Error>;

impl TlsChecker {
    /// `extra_trusted_cas` are trusted in addition to the public roots.
    pub fn new(
        extra_trusted_cas: &[CertificateDer<'static>],
        handshake_timeout: Duration,
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
        Ok(TlsChecker { provider, verifier, handshake_timeout })
    }

    pub fn handshake_timeout(&self) -> Duration {
        self.handshake_timeout
    }

    /// Runs a TLS 1.2/1.3 handshake over `io` for `server_name`, letting it complete whatever
    /// the chain, and returns the stream with what was seen. The error is a sentence for the
    /// technician.
    pub async fn handshake<S>(
        &self,
        server_name: &str,
        io: S,
    ) -> Result<(TlsStream<S>, TlsObservation), String>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        let name = ServerName::try_from(server_name.to_owned())
            .map_err(|e| format!("`{server_name}` is not a valid TLS server name: {e}"))?;

        // A verifier per handshake, so that each probe records its own verdict.
        let verdict: Arc<Mutex<Option<TrustVerdict>>> = Arc::new(Mutex::new(None));
        let recorder = RecordingVerifier { inner: Arc::clone(&self.verifier), verdict: Arc::clone(&verdict) };
        let config = ClientConfig::builder_with_provider(Arc::clone(&self.provider))
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
            .map_err(|e| format!("TLS configuration error: {e}"))?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(recorder))
            .with_no_client_auth();
        let connector = TlsConnector::from(Arc::new(config));

        let started = Instant::now();
        let stream = match timeout(self.handshake_timeout, connector.connect(name, io)).await {
            Ok(Ok(stream)) => stream,
            Ok(Err(e)) => return Err(describe_handshake_error(&e)),
            Err(_) => {
                return Err(format!(
                    "the TLS handshake did not finish within {}s (the server or something in between stopped answering)",
                    self.handshake_timeout.as_secs()
                ));
            }
        };
        let handshake_ms = millis(started.elapsed());

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

        let recorded = verdict.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).take();
        let (chain_trusted, trust_error, trust_failure) = match recorded {
            Some(Ok(())) => (true, None, None),
            Some(Err(e)) => (false, Some(describe_trust_error(&e)), Some(trust_failure_of(&e))),
            None => (
                false,
                Some("the server's certificate was never checked".to_owned()),
                Some(TrustFailure::Other),
            ),
        };
        let unknown_issuer = trust_failure == Some(TrustFailure::UntrustedIssuer);
        let leaf = chain.first().and_then(|der| CertSummary::parse(der));
        let top = chain.last().and_then(|der| CertSummary::parse(der));
        let report = TlsReport {
            handshake_ms,
            protocol,
            cipher_suite,
            chain_trusted,
            trust_error,
            trust_failure,
            subject: leaf.as_ref().map(|c| c.subject.clone()),
            issuer: leaf.as_ref().map(|c| c.issuer.clone()),
            not_before: leaf.as_ref().and_then(|c| c.not_before),
            not_after: leaf.as_ref().and_then(|c| c.not_after),
            chain_top_issuer: top.map(|c| c.issuer),
            chain_len: u32::try_from(chain.len()).unwrap_or(u32::MAX),
        };
        Ok((stream, TlsObservation { report, unknown_issuer }))
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
            .map(|_| ());
        *self.verdict.lock().unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(verdict);
        // See the module documentation for why accepting an untrusted chain is safe here.
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

pub(crate) fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// The kind of a certificate verdict: only a chain that leads to no trusted root is what a
/// re-signing (inspecting) device looks like.
pub(crate) fn trust_failure_of(e: &rustls::Error) -> TrustFailure {
    match e {
        rustls::Error::InvalidCertificate(
            CertificateError::UnknownIssuer | CertificateError::BadSignature,
        ) => TrustFailure::UntrustedIssuer,
        rustls::Error::InvalidCertificate(
            CertificateError::Expired | CertificateError::ExpiredContext { .. },
        ) => TrustFailure::Expired,
        rustls::Error::InvalidCertificate(
            CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. },
        ) => TrustFailure::NotYetValid,
        rustls::Error::InvalidCertificate(
            CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
        ) => TrustFailure::WrongName,
        _ => TrustFailure::Other,
    }
}

/// Turns the certificate verdict into a sentence a technician can act on.
pub(crate) fn describe_trust_error(e: &rustls::Error) -> String {
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
pub(crate) fn describe_handshake_error(e: &std::io::Error) -> String {
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

/// Describes a failed TCP connect.
pub(crate) fn describe_connect_error(e: &std::io::Error) -> String {
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
    fn public_roots_are_loaded_and_bad_anchors_refused() {
        let checker = TlsChecker::new(&[], Duration::from_secs(1)).unwrap();
        assert_eq!(checker.handshake_timeout(), Duration::from_secs(1));
        let bad = TlsChecker::new(&[CertificateDer::from(vec![1u8, 2, 3])], Duration::from_secs(1));
        assert!(matches!(bad, Err(ProbeSetupError::BadAnchor { index: 0, .. })));
    }
}
