//! What an integration may be, checked in full when it is saved, with every problem listed at
//! once: a draft (a create, or a change applied to the stored integration) goes in; a checked
//! [`IntegrationWrite`] (secrets sealed) or the [`Problems`], field by field, come out.
//!
//! Checked: the name, the kind, the URL, the kind's own settings (through the kind's connector,
//! `wbd_notify::connectors::build`), that config and credentials carry nothing a database or an
//! HTTP header cannot, the filter against the organisation's tenants and rules, routing,
//! in-flight and hourly limits, and each destination against the network policy (private,
//! loopback and metadata addresses are refused unless the operator allow-lists them; names are
//! checked again when the engine connects). Credentials go only where they went when they were
//! entered: a change that sends them to another origin must give them again.

mod filter;
mod problems;

use std::collections::HashSet;

use chrono::{DateTime, Duration, Utc};
use serde_json::{Map, Value};
use url::Url;
use wbd_notify::sealing::Sealer;
use wbd_notify::signing::SigningSecret;
use wbd_notify::ssrf::NetworkPolicy;
use wbd_notify::{ConnectorSettings, IntegrationKind, connectors};
use wbd_store::{Integration, IntegrationFilter, IntegrationWrite, OrgScope, Routing, Store, StoreError};

pub use filter::FilterDraft;
pub use problems::{FieldProblem, Problems};

use crate::secrets::{self, SealedSecrets, StoredSigningSecret};

pub const MAX_NAME_CHARS: usize = 100;
pub const MAX_IN_FLIGHT: i64 = 64;
/// The largest hourly budget: the column is an INTEGER, and a million deliveries an hour is no
/// limit in practice.
pub const MAX_HOURLY_BUDGET: i64 = 1_000_000;
/// How long a rotated-out signing secret stays valid, unless the request says.
pub const DEFAULT_PREVIOUS_VALID_SECS: u64 = 24 * 3600;
pub const MAX_PREVIOUS_VALID_SECS: u64 = 7 * 24 * 3600;
/// Signing secrets kept at once (the newest and those still valid after rotations): each adds a
/// signature to every request.
const MAX_SIGNING_SECRETS: usize = 3;
/// PagerDuty has one events endpoint; an integration need not name it.
const PAGERDUTY_EVENTS_URL: &str = "https://events.pagerduty.com/v2/enqueue";

/// A new integration as the request gives it.
#[derive(Debug, Default)]
pub struct NewIntegration {
    pub name: String,
    pub kind: String,
    pub url: Option<String>,
    pub config: Option<Value>,
    pub credentials: Option<Value>,
    pub filter: Option<FilterDraft>,
    pub routing: Option<String>,
    pub max_in_flight: Option<i64>,
    pub hourly_budget: Option<i64>,
    pub enabled: Option<bool>,
}

/// A change as the request gives it: what is absent stays as it is.
#[derive(Debug, Default)]
pub struct IntegrationChange {
    pub name: Option<String>,
    /// Cannot change; accepted when it is the integration's kind.
    pub kind: Option<String>,
    /// A secret URL in the redacted form the API shows means "unchanged".
    pub url: Option<String>,
    /// Replaces the whole config.
    pub config: Option<Value>,
    /// Each key given replaces that credential; `null` removes it.
    pub credentials: Option<Map<String, Value>>,
    /// Replaces the whole filter (checked again only when given).
    pub filter: Option<FilterDraft>,
    pub routing: Option<String>,
    pub max_in_flight: Option<i64>,
    /// `Some(None)`: back to the kind's default.
    pub hourly_budget: Option<Option<i64>>,
    pub enabled: Option<bool>,
}

/// A setting as the request gives it (checked), or as it is stored (a change that does not
/// name it keeps it unchecked: what was valid when it was saved stays, even if a rule it names
/// was deleted since or a limit is stricter now).
#[derive(Debug)]
enum Setting<G, K> {
    Given(G),
    Kept(K),
}

/// What an integration is to be, before it is checked, and the problems found while making it.
#[derive(Debug)]
pub struct Draft {
    name: String,
    kind: String,
    url: Option<String>,
    config: Value,
    credentials: Value,
    filter: Setting<FilterDraft, IntegrationFilter>,
    routing: Option<String>,
    /// `None`: the kind's default.
    max_in_flight: Option<i64>,
    /// `Given(None)`: the kind's default.
    hourly_budget: Setting<Option<i64>, Option<u32>>,
    enabled: bool,
    signing_secrets: Vec<StoredSigningSecret>,
    problems: Problems,
}

impl Draft {
    /// A new integration. A webhook gets a new signing secret, returned to be shown once.
    pub fn new(request: NewIntegration) -> (Draft, Option<String>) {
        let signing_secret = (IntegrationKind::parse(request.kind.trim()) == Some(IntegrationKind::Webhook))
            .then(|| SigningSecret::generate().to_whsec());
        let draft = Draft {
            name: request.name,
            kind: request.kind,
            url: request.url,
            config: request.config.unwrap_or_else(|| Value::Object(Map::new())),
            credentials: credentials_object(request.credentials),
            filter: Setting::Given(request.filter.unwrap_or_default()),
            routing: request.routing,
            max_in_flight: request.max_in_flight,
            hourly_budget: Setting::Given(request.hourly_budget),
            enabled: request.enabled.unwrap_or(true),
            signing_secrets: signing_secret
                .iter()
                .map(|s| StoredSigningSecret { secret: s.clone(), expires_at: None })
                .collect(),
            problems: Problems::default(),
        };
        (draft, signing_secret)
    }

    /// `current` (whose secrets are `stored`) with `change` applied. A change of kind is refused
    /// at once, on its own.
    pub fn changed(
        current: &Integration,
        stored: SealedSecrets,
        change: IntegrationChange,
        now: DateTime<Utc>,
    ) -> Result<Draft, Problems> {
        if change.kind.as_deref().is_some_and(|k| k.trim() != current.kind) {
            return Err(Problems::one(
                "kind",
                "cannot be changed; add an integration of the other kind and delete this one",
            ));
        }
        let mut problems = Problems::default();
        let kind = IntegrationKind::parse(&current.kind);
        let current_url = stored.url.clone().or_else(|| current.url.clone());
        let url = match (change.url, &stored.url) {
            // The secret URL as the API showed it: the one stored stays.
            (Some(given), Some(secret)) if is_redacted_form_of(&given, secret) => Some(secret.clone()),
            (Some(given), _) => Some(given),
            (None, _) => current_url.clone(),
        };
        let config = change.config.unwrap_or_else(|| current.config.clone());

        // Credentials go only where they went when they were entered: a destination on another
        // origin (a new URL, an authorisation server named in the config) gets only credentials
        // this change gives.
        let mut credentials = match &stored.credentials {
            Value::Object(map) => map.clone(),
            _ => Map::new(),
        };
        if let Some(kind) = kind.filter(|_| !credentials.is_empty()) {
            let stored_creds = &stored.credentials;
            let before = destination_origins(kind, current_url.as_deref(), &current.config, stored_creds);
            let after = destination_origins(kind, url.as_deref(), &config, stored_creds);
            let new_origins: Vec<&String> = after.iter().filter(|o| !before.contains(*o)).collect();
            if !new_origins.is_empty() {
                if change.credentials.is_none() {
                    let names = new_origins.iter().map(|o| o.as_str()).collect::<Vec<_>>().join(", ");
                    problems.invalid(
                        "credentials",
                        format!(
                            "must be entered again for a new destination ({names}): stored credentials \
                             are never sent anywhere they were not entered for"
                        ),
                    );
                } else {
                    credentials.clear();
                }
            }
        }
        for (key, value) in change.credentials.unwrap_or_default() {
            if value.is_null() {
                credentials.remove(&key);
            } else {
                credentials.insert(key, value);
            }
        }
        Ok(Draft {
            name: change.name.unwrap_or_else(|| current.name.clone()),
            kind: current.kind.clone(),
            url,
            config,
            credentials: Value::Object(credentials),
            filter: match change.filter {
                Some(draft) => Setting::Given(draft),
                None => Setting::Kept(current.filter.clone()),
            },
            routing: Some(change.routing.unwrap_or_else(|| current.routing.as_str().to_owned())),
            max_in_flight: Some(change.max_in_flight.unwrap_or(i64::from(current.max_in_flight))),
            hourly_budget: match change.hourly_budget {
                Some(given) => Setting::Given(given),
                None => Setting::Kept(current.hourly_budget),
            },
            enabled: change.enabled.unwrap_or(current.enabled),
            // Secrets rotated out and expired since are dropped.
            signing_secrets: stored
                .signing_secrets
                .into_iter()
                .filter(|s| s.expires_at.is_none_or(|at| at > now))
                .collect(),
            problems,
        })
    }
}

/// What checking a draft needs besides the draft: the organisation it belongs to (its tenants
/// and custom rules are read from `store`), the network policy, and the key that seals secrets.
pub struct Checker<'a> {
    pub store: &'a dyn Store,
    pub org: OrgScope,
    pub network: &'a NetworkPolicy,
    pub sealer: &'a Sealer,
}

/// Why a draft did not become a write.
#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    #[error("the integration is refused: {0}")]
    Refused(Problems),
    #[error("reading the organisation's tenants and rules failed")]
    Store(#[from] StoreError),
}

impl Checker<'_> {
    /// Checks `draft` in full and, if nothing is wrong (neither here nor in what was found while
    /// making the draft), makes the row to store, secrets sealed.
    pub async fn check(&self, mut draft: Draft, now: DateTime<Utc>) -> Result<IntegrationWrite, CheckError> {
        let mut problems = std::mem::take(&mut draft.problems);
        let name = draft.name.trim().to_owned();
        if name.is_empty() {
            problems.invalid("name", "is required");
        } else if draft.name.chars().count() > MAX_NAME_CHARS {
            // Counted as sent (blanks around included), as the API document's maxLength counts.
            problems.invalid("name", format!("may be at most {MAX_NAME_CHARS} characters"));
        } else if name.chars().any(char::is_control) {
            problems.invalid("name", "must not contain control characters");
        }
        let kind = IntegrationKind::parse(draft.kind.trim());
        if kind.is_none() {
            let known = IntegrationKind::ALL.map(IntegrationKind::as_str).join(", ");
            if draft.kind.trim().is_empty() {
                problems.invalid("kind", format!("is required (one of: {known})"));
            } else {
                problems.invalid(
                    "kind",
                    format!("{:?} is not a kind we deliver to (one of: {known})", draft.kind),
                );
            }
        }
        let url_text = draft.url.as_deref().map(str::trim).filter(|u| !u.is_empty());
        let url_text =
            url_text.or((kind == Some(IntegrationKind::Pagerduty)).then_some(PAGERDUTY_EVENTS_URL));
        let url = match url_text {
            None => {
                problems.invalid("url", "is required");
                None
            }
            Some(text) => match Url::parse(text) {
                Ok(u) if kind.is_some_and(IntegrationKind::url_is_secret) && is_redacted(&u) => {
                    problems.invalid(
                        "url",
                        "is the redacted form the API shows, not a webhook URL; send the whole URL, or \
                         leave `url` out to keep the one stored",
                    );
                    None
                }
                Ok(u) if matches!(u.scheme(), "https" | "http") && u.host().is_some() => Some(u),
                Ok(_) => {
                    problems.invalid("url", "must be an https:// address");
                    None
                }
                Err(e) => {
                    problems.invalid("url", format!("is not a URL ({e})"));
                    None
                }
            },
        };
        if !draft.config.is_object() {
            problems.invalid("config", "must be an object");
        }
        // PostgreSQL cannot store a NUL in text or JSON; nothing needs one.
        for field in nul_strings("config", &draft.config) {
            problems.invalid(field, "must not contain a NUL character (\\u0000)");
        }
        if !draft.credentials.is_object() {
            problems.invalid("credentials", "must be an object");
        }
        // A credential is never shown again: a paste with a line break or tab inside would only
        // show as failed deliveries (header values cannot carry them). Ends are trimmed anyway.
        for (key, value) in draft.credentials.as_object().into_iter().flatten() {
            if value.as_str().is_some_and(|text| text.trim().chars().any(char::is_control)) {
                problems.invalid(
                    format!("credentials.{}", key.escape_default()),
                    "must not contain control characters",
                );
            }
        }
        if let Some(u) = &url {
            self.check_destination(u, &mut problems);
        }
        if let Some(kind) = kind {
            self.check_kind_settings(kind, url.as_ref(), &draft, now, &mut problems);
        }
        let filter = match &draft.filter {
            Setting::Given(given) => filter::check_filter(self.store, self.org, given, &mut problems).await?,
            Setting::Kept(filter) => filter.clone(),
        };
        let routing = match draft.routing.as_deref().map(str::trim) {
            None | Some("") => Routing::PerTenant,
            Some(text) => text.parse::<Routing>().unwrap_or_else(|_| {
                problems.invalid("routing", "must be `per_tenant` or `digest`");
                Routing::PerTenant
            }),
        };
        let max_in_flight = match draft.max_in_flight {
            None => kind.map_or(1, IntegrationKind::default_max_in_flight),
            Some(n @ 1..=MAX_IN_FLIGHT) => u32::try_from(n).unwrap_or(1),
            Some(_) => {
                problems.invalid("max_in_flight", format!("must be from 1 to {MAX_IN_FLIGHT}"));
                1
            }
        };
        let hourly_budget = match draft.hourly_budget {
            Setting::Kept(budget) => budget,
            Setting::Given(None) => kind.and_then(IntegrationKind::default_hourly_budget),
            Setting::Given(Some(n @ 1..=MAX_HOURLY_BUDGET)) => u32::try_from(n).ok(),
            Setting::Given(Some(_)) => {
                problems.invalid(
                    "hourly_budget",
                    format!("must be a whole number from 1 to {MAX_HOURLY_BUDGET}"),
                );
                None
            }
        };
        problems.into_result().map_err(CheckError::Refused)?;
        // A kind or URL that is missing is among the problems.
        let (Some(kind), Some(url)) = (kind, url) else {
            return Err(CheckError::Refused(Problems::one("url", "is required")));
        };
        let sealed = SealedSecrets {
            credentials: draft.credentials,
            url: kind.url_is_secret().then(|| url.to_string()),
            signing_secrets: draft.signing_secrets,
        };
        Ok(IntegrationWrite {
            name,
            kind: kind.as_str().to_owned(),
            url: (!kind.url_is_secret()).then(|| url.to_string()),
            config: draft.config,
            secrets: secrets::seal(self.sealer, self.org.org_id, &sealed),
            filter,
            routing,
            max_in_flight,
            hourly_budget,
            enabled: draft.enabled,
        })
    }

    /// The kind's own settings, through its connector, and the destinations the connector
    /// would reach.
    fn check_kind_settings(
        &self,
        kind: IntegrationKind,
        url: Option<&Url>,
        draft: &Draft,
        now: DateTime<Utc>,
        problems: &mut Problems,
    ) {
        let settings = ConnectorSettings {
            kind,
            // A stand-in lets the kind's other settings be checked although the URL is wrong.
            url: url.cloned().unwrap_or_else(|| Url::parse("https://url.invalid/").expect("a URL")),
            config: draft.config.clone(),
            credentials: draft.credentials.clone(),
            signing_secrets: draft
                .signing_secrets
                .iter()
                .filter(|s| s.expires_at.is_none_or(|at| at > now))
                .map(|s| s.secret.clone())
                .collect(),
        };
        match connectors::build(&settings) {
            Ok(connector) => {
                if url.is_some() {
                    for destination in connector.destinations() {
                        self.check_destination(&destination, problems);
                    }
                }
            }
            Err(errors) => {
                // A section that is not an object was named already; its fields would only
                // repeat that.
                let not_object = |section: &str| {
                    let value = if section == "config" { &draft.config } else { &draft.credentials };
                    !value.is_object()
                };
                for e in errors {
                    let section = e.field.split('.').next().unwrap_or("");
                    let stand_in = e.field == "url" && url.is_none();
                    let repeated = e.field.contains('.')
                        && matches!(section, "config" | "credentials")
                        && not_object(section);
                    if !stand_in && !repeated {
                        problems.invalid(e.field, e.message);
                    }
                }
            }
        }
    }

    /// What the network policy says about one destination (scheme, and the address if the host
    /// is an IP literal; names are checked when the engine resolves them).
    fn check_destination(&self, url: &Url, problems: &mut Problems) {
        if let Err(blocked) = self.network.check_url(url) {
            // Only what the user typed is named (an IP literal is in the reason already); nothing
            // is resolved here, so no internal address can leak.
            let why = blocked.to_string();
            match url.host() {
                Some(url::Host::Domain(host)) if !why.contains(host) => {
                    problems.refused("url", format!("{host}: {why}"))
                }
                _ => problems.refused("url", why),
            }
        }
    }
}

/// How long the signing secret a rotation replaces stays valid: `asked` seconds (at most
/// [`MAX_PREVIOUS_VALID_SECS`]), a day when not asked.
pub fn previous_secret_validity(asked: Option<u64>) -> Result<u64, Problems> {
    let valid_for = asked.unwrap_or(DEFAULT_PREVIOUS_VALID_SECS);
    if valid_for > MAX_PREVIOUS_VALID_SECS {
        return Err(Problems::one(
            "previous_valid_for_secs",
            format!("may be at most {MAX_PREVIOUS_VALID_SECS} (7 days)"),
        ));
    }
    Ok(valid_for)
}

/// Makes a new signing secret, the newest of `stored`'s, and returns it (to be shown once). The
/// ones it replaces stay valid `valid_for_secs` more at most; expired ones are dropped, and at
/// most three are kept.
pub fn rotate_signing_secret(stored: &mut SealedSecrets, valid_for_secs: u64, now: DateTime<Utc>) -> String {
    let expires = now + Duration::seconds(i64::try_from(valid_for_secs).unwrap_or(i64::MAX));
    let new_secret = SigningSecret::generate().to_whsec();
    let mut kept = vec![StoredSigningSecret { secret: new_secret.clone(), expires_at: None }];
    kept.extend(
        std::mem::take(&mut stored.signing_secrets)
            .into_iter()
            .map(|s| StoredSigningSecret {
                expires_at: Some(s.expires_at.map_or(expires, |at| at.min(expires))),
                secret: s.secret,
            })
            .filter(|s| s.expires_at.is_some_and(|at| at > now)),
    );
    kept.truncate(MAX_SIGNING_SECRETS);
    stored.signing_secrets = kept;
    new_secret
}

/// `https://hooks.slack.com/services/T0/B0/xyz` → `https://hooks.slack.com/…`: how a secret URL
/// is shown.
pub fn redacted_url(url: &str) -> String {
    match Url::parse(url) {
        Ok(u) => format!("{}/…", u.origin().ascii_serialization()),
        Err(_) => "…".to_owned(),
    }
}

/// Whether a URL is a redacted one as [`redacted_url`] makes them: its path is only `…`
/// (percent-encoded once parsed).
fn is_redacted(url: &Url) -> bool {
    url.path() == "/%E2%80%A6"
}

/// Whether `given` is what the API shows for the secret URL `stored`: a client sending back the
/// integration it read means to keep the URL, not to replace it with its redacted form.
fn is_redacted_form_of(given: &str, stored: &str) -> bool {
    let shown = redacted_url(stored);
    given.trim() == shown
        || matches!((Url::parse(given.trim()), Url::parse(&shown)), (Ok(a), Ok(b)) if a == b)
}

/// The fields (`config.a.b[0]`) of every string in `value`, key or value, with a NUL in it.
fn nul_strings(path: &str, value: &Value) -> Vec<String> {
    let mut found = Vec::new();
    match value {
        Value::String(text) if text.contains('\0') => found.push(path.to_owned()),
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                found.extend(nul_strings(&format!("{path}[{i}]"), item));
            }
        }
        Value::Object(map) => {
            for (key, item) in map {
                let field = format!("{path}.{}", key.replace('\0', "\\u0000"));
                if key.contains('\0') {
                    found.push(field.clone());
                }
                found.extend(nul_strings(&field, item));
            }
        }
        _ => {}
    }
    found
}

/// The origins (scheme, host, port) an integration's requests, credentials included, go to:
/// its connector's destinations (a PSA's API, an authorisation server named in the config), or
/// its URL's when the settings do not make a connector.
fn destination_origins(
    kind: IntegrationKind,
    url: Option<&str>,
    config: &Value,
    credentials: &Value,
) -> HashSet<String> {
    let url = url.map(str::trim).filter(|u| !u.is_empty());
    let url = url.or((kind == IntegrationKind::Pagerduty).then_some(PAGERDUTY_EVENTS_URL));
    let Some(url) = url.and_then(|u| Url::parse(u).ok()) else { return HashSet::new() };
    let settings = ConnectorSettings {
        kind,
        url: url.clone(),
        config: config.clone(),
        credentials: credentials.clone(),
        signing_secrets: Vec::new(),
    };
    let destinations = connectors::build(&settings).map(|c| c.destinations()).unwrap_or_else(|_| vec![url]);
    destinations.iter().map(|u| u.origin().ascii_serialization()).collect()
}

/// Drops credentials given as `null` (absent, as far as the kind is concerned).
fn credentials_object(value: Option<Value>) -> Value {
    match value {
        None | Some(Value::Null) => Value::Object(Map::new()),
        Some(Value::Object(map)) => Value::Object(map.into_iter().filter(|(_, v)| !v.is_null()).collect()),
        Some(other) => other,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn a_secret_url_shows_only_its_origin() {
        assert_eq!(redacted_url("https://hooks.slack.com/services/T0/B0/xyz"), "https://hooks.slack.com/…");
        assert_eq!(redacted_url("https://x.example:8443/a?b=c"), "https://x.example:8443/…");
        assert_eq!(redacted_url("not a url"), "…");
    }

    #[test]
    fn the_redacted_form_of_a_secret_url_is_recognised() {
        let secret = "https://hooks.slack.com/services/T0/B0/xyz";
        for shown in
            ["https://hooks.slack.com/…", " https://hooks.slack.com/%E2%80%A6 ", "HTTPS://HOOKS.SLACK.COM/…"]
        {
            assert!(is_redacted_form_of(shown, secret), "{shown}");
        }
        assert!(!is_redacted_form_of("https://hooks.example.com/…", secret));
        assert!(!is_redacted_form_of(secret, secret), "the URL itself is no redaction");
        assert!(is_redacted(&Url::parse("https://hooks.example.com/…").unwrap()));
        assert!(!is_redacted(&Url::parse("https://hooks.example.com/…/x").unwrap()));
    }

    #[test]
    fn every_string_with_a_nul_is_named_by_its_path() {
        let config = json!({ "a": "ok", "b": ["x", "y\u{0}"], "c": { "d\u{0}": "z", "e": "\u{0}" } });
        let mut found = nul_strings("config", &config);
        found.sort();
        assert_eq!(found, ["config.b[1]", "config.c.d\\u0000", "config.c.e"]);
        assert!(nul_strings("config", &json!({ "a": ["b", 1, null] })).is_empty());
    }

    #[test]
    fn null_credentials_are_absent() {
        assert_eq!(credentials_object(None), json!({}));
        assert_eq!(credentials_object(Some(json!({"a": "x", "b": null}))), json!({"a": "x"}));
        assert_eq!(credentials_object(Some(json!("text"))), json!("text"));
    }

    #[test]
    fn a_rotation_keeps_the_replaced_secret_for_a_while_and_three_at_most() {
        let now = Utc::now();
        let mut stored = SealedSecrets::default();
        let first = rotate_signing_secret(&mut stored, 3600, now);
        let second = rotate_signing_secret(&mut stored, 3600, now);
        assert_eq!(stored.valid_signing_secrets(now), [second.clone(), first]);
        assert_eq!(stored.signing_secrets[1].expires_at, Some(now + Duration::seconds(3600)));
        for _ in 0..3 {
            rotate_signing_secret(&mut stored, 3600, now);
        }
        assert_eq!(stored.signing_secrets.len(), 3);
        rotate_signing_secret(&mut stored, 0, now);
        assert_eq!(stored.signing_secrets.len(), 1, "with no overlap only the new one is valid");
        assert_eq!(previous_secret_validity(None).unwrap(), DEFAULT_PREVIOUS_VALID_SECS);
        assert!(previous_secret_validity(Some(MAX_PREVIOUS_VALID_SECS + 1)).is_err());
    }
}
