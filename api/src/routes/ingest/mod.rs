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
//!
//! A push goes: who is pushing (the collector's signed token, checked first and cheaply) → what
//! it pushed (the body becomes a [`CheckedBatch`] step by step: headers, gzip decoding within
//! the size limit, schema version, bounds; see `batch`) → the token spent (signed for this
//! body, used once) → store → answer.

mod batch;

use actix_web::{HttpRequest, HttpResponse, post, web};
use chrono::{DateTime, Utc};
use wbd_store::{Collector, IngestOutcome};
use wbd_wire::{CollectorCommand, CommandAction, IngestAccepted};

use self::batch::CheckedBatch;

use crate::auth::authenticate_collector;
use crate::error::{ApiError, ApiResult, ErrorCode, Problem};
use crate::responses::{PayloadTooLarge, UnsupportedMediaType};
use crate::state::AppState;

/// Accept a batch of probe results from a collector.
#[utoipa::path(tag = "ingest", security(("collector" = [])),
    request_body(content = IngestBatchDoc, content_type = "application/json", description = "An `IngestBatch` (schema version 1); may be sent with `Content-Encoding: gzip`."),
    responses(
        (status = 202, body = IngestAcceptedDoc, description = "Stored; a retry of the same batch gets the same answer"),
        (status = 400, description = "`malformed_json` (not a batch, or a corrupt gzip body) or `unsupported_schema_version`", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "`unauthenticated`, `invalid_token`, `token_expired`, `invalid_credentials` (no such collector, or not enrolled), `collector_revoked`, or `token_replayed` (each push token is accepted once)", body = Problem, content_type = "application/problem+json"),
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
    let answer = receive(&state, &req, payload).await;
    if let Err(e) = &answer {
        metrics::counter!("wbd_ingest_batches_total", "outcome" => "refused", "reason" => e.code.code())
            .increment(1);
    }
    answer
}

async fn receive(state: &AppState, req: &HttpRequest, payload: web::Payload) -> ApiResult<HttpResponse> {
    let now = Utc::now();
    let credential = authenticate_collector(state, req, now).await?;
    let collector = &credential.collector;
    let span = tracing::Span::current();
    span.record("org_id", tracing::field::display(collector.org_id));
    span.record("collector_id", tracing::field::display(collector.id));
    span.record("tenant_id", tracing::field::display(collector.tenant_id));

    let batch = CheckedBatch::receive(req, payload, now).await?;
    credential.spend(state, batch.body_sha256(), now).await?;
    let (accepted, stored_now) = store(state, collector, &batch, &span, now).await?;
    // A batch stored now has no commands handed out with it yet; a retry gets those it had.
    let commands = if stored_now && !credential.commands_waiting {
        Vec::new()
    } else {
        waiting_commands(state, collector, &batch, now).await?
    };
    Ok(HttpResponse::Accepted().json(IngestAccepted { batch_id: batch.batch_id(), accepted, commands }))
}

/// Stores the batch (once: a retry finds it stored and gets the same count) and wakes the
/// evaluation; answers how many results were accepted, and whether it was stored now.
async fn store(
    state: &AppState,
    collector: &Collector,
    batch: &CheckedBatch,
    span: &tracing::Span,
    now: DateTime<Utc>,
) -> ApiResult<(u32, bool)> {
    let traceparent = wbd_platform::telemetry::traceparent_of(span);
    let write = batch.write(collector, &state.settings.collectors, traceparent, now)?;
    let outcome = state.store.ingest_batch(collector.scope(), &write).await.map_err(|e| {
        tracing::error!(error = ?e, "storing a batch failed");
        ApiError::unavailable("the batch could not be stored now; retry later", 5)
    })?;
    match outcome {
        IngestOutcome::Accepted { accepted } => {
            state.queue.notify();
            metrics::counter!("wbd_ingest_batches_total", "outcome" => "accepted", "reason" => "")
                .increment(1);
            metrics::counter!("wbd_ingest_results_total").increment(u64::from(accepted));
            tracing::info!(accepted, "batch accepted");
            Ok((accepted, true))
        }
        IngestOutcome::Duplicate { accepted } => {
            metrics::counter!("wbd_ingest_batches_total", "outcome" => "duplicate", "reason" => "")
                .increment(1);
            tracing::info!(accepted, "batch already stored; answering as before");
            Ok((accepted, false))
        }
        IngestOutcome::Conflict => Err(ApiError::new(
            ErrorCode::BatchConflict,
            format!("batch {} was already received with different contents", batch.batch_id()),
        )),
    }
}

/// The commands waiting for the collector, marked as handed out with this batch.
async fn waiting_commands(
    state: &AppState,
    collector: &Collector,
    batch: &CheckedBatch,
    now: DateTime<Utc>,
) -> ApiResult<Vec<CollectorCommand>> {
    let commands = state
        .store
        .deliver_collector_commands(collector.scope(), collector.id, batch.batch_id(), now)
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
    Ok(commands)
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
