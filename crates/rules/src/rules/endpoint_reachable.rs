//! `endpoint-reachable`: the collector can resolve, connect to and complete a TLS handshake with
//! each writeback endpoint it probes (catalogue PWB-NET-01 relay, PWB-NET-02 password reset
//! service; seed checklist point 8).
//!
//! Subject: `<host:port>@<collector id>`. Fails when the DNS, TCP or TLS step failed; passes
//! when no step failed. Severity: critical for the password reset service and the relay, high
//! for other endpoints the MSP asked us to probe (we cannot tell what they serve).
//!
//! Evidence: `collector_id`, `collector_name`, `host`, `port`, `role`, `failed_step`, `error`,
//! `resolved` (sorted, deduplicated). Not `connected_to` and no timings: both vary from run to
//! run without the problem changing.

use serde_json::json;
use wbd_wire::{EndpointReport, EndpointRole, ProbeKind, ProbeStep, StepFailure};

use super::Verdict;
use super::endpoint::{allow_list_entry, base_evidence, relay_typo_hint};
use crate::facts::EndpointObservation;
use crate::{Outcome, RuleInfo, Severity, TenantFacts};

pub(crate) const INFO: RuleInfo = RuleInfo {
    id: "endpoint-reachable",
    title: "Writeback endpoint is reachable",
    severity: Severity::Critical,
    reads: &[ProbeKind::Endpoint],
    description: "Password writeback needs two outbound HTTPS paths from the Entra Connect server: \
        to the password reset service (passwordreset.microsoftonline.com) and to the Azure Service \
        Bus relay that carries each reset request to on-premises AD (*.servicebus.windows.net). \
        The collector resolves each endpoint, opens a TCP connection on port 443 and completes a \
        TLS handshake. If any step fails, resets cannot be written back and users see an error. \
        Microsoft's older writeback checklist misspells the relay domain as \
        servicebus.windows.networks; we check the real domain, servicebus.windows.net.",
    remediation: "DNS failure: make sure the Connect server's DNS servers (and any DNS filter) \
        resolve the endpoint. TCP failure: allow outbound TCP 443 from the Connect server to \
        passwordreset.microsoftonline.com and *.servicebus.windows.net on every firewall and proxy \
        in the path (the Azure service tags can be used instead of names); check allow-lists \
        copied from the old checklist for the servicebus.windows.networks typo. TLS failure: \
        enable TLS 1.2 on the Connect server and exempt these endpoints from TLS inspection.",
    references: &[
        "https://learn.microsoft.com/entra/identity/authentication/troubleshoot-sspr-writeback",
        "https://learn.microsoft.com/entra/identity/authentication/concept-sspr-writeback",
        "https://learn.microsoft.com/entra/identity/hybrid/connect/reference-connect-ports",
        "https://learn.microsoft.com/entra/identity/hybrid/connect/reference-connect-tls-enforcement",
    ],
};

pub(crate) fn check(facts: &TenantFacts) -> Vec<Verdict> {
    facts
        .endpoint_observations()
        .iter()
        .map(|observation| Verdict { subject: observation.subject(), outcome: judge(observation) })
        .collect()
}

fn judge(observation: &EndpointObservation<'_>) -> Outcome {
    let report = observation.report;
    let Some(failure) = &report.failure else { return Outcome::Pass };
    let severity = match report.role {
        EndpointRole::PasswordReset | EndpointRole::ServiceBusRelay => Severity::Critical,
        EndpointRole::Other => Severity::High,
    };
    let mut resolved = report.resolved.clone();
    resolved.sort();
    resolved.dedup();
    let mut evidence = base_evidence(observation);
    evidence.insert("failed_step".into(), json!(failure.step.as_str()));
    evidence.insert("error".into(), json!(failure.error));
    evidence.insert("resolved".into(), json!(resolved));
    Outcome::Fail {
        severity,
        summary: summary(&observation.collector.name, report, failure),
        evidence: evidence.into(),
    }
}

fn summary(collector: &str, report: &EndpointReport, failure: &StepFailure) -> String {
    let host = &report.host;
    let port = report.port;
    let error = &failure.error;
    let allow = allow_list_entry(report.role, host);
    match (failure.step, report.role) {
        (ProbeStep::Dns, EndpointRole::PasswordReset) => format!(
            "Collector '{collector}' could not look up {host} in DNS ({error}). Without it the \
             Entra Connect server cannot reach the password reset service, so no reset is written \
             back. Check the DNS servers the Connect server uses, and any DNS filtering, so that \
             {host} resolves from that server."
        ),
        (ProbeStep::Dns, EndpointRole::ServiceBusRelay) => format!(
            "Collector '{collector}' could not look up {host} in DNS ({error}). This is the \
             Service Bus relay that carries reset requests to on-premises AD; without it no reset \
             is written back. Check the DNS servers the Connect server uses, and any DNS \
             filtering, so that names under {allow} resolve. {}",
            relay_typo_hint()
        ),
        (ProbeStep::Dns, EndpointRole::Other) => format!(
            "Collector '{collector}' could not look up {host} in DNS ({error}). Check the DNS \
             servers of the collector's machine and that the name exists."
        ),
        (ProbeStep::Tcp, EndpointRole::PasswordReset) => format!(
            "Collector '{collector}' resolved {host} but could not connect to port {port} ({error}). \
             Outbound HTTPS from the Entra Connect server to the password reset service is \
             blocked, usually by a firewall or proxy: allow outbound TCP 443 to {allow}."
        ),
        (ProbeStep::Tcp, EndpointRole::ServiceBusRelay) => format!(
            "Collector '{collector}' resolved {host} but could not connect to port {port} ({error}). \
             Outbound HTTPS from the Entra Connect server to the Service Bus relay is blocked, \
             usually by a firewall or proxy, so reset requests never reach on-premises AD: allow \
             outbound TCP 443 to {allow}. {}",
            relay_typo_hint()
        ),
        (ProbeStep::Tcp, EndpointRole::Other) => format!(
            "Collector '{collector}' resolved {host} but could not connect to port {port} ({error}). \
             A firewall or proxy between the collector and the endpoint is the usual cause: allow \
             outbound TCP {port} to {host}."
        ),
        (ProbeStep::Tls, role) => {
            let advice = if role != EndpointRole::Other && lacks_modern_tls(error) {
                "The two sides could not agree on TLS 1.2 or newer, which these endpoints require: \
                 enable TLS 1.2 on the Entra Connect server (SCHANNEL and .NET strong cryptography) \
                 and make sure no proxy in the path offers only older versions."
                    .to_owned()
            } else if role == EndpointRole::Other {
                "Check that the endpoint speaks TLS on this port and that no proxy in the path \
                 interferes with the connection."
                    .to_owned()
            } else {
                format!(
                    "A proxy or firewall that inspects or terminates TLS is the usual cause: exempt \
                     {allow} from TLS inspection, and check that TLS 1.2 is enabled on the Entra \
                     Connect server."
                )
            };
            format!(
                "Collector '{collector}' connected to {host}:{port} but the TLS handshake failed \
                 ({error}). {advice}"
            )
        }
    }
}

/// Whether a handshake error says the peers found no protocol version in common (the usual face
/// of a path that offers nothing newer than TLS 1.1). Covers rustls, OpenSSL and SCHANNEL wording.
fn lacks_modern_tls(error: &str) -> bool {
    let squashed: String =
        error.chars().filter(|c| c.is_ascii_alphanumeric()).map(|c| c.to_ascii_lowercase()).collect();
    [
        "protocolversion",
        "tls12notoffered",
        "supportedversions",
        "unsupportedprotocol",
        "wrongversionnumber",
        "noprotocolsavailable",
        "clientandservercannotcommunicate",
    ]
    .iter()
    .any(|needle| squashed.contains(needle))
}

#[cfg(test)]
mod tests {
    use serde_json::json;
    use wbd_wire::{EndpointRole, ProbeStep};

    use super::*;
    use crate::rules::fixtures::*;

    fn run(report: EndpointReport) -> (String, Outcome) {
        let site = collector("Contoso HQ");
        let verdicts = check(&tenant(vec![site.clone()], vec![endpoint_fact(&site, report)]));
        assert_eq!(verdicts.len(), 1);
        let verdict = verdicts.into_iter().next().expect("one verdict");
        (verdict.subject, verdict.outcome)
    }

    #[test]
    fn healthy_endpoints_pass() {
        assert_eq!(run(healthy_password_reset()).1, Outcome::Pass);
        assert_eq!(run(healthy_relay()).1, Outcome::Pass);
    }

    #[test]
    fn untrusted_but_completed_handshake_is_not_this_rules_business() {
        // The chain is judged by `endpoint-tls-trusted`; the endpoint itself was reached.
        assert_eq!(run(relay_intercepted()).1, Outcome::Pass);
    }

    #[test]
    fn relay_dns_failure_is_critical_and_explains_the_typo() {
        let (subject, outcome) = run(relay_dns_failed());
        assert!(subject.starts_with(&format!("{RELAY_HOST}:443@")));
        let Outcome::Fail { severity, summary, evidence } = outcome else { panic!("expected a failure") };
        assert_eq!(severity, Severity::Critical);
        assert!(summary.contains("could not look up"), "{summary}");
        assert!(summary.contains("Name or service not known"), "{summary}");
        assert!(summary.contains("servicebus.windows.networks"), "{summary}");
        assert!(summary.contains("*.servicebus.windows.net"), "{summary}");
        assert!(summary.contains("Contoso HQ"), "{summary}");
        assert_eq!(evidence["failed_step"], "dns");
        assert_eq!(evidence["role"], "service_bus_relay");
        assert_eq!(evidence["resolved"], json!([]));
        assert_no_timing_fields(&evidence);
    }

    #[test]
    fn password_reset_dns_failure_names_the_service() {
        let report = failed_at(PASSWORD_RESET_HOST, EndpointRole::PasswordReset, ProbeStep::Dns, "NXDOMAIN");
        let (_, outcome) = run(report);
        let text = fail_summary(&outcome);
        assert!(text.contains("password reset service"), "{text}");
        assert!(!text.contains("servicebus"), "{text}");
    }

    #[test]
    fn relay_tcp_block_asks_for_outbound_443_to_the_wildcard() {
        let (_, outcome) = run(relay_tcp_blocked());
        let text = fail_summary(&outcome);
        assert!(text.contains("allow outbound TCP 443 to *.servicebus.windows.net"), "{text}");
        assert!(text.contains("firewall or proxy"), "{text}");
        assert!(text.contains("connection timed out"), "{text}");
        let evidence = fail_evidence(&outcome);
        assert_eq!(evidence["failed_step"], "tcp");
        assert_eq!(evidence["port"], 443);
        assert_eq!(evidence["resolved"], json!(["20.190.151.7", "20.190.151.9"]));
        assert_no_timing_fields(evidence);
    }

    #[test]
    fn password_reset_tcp_block_asks_for_outbound_443_to_the_service() {
        let report = failed_at(
            PASSWORD_RESET_HOST,
            EndpointRole::PasswordReset,
            ProbeStep::Tcp,
            "Connection refused (os error 111)",
        );
        let (_, outcome) = run(report);
        let text = fail_summary(&outcome);
        assert!(text.contains("allow outbound TCP 443 to passwordreset.microsoftonline.com"), "{text}");
    }

    #[test]
    fn tls_version_failure_says_tls_1_2_is_required() {
        let (_, outcome) = run(password_reset_tls_failed());
        let text = fail_summary(&outcome);
        assert!(text.contains("TLS 1.2"), "{text}");
        assert!(text.contains("handshake failed"), "{text}");
        assert_eq!(fail_evidence(&outcome)["failed_step"], "tls");
        assert_eq!(fail_evidence(&outcome)["error"], "received fatal alert: ProtocolVersion");
    }

    #[test]
    fn other_tls_failure_points_at_inspection() {
        let report =
            failed_at(RELAY_HOST, EndpointRole::ServiceBusRelay, ProbeStep::Tls, "connection reset by peer");
        let (_, outcome) = run(report);
        let text = fail_summary(&outcome);
        assert!(text.contains("exempt *.servicebus.windows.net from TLS inspection"), "{text}");
    }

    #[test]
    fn other_endpoints_fail_as_high_with_generic_advice() {
        let mut report = failed_at("proxy.contoso.local", EndpointRole::Other, ProbeStep::Tcp, "timed out");
        report.port = 8080;
        let (subject, outcome) = run(report);
        assert!(subject.starts_with("proxy.contoso.local:8080@"));
        let Outcome::Fail { severity, summary, evidence } = outcome else { panic!("expected a failure") };
        assert_eq!(severity, Severity::High);
        assert!(summary.contains("allow outbound TCP 8080 to proxy.contoso.local"), "{summary}");
        assert_eq!(evidence["port"], 8080);
        assert_eq!(evidence["role"], "other");
    }

    #[test]
    fn evidence_ignores_address_order() {
        let mut shuffled = relay_tcp_blocked();
        shuffled.resolved.reverse();
        shuffled.resolved.push(shuffled.resolved[0]);
        let (_, a) = run(relay_tcp_blocked());
        let (_, b) = run(shuffled);
        assert_eq!(fail_evidence(&a), fail_evidence(&b));
    }

    #[test]
    fn recognises_version_mismatch_errors() {
        for error in [
            "received fatal alert: ProtocolVersion",
            "peer is incompatible: Tls12NotOffered",
            "error:0A00010B:SSL routines::wrong version number",
            "The client and server cannot communicate, because they do not possess a common algorithm.",
        ] {
            assert!(lacks_modern_tls(error), "{error}");
        }
        assert!(!lacks_modern_tls("connection reset by peer"));
        assert!(!lacks_modern_tls("invalid peer certificate: UnknownIssuer"));
    }
}
