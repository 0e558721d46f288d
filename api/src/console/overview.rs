//! `GET /`: every tenant of the organisation, worst first — health score, open findings by
//! severity, silent collectors, undecided rules, last seen — with a search by name, a filter by
//! health status, and pages of 50.
//!
//! The figures are the REST overview's (`GET /v1/overview`): one store query for every tenant
//! (`list_tenant_summaries`, worst first) and the same [`TenantView`] health, so the console can
//! never disagree with the API; search, filter and paging happen on that one answer.

use actix_web::{HttpRequest, HttpResponse, web};
use askama::Template;
use chrono::Utc;
use serde::Deserialize;

use super::error::ConsoleError;
use super::page::{Chrome, page_builder, page_lang, render};
use super::session::ConsoleUser;
use super::view::When;
use crate::routes::tenants::TenantView;
use crate::state::AppState;

/// Tenants per page.
const PAGE: usize = 50;

/// The health statuses, as the filter offers them.
const STATUSES: [(&str, &str); 4] =
    [("critical", "Critical"), ("degraded", "Degraded"), ("healthy", "Healthy"), ("unknown", "No data yet")];

#[derive(Deserialize)]
pub struct OverviewQuery {
    q: Option<String>,
    status: Option<String>,
    page: Option<String>,
    lang: Option<String>,
}

pub struct TenantRow {
    pub id: String,
    pub name: String,
    pub score: u8,
    pub status: &'static str,
    pub critical: u32,
    pub high: u32,
    pub medium: u32,
    pub low: u32,
    pub suppressed: u32,
    pub collectors: u32,
    pub silent: u32,
    pub unknown_rules: u32,
    pub last_seen: Option<When>,
}

pub struct StatusOption {
    pub value: &'static str,
    pub label: &'static str,
    pub selected: bool,
}

pub struct Totals {
    pub tenants: usize,
    pub critical: usize,
    pub degraded: usize,
    pub healthy: usize,
    pub unknown: usize,
    pub silent_collectors: u32,
}

#[derive(Template)]
#[template(path = "console/overview.html")]
struct OverviewPage {
    chrome: Chrome,
    totals: Totals,
    rows: Vec<TenantRow>,
    q: String,
    statuses: Vec<StatusOption>,
    /// How many tenants match the search and filter.
    matching: usize,
    page: usize,
    pages: usize,
    previous: Option<String>,
    next: Option<String>,
}

pub async fn overview(
    req: HttpRequest,
    state: web::Data<AppState>,
    user: ConsoleUser,
    query: web::Query<OverviewQuery>,
) -> Result<HttpResponse, ConsoleError> {
    let query = query.into_inner();
    let (lang, remember) = page_lang(&req, query.lang.as_deref());
    let now = Utc::now();
    let tenants: Vec<TenantView> =
        state.store.list_tenant_summaries(user.who.org, now).await?.into_iter().map(Into::into).collect();

    let count = |status: &str| tenants.iter().filter(|t| t.health.status == status).count();
    let totals = Totals {
        tenants: tenants.len(),
        critical: count("critical"),
        degraded: count("degraded"),
        healthy: count("healthy"),
        unknown: count("unknown"),
        silent_collectors: tenants.iter().map(|t| t.health.silent_collectors).sum(),
    };

    let q = query.q.unwrap_or_default().trim().to_owned();
    let needle = q.to_lowercase();
    let status = query.status.filter(|s| STATUSES.iter().any(|(value, _)| s.as_str() == *value));
    let matching: Vec<&TenantView> = tenants
        .iter()
        .filter(|t| {
            needle.is_empty() || t.name.to_lowercase().contains(&needle) || t.id.to_string() == needle
        })
        .filter(|t| status.as_deref().is_none_or(|s| t.health.status == s))
        .collect();
    let pages = matching.len().div_ceil(PAGE).max(1);
    let page = query.page.and_then(|p| p.parse::<usize>().ok()).unwrap_or(1).clamp(1, pages);
    let rows = matching
        .iter()
        .skip((page - 1) * PAGE)
        .take(PAGE)
        .map(|t| TenantRow {
            id: t.id.to_string(),
            name: t.name.clone(),
            score: t.health.score,
            status: t.health.status,
            critical: t.health.open_findings.critical,
            high: t.health.open_findings.high,
            medium: t.health.open_findings.medium,
            low: t.health.open_findings.low,
            suppressed: t.health.suppressed_findings,
            collectors: t.health.collectors,
            silent: t.health.silent_collectors,
            unknown_rules: t.health.unknown_rules,
            last_seen: When::maybe(t.health.last_seen_at, now),
        })
        .collect();
    let link = |page: usize| {
        let mut params: Vec<(&str, String)> = Vec::new();
        if !q.is_empty() {
            params.push(("q", q.clone()));
        }
        if let Some(s) = &status {
            params.push(("status", s.clone()));
        }
        params.push(("page", page.to_string()));
        format!("/?{}", serde_urlencoded::to_string(&params).unwrap_or_default())
    };
    let page_view = OverviewPage {
        chrome: Chrome::new("/", lang, Some(user.signed_in())),
        totals,
        rows,
        statuses: STATUSES
            .iter()
            .map(|&(value, label)| StatusOption { value, label, selected: status.as_deref() == Some(value) })
            .collect(),
        matching: matching.len(),
        page,
        pages,
        previous: (page > 1).then(|| link(page - 1)),
        next: (page < pages).then(|| link(page + 1)),
        q,
    };
    render(page_builder(remember), &page_view)
}
