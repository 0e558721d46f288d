//! Integration tests of wbd-collector against real peers on loopback: TLS servers made with a
//! test CA, closed ports, non-TLS servers, and a scripted HTTP server in place of the API.
//! Logs are silent unless TEST_LOG is set.

mod cli;
mod egress;
mod enroll;
mod exports;
mod graph;
mod helpers;
mod idle;
mod killed;
mod outage;
mod peers;
mod probe;
mod proxy;
mod push;
mod run;
mod samba;
mod script;
mod spool;
