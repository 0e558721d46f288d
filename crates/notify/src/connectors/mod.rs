//! One module per destination. [`build`] makes the connector of an integration's settings and
//! says, field by field, what is missing or wrong.

pub mod autotask;
pub mod connectwise;
pub mod halopsa;
pub mod jira;
pub mod pagerduty;
pub mod servicenow;
pub mod slack;
pub mod teams;
pub mod webhook;

use serde_json::Value;

use crate::connector::{ConfigError, Connector, ConnectorSettings, IntegrationKind};

/// The connector for `settings`, or every problem with them.
pub fn build(settings: &ConnectorSettings) -> Result<Box<dyn Connector>, Vec<ConfigError>> {
    match settings.kind {
        IntegrationKind::Webhook => webhook::build(settings),
        IntegrationKind::Connectwise => connectwise::build(settings),
        IntegrationKind::Autotask => autotask::build(settings),
        IntegrationKind::Halopsa => halopsa::build(settings),
        IntegrationKind::Jira => jira::build(settings),
        IntegrationKind::Servicenow => servicenow::build(settings),
        IntegrationKind::Pagerduty => pagerduty::build(settings),
        IntegrationKind::Slack => slack::build(settings),
        IntegrationKind::Teams => teams::build(settings),
    }
}

/// Reads settings field by field, collecting every problem instead of stopping at the first.
pub struct Fields<'a> {
    section: &'static str,
    value: &'a Value,
    pub errors: &'a mut Vec<ConfigError>,
}

impl<'a> Fields<'a> {
    /// `section` is `config` or `credentials`.
    pub fn new(section: &'static str, value: &'a Value, errors: &'a mut Vec<ConfigError>) -> Fields<'a> {
        if !value.is_object() && !value.is_null() {
            errors.push(ConfigError::new(section, "must be an object"));
        }
        Fields { section, value, errors }
    }

    fn path(&self, key: &str) -> String {
        format!("{}.{key}", self.section)
    }

    /// A non-empty string.
    pub fn required_str(&mut self, key: &str) -> String {
        match self.value.get(key) {
            Some(Value::String(s)) if !s.trim().is_empty() => s.trim().to_owned(),
            Some(Value::String(_)) | None | Some(Value::Null) => {
                self.errors.push(ConfigError::new(self.path(key), "is required"));
                String::new()
            }
            Some(_) => {
                self.errors.push(ConfigError::new(self.path(key), "must be a string"));
                String::new()
            }
        }
    }

    pub fn optional_str(&mut self, key: &str) -> Option<String> {
        match self.value.get(key) {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) if s.trim().is_empty() => None,
            Some(Value::String(s)) => Some(s.trim().to_owned()),
            Some(_) => {
                self.errors.push(ConfigError::new(self.path(key), "must be a string"));
                None
            }
        }
    }

    /// A string with a default.
    pub fn str_or(&mut self, key: &str, default: &str) -> String {
        self.optional_str(key).unwrap_or_else(|| default.to_owned())
    }

    /// A whole number ≥ 0.
    pub fn required_u64(&mut self, key: &str) -> u64 {
        match self.optional_u64(key) {
            Some(n) => n,
            None => {
                if !self.errors.iter().any(|e| e.field == self.path(key)) {
                    self.errors.push(ConfigError::new(self.path(key), "is required"));
                }
                0
            }
        }
    }

    pub fn optional_u64(&mut self, key: &str) -> Option<u64> {
        match self.value.get(key) {
            None | Some(Value::Null) => None,
            Some(v) => match v.as_u64() {
                Some(n) => Some(n),
                None => {
                    self.errors.push(ConfigError::new(self.path(key), "must be a whole number ≥ 0"));
                    None
                }
            },
        }
    }

    pub fn u64_or(&mut self, key: &str, default: u64) -> u64 {
        self.optional_u64(key).unwrap_or(default)
    }
}
