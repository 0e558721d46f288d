//! Per-organisation and per-tenant overrides of the shipped rules: disable a rule, change its
//! severity, its parameters or its flap damping.
//!
//! Storage and audit ("who changed what, when") belong to the server; this module owns the pure
//! part: the shape of an override, how an organisation's and a tenant's overrides combine
//! ([`PackSettings::merge`]), and checking an override against the rule's declared parameters
//! ([`PackSettings::validate`], [`RuleSettings::validate`]) with errors that name the field.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::evaluation::FlapDamping;
use crate::params::{ParamProblem, Params};
use crate::{RuleInfo, Severity, rules};

/// Highest flap-damping count an override may set.
pub const MAX_FLAP_COUNT: u32 = 20;

/// The override of one rule. Every field is optional: an absent field keeps what the level
/// below says (tenant over organisation over the pack's defaults).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleSettings {
    /// `Some(true)` disables the rule; `Some(false)` re-enables one the organisation disabled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disabled: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub severity: Option<Severity>,
    /// Parameter values by name; each must be declared by the rule and pass its type.
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub params: Map<String, Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub open_after: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resolve_after: Option<u32>,
}

impl RuleSettings {
    /// `self` with `over`'s fields laid on top (parameters key by key).
    pub fn overlaid_with(&self, over: &RuleSettings) -> RuleSettings {
        let mut params = self.params.clone();
        for (name, value) in &over.params {
            params.insert(name.clone(), value.clone());
        }
        RuleSettings {
            disabled: over.disabled.or(self.disabled),
            severity: over.severity.or(self.severity),
            params,
            open_after: over.open_after.or(self.open_after),
            resolve_after: over.resolve_after.or(self.resolve_after),
        }
    }

    /// Checks the override against the shipped rule `rule_id`.
    pub fn validate(&self, rule_id: &str) -> Result<(), Vec<SettingsError>> {
        let Some(info) = rule_info(rule_id) else {
            return Err(vec![SettingsError::new(rule_id, "", SettingsProblem::UnknownRule)]);
        };
        let mut errors = Vec::new();
        for (name, value) in &self.params {
            let field = format!("params.{name}");
            match info.params.iter().find(|spec| spec.name == name) {
                None => errors.push(SettingsError::new(
                    rule_id,
                    &field,
                    SettingsProblem::UnknownParam {
                        known: info.params.iter().map(|spec| spec.name).collect(),
                    },
                )),
                Some(spec) => {
                    if let Err(problem) = spec.kind.check(value) {
                        errors.push(SettingsError::new(rule_id, &field, SettingsProblem::Param(problem)));
                    }
                }
            }
        }
        for (field, count) in [("open_after", self.open_after), ("resolve_after", self.resolve_after)] {
            if let Some(count) = count
                && !(1..=MAX_FLAP_COUNT).contains(&count)
            {
                let problem =
                    ParamProblem::OutOfRange { min: 1, max: i64::from(MAX_FLAP_COUNT), got: count.into() };
                errors.push(SettingsError::new(rule_id, field, SettingsProblem::Param(problem)));
            }
        }
        if errors.is_empty() { Ok(()) } else { Err(errors) }
    }
}

/// Overrides for the whole pack, by rule id: what an organisation or a tenant stored, or the
/// merge of both.
///
/// ```
/// use serde_json::json;
/// use wbd_rules::{PackSettings, RuleSettings, Severity};
///
/// let org: PackSettings = serde_json::from_value(json!({
///     "idle-connection-survives": { "params": { "min_idle_secs": 300 }, "severity": "medium" }
/// })).unwrap();
/// let tenant: PackSettings = serde_json::from_value(json!({
///     "idle-connection-survives": { "severity": "low" }
/// })).unwrap();
/// let merged = PackSettings::merge(&org, &tenant);
/// let rule = merged.rule("idle-connection-survives");
/// assert_eq!(rule.severity, Some(Severity::Low));
/// assert_eq!(rule.params["min_idle_secs"], 300);
/// assert!(merged.validate().is_ok());
/// ```
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct PackSettings {
    pub rules: BTreeMap<String, RuleSettings>,
}

impl PackSettings {
    /// No overrides: every rule runs with the pack's defaults.
    pub fn defaults() -> Self {
        PackSettings::default()
    }

    /// The organisation's overrides with the tenant's on top, field by field.
    pub fn merge(org: &PackSettings, tenant: &PackSettings) -> PackSettings {
        let mut rules = org.rules.clone();
        for (id, over) in &tenant.rules {
            let merged = rules.get(id).map_or_else(|| over.clone(), |base| base.overlaid_with(over));
            rules.insert(id.clone(), merged);
        }
        PackSettings { rules }
    }

    /// The override of one rule (empty if none).
    pub fn rule(&self, rule_id: &str) -> RuleSettings {
        self.rules.get(rule_id).cloned().unwrap_or_default()
    }

    /// Checks every override; all problems are reported, each naming its rule and field.
    pub fn validate(&self) -> Result<(), Vec<SettingsError>> {
        let errors: Vec<SettingsError> =
            self.rules.iter().filter_map(|(id, rule)| rule.validate(id).err()).flatten().collect();
        if errors.is_empty() { Ok(()) } else { Err(errors) }
    }

    /// What the rule runs with under these settings: enabled or not, severity, parameter values
    /// (invalid overrides ignored) and flap damping.
    pub fn effective(&self, info: &RuleInfo) -> EffectiveRule {
        let settings = self.rules.get(info.id);
        let empty = Map::new();
        EffectiveRule {
            enabled: !settings.and_then(|s| s.disabled).unwrap_or(false),
            severity_override: settings.and_then(|s| s.severity),
            params: Params::resolve(info.params, settings.map_or(&empty, |s| &s.params)),
            flap: FlapDamping {
                open_after: settings
                    .and_then(|s| s.open_after)
                    .filter(|n| (1..=MAX_FLAP_COUNT).contains(n))
                    .unwrap_or(info.flap.open_after),
                resolve_after: settings
                    .and_then(|s| s.resolve_after)
                    .filter(|n| (1..=MAX_FLAP_COUNT).contains(n))
                    .unwrap_or(info.flap.resolve_after),
            },
        }
    }
}

/// A rule as it runs for one tenant.
#[derive(Debug, Clone, PartialEq)]
pub struct EffectiveRule {
    pub enabled: bool,
    /// Replaces the severity of every failure the rule reports.
    pub severity_override: Option<Severity>,
    pub params: Params,
    pub flap: FlapDamping,
}

fn rule_info(rule_id: &str) -> Option<&'static RuleInfo> {
    rules().iter().find(|info| info.id == rule_id)
}

/// One refused override field.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SettingsError {
    pub rule_id: String,
    /// The field within the rule's override: `params.<name>`, `open_after`, … (empty when the
    /// rule itself is unknown).
    pub field: String,
    #[serde(flatten)]
    pub problem: SettingsProblem,
}

impl SettingsError {
    fn new(rule_id: &str, field: &str, problem: SettingsProblem) -> Self {
        SettingsError { rule_id: rule_id.to_owned(), field: field.to_owned(), problem }
    }

    /// The JSON-pointer-like path of the field in a [`PackSettings`] document:
    /// `/<rule id>/params/<name>`.
    pub fn pointer(&self) -> String {
        if self.field.is_empty() {
            format!("/{}", self.rule_id)
        } else {
            format!("/{}/{}", self.rule_id, self.field.replace('.', "/"))
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum SettingsProblem {
    UnknownRule,
    UnknownParam { known: Vec<&'static str> },
    Param(ParamProblem),
}

impl fmt::Display for SettingsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.problem {
            SettingsProblem::UnknownRule => write!(f, "{}: no shipped rule has this id", self.rule_id),
            SettingsProblem::UnknownParam { known } if known.is_empty() => {
                write!(f, "{}.{}: the rule has no parameters", self.rule_id, self.field)
            }
            SettingsProblem::UnknownParam { known } => {
                write!(f, "{}.{}: unknown parameter (known: {})", self.rule_id, self.field, known.join(", "))
            }
            SettingsProblem::Param(problem) => write!(f, "{}.{}: {problem}", self.rule_id, self.field),
        }
    }
}

impl std::error::Error for SettingsError {}
