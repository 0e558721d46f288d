//! Evaluation of one tenant: load its snapshot, run the rule pack, turn the verdicts into
//! finding changes, and apply them in one transaction.
//!
//! - [`facts_from_snapshot`](crate::facts::facts_from_snapshot) turns the stored snapshot into
//!   the rules' view of the tenant.
//! - [`plan_changes`](crate::lifecycle::plan_changes) compares the rules' verdicts with the
//!   tenant's findings and flap-damping streaks and returns only the changes (a finding whose
//!   state did not change is not written); see [`crate::lifecycle`].
//! - [`evaluate_tenant`] ties it together against the [`Store`], with optimistic concurrency:
//!   the store refuses the changes if the facts, a finding or a streak moved since the snapshot
//!   was read, and the evaluation is then re-read and re-planned.
//!
//! Everything here is idempotent: planning the same snapshot twice gives the same changes, and a
//! redelivered message is recognised by its id inside the same transaction.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use uuid::Uuid;
use wbd_store::{
    ApplyOutcome, EvaluationChanges, FindingChange, FindingId, Store, StoreError, TenantScope, TenantSnapshot,
};

use crate::facts::{facts_from_snapshot, keep_outputs, kept_outputs};
use crate::lifecycle::{DampingDefaults, DampingTable, fingerprint, plan_changes};
use crate::rule_config::{TenantRules, current_tenant_rules, evaluate_facts};

/// How many times an evaluation is re-read and re-planned after the store reported a conflict.
pub const MAX_APPLY_ATTEMPTS: u32 = 5;

/// What [`evaluate_tenant`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EvaluationOutcome {
    /// The tenant no longer exists; there is nothing to evaluate.
    TenantGone,
    /// An earlier evaluation already covered these facts (only with `skip_if_evaluated`).
    UpToDate { facts_version: i64 },
    /// The message was applied before (a redelivery); nothing changed.
    AlreadyProcessed,
    /// The evaluation was committed, with these changes (possibly none).
    Applied { facts_version: i64, changes: ChangeCounts, attempts: u32 },
    /// Every attempt conflicted with a concurrent change; a newer evaluation takes over (see
    /// [`evaluate_tenant`]).
    Superseded { attempts: u32 },
}

/// How many findings an applied evaluation changed, by kind of change.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ChangeCounts {
    pub opened: u32,
    pub reopened: u32,
    pub reannounced: u32,
    pub updated: u32,
    pub resolved: u32,
}

/// Counts committed changes in the metrics: findings opened (reopened and re-announced ones too)
/// and resolved, by rule and severity. A custom rule counts as `custom` (its id is a tenant's
/// own choice; labels stay a bounded set).
fn count_changes(snapshot: &TenantSnapshot, changes: &[FindingChange]) {
    let label = |rule: &str| {
        if wbd_rules::rules().iter().any(|r| r.id == rule) { rule.to_owned() } else { "custom".to_owned() }
    };
    let rule_of = |id: &FindingId| snapshot.findings.iter().find(|f| f.id == *id);
    for change in changes {
        let (name, rule, severity) = match change {
            FindingChange::Open { rule_id, severity, .. } => {
                ("wbd_findings_opened_total", label(rule_id), severity.as_str())
            }
            FindingChange::Reopen { id, severity, .. } | FindingChange::Reannounce { id, severity, .. } => {
                let Some(finding) = rule_of(id) else { continue };
                ("wbd_findings_opened_total", label(&finding.rule_id), severity.as_str())
            }
            FindingChange::Resolve { id, .. } => {
                let Some(finding) = rule_of(id) else { continue };
                ("wbd_findings_resolved_total", label(&finding.rule_id), finding.severity.as_str())
            }
            FindingChange::Update { .. } => continue,
        };
        metrics::counter!(name, "rule" => rule, "severity" => severity).increment(1);
    }
}

impl ChangeCounts {
    pub fn of(changes: &[FindingChange]) -> Self {
        let mut counts = Self::default();
        for change in changes {
            let counter = match change {
                FindingChange::Open { .. } => &mut counts.opened,
                FindingChange::Reopen { .. } => &mut counts.reopened,
                FindingChange::Reannounce { .. } => &mut counts.reannounced,
                FindingChange::Update { .. } => &mut counts.updated,
                FindingChange::Resolve { .. } => &mut counts.resolved,
            };
            *counter += 1;
        }
        counts
    }

    pub fn total(&self) -> u32 {
        self.opened + self.reopened + self.reannounced + self.updated + self.resolved
    }
}

/// Evaluates one tenant and commits the resulting finding changes.
///
/// `damping` holds the server-wide flap-damping defaults (see [`DampingTable::for_tenant`]).
/// `message_id` is the queue message that asked for it (recorded with the changes, so a
/// redelivery answers [`EvaluationOutcome::AlreadyProcessed`]); `None` for the silence sweep.
/// With `skip_if_evaluated`, a tenant whose current facts were already evaluated is left alone
/// ([`EvaluationOutcome::UpToDate`]): a burst of batches then costs one evaluation, not one per
/// batch. The silence sweep passes `false`, because silence changes with time, not with facts.
///
/// On a conflict the snapshot is re-read and the evaluation re-planned, up to
/// [`MAX_APPLY_ATTEMPTS`] times in all; if every attempt conflicts the outcome is
/// [`EvaluationOutcome::Superseded`], which the caller treats as done. That is safe: the store
/// refuses an evaluation only when the tenant's facts or one of its findings changed since the
/// snapshot. New facts were committed together with their own outbox message, which will
/// evaluate them (and everything older); a finding changed by another evaluation was changed by
/// one that saw the then-current facts. For the silence sweep, the next sweep evaluates again.
#[tracing::instrument(
    skip_all,
    fields(tenant_id = %scope.tenant_id, org_id = %scope.org_id, message_id = ?message_id, skip_if_evaluated = skip_if_evaluated)
)]
pub async fn evaluate_tenant(
    store: &dyn Store,
    damping: DampingDefaults,
    scope: TenantScope,
    message_id: Option<Uuid>,
    now: DateTime<Utc>,
    skip_if_evaluated: bool,
) -> Result<EvaluationOutcome, StoreError> {
    evaluate_with(store, damping, scope, message_id, now, skip_if_evaluated).await
}

/// Gives each finding the evaluation opens or changes the rule's message (key and arguments),
/// so the API can render the summary in the caller's language. Findings the evaluation leaves
/// alone keep the message they have.
fn attach_messages(
    changes: &mut EvaluationChanges,
    snapshot: &TenantSnapshot,
    evaluations: &[wbd_rules::Evaluation],
) {
    if changes.findings.is_empty() {
        return;
    }
    let failing: std::collections::HashMap<String, &wbd_rules::Message> = evaluations
        .iter()
        .filter_map(|evaluation| match &evaluation.outcome {
            wbd_rules::Outcome::Fail { message, .. } => {
                Some((fingerprint(&evaluation.rule_id, &evaluation.subject), message))
            }
            _ => None,
        })
        .collect();
    for change in &mut changes.findings {
        let (key, slot) = match change {
            FindingChange::Open { fingerprint, message, .. } => (Some(fingerprint.as_str()), message),
            FindingChange::Reopen { id, message, .. }
            | FindingChange::Reannounce { id, message, .. }
            | FindingChange::Update { id, message, .. } => {
                let id = *id;
                (snapshot.findings.iter().find(|f| f.id == id).map(|f| f.fingerprint.as_str()), message)
            }
            FindingChange::Resolve { .. } => continue,
        };
        if let Some(found) = key.and_then(|key| failing.get(key))
            && let Ok(value) = serde_json::to_value(found)
        {
            *slot = Some(value);
        }
    }
}

/// The two store calls an evaluation makes; a seam so the retry logic is testable without a
/// database.
trait EvaluationStore: Sync {
    /// The tenant's snapshot, without the payloads of `known_digests` (see
    /// [`Store::load_tenant_snapshot`]).
    async fn load_snapshot(
        &self,
        scope: TenantScope,
        known_digests: &[&str],
    ) -> Result<Option<TenantSnapshot>, StoreError>;

    /// The tenant's overrides and custom rules as of `rules_version` (none, unless the store has
    /// some).
    async fn load_rules(
        &self,
        _scope: TenantScope,
        _rules_version: i64,
    ) -> Result<Arc<TenantRules>, StoreError> {
        Ok(Arc::default())
    }

    async fn apply(
        &self,
        scope: TenantScope,
        message_id: Option<Uuid>,
        facts_version: i64,
        changes: &EvaluationChanges,
        now: DateTime<Utc>,
    ) -> Result<ApplyOutcome, StoreError>;
}

impl EvaluationStore for dyn Store + '_ {
    async fn load_snapshot(
        &self,
        scope: TenantScope,
        known_digests: &[&str],
    ) -> Result<Option<TenantSnapshot>, StoreError> {
        self.load_tenant_snapshot(scope, known_digests).await
    }

    async fn load_rules(
        &self,
        scope: TenantScope,
        rules_version: i64,
    ) -> Result<Arc<TenantRules>, StoreError> {
        current_tenant_rules(self, scope, rules_version).await
    }

    async fn apply(
        &self,
        scope: TenantScope,
        message_id: Option<Uuid>,
        facts_version: i64,
        changes: &EvaluationChanges,
        now: DateTime<Utc>,
    ) -> Result<ApplyOutcome, StoreError> {
        self.apply_evaluation(scope, message_id, facts_version, changes, now).await
    }
}

async fn evaluate_with<S: EvaluationStore + ?Sized>(
    store: &S,
    damping: DampingDefaults,
    scope: TenantScope,
    message_id: Option<Uuid>,
    now: DateTime<Utc>,
    skip_if_evaluated: bool,
) -> Result<EvaluationOutcome, StoreError> {
    for attempt in 1..=MAX_APPLY_ATTEMPTS {
        // The outputs this process decoded for the tenant before: the store leaves their
        // payloads unread, and an unchanged fact costs its timings only.
        let held = kept_outputs(scope);
        let known: Vec<&str> = held.keys().map(String::as_str).collect();
        let Some(snapshot) = store.load_snapshot(scope, &known).await? else {
            tracing::info!("tenant no longer exists; nothing to evaluate");
            return Ok(EvaluationOutcome::TenantGone);
        };
        if skip_if_evaluated && snapshot.evaluated_facts_version >= snapshot.facts_version {
            tracing::debug!(facts_version = snapshot.facts_version, "facts already evaluated");
            return Ok(EvaluationOutcome::UpToDate { facts_version: snapshot.facts_version });
        }
        // After the up-to-date check (coalesced messages cost nothing); read from the store only
        // when the configuration changed since this process last read it (`rules_version`).
        let rules = store.load_rules(scope, snapshot.rules_version).await?;
        let (facts, outputs) = facts_from_snapshot(&snapshot, &held, now);
        keep_outputs(scope, outputs);
        let evaluations = evaluate_facts(&facts, &rules);
        let damping = DampingTable::for_tenant(&rules.pack, damping);
        let mut changes = plan_changes(&snapshot, &evaluations, &damping, now);
        attach_messages(&mut changes, &snapshot, &evaluations);
        changes.traceparent = wbd_trace::traceparent_of(&tracing::Span::current());
        let counts = ChangeCounts::of(&changes.findings);
        match store.apply(scope, message_id, snapshot.facts_version, &changes, now).await? {
            ApplyOutcome::Applied => {
                count_changes(&snapshot, &changes.findings);
                tracing::debug!(
                    facts_version = snapshot.facts_version,
                    evaluations = evaluations.len(),
                    opened = counts.opened,
                    reopened = counts.reopened,
                    reannounced = counts.reannounced,
                    updated = counts.updated,
                    resolved = counts.resolved,
                    attempt,
                    "evaluation applied"
                );
                return Ok(EvaluationOutcome::Applied {
                    facts_version: snapshot.facts_version,
                    changes: counts,
                    attempts: attempt,
                });
            }
            ApplyOutcome::AlreadyProcessed => {
                tracing::debug!("message was applied before");
                return Ok(EvaluationOutcome::AlreadyProcessed);
            }
            ApplyOutcome::Conflict => {
                tracing::debug!(
                    attempt,
                    facts_version = snapshot.facts_version,
                    "conflict; re-reading the tenant"
                );
            }
        }
    }
    tracing::info!(attempts = MAX_APPLY_ATTEMPTS, "evaluation kept conflicting; a newer one takes over");
    Ok(EvaluationOutcome::Superseded { attempts: MAX_APPLY_ATTEMPTS })
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;
    use std::net::{IpAddr, Ipv4Addr};
    use std::sync::Mutex;

    use chrono::{Duration, TimeZone};
    use serde_json::json;
    use wbd_rules::{Evaluation, Outcome};
    use wbd_store::{
        Collector, CollectorId, Finding, FindingId, FindingStatus, OrgId, Severity, SnapshotFact,
        SnapshotPayload, TenantId,
    };
    use wbd_wire::{EndpointReport, EndpointRole, ProbeStep, StepFailure, TlsReport};

    use wbd_store::CollectorStatus;
    use wbd_wire::ProbeOutput;

    use super::*;
    use crate::facts::Outputs;
    use crate::lifecycle::store_severity;

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 3, 2, 12, 0, 0).single().expect("valid instant")
    }

    fn scope() -> TenantScope {
        TenantScope { org_id: OrgId(Uuid::from_u128(1)), tenant_id: TenantId(Uuid::from_u128(2)) }
    }

    fn collector(n: u128, name: &str) -> Collector {
        Collector {
            id: CollectorId(Uuid::from_u128(n)),
            org_id: scope().org_id,
            tenant_id: scope().tenant_id,
            name: name.to_owned(),
            status: CollectorStatus::Active,
            enrollment_expires_at: None,
            public_key: Some(vec![7; 32]),
            hostname: Some(format!("{name}.corp.example")),
            version: Some("0.1.0".to_owned()),
            os: Some("windows".to_owned()),
            push_interval_secs: 300,
            enrolled_at: Some(now() - Duration::days(3)),
            last_seen_at: Some(now() - Duration::seconds(60)),
            silent_after: Some(now() + Duration::seconds(840)),
            spool_dropped: 0,
            created_at: now() - Duration::days(3),
            revoked_at: None,
        }
    }

    fn report(host: &str, role: EndpointRole, failure: Option<ProbeStep>) -> EndpointReport {
        let addr = IpAddr::V4(Ipv4Addr::new(20, 190, 151, 7));
        EndpointReport {
            host: host.to_owned(),
            port: 443,
            role,
            resolved: vec![addr],
            dns_ms: Some(3),
            connected_to: failure.is_none().then_some(addr),
            tcp_connect_ms: failure.is_none().then_some(12),
            tls: failure.is_none().then(|| TlsReport {
                handshake_ms: 30,
                protocol: "TLSv1_3".to_owned(),
                cipher_suite: "TLS13_AES_256_GCM_SHA384".to_owned(),
                chain_trusted: true,
                trust_error: None,
                trust_failure: None,
                subject: Some(format!("CN={host}")),
                issuer: Some("CN=Microsoft Azure RSA TLS Issuing CA 03".to_owned()),
                not_before: Some(now() - Duration::days(30)),
                not_after: Some(now() + Duration::days(30)),
                chain_top_issuer: Some("CN=DigiCert Global Root G2".to_owned()),
                chain_len: 2,
            }),
            failure: failure.map(|step| StepFailure { step, error: "connection timed out".to_owned() }),
            via_proxy: None,
        }
    }

    fn fact(collector: &Collector, report: EndpointReport) -> SnapshotFact {
        let subject = format!("{}:{}", report.host, report.port);
        let output = ProbeOutput::Endpoint(report);
        SnapshotFact {
            collector_id: collector.id,
            probe: "endpoint".to_owned(),
            subject,
            observed_at: now() - Duration::seconds(30),
            payload: SnapshotPayload::Read(serde_json::to_value(&output).expect("probe output serialises")),
            // Unique per output without timings, as the ingest's SHA-256 is.
            digest: serde_json::to_string(&output.without_timings()).expect("probe output serialises"),
        }
    }

    /// The rules' view of a snapshot read without held outputs.
    fn rules_view(snapshot: &TenantSnapshot) -> wbd_rules::TenantFacts {
        facts_from_snapshot(snapshot, &Outputs::new(), now()).0
    }

    const RELAY: &str = "ssprdedicatedsbprodscu.servicebus.windows.net";

    fn snapshot(
        collectors: Vec<Collector>,
        facts: Vec<SnapshotFact>,
        findings: Vec<Finding>,
    ) -> TenantSnapshot {
        TenantSnapshot {
            scope: scope(),
            facts_version: 7,
            evaluated_facts_version: 6,
            rules_version: 0,
            collectors,
            facts,
            findings,
            streaks: vec![],
            unknown_rules: 0,
            probe_versions: wbd_wire::ProbeKind::ALL.iter().map(|p| (p.as_str().to_owned(), 7)).collect(),
        }
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
            summary: "old summary".to_owned(),
            evidence: json!({"old": true}),
            opened_at: now() - Duration::days(1),
            updated_at: now() - Duration::days(1),
            resolved_at: (status == FindingStatus::Resolved).then(|| now() - Duration::hours(2)),
            reopen_count: 0,
            version: 4,
            collector_id: None,
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

    /// The finding a previous evaluation would have stored for this evaluation.
    fn finding_from(n: u128, evaluation: &Evaluation, status: FindingStatus) -> Finding {
        let mut f = finding(n, &evaluation.rule_id, &evaluation.subject, status);
        if let Outcome::Fail { severity, summary, evidence, .. } = &evaluation.outcome {
            f.severity = store_severity(*severity);
            f.summary = summary.clone();
            f.evidence = evidence.clone();
        }
        f
    }

    // ---- facts_from_snapshot ----------------------------------------------------------------

    #[test]
    fn snapshot_becomes_the_rules_view() {
        let site = collector(10, "site-a");
        let mut revoked = collector(11, "old-site");
        revoked.status = CollectorStatus::Revoked;
        let snap = snapshot(
            vec![site.clone(), revoked],
            vec![fact(&site, report(RELAY, EndpointRole::ServiceBusRelay, Some(ProbeStep::Tcp)))],
            vec![],
        );
        let facts = rules_view(&snap);
        assert_eq!(facts.now, now());
        assert_eq!(facts.collectors.len(), 2);
        assert_eq!(facts.collectors[0].id, site.id.0);
        assert_eq!(facts.collectors[0].name, "site-a");
        assert!(facts.collectors[0].active);
        assert!(!facts.collectors[1].active);
        assert_eq!(facts.collectors[0].silent_after, site.silent_after);
        assert_eq!(facts.collectors[0].push_interval_secs, 300);
        assert_eq!(facts.facts.len(), 1);
        assert_eq!(facts.facts[0].subject, format!("{RELAY}:443"));
        assert_eq!(facts.facts[0].collector_id, site.id.0);
        let ProbeOutput::Endpoint(r) = &facts.facts[0].output else { panic!("endpoint fact expected") };
        assert_eq!(r.failure.as_ref().map(|f| f.step), Some(ProbeStep::Tcp));
    }

    #[test]
    fn unreadable_payloads_are_skipped_not_fatal() {
        let site = collector(10, "site-a");
        let good = fact(&site, report(RELAY, EndpointRole::ServiceBusRelay, None));
        let mut unknown_kind = good.clone();
        unknown_kind.subject = "teleport:1".to_owned();
        unknown_kind.payload = SnapshotPayload::Read(json!({"probe": "teleport", "data": {}}));
        let mut garbage = good.clone();
        garbage.subject = "garbage".to_owned();
        garbage.payload = SnapshotPayload::Read(json!("not an object"));
        let mut truncated = good.clone();
        truncated.subject = "truncated".to_owned();
        truncated.payload = SnapshotPayload::Read(json!({"probe": "endpoint", "data": {"host": "x"}}));
        let snap = snapshot(vec![site], vec![unknown_kind, garbage, good.clone(), truncated], vec![]);
        let facts = rules_view(&snap);
        assert_eq!(facts.facts.len(), 1);
        assert_eq!(facts.facts[0].subject, good.subject);
    }

    #[test]
    fn a_fact_left_unread_is_the_held_output_with_its_own_timings() {
        let site = collector(10, "site-a");
        let mut newest = report(RELAY, EndpointRole::ServiceBusRelay, None);
        newest.tcp_connect_ms = Some(41);
        let read = fact(&site, newest.clone());
        let (first, outputs) = facts_from_snapshot(
            &snapshot(vec![site.clone()], vec![read.clone()], vec![]),
            &Outputs::new(),
            now(),
        );
        assert_eq!(
            outputs.keys().collect::<Vec<_>>(),
            vec![&read.digest],
            "the decoded output is kept by digest"
        );

        // The next snapshot leaves the payload unread: same digest, other timings.
        newest.tcp_connect_ms = Some(7);
        let timings = ProbeOutput::Endpoint(newest.clone()).timings();
        let unread = SnapshotFact { payload: SnapshotPayload::Known(timings.clone()), ..read.clone() };
        // And a fact whose output this process does not hold (it was dropped meanwhile).
        let orphan = SnapshotFact {
            subject: "orphan:443".into(),
            digest: "not held".into(),
            payload: SnapshotPayload::Known(timings),
            ..read.clone()
        };
        let snap = snapshot(vec![site], vec![unread, orphan], vec![]);
        let (facts, kept) = facts_from_snapshot(&snap, &outputs, now());
        assert_eq!(facts.facts.len(), 1, "the orphan is skipped, not guessed");
        assert_eq!(facts.facts[0].output, ProbeOutput::Endpoint(newest));
        assert_ne!(facts.facts[0].output, first.facts[0].output);
        assert_eq!(
            kept.keys().collect::<Vec<_>>(),
            vec![&read.digest],
            "what the snapshot still uses is kept"
        );
    }

    // ---- plan_changes -----------------------------------------------------------------------

    #[test]
    fn evaluating_a_snapshot_twice_is_a_fixed_point() {
        // The second evaluation sees the findings the first one opened and plans nothing.
        let site = collector(10, "site-a");
        let mut silent = collector(11, "site-b");
        silent.silent_after = Some(now() - Duration::minutes(5));
        let snap = snapshot(
            vec![site.clone(), silent],
            vec![
                fact(&site, report(RELAY, EndpointRole::ServiceBusRelay, Some(ProbeStep::Tcp))),
                fact(&site, report("passwordreset.microsoftonline.com", EndpointRole::PasswordReset, None)),
            ],
            vec![],
        );
        let evaluations = wbd_rules::evaluate(&rules_view(&snap));
        let damping = DampingTable::default();
        let first = plan_changes(&snap, &evaluations, &damping, now());
        assert_eq!(ChangeCounts::of(&first.findings), ChangeCounts { opened: 2, ..ChangeCounts::default() });
        assert!(first.streaks.is_empty(), "no damping, no streaks");
        let stored: Vec<Finding> = evaluations
            .iter()
            .filter(|e| e.outcome.is_fail())
            .enumerate()
            .map(|(n, e)| finding_from(100 + n as u128, e, FindingStatus::Open))
            .collect();
        let mut again = snapshot(snap.collectors.clone(), snap.facts.clone(), stored);
        again.unknown_rules = first.unknown_rules.unwrap_or(0);
        let evaluations = wbd_rules::evaluate(&rules_view(&again));
        assert_eq!(plan_changes(&again, &evaluations, &damping, now()), EvaluationChanges::default());
    }

    // ---- evaluate_tenant --------------------------------------------------------------------

    /// Every rule opens on its first failure (the pack's defaults damp some).
    const NO_DAMPING: DampingDefaults = DampingDefaults { open_after: Some(1), resolve_after: Some(1) };

    /// What one `apply` call received: message id, facts version, changes.
    type ApplyCall = (Option<Uuid>, i64, EvaluationChanges);

    /// A store that hands out scripted snapshots and apply outcomes and records the applies.
    struct ScriptedStore {
        snapshots: Mutex<VecDeque<Option<TenantSnapshot>>>,
        outcomes: Mutex<VecDeque<Result<ApplyOutcome, StoreError>>>,
        applied: Mutex<Vec<ApplyCall>>,
    }

    impl ScriptedStore {
        fn new(
            snapshots: impl IntoIterator<Item = Option<TenantSnapshot>>,
            outcomes: impl IntoIterator<Item = Result<ApplyOutcome, StoreError>>,
        ) -> Self {
            Self {
                snapshots: Mutex::new(snapshots.into_iter().collect()),
                outcomes: Mutex::new(outcomes.into_iter().collect()),
                applied: Mutex::new(Vec::new()),
            }
        }

        fn applied(&self) -> Vec<ApplyCall> {
            self.applied.lock().expect("not poisoned").clone()
        }
    }

    impl EvaluationStore for ScriptedStore {
        async fn load_snapshot(
            &self,
            scope: TenantScope,
            _known_digests: &[&str],
        ) -> Result<Option<TenantSnapshot>, StoreError> {
            let mut snapshots = self.snapshots.lock().expect("not poisoned");
            // The last scripted snapshot stays current once the script runs out.
            let next = if snapshots.len() > 1 { snapshots.pop_front() } else { snapshots.front().cloned() };
            let snapshot = next.flatten();
            assert!(snapshot.as_ref().is_none_or(|s| s.scope == scope));
            Ok(snapshot)
        }

        async fn apply(
            &self,
            tenant: TenantScope,
            message_id: Option<Uuid>,
            facts_version: i64,
            changes: &EvaluationChanges,
            _now: DateTime<Utc>,
        ) -> Result<ApplyOutcome, StoreError> {
            assert_eq!(tenant, scope());
            self.applied.lock().expect("not poisoned").push((message_id, facts_version, changes.clone()));
            self.outcomes.lock().expect("not poisoned").pop_front().unwrap_or(Ok(ApplyOutcome::Conflict))
        }
    }

    fn failing_tenant() -> TenantSnapshot {
        let site = collector(10, "site-a");
        let mut silent = collector(11, "site-b");
        silent.silent_after = Some(now() - Duration::minutes(5));
        snapshot(
            vec![site.clone(), silent],
            vec![fact(&site, report(RELAY, EndpointRole::ServiceBusRelay, Some(ProbeStep::Dns)))],
            vec![],
        )
    }

    #[tokio::test]
    async fn applies_the_planned_changes_with_the_message_and_facts_version() {
        let store = ScriptedStore::new([Some(failing_tenant())], [Ok(ApplyOutcome::Applied)]);
        let message = Uuid::from_u128(99);
        let outcome = evaluate_with(&store, NO_DAMPING, scope(), Some(message), now(), true)
            .await
            .expect("no store error");
        let applied = store.applied();
        assert_eq!(
            outcome,
            EvaluationOutcome::Applied {
                facts_version: 7,
                changes: ChangeCounts { opened: 2, ..ChangeCounts::default() },
                attempts: 1,
            }
        );
        assert_eq!(applied.len(), 1);
        assert_eq!((applied[0].0, applied[0].1), (Some(message), 7));
        let rules: Vec<_> = applied[0]
            .2
            .findings
            .iter()
            .filter_map(|c| match c {
                FindingChange::Open { rule_id, .. } => Some(rule_id.as_str()),
                _ => None,
            })
            .collect();
        assert_eq!(rules, ["collector-silent", "endpoint-reachable"]);
    }

    #[tokio::test]
    async fn tenant_gone_applies_nothing() {
        let store = ScriptedStore::new([None], []);
        let outcome =
            evaluate_with(&store, NO_DAMPING, scope(), None, now(), true).await.expect("no store error");
        assert_eq!(outcome, EvaluationOutcome::TenantGone);
        assert!(store.applied().is_empty());
    }

    #[tokio::test]
    async fn already_evaluated_facts_are_skipped_only_when_asked() {
        let mut snap = failing_tenant();
        snap.evaluated_facts_version = snap.facts_version;
        let store = ScriptedStore::new([Some(snap.clone())], []);
        let outcome = evaluate_with(&store, NO_DAMPING, scope(), Some(Uuid::from_u128(1)), now(), true)
            .await
            .expect("ok");
        assert_eq!(outcome, EvaluationOutcome::UpToDate { facts_version: 7 });
        assert!(store.applied().is_empty());

        // The silence sweep evaluates anyway: time, not facts, moved.
        let store = ScriptedStore::new([Some(snap)], [Ok(ApplyOutcome::Applied)]);
        let outcome = evaluate_with(&store, NO_DAMPING, scope(), None, now(), false).await.expect("ok");
        assert!(matches!(outcome, EvaluationOutcome::Applied { .. }), "{outcome:?}");
        assert_eq!(store.applied().len(), 1);
    }

    #[tokio::test]
    async fn redelivered_message_is_reported_as_already_processed() {
        let store = ScriptedStore::new([Some(failing_tenant())], [Ok(ApplyOutcome::AlreadyProcessed)]);
        let outcome = evaluate_with(&store, NO_DAMPING, scope(), Some(Uuid::from_u128(5)), now(), true)
            .await
            .expect("ok");
        assert_eq!(outcome, EvaluationOutcome::AlreadyProcessed);
    }

    #[tokio::test]
    async fn conflict_re_reads_and_plans_against_the_new_snapshot() {
        let first = failing_tenant();
        let mut second = failing_tenant();
        second.facts_version = 8;
        let store = ScriptedStore::new(
            [Some(first), Some(second)],
            [Ok(ApplyOutcome::Conflict), Ok(ApplyOutcome::Applied)],
        );
        let outcome = evaluate_with(&store, NO_DAMPING, scope(), None, now(), true).await.expect("ok");
        assert!(
            matches!(outcome, EvaluationOutcome::Applied { facts_version: 8, attempts: 2, .. }),
            "{outcome:?}"
        );
        let versions: Vec<i64> = store.applied().iter().map(|a| a.1).collect();
        assert_eq!(versions, [7, 8]);
    }

    #[tokio::test]
    async fn conflict_after_which_someone_else_evaluated_is_up_to_date() {
        let first = failing_tenant();
        let mut covered = failing_tenant();
        covered.facts_version = 8;
        covered.evaluated_facts_version = 8;
        let store = ScriptedStore::new([Some(first), Some(covered)], [Ok(ApplyOutcome::Conflict)]);
        let outcome = evaluate_with(&store, NO_DAMPING, scope(), Some(Uuid::from_u128(3)), now(), true)
            .await
            .expect("ok");
        assert_eq!(outcome, EvaluationOutcome::UpToDate { facts_version: 8 });
        assert_eq!(store.applied().len(), 1);
    }

    #[tokio::test]
    async fn endless_conflicts_give_up_as_superseded() {
        let store = ScriptedStore::new([Some(failing_tenant())], []);
        let outcome = evaluate_with(&store, NO_DAMPING, scope(), None, now(), false).await.expect("ok");
        assert_eq!(outcome, EvaluationOutcome::Superseded { attempts: MAX_APPLY_ATTEMPTS });
        assert_eq!(store.applied().len(), MAX_APPLY_ATTEMPTS as usize);
    }

    #[tokio::test]
    async fn store_errors_are_returned() {
        let store =
            ScriptedStore::new([Some(failing_tenant())], [Err(StoreError::Corrupt("bad row".to_owned()))]);
        let result = evaluate_with(&store, NO_DAMPING, scope(), None, now(), false).await;
        assert!(matches!(result, Err(StoreError::Corrupt(_))), "{result:?}");
    }

    #[test]
    fn change_counts_add_up() {
        let changes = [
            FindingChange::Resolve {
                id: FindingId(Uuid::from_u128(1)),
                expected_version: 1,
                summary: String::new(),
            },
            FindingChange::Update {
                id: FindingId(Uuid::from_u128(2)),
                expected_version: 1,
                severity: Severity::Low,
                summary: String::new(),
                evidence: json!({}),
                message: None,
            },
            FindingChange::Reopen {
                id: FindingId(Uuid::from_u128(3)),
                expected_version: 1,
                severity: Severity::Low,
                summary: String::new(),
                evidence: json!({}),
                message: None,
            },
        ];
        let counts = ChangeCounts::of(&changes);
        assert_eq!(counts, ChangeCounts { opened: 0, reopened: 1, reannounced: 0, updated: 1, resolved: 1 });
        assert_eq!(counts.total(), 3);
    }

    /// Compiles only if the evaluation future can move between threads (the worker spawns it).
    #[allow(dead_code)]
    fn evaluate_tenant_is_send(store: &dyn Store) {
        fn assert_send<T: Send>(_: &T) {}
        let future = evaluate_tenant(store, DampingDefaults::default(), scope(), None, now(), true);
        assert_send(&future);
    }
}
