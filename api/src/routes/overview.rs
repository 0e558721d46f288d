//! The MSP overview: every tenant, worst first, with the organisation's totals.

use actix_web::{HttpResponse, get, web};
use chrono::Utc;
use serde::Serialize;
use utoipa::ToSchema;

use crate::auth::Principal;
use crate::error::ApiResult;
use crate::responses::Unauthenticated;
use crate::routes::tenants::{SeverityCounts, TenantView};
use crate::state::AppState;

#[derive(Serialize, ToSchema)]
pub struct Overview {
    pub totals: OverviewTotals,
    /// Every tenant, worst first: lowest health score, then most critical, high, medium, low and
    /// info findings, then by name.
    pub tenants: Vec<TenantView>,
}

/// The organisation at a glance.
#[derive(Serialize, ToSchema)]
pub struct OverviewTotals {
    pub tenants: u32,
    /// Tenants by health status: `critical`, `degraded`, `healthy`, `unknown`.
    pub critical_tenants: u32,
    pub degraded_tenants: u32,
    pub healthy_tenants: u32,
    pub unknown_tenants: u32,
    /// The lowest tenant health score (100 without tenants).
    pub lowest_score: u8,
    /// Open and acknowledged findings of all tenants.
    pub open_findings: SeverityCounts,
    pub suppressed_findings: u32,
    pub collectors: u32,
    pub silent_collectors: u32,
    /// Undecided rules, summed over the tenants.
    pub unknown_rules: u32,
}

/// All tenants worst first, with open findings by severity, silent collectors and undecided rules,
/// and the organisation's totals.
#[utoipa::path(tag = "overview", security(("bearer" = [])), responses(
    (status = 200, body = Overview),
    Unauthenticated,
))]
#[get("/v1/overview")]
pub async fn overview(state: web::Data<AppState>, who: Principal) -> ApiResult<HttpResponse> {
    let tenants: Vec<TenantView> =
        state.store.list_tenant_summaries(who.org, Utc::now()).await?.into_iter().map(Into::into).collect();
    let count = |status: &str| count(tenants.iter().filter(|t| t.health.status == status));
    let sum = |value: fn(&TenantView) -> u32| tenants.iter().map(value).fold(0u32, u32::saturating_add);
    let totals = OverviewTotals {
        tenants: count_all(&tenants),
        critical_tenants: count("critical"),
        degraded_tenants: count("degraded"),
        healthy_tenants: count("healthy"),
        unknown_tenants: count("unknown"),
        lowest_score: tenants.iter().map(|t| t.health.score).min().unwrap_or(100),
        open_findings: SeverityCounts {
            critical: sum(|t| t.health.open_findings.critical),
            high: sum(|t| t.health.open_findings.high),
            medium: sum(|t| t.health.open_findings.medium),
            low: sum(|t| t.health.open_findings.low),
            info: sum(|t| t.health.open_findings.info),
        },
        suppressed_findings: sum(|t| t.health.suppressed_findings),
        collectors: sum(|t| t.health.collectors),
        silent_collectors: sum(|t| t.health.silent_collectors),
        unknown_rules: sum(|t| t.health.unknown_rules),
    };
    Ok(HttpResponse::Ok().json(Overview { totals, tenants }))
}

fn count<T>(items: impl Iterator<Item = T>) -> u32 {
    u32::try_from(items.count()).unwrap_or(u32::MAX)
}

fn count_all(tenants: &[TenantView]) -> u32 {
    count(tenants.iter())
}
