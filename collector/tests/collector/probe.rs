//! The endpoint probe against real TLS and TCP peers on loopback.

use std::time::Duration;

use wbd_collector::config::EndpointTarget;
use wbd_collector::probe::EndpointProber;
use wbd_wire::{EndpointReport, EndpointRole, ProbeOutput, ProbeResult, ProbeStep, TlsReport};

use crate::helpers::*;

fn endpoint(result: &ProbeResult) -> &EndpointReport {
    match &result.output {
        ProbeOutput::Endpoint(report) => report,
        other => panic!("endpoint result expected, got {other:?}"),
    }
}

fn tls(result: &ProbeResult) -> &TlsReport {
    let report = endpoint(result);
    assert_eq!(report.failure, None, "unexpected failure in {result:#?}");
    report.tls.as_ref().expect("a TLS report")
}

fn prober_trusting(cas: &[&TestCa]) -> EndpointProber {
    let anchors: Vec<_> = cas.iter().map(|ca| ca.cert.clone()).collect();
    EndpointProber::new(&anchors, Duration::from_secs(5)).unwrap()
}

#[tokio::test]
async fn trusted_test_ca_gives_a_trusted_chain_with_its_details() {
    init_test_log();
    let ca = TestCa::new("WBD Test Root CA");
    let addr = spawn_tls_server(ca.leaf("passwordreset.test")).await;
    let target = local_target(addr);

    let result = prober_trusting(&[&ca]).probe(&target).await;

    assert_eq!(result.subject, format!("127.0.0.1:{}", addr.port()));
    let report = endpoint(&result);
    assert_eq!(report.resolved, vec![addr.ip()]);
    assert_eq!(report.connected_to, Some(addr.ip()));
    assert!(report.dns_ms.is_some() && report.tcp_connect_ms.is_some());
    let tls = tls(&result);
    assert!(tls.chain_trusted, "{tls:#?}");
    assert_eq!(tls.trust_error, None);
    assert_eq!(tls.protocol, "TLSv1.3");
    assert!(tls.cipher_suite.starts_with("TLS13_"), "{}", tls.cipher_suite);
    assert_eq!(tls.subject.as_deref(), Some("CN=passwordreset.test"));
    assert_eq!(tls.issuer.as_deref(), Some("CN=WBD Test Root CA"));
    assert_eq!(tls.chain_top_issuer.as_deref(), Some("CN=WBD Test Root CA"));
    assert_eq!(tls.chain_len, 1);
    let (not_before, not_after) = (tls.not_before.unwrap(), tls.not_after.unwrap());
    assert!(not_before < chrono::Utc::now() && not_after > chrono::Utc::now());
}

#[tokio::test]
async fn tls12_only_server_is_reported_as_tls12() {
    let ca = TestCa::new("WBD Test Root CA");
    let addr = spawn_tls_server_versions(ca.leaf("legacy.test"), &[&rustls::version::TLS12]).await;

    let result = prober_trusting(&[&ca]).probe(&local_target(addr)).await;

    let tls = tls(&result);
    assert_eq!(tls.protocol, "TLSv1.2");
    assert!(tls.cipher_suite.starts_with("TLS_ECDHE_"), "{}", tls.cipher_suite);
    assert!(tls.chain_trusted);
}

#[tokio::test]
async fn host_names_are_resolved_and_the_chain_top_is_the_root() {
    let root = TestCa::new("WBD Test Root CA");
    let intermediate = root.intermediate("WBD Test Issuing CA");
    let mut cert = intermediate.leaf("relay.test");
    cert.chain.push(intermediate.cert.clone());
    let addr = spawn_tls_server(cert).await;
    let target = EndpointTarget::new("localhost", addr.port(), EndpointRole::ServiceBusRelay);

    let result = prober_trusting(&[&root]).probe(&target).await;

    assert_eq!(result.subject, format!("localhost:{}", addr.port()));
    // localhost may resolve to ::1 first, where nothing listens: the probe moves on.
    assert_eq!(endpoint(&result).connected_to, Some(addr.ip()));
    let tls = tls(&result);
    assert!(tls.chain_trusted, "{tls:#?}");
    assert_eq!(tls.issuer.as_deref(), Some("CN=WBD Test Issuing CA"));
    assert_eq!(tls.chain_top_issuer.as_deref(), Some("CN=WBD Test Root CA"));
    assert_eq!(tls.chain_len, 2);
}

#[tokio::test]
async fn an_inspecting_proxy_ca_is_reported_untrusted_with_its_issuer() {
    // The collector is not told about this CA, exactly like a TLS-inspecting proxy whose CA
    // lives only in the Windows store.
    let proxy_ca = TestCa::new("Contoso Firewall Inspection CA");
    let addr = spawn_tls_server(proxy_ca.leaf("passwordreset.microsoftonline.com")).await;

    let result = prober_trusting(&[]).probe(&local_target(addr)).await;

    let tls = tls(&result);
    assert!(!tls.chain_trusted);
    let reason = tls.trust_error.as_deref().unwrap();
    assert!(reason.contains("TLS-inspecting proxy"), "{reason}");
    assert_eq!(tls.issuer.as_deref(), Some("CN=Contoso Firewall Inspection CA"));
    assert_eq!(tls.chain_top_issuer.as_deref(), Some("CN=Contoso Firewall Inspection CA"));
    assert_eq!(tls.protocol, "TLSv1.3");
}

#[tokio::test]
async fn an_expired_certificate_is_untrusted_and_says_so() {
    let ca = TestCa::new("WBD Test Root CA");
    let addr = spawn_tls_server(ca.expired_leaf("expired.test")).await;

    let result = prober_trusting(&[&ca]).probe(&local_target(addr)).await;

    let tls = tls(&result);
    assert!(!tls.chain_trusted);
    let reason = tls.trust_error.as_deref().unwrap();
    assert!(reason.contains("expired"), "{reason}");
    assert_eq!(tls.not_after.unwrap().format("%Y-%m-%d").to_string(), "2021-01-01");
}

#[tokio::test]
async fn a_certificate_for_another_name_is_untrusted() {
    let ca = TestCa::new("WBD Test Root CA");
    let addr = spawn_tls_server(ca.leaf("localhost")).await;
    let mut target = local_target(addr);
    target.server_name = "passwordreset.microsoftonline.com".to_owned();

    let result = prober_trusting(&[&ca]).probe(&target).await;

    let tls = tls(&result);
    assert!(!tls.chain_trusted);
    assert!(tls.trust_error.as_deref().unwrap().contains("not valid for this host name"));
}

#[tokio::test]
async fn a_closed_port_fails_at_tcp() {
    let port = closed_port().await;
    let target = EndpointTarget::new("127.0.0.1", port, EndpointRole::Other);

    let result = prober_trusting(&[]).probe(&target).await;

    let report = endpoint(&result);
    let failure = report.failure.as_ref().unwrap();
    assert_eq!(failure.step, ProbeStep::Tcp);
    assert!(failure.error.contains("refused"), "{}", failure.error);
    assert!(report.dns_ms.is_some());
    assert_eq!(report.connected_to, None);
    assert_eq!(report.tls, None);
}

#[tokio::test]
async fn an_unresolvable_name_fails_at_dns() {
    let target = EndpointTarget::new("no-such-host.wbd-test.invalid", 443, EndpointRole::ServiceBusRelay);

    let result = prober_trusting(&[]).probe(&target).await;

    let report = endpoint(&result);
    assert_eq!(report.failure.as_ref().unwrap().step, ProbeStep::Dns);
    assert!(report.resolved.is_empty());
    assert_eq!(report.dns_ms, None);
    assert_eq!(report.tcp_connect_ms, None);
    assert_eq!(result.subject, "no-such-host.wbd-test.invalid:443");
}

#[tokio::test]
async fn a_server_that_is_not_tls_fails_at_tls() {
    let addr = spawn_raw_server(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n", true).await;

    let result = prober_trusting(&[]).probe(&local_target(addr)).await;

    let report = endpoint(&result);
    let failure = report.failure.as_ref().unwrap();
    assert_eq!(failure.step, ProbeStep::Tls);
    assert!(failure.error.contains("did not answer with TLS"), "{}", failure.error);
    assert_eq!(report.connected_to, Some(addr.ip()));
}

#[tokio::test]
async fn a_server_that_closes_the_connection_fails_at_tls() {
    let addr = spawn_raw_server(b"", false).await;

    let result = prober_trusting(&[]).probe(&local_target(addr)).await;

    let failure = endpoint(&result).failure.clone().unwrap();
    assert_eq!(failure.step, ProbeStep::Tls);
    assert!(failure.error.contains("closed"), "{}", failure.error);
}

#[tokio::test]
async fn a_tls10_only_server_is_reported_as_offering_no_tls12() {
    // What a TLS 1.0-only server answers to a TLS 1.2/1.3 ClientHello: a fatal
    // protocol_version alert (record type 21, version 3.1, level 2, description 70).
    let addr = spawn_raw_server(&[0x15, 0x03, 0x01, 0x00, 0x02, 0x02, 0x46], true).await;

    let result = prober_trusting(&[]).probe(&local_target(addr)).await;

    let failure = endpoint(&result).failure.clone().unwrap();
    assert_eq!(failure.step, ProbeStep::Tls);
    assert!(failure.error.contains("no TLS 1.2+ version"), "{}", failure.error);
}
