//! The command line of `wbd-bench`.

use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use serde::Serialize;

use crate::stats::parse_duration;

/// Measures Writeback Doctor against this machine's limit: the floor (PostgreSQL COPY,
/// RabbitMQ confirms), the product distributed and embedded, the rules, the collector, and the
/// delivery of finding events to webhooks.
/// With no phase named, every phase runs (the same as --all).
#[derive(Debug, Clone, Parser, Serialize)]
#[command(name = "wbd-bench", version)]
pub struct Args {
    /// Run every phase.
    #[arg(long)]
    pub all: bool,
    /// Phase: PostgreSQL COPY and RabbitMQ publisher confirms with no product in the way.
    #[arg(long)]
    pub floor: bool,
    /// Phase: wbd-api + wbd-worker processes on PostgreSQL and RabbitMQ.
    #[arg(long)]
    pub distributed: bool,
    /// Phase: one wbd-api on SQLite with the worker inside.
    #[arg(long)]
    pub embedded: bool,
    /// Phase: rule evaluations per second (wbd_rules::evaluate).
    #[arg(long)]
    pub rules: bool,
    /// Phase: the collector's binary size, CPU per probe cycle and idle memory.
    #[arg(long)]
    pub collector: bool,
    /// Phase: the delivery engine sending signed webhooks, in process, on SQLite and PostgreSQL.
    #[arg(long)]
    pub delivery: bool,
    /// Phase: the retention sweep of large tables (fact history, deliveries with their attempts),
    /// on SQLite and PostgreSQL.
    #[arg(long)]
    pub retention: bool,
    /// Phase: the console's overview pages at 1,000 tenants and 20,000 findings (one embedded
    /// wbd-api).
    #[arg(long)]
    pub console: bool,
    /// Overview pages asked for in the console phase [default: 200, or 50 with --quick].
    #[arg(long)]
    pub console_requests: Option<usize>,
    /// Phase: the central Graph reader against the identity-platform and Graph stand-in:
    /// tenants read per minute and the CPU it costs.
    #[arg(long)]
    pub graph: bool,

    /// Smoke run: about 10 s per load window, shorter floor and idle windows.
    #[arg(long)]
    pub quick: bool,
    /// Length of each measured load window [default: 60s, or 10s with --quick].
    #[arg(long, value_parser = parse_duration)]
    #[serde(serialize_with = "secs_opt")]
    pub duration: Option<Duration>,
    /// Load before each throughput window that is not measured [default: 5s, or 2s with --quick].
    #[arg(long, value_parser = parse_duration)]
    #[serde(serialize_with = "secs_opt")]
    pub warmup: Option<Duration>,
    /// Length of each floor measurement [default: 10s, or 4s with --quick].
    #[arg(long, value_parser = parse_duration)]
    #[serde(serialize_with = "secs_opt")]
    pub floor_duration: Option<Duration>,

    /// Simulated collectors (one tenant each) in the throughput run.
    #[arg(long, default_value_t = 200)]
    pub collectors: usize,
    /// Pushes in flight at once in the throughput run.
    #[arg(long, default_value_t = 16)]
    pub concurrency: usize,
    /// Results per batch: one probe cycle of a site, its 6 host probes and endpoints for the rest.
    #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u16).range(8..=1000))]
    pub batch_results: u16,
    /// Chance that an endpoint changes state (healthy ↔ failing) from one cycle to the next.
    #[arg(long, default_value_t = 0.02)]
    pub flip_probability: f64,
    /// Results per second offered in the rate-limited latency run.
    #[arg(long, default_value_t = 1000.0)]
    pub latency_rate: f64,
    /// Simulated collectors in the latency run (each pushes every collectors × batch / rate s).
    #[arg(long, default_value_t = 20)]
    pub latency_collectors: usize,
    /// How often the latency run looks for the findings, in milliseconds.
    #[arg(long, default_value_t = 5)]
    pub poll_ms: u64,
    /// wbd-api processes in the distributed phase.
    #[arg(long, default_value_t = 1)]
    pub apis: usize,
    /// wbd-worker processes in the distributed phase.
    #[arg(long, default_value_t = 1)]
    pub workers: usize,
    /// Extra settings for the product processes, e.g. --set WBD_WORKER__CONCURRENCY=8.
    #[arg(long = "set", value_name = "WBD_KEY=VALUE")]
    pub set: Vec<String>,
    /// Experiment: SQL run on the product's PostgreSQL database after its migrations, before the
    /// load (e.g. --pg-sql "ALTER TABLE facts SET (fillfactor = 50)"). Repeatable.
    #[arg(long = "pg-sql", value_name = "STATEMENT")]
    pub pg_sql: Vec<String>,
    /// Deliveries in the delivery phase's throughput run [default: 20000, or 2000 with --quick].
    #[arg(long)]
    pub deliveries: Option<usize>,
    /// The delivery engine's deliveries in flight at once (`delivery.concurrency`).
    #[arg(long, default_value_t = 32)]
    pub delivery_concurrency: usize,
    /// Each benchmark integration's `max_in_flight`.
    #[arg(long, default_value_t = 64)]
    pub delivery_max_in_flight: u32,
    /// Events per second in the delivery latency and isolation runs.
    #[arg(long, default_value_t = 200.0)]
    pub delivery_rate: f64,
    /// The delivery engine's poll interval in milliseconds (`delivery.poll_interval_ms`; the
    /// product's default is 500).
    #[arg(long, default_value_t = 500)]
    pub delivery_poll_ms: u64,
    /// Old rows the retention phase sweeps per table: fact history runs, and delivery attempts
    /// (ten per delivery) [default: 1,000,000, or 100,000 with --quick].
    #[arg(long)]
    pub retention_rows: Option<usize>,
    /// Rows per delete statement in the retention phase (`retention.batch_size`).
    #[arg(long, default_value_t = 5_000)]
    pub retention_batch: u32,
    /// Pause between batches in the retention phase, ms (`retention.batch_pause_ms`).
    #[arg(long, default_value_t = 20)]
    pub retention_pause_ms: u64,
    /// RUST_LOG of the product processes (their logs stay in a temporary directory).
    #[arg(long, default_value = "info")]
    pub log_level: String,
    /// COPY statements of this many rows in the PostgreSQL floor (the largest batch the API takes).
    #[arg(long, default_value_t = 1000)]
    pub floor_rows_per_copy: usize,
    /// Confirms outstanding at once in the RabbitMQ floor (the outbox relay's batch).
    #[arg(long, default_value_t = 256)]
    pub floor_confirm_window: usize,

    /// PostgreSQL to create the benchmark databases in (must be on this machine). Without TLS by
    /// default: on loopback it protects nothing and costs the product a third of its throughput;
    /// pass a URL without `sslmode=disable` to measure with it.
    #[arg(
        long,
        env = "WBD_BENCH_DATABASE_URL",
        default_value = "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable"
    )]
    pub database_url: String,
    /// RabbitMQ (must be on this machine).
    #[arg(long, env = "WBD_BENCH_AMQP_URL", default_value = "amqp://guest:guest@127.0.0.1:5672/%2f")]
    pub amqp_url: String,
    /// Where the release binaries are [default: target/release of this workspace].
    #[arg(long)]
    pub bin_dir: Option<PathBuf>,
    /// Also write the JSON report here (it always goes to target/bench/latest.json).
    #[arg(long)]
    pub out: Option<PathBuf>,
}

fn secs_opt<S: serde::Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
    match d {
        Some(d) => s.serialize_some(&d.as_secs_f64()),
        None => s.serialize_none(),
    }
}

/// The phases of a run, in the order they run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Phases {
    pub floor: bool,
    pub distributed: bool,
    pub embedded: bool,
    pub rules: bool,
    pub collector: bool,
    pub delivery: bool,
    pub retention: bool,
    pub console: bool,
    pub graph: bool,
}

impl Args {
    pub fn phases(&self) -> Phases {
        let none = !(self.floor
            || self.distributed
            || self.embedded
            || self.rules
            || self.collector
            || self.delivery
            || self.retention
            || self.console
            || self.graph);
        let all = self.all || none;
        Phases {
            floor: all || self.floor,
            distributed: all || self.distributed,
            embedded: all || self.embedded,
            rules: all || self.rules,
            collector: all || self.collector,
            delivery: all || self.delivery,
            retention: all || self.retention,
            console: all || self.console,
            graph: all || self.graph,
        }
    }

    pub fn window(&self) -> Duration {
        self.duration.unwrap_or(if self.quick { Duration::from_secs(10) } else { Duration::from_secs(60) })
    }

    pub fn warmup_time(&self) -> Duration {
        self.warmup.unwrap_or(if self.quick { Duration::from_secs(2) } else { Duration::from_secs(5) })
    }

    pub fn floor_time(&self) -> Duration {
        self.floor_duration.unwrap_or(if self.quick {
            Duration::from_secs(4)
        } else {
            Duration::from_secs(10)
        })
    }

    pub fn retention_row_count(&self) -> usize {
        self.retention_rows.unwrap_or(if self.quick { 100_000 } else { 1_000_000 })
    }

    pub fn console_request_count(&self) -> usize {
        self.console_requests.unwrap_or(if self.quick { 50 } else { 200 })
    }

    pub fn delivery_count(&self) -> usize {
        self.deliveries.unwrap_or(if self.quick { 2_000 } else { 20_000 })
    }

    /// `--set` pairs, checked.
    pub fn extra_env(&self) -> anyhow::Result<Vec<(String, String)>> {
        self.set
            .iter()
            .map(|pair| match pair.split_once('=') {
                Some((k, v)) if k.starts_with("WBD_") => Ok((k.to_owned(), v.to_owned())),
                _ => anyhow::bail!("--set {pair:?}: expected WBD_SECTION__KEY=VALUE"),
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Args {
        Args::try_parse_from(std::iter::once("wbd-bench").chain(args.iter().copied())).unwrap()
    }

    #[test]
    fn no_phase_named_means_all() {
        let all = Phases {
            floor: true,
            distributed: true,
            embedded: true,
            rules: true,
            collector: true,
            delivery: true,
            retention: true,
            console: true,
            graph: true,
        };
        assert_eq!(parse(&[]).phases(), all);
        assert_eq!(parse(&["--all", "--quick"]).phases(), all);
        let only = parse(&["--rules", "--collector"]).phases();
        assert!(only.rules && only.collector && !only.floor && !only.distributed && !only.embedded);
        assert!(!only.delivery);
        let delivery = parse(&["--delivery", "--quick"]);
        let phases = delivery.phases();
        assert!(phases.delivery && !phases.floor && !phases.distributed && !phases.embedded && !phases.rules);
        assert_eq!(delivery.delivery_count(), 2_000);
        let retention = parse(&["--retention"]);
        let phases = retention.phases();
        assert!(phases.retention && !phases.delivery && !phases.floor && !phases.embedded);
        assert_eq!((retention.retention_row_count(), retention.retention_batch), (1_000_000, 5_000));
        assert_eq!(parse(&["--retention", "--quick"]).retention_row_count(), 100_000);
    }

    #[test]
    fn durations_default_by_mode() {
        assert_eq!(parse(&[]).window(), Duration::from_secs(60));
        assert_eq!(parse(&["--quick"]).window(), Duration::from_secs(10));
        assert_eq!(parse(&["--quick", "--duration", "30s"]).window(), Duration::from_secs(30));
        assert_eq!(parse(&["--duration", "2m"]).window(), Duration::from_secs(120));
    }

    #[test]
    fn settings_for_the_product_must_be_wbd_keys() {
        let args = parse(&["--set", "WBD_WORKER__CONCURRENCY=8"]);
        assert_eq!(args.extra_env().unwrap(), vec![("WBD_WORKER__CONCURRENCY".to_owned(), "8".to_owned())]);
        assert!(parse(&["--set", "PATH=/tmp"]).extra_env().is_err());
        assert!(Args::try_parse_from(["wbd-bench", "--batch-results", "5000"]).is_err());
    }
}
