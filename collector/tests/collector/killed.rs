//! The `wbd-collector` binary killed with SIGKILL while it spools, seals and pushes, and started
//! again, many times: every result that reached the spool reaches the server, in exactly one
//! batch, and a batch sealed before a kill is delivered under its id with its results.
//!
//! The server is a recording ingest receiver on loopback that stores batches by id (a push of a
//! known id with the same body is a retry, answered and not stored again). First it is
//! unreachable (an outage: results pile up in the spool, pushes fail); then it is back but holds
//! a push unanswered until the collector is killed in the middle of it, committing the batch
//! either before the kill (the answer is what gets lost) or not at all (the request is).
#![cfg(unix)]

use std::collections::{BTreeMap, BTreeSet};
use std::io::Read as _;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use flate2::read::GzDecoder;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpListener;
use uuid::Uuid;
use wbd_collector::enroll::{EnrollOptions, enroll};
use wbd_collector::fsutil::is_temp_name;
use wbd_wire::{ENROLL_PATH, INGEST_PATH, IngestBatch, ProbeOutput, ProbeResult};

use crate::helpers::*;

/// Script probes of the site: every start runs them all at once, so a start is a burst of
/// result writes, then sealing, then pushing.
const SCRIPTS: usize = 24;
/// Bytes of padding in each result: big enough that writing one takes the disk a moment.
const RESULT_PAD: usize = 48 * 1024;
/// Kills while the server is unreachable, then once it is back.
const OUTAGE_KILLS: u64 = 6;
const RECOVERY_KILLS: u64 = 9;
/// How long the receiver holds a push before it answers anyway.
const HOLD: Duration = Duration::from_secs(10);

/// A batch as the receiver stored it: result ids in order.
type StoredBatch = Vec<String>;

#[derive(Default)]
struct ReceiverState {
    down: bool,
    /// `Some(n)`: answer `n` more pushes at once, then hold the next one.
    hold_after: Option<u32>,
    /// Held pushes so far; even ones are committed before the hold, odd ones after it (only if
    /// the collector is still there to get the answer).
    held: u32,
    /// Held pushes whose collector hung up: (batch id, committed before the hang-up).
    hung_up: Vec<(Uuid, bool)>,
    stored: BTreeMap<Uuid, StoredBatch>,
    /// Batch ids pushed again with other results.
    conflicts: Vec<Uuid>,
    pushes: usize,
}

/// The server side: enrollment, and `POST /v1/ingest` storing batches by id.
#[derive(Clone)]
struct IngestReceiver {
    base_url: String,
    state: Arc<Mutex<ReceiverState>>,
}

impl IngestReceiver {
    async fn start() -> IngestReceiver {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let receiver = IngestReceiver {
            base_url: format!("http://127.0.0.1:{}", listener.local_addr().unwrap().port()),
            state: Arc::default(),
        };
        let handle = receiver.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(handle.clone().serve(stream));
            }
        });
        receiver
    }

    fn state(&self) -> std::sync::MutexGuard<'_, ReceiverState> {
        self.state.lock().unwrap()
    }

    fn set_down(&self, down: bool) {
        self.state().down = down;
    }

    fn hold_after(&self, answered_first: u32) {
        self.state().hold_after = Some(answered_first);
    }

    fn commit(&self, batch: &IngestBatch) {
        let ids: StoredBatch = batch.results.iter().map(result_id).collect();
        let mut state = self.state();
        match state.stored.get(&batch.batch_id) {
            Some(known) if *known != ids => state.conflicts.push(batch.batch_id),
            Some(_) => {}
            None => {
                state.stored.insert(batch.batch_id, ids);
            }
        }
    }

    async fn serve(self, mut stream: tokio::net::TcpStream) {
        let Some(request) = read_request(&mut stream).await else { return };
        if request.path == ENROLL_PATH {
            let body = serde_json::json!({
                "collector_id": Uuid::new_v4(), "tenant_id": Uuid::new_v4(), "push_interval_secs": 300
            });
            return answer(&mut stream, 201, &body).await;
        }
        assert_eq!(request.path, INGEST_PATH);
        let hold = {
            let mut state = self.state();
            if state.down {
                return; // dropped unanswered: the collector sees a network error
            }
            state.pushes += 1;
            match state.hold_after {
                Some(0) => {
                    state.hold_after = None;
                    state.held += 1;
                    Some(state.held.is_multiple_of(2))
                }
                Some(n) => {
                    state.hold_after = Some(n - 1);
                    None
                }
                None => None,
            }
        };
        let batch = decode(&request);
        let accepted = serde_json::json!({"batch_id": batch.batch_id, "accepted": batch.results.len()});
        let Some(commit_first) = hold else {
            self.commit(&batch);
            return answer(&mut stream, 202, &accepted).await;
        };
        if commit_first {
            self.commit(&batch);
        }
        let mut rest = [0u8; 64];
        let hung_up = tokio::select! {
            read = stream.read(&mut rest) => matches!(read, Ok(0) | Err(_)),
            () = tokio::time::sleep(HOLD) => false,
        };
        if hung_up {
            self.state().hung_up.push((batch.batch_id, commit_first));
            return;
        }
        if !commit_first {
            self.commit(&batch);
        }
        answer(&mut stream, 202, &accepted).await;
    }
}

async fn answer(stream: &mut tokio::net::TcpStream, status: u16, body: &serde_json::Value) {
    let body = body.to_string();
    let head = format!(
        "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    let _ = stream.write_all(head.as_bytes()).await;
    let _ = stream.write_all(body.as_bytes()).await;
    let _ = stream.shutdown().await;
}

fn decode(request: &Recorded) -> IngestBatch {
    let mut json = Vec::new();
    GzDecoder::new(request.body.as_slice()).read_to_end(&mut json).unwrap();
    serde_json::from_slice(&json).unwrap()
}

/// The id a script run printed: unique per run.
fn result_id(result: &ProbeResult) -> String {
    match &result.output {
        ProbeOutput::Script(s) => {
            s.value.as_ref().and_then(|v| v["id"].as_str()).expect("a script run with its id").to_owned()
        }
        other => panic!("only script probes run here, got {other:?}"),
    }
}

/// A site enrolled with the receiver, with [`SCRIPTS`] script probes that each print a random id
/// and a few KiB of padding.
struct KilledSite {
    dir: tempfile::TempDir,
    config: PathBuf,
}

impl KilledSite {
    async fn enrolled(receiver: &IngestReceiver) -> KilledSite {
        let dir = tempfile::tempdir().unwrap();
        enroll(EnrollOptions {
            server: receiver.base_url.clone(),
            token: "t".into(),
            state_dir: dir.path().join("state"),
            server_ca: Vec::new(),
            force: false,
            hostname: None,
        })
        .await
        .unwrap();
        let script = dir.path().join("run-id.sh");
        std::fs::write(
            &script,
            "#!/bin/sh\nid=$(od -An -N16 -tx1 /dev/urandom | tr -d ' \\n')\n\
             printf '{\"id\":\"%s\",\"pad\":\"%s\"}' \"$id\" \"$(head -c \"$1\" /dev/zero | tr '\\0' x)\"\n",
        )
        .unwrap();
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
        let mut config = String::from(
            "state_dir = \"state\"\nretry_base_ms = 10\nretry_cap_secs = 1\n\
             [probes.endpoint]\nenabled = false\n[probes.idle_connection]\nenabled = false\n\
             [probes.proxy]\nenabled = false\n",
        );
        for i in 0..SCRIPTS {
            config.push_str(&format!(
                "[[probes.script]]\nname = \"s{i:02}\"\nprogram = {:?}\nargs = [\"{RESULT_PAD}\"]\n",
                script.display().to_string()
            ));
        }
        let path = dir.path().join("collector.toml");
        std::fs::write(&path, config).unwrap();
        KilledSite { dir, config: path }
    }

    fn spool(&self) -> PathBuf {
        self.dir.path().join("state/spool")
    }

    fn collector(&self, args: &[&str], log: &str) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_wbd-collector"));
        cmd.args(args)
            .arg("--config")
            .arg(&self.config)
            .env_remove("RUST_LOG")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(self.dir.path().join(log)).unwrap());
        cmd
    }

    fn start(&self, n: u64) -> Child {
        self.collector(&["run"], &format!("run-{n}.log")).spawn().unwrap()
    }
}

/// What a kill left on disk.
#[derive(Debug, Default)]
struct Leftovers {
    /// Result ids in `results/`.
    results: BTreeSet<String>,
    /// Sealed batches in `batches/`: id → result ids.
    batches: BTreeMap<Uuid, StoredBatch>,
    /// Unfinished atomic writes (temporary files): the kill hit a write.
    temporaries: usize,
}

impl Leftovers {
    fn read(spool: &Path) -> Leftovers {
        let mut found = Leftovers::default();
        for (dir, is_batch) in [("results", false), ("batches", true)] {
            for entry in std::fs::read_dir(spool.join(dir)).into_iter().flatten() {
                let entry = entry.unwrap();
                let name = entry.file_name().to_string_lossy().into_owned();
                if is_temp_name(&name) {
                    found.temporaries += 1;
                    continue;
                }
                let bytes = std::fs::read(entry.path()).unwrap();
                if is_batch {
                    let batch: IngestBatch = serde_json::from_slice(&bytes).unwrap();
                    found.batches.insert(batch.batch_id, batch.results.iter().map(result_id).collect());
                } else {
                    let result: ProbeResult = serde_json::from_slice(&bytes).unwrap();
                    found.results.insert(result_id(&result));
                }
            }
        }
        found
    }

    /// Results both still spooled and in a sealed batch: the kill hit a sealing between writing
    /// the batch and removing its results.
    fn mid_seal(&self) -> bool {
        self.batches.values().flatten().any(|id| self.results.contains(id))
    }
}

/// Everything the kills left on disk, over the whole test.
#[derive(Default)]
struct Evidence {
    spooled: BTreeSet<String>,
    sealed: BTreeMap<Uuid, StoredBatch>,
    kills_mid_write: u32,
    kills_mid_seal: u32,
}

impl Evidence {
    fn record(&mut self, left: Leftovers) {
        self.kills_mid_write += u32::from(left.temporaries > 0);
        self.kills_mid_seal += u32::from(left.mid_seal());
        self.spooled.extend(left.results);
        self.spooled.extend(left.batches.values().flatten().cloned());
        for (id, results) in left.batches {
            let earlier = self.sealed.insert(id, results.clone());
            assert!(earlier.is_none_or(|e| e == results), "sealed batch {id} changed on disk");
        }
    }
}

fn kill(mut child: Child) {
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
}

/// Waits (bounded) until `done` holds; `false` if it never did.
async fn within(limit: Duration, done: impl Fn() -> bool) -> bool {
    let deadline = tokio::time::Instant::now() + limit;
    while !done() {
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    true
}

fn entries(dir: &Path) -> usize {
    std::fs::read_dir(dir).map(|d| d.count()).unwrap_or(0)
}

/// Unfinished atomic writes in `dir`.
fn temporaries(dir: &Path) -> usize {
    std::fs::read_dir(dir)
        .map(|d| d.flatten().filter(|e| is_temp_name(&e.file_name().to_string_lossy())).count())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_collector_killed_while_spooling_and_pushing_loses_and_duplicates_nothing() {
    init_test_log();
    let receiver = IngestReceiver::start().await;
    let site = KilledSite::enrolled(&receiver).await;
    let spool = site.spool();
    let mut evidence = Evidence::default();

    // An outage: each start writes a burst of results, seals what is pending (if no batch is
    // waiting already) and fails to push. Kills land at varying points after the start's first
    // result write.
    receiver.set_down(true);
    for n in 0..OUTAGE_KILLS {
        let before = entries(&spool.join("results"));
        let child = site.start(n);
        let wrote = within(Duration::from_secs(20), || entries(&spool.join("results")) > before).await;
        assert!(wrote, "start {n} spooled nothing");
        tokio::time::sleep(Duration::from_millis(n * 40)).await;
        kill(child);
        evidence.record(Leftovers::read(&spool));
    }
    assert!(receiver.state().stored.is_empty(), "nothing got through the outage");
    assert!(!evidence.spooled.is_empty());

    // The server is back. Each start pushes the waiting batches, seals its results and pushes
    // those; it is killed in the middle of its first push, of its second (the receiver holds
    // it), or of sealing (while a batch is being written, or just after).
    receiver.set_down(false);
    for n in 0..RECOVERY_KILLS {
        let hung_up = receiver.state().hung_up.len();
        let held_before = receiver.state().held;
        let kill_mid_push = n % 3 != 2;
        if kill_mid_push {
            receiver.hold_after(u32::try_from(n % 3).unwrap());
        }
        let child = site.start(OUTAGE_KILLS + n);
        if kill_mid_push {
            // There always is a first and a second push: the batch left by the previous kill,
            // then this start's results.
            let held = within(Duration::from_secs(20), || receiver.state().held > held_before).await;
            assert!(held, "start {n} made no push to hold");
        } else {
            // A disk so fast that no write is ever seen in progress gets a kill all the same.
            let _ = within(Duration::from_secs(10), || temporaries(&spool.join("batches")) > 0).await;
            tokio::time::sleep(Duration::from_millis(n)).await;
        }
        kill(child);
        if kill_mid_push {
            let seen = within(Duration::from_secs(5), || receiver.state().hung_up.len() > hung_up).await;
            assert!(seen, "the receiver did not see the killed collector hang up");
        }
        evidence.record(Leftovers::read(&spool));
    }

    // A last, undisturbed run: it probes once more and pushes until the spool is empty.
    receiver.state().hold_after = None;
    let out = tokio::task::spawn_blocking({
        let mut cmd = site.collector(&["run", "--once"], "last.log");
        move || cmd.status().unwrap()
    })
    .await
    .unwrap();
    let log = std::fs::read_to_string(site.dir.path().join("last.log")).unwrap_or_default();
    assert!(out.success(), "the last run failed ({out:?}):\n{log}");

    let state = receiver.state();
    eprintln!(
        "{} kills: {} hit an unfinished write, {} a sealing, {} a push ({} committed before the hang-up); \
         {} results spooled at a kill; {} pushes, {} batches stored",
        OUTAGE_KILLS + RECOVERY_KILLS,
        evidence.kills_mid_write,
        evidence.kills_mid_seal,
        state.hung_up.len(),
        state.hung_up.iter().filter(|(_, committed)| *committed).count(),
        evidence.spooled.len(),
        state.pushes,
        state.stored.len(),
    );
    // Kills did hit the spool while it wrote, and pushes, with both outcomes on the server's side.
    assert!(
        evidence.kills_mid_write + evidence.kills_mid_seal > 0,
        "no kill hit a spool write in progress: retune the kill points for this disk"
    );
    assert!(state.hung_up.iter().any(|(_, committed)| *committed), "{:?}", state.hung_up);
    assert!(state.hung_up.iter().any(|(_, committed)| !*committed), "{:?}", state.hung_up);

    assert!(state.conflicts.is_empty(), "batch ids pushed again with other results: {:?}", state.conflicts);
    let mut batches_of: BTreeMap<&str, Vec<Uuid>> = BTreeMap::new();
    for (batch_id, results) in &state.stored {
        for id in results {
            batches_of.entry(id.as_str()).or_default().push(*batch_id);
        }
    }
    let duplicated: Vec<_> = batches_of.iter().filter(|(_, batches)| batches.len() > 1).collect();
    assert!(duplicated.is_empty(), "results stored in more than one batch: {duplicated:?}");
    let lost: Vec<_> = evidence.spooled.iter().filter(|id| !batches_of.contains_key(id.as_str())).collect();
    assert!(lost.is_empty(), "{} spooled results never reached the server: {lost:?}", lost.len());
    for (batch_id, results) in &evidence.sealed {
        assert_eq!(
            state.stored.get(batch_id),
            Some(results),
            "sealed batch {batch_id} was not delivered as sealed"
        );
    }

    // The spool is empty, and no kill left a file it could not read.
    let left = Leftovers::read(&spool);
    assert!(left.results.is_empty() && left.batches.is_empty(), "{left:?}");
    for dir in ["corrupt", "rejected"] {
        assert_eq!(entries(&spool.join(dir)), 0, "spool/{dir} is not empty");
    }
}
