//! `wbd-delivery` as integrations meet it: the engine against local stand-ins of the real
//! APIs, on a real store.

mod engine;
