//! Real peers on loopback for the tests: a test PKI (rcgen), TLS servers that behave well or
//! badly, and a tiny scripted HTTP server standing in for the Writeback Doctor API.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};
use rustls::ServerConfig;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use wbd_collector::config::EndpointTarget;
use wbd_wire::{EndpointReport, EndpointRole, ProbeOutput, ProbeResult};

/// Logs are silent unless TEST_LOG is set.
pub fn init_test_log() {
    if std::env::var_os("TEST_LOG").is_some() {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new("debug"))
            .with_test_writer()
            .try_init();
    }
}

/// A certificate authority made for one test.
pub struct TestCa {
    pub name: String,
    pub cert: CertificateDer<'static>,
    pub pem: String,
    issuer: Issuer<'static, KeyPair>,
}

/// A certificate chain and key for a test server.
pub struct ServerCert {
    pub chain: Vec<CertificateDer<'static>>,
    pub key: PrivateKeyDer<'static>,
}

impl TestCa {
    pub fn new(name: &str) -> TestCa {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name.push(DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let key = KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        TestCa {
            name: name.to_owned(),
            pem: cert.pem(),
            cert: cert.der().clone(),
            issuer: Issuer::new(params, key),
        }
    }

    /// An intermediate CA signed by this one.
    pub fn intermediate(&self, name: &str) -> TestCa {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name.push(DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        TestCa {
            name: name.to_owned(),
            pem: cert.pem(),
            cert: cert.der().clone(),
            issuer: Issuer::new(params, key),
        }
    }

    /// A server certificate for `localhost` and 127.0.0.1, currently valid.
    pub fn leaf(&self, common_name: &str) -> ServerCert {
        self.leaf_with(common_name, |_| {})
    }

    /// A server certificate that expired years ago.
    pub fn expired_leaf(&self, common_name: &str) -> ServerCert {
        self.leaf_with(common_name, |p| {
            p.not_before = rcgen::date_time_ymd(2020, 1, 1);
            p.not_after = rcgen::date_time_ymd(2021, 1, 1);
        })
    }

    fn leaf_with(&self, common_name: &str, adjust: impl FnOnce(&mut CertificateParams)) -> ServerCert {
        let mut params =
            CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()]).unwrap();
        params.distinguished_name.push(DnType::CommonName, common_name);
        adjust(&mut params);
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        ServerCert { chain: vec![cert.der().clone()], key: PrivateKeyDer::from(key) }
    }

    /// Writes the CA certificate as PEM into `dir` and returns the path.
    pub fn write_pem(&self, dir: &Path) -> PathBuf {
        let path = dir.join(format!("{}.pem", self.name.replace(' ', "-")));
        std::fs::write(&path, &self.pem).unwrap();
        path
    }
}

fn server_config(
    cert: ServerCert,
    versions: &[&'static rustls::SupportedProtocolVersion],
) -> Arc<ServerConfig> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    Arc::new(
        ServerConfig::builder_with_provider(provider)
            .with_protocol_versions(versions)
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(cert.chain, cert.key)
            .unwrap(),
    )
}

/// A TLS server on 127.0.0.1 that completes handshakes and then waits for the client to leave.
pub async fn spawn_tls_server(cert: ServerCert) -> SocketAddr {
    spawn_tls_server_versions(cert, &[&rustls::version::TLS13, &rustls::version::TLS12]).await
}

pub async fn spawn_tls_server_versions(
    cert: ServerCert,
    versions: &[&'static rustls::SupportedProtocolVersion],
) -> SocketAddr {
    let acceptor = TlsAcceptor::from(server_config(cert, versions));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                if let Ok(mut tls) = acceptor.accept(stream).await {
                    let mut buf = [0u8; 1024];
                    while matches!(tls.read(&mut buf).await, Ok(n) if n > 0) {}
                }
            });
        }
    });
    addr
}

/// A TCP server that answers every connection with `reply` (after reading what the client
/// sent first, if `read_first`) and closes it.
pub async fn spawn_raw_server(reply: &'static [u8], read_first: bool) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                if read_first {
                    let mut buf = [0u8; 4096];
                    let _ = stream.read(&mut buf).await;
                }
                let _ = stream.write_all(reply).await;
                let _ = stream.shutdown().await;
            });
        }
    });
    addr
}

/// A loopback port with nothing listening on it.
pub async fn closed_port() -> u16 {
    // Bound but never listening: a connection is refused, and no other test can take the port
    // meanwhile (a port merely freed could be). Kept for the rest of the test run.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let port = socket.local_addr().unwrap().port();
    std::mem::forget(socket);
    port
}

/// An endpoint on loopback, verified as `localhost`.
pub fn local_target(addr: SocketAddr) -> EndpointTarget {
    EndpointTarget {
        host: addr.ip().to_string(),
        port: addr.port(),
        role: EndpointRole::Other,
        server_name: "localhost".to_owned(),
    }
}

/// A plausible probe result for spool and push tests.
pub fn sample_result(subject: &str) -> ProbeResult {
    ProbeResult {
        subject: subject.to_owned(),
        observed_at: chrono::Utc::now(),
        duration_ms: 12,
        output: ProbeOutput::Endpoint(EndpointReport {
            host: subject.to_owned(),
            port: 443,
            role: EndpointRole::PasswordReset,
            resolved: vec!["192.0.2.10".parse().unwrap()],
            dns_ms: Some(1),
            connected_to: Some("192.0.2.10".parse().unwrap()),
            tcp_connect_ms: Some(2),
            tls: None,
            failure: None,
            via_proxy: None,
        }),
    }
}

/// One request the mock server received.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub method: String,
    pub path: String,
    /// Header names in lower case.
    pub headers: HashMap<String, String>,
    pub body: Vec<u8>,
    /// When the request had been read.
    pub at: std::time::Instant,
}

/// One scripted answer.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Reply {
    pub fn new(status: u16) -> Reply {
        Reply { status, headers: Vec::new(), body: String::new() }
    }

    pub fn json(status: u16, body: impl Into<String>) -> Reply {
        Reply::new(status).header("Content-Type", "application/json").body(body)
    }

    pub fn problem(status: u16, title: &str, detail: &str, code: &str) -> Reply {
        let body = serde_json::json!({
            "type": "about:blank", "title": title, "status": status, "detail": detail, "code": code
        });
        Reply::new(status).header("Content-Type", "application/problem+json").body(body.to_string())
    }

    pub fn header(mut self, name: &str, value: &str) -> Reply {
        self.headers.push((name.to_owned(), value.to_owned()));
        self
    }

    pub fn body(mut self, body: impl Into<String>) -> Reply {
        self.body = body.into();
        self
    }
}

/// A scripted HTTP/1.1 server: answers requests with the scripted replies in order, then with
/// the default reply, and records every request. One request per connection.
#[derive(Clone)]
pub struct MockServer {
    pub base_url: String,
    requests: Arc<Mutex<Vec<Recorded>>>,
    script: Arc<Mutex<VecDeque<Reply>>>,
    /// While set, every connection is closed without an answer and nothing is recorded.
    down: Arc<std::sync::atomic::AtomicBool>,
}

impl MockServer {
    /// Plain HTTP on 127.0.0.1.
    pub async fn start(default: Reply) -> MockServer {
        Self::start_inner(default, None).await
    }

    /// HTTPS on 127.0.0.1 with `cert` (the URL uses `localhost`, the name in the certificate).
    pub async fn start_tls(default: Reply, cert: ServerCert) -> MockServer {
        let versions: &[&'static rustls::SupportedProtocolVersion] = &[&rustls::version::TLS13];
        Self::start_inner(default, Some(TlsAcceptor::from(server_config(cert, versions)))).await
    }

    async fn start_inner(default: Reply, tls: Option<TlsAcceptor>) -> MockServer {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let base_url = match tls {
            Some(_) => format!("https://localhost:{}", addr.port()),
            None => format!("http://127.0.0.1:{}", addr.port()),
        };
        let server = MockServer {
            base_url,
            requests: Arc::new(Mutex::new(Vec::new())),
            script: Arc::new(Mutex::new(VecDeque::new())),
            down: Arc::new(std::sync::atomic::AtomicBool::new(false)),
        };
        let handle = server.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let handle = handle.clone();
                let default = default.clone();
                let tls = tls.clone();
                tokio::spawn(async move {
                    match tls {
                        Some(acceptor) => {
                            if let Ok(stream) = acceptor.accept(stream).await {
                                handle.serve(stream, default).await;
                            }
                        }
                        None => handle.serve(stream, default).await,
                    }
                });
            }
        });
        server
    }

    /// Queues replies for the next requests.
    pub fn script(&self, replies: impl IntoIterator<Item = Reply>) {
        self.script.lock().unwrap().extend(replies);
    }

    /// Takes the server down (connections are dropped unanswered) or brings it back.
    pub fn set_down(&self, down: bool) {
        self.down.store(down, std::sync::atomic::Ordering::SeqCst);
    }

    pub fn requests(&self) -> Vec<Recorded> {
        self.requests.lock().unwrap().clone()
    }

    /// Waits (bounded) until at least `n` requests arrived.
    pub async fn wait_for_requests(&self, n: usize) -> Vec<Recorded> {
        for _ in 0..500 {
            let seen = self.requests();
            if seen.len() >= n {
                return seen;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("expected {n} requests, got {}", self.requests().len());
    }

    async fn serve<S: AsyncRead + AsyncWrite + Unpin>(&self, mut stream: S, default: Reply) {
        if self.down.load(std::sync::atomic::Ordering::SeqCst) {
            return;
        }
        let Some(request) = read_request(&mut stream).await else { return };
        self.requests.lock().unwrap().push(request);
        let reply = self.script.lock().unwrap().pop_front().unwrap_or(default);
        let mut head = format!(
            "HTTP/1.1 {} X\r\nContent-Length: {}\r\nConnection: close\r\n",
            reply.status,
            reply.body.len()
        );
        for (name, value) in &reply.headers {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
        head.push_str("\r\n");
        let _ = stream.write_all(head.as_bytes()).await;
        let _ = stream.write_all(reply.body.as_bytes()).await;
        let _ = stream.shutdown().await;
    }
}

pub async fn read_request<S: AsyncRead + Unpin>(stream: &mut S) -> Option<Recorded> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    let head_end = loop {
        if let Some(pos) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break pos + 4;
        }
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let mut lines = head.split("\r\n");
    let mut first = lines.next()?.split(' ');
    let method = first.next()?.to_owned();
    let path = first.next()?.to_owned();
    let headers: HashMap<String, String> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let length: usize = headers.get("content-length").and_then(|v| v.parse().ok()).unwrap_or(0);
    let mut body = buf[head_end..].to_vec();
    while body.len() < length {
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            break;
        }
        body.extend_from_slice(&chunk[..n]);
    }
    Some(Recorded { method, path, headers, body, at: std::time::Instant::now() })
}
