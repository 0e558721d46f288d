//! `wbd-bench`: see `BENCHMARKS.md` at the workspace root.

use std::process::ExitCode;

use clap::Parser as _;
use wbd_bench::cli::Args;
use wbd_bench::deploy::target_dir;

fn main() -> ExitCode {
    let args = Args::parse();
    let command = std::env::args().collect::<Vec<_>>().join(" ");
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: starting the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let out = args.out.clone();
    let report = match runtime.block_on(wbd_bench::run::run(args, command)) {
        Ok(report) => report,
        Err(e) => {
            eprintln!("error: {e:#}");
            return ExitCode::FAILURE;
        }
    };
    println!("{}", report.table());
    let latest = target_dir().join("bench").join("latest.json");
    for path in std::iter::once(latest).chain(out) {
        match report.write_json(&path) {
            Ok(()) => eprintln!("[wbd-bench] wrote {}", path.display()),
            Err(e) => {
                eprintln!("error: writing {}: {e:#}", path.display());
                return ExitCode::FAILURE;
            }
        }
    }
    if report.phases.iter().any(|p| p.error.is_some()) {
        eprintln!("[wbd-bench] some phases failed; see FAILED above");
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}
