//! wbd-api integration tests: one binary (faster linking), a module per area.
//!
//! SQLite + the local queue always run. The PostgreSQL + RabbitMQ suite (`distributed`) shows as
//! ignored unless asked for with `-- --include-ignored`, and then fails (never skips) when
//! `WBD_TEST_DATABASE_URL` or `WBD_TEST_AMQP_URL` is unset or its service unreachable. Logs are silent unless `TEST_LOG` is set.

mod helpers;
mod tls;

mod auth;
mod cli;
mod collector_commands;
mod console;
mod contract;
mod distributed;
mod e2e;
mod graph;
mod graph_own_app;
mod ingest;
mod integrations;
mod lifecycle;
mod metrics;
mod notifications;
mod openapi;
mod parameters;
mod rate_limits;
mod rule_config;
mod tenancy;
