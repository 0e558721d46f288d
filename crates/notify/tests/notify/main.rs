//! Integration tests of wbd-notify: each connector against its local receiver, the SSRF guard
//! against a corpus of internal addresses, signatures against an independent implementation.

mod support;

mod autotask;
mod chat;
mod connectwise;
mod halopsa;
mod jira;
mod pagerduty;
mod servicenow;
mod signing;
mod ssrf;
mod webhook;
