//! Delivery of finding events to integrations.

pub mod events;
pub mod secrets;
