//! `GET /tenants/{id}`: one tenant — its health (the REST overview's figures), its findings that
//! are not resolved, each with its evidence, the fix steps and why it matters in the language
//! picked, consequences grouped under their root cause where the rule pack says so
//! (`explained_by`), its collectors (version, last push, silent) and how each rule runs for it
//! (`rule_settings`).

use std::collections::HashMap;

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use askama::Template;
use chrono::{DateTime, Utc};
use serde::Deserialize;
use uuid::Uuid;
use wbd_rules::Lang;
use wbd_store::{
    Collector, CollectorStatus, Finding, FindingFilter, FindingStatus, Role, TenantId, TenantScope,
};

use super::error::ConsoleError;
use super::graph::GraphPanel;
use super::page::{Chrome, page_builder, page_lang, render};
use super::rule_settings::{self, RuleSettingRow};
use super::session::ConsoleUser;
use super::view::When;
use crate::routes::findings::FindingView;
use crate::routes::tenants::TenantView;
use crate::state::AppState;

/// Findings of each status read at most (a tenant has a few dozen at worst: one per rule and
/// subject).
const MAX_FINDINGS: u32 = 200;

#[derive(Deserialize)]
pub struct TenantQuery {
    lang: Option<String>,
    /// A rule whose settings were just changed, and how (`saved`, `reset`).
    rule: Option<String>,
    done: Option<String>,
    /// `disconnected` after the Graph connection was ended.
    graph: Option<String>,
}

/// A change of a rule's settings the server refused: the form as sent, and why.
pub struct RuleRefusal {
    pub rule_id: String,
    pub state: &'static str,
    pub severity: String,
    /// Parameters by name, as typed.
    pub params: Vec<(String, String)>,
    pub problems: Vec<String>,
}

/// A finding as the tenant page shows it.
pub struct FindingCard {
    pub id: String,
    pub rule_id: String,
    pub title: String,
    pub severity: &'static str,
    pub status: &'static str,
    pub stale: bool,
    pub subject: String,
    pub summary: String,
    /// Why it matters (the rule's description), in the page's language.
    pub why: Option<&'static str>,
    pub steps: Vec<&'static str>,
    /// The evidence, as indented JSON.
    pub evidence: String,
    pub opened: When,
    /// Findings this one explains (their rule names this one's as a root cause).
    pub consequences: Vec<Consequence>,
}

/// A finding shown under its root cause.
pub struct Consequence {
    pub id: String,
    pub title: String,
    pub severity: &'static str,
    pub subject: String,
}

pub struct CollectorRow {
    pub name: String,
    pub hostname: String,
    pub version: String,
    pub status: &'static str,
    pub silent: bool,
    pub last_push: Option<When>,
}

#[derive(Template)]
#[template(path = "console/tenant.html")]
struct TenantPage {
    chrome: Chrome,
    /// Org admins may add collectors; the form carries the session's token.
    add_collector: Option<String>,
    tenant: TenantView,
    last_seen: Option<When>,
    findings: Vec<FindingCard>,
    collectors: Vec<CollectorRow>,
    rules: Vec<RuleSettingRow>,
    /// Org admins change rule settings; the forms carry the session's token.
    rule_csrf: Option<String>,
    severities: [&'static str; 5],
    /// What was just done to a rule's settings.
    rule_done: Option<(String, &'static str)>,
    graph: GraphPanel,
    /// Org admins connect and disconnect; the forms carry the session's token.
    graph_csrf: Option<String>,
    graph_disconnected: bool,
}

/// A tenant id from the path; anything else names no tenant.
pub fn parse_id(text: &str, what: &str) -> Result<Uuid, ConsoleError> {
    Uuid::parse_str(text).map_err(|_| ConsoleError::not_found(what))
}

pub async fn tenant(
    req: HttpRequest,
    state: web::Data<AppState>,
    user: ConsoleUser,
    id: web::Path<String>,
    query: web::Query<TenantQuery>,
) -> Result<HttpResponse, ConsoleError> {
    let tenant_id = TenantId(parse_id(&id, "tenant")?);
    tenant_page(&req, &state, &user, tenant_id, Some(&query), None).await
}

/// The tenant page; with `refused`, as answer to a rule setting the server refused (422).
pub async fn tenant_page(
    req: &HttpRequest,
    state: &AppState,
    user: &ConsoleUser,
    tenant_id: TenantId,
    query: Option<&TenantQuery>,
    refused: Option<RuleRefusal>,
) -> Result<HttpResponse, ConsoleError> {
    let (lang, remember) = page_lang(req, query.and_then(|q| q.lang.as_deref()));
    let scope = TenantScope { org_id: user.who.org.org_id, tenant_id };
    let now = Utc::now();
    let summary =
        state.store.get_tenant_summary(scope, now).await?.ok_or_else(|| ConsoleError::not_found("tenant"))?;
    let collectors = state.store.list_collectors(user.who.org, Some(tenant_id)).await?;
    let mut findings = Vec::new();
    for status in [FindingStatus::Open, FindingStatus::Acknowledged, FindingStatus::Suppressed] {
        let filter = FindingFilter {
            tenant_id: Some(tenant_id),
            status: Some(status),
            severity: None,
            rule_id: None,
            before: None,
            limit: MAX_FINDINGS,
        };
        findings.extend(state.store.list_findings(user.who.org, &filter).await?);
    }
    // Worst first; among equals, what nobody took on yet, then the oldest.
    findings.sort_by(|a, b| {
        b.severity
            .cmp(&a.severity)
            .then(status_rank(a.status).cmp(&status_rank(b.status)))
            .then(a.opened_at.cmp(&b.opened_at))
    });
    let settings = state.store.list_rule_settings(user.who.org, Some(tenant_id)).await?;
    let rule_done = query.and_then(|q| {
        let rule = q.rule.clone()?;
        let done = match q.done.as_deref()? {
            "saved" => "saved",
            "reset" => "reset",
            _ => return None,
        };
        Some((rule, done))
    });
    let graph = super::graph::panel(state, &user.who, tenant_id.0).await?;
    let tenant = TenantView::from(summary);
    let status = if refused.is_some() { StatusCode::UNPROCESSABLE_ENTITY } else { StatusCode::OK };
    let admin = user.who.role == Role::OrgAdmin;
    let page = TenantPage {
        chrome: Chrome::new(&format!("/tenants/{}", tenant.id), lang, Some(user.signed_in())),
        add_collector: admin.then(|| user.csrf.clone()),
        last_seen: When::maybe(tenant.health.last_seen_at, now),
        tenant,
        findings: cards(findings, &collectors, now, lang),
        collectors: collectors
            .iter()
            .filter(|c| c.status != CollectorStatus::Revoked)
            .map(|c| collector_row(c, now))
            .collect(),
        rules: rule_settings::rows(&settings, lang, refused.as_ref()),
        rule_csrf: admin.then(|| user.csrf.clone()),
        severities: ["critical", "high", "medium", "low", "info"],
        rule_done,
        graph,
        graph_csrf: admin.then(|| user.csrf.clone()),
        graph_disconnected: query.and_then(|q| q.graph.as_deref()) == Some("disconnected"),
    };
    let mut response = page_builder(remember);
    response.status(status);
    render(response, &page)
}

fn status_rank(status: FindingStatus) -> u8 {
    match status {
        FindingStatus::Open => 0,
        FindingStatus::Acknowledged => 1,
        FindingStatus::Suppressed => 2,
        FindingStatus::Resolved => 3,
    }
}

/// The findings as cards, each consequence under its root cause when that is among them.
fn cards(
    findings: Vec<Finding>,
    collectors: &[Collector],
    now: DateTime<Utc>,
    lang: Lang,
) -> Vec<FindingCard> {
    let first_of_rule: HashMap<String, usize> =
        findings.iter().enumerate().rev().map(|(i, f)| (f.rule_id.clone(), i)).collect();
    let root_of: Vec<Option<usize>> = findings
        .iter()
        .enumerate()
        .map(|(i, f)| {
            let explained_by =
                wbd_rules::rule_info(&f.rule_id, lang).map_or(&[][..], |info| info.explained_by);
            explained_by.iter().find_map(|rule| first_of_rule.get(*rule).copied()).filter(|root| *root != i)
        })
        .collect();
    // One level only: a root that is itself a consequence shows its own consequences as a card.
    let is_top = |i: usize| root_of[i].is_none_or(|root| root_of[root].is_some());
    let mut cards: Vec<Option<FindingCard>> = Vec::with_capacity(findings.len());
    let mut consequences: Vec<(usize, Consequence)> = Vec::new();
    for (i, finding) in findings.into_iter().enumerate() {
        let view = FindingView::new(finding, collectors, now, lang);
        if is_top(i) {
            let info = wbd_rules::rule_info(&view.rule_id, lang);
            cards.push(Some(FindingCard {
                id: view.id.to_string(),
                why: info.map(|rule| rule.description),
                steps: info.map(|rule| rule.remediation_steps.to_vec()).unwrap_or_default(),
                evidence: serde_json::to_string_pretty(&view.evidence).unwrap_or_default(),
                opened: When::new(view.opened_at, now),
                rule_id: view.rule_id,
                title: view.title,
                severity: view.severity,
                status: view.status,
                stale: view.stale,
                subject: view.subject,
                summary: view.summary,
                consequences: Vec::new(),
            }));
        } else {
            cards.push(None);
            let root = root_of[i].unwrap_or(i);
            consequences.push((
                root,
                Consequence {
                    id: view.id.to_string(),
                    title: view.title,
                    severity: view.severity,
                    subject: view.subject,
                },
            ));
        }
    }
    for (root, consequence) in consequences {
        if let Some(Some(card)) = cards.get_mut(root) {
            card.consequences.push(consequence);
        }
    }
    cards.into_iter().flatten().collect()
}

fn collector_row(c: &Collector, now: DateTime<Utc>) -> CollectorRow {
    CollectorRow {
        name: c.name.clone(),
        hostname: c.hostname.clone().unwrap_or_default(),
        version: c.version.clone().unwrap_or_default(),
        status: c.status.as_str(),
        silent: c.status == CollectorStatus::Active && c.silent_after.is_some_and(|deadline| deadline < now),
        last_push: When::maybe(c.last_seen_at, now),
    }
}
