//! HTTP routes, one module per resource. Every handler is registered through
//! `utoipa_actix_web`, so the served routes and the OpenAPI document come from one list.

pub mod api_keys;
pub mod audit_log;
pub mod auth;
pub mod collector_commands;
pub mod collectors;
pub mod deliveries;
pub mod findings;
pub mod graph;
pub mod health;
pub mod ingest;
pub mod integrations;
pub mod overview;
pub mod rule_config;
pub mod rules;
pub mod tenants;

use utoipa_actix_web::service_config::ServiceConfig;

pub fn configure(cfg: &mut ServiceConfig<'_>) {
    cfg.service(health::healthz)
        .service(health::readyz)
        .service(auth::issue_token)
        .service(api_keys::create)
        .service(api_keys::list)
        .service(api_keys::revoke)
        .service(tenants::create)
        .service(tenants::list)
        .service(tenants::get)
        .service(graph::consent)
        .service(graph::callback)
        .service(graph::get)
        .service(graph::disconnect)
        .service(graph::set_test_user)
        .service(graph::set_app)
        .service(graph::delete_app)
        .service(collectors::create)
        .service(collectors::enroll)
        .service(collectors::list)
        .service(collectors::get)
        .service(collectors::revoke)
        .service(collector_commands::list)
        .service(collector_commands::cancel)
        .service(ingest::ingest)
        .service(findings::list)
        .service(findings::get)
        .service(findings::acknowledge)
        .service(findings::suppress)
        .service(findings::unsuppress)
        .service(findings::retest)
        .service(overview::overview)
        .service(rules::list)
        .service(rule_config::list_settings)
        .service(rule_config::put_setting)
        .service(rule_config::delete_setting)
        .service(rule_config::list_custom)
        .service(rule_config::put_custom)
        .service(rule_config::delete_custom)
        .service(audit_log::list)
        .service(rule_config::dry_run)
        .service(integrations::create)
        .service(integrations::list)
        .service(integrations::get)
        .service(integrations::update)
        .service(integrations::remove)
        .service(integrations::rotate_secret)
        .service(integrations::test)
        .service(deliveries::replay_failed)
        .service(deliveries::list_deliveries)
        .service(deliveries::get_delivery)
        .service(deliveries::replay_delivery);
}
