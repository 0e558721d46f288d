//! Test fixtures: facts built the way a collector reports them, for the rules' tests.

use std::net::{IpAddr, Ipv4Addr};

use chrono::{DateTime, Duration, TimeZone, Utc};
use serde_json::Value;
use uuid::Uuid;
use wbd_wire::{
    EndpointReport, EndpointRole, ProbeOutput, ProbeStep, ProxiedConnection, ProxyFailure, ProxySource,
    ProxyStep, StepFailure, TlsReport, TrustFailure,
};

pub(crate) use super::run_rule;
use crate::{CollectorState, FactInput, Outcome, Severity, TenantFacts};

/// Facts that a rule must judge a given way: every shipped rule has at least one that fails it
/// and one that passes it (checked by the pack's tests in `lib.rs`).
#[derive(Debug, Clone)]
pub(crate) struct Fixture {
    pub name: &'static str,
    pub facts: TenantFacts,
    /// Parameter overrides (`{}` for the defaults).
    pub params: serde_json::Map<String, Value>,
    pub expect: Expect,
}

/// What a fixture expects of the rule's verdicts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Expect {
    /// At least one verdict fails, with this severity.
    Fail(Severity),
    /// Every verdict passes (and there is at least one).
    Pass,
    /// Every verdict is unknown (and there is at least one).
    Unknown,
    /// Every verdict is "not applicable" (and there is at least one).
    NotApplicable,
}

impl Fixture {
    pub fn new(name: &'static str, facts: TenantFacts, expect: Expect) -> Self {
        Fixture { name, facts, params: serde_json::Map::new(), expect }
    }

    pub fn with_param(mut self, name: &str, value: Value) -> Self {
        self.params.insert(name.to_owned(), value);
        self
    }
}

/// A tenant with one active collector ("site-a") and these probe outputs, each observed half a
/// minute ago under the given probe subject.
pub(crate) fn site_with(outputs: Vec<(&str, ProbeOutput)>) -> TenantFacts {
    let site = collector("site-a");
    let facts = outputs
        .into_iter()
        .map(|(subject, output)| FactInput {
            collector_id: site.id,
            subject: subject.to_owned(),
            observed_at: now() - Duration::seconds(30),
            output,
        })
        .collect();
    tenant(vec![site], facts)
}

pub(crate) const PASSWORD_RESET_HOST: &str = "passwordreset.microsoftonline.com";
pub(crate) const RELAY_HOST: &str = "ssprdedicatedsbprodscu.servicebus.windows.net";

/// The evaluation instant of every fixture.
pub(crate) fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 3, 2, 12, 0, 0).single().unwrap_or(DateTime::UNIX_EPOCH)
}

/// An active collector that pushed a minute ago and is due again within its grace period. Its id
/// is derived from the name, so the same name gives the same collector in every test.
pub(crate) fn collector(name: &str) -> CollectorState {
    // FNV-1a: a fixed, dependency-free way to turn the name into an id.
    let hash =
        name.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3));
    CollectorState {
        id: Uuid::from_u64_pair(hash, !hash),
        name: name.to_owned(),
        active: true,
        last_seen_at: Some(now() - Duration::seconds(60)),
        silent_after: Some(now() + Duration::seconds(840)),
        push_interval_secs: 300,
    }
}

pub(crate) fn tenant(collectors: Vec<CollectorState>, facts: Vec<FactInput>) -> TenantFacts {
    TenantFacts { now: now(), collectors, facts }
}

/// The report as the collector files it: subject `host:port`, observed half a minute ago.
pub(crate) fn endpoint_fact(collector: &CollectorState, report: EndpointReport) -> FactInput {
    let subject = format!("{}:{}", report.host, report.port);
    endpoint_fact_for(collector, &subject, report)
}

pub(crate) fn endpoint_fact_for(
    collector: &CollectorState,
    subject: &str,
    report: EndpointReport,
) -> FactInput {
    FactInput {
        collector_id: collector.id,
        subject: subject.to_owned(),
        observed_at: now() - Duration::seconds(30),
        output: ProbeOutput::Endpoint(report),
    }
}

fn addresses() -> Vec<IpAddr> {
    vec![IpAddr::V4(Ipv4Addr::new(20, 190, 151, 7)), IpAddr::V4(Ipv4Addr::new(20, 190, 151, 9))]
}

fn trusted_tls(protocol: &str) -> TlsReport {
    TlsReport {
        handshake_ms: 41,
        protocol: protocol.to_owned(),
        cipher_suite: "TLS13_AES_256_GCM_SHA384".to_owned(),
        chain_trusted: true,
        trust_error: None,
        trust_failure: None,
        subject: Some("CN=*.servicebus.windows.net".to_owned()),
        issuer: Some("CN=Microsoft Azure RSA TLS Issuing CA 03, O=Microsoft Corporation, C=US".to_owned()),
        not_before: Some(now() - Duration::days(90)),
        not_after: Some(now() + Duration::days(90)),
        chain_top_issuer: Some(
            "CN=DigiCert Global Root G2, OU=www.digicert.com, O=DigiCert Inc, C=US".to_owned(),
        ),
        chain_len: 2,
    }
}

fn reached(host: &str, role: EndpointRole, tls: TlsReport) -> EndpointReport {
    let resolved = addresses();
    EndpointReport {
        host: host.to_owned(),
        port: 443,
        role,
        connected_to: resolved.first().copied(),
        resolved,
        dns_ms: Some(4),
        tcp_connect_ms: Some(18),
        tls: Some(tls),
        failure: None,
        via_proxy: None,
    }
}

pub(crate) fn healthy_password_reset() -> EndpointReport {
    reached(PASSWORD_RESET_HOST, EndpointRole::PasswordReset, trusted_tls("TLSv1_3"))
}

pub(crate) fn healthy_relay() -> EndpointReport {
    reached(RELAY_HOST, EndpointRole::ServiceBusRelay, trusted_tls("TLSv1_3"))
}

pub(crate) fn failed_at(host: &str, role: EndpointRole, step: ProbeStep, error: &str) -> EndpointReport {
    let resolved = if step == ProbeStep::Dns { vec![] } else { addresses() };
    EndpointReport {
        host: host.to_owned(),
        port: 443,
        role,
        connected_to: if step == ProbeStep::Tls { resolved.first().copied() } else { None },
        resolved,
        dns_ms: if step == ProbeStep::Dns { None } else { Some(5) },
        tcp_connect_ms: if step == ProbeStep::Tls { Some(20) } else { None },
        tls: None,
        failure: Some(StepFailure { step, error: error.to_owned() }),
        via_proxy: None,
    }
}

pub(crate) fn relay_dns_failed() -> EndpointReport {
    failed_at(
        RELAY_HOST,
        EndpointRole::ServiceBusRelay,
        ProbeStep::Dns,
        "failed to lookup address information: Name or service not known",
    )
}

pub(crate) fn relay_tcp_blocked() -> EndpointReport {
    failed_at(RELAY_HOST, EndpointRole::ServiceBusRelay, ProbeStep::Tcp, "connection timed out after 10s")
}

/// A handshake refused because the path offers nothing newer than TLS 1.1.
pub(crate) fn password_reset_tls_failed() -> EndpointReport {
    failed_at(
        PASSWORD_RESET_HOST,
        EndpointRole::PasswordReset,
        ProbeStep::Tls,
        "received fatal alert: ProtocolVersion",
    )
}

/// A TLS-inspecting firewall re-signs the relay's traffic with its own CA.
pub(crate) fn relay_intercepted() -> EndpointReport {
    let mut tls = trusted_tls("TLSv1_2");
    tls.chain_trusted = false;
    tls.trust_error = Some("invalid peer certificate: UnknownIssuer".to_owned());
    tls.trust_failure = Some(TrustFailure::UntrustedIssuer);
    tls.issuer = Some("CN=Contoso Edge Inspection CA, O=Contoso".to_owned());
    tls.chain_top_issuer = Some("CN=Contoso Edge Inspection CA, O=Contoso".to_owned());
    tls.chain_len = 1;
    reached(RELAY_HOST, EndpointRole::ServiceBusRelay, tls)
}

/// A middlebox that still negotiates TLS 1.0 in front of the password reset service.
pub(crate) fn legacy_tls() -> EndpointReport {
    reached(PASSWORD_RESET_HOST, EndpointRole::PasswordReset, trusted_tls("TLSv1.0"))
}

/// `report` as seen directly, plus the same endpoint reached through the site's proxy with
/// `failure` (none: the handshake through the tunnel completed with a trusted chain).
pub(crate) fn through_proxy(
    mut report: EndpointReport,
    failure: Option<(ProxyStep, Option<u16>, &str)>,
) -> EndpointReport {
    let proxied = ProxiedConnection {
        proxy: "proxy.contoso.local:3128".to_owned(),
        source: ProxySource::MachineConfig,
        connect_status: match failure {
            Some((_, status, _)) => status,
            None => Some(200),
        },
        tls: failure.is_none().then(|| trusted_tls("TLSv1_3")),
        failure: failure.map(|(step, _, error)| ProxyFailure { step, error: error.to_owned() }),
        offered_auth_schemes: Vec::new(),
    };
    report.via_proxy = Some(proxied);
    report
}

/// Sets every timing a collector reports to `ms`.
pub(crate) fn with_timings(mut report: EndpointReport, ms: u64) -> EndpointReport {
    report.dns_ms = Some(ms);
    report.tcp_connect_ms = report.tcp_connect_ms.map(|_| ms);
    if let Some(tls) = report.tls.as_mut() {
        tls.handshake_ms = ms;
    }
    report
}

/// The evidence of a failing outcome, or a panic naming what came instead.
pub(crate) fn fail_evidence(outcome: &Outcome) -> &Value {
    match outcome {
        Outcome::Fail { evidence, .. } => evidence,
        other => panic!("expected a failure, got {other:?}"),
    }
}

/// The summary of a failing outcome, or a panic naming what came instead.
pub(crate) fn fail_summary(outcome: &Outcome) -> &str {
    match outcome {
        Outcome::Fail { summary, .. } => summary,
        other => panic!("expected a failure, got {other:?}"),
    }
}

/// Evidence must not carry timings: they change on every push and would churn findings.
pub(crate) fn assert_no_timing_fields(value: &Value) {
    match value {
        Value::Object(map) => {
            for (key, inner) in map {
                assert!(
                    !key.ends_with("_ms") && !key.contains("duration") && key != "observed_at",
                    "timing field {key} in evidence {value}"
                );
                assert_no_timing_fields(inner);
            }
        }
        Value::Array(items) => items.iter().for_each(assert_no_timing_fields),
        _ => {}
    }
}
