//! The `[delivery]` section of the server's settings, and the engine configuration it makes.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use wbd_notify::schedule::RetrySchedule;

/// Delivery of finding events to integrations (webhooks, PSA tickets, chat).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct DeliverySettings {
    /// Run the dispatcher and the deliverer in this process's worker.
    pub enabled: bool,
    /// Base64 of the 32-byte key sealing integration credentials. Empty: on SQLite a key file
    /// beside the database is made and used; on PostgreSQL integrations cannot be saved.
    pub secrets_key: String,
    /// Earlier keys, still opened after a rotation (new seals use `secrets_key`).
    #[serde(default)]
    pub previous_secrets_keys: Vec<String>,
    /// Internal networks deliveries may reach (CIDRs), for an on-prem PSA.
    #[serde(default)]
    pub allow_networks: Vec<String>,
    /// Refuse `http://` destinations.
    pub https_only: bool,
    pub attempt_timeout_secs: u64,
    /// Waits between attempts in seconds; empty: the standard schedule (10 attempts, ~75 h).
    #[serde(default)]
    pub retry_schedule_secs: Vec<f64>,
    /// An integration whose every attempt failed for this long is switched off.
    pub disable_after_secs: u64,
    /// Deliveries in flight at once per process.
    pub concurrency: usize,
    pub poll_interval_ms: u64,
    /// Where people open the API (links in tickets), e.g. `https://wbd.example.com`; empty: none.
    pub public_url: String,
}

/// How the engine runs (from `[delivery]`).
#[derive(Clone)]
pub struct EngineConfig {
    pub schedule: RetrySchedule,
    pub attempt_timeout: Duration,
    /// An integration failing for this long is switched off.
    pub disable_after: chrono::TimeDelta,
    pub concurrency: usize,
    pub poll_interval: Duration,
    pub public_url: Option<String>,
}

impl EngineConfig {
    pub fn from_settings(d: &DeliverySettings) -> EngineConfig {
        let schedule = if d.retry_schedule_secs.is_empty() {
            RetrySchedule::standard()
        } else {
            RetrySchedule::from_delays(
                d.retry_schedule_secs.iter().map(|s| Duration::from_secs_f64(*s)).collect(),
            )
        };
        EngineConfig {
            schedule,
            attempt_timeout: Duration::from_secs(d.attempt_timeout_secs),
            disable_after: chrono::TimeDelta::seconds(
                i64::try_from(d.disable_after_secs).unwrap_or(i64::MAX / 1000),
            ),
            concurrency: d.concurrency,
            poll_interval: Duration::from_millis(d.poll_interval_ms),
            public_url: (!d.public_url.is_empty()).then(|| d.public_url.trim_end_matches('/').to_owned()),
        }
    }

    /// How long one attempt may take in all: it is a few requests (look up, check the status,
    /// create or reopen, link, note, a token renewal), each bounded by the attempt timeout.
    pub(crate) fn attempt_budget(&self) -> Duration {
        self.attempt_timeout * 7
    }

    /// How long a claimed delivery is held: longer than an attempt can take, so no other
    /// worker takes the delivery over while its attempt still runs.
    pub(crate) fn lease(&self) -> Duration {
        self.attempt_budget() + self.attempt_timeout + Duration::from_secs(5)
    }
}
