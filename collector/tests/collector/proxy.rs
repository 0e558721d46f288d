//! The proxy probe against proxies the test runs: one that requires Basic authentication, one
//! that offers only NTLM, one that refuses tunnels, one that re-signs TLS; and the collector's
//! own pushes through an authenticating proxy to an HTTPS server with a private CA.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use wbd_collector::config::{EndpointTarget, ProxySettings, Secret};
use wbd_collector::probe::{ProxyProber, SiteProxy, TlsChecker};
use wbd_collector::run::Collector;
use wbd_wire::{EndpointRole, ProbeOutput, ProxyAuthScheme, ProxyReport, ProxySource, ProxyStep};

use crate::helpers::*;
use crate::peers::*;

fn site_proxy(proxy: &TestProxy, credentials: Option<(&str, &str)>) -> SiteProxy {
    let mut settings = ProxySettings::parse_url("test", &proxy.url()).unwrap();
    if let Some((user, password)) = credentials {
        settings.username = Some(user.to_owned());
        settings.password = Some(Secret::new(password));
    }
    SiteProxy { settings, source: ProxySource::Configured }
}

fn targets(ports: &[u16]) -> Vec<EndpointTarget> {
    ports
        .iter()
        .map(|port| EndpointTarget {
            host: "127.0.0.1".into(),
            port: *port,
            role: EndpointRole::PasswordReset,
            server_name: "localhost".into(),
        })
        .collect()
}

async fn probe(real_ca: &TestCa, proxy: Option<SiteProxy>, ports: &[u16]) -> ProxyReport {
    let tls = Arc::new(TlsChecker::new(std::slice::from_ref(&real_ca.cert), Duration::from_secs(5)).unwrap());
    let result = ProxyProber::new(proxy, tls, Duration::from_secs(5)).probe(&targets(ports)).await;
    assert_eq!(result.subject, "proxy");
    match result.output {
        ProbeOutput::Proxy(report) => report,
        other => panic!("proxy result expected, got {other:?}"),
    }
}

#[tokio::test]
async fn basic_authentication_is_sent_and_wrong_or_missing_credentials_are_reported() {
    init_test_log();
    let ca = TestCa::new("WBD Real Endpoint CA");
    let server = spawn_https_responder(ca.leaf("passwordreset.test")).await;
    let proxy =
        TestProxy::start(ProxyBehaviour { basic: Some(("svc-wbd", "s3cret")), ..Default::default() }).await;

    let ok = probe(&ca, Some(site_proxy(&proxy, Some(("svc-wbd", "s3cret")))), &[server.port()]).await;
    assert_eq!(ok.source, ProxySource::Configured);
    assert_eq!(ok.proxy, Some(proxy.addr.to_string()));
    assert_eq!(ok.auth_used, ProxyAuthScheme::Basic);
    let t = &ok.targets[0];
    assert_eq!((t.connect_status, t.tunnel_established, &t.failure), (Some(200), true, &None), "{ok:#?}");
    assert_eq!(t.tls_inspection, Some(false));
    assert!(t.tls.as_ref().unwrap().chain_trusted);
    assert_eq!(proxy.seen()[0].authorization.as_deref(), Some("Basic c3ZjLXdiZDpzM2NyZXQ="));

    let wrong = probe(&ca, Some(site_proxy(&proxy, Some(("svc-wbd", "nope")))), &[server.port()]).await;
    let failure = wrong.targets[0].failure.as_ref().unwrap();
    assert_eq!(failure.step, ProxyStep::ProxyAuth);
    assert!(failure.error.contains("refused the configured Basic credentials"), "{failure:?}");
    assert_eq!(wrong.offered_auth_schemes, vec!["basic"]);
    assert_eq!(wrong.integrated_auth_required, Some(false));

    let none = probe(&ca, Some(site_proxy(&proxy, None)), &[server.port()]).await;
    assert_eq!(none.auth_used, ProxyAuthScheme::None);
    assert_eq!(none.targets[0].connect_status, Some(407));
    assert!(none.targets[0].failure.as_ref().unwrap().error.contains("proxy.username"), "{none:#?}");
}

#[tokio::test]
async fn a_proxy_that_wants_only_windows_authentication_is_named() {
    let ca = TestCa::new("WBD Real Endpoint CA");
    let server = spawn_https_responder(ca.leaf("passwordreset.test")).await;
    let proxy = TestProxy::start(ProxyBehaviour {
        basic: Some(("x", "y")),
        offer: vec!["Negotiate", "NTLM"],
        ..Default::default()
    })
    .await;

    let report = probe(&ca, Some(site_proxy(&proxy, None)), &[server.port()]).await;

    assert_eq!(report.offered_auth_schemes, vec!["negotiate", "ntlm"]);
    assert_eq!(report.integrated_auth_required, Some(true));
    let failure = report.targets[0].failure.as_ref().unwrap();
    assert_eq!(failure.step, ProxyStep::ProxyAuth);
    assert!(failure.error.contains("Windows integrated authentication"), "{failure:?}");
}

#[tokio::test]
async fn a_re_signing_proxy_is_seen_as_tls_inspection_with_its_issuer() {
    let real = TestCa::new("WBD Real Endpoint CA");
    let inspection = TestCa::new("Contoso Inspection CA");
    let server = spawn_https_responder(real.leaf("passwordreset.test")).await;
    let proxy = TestProxy::start(ProxyBehaviour {
        resign: Some((inspection.leaf("passwordreset.test"), vec![real.cert.clone()])),
        ..Default::default()
    })
    .await;

    let report = probe(&real, Some(site_proxy(&proxy, None)), &[server.port()]).await;

    let t = &report.targets[0];
    assert!(t.failure.is_none(), "{report:#?}");
    assert_eq!(t.tls_inspection, Some(true));
    let tls = t.tls.as_ref().unwrap();
    assert!(!tls.chain_trusted);
    assert_eq!(tls.chain_top_issuer.as_deref(), Some("CN=Contoso Inspection CA"));
}

#[tokio::test]
async fn refused_tunnels_unreachable_proxies_and_no_proxy_at_all() {
    let ca = TestCa::new("WBD Real Endpoint CA");
    let server = spawn_https_responder(ca.leaf("passwordreset.test")).await;
    let refusing = TestProxy::start(ProxyBehaviour { refuse_with: Some(403), ..Default::default() }).await;
    let report = probe(&ca, Some(site_proxy(&refusing, None)), &[server.port()]).await;
    let failure = report.targets[0].failure.as_ref().unwrap();
    assert_eq!((failure.step, report.targets[0].connect_status), (ProxyStep::Tunnel, Some(403)));

    let dead = closed_port().await;
    let unreachable = SiteProxy {
        settings: ProxySettings::parse_url("test", &format!("http://127.0.0.1:{dead}")).unwrap(),
        source: ProxySource::Environment,
    };
    let report = probe(&ca, Some(unreachable), &[server.port()]).await;
    assert_eq!(report.source, ProxySource::Environment);
    assert_eq!(report.targets[0].failure.as_ref().unwrap().step, ProxyStep::ProxyConnect);

    let report = probe(&ca, None, &[server.port()]).await;
    assert_eq!((report.source, report.proxy.as_ref(), report.targets.len()), (ProxySource::None, None, 0));
}

#[tokio::test]
async fn pushes_go_through_the_configured_proxy_with_credentials_and_a_private_server_ca() {
    let server_ca = TestCa::new("WBD Private Server CA");
    let server = MockServer::start_tls(Reply::new(202), server_ca.leaf("wbd.test")).await;
    let proxy =
        TestProxy::start(ProxyBehaviour { basic: Some(("svc-wbd", "s3cret")), ..Default::default() }).await;
    let site = crate::run::Site::enrolled_with_ca(&server, &server_ca).await;
    let password_file = site.dir.path().join("proxy-password");
    std::fs::write(&password_file, "s3cret\n").unwrap();
    let mut config = std::fs::read_to_string(&site.config).unwrap();
    config = config.replacen(
        "[probes.idle_connection]",
        &format!(
            "[proxy]\nurl = \"{}\"\nusername = \"svc-wbd\"\npassword_file = \"{}\"\n\n[probes.idle_connection]",
            proxy.url(),
            password_file.display()
        ),
        1,
    );
    std::fs::write(&site.config, config).unwrap();
    let (_tx, rx) = watch::channel(false);

    let outcome = Collector::start(site.settings()).unwrap().run_once(Duration::from_secs(30), rx).await;

    assert_eq!(outcome.pending_batches, 0, "{outcome:?}");
    let pushes: Vec<_> = server.requests().into_iter().filter(|r| r.path == wbd_wire::INGEST_PATH).collect();
    assert_eq!(pushes.len(), 1);
    let connects = proxy.seen();
    let port = server.base_url.rsplit(':').next().unwrap();
    assert!(
        connects.iter().any(|c| c.target == format!("localhost:{port}")
            && c.authorization.as_deref() == Some("Basic c3ZjLXdiZDpzM2NyZXQ=")),
        "{connects:?}"
    );
}
