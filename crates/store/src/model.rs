//! Domain types shared by the API, the worker and both storage backends.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

macro_rules! id_type {
    ($(#[$m:meta])* $name:ident) => {
        $(#[$m])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(pub Uuid);

        impl $name {
            /// A new, time-ordered id (UUID v7).
            pub fn new() -> Self {
                Self(Uuid::now_v7())
            }
        }

        impl Default for $name {
            fn default() -> Self {
                Self::new()
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.fmt(f)
            }
        }

        impl From<Uuid> for $name {
            fn from(u: Uuid) -> Self {
                Self(u)
            }
        }
    };
}

id_type!(/// An organisation: an MSP, our customer.
    OrgId);
id_type!(/// A tenant: one of the MSP's customers (one Entra tenant).
    TenantId);
id_type!(/// A collector installed at a tenant's site.
    CollectorId);
id_type!(/// An API key of an organisation.
    ApiKeyId);
id_type!(/// A finding.
    FindingId);

/// Every query on an organisation's data is scoped by this. Obtained only from an authenticated
/// principal, so a query across organisations is hard to write by accident.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct OrgScope {
    pub org_id: OrgId,
}

/// Every query on a tenant's data is scoped by this: the tenant and the organisation owning it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TenantScope {
    pub org_id: OrgId,
    pub tenant_id: TenantId,
}

impl TenantScope {
    pub fn org(&self) -> OrgScope {
        OrgScope { org_id: self.org_id }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Organization {
    pub id: OrgId,
    pub name: String,
    pub created_at: DateTime<Utc>,
}

/// Roles of a human or automation principal (API key holder).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Everything in the organisation, including keys, tenants and collectors.
    OrgAdmin,
    /// Reads everything and works findings.
    Technician,
    /// Reads only.
    ReadOnly,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::OrgAdmin => "org_admin",
            Role::Technician => "technician",
            Role::ReadOnly => "read_only",
        }
    }
}

impl FromStr for Role {
    type Err = UnknownValue;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "org_admin" => Ok(Role::OrgAdmin),
            "technician" => Ok(Role::Technician),
            "read_only" => Ok(Role::ReadOnly),
            other => Err(UnknownValue(other.to_owned())),
        }
    }
}

/// A stored text that is not one of the known values of an enum.
#[derive(Debug, Clone, thiserror::Error)]
#[error("unknown value {0:?}")]
pub struct UnknownValue(pub String);

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiKey {
    pub id: ApiKeyId,
    pub org_id: OrgId,
    pub name: String,
    pub role: Role,
    /// The first characters of the key, shown so a human can tell keys apart.
    pub prefix: String,
    pub created_at: DateTime<Utc>,
    pub revoked_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tenant {
    pub id: TenantId,
    pub org_id: OrgId,
    pub name: String,
    /// The customer's Entra tenant (directory) id, when known.
    pub entra_tenant_id: Option<String>,
    pub created_at: DateTime<Utc>,
}

/// A tenant with the figures the MSP overview needs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TenantSummary {
    pub tenant: Tenant,
    /// Findings that are open or acknowledged (present and not suppressed), by severity.
    pub open_critical: u32,
    pub open_high: u32,
    pub open_medium: u32,
    pub open_low: u32,
    pub open_info: u32,
    /// Findings suppressed by someone (present, but accepted for now).
    pub suppressed: u32,
    pub collectors: u32,
    /// Active collectors past their silence deadline.
    pub silent_collectors: u32,
    /// Rules the last evaluation could not decide (outcome "unknown").
    pub unknown_rules: u32,
    /// The most recent push of any of its collectors.
    pub last_seen_at: Option<DateTime<Utc>>,
}

impl TenantSummary {
    /// The tenant's health, 0 (worst) to 100:
    ///
    /// `100 − 40 × critical − 20 × high − 8 × medium − 3 × low − 15 × silent collectors
    /// − min(unknown rules, 10)`, at least 0.
    ///
    /// Only open and acknowledged findings count (a suppressed finding was accepted for now; an
    /// info finding is context). A silent collector weighs like a high finding: nothing is known
    /// about its site any more. An undecided rule costs a point, at most ten: missing data is
    /// worth looking at, but must not outweigh a real failure.
    pub fn health_score(&self) -> u8 {
        let penalty = 40 * u64::from(self.open_critical)
            + 20 * u64::from(self.open_high)
            + 8 * u64::from(self.open_medium)
            + 3 * u64::from(self.open_low)
            + 15 * u64::from(self.silent_collectors)
            + u64::from(self.unknown_rules.min(10));
        u8::try_from(100u64.saturating_sub(penalty)).unwrap_or(0)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CollectorStatus {
    /// Created, waiting for its one-time enrollment.
    Pending,
    /// Enrolled; may push.
    Active,
    /// Refused from now on.
    Revoked,
}

impl CollectorStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            CollectorStatus::Pending => "pending",
            CollectorStatus::Active => "active",
            CollectorStatus::Revoked => "revoked",
        }
    }
}

impl FromStr for CollectorStatus {
    type Err = UnknownValue;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "pending" => Ok(CollectorStatus::Pending),
            "active" => Ok(CollectorStatus::Active),
            "revoked" => Ok(CollectorStatus::Revoked),
            other => Err(UnknownValue(other.to_owned())),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Collector {
    pub id: CollectorId,
    pub org_id: OrgId,
    pub tenant_id: TenantId,
    pub name: String,
    pub status: CollectorStatus,
    /// Until when the one-time enrollment token is valid (pending collectors only).
    pub enrollment_expires_at: Option<DateTime<Utc>>,
    /// Raw 32-byte Ed25519 public key registered at enrollment.
    pub public_key: Option<Vec<u8>>,
    pub hostname: Option<String>,
    pub version: Option<String>,
    pub os: Option<String>,
    pub push_interval_secs: u32,
    pub enrolled_at: Option<DateTime<Utc>>,
    pub last_seen_at: Option<DateTime<Utc>>,
    /// When this collector counts as silent if it has not pushed again by then.
    pub silent_after: Option<DateTime<Utc>>,
    /// Results the collector reported dropping from its spool, as last reported.
    pub spool_dropped: u64,
    pub created_at: DateTime<Utc>,
    pub revoked_at: Option<DateTime<Utc>>,
}

impl Collector {
    pub fn scope(&self) -> TenantScope {
        TenantScope { org_id: self.org_id, tenant_id: self.tenant_id }
    }
}

/// What an enrollment stores: the key and what the collector said about itself.
#[derive(Debug, Clone)]
pub struct Enrollment {
    pub enrollment_token_hash: String,
    pub public_key: Vec<u8>,
    pub hostname: String,
    pub version: String,
    pub now: DateTime<Utc>,
    /// Deadline for the first push.
    pub silent_after: DateTime<Utc>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum EnrollError {
    #[error("no collector waits for this enrollment token")]
    UnknownToken,
    #[error("the enrollment token has expired")]
    Expired,
    #[error("the enrollment token was already used")]
    AlreadyUsed,
}

/// One probe result as the ingest stores it: the latest fact per (collector, probe, subject).
#[derive(Debug, Clone, PartialEq)]
pub struct FactWrite {
    pub probe: String,
    pub subject: String,
    pub observed_at: DateTime<Utc>,
    /// The typed wire output, as JSON.
    pub payload: serde_json::Value,
    /// A digest of the payload without volatile fields (timings), so that an unchanged result
    /// only moves `last_seen` of the current history run.
    pub digest: String,
}

/// A stored latest fact.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Fact {
    pub collector_id: CollectorId,
    pub probe: String,
    pub subject: String,
    pub observed_at: DateTime<Utc>,
    pub payload: serde_json::Value,
    pub digest: String,
    /// When the current value (same digest) was first seen, and how many results repeated it.
    pub first_seen_at: DateTime<Utc>,
    pub repeat_count: u64,
}

/// A batch as the ingest stores it.
#[derive(Debug, Clone)]
pub struct BatchWrite {
    pub collector_id: CollectorId,
    pub batch_id: Uuid,
    /// SHA-256 of the canonical batch body: a retry with the same id and another body is refused.
    pub body_hash: String,
    pub results: Vec<FactWrite>,
    pub received_at: DateTime<Utc>,
    pub collector_version: String,
    pub collector_hostname: String,
    pub collector_os: String,
    pub push_interval_secs: u32,
    pub spool_dropped: u64,
    /// New silence deadline for the collector.
    pub silent_after: DateTime<Utc>,
    /// W3C `traceparent` of the ingest span, carried through the outbox and the queue.
    pub traceparent: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IngestOutcome {
    /// Stored now, with its outbox message.
    Accepted { accepted: u32 },
    /// The same batch id with the same body was stored before; nothing changed.
    Duplicate { accepted: u32 },
    /// The same batch id was stored before with another body; nothing changed.
    Conflict,
}

/// A message waiting in the transactional outbox (and, in embedded mode, the queue itself).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OutboxMessage {
    /// Also the message id on the queue: consumers deduplicate on it.
    pub id: Uuid,
    pub org_id: OrgId,
    pub tenant_id: TenantId,
    pub kind: MessageKind,
    pub traceparent: Option<String>,
    pub created_at: DateTime<Utc>,
    /// How many times this row was claimed (published or handed to a local consumer).
    pub attempts: u32,
}

impl OutboxMessage {
    pub fn scope(&self) -> TenantScope {
        TenantScope { org_id: self.org_id, tenant_id: self.tenant_id }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum MessageKind {
    /// A batch was ingested: evaluate the tenant.
    BatchIngested { collector_id: CollectorId, batch_id: Uuid },
    /// The tenant's rule overrides or custom rules changed: evaluate it again.
    RulesChanged,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    Info,
    Low,
    Medium,
    High,
    Critical,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Low => "low",
            Severity::Medium => "medium",
            Severity::High => "high",
            Severity::Critical => "critical",
        }
    }
}

impl FromStr for Severity {
    type Err = UnknownValue;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "info" => Ok(Severity::Info),
            "low" => Ok(Severity::Low),
            "medium" => Ok(Severity::Medium),
            "high" => Ok(Severity::High),
            "critical" => Ok(Severity::Critical),
            other => Err(UnknownValue(other.to_owned())),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FindingStatus {
    /// Failing, and nobody has said they are on it.
    Open,
    /// Failing, and someone is on it.
    Acknowledged,
    /// Failing, and accepted until `suppressed_until`; then announced again if it still fails.
    Suppressed,
    /// Passing (or no longer observed). Reopens if it fails again.
    Resolved,
}

impl FindingStatus {
    pub const ALL: [FindingStatus; 4] = [
        FindingStatus::Open,
        FindingStatus::Acknowledged,
        FindingStatus::Suppressed,
        FindingStatus::Resolved,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            FindingStatus::Open => "open",
            FindingStatus::Acknowledged => "acknowledged",
            FindingStatus::Suppressed => "suppressed",
            FindingStatus::Resolved => "resolved",
        }
    }

    /// The problem is present (open, acknowledged or suppressed), as opposed to resolved.
    pub fn is_active(self) -> bool {
        self != FindingStatus::Resolved
    }
}

impl FromStr for FindingStatus {
    type Err = UnknownValue;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        FindingStatus::ALL
            .into_iter()
            .find(|status| status.as_str() == s)
            .ok_or_else(|| UnknownValue(s.to_owned()))
    }
}

/// A finding: one rule failing for one subject of one tenant. Keyed by its fingerprint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Finding {
    pub id: FindingId,
    pub org_id: OrgId,
    pub tenant_id: TenantId,
    /// Stable key `(rule id, subject)` within the tenant.
    pub fingerprint: String,
    pub rule_id: String,
    pub subject: String,
    pub severity: Severity,
    pub status: FindingStatus,
    pub title: String,
    pub summary: String,
    pub evidence: serde_json::Value,
    pub opened_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub resolved_at: Option<DateTime<Utc>>,
    pub reopen_count: u32,
    /// Optimistic-concurrency guard: bumped by every change.
    pub version: i64,
    /// The collector whose facts the finding rests on; `None` for a tenant-wide finding.
    pub collector_id: Option<CollectorId>,
    /// Who acknowledged it and when (status `acknowledged`).
    pub acknowledged_at: Option<DateTime<Utc>>,
    pub acknowledged_by: Option<String>,
    /// Until when, why and by whom it is suppressed (status `suppressed`).
    pub suppressed_until: Option<DateTime<Utc>>,
    pub suppression_reason: Option<String>,
    pub suppressed_by: Option<String>,
    /// The message behind `summary` (key and arguments), when the evaluator stored one.
    pub message: Option<serde_json::Value>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FindingEventKind {
    Opened,
    Updated,
    Resolved,
    Reopened,
    Acknowledged,
    Suppressed,
    Unsuppressed,
    /// The suppression ran out while the problem was still there: announced again (open).
    SuppressionExpired,
    /// Someone asked the collector(s) behind the finding to run its probes now.
    RetestRequested,
}

impl FindingEventKind {
    pub const ALL: [FindingEventKind; 9] = [
        FindingEventKind::Opened,
        FindingEventKind::Updated,
        FindingEventKind::Resolved,
        FindingEventKind::Reopened,
        FindingEventKind::Acknowledged,
        FindingEventKind::Suppressed,
        FindingEventKind::Unsuppressed,
        FindingEventKind::SuppressionExpired,
        FindingEventKind::RetestRequested,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            FindingEventKind::Opened => "opened",
            FindingEventKind::Updated => "updated",
            FindingEventKind::Resolved => "resolved",
            FindingEventKind::Reopened => "reopened",
            FindingEventKind::Acknowledged => "acknowledged",
            FindingEventKind::Suppressed => "suppressed",
            FindingEventKind::Unsuppressed => "unsuppressed",
            FindingEventKind::SuppressionExpired => "suppression_expired",
            FindingEventKind::RetestRequested => "retest_requested",
        }
    }
}

impl FromStr for FindingEventKind {
    type Err = UnknownValue;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        FindingEventKind::ALL
            .into_iter()
            .find(|kind| kind.as_str() == s)
            .ok_or_else(|| UnknownValue(s.to_owned()))
    }
}

/// One transition of a finding, with who caused it and when.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FindingEvent {
    pub id: Uuid,
    pub finding_id: FindingId,
    pub kind: FindingEventKind,
    /// `system` for the evaluator, otherwise the principal.
    pub actor: String,
    pub at: DateTime<Utc>,
    pub severity: Severity,
    pub summary: String,
    /// What the person wrote: the acknowledgement note or the suppression reason.
    pub note: Option<String>,
    /// Until when a `suppressed` event suppresses.
    pub suppressed_until: Option<DateTime<Utc>>,
}

/// What the worker read to evaluate a tenant.
#[derive(Debug, Clone)]
pub struct TenantSnapshot {
    pub scope: TenantScope,
    /// Bumped by every ingest of the tenant.
    pub facts_version: i64,
    /// The `facts_version` the last applied evaluation saw.
    pub evaluated_facts_version: i64,
    pub collectors: Vec<Collector>,
    pub facts: Vec<Fact>,
    /// Every finding of the tenant (open and resolved: a resolved one may reopen).
    pub findings: Vec<Finding>,
    /// Flap-damping streaks of transitions in progress.
    pub streaks: Vec<FindingStreak>,
    /// Rules the last applied evaluation could not decide.
    pub unknown_rules: u32,
}

/// Consecutive evaluations of one fingerprint that disagree with its finding's state: `fails`
/// towards opening (no finding, or a resolved one), `passes` towards resolving (an open,
/// acknowledged or suppressed one). Exists only while such a transition is pending.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FindingStreak {
    pub fingerprint: String,
    pub fails: u32,
    pub passes: u32,
    pub updated_at: DateTime<Utc>,
}

/// A change to one streak, guarded by the counts the snapshot held.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StreakChange {
    /// Stores `(fails, passes)`; `expected` is the snapshot's `(fails, passes)`, or `None` if it
    /// had no streak for this fingerprint.
    Set { fingerprint: String, expected: Option<(u32, u32)>, fails: u32, passes: u32 },
    /// Removes the streak (the transition happened, or the evaluations agree with the state again).
    Clear { fingerprint: String, expected: (u32, u32) },
}

impl StreakChange {
    pub fn fingerprint(&self) -> &str {
        match self {
            StreakChange::Set { fingerprint, .. } | StreakChange::Clear { fingerprint, .. } => fingerprint,
        }
    }
}

/// Everything one evaluation writes, applied all or nothing by
/// [`Store::apply_evaluation`](crate::Store::apply_evaluation).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct EvaluationChanges {
    pub findings: Vec<FindingChange>,
    pub streaks: Vec<StreakChange>,
    /// The tenant's new count of undecided rules; `None` when it did not change.
    pub unknown_rules: Option<u32>,
    /// The rule's message (`wbd_rules::Message`: text key and arguments) by fingerprint, for the
    /// findings this evaluation opens or changes: the API renders summaries from it in the
    /// caller's language.
    pub messages: std::collections::BTreeMap<String, serde_json::Value>,
    /// The W3C `traceparent` of the evaluation, kept on the finding events it writes so their
    /// deliveries continue the trace (collector → ingest → evaluation → ticket).
    pub traceparent: Option<String>,
}

/// What the rules concluded about one finding, computed by the worker from a snapshot.
#[derive(Debug, Clone, PartialEq)]
pub enum FindingChange {
    Open {
        fingerprint: String,
        rule_id: String,
        subject: String,
        /// The collector whose facts it rests on (`None`: tenant-wide).
        collector_id: Option<CollectorId>,
        severity: Severity,
        title: String,
        summary: String,
        evidence: serde_json::Value,
    },
    /// A resolved finding failing again.
    Reopen {
        id: FindingId,
        expected_version: i64,
        severity: Severity,
        summary: String,
        evidence: serde_json::Value,
    },
    /// A suppressed finding whose suppression ran out while it still fails: open again.
    Reannounce {
        id: FindingId,
        expected_version: i64,
        severity: Severity,
        summary: String,
        evidence: serde_json::Value,
    },
    /// An open, acknowledged or suppressed finding whose severity, summary or evidence changed.
    Update {
        id: FindingId,
        expected_version: i64,
        severity: Severity,
        summary: String,
        evidence: serde_json::Value,
    },
    /// An open, acknowledged or suppressed finding that passes now (or is no longer observed).
    Resolve { id: FindingId, expected_version: i64, summary: String },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApplyOutcome {
    Applied,
    /// The message id was applied before; nothing changed.
    AlreadyProcessed,
    /// Facts or findings moved since the snapshot; nothing changed. Re-read and try again.
    Conflict,
}

/// What a person (or automation) does to a finding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FindingAction {
    /// "I am on it": open → acknowledged.
    Acknowledge { note: Option<String> },
    /// "Known, accept it until then": open, acknowledged or suppressed → suppressed.
    Suppress { reason: String, until: DateTime<Utc> },
    /// Ends a suppression early: suppressed → open.
    Unsuppress,
}

/// Why an action does not apply to a finding in its current status.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct TransitionRefused(pub String);

impl FindingAction {
    pub fn event_kind(&self) -> FindingEventKind {
        match self {
            FindingAction::Acknowledge { .. } => FindingEventKind::Acknowledged,
            FindingAction::Suppress { .. } => FindingEventKind::Suppressed,
            FindingAction::Unsuppress => FindingEventKind::Unsuppressed,
        }
    }

    /// Whether the action applies to a finding in `status`; otherwise what to tell the person.
    pub fn check(&self, status: FindingStatus) -> Result<(), TransitionRefused> {
        use FindingStatus::*;
        let refused = |why: &str| Err(TransitionRefused(why.to_owned()));
        match (self, status) {
            (FindingAction::Acknowledge { .. }, Open) => Ok(()),
            (FindingAction::Acknowledge { .. }, Acknowledged) => {
                refused("the finding is already acknowledged")
            }
            (FindingAction::Acknowledge { .. }, Suppressed) => {
                refused("the finding is suppressed; unsuppress it first to acknowledge it")
            }
            (FindingAction::Suppress { .. }, Open | Acknowledged | Suppressed) => Ok(()),
            (FindingAction::Unsuppress, Suppressed) => Ok(()),
            (FindingAction::Unsuppress, Open | Acknowledged) => refused("the finding is not suppressed"),
            (_, Resolved) => refused(
                "the finding is resolved: it passes now, so there is nothing to act on until it fails again",
            ),
        }
    }
}

/// What [`Store::act_on_finding`](crate::Store::act_on_finding) did.
#[derive(Debug, Clone, PartialEq)]
pub enum ActionOutcome {
    /// Done, with one event; the finding as it is now.
    Applied(Box<Finding>),
    /// The organisation has no such finding.
    NotFound,
    /// The finding's version is no longer the one the caller saw; nothing changed.
    Changed { current_version: i64 },
    /// The action does not apply to the finding's status; nothing changed.
    Refused(TransitionRefused),
}

/// A command to store for a collector.
#[derive(Debug, Clone, PartialEq)]
pub struct CommandWrite {
    pub collector_id: CollectorId,
    /// The command as the wire schema serialises it (`wbd_wire::CommandAction`).
    pub action: serde_json::Value,
}

/// A stored command for a collector.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CollectorCommandRecord {
    /// Also the command id the collector sees (it acts on each id once).
    pub id: Uuid,
    pub collector_id: CollectorId,
    /// The finding whose re-test asked for it.
    pub finding_id: Option<FindingId>,
    pub action: serde_json::Value,
    pub requested_by: String,
    pub created_at: DateTime<Utc>,
    /// The batch whose answer carried it; a retry of that batch carries it again.
    pub delivered_batch_id: Option<Uuid>,
    pub delivered_at: Option<DateTime<Utc>>,
}

/// Filters of `GET /v1/findings`.
#[derive(Debug, Clone, Default)]
pub struct FindingFilter {
    pub tenant_id: Option<TenantId>,
    pub status: Option<FindingStatus>,
    pub severity: Option<Severity>,
    pub rule_id: Option<String>,
    /// Return findings with an id strictly below this one (ids are time-ordered; newest first).
    pub before: Option<FindingId>,
    pub limit: u32,
}

/// Which level a rule override or custom rule applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RuleScope {
    /// Every tenant of the organisation.
    Org,
    /// One tenant (over the organisation's).
    Tenant(TenantId),
}

impl RuleScope {
    pub fn tenant_id(self) -> Option<TenantId> {
        match self {
            RuleScope::Org => None,
            RuleScope::Tenant(t) => Some(t),
        }
    }

    /// The key stored with the row: `org`, or the tenant id.
    pub fn key(self) -> String {
        match self {
            RuleScope::Org => "org".to_owned(),
            RuleScope::Tenant(t) => t.to_string(),
        }
    }
}

/// A stored override of one shipped rule (`settings` is a `wbd_rules::RuleSettings` document).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredRuleSetting {
    pub tenant_id: Option<TenantId>,
    pub rule_id: String,
    pub settings: serde_json::Value,
    pub updated_at: DateTime<Utc>,
    pub updated_by: String,
}

/// A stored custom rule (`definition` is a `wbd_rules::custom::CustomRule` document).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredCustomRule {
    pub tenant_id: Option<TenantId>,
    pub rule_id: String,
    pub definition: serde_json::Value,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub updated_by: String,
}

/// One change to an organisation's configuration: who, what, when, before and after.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditEntry {
    pub id: Uuid,
    pub tenant_id: Option<TenantId>,
    pub actor: String,
    /// E.g. `rule_setting.put`, `custom_rule.delete`.
    pub action: String,
    /// What was changed, e.g. the rule id.
    pub target: String,
    pub before: Option<serde_json::Value>,
    pub after: Option<serde_json::Value>,
    pub at: DateTime<Utc>,
}

/// Which table a rule-configuration write goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RuleConfigKind {
    /// An override of a shipped rule (`rule_settings`).
    Setting,
    /// A custom rule (`custom_rules`).
    Custom,
}

impl RuleConfigKind {
    pub fn audit_prefix(self) -> &'static str {
        match self {
            RuleConfigKind::Setting => "rule_setting",
            RuleConfigKind::Custom => "custom_rule",
        }
    }
}

/// What [`crate::Store::write_rule_config`] did.
#[derive(Debug, Clone, PartialEq)]
pub enum RuleConfigWrite {
    /// Written; the document that was there before, if any.
    Written { before: Option<serde_json::Value> },
    /// The scope names a tenant the organisation does not have; nothing changed.
    NoSuchTenant,
}
