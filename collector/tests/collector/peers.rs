//! Network peers for the idle-connection, proxy and push tests: an HTTPS server that answers
//! every request, and a proxy that can require Basic authentication, offer only NTLM, refuse
//! tunnels, cut or silently drop idle connections, or re-sign TLS with its own CA.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine;
use rustls::{ClientConfig, RootCertStore};
use rustls_pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::{TlsAcceptor, TlsConnector};

use crate::helpers::*;

/// An HTTPS server that answers each request head with `200 OK` and keeps the connection open.
pub async fn spawn_https_responder(cert: ServerCert) -> SocketAddr {
    spawn_https_responder_on(cert, std::net::Ipv4Addr::LOCALHOST).await
}

/// [`spawn_https_responder`] listening on `ip` (a free port).
pub async fn spawn_https_responder_on(cert: ServerCert, ip: std::net::Ipv4Addr) -> SocketAddr {
    let acceptor = tls_acceptor(cert);
    let listener = TcpListener::bind((ip, 0)).await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                if let Ok(tls) = acceptor.accept(stream).await {
                    answer_requests(tls).await;
                }
            });
        }
    });
    addr
}

async fn answer_requests<S: AsyncRead + AsyncWrite + Unpin>(mut stream: S) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
        while let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            buf.drain(..end + 4);
            if stream.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n").await.is_err() {
                return;
            }
        }
    }
}

pub fn tls_acceptor(cert: ServerCert) -> TlsAcceptor {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(cert.chain, cert.key)
        .unwrap();
    TlsAcceptor::from(Arc::new(config))
}

fn tls_connector(roots: &[CertificateDer<'static>]) -> TlsConnector {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut store = RootCertStore::empty();
    for root in roots {
        store.add(root.clone()).unwrap();
    }
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(store)
        .with_no_client_auth();
    TlsConnector::from(Arc::new(config))
}

/// How a [`TestProxy`] behaves.
#[derive(Default)]
pub struct ProxyBehaviour {
    /// Credentials the proxy requires (Basic).
    pub basic: Option<(&'static str, &'static str)>,
    /// `Proxy-Authenticate` values sent with a 407 (default: `Basic realm="test"`).
    pub offer: Vec<&'static str>,
    /// Answer every CONNECT with this status instead of opening a tunnel.
    pub refuse_with: Option<u16>,
    /// Close a tunnel that carried nothing for this long.
    pub idle_cut: Option<Duration>,
    /// Stop forwarding (without closing anything) once a tunnel was idle this long.
    pub idle_blackhole: Option<Duration>,
    /// Terminate TLS with this certificate and open TLS to the target trusting `upstream_roots`.
    pub resign: Option<(ServerCert, Vec<CertificateDer<'static>>)>,
    /// No CONNECT: every connection is forwarded here (a firewall in the path, not a proxy).
    pub transparent_to: Option<SocketAddr>,
}

/// One CONNECT the proxy received.
#[derive(Debug, Clone)]
pub struct SeenConnect {
    pub target: String,
    pub authorization: Option<String>,
}

/// A proxy on 127.0.0.1 behaving as told.
#[derive(Clone)]
pub struct TestProxy {
    pub addr: SocketAddr,
    seen: Arc<Mutex<Vec<SeenConnect>>>,
}

struct Shared {
    behaviour: ProxyBehaviour,
    acceptor: Option<TlsAcceptor>,
    upstream: Option<TlsConnector>,
}

impl TestProxy {
    pub async fn start(mut behaviour: ProxyBehaviour) -> TestProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let (acceptor, upstream) = match behaviour.resign.take() {
            Some((cert, roots)) => (Some(tls_acceptor(cert)), Some(tls_connector(&roots))),
            None => (None, None),
        };
        let shared = Arc::new(Shared { behaviour, acceptor, upstream });
        let proxy = TestProxy { addr, seen: Arc::clone(&seen) };
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let shared = Arc::clone(&shared);
                let seen = Arc::clone(&seen);
                tokio::spawn(async move { serve(client, shared, seen).await });
            }
        });
        proxy
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn seen(&self) -> Vec<SeenConnect> {
        self.seen.lock().unwrap().clone()
    }
}

async fn serve(mut client: TcpStream, shared: Arc<Shared>, seen: Arc<Mutex<Vec<SeenConnect>>>) {
    let b = &shared.behaviour;
    if let Some(target) = b.transparent_to {
        let Ok(upstream) = TcpStream::connect(target).await else { return };
        pump(client, upstream, b.idle_cut, b.idle_blackhole).await;
        return;
    }
    let Some(head) = read_head(&mut client).await else { return };
    let mut lines = head.split("\r\n");
    let request_line = lines.next().unwrap_or_default().to_owned();
    let authorization = lines
        .filter_map(|l| l.split_once(':'))
        .find(|(k, _)| k.trim().eq_ignore_ascii_case("proxy-authorization"))
        .map(|(_, v)| v.trim().to_owned());
    let mut parts = request_line.split(' ');
    let (method, target) = (parts.next().unwrap_or_default(), parts.next().unwrap_or_default().to_owned());
    seen.lock().unwrap().push(SeenConnect { target: target.clone(), authorization: authorization.clone() });
    if method != "CONNECT" {
        let _ = client.write_all(b"HTTP/1.1 405 Method Not Allowed\r\nContent-Length: 0\r\n\r\n").await;
        return;
    }
    if let Some((user, password)) = b.basic {
        let expected = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
        );
        if authorization.as_deref() != Some(expected.as_str()) {
            let offers: Vec<&str> =
                if b.offer.is_empty() { vec!["Basic realm=\"test\""] } else { b.offer.clone() };
            let mut answer = "HTTP/1.1 407 Proxy Authentication Required\r\n".to_owned();
            for offer in offers {
                answer.push_str(&format!("Proxy-Authenticate: {offer}\r\n"));
            }
            answer.push_str("Content-Length: 0\r\nConnection: close\r\n\r\n");
            let _ = client.write_all(answer.as_bytes()).await;
            return;
        }
    }
    if let Some(status) = b.refuse_with {
        let _ = client
            .write_all(format!("HTTP/1.1 {status} Refused\r\nContent-Length: 0\r\n\r\n").as_bytes())
            .await;
        return;
    }
    let Ok(upstream) = TcpStream::connect(target.as_str()).await else {
        let _ = client.write_all(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n").await;
        return;
    };
    if client.write_all(b"HTTP/1.1 200 Connection established\r\n\r\n").await.is_err() {
        return;
    }
    match (&shared.acceptor, &shared.upstream) {
        (Some(acceptor), Some(connector)) => {
            let Ok(client_tls) = acceptor.accept(client).await else { return };
            let host = target.rsplit_once(':').map_or(target.as_str(), |(h, _)| h).to_owned();
            let name = ServerName::try_from(if host == "127.0.0.1" { "localhost".to_owned() } else { host })
                .unwrap();
            let Ok(upstream_tls) = connector.connect(name, upstream).await else { return };
            pump(client_tls, upstream_tls, b.idle_cut, b.idle_blackhole).await;
        }
        _ => pump(client, upstream, b.idle_cut, b.idle_blackhole).await,
    }
}

async fn read_head(stream: &mut TcpStream) -> Option<String> {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if stream.read(&mut byte).await.ok()? == 0 {
            return None;
        }
        head.push(byte[0]);
    }
    Some(String::from_utf8_lossy(&head).into_owned())
}

/// Copies both ways; closes everything after `idle_cut` without traffic, or stops forwarding
/// after `idle_blackhole` without traffic.
async fn pump<A, B>(a: A, b: B, idle_cut: Option<Duration>, idle_blackhole: Option<Duration>)
where
    A: AsyncRead + AsyncWrite + Send + 'static,
    B: AsyncRead + AsyncWrite + Send + 'static,
{
    let last = Arc::new(Mutex::new(Instant::now()));
    let dead = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (ar, aw) = tokio::io::split(a);
    let (br, bw) = tokio::io::split(b);
    let one = tokio::spawn(copy(ar, bw, Arc::clone(&last), Arc::clone(&dead)));
    let two = tokio::spawn(copy(br, aw, Arc::clone(&last), Arc::clone(&dead)));
    loop {
        tokio::time::sleep(Duration::from_millis(20)).await;
        if one.is_finished() && two.is_finished() {
            return;
        }
        let idle = last.lock().unwrap().elapsed();
        if let Some(cut) = idle_cut
            && idle >= cut
        {
            // Dropping the tasks drops both halves of both sockets: the client sees the close.
            one.abort();
            two.abort();
            return;
        }
        if let Some(after) = idle_blackhole
            && idle >= after
        {
            dead.store(true, std::sync::atomic::Ordering::SeqCst);
        }
    }
}

async fn copy<R, W>(mut r: R, mut w: W, last: Arc<Mutex<Instant>>, dead: Arc<std::sync::atomic::AtomicBool>)
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut buf = [0u8; 8192];
    loop {
        let n = match r.read(&mut buf).await {
            Ok(0) | Err(_) => {
                let _ = w.shutdown().await;
                return;
            }
            Ok(n) => n,
        };
        if dead.load(std::sync::atomic::Ordering::SeqCst) {
            // A silently dropped flow: swallow everything, answer nothing, close nothing.
            continue;
        }
        *last.lock().unwrap() = Instant::now();
        if w.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}
