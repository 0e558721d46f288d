//! The durable, bounded on-disk spool between the probes and the server.
//!
//! ```text
//! <state_dir>/spool/
//!   state.json                        {"dropped": N}: results dropped by the size bound, ever
//!   results/<seq>-<uuid>.json         one ProbeResult each, not yet in a batch
//!   batches/<seq>-<batch_id>.json     a sealed wbd_wire::IngestBatch, waiting for a 202
//!   rejected/<seq>-<batch_id>.json    batches the server refused for good (+ .reason.txt)
//!   corrupt/<name>                    files that could not be parsed (+ .reason.txt)
//! ```
//!
//! Guarantees, and how they are kept:
//! - A result is on disk before anything is pushed: each is written atomically (tmp file,
//!   fsync, rename, fsync dir) as soon as its probe finishes.
//! - Sealing never loses nor duplicates results. A batch is written atomically *before* its
//!   result files are removed, and it is named after the sequence number of its newest result.
//!   Sequence numbers only grow and results are sealed oldest first, so on start-up every
//!   result file whose number is not above the newest batch's is known to be inside a batch
//!   already (a crash hit between the two steps) and is removed rather than sealed twice.
//! - A retry reuses the batch id, which lives in the sealed file; the server is idempotent by
//!   batch id. Batches are deleted only after the server accepted them.
//! - The spool is bounded: past `spool_max_bytes` the oldest data (sealed batches first, then
//!   results) is dropped, counted in `state.json`, and reported as `spool_dropped`. Sealing
//!   writes a batch before deleting its results, so it briefly needs one batch more on disk; that
//!   is why an outage seals only small probe batches ([`Spool::seal_probe`]).
//! - An unparseable file is moved to `corrupt/` and logged, never deleted; the spool carries on.

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use chrono::Utc;
use serde::{Deserialize, Serialize};
use uuid::Uuid;
use wbd_wire::{
    CollectorInfo, IngestBatch, MAX_BATCH_BYTES, MAX_RESULTS_PER_BATCH, ProbeResult, SCHEMA_VERSION,
};

use crate::fsutil::{self, FileAccess};

/// Sum of result sizes a batch may hold: a quarter of the server's limit, so that JSON
/// framing and collector info can never push a batch over it.
pub const BATCH_BYTE_BUDGET: u64 = (MAX_BATCH_BYTES / 4) as u64;

/// Limits of the small batch sealed during an outage (see [`Spool::seal_probe`]).
pub const PROBE_BATCH_RESULTS: usize = 16;
pub const PROBE_BATCH_BYTES: u64 = 64 * 1024;

const RESULTS_DIR: &str = "results";
const BATCHES_DIR: &str = "batches";
const REJECTED_DIR: &str = "rejected";
const CORRUPT_DIR: &str = "corrupt";
const STATE_FILE: &str = "state.json";

#[derive(Debug, thiserror::Error)]
pub enum SpoolError {
    #[error("the disk is full: cannot write {} (free some space; until then new results cannot be kept)", path.display())]
    DiskFull { path: PathBuf },
    #[error("spool I/O error on {}: {source}", path.display())]
    Io { path: PathBuf, source: io::Error },
    #[error("cannot serialise a spool record: {0}")]
    Encode(#[from] serde_json::Error),
    #[error("a spool operation was interrupted: {0}")]
    Interrupted(String),
}

fn io_error(path: &Path) -> impl FnOnce(io::Error) -> SpoolError + '_ {
    move |source| {
        if source.kind() == io::ErrorKind::StorageFull {
            SpoolError::DiskFull { path: path.to_owned() }
        } else {
            SpoolError::Io { path: path.to_owned(), source }
        }
    }
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct SpoolState {
    /// Results dropped because the spool reached its bound, since the spool was created.
    dropped: u64,
}

#[derive(Debug, Clone)]
struct SpoolFile {
    name: String,
    bytes: u64,
    /// How many results the file holds, when known without reading it.
    results: Option<u64>,
}

/// A sealed batch read back from the spool, ready to push.
#[derive(Debug, Clone)]
pub struct SealedBatch {
    /// Its position in the spool (the sequence number of its newest result).
    pub seq: u64,
    pub batch_id: Uuid,
    pub result_count: usize,
    /// The exact bytes that were sealed: a JSON `IngestBatch`.
    pub json: Vec<u8>,
}

/// The spool; one per state directory, used by one process at a time.
#[derive(Debug)]
pub struct Spool {
    root: PathBuf,
    max_bytes: u64,
    results: BTreeMap<u64, SpoolFile>,
    batches: BTreeMap<u64, SpoolFile>,
    total_bytes: u64,
    next_seq: u64,
    state: SpoolState,
}

impl Spool {
    /// Opens (creating if needed) the spool under `root`, recovering from any interrupted
    /// sealing and enforcing the bound.
    pub fn open(root: impl Into<PathBuf>, max_bytes: u64) -> Result<Spool, SpoolError> {
        let root = root.into();
        for dir in [RESULTS_DIR, BATCHES_DIR, REJECTED_DIR, CORRUPT_DIR] {
            let path = root.join(dir);
            fs::create_dir_all(&path).map_err(io_error(&path))?;
        }
        let mut spool = Spool {
            root,
            max_bytes,
            results: BTreeMap::new(),
            batches: BTreeMap::new(),
            total_bytes: 0,
            next_seq: 1,
            state: SpoolState::default(),
        };
        spool.load_state()?;
        spool.results = spool.scan(RESULTS_DIR)?;
        spool.batches = spool.scan(BATCHES_DIR)?;
        spool.total_bytes = spool.results.values().chain(spool.batches.values()).map(|f| f.bytes).sum();
        spool.forget_results_already_sealed()?;
        spool.next_seq =
            spool.results.keys().chain(spool.batches.keys()).max().map_or(1, |max| max.saturating_add(1));
        spool.enforce_bound()?;
        tracing::debug!(
            results = spool.results.len(),
            batches = spool.batches.len(),
            bytes = spool.total_bytes,
            dropped = spool.state.dropped,
            "spool opened"
        );
        Ok(spool)
    }

    /// Writes one probe result durably.
    pub fn append(&mut self, result: &ProbeResult) -> Result<(), SpoolError> {
        let json = serde_json::to_vec(result)?;
        let seq = self.next_seq;
        let name = format!("{seq:020}-{}.json", Uuid::new_v4());
        let path = self.dir(RESULTS_DIR).join(&name);
        fsutil::write_atomic(&path, &json, FileAccess::Default).map_err(io_error(&path))?;
        self.next_seq += 1;
        let bytes = json.len() as u64;
        self.total_bytes += bytes;
        self.results.insert(seq, SpoolFile { name, bytes, results: Some(1) });
        self.enforce_bound()
    }

    /// Seals every pending result into batches (oldest first, within the server's limits);
    /// returns how many batches were sealed. `collector.spool_dropped` is filled in here.
    pub fn seal(&mut self, collector: &CollectorInfo) -> Result<usize, SpoolError> {
        self.seal_limited(collector, usize::MAX, MAX_RESULTS_PER_BATCH, BATCH_BYTE_BUDGET)
    }

    /// Seals one small batch of the oldest results ([`PROBE_BATCH_RESULTS`], at most
    /// [`PROBE_BATCH_BYTES`]): what a push sends to find out whether the server is back during an
    /// outage. Sealing everything then would put the whole backlog into batches that the size
    /// bound could only drop whole, and would briefly need twice its size on disk.
    pub fn seal_probe(&mut self, collector: &CollectorInfo) -> Result<usize, SpoolError> {
        self.seal_limited(collector, 1, PROBE_BATCH_RESULTS, PROBE_BATCH_BYTES)
    }

    fn seal_limited(
        &mut self,
        collector: &CollectorInfo,
        max_batches: usize,
        max_results: usize,
        max_bytes: u64,
    ) -> Result<usize, SpoolError> {
        let mut sealed = 0;
        while !self.results.is_empty() && sealed < max_batches {
            let chunk = self.next_chunk(max_results, max_bytes)?;
            let Some(&(last_seq, _)) = chunk.last() else {
                continue; // everything looked at was quarantined or gone; look again
            };
            let batch = IngestBatch {
                schema_version: SCHEMA_VERSION,
                // Random (v4), because the push derives its W3C trace id from it.
                batch_id: Uuid::new_v4(),
                sent_at: Utc::now(),
                collector: CollectorInfo { spool_dropped: self.state.dropped, ..collector.clone() },
                results: chunk.iter().map(|(_, r)| r.clone()).collect(),
            };
            let json = serde_json::to_vec(&batch)?;
            let name = format!("{last_seq:020}-{}.json", batch.batch_id);
            let path = self.dir(BATCHES_DIR).join(&name);
            fsutil::write_atomic(&path, &json, FileAccess::Default).map_err(io_error(&path))?;
            let bytes = json.len() as u64;
            self.total_bytes += bytes;
            self.batches.insert(last_seq, SpoolFile { name, bytes, results: Some(chunk.len() as u64) });
            // Only now that the batch is durable may its results go.
            for (seq, _) in &chunk {
                self.remove_result_file(*seq)?;
            }
            let results_dir = self.dir(RESULTS_DIR);
            fsutil::sync_dir(&results_dir).map_err(io_error(&results_dir))?;
            tracing::debug!(batch_id = %batch.batch_id, results = chunk.len(), "sealed a batch");
            sealed += 1;
        }
        self.enforce_bound()?;
        Ok(sealed)
    }

    /// The oldest sealed batch, or `None` when there is nothing to push. Unparseable batch
    /// files met on the way are quarantined.
    pub fn oldest_batch(&mut self) -> Result<Option<SealedBatch>, SpoolError> {
        while let Some((&seq, file)) = self.batches.first_key_value() {
            let path = self.dir(BATCHES_DIR).join(&file.name);
            let json = match fs::read(&path) {
                Ok(json) => json,
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    tracing::warn!(path = %path.display(), "a sealed batch disappeared from the spool");
                    self.forget_batch(seq);
                    continue;
                }
                Err(e) => return Err(io_error(&path)(e)),
            };
            match serde_json::from_slice::<IngestBatch>(&json) {
                Ok(batch) => {
                    return Ok(Some(SealedBatch {
                        seq,
                        batch_id: batch.batch_id,
                        result_count: batch.results.len(),
                        json,
                    }));
                }
                Err(e) => {
                    self.forget_batch(seq);
                    self.quarantine(BATCHES_DIR, &path, &format!("not a valid IngestBatch: {e}"))?;
                }
            }
        }
        Ok(None)
    }

    /// The server accepted the batch: delete it.
    pub fn delivered(&mut self, seq: u64) -> Result<(), SpoolError> {
        let Some(file) = self.forget_batch(seq) else { return Ok(()) };
        let path = self.dir(BATCHES_DIR).join(&file.name);
        remove_if_present(&path)?;
        let dir = self.dir(BATCHES_DIR);
        fsutil::sync_dir(&dir).map_err(io_error(&dir))
    }

    /// The server refused the batch for good: move it to `rejected/` with the reason beside it.
    pub fn reject(&mut self, seq: u64, reason: &str) -> Result<(), SpoolError> {
        let Some(file) = self.forget_batch(seq) else { return Ok(()) };
        let from = self.dir(BATCHES_DIR).join(&file.name);
        let to = unique_destination(&self.dir(REJECTED_DIR), &file.name);
        move_with_reason(&from, &to, reason)
    }

    /// Results not yet sealed.
    pub fn pending_results(&self) -> usize {
        self.results.len()
    }

    /// Sealed batches not yet delivered.
    pub fn pending_batches(&self) -> usize {
        self.batches.len()
    }

    /// Results dropped by the size bound since the spool was created.
    pub fn dropped(&self) -> u64 {
        self.state.dropped
    }

    /// Bytes held by pending results and batches (what the bound applies to).
    pub fn total_bytes(&self) -> u64 {
        self.total_bytes
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn rejected_dir(&self) -> PathBuf {
        self.dir(REJECTED_DIR)
    }

    pub fn corrupt_dir(&self) -> PathBuf {
        self.dir(CORRUPT_DIR)
    }

    fn dir(&self, name: &str) -> PathBuf {
        self.root.join(name)
    }

    fn load_state(&mut self) -> Result<(), SpoolError> {
        let path = self.root.join(STATE_FILE);
        let Some(bytes) = fsutil::read_optional(&path).map_err(io_error(&path))? else {
            return Ok(());
        };
        match serde_json::from_slice::<SpoolState>(&bytes) {
            Ok(state) => self.state = state,
            Err(e) => {
                // The counter restarts from zero; the damaged file is kept for inspection.
                self.quarantine("", &path, &format!("spool state is damaged, drop counter reset: {e}"))?;
            }
        }
        Ok(())
    }

    fn save_state(&self) -> Result<(), SpoolError> {
        let path = self.root.join(STATE_FILE);
        let json = serde_json::to_vec(&self.state)?;
        fsutil::write_atomic(&path, &json, FileAccess::Default).map_err(io_error(&path))
    }

    /// Lists `<seq>-<uuid>.json` files in a spool directory. Leftover temporary files are
    /// unfinished writes from a crash (never acknowledged to anyone) and are removed; files
    /// with any other name are quarantined.
    fn scan(&self, dir_name: &str) -> Result<BTreeMap<u64, SpoolFile>, SpoolError> {
        let dir = self.dir(dir_name);
        let mut files = BTreeMap::new();
        for entry in fs::read_dir(&dir).map_err(io_error(&dir))? {
            let entry = entry.map_err(io_error(&dir))?;
            let path = entry.path();
            let meta = entry.metadata().map_err(io_error(&path))?;
            if !meta.is_file() {
                continue;
            }
            let name = entry.file_name().to_string_lossy().into_owned();
            if fsutil::is_temp_name(&name) {
                tracing::info!(path = %path.display(), "removing an unfinished spool write left by a crash");
                remove_if_present(&path)?;
                continue;
            }
            match parse_spool_name(&name) {
                Some(seq) if !files.contains_key(&seq) => {
                    files.insert(seq, SpoolFile { name, bytes: meta.len(), results: None });
                }
                _ => self.quarantine(dir_name, &path, "unexpected file name in the spool")?,
            }
        }
        Ok(files)
    }

    fn forget_results_already_sealed(&mut self) -> Result<(), SpoolError> {
        let Some(&newest_batch) = self.batches.keys().next_back() else { return Ok(()) };
        let sealed: Vec<u64> = self.results.range(..=newest_batch).map(|(seq, _)| *seq).collect();
        if sealed.is_empty() {
            return Ok(());
        }
        tracing::info!(
            results = sealed.len(),
            "removing result files already sealed into a batch before an interruption"
        );
        for seq in sealed {
            self.remove_result_file(seq)?;
        }
        let dir = self.dir(RESULTS_DIR);
        fsutil::sync_dir(&dir).map_err(io_error(&dir))
    }

    /// The next run of results to seal, oldest first, within the batch limits. Always takes
    /// the oldest result out of `self.results` one way or another, so a caller looping until
    /// the map is empty terminates.
    fn next_chunk(
        &mut self,
        max_results: usize,
        max_bytes: u64,
    ) -> Result<Vec<(u64, ProbeResult)>, SpoolError> {
        let mut chunk = Vec::new();
        let mut bytes = 0u64;
        let seqs: Vec<(u64, SpoolFile)> =
            self.results.iter().take(max_results).map(|(s, f)| (*s, f.clone())).collect();
        for (seq, file) in seqs {
            if !chunk.is_empty() && bytes + file.bytes > max_bytes {
                break;
            }
            let path = self.dir(RESULTS_DIR).join(&file.name);
            let json = match fs::read(&path) {
                Ok(json) => json,
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    tracing::warn!(path = %path.display(), "a spooled result disappeared");
                    self.forget_result(seq);
                    continue;
                }
                Err(e) => return Err(io_error(&path)(e)),
            };
            match serde_json::from_slice::<ProbeResult>(&json) {
                Ok(result) => {
                    bytes += file.bytes;
                    chunk.push((seq, result));
                }
                Err(e) => {
                    self.forget_result(seq);
                    self.quarantine(RESULTS_DIR, &path, &format!("not a valid ProbeResult: {e}"))?;
                }
            }
        }
        Ok(chunk)
    }

    fn remove_result_file(&mut self, seq: u64) -> Result<(), SpoolError> {
        if let Some(file) = self.forget_result(seq) {
            remove_if_present(&self.dir(RESULTS_DIR).join(&file.name))?;
        }
        Ok(())
    }

    fn forget_result(&mut self, seq: u64) -> Option<SpoolFile> {
        let file = self.results.remove(&seq)?;
        self.total_bytes = self.total_bytes.saturating_sub(file.bytes);
        Some(file)
    }

    fn forget_batch(&mut self, seq: u64) -> Option<SpoolFile> {
        let file = self.batches.remove(&seq)?;
        self.total_bytes = self.total_bytes.saturating_sub(file.bytes);
        Some(file)
    }

    /// Drops the oldest data until the spool is within its bound. Sealed batches are always
    /// older than unsealed results (sealing takes the oldest results), so they go first.
    fn enforce_bound(&mut self) -> Result<(), SpoolError> {
        while self.total_bytes > self.max_bytes {
            let (dir_name, seq, file) = if let Some((&seq, _)) = self.batches.first_key_value() {
                let Some(file) = self.forget_batch(seq) else { break };
                (BATCHES_DIR, seq, file)
            } else if let Some((&seq, _)) = self.results.first_key_value() {
                let Some(file) = self.forget_result(seq) else { break };
                (RESULTS_DIR, seq, file)
            } else {
                break;
            };
            let path = self.dir(dir_name).join(&file.name);
            let count = match file.results {
                Some(count) => count,
                None => match count_batch_results(&path) {
                    Ok(count) => count,
                    Err(reason) => {
                        // Unreadable: not ours to delete silently. Quarantine takes it out of
                        // the bound all the same.
                        self.quarantine(dir_name, &path, &reason)?;
                        continue;
                    }
                },
            };
            self.state.dropped += count;
            // The counter is saved before the data goes, so a crash can at worst over-report
            // a loss, never hide one.
            if let Err(e) = self.save_state() {
                tracing::error!(error = %e, "could not save the spool's drop counter");
            }
            remove_if_present(&path)?;
            tracing::warn!(
                seq,
                results = count,
                dropped_total = self.state.dropped,
                max_bytes = self.max_bytes,
                "spool is over its size bound (spool_max_bytes): dropped the oldest {}",
                if dir_name == BATCHES_DIR { "sealed batch" } else { "result" }
            );
        }
        Ok(())
    }

    /// Moves an unparseable file to `corrupt/`, with the reason beside it, and logs it.
    fn quarantine(&self, from_dir: &str, path: &Path, reason: &str) -> Result<(), SpoolError> {
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let prefixed = if from_dir.is_empty() { name } else { format!("{from_dir}-{name}") };
        let to = unique_destination(&self.dir(CORRUPT_DIR), &prefixed);
        tracing::error!(
            file = %path.display(),
            moved_to = %to.display(),
            reason,
            "quarantined a damaged spool file"
        );
        move_with_reason(path, &to, reason)
    }
}

/// A spool shared by the tasks of the run loop. Spool work is blocking file I/O with fsyncs, so
/// it runs on tokio's blocking pool rather than on the async workers.
#[derive(Debug, Clone)]
pub struct SharedSpool(Arc<Mutex<Spool>>);

impl SharedSpool {
    pub fn new(spool: Spool) -> Self {
        SharedSpool(Arc::new(Mutex::new(spool)))
    }

    /// Runs `f` on the spool on the blocking pool.
    pub async fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Spool) -> Result<T, SpoolError> + Send + 'static,
    ) -> Result<T, SpoolError> {
        let inner = Arc::clone(&self.0);
        let task = tokio::task::spawn_blocking(move || {
            // A panic in an earlier operation leaves the files consistent (every change is an
            // atomic rename), so the spool stays usable after a poisoned lock.
            let mut spool = inner.lock().unwrap_or_else(PoisonError::into_inner);
            f(&mut spool)
        });
        // A panic in spool code is a bug, but it must not take the collector down: it is
        // reported as an error like any other failed spool operation.
        task.await.unwrap_or_else(|e| Err(SpoolError::Interrupted(e.to_string())))
    }
}

/// `<seq>-<uuid>.json` → `seq`.
fn parse_spool_name(name: &str) -> Option<u64> {
    let stem = name.strip_suffix(".json")?;
    let (seq, id) = stem.split_once('-')?;
    if seq.is_empty() || !seq.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Uuid::parse_str(id).ok()?;
    seq.parse().ok()
}

fn count_batch_results(path: &Path) -> Result<u64, String> {
    let bytes = fs::read(path).map_err(|e| format!("unreadable: {e}"))?;
    let batch: IngestBatch =
        serde_json::from_slice(&bytes).map_err(|e| format!("not a valid IngestBatch: {e}"))?;
    Ok(batch.results.len() as u64)
}

fn remove_if_present(path: &Path) -> Result<(), SpoolError> {
    match fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io_error(path)(e)),
    }
}

fn unique_destination(dir: &Path, name: &str) -> PathBuf {
    let candidate = dir.join(name);
    if candidate.exists() { dir.join(format!("{name}.{}", Uuid::new_v4())) } else { candidate }
}

fn move_with_reason(from: &Path, to: &Path, reason: &str) -> Result<(), SpoolError> {
    fs::rename(from, to).map_err(io_error(from))?;
    let mut reason_path = to.as_os_str().to_owned();
    reason_path.push(".reason.txt");
    let reason_path = PathBuf::from(reason_path);
    let text = format!("{}\n{reason}\n", Utc::now().to_rfc3339());
    fsutil::write_atomic(&reason_path, text.as_bytes(), FileAccess::Default)
        .map_err(io_error(&reason_path))?;
    if let Some(dir) = from.parent() {
        fsutil::sync_dir(dir).map_err(io_error(dir))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_disk_is_reported_as_such() {
        let e = io_error(Path::new("spool/results/x.json"))(io::Error::from(io::ErrorKind::StorageFull));
        assert!(matches!(e, SpoolError::DiskFull { .. }));
        assert!(e.to_string().starts_with("the disk is full: cannot write spool/results/x.json"), "{e}");
    }

    #[test]
    fn spool_names_parse_only_in_the_expected_form() {
        let id = Uuid::new_v4();
        assert_eq!(parse_spool_name(&format!("{:020}-{id}.json", 42)), Some(42));
        assert_eq!(parse_spool_name(&format!("x-{id}.json")), None);
        assert_eq!(parse_spool_name("00000000000000000001-nope.json"), None);
        assert_eq!(parse_spool_name(&format!("1-{id}.txt")), None);
    }
}
