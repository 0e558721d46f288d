//! Batch ingest: idempotency, latest-fact rules, history runs, and what one push records.

use wbd_store::*;

use crate::fixtures::{at, batch, enrolled_site, facts_version, json_of, result};

contract_test! {
    async fn an_accepted_batch_records_facts_heartbeat_version_and_one_message(store) {
        let site = enrolled_site(store, "Acme MSP").await?;
        assert_eq!(facts_version(store, site.scope).await?, 0);
        let push = batch(
            site.collector.id,
            vec![result("tcp", "relay", 10, "a"), result("dns", "pdc", 11, "b")],
            20,
        );

        assert_eq!(store.ingest_batch(site.scope, &push).await?, IngestOutcome::Accepted { accepted: 2 });

        let facts = store.list_facts(site.scope).await?;
        assert_eq!(facts.len(), 2);
        let relay = facts.iter().find(|f| f.probe == "tcp").expect("tcp fact");
        assert_eq!(relay.collector_id, site.collector.id);
        assert_eq!(
            (relay.subject.as_str(), relay.observed_at, relay.digest.as_str()),
            ("relay", at(10), "a")
        );
        assert_eq!(relay.payload, json_of(&push.results[0]));
        assert_eq!((relay.first_seen_at, relay.repeat_count), (at(10), 1));

        let collector = store.get_collector(site.org, site.collector.id).await?.expect("collector");
        assert_eq!(collector.last_seen_at, Some(at(20)));
        assert_eq!(collector.silent_after, Some(at(620)));
        assert_eq!(collector.version.as_deref(), Some("1.2.3"));
        assert_eq!(collector.hostname.as_deref(), Some("aadc01.contoso.local"));
        assert_eq!(collector.os.as_deref(), Some("windows"));
        assert_eq!((collector.push_interval_secs, collector.spool_dropped), (120, 4));

        assert_eq!(facts_version(store, site.scope).await?, 1);
        let messages = store.claim_outbox(10, std::time::Duration::from_secs(30), at(21)).await?;
        assert_eq!(messages.len(), 1);
        let message = &messages[0];
        assert_eq!(message.scope(), site.scope);
        assert_eq!(
            message.kind,
            MessageKind::BatchIngested { collector_id: site.collector.id, batch_id: push.batch_id }
        );
        assert_eq!(message.traceparent, push.traceparent);
        assert_eq!(message.created_at, at(20));

        // An empty push is still a heartbeat and a new facts version.
        let empty = batch(site.collector.id, vec![], 40);
        assert_eq!(store.ingest_batch(site.scope, &empty).await?, IngestOutcome::Accepted { accepted: 0 });
        assert_eq!(facts_version(store, site.scope).await?, 2);
        assert_eq!(store.count_outbox().await?, 2);
        Ok(())
    }
}

contract_test! {
    async fn a_retried_batch_is_a_duplicate_and_changes_nothing(store) {
        let site = enrolled_site(store, "Acme MSP").await?;
        let push = batch(
            site.collector.id,
            vec![result("tcp", "relay", 10, "a"), result("tcp", "pdc", 10, "a")],
            20,
        );
        store.ingest_batch(site.scope, &push).await?;
        let facts_before = store.list_facts(site.scope).await?;
        let collector_before = store.get_collector(site.org, site.collector.id).await?;

        let mut retry = push.clone();
        retry.received_at = at(50);
        retry.silent_after = at(5000);
        assert_eq!(store.ingest_batch(site.scope, &retry).await?, IngestOutcome::Duplicate { accepted: 2 });

        assert_eq!(store.count_outbox().await?, 1, "no second outbox message");
        assert_eq!(facts_version(store, site.scope).await?, 1);
        assert_eq!(store.list_facts(site.scope).await?, facts_before);
        assert_eq!(store.get_collector(site.org, site.collector.id).await?, collector_before);
        Ok(())
    }
}

contract_test! {
    async fn the_same_batch_id_with_another_body_conflicts_and_changes_nothing(store) {
        let site = enrolled_site(store, "Acme MSP").await?;
        let push = batch(site.collector.id, vec![result("tcp", "relay", 10, "a")], 20);
        store.ingest_batch(site.scope, &push).await?;
        let facts_before = store.list_facts(site.scope).await?;
        let collector_before = store.get_collector(site.org, site.collector.id).await?;

        let mut forged = batch(site.collector.id, vec![result("tcp", "relay", 30, "z")], 40);
        forged.batch_id = push.batch_id;
        assert_eq!(store.ingest_batch(site.scope, &forged).await?, IngestOutcome::Conflict);

        assert_eq!(store.count_outbox().await?, 1);
        assert_eq!(facts_version(store, site.scope).await?, 1);
        assert_eq!(store.list_facts(site.scope).await?, facts_before);
        assert_eq!(store.get_collector(site.org, site.collector.id).await?, collector_before);
        Ok(())
    }
}

contract_test! {
    async fn an_older_observation_never_overwrites_a_newer_one(store) {
        let site = enrolled_site(store, "Acme MSP").await?;
        let newer = result("tcp", "relay", 100, "new");
        store.ingest_batch(site.scope, &batch(site.collector.id, vec![newer.clone()], 110)).await?;

        // A spooled result from before arrives late, next to a fresh result of another subject.
        let late = batch(
            site.collector.id,
            vec![result("tcp", "relay", 50, "old"), result("dns", "pdc", 105, "d")],
            120,
        );
        assert_eq!(store.ingest_batch(site.scope, &late).await?, IngestOutcome::Accepted { accepted: 2 });

        let facts = store.list_facts(site.scope).await?;
        let relay = facts.iter().find(|f| f.subject == "relay").expect("relay fact");
        assert_eq!(
            (relay.observed_at, relay.digest.as_str(), &relay.payload),
            (at(100), "new", &json_of(&newer))
        );
        assert!(facts.iter().any(|f| f.subject == "pdc"), "the fresh result of the same batch is stored");
        let runs = store.history(site.collector.id, "tcp", "relay").await?;
        assert_eq!(runs, vec![("new".to_owned(), at(100), at(100), 1)], "a late result leaves history alone");
        assert_eq!(facts_version(store, site.scope).await?, 2, "the push itself still counts");
        Ok(())
    }
}

contract_test! {
    async fn a_repeat_writes_its_timings_not_its_payload(store) {
        let site = enrolled_site(store, "Acme MSP").await?;
        let c = site.collector.id;
        let first = result("tcp", "relay", 10, "ok");
        store.ingest_batch(site.scope, &batch(c, vec![first], 11)).await?;

        // The same digest with a field outside the timings changed: a repeat by the digest's
        // word, so the stored payload stays and only the named timings move.
        let mut repeat = result("tcp", "relay", 20, "ok");
        let mut payload: serde_json::Value = serde_json::from_str(&repeat.payload)?;
        payload["note"] = "not written".into();
        repeat.payload = payload.to_string();
        store.ingest_batch(site.scope, &batch(c, vec![repeat], 21)).await?;

        let fact = store.list_facts(site.scope).await?.remove(0);
        assert_eq!(fact.payload, json_of(&result("tcp", "relay", 20, "ok")));
        assert_eq!((fact.observed_at, fact.repeat_count), (at(20), 2));

        // A change writes the new payload whole.
        let mut change = result("tcp", "relay", 30, "broken");
        let mut payload: serde_json::Value = serde_json::from_str(&change.payload)?;
        payload["note"] = "written".into();
        change.payload = payload.to_string();
        store.ingest_batch(site.scope, &batch(c, vec![change.clone()], 31)).await?;
        let fact = store.list_facts(site.scope).await?.remove(0);
        assert_eq!(fact.payload, json_of(&change));
        assert_eq!((fact.digest.as_str(), fact.first_seen_at, fact.repeat_count), ("broken", at(30), 1));
        Ok(())
    }
}

contract_test! {
    async fn history_keeps_one_row_per_run_of_an_unchanged_result(store) {
        let site = enrolled_site(store, "Acme MSP").await?;
        let c = site.collector.id;
        store.ingest_batch(site.scope, &batch(c, vec![result("tcp", "relay", 10, "ok")], 11)).await?;
        store.ingest_batch(site.scope, &batch(c, vec![result("tcp", "relay", 20, "ok")], 21)).await?;
        store.ingest_batch(site.scope, &batch(c, vec![result("tcp", "relay", 30, "ok")], 31)).await?;

        let fact = store.list_facts(site.scope).await?.remove(0);
        assert_eq!((fact.first_seen_at, fact.observed_at, fact.repeat_count), (at(10), at(30), 3));
        // The fact holds the newest payload even though the digest did not change.
        assert_eq!(fact.payload, json_of(&result("tcp", "relay", 30, "ok")));
        assert_eq!(store.history(c, "tcp", "relay").await?, vec![("ok".to_owned(), at(10), at(30), 3)]);
        // The repeats wrote the fact only: the open run's row is as its first batch wrote it.
        assert_eq!(store.history_rows(c, "tcp", "relay").await?, vec![("ok".to_owned(), at(10), at(10), 1)]);

        // It breaks, then recovers: two more runs. Within one batch the order is by observed_at.
        let mixed = vec![
            result("tcp", "relay", 60, "ok"),
            result("tcp", "relay", 40, "timeout"),
            result("tcp", "relay", 50, "timeout"),
        ];
        store.ingest_batch(site.scope, &batch(c, mixed, 61)).await?;
        // The same result again in another batch is not counted twice.
        store.ingest_batch(site.scope, &batch(c, vec![result("tcp", "relay", 60, "ok")], 62)).await?;

        assert_eq!(
            store.history(c, "tcp", "relay").await?,
            vec![
                ("ok".to_owned(), at(10), at(30), 3),
                ("timeout".to_owned(), at(40), at(50), 2),
                ("ok".to_owned(), at(60), at(60), 1),
            ]
        );
        // The ended runs hold their final figures themselves.
        assert_eq!(store.history_rows(c, "tcp", "relay").await?[..2], store.history(c, "tcp", "relay").await?[..2]);
        let fact = store.list_facts(site.scope).await?.remove(0);
        assert_eq!((fact.digest.as_str(), fact.first_seen_at, fact.repeat_count), ("ok", at(60), 1));
        Ok(())
    }
}

contract_test! {
    async fn a_large_batch_with_repeated_subjects_is_stored_in_one_push(store) {
        let site = enrolled_site(store, "Acme MSP").await?;
        // 200 subjects observed 5 times each during an outage, pushed together, shuffled.
        let mut results = Vec::new();
        for round in 0..5 {
            for subject in 0..200 {
                let digest = if subject % 2 == 0 { "steady".to_owned() } else { format!("v{round}") };
                results.push(result("tcp", &format!("host-{subject:03}"), 10 * (5 - round), &digest));
            }
        }
        let outcome = store.ingest_batch(site.scope, &batch(site.collector.id, results, 100)).await?;
        assert_eq!(outcome, IngestOutcome::Accepted { accepted: 1000 });

        let facts = store.list_facts(site.scope).await?;
        assert_eq!(facts.len(), 200);
        for fact in &facts {
            assert_eq!(fact.observed_at, at(50), "{}: the newest observation wins", fact.subject);
            let steady = fact.digest == "steady";
            assert_eq!(fact.repeat_count, if steady { 5 } else { 1 }, "{}", fact.subject);
            assert_eq!(fact.first_seen_at, if steady { at(10) } else { at(50) }, "{}", fact.subject);
        }
        assert_eq!(
            store.history(site.collector.id, "tcp", "host-000").await?,
            vec![("steady".to_owned(), at(10), at(50), 5)]
        );
        assert_eq!(store.history(site.collector.id, "tcp", "host-001").await?.len(), 5);
        Ok(())
    }
}

contract_test! {
    async fn a_push_wider_than_one_statement_stores_every_subject(store) {
        // More subjects than the SQLite backend writes in one statement (500 rows), so the
        // reads and writes of the plan run in several chunks.
        let site = enrolled_site(store, "Acme MSP").await?;
        let c = site.collector.id;
        let subjects: Vec<String> = (0..1201).map(|i| format!("host-{i:04}")).collect();
        let first = subjects.iter().map(|s| result("tcp", s, 10, "ok")).collect();
        store.ingest_batch(site.scope, &batch(c, first, 11)).await?;
        // Again: every third subject changed, the rest repeat (their runs are extended).
        let second = subjects
            .iter()
            .enumerate()
            .map(|(i, s)| result("tcp", s, 20, if i % 3 == 0 { "timeout" } else { "ok" }))
            .collect();
        assert_eq!(
            store.ingest_batch(site.scope, &batch(c, second, 21)).await?,
            IngestOutcome::Accepted { accepted: 1201 }
        );

        let facts = store.list_facts(site.scope).await?;
        assert_eq!(facts.len(), 1201);
        for (i, fact) in facts.iter().enumerate() {
            assert_eq!(fact.subject, subjects[i]);
            assert_eq!(fact.observed_at, at(20), "{}", fact.subject);
            let (digest, first_seen, repeats) = if i % 3 == 0 { ("timeout", at(20), 1) } else { ("ok", at(10), 2) };
            assert_eq!(
                (fact.digest.as_str(), fact.first_seen_at, fact.repeat_count),
                (digest, first_seen, repeats),
                "{}",
                fact.subject
            );
        }
        assert_eq!(store.history(c, "tcp", "host-1199").await?, vec![("ok".to_owned(), at(10), at(20), 2)]);
        assert_eq!(
            store.history(c, "tcp", "host-1200").await?,
            vec![("ok".to_owned(), at(10), at(10), 1), ("timeout".to_owned(), at(20), at(20), 1)]
        );
        Ok(())
    }
}

contract_test! {
    async fn a_revoked_collector_cannot_ingest(store) {
        let site = enrolled_site(store, "Acme MSP").await?;
        store.revoke_collector(site.org, site.collector.id, at(5)).await?;
        let push = batch(site.collector.id, vec![result("tcp", "relay", 10, "a")], 20);
        assert!(store.ingest_batch(site.scope, &push).await.is_err());
        assert!(store.list_facts(site.scope).await?.is_empty());
        assert_eq!(store.count_outbox().await?, 0);
        assert_eq!(facts_version(store, site.scope).await?, 0);
        Ok(())
    }
}
