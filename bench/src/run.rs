//! One benchmark run: each selected phase in turn, every figure into the report, the targets of
//! issue 15 checked at the end. A phase that fails is reported as failed and the others still run.

use std::time::Duration;

use chrono::Utc;

use crate::cli::Args;
use crate::console;
use crate::delivery::{self, Backend, DeliveryLoad, TestBed};
use crate::deploy::{self, Binaries, Deployment, PgDatabase};
use crate::floor;
use crate::footprint;
use crate::machine::{MachineInfo, loadavg};
use crate::pipeline::{self, LatencyRun, ThroughputRun};
use crate::report::{Bound, GitState, NamedCpuUse, PhaseReport, Report, RunConditions, Target};
use crate::rules;
use crate::sim::{Admin, http_client};
use crate::{graph, retention};

const MIB: f64 = 1024.0 * 1024.0;

pub async fn run(args: Args, command: String) -> anyhow::Result<Report> {
    let phases = args.phases();
    deploy::require_loopback("--database-url", &args.database_url)?;
    deploy::require_loopback("--amqp-url", &args.amqp_url)?;
    let extra = args.extra_env()?;
    let bins = Binaries::locate(args.bin_dir.as_deref());
    let mut needed = Vec::new();
    if phases.distributed {
        needed.extend([bins.api.as_path(), bins.worker.as_path()]);
    }
    if phases.embedded || phases.console {
        needed.push(bins.api.as_path());
    }
    if phases.collector {
        needed.extend([bins.api.as_path(), bins.collector.as_path()]);
    }
    bins.check(&needed)?;

    let machine = MachineInfo::read();
    let ticks = machine.clock_ticks_per_sec;
    let started_at = Utc::now();
    let loadavg_at_start = loadavg();
    let git = GitState::read(&deploy::workspace_root());
    let mut reports = Vec::new();

    if phases.floor {
        eprintln!("[wbd-bench] floor: PostgreSQL COPY and RabbitMQ confirms");
        reports.push(floor_phase(&args).await);
    }
    let floor_results_per_s =
        reports.iter().find(|p| p.id == "floor").and_then(|p| p.value("floor_results_per_s"));
    if phases.distributed {
        eprintln!("[wbd-bench] distributed: wbd-api + wbd-worker on PostgreSQL and RabbitMQ");
        let mut phase = PhaseReport::new("distributed", "Product, distributed (PostgreSQL + RabbitMQ)");
        let deployment = Deployment::distributed(
            &bins,
            &args.database_url,
            &args.amqp_url,
            args.apis,
            args.workers,
            &args.log_level,
            extra.clone(),
        )
        .await;
        match deployment {
            Ok(deployment) => {
                phase.condition(format!(
                    "{} wbd-api process(es) (outbox relay inside), {} wbd-worker process(es), fresh database, queue prefix {}",
                    args.apis, args.workers, deployment.env.prefix
                ));
                phase.condition(format!("PostgreSQL: {}", tls_of(&args.database_url)));
                if args.pg_sql.is_empty() {
                    product_phase(&args, deployment, &mut phase, floor_results_per_s, ticks).await;
                } else {
                    phase.condition(format!("EXPERIMENT: SQL run before the load: {:?}", args.pg_sql));
                    match deployment.run_sql(&args.pg_sql).await {
                        Ok(()) => {
                            product_phase(&args, deployment, &mut phase, floor_results_per_s, ticks).await
                        }
                        Err(e) => {
                            phase.error = Some(format!("{e:#}"));
                            deployment.teardown().await;
                        }
                    }
                }
            }
            Err(e) => phase.error = Some(format!("{e:#}")),
        }
        reports.push(phase);
    }
    if phases.embedded {
        eprintln!("[wbd-bench] embedded: one wbd-api on SQLite with the worker inside");
        let mut phase = PhaseReport::new("embedded", "Product, embedded (SQLite, one process)");
        match Deployment::embedded(&bins, &args.log_level, extra.clone()).await {
            Ok(deployment) => {
                phase.condition("1 wbd-api process: API, local store-backed queue and worker, SQLite (WAL) in a temporary directory");
                product_phase(&args, deployment, &mut phase, None, ticks).await;
            }
            Err(e) => phase.error = Some(format!("{e:#}")),
        }
        reports.push(phase);
    }
    if phases.rules {
        eprintln!("[wbd-bench] rules: wbd_rules::evaluate");
        reports.push(rules_phase(&args).await);
    }
    if phases.collector {
        eprintln!("[wbd-bench] collector: footprint of wbd-collector");
        reports.push(collector_phase(&args, &bins, ticks).await);
    }
    if phases.delivery {
        eprintln!("[wbd-bench] delivery (SQLite): the delivery engine in process, signed webhooks");
        reports.push(delivery_phase(&args, Backend::Sqlite, ticks).await);
        eprintln!("[wbd-bench] delivery (PostgreSQL): the delivery engine in process, signed webhooks");
        reports.push(delivery_phase(&args, Backend::Postgres { admin_url: &args.database_url }, ticks).await);
    }
    if phases.retention {
        eprintln!("[wbd-bench] retention (SQLite): sweeping large tables");
        reports.push(retention_phase(&args, Backend::Sqlite).await);
        eprintln!("[wbd-bench] retention (PostgreSQL): sweeping large tables");
        reports.push(retention_phase(&args, Backend::Postgres { admin_url: &args.database_url }).await);
    }
    if phases.console {
        eprintln!("[wbd-bench] console: the overview's pages at 1,000 tenants and 20,000 findings");
        reports.push(console_phase(&args, &bins, Backend::Sqlite, extra.clone()).await);
        eprintln!("[wbd-bench] console (PostgreSQL): the same on one wbd-api over PostgreSQL");
        reports.push(
            console_phase(&args, &bins, Backend::Postgres { admin_url: &args.database_url }, extra.clone())
                .await,
        );
    }
    if phases.graph {
        eprintln!("[wbd-bench] graph: the central Graph reader against the stand-in");
        reports.push(graph_phase(&args, ticks).await);
    }

    let window = args.window();
    let short = (window < Duration::from_secs(60))
        .then(|| format!("indicative only: measured over {} s, the target asks for 60 s", window.as_secs()));
    let latency_caveat = (args.latency_rate != 1000.0)
        .then(|| format!("measured at {} results/s, the target asks for 1,000", args.latency_rate));
    // Issue 15's targets (they replace issue 6's).
    let target =
        |id, text, phase, figure, bound, value, unit| Target { id, text, phase, figure, bound, value, unit };
    use Bound::{AtLeast, AtMost};
    let mut targets = vec![
        (
            target(
                "distributed-throughput",
                "distributed ingest-and-evaluate, sustained",
                "distributed",
                "e2e_results_per_s",
                AtLeast,
                10_000.0,
                "results/s",
            ),
            short.clone(),
        ),
        (
            target(
                "distributed-vs-floor",
                "distributed ingest-and-evaluate as a share of the floor",
                "distributed",
                "ratio_to_floor_pct",
                AtLeast,
                50.0,
                "%",
            ),
            short.clone(),
        ),
    ];
    for (id, process, key) in [
        (
            "distributed-cpu-postgres",
            "distributed CPU per 1,000 results: PostgreSQL",
            "cpu_ms_per_1k_results_postgres",
        ),
        ("distributed-cpu-api", "distributed CPU per 1,000 results: wbd-api", "cpu_ms_per_1k_results_api"),
        (
            "distributed-cpu-worker",
            "distributed CPU per 1,000 results: wbd-worker",
            "cpu_ms_per_1k_results_worker",
        ),
        (
            "distributed-cpu-rabbitmq",
            "distributed CPU per 1,000 results: RabbitMQ",
            "cpu_ms_per_1k_results_rabbitmq",
        ),
    ] {
        targets.push((target(id, process, "distributed", key, AtMost, 60.0, "ms"), None));
    }
    targets.extend([
        (
            target(
                "accept-to-finding-p99",
                "accept-to-finding p99 at 1,000 results/s (distributed)",
                "distributed",
                "accept_to_finding_p99_ms",
                AtMost,
                50.0,
                "ms",
            ),
            latency_caveat.clone(),
        ),
        (
            target(
                "embedded-throughput",
                "embedded ingest-and-evaluate, sustained",
                "embedded",
                "e2e_results_per_s",
                AtLeast,
                8_000.0,
                "results/s",
            ),
            short,
        ),
        (
            target(
                "embedded-ingest-p99",
                "embedded ingest latency p99 under full load",
                "embedded",
                "ingest_p99_ms",
                AtMost,
                200.0,
                "ms",
            ),
            None,
        ),
        (
            target(
                "embedded-accept-to-finding-p99",
                "accept-to-finding p99 at 1,000 results/s (embedded)",
                "embedded",
                "accept_to_finding_p99_ms",
                AtMost,
                50.0,
                "ms",
            ),
            latency_caveat,
        ),
        (
            target(
                "delivery-sqlite-throughput",
                "delivery to one integration, SQLite",
                "delivery_sqlite",
                "deliveries_per_s",
                AtLeast,
                1_000.0,
                "deliveries/s",
            ),
            None,
        ),
        (
            target(
                "delivery-sqlite-isolation-p99",
                "delivery p99 of a fast integration beside a 2 s one, SQLite",
                "delivery_sqlite",
                "latency_p99_ms_beside_slow",
                AtMost,
                1_000.0,
                "ms",
            ),
            None,
        ),
        (
            target(
                "delivery-sqlite-enqueue-errors",
                "enqueues that failed beside a slow integration, SQLite",
                "delivery_sqlite",
                "enqueue_errors_beside_slow",
                AtMost,
                0.0,
                "enqueues",
            ),
            None,
        ),
        (
            target(
                "delivery-postgres-throughput",
                "delivery to one integration, PostgreSQL",
                "delivery_postgres",
                "deliveries_per_s",
                AtLeast,
                1_000.0,
                "deliveries/s",
            ),
            None,
        ),
        (
            target(
                "delivery-postgres-cpu",
                "delivery: PostgreSQL CPU per 1,000 deliveries",
                "delivery_postgres",
                "cpu_ms_per_1k_postgres",
                AtMost,
                500.0,
                "ms",
            ),
            None,
        ),
        (
            target(
                "collector-idle-memory",
                "collector idle resident memory",
                "collector",
                "idle_rss_mib",
                AtMost,
                15.0,
                "MiB",
            ),
            None,
        ),
        (
            target(
                "collector-binary",
                "collector release binary",
                "collector",
                "binary_mib",
                AtMost,
                15.0,
                "MiB",
            ),
            None,
        ),
    ]);
    let targets = targets.into_iter().map(|(t, caveat)| t.check(&reports, caveat)).collect();

    Ok(Report {
        tool: format!("wbd-bench {}", env!("CARGO_PKG_VERSION")),
        started_at,
        finished_at: Utc::now(),
        git,
        machine,
        conditions: RunConditions { command, loadavg_at_start, loadavg_at_end: loadavg(), quick: args.quick },
        settings: serde_json::to_value(&args)?,
        phases: reports,
        targets,
    })
}

/// Whether the PostgreSQL URL asks for TLS (sqlx's default, `prefer`, uses it when the server
/// offers it).
fn tls_of(url: &str) -> String {
    let mode = reqwest::Url::parse(url)
        .ok()
        .and_then(|u| u.query_pairs().find(|(k, _)| k == "sslmode").map(|(_, v)| v.into_owned()))
        .unwrap_or_else(|| "prefer".into());
    match mode.as_str() {
        "disable" => "TCP over loopback without TLS (sslmode=disable)".into(),
        other => format!("TCP over loopback, sslmode={other} (TLS if the server offers it)"),
    }
}

async fn floor_phase(args: &Args) -> PhaseReport {
    let mut phase = PhaseReport::new("floor", "Floor: the machine with no product in the way");
    phase.condition(format!("PostgreSQL: {}", tls_of(&args.database_url)));
    let time = args.floor_time();
    let batch = f64::from(args.batch_results);
    let mut pg_rows = None;
    match PgDatabase::create(&args.database_url).await {
        Ok(db) => {
            let connections = 2;
            let result = floor::postgres_copy(&db.url, time, args.floor_rows_per_copy, connections).await;
            db.drop_database().await;
            match result {
                Ok(pg) => {
                    phase.condition(format!(
                        "PostgreSQL: COPY FROM STDIN (text), {} rows per COPY and transaction, {connections} connections, {} s, fresh table (fact_history's columns, primary key only), {:.0} bytes per row",
                        args.floor_rows_per_copy,
                        pg.elapsed.as_secs(),
                        pg.bytes_per_row
                    ));
                    phase.figure("pg_copy_rows_per_s", "PostgreSQL COPY", pg.rows_per_s, "rows/s");
                    phase.figure("pg_copy_rows", "rows written", pg.rows as f64, "rows");
                    pg_rows = Some(pg.rows_per_s);
                }
                Err(e) => phase.error = Some(format!("PostgreSQL floor: {e:#}")),
            }
        }
        Err(e) => phase.error = Some(format!("PostgreSQL floor: {e:#}")),
    }
    let prefix = format!("wbdbench.{}", uuid::Uuid::new_v4().simple());
    let serial = if args.quick { Duration::from_secs(2) } else { Duration::from_secs(4) };
    let rabbit =
        floor::rabbitmq_confirms(&args.amqp_url, &prefix, time, serial, args.floor_confirm_window).await;
    deploy::delete_queues(&args.amqp_url, &prefix).await;
    let mut rmq_msgs = None;
    match rabbit {
        Ok(r) => {
            phase.condition(format!(
                "RabbitMQ: persistent {}-byte messages to a durable quorum queue, confirms pipelined with {} outstanding, {} s; then one at a time for {} s",
                r.message_bytes,
                args.floor_confirm_window,
                time.as_secs(),
                serial.as_secs()
            ));
            phase.figure(
                "rmq_confirmed_msgs_per_s",
                "RabbitMQ publish, pipelined confirms",
                r.pipelined_msgs_per_s,
                "msgs/s",
            );
            phase.figure(
                "rmq_one_at_a_time_msgs_per_s",
                "RabbitMQ publish, wait for each confirm",
                r.one_at_a_time_msgs_per_s,
                "msgs/s",
            );
            if r.nacked > 0 {
                phase.note(format!("{} publishes were not confirmed", r.nacked));
            }
            rmq_msgs = Some(r.pipelined_msgs_per_s);
        }
        Err(e) => {
            let previous = phase.error.take().map(|p| format!("{p}; ")).unwrap_or_default();
            phase.error = Some(format!("{previous}RabbitMQ floor: {e:#}"));
        }
    }
    if let (Some(pg), Some(rmq)) = (pg_rows, rmq_msgs) {
        let via_queue = rmq * batch;
        phase.figure(
            "rmq_results_per_s",
            &format!("RabbitMQ as results (one message per {batch} results)"),
            via_queue,
            "results/s",
        );
        phase.figure("floor_results_per_s", "floor = the lower of the two", pg.min(via_queue), "results/s");
        phase.note(format!(
            "the product writes each result to PostgreSQL and one message per batch of {batch} results to RabbitMQ, so its floor is the lower of the two; bound by {}",
            if pg <= via_queue { "PostgreSQL" } else { "RabbitMQ" }
        ));
    }
    phase
}

/// Provisions collectors, then the throughput run and the latency run, into `phase`.
async fn product_phase(
    args: &Args,
    mut deployment: Deployment,
    phase: &mut PhaseReport,
    floor_results_per_s: Option<f64>,
    ticks: u64,
) {
    if let Err(e) = product_runs(args, &mut deployment, phase, floor_results_per_s, ticks).await {
        phase.error = Some(format!("{e:#}"));
    }
    for (name, count, first) in deployment.warnings() {
        if count > 0 {
            phase.note(format!(
                "{name} logged {count} WARN/ERROR line(s); first: {}",
                first.unwrap_or_default()
            ));
        }
    }
    deployment.teardown().await;
}

async fn product_runs(
    args: &Args,
    deployment: &mut Deployment,
    phase: &mut PhaseReport,
    floor_results_per_s: Option<f64>,
    ticks: u64,
) -> anyhow::Result<()> {
    let batch = usize::from(args.batch_results);
    let client = http_client(args.concurrency.max(args.latency_collectors))?;
    let key = deployment.bootstrap("Benchmark MSP").await?;
    let admin = Admin::login(&client, &deployment.bases[0], &key).await?;
    let provisioning = std::time::Instant::now();
    let collectors = admin
        .enrolled_collectors(&client, "Load tenant", args.collectors, batch, args.flip_probability, 1)
        .await?;
    let markers = admin
        .enrolled_collectors(&client, "Latency tenant", args.latency_collectors, batch, 0.0, 1_000_000)
        .await?;
    phase.condition(format!(
        "{} tenants with one enrolled collector each (Ed25519 keys, EdDSA push tokens per request) provisioned in {:.1} s, plus {} for the latency run",
        args.collectors,
        provisioning.elapsed().as_secs_f64(),
        args.latency_collectors
    ));
    phase.condition(format!(
        "batches of {batch} results (one probe cycle: the 6 host probes and {} endpoints), gzip JSON over loopback HTTP/1.1; {:.0}% of endpoints change state per cycle",
        batch.saturating_sub(6).max(1),
        args.flip_probability * 100.0
    ));

    // Throughput.
    let run =
        ThroughputRun { warmup: args.warmup_time(), window: args.window(), concurrency: args.concurrency };
    phase.condition(format!(
        "throughput: closed loop, {} pushes in flight, {} s warm-up, {} s measured window, then drain",
        run.concurrency,
        run.warmup.as_secs(),
        run.window.as_secs()
    ));
    eprintln!("[wbd-bench]   throughput run ({} s + drain)", (run.warmup + run.window).as_secs());
    let t = pipeline::throughput(deployment, &client, collectors, batch, &run, ticks).await?;
    phase.figure("accepted_results_per_s", "accepted (202)", t.accepted_results_per_s, "results/s");
    phase.figure(
        "evaluated_results_per_s",
        "evaluated during the window",
        t.evaluated_results_per_s,
        "results/s",
    );
    match (t.e2e_results_per_s, t.drain) {
        (Some(e2e), Some(drain)) => {
            phase.figure(
                "e2e_results_per_s",
                "ingest and evaluate, sustained (window + drain)",
                e2e,
                "results/s",
            );
            phase.figure("drain_s", "drain after the window", drain.as_secs_f64(), "s");
            if let Some(floor) = floor_results_per_s {
                phase.figure("ratio_to_floor_pct", "share of the floor", 100.0 * e2e / floor, "%");
            } else if phase.id == "distributed" {
                phase.missing(
                    "ratio_to_floor_pct",
                    "share of the floor",
                    "%",
                    "the floor was not measured in this run",
                );
            }
        }
        _ => {
            phase.missing(
                "e2e_results_per_s",
                "ingest and evaluate, sustained",
                "results/s",
                format!("the evaluation did not catch up within {} s", pipeline::DRAIN_TIMEOUT.as_secs()),
            );
        }
    }
    phase.figure(
        "backlog_results",
        "accepted but not evaluated at window end",
        t.backlog_results_at_end as f64,
        "results",
    );
    phase.figure("accepted_batches", "batches accepted in the window", t.accepted_batches as f64, "batches");
    if let Some(l) = t.ingest_latency {
        phase.figure("ingest_p50_ms", "ingest latency p50 (full load)", l.p50_ms, "ms");
        phase.figure("ingest_p99_ms", "ingest latency p99 (full load)", l.p99_ms, "ms");
    }
    if let Some(evaluations) = t.evaluations {
        phase.figure(
            "evaluations",
            "evaluations applied (window + drain)",
            evaluations as f64,
            "evaluations",
        );
        if evaluations > 0 {
            phase.figure(
                "batches_per_evaluation",
                "batches covered per evaluation",
                t.batches_evaluated as f64 / evaluations as f64,
                "batches",
            );
        }
    }
    let refused: u64 = t.refused.values().sum();
    phase.figure("refused_pushes", "pushes not answered 202", refused as f64, "pushes");
    if refused > 0 {
        phase.note(format!("pushes not answered 202 in the throughput window, by status: {:?}", t.refused));
    }
    // CPU per unit of work: steadier than a rate when other work shares the machine.
    if t.accepted_results > 0 {
        for group in &t.cpu.by_group {
            let key = match group.group.as_str() {
                "PostgreSQL" => "postgres",
                "RabbitMQ" => "rabbitmq",
                "wbd-api" => "api",
                "wbd-worker" => "worker",
                _ => continue,
            };
            phase.figure(
                &format!("cpu_ms_per_1k_results_{key}"),
                &format!("CPU per 1,000 results accepted: {}", group.group),
                group.cpu_secs * 1e6 / t.accepted_results as f64,
                "ms",
            );
        }
    }
    phase.cpu.push(NamedCpuUse { window: "the throughput window".into(), usage: t.cpu.clone() });
    let (findings, events) = deployment.db.finding_counts().await.unwrap_or((0, 0));
    phase.note(format!("after the throughput run: {findings} findings, {events} finding events"));

    // Latency.
    let run = LatencyRun {
        rate_results_per_s: args.latency_rate,
        window: args.window(),
        poll_every: Duration::from_millis(args.poll_ms.max(1)),
    };
    phase.condition(format!(
        "latency: open loop at {} results/s ({:.1} batches/s from {} collectors), {} s; every batch changes one finding, polled every {} ms",
        run.rate_results_per_s,
        run.rate_results_per_s / batch as f64,
        args.latency_collectors,
        run.window.as_secs(),
        run.poll_every.as_millis()
    ));
    eprintln!("[wbd-bench]   latency run ({} s)", run.window.as_secs());
    let l = pipeline::latency(deployment, &client, markers, &run, ticks).await?;
    phase.figure(
        "latency_run_results_per_s",
        "latency run: accepted rate",
        l.achieved_results_per_s,
        "results/s",
    );
    if let Some(s) = l.ingest {
        phase.figure("ingest_p50_ms_at_rate", "ingest latency p50 (at rate)", s.p50_ms, "ms");
        phase.figure("ingest_p99_ms_at_rate", "ingest latency p99 (at rate)", s.p99_ms, "ms");
    }
    match l.accept_to_finding {
        Some(s) => {
            phase.figure("accept_to_finding_p50_ms", "accept-to-finding p50", s.p50_ms, "ms");
            phase.figure("accept_to_finding_p99_ms", "accept-to-finding p99", s.p99_ms, "ms");
            phase.figure("accept_to_finding_max_ms", "accept-to-finding max", s.max_ms, "ms");
            phase.figure(
                "accept_to_finding_samples",
                "batches followed to their finding",
                s.count as f64,
                "batches",
            );
        }
        None => phase.missing(
            "accept_to_finding_p99_ms",
            "accept-to-finding p99",
            "ms",
            "no batch was seen in a finding",
        ),
    }
    phase.figure("finding_polls", "finding polls during the latency run", l.polls as f64, "polls");
    if l.unseen > 0 {
        phase.note(format!(
            "{} accepted batches never showed in their finding within 30 s of the load's end",
            l.unseen
        ));
    }
    if l.refused > 0 {
        phase.note(format!("{} pushes of the latency run were not answered 202", l.refused));
    }
    if l.late_starts > 0 {
        phase.note(format!(
            "{} pushes of the latency run started over 100 ms after their slot",
            l.late_starts
        ));
    }
    phase.cpu.push(NamedCpuUse { window: "the latency run".into(), usage: l.cpu });
    Ok(())
}

async fn retention_phase(args: &Args, backend: Backend<'_>) -> PhaseReport {
    let (id, title, name) = match backend {
        Backend::Sqlite => ("retention_sqlite", "Retention sweep, embedded store (SQLite)", "sqlite"),
        Backend::Postgres { .. } => {
            ("retention_postgres", "Retention sweep, distributed store (PostgreSQL)", "postgres")
        }
    };
    let mut phase = PhaseReport::new(id, title);
    let load = retention::SweepLoad {
        rows: args.retention_row_count(),
        batch_size: args.retention_batch,
        pause: Duration::from_millis(args.retention_pause_ms),
    };
    match backend {
        Backend::Sqlite => {
            phase.condition("store: SQLite (WAL) in a temporary directory, as the embedded product opens it")
        }
        Backend::Postgres { admin_url } => phase.condition(format!(
            "store: fresh PostgreSQL database, ANALYZEd after filling; {}",
            tls_of(admin_url)
        )),
    }
    phase.condition(format!(
        "filled through SQL: {rows} fact history runs 200 days old over 1,000 subjects, each subject's latest fact on its oldest run (kept), a tenth as many recent runs (kept); {deliveries} succeeded deliveries 200 days old with ten attempts each, a hundredth as many recent and as many pending ones (kept)",
        rows = load.rows,
        deliveries = load.rows / 10,
    ));
    phase.condition(format!(
        "swept by wbd_platform::retention::sweep_table: batches of {} rows (deliveries: a tenth as many deliveries, with their ten attempts each), {} ms pause between batches, cutoffs 90 days (history) and 30 days (deliveries); alone on the store",
        load.batch_size,
        load.pause.as_millis()
    ));
    match retention::measure(backend, load).await {
        Ok(sweeps) => {
            for s in sweeps {
                let table = s.table.as_str();
                let removed = s.sweep.rows + s.sweep.dependent_rows;
                phase.figure(
                    &format!("{name}_{table}_seeded"),
                    &format!("{table}: rows filled (with dependents)"),
                    s.seeded as f64,
                    "rows",
                );
                phase.figure(
                    &format!("{name}_{table}_removed"),
                    &format!("{table}: rows removed (with dependents)"),
                    removed as f64,
                    "rows",
                );
                phase.figure(
                    &format!("{name}_{table}_batches"),
                    &format!("{table}: delete statements"),
                    f64::from(s.sweep.batches),
                    "batches",
                );
                phase.figure(
                    &format!("{name}_{table}_rows_per_s"),
                    &format!("{table}: removed per second, pauses included"),
                    removed as f64 / s.wall.as_secs_f64(),
                    "rows/s",
                );
                phase.figure(
                    &format!("{name}_{table}_busy_rows_per_s"),
                    &format!("{table}: removed per second of deleting"),
                    removed as f64 / s.sweep.busy.as_secs_f64(),
                    "rows/s",
                );
                phase.figure(
                    &format!("{name}_{table}_longest_batch_ms"),
                    &format!("{table}: slowest single batch"),
                    s.sweep.longest_batch.as_secs_f64() * 1e3,
                    "ms",
                );
                phase.figure(
                    &format!("{name}_{table}_mean_batch_ms"),
                    &format!("{table}: mean batch"),
                    s.sweep.busy.as_secs_f64() * 1e3 / f64::from(s.sweep.batches.max(1)),
                    "ms",
                );
                phase.note(format!("{table}: filled in {:.1} s", s.seed_time.as_secs_f64()));
            }
        }
        Err(e) => phase.error = Some(format!("{e:#}")),
    }
    phase
}

async fn console_phase(
    args: &Args,
    bins: &Binaries,
    backend: Backend<'_>,
    extra: Vec<(String, String)>,
) -> PhaseReport {
    let mut phase = match backend {
        Backend::Sqlite => PhaseReport::new("console_sqlite", "Console overview, embedded store (SQLite)"),
        Backend::Postgres { .. } => {
            PhaseReport::new("console_postgres", "Console overview, one wbd-api on PostgreSQL")
        }
    };
    let load = console::OverviewLoad {
        tenants: 1_000,
        findings_per_tenant: 20,
        requests: args.console_request_count(),
    };
    match backend {
        Backend::Sqlite => phase.condition(
            "1 wbd-api process (embedded: SQLite (WAL) in a temporary directory, worker inside), idle otherwise",
        ),
        Backend::Postgres { admin_url } => phase.condition(format!(
            "1 wbd-api process on a fresh PostgreSQL database (local queue, worker inside, no RabbitMQ), idle otherwise; {}",
            tls_of(admin_url)
        )),
    }
    phase.condition(format!(
        "filled through SQL after bootstrap: {} tenants, {} open findings each (all severities); signed in through the console's form",
        load.tenants, load.findings_per_tenant
    ));
    phase.condition(format!(
        "{} GETs of /?page=N (50 tenants a page, every page in turn), one after another from one client on loopback; each time is the server's plus a loopback round trip",
        load.requests
    ));
    let deployment = match backend {
        Backend::Sqlite => Deployment::embedded(bins, &args.log_level, extra).await,
        Backend::Postgres { admin_url } => {
            Deployment::single_on_postgres(bins, admin_url, &args.log_level, extra).await
        }
    };
    let deployment = match deployment {
        Ok(d) => d,
        Err(e) => {
            phase.error = Some(format!("{e:#}"));
            return phase;
        }
    };
    match console::measure(&deployment, load).await {
        Ok(t) => {
            let p = &t.pages;
            phase.figure("console_overview_p50_ms", "overview page, p50", p.p50_ms, "ms");
            phase.figure("console_overview_p90_ms", "overview page, p90", p.p90_ms, "ms");
            phase.figure("console_overview_p99_ms", "overview page, p99", p.p99_ms, "ms");
            phase.figure("console_overview_max_ms", "overview page, slowest", p.max_ms, "ms");
            phase.figure("console_overview_mean_ms", "overview page, mean", p.mean_ms, "ms");
            phase.figure(
                "console_overview_per_s",
                "overview pages per second (one client)",
                p.count as f64 / t.wall.as_secs_f64(),
                "pages/s",
            );
            phase.note(format!(
                "filled in {:.1} s; the first page, cold, took {:.0} ms",
                t.seed_time.as_secs_f64(),
                t.first_page.as_secs_f64() * 1e3
            ));
        }
        Err(e) => phase.error = Some(format!("{e:#}")),
    }
    deployment.teardown().await;
    phase
}

/// A poll interval short enough that the engine's own work shows, not the wait for its next look.
const SHORT_POLL: Duration = Duration::from_millis(25);

async fn delivery_phase(args: &Args, backend: Backend<'_>, ticks: u64) -> PhaseReport {
    // The product's default pool size (`database.max_connections`).
    let connections = 10;
    let (id, title) = match backend {
        Backend::Sqlite => ("delivery_sqlite", "Delivery, embedded store (SQLite): signed webhooks"),
        Backend::Postgres { .. } => {
            ("delivery_postgres", "Delivery, distributed store (PostgreSQL): signed webhooks")
        }
    };
    let mut phase = PhaseReport::new(id, title);
    let load = DeliveryLoad {
        deliveries: args.delivery_count(),
        concurrency: args.delivery_concurrency,
        max_in_flight: args.delivery_max_in_flight,
        rate_per_s: args.delivery_rate,
        window: args.window(),
        poll_interval: Duration::from_millis(args.delivery_poll_ms.max(1)),
        slow_delay: Duration::from_secs(2),
        slow_max_in_flight: 2,
    };
    match backend {
        Backend::Sqlite => phase.condition(format!(
            "store: SQLite (WAL) in a temporary directory, pool of {connections} connections, as the embedded product opens it"
        )),
        Backend::Postgres { admin_url } => phase.condition(format!(
            "store: fresh PostgreSQL database, pool of {connections} connections; {}",
            tls_of(admin_url)
        )),
    }
    phase.condition(format!(
        "engine in this process (wbd_delivery::engine: dispatcher + deliverer), concurrency {}, poll interval {} ms, attempt timeout 15 s, standard retry schedule; webhook connector with a sealed signing secret (Standard Webhooks HMAC-SHA256 on every request), network policy allowing 127.0.0.1/32 over http",
        load.concurrency,
        load.poll_interval.as_millis()
    ));
    phase.condition(
        "receivers: wbd_receivers::webhook::WebhookReceiver (actix-web, one worker thread, answers 204, records every request with its arrival time) on 127.0.0.1; events: finding.opened of new endpoint-reachable findings (about 2 KB of JSON with remediation steps)",
    );
    if let Err(e) = delivery_runs(backend, connections, &load, &mut phase, ticks).await {
        phase.error = Some(format!("{e:#}"));
    }
    phase
}

/// A fresh store for each run, so that what one run leaves pending cannot slow the next.
async fn fresh_bed(backend: Backend<'_>, connections: u32) -> anyhow::Result<TestBed> {
    TestBed::new(backend, connections).await
}

async fn delivery_runs(
    backend: Backend<'_>,
    connections: u32,
    load: &DeliveryLoad,
    phase: &mut PhaseReport,
    ticks: u64,
) -> anyhow::Result<()> {
    // Throughput.
    phase.condition(format!(
        "throughput: {} deliveries to one integration (max_in_flight {}) queued in batches of 500 before the engine starts; timed from its start until none is pending",
        load.deliveries, load.max_in_flight
    ));
    eprintln!("[wbd-bench]   throughput run ({} deliveries)", load.deliveries);
    let bed = fresh_bed(backend, connections).await?;
    let t = delivery::throughput(&bed, load, ticks).await;
    bed.teardown().await;
    let t = t?;
    phase.figure(
        "enqueued_per_s",
        "queueing (enqueue_deliveries, 500 per call)",
        delivery_rate(t.queued, t.enqueue),
        "deliveries/s",
    );
    match t.per_second() {
        Some(rate) => {
            phase.figure(
                "deliveries_per_s",
                "delivered, sustained (queued → all succeeded)",
                rate,
                "deliveries/s",
            );
        }
        None => phase.missing(
            "deliveries_per_s",
            "delivered, sustained (queued → all succeeded)",
            "deliveries/s",
            format!("{} of {} succeeded within {:.0} s", t.succeeded, t.queued, t.waited.as_secs_f64()),
        ),
    }
    if let Some((first, second)) = t.halves_per_second() {
        phase.figure("first_half_per_s", "delivered while the first half went", first, "deliveries/s");
        phase.figure("second_half_per_s", "delivered while the second half went", second, "deliveries/s");
    }
    if t.elapsed.is_none() {
        phase.figure(
            "partial_deliveries_per_s",
            "delivered per second until the timeout (not all)",
            delivery_rate(t.succeeded.max(0) as usize, t.waited),
            "deliveries/s",
        );
    }
    phase.figure("succeeded", "deliveries succeeded", t.succeeded as f64, "deliveries");
    phase.figure(
        "throughput_run_s",
        "time to deliver them all (or the timeout)",
        t.waited.as_secs_f64(),
        "s",
    );
    phase.figure("failed_attempts", "failed attempts", t.failed_attempts as f64, "attempts");
    if t.succeeded > 0 {
        let per_1k = |secs: f64| secs * 1e6 / t.succeeded as f64;
        phase.figure(
            "cpu_ms_per_1k_engine",
            "CPU per 1,000 deliveries: engine + store client (this process, receiver excluded)",
            per_1k(t.process_cpu_secs - t.receiver_cpu_secs),
            "ms",
        );
        phase.figure(
            "cpu_ms_per_1k_receiver",
            "CPU per 1,000 deliveries: webhook receiver (actix threads)",
            per_1k(t.receiver_cpu_secs),
            "ms",
        );
        // On SQLite the PostgreSQL group is only the server's background work.
        if let Backend::Postgres { .. } = backend
            && let Some(pg) = t.cpu.by_group.iter().find(|g| g.group == "PostgreSQL")
        {
            phase.figure(
                "cpu_ms_per_1k_postgres",
                "CPU per 1,000 deliveries: PostgreSQL",
                per_1k(pg.cpu_secs),
                "ms",
            );
        }
    }
    phase.cpu.push(NamedCpuUse { window: "the delivery throughput run".into(), usage: t.cpu.clone() });
    phase.note(
        "in this phase the group \"load generator (wbd-bench)\" is the engine, the store client and the receivers, all in the benchmark's process",
    );

    // Latency at a steady rate, with the product's poll interval and then a short one.
    let polls: Vec<Duration> = if load.poll_interval > SHORT_POLL {
        vec![load.poll_interval, SHORT_POLL]
    } else {
        vec![load.poll_interval]
    };
    phase.condition(format!(
        "latency: {} events/s for {} s, each enqueued in its own transaction to one integration; from the enqueue's commit (its return) to the receiver reading the request; with poll intervals of {}",
        load.rate_per_s,
        load.window.as_secs(),
        polls.iter().map(|p| format!("{} ms", p.as_millis())).collect::<Vec<_>>().join(" and ")
    ));
    for (i, poll) in polls.iter().enumerate() {
        let key = if i == 0 { String::new() } else { format!("_poll{}ms", poll.as_millis()) };
        let label = format!("poll {} ms", poll.as_millis());
        eprintln!("[wbd-bench]   latency run ({} s, {label})", load.window.as_secs());
        let bed = fresh_bed(backend, connections).await?;
        let r = delivery::at_rate(&bed, load, *poll, false, ticks).await;
        bed.teardown().await;
        let r = r?;
        at_rate_figures(phase, &r, &key, &label, "latency");
        phase.cpu.push(NamedCpuUse { window: format!("the delivery latency run ({label})"), usage: r.cpu });
    }

    // Isolation: one slow receiver must not hold up another integration.
    phase.condition(format!(
        "isolation: {} events/s for {} s, each to two integrations: one whose receiver answers after {} s (max_in_flight {}), one fast (max_in_flight {}); poll interval {} ms; latency of the fast one",
        load.rate_per_s,
        load.window.as_secs(),
        load.slow_delay.as_secs(),
        load.slow_max_in_flight,
        load.max_in_flight,
        load.poll_interval.as_millis()
    ));
    eprintln!("[wbd-bench]   isolation run ({} s)", load.window.as_secs());
    let bed = fresh_bed(backend, connections).await?;
    let r = delivery::at_rate(&bed, load, load.poll_interval, true, ticks).await;
    bed.teardown().await;
    let r = r?;
    at_rate_figures(phase, &r, "_beside_slow", "beside a slow receiver", "isolation");
    if let Some((received, pending)) = r.slow {
        phase.figure(
            "slow_received",
            "isolation: requests the slow receiver got",
            received as f64,
            "requests",
        );
        phase.figure(
            "slow_pending_at_end",
            "isolation: slow integration's deliveries still pending",
            pending as f64,
            "deliveries",
        );
    }
    phase.cpu.push(NamedCpuUse { window: "the delivery isolation run".into(), usage: r.cpu });
    Ok(())
}

fn delivery_rate(n: usize, elapsed: Duration) -> f64 {
    crate::stats::per_second(n as f64, elapsed)
}

fn at_rate_figures(phase: &mut PhaseReport, r: &delivery::AtRate, key: &str, label: &str, run: &str) {
    phase.figure(
        &format!("rate{key}"),
        &format!("{run} ({label}): events queued"),
        r.achieved_per_s,
        "events/s",
    );
    match r.latency {
        Some(s) => {
            phase.figure(
                &format!("latency_p50_ms{key}"),
                &format!("commit → receiver p50 ({label})"),
                s.p50_ms,
                "ms",
            );
            phase.figure(
                &format!("latency_p99_ms{key}"),
                &format!("commit → receiver p99 ({label})"),
                s.p99_ms,
                "ms",
            );
            phase.figure(
                &format!("latency_max_ms{key}"),
                &format!("commit → receiver max ({label})"),
                s.max_ms,
                "ms",
            );
            phase.figure(
                &format!("latency_samples{key}"),
                &format!("deliveries timed ({label})"),
                s.count as f64,
                "deliveries",
            );
        }
        None => phase.missing(
            &format!("latency_p99_ms{key}"),
            &format!("commit → receiver p99 ({label})"),
            "ms",
            "no delivery reached the receiver",
        ),
    }
    if let Some(s) = r.enqueue {
        phase.figure(
            &format!("enqueue_p99_ms{key}"),
            &format!("enqueue of one event p99 ({label})"),
            s.p99_ms,
            "ms",
        );
    }
    if r.unseen > 0 {
        phase.note(format!(
            "{run} ({label}): {} of {} events never reached the receiver within 60 s of the load's end",
            r.unseen, r.offered
        ));
    }
    phase.figure(
        &format!("enqueue_errors{key}"),
        &format!("enqueues that failed ({label})"),
        r.enqueue_errors as f64,
        "events",
    );
    if r.enqueue_errors > 0 {
        phase.note(format!(
            "{run} ({label}): {} enqueues failed; first: {}",
            r.enqueue_errors,
            r.first_enqueue_error.as_deref().unwrap_or("")
        ));
    }
    if r.late_starts > 0 {
        phase
            .note(format!("{run} ({label}): {} enqueues started over 50 ms after their slot", r.late_starts));
    }
    if r.before_commit_returned > 0 {
        phase.note(format!(
            "{run} ({label}): {} requests reached the receiver before the enqueue returned (counted as 0 ms)",
            r.before_commit_returned
        ));
    }
}

async fn graph_phase(args: &Args, ticks: u64) -> PhaseReport {
    let mut phase = PhaseReport::new("graph", "Central Graph reader: tenants read per minute (stand-in)");
    let load =
        graph::ReadLoad { tenants: if args.quick { 100 } else { 500 }, concurrency: 16, throttle_every: 50 };
    phase.condition(format!(
        "{} connected tenants, each due at once, read by one worker's reader (graph.reader_concurrency {}, poll 1 s) on the embedded store (SQLite), against the in-process identity-platform and Graph stand-in over loopback HTTP, which enforces Graph's documented limits for identity and access (3,500 resource units per app and tenant per 10 s, 150,000 per app per 20 s, 130,000 requests per app per 10 s, 5 report requests per app and tenant per 10 s; subscribedSkus costs 3 units, $select one less); besides, every {}th tenant answers one 429 with Retry-After: 1",
        load.tenants, load.concurrency, load.throttle_every
    ));
    match graph::measure(load, ticks).await {
        Ok(m) => {
            phase.figure("tenants_per_min", "Tenants read", m.tenants_per_min, "tenants/min");
            phase.figure(
                "graph_requests_per_tenant",
                "Graph requests per tenant read",
                m.requests_per_tenant,
                "requests",
            );
            phase.figure(
                "cpu_ms_per_tenant",
                "CPU per tenant read (reader, store, stand-in: one process)",
                m.cpu_ms_per_tenant,
                "ms",
            );
            phase.note(format!("all {} tenants read in {:.1} s", load.tenants, m.wall.as_secs_f64()));
            phase.note(format!(
                "429s from the documented limits: {} per app across all tenants, {} per app and tenant",
                m.refused_app, m.refused_tenant
            ));
        }
        Err(e) => phase.error = Some(format!("{e:#}")),
    }
    phase
}

async fn rules_phase(args: &Args) -> PhaseReport {
    let mut phase = PhaseReport::new("rules", "Rules: the shipped pack and CEL custom rules, one core");
    let time = if args.quick { Duration::from_millis(700) } else { Duration::from_secs(3) };
    phase.condition(format!(
        "{} rules; each shape measured for {:.1} s in a tight loop; the criterion benchmark is `cargo bench -p wbd-bench --bench rules`",
        wbd_rules::rules().len(),
        time.as_secs_f64()
    ));
    for (i, shape) in rules::SHAPES.iter().enumerate() {
        let shape = *shape;
        let measured =
            tokio::task::spawn_blocking(move || rules::measure(&rules::facts_for(shape), time)).await;
        match measured {
            Ok(speed) => {
                let key = if i == 0 { "typical" } else { "large" };
                phase.condition(format!(
                    "{}: {} facts, {} verdicts per evaluation",
                    shape.name, speed.facts, speed.verdicts
                ));
                phase.figure(
                    &format!("{key}_evaluations_per_s"),
                    &format!("{}: evaluations", shape.name),
                    speed.evaluations_per_s,
                    "evaluations/s",
                );
                phase.figure(
                    &format!("{key}_verdicts_per_s"),
                    &format!("{}: verdicts", shape.name),
                    speed.verdicts_per_s,
                    "verdicts/s",
                );
                phase.figure(
                    &format!("{key}_us_per_evaluation"),
                    &format!("{}: time per evaluation", shape.name),
                    speed.micros_per_evaluation,
                    "µs",
                );
            }
            Err(e) => phase.error = Some(format!("rule measurement panicked: {e}")),
        }
    }
    phase.condition(format!(
        "CEL custom rules: the {} rules of bench/src/rules.rs (endpoint, Connect version, idle connection, licences, event log), evaluate_custom over each shape; compile = the check the API runs on save",
        rules::CUSTOM_RULES.len()
    ));
    for (i, shape) in rules::SHAPES.iter().enumerate() {
        let shape = *shape;
        let measured =
            tokio::task::spawn_blocking(move || rules::measure_custom(&rules::facts_for(shape), time)).await;
        let key = if i == 0 { "typical" } else { "large" };
        match measured {
            Ok(Ok(speed)) => {
                phase.figure(
                    &format!("cel_{key}_evaluations_per_s"),
                    &format!("CEL, {}: evaluations of all {} rules", shape.name, speed.rules),
                    speed.evaluations_per_s,
                    "evaluations/s",
                );
                phase.figure(
                    &format!("cel_{key}_rule_runs_per_s"),
                    &format!("CEL, {}: single rule runs", shape.name),
                    speed.rule_runs_per_s,
                    "rule runs/s",
                );
                phase.figure(
                    &format!("cel_{key}_us_per_evaluation"),
                    &format!("CEL, {}: time per evaluation", shape.name),
                    speed.micros_per_evaluation,
                    "µs",
                );
                if i == 0 {
                    phase.figure(
                        "cel_compile_us_per_rule",
                        "CEL: compile and check one rule",
                        speed.compile_micros_per_rule,
                        "µs",
                    );
                }
            }
            Ok(Err(e)) => phase.error = Some(format!("CEL rules: {e}")),
            Err(e) => phase.error = Some(format!("CEL measurement panicked: {e}")),
        }
    }
    phase
}

async fn collector_phase(args: &Args, bins: &Binaries, ticks: u64) -> PhaseReport {
    let mut phase = PhaseReport::new("collector", "Collector footprint (wbd-collector release build)");
    let (settle, idle) = if args.quick {
        (Duration::from_secs(2), Duration::from_secs(3))
    } else {
        (Duration::from_secs(5), Duration::from_secs(10))
    };
    let runs = if args.quick { 3 } else { 10 };
    match footprint::measure(bins, runs, settle, idle, ticks).await {
        Ok(f) => {
            phase.condition(format!(
                "two loopback TLS endpoints (the default configuration's count), enrolled against a local embedded wbd-api; `probe --once` run {} times; `run` with a one-day probe interval, memory read {} s after its first push, idle CPU over {} s; CPU times have a resolution of 1/{ticks} s",
                f.probe_runs,
                settle.as_secs(),
                f.idle_window.as_secs()
            ));
            phase.figure("binary_mib", "release binary", f.binary_bytes as f64 / MIB, "MiB");
            phase.figure("binary_bytes", "release binary", f.binary_bytes as f64, "bytes");
            phase.figure(
                "probe_cpu_ms",
                "CPU per `probe --once` (process start included)",
                f.probe_cpu_ms,
                "ms",
            );
            phase.figure("probe_wall_ms", "wall time per `probe --once`", f.probe_wall_ms, "ms");
            phase.figure(
                "run_cpu_to_first_push_ms",
                "`run`: CPU from start to first push",
                f.run_cpu_to_first_push_ms,
                "ms",
            );
            phase.figure(
                "idle_rss_mib",
                "`run`: idle resident memory (VmRSS)",
                f.idle_rss_kib as f64 / 1024.0,
                "MiB",
            );
            phase.figure(
                "peak_rss_mib",
                "`run`: peak resident memory (VmHWM)",
                f.peak_rss_kib as f64 / 1024.0,
                "MiB",
            );
            phase.figure(
                "idle_cpu_ms",
                &format!("`run`: CPU while idle for {} s", f.idle_window.as_secs()),
                f.idle_cpu_ms,
                "ms",
            );
        }
        Err(e) => phase.error = Some(format!("{e:#}")),
    }
    phase
}
