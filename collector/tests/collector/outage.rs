//! A 72-hour server outage, time-compressed: the collector keeps probing every "15 minutes"
//! (25 ms here) while the server drops every connection, the spool stays within its bound, and
//! when the server comes back answering 429 with `Retry-After`, the backlog drains in few large
//! batches at the pace the server asks for. Also: the server's commands steer the loop.
#![cfg(unix)]

use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::{Duration, Instant};

use flate2::read::GzDecoder;
use tokio::sync::watch;
use uuid::Uuid;
use wbd_collector::config::{Schedule, Settings};
use wbd_collector::run::Collector;
use wbd_collector::spool::{PROBE_BATCH_BYTES, Spool};
use wbd_wire::{
    CollectorInfo, IngestBatch, MAX_BATCH_BYTES, MAX_RESULTS_PER_BATCH, ProbeOutput, ProbeResult,
};

use crate::helpers::*;
use crate::push::decode_batch;
use crate::run::Site;

/// 72 hours of 15-minute probe cycles.
const CYCLES: u64 = 72 * 4;
const CYCLE: Duration = Duration::from_millis(25);

/// A script probe that counts its runs and prints `{"n": <run>, "pad": "<pad>"}`.
fn counting_script(dir: &Path) -> std::path::PathBuf {
    let path = dir.join("tick.sh");
    std::fs::write(
        &path,
        "#!/bin/sh\nn=$(( $(cat \"$1\" 2>/dev/null || echo 0) + 1 ))\necho \"$n\" > \"$1\"\nprintf '{\"n\":%d,\"pad\":\"%s\"}' \"$n\" \"$2\"\n",
    )
    .unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

fn runs(counter: &Path) -> u64 {
    std::fs::read_to_string(counter).ok().and_then(|s| s.trim().parse().ok()).unwrap_or(0)
}

fn n_of(result: &ProbeResult) -> u64 {
    match &result.output {
        ProbeOutput::Script(s) => s.value.as_ref().and_then(|v| v["n"].as_u64()).expect("a counted run"),
        other => panic!("script result expected, got {other:?}"),
    }
}

/// Bytes the spool holds (pending results and sealed batches).
fn spool_bytes(spool: &Path) -> u64 {
    ["results", "batches"]
        .iter()
        .flat_map(|d| std::fs::read_dir(spool.join(d)).into_iter().flatten().flatten())
        .filter_map(|e| e.metadata().ok())
        .map(|m| m.len())
        .sum()
}

struct Outcome {
    produced: u64,
    /// Run number → how many distinct delivered batches carried it.
    delivered: BTreeMap<u64, u32>,
    /// Runs still in the spool after shutdown.
    remaining: BTreeSet<u64>,
    dropped: u64,
    reported_dropped: u64,
    largest_spool: u64,
    one_result: u64,
    recovered_requests: Vec<Recorded>,
}

async fn outage(spool_max_bytes: u64, pad: usize) -> Outcome {
    let server = MockServer::start(Reply::new(202)).await;
    let site = Site::enrolled_with(&server).await;
    let counter = site.dir.path().join("runs");
    let script = counting_script(site.dir.path());
    let mut config = std::fs::read_to_string(&site.config).unwrap();
    config.push_str(&format!(
        "\n[[probes.script]]\nname = \"tick\"\nprogram = {:?}\nargs = [{:?}, \"{}\"]\n",
        script.display().to_string(),
        counter.display().to_string(),
        "x".repeat(pad)
    ));
    std::fs::write(&site.config, config).unwrap();
    let mut settings: Settings = site.settings();
    settings.probes.endpoint.enabled = false;
    settings.probes.scripts[0].schedule = Schedule { enabled: true, interval: CYCLE, jitter_percent: 0 };
    settings.spool_max_bytes = spool_max_bytes;
    settings.retry_base = Duration::from_millis(10);
    settings.retry_cap = Duration::from_millis(200);
    let spool_dir = settings.state_dir.join("spool");

    server.set_down(true);
    let (tx, rx) = watch::channel(false);
    let running = tokio::spawn(Collector::start(settings).unwrap().run(rx));

    // The outage: the collector probes on, pushes fail, the spool fills up to its bound.
    let mut largest_spool = 0;
    let deadline = Instant::now() + Duration::from_secs(120);
    while runs(&counter) < CYCLES {
        assert!(Instant::now() < deadline, "only {} runs in 120 s", runs(&counter));
        largest_spool = largest_spool.max(spool_bytes(&spool_dir));
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let produced_in_outage = runs(&counter);
    assert!(ingest(&server).is_empty(), "nothing got through while the server was down");

    // The server is back but overloaded: 429 twice, then it takes everything.
    server.script([
        Reply::problem(429, "Too Many Requests", "ingest is busy", "rate_limited").header("Retry-After", "1"),
        Reply::problem(429, "Too Many Requests", "ingest is busy", "rate_limited").header("Retry-After", "1"),
    ]);
    server.set_down(false);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let pushes = ingest(&server);
        let newest = pushes.iter().skip(2).flat_map(|r| decode_batch(r).results).map(|r| n_of(&r)).max();
        if newest.is_some_and(|n| n >= produced_in_outage) {
            break;
        }
        assert!(Instant::now() < deadline, "the backlog was not delivered within 60 s");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tx.send(true).unwrap();
    tokio::time::timeout(Duration::from_secs(30), running).await.expect("the loop stops").unwrap();
    let produced = runs(&counter);

    let pushes = ingest(&server);
    let mut delivered = BTreeMap::new();
    let mut seen_batches = BTreeSet::new();
    let mut reported_dropped = 0;
    for request in pushes.iter().skip(2) {
        let batch = decode_batch(request);
        reported_dropped = reported_dropped.max(batch.collector.spool_dropped);
        if seen_batches.insert(batch.batch_id) {
            for r in &batch.results {
                *delivered.entry(n_of(r)).or_insert(0) += 1;
            }
        }
    }
    // What is left in the spool after shutdown: seal it and read it back.
    let mut spool = Spool::open(&spool_dir, spool_max_bytes).unwrap();
    let info = CollectorInfo {
        version: "t".into(),
        hostname: "h".into(),
        os: "o".into(),
        push_interval_secs: 10,
        spool_dropped: 0,
    };
    spool.seal(&info).unwrap();
    let mut remaining = BTreeSet::new();
    while let Some(batch) = spool.oldest_batch().unwrap() {
        let decoded: IngestBatch = serde_json::from_slice(&batch.json).unwrap();
        remaining.extend(decoded.results.iter().map(n_of));
        spool.delivered(batch.seq).unwrap();
    }
    let one_result = u64::try_from(pad).unwrap() + 400;
    Outcome {
        produced,
        delivered,
        remaining,
        dropped: spool.dropped(),
        reported_dropped,
        largest_spool,
        one_result,
        recovered_requests: pushes,
    }
}

fn ingest(server: &MockServer) -> Vec<Recorded> {
    server.requests().into_iter().filter(|r| r.path == wbd_wire::INGEST_PATH).collect()
}

/// The drain obeyed the server: it waited out each `Retry-After`, then sent few, bounded batches.
fn assert_polite_drain(o: &Outcome) {
    let r = &o.recovered_requests;
    assert!(r.len() >= 3, "{} requests", r.len());
    for pair in r[..3].windows(2) {
        assert!(
            pair[1].at.duration_since(pair[0].at) >= Duration::from_millis(950),
            "Retry-After: 1 was not honoured"
        );
    }
    for request in r {
        let mut json = Vec::new();
        GzDecoder::new(request.body.as_slice()).read_to_end(&mut json).unwrap();
        assert!(json.len() <= MAX_BATCH_BYTES, "a batch of {} bytes", json.len());
        assert!(decode_batch(request).results.len() <= MAX_RESULTS_PER_BATCH);
    }
    // Hundreds of results, produced one per cycle, go out in a handful of requests (the backlog
    // in one or two, then whatever the last cycles produced), not one request per cycle.
    let delivered_batches = r.len() - 2;
    assert!(
        delivered_batches <= 10,
        "{delivered_batches} batches for {} results: the backlog went out in small pieces",
        o.delivered.len()
    );
}

#[tokio::test]
async fn a_72_hour_outage_within_the_spool_bound_loses_nothing() {
    init_test_log();
    let o = outage(64 * 1024 * 1024, 16).await;

    assert!(o.produced >= CYCLES);
    assert_eq!((o.dropped, o.reported_dropped), (0, 0));
    let all: BTreeSet<u64> = o.delivered.keys().copied().chain(o.remaining.iter().copied()).collect();
    assert_eq!(all, (1..=o.produced).collect::<BTreeSet<u64>>(), "every run is delivered or still spooled");
    assert!(o.delivered.values().all(|&times| times == 1), "no run is in two batches");
    assert!(o.remaining.iter().all(|n| !o.delivered.contains_key(n)));
    // Within the bound, the throttled batch is the one delivered next, with the same id.
    let r = &o.recovered_requests;
    assert_eq!(decode_batch(&r[0]).batch_id, decode_batch(&r[2]).batch_id);
    assert_polite_drain(&o);
}

#[tokio::test]
async fn past_the_bound_the_oldest_results_go_first_and_are_counted() {
    // About 6 KiB per result: 288 of them are well over the 1 MiB bound.
    let o = outage(1024 * 1024, 6 * 1024).await;

    // Within the bound, give or take the one result being written and the small probe batch
    // being sealed (written before its results are deleted).
    let slack = PROBE_BATCH_BYTES + o.one_result;
    assert!(o.largest_spool <= 1024 * 1024 + slack, "the spool grew to {} bytes", o.largest_spool);
    assert!(o.dropped > 0, "nothing was dropped");
    assert_eq!(o.reported_dropped, o.dropped, "the server is told how many were dropped");
    let all: BTreeSet<u64> = o.delivered.keys().copied().chain(o.remaining.iter().copied()).collect();
    assert_eq!(
        all,
        (o.dropped + 1..=o.produced).collect::<BTreeSet<u64>>(),
        "exactly the oldest {} runs are missing",
        o.dropped
    );
    assert_polite_drain(&o);
}

#[tokio::test]
async fn the_server_can_ask_for_a_re_test_once() {
    let server = MockServer::start(Reply::new(202)).await;
    let site = Site::enrolled_with(&server).await;
    let counter = site.dir.path().join("runs");
    let script = counting_script(site.dir.path());
    let mut config = std::fs::read_to_string(&site.config).unwrap();
    config.push_str(&format!(
        "\n[[probes.script]]\nname = \"tick\"\nprogram = {:?}\nargs = [{:?}, \"\"]\ninterval_secs = 3600\n",
        script.display().to_string(),
        counter.display().to_string()
    ));
    std::fs::write(&site.config, config).unwrap();
    let mut settings = site.settings();
    settings.probes.endpoint.enabled = false;
    let command_id = Uuid::new_v4();
    let accepted = |id: Uuid| {
        Reply::json(
            202,
            serde_json::json!({"batch_id": Uuid::nil(), "accepted": 1, "commands": [
                {"id": id, "command": "run_probes", "probes": ["script"], "reason": "technician asked"},
                {"id": Uuid::new_v4(), "command": "upgrade_yourself", "url": "https://example.invalid"}
            ]})
            .to_string(),
        )
    };
    // The same command twice (a server repeating itself), then plain answers.
    server.script([accepted(command_id), accepted(command_id)]);
    let (tx, rx) = watch::channel(false);
    let running = tokio::spawn(Collector::start(settings).unwrap().run(rx));

    let pushes = async {
        loop {
            if ingest(&server).len() >= 2 && runs(&counter) >= 2 {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(20), pushes).await.expect("the re-test ran and was pushed");
    // Give a wrongly repeated re-test the time to happen.
    tokio::time::sleep(Duration::from_millis(500)).await;
    tx.send(true).unwrap();
    tokio::time::timeout(Duration::from_secs(20), running).await.expect("the loop stops").unwrap();

    assert_eq!(runs(&counter), 2, "one scheduled run and one re-test; the repeated command is ignored");
    let delivered: Vec<u64> =
        ingest(&server).iter().flat_map(|r| decode_batch(r).results).map(|r| n_of(&r)).collect();
    assert_eq!(delivered, vec![1, 2]);
}
