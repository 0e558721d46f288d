//! `POST /v1/ingest`: accepted batches, idempotency, and every kind of bad input answered with
//! a clear problem and nothing stored.

use std::io::Write as _;

use chrono::SubsecRound as _;
use reqwest::StatusCode;
use serde_json::{Value, json};
use wbd_store::{OrgId, TenantId, TenantScope};

use crate::helpers::*;

async fn nothing_stored(app: &TestApp, org: &Org, tenant: uuid::Uuid, collector: &TestCollector) {
    let scope = TenantScope { org_id: OrgId(org.id), tenant_id: TenantId(tenant) };
    assert!(app.store.list_facts(scope).await.unwrap().is_empty(), "a refused batch left facts behind");
    let res = app.get(&org.token, &format!("/v1/collectors/{}", collector.id)).await;
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["last_seen_at"], Value::Null, "a refused batch counted as a heartbeat");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_is_accepted_once_and_a_retry_gets_the_same_answer() {
    let app = spawn_app().await;
    let org = app.bootstrap_org("MSP").await;
    let (tenant, collector) = app.tenant_with_collector(&org).await;
    let b = batch(vec![healthy_endpoint("passwordreset.microsoftonline.com", 443)]);

    let first = collector.push(&app, &b).await;
    assert_eq!(first.status(), StatusCode::ACCEPTED);
    let first: Value = first.json().await.unwrap();
    assert_eq!(first, json!({ "batch_id": b.batch_id, "accepted": 1 }));

    let again = collector.push(&app, &b).await;
    assert_eq!(again.status(), StatusCode::ACCEPTED);
    assert_eq!(again.json::<Value>().await.unwrap(), first);

    let scope = TenantScope { org_id: OrgId(org.id), tenant_id: TenantId(tenant) };
    let facts = app.store.list_facts(scope).await.unwrap();
    assert_eq!(facts.len(), 1);
    assert_eq!(facts[0].repeat_count, 1, "the retried batch was stored twice");

    let c: Value =
        app.get(&org.token, &format!("/v1/collectors/{}", collector.id)).await.json().await.unwrap();
    assert!(c["last_seen_at"].is_string(), "a push is a heartbeat");
    assert_eq!(c["version"], "test");
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gzip_batch_is_stored_as_the_batch_it_decompresses_to() {
    let app = spawn_app().await;
    let org = app.bootstrap_org("MSP").await;
    let (tenant, collector) = app.tenant_with_collector(&org).await;
    let relay = "ssprdedicatedsbprodscu.servicebus.windows.net";
    let mut refused = refused_endpoint(relay, 443);
    if let wbd_wire::ProbeOutput::Endpoint(report) = &mut refused.output {
        report.failure.as_mut().expect("a refused endpoint failed").error =
            "connection refused by 198.51.100.7 (site firewall FW-EDGE-2)".into();
    }
    let mut b = batch(vec![healthy_endpoint("passwordreset.microsoftonline.com", 443), refused]);
    b.collector.hostname = "AADC01.contoso.local".into();
    b.collector.version = "1.4.2".into();
    let json_body = serde_json::to_vec(&b).unwrap();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(&json_body).unwrap();
    let gzipped = gz.finish().unwrap();
    assert!(!gzipped.starts_with(b"{"), "the body on the wire is gzip, not JSON");

    let res = app
        .client
        .post(app.url("/v1/ingest"))
        .bearer_auth(collector.token_for(&json_body))
        .header("content-type", "application/json")
        .header("content-encoding", "gzip")
        .body(gzipped)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::ACCEPTED);
    let answer: Value = res.json().await.unwrap();
    assert_eq!(answer, json!({ "batch_id": b.batch_id, "accepted": 2 }));

    // Stored: one fact per result of the decompressed batch, each exactly as the collector sent it.
    let scope = TenantScope { org_id: OrgId(org.id), tenant_id: TenantId(tenant) };
    let mut facts = app.store.list_facts(scope).await.unwrap();
    facts.sort_by(|a, b| a.subject.cmp(&b.subject));
    let stored: Vec<_> = facts
        .iter()
        .map(|f| (f.collector_id.0, f.probe.clone(), f.subject.clone(), f.observed_at, f.payload.clone()))
        .collect();
    let mut sent: Vec<_> = b
        .results
        .iter()
        .map(|r| {
            let payload = serde_json::to_value(&r.output).unwrap();
            // The database keeps times to the microsecond.
            let observed_at = r.observed_at.trunc_subsecs(6);
            (collector.id, r.output.kind().as_str().to_owned(), r.subject.clone(), observed_at, payload)
        })
        .collect();
    sent.sort_by(|a, b| a.2.cmp(&b.2));
    assert_eq!(stored, sent);
    assert!(facts.iter().all(|f| f.repeat_count == 1), "{facts:#?}");

    // What the MSP sees: the refused relay is a finding resting on the batch's result, and the
    // collector's details are the batch's.
    let findings = app
        .wait_for_findings(&org.token, &format!("tenant_id={tenant}&status=open"), |f| !f.is_empty())
        .await;
    assert_eq!(findings.len(), 1, "{findings:#?}");
    let finding = &findings[0];
    assert_eq!(finding["rule_id"], "endpoint-reachable");
    assert_eq!(finding["evidence"]["host"], relay, "{finding:#}");
    assert_eq!(finding["evidence"]["failed_step"], "tcp", "{finding:#}");
    assert_eq!(finding["evidence"]["error"], "connection refused by 198.51.100.7 (site firewall FW-EDGE-2)");
    let c: Value =
        app.get(&org.token, &format!("/v1/collectors/{}", collector.id)).await.json().await.unwrap();
    assert_eq!((&c["hostname"], &c["version"]), (&json!("AADC01.contoso.local"), &json!("1.4.2")), "{c:#}");

    // The same batch sent uncompressed is the same batch: a retry (same answer, nothing stored
    // again), not a conflicting body.
    let again = collector.push(&app, &b).await;
    assert_eq!(again.status(), StatusCode::ACCEPTED);
    assert_eq!(again.json::<Value>().await.unwrap(), answer);
    let facts = app.store.list_facts(scope).await.unwrap();
    assert_eq!(facts.len(), 2);
    assert!(facts.iter().all(|f| f.repeat_count == 1), "the retry was stored again: {facts:#?}");
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_batches_are_refused_with_a_problem_and_change_nothing() {
    let app = spawn_app().await;
    let org = app.bootstrap_org("MSP").await;
    let (tenant, collector) = app.tenant_with_collector(&org).await;
    let raw = |body: Vec<u8>| {
        app.client
            .post(app.url("/v1/ingest"))
            .bearer_auth(collector.token_for(&body))
            .header("content-type", "application/json")
            .body(body)
            .send()
    };

    // Malformed JSON.
    let res = raw(b"{\"schema_version\": 1, \"batch_id\": ".to_vec()).await.unwrap();
    let p = problem(res, StatusCode::BAD_REQUEST, "malformed_json").await;
    assert!(p["detail"].as_str().unwrap().contains("line 1"), "{p}");

    // A schema version this server does not know.
    let mut future = serde_json::to_value(batch(vec![])).unwrap();
    future["schema_version"] = json!(7);
    future["results"] = json!([{ "some": "new shape" }]);
    let res = raw(serde_json::to_vec(&future).unwrap()).await.unwrap();
    let p = problem(res, StatusCode::BAD_REQUEST, "unsupported_schema_version").await;
    assert!(p["detail"].as_str().unwrap().contains('7'));

    // Oversize body.
    let huge = vec![b' '; wbd_wire::MAX_BATCH_BYTES + 1];
    let res = raw(huge).await.unwrap();
    problem(res, StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large").await;

    // Too many results.
    let many = batch(
        (0..=wbd_wire::MAX_RESULTS_PER_BATCH).map(|i| healthy_endpoint("h.example", i as u16)).collect(),
    );
    let res = collector.push(&app, &many).await;
    problem(res, StatusCode::UNPROCESSABLE_ENTITY, "too_many_results").await;

    // Not JSON at all.
    let res = app
        .client
        .post(app.url("/v1/ingest"))
        .bearer_auth(collector.token_for(b"hello"))
        .header("content-type", "text/plain")
        .body("hello")
        .send()
        .await
        .unwrap();
    problem(res, StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type").await;

    nothing_stored(&app, &org, tenant, &collector).await;
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replayed_batch_id_with_another_body_is_a_conflict() {
    let app = spawn_app().await;
    let org = app.bootstrap_org("MSP").await;
    let (tenant, collector) = app.tenant_with_collector(&org).await;
    let original = batch(vec![healthy_endpoint("passwordreset.microsoftonline.com", 443)]);
    assert_eq!(collector.push(&app, &original).await.status(), StatusCode::ACCEPTED);

    let mut forged = original.clone();
    forged.results = vec![refused_endpoint("passwordreset.microsoftonline.com", 443)];
    let res = collector.push(&app, &forged).await;
    problem(res, StatusCode::CONFLICT, "batch_id_conflict").await;

    let scope = TenantScope { org_id: OrgId(org.id), tenant_id: TenantId(tenant) };
    let facts = app.store.list_facts(scope).await.unwrap();
    assert_eq!(facts.len(), 1);
    assert!(facts[0].payload["data"]["failure"].is_null(), "the conflicting batch overwrote the fact");
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pushes_without_a_valid_collector_token_are_refused() {
    let app = spawn_app().await;
    let org = app.bootstrap_org("MSP").await;
    let (tenant, collector) = app.tenant_with_collector(&org).await;
    let b = batch(vec![healthy_endpoint("passwordreset.microsoftonline.com", 443)]);
    let now = chrono::Utc::now().timestamp();

    // No token.
    let res = app.client.post(app.url("/v1/ingest")).json(&b).send().await.unwrap();
    problem(res, StatusCode::UNAUTHORIZED, "unauthenticated").await;

    // Signed with a key that is not the enrolled one.
    let res =
        push_at(&app.client, &app.base, &collector.token_with(now, now + 60, &stranger_key()), &b).await;
    problem(res, StatusCode::UNAUTHORIZED, "invalid_token").await;

    // Expired.
    let res = push_at(
        &app.client,
        &app.base,
        &collector.token_with(now - 600, now - 500, &collector_key(&collector)),
        &b,
    )
    .await;
    problem(res, StatusCode::UNAUTHORIZED, "token_expired").await;

    // Too long-lived.
    let res = push_at(
        &app.client,
        &app.base,
        &collector.token_with(now, now + 3600, &collector_key(&collector)),
        &b,
    )
    .await;
    problem(res, StatusCode::UNAUTHORIZED, "invalid_token").await;

    // Not valid yet: its nbf is beyond the leeway.
    let res = push_at(&app.client, &app.base, &collector.token_not_before(now + 600), &b).await;
    let body = problem(res, StatusCode::UNAUTHORIZED, "invalid_token").await;
    assert!(body["detail"].as_str().unwrap().contains("not valid yet"), "{body}");

    // Unknown collector.
    let unknown = TestCollector::unknown(&collector);
    let res = push_at(&app.client, &app.base, &unknown.token(&b), &b).await;
    problem(res, StatusCode::UNAUTHORIZED, "invalid_credentials").await;

    nothing_stored(&app, &org, tenant, &collector).await;

    // Revoked: refused at once, with a token made before the revocation.
    let token = collector.token(&b);
    let res = app.post(&org.token, &format!("/v1/collectors/{}/revoke", collector.id), &json!({})).await;
    assert_eq!(res.status(), StatusCode::OK);
    let res = push_at(&app.client, &app.base, &token, &b).await;
    problem(res, StatusCode::UNAUTHORIZED, "collector_revoked").await;
    nothing_stored(&app, &org, tenant, &collector).await;
    app.shutdown().await;
}

fn collector_key(c: &TestCollector) -> Vec<u8> {
    c.key().to_vec()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_collectors_trace_travels_with_the_batch_into_the_outbox() {
    // No worker in this process, so the outbox message stays where the test can read it.
    let app = spawn_app_with(|s| s.worker.embedded = Some(false)).await;
    let org = app.bootstrap_org("MSP").await;
    let (_, collector) = app.tenant_with_collector(&org).await;
    let trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";
    let b = batch(vec![healthy_endpoint("passwordreset.microsoftonline.com", 443)]);
    let res = app
        .client
        .post(app.url("/v1/ingest"))
        .bearer_auth(collector.token(&b))
        .header("traceparent", format!("00-{trace_id}-00f067aa0ba902b7-01"))
        .json(&b)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::ACCEPTED);
    let messages =
        app.store.claim_outbox(10, std::time::Duration::from_secs(60), chrono::Utc::now()).await.unwrap();
    assert_eq!(messages.len(), 1);
    let traceparent = messages[0].traceparent.as_deref().expect("the outbox message carries a traceparent");
    assert_eq!(wbd_platform::telemetry::trace_id_of(traceparent), Some(trace_id));
    assert!(
        !traceparent.contains("00f067aa0ba902b7"),
        "the ingest span is a child, not the collector's span"
    );
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_push_token_is_accepted_once_and_only_for_the_batch_it_was_signed_for() {
    let app = spawn_app().await;
    let org = app.bootstrap_org("MSP").await;
    let (tenant, collector) = app.tenant_with_collector(&org).await;
    let signed_for = batch(vec![healthy_endpoint("passwordreset.microsoftonline.com", 443)]);
    let invented = batch(vec![refused_endpoint("passwordreset.microsoftonline.com", 443)]);

    // A token read off the wire carries no other batch, even before its own was sent.
    let token = collector.token(&signed_for);
    let res = push_at(&app.client, &app.base, &token, &invented).await;
    let body = problem(res, StatusCode::UNAUTHORIZED, "invalid_token").await;
    assert!(body["detail"].as_str().unwrap().contains("different body"), "{body}");
    // Nor does a token that names no body.
    let now = chrono::Utc::now().timestamp();
    let res =
        push_at(&app.client, &app.base, &collector.token_with(now, now + 60, collector.key()), &invented)
            .await;
    problem(res, StatusCode::UNAUTHORIZED, "invalid_token").await;
    nothing_stored(&app, &org, tenant, &collector).await;

    // Its own batch goes through, once.
    let res = push_at(&app.client, &app.base, &token, &signed_for).await;
    assert_eq!(res.status(), StatusCode::ACCEPTED, "{}", res.text().await.unwrap_or_default());
    let res = push_at(&app.client, &app.base, &token, &signed_for).await;
    let body = problem(res, StatusCode::UNAUTHORIZED, "token_replayed").await;
    assert!(body["detail"].as_str().unwrap().contains("once"), "{body}");

    // The collector's retry of the same batch signs a fresh token and gets the same answer.
    let res = collector.push(&app, &signed_for).await;
    assert_eq!(res.status(), StatusCode::ACCEPTED);
    let scope = TenantScope { org_id: OrgId(org.id), tenant_id: TenantId(tenant) };
    let facts = app.store.list_facts(scope).await.unwrap();
    assert_eq!(facts.len(), 1, "one result stored");
    assert!(facts[0].payload["data"]["failure"].is_null(), "the invented failure was stored");
    app.shutdown().await;
}
