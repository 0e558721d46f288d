//! The `wbd-collector` binary as an operator runs it.

use std::process::{Command, Output, Stdio};
use std::time::Duration;

use crate::helpers::*;
use crate::run::Site;

fn collector() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_wbd-collector"));
    cmd.env_remove("RUST_LOG").env("NO_COLOR", "1");
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("WBD_COLLECTOR_") {
            cmd.env_remove(name);
        }
    }
    cmd
}

async fn output(mut cmd: Command) -> Output {
    tokio::task::spawn_blocking(move || cmd.output().unwrap()).await.unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[tokio::test]
async fn probe_once_prints_a_readable_report() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new("WBD CLI Test CA");
    let trusted = spawn_tls_server(ca.leaf("passwordreset.test")).await;
    let untrusted = spawn_tls_server(TestCa::new("Inspection CA").leaf("relay.test")).await;
    let untrusted_port = untrusted.port();
    let ca_file = ca.write_pem(dir.path());
    let config = dir.path().join("probe.toml");
    std::fs::write(
        &config,
        format!(
            r#"
extra_trusted_ca_files = [{ca_file:?}]
[probes.idle_connection]
enabled = false
[probes.proxy]
enabled = false
[[endpoints]]
host = "127.0.0.1"
port = {}
role = "password_reset"
server_name = "localhost"
[[endpoints]]
host = "127.0.0.1"
port = {}
role = "service_bus_relay"
server_name = "localhost"
"#,
            trusted.port(),
            untrusted.port()
        ),
    )
    .unwrap();

    let mut cmd = collector();
    cmd.args(["probe", "--once", "--config"]).arg(&config);
    let out = output(cmd).await;

    let stdout = text(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(1),
        "an untrusted chain is a problem\n{stdout}\n{}",
        text(&out.stderr)
    );
    assert!(stdout.contains(&format!("127.0.0.1:{}  (password_reset)  OK", trusted.port())), "{stdout}");
    assert!(stdout.contains("TLSv1.3"), "{stdout}");
    assert!(stdout.contains("issuer   CN=WBD CLI Test CA"), "{stdout}");
    assert!(stdout.contains("REACHABLE, CERTIFICATE NOT TRUSTED"), "{stdout}");
    assert!(stdout.contains("issuer   CN=Inspection CA"), "{stdout}");
    assert!(stdout.contains("expires in"), "{stdout}");
    assert!(stdout.contains("1 of 2 endpoints have a problem"), "{stdout}");
    assert!(stdout.contains("Verdicts (the rules the server applies):"), "{stdout}");
    assert!(stdout.contains("FAIL"), "{stdout}");

    let mut cmd = collector();
    cmd.args(["probe", "--json", "--config"]).arg(&config);
    let out = output(cmd).await;
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let results: Vec<wbd_wire::ProbeResult> = serde_json::from_value(doc["results"].clone()).unwrap();
    assert_eq!(results.len(), 2);
    // The server's verdict on the untrusted chain, from the same rule pack.
    let verdicts = doc["verdicts"].as_array().unwrap();
    let untrusted = verdicts
        .iter()
        .find(|v| v["rule_id"] == "endpoint-tls-trusted" && v["outcome"]["result"] == "fail")
        .unwrap_or_else(|| panic!("no failing endpoint-tls-trusted verdict in {verdicts:#?}"));
    assert!(untrusted["subject"].as_str().unwrap().starts_with(&format!("127.0.0.1:{untrusted_port}@")));
}

#[tokio::test]
async fn a_bad_config_names_the_setting_and_exits_2() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("bad.toml");
    std::fs::write(&config, "state_dir = \"s\"\nprobe_intervall_secs = 60\n").unwrap();
    let mut cmd = collector();
    cmd.args(["run", "--config"]).arg(&config);
    let out = output(cmd).await;
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("probe_intervall_secs"), "{}", text(&out.stderr));

    std::fs::write(&config, "state_dir = \"s\"\nconnect_timeout_secs = 0\n").unwrap();
    let mut cmd = collector();
    cmd.args(["run", "--config"]).arg(&config);
    let out = output(cmd).await;
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("setting `connect_timeout_secs`"), "{}", text(&out.stderr));
}

#[tokio::test]
async fn run_without_enrollment_says_how_to_enroll() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("c.toml");
    std::fs::write(&config, "state_dir = \"state\"\n").unwrap();
    let mut cmd = collector();
    cmd.args(["run", "--once", "--config"]).arg(&config);
    let out = output(cmd).await;
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("wbd-collector enroll"), "{}", text(&out.stderr));
}

#[tokio::test]
async fn enroll_then_run_once_through_the_binary() {
    let server = MockServer::start(Reply::new(202)).await;
    server.script([crate::enroll::enrolled(uuid::Uuid::new_v4(), uuid::Uuid::new_v4())]);
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");

    let mut cmd = collector();
    cmd.args(["enroll", "--server", &server.base_url, "--state-dir"])
        .arg(&state)
        .env("WBD_COLLECTOR_ENROLL_TOKEN", "secret-token");
    let out = output(cmd).await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("Enrolled"), "{}", text(&out.stdout));

    let mut cmd = collector();
    cmd.args(["enroll", "--server", &server.base_url, "--token", "x", "--state-dir"]).arg(&state);
    let out = output(cmd).await;
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("--force"), "{}", text(&out.stderr));

    let port = closed_port().await;
    let config = dir.path().join("c.toml");
    std::fs::write(
        &config,
        format!(
            "state_dir = \"state\"\n[probes.idle_connection]\nenabled = false\n[[endpoints]]\nhost = \"127.0.0.1\"\nport = {port}\nrole = \"other\"\n"
        ),
    )
    .unwrap();
    let mut cmd = collector();
    cmd.args(["run", "--once", "--config"]).arg(&config);
    let out = output(cmd).await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    let pushes: Vec<_> = server.requests().into_iter().filter(|r| r.path == wbd_wire::INGEST_PATH).collect();
    assert_eq!(pushes.len(), 1);
}

#[cfg(unix)]
#[tokio::test]
async fn sigterm_stops_the_service_cleanly() {
    let server = MockServer::start(Reply::new(202)).await;
    let site = Site::enrolled_with(&server).await;
    let mut child = collector()
        .args(["run", "--config"])
        .arg(&site.config)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();

    server.wait_for_requests(2).await; // the enrollment and the first push
    let killed = Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    assert!(killed.success());

    let mut status = None;
    for _ in 0..500 {
        if let Some(s) = child.try_wait().unwrap() {
            status = Some(s);
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let Some(status) = status else {
        let _ = child.kill();
        panic!("the collector did not stop after SIGTERM");
    };
    let mut stderr = String::new();
    std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut stderr).unwrap();
    assert!(status.success(), "{status:?}\n{stderr}");
    assert!(stderr.contains("shutdown requested"), "{stderr}");
    assert!(stderr.contains("collector stopped"), "{stderr}");
}

/// Writes a probe-only config for these endpoints (`(port, server name)`, all password reset
/// endpoints) that trusts `ca`, with the slow probes off.
fn endpoints_config(dir: &std::path::Path, ca: &TestCa, endpoints: &[(u16, &str)]) -> std::path::PathBuf {
    let ca_file = ca.write_pem(dir);
    let mut text = format!(
        "extra_trusted_ca_files = [{ca_file:?}]\n[probes.idle_connection]\nenabled = false\n[probes.proxy]\nenabled = false\n"
    );
    for (port, name) in endpoints {
        text.push_str(&format!(
            "[[endpoints]]\nhost = \"127.0.0.1\"\nport = {port}\nrole = \"password_reset\"\nserver_name = \"{name}\"\n"
        ));
    }
    let config = dir.join("tls.toml");
    std::fs::write(&config, text).unwrap();
    config
}

/// The verdict block of one subject in `probe --once` output: its FAIL line and the text below.
fn verdict_of<'a>(stdout: &'a str, subject: &str) -> &'a str {
    let start = stdout
        .lines()
        .position(|l| l.contains("FAIL") && l.contains(subject))
        .unwrap_or_else(|| panic!("no failing verdict for {subject}:\n{stdout}"));
    let lines: Vec<&str> = stdout.lines().collect();
    let end = (start + 1..lines.len()).find(|i| !lines[*i].starts_with("           ")).unwrap_or(lines.len());
    let from = stdout.find(lines[start]).unwrap_or(0);
    let to = if end < lines.len() {
        stdout[from..].find(lines[end]).map_or(stdout.len(), |i| from + i)
    } else {
        stdout.len()
    };
    &stdout[from..to]
}

#[tokio::test]
async fn tls_verdicts_say_what_is_wrong_and_keep_inspection_for_re_signed_chains() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new("WBD Public-like Root CA");
    // Issued by the trusted CA, but expired.
    let expired = spawn_tls_server(ca.expired_leaf("passwordreset.test")).await;
    // Issued by the trusted CA for localhost, asked for under another name.
    let wrong_name = spawn_tls_server(ca.leaf("localhost")).await;
    // Re-signed by a CA the collector does not trust: what an inspecting device does.
    let re_signed = spawn_tls_server(TestCa::new("Contoso Inspection CA").leaf("localhost")).await;
    let config = endpoints_config(
        dir.path(),
        &ca,
        &[
            (expired.port(), "localhost"),
            (wrong_name.port(), "passwordreset.example"),
            (re_signed.port(), "localhost"),
        ],
    );

    let mut cmd = collector();
    cmd.args(["probe", "--once", "--config"]).arg(&config);
    let out = output(cmd).await;
    let stdout = text(&out.stdout);

    let expired = verdict_of(&stdout, &format!("127.0.0.1:{}", expired.port()));
    assert!(expired.contains("expired on 2021-01-01"), "{expired}");
    assert!(
        !expired.to_lowercase().contains("inspect"),
        "an expired certificate is not inspection: {expired}"
    );
    let wrong = verdict_of(&stdout, &format!("127.0.0.1:{}", wrong_name.port()));
    assert!(wrong.contains("is not valid for the name asked for"), "{wrong}");
    assert!(wrong.contains("\"passwordreset.example\""), "names the name: {wrong}");
    assert!(!wrong.to_lowercase().contains("inspect"), "a wrong name is not inspection: {wrong}");
    let inspected = verdict_of(&stdout, &format!("127.0.0.1:{}", re_signed.port()));
    assert!(inspected.contains("Contoso Inspection CA"), "{inspected}");
    assert!(inspected.contains("TLS inspection"), "a re-signed chain is inspection: {inspected}");
}

#[tokio::test]
async fn probe_once_does_not_pass_when_a_probe_could_not_read() {
    let dir = tempfile::tempdir().unwrap();
    let port = closed_port().await;
    let config = dir.path().join("ad.toml");
    std::fs::write(
        &config,
        format!(
            "[probes.active_directory]\nurl = \"ldaps://127.0.0.1:{port}\"\nconnector_account = \"MSOL_x\"\n"
        ),
    )
    .unwrap();

    let mut cmd = collector();
    cmd.args(["probe", "--once", "--only", "active_directory", "--config"]).arg(&config);
    let out = output(cmd).await;

    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(3), "nothing failed, but AD could not be read\n{stdout}");
    assert!(stdout.contains("Could not check"), "{stdout}");
    assert!(
        stdout.contains(&format!("active_directory ldap:ldaps://127.0.0.1:{port}: Connect:")),
        "{stdout}"
    );
}

#[tokio::test]
async fn probe_once_speaks_to_the_person_at_the_site_in_their_language() {
    let dir = tempfile::tempdir().unwrap();
    let closed = closed_port().await;
    let config = dir.path().join("site.toml");
    std::fs::write(
        &config,
        format!(
            "[probes.idle_connection]\nholds_secs = [1]\n[probes.proxy]\nenabled = false\n\
             [[endpoints]]\nhost = \"127.0.0.1\"\nport = {closed}\nrole = \"password_reset\"\n"
        ),
    )
    .unwrap();

    let mut cmd = collector();
    cmd.args(["probe", "--once", "--lang", "pl", "--config"]).arg(&config);
    let out = output(cmd).await;

    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    // Rule titles in Polish, a failure named by its problem.
    assert!(stdout.contains("Punkt końcowy zapisu zwrotnego jest nieosiągalny"), "{stdout}");
    assert!(stdout.contains("Werdykty"), "{stdout}");
    // No collector id on subjects.
    assert!(stdout.contains(&format!("127.0.0.1:{closed}")) && !stdout.contains("@0000"), "{stdout}");
    // Probes that did not run here are not "to be enabled on a collector of this tenant".
    assert!(stdout.contains("Nie sprawdzono tutaj: sonda active_directory"), "{stdout}");
    assert!(!stdout.contains("kolektorze tej dzierżawy"), "{stdout}");
    // No connection opened, so nothing was held idle, and no waiting was announced.
    assert!(!stderr.contains("Utrzymuję") && !stderr.contains("Holding"), "{stderr}");

    // Where a connection is held, the wait is announced.
    let ca = TestCa::new("WBD CLI Test CA");
    let server = crate::peers::spawn_https_responder(ca.leaf("relay.test")).await;
    let ca_file = ca.write_pem(dir.path());
    std::fs::write(
        &config,
        format!(
            "extra_trusted_ca_files = [{ca_file:?}]\n[probes.idle_connection]\nholds_secs = [1]\n[probes.proxy]\nenabled = false\n\
             [[endpoints]]\nhost = \"127.0.0.1\"\nport = {}\nrole = \"service_bus_relay\"\nserver_name = \"localhost\"\n",
            server.port()
        ),
    )
    .unwrap();
    let mut cmd = collector();
    cmd.args(["probe", "--once", "--config"]).arg(&config);
    let out = output(cmd).await;
    assert!(text(&out.stderr).contains("Holding idle connections for up to 1 s"), "{}", text(&out.stderr));
}

/// `--log-file` writes daily files named after it, keeps `--log-keep` of them, and
/// `--log-format json` makes each line one JSON object (for a log collector).
#[tokio::test]
async fn logs_go_to_daily_json_files_and_old_ones_are_pruned() {
    let dir = tempfile::tempdir().unwrap();
    let logs = dir.path().join("logs");
    std::fs::create_dir_all(&logs).unwrap();
    for day in 1..=4 {
        std::fs::write(logs.join(format!("collector.2026-01-0{day}.log")), "old\n").unwrap();
    }
    std::fs::write(logs.join("collector.toml"), "# not a log\n").unwrap();
    let config = dir.path().join("probe.toml");
    let port = closed_port().await;
    std::fs::write(
        &config,
        format!(
            "[probes.idle_connection]\nenabled = false\n[probes.proxy]\nenabled = false\n\
             [[endpoints]]\nhost = \"127.0.0.1\"\nport = {port}\nrole = \"password_reset\"\n"
        ),
    )
    .unwrap();

    let mut cmd = collector();
    cmd.env("RUST_LOG", "debug")
        .args(["probe", "--once", "--config"])
        .arg(&config)
        .args(["--log-format", "json", "--log-keep", "2", "--log-file"])
        .arg(logs.join("collector.log"));
    let out = output(cmd).await;
    assert!(text(&out.stderr).is_empty(), "the log went to stderr: {}", text(&out.stderr));

    let today = logs.join(format!("collector.{}.log", chrono::Utc::now().format("%Y-%m-%d")));
    let written = std::fs::read_to_string(&today).unwrap_or_else(|e| panic!("{}: {e}", today.display()));
    assert!(!written.is_empty());
    for line in written.lines() {
        let entry: serde_json::Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
        assert!(entry["level"].is_string() && entry["fields"].is_object(), "{line}");
    }
    let mut names: Vec<String> = std::fs::read_dir(&logs)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    let kept = names.iter().filter(|n| n.starts_with("collector.") && n.ends_with(".log")).count();
    assert_eq!(kept, 3, "today's file and the 2 kept: {names:?}");
    assert!(names.contains(&"collector.toml".to_owned()), "only logs are pruned: {names:?}");
}
