//! One scenario per point of the seed checklist ("Password writeback is not working"): the facts
//! a collector would report for a tenant with exactly that problem, and the finding(s) the pack
//! must raise — and nothing else. Every other rule passes or is unknown.

use wbd_wire::ProbeOutput;

use crate::rules::fixtures::*;
use crate::rules::{active_directory, connect_server, event_log, graph, idle_connection, proxy};
use crate::{Evaluation, Lang, Outcome, TenantFacts, evaluate};

/// Subjects under which a collector files each probe.
const RELAY: &str = "ssprdedicatedsbprodscu.servicebus.windows.net:443";
const PASSWORD_RESET: &str = "passwordreset.microsoftonline.com:443";

/// A tenant where everything a collector checks is healthy; `change` swaps in one problem.
fn tenant_with(change: impl FnOnce(&mut Healthy)) -> TenantFacts {
    let mut site = Healthy {
        relay: ProbeOutput::Endpoint(healthy_relay()),
        password_reset: ProbeOutput::Endpoint(healthy_password_reset()),
        idle: idle_connection::tests::healthy(),
        proxy: proxy::tests::healthy(),
        connect: connect_server::tests::healthy(),
        events: event_log::tests::healthy(),
        ad: active_directory::tests::healthy(),
        graph: graph::tests::healthy(),
    };
    change(&mut site);
    site_with(vec![
        (RELAY, site.relay),
        (PASSWORD_RESET, site.password_reset),
        (RELAY, site.idle),
        ("proxy", site.proxy),
        ("connect", site.connect),
        ("Application", site.events),
        ("corp.example", site.ad),
        ("contoso.onmicrosoft.com", site.graph),
    ])
}

struct Healthy {
    relay: ProbeOutput,
    password_reset: ProbeOutput,
    idle: ProbeOutput,
    proxy: ProbeOutput,
    connect: ProbeOutput,
    events: ProbeOutput,
    ad: ProbeOutput,
    graph: ProbeOutput,
}

fn failures(facts: &TenantFacts) -> Vec<Evaluation> {
    evaluate(facts).into_iter().filter(|e| e.outcome.is_fail()).collect()
}

/// Exactly these rules fail (once each), and nothing else.
fn assert_findings(facts: &TenantFacts, expected: &[&str]) -> Vec<Evaluation> {
    let failed = failures(facts);
    let ids: Vec<&str> = failed.iter().map(|e| &*e.rule_id).collect();
    assert_eq!(ids, expected, "{failed:#?}");
    // Nothing else is unknown for a reason other than missing data or a fact no probe reports.
    for evaluation in evaluate(facts) {
        if let Outcome::Unknown { message, reason } = &evaluation.outcome {
            assert!(
                message.key == crate::keys::FIELD_MISSING
                    || message.key.ends_with(".no-plan")
                    // With the relay blocked, there is no handshake to judge.
                    || message.key == "endpoint-tls-trusted.no-handshake",
                "{}: unexpected unknown: {reason}",
                evaluation.rule_id
            );
        }
    }
    failed
}

#[test]
fn a_healthy_tenant_has_no_finding() {
    assert_findings(&tenant_with(|_| {}), &[]);
}

/// A healthy site that reaches Microsoft directly: nothing fails and nothing is left undecided
/// (the proxy checks do not apply), so its health score is 100.
#[test]
fn a_healthy_site_without_a_proxy_scores_100() {
    let facts = tenant_with(|t| t.proxy = proxy::tests::no_proxy());
    let evaluations = evaluate(&facts);
    let undecided: Vec<_> =
        evaluations.iter().filter(|e| e.outcome.is_fail() || e.outcome.is_unknown()).collect();
    assert!(undecided.is_empty(), "{undecided:#?}");
    for rule in [proxy::ALLOWS, proxy::NO_INSPECTION] {
        let verdict = evaluations.iter().find(|e| e.rule_id == rule).expect("evaluated");
        assert!(verdict.outcome.is_not_applicable(), "{rule}: {:?}", verdict.outcome);
        let text = verdict.outcome.text(Lang::En).unwrap_or_default();
        assert!(text.contains("no proxy"), "{rule}: {text}");
    }
}

/// 1. Licensing: writeback is premium; the tenant has only Office 365 plans.
#[test]
fn seed_1_no_premium_licence() {
    assert_findings(&tenant_with(|t| t.graph = graph::tests::no_premium()), &["tenant-writeback-licence"]);
}

/// 2. An administrator and a test user need a licence; only one licence is assigned.
#[test]
fn seed_2_too_few_licences_for_an_admin_and_a_test_user() {
    assert_findings(
        &tenant_with(|t| t.graph = graph::tests::one_licence()),
        &["licensed-admin-and-test-user"],
    );
}

/// 3. Connect should prefer the PDC emulator; it prefers another (writable) DC.
#[test]
fn seed_3_connect_does_not_prefer_the_pdc_emulator() {
    let failed = assert_findings(
        &tenant_with(|t| t.connect = active_directory::tests::preferring(&["dc02.corp.example"], true)),
        &["preferred-dc-pdc-emulator"],
    );
    let text = failed[0].outcome.text(Lang::En).unwrap_or_default();
    assert!(text.contains("dc01.corp.example"), "{text}");
}

/// Seed point 4: SSPR must be enabled for the users; it is off for the test user, who did
/// register methods. The test user therefore cannot reset either, but that finding points at
/// the root cause instead of asking for more methods.
#[test]
fn seed_4_sspr_disabled() {
    let failed = assert_findings(
        &tenant_with(|t| t.graph = graph::tests::sspr_off()),
        &["sspr-enabled", "test-user-sspr-capable"],
    );
    for lang in Lang::ALL {
        let text = failed[1].outcome.text(lang).unwrap_or_default();
        assert!(text.contains("mobilePhone"), "{lang}: names the registered methods: {text}");
        assert!(!text.contains("aka.ms/ssprsetup"), "{lang}: must not send the user to register: {text}");
    }
    let english = failed[1].outcome.text(Lang::En).unwrap_or_default();
    assert!(english.contains("not enabled"), "{english}");
    // The pack says which failure is the root cause.
    let info = crate::rule_info("test-user-sspr-capable", Lang::En).expect("rule");
    assert_eq!(info.explained_by, ["sspr-enabled"]);
    assert!(!english.contains("register enough"), "{english}");
}

/// 5. Writeback must be enabled with a cloud administrator; every admin is synced.
#[test]
fn seed_5_no_cloud_administrator() {
    assert_findings(
        &tenant_with(|t| t.graph = graph::tests::synced_admins_only()),
        &["cloud-admin-available"],
    );
}

/// 6. Domain controllers on a supported Windows Server; one still runs 2012 R2.
#[test]
fn seed_6_outdated_domain_controller() {
    assert_findings(&tenant_with(|t| t.ad = active_directory::tests::old_dc()), &["dc-os-supported"]);
}

/// 7. Full import and full sync before testing; they never ran.
#[test]
fn seed_7_no_full_import_and_sync() {
    assert_findings(
        &tenant_with(|t| t.connect = connect_server::tests::never_fully_synced()),
        &["full-sync-completed"],
    );
}

/// 8a. Outbound HTTPS to the relay; a firewall blocks it. The finding names the real domain and
/// the seed's misspelling.
#[test]
fn seed_8_relay_blocked() {
    let failed = assert_findings(
        &tenant_with(|t| t.relay = ProbeOutput::Endpoint(relay_tcp_blocked())),
        &["endpoint-reachable"],
    );
    for lang in Lang::ALL {
        let text = failed[0].outcome.text(lang).unwrap_or_default();
        assert!(text.contains("*.servicebus.windows.net"), "{lang}: {text}");
        assert!(text.contains("servicebus.windows.networks"), "{lang}: {text}");
    }
}

/// 8b. Idle connections must survive two to three minutes; a firewall cuts them sooner.
#[test]
fn seed_8_idle_connections_cut() {
    assert_findings(
        &tenant_with(|t| t.idle = idle_connection::tests::cut_at_90()),
        &["idle-connection-survives"],
    );
}

/// 8c. A current Connect version; the server runs a build below the mandatory floor.
#[test]
fn seed_8_outdated_connect() {
    assert_findings(
        &tenant_with(|t| {
            t.connect = connect_server::tests::with(|r| r.connect_version = Some("2.3.20.0".to_owned()))
        }),
        &["connect-version-supported"],
    );
}

/// 9. Still broken: errors that disabling and re-enabling writeback repairs.
#[test]
fn seed_9_errors_that_need_writeback_re_enabled() {
    assert_findings(
        &tenant_with(|t| t.events = event_log::tests::decryption_errors()),
        &["writeback-reonboard-needed"],
    );
}
