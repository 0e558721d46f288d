//! `GET /custom-rules`: the organisation's custom rules and an editor for one.
//! `POST /custom-rules` either tries the rule in the editor on every tenant (a dry run, through
//! the REST dry run's own call: nothing is stored, every role may) or saves it (org admins,
//! through the REST route's call: the same compile check, the same audit entry). A rule the CEL
//! compiler refuses comes back with the error at its line and column, next to the expression.
//!
//! The console edits organisation-wide rules; a tenant's own rules are the REST API's
//! (`/v1/custom-rules?tenant_id=`).

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use askama::Template;
use chrono::Utc;
use serde::Deserialize;
use serde_json::Value;
use wbd_rules::Severity;
use wbd_rules::custom::CustomRule;
use wbd_store::{Role, RuleScope};

use super::error::ConsoleError;
use super::page::{Chrome, render, see_other};
use super::session::ConsoleUser;
use crate::error::{ApiError, ErrorCode};
use crate::routes::rule_config::{DryRunRequest, dry_run_tenant, save_custom_rule};
use crate::state::AppState;

/// A dry run tries the rule on at most this many tenants (the first by name), so one click
/// cannot keep a server busy for minutes.
const MAX_DRY_RUN_TENANTS: usize = 200;

const SEVERITIES: [&str; 5] = ["critical", "high", "medium", "low", "info"];

/// A problem the compiler found, where it is.
pub struct RuleProblem {
    pub field: String,
    pub line: Option<u64>,
    pub column: Option<u64>,
    /// The compiler's message, with its caret display.
    pub detail: String,
}

/// The editor's contents.
pub struct RuleEditor {
    pub id: String,
    pub title: String,
    pub severity: String,
    pub condition: String,
    pub subject_expr: String,
}

impl RuleEditor {
    fn example() -> RuleEditor {
        RuleEditor {
            id: String::new(),
            title: String::new(),
            severity: "medium".to_owned(),
            condition: "facts.endpoint.exists(e, e.port != 443)".to_owned(),
            subject_expr: String::new(),
        }
    }

    fn rule(&self) -> Result<CustomRule, ConsoleError> {
        let severity: Severity = serde_json::from_value(Value::String(self.severity.clone()))
            .map_err(|_| ConsoleError::bad_request("Pick one of the severities offered."))?;
        Ok(CustomRule {
            id: self.id.trim().to_owned(),
            title: self.title.clone(),
            severity,
            condition: self.condition.clone(),
            subject_expr: Some(self.subject_expr.trim()).filter(|s| !s.is_empty()).map(str::to_owned),
        })
    }
}

pub struct RuleRow {
    pub id: String,
    pub title: String,
    pub severity: String,
    pub condition: String,
    pub updated_by: String,
}

/// What the rule concluded for one tenant.
pub struct TenantVerdict {
    pub tenant_id: String,
    pub tenant_name: String,
    /// `fails`, `passes` or `unknown`.
    pub outcome: &'static str,
    /// Subject and summary of each failing or undecided subject.
    pub subjects: Vec<(String, String)>,
}

pub struct DryRun {
    pub verdicts: Vec<TenantVerdict>,
    pub failing: usize,
    pub passing: usize,
    pub unknown: usize,
    pub tried_of: Option<usize>,
}

#[derive(Template)]
#[template(path = "console/custom_rules.html")]
struct CustomRulesPage {
    chrome: Chrome,
    rules: Vec<RuleRow>,
    editor: RuleEditor,
    severities: [&'static str; 5],
    csrf: String,
    can_save: bool,
    problems: Vec<RuleProblem>,
    refused: Option<String>,
    saved: Option<String>,
    dry_run: Option<DryRun>,
}

impl CustomRulesPage {
    /// The problems with `field` (`id`, `title`, `condition`, `subject_expr`).
    pub fn problems_of(&self, field: &str) -> Vec<&RuleProblem> {
        self.problems.iter().filter(|p| p.field == field).collect()
    }
}

#[derive(Deserialize)]
pub struct RulesQuery {
    /// A saved rule to open in the editor.
    edit: Option<String>,
    saved: Option<String>,
}

async fn page(
    state: &AppState,
    user: &ConsoleUser,
    editor: Option<RuleEditor>,
    outcome: Outcome,
) -> Result<HttpResponse, ConsoleError> {
    let stored = state.store.list_custom_rules(user.who.org, None).await?;
    let rules: Vec<RuleRow> = stored
        .into_iter()
        .filter(|r| r.tenant_id.is_none())
        .filter_map(|r| {
            let rule: CustomRule = serde_json::from_value(r.definition).ok()?;
            Some(RuleRow {
                id: rule.id,
                title: rule.title,
                severity: rule.severity.as_str().to_owned(),
                condition: rule.condition,
                updated_by: r.updated_by,
            })
        })
        .collect();
    let (status, problems, refused, dry_run, saved) = match outcome {
        Outcome::Shown { saved } => (StatusCode::OK, Vec::new(), None, None, saved),
        Outcome::Refused { problems, refused } => {
            (StatusCode::UNPROCESSABLE_ENTITY, problems, Some(refused), None, None)
        }
        Outcome::DryRun(run) => (StatusCode::OK, Vec::new(), None, Some(run), None),
    };
    let page = CustomRulesPage {
        chrome: Chrome::new("/custom-rules", user.lang, Some(user.signed_in())),
        rules,
        editor: editor.unwrap_or_else(RuleEditor::example),
        severities: SEVERITIES,
        csrf: user.csrf.clone(),
        can_save: user.who.role == Role::OrgAdmin,
        problems,
        refused,
        saved,
        dry_run,
    };
    render(user.builder(status), &page)
}

enum Outcome {
    Shown { saved: Option<String> },
    Refused { problems: Vec<RuleProblem>, refused: String },
    DryRun(DryRun),
}

/// `GET /custom-rules`
pub async fn list(
    state: web::Data<AppState>,
    user: ConsoleUser,
    query: web::Query<RulesQuery>,
) -> Result<HttpResponse, ConsoleError> {
    let editor = match query.edit.as_deref() {
        None => None,
        Some(id) => {
            let stored = state.store.list_custom_rules(user.who.org, None).await?;
            let rule = stored
                .into_iter()
                .filter(|r| r.tenant_id.is_none() && r.rule_id == id)
                .find_map(|r| serde_json::from_value::<CustomRule>(r.definition).ok())
                .ok_or_else(|| ConsoleError::not_found("custom rule"))?;
            Some(RuleEditor {
                id: rule.id,
                title: rule.title,
                severity: rule.severity.as_str().to_owned(),
                condition: rule.condition,
                subject_expr: rule.subject_expr.unwrap_or_default(),
            })
        }
    };
    page(&state, &user, editor, Outcome::Shown { saved: query.saved.clone() }).await
}

#[derive(Deserialize)]
struct RuleForm {
    #[serde(default)]
    op: String,
    #[serde(default)]
    id: String,
    #[serde(default)]
    title: String,
    #[serde(default)]
    severity: String,
    #[serde(default)]
    condition: String,
    #[serde(default)]
    subject_expr: String,
}

/// A refusal of the rule as the editor shows it; anything else is an error page.
fn refusal(e: ApiError) -> Result<Outcome, ConsoleError> {
    if !matches!(e.code, ErrorCode::InvalidCustomRule | ErrorCode::Validation) {
        return Err(e.into());
    }
    let problems = e
        .errors
        .as_ref()
        .and_then(Value::as_array)
        .map(|items| {
            items
                .iter()
                .map(|p| RuleProblem {
                    field: p["field"].as_str().unwrap_or_default().to_owned(),
                    line: p["position"]["line"].as_u64(),
                    column: p["position"]["column"].as_u64(),
                    detail: p["detail"].as_str().unwrap_or_default().to_owned(),
                })
                .collect()
        })
        .unwrap_or_default();
    let refused = match e.code {
        ErrorCode::InvalidCustomRule => "The rule does not compile; nothing was saved.".to_owned(),
        _ => format!("Nothing was saved: {}.", e.detail.as_deref().unwrap_or("the rule is refused")),
    };
    Ok(Outcome::Refused { problems, refused })
}

/// `POST /custom-rules`: `op=dry-run` tries the rule on every tenant, `op=save` saves it.
pub async fn act(
    req: HttpRequest,
    state: web::Data<AppState>,
    user: ConsoleUser,
    body: web::Bytes,
) -> Result<HttpResponse, ConsoleError> {
    let form: RuleForm = user.checked_form(&req, &body)?;
    let editor = RuleEditor {
        id: form.id,
        title: form.title,
        severity: form.severity,
        condition: form.condition,
        subject_expr: form.subject_expr,
    };
    let rule = editor.rule()?;
    let outcome = match form.op.as_str() {
        "save" => match save_custom_rule(&state, &user.who, RuleScope::Org, rule).await {
            Ok(saved) => {
                tracing::info!(org_id = %user.who.org.org_id, rule_id = %saved.id, "custom rule saved in the console");
                return Ok(see_other(&format!("/custom-rules?edit={0}&saved={0}", saved.id)).finish());
            }
            Err(e) => refusal(e)?,
        },
        "dry-run" => match dry_run_everywhere(&state, &user, rule).await {
            Ok(run) => Outcome::DryRun(run),
            Err(e) => refusal(e)?,
        },
        _ => return Err(ConsoleError::bad_request("Choose “Dry run” or “Save”.")),
    };
    page(&state, &user, Some(editor), outcome).await
}

/// The rule tried on each tenant (the first [`MAX_DRY_RUN_TENANTS`] by name).
async fn dry_run_everywhere(
    state: &AppState,
    user: &ConsoleUser,
    rule: CustomRule,
) -> Result<DryRun, ApiError> {
    let mut tenants = state.store.list_tenant_summaries(user.who.org, Utc::now()).await?;
    tenants.sort_by_key(|a| a.tenant.name.to_lowercase());
    let total = tenants.len();
    tenants.truncate(MAX_DRY_RUN_TENANTS);
    let mut run = DryRun { verdicts: Vec::new(), failing: 0, passing: 0, unknown: 0, tried_of: None };
    for t in &tenants {
        let request = DryRunRequest { custom_rule: Some(rule.clone()), settings: None };
        let result = dry_run_tenant(state, &user.who, t.tenant.id, request).await?;
        let ours = |v: &&crate::routes::rule_config::DryRunVerdict| v.rule_id == rule.id;
        let failing: Vec<(String, String)> = result
            .would_open
            .iter()
            .chain(&result.still_failing)
            .filter(ours)
            .map(|v| (v.subject.clone(), v.summary.clone()))
            .collect();
        let unknown: Vec<(String, String)> =
            result.unknown.iter().filter(ours).map(|v| (v.subject.clone(), v.summary.clone())).collect();
        let (outcome, subjects) = if !failing.is_empty() {
            run.failing += 1;
            ("fails", failing)
        } else if !unknown.is_empty() {
            run.unknown += 1;
            ("unknown", unknown)
        } else {
            run.passing += 1;
            ("passes", Vec::new())
        };
        run.verdicts.push(TenantVerdict {
            tenant_id: t.tenant.id.0.to_string(),
            tenant_name: t.tenant.name.clone(),
            outcome,
            subjects,
        });
    }
    // Failing tenants first, then undecided, then passing.
    run.verdicts.sort_by_key(|v| match v.outcome {
        "fails" => 0,
        "unknown" => 1,
        _ => 2,
    });
    run.tried_of = (total > tenants.len()).then_some(total);
    Ok(run)
}
