//! The command line: `enroll`, `run` and `probe`, their arguments, exit codes, logging and
//! signal handling. Everything else lives in the library modules this one calls.
//!
//! Exit codes: 0 success; 1 the work could not be done (enrollment refused, batches left
//! undelivered, a failing verdict); 2 bad configuration or arguments; 3 (`probe`) nothing failed
//! but a probe could not read what it checks, so the verdicts are incomplete.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use tokio::sync::watch;
use wbd_rules::{CollectorState, FactInput, Lang, TenantFacts};
use wbd_wire::{ProbeKind, ProbeResult};

use crate::config::{self, Settings};
use crate::enroll::{self, EnrollOptions};
use crate::probe::ProbeSet;
use crate::push::Holdup;
use crate::report;
use crate::run::Collector;

/// Writeback Doctor collector: checks what Entra SSPR password writeback needs from this site
/// and reports it to the Writeback Doctor server.
#[derive(Debug, Parser)]
#[command(name = "wbd-collector", version)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
    #[command(flatten)]
    pub logging: LogArgs,
}

/// Where the log goes and in what form (every command).
#[derive(Debug, Args)]
pub struct LogArgs {
    /// `text` (for people) or `json` (one JSON object per line, for a log collector).
    #[arg(long, global = true, env = "WBD_COLLECTOR_LOG_FORMAT", default_value = "text", value_parser = ["text", "json"])]
    pub log_format: String,
    /// Write the log to files instead of stderr (a Windows service has no console): a new file
    /// each day, named after this one with the date (`collector.log` → `collector.2026-12-06.log`).
    #[arg(long, global = true, env = "WBD_COLLECTOR_LOG_FILE")]
    pub log_file: Option<PathBuf>,
    /// Daily log files kept beside the current one; older ones are deleted.
    #[arg(long, global = true, env = "WBD_COLLECTOR_LOG_KEEP", default_value_t = 14, value_parser = clap::value_parser!(u16).range(1..=366))]
    pub log_keep: u16,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Register this collector with the server, using a one-time enrollment token.
    Enroll(EnrollArgs),
    /// Probe on a schedule and push the results (the service mode).
    Run(RunArgs),
    /// Run every configured probe once, print a readable report and the verdicts the server
    /// would give; no server needed.
    Probe(ProbeArgs),
    /// Run as a Windows service (the command line the installed service uses; Windows only).
    Service(ServiceArgs),
}

#[derive(Debug, Args)]
pub struct ServiceArgs {
    /// The TOML configuration file.
    #[arg(long, env = "WBD_COLLECTOR_CONFIG")]
    pub config: PathBuf,
}

#[derive(Debug, Args)]
pub struct EnrollArgs {
    /// The server's base URL, e.g. https://wbd.example.com (http:// only to loopback).
    #[arg(long)]
    pub server: String,
    /// The one-time enrollment token (or set WBD_COLLECTOR_ENROLL_TOKEN, which keeps it out of
    /// the process list).
    #[arg(long, env = "WBD_COLLECTOR_ENROLL_TOKEN", hide_env_values = true)]
    pub token: String,
    /// Where to keep the identity and the spool [default: /var/lib/wbd-collector, or
    /// %ProgramData%\WritebackDoctor\collector on Windows].
    #[arg(long, env = "WBD_COLLECTOR_STATE_DIR")]
    pub state_dir: Option<PathBuf>,
    /// PEM file with an extra CA to trust for the server connection.
    #[arg(long)]
    pub server_ca: Option<PathBuf>,
    /// Replace an existing identity.
    #[arg(long)]
    pub force: bool,
    /// Host name to register [default: this machine's].
    #[arg(long)]
    pub hostname: Option<String>,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// The TOML configuration file.
    #[arg(long, env = "WBD_COLLECTOR_CONFIG")]
    pub config: PathBuf,
    /// Probe once, push everything, and exit (non-zero if batches remain).
    #[arg(long)]
    pub once: bool,
    /// With --once: how long to keep retrying a server that is unavailable.
    #[arg(long, default_value_t = 300, requires = "once")]
    pub retry_for_secs: u64,
}

#[derive(Debug, Args)]
pub struct ProbeArgs {
    /// Probe once (the only mode of this command; accepted for clarity).
    #[arg(long)]
    pub once: bool,
    /// The TOML configuration file [default: built-in endpoints and settings].
    #[arg(long, env = "WBD_COLLECTOR_CONFIG")]
    pub config: Option<PathBuf>,
    /// Print the results as JSON (the wire form) instead of text.
    #[arg(long)]
    pub json: bool,
    /// Run only these probes (comma-separated: endpoint, idle_connection, proxy,
    /// active_directory, connect_server, event_log, graph, script).
    #[arg(long, value_delimiter = ',', value_parser = parse_kind)]
    pub only: Vec<ProbeKind>,
    /// Skip these probes (e.g. `--skip idle_connection` to avoid its minutes-long holds).
    #[arg(long, value_delimiter = ',', value_parser = parse_kind)]
    pub skip: Vec<ProbeKind>,
    /// Language of the verdicts: en, pl or uk.
    #[arg(long, default_value = "en", value_parser = parse_lang)]
    pub lang: Lang,
}

fn parse_kind(s: &str) -> Result<ProbeKind, String> {
    ProbeKind::parse(s.trim()).ok_or_else(|| {
        let names: Vec<&str> = ProbeKind::ALL.iter().map(|k| k.as_str()).collect();
        format!("`{s}` is not a probe; use one of {}", names.join(", "))
    })
}

fn parse_lang(s: &str) -> Result<Lang, String> {
    Lang::from_tag(s).ok_or_else(|| format!("`{s}` is not a shipped language (en, pl, uk)"))
}

/// Logs go to stderr, or to daily files with `--log-file`; `RUST_LOG` filters them. The default
/// is `info`, except for `probe`, whose report already says everything the info lines would.
pub fn init_logging(cli: &Cli) {
    use std::io::IsTerminal;
    let default = if matches!(cli.command, Command::Probe(_)) { "warn" } else { "info" };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let json = cli.logging.log_format == "json";
    if let Some(path) = &cli.logging.log_file {
        match daily_log_files(path, cli.logging.log_keep) {
            Ok(files) => {
                let builder =
                    tracing_subscriber::fmt().with_env_filter(filter).with_writer(files).with_ansi(false);
                let _ = if json { builder.json().try_init() } else { builder.try_init() };
                return;
            }
            Err(e) => eprintln!("warning: --log-file {}: {e}; logging to stderr", path.display()),
        }
    }
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // Colour codes only on a terminal; a service's log file should stay plain text.
        .with_ansi(!json && std::io::stderr().is_terminal());
    let _ = if json { builder.json().try_init() } else { builder.try_init() };
}

/// Daily files beside `path`, named after it with the date (`collector.log` →
/// `collector.2026-12-06.log`), keeping `keep` of them (tracing-appender rotates and prunes).
fn daily_log_files(
    path: &std::path::Path,
    keep: u16,
) -> Result<tracing_appender::rolling::RollingFileAppender, String> {
    use tracing_appender::rolling::{Builder, Rotation};
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(std::path::Path::new("."));
    std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
    let stem = path.file_stem().and_then(|s| s.to_str()).filter(|s| !s.is_empty()).unwrap_or("collector");
    let mut builder =
        Builder::new().rotation(Rotation::DAILY).filename_prefix(stem).max_log_files(usize::from(keep) + 1);
    if let Some(ext) = path.extension().and_then(|e| e.to_str()) {
        builder = builder.filename_suffix(ext);
    }
    builder.build(dir).map_err(|e| e.to_string())
}

/// Runs one command to completion.
pub async fn execute(cli: Cli) -> ExitCode {
    match cli.command {
        Command::Enroll(args) => enroll_command(args).await,
        Command::Run(args) => run_command(args).await,
        Command::Probe(args) => probe_command(args).await,
        Command::Service(args) => service_command(args).await,
    }
}

#[cfg(windows)]
async fn service_command(args: ServiceArgs) -> ExitCode {
    let settings = match Settings::load(Some(&args.config)) {
        Ok(settings) => settings,
        Err(e) => {
            tracing::error!(error = %e, "bad configuration");
            return ExitCode::from(2);
        }
    };
    let collector = match Collector::start(settings) {
        Ok(collector) => collector,
        Err(e) => {
            tracing::error!(error = %e, "cannot start");
            return ExitCode::FAILURE;
        }
    };
    // The SCM calls the service's main on a thread of its own; the agent loop runs on this
    // runtime from there.
    let runtime = tokio::runtime::Handle::current();
    let body: crate::service::ServiceBody = Box::new(move |shutdown| {
        runtime.block_on(collector.run(shutdown));
        0
    });
    match tokio::task::spawn_blocking(move || crate::service::run(body)).await {
        Ok(Ok(())) => ExitCode::SUCCESS,
        Ok(Err(e)) => {
            tracing::error!(error = %e, "not started by the Service Control Manager");
            eprintln!(
                "error: `service` runs only as the installed Windows service ({e}); start it with \
                 `Start-Service {}`, or use `wbd-collector run` in a console",
                crate::service::SERVICE_NAME
            );
            ExitCode::FAILURE
        }
        Err(e) => {
            tracing::error!(error = %e, "the service thread failed");
            ExitCode::FAILURE
        }
    }
}

#[cfg(not(windows))]
async fn service_command(_args: ServiceArgs) -> ExitCode {
    eprintln!(
        "error: `service` is for Windows; on Linux run `wbd-collector run` under systemd (deploy/collector/wbd-collector.service)"
    );
    ExitCode::from(2)
}

async fn enroll_command(args: EnrollArgs) -> ExitCode {
    let server_ca = match &args.server_ca {
        Some(path) => match config::load_pem_certs(path) {
            Ok(certs) => certs,
            Err(e) => {
                eprintln!("error: --server-ca: {e}");
                return ExitCode::from(2);
            }
        },
        None => Vec::new(),
    };
    let state_dir = args.state_dir.unwrap_or_else(config::default_state_dir);
    let opts = EnrollOptions {
        server: args.server,
        token: args.token,
        state_dir: state_dir.clone(),
        server_ca,
        force: args.force,
        hostname: args.hostname,
    };
    match enroll::enroll(opts).await {
        Ok(identity) => {
            println!(
                "Enrolled: collector {} for tenant {}; identity saved in {}.",
                identity.collector_id,
                identity.tenant_id,
                state_dir.display()
            );
            println!(
                "Start it with `wbd-collector run --config FILE` where FILE sets state_dir = {:?}.",
                state_dir.display().to_string()
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run_command(args: RunArgs) -> ExitCode {
    let settings = match Settings::load(Some(&args.config)) {
        Ok(settings) => settings,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let collector = match Collector::start(settings) {
        Ok(collector) => collector,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    let shutdown = shutdown_on_signal();
    if !args.once {
        collector.run(shutdown).await;
        return ExitCode::SUCCESS;
    }
    let outcome = collector.run_once(Duration::from_secs(args.retry_for_secs), shutdown).await;
    if outcome.pending_batches == 0 {
        println!("Probed once ({} result(s)); everything was delivered.", outcome.cycle.probed);
        return ExitCode::SUCCESS;
    }
    let why = match outcome.holdup {
        Some(Holdup::Unauthorized) => {
            "the server refused this collector's credentials (revoked? re-enroll with --force; or is the clock off?)"
        }
        Some(Holdup::Throttled) => "the server asked us to wait longer than --retry-for-secs allows",
        Some(Holdup::Unavailable) => "the server could not be reached or failed",
        None => "the run was interrupted",
    };
    eprintln!(
        "error: {} batch(es) remain in the spool: {why}. They are kept and will be pushed by the next run.",
        outcome.pending_batches
    );
    ExitCode::FAILURE
}

async fn probe_command(args: ProbeArgs) -> ExitCode {
    let mut settings = match Settings::load(args.config.as_deref()) {
        Ok(settings) => settings,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    restrict_probes(&mut settings, &args.only, &args.skip);
    // No state directory: a one-off run reads a full window and leaves no bookmark behind.
    let probes = match ProbeSet::new(&settings, None) {
        Ok(probes) => std::sync::Arc::new(probes),
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    // Say that we wait only once a connection is actually held idle.
    let longest = settings.probes.idle_connection.holds.iter().max().map_or(0, |d| d.as_secs());
    let holds = probes.idle_holds();
    let lang = args.lang;
    let notice = tokio::spawn(async move {
        holds.notified().await;
        eprintln!("{}", report::texts::holding_idle(lang, longest));
    });
    let results = probes.run_all().await;
    notice.abort();
    let evaluations = wbd_rules::evaluate(&local_facts(&settings, &results));
    let unread = report::could_not_read(&results);
    if args.json {
        let unread_json: Vec<_> = unread
            .iter()
            .map(|(probe, subject, error)| serde_json::json!({"probe": probe, "subject": subject, "error": error}))
            .collect();
        let doc =
            serde_json::json!({ "results": results, "verdicts": evaluations, "could_not_read": unread_json });
        match serde_json::to_string_pretty(&doc) {
            Ok(json) => println!("{json}"),
            Err(e) => {
                eprintln!("error: cannot encode the results: {e}");
                return ExitCode::FAILURE;
            }
        }
    } else {
        print!("{}", report::render(&results, chrono::Utc::now()));
        println!();
        print!("{}", report::render_verdicts(&evaluations, args.lang));
        let unread_text = report::render_could_not_read(&unread, args.lang);
        if !unread_text.is_empty() {
            println!();
            print!("{unread_text}");
        }
    }
    if evaluations.iter().any(|e| e.outcome.is_fail()) {
        ExitCode::FAILURE
    } else if !unread.is_empty() {
        // Nothing failed, but something could not be checked: not a success.
        ExitCode::from(EXIT_COULD_NOT_READ)
    } else {
        ExitCode::SUCCESS
    }
}

/// `probe --once`: no verdict failed, but a probe could not read what it checks (no connection,
/// refused credentials, an unreadable export, a script that did not run).
pub const EXIT_COULD_NOT_READ: u8 = 3;

/// Applies `--only` / `--skip` to the probe schedules.
fn restrict_probes(settings: &mut Settings, only: &[ProbeKind], skip: &[ProbeKind]) {
    let keep = |kind: ProbeKind| (only.is_empty() || only.contains(&kind)) && !skip.contains(&kind);
    let p = &mut settings.probes;
    p.endpoint.enabled &= keep(ProbeKind::Endpoint);
    p.idle_connection.schedule.enabled &= keep(ProbeKind::IdleConnection);
    p.proxy.schedule.enabled &= keep(ProbeKind::Proxy);
    if let Some(ad) = &mut p.active_directory {
        ad.schedule.enabled &= keep(ProbeKind::ActiveDirectory);
    }
    if let Some(c) = &mut p.connect_server {
        c.schedule.enabled &= keep(ProbeKind::ConnectServer);
    }
    if let Some(e) = &mut p.event_log {
        e.schedule.enabled &= keep(ProbeKind::EventLog);
    }
    if let Some(g) = &mut p.graph {
        g.schedule.enabled &= keep(ProbeKind::Graph);
    }
    for s in &mut p.scripts {
        s.schedule.enabled &= keep(ProbeKind::Script);
    }
}

/// This machine's results as the facts of a one-collector tenant, as the server would see them
/// right after a push.
fn local_facts(settings: &Settings, results: &[ProbeResult]) -> TenantFacts {
    let now = chrono::Utc::now();
    let id = uuid::Uuid::nil();
    let interval = settings.probe_interval.as_secs();
    let collector = CollectorState {
        id,
        name: crate::host::hostname(),
        active: true,
        last_seen_at: Some(now),
        silent_after: Some(
            now + chrono::Duration::seconds(i64::try_from(interval * 3).unwrap_or(i64::MAX / 2)),
        ),
        push_interval_secs: u32::try_from(interval).unwrap_or(u32::MAX),
    };
    let facts = results
        .iter()
        .map(|r| FactInput {
            collector_id: id,
            subject: r.subject.clone(),
            observed_at: r.observed_at,
            output: r.output.clone(),
        })
        .collect();
    TenantFacts { now, collectors: vec![collector], facts }
}

/// A channel that turns true on Ctrl-C or SIGTERM (and on Windows when the console closes or
/// the system shuts down).
pub fn shutdown_on_signal() -> watch::Receiver<bool> {
    let (tx, rx) = watch::channel(false);
    tokio::spawn(async move {
        wait_for_signal().await;
        tracing::info!("shutdown requested: finishing the current step");
        let _ = tx.send(true);
        // Keep the sender alive, so receivers never mistake its drop for anything.
        std::future::pending::<()>().await;
    });
    rx
}

async fn wait_for_signal() {
    let ctrl_c = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::warn!(error = %e, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let other = async {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                term.recv().await;
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(windows)]
    let other = async {
        use tokio::signal::windows::{ctrl_close, ctrl_shutdown};
        match (ctrl_close(), ctrl_shutdown()) {
            (Ok(mut close), Ok(mut shutdown)) => {
                tokio::select! {
                    _ = close.recv() => {}
                    _ = shutdown.recv() => {}
                }
            }
            _ => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(any(unix, windows)))]
    let other = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = other => {}
    }
}
