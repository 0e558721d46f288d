//! A push's body, step by step, before anything is stored. Each step answers its own problem:
//!
//! 1. [`check_content_headers`]: JSON, gzip or identity (`415 unsupported_media_type`);
//! 2. [`read_decoded`]: the body, gzip-decoded as it is read, so that the size limit applies to
//!    what it decodes to (`413 payload_too_large`; a corrupt gzip body is `400 malformed_json`);
//! 3. parse: a batch of the schema version this server reads (`400
//!    unsupported_schema_version`, else `400 malformed_json`);
//! 4. check bounds: results per batch (`422 too_many_results`), a batch id, each result's
//!    subject and time (`422 validation_failed`).
//!
//! Steps 2 to 4 are `wbd_wire::ingest`, without I/O, so that the fuzz target `ingest` runs the
//! very code that reads a push; [`refused`] gives each of its refusals its answer here.
//!
//! What comes out is a [`CheckedBatch`], which knows the write that stores it.

use actix_web::http::header;
use actix_web::{HttpRequest, web};
use chrono::{DateTime, Duration, Utc};
use futures_util::StreamExt as _;
use sha2::{Digest as _, Sha256};
use uuid::Uuid;
use wbd_platform::settings::CollectorSettings;
use wbd_store::{BatchWrite, Collector, FactWrite};
use wbd_wire::IngestBatch;
use wbd_wire::ingest::{BatchBody, BatchRefusal, BodyEncoding};

use crate::error::{ApiError, ApiResult, ErrorCode};

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
        let batch = wbd_wire::ingest::parse_batch(&body).map_err(refused)?;
        let span = tracing::Span::current();
        span.record("batch_id", tracing::field::display(batch.batch_id));
        span.record("results", batch.results.len());
        wbd_wire::ingest::check_bounds(&batch, now).map_err(refused)?;
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
                let payload = serde_json::to_string(&r.output).map_err(ApiError::internal)?;
                let timings = serde_json::to_string(&r.output.timings()).map_err(ApiError::internal)?;
                let stable = serde_json::to_vec(&r.output.without_timings()).map_err(ApiError::internal)?;
                Ok(FactWrite {
                    probe: r.output.kind().as_str().to_owned(),
                    subject: r.subject.clone(),
                    observed_at: r.observed_at,
                    payload,
                    timings,
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

/// Step 2: the body, decoded as it is read (`wbd_wire::ingest::BatchBody`), so the size bound
/// applies to the decoded body.
async fn read_decoded(req: &HttpRequest, mut payload: web::Payload) -> ApiResult<Vec<u8>> {
    let gzip = req
        .headers()
        .get(header::CONTENT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("gzip"));
    let mut body = BatchBody::new(if gzip { BodyEncoding::Gzip } else { BodyEncoding::Identity });
    while let Some(chunk) = payload.next().await {
        let chunk = chunk
            .map_err(|e| ApiError::new(ErrorCode::MalformedJson, format!("reading the body failed: {e}")))?;
        body.push(&chunk).map_err(refused)?;
    }
    body.finish().map_err(refused)
}

/// The answer to each reason a body is refused.
fn refused(refusal: BatchRefusal) -> ApiError {
    let code = match refusal {
        BatchRefusal::TooLarge => ErrorCode::PayloadTooLarge,
        BatchRefusal::CorruptGzip | BatchRefusal::Malformed(_) => ErrorCode::MalformedJson,
        BatchRefusal::UnsupportedVersion(_) => ErrorCode::UnsupportedSchemaVersion,
        BatchRefusal::TooManyResults(_) => ErrorCode::TooManyResults,
        BatchRefusal::Invalid(_) => ErrorCode::Validation,
    };
    ApiError::new(code, refusal.to_string())
}

fn truncate(s: &str, max: usize) -> String {
    s.chars().take(max).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_refusal_has_its_code() {
        let read = |body: &[u8]| wbd_wire::ingest::read_batch(body, Utc::now()).map_err(refused);
        let other = read(br#"{"schema_version": 7, "something": "new"}"#).expect_err("refused");
        assert_eq!(other.code, ErrorCode::UnsupportedSchemaVersion);
        assert_eq!(read(br#"{"schema_version": 1}"#).expect_err("refused").code, ErrorCode::MalformedJson);
        assert_eq!(read(b"not json").expect_err("refused").code, ErrorCode::MalformedJson);
        assert_eq!(refused(BatchRefusal::TooLarge).code, ErrorCode::PayloadTooLarge);
        assert_eq!(refused(BatchRefusal::CorruptGzip).code, ErrorCode::MalformedJson);
        assert_eq!(refused(BatchRefusal::TooManyResults(1001)).code, ErrorCode::TooManyResults);
        assert_eq!(refused(BatchRefusal::Invalid("x".into())).code, ErrorCode::Validation);
    }
}
