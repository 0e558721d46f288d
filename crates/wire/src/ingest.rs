//! Reading a push's body as the server does, with no I/O: the body decoded as it arrives
//! ([`BatchBody`]: gzip or identity, bounded by what it decodes to), then read as a batch of this
//! schema version within the server's bounds ([`read_batch`]). The API feeds it the request's
//! chunks and maps each [`BatchRefusal`] to its answer; the fuzz target `ingest` feeds it anything.

use std::io::Write as _;

use chrono::{DateTime, Duration, Utc};
use flate2::write::GzDecoder;
use serde::Deserialize;

use crate::{IngestBatch, MAX_BATCH_BYTES, MAX_RESULTS_PER_BATCH, SCHEMA_VERSION};

/// Longest accepted result subject, in characters.
pub const MAX_SUBJECT_CHARS: usize = 512;
/// How far in the future a result's timestamp may be (collector clock skew), in seconds.
pub const MAX_CLOCK_SKEW_SECS: i64 = 3_600;

/// Why a push's body is not a batch the server can store.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BatchRefusal {
    #[error("a batch may be at most {MAX_BATCH_BYTES} bytes (after gzip decoding); send smaller batches")]
    TooLarge,
    #[error("the gzip body is corrupt")]
    CorruptGzip,
    #[error("not a valid batch: {0}")]
    Malformed(String),
    #[error("schema_version {0} is not supported; this server reads version {SCHEMA_VERSION}")]
    UnsupportedVersion(u32),
    #[error("{0} results in one batch; at most {MAX_RESULTS_PER_BATCH} are accepted")]
    TooManyResults(usize),
    /// A batch id, a result's subject or time out of bounds.
    #[error("{0}")]
    Invalid(String),
}

/// How the body is encoded (`Content-Encoding`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyEncoding {
    Identity,
    Gzip,
}

/// A push's body, decoded chunk by chunk as it is received. The bound applies to the decoded
/// bytes and is checked as they are produced, so a small gzip bomb never grows past it.
pub struct BatchBody {
    decoder: Decoder,
}

enum Decoder {
    Identity(Bounded),
    Gzip(Box<GzDecoder<Bounded>>),
}

/// The decoded bytes, refusing to grow past [`MAX_BATCH_BYTES`].
#[derive(Default)]
struct Bounded {
    bytes: Vec<u8>,
    overflowed: bool,
}

impl std::io::Write for Bounded {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if self.bytes.len() + buf.len() > MAX_BATCH_BYTES {
            self.overflowed = true;
            return Err(std::io::Error::other("the decoded body is too large"));
        }
        self.bytes.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl BatchBody {
    pub fn new(encoding: BodyEncoding) -> Self {
        let decoder = match encoding {
            BodyEncoding::Identity => Decoder::Identity(Bounded::default()),
            BodyEncoding::Gzip => Decoder::Gzip(Box::new(GzDecoder::new(Bounded::default()))),
        };
        BatchBody { decoder }
    }

    /// Decodes the next chunk of the body as received.
    pub fn push(&mut self, chunk: &[u8]) -> Result<(), BatchRefusal> {
        match &mut self.decoder {
            Decoder::Identity(out) => out.write_all(chunk).map_err(|_| BatchRefusal::TooLarge),
            Decoder::Gzip(gz) => gz.write_all(chunk).map_err(|_| gzip_refusal(gz.get_ref())),
        }
    }

    /// The whole decoded body, once the request's body has ended.
    pub fn finish(self) -> Result<Vec<u8>, BatchRefusal> {
        match self.decoder {
            Decoder::Identity(out) => Ok(out.bytes),
            Decoder::Gzip(mut gz) => match gz.try_finish() {
                Ok(()) => gz.finish().map(|out| out.bytes).map_err(|_| BatchRefusal::CorruptGzip),
                Err(_) => Err(gzip_refusal(gz.get_ref())),
            },
        }
    }
}

fn gzip_refusal(out: &Bounded) -> BatchRefusal {
    if out.overflowed { BatchRefusal::TooLarge } else { BatchRefusal::CorruptGzip }
}

#[derive(Deserialize)]
struct VersionOnly {
    schema_version: u32,
}

/// A decoded body as a batch of the schema version this server reads, within the bounds:
/// results per batch, a batch id, each result's subject and time (no later than `now` plus
/// [`MAX_CLOCK_SKEW_SECS`]).
pub fn read_batch(body: &[u8], now: DateTime<Utc>) -> Result<IngestBatch, BatchRefusal> {
    let batch = parse_batch(body)?;
    check_bounds(&batch, now)?;
    Ok(batch)
}

/// The first half of [`read_batch`]: the body as a batch of this schema version.
pub fn parse_batch(body: &[u8]) -> Result<IngestBatch, BatchRefusal> {
    match serde_json::from_slice::<IngestBatch>(body) {
        Ok(batch) if batch.schema_version == SCHEMA_VERSION => Ok(batch),
        Ok(batch) => Err(BatchRefusal::UnsupportedVersion(batch.schema_version)),
        Err(e) => match serde_json::from_slice::<VersionOnly>(body) {
            // Valid JSON with another version: say so, rather than naming a field we don't know.
            Ok(v) if v.schema_version != SCHEMA_VERSION => {
                Err(BatchRefusal::UnsupportedVersion(v.schema_version))
            }
            _ => Err(BatchRefusal::Malformed(e.to_string())),
        },
    }
}

/// The second half of [`read_batch`]: the batch within the bounds.
pub fn check_bounds(batch: &IngestBatch, now: DateTime<Utc>) -> Result<(), BatchRefusal> {
    if batch.results.len() > MAX_RESULTS_PER_BATCH {
        return Err(BatchRefusal::TooManyResults(batch.results.len()));
    }
    if batch.batch_id.is_nil() {
        return Err(BatchRefusal::Invalid("`batch_id` must not be the nil UUID".to_owned()));
    }
    let latest = now + Duration::seconds(MAX_CLOCK_SKEW_SECS);
    for (i, r) in batch.results.iter().enumerate() {
        if r.subject.trim().is_empty() || r.subject.chars().count() > MAX_SUBJECT_CHARS {
            return Err(BatchRefusal::Invalid(format!(
                "results[{i}].subject must be 1 to {MAX_SUBJECT_CHARS} characters"
            )));
        }
        if r.observed_at > latest {
            return Err(BatchRefusal::Invalid(format!(
                "results[{i}].observed_at is in the future; check the collector's clock"
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use flate2::Compression;
    use flate2::write::GzEncoder;

    use super::*;

    fn gzip(bytes: &[u8]) -> Vec<u8> {
        let mut encoder = GzEncoder::new(Vec::new(), Compression::default());
        encoder.write_all(bytes).expect("gzip");
        encoder.finish().expect("gzip")
    }

    fn decode(encoding: BodyEncoding, body: &[u8], chunk: usize) -> Result<Vec<u8>, BatchRefusal> {
        let mut decoded = BatchBody::new(encoding);
        for piece in body.chunks(chunk) {
            decoded.push(piece)?;
        }
        decoded.finish()
    }

    #[test]
    fn a_gzip_body_decodes_whatever_its_chunks() {
        let json = br#"{"schema_version": 1}"#;
        for chunk in [1, 7, 4096] {
            assert_eq!(decode(BodyEncoding::Gzip, &gzip(json), chunk).expect("decodes"), json);
            assert_eq!(decode(BodyEncoding::Identity, json, chunk).expect("as is"), json);
        }
    }

    #[test]
    fn the_bound_applies_to_the_decoded_body() {
        let bomb = gzip(&vec![b' '; MAX_BATCH_BYTES + 1]);
        assert!(bomb.len() < 10_000, "compresses well: {}", bomb.len());
        assert_eq!(decode(BodyEncoding::Gzip, &bomb, 1024), Err(BatchRefusal::TooLarge));
        let exact = gzip(&vec![b' '; MAX_BATCH_BYTES]);
        assert_eq!(decode(BodyEncoding::Gzip, &exact, 1024).map(|b| b.len()), Ok(MAX_BATCH_BYTES));
        let plain = vec![b' '; MAX_BATCH_BYTES + 1];
        assert_eq!(decode(BodyEncoding::Identity, &plain, 65_536), Err(BatchRefusal::TooLarge));
    }

    #[test]
    fn a_corrupt_or_cut_gzip_body_is_corrupt() {
        let body = gzip(br#"{"schema_version": 1}"#);
        assert_eq!(decode(BodyEncoding::Gzip, b"not gzip at all", 4), Err(BatchRefusal::CorruptGzip));
        assert_eq!(decode(BodyEncoding::Gzip, &body[..body.len() - 4], 4), Err(BatchRefusal::CorruptGzip));
        let mut flipped = body.clone();
        flipped[12] ^= 0xff;
        assert!(decode(BodyEncoding::Gzip, &flipped, 4).is_err());
    }

    #[test]
    fn another_schema_version_is_named_rather_than_a_field_it_lacks() {
        let now = Utc::now();
        let other = read_batch(br#"{"schema_version": 7, "something": "new"}"#, now);
        assert_eq!(other, Err(BatchRefusal::UnsupportedVersion(7)));
        assert!(matches!(read_batch(br#"{"schema_version": 1}"#, now), Err(BatchRefusal::Malformed(_))));
        assert!(matches!(read_batch(b"not json", now), Err(BatchRefusal::Malformed(_))));
    }
}
