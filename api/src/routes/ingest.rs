//! `POST /v1/ingest`: a collector's batch of probe results. Answered 202 only after the batch,
//! the latest facts and the outbox message are committed in one transaction; idempotent by
//! batch id. Every push is also the collector's heartbeat.
//!
//! The 202 carries the commands waiting for the collector ("re-test now"). Delivery is
//! at-least-once: right after the batch is stored, the waiting commands are marked as delivered
//! *with this batch*, and every retry of the same batch (the collector retries until it gets an
//! answer) carries them again; a later batch does not. A collector acts on each command id once.
//! If the commands cannot be read, the push answers 503 so the collector retries the (stored,
//! idempotent) batch and picks them up then.

use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, post, web};
use chrono::{Duration, Utc};
use futures_util::StreamExt as _;
use serde::Deserialize;
use sha2::{Digest as _, Sha256};
use wbd_store::{BatchWrite, FactWrite, IngestOutcome};
use wbd_wire::{
    CollectorCommand, CommandAction, IngestAccepted, IngestBatch, MAX_BATCH_BYTES, MAX_RESULTS_PER_BATCH,
    SCHEMA_VERSION,
};

use crate::auth::authenticate_collector;
use crate::error::{ApiError, ApiResult, ErrorCode, Problem};
use crate::responses::{PayloadTooLarge, UnsupportedMediaType};
use crate::state::AppState;

const MAX_SUBJECT_CHARS: usize = 512;
/// How far in the future a result's timestamp may be (collector clock skew).
const MAX_CLOCK_SKEW_SECS: i64 = 3_600;

/// Accept a batch of probe results from a collector.
#[utoipa::path(tag = "ingest", security(("collector" = [])),
    request_body(content = IngestBatchDoc, content_type = "application/json", description = "An `IngestBatch` (schema version 1); may be sent with `Content-Encoding: gzip`."),
    responses(
        (status = 202, body = IngestAcceptedDoc, description = "Stored; a retry of the same batch gets the same answer"),
        (status = 400, description = "`malformed_json` (not a batch, or a corrupt gzip body) or `unsupported_schema_version`", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "`unauthenticated`, `invalid_token`, `token_expired`, `invalid_credentials` (no such collector, or not enrolled) or `collector_revoked`", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The batch id was used for a different batch", body = Problem, content_type = "application/problem+json"),
        PayloadTooLarge, UnsupportedMediaType,
        (status = 422, description = "`too_many_results`, or `validation_failed` (a result's subject or time)", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Try again after Retry-After", body = Problem, content_type = "application/problem+json"),
    ))]
#[post("/v1/ingest")]
#[tracing::instrument(name = "ingest", skip_all, fields(org_id, tenant_id, collector_id, batch_id, results))]
pub async fn ingest(
    state: web::Data<AppState>,
    req: HttpRequest,
    payload: web::Payload,
) -> ApiResult<HttpResponse> {
    let now = Utc::now();
    let collector = authenticate_collector(&state, &req, now).await?;
    let span = tracing::Span::current();
    span.record("org_id", tracing::field::display(collector.org_id));
    span.record("collector_id", tracing::field::display(collector.id));
    span.record("tenant_id", tracing::field::display(collector.tenant_id));

    check_content_headers(&req)?;
    // Decoded as it is read, so the size bound applies to the decoded body.
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

    let batch = parse_batch(&body)?;
    span.record("batch_id", tracing::field::display(batch.batch_id));
    span.record("results", batch.results.len());
    validate_batch(&batch, now)?;

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
    let canonical = serde_json::to_vec(&batch).map_err(ApiError::internal)?;
    let interval = batch.collector.push_interval_secs.clamp(1, 86_400);
    let silence = state.settings.collectors.silence_after(interval);
    let write = BatchWrite {
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
        traceparent: wbd_platform::telemetry::traceparent_of(&span),
    };
    let outcome = state.store.ingest_batch(collector.scope(), &write).await.map_err(|e| {
        tracing::error!(error = ?e, "storing a batch failed");
        ApiError::unavailable("the batch could not be stored now; retry later", 5)
    })?;
    let accepted = match outcome {
        IngestOutcome::Accepted { accepted } => {
            state.queue.notify();
            tracing::info!(accepted, "batch accepted");
            accepted
        }
        IngestOutcome::Duplicate { accepted } => {
            tracing::info!(accepted, "batch already stored; answering as before");
            accepted
        }
        IngestOutcome::Conflict => {
            return Err(ApiError::new(
                ErrorCode::BatchConflict,
                format!("batch {} was already received with different contents", batch.batch_id),
            ));
        }
    };
    let commands = state
        .store
        .deliver_collector_commands(collector.scope(), collector.id, batch.batch_id, now)
        .await
        .map_err(|e| {
            tracing::error!(error = ?e, "handing out the collector's commands failed");
            ApiError::unavailable("the batch is stored, but the answer could not be completed; retry it", 5)
        })?
        .into_iter()
        .filter_map(|command| match serde_json::from_value::<CommandAction>(command.action) {
            Ok(action) => Some(CollectorCommand { id: command.id, action }),
            Err(error) => {
                tracing::warn!(command_id = %command.id, %error, "skipping a stored command this build cannot read");
                None
            }
        })
        .collect::<Vec<_>>();
    if !commands.is_empty() {
        tracing::info!(commands = commands.len(), "handing commands to the collector");
    }
    Ok(HttpResponse::Accepted().json(IngestAccepted { batch_id: batch.batch_id, accepted, commands }))
}

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

#[derive(Deserialize)]
struct VersionOnly {
    schema_version: u32,
}

fn parse_batch(body: &[u8]) -> ApiResult<IngestBatch> {
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

fn validate_batch(batch: &IngestBatch, now: chrono::DateTime<Utc>) -> ApiResult<()> {
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
    Ok(())
}

fn truncate(s: &str, max: usize) -> String {
    s.chars().take(max).collect()
}

/// The wire type `IngestBatch`, described for the OpenAPI document (see `crates/wire`).
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
pub struct IngestBatchDoc {
    /// Must be 1.
    schema_version: u32,
    /// Chosen by the collector; a retry reuses it.
    batch_id: uuid::Uuid,
    sent_at: chrono::DateTime<Utc>,
    #[schema(value_type = Object)]
    collector: serde_json::Value,
    /// At most 1000 probe results: `{subject, observed_at, duration_ms, probe, data}`.
    #[schema(value_type = Vec<Object>)]
    results: Vec<serde_json::Value>,
}

/// The wire type `IngestAccepted`.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
pub struct IngestAcceptedDoc {
    batch_id: uuid::Uuid,
    accepted: u32,
    /// Commands for the collector, absent when there are none: `{id, command: "run_probes",
    /// probes: [probe kinds, empty = all], reason}`. Repeated in the answer to a retry of the same
    /// batch; a collector acts on each id once and ignores commands it does not know.
    #[schema(value_type = Option<Vec<Object>>)]
    commands: Vec<serde_json::Value>,
}
