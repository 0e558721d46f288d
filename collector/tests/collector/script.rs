//! The script probe running real executables (shell scripts the test writes).
#![cfg(unix)]

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use wbd_collector::config::{Schedule, ScriptSettings};
use wbd_collector::probe::script::run_script;
use wbd_wire::{ProbeOutput, ScriptReport};

fn script(dir: &Path, name: &str, body: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

async fn run(program: PathBuf, args: &[&str], timeout: Duration) -> (String, ScriptReport) {
    let settings = ScriptSettings {
        schedule: Schedule { enabled: true, interval: Duration::from_secs(900), jitter_percent: 0 },
        name: "dc-ports".into(),
        program,
        args: args.iter().map(|a| (*a).to_owned()).collect(),
        timeout,
    };
    let result = run_script(&settings).await;
    match result.output {
        ProbeOutput::Script(report) => (result.subject, report),
        other => panic!("script result expected, got {other:?}"),
    }
}

#[tokio::test]
async fn json_on_stdout_is_the_value_and_arguments_are_passed() {
    let dir = tempfile::tempdir().unwrap();
    let program =
        script(dir.path(), "ok.sh", r#"echo "checking $1" >&2; printf '{"dc":"%s","open":[389,636]}' "$1""#);

    let (subject, r) = run(program, &["dc01.corp.example"], Duration::from_secs(10)).await;

    assert_eq!(subject, "script:dc-ports");
    assert_eq!((r.exit_code, r.timed_out, r.error.as_ref()), (Some(0), false, None));
    assert_eq!(r.value, Some(serde_json::json!({"dc": "dc01.corp.example", "open": [389, 636]})));
    assert_eq!(r.stderr_tail.as_deref(), Some("checking dc01.corp.example"));
}

#[tokio::test]
async fn failures_are_told_apart() {
    let dir = tempfile::tempdir().unwrap();

    let (_, r) = run(script(dir.path(), "text.sh", "echo all good"), &[], Duration::from_secs(10)).await;
    assert!(r.error.as_deref().unwrap().contains("not one JSON value"), "{r:?}");

    let (_, r) =
        run(script(dir.path(), "fail.sh", "echo '{\"ok\":false}'; exit 3"), &[], Duration::from_secs(10))
            .await;
    assert_eq!((r.exit_code, r.value.clone()), (Some(3), Some(serde_json::json!({"ok": false}))));
    assert!(r.error.as_deref().unwrap().contains("exited with code 3"), "{r:?}");

    let (_, r) = run(script(dir.path(), "slow.sh", "sleep 30; echo '{}'"), &[], Duration::from_secs(1)).await;
    assert!(r.timed_out, "{r:?}");
    assert_eq!(r.exit_code, None);
    assert!(r.error.as_deref().unwrap().contains("timeout_secs"), "{r:?}");

    let (_, r) = run(dir.path().join("missing.sh"), &[], Duration::from_secs(1)).await;
    assert!(r.error.as_deref().unwrap().contains("cannot start"), "{r:?}");
}
