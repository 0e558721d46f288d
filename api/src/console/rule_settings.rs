//! The tenant page's rule settings: each shipped rule as it runs for this tenant (on or off,
//! severity, parameters), what the organisation and the tenant override, and for org admins a
//! form per rule. `POST /tenants/{id}/rules/{rule_id}` sets the tenant's override (`op=save`) or
//! removes it (`op=reset`) through the REST routes' own calls (`routes::rule_config`): the same
//! checks, the same audit entry, the same re-evaluation.

use actix_web::{HttpRequest, HttpResponse, web};
use serde_json::{Map, Value};
use wbd_rules::Lang;
use wbd_rules::ParamKind;
use wbd_store::{RuleScope, StoredRuleSetting, TenantId};

use super::error::ConsoleError;
use super::page::see_other;
use super::session::ConsoleUser;
use super::tenant::{RuleRefusal, parse_id, tenant_page};
use crate::error::{ApiError, ErrorCode};
use crate::routes::rule_config::{put_rule_setting, remove_rule_setting};
use crate::state::AppState;

/// A parameter of a rule as its form shows it.
pub struct ParamField {
    pub name: &'static str,
    pub kind: &'static str,
    pub description: &'static str,
    pub default: String,
    /// The tenant's value, as typed (empty: inherited).
    pub value: String,
}

/// One shipped rule as it runs for the tenant.
pub struct RuleSettingRow {
    pub id: &'static str,
    pub title: &'static str,
    pub on: bool,
    pub severity: String,
    pub default_severity: &'static str,
    /// The organisation's override, in short, if any.
    pub org_override: Option<String>,
    /// The tenant's own override, in short, if any.
    pub tenant_override: Option<String>,
    /// The form's values: `inherit`, `on` or `off`.
    pub state: &'static str,
    /// The form's severity (empty: inherited).
    pub severity_choice: String,
    pub params: Vec<ParamField>,
    /// What stopped the last change of this rule.
    pub problems: Vec<String>,
}

impl RuleSettingRow {
    /// The form starts open when it has something to say.
    pub fn open(&self) -> bool {
        !self.problems.is_empty()
    }
}

fn settings_of(stored: Option<&StoredRuleSetting>) -> Map<String, Value> {
    stored.and_then(|s| s.settings.as_object().cloned()).unwrap_or_default()
}

/// `{disabled: true, severity: "low"}` as "off, severity low".
fn in_short(settings: &Map<String, Value>) -> Option<String> {
    let mut parts = Vec::new();
    match settings.get("disabled").and_then(Value::as_bool) {
        Some(true) => parts.push("off".to_owned()),
        Some(false) => parts.push("on".to_owned()),
        None => {}
    }
    if let Some(s) = settings.get("severity").and_then(Value::as_str) {
        parts.push(format!("severity {s}"));
    }
    if let Some(params) = settings.get("params").and_then(Value::as_object) {
        parts.extend(params.iter().map(|(k, v)| format!("{k} = {}", param_text(v))));
    }
    for key in ["open_after", "resolve_after"] {
        if let Some(n) = settings.get(key) {
            parts.push(format!("{key} = {n}"));
        }
    }
    (!parts.is_empty()).then(|| parts.join(", "))
}

/// A parameter's value as a form field holds it (a list: comma-separated).
fn param_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Array(items) => items.iter().map(param_text).collect::<Vec<_>>().join(", "),
        other => other.to_string(),
    }
}

/// A parameter's field as the JSON value the REST route takes; the rule's own check says what
/// is wrong with it (text that is not a number stays text, and is refused as such).
fn param_value(kind: &ParamKind, text: &str) -> Value {
    match kind {
        ParamKind::Integer { .. } => {
            text.parse::<i64>().map_or_else(|_| Value::String(text.to_owned()), Value::from)
        }
        ParamKind::Boolean => match text {
            "true" => Value::Bool(true),
            "false" => Value::Bool(false),
            _ => Value::String(text.to_owned()),
        },
        ParamKind::StringList { .. } => Value::Array(
            text.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(|s| Value::String(s.to_owned()))
                .collect(),
        ),
        _ => Value::String(text.to_owned()),
    }
}

/// Every shipped rule as it runs for the tenant, with `refused` laid on the rule it is about.
pub fn rows(stored: &[StoredRuleSetting], lang: Lang, refused: Option<&RuleRefusal>) -> Vec<RuleSettingRow> {
    wbd_rules::rules_in(lang)
        .iter()
        .map(|rule| {
            let org = settings_of(stored.iter().find(|s| s.tenant_id.is_none() && s.rule_id == rule.id));
            let tenant = settings_of(stored.iter().find(|s| s.tenant_id.is_some() && s.rule_id == rule.id));
            let pick = |key: &str| tenant.get(key).or_else(|| org.get(key));
            let tenant_params = tenant.get("params").and_then(Value::as_object);
            let mut row = RuleSettingRow {
                id: rule.id,
                title: rule.title,
                on: !pick("disabled").and_then(Value::as_bool).unwrap_or(false),
                severity: pick("severity")
                    .and_then(Value::as_str)
                    .unwrap_or(rule.severity.as_str())
                    .to_owned(),
                default_severity: rule.severity.as_str(),
                org_override: in_short(&org),
                tenant_override: in_short(&tenant),
                state: match tenant.get("disabled").and_then(Value::as_bool) {
                    Some(true) => "off",
                    Some(false) => "on",
                    None => "inherit",
                },
                severity_choice: tenant
                    .get("severity")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_owned(),
                params: rule
                    .params
                    .iter()
                    .map(|p| ParamField {
                        name: p.name,
                        kind: p.kind.name(),
                        description: p.description,
                        default: param_text(&p.default),
                        value: tenant_params.and_then(|m| m.get(p.name)).map(param_text).unwrap_or_default(),
                    })
                    .collect(),
                problems: Vec::new(),
            };
            if let Some(refused) = refused.filter(|r| r.rule_id == rule.id) {
                row.state = refused.state;
                row.severity_choice.clone_from(&refused.severity);
                for field in &mut row.params {
                    field.value = refused
                        .params
                        .iter()
                        .find(|(n, _)| n == field.name)
                        .map(|(_, v)| v.clone())
                        .unwrap_or_default();
                }
                row.problems.clone_from(&refused.problems);
            }
            row
        })
        .collect()
}

/// `POST /tenants/{id}/rules/{rule_id}`: the tenant's override of one rule, set or removed.
pub async fn change(
    req: HttpRequest,
    state: web::Data<AppState>,
    user: ConsoleUser,
    path: web::Path<(String, String)>,
    body: web::Bytes,
) -> Result<HttpResponse, ConsoleError> {
    let fields: Vec<(String, String)> = user.checked_form(&req, &body)?;
    let (tenant, rule_id) = path.into_inner();
    let tenant_id = TenantId(parse_id(&tenant, "tenant")?);
    // Another organisation's tenant is not found before the role is looked at.
    state
        .store
        .get_tenant(user.who.org, tenant_id)
        .await?
        .ok_or_else(|| ConsoleError::not_found("tenant"))?;
    let scope = RuleScope::Tenant(tenant_id);
    let field = |name: &str| fields.iter().find(|(n, _)| n == name).map_or("", |(_, v)| v.trim());
    let done = |what: &str| {
        Ok(see_other(&format!("/tenants/{}?rule={rule_id}&done={what}#rule-{rule_id}", tenant_id.0)).finish())
    };
    if field("op") == "reset" {
        return match remove_rule_setting(&state, &user.who, scope, &rule_id).await {
            Ok(()) => done("reset"),
            // Nothing at this level: nothing to remove, which is what was asked.
            Err(e) if e.code == ErrorCode::NotFound && wbd_rules::rule_info(&rule_id, Lang::En).is_some() => {
                done("reset")
            }
            Err(e) => Err(e.into()),
        };
    }
    let info = wbd_rules::rule_info(&rule_id, Lang::En).ok_or_else(|| ConsoleError::not_found("rule"))?;
    let mut body = Map::new();
    let state_choice = match field("state") {
        "on" => {
            body.insert("disabled".into(), Value::Bool(false));
            "on"
        }
        "off" => {
            body.insert("disabled".into(), Value::Bool(true));
            "off"
        }
        _ => "inherit",
    };
    if !field("severity").is_empty() {
        body.insert("severity".into(), Value::String(field("severity").to_owned()));
    }
    let mut params = Map::new();
    let mut typed = Vec::new();
    for p in info.params {
        let text = field(&format!("param.{}", p.name));
        if !text.is_empty() {
            params.insert(p.name.to_owned(), param_value(&p.kind, text));
            typed.push((p.name.to_owned(), text.to_owned()));
        }
    }
    if !params.is_empty() {
        body.insert("params".into(), Value::Object(params));
    }
    // Flap damping is kept as it was set (through the REST API).
    let stored = state.store.list_rule_settings(user.who.org, Some(tenant_id)).await?;
    let current = settings_of(stored.iter().find(|s| s.tenant_id.is_some() && s.rule_id == rule_id));
    for key in ["open_after", "resolve_after"] {
        if let Some(v) = current.get(key) {
            body.insert(key.into(), v.clone());
        }
    }
    match put_rule_setting(&state, &user.who, scope, &rule_id, body).await {
        Ok(_) => done("saved"),
        Err(e) if matches!(e.code, ErrorCode::InvalidRuleSettings | ErrorCode::Validation) => {
            let refused = RuleRefusal {
                rule_id: rule_id.clone(),
                state: state_choice,
                severity: field("severity").to_owned(),
                params: typed,
                problems: problems_of(&e),
            };
            tenant_page(&req, &state, &user, tenant_id, None, Some(refused)).await
        }
        Err(e) => Err(e.into()),
    }
}

/// Each refused field of an override, in words.
fn problems_of(e: &ApiError) -> Vec<String> {
    let listed: Vec<String> = e
        .errors
        .as_ref()
        .and_then(Value::as_array)
        .map(|items| items.iter().filter_map(|i| i["detail"].as_str().map(str::to_owned)).collect())
        .unwrap_or_default();
    if listed.is_empty() {
        vec![e.detail.clone().unwrap_or_else(|| "This override is refused.".to_owned())]
    } else {
        listed
    }
}
