//! Findings people act on (acknowledge, suppress, unsuppress), what the evaluator does with them
//! (re-announcing an expired suppression, resolving), flap-damping streaks, undecided rules, and
//! "re-test now" commands handed to a collector with its next push.

use serde_json::json;
use uuid::Uuid;
use wbd_store::*;

use crate::fixtures::{
    Site, at, batch, enrolled_site, facts_version, only_findings, open, open_findings, org, result, tenant,
};
use crate::harness::TestStore;

/// A site with one ingested batch (facts_version 1) and one open finding.
async fn site_with_finding(store: &TestStore) -> anyhow::Result<(Site, Finding)> {
    let site = enrolled_site(store, "Acme MSP").await?;
    store
        .ingest_batch(site.scope, &batch(site.collector.id, vec![result("tcp", "relay", 10, "a")], 10))
        .await?;
    let finding = open_findings(store, site.scope, &[("relay:tcp", Severity::High)], at(20)).await?.remove(0);
    Ok((site, finding))
}

async fn act(
    store: &TestStore,
    site: &Site,
    finding: &Finding,
    action: FindingAction,
    secs: i64,
) -> anyhow::Result<Finding> {
    match store.act_on_finding(site.org, finding.id, finding.version, &action, "api_key:k1", at(secs)).await?
    {
        ActionOutcome::Applied(f) => Ok(*f),
        other => anyhow::bail!("{action:?} was not applied: {other:?}"),
    }
}

fn suppress(reason: &str, until_secs: i64) -> FindingAction {
    FindingAction::Suppress { reason: reason.into(), until: at(until_secs) }
}

contract_test! {
    async fn people_acknowledge_suppress_and_unsuppress_with_an_event_each(store) {
        let (site, finding) = site_with_finding(store).await?;

        let acked =
            act(store, &site, &finding, FindingAction::Acknowledge { note: Some("on it".into()) }, 30)
                .await?;
        assert_eq!(acked.status, FindingStatus::Acknowledged);
        assert_eq!(
            (acked.acknowledged_at, acked.acknowledged_by.as_deref()),
            (Some(at(30)), Some("api_key:k1"))
        );
        assert_eq!((acked.version, acked.updated_at), (finding.version + 1, at(30)));
        assert_eq!(store.get_finding(site.org, finding.id).await?, Some(acked.clone()));

        let suppressed = act(store, &site, &acked, suppress("change window on Friday", 3_600), 40).await?;
        assert_eq!(suppressed.status, FindingStatus::Suppressed);
        assert_eq!(
            (
                suppressed.suppressed_until,
                suppressed.suppression_reason.as_deref(),
                suppressed.suppressed_by.as_deref()
            ),
            (Some(at(3_600)), Some("change window on Friday"), Some("api_key:k1"))
        );
        // Suppressing again moves the end and the reason.
        let extended = act(store, &site, &suppressed, suppress("vendor ticket 42", 7_200), 45).await?;
        assert_eq!(extended.suppressed_until, Some(at(7_200)));

        let reopened = act(store, &site, &extended, FindingAction::Unsuppress, 50).await?;
        assert_eq!(reopened.status, FindingStatus::Open);
        assert_eq!(
            (reopened.suppressed_until, reopened.suppression_reason, reopened.acknowledged_at),
            (None, None, None)
        );
        assert_eq!(reopened.version, finding.version + 4);

        let events = store.list_finding_events(site.org, finding.id).await?;
        let kinds: Vec<_> = events.iter().map(|e| e.kind).collect();
        assert_eq!(
            kinds,
            [
                FindingEventKind::Opened,
                FindingEventKind::Acknowledged,
                FindingEventKind::Suppressed,
                FindingEventKind::Suppressed,
                FindingEventKind::Unsuppressed,
            ]
        );
        assert_eq!(events[0].actor, "system");
        assert!(events[1..].iter().all(|e| e.actor == "api_key:k1"));
        assert_eq!((events[1].note.as_deref(), events[1].at), (Some("on it"), at(30)));
        assert_eq!(
            (events[2].note.as_deref(), events[2].suppressed_until),
            (Some("change window on Friday"), Some(at(3_600)))
        );
        assert_eq!((events[4].note.as_deref(), events[4].suppressed_until), (None, None));
        assert!(events.iter().all(|e| e.severity == Severity::High && e.summary == "relay:tcp is broken"));
        Ok(())
    }
}

contract_test! {
    async fn a_stale_version_a_refused_transition_or_another_organisation_changes_nothing(store) {
        let (site, finding) = site_with_finding(store).await?;
        let ack = FindingAction::Acknowledge { note: None };

        let changed = store
            .act_on_finding(site.org, finding.id, finding.version - 1, &ack, "api_key:k1", at(30))
            .await?;
        assert_eq!(changed, ActionOutcome::Changed { current_version: finding.version });

        let refused = store
            .act_on_finding(
                site.org,
                finding.id,
                finding.version,
                &FindingAction::Unsuppress,
                "api_key:k1",
                at(30),
            )
            .await?;
        assert!(
            matches!(refused, ActionOutcome::Refused(ref why) if why.0.contains("not suppressed")),
            "{refused:?}"
        );

        let intruder = org(store, "Intruder MSP").await?;
        assert_eq!(
            store.act_on_finding(intruder, finding.id, finding.version, &ack, "api_key:k2", at(30)).await?,
            ActionOutcome::NotFound
        );
        assert_eq!(
            store.act_on_finding(site.org, FindingId::new(), 1, &ack, "api_key:k1", at(30)).await?,
            ActionOutcome::NotFound
        );

        assert_eq!(store.get_finding(site.org, finding.id).await?, Some(finding.clone()));
        assert_eq!(store.list_finding_events(site.org, finding.id).await?.len(), 1);

        // A resolved finding cannot be acknowledged or suppressed.
        let resolve = FindingChange::Resolve {
            id: finding.id,
            expected_version: finding.version,
            summary: "ok".into(),
        };
        store.apply_evaluation(site.scope, None, 1, &only_findings([resolve]), at(40)).await?;
        let resolved = store.get_finding(site.org, finding.id).await?.expect("finding");
        for action in [ack, suppress("x", 3_600)] {
            let outcome = store
                .act_on_finding(site.org, finding.id, resolved.version, &action, "api_key:k1", at(50))
                .await?;
            assert!(matches!(outcome, ActionOutcome::Refused(_)), "{action:?}: {outcome:?}");
        }
        Ok(())
    }
}

contract_test! {
    async fn an_expired_suppression_is_found_and_announced_again_by_the_evaluator(store) {
        let (site, finding) = site_with_finding(store).await?;
        let suppressed = act(store, &site, &finding, suppress("known", 100), 30).await?;

        assert!(store.tenants_with_expired_suppressions(at(99)).await?.is_empty());
        assert_eq!(store.tenants_with_expired_suppressions(at(100)).await?, vec![site.scope]);

        // Re-announcing guards on the suppressed status and the version.
        let reannounce = |version| FindingChange::Reannounce {
            id: finding.id,
            expected_version: version,
            severity: Severity::Critical,
            summary: "still broken".into(),
            evidence: json!({ "still": true }),
            message: None,
        };
        assert_eq!(
            store
                .apply_evaluation(site.scope, None, 1, &only_findings([reannounce(finding.version)]), at(101))
                .await?,
            ApplyOutcome::Conflict
        );
        assert_eq!(
            store
                .apply_evaluation(
                    site.scope,
                    None,
                    1,
                    &only_findings([reannounce(suppressed.version)]),
                    at(101)
                )
                .await?,
            ApplyOutcome::Applied
        );
        let open = store.get_finding(site.org, finding.id).await?.expect("finding");
        assert_eq!(
            (open.status, open.severity, open.summary.as_str()),
            (FindingStatus::Open, Severity::Critical, "still broken")
        );
        assert_eq!(
            (open.suppressed_until, open.suppression_reason.as_deref(), open.suppressed_by.as_deref()),
            (None, None, None)
        );
        assert!(store.tenants_with_expired_suppressions(at(200)).await?.is_empty());
        let last = store.list_finding_events(site.org, finding.id).await?.pop().expect("event");
        assert_eq!(
            (last.kind, last.actor.as_str(), last.at),
            (FindingEventKind::SuppressionExpired, "system", at(101))
        );

        // Resolving a suppressed (or acknowledged) finding ends the suppression too.
        let again = act(store, &site, &open, suppress("again", 5_000), 110).await?;
        let resolve =
            FindingChange::Resolve { id: again.id, expected_version: again.version, summary: "ok".into() };
        store.apply_evaluation(site.scope, None, 1, &only_findings([resolve]), at(120)).await?;
        let resolved = store.get_finding(site.org, finding.id).await?.expect("finding");
        assert_eq!(
            (resolved.status, resolved.suppressed_until, resolved.resolved_at),
            (FindingStatus::Resolved, None, Some(at(120)))
        );
        Ok(())
    }
}

contract_test! {
    async fn streaks_are_read_with_the_snapshot_and_guarded_like_findings(store) {
        let (site, finding) = site_with_finding(store).await?;
        let set = |expected, fails, passes| StreakChange::Set {
            fingerprint: "relay:udp".into(),
            expected,
            fails,
            passes,
        };

        let first = EvaluationChanges { streaks: vec![set(None, 1, 0)], ..EvaluationChanges::default() };
        assert_eq!(store.apply_evaluation(site.scope, None, 1, &first, at(30)).await?, ApplyOutcome::Applied);
        let snapshot = store.load_tenant_snapshot(site.scope, &[]).await?.expect("tenant");
        assert_eq!(
            snapshot.streaks,
            [FindingStreak { fingerprint: "relay:udp".into(), fails: 1, passes: 0, updated_at: at(30) }]
        );

        // A second "first" failure, or one built on other counts, conflicts; and the finding change
        // that came with it is rolled back.
        let resolve = FindingChange::Resolve {
            id: finding.id,
            expected_version: finding.version,
            summary: "ok".into(),
        };
        for stale in [
            set(None, 1, 0),
            set(Some((2, 0)), 3, 0),
            StreakChange::Clear { fingerprint: "relay:udp".into(), expected: (0, 1) },
        ] {
            let changes = EvaluationChanges {
                findings: vec![resolve.clone()],
                streaks: vec![stale.clone()],
                unknown_rules: None,
                groups: Vec::new(),
                traceparent: None,
            };
            assert_eq!(
                store.apply_evaluation(site.scope, None, 1, &changes, at(40)).await?,
                ApplyOutcome::Conflict,
                "{stale:?}"
            );
        }
        assert_eq!(store.get_finding(site.org, finding.id).await?, Some(finding.clone()));

        let second =
            EvaluationChanges { streaks: vec![set(Some((1, 0)), 2, 0)], ..EvaluationChanges::default() };
        assert_eq!(
            store.apply_evaluation(site.scope, None, 1, &second, at(50)).await?,
            ApplyOutcome::Applied
        );
        let streaks = store.load_tenant_snapshot(site.scope, &[]).await?.expect("tenant").streaks;
        assert_eq!((streaks[0].fails, streaks[0].updated_at), (2, at(50)));

        let clear = EvaluationChanges {
            streaks: vec![StreakChange::Clear { fingerprint: "relay:udp".into(), expected: (2, 0) }],
            ..EvaluationChanges::default()
        };
        assert_eq!(store.apply_evaluation(site.scope, None, 1, &clear, at(60)).await?, ApplyOutcome::Applied);
        assert!(store.load_tenant_snapshot(site.scope, &[]).await?.expect("tenant").streaks.is_empty());

        // Another tenant's streaks are its own.
        let other = tenant(store, site.org, "Fabrikam").await?;
        let theirs = EvaluationChanges { streaks: vec![set(None, 1, 0)], ..EvaluationChanges::default() };
        assert_eq!(store.apply_evaluation(other, None, 0, &theirs, at(70)).await?, ApplyOutcome::Applied);
        assert!(store.load_tenant_snapshot(site.scope, &[]).await?.expect("tenant").streaks.is_empty());
        Ok(())
    }
}

contract_test! {
    async fn undecided_rules_are_stored_when_given_and_kept_otherwise(store) {
        let (site, _) = site_with_finding(store).await?;
        assert_eq!(store.load_tenant_snapshot(site.scope, &[]).await?.expect("tenant").unknown_rules, 0);

        let three = EvaluationChanges { unknown_rules: Some(3), ..EvaluationChanges::default() };
        store.apply_evaluation(site.scope, None, 1, &three, at(30)).await?;
        store.apply_evaluation(site.scope, None, 1, &EvaluationChanges::default(), at(40)).await?;
        assert_eq!(store.load_tenant_snapshot(site.scope, &[]).await?.expect("tenant").unknown_rules, 3);
        let summary = store.get_tenant_summary(site.scope, at(50)).await?.expect("summary");
        assert_eq!(summary.unknown_rules, 3);
        Ok(())
    }
}

contract_test! {
    async fn summaries_count_acknowledged_findings_as_open_and_suppressed_ones_apart(store) {
        let (site, finding) = site_with_finding(store).await?;
        let more = open_findings(
            store,
            site.scope,
            &[("relay:udp", Severity::Critical), ("dns:a", Severity::Low)],
            at(21),
        )
        .await?;
        act(store, &site, &finding, FindingAction::Acknowledge { note: None }, 30).await?;
        act(store, &site, &more[0], suppress("accepted", 5_000), 30).await?;

        let summary = store.get_tenant_summary(site.scope, at(40)).await?.expect("summary");
        assert_eq!(
            (summary.open_critical, summary.open_high, summary.open_low, summary.suppressed),
            (0, 1, 1, 1)
        );
        assert_eq!(summary.health_score(), 100 - 20 - 3);
        Ok(())
    }
}

/// How long the tests' commands wait for a push.
const DAY: i64 = 86_400;

fn run_probes(probes: &[&str]) -> serde_json::Value {
    json!({ "command": "run_probes", "probes": probes, "reason": "re-test" })
}

contract_test! {
    async fn retest_commands_ride_on_one_batch_and_on_its_retries(store) {
        let (site, finding) = site_with_finding(store).await?;
        let endpoint = CommandWrite { collector_id: site.collector.id, action: run_probes(&["endpoint"]) };

        let first = store
            .request_retest(
                site.scope,
                finding.id,
                std::slice::from_ref(&endpoint),
                "api_key:k1",
                "asked",
                at(30 + DAY),
                at(30),
            )
            .await?
            .expect("finding exists");
        assert_eq!(first.len(), 1);
        assert_eq!(
            (first[0].collector_id, first[0].finding_id, &first[0].action, first[0].requested_by.as_str()),
            (site.collector.id, Some(finding.id), &endpoint.action, "api_key:k1")
        );
        assert_eq!((first[0].created_at, first[0].delivered_batch_id), (at(30), None));
        // Asking again while the first waits hands back the waiting command.
        let again = store
            .request_retest(
                site.scope,
                finding.id,
                std::slice::from_ref(&endpoint),
                "api_key:k2",
                "asked",
                at(31 + DAY),
                at(31),
            )
            .await?
            .expect("finding exists");
        assert_eq!(again[0].id, first[0].id);
        let events = store.list_finding_events(site.org, finding.id).await?;
        assert_eq!(events.iter().filter(|e| e.kind == FindingEventKind::RetestRequested).count(), 2);
        assert_eq!(
            events.last().map(|e| (e.actor.as_str(), e.note.as_deref())),
            Some(("api_key:k2", Some("asked")))
        );

        // The collector's next push is told that a command waits for it.
        let waiting = |now| async move {
            anyhow::Ok(store.find_collector_for_auth(site.collector.id, at(now)).await?.expect("collector").commands_waiting)
        };
        assert!(waiting(39).await?);
        assert!(!waiting(31 + DAY).await?, "not once it has run out");

        let batch_1 = Uuid::now_v7();
        let delivered =
            store.deliver_collector_commands(site.scope, site.collector.id, batch_1, at(40)).await?;
        assert!(!waiting(41).await?, "not once delivered");
        assert_eq!(delivered.iter().map(|c| c.id).collect::<Vec<_>>(), [first[0].id]);
        assert_eq!(
            (delivered[0].delivered_batch_id, delivered[0].delivered_at),
            (Some(batch_1), Some(at(40)))
        );
        // The answer to batch 1 was lost: its retry carries the command again, the next batch not.
        let retried =
            store.deliver_collector_commands(site.scope, site.collector.id, batch_1, at(41)).await?;
        assert_eq!(retried, delivered);
        let batch_2 = Uuid::now_v7();
        assert!(
            store
                .deliver_collector_commands(site.scope, site.collector.id, batch_2, at(50))
                .await?
                .is_empty()
        );

        // Once delivered, the same request makes a new command.
        let later = store
            .request_retest(
                site.scope,
                finding.id,
                std::slice::from_ref(&endpoint),
                "api_key:k1",
                "asked",
                at(60 + DAY),
                at(60),
            )
            .await?
            .expect("finding exists");
        assert_ne!(later[0].id, first[0].id);
        let batch_3 = Uuid::now_v7();
        let next = store.deliver_collector_commands(site.scope, site.collector.id, batch_3, at(70)).await?;
        assert_eq!(next.iter().map(|c| c.id).collect::<Vec<_>>(), [later[0].id]);
        Ok(())
    }
}

contract_test! {
    async fn retest_of_another_scopes_finding_is_none_and_stores_nothing(store) {
        let (site, finding) = site_with_finding(store).await?;
        let intruder = org(store, "Intruder MSP").await?;
        let forged = TenantScope { org_id: intruder.org_id, tenant_id: site.scope.tenant_id };
        let sibling = tenant(store, site.org, "Fabrikam").await?;
        let command = CommandWrite { collector_id: site.collector.id, action: run_probes(&[]) };
        for scope in [forged, sibling] {
            let outcome = store
                .request_retest(scope, finding.id, std::slice::from_ref(&command), "api_key:k9", "x", at(DAY), at(30))
                .await?;
            assert_eq!(outcome, None);
        }
        assert!(
            store
                .deliver_collector_commands(site.scope, site.collector.id, Uuid::now_v7(), at(40))
                .await?
                .is_empty()
        );
        assert!(
            store
                .deliver_collector_commands(forged, site.collector.id, Uuid::now_v7(), at(40))
                .await?
                .is_empty()
        );
        assert_eq!(store.list_finding_events(site.org, finding.id).await?.len(), 1);
        Ok(())
    }
}

fn group(fingerprint: &str, root: Option<&str>) -> GroupChange {
    GroupChange { fingerprint: fingerprint.into(), root_fingerprint: root.map(Into::into) }
}

contract_test! {
    async fn a_consequence_is_grouped_under_its_root_counted_once_and_announced_when_the_root_goes(store) {
        let site = enrolled_site(store, "Acme MSP").await?;
        store.ingest_batch(site.scope, &batch(site.collector.id, vec![result("graph", "tenant", 10, "a")], 10)).await?;
        // One finding stood alone (and was announced) before its root appeared.
        let early = open_findings(store, site.scope, &[("sync:tenant", Severity::High)], at(15)).await?.remove(0);

        // The root and a consequence open together; the root also explains the early finding.
        let changes = EvaluationChanges {
            groups: vec![group("capable:tenant", Some("sspr:tenant")), group("sync:tenant", Some("sspr:tenant"))],
            ..only_findings([open("sspr:tenant", Severity::High), open("capable:tenant", Severity::Medium)])
        };
        let version = facts_version(store, site.scope).await?;
        assert_eq!(store.apply_evaluation(site.scope, None, version, &changes, at(20)).await?, ApplyOutcome::Applied);
        let snapshot = store.load_tenant_snapshot(site.scope, &[]).await?.unwrap();
        let find = |fp: &str| snapshot.findings.iter().find(|f| f.fingerprint == fp).cloned().unwrap();
        let (root, consequence, early_now) = (find("sspr:tenant"), find("capable:tenant"), find("sync:tenant"));
        assert_eq!((root.root_finding_id, root.announced), (None, true));
        assert_eq!((consequence.root_finding_id, consequence.announced), (Some(root.id), false));
        assert_eq!((early_now.root_finding_id, early_now.announced), (Some(root.id), true), "keeps its ticket");
        assert_eq!(early_now.version, early.version, "grouping is not a transition");

        // Its events carry the root (not delivered); the root's and the early finding's do not.
        let events = store.list_finding_events(site.org, consequence.id).await?;
        assert_eq!(events.iter().map(|e| (e.kind, e.root_finding_id)).collect::<Vec<_>>(), [(FindingEventKind::Opened, Some(root.id))]);
        assert!(store.list_finding_events(site.org, root.id).await?.iter().all(|e| e.root_finding_id.is_none()));
        let acked = act(store, &site, &consequence, FindingAction::Acknowledge { note: None }, 25).await?;
        let early_acked = act(store, &site, &early_now, FindingAction::Acknowledge { note: None }, 25).await?;
        assert_eq!(store.list_finding_events(site.org, acked.id).await?.last().unwrap().root_finding_id, Some(root.id));
        assert_eq!(store.list_finding_events(site.org, early_acked.id).await?.last().unwrap().root_finding_id, None);
        let claimed = store.claim_undispatched_events(100, std::time::Duration::from_secs(60), at(26)).await?;
        let held: Vec<_> = claimed.iter().filter(|c| c.event.root_finding_id.is_some()).map(|c| c.finding.id).collect();
        assert_eq!(held, [consequence.id, consequence.id], "the consequence's opened and acknowledged events");

        // The health figures count the cascade once: the root; the other two apart.
        let summary = store.get_tenant_summary(site.scope, at(30)).await?.unwrap();
        assert_eq!((summary.open_high, summary.open_medium, summary.consequences), (1, 0, 2));

        // The root is fixed; the consequence still fails: it stands alone and is announced now.
        let changes = EvaluationChanges {
            groups: vec![group("capable:tenant", None), group("sync:tenant", None)],
            ..only_findings([FindingChange::Resolve { id: root.id, expected_version: root.version, summary: "fixed".into() }])
        };
        assert_eq!(store.apply_evaluation(site.scope, None, version, &changes, at(40)).await?, ApplyOutcome::Applied);
        let alone = store.get_finding(site.org, consequence.id).await?.unwrap();
        assert_eq!((alone.root_finding_id, alone.announced, alone.status), (None, true, FindingStatus::Acknowledged));
        let events = store.list_finding_events(site.org, consequence.id).await?;
        let last = events.last().unwrap();
        assert_eq!((last.kind, last.root_finding_id, last.at), (FindingEventKind::RootCauseResolved, None, at(40)));
        assert_eq!(
            store.list_finding_events(site.org, early.id).await?.len(),
            2,
            "the early finding was announced all along: nothing to announce"
        );
        let summary = store.get_tenant_summary(site.scope, at(50)).await?.unwrap();
        assert_eq!((summary.open_high, summary.open_medium, summary.consequences), (1, 1, 0));
        Ok(())
    }
}

fn reopen(finding: &Finding, expected_version: i64) -> FindingChange {
    FindingChange::Reopen {
        id: finding.id,
        expected_version,
        severity: finding.severity,
        summary: "fails again".into(),
        evidence: json!({}),
        message: None,
    }
}

contract_test! {
    async fn a_finding_that_reopens_is_announced_on_its_own_unless_its_root_still_stands(store) {
        let site = enrolled_site(store, "Acme MSP").await?;
        store.ingest_batch(site.scope, &batch(site.collector.id, vec![result("graph", "tenant", 10, "a")], 10)).await?;
        let version = facts_version(store, site.scope).await?;
        let changes = EvaluationChanges {
            groups: vec![group("capable:tenant", Some("sspr:tenant")), group("sync:tenant", Some("sspr:tenant"))],
            ..only_findings([
                open("sspr:tenant", Severity::High),
                open("capable:tenant", Severity::Medium),
                open("sync:tenant", Severity::Medium),
            ])
        };
        assert_eq!(store.apply_evaluation(site.scope, None, version, &changes, at(20)).await?, ApplyOutcome::Applied);
        let snapshot = store.load_tenant_snapshot(site.scope, &[]).await?.unwrap();
        let find = |fp: &str| snapshot.findings.iter().find(|f| f.fingerprint == fp).cloned().unwrap();
        let (root, capable, sync) = (find("sspr:tenant"), find("capable:tenant"), find("sync:tenant"));
        assert_eq!((capable.announced, sync.announced), (false, false));

        // Both pass; `sync` also leaves its root while resolved (nothing to announce then).
        let resolve = |f: &Finding| FindingChange::Resolve { id: f.id, expected_version: f.version, summary: "passes".into() };
        let changes = EvaluationChanges {
            groups: vec![group("sync:tenant", None)],
            ..only_findings([resolve(&capable), resolve(&sync)])
        };
        assert_eq!(store.apply_evaluation(site.scope, None, version, &changes, at(30)).await?, ApplyOutcome::Applied);

        // Both fail again, in an evaluation that groups nothing: the one under its root stays
        // quiet; the one alone is announced, and its event goes out.
        let changes = only_findings([reopen(&capable, capable.version + 1), reopen(&sync, sync.version + 1)]);
        assert_eq!(store.apply_evaluation(site.scope, None, version, &changes, at(40)).await?, ApplyOutcome::Applied);
        let capable = store.get_finding(site.org, capable.id).await?.unwrap();
        let sync = store.get_finding(site.org, sync.id).await?.unwrap();
        assert_eq!(
            (capable.status, capable.root_finding_id, capable.announced),
            (FindingStatus::Open, Some(root.id), false)
        );
        assert_eq!((sync.status, sync.root_finding_id, sync.announced), (FindingStatus::Open, None, true));
        let last_event = |events: Vec<FindingEvent>| {
            let last = events.last().cloned().unwrap();
            (last.kind, last.root_finding_id)
        };
        assert_eq!(
            last_event(store.list_finding_events(site.org, capable.id).await?),
            (FindingEventKind::Reopened, Some(root.id)),
            "held back: its root's ticket stands for it"
        );
        assert_eq!(last_event(store.list_finding_events(site.org, sync.id).await?), (FindingEventKind::Reopened, None));
        Ok(())
    }
}
