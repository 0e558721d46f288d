//! wbd-api: the Writeback Doctor REST API (actix-web). In embedded mode it also runs the
//! evaluation worker, so one process is the whole product.
//!
//! Dependencies point one way, with no circle between files: handlers (`routes`, one module per
//! resource) depend on what they share — who is calling (`auth`), the state (`state`), request
//! input (`input`, `params`, `paging`), the answers they document (`responses`) and the error
//! type (`error`) — and on another resource's module only for what it owns (deliveries find
//! their integration through `routes::integrations`; the overview shows `routes::tenants`'
//! views). The domain (integration checks, findings, delivery) is in the library crates. The
//! console (`console`, pages for people) sits beside the handlers and acts through them.

pub mod auth;
pub mod bootstrap;
pub mod check_config;
pub mod consent_state;
pub mod console;
pub mod credentials;
pub mod error;
pub mod fallback;
pub mod input;
pub mod key_cache;
pub mod openapi;
pub mod paging;
pub mod params;
pub mod rate_limit;
pub mod responses;
pub mod routes;
pub mod startup;
pub mod state;
pub mod tokens;

pub use startup::Application;
