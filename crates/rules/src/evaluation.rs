//! What a rule says: severities, outcomes, evaluations, and the metadata of a rule.

use std::borrow::Cow;

use std::fmt;

use serde::{Deserialize, Serialize};
use wbd_wire::ProbeKind;

use crate::message::{Lang, Message, keys, render};
use crate::params::ParamSpec;

/// How bad a failing check is.
///
/// Critical: writeback cannot work for anyone. High: it fails for most users or a whole path.
/// Medium: it fails for some users, intermittently, or a hard deadline is near. Low: hygiene or a
/// likely contributor. Info: context.
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
    /// Every severity, lowest first.
    pub const ALL: [Severity; 5] =
        [Severity::Info, Severity::Low, Severity::Medium, Severity::High, Severity::Critical];

    /// The name used on the wire, in the API and in rule metadata.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Low => "low",
            Severity::Medium => "medium",
            Severity::High => "high",
            Severity::Critical => "critical",
        }
    }

    /// The inverse of [`Severity::as_str`].
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|severity| severity.as_str() == s)
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The verdict of one rule about one subject.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "result", rename_all = "snake_case")]
pub enum Outcome {
    /// The check holds.
    Pass,
    /// The check does not hold.
    Fail {
        severity: Severity,
        /// What is wrong and what to do, renderable in every shipped language ([`crate::render`]).
        message: Message,
        /// The English rendering of `message` (what is stored and logged).
        summary: String,
        /// The stable facts behind the verdict (never timings).
        evidence: serde_json::Value,
    },
    /// The facts do not let the rule decide: the probe it reads has not reported ("not
    /// evaluated: no data from probe X"), or an earlier step failed.
    Unknown {
        /// The English rendering of `message`.
        reason: String,
        message: Message,
    },
    /// The check does not apply to this site, and the facts say so (no proxy is in use, no
    /// cloud sync agent is installed). Unlike [`Outcome::Unknown`] nothing is missing: for
    /// findings it counts like a pass, and it never counts as an undecided rule.
    NotApplicable {
        /// The English rendering of `message`.
        reason: String,
        message: Message,
    },
}

impl Outcome {
    /// A failure whose summary is the English rendering of `message`.
    pub fn fail(severity: Severity, message: Message, evidence: serde_json::Value) -> Self {
        Outcome::Fail { severity, summary: message.english(), message, evidence }
    }

    /// An undecided outcome whose reason is the English rendering of `message`.
    pub fn unknown(message: Message) -> Self {
        Outcome::Unknown { reason: message.english(), message }
    }

    /// A check that does not apply here, with why (`message`).
    pub fn not_applicable(message: Message) -> Self {
        Outcome::NotApplicable { reason: message.english(), message }
    }

    /// "Not evaluated: no data from the `probe` probe."
    pub fn no_data(probe: ProbeKind) -> Self {
        Outcome::unknown(Message::new(keys::NO_DATA).arg("probe", probe.as_str()))
    }

    pub fn is_fail(&self) -> bool {
        matches!(self, Outcome::Fail { .. })
    }

    pub fn is_pass(&self) -> bool {
        matches!(self, Outcome::Pass)
    }

    pub fn is_not_applicable(&self) -> bool {
        matches!(self, Outcome::NotApplicable { .. })
    }

    pub fn is_unknown(&self) -> bool {
        matches!(self, Outcome::Unknown { .. })
    }

    /// The message of a failure, an unknown or a not-applicable outcome.
    pub fn message(&self) -> Option<&Message> {
        match self {
            Outcome::Pass => None,
            Outcome::Fail { message, .. }
            | Outcome::Unknown { message, .. }
            | Outcome::NotApplicable { message, .. } => Some(message),
        }
    }

    /// The summary (failure) or reason (unknown, not applicable) in `lang`; `None` for a pass.
    pub fn text(&self, lang: Lang) -> Option<String> {
        self.message().map(|m| render(m, lang))
    }
}

/// One rule's outcome for one subject of the tenant.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Evaluation {
    /// A shipped rule's id, or a custom rule's (hence not always `'static`).
    pub rule_id: Cow<'static, str>,
    /// What the rule judged, stable across runs (see the crate docs for each rule's form).
    pub subject: String,
    /// In English: for a failure, the problem it reports (the rule's `problem`, "Writeback
    /// endpoint is unreachable"), which is what a finding is called; otherwise the check
    /// (`title`, "Writeback endpoint is reachable").
    pub title: Cow<'static, str>,
    pub outcome: Outcome,
}

/// Flap damping of a rule: the server opens a finding only after `open_after` consecutive
/// failures and resolves it only after `resolve_after` consecutive passes. The rules crate only
/// declares the numbers (defaults in the pack, overridable per tenant); the server counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FlapDamping {
    pub open_after: u32,
    pub resolve_after: u32,
}

/// Metadata of a rule in the pack, in one language ([`crate::rules_in`]).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RuleInfo {
    /// Stable, kebab-case; part of every finding's fingerprint.
    pub id: &'static str,
    /// The language of the texts below.
    pub lang: Lang,
    /// Names the check (what should hold), not the failure.
    pub title: &'static str,
    /// Names the problem a failure reports ("Writeback endpoint is unreachable"): the title of a
    /// finding of this rule.
    pub problem: &'static str,
    /// The severity of a failure (a rule may report a lower one for some subjects; see its docs).
    pub severity: Severity,
    /// The probe kinds whose facts the rule reads (empty when it reads only collector state).
    pub reads: &'static [ProbeKind],
    /// What the check means and why it matters.
    pub description: &'static str,
    /// The remediation steps, one per line.
    pub remediation: &'static str,
    /// The same steps, one per item.
    pub remediation_steps: &'static [&'static str],
    pub references: &'static [&'static str],
    /// The parameters a tenant may override, with types, bounds and defaults.
    pub params: &'static [ParamSpec],
    /// Default flap damping.
    pub flap: FlapDamping,
    /// Ids of the rules whose failure explains a failure of this one: its root causes (e.g.
    /// `test-user-sspr-capable` is explained by `sspr-enabled`). When one of them fails too, show
    /// that one first; this rule's texts never contradict it. Declared in the pack's data
    /// (`explained_by` in `pack.toml`) and checked to name other rules of the pack, without cycles.
    pub explained_by: &'static [&'static str],
    /// Ids of the research catalogue rules (`PWB-…`) this rule implements.
    pub catalogue_ids: &'static [&'static str],
    /// Points (1–9) of Microsoft's "password writeback is not working" checklist it covers.
    pub seed_points: &'static [u8],
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn severity_names_round_trip_and_match_serde() {
        for severity in Severity::ALL {
            assert_eq!(Severity::parse(severity.as_str()), Some(severity));
            assert_eq!(serde_json::to_value(severity).ok(), Some(serde_json::json!(severity.as_str())));
        }
        assert_eq!(Severity::parse("severe"), None);
        assert!(Severity::Critical > Severity::High && Severity::Low > Severity::Info);
    }

    #[test]
    fn outcome_round_trips_through_json() {
        let outcome = Outcome::fail(
            Severity::High,
            Message::new(keys::NO_DATA).arg("probe", "graph"),
            serde_json::json!({"host": "h"}),
        );
        let json = serde_json::to_value(&outcome).expect("serialises");
        assert_eq!(json["result"], "fail");
        assert_eq!(serde_json::from_value::<Outcome>(json).ok(), Some(outcome));
    }
}
