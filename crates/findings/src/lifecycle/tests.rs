//! Planning tests: damping, staleness, unknowns, suppression expiry and fixed points, over
//! hand-built snapshots.

use chrono::{Duration, TimeZone};
use serde_json::json;
use wbd_rules::{Message, RuleSettings, Severity as RuleSeverity};
use wbd_store::{FindingId, OrgId, TenantId, TenantScope};

use super::*;

const SITE: u128 = 10;
const RELAY: &str = "relay.servicebus.windows.net:443";

fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 3, 2, 12, 0, 0).single().expect("valid instant")
}

fn scope() -> TenantScope {
    TenantScope { org_id: OrgId(Uuid::from_u128(1)), tenant_id: TenantId(Uuid::from_u128(2)) }
}

fn collector(n: u128) -> Collector {
    Collector {
        id: CollectorId(Uuid::from_u128(n)),
        org_id: scope().org_id,
        tenant_id: scope().tenant_id,
        name: format!("site-{n}"),
        status: CollectorStatus::Active,
        enrollment_expires_at: None,
        public_key: Some(vec![7; 32]),
        hostname: None,
        version: None,
        os: None,
        push_interval_secs: 300,
        enrolled_at: Some(now() - Duration::days(3)),
        last_seen_at: Some(now() - Duration::seconds(60)),
        silent_after: Some(now() + Duration::seconds(840)),
        spool_dropped: 0,
        created_at: now() - Duration::days(3),
        revoked_at: None,
    }
}

fn silent(n: u128) -> Collector {
    Collector { silent_after: Some(now() - Duration::seconds(1)), ..collector(n) }
}

/// The subject of an endpoint verdict from collector `n`.
fn at_site(n: u128) -> String {
    format!("{RELAY}@{}", Uuid::from_u128(n))
}

/// A tenant with one healthy collector, whose latest facts no evaluation has seen yet.
fn snapshot(findings: Vec<Finding>, streaks: Vec<FindingStreak>) -> TenantSnapshot {
    TenantSnapshot {
        scope: scope(),
        facts_version: 7,
        evaluated_facts_version: 6,
        rules_version: 0,
        collectors: vec![collector(SITE)],
        facts: vec![],
        findings,
        streaks,
        unknown_rules: 0,
        // Every probe reported in this version.
        probe_versions: wbd_wire::ProbeKind::ALL.iter().map(|p| (p.as_str().to_owned(), 7)).collect(),
    }
}

/// The same tenant re-evaluated without new facts (a sweep).
fn same_facts(mut snapshot: TenantSnapshot) -> TenantSnapshot {
    snapshot.evaluated_facts_version = snapshot.facts_version;
    snapshot
}

fn finding(n: u128, rule_id: &str, subject: &str, status: FindingStatus) -> Finding {
    Finding {
        id: FindingId(Uuid::from_u128(n)),
        org_id: scope().org_id,
        tenant_id: scope().tenant_id,
        fingerprint: fingerprint(rule_id, subject),
        rule_id: rule_id.to_owned(),
        subject: subject.to_owned(),
        severity: Severity::Critical,
        status,
        title: "Writeback endpoint is reachable".to_owned(),
        summary: "blocked".to_owned(),
        evidence: json!({"host": "h"}),
        opened_at: now() - Duration::days(1),
        updated_at: now() - Duration::days(1),
        resolved_at: (status == FindingStatus::Resolved).then(|| now() - Duration::hours(2)),
        reopen_count: 0,
        version: 4,
        collector_id: collector_of(subject),
        acknowledged_at: None,
        acknowledged_by: None,
        suppressed_until: None,
        suppression_reason: None,
        suppressed_by: None,
        message: None,
        root_finding_id: None,
        announced: true,
    }
}

fn suppressed(n: u128, subject: &str, until: DateTime<Utc>) -> Finding {
    Finding {
        suppressed_until: Some(until),
        suppression_reason: Some("change window".to_owned()),
        suppressed_by: Some("api_key:k".to_owned()),
        ..finding(n, "endpoint-reachable", subject, FindingStatus::Suppressed)
    }
}

fn streak(rule_id: &str, subject: &str, fails: u32, passes: u32) -> FindingStreak {
    FindingStreak {
        fingerprint: fingerprint(rule_id, subject),
        fails,
        passes,
        updated_at: now() - Duration::minutes(5),
    }
}

fn evaluation(rule_id: &'static str, subject: &str, outcome: Outcome) -> Evaluation {
    Evaluation {
        rule_id: rule_id.into(),
        subject: subject.to_owned(),
        title: "Writeback endpoint is reachable".into(),
        outcome,
    }
}

fn fail(rule_id: &'static str, subject: &str, severity: RuleSeverity, summary: &str) -> Evaluation {
    let outcome = Outcome::Fail {
        severity,
        message: Message::new("test.fail"),
        summary: summary.to_owned(),
        evidence: json!({"host": "h"}),
    };
    evaluation(rule_id, subject, outcome)
}

fn pass(rule_id: &'static str, subject: &str) -> Evaluation {
    evaluation(rule_id, subject, Outcome::Pass)
}

fn unknown(rule_id: &'static str, subject: &str) -> Evaluation {
    evaluation(rule_id, subject, Outcome::unknown(Message::new("test.unknown")))
}

fn plan(snapshot: &TenantSnapshot, evaluations: &[Evaluation]) -> EvaluationChanges {
    plan_changes(snapshot, evaluations, &DampingTable::default(), now())
}

fn plan_damped(snapshot: &TenantSnapshot, evaluations: &[Evaluation], damping: Damping) -> EvaluationChanges {
    plan_changes(snapshot, evaluations, &DampingTable::uniform(damping), now())
}

fn findings_only(findings: Vec<FindingChange>) -> EvaluationChanges {
    EvaluationChanges { findings, ..EvaluationChanges::default() }
}

fn set(subject: &str, expected: Option<(u32, u32)>, fails: u32, passes: u32) -> StreakChange {
    StreakChange::Set { fingerprint: fingerprint("endpoint-reachable", subject), expected, fails, passes }
}

fn clear(subject: &str, expected: (u32, u32)) -> StreakChange {
    StreakChange::Clear { fingerprint: fingerprint("endpoint-reachable", subject), expected }
}

// ---- keys ---------------------------------------------------------------------------------

#[test]
fn fingerprint_is_rule_and_subject() {
    assert_eq!(fingerprint("endpoint-reachable", "a:443@c"), "endpoint-reachable|a:443@c");
}

#[test]
fn the_collector_is_read_from_the_subject_suffix_only() {
    let id = Uuid::from_u128(SITE);
    assert_eq!(collector_of(&format!("host:443@{id}")), Some(CollectorId(id)));
    assert_eq!(collector_of(&format!("user@contoso.com@{id}")), Some(CollectorId(id)));
    assert_eq!(collector_of(&id.to_string()), None, "collector-silent names the collector itself");
    assert_eq!(collector_of("admin@contoso.com"), None);
    assert_eq!(collector_of("tenant"), None);
}

#[test]
fn rules_severity_maps_one_to_one() {
    for (rule, store) in [
        (RuleSeverity::Info, Severity::Info),
        (RuleSeverity::Low, Severity::Low),
        (RuleSeverity::Medium, Severity::Medium),
        (RuleSeverity::High, Severity::High),
        (RuleSeverity::Critical, Severity::Critical),
    ] {
        assert_eq!(store_severity(rule), store);
        assert_eq!(rule.as_str(), store.as_str());
    }
}

// ---- without damping ----------------------------------------------------------------------

#[test]
fn new_failure_opens_a_finding_resting_on_its_collector() {
    let subject = at_site(SITE);
    let changes = plan(
        &snapshot(vec![], vec![]),
        &[fail("endpoint-reachable", &subject, RuleSeverity::Critical, "blocked")],
    );
    assert_eq!(
        changes,
        findings_only(vec![FindingChange::Open {
            fingerprint: fingerprint("endpoint-reachable", &subject),
            rule_id: "endpoint-reachable".to_owned(),
            subject: subject.clone(),
            collector_id: Some(CollectorId(Uuid::from_u128(SITE))),
            severity: Severity::Critical,
            title: "Writeback endpoint is reachable".to_owned(),
            summary: "blocked".to_owned(),
            evidence: json!({"host": "h"}),
            message: None,
        }])
    );
}

#[test]
fn failure_of_a_resolved_finding_reopens_it() {
    let resolved = finding(5, "endpoint-reachable", &at_site(SITE), FindingStatus::Resolved);
    let changes = plan(
        &snapshot(vec![resolved.clone()], vec![]),
        &[fail("endpoint-reachable", &at_site(SITE), RuleSeverity::High, "blocked again")],
    );
    assert_eq!(
        changes.findings,
        [FindingChange::Reopen {
            id: resolved.id,
            expected_version: 4,
            severity: Severity::High,
            summary: "blocked again".to_owned(),
            evidence: json!({"host": "h"}),
            message: None,
        }]
    );
}

#[test]
fn an_unchanged_failure_changes_nothing_and_a_changed_one_updates_whatever_the_status() {
    for status in [FindingStatus::Open, FindingStatus::Acknowledged, FindingStatus::Suppressed] {
        let mut stored = finding(5, "endpoint-reachable", &at_site(SITE), status);
        stored.suppressed_until = Some(now() + Duration::days(1));
        let same = fail("endpoint-reachable", &at_site(SITE), RuleSeverity::Critical, "blocked");
        assert_eq!(plan(&snapshot(vec![stored.clone()], vec![]), &[same]), EvaluationChanges::default());
        let worse = fail("endpoint-reachable", &at_site(SITE), RuleSeverity::Critical, "blocked at TLS");
        assert_eq!(
            plan(&snapshot(vec![stored.clone()], vec![]), &[worse]).findings,
            [FindingChange::Update {
                id: stored.id,
                expected_version: 4,
                severity: Severity::Critical,
                summary: "blocked at TLS".to_owned(),
                evidence: json!({"host": "h"}),
                message: None,
            }],
            "{status:?}"
        );
    }
}

#[test]
fn a_pass_resolves_an_open_acknowledged_or_suppressed_finding_and_ignores_a_resolved_one() {
    for status in [FindingStatus::Open, FindingStatus::Acknowledged, FindingStatus::Suppressed] {
        let mut stored = finding(5, "endpoint-reachable", "a:443@c", status);
        stored.suppressed_until = Some(now() + Duration::days(1));
        let resolved = finding(6, "endpoint-reachable", "b:443@c", FindingStatus::Resolved);
        let changes = plan(
            &snapshot(vec![stored.clone(), resolved], vec![]),
            &[pass("endpoint-reachable", "a:443@c"), pass("endpoint-reachable", "b:443@c")],
        );
        assert_eq!(
            changes.findings,
            [FindingChange::Resolve {
                id: stored.id,
                expected_version: 4,
                summary: "Passes now: Writeback endpoint is reachable.".to_owned(),
            }],
            "{status:?}"
        );
    }
}

#[test]
fn a_pass_without_a_finding_changes_nothing() {
    assert_eq!(
        plan(&snapshot(vec![], vec![]), &[pass("endpoint-reachable", "a")]),
        EvaluationChanges::default()
    );
}

#[test]
fn unknown_leaves_findings_alone_and_counts_the_undecided_rules() {
    let open = finding(5, "endpoint-tls-trusted", "a:443@c", FindingStatus::Open);
    let resolved = finding(6, "endpoint-tls-trusted", "b:443@c", FindingStatus::Resolved);
    let evaluations = [
        unknown("endpoint-tls-trusted", "a:443@c"),
        unknown("endpoint-tls-trusted", "b:443@c"),
        unknown("endpoint-tls-trusted", "c:443@c"),
        unknown("endpoint-reachable", "c:443@c"),
        pass("collector-silent", "c"),
    ];
    let snap = snapshot(vec![open, resolved], vec![]);
    let changes = plan(&snap, &evaluations);
    assert_eq!(changes, EvaluationChanges { unknown_rules: Some(2), ..EvaluationChanges::default() });
    // Written only when it changes.
    let known = TenantSnapshot { unknown_rules: 2, ..snap };
    assert_eq!(plan(&known, &evaluations), EvaluationChanges::default());
    assert_eq!(plan(&known, &[]).unknown_rules, Some(0));
}

#[test]
fn an_active_finding_no_longer_evaluated_is_resolved_if_its_rule_is_shipped() {
    let gone = finding(5, "endpoint-reachable", "a:443@revoked", FindingStatus::Open);
    let acked = finding(6, "endpoint-reachable", "c:443@revoked", FindingStatus::Acknowledged);
    let custom = finding(7, "custom-rule", "x", FindingStatus::Open);
    let old = finding(8, "endpoint-reachable", "b:443@revoked", FindingStatus::Resolved);
    let changes = plan(&snapshot(vec![gone.clone(), acked.clone(), custom, old], vec![]), &[]);
    let resolved: Vec<_> = changes
        .findings
        .iter()
        .map(|c| match c {
            FindingChange::Resolve { id, summary, .. } => {
                assert!(summary.starts_with("No longer observed"), "{summary}");
                *id
            }
            other => panic!("expected a resolve, got {other:?}"),
        })
        .collect();
    assert_eq!(resolved, [gone.id, acked.id]);
}

#[test]
fn duplicate_evaluations_plan_one_change() {
    let e = fail("endpoint-reachable", "h:443@c", RuleSeverity::Critical, "blocked");
    assert_eq!(plan(&snapshot(vec![], vec![]), &[e.clone(), e]).findings.len(), 1);
}

#[test]
fn order_is_by_fingerprint_whatever_the_input_order() {
    let open_b = finding(5, "endpoint-reachable", "b", FindingStatus::Open);
    let evaluations = [
        fail("endpoint-reachable", "c", RuleSeverity::Critical, "x"),
        pass("endpoint-reachable", "b"),
        fail("collector-silent", "z", RuleSeverity::High, "x"),
        fail("endpoint-reachable", "a", RuleSeverity::Critical, "x"),
    ];
    let snap = snapshot(vec![open_b], vec![]);
    let forward = plan(&snap, &evaluations);
    let mut reversed_input = evaluations.to_vec();
    reversed_input.reverse();
    assert_eq!(forward, plan(&snap, &reversed_input));
    let keys: Vec<String> = forward
        .findings
        .iter()
        .map(|c| match c {
            FindingChange::Open { fingerprint, .. } => fingerprint.clone(),
            FindingChange::Resolve { .. } => "endpoint-reachable|b".to_owned(),
            other => panic!("unexpected {other:?}"),
        })
        .collect();
    assert_eq!(
        keys,
        ["collector-silent|z", "endpoint-reachable|a", "endpoint-reachable|b", "endpoint-reachable|c"]
    );
}

// ---- flap damping -------------------------------------------------------------------------

#[test]
fn a_streak_advances_only_on_a_new_result_of_a_probe_the_rule_reads() {
    let subject = at_site(SITE);
    let failing = [fail("endpoint-reachable", &subject, RuleSeverity::Critical, "blocked")];
    let damping = Damping::new(2, 1);
    let pending = vec![streak("endpoint-reachable", &subject, 1, 0)];

    // The new facts are another probe's (a slow idle-connection run): the endpoint result the
    // rule judges is the one it judged last time, so its streak stays where it is.
    let mut other_probe = snapshot(vec![], pending.clone());
    other_probe.probe_versions.insert("endpoint".to_owned(), 6);
    assert_eq!(plan_damped(&other_probe, &failing, damping), EvaluationChanges::default());

    // A new endpoint result: the second failure in a row opens the finding.
    let own_probe = snapshot(vec![], pending);
    let opened = plan_damped(&own_probe, &failing, damping);
    assert!(matches!(opened.findings[..], [FindingChange::Open { .. }]), "{opened:?}");
}

#[test]
fn a_finding_opens_only_after_open_after_consecutive_failures() {
    let subject = at_site(SITE);
    let failing = [fail("endpoint-reachable", &subject, RuleSeverity::Critical, "blocked")];
    let damping = Damping::new(3, 1);

    let first = plan_damped(&snapshot(vec![], vec![]), &failing, damping);
    assert_eq!(first, EvaluationChanges { streaks: vec![set(&subject, None, 1, 0)], ..Default::default() });
    let second =
        plan_damped(&snapshot(vec![], vec![streak("endpoint-reachable", &subject, 1, 0)]), &failing, damping);
    assert_eq!(
        second,
        EvaluationChanges { streaks: vec![set(&subject, Some((1, 0)), 2, 0)], ..Default::default() }
    );
    let third =
        plan_damped(&snapshot(vec![], vec![streak("endpoint-reachable", &subject, 2, 0)]), &failing, damping);
    assert!(matches!(third.findings[..], [FindingChange::Open { .. }]), "{third:?}");
    assert_eq!(third.streaks, [clear(&subject, (2, 0))]);

    // The same for reopening a resolved finding.
    let resolved = finding(5, "endpoint-reachable", &subject, FindingStatus::Resolved);
    let snap = snapshot(vec![resolved.clone()], vec![streak("endpoint-reachable", &subject, 2, 0)]);
    let reopened = plan_damped(&snap, &failing, damping);
    assert!(
        matches!(reopened.findings[..], [FindingChange::Reopen { id, .. }] if id == resolved.id),
        "{reopened:?}"
    );
}

#[test]
fn a_pass_breaks_a_run_of_failures_and_a_failure_breaks_a_run_of_passes() {
    let subject = at_site(SITE);
    let damping = Damping::new(2, 2);
    let pending_open = snapshot(vec![], vec![streak("endpoint-reachable", &subject, 1, 0)]);
    assert_eq!(
        plan_damped(&pending_open, &[pass("endpoint-reachable", &subject)], damping),
        EvaluationChanges { streaks: vec![clear(&subject, (1, 0))], ..Default::default() }
    );

    let open = finding(5, "endpoint-reachable", &subject, FindingStatus::Open);
    let pending_resolve = snapshot(vec![open], vec![streak("endpoint-reachable", &subject, 0, 1)]);
    assert_eq!(
        plan_damped(
            &pending_resolve,
            &[fail("endpoint-reachable", &subject, RuleSeverity::Critical, "blocked")],
            damping
        ),
        EvaluationChanges { streaks: vec![clear(&subject, (0, 1))], ..Default::default() }
    );
}

#[test]
fn a_finding_resolves_only_after_resolve_after_consecutive_passes() {
    let subject = at_site(SITE);
    let acked = finding(5, "endpoint-reachable", &subject, FindingStatus::Acknowledged);
    let passing = [pass("endpoint-reachable", &subject)];
    let damping = Damping::new(1, 2);
    let first = plan_damped(&snapshot(vec![acked.clone()], vec![]), &passing, damping);
    assert_eq!(first, EvaluationChanges { streaks: vec![set(&subject, None, 0, 1)], ..Default::default() });
    let second = plan_damped(
        &snapshot(vec![acked.clone()], vec![streak("endpoint-reachable", &subject, 0, 1)]),
        &passing,
        damping,
    );
    assert!(
        matches!(second.findings[..], [FindingChange::Resolve { id, .. }] if id == acked.id),
        "{second:?}"
    );
    assert_eq!(second.streaks, [clear(&subject, (0, 1))]);
}

#[test]
fn re_evaluating_the_same_facts_does_not_count_except_for_rules_that_read_no_probes() {
    let subject = at_site(SITE);
    let damping = Damping::new(2, 2);
    let swept = same_facts(snapshot(vec![], vec![streak("endpoint-reachable", &subject, 1, 0)]));
    let failing = fail("endpoint-reachable", &subject, RuleSeverity::Critical, "blocked");
    assert_eq!(plan_damped(&swept, std::slice::from_ref(&failing), damping), EvaluationChanges::default());
    assert_eq!(
        plan_damped(&swept, &[pass("endpoint-reachable", &subject)], damping),
        EvaluationChanges::default(),
        "nor does a pass break the run"
    );

    // collector-silent judges time: every evaluation is a new observation.
    let silent_id = Uuid::from_u128(SITE).to_string();
    let swept = same_facts(snapshot(vec![], vec![streak("collector-silent", &silent_id, 1, 0)]));
    let changes =
        plan_damped(&swept, &[fail("collector-silent", &silent_id, RuleSeverity::High, "silent")], damping);
    assert!(matches!(changes.findings[..], [FindingChange::Open { .. }]), "{changes:?}");
}

#[test]
fn damping_comes_from_the_tenant_then_the_server_then_the_pack() {
    let some_rule = wbd_rules::rules()[0].id;
    let pack_default: Damping = wbd_rules::rules()[0].flap.into();
    assert_eq!(
        DampingTable::for_tenant(&PackSettings::defaults(), DampingDefaults::default()).get(some_rule),
        pack_default
    );

    let server = DampingDefaults { open_after: Some(3), resolve_after: None };
    let table = DampingTable::for_tenant(&PackSettings::defaults(), server);
    assert_eq!(table.get(some_rule), Damping::new(3, pack_default.resolve_after));
    assert_eq!(table.get("custom-rule"), Damping::new(3, 1));

    let mut tenant = PackSettings::defaults();
    tenant
        .rules
        .insert(some_rule.to_owned(), RuleSettings { resolve_after: Some(4), ..RuleSettings::default() });
    let table = DampingTable::for_tenant(&tenant, server);
    assert_eq!(table.get(some_rule), Damping::new(3, 4));
    assert_eq!(DampingTable::default().get(some_rule), Damping::NONE);
}

#[test]
fn streaks_no_evaluation_mentions_are_cleared() {
    let snap = snapshot(vec![], vec![streak("endpoint-reachable", "gone:443@c", 1, 0)]);
    assert_eq!(plan_damped(&snap, &[], Damping::new(2, 2)).streaks, [clear("gone:443@c", (1, 0))]);
}

// ---- stale --------------------------------------------------------------------------------

#[test]
fn a_silent_collectors_findings_are_held() {
    let subject = at_site(SITE);
    let open = finding(5, "endpoint-reachable", &subject, FindingStatus::Open);
    let other = at_site(11);
    let mut snap = snapshot(vec![open], vec![streak("endpoint-reachable", &other, 1, 0)]);
    snap.collectors = vec![silent(SITE), silent(11), collector(12)];
    let evaluations = [
        pass("endpoint-reachable", &subject),
        fail("endpoint-reachable", &other, RuleSeverity::Critical, "blocked"),
        unknown("endpoint-tls-trusted", &subject),
        fail("collector-silent", &Uuid::from_u128(SITE).to_string(), RuleSeverity::High, "silent"),
    ];
    let damping = DampingTable::uniform(Damping::new(2, 1)).with_rule("collector-silent", Damping::NONE);
    let changes = plan_changes(&snap, &evaluations, &damping, now());
    // Neither resolved, nor opened, nor counted, nor undecided; only the silence itself opens.
    let opened: Vec<_> = changes
        .findings
        .iter()
        .map(|c| match c {
            FindingChange::Open { rule_id, .. } => rule_id.as_str(),
            other => panic!("unexpected {other:?}"),
        })
        .collect();
    assert_eq!(opened, ["collector-silent"]);
    assert!(changes.streaks.is_empty(), "{changes:?}");
    assert_eq!(changes.unknown_rules, None);
}

#[test]
fn a_tenant_wide_verdict_is_held_only_when_every_active_collector_is_silent() {
    let mut revoked = collector(12);
    revoked.status = CollectorStatus::Revoked;
    let one_silent = [silent(SITE), collector(11), revoked.clone()];
    let all_silent = [silent(SITE), silent(11), revoked];
    assert!(!is_stale("endpoint-reachable", None, &one_silent, now()));
    assert!(is_stale("endpoint-reachable", None, &all_silent, now()));
    assert!(!is_stale("endpoint-reachable", None, &[], now()));
    assert!(!is_stale("collector-silent", None, &all_silent, now()), "it reads no probe results");
    assert!(is_stale("custom-rule", Some(CollectorId(Uuid::from_u128(SITE))), &one_silent, now()));
    assert!(!is_stale("custom-rule", Some(CollectorId(Uuid::from_u128(11))), &one_silent, now()));
}

// ---- suppression --------------------------------------------------------------------------

#[test]
fn an_expired_suppression_is_announced_again_while_the_problem_is_there() {
    let subject = at_site(SITE);
    let expired = suppressed(5, &subject, now() - Duration::minutes(1));
    let reannounce = |summary: &str| FindingChange::Reannounce {
        id: expired.id,
        expected_version: 4,
        severity: Severity::Critical,
        summary: summary.to_owned(),
        evidence: json!({"host": "h"}),
        message: None,
    };
    let snap = snapshot(vec![expired.clone()], vec![]);
    let failing = fail("endpoint-reachable", &subject, RuleSeverity::Critical, "still blocked");
    assert_eq!(plan(&snap, std::slice::from_ref(&failing)).findings, [reannounce("still blocked")]);
    assert_eq!(
        plan(&same_facts(snap.clone()), std::slice::from_ref(&failing)).findings,
        [reannounce("still blocked")]
    );
    assert_eq!(plan(&snap, &[unknown("endpoint-reachable", &subject)]).findings, [reannounce("blocked")]);
    // Passing resolves instead, or re-announces while the passes are not yet enough.
    assert!(matches!(
        plan(&snap, &[pass("endpoint-reachable", &subject)]).findings[..],
        [FindingChange::Resolve { .. }]
    ));
    let damped = plan_damped(&snap, &[pass("endpoint-reachable", &subject)], Damping::new(1, 2));
    assert_eq!(damped.findings, [reannounce("blocked")]);
    assert_eq!(damped.streaks, [set(&subject, None, 0, 1)]);

    // Not yet expired: nothing to announce.
    let later = snapshot(vec![suppressed(5, &subject, now() + Duration::minutes(1))], vec![]);
    assert_eq!(
        plan(&later, &[fail("endpoint-reachable", &subject, RuleSeverity::Critical, "blocked")]),
        EvaluationChanges::default()
    );

    // A custom rule's finding that nothing evaluates any more runs out all the same.
    let custom = Finding {
        fingerprint: fingerprint("custom-rule", "x"),
        rule_id: "custom-rule".to_owned(),
        ..suppressed(6, "x", now() - Duration::minutes(1))
    };
    let changes = plan(&snapshot(vec![custom.clone()], vec![]), &[]);
    assert!(matches!(changes.findings[..], [FindingChange::Reannounce { id, .. }] if id == custom.id));

    // Held while its collector is silent.
    let mut held = snap;
    held.collectors = vec![silent(SITE)];
    assert_eq!(plan(&held, &[failing]), EvaluationChanges::default());
}

// ---- root causes --------------------------------------------------------------------------

const SSPR: &str = "sspr-enabled";
const CAPABLE: &str = "test-user-sspr-capable";

fn group(rule_id: &str, root: Option<&str>) -> GroupChange {
    GroupChange {
        fingerprint: fingerprint(rule_id, "tenant"),
        root_fingerprint: root.map(|root| fingerprint(root, "tenant")),
    }
}

#[test]
fn a_consequence_that_opens_with_its_root_is_grouped_under_it() {
    // SSPR is off for the test user, so the user also cannot reset: one root, one consequence.
    let changes = plan(
        &snapshot(vec![], vec![]),
        &[
            fail(SSPR, "tenant", RuleSeverity::High, "SSPR is off"),
            fail(CAPABLE, "tenant", RuleSeverity::Medium, "cannot reset"),
        ],
    );
    assert_eq!(changes.findings.len(), 2, "both open: {changes:?}");
    assert_eq!(changes.groups, vec![group(CAPABLE, Some(SSPR))]);

    // The consequence alone stands alone; the root alone has nothing under it.
    let alone =
        plan(&snapshot(vec![], vec![]), &[fail(CAPABLE, "tenant", RuleSeverity::Medium, "cannot reset")]);
    assert_eq!(alone.findings.len(), 1);
    assert!(alone.groups.is_empty(), "{alone:?}");
    let root_only =
        plan(&snapshot(vec![], vec![]), &[fail(SSPR, "tenant", RuleSeverity::High, "SSPR is off")]);
    assert!(root_only.groups.is_empty(), "{root_only:?}");
}

#[test]
fn grouping_is_written_only_when_it_changes_and_follows_the_root() {
    let root = finding(1, SSPR, "tenant", FindingStatus::Open);
    let grouped = Finding {
        root_finding_id: Some(root.id),
        announced: false,
        ..finding(2, CAPABLE, "tenant", FindingStatus::Open)
    };
    let both_fail = [
        fail(SSPR, "tenant", RuleSeverity::Critical, "blocked"),
        fail(CAPABLE, "tenant", RuleSeverity::Critical, "blocked"),
    ];
    // Both still fail as stored: nothing to write, grouping included.
    let steady = snapshot(vec![root.clone(), grouped], vec![]);
    let changes = plan(&steady, &both_fail);
    assert_eq!(changes, EvaluationChanges::default());

    // The root is fixed, the consequence still fails: it stands alone from now on.
    let changes = plan(&steady, &[pass(SSPR, "tenant"), both_fail[1].clone()]);
    assert!(
        matches!(changes.findings[..], [FindingChange::Resolve { id, .. }] if id == root.id),
        "{changes:?}"
    );
    assert_eq!(changes.groups, vec![group(CAPABLE, None)]);

    // A root that appears under an open finding that stood alone groups it.
    let alone = finding(2, CAPABLE, "tenant", FindingStatus::Acknowledged);
    let changes = plan(&snapshot(vec![alone], vec![]), &both_fail);
    assert!(matches!(changes.findings[..], [FindingChange::Open { .. }]), "{changes:?}");
    assert_eq!(changes.groups, vec![group(CAPABLE, Some(SSPR))]);

    // Resolved findings are not grouped, whatever their root was.
    let resolved =
        Finding { root_finding_id: Some(root.id), ..finding(2, CAPABLE, "tenant", FindingStatus::Resolved) };
    let changes = plan(
        &snapshot(vec![root.clone(), resolved], vec![]),
        &[both_fail[0].clone(), pass(CAPABLE, "tenant")],
    );
    assert!(changes.groups.is_empty(), "{changes:?}");

    // A consequence that reopens while its root is open is grouped under it again.
    let resolved =
        Finding { root_finding_id: None, ..finding(2, CAPABLE, "tenant", FindingStatus::Resolved) };
    let open_root = snapshot(vec![root.clone(), resolved], vec![]);
    let changes = plan(&open_root, &both_fail);
    assert!(matches!(changes.findings[..], [FindingChange::Reopen { .. }]), "{changes:?}");
    assert_eq!(changes.groups, vec![group(CAPABLE, Some(SSPR))]);
}
