//! Tenants (the MSP's customers) with their health summary.

use actix_web::{HttpResponse, get, post, web};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;
use wbd_store::{TenantId, TenantScope, TenantSummary};

use crate::auth::Principal;
use crate::error::{ApiError, ApiResult, ErrorCode};
use crate::input::{DisplayName, JsonObject, display_name};
use crate::params::TenantFilter;
use crate::responses::{BadRequest, Forbidden, NotFound, Unauthenticated, Unprocessable};
use crate::state::AppState;

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateTenant {
    #[schema(value_type = DisplayName)]
    pub name: String,
    /// The customer's Entra tenant (directory) id, a GUID; empty or absent when not known.
    #[serde(default)]
    #[schema(
        pattern = r"^\s*([0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12})?\s*$"
    )]
    pub entra_tenant_id: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct TenantView {
    pub id: Uuid,
    pub name: String,
    pub entra_tenant_id: Option<String>,
    pub created_at: DateTime<Utc>,
    pub health: TenantHealth,
}

/// The health status of a tenant.
#[derive(ToSchema)]
#[serde(rename_all = "snake_case")]
#[allow(dead_code)]
pub enum TenantStatusName {
    Critical,
    Degraded,
    Healthy,
    Unknown,
}

/// Open findings by severity, how its collectors are doing, and one score for all of it.
#[derive(Serialize, ToSchema)]
pub struct TenantHealth {
    /// 0 (worst) to 100: `100 − 40 × critical − 20 × high − 8 × medium − 3 × low − 15 × silent
    /// collectors − min(unknown rules, 10)`, at least 0, counting open and acknowledged findings
    /// (not suppressed ones); a cascade counts once, as its root cause (consequences apart).
    pub score: u8,
    /// `critical`, `degraded` (high or medium findings, or a silent collector), `healthy`, or
    /// `unknown` (no collector has reported yet).
    #[schema(value_type = TenantStatusName)]
    pub status: &'static str,
    /// Open and acknowledged findings (present and not suppressed) that stand alone or are a
    /// root cause; consequences of another finding are counted apart.
    pub open_findings: SeverityCounts,
    /// Open and acknowledged findings that another active finding explains (their
    /// `root_cause_id`): fixing that root usually clears them.
    pub consequences: u32,
    /// Findings someone suppressed until a date.
    pub suppressed_findings: u32,
    pub collectors: u32,
    pub silent_collectors: u32,
    /// Rules the last evaluation could not decide (for example, no collector runs the probe they
    /// read).
    pub unknown_rules: u32,
    pub last_seen_at: Option<DateTime<Utc>>,
}

#[derive(Serialize, ToSchema)]
pub struct SeverityCounts {
    pub critical: u32,
    pub high: u32,
    pub medium: u32,
    pub low: u32,
    pub info: u32,
}

impl From<TenantSummary> for TenantView {
    fn from(s: TenantSummary) -> Self {
        let status = if s.open_critical > 0 {
            "critical"
        } else if s.open_high > 0 || s.open_medium > 0 || s.silent_collectors > 0 {
            "degraded"
        } else if s.last_seen_at.is_none() {
            "unknown"
        } else {
            "healthy"
        };
        let score = s.health_score();
        TenantView {
            id: s.tenant.id.0,
            name: s.tenant.name,
            entra_tenant_id: s.tenant.entra_tenant_id,
            created_at: s.tenant.created_at,
            health: TenantHealth {
                score,
                status,
                open_findings: SeverityCounts {
                    critical: s.open_critical,
                    high: s.open_high,
                    medium: s.open_medium,
                    low: s.open_low,
                    info: s.open_info,
                },
                consequences: s.consequences,
                suppressed_findings: s.suppressed,
                collectors: s.collectors,
                silent_collectors: s.silent_collectors,
                unknown_rules: s.unknown_rules,
                last_seen_at: s.last_seen_at,
            },
        }
    }
}

/// Create a tenant.
#[utoipa::path(tag = "tenants", operation_id = "create_tenant", request_body = CreateTenant, security(("bearer" = [])), responses(
    (status = 201, body = TenantView),
    BadRequest, Unauthenticated, Forbidden, Unprocessable,
))]
#[post("/v1/tenants")]
pub async fn create(
    state: web::Data<AppState>,
    who: Principal,
    body: JsonObject<CreateTenant>,
) -> ApiResult<HttpResponse> {
    who.require_admin()?;
    let name = display_name("name", &body.name)?;
    let entra = match body.entra_tenant_id.as_deref().map(str::trim) {
        None | Some("") => None,
        Some(id) => Some(
            Uuid::parse_str(id)
                .map_err(|_| ApiError::new(ErrorCode::Validation, "`entra_tenant_id` must be a GUID"))?
                .to_string(),
        ),
    };
    let now = Utc::now();
    let tenant = state.store.create_tenant(who.org, &name, entra.as_deref(), now).await?;
    let scope = TenantScope { org_id: who.org.org_id, tenant_id: tenant.id };
    let summary =
        state.store.get_tenant_summary(scope, now).await?.ok_or_else(|| ApiError::not_found("tenant"))?;
    Ok(HttpResponse::Created().json(TenantView::from(summary)))
}

/// All tenants with their health, worst first (lowest score first).
#[utoipa::path(tag = "tenants", operation_id = "list_tenants", security(("bearer" = [])), responses(
    (status = 200, body = Vec<TenantView>),
    Unauthenticated,
))]
#[get("/v1/tenants")]
pub async fn list(state: web::Data<AppState>, who: Principal) -> ApiResult<HttpResponse> {
    let tenants: Vec<TenantView> =
        state.store.list_tenant_summaries(who.org, Utc::now()).await?.into_iter().map(Into::into).collect();
    Ok(HttpResponse::Ok().json(tenants))
}

/// One tenant with its health.
#[utoipa::path(tag = "tenants", operation_id = "get_tenant", security(("bearer" = [])), params(("id" = Uuid, Path)), responses(
    (status = 200, body = TenantView),
    Unauthenticated, NotFound,
))]
#[get("/v1/tenants/{id}")]
pub async fn get(state: web::Data<AppState>, who: Principal, id: web::Path<Uuid>) -> ApiResult<HttpResponse> {
    let scope = TenantScope { org_id: who.org.org_id, tenant_id: TenantId(id.into_inner()) };
    let summary = state
        .store
        .get_tenant_summary(scope, Utc::now())
        .await?
        .ok_or_else(|| ApiError::not_found("tenant"))?;
    Ok(HttpResponse::Ok().json(TenantView::from(summary)))
}

/// The tenant a listing is filtered to, once it is known to be one of the caller's: a tenant of
/// another organisation (or none at all) is a 404 here as on every route that names a tenant,
/// never an empty list that would tell the two apart from "no findings yet".
pub(crate) async fn tenant_filter(
    state: &AppState,
    who: &Principal,
    filter: Option<TenantFilter>,
) -> ApiResult<Option<TenantId>> {
    let Some(TenantFilter(tenant)) = filter else { return Ok(None) };
    state.store.get_tenant(who.org, tenant).await?.ok_or_else(|| ApiError::not_found("tenant"))?;
    Ok(Some(tenant))
}
