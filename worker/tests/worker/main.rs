//! The `wbd-worker` binary as an operator meets it: it refuses bad settings and unreachable
//! backends with a message that says what is wrong, instead of starting half-configured.
//! (What it hosts is tested where it lives — evaluation in `wbd-findings`, delivery in
//! `wbd-delivery` — and, against real PostgreSQL and RabbitMQ, by the wbd-api distributed suite,
//! which starts this binary.)

use std::process::Command;

fn worker() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_wbd-worker"));
    cmd.env_remove("DATABASE_URL").env_remove("AMQP_URL").env_remove("WBD_CONFIG").env("RUST_LOG", "error");
    cmd
}

#[test]
fn a_bad_setting_stops_the_worker_and_names_the_setting() {
    let out = worker().env("WBD_WORKER__CONCURRENCY", "0").output().expect("wbd-worker runs");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("worker.concurrency"), "{stderr}");
}

#[test]
fn an_unreachable_database_stops_the_worker_with_a_clear_error() {
    let out = worker()
        .env("DATABASE_URL", "postgres://postgres@127.0.0.1:1/wbd")
        .output()
        .expect("wbd-worker runs");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("opening the database"), "{stderr}");
    assert!(stderr.contains("127.0.0.1:1"), "the message names where it tried: {stderr}");
}

#[test]
fn a_missing_config_file_is_named() {
    let out = worker().args(["--config", "/nonexistent/wbd.toml"]).output().expect("wbd-worker runs");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("/nonexistent/wbd.toml"), "{stderr}");
}
