//! Builders that read like what users do: an MSP with a tenant, a collector enrolled at its site,
//! a push of results, an evaluation that opens a finding. Times are fixed offsets from `T0`
//! (whole microseconds, which both backends store exactly).

use chrono::{DateTime, TimeDelta, TimeZone, Utc};
use serde_json::json;
use uuid::Uuid;
use wbd_store::*;

use crate::harness::TestStore;

/// The tests' "now"; everything else is `at(seconds after T0)`.
pub fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 3, 1, 12, 0, 0).single().expect("valid fixed time")
}

pub fn at(secs: i64) -> DateTime<Utc> {
    t0() + TimeDelta::seconds(secs)
}

pub async fn org(store: &TestStore, name: &str) -> anyhow::Result<OrgScope> {
    let org = store.create_organization(name, t0()).await?;
    Ok(OrgScope { org_id: org.id })
}

pub async fn tenant(store: &TestStore, org: OrgScope, name: &str) -> anyhow::Result<TenantScope> {
    let tenant = store.create_tenant(org, name, None, t0()).await?;
    Ok(TenantScope { org_id: org.org_id, tenant_id: tenant.id })
}

/// The stored hash of an enrollment token (the tests don't need real SHA-256).
pub fn token_hash(token: &str) -> String {
    format!("sha256-of-{token}")
}

/// A collector created by an admin, waiting for enrollment with `token` until `at(3600)`.
pub async fn pending_collector(
    store: &TestStore,
    scope: TenantScope,
    token: &str,
) -> anyhow::Result<Collector> {
    Ok(store.create_collector(scope, "site-collector", &token_hash(token), at(3600), 300, t0()).await?)
}

pub fn enrollment(token: &str, now: DateTime<Utc>) -> Enrollment {
    Enrollment {
        enrollment_token_hash: token_hash(token),
        public_key: vec![7; 32],
        hostname: "aadc01".into(),
        version: "1.0.0".into(),
        now,
        silent_after: now + TimeDelta::seconds(900),
    }
}

/// An MSP with one tenant and one enrolled (active) collector.
pub struct Site {
    pub org: OrgScope,
    pub scope: TenantScope,
    pub collector: Collector,
}

pub async fn enrolled_site(store: &TestStore, org_name: &str) -> anyhow::Result<Site> {
    let org = org(store, org_name).await?;
    let scope = tenant(store, org, "Contoso").await?;
    let token = format!("token-{}", Uuid::new_v4());
    pending_collector(store, scope, &token).await?;
    let collector = store
        .enroll_collector(&enrollment(&token, at(1)))
        .await?
        .map_err(|e| anyhow::anyhow!("enrollment refused: {e}"))?;
    Ok(Site { org, scope, collector })
}

/// One probe result; the payload carries its time so tests can tell which result a fact holds.
/// As with a real probe's timings, the fields that vary between results of the same digest
/// (`observed`, `elapsed_ms`) are named in `timings`.
pub fn result(probe: &str, subject: &str, observed_secs: i64, digest: &str) -> FactWrite {
    FactWrite {
        probe: probe.into(),
        subject: subject.into(),
        observed_at: at(observed_secs),
        payload: json!({ "digest": digest, "observed": observed_secs, "elapsed_ms": observed_secs % 7 })
            .to_string(),
        timings: json!({ "/observed": observed_secs, "/elapsed_ms": observed_secs % 7 }).to_string(),
        digest: digest.into(),
    }
}

/// The JSON of a result's payload, as a stored fact holds it.
pub fn json_of(result: &FactWrite) -> serde_json::Value {
    serde_json::from_str(&result.payload).expect("a result's payload is JSON")
}

/// A new batch (fresh id) pushed at `received_secs`.
pub fn batch(collector: CollectorId, results: Vec<FactWrite>, received_secs: i64) -> BatchWrite {
    BatchWrite {
        collector_id: collector,
        batch_id: Uuid::now_v7(),
        body_hash: format!("body-{}", Uuid::new_v4()),
        results,
        received_at: at(received_secs),
        collector_version: "1.2.3".into(),
        collector_hostname: "aadc01.contoso.local".into(),
        collector_os: "windows".into(),
        push_interval_secs: 120,
        spool_dropped: 4,
        silent_after: at(received_secs + 600),
        traceparent: Some("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01".into()),
    }
}

pub fn open(fingerprint: &str, severity: Severity) -> FindingChange {
    FindingChange::Open {
        fingerprint: fingerprint.into(),
        rule_id: fingerprint.split(':').next().unwrap_or(fingerprint).into(),
        subject: fingerprint.into(),
        collector_id: None,
        severity,
        title: format!("{fingerprint} fails"),
        summary: format!("{fingerprint} is broken"),
        evidence: json!({ "fingerprint": fingerprint }),
        message: None,
    }
}

/// An evaluation that changes these findings and nothing else.
pub fn only_findings(changes: impl IntoIterator<Item = FindingChange>) -> EvaluationChanges {
    EvaluationChanges { findings: changes.into_iter().collect(), ..EvaluationChanges::default() }
}

/// Current facts_version of the tenant, as an evaluator would read it.
pub async fn facts_version(store: &TestStore, scope: TenantScope) -> anyhow::Result<i64> {
    let snapshot =
        store.load_tenant_snapshot(scope, &[]).await?.ok_or_else(|| anyhow::anyhow!("tenant missing"))?;
    Ok(snapshot.facts_version)
}

/// Opens findings in one evaluation (no message id) and returns them by fingerprint order given.
pub async fn open_findings(
    store: &TestStore,
    scope: TenantScope,
    findings: &[(&str, Severity)],
    now: DateTime<Utc>,
) -> anyhow::Result<Vec<Finding>> {
    let changes: Vec<_> = findings.iter().map(|(fp, sev)| open(fp, *sev)).collect();
    let version = facts_version(store, scope).await?;
    let outcome = store.apply_evaluation(scope, None, version, &only_findings(changes), now).await?;
    anyhow::ensure!(outcome == ApplyOutcome::Applied, "opening findings: {outcome:?}");
    let snapshot =
        store.load_tenant_snapshot(scope, &[]).await?.ok_or_else(|| anyhow::anyhow!("tenant missing"))?;
    findings
        .iter()
        .map(|(fp, _)| {
            snapshot
                .findings
                .iter()
                .find(|f| f.fingerprint == *fp)
                .cloned()
                .ok_or_else(|| anyhow::anyhow!("finding {fp} not stored"))
        })
        .collect()
}
