//! What a rule says: severities, outcomes, evaluations, and the metadata of a rule.

use std::fmt;

use serde::{Deserialize, Serialize};
use wbd_wire::ProbeKind;

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
        /// What is wrong and what to do, in words a technician can act on.
        summary: String,
        /// The stable facts behind the verdict (never timings).
        evidence: serde_json::Value,
    },
    /// The facts do not let the rule decide (e.g. an earlier step failed).
    Unknown { reason: String },
}

impl Outcome {
    pub fn is_fail(&self) -> bool {
        matches!(self, Outcome::Fail { .. })
    }
}

/// One rule's outcome for one subject of the tenant.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Evaluation {
    pub rule_id: &'static str,
    /// What the rule judged, stable across runs (see the crate docs for each rule's form).
    pub subject: String,
    pub title: &'static str,
    pub outcome: Outcome,
}

/// Metadata of a rule in the pack.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RuleInfo {
    /// Stable, kebab-case; part of every finding's fingerprint.
    pub id: &'static str,
    /// Names the check (what should hold), not the failure.
    pub title: &'static str,
    /// The severity of a failure (a rule may report a lower one for some subjects; see its docs).
    pub severity: Severity,
    /// The probe kinds whose facts the rule reads (empty when it reads only collector state).
    pub reads: &'static [ProbeKind],
    pub description: &'static str,
    pub remediation: &'static str,
    pub references: &'static [&'static str],
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
        let outcome = Outcome::Fail {
            severity: Severity::High,
            summary: "s".into(),
            evidence: serde_json::json!({"host": "h"}),
        };
        let json = serde_json::to_value(&outcome).expect("serialises");
        assert_eq!(json["result"], "fail");
        assert_eq!(serde_json::from_value::<Outcome>(json).ok(), Some(outcome));
    }
}
