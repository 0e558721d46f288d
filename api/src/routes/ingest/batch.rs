//! A push's body, step by step, before anything is stored. Each step answers its own problem:
//!
//! 1. [`check_content_headers`]: JSON, gzip or identity (`415 unsupported_media_type`);
//! 2. [`read_decoded`]: the body, gzip-decoded as it is read, so that the size limit applies to
//!    what it decodes to (`413 payload_too_large`; a corrupt gzip body is `400 malformed_json`);
//! 3. [`parse`]: a batch of the schema version this server reads (`400
//!    unsupported_schema_version`, else `400 malformed_json`);
//! 4. [`check_bounds`]: results per batch (`422 too_many_results`), a batch id, each result's
//!    subject and time (`422 validation_failed`).
//!
//! What comes out is a [`CheckedBatch`], which knows the write that stores it.

use actix_web::http::header;
use actix_web::{HttpRequest, web};
use chrono::{DateTime, Duration, Utc};
use futures_util::StreamExt as _;
use serde::Deserialize;
use sha2::{Digest as _, Sha256};
use uuid::Uuid;
use wbd_platform::settings::CollectorSettings;
use wbd_store::{BatchWrite, Collector, FactWrite};
use wbd_wire::{IngestBatch, MAX_BATCH_BYTES, MAX_RESULTS_PER_BATCH, SCHEMA_VERSION};

use crate::error::{ApiError, ApiResult, ErrorCode};

const MAX_SUBJECT_CHARS: usize = 512;
/// How far in the future a result's timestamp may be (collector clock skew).
const MAX_CLOCK_SKEW_SECS: i64 = 3_600;

/// A batch that passed every step: it can be stored.
pub struct CheckedBatch {
    batch: IngestBatch,
    /// [`wbd_wire::body_sha256`] of the decoded body, which the push token must name.
    body_sha256: String,
}

impl CheckedBatch {
    /// Takes a push's body through every step, in order. The batch's id and size are recorded
    /// on the current (the request's) span as soon as they are known.
    pub async fn receive(req: &HttpRequest, payload: web::Payload, now: DateTime<Utc>) -> ApiResult<Self> {
        check_content_headers(req)?;
        let body = read_decoded(req, payload).await?;
        let batch = parse(&body)?;
        let span = tracing::Span::current();
        span.record("batch_id", tracing::field::display(batch.batch_id));
        span.record("results", batch.results.len());
        let batch = check_bounds(batch, now)?;
        Ok(CheckedBatch { batch, body_sha256: wbd_wire::body_sha256(&body) })
    }

    pub fn batch_id(&self) -> Uuid {
        self.batch.batch_id
    }

    pub fn body_sha256(&self) -> &str {
        &self.body_sha256
    }

    /// The write that stores the batch for `collector`: the latest fact of each result (with
    /// a digest of what it found, timings left out, so an unchanged result is recognised), the
    /// collector's heartbeat and details, and the hash of the whole batch that makes a retry
    /// idempotent.
    pub fn write(
        &self,
        collector: &Collector,
        settings: &CollectorSettings,
        traceparent: Option<String>,
        now: DateTime<Utc>,
    ) -> ApiResult<BatchWrite> {
        let batch = &self.batch;
        let facts = batch
            .results
            .iter()
            .map(|r| {
                let payload = serde_json::to_value(&r.output).map_err(ApiError::internal)?;
                let stable = serde_json::to_vec(&r.output.without_timings()).map_err(ApiError::internal)?;
                Ok(FactWrite {
                    probe: r.output.kind().as_str().to_owned(),
                    subject: r.subject.clone(),
                    observed_at: r.observed_at,
                    payload,
                    digest: hex::encode(Sha256::digest(&stable)),
                })
            })
            .collect::<ApiResult<Vec<_>>>()?;
        let canonical = serde_json::to_vec(batch).map_err(ApiError::internal)?;
        let interval = batch.collector.push_interval_secs.clamp(1, 86_400);
        let silence = settings.silence_after(interval);
        Ok(BatchWrite {
            collector_id: collector.id,
            batch_id: batch.batch_id,
            body_hash: hex::encode(Sha256::digest(&canonical)),
            results: facts,
            received_at: now,
            collector_version: truncate(&batch.collector.version, 100),
            collector_hostname: truncate(&batch.collector.hostname, 255),
            collector_os: truncate(&batch.collector.os, 255),
            push_interval_secs: interval,
            spool_dropped: batch.collector.spool_dropped,
            silent_after: now + Duration::from_std(silence).unwrap_or(Duration::hours(1)),
            traceparent,
        })
    }
}

/// Step 1: JSON, sent as is or gzip-encoded.
fn check_content_headers(req: &HttpRequest) -> ApiResult<()> {
    let content_type = req.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    let mime = content_type.split(';').next().unwrap_or("").trim();
    if !mime.eq_ignore_ascii_case("application/json") {
        return Err(ApiError::new(ErrorCode::UnsupportedMediaType, "send Content-Type: application/json"));
    }
    if let Some(enc) = req.headers().get(header::CONTENT_ENCODING) {
        let enc = enc.to_str().unwrap_or("").trim();
        if !(enc.eq_ignore_ascii_case("gzip") || enc.eq_ignore_ascii_case("identity")) {
            return Err(ApiError::new(
                ErrorCode::UnsupportedMediaType,
                "Content-Encoding must be gzip or identity",
            ));
        }
    }
    Ok(())
}

/// Step 2: the body, decoded as it is read, so the size bound applies to the decoded body.
async fn read_decoded(req: &HttpRequest, payload: web::Payload) -> ApiResult<web::BytesMut> {
    let mut payload = actix_web::dev::Decompress::from_headers(payload.into_inner(), req.headers());
    let mut body = web::BytesMut::new();
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(|e| match e {
            actix_web::error::PayloadError::EncodingCorrupted => {
                ApiError::new(ErrorCode::MalformedJson, "the gzip body is corrupt")
            }
            other => ApiError::new(ErrorCode::MalformedJson, format!("reading the body failed: {other}")),
        })?;
        if body.len() + chunk.len() > MAX_BATCH_BYTES {
            return Err(ApiError::new(
                ErrorCode::PayloadTooLarge,
                format!(
                    "a batch may be at most {MAX_BATCH_BYTES} bytes (after gzip decoding); send smaller batches"
                ),
            ));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

#[derive(Deserialize)]
struct VersionOnly {
    schema_version: u32,
}

/// Step 3: a batch of the schema version this server reads.
fn parse(body: &[u8]) -> ApiResult<IngestBatch> {
    match serde_json::from_slice::<IngestBatch>(body) {
        Ok(batch) if batch.schema_version == SCHEMA_VERSION => Ok(batch),
        Ok(batch) => Err(unsupported_version(batch.schema_version)),
        Err(e) => match serde_json::from_slice::<VersionOnly>(body) {
            // Valid JSON with another version: say so, rather than naming a field we don't know.
            Ok(v) if v.schema_version != SCHEMA_VERSION => Err(unsupported_version(v.schema_version)),
            _ => Err(ApiError::new(ErrorCode::MalformedJson, format!("not a valid batch: {e}"))),
        },
    }
}

fn unsupported_version(v: u32) -> ApiError {
    ApiError::new(
        ErrorCode::UnsupportedSchemaVersion,
        format!("schema_version {v} is not supported; this server reads version {SCHEMA_VERSION}"),
    )
}

/// Step 4: within the bounds.
fn check_bounds(batch: IngestBatch, now: DateTime<Utc>) -> ApiResult<IngestBatch> {
    if batch.results.len() > MAX_RESULTS_PER_BATCH {
        return Err(ApiError::new(
            ErrorCode::TooManyResults,
            format!(
                "{} results in one batch; at most {MAX_RESULTS_PER_BATCH} are accepted",
                batch.results.len()
            ),
        ));
    }
    if batch.batch_id.is_nil() {
        return Err(ApiError::new(ErrorCode::Validation, "`batch_id` must not be the nil UUID"));
    }
    for (i, r) in batch.results.iter().enumerate() {
        if r.subject.trim().is_empty() || r.subject.chars().count() > MAX_SUBJECT_CHARS {
            return Err(ApiError::new(
                ErrorCode::Validation,
                format!("results[{i}].subject must be 1 to {MAX_SUBJECT_CHARS} characters"),
            ));
        }
        if r.observed_at > now + Duration::seconds(MAX_CLOCK_SKEW_SECS) {
            return Err(ApiError::new(
                ErrorCode::Validation,
                format!("results[{i}].observed_at is in the future; check the collector's clock"),
            ));
        }
    }
    Ok(batch)
}

fn truncate(s: &str, max: usize) -> String {
    s.chars().take(max).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn another_schema_version_is_named_rather_than_a_field_it_lacks() {
        let other = parse(br#"{"schema_version": 7, "something": "new"}"#).expect_err("refused");
        assert_eq!(other.code, ErrorCode::UnsupportedSchemaVersion);
        assert_eq!(parse(br#"{"schema_version": 1}"#).expect_err("refused").code, ErrorCode::MalformedJson);
        assert_eq!(parse(b"not json").expect_err("refused").code, ErrorCode::MalformedJson);
    }
}
