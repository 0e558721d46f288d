//! Delivery of finding events to integrations (signed webhooks, PSA tickets, PagerDuty, chat),
//! on top of the connectors of `wbd-notify`:
//!
//! - [`events`]: which stored finding events integrations hear of, the event they receive, and
//!   the ticket key of each problem.
//! - [`integration`]: what an integration may be: a draft checked in full (its kind's settings
//!   through the connector, its filter, its destinations against the network policy) becomes
//!   the row to store, or every problem, field by field.
//! - [`secrets`]: an integration's secrets at rest (sealed per organisation) and the key that
//!   seals them.
//! - [`engine`]: the dispatcher (finding events → deliveries) and the deliverer (attempts,
//!   retries, throttling, switch-off, exactly one ticket per problem), hosted by every worker.
//! - [`settings`]: the `[delivery]` settings section and the engine configuration.

pub mod engine;
pub mod events;
pub mod integration;
pub mod secrets;
pub mod settings;

pub use engine::{Engine, start};
pub use settings::{DeliverySettings, EngineConfig};
