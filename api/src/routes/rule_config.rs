//! Rule configuration per organisation and per tenant: overrides of shipped rules (disable,
//! severity, parameters, flap damping), custom rules in CEL checked when saved, and a dry run that
//! shows what the rules would conclude for a tenant now. Every change is in the audit log
//! (`routes::audit_log`).

use actix_web::{HttpResponse, delete, get, post, put, web};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;
use wbd_rules::custom::{self, CustomRule};
use wbd_rules::{RuleSettings, Severity};
use wbd_store::{
    FindingStatus, RuleConfigKind, RuleConfigWrite, RuleScope, StoredCustomRule, StoredRuleSetting, TenantId,
    TenantScope,
};

use crate::auth::Principal;
use crate::error::{ApiError, ApiResult, ErrorCode, Problem};
use crate::input::JsonObject;
use crate::params::TenantFilter;
use crate::responses::{BadRequest, Forbidden, NotFound, Unauthenticated, Unprocessable};
use crate::state::AppState;

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ScopeQuery {
    /// The tenant the setting applies to; absent: the whole organisation.
    #[param(value_type = Option<Uuid>)]
    pub tenant_id: Option<TenantFilter>,
}

impl ScopeQuery {
    fn scope(&self) -> RuleScope {
        self.tenant_id.map_or(RuleScope::Org, |t| RuleScope::Tenant(t.0))
    }
}

#[derive(Serialize, ToSchema)]
pub struct RuleSettingView {
    /// Absent for an organisation-wide override.
    pub tenant_id: Option<Uuid>,
    pub rule_id: String,
    /// `{disabled?, severity?, params?, open_after?, resolve_after?}`.
    #[schema(value_type = Object)]
    pub settings: Value,
    pub updated_at: DateTime<Utc>,
    /// Who made the change (`api_key:<id>`).
    pub updated_by: String,
}

impl From<StoredRuleSetting> for RuleSettingView {
    fn from(s: StoredRuleSetting) -> Self {
        RuleSettingView {
            tenant_id: s.tenant_id.map(|t| t.0),
            rule_id: s.rule_id,
            settings: s.settings,
            updated_at: s.updated_at,
            updated_by: s.updated_by,
        }
    }
}

/// A severity, as rules and findings name it.
#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum SeverityName {
    Critical,
    High,
    Medium,
    Low,
    Info,
}

/// An override of a shipped rule. Every field is optional; what is absent keeps the level below
/// (tenant over organisation over the pack's defaults). `{}` overrides nothing.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
pub struct RuleSettingsDoc {
    /// `true` disables the rule; `false` enables one the organisation disabled.
    disabled: Option<bool>,
    #[schema(value_type = Option<SeverityName>)]
    severity: Option<Severity>,
    /// Parameter values by name; each must be one the rule declares, of its type (see
    /// `GET /v1/rules`).
    #[serde(default)]
    #[schema(value_type = Object)]
    params: serde_json::Map<String, Value>,
    /// Open a finding only after this many consecutive failing evaluations (1 to 20).
    #[schema(minimum = 1, maximum = 20)]
    open_after: Option<u32>,
    /// Resolve only after this many consecutive passing evaluations (1 to 20).
    #[schema(minimum = 1, maximum = 20)]
    resolve_after: Option<u32>,
}

async fn tenant_must_exist(state: &AppState, who: &Principal, scope: RuleScope) -> ApiResult<()> {
    if let RuleScope::Tenant(t) = scope {
        state.store.get_tenant(who.org, t).await?.ok_or_else(|| ApiError::not_found("tenant"))?;
    }
    Ok(())
}

fn parse_settings(rule_id: &str, body: Value) -> ApiResult<RuleSettings> {
    let settings: RuleSettings = serde_json::from_value(body)
        .map_err(|e| ApiError::new(ErrorCode::Validation, format!("not a valid rule override: {e}")))?;
    if let Err(errors) = settings.validate(rule_id) {
        if errors.iter().any(|e| matches!(e.problem, wbd_rules::SettingsProblem::UnknownRule)) {
            return Err(ApiError::new(
                ErrorCode::NotFound,
                format!("no shipped rule has the id {rule_id:?}"),
            ));
        }
        let detail = errors.iter().map(ToString::to_string).collect::<Vec<_>>().join("; ");
        let list: Vec<Value> = errors
            .iter()
            .map(|e| json!({ "pointer": e.pointer(), "detail": e.to_string(), "problem": e.problem }))
            .collect();
        return Err(ApiError::new(ErrorCode::InvalidRuleSettings, detail).with_errors(Value::Array(list)));
    }
    Ok(settings)
}

/// Overrides of shipped rules: the organisation's, or those that apply to one tenant.
#[utoipa::path(tag = "rules", security(("bearer" = [])), params(ScopeQuery), responses(
    (status = 200, body = Vec<RuleSettingView>),
    Unauthenticated, NotFound,
))]
#[get("/v1/rule-settings")]
pub async fn list_settings(
    state: web::Data<AppState>,
    who: Principal,
    q: web::Query<ScopeQuery>,
) -> ApiResult<HttpResponse> {
    let scope = q.scope();
    tenant_must_exist(&state, &who, scope).await?;
    let rows: Vec<RuleSettingView> = state
        .store
        .list_rule_settings(who.org, scope.tenant_id())
        .await?
        .into_iter()
        .map(Into::into)
        .collect();
    Ok(HttpResponse::Ok().json(rows))
}

/// Set the override of a shipped rule for the organisation or one tenant (org admins).
#[utoipa::path(tag = "rules", security(("bearer" = [])), params(("rule_id" = String, Path), ScopeQuery),
    request_body = RuleSettingsDoc, responses(
    (status = 200, body = RuleSettingView),
    BadRequest, Unauthenticated, Forbidden,
    (status = 404, description = "Unknown rule or tenant", body = Problem, content_type = "application/problem+json"),
    (status = 422, description = "A field is refused; `errors` points at each", body = Problem, content_type = "application/problem+json"),
))]
#[put("/v1/rule-settings/{rule_id}")]
pub async fn put_setting(
    state: web::Data<AppState>,
    who: Principal,
    rule_id: web::Path<String>,
    q: web::Query<ScopeQuery>,
    body: JsonObject<serde_json::Map<String, Value>>,
) -> ApiResult<HttpResponse> {
    let view = put_rule_setting(&state, &who, q.scope(), &rule_id, body.into_inner()).await?;
    Ok(HttpResponse::Ok().json(view))
}

/// Checks and stores the override of shipped rule `rule_id` at `scope` (the REST route and the
/// console both set overrides through this): org admins only.
pub async fn put_rule_setting(
    state: &AppState,
    who: &Principal,
    scope: RuleScope,
    rule_id: &str,
    body: serde_json::Map<String, Value>,
) -> ApiResult<RuleSettingView> {
    who.require_admin()?;
    let settings = parse_settings(rule_id, Value::Object(body))?;
    let document = serde_json::to_value(&settings).map_err(ApiError::internal)?;
    write(state, who, scope, RuleConfigKind::Setting, rule_id, Some(&document)).await?;
    let row = state
        .store
        .list_rule_settings(who.org, scope.tenant_id())
        .await?
        .into_iter()
        .find(|r| r.rule_id == rule_id && r.tenant_id == scope.tenant_id())
        .ok_or_else(|| ApiError::internal(anyhow::anyhow!("the override just written is missing")))?;
    Ok(RuleSettingView::from(row))
}

/// Remove an override; the level below applies again (org admins).
#[utoipa::path(tag = "rules", security(("bearer" = [])), params(("rule_id" = String, Path), ScopeQuery), responses(
    (status = 204, description = "Removed"),
    Unauthenticated, Forbidden, NotFound,
))]
#[delete("/v1/rule-settings/{rule_id}")]
pub async fn delete_setting(
    state: web::Data<AppState>,
    who: Principal,
    rule_id: web::Path<String>,
    q: web::Query<ScopeQuery>,
) -> ApiResult<HttpResponse> {
    remove_rule_setting(&state, &who, q.scope(), &rule_id).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// Removes the override of `rule_id` at `scope` (the REST route and the console both remove
/// through this): org admins only; 404 when there is none at that level.
pub async fn remove_rule_setting(
    state: &AppState,
    who: &Principal,
    scope: RuleScope,
    rule_id: &str,
) -> ApiResult<()> {
    who.require_admin()?;
    remove(state, who, scope, RuleConfigKind::Setting, rule_id, "override").await.map(|_| ())
}

/// Writes (or removes) one configuration document; 404 for another organisation's tenant.
async fn write(
    state: &AppState,
    who: &Principal,
    scope: RuleScope,
    kind: RuleConfigKind,
    rule_id: &str,
    document: Option<&Value>,
) -> ApiResult<Option<Value>> {
    match state
        .store
        .write_rule_config(who.org, scope, kind, rule_id, document, &who.actor(), Utc::now())
        .await?
    {
        RuleConfigWrite::Written { before } => {
            // Affected tenants were queued for evaluation in the same transaction.
            state.queue.notify();
            Ok(before)
        }
        RuleConfigWrite::NoSuchTenant => Err(ApiError::not_found("tenant")),
    }
}

async fn remove(
    state: &AppState,
    who: &Principal,
    scope: RuleScope,
    kind: RuleConfigKind,
    rule_id: &str,
    what: &str,
) -> ApiResult<HttpResponse> {
    match write(state, who, scope, kind, rule_id, None).await? {
        Some(_) => Ok(HttpResponse::NoContent().finish()),
        None => Err(ApiError::new(ErrorCode::NotFound, format!("no {what} {rule_id:?} at this level"))),
    }
}

#[derive(Serialize, ToSchema)]
pub struct CustomRuleView {
    pub tenant_id: Option<Uuid>,
    pub id: String,
    pub title: String,
    #[schema(value_type = SeverityName)]
    pub severity: String,
    /// CEL; `true` means there is a problem.
    pub condition: String,
    pub subject_expr: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub updated_by: String,
}

impl CustomRuleView {
    fn new(stored: StoredCustomRule) -> ApiResult<Self> {
        let rule: CustomRule = serde_json::from_value(stored.definition).map_err(ApiError::internal)?;
        Ok(CustomRuleView {
            tenant_id: stored.tenant_id.map(|t| t.0),
            id: rule.id,
            title: rule.title,
            severity: rule.severity.as_str().to_owned(),
            condition: rule.condition,
            subject_expr: rule.subject_expr,
            created_at: stored.created_at,
            updated_at: stored.updated_at,
            updated_by: stored.updated_by,
        })
    }
}

/// A custom rule as written by an MSP.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CustomRuleBody {
    /// 1 to 200 characters, not only whitespace.
    #[schema(min_length = 1, max_length = 200, pattern = r"\S")]
    pub title: String,
    #[schema(value_type = SeverityName)]
    pub severity: Severity,
    /// CEL over the published fact schema; `true` means there is a problem, e.g.
    /// `facts.endpoint.exists(e, e.port != 443)`. At most 4000 characters.
    #[schema(min_length = 1, max_length = 4000)]
    pub condition: String,
    /// CEL giving the finding's subject; `tenant` when absent. At most 4000 characters.
    #[serde(default)]
    #[schema(max_length = 4000)]
    pub subject_expr: Option<String>,
}

/// A custom rule to try in a dry run: a [`CustomRuleBody`] with its id.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct DryRunCustomRule {
    /// 1 to 64 lower-case letters, digits and inner hyphens.
    #[schema(pattern = "^[a-z0-9]([a-z0-9-]{0,62}[a-z0-9])?$")]
    id: String,
    #[schema(min_length = 1, max_length = 200, pattern = r"\S")]
    title: String,
    #[schema(value_type = SeverityName)]
    severity: Severity,
    #[schema(min_length = 1, max_length = 4000)]
    condition: String,
    #[schema(max_length = 4000)]
    subject_expr: Option<String>,
}

fn compile_error(e: &custom::RuleError) -> ApiError {
    let mut item = json!({ "field": e.field().as_str(), "detail": e.to_string() });
    if let Some(p) = e.position() {
        item["position"] = json!({ "line": p.line, "column": p.column });
    }
    ApiError::new(ErrorCode::InvalidCustomRule, e.to_string()).with_errors(Value::Array(vec![item]))
}

/// Custom rules: the organisation's, or those of one tenant.
#[utoipa::path(tag = "rules", security(("bearer" = [])), params(ScopeQuery), responses(
    (status = 200, body = Vec<CustomRuleView>),
    Unauthenticated, NotFound,
))]
#[get("/v1/custom-rules")]
pub async fn list_custom(
    state: web::Data<AppState>,
    who: Principal,
    q: web::Query<ScopeQuery>,
) -> ApiResult<HttpResponse> {
    let scope = q.scope();
    tenant_must_exist(&state, &who, scope).await?;
    let rows = state.store.list_custom_rules(who.org, scope.tenant_id()).await?;
    let views = rows.into_iter().map(CustomRuleView::new).collect::<ApiResult<Vec<_>>>()?;
    Ok(HttpResponse::Ok().json(views))
}

/// Save a custom rule (org admins). It is checked first: it must parse, name only fields of the
/// published fact schema, and evaluate on sample facts; otherwise a 422 points at the position.
#[utoipa::path(tag = "rules", security(("bearer" = [])), params(("rule_id" = String, Path), ScopeQuery),
    request_body = CustomRuleBody, responses(
    (status = 200, body = CustomRuleView),
    BadRequest, Unauthenticated, Forbidden, NotFound,
    (status = 422, description = "The rule is refused; `errors` gives the field and position", body = Problem, content_type = "application/problem+json"),
))]
#[put("/v1/custom-rules/{rule_id}")]
pub async fn put_custom(
    state: web::Data<AppState>,
    who: Principal,
    rule_id: web::Path<String>,
    q: web::Query<ScopeQuery>,
    body: JsonObject<CustomRuleBody>,
) -> ApiResult<HttpResponse> {
    let body = body.into_inner();
    let rule = CustomRule {
        id: rule_id.into_inner(),
        title: body.title,
        severity: body.severity,
        condition: body.condition,
        subject_expr: body.subject_expr,
    };
    let saved = save_custom_rule(&state, &who, q.scope(), rule).await?;
    Ok(HttpResponse::Ok().json(saved))
}

/// Checks and saves a custom rule (the REST route and the console both save through this): org
/// admins only; a rule that does not compile is refused with its field and position.
pub async fn save_custom_rule(
    state: &AppState,
    who: &Principal,
    scope: RuleScope,
    rule: CustomRule,
) -> ApiResult<CustomRuleView> {
    who.require_admin()?;
    tenant_must_exist(state, who, scope).await?;
    custom::compile(&rule).map_err(|e| compile_error(&e))?;
    let existing = state.store.list_custom_rules(who.org, scope.tenant_id()).await?;
    let at_level = existing.iter().filter(|r| r.tenant_id == scope.tenant_id()).count();
    if at_level >= custom::MAX_RULES_PER_TENANT
        && !existing.iter().any(|r| r.rule_id == rule.id && r.tenant_id == scope.tenant_id())
    {
        return Err(ApiError::new(
            ErrorCode::Validation,
            format!("at most {} custom rules per organisation or tenant", custom::MAX_RULES_PER_TENANT),
        ));
    }
    let document = serde_json::to_value(&rule).map_err(ApiError::internal)?;
    write(state, who, scope, RuleConfigKind::Custom, &rule.id, Some(&document)).await?;
    let stored = state
        .store
        .list_custom_rules(who.org, scope.tenant_id())
        .await?
        .into_iter()
        .find(|r| r.rule_id == rule.id && r.tenant_id == scope.tenant_id())
        .ok_or_else(|| ApiError::internal(anyhow::anyhow!("the custom rule just written is missing")))?;
    CustomRuleView::new(stored)
}

/// Delete a custom rule; its open findings resolve at the next evaluation (org admins).
#[utoipa::path(tag = "rules", security(("bearer" = [])), params(("rule_id" = String, Path), ScopeQuery), responses(
    (status = 204, description = "Removed"),
    Unauthenticated, Forbidden, NotFound,
))]
#[delete("/v1/custom-rules/{rule_id}")]
pub async fn delete_custom(
    state: web::Data<AppState>,
    who: Principal,
    rule_id: web::Path<String>,
    q: web::Query<ScopeQuery>,
) -> ApiResult<HttpResponse> {
    who.require_admin()?;
    remove(&state, &who, q.scope(), RuleConfigKind::Custom, &rule_id, "custom rule").await
}

/// What to try in a dry run, on top of the tenant's stored configuration.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DryRunRequest {
    /// A custom rule to try (saved or not), with its id.
    #[serde(default)]
    #[schema(value_type = Option<DryRunCustomRule>)]
    pub custom_rule: Option<CustomRule>,
    /// Overrides to try, by rule id, laid over the tenant's.
    #[serde(default)]
    #[schema(value_type = Option<std::collections::BTreeMap<String, RuleSettingsDoc>>)]
    pub settings: Option<std::collections::BTreeMap<String, Value>>,
}

#[derive(Serialize, ToSchema)]
pub struct DryRunVerdict {
    pub rule_id: String,
    pub subject: String,
    #[schema(value_type = Option<SeverityName>)]
    pub severity: Option<String>,
    /// The finding it would open, update or resolve, if one exists.
    pub finding_id: Option<Uuid>,
    pub summary: String,
}

#[derive(Serialize, ToSchema)]
pub struct DryRunResult {
    /// Failing now with no open finding: would be opened (once flap damping allows).
    pub would_open: Vec<DryRunVerdict>,
    /// Passing now with an open finding: would be resolved.
    pub would_resolve: Vec<DryRunVerdict>,
    /// Failing now with an open finding: stays open.
    pub still_failing: Vec<DryRunVerdict>,
    /// Could not be evaluated, and why.
    pub unknown: Vec<DryRunVerdict>,
}

/// Evaluate the tenant's current facts with its rules (and what the request adds) and show what
/// would be opened or resolved. Nothing is stored.
#[utoipa::path(tag = "rules", security(("bearer" = [])), params(("tenant_id" = Uuid, Path)),
    request_body = DryRunRequest, responses(
    (status = 200, body = DryRunResult),
    BadRequest, Unauthenticated, NotFound, Unprocessable,
))]
#[post("/v1/tenants/{tenant_id}/dry-run")]
pub async fn dry_run(
    state: web::Data<AppState>,
    who: Principal,
    tenant_id: web::Path<Uuid>,
    body: JsonObject<DryRunRequest>,
) -> ApiResult<HttpResponse> {
    let result = dry_run_tenant(&state, &who, TenantId(tenant_id.into_inner()), body.into_inner()).await?;
    Ok(HttpResponse::Ok().json(result))
}

/// What the rules (and what `body` adds) would conclude for the organisation's tenant now (the
/// REST route and the console both dry-run through this). Nothing is stored.
pub async fn dry_run_tenant(
    state: &AppState,
    who: &Principal,
    tenant_id: TenantId,
    body: DryRunRequest,
) -> ApiResult<DryRunResult> {
    let scope = TenantScope { org_id: who.org.org_id, tenant_id };
    let mut extra_settings = wbd_rules::PackSettings::defaults();
    for (rule_id, doc) in body.settings.unwrap_or_default() {
        let settings = parse_settings(&rule_id, doc)?;
        extra_settings.rules.insert(rule_id, settings);
    }
    let extra_rule = match body.custom_rule {
        Some(rule) => Some(custom::compile(&rule).map_err(|e| compile_error(&e))?),
        None => None,
    };
    let now = Utc::now();
    let snapshot =
        state.store.load_tenant_snapshot(scope, &[]).await?.ok_or_else(|| ApiError::not_found("tenant"))?;
    let config = wbd_findings::load_tenant_rules(state.store.as_ref(), scope).await?;
    let evaluations = wbd_findings::run_rules(&snapshot, &config.with(extra_settings, extra_rule), now);
    let mut result =
        DryRunResult { would_open: vec![], would_resolve: vec![], still_failing: vec![], unknown: vec![] };
    let open = |rule_id: &str, subject: &str| {
        let fingerprint = wbd_findings::fingerprint(rule_id, subject);
        snapshot.findings.iter().find(|f| f.fingerprint == fingerprint && f.status != FindingStatus::Resolved)
    };
    for e in &evaluations {
        let finding = open(&e.rule_id, &e.subject);
        let verdict = |severity: Option<Severity>, summary: String| DryRunVerdict {
            rule_id: e.rule_id.to_string(),
            subject: e.subject.clone(),
            severity: severity.map(|s| s.as_str().to_owned()),
            finding_id: finding.map(|f| f.id.0),
            summary,
        };
        match &e.outcome {
            wbd_rules::Outcome::Fail { severity, summary, .. } => match finding {
                Some(_) => result.still_failing.push(verdict(Some(*severity), summary.clone())),
                None => result.would_open.push(verdict(Some(*severity), summary.clone())),
            },
            wbd_rules::Outcome::Pass | wbd_rules::Outcome::NotApplicable { .. } => {
                if finding.is_some() {
                    result.would_resolve.push(verdict(None, "passes now".to_owned()));
                }
            }
            wbd_rules::Outcome::Unknown { reason, .. } => result.unknown.push(verdict(None, reason.clone())),
        }
    }
    Ok(result)
}
