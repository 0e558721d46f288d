//! Delivery of finding events to integrations: which events go where ([`events`]), secrets at
//! rest ([`secrets`]), and the dispatcher and deliverer that do it ([`engine`]).

pub mod engine;
pub mod events;
pub mod secrets;
