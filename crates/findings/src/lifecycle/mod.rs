//! The findings lifecycle as the evaluator drives it: from the rules' verdicts, the tenant's
//! findings and its flap-damping streaks to the changes one evaluation writes ([`plan_changes`]).
//!
//! Per (rule, subject), that is per finding fingerprint:
//!
//! - **Flap damping.** A finding opens (or a resolved one reopens) only after `open_after`
//!   consecutive failing evaluations, and an open, acknowledged or suppressed one resolves only
//!   after `resolve_after` consecutive passing ones ([`Damping`], per rule). The count lives in a
//!   streak row that exists only between the first evaluation that disagrees with the finding's
//!   state and the transition (or the evaluation that agrees again), so an evaluation whose
//!   outcomes match the findings still writes nothing. With the default 1/1 no streak is ever
//!   written.
//! - **What "consecutive" counts.** An evaluation counts for a rule once per new result of a
//!   probe the rule reads: only an evaluation that saw such a result no earlier evaluation saw
//!   (the probe reported at a `facts_version` after the last evaluated one) advances the rule's
//!   streaks, and a burst of batches coalesced into one evaluation counts once. So a slow probe
//!   (idle connections, every few hours) is not counted again at each five-minute push of the
//!   endpoint probe. Re-evaluations of the same facts (the silence and suppression sweeps) do not
//!   count — except for rules that read no probe results (such as `collector-silent`): they judge
//!   time and collector state, so every evaluation is a new observation for them. A custom rule
//!   (whose reads are not declared) counts any new facts of the tenant.
//! - **Stale.** While the collector a finding rests on is silent (active and past its silence
//!   deadline), its facts are old: evaluations over them neither open, reopen, update, resolve nor
//!   re-announce the finding, nor move its streak ([`is_stale`]). The finding is held until the
//!   collector pushes again; the API shows it as `stale`.
//! - **Unknown.** An evaluation the rule could not decide leaves the finding and its streak as
//!   they are; the tenant's count of rules with an undecided evaluation is kept up to date.
//! - **Suppression expiry.** A suppressed finding whose suppression ran out and that is still
//!   present (not resolved by this evaluation, not held) is announced again: back to open, with
//!   an event — also when nothing evaluates it any more (a removed custom rule), so that the
//!   sweep looking for expired suppressions comes to an end.
//! - A finding of a shipped rule that no evaluation mentions any more (its collector was revoked)
//!   resolves at once, as no longer observed.
//! - **Root causes.** A rule of the pack may name the rules whose failure explains its own
//!   (`explained_by`). An active finding of such a rule is grouped under an active finding of
//!   the first of those rules that has one (for a rule with several, the first by subject): it
//!   is that root's consequence. Every evaluation keeps the grouping of the tenant's active
//!   findings current ([`GroupChange`], written only where it changes). A consequence is not
//!   counted in the health score; one that opens under its root gets no ticket of its own (its
//!   events are not delivered) until the root resolves while it still fails.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use chrono::{DateTime, Utc};
use uuid::Uuid;
use wbd_rules::{Evaluation, Outcome, PackSettings};
use wbd_store::{
    Collector, CollectorId, CollectorStatus, EvaluationChanges, Finding, FindingChange, FindingId,
    FindingStatus, FindingStreak, GroupChange, Severity, StreakChange, TenantSnapshot,
};

/// Flap damping of one rule: open after `open_after` consecutive failing evaluations, resolve
/// after `resolve_after` consecutive passing ones. Both are at least 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Damping {
    pub open_after: u32,
    pub resolve_after: u32,
}

impl Damping {
    /// No damping: the first failure opens, the first pass resolves.
    pub const NONE: Damping = Damping { open_after: 1, resolve_after: 1 };

    pub fn new(open_after: u32, resolve_after: u32) -> Damping {
        Damping { open_after: open_after.max(1), resolve_after: resolve_after.max(1) }
    }
}

impl From<wbd_rules::FlapDamping> for Damping {
    fn from(flap: wbd_rules::FlapDamping) -> Self {
        Damping::new(flap.open_after, flap.resolve_after)
    }
}

/// Server-wide damping that replaces the rule pack's per-rule defaults (settings
/// `[rules] open_after` / `resolve_after`); per-tenant overrides still win over it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DampingDefaults {
    pub open_after: Option<u32>,
    pub resolve_after: Option<u32>,
}

/// The damping of every rule for one tenant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DampingTable {
    rules: HashMap<String, Damping>,
    /// Rules outside the shipped pack (custom rules).
    fallback: Damping,
}

impl Default for DampingTable {
    fn default() -> Self {
        DampingTable::uniform(Damping::NONE)
    }
}

impl DampingTable {
    /// The same damping for every rule.
    pub fn uniform(damping: Damping) -> Self {
        DampingTable { rules: HashMap::new(), fallback: damping }
    }

    /// `damping` for `rule_id`, the rest unchanged.
    pub fn with_rule(mut self, rule_id: &str, damping: Damping) -> Self {
        self.rules.insert(rule_id.to_owned(), damping);
        self
    }

    /// Each shipped rule's damping: the tenant's override (`pack`, usually the organisation's
    /// and the tenant's overrides merged), else the server-wide default, else the pack's default
    /// for the rule. Rules outside the pack get the server-wide default, else none.
    pub fn for_tenant(pack: &PackSettings, defaults: DampingDefaults) -> Self {
        let valid = |n: &u32| (1..=wbd_rules::MAX_FLAP_COUNT).contains(n);
        let rules = wbd_rules::rules()
            .iter()
            .map(|info| {
                let over = pack.rule(info.id);
                let open_after =
                    over.open_after.filter(valid).or(defaults.open_after).unwrap_or(info.flap.open_after);
                let resolve_after = over
                    .resolve_after
                    .filter(valid)
                    .or(defaults.resolve_after)
                    .unwrap_or(info.flap.resolve_after);
                (info.id.to_owned(), Damping::new(open_after, resolve_after))
            })
            .collect();
        let fallback = Damping::new(defaults.open_after.unwrap_or(1), defaults.resolve_after.unwrap_or(1));
        DampingTable { rules, fallback }
    }

    pub fn get(&self, rule_id: &str) -> Damping {
        self.rules.get(rule_id).copied().unwrap_or(self.fallback)
    }
}

/// The key of a finding within its tenant: the rule and the subject it failed for.
pub fn fingerprint(rule_id: &str, subject: &str) -> String {
    format!("{rule_id}|{subject}")
}

/// The collector whose facts a verdict about `subject` rests on, for per-collector rules.
///
/// Per-collector rules end their subject with `@<collector id>` (see the `wbd_rules` crate docs,
/// "Subjects"); the rules' `Evaluation` carries no collector field, so this is the one place that
/// reads it out of the subject. Tenant-wide subjects (and `collector-silent`, whose subject is
/// the bare collector id and which judges the collector itself) give `None`.
pub fn collector_of(subject: &str) -> Option<CollectorId> {
    let (_, id) = subject.rsplit_once('@')?;
    Uuid::parse_str(id).ok().map(CollectorId)
}

/// Whether the rule reads probe results (rather than only collector state and time). Rules
/// outside the shipped pack (custom rules) read facts.
/// Whether this evaluation gives `rule_id` a new observation (see the module docs).
fn has_new_result(rule_id: &str, snapshot: &TenantSnapshot, fresh_facts: bool) -> bool {
    match wbd_rules::rules().iter().find(|info| info.id == rule_id) {
        None => fresh_facts,
        Some(info) if info.reads.is_empty() => true,
        Some(info) => info.reads.iter().any(|probe| {
            snapshot.probe_versions.get(probe.as_str()).is_some_and(|v| *v > snapshot.evaluated_facts_version)
        }),
    }
}

pub fn reads_probes(rule_id: &str) -> bool {
    wbd_rules::rules().iter().find(|info| info.id == rule_id).is_none_or(|info| !info.reads.is_empty())
}

/// Whether a collector is silent at `now`: active, and past the deadline its last push set.
pub fn is_silent(collector: &Collector, now: DateTime<Utc>) -> bool {
    collector.status == CollectorStatus::Active
        && collector.silent_after.is_some_and(|deadline| deadline < now)
}

/// Whether a verdict of `rule_id` resting on `collector` (see [`collector_of`]) is stale at
/// `now`: the rule reads probe results, and the collector behind them is silent — for a
/// tenant-wide verdict, every active collector of the tenant is. `collectors` are the tenant's.
pub fn is_stale(
    rule_id: &str,
    collector: Option<CollectorId>,
    collectors: &[Collector],
    now: DateTime<Utc>,
) -> bool {
    if !reads_probes(rule_id) {
        return false;
    }
    match collector {
        Some(id) => collectors.iter().any(|c| c.id == id && is_silent(c, now)),
        None => {
            let mut active = collectors.iter().filter(|c| c.status == CollectorStatus::Active).peekable();
            active.peek().is_some() && active.all(|c| is_silent(c, now))
        }
    }
}

pub fn store_severity(severity: wbd_rules::Severity) -> Severity {
    match severity {
        wbd_rules::Severity::Info => Severity::Info,
        wbd_rules::Severity::Low => Severity::Low,
        wbd_rules::Severity::Medium => Severity::Medium,
        wbd_rules::Severity::High => Severity::High,
        wbd_rules::Severity::Critical => Severity::Critical,
    }
}

/// Everything one evaluation of the tenant writes (see the module docs): finding changes, streak
/// changes, and the tenant's count of undecided rules if it changed.
///
/// Findings of rules outside the shipped pack that no evaluation mentions are left alone. Changes
/// are ordered by fingerprint, whatever the order of `evaluations`, so two evaluations of the
/// same tenant touch findings in the same order.
pub fn plan_changes(
    snapshot: &TenantSnapshot,
    evaluations: &[Evaluation],
    damping: &DampingTable,
    now: DateTime<Utc>,
) -> EvaluationChanges {
    let mut findings: BTreeMap<&str, &Finding> = BTreeMap::new();
    for finding in &snapshot.findings {
        findings.entry(finding.fingerprint.as_str()).or_insert(finding);
    }
    let streaks: BTreeMap<&str, &FindingStreak> =
        snapshot.streaks.iter().map(|s| (s.fingerprint.as_str(), s)).collect();
    let fresh_facts = snapshot.facts_version > snapshot.evaluated_facts_version;

    let mut plan = Plan::default();
    let mut evaluated: HashSet<String> = HashSet::new();
    let mut undecided: BTreeSet<&str> = BTreeSet::new();
    for evaluation in evaluations {
        let key = fingerprint(&evaluation.rule_id, &evaluation.subject);
        if !evaluated.insert(key.clone()) {
            // Two verdicts for one finding would make the store refuse the whole evaluation
            // (a second `Open` conflicts with the first) on every retry; keep the first.
            tracing::warn!(fingerprint = %key, "duplicate evaluation for one finding; keeping the first");
            continue;
        }
        let collector = collector_of(&evaluation.subject);
        if is_stale(&evaluation.rule_id, collector, &snapshot.collectors, now) {
            continue;
        }
        if matches!(evaluation.outcome, Outcome::Unknown { .. }) {
            undecided.insert(&evaluation.rule_id);
        }
        let finding = findings.get(key.as_str()).copied();
        let streak = streaks.get(key.as_str()).copied();
        let step = Step {
            key,
            evaluation,
            collector,
            finding,
            streak,
            damping: damping.get(&evaluation.rule_id),
            counts: has_new_result(&evaluation.rule_id, snapshot, fresh_facts),
            now,
        };
        step.plan(&mut plan);
    }

    let shipped: HashSet<&str> = wbd_rules::rules().iter().map(|rule| rule.id).collect();
    for (key, finding) in &findings {
        if evaluated.contains(*key) || !finding.status.is_active() {
            continue;
        }
        if !shipped.contains(finding.rule_id.as_str()) {
            // A custom rule's finding nothing evaluates (the rule was removed): it stays as it
            // is, but a suppression of it still runs out.
            if let Some(change) = reannounce_if_expired(finding, None, now) {
                plan.findings.insert((*key).to_owned(), change);
            }
        } else {
            plan.findings.insert(
                (*key).to_owned(),
                FindingChange::Resolve {
                    id: finding.id,
                    expected_version: finding.version,
                    summary: format!(
                        "No longer observed: nothing currently reports on {}, so \"{}\" is no longer \
                         checked for it (for example, its collector was revoked).",
                        finding.subject, finding.title
                    ),
                },
            );
        }
    }
    // A streak nothing evaluates any more will never complete.
    for (key, streak) in &streaks {
        if !evaluated.contains(*key) {
            plan.streaks.insert((*key).to_owned(), clear(streak));
        }
    }

    let groups = plan_groups(&findings, &plan.findings);
    let unknown_rules = u32::try_from(undecided.len()).unwrap_or(u32::MAX);
    EvaluationChanges {
        findings: plan.findings.into_values().collect(),
        streaks: plan.streaks.into_values().collect(),
        unknown_rules: (unknown_rules != snapshot.unknown_rules).then_some(unknown_rules),
        // The changes' messages are filled in by the evaluator (`evaluate::attach_messages`).
        groups,
        // Filled in by the evaluator from its span.
        traceparent: None,
    }
}

/// The root causes of the findings active after `changes` (see the module docs, "Root
/// causes"), where they differ from what is stored. `findings` are the tenant's, by fingerprint.
fn plan_groups(
    findings: &BTreeMap<&str, &Finding>,
    changes: &BTreeMap<String, FindingChange>,
) -> Vec<GroupChange> {
    // Each active finding after this evaluation: (fingerprint, rule, stored id, stored root).
    let mut active: Vec<(&str, &str, Option<FindingId>, Option<FindingId>)> = Vec::new();
    for (key, finding) in findings {
        let active_after = match changes.get(*key) {
            Some(FindingChange::Resolve { .. }) => false,
            Some(_) => true,
            None => finding.status.is_active(),
        };
        if active_after {
            active.push((key, finding.rule_id.as_str(), Some(finding.id), finding.root_finding_id));
        }
    }
    for change in changes.values() {
        if let FindingChange::Open { fingerprint, rule_id, .. } = change {
            active.push((fingerprint, rule_id, None, None));
        }
    }
    active.sort_unstable_by_key(|(key, ..)| *key);
    let mut groups = Vec::new();
    for (key, rule_id, _, stored_root) in &active {
        let explained_by = wbd_rules::rules()
            .iter()
            .find(|info| info.id == *rule_id)
            .map_or(&[][..], |info| info.explained_by);
        // The first cause of the pack's list that is present; within a rule, the first subject.
        let root = explained_by.iter().find_map(|cause| active.iter().find(|(_, rule, ..)| rule == cause));
        let stored = stored_root.and_then(|id| active.iter().find(|(.., own, _)| *own == Some(id)));
        let same = match (root, stored) {
            (None, None) => stored_root.is_none(),
            (Some(root), Some(stored)) => root.0 == stored.0,
            _ => false,
        };
        if !same {
            groups.push(GroupChange {
                fingerprint: (*key).to_owned(),
                root_fingerprint: root.map(|(root_key, ..)| (*root_key).to_owned()),
            });
        }
    }
    groups
}

#[derive(Default)]
struct Plan {
    findings: BTreeMap<String, FindingChange>,
    streaks: BTreeMap<String, StreakChange>,
}

fn clear(streak: &FindingStreak) -> StreakChange {
    StreakChange::Clear { fingerprint: streak.fingerprint.clone(), expected: (streak.fails, streak.passes) }
}

/// One (not held) evaluation with what is stored about its fingerprint.
struct Step<'a> {
    key: String,
    evaluation: &'a Evaluation,
    collector: Option<CollectorId>,
    finding: Option<&'a Finding>,
    streak: Option<&'a FindingStreak>,
    damping: Damping,
    /// Whether this evaluation advances streaks (see the module docs).
    counts: bool,
    now: DateTime<Utc>,
}

impl Step<'_> {
    fn plan(self, plan: &mut Plan) {
        let active = self.finding.filter(|f| f.status.is_active());
        let change = match (&self.evaluation.outcome, active) {
            (Outcome::Unknown { .. }, Some(finding)) => self.reannounce_if_expired(finding, None),
            (Outcome::Unknown { .. }, None) => None,
            (Outcome::Fail { severity, summary, evidence, .. }, Some(finding)) => {
                // A failure breaks a run of passes towards resolving.
                if self.counts {
                    self.set_streak(plan, None);
                }
                let content = (store_severity(*severity), summary.as_str(), evidence);
                self.reannounce_if_expired(finding, Some(content)).or_else(|| {
                    let (severity, summary, evidence) = content;
                    let changed = finding.severity != severity
                        || finding.summary != summary
                        || &finding.evidence != evidence;
                    changed.then(|| FindingChange::Update {
                        id: finding.id,
                        expected_version: finding.version,
                        severity,
                        summary: summary.to_owned(),
                        evidence: evidence.clone(),
                        message: None,
                    })
                })
            }
            (Outcome::Fail { .. }, None) if !self.counts => None,
            (Outcome::Fail { severity, summary, evidence, .. }, None) => {
                let fails = self.streak.map_or(0, |s| s.fails) + 1;
                if fails < self.damping.open_after {
                    self.set_streak(plan, Some((fails, 0)));
                    return;
                }
                self.set_streak(plan, None);
                let severity = store_severity(*severity);
                Some(match self.finding {
                    Some(resolved) => FindingChange::Reopen {
                        id: resolved.id,
                        expected_version: resolved.version,
                        severity,
                        summary: summary.clone(),
                        evidence: evidence.clone(),
                        message: None,
                    },
                    None => FindingChange::Open {
                        fingerprint: self.key.clone(),
                        rule_id: self.evaluation.rule_id.to_string(),
                        subject: self.evaluation.subject.clone(),
                        collector_id: self.collector,
                        severity,
                        title: self.evaluation.title.to_string(),
                        summary: summary.clone(),
                        evidence: evidence.clone(),
                        message: None,
                    },
                })
            }
            (Outcome::Pass | Outcome::NotApplicable { .. }, Some(finding)) if !self.counts => {
                self.reannounce_if_expired(finding, None)
            }
            (Outcome::Pass | Outcome::NotApplicable { .. }, Some(finding)) => {
                let passes = self.streak.map_or(0, |s| s.passes) + 1;
                if passes < self.damping.resolve_after {
                    self.set_streak(plan, Some((0, passes)));
                    self.reannounce_if_expired(finding, None)
                } else {
                    self.set_streak(plan, None);
                    Some(FindingChange::Resolve {
                        id: finding.id,
                        expected_version: finding.version,
                        summary: format!("Passes now: {}.", self.evaluation.title),
                    })
                }
            }
            (Outcome::Pass | Outcome::NotApplicable { .. }, None) => {
                // A pass breaks a run of failures towards opening.
                if self.counts {
                    self.set_streak(plan, None);
                }
                None
            }
        };
        self.insert(plan, change);
    }

    fn insert(&self, plan: &mut Plan, change: Option<FindingChange>) {
        if let Some(change) = change {
            plan.findings.insert(self.key.clone(), change);
        }
    }

    /// Plans the streak to become `counts` (`(fails, passes)`), or to go away with `None`;
    /// nothing if it already is so.
    fn set_streak(&self, plan: &mut Plan, counts: Option<(u32, u32)>) {
        let current = self.streak.map(|s| (s.fails, s.passes));
        if current == counts {
            return;
        }
        let change = match counts {
            Some((fails, passes)) => {
                StreakChange::Set { fingerprint: self.key.clone(), expected: current, fails, passes }
            }
            None => match self.streak {
                Some(streak) => clear(streak),
                None => return,
            },
        };
        plan.streaks.insert(self.key.clone(), change);
    }

    fn reannounce_if_expired(
        &self,
        finding: &Finding,
        content: Option<(Severity, &str, &serde_json::Value)>,
    ) -> Option<FindingChange> {
        reannounce_if_expired(finding, content, self.now)
    }
}

/// Announces a suppressed finding again if its suppression ran out by `now`, with a failure's
/// content if given, else as it stands.
fn reannounce_if_expired(
    finding: &Finding,
    content: Option<(Severity, &str, &serde_json::Value)>,
    now: DateTime<Utc>,
) -> Option<FindingChange> {
    let expired = finding.status == FindingStatus::Suppressed
        && finding.suppressed_until.is_none_or(|until| until <= now);
    if !expired {
        return None;
    }
    let (severity, summary, evidence) =
        content.unwrap_or((finding.severity, finding.summary.as_str(), &finding.evidence));
    Some(FindingChange::Reannounce {
        id: finding.id,
        expected_version: finding.version,
        severity,
        summary: summary.to_owned(),
        evidence: evidence.clone(),
        message: None,
    })
}

#[cfg(test)]
mod tests;
