//! Findings, their events and lifecycle, evaluations of a tenant, and collector commands.

use std::str::FromStr;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::*;

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
    /// The active finding whose failure explains this one (the rule pack's `explained_by`):
    /// this one is its consequence, shown under it and not counted in the health score. Kept
    /// current by every evaluation while the finding is active; as it was when it resolved.
    pub root_finding_id: Option<FindingId>,
    /// Whether integrations were told about this finding on its own. One that opened under a
    /// root is not (no ticket of its own) until its root resolves while it still fails.
    pub announced: bool,
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
    /// It opened as the consequence of another finding; that root cause resolved while this one
    /// still fails, so it is announced on its own now (integrations hear it as opened).
    RootCauseResolved,
}

impl FindingEventKind {
    pub const ALL: [FindingEventKind; 10] = [
        FindingEventKind::Opened,
        FindingEventKind::Updated,
        FindingEventKind::Resolved,
        FindingEventKind::Reopened,
        FindingEventKind::Acknowledged,
        FindingEventKind::Suppressed,
        FindingEventKind::Unsuppressed,
        FindingEventKind::SuppressionExpired,
        FindingEventKind::RetestRequested,
        FindingEventKind::RootCauseResolved,
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
            FindingEventKind::RootCauseResolved => "root_cause_resolved",
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
    /// The root cause the finding was grouped under, when it had not been announced on its own:
    /// such an event is not delivered to integrations (the root's ticket stands for it).
    pub root_finding_id: Option<FindingId>,
}

/// What the worker read to evaluate a tenant.
#[derive(Debug, Clone)]
pub struct TenantSnapshot {
    pub scope: TenantScope,
    /// Bumped by every ingest of the tenant.
    pub facts_version: i64,
    /// The `facts_version` the last applied evaluation saw.
    pub evaluated_facts_version: i64,
    /// Moves with every change to the tenant's rule configuration (its own or its
    /// organisation's): rules read at this version or later are current.
    pub rules_version: i64,
    pub collectors: Vec<Collector>,
    pub facts: Vec<SnapshotFact>,
    /// Every finding of the tenant (open and resolved: a resolved one may reopen).
    pub findings: Vec<Finding>,
    /// Flap-damping streaks of transitions in progress.
    pub streaks: Vec<FindingStreak>,
    /// Rules the last applied evaluation could not decide.
    pub unknown_rules: u32,
    /// The `facts_version` at which each probe (by name) last reported for the tenant, from any
    /// collector: what tells whether a rule has a new result to judge.
    pub probe_versions: std::collections::BTreeMap<String, i64>,
}

/// A tenant's latest fact as an evaluation reads it (see [`TenantSnapshot`]).
#[derive(Debug, Clone, PartialEq)]
pub struct SnapshotFact {
    pub collector_id: CollectorId,
    pub probe: String,
    pub subject: String,
    pub observed_at: DateTime<Utc>,
    /// The digest of the output without its timings (see [`FactWrite::digest`]): two facts
    /// with one digest differ in their timings at most.
    pub digest: String,
    pub payload: SnapshotPayload,
}

/// What a snapshot holds of a fact's output.
#[derive(Debug, Clone, PartialEq)]
pub enum SnapshotPayload {
    /// The output's JSON form, as the newest result had it.
    Read(serde_json::Value),
    /// Not read, because the reader said it holds an output with this digest: the newest
    /// result's timings, which turn that output into this one
    /// (`wbd_wire::ProbeOutput::set_timings`).
    Known(wbd_wire::Timings),
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
    /// Root causes (the rule pack's `explained_by`) of the tenant's active findings, where this
    /// evaluation changes them; applied after `findings`.
    pub groups: Vec<GroupChange>,
    /// The W3C `traceparent` of the evaluation, kept on the finding events it writes so their
    /// deliveries continue the trace (collector → ingest → evaluation → ticket).
    pub traceparent: Option<String>,
}

/// The root cause an active finding is grouped under from this evaluation on, by fingerprints
/// (a root that opens in the same evaluation has no id yet); `None` stands alone.
///
/// A finding that opens or reopens under a root is not announced to integrations; one whose
/// root goes away while it is still open or acknowledged is announced then
/// ([`FindingEventKind::RootCauseResolved`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupChange {
    pub fingerprint: String,
    pub root_fingerprint: Option<String>,
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
        /// The rule's message (`wbd_rules::Message`: text key and arguments), from which the
        /// API renders the summary in the caller's language; `None` keeps the one stored.
        message: Option<serde_json::Value>,
    },
    /// A resolved finding failing again.
    Reopen {
        id: FindingId,
        expected_version: i64,
        severity: Severity,
        summary: String,
        evidence: serde_json::Value,
        message: Option<serde_json::Value>,
    },
    /// A suppressed finding whose suppression ran out while it still fails: open again.
    Reannounce {
        id: FindingId,
        expected_version: i64,
        severity: Severity,
        summary: String,
        evidence: serde_json::Value,
        message: Option<serde_json::Value>,
    },
    /// An open, acknowledged or suppressed finding whose severity, summary or evidence changed.
    Update {
        id: FindingId,
        expected_version: i64,
        severity: Severity,
        summary: String,
        evidence: serde_json::Value,
        message: Option<serde_json::Value>,
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
    /// Not delivered by then, it never is.
    pub expires_at: DateTime<Utc>,
    pub cancelled_at: Option<DateTime<Utc>>,
    /// Who cancelled it (`api_key:<id>`).
    pub cancelled_by: Option<String>,
}

impl CollectorCommandRecord {
    /// What became of the command as of `now`.
    pub fn state(&self, now: DateTime<Utc>) -> CommandState {
        if self.delivered_batch_id.is_some() {
            CommandState::Delivered
        } else if self.cancelled_at.is_some() {
            CommandState::Cancelled
        } else if self.expires_at <= now {
            CommandState::Expired
        } else {
            CommandState::Pending
        }
    }
}

/// What became of a collector command.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CommandState {
    /// Waiting for the collector's next push.
    Pending,
    /// Handed out in the answer to a push.
    Delivered,
    /// Not delivered before it ran out; it never will be.
    Expired,
    /// Cancelled by a person before it was delivered.
    Cancelled,
}

impl CommandState {
    pub fn as_str(self) -> &'static str {
        match self {
            CommandState::Pending => "pending",
            CommandState::Delivered => "delivered",
            CommandState::Expired => "expired",
            CommandState::Cancelled => "cancelled",
        }
    }
}

/// What became of [`crate::Store::cancel_collector_command`].
#[derive(Debug, Clone, PartialEq)]
pub enum CommandCancel {
    /// Cancelled now; the command as it is.
    Cancelled(Box<CollectorCommandRecord>),
    /// It is no longer pending (delivered, expired or cancelled before); nothing changed.
    NotPending(Box<CollectorCommandRecord>),
    /// The organisation's collector has no such command.
    NotFound,
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
