//! What `wbd-api` and `wbd-worker` share at start-up: the typed settings tree, telemetry,
//! opening the store and the queue the settings name, and the background work a worker host
//! runs ([`background`], [`retention`]).

pub mod background;
pub mod graph_apps;
pub mod graph_reader;
pub mod health;
pub mod metrics;
pub mod retention;
pub mod settings;
pub mod telemetry;

use std::sync::Arc;

use wbd_queue::{Queue, QueueKind};
use wbd_store::Store;

pub use settings::Settings;

/// Opens the store (applying migrations) and the queue named by the settings.
pub async fn open_backends(settings: &Settings) -> anyhow::Result<(Arc<dyn Store>, Queue)> {
    use anyhow::Context as _;
    let store = wbd_store::connect(&settings.database.url, settings.database.max_connections)
        .await
        .with_context(|| format!("opening the database {}", settings.database.redacted_url()))?;
    let kind = match settings.queue.amqp_url.as_str() {
        "" => QueueKind::Local,
        url => QueueKind::Amqp { url: url.to_owned() },
    };
    let queue = Queue::open(kind, settings.queue.to_queue_settings(), store.clone())
        .await
        .context("opening the queue")?;
    Ok((store, queue))
}

/// Resolves on Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::error!(error = %e, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = term => {}
    }
}
