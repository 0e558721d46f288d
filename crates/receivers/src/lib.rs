//! Local stand-ins for the APIs Writeback Doctor delivers to, for tests.
//!
//! Each receiver is a real HTTP server on 127.0.0.1 that answers as the real API does (ids,
//! error shapes, 429 with `Retry-After`), keeps what it was sent (tickets, notes, statuses,
//! raw requests) and can be told to misbehave ([`Faults`]): fail the next N requests, answer
//! slowly, rate-limit, or be down altogether ([`Receiver::stop`] / [`Receiver::start`], on the
//! same port).
//!
//! A receiver module provides its state type and an actix `configure` function; every handler
//! starts with [`Common::observe`], which records the request and applies the faults.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix_web::dev::ServerHandle;
use actix_web::{HttpRequest, HttpResponse, HttpServer, web};
use chrono::{DateTime, Utc};

/// A request as the receiver got it.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub at: DateTime<Utc>,
    pub method: String,
    pub path: String,
    pub query: String,
    /// Header names in lower case.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Recorded {
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers.iter().find(|(n, _)| *n == name).map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or(serde_json::Value::Null)
    }
}

/// How the receiver misbehaves. Counters go down as requests consume them.
#[derive(Debug, Clone, Default)]
pub struct Faults {
    /// Answer the next N requests with `fail_status` (default 500) instead of handling them.
    pub fail_next: u32,
    pub fail_status: Option<u16>,
    /// Answer the next N requests with 429 and `Retry-After: retry_after_secs`.
    pub rate_limit_next: u32,
    pub retry_after_secs: u64,
    /// Wait this long before answering every request (after recording it).
    pub delay: Option<Duration>,
    /// Handle the next N requests (the ticket is created, the note stored …) and then answer
    /// 500 anyway: the sender cannot know its request took effect.
    pub lose_answer_next: u32,
}

/// What every receiver has: the request log, the faults, and a gate that can hold requests.
#[derive(Debug)]
pub struct Common {
    requests: Mutex<Vec<Recorded>>,
    faults: Mutex<Faults>,
    /// `true` while requests pass; see [`Common::hold`].
    open: tokio::sync::watch::Sender<bool>,
}

impl Default for Common {
    fn default() -> Self {
        Common {
            requests: Mutex::default(),
            faults: Mutex::default(),
            open: tokio::sync::watch::Sender::new(true),
        }
    }
}

/// What [`Common::observe`] decided.
pub enum Observed {
    /// Handle the request; if `lose_answer` is set, do it and answer 500 anyway
    /// (see [`Common::answer`]).
    Handle { lose_answer: bool },
    /// Answer this instead (an injected fault).
    Answer(HttpResponse),
}

impl Common {
    /// Records the request and applies the faults.
    pub async fn observe(&self, req: &HttpRequest, body: &[u8]) -> Observed {
        let recorded = Recorded {
            at: Utc::now(),
            method: req.method().to_string(),
            path: req.path().to_owned(),
            query: req.query_string().to_owned(),
            headers: req
                .headers()
                .iter()
                .map(|(n, v)| (n.as_str().to_ascii_lowercase(), v.to_str().unwrap_or("").to_owned()))
                .collect(),
            body: body.to_vec(),
        };
        self.requests.lock().unwrap().push(recorded);
        let (delay, decision) = {
            let mut f = self.faults.lock().unwrap();
            let decision = if f.rate_limit_next > 0 {
                f.rate_limit_next -= 1;
                Observed::Answer(
                    HttpResponse::TooManyRequests()
                        .insert_header(("Retry-After", f.retry_after_secs.to_string()))
                        .json(serde_json::json!({"error": "rate limit exceeded"})),
                )
            } else if f.fail_next > 0 {
                f.fail_next -= 1;
                let status = actix_web::http::StatusCode::from_u16(f.fail_status.unwrap_or(500))
                    .unwrap_or(actix_web::http::StatusCode::INTERNAL_SERVER_ERROR);
                Observed::Answer(
                    HttpResponse::build(status).json(serde_json::json!({"error": "injected failure"})),
                )
            } else if f.lose_answer_next > 0 {
                f.lose_answer_next -= 1;
                Observed::Handle { lose_answer: true }
            } else {
                Observed::Handle { lose_answer: false }
            };
            (f.delay, decision)
        };
        if let Some(delay) = delay {
            tokio::time::sleep(delay).await;
        }
        // A held request waits, recorded, until the test releases the receiver: a receiver that
        // is slow for as long as the test needs, whatever the machine's speed.
        let mut open = self.open.subscribe();
        let _ = open.wait_for(|open| *open).await;
        decision
    }

    /// From now on, requests are recorded and then wait, unanswered, until [`Common::release`].
    pub fn hold(&self) {
        self.open.send_replace(false);
    }

    /// Lets held and later requests through.
    pub fn release(&self) {
        self.open.send_replace(true);
    }

    /// The answer to send after handling: `handled`, or a 500 if the answer is to be lost.
    pub fn answer(lose_answer: bool, handled: HttpResponse) -> HttpResponse {
        if lose_answer {
            HttpResponse::InternalServerError().json(serde_json::json!({"error": "gateway timeout upstream"}))
        } else {
            handled
        }
    }

    pub fn requests(&self) -> Vec<Recorded> {
        self.requests.lock().unwrap().clone()
    }

    pub fn set_faults(&self, faults: Faults) {
        *self.faults.lock().unwrap() = faults;
    }

    pub fn update_faults(&self, change: impl FnOnce(&mut Faults)) {
        change(&mut self.faults.lock().unwrap());
    }
}

/// Implemented by each receiver's state.
pub trait Api: Send + Sync + 'static {
    fn common(&self) -> &Common;
    /// Registers the API's routes; the state is available as `web::Data<Self>`.
    fn configure(cfg: &mut web::ServiceConfig);
}

/// A running receiver. Dropping it stops the server.
pub struct Receiver<S: Api> {
    pub state: Arc<S>,
    addr: SocketAddr,
    handle: Option<ServerHandle>,
    /// Served over HTTPS with this configuration; the PEM of the CA a client must trust.
    tls: Option<(rustls::ServerConfig, String)>,
}

/// A certificate authority made for one receiver and the server configuration of a certificate
/// it issued for `127.0.0.1` and `localhost`: (configuration, the CA certificate as PEM).
fn loopback_tls() -> (rustls::ServerConfig, String) {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};
    let mut ca = CertificateParams::new(Vec::<String>::new()).expect("CA parameters");
    ca.distinguished_name.push(DnType::CommonName, "Writeback Doctor test receiver CA");
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca_key = KeyPair::generate().expect("CA key");
    let ca_pem = ca.self_signed(&ca_key).expect("CA certificate").pem();
    let issuer = Issuer::new(ca, ca_key);
    let mut leaf = CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()])
        .expect("server parameters");
    leaf.distinguished_name.push(DnType::CommonName, "127.0.0.1");
    let key = KeyPair::generate().expect("server key");
    let cert = leaf.signed_by(&key, &issuer).expect("server certificate");
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("TLS versions")
        .with_no_client_auth()
        .with_single_cert(
            vec![cert.der().clone()],
            rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into()),
        )
        .expect("server certificate and key");
    (config, ca_pem)
}

impl<S: Api> Receiver<S> {
    /// Starts a receiver with `state` on a free port of 127.0.0.1.
    pub async fn spawn(state: S) -> Receiver<S> {
        let mut receiver = Receiver {
            state: Arc::new(state),
            addr: "127.0.0.1:0".parse().unwrap(),
            handle: None,
            tls: None,
        };
        receiver.start().await;
        receiver
    }

    /// Starts a receiver serving HTTPS on a free port of 127.0.0.1, with a certificate issued
    /// by a CA made for it alone: a client trusts [`Receiver::ca_pem`] to talk to it.
    pub async fn spawn_https(state: S) -> Receiver<S> {
        let mut receiver = Receiver {
            state: Arc::new(state),
            addr: "127.0.0.1:0".parse().unwrap(),
            handle: None,
            tls: Some(loopback_tls()),
        };
        receiver.start().await;
        receiver
    }

    /// The CA certificate (PEM) an HTTPS receiver's certificate chains to.
    pub fn ca_pem(&self) -> Option<&str> {
        self.tls.as_ref().map(|(_, pem)| pem.as_str())
    }

    /// `http://127.0.0.1:PORT`, or `https://…` (no trailing slash).
    pub fn url(&self) -> String {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        format!("{scheme}://{}", self.addr)
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn common(&self) -> &Common {
        self.state.common()
    }

    pub fn requests(&self) -> Vec<Recorded> {
        self.state.common().requests()
    }

    /// Starts serving again on the same port (after [`Receiver::stop`]).
    pub async fn start(&mut self) {
        if self.handle.is_some() {
            return;
        }
        let data = web::Data::from(self.state.clone());
        let mut tries = 0;
        let server = loop {
            let data = data.clone();
            let server =
                HttpServer::new(move || actix_web::App::new().app_data(data.clone()).configure(S::configure))
                    .workers(1)
                    .disable_signals()
                    .shutdown_timeout(0);
            let bound = match &self.tls {
                Some((config, _)) => server.bind_rustls_0_23(self.addr, config.clone()),
                None => server.bind(self.addr),
            };
            match bound {
                Ok(server) => break server,
                // The old socket may linger for a moment after a stop.
                Err(e) if tries < 50 => {
                    tries += 1;
                    let _ = e;
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(e) => panic!("receiver cannot bind {}: {e}", self.addr),
            }
        };
        self.addr = server.addrs()[0];
        let server = server.run();
        self.handle = Some(server.handle());
        tokio::spawn(server);
    }

    /// Stops serving: connections are refused until [`Receiver::start`].
    pub async fn stop(&mut self) {
        if let Some(handle) = self.handle.take() {
            handle.stop(false).await;
        }
    }
}

impl<S: Api> Drop for Receiver<S> {
    fn drop(&mut self) {
        if let Some(handle) = self.handle.take() {
            // Stopping is asynchronous; the server task ends on its own.
            drop(handle.stop(false));
        }
    }
}

/// An error body in the shape most JSON APIs use, for receivers that validate input.
pub fn bad_request(message: &str) -> HttpResponse {
    HttpResponse::BadRequest().json(serde_json::json!({"message": message}))
}

/// Checks HTTP Basic credentials: `Some(user, password)` if present and well-formed.
pub fn basic_auth(req: &HttpRequest) -> Option<(String, String)> {
    use base64::Engine as _;
    let value = req.headers().get("authorization")?.to_str().ok()?;
    let encoded = value.strip_prefix("Basic ")?;
    let decoded = base64::engine::general_purpose::STANDARD.decode(encoded).ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (user, password) = text.split_once(':')?;
    Some((user.to_owned(), password.to_owned()))
}

/// The bearer token, if any.
pub fn bearer(req: &HttpRequest) -> Option<String> {
    let value = req.headers().get("authorization")?.to_str().ok()?;
    value.strip_prefix("Bearer ").map(str::to_owned)
}

pub mod autotask;
pub mod connectwise;
pub mod entra;
pub mod halopsa;
pub mod jira;
pub mod pagerduty;
pub mod servicenow;
pub mod slack;
pub mod teams;
pub mod webhook;
