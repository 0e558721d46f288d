//! `endpoint-reachable`: the collector can resolve, connect to and complete a TLS handshake with
//! each writeback endpoint it probes (catalogue PWB-NET-01 relay, PWB-NET-02 password reset
//! service; seed checklist point 8).
//!
//! Subject: `<host:port>@<collector id>`. Judges the path writeback takes: through the site's
//! proxy when the collector found one (`via_proxy`: configured, machine.config, WinHTTP), else
//! directly. Fails when a step of that path failed (DNS, TCP, TLS; or reaching the proxy, its
//! authentication, the tunnel, TLS inside it); passes when none failed, whatever the other path
//! did (a site that lets the Connect server out only through its proxy blocks direct egress on
//! purpose). Unknown when the proxy asks only for Windows-integrated authentication, which the
//! collector does not perform. Severity: critical for the password reset service and the relay,
//! high for other endpoints the MSP asked us to probe (we cannot tell what they serve).
//!
//! Evidence: `collector_id`, `collector_name`, `host`, `port`, `role`, `path` (`direct` or
//! `proxy`), `failed_step`, `error`, `resolved` (sorted, deduplicated); through a proxy also
//! `proxy`, `source`, `status` (the answer to CONNECT) and `direct_failed_step` (`null` when the
//! direct attempt worked). Not `connected_to` and no timings: both vary from run to run without
//! the problem changing.

use serde_json::json;
use wbd_wire::{
    EndpointReport, EndpointRole, ProbeKind, ProbeStep, ProxiedConnection, ProxyFailure, ProxyStep,
    StepFailure,
};

use super::endpoint::{allow_list_entry, base_evidence, relay_typo_hint};
use super::proxy::{source_name, step_name};
use super::{RuleDef, Verdict};
use crate::facts::EndpointObservation;
use crate::{Message, Outcome, Params, Severity, TenantFacts};

pub(crate) const ID: &str = "endpoint-reachable";

pub(crate) const RULES: &[RuleDef] = &[RuleDef {
    id: ID,
    check,
    #[cfg(test)]
    fixtures: tests::fixtures,
}];

fn check(facts: &TenantFacts, _params: &Params) -> Vec<Verdict> {
    let observations = facts.endpoint_observations();
    if observations.is_empty() {
        return vec![Verdict::tenant(Outcome::no_data(ProbeKind::Endpoint))];
    }
    observations
        .iter()
        .map(|observation| Verdict { subject: observation.subject(), outcome: judge(observation) })
        .collect()
}

fn judge(observation: &EndpointObservation<'_>) -> Outcome {
    let report = observation.report;
    if let Some(proxied) = &report.via_proxy {
        return judge_proxied(observation, proxied);
    }
    let Some(failure) = &report.failure else { return Outcome::Pass };
    let mut evidence = base_evidence(observation);
    evidence.insert("path".into(), json!("direct"));
    evidence.insert("failed_step".into(), json!(failure.step.as_str()));
    evidence.insert("error".into(), json!(failure.error));
    evidence.insert("resolved".into(), json!(sorted_addresses(report)));
    Outcome::fail(severity_of(report), summary(&observation.collector.name, report, failure), evidence.into())
}

fn severity_of(report: &EndpointReport) -> Severity {
    match report.role {
        EndpointRole::PasswordReset | EndpointRole::ServiceBusRelay => Severity::Critical,
        EndpointRole::Other => Severity::High,
    }
}

fn sorted_addresses(report: &EndpointReport) -> Vec<std::net::IpAddr> {
    let mut resolved = report.resolved.clone();
    resolved.sort();
    resolved.dedup();
    resolved
}

/// The endpoint as reached through the site's proxy, the path writeback takes there.
fn judge_proxied(observation: &EndpointObservation<'_>, proxied: &ProxiedConnection) -> Outcome {
    let report = observation.report;
    let Some(failure) = &proxied.failure else { return Outcome::Pass };
    let offered = &proxied.offered_auth_schemes;
    let integrated_only =
        offered.iter().any(|s| s == "ntlm" || s == "negotiate") && !offered.iter().any(|s| s == "basic");
    if failure.step == ProxyStep::ProxyAuth && integrated_only {
        return Outcome::unknown(
            Message::new("endpoint-reachable.proxy-integrated-auth")
                .arg("proxy", proxied.proxy.as_str())
                .arg("host", report.host.as_str())
                .arg("schemes", json!(offered)),
        );
    }
    let mut evidence = base_evidence(observation);
    evidence.insert("path".into(), json!("proxy"));
    evidence.insert("proxy".into(), json!(proxied.proxy));
    evidence.insert("source".into(), json!(source_name(proxied.source)));
    evidence.insert("failed_step".into(), json!(step_name(failure.step)));
    evidence.insert("status".into(), json!(proxied.connect_status));
    evidence.insert("error".into(), json!(failure.error));
    evidence.insert("direct_failed_step".into(), json!(report.failure.as_ref().map(|f| f.step.as_str())));
    evidence.insert("resolved".into(), json!(sorted_addresses(report)));
    Outcome::fail(
        severity_of(report),
        proxied_summary(&observation.collector.name, report, proxied, failure),
        evidence.into(),
    )
}

fn proxied_summary(
    collector: &str,
    report: &EndpointReport,
    proxied: &ProxiedConnection,
    failure: &ProxyFailure,
) -> Message {
    let key = match failure.step {
        ProxyStep::ProxyConnect => "endpoint-reachable.proxy-unreachable",
        ProxyStep::ProxyAuth => "endpoint-reachable.proxy-auth",
        ProxyStep::Tunnel => "endpoint-reachable.proxy-tunnel",
        ProxyStep::Tls if lacks_modern_tls(&failure.error) => "endpoint-reachable.proxy-tls-version",
        ProxyStep::Tls => "endpoint-reachable.proxy-tls",
    };
    let direct = match &report.failure {
        None => Message::new("endpoint-reachable.direct-works").arg("proxy", proxied.proxy.as_str()),
        Some(direct) => Message::new("endpoint-reachable.direct-fails").arg("step", direct.step.as_str()),
    };
    Message::new(key)
        .arg("collector", collector)
        .arg("proxy", proxied.proxy.as_str())
        .arg("host", report.host.as_str())
        .arg("port", report.port)
        .arg("status", proxied.connect_status.map_or(json!("-"), |s| json!(s)))
        .arg("error", failure.error.as_str())
        .arg("allow", allow_list_entry(report.role, &report.host))
        .arg("direct", direct.nested())
}

fn summary(collector: &str, report: &EndpointReport, failure: &StepFailure) -> Message {
    let key = match (failure.step, report.role) {
        (ProbeStep::Dns, EndpointRole::PasswordReset) => "endpoint-reachable.dns-password-reset",
        (ProbeStep::Dns, EndpointRole::ServiceBusRelay) => "endpoint-reachable.dns-relay",
        (ProbeStep::Dns, EndpointRole::Other) => "endpoint-reachable.dns-other",
        (ProbeStep::Tcp, EndpointRole::PasswordReset) => "endpoint-reachable.tcp-password-reset",
        (ProbeStep::Tcp, EndpointRole::ServiceBusRelay) => "endpoint-reachable.tcp-relay",
        (ProbeStep::Tcp, EndpointRole::Other) => "endpoint-reachable.tcp-other",
        (ProbeStep::Tls, EndpointRole::Other) => "endpoint-reachable.tls-other",
        (ProbeStep::Tls, _) if lacks_modern_tls(&failure.error) => "endpoint-reachable.tls-version",
        (ProbeStep::Tls, _) => "endpoint-reachable.tls-interrupted",
    };
    let mut message = Message::new(key)
        .arg("collector", collector)
        .arg("host", report.host.as_str())
        .arg("port", report.port)
        .arg("error", failure.error.as_str())
        .arg("allow", allow_list_entry(report.role, &report.host));
    if report.role == EndpointRole::ServiceBusRelay && failure.step != ProbeStep::Tls {
        message = message.arg("typo_hint", relay_typo_hint());
    }
    message
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
    use wbd_wire::{EndpointRole, ProbeStep, ProxyStep};

    use super::*;
    use crate::rules::fixtures::*;

    pub(crate) fn fixtures() -> Vec<Fixture> {
        let site = collector("site-a");
        let one = |report| tenant(vec![site.clone()], vec![endpoint_fact(&site, report)]);
        vec![
            Fixture::new("relay blocked by DNS", one(relay_dns_failed()), Expect::Fail(Severity::Critical)),
            Fixture::new("relay blocked at TCP", one(relay_tcp_blocked()), Expect::Fail(Severity::Critical)),
            Fixture::new("old TLS only", one(password_reset_tls_failed()), Expect::Fail(Severity::Critical)),
            Fixture::new(
                "TLS reset by a middlebox",
                one(failed_at(RELAY_HOST, EndpointRole::ServiceBusRelay, ProbeStep::Tls, "connection reset")),
                Expect::Fail(Severity::Critical),
            ),
            Fixture::new(
                "other endpoint unresolvable",
                one(failed_at("intranet.example", EndpointRole::Other, ProbeStep::Dns, "NXDOMAIN")),
                Expect::Fail(Severity::High),
            ),
            Fixture::new(
                "other endpoint blocked",
                one(failed_at("intranet.example", EndpointRole::Other, ProbeStep::Tcp, "timed out")),
                Expect::Fail(Severity::High),
            ),
            Fixture::new(
                "other endpoint TLS",
                one(failed_at("intranet.example", EndpointRole::Other, ProbeStep::Tls, "reset")),
                Expect::Fail(Severity::High),
            ),
            Fixture::new(
                "password reset DNS",
                one(failed_at(PASSWORD_RESET_HOST, EndpointRole::PasswordReset, ProbeStep::Dns, "NXDOMAIN")),
                Expect::Fail(Severity::Critical),
            ),
            Fixture::new(
                "password reset TCP",
                one(failed_at(PASSWORD_RESET_HOST, EndpointRole::PasswordReset, ProbeStep::Tcp, "refused")),
                Expect::Fail(Severity::Critical),
            ),
            Fixture::new(
                "both reached",
                tenant(
                    vec![site.clone()],
                    vec![
                        endpoint_fact(&site, healthy_relay()),
                        endpoint_fact(&site, healthy_password_reset()),
                    ],
                ),
                Expect::Pass,
            ),
            Fixture::new(
                "out only through the proxy",
                one(through_proxy(relay_tcp_blocked(), None)),
                Expect::Pass,
            ),
            Fixture::new(
                "proxy refuses the tunnel",
                one(through_proxy(healthy_relay(), Some((ProxyStep::Tunnel, Some(403), "403 Forbidden")))),
                Expect::Fail(Severity::Critical),
            ),
            Fixture::new(
                "proxy down, direct blocked",
                one(through_proxy(
                    relay_tcp_blocked(),
                    Some((ProxyStep::ProxyConnect, None, "connection refused")),
                )),
                Expect::Fail(Severity::Critical),
            ),
            Fixture::new(
                "proxy refuses the credentials",
                one(through_proxy(
                    relay_tcp_blocked(),
                    Some((ProxyStep::ProxyAuth, Some(407), "407: wrong password")),
                )),
                Expect::Fail(Severity::Critical),
            ),
            Fixture::new(
                "TLS cut inside the tunnel",
                one(through_proxy(
                    relay_tcp_blocked(),
                    Some((ProxyStep::Tls, Some(200), "connection reset")),
                )),
                Expect::Fail(Severity::Critical),
            ),
            Fixture::new(
                "old TLS inside the tunnel",
                one(through_proxy(
                    password_reset_tls_failed(),
                    Some((ProxyStep::Tls, Some(200), "received fatal alert: ProtocolVersion")),
                )),
                Expect::Fail(Severity::Critical),
            ),
            Fixture::new(
                "proxy wants Windows-integrated authentication",
                one(integrated_only()),
                Expect::Unknown,
            ),
            Fixture::new("no endpoint probe yet", tenant(vec![site.clone()], vec![]), Expect::Unknown),
        ]
    }

    fn integrated_only() -> EndpointReport {
        let mut report = through_proxy(
            relay_tcp_blocked(),
            Some((
                ProxyStep::ProxyAuth,
                Some(407),
                "407: the proxy accepts only Windows integrated authentication",
            )),
        );
        if let Some(proxied) = report.via_proxy.as_mut() {
            proxied.offered_auth_schemes = vec!["negotiate".to_owned(), "ntlm".to_owned()];
        }
        report
    }

    #[test]
    fn a_site_that_goes_out_only_through_its_proxy_is_reachable() {
        // Direct egress dropped on purpose, the proxy path works: what writeback uses is fine.
        assert_eq!(run(through_proxy(relay_tcp_blocked(), None)).1, Outcome::Pass);
        assert_eq!(run(through_proxy(password_reset_tls_failed(), None)).1, Outcome::Pass);
    }

    #[test]
    fn a_refused_tunnel_is_reported_on_the_proxy_path() {
        let report =
            through_proxy(relay_tcp_blocked(), Some((ProxyStep::Tunnel, Some(403), "403 Forbidden")));
        let (_, outcome) = run(report);
        let text = fail_summary(&outcome);
        assert!(text.contains("proxy proxy.contoso.local:3128"), "{text}");
        assert!(
            text.contains("refused to open a tunnel to ssprdedicatedsbprodscu.servicebus.windows.net:443"),
            "{text}"
        );
        assert!(text.contains("Allow CONNECT to *.servicebus.windows.net on port 443"), "{text}");
        assert!(text.contains("A direct connection fails too (at the tcp step)"), "{text}");
        let evidence = fail_evidence(&outcome);
        assert_eq!(evidence["path"], "proxy");
        assert_eq!(evidence["source"], "machine_config");
        assert_eq!(evidence["failed_step"], "tunnel");
        assert_eq!(evidence["status"], 403);
        assert_eq!(evidence["direct_failed_step"], "tcp");
        assert_no_timing_fields(evidence);
    }

    #[test]
    fn a_broken_proxy_fails_even_when_the_direct_path_works() {
        let report = through_proxy(
            healthy_password_reset(),
            Some((ProxyStep::ProxyConnect, None, "connection refused")),
        );
        let (_, outcome) = run(report);
        let Outcome::Fail { severity, summary, evidence, .. } = outcome else { panic!("expected a failure") };
        assert_eq!(severity, Severity::Critical);
        assert!(summary.contains("could not reach the proxy itself (connection refused)"), "{summary}");
        assert!(summary.contains("A direct connection, bypassing the proxy, works"), "{summary}");
        assert_eq!(evidence["direct_failed_step"], json!(null));
    }

    #[test]
    fn windows_integrated_proxy_authentication_is_not_decided() {
        let (_, outcome) = run(integrated_only());
        let Outcome::Unknown { reason, .. } = outcome else { panic!("expected unknown, got {outcome:?}") };
        assert!(reason.contains("Windows-integrated authentication"), "{reason}");
    }

    fn run(report: EndpointReport) -> (String, Outcome) {
        let site = collector("Contoso HQ");
        let verdicts = run_rule(ID, &tenant(vec![site.clone()], vec![endpoint_fact(&site, report)]));
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
        let Outcome::Fail { severity, summary, evidence, .. } = outcome else { panic!("expected a failure") };
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
    fn an_interrupted_handshake_is_not_called_inspection() {
        let report =
            failed_at(RELAY_HOST, EndpointRole::ServiceBusRelay, ProbeStep::Tls, "connection reset by peer");
        let (_, outcome) = run(report);
        let text = fail_summary(&outcome);
        assert!(text.contains("let *.servicebus.windows.net through it"), "{text}");
        assert!(!text.contains("inspect"), "only a re-signed chain is inspection: {text}");
    }

    #[test]
    fn other_endpoints_fail_as_high_with_generic_advice() {
        let mut report = failed_at("proxy.contoso.local", EndpointRole::Other, ProbeStep::Tcp, "timed out");
        report.port = 8080;
        let (subject, outcome) = run(report);
        assert!(subject.starts_with("proxy.contoso.local:8080@"));
        let Outcome::Fail { severity, summary, evidence, .. } = outcome else { panic!("expected a failure") };
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
