//! The shipped rule pack, as documentation an MSP can read.

use actix_web::{HttpResponse, get};
use serde::Serialize;
use utoipa::ToSchema;

use crate::auth::Principal;
use crate::error::Problem;

#[derive(Serialize, ToSchema)]
pub struct RuleView {
    pub id: &'static str,
    pub title: &'static str,
    pub severity: &'static str,
    /// Probe kinds whose results the rule reads.
    pub reads: Vec<&'static str>,
    pub description: &'static str,
    pub remediation: &'static str,
    pub references: Vec<&'static str>,
}

/// The rules every tenant is evaluated against.
#[utoipa::path(tag = "rules", security(("bearer" = [])), responses(
    (status = 200, body = Vec<RuleView>),
    (status = 401, body = Problem, content_type = "application/problem+json"),
))]
#[get("/v1/rules")]
pub async fn list(_who: Principal) -> HttpResponse {
    let rules: Vec<RuleView> = wbd_rules::rules()
        .iter()
        .map(|r| RuleView {
            id: r.id,
            title: r.title,
            severity: r.severity.as_str(),
            reads: r.reads.iter().map(|k| k.as_str()).collect(),
            description: r.description,
            remediation: r.remediation,
            references: r.references.to_vec(),
        })
        .collect();
    HttpResponse::Ok().json(rules)
}
