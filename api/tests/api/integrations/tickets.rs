//! The tickets integrations keep for a finding, shown with the finding.

use std::time::Duration;

use chrono::Utc;
use serde_json::json;
use uuid::Uuid;
use wbd_store::{AttemptRecord, FindingId, NewDelivery, OrgId, TenantId, TicketState, TicketUpdate};

use super::*;
use crate::helpers::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_finding_shows_the_tickets_integrations_keep_for_it() {
    let app = spawn_quiet_app(|_| {}).await;
    let org = app.bootstrap_org("MSP").await;
    let (tenant, collector) = app.tenant_with_collector(&org).await;
    collector
        .push_evaluated(&app, &org, &batch(vec![refused_endpoint("passwordreset.microsoftonline.com", 443)]))
        .await;
    let open = app
        .wait_for_findings(
            &org.token,
            &format!("tenant_id={tenant}&rule_id=endpoint-reachable&status=open"),
            |f| f.len() == 1,
        )
        .await;
    let finding_id: Uuid = open[0]["id"].as_str().unwrap().parse().unwrap();
    assert_eq!(open[0]["tickets"], json!([]));
    let desk = app.add_integration(&org.token, &jira()).await;

    // The engine opens a ticket for the finding.
    let now = Utc::now();
    let delivery = NewDelivery {
        org_id: OrgId(org.id),
        integration_id: id_of(&desk).parse().unwrap(),
        event_id: Uuid::now_v7(),
        event_type: "finding.opened".into(),
        tenant_id: Some(TenantId(tenant)),
        finding_id: Some(FindingId(finding_id)),
        ticket_key: Some("wbd-test-ticket".into()),
        payload: json!({}),
        occurred_at: now,
    };
    app.store.enqueue_deliveries(&[delivery], now).await.unwrap();
    let claimed = app.store.claim_deliveries(10, Duration::from_secs(60), Utc::now()).await.unwrap();
    assert_eq!(claimed.len(), 1);
    let record = AttemptRecord {
        lease_id: claimed[0].lease_id,
        at: Utc::now(),
        succeeded: true,
        status: Some(201),
        latency_ms: 40,
        error: None,
        response_excerpt: None,
        exchanges: json!([]),
        retry_at: None,
        ticket: Some(TicketUpdate::Set {
            external_id: "WBD-7".into(),
            url: Some("https://contoso.atlassian.net/browse/WBD-7".into()),
            state: TicketState::Open,
        }),
        finding_open: Some(true),
        throttle_until: None,
    };
    assert!(app.store.complete_attempt(&claimed[0].delivery, &record).await.unwrap());

    let expected = json!([{
        "integration_id": desk["id"], "integration_name": "Service desk", "kind": "jira",
        "external_id": "WBD-7", "url": "https://contoso.atlassian.net/browse/WBD-7", "state": "open",
    }]);
    assert_eq!(app.finding(&org.token, &finding_id.to_string()).await["tickets"], expected);
    let listed = app.findings(&org.token, &format!("tenant_id={tenant}&rule_id=endpoint-reachable")).await;
    assert_eq!(listed[0]["tickets"], expected);
    app.shutdown().await;
}
