//! Integrations and their deliveries: settings, tenancy and audit, finding events turned into
//! deliveries, claims bounded by in-flight slots, the hourly budget and ticket order, attempts and
//! the tickets they keep, replays, and switching an integration off.

use std::collections::HashSet;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::json;
use uuid::Uuid;
use wbd_store::*;

use crate::fixtures::{at, open_findings, org, t0, tenant};
use crate::harness::{TestStore, each_backend};

const LEASE: Duration = Duration::from_secs(30);
const ACTOR: &str = "api_key:k1";

/// A webhook for every event, with room for many deliveries at once and no budget.
fn webhook(name: &str) -> IntegrationWrite {
    IntegrationWrite {
        name: name.into(),
        kind: "webhook".into(),
        url: Some("https://hooks.example.com/wbd".into()),
        config: json!({ "format": "cloudevents" }),
        secrets: vec![1, 2, 3],
        filter: IntegrationFilter::default(),
        routing: Routing::PerTenant,
        max_in_flight: 10,
        hourly_budget: None,
        enabled: true,
    }
}

fn jira(name: &str) -> IntegrationWrite {
    IntegrationWrite {
        kind: "jira".into(),
        url: Some("https://acme.atlassian.net".into()),
        config: json!({ "project": "OPS", "issue_type": "Incident" }),
        routing: Routing::Digest,
        ..webhook(name)
    }
}

async fn integration(
    store: &TestStore,
    org: OrgScope,
    write: IntegrationWrite,
) -> anyhow::Result<Integration> {
    Ok(store.create_integration(org, &write, ACTOR, t0()).await?)
}

async fn current(store: &TestStore, org: OrgScope, id: Uuid) -> anyhow::Result<Integration> {
    store.get_integration(org, id).await?.ok_or_else(|| anyhow::anyhow!("integration {id} missing"))
}

/// The integration an update stored; any other outcome fails the test.
fn stored(update: IntegrationUpdate) -> anyhow::Result<Integration> {
    match update {
        IntegrationUpdate::Updated(integration) => Ok(*integration),
        other => anyhow::bail!("the update was not stored: {other:?}"),
    }
}

/// An organisation-wide event (no tenant, no finding) for `integration` that happened at
/// `occurred_secs`.
fn event(integration: &Integration, ticket_key: Option<&str>, occurred_secs: i64) -> NewDelivery {
    NewDelivery {
        org_id: integration.org_id,
        integration_id: integration.id,
        event_id: Uuid::now_v7(),
        event_type: "finding.opened".into(),
        tenant_id: None,
        finding_id: None,
        ticket_key: ticket_key.map(Into::into),
        payload: json!({ "occurred": occurred_secs }),
        occurred_at: at(occurred_secs),
    }
}

/// An event of `finding` for `integration`, acting on the ticket `ticket_key`.
fn finding_event(
    integration: &Integration,
    finding: &Finding,
    ticket_key: &str,
    occurred_secs: i64,
) -> NewDelivery {
    NewDelivery {
        tenant_id: Some(finding.tenant_id),
        finding_id: Some(finding.id),
        payload: json!({ "title": finding.title }),
        ..event(integration, Some(ticket_key), occurred_secs)
    }
}

/// Claims at `secs`, the claimed deliveries in the order their events happened.
async fn claim(store: &TestStore, secs: i64) -> anyhow::Result<Vec<ClaimedDelivery>> {
    let mut claimed = store.claim_deliveries(100, LEASE, at(secs)).await?;
    claimed.sort_by_key(|c| (c.delivery.occurred_at, c.delivery.id));
    Ok(claimed)
}

/// When the claimed deliveries' events happened, oldest first.
fn occurred(claimed: &[ClaimedDelivery]) -> Vec<DateTime<Utc>> {
    claimed.iter().map(|c| c.delivery.occurred_at).collect()
}

fn succeeded(lease_id: Uuid, secs: i64) -> AttemptRecord {
    AttemptRecord {
        lease_id,
        at: at(secs),
        succeeded: true,
        status: Some(200),
        latency_ms: 42,
        error: None,
        response_excerpt: Some("ok".into()),
        exchanges: json!([{ "request": "POST /wbd", "status": 200, "latency_ms": 42 }]),
        retry_at: None,
        ticket: None,
        finding_open: None,
        throttle_until: None,
    }
}

/// A 503; tried again at `retry_secs`, or given up when `None`.
fn failed(lease_id: Uuid, secs: i64, retry_secs: Option<i64>) -> AttemptRecord {
    AttemptRecord {
        succeeded: false,
        status: Some(503),
        latency_ms: 1_500,
        error: Some("503 Service Unavailable".into()),
        response_excerpt: Some("upstream down".into()),
        exchanges: json!([{ "request": "POST /wbd", "status": 503, "latency_ms": 1500 }]),
        retry_at: retry_secs.map(at),
        ..succeeded(lease_id, secs)
    }
}

async fn complete(store: &TestStore, claimed: &ClaimedDelivery, record: AttemptRecord) -> anyhow::Result<()> {
    anyhow::ensure!(store.complete_attempt(&claimed.delivery, &record).await?, "lease lost: {claimed:?}");
    Ok(())
}

async fn delivery(
    store: &TestStore,
    org: OrgScope,
    id: Uuid,
) -> anyhow::Result<(Delivery, Vec<DeliveryAttempt>)> {
    store.get_delivery(org, id).await?.ok_or_else(|| anyhow::anyhow!("delivery {id} missing"))
}

fn every_delivery() -> DeliveryFilter {
    DeliveryFilter { limit: 100, ..DeliveryFilter::default() }
}

// ---- integrations ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_integration_round_trips_and_an_update_replaces_it_with_a_new_version() {
    each_backend(async |store| {
        let acme = org(store, "Acme MSP").await?;
        let contoso = tenant(store, acme, "Contoso").await?;
        let write = IntegrationWrite {
            filter: IntegrationFilter {
                tenant_ids: vec![contoso.tenant_id],
                severities: vec![Severity::High, Severity::Critical],
                rule_ids: vec!["relay".into()],
                event_types: vec!["finding.opened".into(), "finding.resolved".into()],
            },
            max_in_flight: 3,
            hourly_budget: Some(50),
            ..jira("Jira")
        };
        let created = store.create_integration(acme, &write, ACTOR, at(5)).await?;
        assert_eq!(
            (created.org_id, created.name.as_str(), created.kind.as_str(), created.url.as_deref()),
            (acme.org_id, "Jira", "jira", Some("https://acme.atlassian.net"))
        );
        assert_eq!((&created.config, created.secrets.as_slice()), (&write.config, &[1u8, 2, 3][..]));
        assert_eq!(
            (&created.filter, created.routing, created.max_in_flight, created.hourly_budget),
            (&write.filter, Routing::Digest, 3, Some(50))
        );
        assert_eq!(
            (created.enabled, created.disabled_reason.as_deref(), created.disabled_at),
            (true, None, None)
        );
        assert_eq!((created.failing_since, created.last_success_at), (None, None));
        assert_eq!((created.created_at, created.updated_at, created.version), (at(5), at(5), 1));
        assert_eq!(store.get_integration(acme, created.id).await?, Some(created.clone()));
        assert_eq!(store.list_integrations(acme).await?, vec![created.clone()]);
        assert_eq!(store.enabled_integrations(acme).await?, vec![created.clone()]);

        let changed = IntegrationWrite {
            name: "Jira (ops)".into(),
            url: None,
            filter: IntegrationFilter::default(),
            routing: Routing::PerTenant,
            hourly_budget: None,
            secrets: vec![4, 5, 6],
            enabled: false,
            ..write.clone()
        };
        let updated = stored(
            store.update_integration(acme, created.id, created.version, &changed, ACTOR, at(6)).await?,
        )?;
        assert_eq!(
            (updated.name.as_str(), updated.url.as_deref(), &updated.filter, updated.routing),
            ("Jira (ops)", None, &IntegrationFilter::default(), Routing::PerTenant)
        );
        assert_eq!(
            (updated.hourly_budget, updated.secrets.as_slice(), updated.enabled),
            (None, &[4u8, 5, 6][..], false)
        );
        assert_eq!((updated.created_at, updated.updated_at, updated.version), (at(5), at(6), 2));
        assert_eq!(store.get_integration(acme, created.id).await?, Some(updated.clone()));
        assert_eq!(store.list_integrations(acme).await?, vec![updated]);
        assert!(store.enabled_integrations(acme).await?.is_empty(), "switched off");
        assert_eq!(
            store.update_integration(acme, Uuid::now_v7(), 1, &changed, ACTOR, at(7)).await?,
            IntegrationUpdate::NotFound
        );
        Ok(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn switching_an_integration_on_again_forgets_why_it_was_off_and_its_failures() {
    each_backend(async |store| {
        let acme = org(store, "Acme MSP").await?;
        let hook = integration(store, acme, webhook("Ops hook")).await?;
        store.enqueue_deliveries(&[event(&hook, None, 10)], at(10)).await?;
        let claimed = claim(store, 10).await?.remove(0);
        complete(store, &claimed, failed(claimed.lease_id, 11, Some(100))).await?;
        assert_eq!(current(store, acme, hook.id).await?.failing_since, Some(at(11)));

        assert!(store.disable_integration(acme, hook.id, "410 Gone", &[], at(12)).await?);
        let off = current(store, acme, hook.id).await?;
        assert_eq!(
            (off.enabled, off.disabled_reason.as_deref(), off.disabled_at, off.failing_since, off.version),
            (false, Some("410 Gone"), Some(at(12)), Some(at(11)), 2)
        );

        // Changing settings while it stays off keeps the reason.
        let renamed = IntegrationWrite { enabled: false, ..webhook("Ops hook (new URL)") };
        let still_off =
            stored(store.update_integration(acme, hook.id, off.version, &renamed, ACTOR, at(13)).await?)?;
        assert_eq!(
            (
                still_off.enabled,
                still_off.disabled_reason.as_deref(),
                still_off.failing_since,
                still_off.version
            ),
            (false, Some("410 Gone"), Some(at(11)), 3)
        );

        let on = stored(
            store
                .update_integration(
                    acme,
                    hook.id,
                    still_off.version,
                    &webhook("Ops hook (new URL)"),
                    ACTOR,
                    at(14),
                )
                .await?,
        )?;
        assert_eq!(
            (on.enabled, on.disabled_reason.as_deref(), on.disabled_at, on.failing_since, on.version),
            (true, None, None, None, 4)
        );
        assert_eq!(on.updated_at, at(14));
        Ok(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_an_integration_takes_its_deliveries_with_it() {
    each_backend(async |store| {
        let acme = org(store, "Acme MSP").await?;
        let hook = integration(store, acme, webhook("Ops hook")).await?;
        let other = integration(store, acme, webhook("Other hook")).await?;
        let queued = store
            .enqueue_deliveries(&[event(&hook, Some("relay"), 10), event(&other, None, 10)], at(10))
            .await?;
        assert_eq!(queued, 2);
        let claimed = claim(store, 10).await?;
        let mine = claimed.iter().find(|c| c.integration.id == hook.id).expect("hook's delivery claimed");
        assert!(store.mark_ticket_creating(&mine.delivery, mine.lease_id, at(11)).await?);
        complete(store, mine, failed(mine.lease_id, 12, Some(100))).await?;

        assert!(store.delete_integration(acme, hook.id, ACTOR, at(20)).await?);
        assert_eq!(store.get_integration(acme, hook.id).await?, None);
        assert_eq!(store.list_integrations(acme).await?, vec![other.clone()]);
        assert_eq!(store.get_delivery(acme, mine.delivery.id).await?, None);
        assert!(store.list_deliveries(acme, hook.id, &every_delivery()).await?.is_empty());
        assert_eq!(store.list_deliveries(acme, other.id, &every_delivery()).await?.len(), 1);
        assert_eq!(store.count_pending_deliveries().await?, 1, "only the other integration's is left");
        assert!(!store.delete_integration(acme, hook.id, ACTOR, at(21)).await?, "already gone");
        Ok(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_organisation_can_neither_see_nor_change_an_integration() {
    each_backend(async |store| {
        let acme = org(store, "Acme MSP").await?;
        let globex = org(store, "Globex MSP").await?;
        let hook = integration(store, acme, webhook("Ops hook")).await?;
        store.enqueue_deliveries(&[event(&hook, None, 10)], at(10)).await?;
        let claimed = claim(store, 10).await?.remove(0);
        complete(store, &claimed, failed(claimed.lease_id, 11, None)).await?;
        let id = claimed.delivery.id;

        assert_eq!(store.get_integration(globex, hook.id).await?, None);
        assert!(store.list_integrations(globex).await?.is_empty());
        assert!(store.enabled_integrations(globex).await?.is_empty());
        assert_eq!(
            store
                .update_integration(globex, hook.id, hook.version, &webhook("Mine now"), ACTOR, at(20))
                .await?,
            IntegrationUpdate::NotFound
        );
        assert!(!store.delete_integration(globex, hook.id, ACTOR, at(21)).await?);
        assert!(store.list_deliveries(globex, hook.id, &every_delivery()).await?.is_empty());
        assert_eq!(store.get_delivery(globex, id).await?, None);
        assert_eq!(store.replay_deliveries(globex, hook.id, Some(id), None, ACTOR, at(22)).await?, 0);
        assert_eq!(store.replay_deliveries(globex, hook.id, None, Some(t0()), ACTOR, at(23)).await?, 0);
        assert!(!store.disable_integration(globex, hook.id, "not yours", &[], at(24)).await?);
        assert!(store.list_audit_log(globex, None, 50).await?.is_empty());

        // Acme's integration and delivery are as they were.
        let mine = current(store, acme, hook.id).await?;
        assert_eq!((mine.name.as_str(), mine.enabled, mine.version), ("Ops hook", true, 1));
        let (kept, _) = delivery(store, acme, id).await?;
        assert_eq!((kept.status, kept.attempts), (DeliveryStatus::Failed, 1));
        Ok(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn integration_changes_are_audited_without_their_secrets() {
    each_backend(async |store| {
        let acme = org(store, "Acme MSP").await?;
        let hook = store.create_integration(acme, &webhook("Ops hook"), ACTOR, at(1)).await?;
        let renamed = IntegrationWrite { secrets: vec![1, 2, 3, 4], ..webhook("Ops hook v2") };
        stored(store.update_integration(acme, hook.id, hook.version, &renamed, "api_key:k2", at(2)).await?)?;
        assert!(store.delete_integration(acme, hook.id, ACTOR, at(3)).await?);

        let log = store.list_audit_log(acme, None, 50).await?;
        let actions: Vec<_> = log.iter().map(|e| e.action.as_str()).collect();
        assert_eq!(actions, ["integration.delete", "integration.update", "integration.create"]);
        assert!(log.iter().all(|e| e.target == hook.id.to_string() && e.tenant_id.is_none()));
        assert_eq!(
            log.iter().map(|e| (e.actor.as_str(), e.at)).collect::<Vec<_>>(),
            [(ACTOR, at(3)), ("api_key:k2", at(2)), (ACTOR, at(1))]
        );
        let name = |v: &Option<serde_json::Value>| v.as_ref().map(|v| v["name"].clone());
        assert_eq!((name(&log[2].before), name(&log[2].after)), (None, Some(json!("Ops hook"))));
        assert_eq!(
            (name(&log[1].before), name(&log[1].after)),
            (Some(json!("Ops hook")), Some(json!("Ops hook v2")))
        );
        assert_eq!((name(&log[0].before), name(&log[0].after)), (Some(json!("Ops hook v2")), None));
        assert_eq!(
            log[2].after.as_ref().map(|a| a["url"].clone()),
            Some(json!("https://hooks.example.com/wbd"))
        );
        for entry in &log {
            let text = serde_json::to_string(&(&entry.before, &entry.after))?;
            assert!(!text.contains("secret"), "secrets in the audit log: {text}");
            assert!(!text.contains("[1,2,3"), "secret bytes in the audit log: {text}");
        }
        Ok(())
    })
    .await;
}

// ---- dispatch -------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finding_events_are_claimed_for_a_lease_and_stamped_once_dispatched() {
    each_backend(async |store| {
        let acme = org(store, "Acme MSP").await?;
        let contoso = tenant(store, acme, "Contoso").await?;
        let hook = integration(store, acme, webhook("Ops hook")).await?;
        let findings = open_findings(
            store,
            contoso,
            &[("relay:tcp", Severity::High), ("dns:a", Severity::Medium)],
            at(10),
        )
        .await?;

        let first = store.claim_undispatched_events(1, LEASE, at(20)).await?;
        let rest = store.claim_undispatched_events(10, LEASE, at(20)).await?;
        assert_eq!((first.len(), rest.len()), (1, 1), "a limit of one, then the other one");
        let claimed: Vec<_> = first.into_iter().chain(rest).collect();
        for e in &claimed {
            let finding = findings.iter().find(|f| f.id == e.finding.id).expect("one of the opened findings");
            assert_eq!(&e.finding, finding);
            assert_eq!(
                (e.org_id, e.tenant_id, e.tenant_name.as_str()),
                (acme.org_id, contoso.tenant_id, "Contoso")
            );
            assert_eq!(
                (e.event.finding_id, e.event.kind, e.event.at, e.event.actor.as_str()),
                (finding.id, FindingEventKind::Opened, at(10), "system")
            );
        }
        assert_eq!(claimed.iter().map(|e| e.finding.id).collect::<HashSet<_>>().len(), 2);

        // Held for the lease: another dispatcher gets nothing meanwhile; after it, they come back.
        assert!(store.claim_undispatched_events(10, LEASE, at(49)).await?.is_empty());
        let again = store.claim_undispatched_events(10, LEASE, at(50)).await?;
        let ids: HashSet<Uuid> = claimed.iter().map(|e| e.event.id).collect();
        assert_eq!(again.iter().map(|e| e.event.id).collect::<HashSet<_>>(), ids);

        let event_ids: Vec<Uuid> = again.iter().map(|e| e.event.id).collect();
        let deliveries: Vec<NewDelivery> = again
            .iter()
            .map(|e| NewDelivery {
                org_id: e.org_id,
                integration_id: hook.id,
                event_id: e.event.id,
                event_type: "finding.opened".into(),
                tenant_id: Some(e.tenant_id),
                finding_id: Some(e.finding.id),
                ticket_key: Some(e.finding.fingerprint.clone()),
                payload: json!({ "title": e.finding.title, "tenant": e.tenant_name }),
                occurred_at: e.event.at,
            })
            .collect();
        assert_eq!(store.record_dispatch(&event_ids, &deliveries, at(51)).await?, 2);
        assert!(
            store.claim_undispatched_events(10, LEASE, at(10_000)).await?.is_empty(),
            "stamped events are never claimed again"
        );

        let listed = store.list_deliveries(acme, hook.id, &every_delivery()).await?;
        assert_eq!(listed.iter().map(|d| d.event_id).collect::<HashSet<_>>(), ids);
        for d in &listed {
            let sent = deliveries.iter().find(|n| n.event_id == d.event_id).expect("dispatched");
            assert_eq!(
                (d.org_id, d.integration_id, d.event_type.as_str(), d.tenant_id, d.finding_id),
                (acme.org_id, hook.id, "finding.opened", sent.tenant_id, sent.finding_id)
            );
            assert_eq!((&d.ticket_key, &d.payload, d.occurred_at), (&sent.ticket_key, &sent.payload, at(10)));
            assert_eq!(
                (d.status, d.attempts, d.next_attempt_at, d.last_attempt_at, d.last_status),
                (DeliveryStatus::Pending, 0, Some(at(51)), None, None)
            );
            assert_eq!((d.created_at, d.updated_at), (at(51), at(51)));
        }
        assert_eq!(store.count_pending_deliveries().await?, 2);

        // The same (integration, event) again — a dispatcher whose stamp was lost — is ignored.
        assert_eq!(store.record_dispatch(&event_ids, &deliveries, at(52)).await?, 0);
        let fresh = event(&hook, None, 53);
        assert_eq!(store.enqueue_deliveries(&[deliveries[0].clone(), fresh], at(53)).await?, 1);
        assert_eq!(store.list_deliveries(acme, hook.id, &every_delivery()).await?.len(), 3);
        Ok(())
    })
    .await;
}

// ---- claiming -------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_due_deliveries_of_enabled_integrations_are_claimed() {
    each_backend(async |store| {
        let acme = org(store, "Acme MSP").await?;
        let on = integration(store, acme, webhook("On")).await?;
        let off = integration(store, acme, IntegrationWrite { enabled: false, ..webhook("Off") }).await?;
        assert_eq!(
            store.enqueue_deliveries(&[event(&on, None, 10), event(&off, None, 10)], at(100)).await?,
            2
        );

        assert!(claim(store, 99).await?.is_empty(), "not due before it was queued");
        let claimed = claim(store, 100).await?;
        assert_eq!(claimed.len(), 1, "the switched-off integration's delivery waits");
        let first = &claimed[0];
        assert_eq!((&first.integration, first.ticket.as_ref()), (&on, None));
        assert_eq!(
            (first.delivery.integration_id, first.delivery.status, first.delivery.attempts),
            (on.id, DeliveryStatus::Pending, 0)
        );

        // A retry waits for its time.
        complete(store, first, failed(first.lease_id, 101, Some(200))).await?;
        assert!(claim(store, 199).await?.is_empty());
        let retry = claim(store, 200).await?;
        assert_eq!(
            retry.iter().map(|c| (c.delivery.id, c.delivery.attempts)).collect::<Vec<_>>(),
            [(first.delivery.id, 1)]
        );

        // Switched on, its waiting delivery goes out.
        stored(store.update_integration(acme, off.id, off.version, &webhook("Off"), ACTOR, at(201)).await?)?;
        let resumed = claim(store, 201).await?;
        assert_eq!(resumed.iter().map(|c| c.integration.id).collect::<Vec<_>>(), [off.id]);
        Ok(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_integration_never_has_more_than_max_in_flight_deliveries_leased() {
    each_backend(async |store| {
        let acme = org(store, "Acme MSP").await?;
        let narrow =
            integration(store, acme, IntegrationWrite { max_in_flight: 2, ..webhook("Slow PSA") }).await?;
        let wide = integration(store, acme, webhook("Fast hook")).await?;
        let mut queued: Vec<_> = (0..5).map(|i| event(&narrow, None, 10 + i)).collect();
        queued.push(event(&wide, None, 10));
        assert_eq!(store.enqueue_deliveries(&queued, at(100)).await?, 6);

        let first = claim(store, 100).await?;
        let of = |claimed: &[ClaimedDelivery], i: &Integration| {
            claimed.iter().filter(|c| c.integration.id == i.id).cloned().collect::<Vec<_>>()
        };
        assert_eq!((of(&first, &narrow).len(), of(&first, &wide).len()), (2, 1));
        assert!(claim(store, 110).await?.is_empty(), "both slots are held");

        // A finished delivery frees its slot.
        let done = &of(&first, &narrow)[0];
        complete(store, done, succeeded(done.lease_id, 111)).await?;
        let second = claim(store, 112).await?;
        assert_eq!(of(&second, &narrow).len(), 1);
        assert!(claim(store, 113).await?.is_empty());

        // So does a lease that ran out (its worker is gone): at 130 the first lease expired, the
        // one taken at 112 still runs.
        let third = claim(store, 130).await?;
        assert_eq!(of(&third, &narrow).len(), 1, "one slot free");
        assert_eq!(
            of(&third, &narrow)[0].delivery.id,
            of(&first, &narrow)[1].delivery.id,
            "the expired one, being due first"
        );
        assert_eq!(of(&third, &wide).len(), 1, "the wide integration's expired lease too");
        Ok(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_hourly_budget_caps_the_deliveries_started_in_an_hour() {
    each_backend(async |store| {
        let acme = org(store, "Acme MSP").await?;
        let psa =
            integration(store, acme, IntegrationWrite { hourly_budget: Some(3), ..webhook("PSA") }).await?;
        let queued: Vec<_> = (0..5).map(|i| event(&psa, None, 10 + i)).collect();
        assert_eq!(store.enqueue_deliveries(&queued, at(100)).await?, 5);

        let first = claim(store, 100).await?;
        assert_eq!(occurred(&first), [at(10), at(11), at(12)]);
        for c in &first {
            complete(store, c, succeeded(c.lease_id, 101)).await?;
        }
        assert!(claim(store, 200).await?.is_empty(), "budget spent, though slots are free");
        assert!(claim(store, 100 + 3_599).await?.is_empty(), "still the same hour");

        let next_hour = claim(store, 100 + 3_600).await?;
        assert_eq!(occurred(&next_hour), [at(13), at(14)]);
        Ok(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_integration_at_its_limits_does_not_hold_up_the_others() {
    each_backend(async |store| {
        let acme = org(store, "Acme MSP").await?;
        let capped =
            integration(store, acme, IntegrationWrite { hourly_budget: Some(1), ..webhook("PSA") }).await?;
        let slow = integration(store, acme, IntegrationWrite { max_in_flight: 1, ..webhook("Slow") }).await?;
        let hook = integration(store, acme, webhook("Fast hook")).await?;
        // Long backlogs of the first two are due before the third's one delivery.
        let backlog: Vec<_> =
            (0..20).map(|i| event(&capped, None, i)).chain((0..20).map(|i| event(&slow, None, i))).collect();
        store.enqueue_deliveries(&backlog, at(100)).await?;
        store.enqueue_deliveries(&[event(&hook, None, 100)], at(101)).await?;

        // A worker with two free slots: once the budget is spent and the slot taken, the
        // backlogs must not crowd the third integration out of its claims.
        let mut claimed = Vec::new();
        for secs in [101, 102, 103] {
            claimed.extend(store.claim_deliveries(2, LEASE, at(secs)).await?);
        }
        let mut per_integration: Vec<_> = claimed.iter().map(|c| c.integration.name.as_str()).collect();
        per_integration.sort_unstable();
        assert_eq!(per_integration, ["Fast hook", "PSA", "Slow"]);
        assert!(store.claim_deliveries(2, LEASE, at(104)).await?.is_empty());
        Ok(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ticket_s_deliveries_go_one_at_a_time_in_event_order() {
    each_backend(async |store| {
        let acme = org(store, "Acme MSP").await?;
        let psa = integration(store, acme, jira("Jira")).await?;
        // Queued out of order, as events of different dispatcher runs may be.
        let queued = [
            event(&psa, Some("relay"), 30),
            event(&psa, Some("relay"), 10),
            event(&psa, Some("relay"), 20),
            event(&psa, Some("dns"), 15),
            event(&psa, None, 5),
        ];
        assert_eq!(store.enqueue_deliveries(&queued, at(100)).await?, 5);

        let first = claim(store, 100).await?;
        assert_eq!(occurred(&first), [at(5), at(10), at(15)], "per ticket only its oldest");
        // The oldest stays in the way while it waits for a retry.
        let relay = first.iter().find(|c| c.delivery.occurred_at == at(10)).expect("claimed");
        complete(store, relay, failed(relay.lease_id, 101, Some(300))).await?;
        for other in first.iter().filter(|c| c.delivery.id != relay.delivery.id) {
            complete(store, other, succeeded(other.lease_id, 101)).await?;
        }
        assert!(claim(store, 200).await?.is_empty());

        let retried = claim(store, 300).await?;
        assert_eq!(occurred(&retried), [at(10)]);
        complete(store, &retried[0], succeeded(retried[0].lease_id, 301)).await?;
        let second = claim(store, 302).await?;
        assert_eq!(occurred(&second), [at(20)]);
        complete(store, &second[0], succeeded(second[0].lease_id, 303)).await?;
        assert_eq!(occurred(&claim(store, 304).await?), [at(30)]);
        Ok(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_lease_hands_the_delivery_out_again_and_the_late_worker_writes_nothing() {
    each_backend(async |store| {
        let acme = org(store, "Acme MSP").await?;
        let psa = integration(store, acme, jira("Jira")).await?;
        store.enqueue_deliveries(&[event(&psa, Some("relay"), 10)], at(100)).await?;

        let first = claim(store, 100).await?.remove(0);
        assert!(claim(store, 129).await?.is_empty(), "held");
        let second = claim(store, 130).await?.remove(0);
        assert_eq!(second.delivery.id, first.delivery.id);
        assert_ne!(second.lease_id, first.lease_id, "a new lease");

        // The first worker comes back late: its word no longer counts.
        assert!(!store.mark_ticket_creating(&first.delivery, first.lease_id, at(131)).await?);
        let late = AttemptRecord {
            ticket: Some(TicketUpdate::Set {
                external_id: "OPS-1".into(),
                url: None,
                state: TicketState::Open,
            }),
            ..succeeded(first.lease_id, 131)
        };
        assert!(!store.complete_attempt(&first.delivery, &late).await?);
        let (d, attempts) = delivery(store, acme, first.delivery.id).await?;
        assert_eq!(
            (d.status, d.attempts, d.last_attempt_at, attempts.len()),
            (DeliveryStatus::Pending, 0, None, 0)
        );
        assert_eq!(current(store, acme, psa.id).await?.last_success_at, None);

        // The current holder's attempt counts, once.
        complete(store, &second, succeeded(second.lease_id, 132)).await?;
        assert!(!store.complete_attempt(&second.delivery, &succeeded(second.lease_id, 133)).await?);
        let (d, attempts) = delivery(store, acme, first.delivery.id).await?;
        assert_eq!((d.status, d.attempts, attempts.len()), (DeliveryStatus::Succeeded, 1, 1));
        assert!(!store.mark_ticket_creating(&second.delivery, second.lease_id, at(134)).await?);
        Ok(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_claimers_never_share_a_delivery_nor_exceed_the_slots() {
    each_backend(async |store| {
        let acme = org(store, "Acme MSP").await?;
        let narrow =
            integration(store, acme, IntegrationWrite { max_in_flight: 3, ..webhook("Slow") }).await?;
        let wide =
            integration(store, acme, IntegrationWrite { max_in_flight: 1_000, ..webhook("Fast") }).await?;
        let mut queued: Vec<_> = (0..10).map(|i| event(&narrow, None, i)).collect();
        queued.extend((0..30).map(|i| event(&wide, None, i)));
        store.enqueue_deliveries(&queued, at(100)).await?;

        let claimers: Vec<_> = (0..4)
            .map(|_| {
                let shared = store.store.clone();
                tokio::spawn(async move {
                    let mut mine = Vec::new();
                    loop {
                        let claimed = shared.claim_deliveries(3, LEASE, at(100)).await?;
                        if claimed.is_empty() {
                            return anyhow::Ok(mine);
                        }
                        mine.extend(claimed.into_iter().map(|c| (c.delivery.id, c.integration.id)));
                    }
                })
            })
            .collect();
        let mut seen = HashSet::new();
        let mut narrow_claimed = 0;
        for claimer in claimers {
            for (id, integration) in claimer.await?? {
                assert!(seen.insert(id), "delivery {id} was handed out twice");
                narrow_claimed += usize::from(integration == narrow.id);
            }
        }
        assert_eq!((seen.len(), narrow_claimed), (33, 3));
        Ok(())
    })
    .await;
}

// ---- attempts and tickets -------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_attempt_succeeds_schedules_a_retry_or_gives_up() {
    each_backend(async |store| {
        let acme = org(store, "Acme MSP").await?;
        let hook = integration(store, acme, webhook("Ops hook")).await?;
        let queued = [event(&hook, None, 10), event(&hook, None, 20), event(&hook, None, 30)];
        store.enqueue_deliveries(&queued, at(100)).await?;
        let claimed = claim(store, 100).await?;
        let [retried, exhausted, delivered] = &claimed[..] else { anyhow::bail!("claimed {claimed:?}") };

        complete(store, retried, failed(retried.lease_id, 101, Some(400))).await?;
        let (d, attempts) = delivery(store, acme, retried.delivery.id).await?;
        assert_eq!(
            (d.status, d.attempts, d.next_attempt_at, d.last_attempt_at, d.updated_at),
            (DeliveryStatus::Pending, 1, Some(at(400)), Some(at(101)), at(101))
        );
        assert_eq!((d.last_status, d.last_error.as_deref()), (Some(503), Some("503 Service Unavailable")));
        assert_eq!(attempts.len(), 1);
        let a = &attempts[0];
        assert_eq!(
            (a.delivery_id, a.attempt, a.at, a.succeeded, a.status, a.latency_ms),
            (d.id, 1, at(101), false, Some(503), 1_500)
        );
        assert_eq!(
            (a.error.as_deref(), a.response_excerpt.as_deref()),
            (Some("503 Service Unavailable"), Some("upstream down"))
        );
        assert_eq!(a.exchanges, json!([{ "request": "POST /wbd", "status": 503, "latency_ms": 1500 }]));
        let health = current(store, acme, hook.id).await?;
        assert_eq!((health.failing_since, health.last_success_at), (Some(at(101)), None));

        complete(store, exhausted, failed(exhausted.lease_id, 102, None)).await?;
        let (d, _) = delivery(store, acme, exhausted.delivery.id).await?;
        assert_eq!((d.status, d.attempts, d.next_attempt_at), (DeliveryStatus::Failed, 1, None));
        assert_eq!(current(store, acme, hook.id).await?.failing_since, Some(at(101)), "the streak's start");

        complete(store, delivered, succeeded(delivered.lease_id, 103)).await?;
        let (d, attempts) = delivery(store, acme, delivered.delivery.id).await?;
        assert_eq!(
            (d.status, d.attempts, d.next_attempt_at, d.last_status, d.last_error.as_deref()),
            (DeliveryStatus::Succeeded, 1, None, Some(200), None)
        );
        assert_eq!(
            attempts.iter().map(|a| (a.succeeded, a.status, a.exchanges.clone())).collect::<Vec<_>>(),
            [(true, Some(200), json!([{ "request": "POST /wbd", "status": 200, "latency_ms": 42 }]))]
        );
        let health = current(store, acme, hook.id).await?;
        assert_eq!((health.failing_since, health.last_success_at), (None, Some(at(103))));

        // The retry is the delivery's second attempt.
        let again = claim(store, 400).await?;
        assert_eq!(
            again.iter().map(|c| (c.delivery.id, c.delivery.attempts)).collect::<Vec<_>>(),
            [(retried.delivery.id, 1)]
        );
        complete(store, &again[0], succeeded(again[0].lease_id, 401)).await?;
        let (d, attempts) = delivery(store, acme, retried.delivery.id).await?;
        assert_eq!((d.status, d.attempts), (DeliveryStatus::Succeeded, 2));
        assert_eq!(
            attempts.iter().map(|a| (a.attempt, a.succeeded)).collect::<Vec<_>>(),
            [(1, false), (2, true)]
        );
        assert_eq!(store.count_pending_deliveries().await?, 0);
        Ok(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ticket_is_kept_per_problem_and_shown_on_its_findings() {
    each_backend(async |store| {
        let acme = org(store, "Acme MSP").await?;
        let contoso = tenant(store, acme, "Contoso").await?;
        let fabrikam = tenant(store, acme, "Fabrikam").await?;
        let c = open_findings(store, contoso, &[("relay:tcp", Severity::High)], at(10)).await?.remove(0);
        let f = open_findings(store, fabrikam, &[("relay:tcp", Severity::High)], at(10)).await?.remove(0);
        let psa = integration(store, acme, jira("Jira")).await?;
        const KEY: &str = "relay|relay:tcp";
        let url = Some("https://acme.atlassian.net/browse/OPS-7".to_owned());

        let queued = [finding_event(&psa, &c, KEY, 10), finding_event(&psa, &f, KEY, 11)];
        store.enqueue_deliveries(&queued, at(20)).await?;
        let first = claim(store, 20).await?;
        assert_eq!(first.len(), 1, "Fabrikam's event waits for the ticket's first");
        let first = &first[0];
        assert_eq!((first.delivery.finding_id, first.ticket.as_ref()), (Some(c.id), None));

        // The create is sent, its answer lost: the retry sees the ticket is being created.
        assert!(store.mark_ticket_creating(&first.delivery, first.lease_id, at(21)).await?);
        complete(store, first, failed(first.lease_id, 22, Some(50))).await?;
        let retry = claim(store, 50).await?.remove(0);
        let creating = retry.ticket.clone().expect("ticket being created");
        assert_eq!(
            (creating.integration_id, creating.ticket_key.as_str(), creating.state),
            (psa.id, KEY, TicketState::Creating)
        );
        assert_eq!((creating.external_id, creating.url, creating.created_at), (None, None, at(21)));

        // It finds (or creates) the ticket and links the finding.
        let created = AttemptRecord {
            ticket: Some(TicketUpdate::Set {
                external_id: "OPS-7".into(),
                url: url.clone(),
                state: TicketState::Open,
            }),
            finding_open: Some(true),
            ..succeeded(retry.lease_id, 51)
        };
        complete(store, &retry, created).await?;
        let shown = FindingTicket {
            finding_id: c.id,
            integration_id: psa.id,
            integration_name: "Jira".into(),
            kind: "jira".into(),
            external_id: Some("OPS-7".into()),
            url: url.clone(),
            state: TicketState::Open,
        };
        assert_eq!(store.list_finding_tickets(acme, &[c.id, f.id]).await?, std::slice::from_ref(&shown));

        // Fabrikam's finding joins the same ticket.
        let joined = claim(store, 52).await?.remove(0);
        assert_eq!(joined.delivery.finding_id, Some(f.id));
        let ticket = joined.ticket.clone().expect("the ticket");
        assert_eq!(
            (ticket.external_id.as_deref(), ticket.url.clone(), ticket.state, ticket.id),
            (Some("OPS-7"), url.clone(), TicketState::Open, creating.id)
        );
        let noted = AttemptRecord {
            ticket: Some(TicketUpdate::State(TicketState::Open)),
            finding_open: Some(true),
            ..succeeded(joined.lease_id, 53)
        };
        complete(store, &joined, noted).await?;
        assert_eq!(
            store.ticket_open_findings(psa.id, KEY).await?,
            [
                (c.id, contoso.tenant_id, "Contoso".to_owned()),
                (f.id, fabrikam.tenant_id, "Fabrikam".to_owned())
            ]
        );
        assert_eq!(
            store.list_finding_tickets(acme, &[c.id, f.id]).await?,
            [shown.clone(), FindingTicket { finding_id: f.id, ..shown.clone() }]
        );

        // Both resolve: the ticket closes when its last finding does, keeping its id and link.
        let resolved = |finding: &Finding, secs| NewDelivery {
            event_type: "finding.resolved".into(),
            ..finding_event(&psa, finding, KEY, secs)
        };
        store.enqueue_deliveries(&[resolved(&c, 60), resolved(&f, 61)], at(62)).await?;
        let first_resolved = claim(store, 62).await?.remove(0);
        assert_eq!(first_resolved.delivery.finding_id, Some(c.id));
        let still_open = AttemptRecord {
            ticket: Some(TicketUpdate::State(TicketState::Open)),
            finding_open: Some(false),
            ..succeeded(first_resolved.lease_id, 63)
        };
        complete(store, &first_resolved, still_open).await?;
        assert_eq!(
            store.ticket_open_findings(psa.id, KEY).await?,
            [(f.id, fabrikam.tenant_id, "Fabrikam".to_owned())]
        );
        let last_resolved = claim(store, 64).await?.remove(0);
        let closed = AttemptRecord {
            ticket: Some(TicketUpdate::State(TicketState::Closed)),
            finding_open: Some(false),
            ..succeeded(last_resolved.lease_id, 65)
        };
        complete(store, &last_resolved, closed).await?;
        assert!(store.ticket_open_findings(psa.id, KEY).await?.is_empty());
        assert_eq!(
            store.list_finding_tickets(acme, &[c.id]).await?,
            [FindingTicket { state: TicketState::Closed, ..shown.clone() }]
        );

        let globex = org(store, "Globex MSP").await?;
        assert!(store.list_finding_tickets(globex, &[c.id, f.id]).await?.is_empty());
        assert!(store.list_finding_tickets(acme, &[]).await?.is_empty());
        Ok(())
    })
    .await;
}

// ---- replay ---------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_deliveries_are_replayed_one_or_every_one_since_a_time() {
    each_backend(async |store| {
        let acme = org(store, "Acme MSP").await?;
        let hook = integration(store, acme, webhook("Ops hook")).await?;
        let queued =
            [event(&hook, None, 10), event(&hook, None, 20), event(&hook, None, 30), event(&hook, None, 40)];
        store.enqueue_deliveries(&queued, at(100)).await?;
        let claimed = claim(store, 100).await?;
        let [d10, d20, d30, d40] = &claimed[..] else { anyhow::bail!("claimed {claimed:?}") };
        for gave_up in [d10, d20, d30] {
            complete(store, gave_up, failed(gave_up.lease_id, 101, None)).await?;
        }
        complete(store, d40, failed(d40.lease_id, 101, Some(5_000))).await?;

        // One failed delivery starts over, keeping its history.
        assert_eq!(
            store.replay_deliveries(acme, hook.id, Some(d10.delivery.id), None, ACTOR, at(200)).await?,
            1
        );
        let (d, attempts) = delivery(store, acme, d10.delivery.id).await?;
        assert_eq!(
            (d.status, d.attempts, d.next_attempt_at, attempts.len()),
            (DeliveryStatus::Pending, 0, Some(at(200)), 1)
        );
        // A pending one is not replayed (it is on its way anyway).
        for pending in [d10, d40] {
            let replayed = store
                .replay_deliveries(acme, hook.id, Some(pending.delivery.id), None, ACTOR, at(201))
                .await?;
            assert_eq!(replayed, 0);
        }
        assert_eq!(delivery(store, acme, d40.delivery.id).await?.0.next_attempt_at, Some(at(5_000)));

        // Every failed one of events since 25: only the event at 30.
        assert_eq!(store.replay_deliveries(acme, hook.id, None, Some(at(25)), ACTOR, at(202)).await?, 1);
        let status =
            async |d: &ClaimedDelivery| anyhow::Ok(delivery(store, acme, d.delivery.id).await?.0.status);
        assert_eq!(
            (status(d20).await?, status(d30).await?),
            (DeliveryStatus::Failed, DeliveryStatus::Pending)
        );
        // And since the beginning, the rest.
        assert_eq!(store.replay_deliveries(acme, hook.id, None, None, ACTOR, at(203)).await?, 1);
        assert_eq!(status(d20).await?, DeliveryStatus::Pending);
        assert_eq!(store.replay_deliveries(acme, hook.id, None, None, ACTOR, at(204)).await?, 0);
        assert_eq!(occurred(&claim(store, 300).await?), [at(10), at(20), at(30)], "due again");

        let log = store.list_audit_log(acme, None, 50).await?;
        let replays: Vec<_> = log.iter().filter(|e| e.action == "delivery.replay").collect();
        assert_eq!(
            replays.iter().map(|e| (e.target.clone(), e.actor.as_str(), e.at)).collect::<Vec<_>>(),
            [
                (hook.id.to_string(), ACTOR, at(203)),
                (hook.id.to_string(), ACTOR, at(202)),
                (d10.delivery.id.to_string(), ACTOR, at(200)),
            ],
            "one entry per replay that did something"
        );
        assert!(replays.iter().all(|e| e.after.as_ref().is_some_and(|a| a["replayed"] == json!(1))));
        Ok(())
    })
    .await;
}

// ---- switching off --------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn switching_an_integration_off_raises_a_finding_that_its_next_success_resolves() {
    each_backend(async |store| {
        let acme = org(store, "Acme MSP").await?;
        let contoso = tenant(store, acme, "Contoso").await?;
        let fabrikam = tenant(store, acme, "Fabrikam").await?;
        let northwind = tenant(store, acme, "Northwind").await?;
        let mut problems = Vec::new();
        for scope in [contoso, fabrikam, northwind] {
            problems.extend(open_findings(store, scope, &[("relay:tcp", Severity::High)], at(10)).await?);
        }
        let psa = integration(store, acme, jira("Jira")).await?;
        let chat =
            integration(store, acme, IntegrationWrite { kind: "teams".into(), ..webhook("Teams") }).await?;
        // The findings' own events are dispatched already.
        let opened = store.claim_undispatched_events(100, LEASE, at(15)).await?;
        let opened_ids: Vec<_> = opened.iter().map(|e| e.event.id).collect();
        store.record_dispatch(&opened_ids, &[], at(15)).await?;

        // Contoso's delivery waits for a retry, Fabrikam's failed, Northwind's went out.
        let queued: Vec<_> = problems
            .iter()
            .enumerate()
            .map(|(i, p)| finding_event(&psa, p, &p.id.to_string(), 10 + i as i64))
            .collect();
        store.enqueue_deliveries(&queued, at(20)).await?;
        let [c, f, n] = &claim(store, 20).await?[..] else { anyhow::bail!("expected three claims") };
        complete(store, c, failed(c.lease_id, 21, Some(1_000))).await?;
        complete(store, f, failed(f.lease_id, 21, None)).await?;
        complete(store, n, succeeded(n.lease_id, 21)).await?;

        let notice = NewDelivery { event_type: "integration.disabled".into(), ..event(&chat, None, 30) };
        let reason = "410 Gone from https://acme.atlassian.net";
        assert!(
            store.disable_integration(acme, psa.id, reason, std::slice::from_ref(&notice), at(30)).await?
        );
        assert!(!store.disable_integration(acme, psa.id, "again", &[event(&chat, None, 31)], at(31)).await?);
        let off = current(store, acme, psa.id).await?;
        assert_eq!(
            (off.enabled, off.disabled_reason.as_deref(), off.disabled_at, off.version),
            (false, Some(reason), Some(at(30)), 2)
        );
        // The other integration hears about it, once.
        let notices = store.list_deliveries(acme, chat.id, &every_delivery()).await?;
        assert_eq!(
            notices.iter().map(|d| (d.event_id, d.event_type.as_str())).collect::<Vec<_>>(),
            [(notice.event_id, "integration.disabled")]
        );
        let log = store.list_audit_log(acme, None, 50).await?;
        let disabled: Vec<_> = log.iter().filter(|e| e.action == "integration.disable").collect();
        assert_eq!(disabled.len(), 1);
        assert_eq!(
            (disabled[0].actor.as_str(), disabled[0].target.clone(), disabled[0].at),
            ("system", psa.id.to_string(), at(30))
        );

        // Each tenant whose events wait for it (Contoso) or failed (Fabrikam) has a finding.
        let raised_filter = FindingFilter {
            rule_id: Some(INTEGRATION_DISABLED_RULE.into()),
            limit: 100,
            ..FindingFilter::default()
        };
        let raised = store.list_findings(acme, &raised_filter).await?;
        assert_eq!(
            raised.iter().map(|r| r.tenant_id).collect::<HashSet<_>>(),
            HashSet::from([contoso.tenant_id, fabrikam.tenant_id])
        );
        for r in &raised {
            assert_eq!(
                (r.status, r.severity, r.opened_at, r.subject.clone()),
                (FindingStatus::Open, Severity::High, at(30), format!("integration:{}", psa.id))
            );
            assert!(r.title.contains("Jira") && r.summary.contains(reason), "{r:?}");
        }
        // With an event each, so they are announced like any finding.
        let announced = store.claim_undispatched_events(100, LEASE, at(31)).await?;
        assert_eq!(
            announced.iter().map(|e| (e.tenant_name.clone(), e.event.kind)).collect::<HashSet<_>>(),
            HashSet::from([
                ("Contoso".to_owned(), FindingEventKind::Opened),
                ("Fabrikam".to_owned(), FindingEventKind::Opened)
            ])
        );
        assert!(announced.iter().all(|e| e.finding.rule_id == INTEGRATION_DISABLED_RULE));
        let announced_ids: Vec<_> = announced.iter().map(|e| e.event.id).collect();
        store.record_dispatch(&announced_ids, &[], at(31)).await?;

        // Another integration's success does not resolve them, nor does switching it on alone.
        let told = claim(store, 32).await?;
        assert_eq!(told.iter().map(|t| t.integration.id).collect::<Vec<_>>(), [chat.id]);
        complete(store, &told[0], succeeded(told[0].lease_id, 33)).await?;
        let version = current(store, acme, psa.id).await?.version;
        stored(store.update_integration(acme, psa.id, version, &jira("Jira"), ACTOR, at(999)).await?)?;
        let still_raised = store.list_findings(acme, &raised_filter).await?;
        assert!(still_raised.iter().all(|f| f.status == FindingStatus::Open));

        // Its next delivery that goes through does.
        let resumed = claim(store, 1_000).await?;
        assert_eq!(resumed.iter().map(|r| r.delivery.id).collect::<Vec<_>>(), [c.delivery.id]);
        complete(store, &resumed[0], succeeded(resumed[0].lease_id, 1_001)).await?;
        let after = store.list_findings(acme, &raised_filter).await?;
        assert_eq!(after.len(), 2);
        assert!(
            after.iter().all(|f| f.status == FindingStatus::Resolved && f.resolved_at == Some(at(1_001)))
        );
        let resolved = store.claim_undispatched_events(100, LEASE, at(1_002)).await?;
        assert_eq!(
            resolved.iter().map(|e| e.event.kind).collect::<Vec<_>>(),
            [FindingEventKind::Resolved, FindingEventKind::Resolved]
        );
        let resolved_ids: Vec<_> = resolved.iter().map(|e| e.event.id).collect();
        store.record_dispatch(&resolved_ids, &[], at(1_002)).await?;

        // Switched off again, only Fabrikam (its delivery still failed) has the finding reopened.
        assert!(store.disable_integration(acme, psa.id, reason, &[], at(2_000)).await?);
        let again = store.list_findings(acme, &raised_filter).await?;
        let states: HashSet<_> = again.iter().map(|r| (r.tenant_id, r.status, r.reopen_count)).collect();
        assert_eq!(
            states,
            HashSet::from([
                (contoso.tenant_id, FindingStatus::Resolved, 0),
                (fabrikam.tenant_id, FindingStatus::Open, 1)
            ])
        );
        let reopened = store.claim_undispatched_events(100, LEASE, at(2_001)).await?;
        assert_eq!(
            reopened.iter().map(|e| (e.tenant_id, e.event.kind)).collect::<Vec<_>>(),
            [(fabrikam.tenant_id, FindingEventKind::Reopened)]
        );
        Ok(())
    })
    .await;
}

/// A 429 that pauses the whole integration until `until_secs`.
fn throttled(lease_id: Uuid, secs: i64, retry_secs: i64, until_secs: i64) -> AttemptRecord {
    AttemptRecord {
        status: Some(429),
        error: Some("HTTP 429".into()),
        throttle_until: Some(at(until_secs)),
        ..failed(lease_id, secs, Some(retry_secs))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_throttled_integration_gets_nothing_until_its_pause_ends_and_others_go_on() {
    each_backend(async |store| {
        let acme = org(store, "Acme MSP").await?;
        let psa =
            integration(store, acme, IntegrationWrite { max_in_flight: 2, ..webhook("Autotask") }).await?;
        let other = integration(store, acme, webhook("Ops hook")).await?;
        let queued = [event(&psa, None, 10), event(&psa, None, 11), event(&psa, None, 12)];
        store.enqueue_deliveries(&queued, at(100)).await?;

        // Two in flight at once both hear a 429: the longer pause holds, whatever the order.
        let both = claim(store, 100).await?;
        let [a, b] = &both[..] else { anyhow::bail!("claimed {both:?}") };
        complete(store, a, throttled(a.lease_id, 101, 105, 160)).await?;
        complete(store, b, throttled(b.lease_id, 102, 105, 130)).await?;
        let paused = current(store, acme, psa.id).await?;
        assert_eq!((paused.throttled_until, paused.throttle_streak), (Some(at(160)), 2));

        // Nothing of it is claimed while it is paused, not even the delivery that never heard
        // the 429; another integration's deliveries are.
        store.enqueue_deliveries(&[event(&other, None, 20)], at(110)).await?;
        let meanwhile = claim(store, 110).await?;
        assert_eq!(meanwhile.iter().map(|c| c.delivery.integration_id).collect::<Vec<_>>(), [other.id]);
        complete(store, &meanwhile[0], succeeded(meanwhile[0].lease_id, 111)).await?;
        assert!(claim(store, 159).await?.is_empty());

        // Once it is over, everything due goes; an answer that is not a throttle ends the streak.
        let resumed = claim(store, 160).await?;
        // The one due longest (since 100) first, then one of the two retried at 105.
        assert_eq!(resumed.len(), 2, "max_in_flight at a time");
        assert!(occurred(&resumed).contains(&at(12)), "{:?}", occurred(&resumed));
        for c in &resumed {
            complete(store, c, succeeded(c.lease_id, 161)).await?;
        }
        let calm = current(store, acme, psa.id).await?;
        assert_eq!((calm.throttled_until, calm.throttle_streak), (Some(at(160)), 0));
        assert_eq!(claim(store, 162).await?.len(), 1, "the last one follows");
        Ok(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replayed_delivery_waits_while_a_later_one_of_its_ticket_is_in_flight() {
    each_backend(async |store| {
        let acme = org(store, "Acme MSP").await?;
        let psa = integration(store, acme, jira("Jira")).await?;
        store.enqueue_deliveries(&[event(&psa, Some("relay"), 10)], at(100)).await?;
        let opened = claim(store, 100).await?.remove(0);
        complete(store, &opened, failed(opened.lease_id, 101, None)).await?;
        store.enqueue_deliveries(&[event(&psa, Some("relay"), 20)], at(102)).await?;
        let resolved = claim(store, 102).await?.remove(0);
        assert_eq!(resolved.delivery.occurred_at, at(20));

        // The older event is replayed while the newer one is being sent: it waits.
        assert_eq!(
            store.replay_deliveries(acme, psa.id, Some(opened.delivery.id), None, ACTOR, at(103)).await?,
            1
        );
        assert!(claim(store, 104).await?.is_empty(), "never two of one ticket at once");
        complete(store, &resolved, succeeded(resolved.lease_id, 105)).await?;
        let replayed = claim(store, 106).await?;
        assert_eq!(occurred(&replayed), [at(10)]);
        Ok(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ticket_deleted_in_the_destination_is_created_anew_with_a_fresh_creating_time() {
    each_backend(async |store| {
        let acme = org(store, "Acme MSP").await?;
        let psa = integration(store, acme, jira("Jira")).await?;
        let queued = [event(&psa, Some("relay"), 10), event(&psa, Some("relay"), 20)];
        store.enqueue_deliveries(&queued, at(100)).await?;

        let first = claim(store, 100).await?.remove(0);
        assert!(store.mark_ticket_creating(&first.delivery, first.lease_id, at(101)).await?);
        // Marking again (a retry after a lost answer) keeps the first create's time.
        assert!(store.mark_ticket_creating(&first.delivery, first.lease_id, at(102)).await?);
        let created = AttemptRecord {
            ticket: Some(TicketUpdate::Set {
                external_id: "OPS-1".into(),
                url: None,
                state: TicketState::Open,
            }),
            ..succeeded(first.lease_id, 103)
        };
        complete(store, &first, created).await?;

        // The next event finds OPS-1 deleted and creates a replacement: the ticket is being
        // created again, since now, and has forgotten OPS-1.
        let second = claim(store, 104).await?.remove(0);
        let known = second.ticket.clone().expect("ticket");
        assert_eq!((known.external_id.as_deref(), known.state), (Some("OPS-1"), TicketState::Open));
        assert!(store.mark_ticket_creating(&second.delivery, second.lease_id, at(105)).await?);
        complete(store, &second, failed(second.lease_id, 106, Some(110))).await?;
        let retry = claim(store, 110).await?.remove(0);
        let creating = retry.ticket.expect("ticket");
        assert_eq!(
            (creating.external_id, creating.state, creating.updated_at),
            (None, TicketState::Creating, at(105))
        );
        Ok(())
    })
    .await;
}

// ---- writes made from an older read, replays of a switched-off integration, tickets of a page --

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_update_made_from_an_older_version_changes_nothing() {
    each_backend(async |store| {
        let acme = org(store, "Acme MSP").await?;
        let hook = integration(store, acme, webhook("Ops hook")).await?;
        assert_eq!(hook.version, 1);

        // The engine switches it off after an API request read it: the request's write, made
        // from version 1, would switch it back on and forget why it is off.
        assert!(store.disable_integration(acme, hook.id, "410 Gone", &[], at(10)).await?);
        let off = current(store, acme, hook.id).await?;
        assert_eq!(off.version, 2, "switching off is a new version");
        let renamed = webhook("Ops hook (renamed)");
        assert_eq!(
            store.update_integration(acme, hook.id, hook.version, &renamed, ACTOR, at(11)).await?,
            IntegrationUpdate::Changed { current_version: 2 }
        );
        assert_eq!(current(store, acme, hook.id).await?, off, "untouched");
        let log = store.list_audit_log(acme, None, 50).await?;
        assert!(log.iter().all(|e| e.action != "integration.update"), "nothing audited: {log:?}");

        // Made from what is there now, it is stored; a second write from the same version is not
        // (two rotations at once: the second would drop the first one's new secret).
        let keep_off = IntegrationWrite { enabled: false, secrets: vec![7], ..renamed.clone() };
        let first = stored(store.update_integration(acme, hook.id, 2, &keep_off, ACTOR, at(12)).await?)?;
        assert_eq!(
            (first.version, first.enabled, first.disabled_reason.as_deref()),
            (3, false, Some("410 Gone"))
        );
        let second = IntegrationWrite { secrets: vec![8], ..keep_off.clone() };
        assert_eq!(
            store.update_integration(acme, hook.id, 2, &second, ACTOR, at(13)).await?,
            IntegrationUpdate::Changed { current_version: 3 }
        );
        assert_eq!(current(store, acme, hook.id).await?.secrets, [7]);
        Ok(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_switched_off_or_deleted_integration_replays_nothing() {
    each_backend(async |store| {
        let acme = org(store, "Acme MSP").await?;
        let hook = integration(store, acme, webhook("Ops hook")).await?;
        store.enqueue_deliveries(&[event(&hook, None, 10), event(&hook, None, 20)], at(100)).await?;
        for c in claim(store, 100).await? {
            complete(store, &c, failed(c.lease_id, 101, None)).await?;
        }
        let ids: Vec<Uuid> =
            store.list_deliveries(acme, hook.id, &every_delivery()).await?.iter().map(|d| d.id).collect();
        assert_eq!(ids.len(), 2);

        assert!(store.disable_integration(acme, hook.id, "every attempt failed", &[], at(102)).await?);
        assert_eq!(store.replay_deliveries(acme, hook.id, Some(ids[0]), None, ACTOR, at(103)).await?, 0);
        assert_eq!(store.replay_deliveries(acme, hook.id, None, Some(at(0)), ACTOR, at(104)).await?, 0);
        assert_eq!(store.replay_deliveries(acme, hook.id, None, None, ACTOR, at(105)).await?, 0);
        for id in &ids {
            assert_eq!(delivery(store, acme, *id).await?.0.status, DeliveryStatus::Failed);
        }
        let log = store.list_audit_log(acme, None, 50).await?;
        assert!(log.iter().all(|e| e.action != "delivery.replay"), "nothing replayed: {log:?}");

        // Switched on, they can be.
        let off = current(store, acme, hook.id).await?;
        stored(
            store
                .update_integration(acme, hook.id, off.version, &webhook("Ops hook"), ACTOR, at(106))
                .await?,
        )?;
        assert_eq!(store.replay_deliveries(acme, hook.id, Some(ids[0]), None, ACTOR, at(107)).await?, 1);
        assert_eq!(store.replay_deliveries(acme, hook.id, None, Some(at(0)), ACTOR, at(108)).await?, 1);

        // Deleted, nothing is left to replay.
        assert!(store.delete_integration(acme, hook.id, ACTOR, at(109)).await?);
        assert_eq!(store.replay_deliveries(acme, hook.id, Some(ids[1]), None, ACTOR, at(110)).await?, 0);
        assert_eq!(store.replay_deliveries(acme, hook.id, None, None, ACTOR, at(111)).await?, 0);
        Ok(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_tickets_of_many_findings_come_in_the_order_asked() {
    each_backend(async |store| {
        let acme = org(store, "Acme MSP").await?;
        let contoso = tenant(store, acme, "Contoso").await?;
        let findings =
            open_findings(store, contoso, &[("relay:tcp", Severity::High), ("mx:25", Severity::Low)], at(10))
                .await?;
        let (a, b) = (&findings[0], &findings[1]);
        let psa = integration(store, acme, jira("Jira")).await?;
        let desk = integration(store, acme, jira("Desk")).await?;
        // `b` gets a ticket in each integration, `a` one in the second.
        let queued = [
            finding_event(&psa, b, "b", 10),
            finding_event(&desk, b, "b", 11),
            finding_event(&desk, a, "a", 12),
        ];
        store.enqueue_deliveries(&queued, at(20)).await?;
        let mut claimed = claim(store, 20).await?;
        assert_eq!(claimed.len(), 3);
        for (i, c) in claimed.drain(..).enumerate() {
            let record = AttemptRecord {
                ticket: Some(TicketUpdate::Set {
                    external_id: format!("OPS-{i}"),
                    url: None,
                    state: TicketState::Open,
                }),
                finding_open: Some(true),
                ..succeeded(c.lease_id, 21 + i as i64)
            };
            complete(store, &c, record).await?;
        }
        let shown = |ids: &[FindingId]| {
            let ids = ids.to_vec();
            async move {
                let tickets = store.list_finding_tickets(acme, &ids).await?;
                anyhow::Ok(
                    tickets
                        .into_iter()
                        .map(|t| (t.finding_id, t.integration_name, t.external_id))
                        .collect::<Vec<_>>(),
                )
            }
        };
        let b_tickets = [
            (b.id, "Jira".to_owned(), Some("OPS-0".to_owned())),
            (b.id, "Desk".to_owned(), Some("OPS-1".to_owned())),
        ];
        let a_ticket = (a.id, "Desk".to_owned(), Some("OPS-2".to_owned()));
        let mut expected = b_tickets.to_vec();
        expected.push(a_ticket.clone());
        assert_eq!(shown(&[b.id, a.id]).await?, expected);
        let mut expected = vec![a_ticket];
        expected.extend(b_tickets.iter().cloned());
        assert_eq!(shown(&[a.id, b.id]).await?, expected);

        // More ids than one query binds (and repeated ones) change nothing.
        let mut many: Vec<FindingId> = (0..1_200).map(|_| FindingId(Uuid::now_v7())).collect();
        many.insert(700, a.id);
        many.insert(10, b.id);
        many.push(a.id);
        assert_eq!(shown(&many).await?, {
            let mut e = b_tickets.to_vec();
            e.push((a.id, "Desk".to_owned(), Some("OPS-2".to_owned())));
            e
        });
        Ok(())
    })
    .await;
}
