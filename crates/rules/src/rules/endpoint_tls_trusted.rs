//! `endpoint-tls-trusted`: the certificate and protocol a writeback endpoint presents through the
//! customer's network are the real ones: a chain to a public root, a leaf that is currently
//! valid, and TLS 1.2 or newer (catalogue PWB-NET-01/02; TLS 1.2 enforcement for Connect).
//!
//! Subject: `<host:port>@<collector id>`, like `endpoint-reachable`; like it, judges the handshake
//! made through the site's proxy when there is one (`via_proxy`). Unknown when the handshake
//! did not complete (that failure is `endpoint-reachable`'s finding). Severity: critical for the
//! password reset service and the relay, high for other endpoints.
//!
//! Only a chain that leads to no trusted root (`untrusted_issuer`) is reported as a device that
//! re-signs the traffic (TLS inspection); an expired certificate, one for another name, or one
//! refused for another reason says exactly that.
//!
//! Evidence: `collector_id`, `collector_name`, `host`, `port`, `role`, `path` (`direct` or
//! `proxy`), `problems` (any of
//! `untrusted_issuer`, `wrong_name`, `untrusted`, `expired`, `not_yet_valid`,
//! `protocol_below_tls12`), `protocol`,
//! `chain_trusted`, `trust_error`, `certificate_subject`, `issuer`, `chain_top_issuer`, `not_after`. No
//! handshake time, no cipher suite.

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::json;
use wbd_wire::{EndpointReport, EndpointRole, ProbeKind, TlsReport, TrustFailure};

use super::endpoint::{allow_list_entry, base_evidence};
use super::proxy::step_name;
use super::{RuleDef, Verdict};
use crate::facts::EndpointObservation;
use crate::message::keys;
use crate::{Message, Outcome, Params, Severity, TenantFacts};

pub(crate) const ID: &str = "endpoint-tls-trusted";

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
        .map(|observation| Verdict { subject: observation.subject(), outcome: judge(observation, facts.now) })
        .collect()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
enum Problem {
    /// The chain leads to no trusted root: re-signed by an inspecting device, or a private CA.
    UntrustedIssuer,
    /// The certificate is not valid for the name that was asked for.
    WrongName,
    /// Not trusted for another reason (see `trust_error`).
    Untrusted,
    Expired,
    NotYetValid,
    ProtocolBelowTls12,
}

fn judge(observation: &EndpointObservation<'_>, now: DateTime<Utc>) -> Outcome {
    let report = observation.report;
    // Through the site's proxy when there is one: the path writeback takes.
    let (tls, failed_step) = match &report.via_proxy {
        Some(proxied) => (proxied.tls.as_ref(), proxied.failure.as_ref().map(|f| step_name(f.step))),
        None => (report.tls.as_ref(), report.failure.as_ref().map(|f| f.step.as_str())),
    };
    let Some(tls) = tls else {
        let message = match failed_step {
            Some(step) => Message::new("endpoint-tls-trusted.no-handshake").arg("step", step),
            None => Message::new(keys::FIELD_MISSING)
                .arg("probe", ProbeKind::Endpoint.as_str())
                .arg("field", "tls"),
        };
        return Outcome::unknown(message);
    };
    let problems = problems(tls, now);
    if problems.is_empty() {
        return Outcome::Pass;
    }
    let severity = match report.role {
        EndpointRole::PasswordReset | EndpointRole::ServiceBusRelay => Severity::Critical,
        EndpointRole::Other => Severity::High,
    };
    let mut evidence = base_evidence(observation);
    evidence.insert("path".into(), json!(if report.via_proxy.is_some() { "proxy" } else { "direct" }));
    evidence.insert("problems".into(), json!(problems));
    evidence.insert("protocol".into(), json!(tls.protocol));
    evidence.insert("chain_trusted".into(), json!(tls.chain_trusted));
    evidence.insert("trust_error".into(), json!(tls.trust_error));
    evidence.insert("certificate_subject".into(), json!(tls.subject));
    evidence.insert("issuer".into(), json!(tls.issuer));
    evidence.insert("chain_top_issuer".into(), json!(tls.chain_top_issuer));
    evidence.insert("not_after".into(), json!(tls.not_after));
    Outcome::fail(severity, summary(&observation.collector.name, report, tls, &problems), evidence.into())
}

/// Why the chain was not trusted: as the collector classified it, else (older collectors) as
/// its error text says.
fn trust_failure(tls: &TlsReport) -> Option<TrustFailure> {
    if tls.chain_trusted {
        return None;
    }
    if tls.trust_failure.is_some() {
        return tls.trust_failure;
    }
    let error = tls.trust_error.as_deref().unwrap_or_default().to_ascii_lowercase();
    Some(if error.contains("unknownissuer") || error.contains("does not lead to a public root") {
        TrustFailure::UntrustedIssuer
    } else if error.contains("expired") {
        TrustFailure::Expired
    } else if error.contains("not valid yet") || error.contains("notvalidyet") {
        TrustFailure::NotYetValid
    } else if error.contains("not valid for") || error.contains("notvalidforname") {
        TrustFailure::WrongName
    } else {
        TrustFailure::Other
    })
}

fn problems(tls: &TlsReport, now: DateTime<Utc>) -> Vec<Problem> {
    let mut problems = Vec::new();
    match trust_failure(tls) {
        Some(TrustFailure::UntrustedIssuer) => problems.push(Problem::UntrustedIssuer),
        Some(TrustFailure::WrongName) => problems.push(Problem::WrongName),
        Some(TrustFailure::Other) => problems.push(Problem::Untrusted),
        // Expiry and validity dates are judged from the dates below (and from the verdict,
        // should the dates be missing).
        Some(TrustFailure::Expired) if tls.not_after.is_none() => problems.push(Problem::Expired),
        Some(TrustFailure::NotYetValid) if tls.not_before.is_none() => problems.push(Problem::NotYetValid),
        Some(TrustFailure::Expired | TrustFailure::NotYetValid) | None => {}
    }
    if tls.not_after.is_some_and(|not_after| not_after < now) {
        problems.push(Problem::Expired);
    }
    if tls.not_before.is_some_and(|not_before| not_before > now) {
        problems.push(Problem::NotYetValid);
    }
    if protocol_below_tls12(&tls.protocol) == Some(true) {
        problems.push(Problem::ProtocolBelowTls12);
    }
    problems
}

fn summary(collector: &str, report: &EndpointReport, tls: &TlsReport, problems: &[Problem]) -> Message {
    let host = report.host.as_str();
    let allow = allow_list_entry(report.role, host);
    let microsoft = report.role != EndpointRole::Other;
    let why = tls.trust_error.as_deref().unwrap_or("-");
    let parts: Vec<serde_json::Value> = problems
        .iter()
        .map(|problem| {
            let part = match problem {
                // Only a chain that leads to no trusted root is called inspection.
                Problem::UntrustedIssuer => {
                    let issuer = tls.chain_top_issuer.as_deref().or(tls.issuer.as_deref()).unwrap_or("?");
                    let key = if microsoft {
                        "endpoint-tls-trusted.untrusted-microsoft"
                    } else {
                        "endpoint-tls-trusted.untrusted-other"
                    };
                    Message::new(key).arg("issuer", issuer).arg("why", why)
                }
                Problem::WrongName => Message::new("endpoint-tls-trusted.wrong-name")
                    .arg("subject", tls.subject.as_deref().unwrap_or("?"))
                    .arg("why", why),
                Problem::Untrusted => Message::new("endpoint-tls-trusted.untrusted-reason").arg("why", why),
                Problem::Expired if microsoft => {
                    Message::new("endpoint-tls-trusted.expired-microsoft").arg("date", date_of(tls.not_after))
                }
                Problem::Expired => {
                    Message::new("endpoint-tls-trusted.expired-other").arg("date", date_of(tls.not_after))
                }
                Problem::NotYetValid => {
                    Message::new("endpoint-tls-trusted.not-yet-valid").arg("date", date_of(tls.not_before))
                }
                Problem::ProtocolBelowTls12 => {
                    Message::new("endpoint-tls-trusted.old-protocol").arg("protocol", tls.protocol.as_str())
                }
            };
            part.arg("allow", allow.as_str()).arg("host", host).nested()
        })
        .collect();
    Message::new("endpoint-tls-trusted.summary")
        .arg("collector", collector)
        .arg("host", host)
        .arg("port", report.port)
        .arg("problems", parts)
}

fn date_of(at: Option<DateTime<Utc>>) -> String {
    at.map(|at| at.format("%Y-%m-%d").to_string()).unwrap_or_else(|| "?".to_owned())
}

/// Whether a negotiated protocol name (`TLSv1_2`, `TLSv1.3`, `TLS 1.0`, `SSLv3`, …) is older than
/// TLS 1.2; `None` when the name is not recognised (then the rule does not judge the protocol).
fn protocol_below_tls12(protocol: &str) -> Option<bool> {
    let squashed: String =
        protocol.chars().filter(|c| c.is_ascii_alphanumeric()).map(|c| c.to_ascii_lowercase()).collect();
    if squashed.starts_with("ssl") {
        return Some(true);
    }
    let version = squashed.strip_prefix("tls")?;
    let version = version.strip_prefix('v').unwrap_or(version);
    match version {
        "1" | "10" | "11" => Some(true),
        "12" | "13" => Some(false),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use chrono::Duration;
    use serde_json::json;
    use wbd_wire::{EndpointRole, ProbeStep, ProxyStep};

    use super::*;
    use crate::rules::fixtures::*;

    pub(crate) fn fixtures() -> Vec<Fixture> {
        let site = collector("site-a");
        let one = |report| tenant(vec![site.clone()], vec![endpoint_fact(&site, report)]);
        let mut expired = healthy_password_reset();
        if let Some(tls) = expired.tls.as_mut() {
            tls.not_after = Some(now() - Duration::days(2));
            tls.not_before = Some(now() + Duration::days(2));
        }
        let mut wrong_name = healthy_relay();
        if let Some(tls) = wrong_name.tls.as_mut() {
            tls.chain_trusted = false;
            tls.trust_failure = Some(TrustFailure::WrongName);
            tls.trust_error = Some("the certificate is not valid for this host name".to_owned());
        }
        let mut refused = healthy_relay();
        if let Some(tls) = refused.tls.as_mut() {
            tls.chain_trusted = false;
            tls.trust_failure = Some(TrustFailure::Other);
            tls.trust_error = Some("invalid peer certificate: Revoked".to_owned());
        }
        let mut other = relay_intercepted();
        other.role = EndpointRole::Other;
        if let Some(tls) = other.tls.as_mut() {
            tls.not_after = Some(now() - Duration::days(2));
        }
        vec![
            Fixture::new("inspecting proxy", one(relay_intercepted()), Expect::Fail(Severity::Critical)),
            Fixture::new("TLS 1.0", one(legacy_tls()), Expect::Fail(Severity::Critical)),
            Fixture::new("expired and not yet valid", one(expired), Expect::Fail(Severity::Critical)),
            Fixture::new("other endpoint, bad chain", one(other), Expect::Fail(Severity::High)),
            Fixture::new("certificate for another name", one(wrong_name), Expect::Fail(Severity::Critical)),
            Fixture::new("certificate refused otherwise", one(refused), Expect::Fail(Severity::Critical)),
            Fixture::new("trusted", one(healthy_relay()), Expect::Pass),
            Fixture::new("no handshake", one(relay_tcp_blocked()), Expect::Unknown),
            Fixture::new(
                "trusted through the proxy",
                one(through_proxy(relay_tcp_blocked(), None)),
                Expect::Pass,
            ),
            Fixture::new(
                "re-signed by the proxy",
                one(resigned_by_proxy()),
                Expect::Fail(Severity::Critical),
            ),
            Fixture::new("no endpoint probe yet", tenant(vec![site.clone()], vec![]), Expect::Unknown),
        ]
    }

    /// Direct egress is blocked; the proxy writeback goes through re-signs the relay's chain.
    fn resigned_by_proxy() -> EndpointReport {
        let mut report = through_proxy(relay_tcp_blocked(), None);
        if let Some(proxied) = report.via_proxy.as_mut() {
            proxied.tls = relay_intercepted().tls;
        }
        report
    }

    #[test]
    fn the_handshake_through_the_proxy_is_the_one_judged() {
        let outcome = run(resigned_by_proxy());
        let text = fail_summary(&outcome);
        assert!(text.contains("re-signs this traffic (TLS inspection)"), "{text}");
        assert_eq!(fail_evidence(&outcome)["path"], "proxy");
        // A direct path that meets an inspecting firewall is not what writeback uses here.
        assert_eq!(run(through_proxy(relay_intercepted(), None)), Outcome::Pass);
        let refused = through_proxy(healthy_relay(), Some((ProxyStep::Tunnel, Some(403), "403 Forbidden")));
        let Outcome::Unknown { reason, .. } = run(refused) else { panic!("expected unknown") };
        assert!(reason.contains("stopped at the tunnel step"), "{reason}");
    }

    fn run(report: EndpointReport) -> Outcome {
        let site = collector("Contoso HQ");
        let verdicts = run_rule(ID, &tenant(vec![site.clone()], vec![endpoint_fact(&site, report)]));
        assert_eq!(verdicts.len(), 1);
        verdicts.into_iter().next().expect("one verdict").outcome
    }

    fn tls_mut(report: &mut EndpointReport) -> &mut TlsReport {
        report.tls.as_mut().expect("fixture has a TLS report")
    }

    #[test]
    fn trusted_modern_endpoints_pass() {
        assert_eq!(run(healthy_password_reset()), Outcome::Pass);
        assert_eq!(run(healthy_relay()), Outcome::Pass);
        let mut tls12 = healthy_relay();
        tls_mut(&mut tls12).protocol = "TLSv1_2".into();
        assert_eq!(run(tls12), Outcome::Pass);
    }

    #[test]
    fn inspecting_proxy_is_named_in_the_summary() {
        let outcome = run(relay_intercepted());
        let Outcome::Fail { severity, summary, evidence, .. } = outcome else { panic!("expected a failure") };
        assert_eq!(severity, Severity::Critical);
        assert!(summary.contains("'CN=Contoso Edge Inspection CA, O=Contoso'"), "{summary}");
        assert!(summary.contains("does not lead to a public certificate authority"), "{summary}");
        assert!(summary.contains("exempt *.servicebus.windows.net from TLS inspection"), "{summary}");
        assert!(summary.contains("UnknownIssuer"), "{summary}");
        assert_eq!(evidence["problems"], json!(["untrusted_issuer"]));
        assert_eq!(evidence["chain_trusted"], false);
        assert_eq!(evidence["issuer"], "CN=Contoso Edge Inspection CA, O=Contoso");
        assert_eq!(evidence["chain_top_issuer"], "CN=Contoso Edge Inspection CA, O=Contoso");
        assert_eq!(evidence["trust_error"], "invalid peer certificate: UnknownIssuer");
        assert_eq!(evidence["protocol"], "TLSv1_2");
        assert!(evidence["not_after"].is_string());
        assert_no_timing_fields(&evidence);
    }

    #[test]
    fn falls_back_to_the_leaf_issuer() {
        let mut report = relay_intercepted();
        tls_mut(&mut report).chain_top_issuer = None;
        tls_mut(&mut report).issuer = Some("CN=Leaf Issuer".into());
        assert!(fail_summary(&run(report)).contains("'CN=Leaf Issuer'"));
    }

    #[test]
    fn expired_leaf_fails_even_when_the_chain_was_trusted() {
        let mut report = healthy_password_reset();
        tls_mut(&mut report).not_after = Some(now() - Duration::days(3));
        let outcome = run(report);
        let text = fail_summary(&outcome);
        assert!(text.contains("expired on 2026-02-27"), "{text}");
        assert!(!text.contains("inspect"), "{text}");
        assert_eq!(fail_evidence(&outcome)["problems"], json!(["expired"]));
    }

    #[test]
    fn an_expired_certificate_from_a_trusted_root_is_expired_not_inspected() {
        // As the collector reports it: the verdict is "expired", the chain leads to a public root.
        let mut report = healthy_relay();
        let tls = tls_mut(&mut report);
        tls.chain_trusted = false;
        tls.trust_failure = Some(TrustFailure::Expired);
        tls.trust_error =
            Some("the certificate has expired: invalid peer certificate: certificate expired".into());
        tls.not_after = Some(now() - Duration::days(1));
        let outcome = run(report.clone());
        let text = fail_summary(&outcome);
        assert!(text.contains("expired on"), "{text}");
        assert!(!text.contains("inspect") && !text.contains("not by a public"), "{text}");
        assert_eq!(fail_evidence(&outcome)["problems"], json!(["expired"]));
        // Older collectors send only the text: read the same from it.
        tls_mut(&mut report).trust_failure = None;
        assert_eq!(fail_evidence(&run(report))["problems"], json!(["expired"]));
    }

    #[test]
    fn a_certificate_for_another_name_says_so() {
        let mut report = healthy_password_reset();
        let tls = tls_mut(&mut report);
        tls.chain_trusted = false;
        tls.trust_failure = Some(TrustFailure::WrongName);
        tls.subject = Some("CN=portal.hotel.example".into());
        tls.trust_error = Some("the certificate is not valid for this host name: certificate not valid for name \"passwordreset.microsoftonline.com\"".into());
        let outcome = run(report);
        let text = fail_summary(&outcome);
        assert!(text.contains("CN=portal.hotel.example"), "{text}");
        assert!(text.contains("not valid for"), "{text}");
        assert!(!text.contains("inspect"), "{text}");
        assert_eq!(fail_evidence(&outcome)["problems"], json!(["wrong_name"]));
    }

    #[test]
    fn not_yet_valid_leaf_fails() {
        let mut report = healthy_relay();
        tls_mut(&mut report).not_before = Some(now() + Duration::days(1));
        assert_eq!(fail_evidence(&run(report))["problems"], json!(["not_yet_valid"]));
    }

    #[test]
    fn legacy_protocol_fails_and_says_tls_1_2_is_required() {
        let outcome = run(legacy_tls());
        let text = fail_summary(&outcome);
        assert!(text.contains("TLSv1.0"), "{text}");
        assert!(text.contains("TLS 1.2 or newer is required"), "{text}");
        assert_eq!(fail_evidence(&outcome)["problems"], json!(["protocol_below_tls12"]));
    }

    #[test]
    fn several_problems_are_reported_together() {
        let mut report = relay_intercepted();
        tls_mut(&mut report).protocol = "TLSv1_1".into();
        tls_mut(&mut report).not_after = Some(now() - Duration::days(1));
        let outcome = run(report);
        assert_eq!(
            fail_evidence(&outcome)["problems"],
            json!(["untrusted_issuer", "expired", "protocol_below_tls12"])
        );
    }

    #[test]
    fn other_endpoints_fail_as_high() {
        let mut report = relay_intercepted();
        report.role = EndpointRole::Other;
        report.host = "intranet.contoso.local".into();
        let Outcome::Fail { severity, summary, .. } = run(report) else { panic!("expected a failure") };
        assert_eq!(severity, Severity::High);
        assert!(summary.contains("exempt intranet.contoso.local"), "{summary}");
    }

    #[test]
    fn no_handshake_is_unknown() {
        let Outcome::Unknown { reason, .. } = run(relay_tcp_blocked()) else { panic!("expected unknown") };
        assert!(reason.contains("did not complete"), "{reason}");
        assert!(reason.contains("tcp"), "{reason}");
        let tls_failed = failed_at(RELAY_HOST, EndpointRole::ServiceBusRelay, ProbeStep::Tls, "reset");
        assert!(matches!(run(tls_failed), Outcome::Unknown { .. }));
    }

    #[test]
    fn evidence_does_not_move_with_handshake_time_or_cipher() {
        let a = run(relay_intercepted());
        let mut report = relay_intercepted();
        tls_mut(&mut report).handshake_ms = 999;
        tls_mut(&mut report).cipher_suite = "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256".into();
        assert_eq!(a, run(report));
    }

    #[test]
    fn protocol_names_are_understood() {
        for (name, below) in [
            ("TLSv1_3", Some(false)),
            ("TLSv1.2", Some(false)),
            ("TLS 1.2", Some(false)),
            ("TLSv1_1", Some(true)),
            ("TLSv1", Some(true)),
            ("TLS1.0", Some(true)),
            ("SSLv3", Some(true)),
            ("QUIC", None),
            ("TLSv2", None),
        ] {
            assert_eq!(protocol_below_tls12(name), below, "{name}");
        }
    }
}
