//! The human-readable report of `wbd-collector probe --once`: one block per endpoint, each step
//! with its outcome and time, then what the TLS handshake showed.

use std::fmt::Write as _;

use chrono::{DateTime, Utc};
use wbd_wire::{EndpointReport, ProbeOutput, ProbeResult, ProbeStep};

/// Whether a result shows a problem (a failed step or an untrusted chain).
pub fn has_problem(result: &ProbeResult) -> bool {
    match &result.output {
        ProbeOutput::Endpoint(r) => r.failure.is_some() || r.tls.as_ref().is_some_and(|t| !t.chain_trusted),
        _ => false,
    }
}

/// Renders the results as text blocks, `now` being the time expiry is measured from.
pub fn render(results: &[ProbeResult], now: DateTime<Utc>) -> String {
    let mut out = String::new();
    for result in results {
        match &result.output {
            ProbeOutput::Endpoint(report) => render_endpoint(&mut out, result, report, now),
            other => {
                let _ = writeln!(out, "{}  ({})", result.subject, other.kind());
            }
        }
        out.push('\n');
    }
    let problems = results.iter().filter(|r| has_problem(r)).count();
    if problems == 0 {
        let _ = writeln!(out, "All {} endpoints reachable with a trusted certificate.", results.len());
    } else {
        let _ = writeln!(out, "{problems} of {} endpoints have a problem.", results.len());
    }
    out
}

fn render_endpoint(out: &mut String, result: &ProbeResult, r: &EndpointReport, now: DateTime<Utc>) {
    let verdict = match (&r.failure, &r.tls) {
        (Some(f), _) => format!("FAILED at {}", f.step.as_str()),
        (None, Some(tls)) if !tls.chain_trusted => "REACHABLE, CERTIFICATE NOT TRUSTED".to_owned(),
        _ => "OK".to_owned(),
    };
    let role =
        serde_json::to_value(r.role).ok().and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default();
    let _ = writeln!(out, "{}  ({role})  {verdict}  [{} ms]", result.subject, result.duration_ms);

    let failed_step = r.failure.as_ref().map(|f| f.step);
    let step_line = |out: &mut String, step: ProbeStep, ms: Option<u64>, ok_text: String| {
        let name = step.as_str();
        if let Some(ms) = ms {
            let _ = writeln!(out, "  {name:<4} ok      {ms:>5} ms  {ok_text}");
        } else if failed_step == Some(step) {
            let error = r.failure.as_ref().map(|f| f.error.as_str()).unwrap_or_default();
            let _ = writeln!(out, "  {name:<4} FAILED            {error}");
        } else {
            let _ = writeln!(out, "  {name:<4} not run");
        }
    };

    let resolved = r.resolved.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ");
    step_line(out, ProbeStep::Dns, r.dns_ms, format!("→ {resolved}"));
    let connected = r.connected_to.map(|ip| format!("→ {ip}")).unwrap_or_default();
    step_line(out, ProbeStep::Tcp, r.tcp_connect_ms, connected);
    let tls_text = r.tls.as_ref().map(|t| format!("{} {}", t.protocol, t.cipher_suite)).unwrap_or_default();
    step_line(out, ProbeStep::Tls, r.tls.as_ref().map(|t| t.handshake_ms), tls_text);

    if let Some(tls) = &r.tls {
        if tls.chain_trusted {
            let _ = writeln!(out, "  chain    trusted (public roots or a configured CA)");
        } else {
            let reason = tls.trust_error.as_deref().unwrap_or("no reason given");
            let _ = writeln!(out, "  chain    NOT TRUSTED: {reason}");
        }
        if let Some(subject) = &tls.subject {
            let _ = writeln!(out, "  leaf     {subject}");
        }
        if let Some(issuer) = &tls.issuer {
            let _ = writeln!(out, "  issuer   {issuer}");
        }
        if let Some(top) = &tls.chain_top_issuer {
            let _ = writeln!(out, "  top      {top}  ({} certificate(s) presented)", tls.chain_len);
        }
        if let Some(not_after) = tls.not_after {
            let days = (not_after - now).num_days();
            let when = if not_after < now {
                format!("EXPIRED {} day(s) ago", -days)
            } else {
                format!("expires in {days} day(s)")
            };
            let _ = writeln!(out, "  expiry   {}  ({when})", not_after.format("%Y-%m-%d %H:%M UTC"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use wbd_wire::{EndpointRole, StepFailure, TlsReport};

    fn result(report: EndpointReport) -> ProbeResult {
        ProbeResult {
            subject: format!("{}:{}", report.host, report.port),
            observed_at: Utc::now(),
            duration_ms: 42,
            output: ProbeOutput::Endpoint(report),
        }
    }

    #[test]
    fn failed_tcp_step_is_shown_with_later_steps_not_run() {
        let r = result(EndpointReport {
            host: "relay.example".into(),
            port: 443,
            role: EndpointRole::ServiceBusRelay,
            resolved: vec!["192.0.2.1".parse().unwrap()],
            dns_ms: Some(3),
            connected_to: None,
            tcp_connect_ms: None,
            tls: None,
            failure: Some(StepFailure { step: ProbeStep::Tcp, error: "refused".into() }),
        });
        let text = render(&[r], Utc::now());
        assert!(text.contains("relay.example:443  (service_bus_relay)  FAILED at tcp"), "{text}");
        assert!(text.contains("dns  ok"), "{text}");
        assert!(text.contains("tcp  FAILED            refused"), "{text}");
        assert!(text.contains("tls  not run"), "{text}");
        assert!(text.contains("1 of 1 endpoints have a problem"), "{text}");
    }

    #[test]
    fn untrusted_chain_shows_issuer_and_expiry() {
        let now = Utc::now();
        let r = result(EndpointReport {
            host: "passwordreset.example".into(),
            port: 443,
            role: EndpointRole::PasswordReset,
            resolved: vec!["192.0.2.2".parse().unwrap()],
            dns_ms: Some(1),
            connected_to: Some("192.0.2.2".parse().unwrap()),
            tcp_connect_ms: Some(2),
            tls: Some(TlsReport {
                handshake_ms: 5,
                protocol: "TLSv1.3".into(),
                cipher_suite: "TLS13_AES_256_GCM_SHA384".into(),
                chain_trusted: false,
                trust_error: Some("unknown issuer".into()),
                subject: Some("CN=passwordreset.example".into()),
                issuer: Some("CN=Contoso Inspection CA".into()),
                not_before: Some(now - chrono::Duration::days(10)),
                not_after: Some(now + chrono::Duration::days(30)),
                chain_top_issuer: Some("CN=Contoso Inspection CA".into()),
                chain_len: 1,
            }),
            failure: None,
        });
        assert!(has_problem(&r));
        let text = render(&[r], now);
        assert!(text.contains("CERTIFICATE NOT TRUSTED"), "{text}");
        assert!(text.contains("NOT TRUSTED: unknown issuer"), "{text}");
        assert!(text.contains("issuer   CN=Contoso Inspection CA"), "{text}");
        assert!(text.contains("expires in 29 day(s)") || text.contains("expires in 30 day(s)"), "{text}");
    }
}
