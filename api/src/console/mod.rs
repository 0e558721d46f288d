//! The MSP console: server-rendered pages for people, served by this process — sign-in, the
//! overview of every tenant (`/`), a tenant's findings and collectors (and a new collector's
//! enrollment command), a finding with its history and what can be done about it, the
//! integrations (add, change, test, their delivery log with every attempt, replays), custom
//! rules (an editor that shows the compiler's errors, a dry run on every tenant). Forms work without JavaScript; `static/console.js` only
//! enhances them.
//!
//! It is not the REST contract (it is not in the OpenAPI document) but it acts through the same
//! domain calls, store calls, roles and audit entries as the REST routes: a person signs in with
//! an API key and the session carries that key (`session`). Every answer carries a strict
//! Content-Security-Policy (`page`): no inline script or style, nothing from another origin; the
//! CSS and JS are compiled into the binary (`assets`).

mod assets;
mod collectors;
mod custom_rules;
mod error;
mod finding;
mod graph;
mod integrations;
mod overview;
mod page;
mod rule_settings;
mod session;
mod tenant;
mod view;

use actix_web::web;

pub use page::CONTENT_SECURITY_POLICY;
pub use session::{ConsoleKeys, SESSION_COOKIE, SESSION_COOKIE_TLS};

/// The console's routes and methods, for the fallback's 405s and `HEAD` (see `fallback`).
pub const ROUTES: &[(&str, &str)] = &[
    ("/", "GET"),
    ("/sign-in", "GET"),
    ("/sign-in", "POST"),
    ("/sign-out", "POST"),
    ("/tenants/{id}", "GET"),
    ("/tenants/{id}/collectors", "POST"),
    ("/tenants/{id}/rules/{rule_id}", "POST"),
    ("/tenants/{id}/graph/consent", "POST"),
    ("/tenants/{id}/graph/disconnect", "POST"),
    ("/findings/{id}", "GET"),
    ("/findings/{id}/{action}", "POST"),
    ("/integrations", "GET"),
    ("/integrations", "POST"),
    ("/integrations/new", "GET"),
    ("/integrations/{id}", "GET"),
    ("/integrations/{id}", "POST"),
    ("/integrations/{id}/test", "POST"),
    ("/integrations/{id}/replay", "POST"),
    ("/deliveries/{id}", "GET"),
    ("/deliveries/{id}/replay", "POST"),
    ("/custom-rules", "GET"),
    ("/custom-rules", "POST"),
    ("/assets/{file}", "GET"),
];

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/", web::get().to(overview::overview))
        .route("/sign-in", web::get().to(session::sign_in_form))
        .route("/sign-in", web::post().to(session::sign_in))
        .route("/sign-out", web::post().to(session::sign_out))
        .route("/tenants/{id}", web::get().to(tenant::tenant))
        .route("/tenants/{id}/collectors", web::post().to(collectors::create))
        .route("/tenants/{id}/rules/{rule_id}", web::post().to(rule_settings::change))
        .route("/tenants/{id}/graph/consent", web::post().to(graph::consent))
        .route("/tenants/{id}/graph/disconnect", web::post().to(graph::disconnect))
        .route("/findings/{id}", web::get().to(finding::finding))
        .route("/findings/{id}/{action}", web::post().to(finding::act))
        .route("/integrations", web::get().to(integrations::list))
        .route("/integrations", web::post().to(integrations::create))
        .route("/integrations/new", web::get().to(integrations::new_form))
        .route("/integrations/{id}", web::get().to(integrations::integration))
        .route("/integrations/{id}", web::post().to(integrations::update))
        .route("/integrations/{id}/test", web::post().to(integrations::test))
        .route("/integrations/{id}/replay", web::post().to(integrations::replay_failed))
        .route("/deliveries/{id}", web::get().to(integrations::delivery))
        .route("/deliveries/{id}/replay", web::post().to(integrations::replay))
        .route("/custom-rules", web::get().to(custom_rules::list))
        .route("/custom-rules", web::post().to(custom_rules::act))
        .route("/assets/{file}", web::get().to(assets::asset));
}
