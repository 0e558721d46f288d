//! wbd-api: the Writeback Doctor REST API (actix-web). In embedded mode it also runs the
//! evaluation worker, so one process is the whole product.
//!
//! Handlers (`routes`, one module per resource) depend on what they share — who is calling
//! (`auth`), the state (`state`), request input (`input`, `params`, `paging`), the answers they
//! document (`responses`) and the error type (`error`) — and never on each other's internals.

pub mod auth;
pub mod bootstrap;
pub mod credentials;
pub mod error;
pub mod input;
pub mod openapi;
pub mod paging;
pub mod params;
pub mod responses;
pub mod routes;
pub mod startup;
pub mod state;
pub mod tokens;

pub use startup::Application;
