//! The script probe: runs an executable the operator configured, with a timeout, and takes the
//! JSON value it prints on stdout as the result.
//!
//! The program runs directly (no shell), with its arguments as given, stdin closed, and the
//! collector's environment. It is killed when its timeout passes. Stdout is read up to 1 MiB;
//! the last 2 KiB of stderr are kept for the technician.

use std::process::Stdio;
use std::time::Instant;

use chrono::Utc;
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::process::Command;
use wbd_wire::{ProbeOutput, ProbeResult, ScriptReport};

use super::tls::millis;
use crate::config::ScriptSettings;

const MAX_STDOUT_BYTES: usize = 1024 * 1024;
const STDERR_TAIL_BYTES: usize = 2 * 1024;

/// Runs one configured script.
pub async fn run_script(script: &ScriptSettings) -> ProbeResult {
    let observed_at = Utc::now();
    let started = Instant::now();
    let mut report = ScriptReport {
        name: script.name.clone(),
        program: script.program.display().to_string(),
        exit_code: None,
        timed_out: false,
        duration_ms: 0,
        value: None,
        error: None,
        stderr_tail: None,
    };
    run_into(script, &mut report).await;
    report.duration_ms = millis(started.elapsed());
    if let Some(error) = &report.error {
        tracing::info!(script = %script.name, %error, "script probe failed");
    }
    ProbeResult {
        subject: format!("script:{}", script.name),
        observed_at,
        duration_ms: report.duration_ms,
        output: ProbeOutput::Script(report),
    }
}

async fn run_into(script: &ScriptSettings, report: &mut ScriptReport) {
    let mut child = match Command::new(&script.program)
        .args(&script.args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
    {
        Ok(child) => child,
        Err(e) => {
            report.error = Some(format!(
                "cannot start {} (probes.script `{}`.program): {e}",
                script.program.display(),
                script.name
            ));
            return;
        }
    };
    let (Some(stdout), Some(stderr)) = (child.stdout.take(), child.stderr.take()) else {
        report.error = Some("the script's output pipes could not be opened".to_owned());
        return;
    };
    let reading = async {
        let (out, err, status) =
            tokio::join!(read_capped(stdout, MAX_STDOUT_BYTES), read_tail(stderr), child.wait());
        (out, err, status)
    };
    let (out, err, status) = match tokio::time::timeout(script.timeout, reading).await {
        Ok(done) => done,
        Err(_) => {
            report.timed_out = true;
            let _ = child.kill().await;
            report.error = Some(format!(
                "killed after {}s (probes.script `{}`.timeout_secs)",
                script.timeout.as_secs(),
                script.name
            ));
            return;
        }
    };
    let tail = String::from_utf8_lossy(&err).trim().to_owned();
    report.stderr_tail = (!tail.is_empty()).then_some(tail);
    let status = match status {
        Ok(status) => status,
        Err(e) => {
            report.error = Some(format!("waiting for the script failed: {e}"));
            return;
        }
    };
    report.exit_code = status.code();
    let (stdout, truncated) = out;
    if truncated {
        report.error = Some(format!(
            "stdout is larger than {} KiB; print a smaller JSON value",
            MAX_STDOUT_BYTES / 1024
        ));
        return;
    }
    let text = String::from_utf8_lossy(&stdout);
    match serde_json::from_str::<serde_json::Value>(text.trim()) {
        Ok(value) => report.value = Some(value),
        Err(e) if text.trim().is_empty() => {
            report.error =
                Some(format!("the script printed nothing on stdout (expected one JSON value): {e}"));
        }
        Err(e) => report.error = Some(format!("stdout is not one JSON value: {e}")),
    }
    if !status.success() && report.error.is_none() {
        report.error = Some(match status.code() {
            Some(code) => format!("the script exited with code {code}"),
            None => "the script was ended by a signal".to_owned(),
        });
    }
}

/// Reads at most `cap` bytes, then drains (and drops) the rest so the child never blocks.
async fn read_capped<R: AsyncRead + Unpin>(mut r: R, cap: usize) -> (Vec<u8>, bool) {
    let mut out = Vec::new();
    let mut buf = [0u8; 8192];
    let mut truncated = false;
    loop {
        match r.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if out.len() + n > cap {
                    truncated = true;
                } else {
                    out.extend_from_slice(&buf[..n]);
                }
            }
        }
    }
    (out, truncated)
}

/// Keeps the last [`STDERR_TAIL_BYTES`] bytes.
async fn read_tail<R: AsyncRead + Unpin>(mut r: R) -> Vec<u8> {
    let mut tail = Vec::new();
    let mut buf = [0u8; 4096];
    while let Ok(n) = r.read(&mut buf).await {
        if n == 0 {
            break;
        }
        tail.extend_from_slice(&buf[..n]);
        if tail.len() > STDERR_TAIL_BYTES {
            tail.drain(..tail.len() - STDERR_TAIL_BYTES);
        }
    }
    tail
}
