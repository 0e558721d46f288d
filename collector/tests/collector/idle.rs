//! The idle connection probe against a real HTTPS server, directly, through a firewall that
//! cuts idle flows, and through proxies that cut or silently drop idle tunnels.

use std::sync::Arc;
use std::time::Duration;

use wbd_collector::config::{EndpointTarget, ProxySettings};
use wbd_collector::probe::{IdleConnectionProber, SiteProxy, TlsChecker};
use wbd_wire::{EndpointRole, IdleConnectionReport, IdleOutcome, ProbeOutput, ProxySource};

use crate::helpers::*;
use crate::peers::*;

fn prober(ca: &TestCa, proxy: Option<&TestProxy>, holds: &[u64]) -> IdleConnectionProber {
    let tls = Arc::new(TlsChecker::new(std::slice::from_ref(&ca.cert), Duration::from_secs(5)).unwrap());
    let proxy = proxy.map(|p| SiteProxy {
        settings: ProxySettings::parse_url("test", &p.url()).unwrap(),
        source: ProxySource::Configured,
    });
    IdleConnectionProber::new(
        tls,
        proxy,
        holds.iter().map(|s| Duration::from_secs(*s)).collect(),
        Duration::from_secs(2),
    )
}

fn target(port: u16) -> EndpointTarget {
    EndpointTarget {
        host: "127.0.0.1".into(),
        port,
        role: EndpointRole::ServiceBusRelay,
        server_name: "localhost".into(),
    }
}

async fn probe(p: &IdleConnectionProber, port: u16) -> IdleConnectionReport {
    match p.probe(&target(port)).await.output {
        ProbeOutput::IdleConnection(report) => report,
        other => panic!("idle connection result expected, got {other:?}"),
    }
}

#[tokio::test]
async fn connections_that_stay_open_survive_every_hold() {
    init_test_log();
    let ca = TestCa::new("WBD Idle CA");
    let server = spawn_https_responder(ca.leaf("relay.test")).await;

    let report = probe(&prober(&ca, None, &[1, 2]), server.port()).await;

    assert_eq!(report.via_proxy, None);
    assert_eq!(report.holds.len(), 2);
    for hold in &report.holds {
        assert_eq!(hold.outcome, IdleOutcome::Survived, "{hold:?}");
        assert_eq!(hold.cut_after_ms, None);
    }
    assert_eq!(report.longest_survived_secs(), Some(2));
}

#[tokio::test]
async fn a_firewall_that_closes_idle_flows_is_found_between_two_holds() {
    let ca = TestCa::new("WBD Idle CA");
    let server = spawn_https_responder(ca.leaf("relay.test")).await;
    let cut_after = Duration::from_millis(1500);
    let firewall = TestProxy::start(ProxyBehaviour {
        transparent_to: Some(server),
        idle_cut: Some(cut_after),
        ..Default::default()
    })
    .await;

    let report = probe(&prober(&ca, None, &[1, 3]), firewall.addr.port()).await;

    let (short, long) = (&report.holds[0], &report.holds[1]);
    assert_eq!((short.hold_secs, short.outcome), (1, IdleOutcome::Survived), "{report:#?}");
    assert_eq!((long.hold_secs, long.outcome), (3, IdleOutcome::CutWhileIdle), "{report:#?}");
    let cut_ms = long.cut_after_ms.expect("when it was cut");
    // Order, not speed: the report puts the cut after the hold that survived and inside the hold
    // that was cut (the outcome says it came while idle, so never after that hold's end).
    let (survived_ms, held_ms) = (u64::from(short.hold_secs) * 1000, u64::from(long.hold_secs) * 1000);
    assert!(
        survived_ms <= cut_ms && cut_ms < held_ms,
        "cut reported at {cut_ms} ms, outside the {survived_ms}..{held_ms} ms the two holds bound"
    );
    assert!(long.error.as_deref().unwrap_or_default().contains("idle"), "{long:?}");
    assert_eq!(report.longest_survived_secs(), Some(1));
    assert_eq!(report.shortest_cut_secs(), Some(3));
}

#[tokio::test]
async fn a_proxy_that_silently_drops_idle_tunnels_is_caught_on_use() {
    let ca = TestCa::new("WBD Idle CA");
    let server = spawn_https_responder(ca.leaf("relay.test")).await;
    let proxy = TestProxy::start(ProxyBehaviour {
        idle_blackhole: Some(Duration::from_millis(800)),
        ..Default::default()
    })
    .await;

    let report = probe(&prober(&ca, Some(&proxy), &[2]), server.port()).await;

    assert_eq!(report.via_proxy, Some(proxy.addr.to_string()));
    let hold = &report.holds[0];
    assert_eq!(hold.outcome, IdleOutcome::CutOnUse, "{report:#?}");
    assert!(hold.error.as_deref().unwrap_or_default().contains("silently dropped"), "{hold:?}");
    assert_eq!(proxy.seen()[0].target, format!("127.0.0.1:{}", server.port()));
}

#[tokio::test]
async fn a_proxy_that_cuts_idle_tunnels_and_an_unreachable_endpoint() {
    let ca = TestCa::new("WBD Idle CA");
    let server = spawn_https_responder(ca.leaf("relay.test")).await;
    let proxy =
        TestProxy::start(ProxyBehaviour { idle_cut: Some(Duration::from_millis(700)), ..Default::default() })
            .await;

    let report = probe(&prober(&ca, Some(&proxy), &[2]), server.port()).await;
    assert_eq!(report.holds[0].outcome, IdleOutcome::CutWhileIdle, "{report:#?}");

    let closed = closed_port().await;
    let report = probe(&prober(&ca, None, &[1]), closed).await;
    let hold = &report.holds[0];
    assert_eq!(hold.outcome, IdleOutcome::ConnectFailed, "{report:#?}");
    assert!(hold.error.as_deref().unwrap_or_default().contains("refused"), "{hold:?}");
}

/// The rule pack's verdict on one idle-connection report, as the server would give it.
fn idle_verdict(report: IdleConnectionReport) -> wbd_rules::Outcome {
    let now = chrono::Utc::now();
    let site = wbd_rules::CollectorState {
        id: uuid::Uuid::nil(),
        name: "site".into(),
        active: true,
        last_seen_at: Some(now),
        silent_after: Some(now + chrono::Duration::minutes(15)),
        push_interval_secs: 300,
    };
    let facts = wbd_rules::TenantFacts {
        now,
        collectors: vec![site],
        facts: vec![wbd_rules::FactInput {
            collector_id: uuid::Uuid::nil(),
            subject: format!("{}:{}", report.host, report.port),
            observed_at: now,
            output: ProbeOutput::IdleConnection(report),
        }],
    };
    wbd_rules::evaluate(&facts)
        .into_iter()
        .find(|e| e.rule_id == "idle-connection-survives")
        .expect("the idle rule ran")
        .outcome
}

#[tokio::test]
async fn the_verdict_says_when_the_connection_was_cut_not_which_hold_failed() {
    let ca = TestCa::new("WBD Idle CA");
    let server = spawn_https_responder(ca.leaf("relay.test")).await;
    let firewall = TestProxy::start(ProxyBehaviour {
        transparent_to: Some(server),
        idle_cut: Some(Duration::from_millis(1500)),
        ..Default::default()
    })
    .await;

    let report = probe(&prober(&ca, None, &[1, 3]), firewall.addr.port()).await;
    let cut = report.holds.iter().find(|h| h.outcome == IdleOutcome::CutWhileIdle).expect("a cut hold");
    let cut_secs = cut.cut_after_ms.expect("when it was cut") / 1000;
    let outcome = idle_verdict(report.clone());

    assert!(outcome.is_fail(), "{outcome:?}");
    let text = outcome.text(wbd_rules::Lang::En).unwrap_or_default();
    assert!(text.contains(&format!("cut after {cut_secs} s idle")), "the measured cut time: {text}");
    assert!(!text.contains("a hold of 3 s failed"), "not the configured hold: {text}");
}
