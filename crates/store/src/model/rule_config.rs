//! Rule overrides, custom rules and the audit log of their changes.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::*;

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
