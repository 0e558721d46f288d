//! `wbd-worker`: the worker process of the distributed deployment (PostgreSQL + RabbitMQ). Run as
//! many as needed; each hosts evaluation consumers on the shared queue, the sweeps and the
//! delivery engine (`wbd_platform::background`), and, when `worker.listen` is set, serves its
//! health for an orchestrator.

mod health;

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use tokio_util::sync::CancellationToken;
use wbd_platform::Settings;

/// The allocator: glibc's malloc spent about a third of the worker's CPU under load (arena
/// locks, `malloc_consolidate`), on the many short-lived allocations of rows and JSON values.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(name = "wbd-worker", version, about = "Writeback Doctor worker")]
struct Cli {
    /// TOML settings file (also WBD_CONFIG).
    #[arg(long, global = true)]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the worker (the default).
    Run,
    /// Ask this host's worker (at `worker.listen`) whether it is healthy: exit 0 if so, 1 if not.
    /// For a container HEALTHCHECK or an exec probe; needs no shell or other tool.
    Healthcheck,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let settings = Settings::load(cli.config.as_deref())?;
    if let Some(Command::Healthcheck) = cli.command {
        return healthcheck(&settings);
    }
    let _telemetry = wbd_platform::telemetry::init(&settings.telemetry, "wbd-worker")?;
    let runtime =
        tokio::runtime::Builder::new_multi_thread().enable_all().build().context("starting the runtime")?;
    let result = runtime.block_on(run(settings));
    if let Err(e) = &result {
        tracing::error!(error = ?e, "wbd-worker stopped with an error");
    }
    result
}

async fn run(settings: Settings) -> anyhow::Result<()> {
    wbd_platform::metrics::install();
    let (store, queue) = wbd_platform::open_backends(&settings).await?;
    let cancel = CancellationToken::new();
    let health = match settings.worker.listen.as_str() {
        "" => None,
        listen => Some(
            health::serve(listen, store.clone(), queue.clone())
                .with_context(|| format!("serving health on worker.listen {listen}"))?,
        ),
    };
    let mut tasks = wbd_platform::background::spawn(store, queue, &settings, cancel.clone())?;
    tracing::info!(concurrency = settings.worker.concurrency, "wbd-worker running");
    wbd_platform::shutdown_signal().await;
    tracing::info!("shutting down: finishing evaluations in progress");
    cancel.cancel();
    while tasks.join_next().await.is_some() {}
    if let Some(server) = health {
        server.stop(true).await;
    }
    Ok(())
}

fn healthcheck(settings: &Settings) -> anyhow::Result<()> {
    let listen = settings.worker.listen.as_str();
    anyhow::ensure!(!listen.is_empty(), "worker.listen is not set: this worker serves no health endpoint");
    let url = wbd_platform::health::local_url(listen.parse()?, false, "/readyz");
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    runtime.block_on(wbd_platform::health::check(&url, Duration::from_secs(5)))?;
    println!("healthy: {url}");
    Ok(())
}
