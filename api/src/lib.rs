//! wbd-api: the Writeback Doctor REST API (actix-web). In embedded mode it also runs the
//! evaluation worker, so one process is the whole product.

pub mod auth;
pub mod bootstrap;
pub mod error;
pub mod openapi;
pub mod routes;
pub mod startup;
pub mod state;

pub use startup::Application;
