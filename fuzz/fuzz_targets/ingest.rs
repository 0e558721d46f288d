//! `POST /v1/ingest`'s body as the API reads it (`wbd_wire::ingest`): decoded chunk by chunk
//! (gzip or identity, bounded), parsed as a batch and checked against the bounds; then what the
//! API derives from an accepted batch to store it (the canonical JSON, each result's payload and
//! its digest without timings), and that timings laid over the output without them, as JSON or
//! typed, give the result back.
//!
//! Input: one byte of mode (bit 0: gzip; the rest: chunk size), then the body.
#![no_main]

use chrono::{DateTime, Utc};
use libfuzzer_sys::fuzz_target;
use wbd_wire::ingest::{BatchBody, BodyEncoding, read_batch};

fuzz_target!(|data: &[u8]| {
    let Some((&mode, body)) = data.split_first() else { return };
    let encoding = if mode & 1 == 1 { BodyEncoding::Gzip } else { BodyEncoding::Identity };
    let chunk = usize::from(mode >> 1).max(1) * 64;
    let mut decoder = BatchBody::new(encoding);
    for piece in body.chunks(chunk) {
        if decoder.push(piece).is_err() {
            return;
        }
    }
    let Ok(decoded) = decoder.finish() else { return };
    let now = DateTime::parse_from_rfc3339("2026-11-20T10:00:00Z").expect("a time").with_timezone(&Utc);
    let Ok(batch) = read_batch(&decoded, now) else { return };
    let _ = wbd_wire::body_sha256(&decoded);
    for result in &batch.results {
        let _ = result.output.kind().as_str();
        let full = serde_json::to_value(&result.output).expect("an accepted result serialises");
        let mut stable =
            serde_json::to_value(result.output.without_timings()).expect("and without its timings");
        // What the store does with a repeat: the payload of the run, the newest timings over it.
        wbd_wire::apply_timings(&mut stable, &result.output.timings());
        assert_eq!(stable, full, "timings restore the result");
        // What a worker does with an output it kept: the typed timings over it.
        let mut kept = result.output.without_timings();
        kept.set_timings(&result.output.timings());
        assert_eq!(kept, result.output, "typed timings restore the result");
    }
    serde_json::to_vec(&batch).expect("an accepted batch serialises");
});
