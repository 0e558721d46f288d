//! What the simulated collectors report: sites that probe a set of writeback endpoints every
//! cycle, mostly with the same outcome as last time (timings vary, the situation rarely does),
//! sealed into batches and gzipped the way `wbd-collector` sends them.
//!
//! Each cycle reports one result of every host probe the collector runs (idle connection, proxy,
//! Entra Connect server, event log, Active Directory, Microsoft Graph: healthy outputs taken from
//! the rule pack's own healthy-tenant scenario, in `host_probes.json`) and one result per
//! endpoint. A site's endpoints start 90% healthy, the rest failing in the ways the rules know
//! (TCP refused, DNS failure, TLS inspected by a proxy); each cycle every endpoint flips between
//! healthy and its failure with a small probability, so findings open and resolve at a steady
//! trickle while most results repeat.

use std::io::Write as _;
use std::net::IpAddr;
use std::sync::OnceLock;

use chrono::{DateTime, Duration, SecondsFormat, Utc};
use flate2::Compression;
use flate2::write::GzEncoder;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::Value;
use uuid::Uuid;
use wbd_rules::{CollectorState, FactInput, TenantFacts};
use wbd_wire::{
    CollectorInfo, EndpointReport, EndpointRole, IngestBatch, ProbeOutput, ProbeResult, ProbeStep,
    SCHEMA_VERSION, StepFailure, TlsReport,
};

/// The push interval the simulated collectors announce (the product's default): long enough
/// that none of them turns silent during a run.
pub const PUSH_INTERVAL_SECS: u32 = 300;

/// Host of the endpoint whose error text carries a batch's sequence number in the latency run.
pub const MARKER_HOST: &str = "marker.servicebus.windows.net";

/// How an endpoint fails when it fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    TcpRefused,
    DnsFailed,
    TlsIntercepted,
}

#[derive(Debug, Clone)]
struct Endpoint {
    host: String,
    port: u16,
    role: EndpointRole,
    /// What DNS answers (the same every cycle, as it mostly is).
    address: IpAddr,
    failure: Failure,
    failing: bool,
}

/// One customer site: the endpoints its collector probes, and their current state.
#[derive(Debug, Clone)]
pub struct Site {
    rng: StdRng,
    /// (subject, output) of each host probe, reported unchanged every cycle.
    host_probes: Vec<(String, ProbeOutput)>,
    endpoints: Vec<Endpoint>,
    flip_probability: f64,
    /// Validity start of the certificates the endpoints present (valid for a year).
    not_before: DateTime<Utc>,
}

impl Site {
    /// A site whose cycle yields `results` results: the host probes, and endpoints for the rest
    /// (at least one). Seeded so that a run is repeatable.
    pub fn new(seed: u64, results: usize, flip_probability: f64) -> Site {
        let mut rng = StdRng::seed_from_u64(seed);
        let host_probes = host_probes(Utc::now());
        let endpoints = (0..results.saturating_sub(host_probes.len()).max(1))
            .map(|i| {
                let (host, role) = match i {
                    0 => ("passwordreset.microsoftonline.com".to_owned(), EndpointRole::PasswordReset),
                    1 => (
                        "ssprdedicatedsbprodscu.servicebus.windows.net".to_owned(),
                        EndpointRole::ServiceBusRelay,
                    ),
                    i if i % 3 == 0 => (format!("app{i:03}.contoso.example"), EndpointRole::Other),
                    i => (format!("sspr{i:03}.servicebus.windows.net"), EndpointRole::ServiceBusRelay),
                };
                let failure = match rng.random_range(0..3) {
                    0 => Failure::TcpRefused,
                    1 => Failure::DnsFailed,
                    _ => Failure::TlsIntercepted,
                };
                let failing = rng.random_bool(0.1);
                let address: IpAddr = [20, 190, rng.random_range(128..160), rng.random_range(1..255)].into();
                Endpoint { host, port: 443, role, address, failure, failing }
            })
            .collect();
        // Whole days, so that sites made at different moments of a run present the same dates.
        let today = Utc::now().timestamp() / 86_400 * 86_400;
        let not_before = DateTime::from_timestamp(today, 0).unwrap_or_default() - Duration::days(30);
        Site { rng, host_probes, endpoints, flip_probability, not_before }
    }

    /// Results in one cycle.
    pub fn results_per_cycle(&self) -> usize {
        self.host_probes.len() + self.endpoints.len()
    }

    /// One probe cycle: the host probes, then a result per endpoint, all observed at `now`.
    pub fn cycle(&mut self, now: DateTime<Utc>) -> Vec<ProbeResult> {
        let mut results = Vec::with_capacity(self.results_per_cycle());
        for (subject, output) in &self.host_probes {
            results.push(ProbeResult {
                subject: subject.clone(),
                observed_at: now,
                duration_ms: self.rng.random_range(50..900),
                output: output.clone(),
            });
        }
        for i in 0..self.endpoints.len() {
            if self.rng.random_bool(self.flip_probability) {
                self.endpoints[i].failing = !self.endpoints[i].failing;
            }
            let endpoint = self.endpoints[i].clone();
            results.push(endpoint_result(&mut self.rng, &endpoint, now, self.not_before, None));
        }
        results
    }

    /// A cycle whose last result is the marker endpoint, refused with an error text that names
    /// `sequence`: its `endpoint-reachable` finding changes with every such batch, so the batch
    /// is visible as soon as the finding shows `sequence` (or a later one).
    pub fn cycle_with_marker(&mut self, now: DateTime<Utc>, sequence: u64) -> Vec<ProbeResult> {
        let mut results = self.cycle(now);
        results.pop();
        let marker = Endpoint {
            host: MARKER_HOST.to_owned(),
            port: 443,
            role: EndpointRole::ServiceBusRelay,
            address: [20, 190, 160, 1].into(),
            failure: Failure::TcpRefused,
            failing: true,
        };
        results.push(endpoint_result(
            &mut self.rng,
            &marker,
            now,
            self.not_before,
            Some(marker_error(sequence)),
        ));
        results
    }
}

/// The healthy host-probe outputs of `host_probes.json` (recorded from the rule pack's healthy
/// scenario at `fixture_now`), with every timestamp moved by `now - fixture_now` so that they are
/// as fresh as they were in the scenario.
pub fn host_probes(now: DateTime<Utc>) -> Vec<(String, ProbeOutput)> {
    static FILE: OnceLock<Value> = OnceLock::new();
    let file = FILE.get_or_init(|| {
        serde_json::from_str(include_str!("host_probes.json")).expect("host_probes.json is JSON")
    });
    let recorded = file["fixture_now"]
        .as_str()
        .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
        .map(|t| t.with_timezone(&Utc))
        .unwrap_or(now);
    let shift = now - recorded;
    file["results"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .map(|entry| {
            let mut output = entry["output"].clone();
            shift_timestamps(&mut output, shift);
            let output: ProbeOutput = serde_json::from_value(output).unwrap_or_else(|e| {
                panic!("bench/src/host_probes.json no longer matches the wire schema ({e}); record it again")
            });
            (entry["subject"].as_str().unwrap_or("host").to_owned(), output)
        })
        .collect()
}

fn shift_timestamps(value: &mut Value, shift: Duration) {
    match value {
        Value::String(text) => {
            if let Ok(at) = DateTime::parse_from_rfc3339(text) {
                *text = (at.with_timezone(&Utc) + shift).to_rfc3339_opts(SecondsFormat::AutoSi, true);
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|v| shift_timestamps(v, shift)),
        Value::Object(map) => map.values_mut().for_each(|v| shift_timestamps(v, shift)),
        _ => {}
    }
}

/// The error text of the marker endpoint for a batch.
pub fn marker_error(sequence: u64) -> String {
    format!("connection refused (benchmark batch #{sequence})")
}

/// The batch sequence number in a marker error text.
pub fn marker_sequence(error: &str) -> Option<u64> {
    let start = error.rfind('#')? + 1;
    error[start..].trim_end_matches(')').parse().ok()
}

/// A result for `endpoint`; `tcp_error` replaces the error text of a TCP failure.
fn endpoint_result(
    rng: &mut StdRng,
    endpoint: &Endpoint,
    now: DateTime<Utc>,
    not_before: DateTime<Utc>,
    tcp_error: Option<String>,
) -> ProbeResult {
    let address = endpoint.address;
    let dns_ms = rng.random_range(1..40);
    let tcp_ms = rng.random_range(5..60);
    let mut report = EndpointReport {
        host: endpoint.host.clone(),
        port: endpoint.port,
        role: endpoint.role,
        resolved: vec![address],
        dns_ms: Some(dns_ms),
        connected_to: Some(address),
        tcp_connect_ms: Some(tcp_ms),
        tls: Some(tls(rng, &endpoint.host, true, not_before)),
        failure: None,
        via_proxy: None,
    };
    if endpoint.failing {
        match endpoint.failure {
            Failure::TcpRefused => {
                report.connected_to = None;
                report.tcp_connect_ms = None;
                report.tls = None;
                report.failure = Some(StepFailure {
                    step: ProbeStep::Tcp,
                    error: tcp_error.unwrap_or_else(|| "connection refused (os error 111)".into()),
                });
            }
            Failure::DnsFailed => {
                report.resolved = Vec::new();
                report.connected_to = None;
                report.tcp_connect_ms = None;
                report.tls = None;
                report.failure = Some(StepFailure {
                    step: ProbeStep::Dns,
                    error: "failed to lookup address information: Name or service not known".into(),
                });
            }
            Failure::TlsIntercepted => report.tls = Some(tls(rng, &endpoint.host, false, not_before)),
        }
    }
    let duration_ms = dns_ms + tcp_ms + report.tls.as_ref().map_or(0, |t| t.handshake_ms);
    ProbeResult {
        subject: format!("{}:{}", endpoint.host, endpoint.port),
        observed_at: now,
        duration_ms,
        output: ProbeOutput::Endpoint(report),
    }
}

fn tls(rng: &mut StdRng, host: &str, trusted: bool, not_before: DateTime<Utc>) -> TlsReport {
    let issuer = if trusted {
        "CN=Microsoft Azure RSA TLS Issuing CA 04, O=Microsoft Corporation, C=US"
    } else {
        "CN=Contoso TLS Inspection CA, O=Contoso Ltd, C=PL"
    };
    let top = if trusted {
        "CN=DigiCert Global Root G2, OU=www.digicert.com, O=DigiCert Inc, C=US"
    } else {
        issuer
    };
    TlsReport {
        handshake_ms: rng.random_range(10..120),
        protocol: "TLSv1.3".into(),
        cipher_suite: "TLS13_AES_256_GCM_SHA384".into(),
        chain_trusted: trusted,
        trust_error: (!trusted).then(|| "invalid peer certificate: UnknownIssuer".into()),
        trust_failure: (!trusted).then_some(wbd_wire::TrustFailure::UntrustedIssuer),
        subject: Some(format!("CN={host}")),
        issuer: Some(issuer.into()),
        not_before: Some(not_before),
        not_after: Some(not_before + Duration::days(365)),
        chain_top_issuer: Some(top.into()),
        chain_len: 3,
    }
}

/// A batch as the collector seals it.
pub fn batch(results: Vec<ProbeResult>, hostname: &str) -> IngestBatch {
    IngestBatch {
        schema_version: SCHEMA_VERSION,
        batch_id: Uuid::now_v7(),
        sent_at: Utc::now(),
        collector: CollectorInfo {
            version: "0.1.0".into(),
            hostname: hostname.into(),
            os: "windows".into(),
            push_interval_secs: PUSH_INTERVAL_SECS,
            spool_dropped: 0,
        },
        results,
    }
}

/// The request body the collector sends: the batch's JSON, gzip at the default level.
pub fn gzip_json(batch: &IngestBatch) -> std::io::Result<PushBody> {
    let json = serde_json::to_vec(batch)?;
    let mut encoder = GzEncoder::new(Vec::with_capacity(json.len() / 4 + 64), Compression::default());
    encoder.write_all(&json)?;
    Ok(PushBody { gzipped: encoder.finish()?, sha256: wbd_wire::body_sha256(&json) })
}

/// A push's body as sent, and the digest of its JSON that the push token binds it with.
pub struct PushBody {
    pub gzipped: Vec<u8>,
    pub sha256: String,
}

/// A tenant as the worker hands it to the rules: `sites` active collectors, each with the latest
/// facts of a site whose cycle has `results` results, simulated for a while (so some endpoints
/// fail).
pub fn tenant_facts(sites: usize, results: usize, now: DateTime<Utc>) -> TenantFacts {
    let mut collectors = Vec::new();
    let mut facts = Vec::new();
    for s in 0..sites {
        let id = Uuid::from_u128(0x0192_0000_0000_7000_8000_0000_0000_0000 + s as u128);
        collectors.push(CollectorState {
            id,
            name: format!("site-{s:02}"),
            active: true,
            last_seen_at: Some(now - Duration::seconds(60)),
            silent_after: Some(now + Duration::seconds(840)),
            push_interval_secs: PUSH_INTERVAL_SECS,
        });
        let mut site = Site::new(s as u64, results, 0.02);
        // A few cycles, so the failing set is the one a site drifts to, not only the start.
        let mut latest = site.cycle(now);
        for _ in 0..3 {
            latest = site.cycle(now);
        }
        facts.extend(latest.into_iter().map(|r| FactInput {
            collector_id: id,
            subject: r.subject,
            observed_at: r.observed_at,
            output: r.output,
        }));
    }
    TenantFacts { now, collectors, facts }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cycle_reports_every_endpoint_and_mostly_repeats() {
        let mut site = Site::new(7, 50, 0.02);
        let now = Utc::now();
        let first = site.cycle(now);
        let second = site.cycle(now);
        assert_eq!(first.len(), 50);
        let keys: std::collections::HashSet<_> =
            first.iter().map(|r| (r.output.kind(), r.subject.clone())).collect();
        assert_eq!(keys.len(), 50, "(probe, subject) keys are distinct");
        let same = first
            .iter()
            .zip(&second)
            .filter(|(a, b)| a.output.without_timings() == b.output.without_timings())
            .count();
        assert!(same >= 40, "only {same} of 50 results repeated");
    }

    #[test]
    fn host_probes_are_the_pack_s_healthy_tenant() {
        let probes = host_probes(Utc::now());
        assert_eq!(probes.len(), 6);
        assert_eq!(Site::new(5, 8, 0.0).results_per_cycle(), 8);
        // The host probes are healthy: only endpoints (some start failing) may fail a rule.
        let facts = tenant_facts(3, 20, Utc::now());
        let failing: Vec<_> = wbd_rules::evaluate(&facts)
            .into_iter()
            .filter(|e| e.outcome.is_fail())
            .map(|e| e.rule_id)
            .collect();
        assert!(failing.iter().all(|id| id.starts_with("endpoint")), "{failing:?}");
    }

    #[test]
    fn the_marker_carries_the_sequence() {
        let mut site = Site::new(1, 10, 0.0);
        let results = site.cycle_with_marker(Utc::now(), 42);
        assert_eq!(results.len(), 10);
        let last = results.last().unwrap();
        assert_eq!(last.subject, format!("{MARKER_HOST}:443"));
        let wire = serde_json::to_value(last).unwrap();
        let error = wire["data"]["failure"]["error"].as_str().unwrap();
        assert_eq!(marker_sequence(error), Some(42));
        assert_eq!(marker_sequence("connection refused"), None);
    }

    #[test]
    fn the_body_is_gzip_of_the_batch() {
        use std::io::Read as _;
        let mut site = Site::new(3, 5, 0.1);
        let batch = batch(site.cycle(Utc::now()), "AADC01");
        let body = gzip_json(&batch).unwrap();
        let mut json = Vec::new();
        flate2::read::GzDecoder::new(body.gzipped.as_slice()).read_to_end(&mut json).unwrap();
        assert_eq!(body.sha256, wbd_wire::body_sha256(&json));
        let back: IngestBatch = serde_json::from_slice(&json).unwrap();
        assert_eq!(back, batch);
    }

    #[test]
    fn a_simulated_tenant_has_some_failures_for_the_rules() {
        let facts = tenant_facts(2, 50, Utc::now());
        assert_eq!(facts.collectors.len(), 2);
        assert_eq!(facts.facts.len(), 100);
        let failing = wbd_rules::evaluate(&facts).iter().filter(|e| e.outcome.is_fail()).count();
        // About one endpoint in ten fails; healthy ones (valid certificates) must pass.
        assert!((1..=30).contains(&failing), "{failing} failing verdicts");
    }
}
