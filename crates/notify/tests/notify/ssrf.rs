//! The SSRF guard through the real client and `Http::send`: internal addresses, in every
//! spelling, are refused before a connection is made; redirects are not followed; the
//! operator's allow-list lets an on-premises destination through.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use wbd_notify::DeliveryError;
use wbd_notify::Http;
use wbd_notify::ssrf::{Guard, NetworkPolicy};

/// A raw HTTP server that counts every connection it accepts (not just complete requests)
/// and answers each request with `response`.
struct TestServer {
    addr: SocketAddr,
    connections: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl TestServer {
    async fn spawn(ip: &str, response: String) -> TestServer {
        let listener = TcpListener::bind((ip, 0)).await.expect("bind test server");
        let addr = listener.local_addr().unwrap();
        let connections = Arc::new(AtomicUsize::new(0));
        let counter = connections.clone();
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                counter.fetch_add(1, Ordering::SeqCst);
                let response = response.clone();
                tokio::spawn(answer(stream, response));
            }
        });
        TestServer { addr, connections, task }
    }

    /// A would-be victim: answers 200 to whatever reaches it.
    async fn victim(ip: &str) -> TestServer {
        TestServer::spawn(ip, "HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok".into())
            .await
    }

    fn port(&self) -> u16 {
        self.addr.port()
    }

    fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Reads one request (head and `content-length` body) so closing does not reset the
/// connection under the answer, then answers.
async fn answer(mut stream: TcpStream, response: String) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let Ok(n) = stream.read(&mut chunk).await else { return };
        if n == 0 {
            return;
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
            let length = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse::<usize>().ok())
                .unwrap_or(0);
            if buf.len() >= end + 4 + length {
                break;
            }
        }
    }
    let _ = stream.write_all(response.as_bytes()).await;
    let _ = stream.shutdown().await;
}

fn http(policy: NetworkPolicy) -> Http {
    Http::new(&Guard::new(policy, Duration::from_secs(5)), false)
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

async fn post(http: &Http, url: &str) -> Result<u16, DeliveryError> {
    http.send(http.client().post(url).body("{}")).await.map(|r| r.status)
}

#[tokio::test]
async fn internal_destinations_in_every_spelling_are_refused_before_connecting() {
    let victim = TestServer::victim("127.0.0.1").await;
    let port = victim.port();
    let http = http(
        NetworkPolicy::new(&[], false)
            .unwrap()
            .with_static_host("victim.test", vec![ip("127.0.0.1")])
            .with_static_host("mapped-victim.test", vec![ip("::ffff:127.0.0.1")])
            .with_static_host("metadata.test", vec![ip("169.254.169.254")])
            .with_static_host("intranet.test", vec![ip("10.1.2.3"), ip("192.168.0.10"), ip("fd00::1")]),
    );
    let corpus = [
        // The victim itself, with a policy that allows nothing.
        format!("http://127.0.0.1:{port}/"),
        // Cloud metadata, every encoding the URL parser accepts.
        format!("http://169.254.169.254:{port}/latest/meta-data/"),
        format!("http://2852039166:{port}/"),
        format!("http://0251.0376.0251.0376:{port}/"),
        format!("http://0xa9fea9fe:{port}/"),
        format!("http://0xa9.0xfe.0xa9.0xfe:{port}/"),
        format!("http://[::ffff:169.254.169.254]:{port}/"),
        format!("http://[::ffff:a9fe:a9fe]:{port}/"),
        // Loopback spelled otherwise, aimed at the victim's port.
        format!("http://[::ffff:127.0.0.1]:{port}/"),
        format!("http://2130706433:{port}/"),
        format!("http://0177.0.0.1:{port}/"),
        format!("http://0x7f.1:{port}/"),
        format!("http://127.1:{port}/"),
        format!("http://[::1]:{port}/"),
        format!("http://[::127.0.0.1]:{port}/"),
        // Names that resolve to internal addresses (system DNS and the static table).
        format!("http://localhost:{port}/"),
        format!("http://LOCALHOST:{port}/"),
        format!("http://victim.test:{port}/"),
        format!("http://mapped-victim.test:{port}/"),
        format!("http://metadata.test:{port}/"),
        format!("http://intranet.test:{port}/"),
        // IPv4 carried in IPv6: 6to4, NAT64, Teredo (client 127.0.0.1, obfuscated).
        format!("http://[2002:7f00:1::1]:{port}/"),
        format!("http://[2002:a9fe:a9fe::]:{port}/"),
        format!("http://[64:ff9b::7f00:1]:{port}/"),
        format!("http://[64:ff9b::169.254.169.254]:{port}/"),
        format!("http://[2001:0:102:304::80ff:fffe]:{port}/"),
        // Carrier-grade NAT, "this host", unspecified, private, link-local v6.
        format!("http://100.64.0.1:{port}/"),
        format!("http://0.0.0.0:{port}/"),
        format!("http://0:{port}/"),
        format!("http://[::]:{port}/"),
        format!("http://10.0.0.1:{port}/"),
        format!("http://172.16.0.1:{port}/"),
        format!("http://192.168.1.1:{port}/"),
        format!("http://[fe80::1]:{port}/"),
        format!("http://[fd00::1]:{port}/"),
    ];
    for url in &corpus {
        match post(&http, url).await {
            Err(DeliveryError::Blocked(why)) => assert!(!why.is_empty()),
            other => panic!("{url}: expected Blocked, got {other:?}"),
        }
    }
    let exchanges = http.exchanges();
    assert_eq!(exchanges.len(), corpus.len(), "every refusal is in the attempt log");
    assert!(
        exchanges
            .iter()
            .all(|e| e.status.is_none() && e.error.as_deref().is_some_and(|e| e.contains("refused")))
    );
    assert_eq!(victim.connections(), 0, "nothing reached the victim");
}

#[tokio::test]
async fn the_refusal_names_the_reason_and_keeps_internal_addresses_private() {
    let http =
        http(NetworkPolicy::new(&[], false).unwrap().with_static_host("rebind.test", vec![ip("127.0.0.1")]));
    let Err(DeliveryError::Blocked(literal)) = post(&http, "http://169.254.169.254/").await else { panic!() };
    assert!(literal.contains("link-local"), "{literal}");
    let Err(DeliveryError::Blocked(named)) = post(&http, "http://rebind.test/").await else { panic!() };
    assert!(named.contains("rebind.test") && !named.contains("127.0.0.1"), "{named}");
}

#[tokio::test]
async fn redirects_are_failures_and_never_followed() {
    let internal = TestServer::victim("127.0.0.2").await;
    let redirector = TestServer::spawn(
        "127.0.0.1",
        format!(
            "HTTP/1.1 302 Found\r\nlocation: http://127.0.0.2:{}/\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
            internal.port()
        ),
    )
    .await;
    let http = http(NetworkPolicy::new(&["127.0.0.1/32".into()], false).unwrap());
    match post(&http, &format!("http://127.0.0.1:{}/hook", redirector.port())).await {
        Err(DeliveryError::Status { status: 302, .. }) => {}
        other => panic!("expected the 302 as a failure, got {other:?}"),
    }
    assert_eq!(redirector.connections(), 1);
    assert_eq!(internal.connections(), 0, "the redirect was not followed");
    assert_eq!(http.exchanges().len(), 1);
    assert_eq!(http.exchanges()[0].status, Some(302));
}

#[tokio::test]
async fn an_allow_listed_subnet_reaches_the_on_premises_psa() {
    let psa = TestServer::victim("127.0.0.1").await;
    let http = http(
        NetworkPolicy::new(&["127.0.0.0/8".into()], false)
            .unwrap()
            .with_static_host("psa.corp.test", vec![ip("127.0.0.1")]),
    );
    assert_eq!(
        post(&http, &format!("http://psa.corp.test:{}/v4_6_release/apis/3.0", psa.port())).await,
        Ok(200)
    );
    assert_eq!(post(&http, &format!("http://127.0.0.1:{}/", psa.port())).await, Ok(200));
    assert_eq!(post(&http, &format!("http://[::ffff:127.0.0.1]:{}/", psa.port())).await, Ok(200));
    assert_eq!(psa.connections(), 3);
    // The allow-list is what it says: other internal ranges stay refused.
    assert!(matches!(post(&http, "http://169.254.169.254/").await, Err(DeliveryError::Blocked(_))));
}

#[tokio::test]
async fn https_only_refuses_plain_http() {
    let server = TestServer::victim("127.0.0.1").await;
    let http = http(
        NetworkPolicy::new(&["127.0.0.1/32".into()], true)
            .unwrap()
            .with_static_host("psa.corp.test", vec![ip("127.0.0.1")]),
    );
    for url in
        [format!("http://127.0.0.1:{}/", server.port()), format!("http://psa.corp.test:{}/", server.port())]
    {
        match post(&http, &url).await {
            Err(DeliveryError::Blocked(why)) => assert!(why.contains("https"), "{why}"),
            other => panic!("{url}: expected Blocked, got {other:?}"),
        }
    }
    assert_eq!(server.connections(), 0);
}

#[tokio::test]
async fn the_client_identifies_itself() {
    let (tx, rx) = tokio::sync::oneshot::channel::<String>();
    let listener = TcpListener::bind(("127.0.0.1", 0)).await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        let (mut stream, _) = listener.accept().await.unwrap();
        let mut buf = vec![0u8; 4096];
        let n = stream.read(&mut buf).await.unwrap();
        let _ = tx.send(String::from_utf8_lossy(&buf[..n]).to_ascii_lowercase());
        let _ = stream.write_all(b"HTTP/1.1 204 No Content\r\nconnection: close\r\n\r\n").await;
    });
    let http = http(NetworkPolicy::new(&["127.0.0.1/32".into()], false).unwrap());
    http.send(http.client().get(format!("http://127.0.0.1:{port}/"))).await.unwrap();
    let request = rx.await.unwrap();
    assert!(request.contains("user-agent: writebackdoctor/"), "{request}");
}

#[tokio::test]
async fn the_resolver_refusal_survives_reqwest_error_wrapping() {
    // `Http` classifies by finding `Blocked` in the error's source chain; this pins that
    // reqwest and hyper-util keep it there (as itself, not inside an io::Error).
    let guard = Guard::new(
        NetworkPolicy::new(&[], false).unwrap().with_static_host("victim.test", vec![ip("127.0.0.1")]),
        Duration::from_secs(5),
    );
    let err = guard.client().get("http://victim.test/").send().await.unwrap_err();
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(&err);
    let mut found = false;
    while let Some(e) = source {
        found |= e.downcast_ref::<wbd_notify::ssrf::Blocked>().is_some();
        source = e.source();
    }
    assert!(found, "Blocked is in the chain of {err:?}");
}
