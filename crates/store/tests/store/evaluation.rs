//! Applying an evaluation: finding lifecycle, events, idempotency per message, and the
//! optimistic guards that make a stale evaluation change nothing.

use serde_json::json;
use uuid::Uuid;
use wbd_store::*;

use crate::fixtures::{
    Site, at, batch, enrolled_site, facts_version, json_of, only_findings, open, open_findings, result,
};
use crate::harness::TestStore;

/// A site with one ingested batch (facts_version 1).
async fn site_with_facts(store: &TestStore) -> anyhow::Result<Site> {
    let site = enrolled_site(store, "Acme MSP").await?;
    store
        .ingest_batch(site.scope, &batch(site.collector.id, vec![result("tcp", "relay", 10, "a")], 10))
        .await?;
    Ok(site)
}

async fn finding(store: &TestStore, site: &Site, id: FindingId) -> anyhow::Result<Finding> {
    store.get_finding(site.org, id).await?.ok_or_else(|| anyhow::anyhow!("finding {id} missing"))
}

contract_test! {
    async fn a_finding_opens_updates_resolves_and_reopens_with_events_in_order(store) {
        let site = site_with_facts(store).await?;
        let scope = site.scope;

        let mut opening = open("relay:tcp", Severity::High);
        if let FindingChange::Open { message, .. } = &mut opening {
            *message = Some(json!({ "key": "relay.blocked", "args": { "port": 443 } }));
        }
        let opened = store
            .apply_evaluation(scope, Some(Uuid::now_v7()), 1, &only_findings([opening]), at(20))
            .await?;
        assert_eq!(opened, ApplyOutcome::Applied);
        let snapshot = store.load_tenant_snapshot(scope, &[]).await?.expect("tenant");
        assert_eq!((snapshot.facts_version, snapshot.evaluated_facts_version), (1, 1));
        let f = snapshot.findings[0].clone();
        assert_eq!(
            (f.status, f.severity, f.version, f.reopen_count),
            (FindingStatus::Open, Severity::High, 1, 0)
        );
        assert_eq!(
            (f.fingerprint.as_str(), f.rule_id.as_str(), f.title.as_str()),
            ("relay:tcp", "relay", "relay:tcp fails")
        );
        assert_eq!((f.opened_at, f.updated_at, f.resolved_at), (at(20), at(20), None));
        assert_eq!(f.evidence, json!({ "fingerprint": "relay:tcp" }));
        // The message the summary is rendered from, in the caller's language, is the rule's.
        assert_eq!(f.message, Some(json!({ "key": "relay.blocked", "args": { "port": 443 } })));

        let update = FindingChange::Update {
            id: f.id,
            expected_version: 1,
            severity: Severity::Critical,
            summary: "worse".into(),
            evidence: json!({ "idle_secs": 30 }),
            message: Some(json!({ "key": "relay.idle_cut" })),
        };
        assert_eq!(
            store.apply_evaluation(scope, None, 1, &only_findings([update]), at(30)).await?,
            ApplyOutcome::Applied
        );
        let f = finding(store, &site, f.id).await?;
        assert_eq!(
            (f.severity, f.summary.as_str(), f.version, f.updated_at),
            (Severity::Critical, "worse", 2, at(30))
        );
        assert_eq!(f.evidence, json!({ "idle_secs": 30 }));
        assert_eq!(f.message, Some(json!({ "key": "relay.idle_cut" })));

        let resolve = FindingChange::Resolve { id: f.id, expected_version: 2, summary: "passes now".into() };
        assert_eq!(
            store.apply_evaluation(scope, None, 1, &only_findings([resolve]), at(40)).await?,
            ApplyOutcome::Applied
        );
        let f = finding(store, &site, f.id).await?;
        assert_eq!((f.status, f.resolved_at, f.version), (FindingStatus::Resolved, Some(at(40)), 3));

        let reopen = FindingChange::Reopen {
            id: f.id,
            expected_version: 3,
            severity: Severity::Medium,
            summary: "again".into(),
            evidence: json!({}),
            message: None,
        };
        assert_eq!(
            store.apply_evaluation(scope, None, 1, &only_findings([reopen]), at(50)).await?,
            ApplyOutcome::Applied
        );
        let f = finding(store, &site, f.id).await?;
        assert_eq!((f.status, f.resolved_at, f.reopen_count, f.version), (FindingStatus::Open, None, 1, 4));
        assert_eq!((f.opened_at, f.updated_at, f.severity), (at(20), at(50), Severity::Medium));
        // A change without a message keeps the one stored.
        assert_eq!(f.message, Some(json!({ "key": "relay.idle_cut" })));

        let events = store.list_finding_events(site.org, f.id).await?;
        let seen: Vec<_> = events.iter().map(|e| (e.kind, e.at, e.severity, e.summary.as_str())).collect();
        assert_eq!(
            seen,
            vec![
                (FindingEventKind::Opened, at(20), Severity::High, "relay:tcp is broken"),
                (FindingEventKind::Updated, at(30), Severity::Critical, "worse"),
                (FindingEventKind::Resolved, at(40), Severity::Critical, "passes now"),
                (FindingEventKind::Reopened, at(50), Severity::Medium, "again"),
            ]
        );
        assert!(events.iter().all(|e| e.actor == "system" && e.finding_id == f.id));
        Ok(())
    }
}

contract_test! {
    async fn a_repeated_message_is_already_processed_and_changes_nothing(store) {
        let site = site_with_facts(store).await?;
        let message = Uuid::now_v7();
        let first = store
            .apply_evaluation(
                site.scope,
                Some(message),
                1,
                &only_findings([open("a:x", Severity::Low)]),
                at(20),
            )
            .await?;
        assert_eq!(first, ApplyOutcome::Applied);

        // Redelivered after another batch: the repeat must not open a second finding.
        store.ingest_batch(site.scope, &batch(site.collector.id, vec![], 30)).await?;
        let again = store
            .apply_evaluation(
                site.scope,
                Some(message),
                2,
                &only_findings([open("b:x", Severity::Low)]),
                at(40),
            )
            .await?;
        assert_eq!(again, ApplyOutcome::AlreadyProcessed);

        let snapshot = store.load_tenant_snapshot(site.scope, &[]).await?.expect("tenant");
        assert_eq!(snapshot.findings.iter().map(|f| f.fingerprint.as_str()).collect::<Vec<_>>(), vec!["a:x"]);
        assert_eq!(snapshot.evaluated_facts_version, 1);
        Ok(())
    }
}

contract_test! {
    async fn a_stale_facts_version_conflicts_and_changes_nothing(store) {
        let site = site_with_facts(store).await?;
        // The worker read version 1, then another batch arrived.
        store
            .ingest_batch(site.scope, &batch(site.collector.id, vec![result("tcp", "relay", 20, "b")], 20))
            .await?;
        let message = Uuid::now_v7();
        let stale = store
            .apply_evaluation(
                site.scope,
                Some(message),
                1,
                &only_findings([open("a:x", Severity::High)]),
                at(30),
            )
            .await?;
        assert_eq!(stale, ApplyOutcome::Conflict);

        let snapshot = store.load_tenant_snapshot(site.scope, &[]).await?.expect("tenant");
        assert!(snapshot.findings.is_empty());
        assert_eq!((snapshot.facts_version, snapshot.evaluated_facts_version), (2, 0));
        // The message was not recorded: re-evaluated on fresh facts, it applies.
        let fresh = store
            .apply_evaluation(
                site.scope,
                Some(message),
                2,
                &only_findings([open("a:x", Severity::High)]),
                at(40),
            )
            .await?;
        assert_eq!(fresh, ApplyOutcome::Applied);
        Ok(())
    }
}

contract_test! {
    async fn an_evaluation_that_changes_nothing_still_records_its_message_and_version_or_nothing(store) {
        let site = site_with_facts(store).await?;
        let nothing = EvaluationChanges { unknown_rules: Some(2), ..EvaluationChanges::default() };
        // Read at version 1, but another batch arrived: nothing is written, not even the message.
        store.ingest_batch(site.scope, &batch(site.collector.id, vec![result("tcp", "relay", 20, "b")], 20)).await?;
        let message = Uuid::now_v7();
        assert_eq!(store.apply_evaluation(site.scope, Some(message), 1, &nothing, at(30)).await?, ApplyOutcome::Conflict);
        let snapshot = store.load_tenant_snapshot(site.scope, &[]).await?.expect("tenant");
        assert_eq!((snapshot.evaluated_facts_version, snapshot.unknown_rules), (0, 0));

        // Re-read at version 2: applied, the version and the undecided rules move.
        assert_eq!(store.apply_evaluation(site.scope, Some(message), 2, &nothing, at(40)).await?, ApplyOutcome::Applied);
        let snapshot = store.load_tenant_snapshot(site.scope, &[]).await?.expect("tenant");
        assert_eq!((snapshot.evaluated_facts_version, snapshot.unknown_rules), (2, 2));
        // Redelivered, with or without changes: it was processed.
        assert_eq!(
            store.apply_evaluation(site.scope, Some(message), 2, &nothing, at(50)).await?,
            ApplyOutcome::AlreadyProcessed
        );
        assert_eq!(
            store.apply_evaluation(site.scope, Some(message), 2, &only_findings([open("a:x", Severity::Low)]), at(50)).await?,
            ApplyOutcome::AlreadyProcessed
        );
        assert!(store.load_tenant_snapshot(site.scope, &[]).await?.expect("tenant").findings.is_empty());
        // The silence sweep has no message: it applies again and again.
        let sweep = EvaluationChanges { unknown_rules: Some(1), ..EvaluationChanges::default() };
        assert_eq!(store.apply_evaluation(site.scope, None, 2, &sweep, at(60)).await?, ApplyOutcome::Applied);
        assert_eq!(store.apply_evaluation(site.scope, None, 2, &sweep, at(61)).await?, ApplyOutcome::Applied);
        assert_eq!(store.load_tenant_snapshot(site.scope, &[]).await?.expect("tenant").unknown_rules, 1);
        Ok(())
    }
}

contract_test! {
    async fn concurrent_deliveries_of_one_message_apply_it_once(store) {
        let site = site_with_facts(store).await?;
        let message = Uuid::now_v7();
        // Twins of one message, with and without changes, at once: exactly one applies.
        let nothing = EvaluationChanges::default();
        let opening = only_findings([open("a:x", Severity::Low)]);
        let mut outcomes = Vec::new();
        for _ in 0..4 {
            let (a, b) = tokio::join!(
                store.apply_evaluation(site.scope, Some(message), 1, &nothing, at(30)),
                store.apply_evaluation(site.scope, Some(message), 1, &opening, at(30)),
            );
            outcomes.push(a?);
            outcomes.push(b?);
        }
        assert_eq!(outcomes.iter().filter(|o| **o == ApplyOutcome::Applied).count(), 1, "{outcomes:?}");
        assert!(outcomes.iter().all(|o| matches!(o, ApplyOutcome::Applied | ApplyOutcome::AlreadyProcessed)), "{outcomes:?}");
        // The opening twins are the odd ones: a:x is open exactly when one of them applied.
        let opened = outcomes.iter().position(|o| *o == ApplyOutcome::Applied).is_some_and(|i| i % 2 == 1);
        let findings = store.load_tenant_snapshot(site.scope, &[]).await?.expect("tenant").findings;
        assert_eq!(findings.len(), usize::from(opened), "{findings:?}");
        Ok(())
    }
}

contract_test! {
    async fn a_stale_finding_version_rolls_back_the_whole_evaluation(store) {
        let site = site_with_facts(store).await?;
        let existing = open_findings(store, site.scope, &[("a:x", Severity::High)], at(20)).await?.remove(0);
        let before = store.load_tenant_snapshot(site.scope, &[]).await?.expect("tenant");

        let message = Uuid::now_v7();
        // The first change is fine; the second guards on a version the finding no longer has.
        let changes = [
            open("b:x", Severity::Low),
            FindingChange::Resolve {
                id: existing.id,
                expected_version: existing.version + 1,
                summary: "ok".into(),
            },
        ];
        assert_eq!(
            store.apply_evaluation(site.scope, Some(message), 1, &only_findings(changes), at(30)).await?,
            ApplyOutcome::Conflict
        );

        let after = store.load_tenant_snapshot(site.scope, &[]).await?.expect("tenant");
        assert_eq!(after.findings, before.findings, "the Open of b:x was rolled back too");
        assert_eq!(store.list_finding_events(site.org, existing.id).await?.len(), 1);

        // Opening a fingerprint that exists, and resolving a resolved finding, also conflict.
        let dup = store
            .apply_evaluation(site.scope, None, 1, &only_findings([open("a:x", Severity::High)]), at(31))
            .await?;
        assert_eq!(dup, ApplyOutcome::Conflict);
        let resolve = FindingChange::Resolve {
            id: existing.id,
            expected_version: existing.version,
            summary: "ok".into(),
        };
        assert_eq!(
            store.apply_evaluation(site.scope, None, 1, &only_findings([resolve]), at(32)).await?,
            ApplyOutcome::Applied
        );
        let resolve_again = FindingChange::Resolve {
            id: existing.id,
            expected_version: existing.version + 1,
            summary: "ok".into(),
        };
        assert_eq!(
            store.apply_evaluation(site.scope, None, 1, &only_findings([resolve_again]), at(33)).await?,
            ApplyOutcome::Conflict
        );
        let update_resolved = FindingChange::Update {
            id: existing.id,
            expected_version: existing.version + 1,
            severity: Severity::Low,
            summary: "x".into(),
            evidence: json!({}),
            message: None,
        };
        assert_eq!(
            store.apply_evaluation(site.scope, None, 1, &only_findings([update_resolved]), at(34)).await?,
            ApplyOutcome::Conflict
        );

        // The conflicting message was not recorded as processed: its retry applies.
        let retry = [open("b:x", Severity::Low)];
        assert_eq!(
            store.apply_evaluation(site.scope, Some(message), 1, &only_findings(retry), at(40)).await?,
            ApplyOutcome::Applied
        );
        Ok(())
    }
}

contract_test! {
    async fn a_snapshot_holds_everything_the_rules_read(store) {
        let site = site_with_facts(store).await?;
        let finding =
            open_findings(store, site.scope, &[("relay:tcp", Severity::High)], at(20)).await?.remove(0);

        let snapshot = store.load_tenant_snapshot(site.scope, &[]).await?.expect("tenant");
        assert_eq!(snapshot.scope, site.scope);
        assert_eq!((snapshot.facts_version, snapshot.evaluated_facts_version), (1, 1));
        assert_eq!(snapshot.collectors.iter().map(|c| c.id).collect::<Vec<_>>(), vec![site.collector.id]);
        assert_eq!(snapshot.facts, read_facts(store.list_facts(site.scope).await?));
        assert_eq!(snapshot.findings, vec![finding]);
        assert_eq!(facts_version(store, site.scope).await?, 1);
        Ok(())
    }
}

/// The facts as a snapshot that knows none of their digests holds them.
fn read_facts(facts: Vec<Fact>) -> Vec<SnapshotFact> {
    facts
        .into_iter()
        .map(|f| SnapshotFact {
            collector_id: f.collector_id,
            probe: f.probe,
            subject: f.subject,
            observed_at: f.observed_at,
            digest: f.digest,
            payload: SnapshotPayload::Read(f.payload),
        })
        .collect()
}

contract_test! {
    async fn a_snapshot_sends_only_the_timings_of_payloads_the_reader_holds(store) {
        let site = enrolled_site(store, "Acme MSP").await?;
        let first = vec![result("tcp", "relay", 10, "a"), result("tcp", "portal", 10, "b")];
        store.ingest_batch(site.scope, &batch(site.collector.id, first, 10)).await?;
        // "a" repeats with other timings; "b" changes to "c".
        let newest = vec![result("tcp", "relay", 23, "a"), result("tcp", "portal", 23, "c")];
        store.ingest_batch(site.scope, &batch(site.collector.id, newest.clone(), 23)).await?;
        let full = store.load_tenant_snapshot(site.scope, &[]).await?.expect("tenant").facts;

        let known = store.load_tenant_snapshot(site.scope, &["a", "b"]).await?.expect("tenant").facts;
        let by_subject = |facts: &[SnapshotFact], subject: &str| {
            facts.iter().find(|f| f.subject == subject).cloned().expect("fact")
        };
        let relay = by_subject(&known, "relay");
        let SnapshotPayload::Known(timings) = &relay.payload else {
            panic!("the held digest's payload was sent: {relay:?}")
        };
        assert_eq!(serde_json::Value::Object(timings.clone()), serde_json::from_str::<serde_json::Value>(&newest[0].timings)?);
        assert_eq!(
            (relay.digest.as_str(), relay.observed_at, relay.collector_id),
            ("a", at(23), site.collector.id),
            "everything but the payload is read"
        );
        // The held output with these timings laid over it is the newest result's.
        let mut held = json_of(&result("tcp", "relay", 10, "a"));
        wbd_wire::apply_timings(&mut held, timings);
        assert_eq!(SnapshotPayload::Read(held), by_subject(&full, "relay").payload);
        // A digest the reader does not hold is sent whole.
        assert_eq!(by_subject(&known, "portal"), by_subject(&full, "portal"));
        assert_eq!(by_subject(&full, "portal").payload, SnapshotPayload::Read(json_of(&newest[1])));
        Ok(())
    }
}

contract_test! {
    async fn a_findings_message_is_kept_for_rendering_in_other_languages(store) {
        let acme = crate::fixtures::org(store, "Acme MSP").await?;
        let contoso = crate::fixtures::tenant(store, acme, "Contoso").await?;
        let message = serde_json::json!({ "key": "endpoint-reachable.tcp", "args": { "port": 443 } });
        let mut opening = open("relay:443", Severity::Critical);
        if let FindingChange::Open { message: slot, .. } = &mut opening {
            *slot = Some(message.clone());
        }
        let changes = only_findings([opening]);
        let version = facts_version(store, contoso).await?;
        assert_eq!(
            store.apply_evaluation(contoso, None, version, &changes, at(1)).await?,
            ApplyOutcome::Applied
        );
        let findings =
            store.list_findings(acme, &FindingFilter { limit: 10, ..FindingFilter::default() }).await?;
        assert_eq!(findings.len(), 1);
        assert_eq!(findings[0].message.as_ref(), Some(&message));
        Ok(())
    }
}

contract_test! {
    async fn the_snapshot_says_at_which_facts_version_each_probe_last_reported(store) {
        let site = enrolled_site(store, "Acme MSP").await?;
        let push = |results: Vec<FactWrite>, at: i64| batch(site.collector.id, results, at);
        store.ingest_batch(site.scope, &push(vec![result("endpoint", "a:443", 1, "x")], 10)).await?;
        store
            .ingest_batch(
                site.scope,
                &push(vec![result("endpoint", "a:443", 2, "x"), result("idle_connection", "a:443", 2, "y")], 20),
            )
            .await?;
        store.ingest_batch(site.scope, &push(vec![result("endpoint", "b:443", 3, "z")], 30)).await?;
        // A heartbeat with no results moves the version but no probe.
        store.ingest_batch(site.scope, &push(vec![], 40)).await?;

        let snapshot = store.load_tenant_snapshot(site.scope, &[]).await?.expect("tenant");
        assert_eq!(snapshot.facts_version, 4);
        let versions: Vec<(&str, i64)> = snapshot.probe_versions.iter().map(|(p, v)| (p.as_str(), *v)).collect();
        assert_eq!(versions, [("endpoint", 3), ("idle_connection", 2)]);
        Ok(())
    }
}
