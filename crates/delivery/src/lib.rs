//! Delivery of finding events to integrations (signed webhooks, PSA tickets, PagerDuty, chat),
//! on top of the connectors of `wbd-notify`:
//!
//! - [`events`]: which stored finding events integrations hear of, the event they receive, and
//!   the ticket key of each problem.
//! - [`secrets`]: an integration's secrets at rest (sealed per organisation) and the key that
//!   seals them.
//! - [`engine`]: the dispatcher (finding events → deliveries) and the deliverer (attempts,
//!   retries, throttling, switch-off, exactly one ticket per problem), hosted by every worker.
//! - [`settings`]: the `[delivery]` settings section and the engine configuration.

pub mod engine;
pub mod events;
pub mod secrets;
pub mod settings;

pub use engine::{Engine, start};
pub use settings::{DeliverySettings, EngineConfig};
