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
use url::Url;

use crate::connector::{
    ConfigError, Connector, ConnectorSettings, DeliveryError, IntegrationKind, TicketRef,
};

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

/// Whether `url` can be the base of a connector's addresses: `http(s)` with a host and without
/// query or fragment. Otherwise the `url` problem is `not_http` or `with_query`.
pub(crate) fn base_url_ok(
    url: &Url,
    errors: &mut Vec<ConfigError>,
    not_http: &str,
    with_query: &str,
) -> bool {
    if !matches!(url.scheme(), "https" | "http") || url.cannot_be_a_base() || url.host().is_none() {
        errors.push(ConfigError::new("url", not_http));
        false
    } else if url.query().is_some() || url.fragment().is_some() {
        errors.push(ConfigError::new("url", with_query));
        false
    } else {
        true
    }
}

/// A site's address (Jira, ServiceNow), the base of every API path.
pub(crate) fn check_base_url(url: &Url, errors: &mut Vec<ConfigError>) {
    base_url_ok(
        url,
        errors,
        "must be the site's https:// address",
        "must be the site's address without query or fragment",
    );
}

/// `base` + path segments (each escaped).
pub(crate) fn endpoint(base: &Url, segments: &[&str]) -> Url {
    let mut url = base.clone();
    if let Ok(mut path) = url.path_segments_mut() {
        path.pop_if_empty().extend(segments);
    }
    url
}

/// `config.priority_ids`: one id per severity (critical, high, medium, low).
///
/// With `defaults`, unset severities keep theirs and a missing `priority_ids` is `defaults`; the
/// answer is then always `Some`. Without, a missing `priority_ids` is `None` (the destination's
/// own default) and a given one must name all four. `map_of` says what the object maps severities
/// to (in its error), `one` what a single value is (in a severity's error).
pub(crate) fn priority_ids(
    config: &Value,
    errors: &mut Vec<ConfigError>,
    defaults: Option<[u64; 4]>,
    map_of: &str,
    one: &str,
) -> Option<[u64; 4]> {
    let Some(value) = config.get("priority_ids").filter(|v| !v.is_null()) else { return defaults };
    let Some(map) = value.as_object() else {
        errors.push(ConfigError::new(
            "config.priority_ids",
            format!("must be an object of severity → {map_of}"),
        ));
        return defaults;
    };
    let mut ids = defaults.unwrap_or_default();
    for (slot, severity) in ids.iter_mut().zip(["critical", "high", "medium", "low"]) {
        let field = format!("config.priority_ids.{severity}");
        match map.get(severity).filter(|v| !v.is_null()).map(Value::as_u64) {
            Some(Some(id)) => *slot = id,
            None if defaults.is_some() => {}
            Some(None) if defaults.is_some() => {
                errors.push(ConfigError::new(field, format!("must be a whole number ≥ 0 (a {one})")))
            }
            _ => errors
                .push(ConfigError::new(field, format!("is required (a {one}) when priority_ids is set"))),
        }
    }
    Some(ids)
}

/// The numeric id of a ticket we created; `what` names it in the error, e.g. `a Halo ticket id`.
pub(crate) fn ticket_id(ticket: &TicketRef, what: &str) -> Result<u64, DeliveryError> {
    ticket
        .external_id
        .parse()
        .map_err(|_| DeliveryError::Protocol(format!("{:?} is not {what}", ticket.external_id)))
}

/// `result`, with a `404` turned into [`DeliveryError::TicketGone`]: for requests on the stored
/// ticket's own address, where a 404 means the destination no longer has that ticket.
pub(crate) fn gone_on_404<T>(result: Result<T, DeliveryError>, ticket: &str) -> Result<T, DeliveryError> {
    match result {
        Err(DeliveryError::Status { status: 404, .. }) => Err(DeliveryError::TicketGone(ticket.to_owned())),
        other => other,
    }
}

/// The engine's problem keys are `[a-z0-9-]{1,40}`: they fit every destination's reference field
/// and nothing else reaches a search.
pub(crate) fn check_key(key: &str) -> Result<(), DeliveryError> {
    let valid = !key.is_empty()
        && key.len() <= 40
        && key.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if valid { Ok(()) } else { Err(DeliveryError::Protocol(format!("invalid problem key {key:?}"))) }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn endpoints_escape_segments_and_keep_a_base_path() {
        let base = Url::parse("https://acme.atlassian.net/").unwrap();
        assert_eq!(endpoint(&base, &["browse", "OPS-1"]).as_str(), "https://acme.atlassian.net/browse/OPS-1");
        let nested = Url::parse("https://proxy.example/jira").unwrap();
        assert_eq!(endpoint(&nested, &["a b"]).as_str(), "https://proxy.example/jira/a%20b");
    }

    #[test]
    fn base_urls_are_http_without_query_or_fragment() {
        let mut errors = Vec::new();
        assert!(base_url_ok(&Url::parse("https://a.example/x").unwrap(), &mut errors, "scheme", "query"));
        assert!(!base_url_ok(&Url::parse("ftp://a.example/").unwrap(), &mut errors, "scheme", "query"));
        assert!(!base_url_ok(&Url::parse("https://a.example/?q=1").unwrap(), &mut errors, "scheme", "query"));
        let messages: Vec<_> = errors.iter().map(|e| (e.field.as_str(), e.message.as_str())).collect();
        assert_eq!(messages, [("url", "scheme"), ("url", "query")]);
    }

    #[test]
    fn priority_ids_with_defaults_keep_unset_severities() {
        let mut errors = Vec::new();
        let defaults = Some([4, 1, 2, 3]);
        assert_eq!(priority_ids(&json!({}), &mut errors, defaults, "m", "one"), defaults);
        let config = json!({"priority_ids": {"high": 7, "low": null}});
        assert_eq!(priority_ids(&config, &mut errors, defaults, "m", "one"), Some([4, 7, 2, 3]));
        assert!(errors.is_empty(), "{errors:?}");
        let config = json!({"priority_ids": {"high": "7"}});
        assert_eq!(priority_ids(&config, &mut errors, defaults, "m", "one"), defaults);
        assert_eq!(errors[0].field, "config.priority_ids.high");
        assert_eq!(errors[0].message, "must be a whole number ≥ 0 (a one)");
        let mut errors = Vec::new();
        assert_eq!(priority_ids(&json!({"priority_ids": [1]}), &mut errors, defaults, "m", "one"), defaults);
        assert_eq!(errors[0].message, "must be an object of severity → m");
    }

    #[test]
    fn priority_ids_without_defaults_need_all_four() {
        let mut errors = Vec::new();
        assert_eq!(priority_ids(&json!({"priority_ids": null}), &mut errors, None, "m", "one"), None);
        let config = json!({"priority_ids": {"critical": 1, "high": 2, "medium": 3, "low": 4}});
        assert_eq!(priority_ids(&config, &mut errors, None, "m", "one"), Some([1, 2, 3, 4]));
        assert!(errors.is_empty(), "{errors:?}");
        let config = json!({"priority_ids": {"critical": 1, "high": "2", "low": 4}});
        priority_ids(&config, &mut errors, None, "m", "one");
        let fields: Vec<_> = errors.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(fields, ["config.priority_ids.high", "config.priority_ids.medium"]);
        assert_eq!(errors[0].message, "is required (a one) when priority_ids is set");
    }

    #[test]
    fn ticket_ids_are_whole_numbers() {
        let ticket = |id: &str| TicketRef { external_id: id.to_owned(), url: None };
        assert_eq!(ticket_id(&ticket("42"), "a Halo ticket id").unwrap(), 42);
        let error = ticket_id(&ticket("OPS-1"), "a Halo ticket id").unwrap_err();
        assert!(error.to_string().contains("\"OPS-1\" is not a Halo ticket id"), "{error}");
    }

    #[test]
    fn only_a_404_means_the_ticket_is_gone() {
        let status = |status| DeliveryError::Status { status, retry_after: None, excerpt: String::new() };
        assert_eq!(gone_on_404::<()>(Err(status(404)), "42"), Err(DeliveryError::TicketGone("42".into())));
        for passing in [status(500), status(401), status(429), DeliveryError::Transport("reset".into())] {
            assert_eq!(gone_on_404::<()>(Err(passing.clone()), "42"), Err(passing));
        }
        assert_eq!(gone_on_404(Ok(7), "42"), Ok(7));
    }

    #[test]
    fn problem_keys_are_short_lowercase_slugs() {
        assert!(check_key("disk-full-7").is_ok());
        for key in ["", "Disk", "a b", "x\"y", &"a".repeat(41)] {
            assert!(check_key(key).is_err(), "{key:?}");
        }
        assert!(check_key(&"a".repeat(40)).is_ok());
    }
}
