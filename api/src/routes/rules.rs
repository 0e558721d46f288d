//! The shipped rule pack, as documentation an MSP can read, in its language.

use actix_web::{HttpRequest, HttpResponse, get, web};
use serde::Serialize;
use utoipa::ToSchema;
use utoipa::openapi::schema::{ArrayBuilder, ObjectBuilder, OneOfBuilder, Schema, Type};

use crate::auth::Principal;
use crate::params::{LangQuery, request_lang};
use crate::responses::Unauthenticated;

#[derive(Serialize, ToSchema)]
pub struct RuleView {
    pub id: &'static str,
    /// Language of the texts: `en`, `pl` or `uk`.
    pub lang: &'static str,
    pub title: &'static str,
    #[schema(value_type = crate::routes::rule_config::SeverityName)]
    pub severity: &'static str,
    /// Probe kinds whose results the rule reads (and a re-test runs).
    pub reads: Vec<&'static str>,
    pub description: &'static str,
    pub remediation: &'static str,
    pub remediation_steps: Vec<&'static str>,
    pub references: Vec<&'static str>,
    /// Parameters an override may set, with their defaults.
    pub params: Vec<ParamView>,
    /// Flap damping: open after this many consecutive failing evaluations…
    pub open_after: u32,
    /// …and resolve after this many passing ones.
    pub resolve_after: u32,
    /// Ids of the checks in our research catalogue this rule implements.
    pub catalogue_ids: Vec<&'static str>,
    /// Points of Microsoft's "password writeback is not working" checklist it covers.
    pub seed_points: Vec<u8>,
}

#[derive(Serialize, ToSchema)]
pub struct ParamView {
    pub name: &'static str,
    /// The type and its bounds: `{type: integer, min, max}`, `{type: boolean}`,
    /// `{type: version}`, `{type: string, max_len}` or `{type: string_list, max_items, max_len}`.
    #[schema(value_type = Object)]
    pub kind: serde_json::Value,
    /// A value of the parameter's type.
    #[schema(schema_with = param_value)]
    pub default: serde_json::Value,
    pub description: &'static str,
}

/// A parameter value: an integer, a boolean, a string (text or a version) or a list of strings.
fn param_value() -> Schema {
    let of = |t: Type| ObjectBuilder::new().schema_type(t);
    OneOfBuilder::new()
        .item(of(Type::Integer))
        .item(of(Type::Boolean))
        .item(of(Type::String))
        .item(ArrayBuilder::new().items(of(Type::String)))
        .build()
        .into()
}

/// The rules every tenant is evaluated against, in the language of `?lang=` or
/// `Accept-Language` (English when neither names a shipped language).
#[utoipa::path(tag = "rules", operation_id = "list_rules", security(("bearer" = [])), params(LangQuery), responses(
    (status = 200, body = Vec<RuleView>),
    Unauthenticated,
))]
#[get("/v1/rules")]
pub async fn list(_who: Principal, req: HttpRequest, q: web::Query<LangQuery>) -> HttpResponse {
    let lang = request_lang(&req, q.lang);
    let rules: Vec<RuleView> = wbd_rules::rules_in(lang)
        .iter()
        .map(|r| RuleView {
            id: r.id,
            lang: r.lang.as_str(),
            title: r.title,
            severity: r.severity.as_str(),
            reads: r.reads.iter().map(|k| k.as_str()).collect(),
            description: r.description,
            remediation: r.remediation,
            remediation_steps: r.remediation_steps.to_vec(),
            references: r.references.to_vec(),
            params: r
                .params
                .iter()
                .map(|p| ParamView {
                    name: p.name,
                    kind: serde_json::to_value(&p.kind).unwrap_or(serde_json::Value::Null),
                    default: p.default.clone(),
                    description: p.description,
                })
                .collect(),
            open_after: r.flap.open_after,
            resolve_after: r.flap.resolve_after,
            catalogue_ids: r.catalogue_ids.to_vec(),
            seed_points: r.seed_points.to_vec(),
        })
        .collect();
    HttpResponse::Ok().json(rules)
}
