//! The `wbd-api` binary's operator commands: `migrate` and `healthcheck`, as a release job and a
//! container's HEALTHCHECK run them.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn api(db: &str) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_wbd-api"));
    cmd.env_remove("AMQP_URL")
        .env_remove("WBD_CONFIG")
        .env("DATABASE_URL", db)
        .env("RUST_LOG", "error")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    cmd
}

/// Kills the server when the test ends, however it ends.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn migrate_prepares_an_empty_database_and_can_run_again() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("wbd.db");
    let db = format!("sqlite://{}", file.display());
    for _ in 0..2 {
        let out = api(&db).arg("migrate").output().expect("wbd-api runs");
        assert!(out.status.success(), "{out:?}");
        assert!(String::from_utf8_lossy(&out.stdout).contains("migrations applied"), "{out:?}");
    }
    assert!(file.exists());
    let out = api(&db).args(["bootstrap", "--org-name", "Northwind MSP"]).output().expect("wbd-api runs");
    assert!(out.status.success(), "the migrated database is usable: {out:?}");
}

#[test]
fn healthcheck_answers_with_the_exit_code() {
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", dir.path().join("wbd.db").display());
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let listen = format!("127.0.0.1:{port}");
    let healthcheck =
        || api(&db).env("WBD_SERVER__LISTEN", &listen).arg("healthcheck").output().expect("wbd-api runs");
    assert!(!healthcheck().status.success(), "nothing listens yet");

    let server = api(&db)
        .env("WBD_SERVER__LISTEN", &listen)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("wbd-api starts");
    let running = Running(server);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let out = healthcheck();
        if out.status.success() {
            assert!(String::from_utf8_lossy(&out.stdout).contains(&listen), "{out:?}");
            break;
        }
        assert!(Instant::now() < deadline, "never healthy: {out:?}");
        std::thread::sleep(Duration::from_millis(200));
    }
    drop(running);
    assert!(!healthcheck().status.success(), "a stopped server is not healthy");
}

/// `check-config` says what the process would use and whether it can, changing nothing: the
/// SQLite file is not created, migrations are compared and not applied, secrets never shown.
#[test]
fn check_config_reports_every_check_hides_secrets_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("wbd.db");
    let db = format!("sqlite://{}", file.display());
    let key = "c2VjcmV0LWtleS0xMjM0NTY3ODkwMTIzNDU2Nzg5MDE=";

    let out = api(&db).arg("check-config").env("WBD_DELIVERY__SECRETS_KEY", key).output().expect("runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{out:?}");
    assert!(stdout.contains("no file yet") && stdout.ends_with("configuration ok\n"), "{stdout}");
    assert!(!stdout.contains(key) && stdout.contains("(set, hidden)"), "{stdout}");
    assert!(!file.exists(), "check-config created the database");

    let out = api(&db).arg("migrate").output().expect("runs");
    assert!(out.status.success(), "{out:?}");
    let out = api(&db).arg("check-config").output().expect("runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{out:?}");
    assert!(stdout.contains(" 0 to apply"), "{stdout}");

    // Each problem fails the run and is named; a password in a URL stays hidden.
    let out = api("postgres://wbd:hunter2@127.0.0.1:1/wbd")
        .arg("check-config")
        .env("WBD_SERVER__TRUSTED_PROXIES", r#"["10.0.0.0/33"]"#)
        .env("AMQP_URL", "amqp://wbd:hunter3@127.0.0.1:1/%2f")
        .output()
        .expect("runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    for failed in ["server.trusted_proxies", "delivery.secrets_key", "database", "queue"] {
        assert!(stdout.contains(&format!("FAIL  {failed}:")), "{failed} not failed:\n{stdout}");
    }
    assert!(!stdout.contains("hunter2") && !stdout.contains("hunter3"), "{stdout}");
}
