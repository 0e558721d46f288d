//! `wbd-worker`: evaluation worker for the distributed deployment (PostgreSQL + RabbitMQ).
//! Run as many as needed; each consumes from the shared queue.

use std::path::PathBuf;

use anyhow::Context as _;
use clap::Parser;
use tokio_util::sync::CancellationToken;
use wbd_platform::Settings;

#[derive(Parser)]
#[command(name = "wbd-worker", version, about = "Writeback Doctor evaluation worker")]
struct Cli {
    /// TOML settings file (also WBD_CONFIG).
    #[arg(long)]
    config: Option<PathBuf>,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let settings = Settings::load(cli.config.as_deref())?;
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
    let (store, queue) = wbd_platform::open_backends(&settings).await?;
    let cancel = CancellationToken::new();
    let mut tasks = wbd_platform::background::spawn(store, queue, &settings, cancel.clone())?;
    tracing::info!(concurrency = settings.worker.concurrency, "wbd-worker running");
    wbd_platform::shutdown_signal().await;
    tracing::info!("shutting down: finishing evaluations in progress");
    cancel.cancel();
    while tasks.join_next().await.is_some() {}
    Ok(())
}
