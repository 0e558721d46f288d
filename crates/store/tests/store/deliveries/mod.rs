//! Integrations and their deliveries, by topic: settings, tenancy and audit; finding events
//! turned into deliveries; claims bounded by in-flight slots, the hourly budget and ticket order;
//! attempts and the tickets they keep; replays; and switching an integration off. The helpers
//! below build integrations, events and attempt outcomes for all of them.

mod attempts_and_tickets;
mod claims;
mod dispatch;
mod integrations;
mod replay;
mod retention;
mod switching_off;

use std::collections::HashSet;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::json;
use uuid::Uuid;
use wbd_store::*;

use crate::fixtures::{at, open_findings, org, t0, tenant};
use crate::harness::TestStore;

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

/// A 429 that pauses the whole integration until `until_secs`.
fn throttled(lease_id: Uuid, secs: i64, retry_secs: i64, until_secs: i64) -> AttemptRecord {
    AttemptRecord {
        status: Some(429),
        error: Some("HTTP 429".into()),
        throttle_until: Some(at(until_secs)),
        ..failed(lease_id, secs, Some(retry_secs))
    }
}
