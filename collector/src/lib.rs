//! `wbd-collector`, the on-site agent of Writeback Doctor, as a library.
//!
//! It probes what Entra SSPR password writeback needs from a customer site (the writeback
//! endpoints and idle connections to them, the proxy, Active Directory, the Entra Connect
//! server, its event log, the tenant through Microsoft Graph, and site scripts),
//! keeps every result in a durable, bounded on-disk spool, and pushes batches to the server
//! with retries. It depends on the wire contract (`wbd-wire`) and on no server crate.
//!
//! | module | owns |
//! |---|---|
//! | [`cli`] | the `enroll` / `run` / `probe` commands, exit codes, signals, logging |
//! | [`config`] | the TOML settings, defaults, env overrides, validation |
//! | [`identity`] | the key pair and `identity.json` in the state directory |
//! | [`enroll`] | trading an enrollment token for an identity |
//! | [`probe`] | the probes, one module each, and the set built from the settings |
//! | [`spool`] | the durable on-disk queue of results and sealed batches |
//! | [`push`] | sending batches, and what each server answer means for them |
//! | [`run`] | the agent loop tying probes, spool and push together |
//! | [`schedule`] | when each probe runs; "re-test now" and schedule changes |
//! | `service` | (Windows) running under the Service Control Manager |
//! | [`report`] | the readable output of `probe --once`, with the rule pack's verdicts |

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
#[cfg(windows)]
pub mod service;
pub mod spool;
