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

/// A free loopback port (free when asked; the worker binds it right after).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Kills the worker when the test ends, however it ends.
struct Running(std::process::Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// GET `url` with a plain HTTP/1.1 request; the status code and body, or `None` if nothing
/// answers.
fn get(url: &str) -> Option<(u16, String)> {
    use std::io::{Read as _, Write as _};
    let rest = url.strip_prefix("http://")?;
    let (host, path) = rest.split_once('/')?;
    let mut stream = std::net::TcpStream::connect(host).ok()?;
    write!(stream, "GET /{path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n").ok()?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer).ok()?;
    let status = answer.split_whitespace().nth(1)?.parse().ok()?;
    let body = answer.split_once("\r\n\r\n").map(|(_, b)| b.to_owned()).unwrap_or_default();
    Some((status, body))
}

#[test]
fn the_worker_serves_its_health_and_healthcheck_reports_it() {
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", dir.path().join("wbd.db").display());
    let listen = format!("127.0.0.1:{}", free_port());
    let with_env = |mut cmd: Command| {
        cmd.env("DATABASE_URL", &db).env("WBD_WORKER__LISTEN", &listen);
        cmd
    };

    // Nothing listens yet: the healthcheck fails, and says where it asked.
    let out = with_env(worker()).arg("healthcheck").output().expect("wbd-worker runs");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains(&listen), "{out:?}");

    let child = with_env(worker()).stdout(std::process::Stdio::null()).spawn().expect("wbd-worker starts");
    let running = Running(child);
    let ready_url = format!("http://{listen}/readyz");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while get(&ready_url).map(|(status, _)| status) != Some(200) {
        assert!(std::time::Instant::now() < deadline, "the worker never became ready");
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let (status, body) = get(&format!("http://{listen}/healthz")).expect("liveness answers");
    assert_eq!(status, 200);
    let body: serde_json::Value = serde_json::from_str(&body).expect("JSON");
    assert_eq!(body["database"], "ok");
    assert_eq!(body["queue"], "ok");
    assert!(body["consumers"].as_u64().unwrap() >= 1, "{body}");

    // Its metrics: the consumers it runs, the queue, the database pool, in the text format.
    let (status, metrics) = get(&format!("http://{listen}/metrics")).expect("metrics answer");
    assert_eq!(status, 200);
    let value = |name: &str| {
        metrics
            .lines()
            .find_map(|line| line.strip_prefix(name).and_then(|rest| rest.strip_prefix(' ')))
            .and_then(|v| v.trim().parse::<f64>().ok())
            .unwrap_or_else(|| panic!("no {name} in\n{metrics}"))
    };
    assert!(value("wbd_consumers_active") >= 1.0);
    assert_eq!(value("wbd_queue_ready"), 1.0);
    assert_eq!(value("wbd_db_up"), 1.0);
    assert!(value("wbd_db_pool_max_connections") >= 1.0);
    assert!(metrics.contains("# TYPE wbd_consumers_active gauge"), "{metrics}");

    let out = with_env(worker()).arg("healthcheck").output().expect("wbd-worker runs");
    assert!(out.status.success(), "{out:?}");
    drop(running);
    let out = with_env(worker()).arg("healthcheck").output().expect("wbd-worker runs");
    assert!(!out.status.success(), "a stopped worker is not healthy");
}

#[test]
fn healthcheck_without_a_health_address_says_so() {
    let out = worker().arg("healthcheck").output().expect("wbd-worker runs");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("worker.listen"), "{out:?}");
}
