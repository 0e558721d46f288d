//! Retention: the sweep removes what is older than its cutoff a batch at a time and keeps what is
//! recent or still pending (the latest fact of a subject, a command that waits); collector
//! commands run out, and a pending one can be cancelled once. Deliveries are swept in
//! `deliveries::retention`, beside their helpers.

use std::time::Duration;

use serde_json::json;
use uuid::Uuid;
use wbd_store::*;

use crate::fixtures::{Site, at, batch, enrolled_site, open_findings, org, result};
use crate::harness::TestStore;

const DAY: i64 = 86_400;

/// Sweeps `table` of everything before `cutoff_secs`, `limit` rows a batch, until a batch comes
/// back short; the rows each batch removed.
pub async fn sweep_all(
    store: &TestStore,
    table: RetentionTable,
    cutoff_secs: i64,
    limit: u32,
) -> anyhow::Result<Vec<u64>> {
    let mut batches = Vec::new();
    loop {
        let swept = store.sweep_expired(table, at(cutoff_secs), limit).await?;
        batches.push(swept.rows);
        if !swept.full {
            return Ok(batches);
        }
        anyhow::ensure!(batches.len() < 1_000, "the sweep of {table:?} does not end");
    }
}

async fn site_with_finding(store: &TestStore) -> anyhow::Result<(Site, Finding)> {
    let site = enrolled_site(store, "Acme MSP").await?;
    store
        .ingest_batch(site.scope, &batch(site.collector.id, vec![result("tcp", "relay", 10, "a")], 10))
        .await?;
    let finding = open_findings(store, site.scope, &[("relay:tcp", Severity::High)], at(20)).await?.remove(0);
    Ok((site, finding))
}

fn run_probes(probes: &[&str]) -> serde_json::Value {
    json!({ "command": "run_probes", "probes": probes, "reason": "re-test" })
}

/// Asks for a re-test at `secs` that runs out at `expires_secs`; the one command stored.
async fn retest(
    store: &TestStore,
    site: &Site,
    finding: &Finding,
    secs: i64,
    expires_secs: i64,
) -> anyhow::Result<CollectorCommandRecord> {
    let command = CommandWrite { collector_id: site.collector.id, action: run_probes(&["endpoint"]) };
    let mut stored = store
        .request_retest(
            site.scope,
            finding.id,
            std::slice::from_ref(&command),
            "api_key:k1",
            "asked",
            at(expires_secs),
            at(secs),
        )
        .await?
        .ok_or_else(|| anyhow::anyhow!("the finding is missing"))?;
    anyhow::ensure!(stored.len() == 1, "one command expected: {stored:?}");
    Ok(stored.remove(0))
}

async fn commands(store: &TestStore, site: &Site) -> anyhow::Result<Vec<CollectorCommandRecord>> {
    Ok(store.list_collector_commands(site.org, site.collector.id, None, 50).await?)
}

contract_test! {
    async fn a_command_not_delivered_in_time_expires_and_is_never_delivered(store) {
        let (site, finding) = site_with_finding(store).await?;
        let first = retest(store, &site, &finding, 30, 100).await?;
        assert_eq!((first.expires_at, first.state(at(99))), (at(100), CommandState::Pending));
        // Asked again while it waits: the same command, running out no sooner than the new ask.
        let again = retest(store, &site, &finding, 40, 160).await?;
        assert_eq!((again.id, again.expires_at), (first.id, at(160)));

        let late = store.deliver_collector_commands(site.scope, site.collector.id, Uuid::now_v7(), at(160)).await?;
        assert!(late.is_empty(), "an expired command was delivered: {late:?}");
        let listed = commands(store, &site).await?;
        assert_eq!(listed.iter().map(|c| (c.id, c.state(at(160)))).collect::<Vec<_>>(), [(first.id, CommandState::Expired)]);

        // An expired command does not stand in for a new request.
        let fresh = retest(store, &site, &finding, 200, 200 + DAY).await?;
        assert_ne!(fresh.id, first.id);
        let batch_id = Uuid::now_v7();
        let delivered = store.deliver_collector_commands(site.scope, site.collector.id, batch_id, at(210)).await?;
        assert_eq!(delivered.iter().map(|c| c.id).collect::<Vec<_>>(), [fresh.id]);
        // A retry of that batch after the command ran out still carries it: it was delivered.
        let retried = store.deliver_collector_commands(site.scope, site.collector.id, batch_id, at(300 + DAY)).await?;
        assert_eq!(retried, delivered);
        Ok(())
    }
}

contract_test! {
    async fn a_pending_command_is_cancelled_once_with_an_audit_entry(store) {
        let (site, finding) = site_with_finding(store).await?;
        let waiting = retest(store, &site, &finding, 30, 30 + DAY).await?;

        let intruder = org(store, "Intruder MSP").await?;
        assert_eq!(
            store.cancel_collector_command(intruder, site.collector.id, waiting.id, "api_key:x", at(40)).await?,
            CommandCancel::NotFound
        );
        assert!(store.list_collector_commands(intruder, site.collector.id, None, 50).await?.is_empty());
        assert_eq!(
            store.cancel_collector_command(site.org, site.collector.id, Uuid::now_v7(), "api_key:k1", at(40)).await?,
            CommandCancel::NotFound
        );

        let CommandCancel::Cancelled(cancelled) =
            store.cancel_collector_command(site.org, site.collector.id, waiting.id, "api_key:k2", at(50)).await?
        else {
            anyhow::bail!("the pending command was not cancelled");
        };
        assert_eq!(
            (cancelled.state(at(51)), cancelled.cancelled_at, cancelled.cancelled_by.as_deref()),
            (CommandState::Cancelled, Some(at(50)), Some("api_key:k2"))
        );
        assert!(matches!(
            store.cancel_collector_command(site.org, site.collector.id, waiting.id, "api_key:k2", at(60)).await?,
            CommandCancel::NotPending(c) if c.cancelled_at == Some(at(50))
        ));
        let pushing = store.find_collector_for_auth(site.collector.id, at(70)).await?.expect("collector");
        assert!(!pushing.commands_waiting, "a cancelled command waits for nobody");
        assert!(store.deliver_collector_commands(site.scope, site.collector.id, Uuid::now_v7(), at(70)).await?.is_empty());
        let audit = store.list_audit_log(site.org, None, 10).await?;
        assert_eq!(
            audit.iter().map(|e| (e.action.as_str(), e.actor.as_str(), e.target.clone())).collect::<Vec<_>>(),
            [("collector_command.cancel", "api_key:k2", waiting.id.to_string())]
        );
        assert_eq!(audit[0].after.as_ref().and_then(|a| a["state"].as_str()), Some("cancelled"));

        // A delivered command cannot be cancelled: the collector has it.
        let next = retest(store, &site, &finding, 80, 80 + DAY).await?;
        store.deliver_collector_commands(site.scope, site.collector.id, Uuid::now_v7(), at(90)).await?;
        assert!(matches!(
            store.cancel_collector_command(site.org, site.collector.id, next.id, "api_key:k2", at(95)).await?,
            CommandCancel::NotPending(c) if c.state(at(95)) == CommandState::Delivered
        ));
        // Newest first, paged by id.
        let listed = commands(store, &site).await?;
        assert_eq!(listed.iter().map(|c| c.id).collect::<Vec<_>>(), [next.id, waiting.id]);
        let page_2 = store.list_collector_commands(site.org, site.collector.id, Some(next.id), 50).await?;
        assert_eq!(page_2.iter().map(|c| c.id).collect::<Vec<_>>(), [waiting.id]);
        Ok(())
    }
}

contract_test! {
    async fn commands_are_swept_a_retention_period_after_they_ran_out(store) {
        let (site, finding) = site_with_finding(store).await?;
        let expired = retest(store, &site, &finding, 30, 100).await?;
        let delivered = retest(store, &site, &finding, 200, 300).await?;
        store.deliver_collector_commands(site.scope, site.collector.id, Uuid::now_v7(), at(250)).await?;
        let pending = retest(store, &site, &finding, 400, 400 + DAY).await?;

        // A cutoff between the first two running out.
        assert_eq!(sweep_all(store, RetentionTable::CollectorCommands, 200, 100).await?, [1]);
        let left: Vec<Uuid> = commands(store, &site).await?.iter().map(|c| c.id).collect();
        assert_eq!(left, [pending.id, delivered.id]);
        // The latest possible cutoff (now) never takes a command that still waits.
        assert_eq!(sweep_all(store, RetentionTable::CollectorCommands, 401, 100).await?, [1]);
        let left: Vec<Uuid> = commands(store, &site).await?.iter().map(|c| c.id).collect();
        assert_eq!(left, [pending.id]);
        assert_ne!(expired.id, pending.id);
        Ok(())
    }
}

contract_test! {
    async fn fact_history_goes_but_never_the_run_of_a_latest_fact(store) {
        let site = enrolled_site(store, "Acme MSP").await?;
        let c = site.collector.id;
        // The relay's result changes twice (three runs); the DNS result never changes and its only
        // run is as old as the relay's first.
        store.ingest_batch(site.scope, &batch(c, vec![result("tcp", "relay", 10, "a"), result("dns", "login", 10, "x")], 10)).await?;
        store.ingest_batch(site.scope, &batch(c, vec![result("tcp", "relay", 20, "a")], 20)).await?;
        store.ingest_batch(site.scope, &batch(c, vec![result("tcp", "relay", 100, "b")], 100)).await?;
        store.ingest_batch(site.scope, &batch(c, vec![result("tcp", "relay", 1_000, "c")], 1_000)).await?;
        let facts_before = store.list_facts(site.scope).await?;

        // Cutoff 50: only the first relay run ended before it.
        assert_eq!(sweep_all(store, RetentionTable::FactHistory, 50, 100).await?, [1]);
        let digests = |runs: Vec<(String, _, _, i64)>| runs.into_iter().map(|r| r.0).collect::<Vec<_>>();
        assert_eq!(digests(store.history(c, "tcp", "relay").await?), ["b", "c"]);
        // Cutoff far in the future: the current runs stay, however old.
        assert_eq!(sweep_all(store, RetentionTable::FactHistory, 10 * DAY, 100).await?, [1]);
        assert_eq!(digests(store.history(c, "tcp", "relay").await?), ["c"]);
        assert_eq!(digests(store.history(c, "dns", "login").await?), ["x"]);
        assert_eq!(store.list_facts(site.scope).await?, facts_before);
        // The history goes on from the current run.
        store.ingest_batch(site.scope, &batch(c, vec![result("tcp", "relay", 2_000, "c")], 2_000)).await?;
        let runs = store.history(c, "tcp", "relay").await?;
        assert_eq!(runs.iter().map(|r| (r.0.as_str(), r.3)).collect::<Vec<_>>(), [("c", 2)]);
        Ok(())
    }
}

contract_test! {
    async fn more_rows_than_a_batch_are_swept_in_full_batches(store) {
        let site = enrolled_site(store, "Acme MSP").await?;
        // 25 batch ids received at seconds 100..125, and one received later.
        let mut old = Vec::new();
        for n in 0..25 {
            let pushed = batch(site.collector.id, vec![result("tcp", "relay", 100 + n, "a")], 100 + n);
            store.ingest_batch(site.scope, &pushed).await?;
            old.push(pushed);
        }
        let recent = batch(site.collector.id, vec![result("tcp", "relay", 500, "a")], 500);
        store.ingest_batch(site.scope, &recent).await?;

        assert_eq!(sweep_all(store, RetentionTable::Batches, 400, 10).await?, [10, 10, 5]);
        // A retry of a swept batch is taken as new; one of the kept batch is still recognised.
        assert!(matches!(store.ingest_batch(site.scope, &old[0]).await?, IngestOutcome::Accepted { .. }));
        assert!(matches!(store.ingest_batch(site.scope, &recent).await?, IngestOutcome::Duplicate { .. }));
        Ok(())
    }
}

contract_test! {
    async fn processed_message_ids_audit_entries_and_dead_letters_go_after_their_cutoff(store) {
        let site = enrolled_site(store, "Acme MSP").await?;
        store.ingest_batch(site.scope, &batch(site.collector.id, vec![result("tcp", "relay", 10, "a")], 10)).await?;

        // Processed message ids: a message evaluated at 20, another at 200.
        let (early, late) = (Uuid::now_v7(), Uuid::now_v7());
        let version = store.load_tenant_snapshot(site.scope, &[]).await?.map(|s| s.facts_version).unwrap_or_default();
        let none = EvaluationChanges::default();
        assert_eq!(store.apply_evaluation(site.scope, Some(early), version, &none, at(20)).await?, ApplyOutcome::Applied);
        assert_eq!(store.apply_evaluation(site.scope, Some(late), version, &none, at(200)).await?, ApplyOutcome::Applied);
        assert_eq!(sweep_all(store, RetentionTable::ProcessedMessages, 100, 10).await?, [1]);
        assert_eq!(store.apply_evaluation(site.scope, Some(late), version, &none, at(300)).await?, ApplyOutcome::AlreadyProcessed);
        assert_eq!(store.apply_evaluation(site.scope, Some(early), version, &none, at(300)).await?, ApplyOutcome::Applied);

        // Audit entries written at 30 and 3000.
        for secs in [30, 3_000] {
            let document = json!({ "disabled": secs > 100 });
            store
                .write_rule_config(site.org, RuleScope::Org, RuleConfigKind::Setting, "relay-reachable", Some(&document), "api_key:k1", at(secs))
                .await?;
        }
        assert_eq!(sweep_all(store, RetentionTable::AuditLog, 1_000, 10).await?, [1]);
        let audit = store.list_audit_log(site.org, None, 10).await?;
        assert_eq!(audit.iter().map(|e| e.at).collect::<Vec<_>>(), [at(3_000)]);

        // Dead letters: one dead at 40, one at 4000 (and the outbox is left alone).
        let messages = store.claim_outbox(10, Duration::from_secs(30), at(35)).await?;
        anyhow::ensure!(messages.len() >= 2, "two outbox messages expected: {messages:?}");
        store.dead_letter_outbox(messages[0].id, "poison", at(40)).await?;
        store.dead_letter_outbox(messages[1].id, "poison", at(4_000)).await?;
        let outbox_left = store.count_outbox().await?;
        assert_eq!(sweep_all(store, RetentionTable::DeadLetters, 1_000, 10).await?, [1]);
        assert_eq!((store.count_dead_letters().await?, store.count_outbox().await?), (1, outbox_left));
        Ok(())
    }
}

contract_test! {
    async fn two_sweepers_at_once_share_the_work_and_leave_nothing_old(store) {
        let site = enrolled_site(store, "Acme MSP").await?;
        let mut old = Vec::new();
        for n in 0..40 {
            let pushed = batch(site.collector.id, vec![result("tcp", "relay", 100 + n, "a")], 100 + n);
            store.ingest_batch(site.scope, &pushed).await?;
            old.push(pushed);
        }
        // Two worker processes sweeping the same table at the same moment.
        let (a, b) = tokio::join!(
            sweep_all(store, RetentionTable::Batches, 400, 4),
            sweep_all(store, RetentionTable::Batches, 400, 4)
        );
        let removed: u64 = a?.iter().chain(b?.iter()).sum();
        assert_eq!(removed, 40, "every old row exactly once");
        for pushed in &old {
            assert!(matches!(store.ingest_batch(site.scope, pushed).await?, IngestOutcome::Accepted { .. }));
        }
        Ok(())
    }
}
