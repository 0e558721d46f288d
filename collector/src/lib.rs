//! `wbd-collector`, the on-site agent of Writeback Doctor, as a library.
//!
//! It probes what Entra SSPR password writeback needs from a customer site (today: reaching
//! the password reset service and the Service Bus relay over TLS with the real certificate),
//! keeps every result in a durable, bounded on-disk spool, and pushes batches to the server
//! with retries. It depends on the wire contract (`wbd-wire`) and on no server crate.
//!
//! | module | owns |
//! |---|---|
//! | [`cli`] | the `enroll` / `run` / `probe` commands, exit codes, signals, logging |
//! | [`config`] | the TOML settings, defaults, env overrides, validation |
//! | [`identity`] | the key pair and `identity.json` in the state directory |
//! | [`enroll`] | trading an enrollment token for an identity |
//! | [`probe`] | the probes (the endpoint probe: DNS, TCP, TLS) |
//! | [`spool`] | the durable on-disk queue of results and sealed batches |
//! | [`push`] | sending batches, and what each server answer means for them |
//! | [`run`] | the agent loop tying probes, spool and push together |
//! | [`report`] | the readable output of `probe --once` |

pub mod cli;
pub mod config;
pub mod enroll;
pub mod fsutil;
pub mod host;
pub mod http_client;
pub mod identity;
pub mod probe;
pub mod push;
pub mod report;
pub mod run;
pub mod schedule;
pub mod server_url;
pub mod spool;
