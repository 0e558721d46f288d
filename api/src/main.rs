//! `wbd-api`: the API server. With no configuration it serves API and worker in one process on
//! SQLite (`wbd.db`) at http://127.0.0.1:8080.

use std::path::PathBuf;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use wbd_platform::Settings;

/// The allocator: glibc's malloc spent about a third of the worker's CPU under load (arena
/// locks, `malloc_consolidate`), on the many short-lived allocations of rows and JSON values.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(name = "wbd-api", version, about = "Writeback Doctor API server")]
struct Cli {
    /// TOML settings file (also WBD_CONFIG).
    #[arg(long, global = true)]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the API (the default).
    Serve,
    /// Create an organisation and print its first org-admin API key.
    Bootstrap {
        /// The organisation (MSP) name.
        #[arg(long)]
        org_name: String,
    },
    /// Print the OpenAPI document (YAML).
    Openapi,
    /// Apply the database migrations and exit (every process also applies them at start-up,
    /// one at a time under a lock; this runs them once, e.g. as a release job).
    Migrate,
    /// Check the settings, the files and addresses they name, the database (migrations compared,
    /// nothing applied) and the broker, without serving; print the settings with secrets hidden.
    /// Exits 1 on any problem.
    CheckConfig,
    /// Ask this host's API (at `server.listen`) whether it is alive: exit 0 if so, 1 if not. For a
    /// container HEALTHCHECK or an exec probe; needs no shell or other tool.
    Healthcheck,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    if let Some(Command::Openapi) = cli.command {
        print!("{}", wbd_api::openapi::yaml()?);
        return Ok(());
    }
    let settings = Settings::load(cli.config.as_deref())?;
    if let Some(Command::Healthcheck) = cli.command {
        let tls = !settings.server.tls_cert_file.is_empty();
        let url = wbd_platform::health::local_url(settings.server.listen.parse()?, tls, "/healthz");
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        runtime.block_on(wbd_platform::health::check(&url, std::time::Duration::from_secs(5)))?;
        println!("healthy: {url}");
        return Ok(());
    }
    if let Some(Command::CheckConfig) = cli.command {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        let report = runtime.block_on(wbd_api::check_config::run(&settings));
        print!("{}", report.text);
        if !report.ok {
            std::process::exit(1);
        }
        return Ok(());
    }
    let _telemetry = wbd_platform::telemetry::init(&settings.telemetry, "wbd-api")?;
    let runtime =
        tokio::runtime::Builder::new_multi_thread().enable_all().build().context("starting the runtime")?;
    let result = runtime.block_on(async move {
        match cli.command {
            None | Some(Command::Serve) => {
                wbd_api::Application::build(settings).await?.run_until_stopped().await
            }
            Some(Command::Bootstrap { org_name }) => {
                let store = wbd_store::connect(&settings.database.url, 1)
                    .await
                    .with_context(|| format!("opening {}", settings.database.redacted_url()))?;
                let done = wbd_api::bootstrap::bootstrap(store.as_ref(), &org_name).await?;
                println!("organisation: {} ({})", done.organization.name, done.organization.id);
                println!("admin API key (shown once, store it safely):");
                println!("{}", done.secret);
                Ok(())
            }
            Some(Command::Migrate) => {
                wbd_store::connect(&settings.database.url, 1)
                    .await
                    .with_context(|| format!("migrating {}", settings.database.redacted_url()))?;
                println!("migrations applied: {}", settings.database.redacted_url());
                Ok(())
            }
            Some(Command::Openapi | Command::Healthcheck | Command::CheckConfig) => Ok(()),
        }
    });
    if let Err(e) = &result {
        tracing::error!(error = ?e, "wbd-api stopped with an error");
    }
    result
}
