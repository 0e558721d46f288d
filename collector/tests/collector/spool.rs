//! The spool's durability guarantees, exercised through restarts (a new `Spool` on the same
//! directory) and damaged files.

use std::fs;
use std::path::Path;

use wbd_collector::spool::Spool;
use wbd_wire::{CollectorInfo, IngestBatch, SCHEMA_VERSION};

use crate::helpers::*;

const BIG: u64 = 64 * 1024 * 1024;

fn info() -> CollectorInfo {
    CollectorInfo {
        version: "test".into(),
        hostname: "site-a".into(),
        os: "linux".into(),
        push_interval_secs: 300,
        spool_dropped: 0,
    }
}

fn files_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> =
        fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    names.sort();
    names
}

/// A result of about 2 KiB, so that JSON framing is small next to it.
fn padded_result(subject: &str) -> wbd_wire::ProbeResult {
    let mut result = sample_result(subject);
    let wbd_wire::ProbeOutput::Endpoint(report) = &mut result.output else {
        unreachable!("sample results are endpoint results")
    };
    report.host = "h".repeat(2000);
    result
}

fn batch_of(json: &[u8]) -> IngestBatch {
    serde_json::from_slice(json).unwrap()
}

fn subjects(batch: &IngestBatch) -> Vec<String> {
    batch.results.iter().map(|r| r.subject.clone()).collect()
}

#[test]
fn results_survive_a_restart_and_are_sealed_in_order() {
    let dir = tempfile::tempdir().unwrap();
    {
        let mut spool = Spool::open(dir.path(), BIG).unwrap();
        for s in ["a:443", "b:443", "c:443"] {
            spool.append(&sample_result(s)).unwrap();
        }
    }
    let mut spool = Spool::open(dir.path(), BIG).unwrap();
    assert_eq!(spool.pending_results(), 3);
    assert_eq!(spool.seal(&info()).unwrap(), 1);
    assert_eq!(spool.pending_results(), 0);
    let sealed = spool.oldest_batch().unwrap().unwrap();
    let batch = batch_of(&sealed.json);
    assert_eq!(batch.schema_version, SCHEMA_VERSION);
    assert_eq!(batch.batch_id, sealed.batch_id);
    assert_eq!(batch.collector.hostname, "site-a");
    assert_eq!(subjects(&batch), ["a:443", "b:443", "c:443"]);
    assert!(files_in(&dir.path().join("results")).is_empty());
    let batch_files = files_in(&dir.path().join("batches"));
    assert_eq!(batch_files.len(), 1);
    assert!(batch_files[0].ends_with(&format!("-{}.json", sealed.batch_id)), "{batch_files:?}");
}

#[test]
fn a_sealed_batch_keeps_its_id_across_restarts_until_delivered() {
    let dir = tempfile::tempdir().unwrap();
    let first_id = {
        let mut spool = Spool::open(dir.path(), BIG).unwrap();
        spool.append(&sample_result("a:443")).unwrap();
        spool.seal(&info()).unwrap();
        spool.oldest_batch().unwrap().unwrap().batch_id
    };
    let mut spool = Spool::open(dir.path(), BIG).unwrap();
    // Sealing again with nothing new pending must not make a second batch.
    assert_eq!(spool.seal(&info()).unwrap(), 0);
    let again = spool.oldest_batch().unwrap().unwrap();
    assert_eq!(again.batch_id, first_id);
    spool.delivered(again.seq).unwrap();
    assert!(spool.oldest_batch().unwrap().is_none());
    drop(spool);
    assert!(Spool::open(dir.path(), BIG).unwrap().oldest_batch().unwrap().is_none());
}

#[test]
fn a_crash_between_sealing_and_cleanup_neither_loses_nor_duplicates() {
    let dir = tempfile::tempdir().unwrap();
    let results_dir = dir.path().join("results");
    let saved = tempfile::tempdir().unwrap();
    let first_id = {
        let mut spool = Spool::open(dir.path(), BIG).unwrap();
        spool.append(&sample_result("a:443")).unwrap();
        spool.append(&sample_result("b:443")).unwrap();
        for name in files_in(&results_dir) {
            fs::copy(results_dir.join(&name), saved.path().join(&name)).unwrap();
        }
        spool.seal(&info()).unwrap();
        spool.oldest_batch().unwrap().unwrap().batch_id
    };
    // Put the result files back, as if the process died after writing the batch but before
    // removing them; add the temporary file of an unfinished write too.
    for name in files_in(saved.path()) {
        fs::copy(saved.path().join(&name), results_dir.join(&name)).unwrap();
    }
    fs::write(results_dir.join(".00000000000000000099-x.json.tmp"), b"{\"half").unwrap();

    let mut spool = Spool::open(dir.path(), BIG).unwrap();
    assert_eq!(spool.pending_results(), 0, "already-sealed results must not be sealed again");
    assert!(files_in(&results_dir).is_empty(), "{:?}", files_in(&results_dir));
    assert_eq!(spool.pending_batches(), 1);
    assert_eq!(spool.oldest_batch().unwrap().unwrap().batch_id, first_id);

    // New results after the restart are sealed into a second, later batch.
    spool.append(&sample_result("c:443")).unwrap();
    spool.seal(&info()).unwrap();
    let first = spool.oldest_batch().unwrap().unwrap();
    assert_eq!(first.batch_id, first_id);
    spool.delivered(first.seq).unwrap();
    let second = spool.oldest_batch().unwrap().unwrap();
    assert_eq!(subjects(&batch_of(&second.json)), ["c:443"]);
}

#[test]
fn the_bound_drops_the_oldest_and_counts_what_it_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let one = serde_json::to_vec(&padded_result("r00:443")).unwrap().len() as u64;
    // Room for three results, or for a batch of three (results plus a little framing).
    let bound = one * 3 + 1000;
    let mut spool = Spool::open(dir.path(), bound).unwrap();
    for i in 0..10 {
        spool.append(&padded_result(&format!("r{i:02}:443"))).unwrap();
    }
    assert_eq!(spool.pending_results(), 3);
    assert_eq!(spool.dropped(), 7);
    assert!(spool.total_bytes() <= bound);

    spool.seal(&info()).unwrap();
    let sealed = spool.oldest_batch().unwrap().unwrap();
    let batch = batch_of(&sealed.json);
    assert_eq!(subjects(&batch), ["r07:443", "r08:443", "r09:443"]);
    assert_eq!(batch.collector.spool_dropped, 7);
    drop(spool);

    // The counter persists, and sealed batches are the oldest data, so they go first.
    let mut spool = Spool::open(dir.path(), bound).unwrap();
    assert_eq!(spool.dropped(), 7);
    for i in 10..13 {
        spool.append(&padded_result(&format!("r{i:02}:443"))).unwrap();
    }
    assert_eq!(spool.pending_batches(), 0, "the old batch should have been dropped");
    assert_eq!(spool.dropped(), 10);
    assert_eq!(spool.pending_results(), 3);
}

#[test]
fn big_results_are_split_across_batches_under_the_byte_budget() {
    let dir = tempfile::tempdir().unwrap();
    let mut spool = Spool::open(dir.path(), BIG).unwrap();
    for i in 0..3 {
        let mut result = sample_result(&format!("big{i}:443"));
        // ~400 KiB each: three of them do not fit the 1 MiB batch budget together.
        result.subject.push_str(&"x".repeat(400 * 1024));
        spool.append(&result).unwrap();
    }
    assert_eq!(spool.seal(&info()).unwrap(), 2);
    let first = spool.oldest_batch().unwrap().unwrap();
    assert_eq!(first.result_count, 2);
    assert!(first.json.len() < wbd_wire::MAX_BATCH_BYTES);
    spool.delivered(first.seq).unwrap();
    assert_eq!(spool.oldest_batch().unwrap().unwrap().result_count, 1);
}

#[test]
fn damaged_files_are_quarantined_not_deleted() {
    let dir = tempfile::tempdir().unwrap();
    {
        let mut spool = Spool::open(dir.path(), BIG).unwrap();
        spool.append(&sample_result("good:443")).unwrap();
    }
    // Numbered after the good result, as a real one would be.
    let garbage_result = format!("{:020}-{}.json", 5, uuid::Uuid::new_v4());
    fs::write(dir.path().join("results").join(&garbage_result), b"not json").unwrap();
    let garbage_batch = format!("{:020}-{}.json", 0, uuid::Uuid::new_v4());
    fs::write(dir.path().join("batches").join(&garbage_batch), b"{\"schema_version\":").unwrap();
    fs::write(dir.path().join("results").join("notes.txt"), b"someone's notes").unwrap();
    fs::write(dir.path().join("state.json"), b"][").unwrap();

    let mut spool = Spool::open(dir.path(), BIG).unwrap();
    assert_eq!(spool.dropped(), 0);
    spool.seal(&info()).unwrap();
    let sealed = spool.oldest_batch().unwrap().unwrap();
    assert_eq!(subjects(&batch_of(&sealed.json)), ["good:443"]);

    let corrupt = files_in(&spool.corrupt_dir());
    for name in [
        format!("results-{garbage_result}"),
        format!("batches-{garbage_batch}"),
        "results-notes.txt".to_owned(),
        "state.json".to_owned(),
    ] {
        assert!(corrupt.contains(&name), "{name} not in {corrupt:?}");
        assert!(corrupt.contains(&format!("{name}.reason.txt")), "{name}.reason.txt not in {corrupt:?}");
    }
    assert_eq!(fs::read(spool.corrupt_dir().join(format!("results-{garbage_result}"))).unwrap(), b"not json");
}

#[test]
fn a_rejected_batch_is_kept_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let mut spool = Spool::open(dir.path(), BIG).unwrap();
    spool.append(&sample_result("a:443")).unwrap();
    spool.seal(&info()).unwrap();
    let sealed = spool.oldest_batch().unwrap().unwrap();
    spool.reject(sealed.seq, "422 Unprocessable Entity: unknown probe").unwrap();
    assert!(spool.oldest_batch().unwrap().is_none());
    let rejected = files_in(&spool.rejected_dir());
    let name = rejected.iter().find(|n| n.ends_with(".json")).unwrap();
    assert_eq!(batch_of(&fs::read(spool.rejected_dir().join(name)).unwrap()).batch_id, sealed.batch_id);
    let reason = fs::read_to_string(spool.rejected_dir().join(format!("{name}.reason.txt"))).unwrap();
    assert!(reason.contains("unknown probe"), "{reason}");
}
