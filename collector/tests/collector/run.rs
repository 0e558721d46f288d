//! The whole agent: enroll, probe real loopback endpoints, spool, push to a scripted server.

use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::sync::watch;
use uuid::Uuid;
use wbd_collector::config::Settings;
use wbd_collector::enroll::{EnrollOptions, enroll};
use wbd_collector::push::Holdup;
use wbd_collector::run::Collector;
use wbd_wire::{EndpointRole, ProbeOutput, ProbeStep};

use crate::enroll::enrolled;
use crate::helpers::*;
use crate::push::decode_batch;

/// A site: a state dir enrolled with `server`, a trusted TLS endpoint and a closed port.
pub struct Site {
    pub dir: tempfile::TempDir,
    pub config: PathBuf,
    pub tls_port: u16,
    pub closed_port: u16,
}

impl Site {
    pub async fn enrolled_with(server: &MockServer) -> Site {
        Self::enrolled(server, None).await
    }

    /// Enrolled with a server whose certificate `server_ca` issued (trusted via server_ca_file).
    pub async fn enrolled_with_ca(server: &MockServer, server_ca: &TestCa) -> Site {
        Self::enrolled(server, Some(server_ca)).await
    }

    async fn enrolled(server: &MockServer, server_ca: Option<&TestCa>) -> Site {
        init_test_log();
        let dir = tempfile::tempdir().unwrap();
        let ca = TestCa::new("WBD Site Test CA");
        let tls = spawn_tls_server(ca.leaf("passwordreset.test")).await;
        let closed = closed_port().await;
        let ca_file = ca.write_pem(dir.path());
        server.script([enrolled(Uuid::new_v4(), Uuid::new_v4())]);
        enroll(EnrollOptions {
            server: server.base_url.clone(),
            token: "t".into(),
            state_dir: dir.path().join("state"),
            server_ca: server_ca.map(|ca| vec![ca.cert.clone()]).unwrap_or_default(),
            force: false,
            hostname: None,
        })
        .await
        .unwrap();
        let config = dir.path().join("collector.toml");
        let mut text = site_config(dir.path(), &ca_file, tls.port(), closed);
        if let Some(server_ca) = server_ca {
            let path = server_ca.write_pem(dir.path());
            text = format!("server_ca_file = {:?}\n{text}", path.display().to_string());
        }
        std::fs::write(&config, text).unwrap();
        Site { dir, config, tls_port: tls.port(), closed_port: closed }
    }

    pub fn settings(&self) -> Settings {
        Settings::load(Some(&self.config)).unwrap()
    }

    pub fn pending_batch_files(&self) -> usize {
        std::fs::read_dir(self.dir.path().join("state/spool/batches")).unwrap().count()
    }
}

fn site_config(dir: &Path, ca_file: &Path, tls_port: u16, closed_port: u16) -> String {
    format!(
        r#"
state_dir = "state"
probe_interval_secs = 10
connect_timeout_secs = 5
retry_base_ms = 10
retry_cap_secs = 1
extra_trusted_ca_files = [{ca:?}]

[probes.idle_connection]
enabled = false
[probes.proxy]
enabled = false

[[endpoints]]
host = "127.0.0.1"
port = {tls_port}
role = "password_reset"
server_name = "localhost"

[[endpoints]]
host = "127.0.0.1"
port = {closed_port}
role = "service_bus_relay"
"#,
        ca = ca_file.strip_prefix(dir).unwrap().display().to_string(),
    )
}

fn ingest_requests(server: &MockServer) -> Vec<Recorded> {
    server.requests().into_iter().filter(|r| r.path == wbd_wire::INGEST_PATH).collect()
}

#[tokio::test]
async fn once_probes_spools_and_delivers_through_a_503() {
    let server = MockServer::start(Reply::new(202)).await;
    let site = Site::enrolled_with(&server).await;
    server.script([Reply::new(503).header("Retry-After", "0"), Reply::new(202)]);
    let collector = Collector::start(site.settings()).unwrap();
    let collector_id = collector.identity().collector_id;
    let (_tx, rx) = watch::channel(false);

    let outcome = collector.run_once(Duration::from_secs(30), rx).await;

    assert_eq!(outcome.pending_batches, 0, "{outcome:?}");
    assert_eq!(outcome.cycle.probed, 2);
    assert_eq!(outcome.cycle.spooled, 2);
    let pushes = ingest_requests(&server);
    assert_eq!(pushes.len(), 2);
    let batch = decode_batch(&pushes[1]);
    assert_eq!(batch, decode_batch(&pushes[0]));
    assert_eq!(batch.collector.push_interval_secs, 10);
    assert_eq!(batch.collector.version, env!("CARGO_PKG_VERSION"));
    assert_eq!(batch.results.len(), 2);
    let ProbeOutput::Endpoint(trusted) = &batch.results[0].output else { panic!("endpoint result expected") };
    assert_eq!(batch.results[0].subject, format!("127.0.0.1:{}", site.tls_port));
    assert_eq!(trusted.role, EndpointRole::PasswordReset);
    assert!(trusted.tls.as_ref().unwrap().chain_trusted, "{trusted:#?}");
    let ProbeOutput::Endpoint(closed) = &batch.results[1].output else { panic!("endpoint result expected") };
    assert_eq!(batch.results[1].subject, format!("127.0.0.1:{}", site.closed_port));
    assert_eq!(closed.failure.as_ref().unwrap().step, ProbeStep::Tcp);
    let token = pushes[0].headers["authorization"].strip_prefix("Bearer ").unwrap();
    assert_eq!(jsonwebtoken::decode_header(token).unwrap().kid, Some(collector_id.to_string()));
    assert_eq!(site.pending_batch_files(), 0);
}

#[tokio::test]
async fn once_stops_at_refused_credentials_and_keeps_the_batch() {
    let server = MockServer::start(Reply::problem(401, "Unauthorized", "revoked", "collector_revoked")).await;
    let site = Site::enrolled_with(&server).await;
    let (_tx, rx) = watch::channel(false);

    let outcome = Collector::start(site.settings()).unwrap().run_once(Duration::from_secs(30), rx).await;

    assert_eq!(outcome.pending_batches, 1);
    assert_eq!(outcome.holdup, Some(Holdup::Unauthorized));
    assert_eq!(ingest_requests(&server).len(), 1);
    assert_eq!(site.pending_batch_files(), 1);

    // The next start pushes the very same batch.
    server.script([Reply::new(202), Reply::new(202)]);
    let (_tx, rx) = watch::channel(false);
    let outcome = Collector::start(site.settings()).unwrap().run_once(Duration::from_secs(30), rx).await;
    assert_eq!(outcome.pending_batches, 0);
    let pushes = ingest_requests(&server);
    // Second run: its own cycle's results are sealed into a second batch behind the first.
    assert_eq!(pushes.len(), 3);
    assert_eq!(decode_batch(&pushes[0]).batch_id, decode_batch(&pushes[1]).batch_id);
    assert_ne!(decode_batch(&pushes[1]).batch_id, decode_batch(&pushes[2]).batch_id);
}

#[tokio::test]
async fn once_gives_up_after_its_retry_window_with_batches_kept() {
    let server = MockServer::start(Reply::new(202)).await;
    let site = Site::enrolled_with(&server).await;
    server.script(std::iter::repeat_n(Reply::new(502), 1000));
    let (_tx, rx) = watch::channel(false);

    let outcome = Collector::start(site.settings()).unwrap().run_once(Duration::from_millis(300), rx).await;

    assert_eq!(outcome.pending_batches, 1);
    assert_eq!(outcome.holdup, Some(Holdup::Unavailable));
    assert!(!ingest_requests(&server).is_empty());
}

#[tokio::test]
async fn the_loop_delivers_and_stops_on_request() {
    let server = MockServer::start(Reply::new(202)).await;
    let site = Site::enrolled_with(&server).await;
    let collector = Collector::start(site.settings()).unwrap();
    let (tx, rx) = watch::channel(false);
    let running = tokio::spawn(collector.run(rx));

    // Wait (bounded) for the first cycle's batch to be delivered.
    let mut delivered = false;
    for _ in 0..500 {
        if !ingest_requests(&server).is_empty() && site.pending_batch_files() == 0 {
            delivered = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(delivered, "the first cycle was not delivered");
    tx.send(true).unwrap();
    tokio::time::timeout(Duration::from_secs(10), running).await.expect("the loop stops").unwrap();
    assert_eq!(decode_batch(&ingest_requests(&server)[0]).results.len(), 2);
}
