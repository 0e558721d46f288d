//! The collector's footprint: binary size, CPU of a probe cycle, and resident memory when idle.
//!
//! The real `wbd-collector` release binary is enrolled against a local embedded `wbd-api` with
//! `wbd-collector enroll`, and probes two loopback TLS endpoints (a test CA it is told to trust),
//! like the collector's default configuration of two endpoints.
//! - CPU per probe cycle: `wbd-collector probe --once` run several times; its user + system CPU
//!   is read from this process's reaped-children times (`/proc/self/stat`), so it includes
//!   process start-up and reading the configuration.
//! - `run`: the service started with a one-day probe interval: it probes and pushes once at
//!   start, then idles. Its CPU up to the first push, then its resident memory (`VmRSS`) and
//!   CPU over an idle window.

use std::path::Path;
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DistinguishedName, DnType, IsCa, KeyPair};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio::net::TcpListener;
use tokio::process::Command;
use tokio_rustls::TlsAcceptor;

use crate::deploy::{Binaries, Deployment};
use crate::machine::{memory_kib, process_cpu_secs, reaped_children_cpu_secs};
use crate::sim::{Admin, http_client};

#[derive(Debug, Clone)]
pub struct Footprint {
    pub binary_bytes: u64,
    pub probe_runs: usize,
    pub probe_cpu_ms: f64,
    pub probe_wall_ms: f64,
    pub run_cpu_to_first_push_ms: f64,
    pub idle_rss_kib: u64,
    pub peak_rss_kib: u64,
    pub idle_window: Duration,
    pub idle_cpu_ms: f64,
}

pub async fn measure(
    bins: &Binaries,
    probe_runs: usize,
    settle: Duration,
    idle_window: Duration,
    ticks: u64,
) -> anyhow::Result<Footprint> {
    let binary_bytes = std::fs::metadata(&bins.collector)
        .with_context(|| format!("reading {}", bins.collector.display()))?
        .len();
    let deployment = Deployment::embedded(bins, "warn", Vec::new()).await?;
    let result = measure_with(bins, &deployment, probe_runs, settle, idle_window, ticks).await;
    deployment.teardown().await;
    let mut footprint = result?;
    footprint.binary_bytes = binary_bytes;
    Ok(footprint)
}

async fn measure_with(
    bins: &Binaries,
    deployment: &Deployment,
    probe_runs: usize,
    settle: Duration,
    idle_window: Duration,
    ticks: u64,
) -> anyhow::Result<Footprint> {
    let dir = deployment.dir.path().join("collector");
    std::fs::create_dir_all(&dir)?;
    let ca = TestCa::new("Writeback Doctor Bench Root")?;
    let ca_file = dir.join("bench-ca.pem");
    std::fs::write(&ca_file, ca.issuer.pem())?;
    let reset = TlsServer::start(&ca).await?;
    let relay = TlsServer::start(&ca).await?;
    let state = dir.join("state");
    let config = dir.join("collector.toml");
    std::fs::write(
        &config,
        format!(
            r#"state_dir = {state:?}
extra_trusted_ca_files = [{ca:?}]
probe_interval_secs = 86400
connect_timeout_secs = 5

# Its holds last up to three minutes; the footprint is measured without them.
[probes.idle_connection]
enabled = false

[[endpoints]]
host = "127.0.0.1"
port = {reset}
role = "password_reset"
server_name = "localhost"

[[endpoints]]
host = "127.0.0.1"
port = {relay}
role = "service_bus_relay"
server_name = "localhost"
"#,
            state = state.display().to_string(),
            ca = ca_file.display().to_string(),
            reset = reset.port,
            relay = relay.port,
        ),
    )?;

    // Enroll with the real binary.
    let client = http_client(2)?;
    let base = &deployment.bases[0];
    let key = deployment.bootstrap("Footprint MSP").await?;
    let admin = Admin::login(&client, base, &key).await?;
    let token = admin.enrollment_token(&client, "Footprint tenant").await?;
    let enrolled = collector(&bins.collector, &dir)
        .args(["enroll", "--server", base, "--state-dir"])
        .arg(&state)
        .env("WBD_COLLECTOR_ENROLL_TOKEN", token)
        .status()
        .await?;
    if !enrolled.success() {
        bail!("wbd-collector enroll failed ({enrolled}): {}", log_of(&dir));
    }

    // CPU of `probe --once`, from the reaped-children times around each run.
    let mut cpu = 0.0;
    let mut wall = Duration::ZERO;
    for _ in 0..probe_runs.max(1) {
        let before = reaped_children_cpu_secs(ticks);
        let started = Instant::now();
        let status = collector(&bins.collector, &dir)
            .args(["probe", "--once", "--json", "--skip", "idle_connection", "--config"])
            .arg(&config)
            .status()
            .await?;
        wall += started.elapsed();
        cpu += reaped_children_cpu_secs(ticks) - before;
        // Exit code 1 means "a check found a problem" (e.g. no proxy configured is reported as
        // a fact); 2 is a usage or configuration error.
        if status.code() == Some(2) || status.code().is_none() {
            bail!("wbd-collector probe --once failed ({status}): {}", log_of(&dir));
        }
    }
    let runs = probe_runs.max(1) as f64;

    // The service: one cycle and push at start, then idle.
    let facts_before = deployment.db.versions().await?.facts;
    let mut service = collector(&bins.collector, &dir)
        .args(["run", "--config"])
        .arg(&config)
        .kill_on_drop(true)
        .spawn()
        .context("starting wbd-collector run")?;
    let pid = service.id().context("the collector exited at once")?;
    let pushed_by = Instant::now() + Duration::from_secs(60);
    while deployment.db.versions().await?.facts <= facts_before {
        if let Some(status) = service.try_wait()? {
            bail!("wbd-collector run exited ({status}): {}", log_of(&dir));
        }
        if Instant::now() > pushed_by {
            bail!("wbd-collector run did not push within 60 s: {}", log_of(&dir));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let cpu_to_push = process_cpu_secs(pid, ticks).context("reading the collector's CPU")?;
    tokio::time::sleep(settle).await;
    let cpu_idle_start = process_cpu_secs(pid, ticks).context("reading the collector's CPU")?;
    tokio::time::sleep(idle_window).await;
    let cpu_idle_end = process_cpu_secs(pid, ticks).context("reading the collector's CPU")?;
    let (rss, hwm) = memory_kib(pid).context("reading the collector's memory")?;
    if let Some(status) = service.try_wait()? {
        bail!("wbd-collector run exited while idle ({status}): {}", log_of(&dir));
    }
    let _ = service.start_kill();
    let _ = service.wait().await;

    Ok(Footprint {
        binary_bytes: 0,
        probe_runs: probe_runs.max(1),
        probe_cpu_ms: cpu * 1_000.0 / runs,
        probe_wall_ms: wall.as_secs_f64() * 1_000.0 / runs,
        run_cpu_to_first_push_ms: cpu_to_push * 1_000.0,
        idle_rss_kib: rss,
        peak_rss_kib: hwm,
        idle_window,
        idle_cpu_ms: (cpu_idle_end - cpu_idle_start) * 1_000.0,
    })
}

fn collector(bin: &Path, dir: &Path) -> Command {
    let log = std::fs::OpenOptions::new().create(true).append(true).open(dir.join("collector.log"));
    let mut cmd = Command::new(bin);
    cmd.current_dir(dir)
        .env_remove("RUST_LOG")
        .env_remove("WBD_COLLECTOR_CONFIG")
        .env_remove("WBD_COLLECTOR_STATE_DIR")
        .stdin(Stdio::null())
        .stdout(Stdio::null());
    match log {
        Ok(file) => cmd.stderr(file),
        Err(_) => cmd.stderr(Stdio::null()),
    };
    cmd
}

fn log_of(dir: &Path) -> String {
    let text = std::fs::read_to_string(dir.join("collector.log")).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(10)..].join("\n")
}

impl Admin {
    /// A new tenant with a pending collector; returns its one-time enrollment token.
    pub async fn enrollment_token(&self, client: &reqwest::Client, tenant: &str) -> anyhow::Result<String> {
        let res = client
            .post(format!("{}/v1/tenants", self.base))
            .bearer_auth(&self.token)
            .json(&serde_json::json!({ "name": tenant }))
            .send()
            .await?
            .error_for_status()?;
        let tenant: serde_json::Value = res.json().await?;
        let id = tenant["id"].as_str().context("tenant id")?;
        let res = client
            .post(format!("{}/v1/tenants/{id}/collectors", self.base))
            .bearer_auth(&self.token)
            .json(&serde_json::json!({ "name": "footprint site" }))
            .send()
            .await?
            .error_for_status()?;
        let created: serde_json::Value = res.json().await?;
        Ok(created["enrollment_token"].as_str().context("enrollment token")?.to_owned())
    }
}

/// A CA for the loopback TLS endpoints.
struct TestCa {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

impl TestCa {
    fn new(name: &str) -> anyhow::Result<TestCa> {
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, name);
        params.distinguished_name = dn;
        Ok(TestCa { issuer: CertifiedIssuer::self_signed(params, KeyPair::generate()?)? })
    }

    fn leaf(&self) -> anyhow::Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)> {
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])?;
        params.distinguished_name.push(DnType::CommonName, "localhost");
        let cert = params.signed_by(&key, &self.issuer)?;
        let key_der = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
        Ok((vec![cert.der().clone(), self.issuer.der().clone()], key_der))
    }
}

/// A loopback TLS server that completes handshakes; stops when dropped.
struct TlsServer {
    port: u16,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for TlsServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl TlsServer {
    async fn start(ca: &TestCa) -> anyhow::Result<TlsServer> {
        let (chain, key) = ca.leaf()?;
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_single_cert(chain, key)?;
        let acceptor = TlsAcceptor::from(Arc::new(config));
        let listener = TcpListener::bind(("127.0.0.1", 0)).await?;
        let port = listener.local_addr()?.port();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else { continue };
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    // The probe closes right after the handshake; errors are expected.
                    let _ = acceptor.accept(stream).await;
                });
            }
        });
        Ok(TlsServer { port, task })
    }
}
