//! The `wbd-collector` binary; see the library's `cli` module.

use std::process::ExitCode;

use clap::Parser;

#[tokio::main(worker_threads = 2)]
async fn main() -> ExitCode {
    let cli = wbd_collector::cli::Cli::parse();
    wbd_collector::cli::init_logging(&cli);
    // A safety net for code that asks rustls for the process default; our own TLS code names
    // its provider explicitly. An error only means one is installed already.
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    wbd_collector::cli::execute(cli).await
}
