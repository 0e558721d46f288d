//! Rules over the proxy probe (catalogue PWB-HOST-08, PWB-HOST-10; seed checklist point 8).
//!
//! - `proxy-allows-writeback`: when the site uses a proxy, it opens a tunnel to each writeback
//!   endpoint. Fails naming the step (reaching the proxy, its authentication, the CONNECT) for
//!   the password reset service and the relay; passes when every writeback target was tunnelled;
//!   unknown when the proxy asks for Windows-integrated authentication, which the collector does
//!   not do (the Connect server's machine account may well pass).
//! - `proxy-no-tls-inspection`: the certificate seen through the proxy is the real one. Fails
//!   when the probe detected re-signing for a writeback target; unknown when no handshake ran.
//!
//! Both are *not applicable* where no proxy is configured or found: the site connects directly
//! and `endpoint-reachable` judges that path.
//!
//! Subject: `<probe subject>@<collector id>`. Evidence: `collector_id`, `collector_name`,
//! `proxy`, `source`, and per affected target `host`, `port`, `step`/`issuer`, `status`.

use serde_json::json;
use wbd_wire::{EndpointRole, ProbeKind, ProbeOutput, ProxyReport, ProxySource, ProxyStep};

use super::{RuleDef, Verdict, observed, site_evidence};
use crate::facts::Observation;
use crate::{Message, Outcome, Params, Severity, TenantFacts};

pub(crate) const ALLOWS: &str = "proxy-allows-writeback";
pub(crate) const NO_INSPECTION: &str = "proxy-no-tls-inspection";

pub(crate) const RULES: &[RuleDef] = &[
    RuleDef {
        id: ALLOWS,
        check: check_allows,
        #[cfg(test)]
        fixtures: tests::allows_fixtures,
    },
    RuleDef {
        id: NO_INSPECTION,
        check: check_inspection,
        #[cfg(test)]
        fixtures: tests::inspection_fixtures,
    },
];

type ProxyObservation<'a> = Observation<'a, ProxyReport>;

fn run(facts: &TenantFacts, judge: fn(&ProxyObservation<'_>) -> Outcome) -> Vec<Verdict> {
    match observed(facts, ProbeKind::Proxy, |output| match output {
        ProbeOutput::Proxy(report) => Some(report),
        _ => None,
    }) {
        Ok(observations) => {
            observations.iter().map(|o| Verdict { subject: o.subject(), outcome: judge(o) }).collect()
        }
        Err(no_data) => no_data,
    }
}

fn check_allows(facts: &TenantFacts, _params: &Params) -> Vec<Verdict> {
    run(facts, judge_allows)
}

fn check_inspection(facts: &TenantFacts, _params: &Params) -> Vec<Verdict> {
    run(facts, judge_inspection)
}

pub(crate) fn source_name(source: ProxySource) -> &'static str {
    match source {
        ProxySource::Configured => "configured",
        ProxySource::Environment => "environment",
        ProxySource::MachineConfig => "machine_config",
        ProxySource::System => "system",
        ProxySource::None => "none",
    }
}

pub(crate) fn step_name(step: ProxyStep) -> &'static str {
    match step {
        ProxyStep::ProxyConnect => "proxy_connect",
        ProxyStep::ProxyAuth => "proxy_auth",
        ProxyStep::Tunnel => "tunnel",
        ProxyStep::Tls => "tls",
    }
}

fn evidence_of(observation: &ProxyObservation<'_>) -> serde_json::Map<String, serde_json::Value> {
    let mut evidence = site_evidence(observation);
    evidence.insert("proxy".into(), json!(observation.report.proxy));
    evidence.insert("source".into(), json!(source_name(observation.report.source)));
    evidence
}

/// "Not applicable: no proxy here" in the words of `rule`.
fn no_proxy(rule: &'static str, observation: &ProxyObservation<'_>) -> Outcome {
    let key = match rule {
        ALLOWS => "proxy-allows-writeback.no-proxy",
        _ => "proxy-no-tls-inspection.no-proxy",
    };
    Outcome::not_applicable(Message::new(key).arg("collector", observation.collector.name.as_str()))
}

fn judge_allows(observation: &ProxyObservation<'_>) -> Outcome {
    let report = observation.report;
    let Some(proxy) = report.proxy.as_deref() else { return no_proxy(ALLOWS, observation) };
    let blocked: Vec<_> = report
        .targets
        .iter()
        .filter(|t| t.role != EndpointRole::Other)
        .filter_map(|t| t.failure.as_ref().filter(|f| f.step != ProxyStep::Tls).map(|f| (t, f)))
        .collect();
    let Some((first, failure)) = blocked.first() else { return Outcome::Pass };
    if failure.step == ProxyStep::ProxyAuth && report.integrated_auth_required == Some(true) {
        return Outcome::unknown(
            Message::new("proxy-allows-writeback.integrated-auth")
                .arg("proxy", proxy)
                .arg("schemes", json!(report.offered_auth_schemes)),
        );
    }
    let key = match failure.step {
        ProxyStep::ProxyConnect => "proxy-allows-writeback.unreachable",
        ProxyStep::ProxyAuth => "proxy-allows-writeback.auth",
        ProxyStep::Tunnel | ProxyStep::Tls => "proxy-allows-writeback.tunnel",
    };
    let hosts: Vec<String> = blocked.iter().map(|(t, _)| format!("{}:{}", t.host, t.port)).collect();
    let mut evidence = evidence_of(observation);
    let targets: Vec<_> = blocked
        .iter()
        .map(|(t, f)| json!({"host": t.host, "port": t.port, "step": step_name(f.step), "status": t.connect_status, "error": f.error}))
        .collect();
    evidence.insert("blocked".into(), json!(targets));
    let message = Message::new(key)
        .arg("collector", observation.collector.name.as_str())
        .arg("proxy", proxy)
        .arg("hosts", json!(hosts))
        .arg("status", first.connect_status.map_or(json!("-"), |s| json!(s)))
        .arg("error", failure.error.as_str());
    Outcome::fail(Severity::Critical, message, evidence.into())
}

fn judge_inspection(observation: &ProxyObservation<'_>) -> Outcome {
    let report = observation.report;
    if report.proxy.is_none() {
        return no_proxy(NO_INSPECTION, observation);
    }
    let writeback: Vec<_> = report.targets.iter().filter(|t| t.role != EndpointRole::Other).collect();
    let inspected: Vec<_> = writeback.iter().filter(|t| t.tls_inspection == Some(true)).collect();
    if let Some(first) = inspected.first() {
        let issuer = first
            .tls
            .as_ref()
            .and_then(|tls| tls.chain_top_issuer.as_deref().or(tls.issuer.as_deref()))
            .unwrap_or("?");
        let hosts: Vec<String> = inspected.iter().map(|t| format!("{}:{}", t.host, t.port)).collect();
        let mut evidence = evidence_of(observation);
        evidence.insert("inspected".into(), json!(hosts));
        evidence.insert("issuer".into(), json!(issuer));
        let message = Message::new("proxy-no-tls-inspection.inspected")
            .arg("collector", observation.collector.name.as_str())
            .arg("proxy", report.proxy.as_deref().unwrap_or("-"))
            .arg("issuer", issuer)
            .arg("hosts", json!(hosts));
        return Outcome::fail(Severity::High, message, evidence.into());
    }
    if writeback.iter().any(|t| t.tls_inspection == Some(false)) {
        Outcome::Pass
    } else {
        Outcome::unknown(Message::new("proxy-no-tls-inspection.no-handshake"))
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use wbd_wire::{ProxyAuthScheme, ProxyFailure, ProxyTargetReport};

    use super::*;
    use crate::rules::fixtures::*;

    fn target(
        host: &str,
        role: EndpointRole,
        inspected: Option<bool>,
        failure: Option<(ProxyStep, Option<u16>)>,
    ) -> ProxyTargetReport {
        let tunnel = failure.is_none_or(|(step, _)| step == ProxyStep::Tls);
        let mut tls = healthy_relay().tls;
        if inspected == Some(true)
            && let Some(tls) = tls.as_mut()
        {
            tls.chain_trusted = false;
            tls.chain_top_issuer = Some("CN=Contoso Edge Inspection CA".to_owned());
        }
        ProxyTargetReport {
            host: host.to_owned(),
            port: 443,
            role,
            connect_status: failure.map_or(Some(200), |(_, status)| status),
            tunnel_established: tunnel,
            tls: if inspected.is_some() { tls } else { None },
            tls_inspection: inspected,
            failure: failure.map(|(step, status)| ProxyFailure {
                step,
                error: status.map_or("connection refused".to_owned(), |s| format!("proxy answered {s}")),
            }),
        }
    }

    pub(crate) fn proxy_report(targets: Vec<ProxyTargetReport>) -> ProbeOutput {
        ProbeOutput::Proxy(ProxyReport {
            source: ProxySource::System,
            proxy: Some("proxy.corp.example:8080".to_owned()),
            auth_used: ProxyAuthScheme::None,
            offered_auth_schemes: vec![],
            integrated_auth_required: None,
            targets,
        })
    }

    pub(crate) fn healthy() -> ProbeOutput {
        proxy_report(vec![
            target(RELAY_HOST, EndpointRole::ServiceBusRelay, Some(false), None),
            target(PASSWORD_RESET_HOST, EndpointRole::PasswordReset, Some(false), None),
        ])
    }

    pub(crate) fn inspecting() -> ProbeOutput {
        proxy_report(vec![
            target(RELAY_HOST, EndpointRole::ServiceBusRelay, Some(true), None),
            target(PASSWORD_RESET_HOST, EndpointRole::PasswordReset, Some(false), None),
        ])
    }

    /// What the collector reports where no proxy is configured or found: nothing to tunnel.
    pub(crate) fn no_proxy() -> ProbeOutput {
        ProbeOutput::Proxy(ProxyReport {
            source: ProxySource::None,
            proxy: None,
            auth_used: ProxyAuthScheme::None,
            offered_auth_schemes: vec![],
            integrated_auth_required: None,
            targets: vec![],
        })
    }

    fn one(output: ProbeOutput) -> crate::TenantFacts {
        site_with(vec![("proxy", output)])
    }

    pub(crate) fn allows_fixtures() -> Vec<Fixture> {
        let refused = proxy_report(vec![target(
            RELAY_HOST,
            EndpointRole::ServiceBusRelay,
            None,
            Some((ProxyStep::Tunnel, Some(403))),
        )]);
        let auth = proxy_report(vec![target(
            RELAY_HOST,
            EndpointRole::ServiceBusRelay,
            None,
            Some((ProxyStep::ProxyAuth, Some(407))),
        )]);
        let down = proxy_report(vec![target(
            PASSWORD_RESET_HOST,
            EndpointRole::PasswordReset,
            None,
            Some((ProxyStep::ProxyConnect, None)),
        )]);
        let mut ntlm = proxy_report(vec![target(
            RELAY_HOST,
            EndpointRole::ServiceBusRelay,
            None,
            Some((ProxyStep::ProxyAuth, Some(407))),
        )]);
        if let ProbeOutput::Proxy(report) = &mut ntlm {
            report.integrated_auth_required = Some(true);
            report.offered_auth_schemes = vec!["ntlm".to_owned(), "negotiate".to_owned()];
        }
        vec![
            Fixture::new("CONNECT refused", one(refused), Expect::Fail(Severity::Critical)),
            Fixture::new("credentials refused", one(auth), Expect::Fail(Severity::Critical)),
            Fixture::new("proxy unreachable", one(down), Expect::Fail(Severity::Critical)),
            Fixture::new("tunnels open", one(healthy()), Expect::Pass),
            Fixture::new("no proxy in use", one(no_proxy()), Expect::NotApplicable),
            Fixture::new("NTLM only", one(ntlm), Expect::Unknown),
            Fixture::new("no probe", site_with(vec![]), Expect::Unknown),
        ]
    }

    pub(crate) fn inspection_fixtures() -> Vec<Fixture> {
        let blocked = proxy_report(vec![target(
            RELAY_HOST,
            EndpointRole::ServiceBusRelay,
            None,
            Some((ProxyStep::Tunnel, Some(403))),
        )]);
        vec![
            Fixture::new("re-signed", one(inspecting()), Expect::Fail(Severity::High)),
            Fixture::new("genuine certificates", one(healthy()), Expect::Pass),
            Fixture::new("no handshake", one(blocked), Expect::Unknown),
            Fixture::new("no proxy in use", one(no_proxy()), Expect::NotApplicable),
            Fixture::new("no probe", site_with(vec![]), Expect::Unknown),
        ]
    }
}
