//! Pushing sealed batches to the server, and what to do with each answer.
//!
//! Each request carries the batch as gzip-compressed JSON, a fresh short-lived JWT signed with
//! the collector's Ed25519 key, and a W3C `traceparent` whose trace id is the batch id, so
//! that the server's trace of a batch continues the collector's, across retries too.
//!
//! | answer | what happens to the batch |
//! |---|---|
//! | 202 | deleted; the server's commands (`IngestAccepted.commands`) are handed to the caller |
//! | 429, 503 | kept; wait `Retry-After` (seconds or HTTP date), else back off |
//! | other 5xx, network error, anything unexpected | kept; exponential backoff with full jitter |
//! | 401, 403 | kept; logged as "collector may be revoked"; wait the longest backoff |
//! | 400, 409, 413, 422 | moved to `spool/rejected/` with the server's explanation; next batch |

use std::io::Write;
use std::time::Duration;

use chrono::{DateTime, Utc};
use flate2::Compression;
use flate2::write::GzEncoder;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use rand::Rng;
use reqwest::StatusCode;
use reqwest::header::{AUTHORIZATION, CONTENT_ENCODING, CONTENT_TYPE, HeaderMap, RETRY_AFTER};
use tracing::Instrument;
use uuid::Uuid;
use wbd_wire::{
    COLLECTOR_TOKEN_AUDIENCE, CollectorCommand, CollectorInfo, CollectorTokenClaims, INGEST_PATH,
    IngestAccepted, body_sha256,
};

use crate::http_client::{describe_error_response, error_chain};
use crate::identity::CollectorKey;
use crate::server_url::ServerUrl;
use crate::spool::{SealedBatch, SharedSpool, SpoolError};

/// Lifetime of a push token; well under the server's limit, long enough for clock skew.
pub const TOKEN_TTL_SECS: i64 = 120;
/// Longest wait a `Retry-After` header can impose, so a bogus value cannot stall the spool.
#[cfg(test)]
use wbd_graph::MAX_RETRY_AFTER;

/// Parameters of the retry backoff.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BackoffPolicy {
    pub base: Duration,
    pub cap: Duration,
}

impl Default for BackoffPolicy {
    fn default() -> Self {
        BackoffPolicy { base: Duration::from_secs(1), cap: Duration::from_secs(300) }
    }
}

/// Exponential backoff with full jitter: the n-th consecutive failure waits a uniformly random
/// time in `[0, min(cap, base·2ⁿ)]`, so that many collectors recovering from the same outage do
/// not retry in lockstep.
#[derive(Debug, Clone)]
pub struct Backoff {
    policy: BackoffPolicy,
    failures: u32,
}

impl Backoff {
    pub fn new(policy: BackoffPolicy) -> Self {
        Backoff { policy, failures: 0 }
    }

    /// The wait after one more failure.
    pub fn next_delay(&mut self) -> Duration {
        let ceiling = self.ceiling();
        self.failures = self.failures.saturating_add(1);
        let max_ms = u64::try_from(ceiling.as_millis()).unwrap_or(u64::MAX);
        Duration::from_millis(rand::rng().random_range(0..=max_ms))
    }

    /// The longest wait, for failures that retrying soon cannot fix (revoked credentials).
    pub fn longest_delay(&mut self) -> Duration {
        self.failures = self.failures.saturating_add(1);
        self.policy.cap
    }

    /// Upper bound of the next [`Backoff::next_delay`].
    pub fn ceiling(&self) -> Duration {
        let factor = 2u32.saturating_pow(self.failures.min(31));
        self.policy.base.saturating_mul(factor).min(self.policy.cap)
    }

    pub fn reset(&mut self) {
        self.failures = 0;
    }

    pub fn failures(&self) -> u32 {
        self.failures
    }
}

/// What the server (or the network) said about one push.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PushOutcome {
    /// 202: the server has the batch, and may have asked for something.
    Accepted { commands: Vec<CollectorCommand> },
    /// 429 or 503: try again later, after `retry_after` if the server said.
    Throttled { retry_after: Option<Duration>, detail: String },
    /// Network error, other 5xx, or an unexpected answer: try again with backoff.
    Failed { detail: String },
    /// 401 or 403: our credentials were refused.
    Unauthorized { detail: String },
    /// 400, 409, 413 or 422: the server will never take this batch.
    Rejected { detail: String },
}

/// Sends batches to the server's ingest endpoint.
pub struct Pusher {
    client: reqwest::Client,
    ingest_url: reqwest::Url,
    collector_id: Uuid,
    signing_key: EncodingKey,
}

impl std::fmt::Debug for Pusher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pusher")
            .field("ingest_url", &self.ingest_url.as_str())
            .field("collector_id", &self.collector_id)
            .finish_non_exhaustive()
    }
}

impl Pusher {
    pub fn new(client: reqwest::Client, server: &ServerUrl, collector_id: Uuid, key: &CollectorKey) -> Self {
        Pusher {
            client,
            ingest_url: server.endpoint(INGEST_PATH),
            collector_id,
            signing_key: EncodingKey::from_ed_der(key.pkcs8_der()),
        }
    }

    /// A fresh token for one request carrying `json` (the batch before compression).
    pub fn token(&self, json: &[u8]) -> Result<String, jsonwebtoken::errors::Error> {
        let now = Utc::now().timestamp();
        let claims = CollectorTokenClaims {
            sub: self.collector_id,
            aud: COLLECTOR_TOKEN_AUDIENCE.to_owned(),
            iat: now,
            exp: now + TOKEN_TTL_SECS,
            jti: Uuid::new_v4(),
            body_sha256: Some(body_sha256(json)),
        };
        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = Some(self.collector_id.to_string());
        jsonwebtoken::encode(&header, &claims, &self.signing_key)
    }

    /// Pushes one batch once.
    pub async fn push(&self, batch: &SealedBatch) -> PushOutcome {
        let traceparent = traceparent(batch.batch_id);
        let span = tracing::info_span!("push", batch_id = %batch.batch_id, %traceparent);
        self.send(batch, &traceparent).instrument(span).await
    }

    async fn send(&self, batch: &SealedBatch, traceparent: &str) -> PushOutcome {
        let token = match self.token(&batch.json) {
            Ok(token) => token,
            // Signing with a key that loaded fine cannot really fail; if it does, retrying
            // with backoff and logging is all we can do.
            Err(e) => return PushOutcome::Failed { detail: format!("cannot sign the push token: {e}") },
        };
        let body = match gzip(&batch.json) {
            Ok(body) => body,
            Err(e) => return PushOutcome::Failed { detail: format!("cannot compress the batch: {e}") },
        };
        tracing::debug!(
            results = batch.result_count,
            bytes = batch.json.len(),
            gzipped = body.len(),
            "pushing"
        );
        let sent = self
            .client
            .post(self.ingest_url.clone())
            .header(CONTENT_TYPE, "application/json")
            .header(CONTENT_ENCODING, "gzip")
            .header(AUTHORIZATION, format!("Bearer {token}"))
            .header("traceparent", traceparent)
            .body(body)
            .send()
            .await;
        let response = match sent {
            Ok(response) => response,
            Err(e) => {
                return PushOutcome::Failed { detail: format!("{}: {}", self.ingest_url, error_chain(&e)) };
            }
        };
        let status = response.status();
        let headers = response.headers().clone();
        // The body only matters for the log; a failure to read it does not change the outcome.
        let body = response.bytes().await.map(|b| b.to_vec()).unwrap_or_default();
        classify(status, &headers, &body, Utc::now())
    }
}

/// Maps an HTTP answer to what the spool should do.
pub fn classify(status: StatusCode, headers: &HeaderMap, body: &[u8], now: DateTime<Utc>) -> PushOutcome {
    let detail = || describe_error_response(status, body);
    match status.as_u16() {
        202 => PushOutcome::Accepted { commands: accepted_commands(body) },
        429 | 503 => PushOutcome::Throttled {
            retry_after: headers
                .get(RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| parse_retry_after(v, now)),
            detail: detail(),
        },
        401 | 403 => PushOutcome::Unauthorized { detail: detail() },
        400 | 409 | 413 | 422 => PushOutcome::Rejected { detail: detail() },
        // Any other answer, a 2xx we did not expect included, leaves the batch where it is:
        // only a 202 proves the server has it.
        _ => PushOutcome::Failed { detail: detail() },
    }
}

/// The commands of a 202 answer. A body this build cannot read is not an error: the batch is
/// delivered either way.
fn accepted_commands(body: &[u8]) -> Vec<CollectorCommand> {
    if body.is_empty() {
        return Vec::new();
    }
    match serde_json::from_slice::<IngestAccepted>(body) {
        Ok(accepted) => accepted.commands,
        Err(e) => {
            tracing::warn!(error = %e, "the server's 202 answer is not a readable IngestAccepted; no commands taken");
            Vec::new()
        }
    }
}

/// `Retry-After` as delay-seconds or an HTTP date, capped at one hour (one implementation,
/// shared with the Graph reader).
pub use wbd_graph::parse_retry_after;

/// `00-<trace id>-<span id>-01`: the trace id is the batch id (random, and stable across
/// retries of the same batch), the span id is new for every request.
pub fn traceparent(batch_id: Uuid) -> String {
    let trace_id = if batch_id.is_nil() { Uuid::new_v4() } else { batch_id };
    let mut span_id: u64 = 0;
    while span_id == 0 {
        span_id = rand::rng().random();
    }
    format!("00-{}-{span_id:016x}-01", trace_id.simple())
}

fn gzip(json: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut encoder = GzEncoder::new(Vec::with_capacity(json.len() / 4 + 64), Compression::default());
    encoder.write_all(json)?;
    encoder.finish()
}

/// Why the spool could not be emptied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Holdup {
    /// 429/503: the server asked us to slow down.
    Throttled,
    /// The server could not be reached or failed.
    Unavailable,
    /// The server refused our credentials; retrying soon will not help.
    Unauthorized,
}

/// Where a drain left the spool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DrainStatus {
    /// Nothing is left to push.
    Empty,
    /// Batches remain; try again after `delay`.
    RetryIn { delay: Duration, holdup: Holdup },
}

/// Pushes sealed batches oldest first, then seals the pending results and pushes those, until
/// the spool is empty or the server asks us to wait. Rejected batches are set aside and the
/// drain goes on.
///
/// Results are sealed only once the older batches are gone: during an outage they wait as
/// single files (a small probe batch at most is sealed to find out when the server is back), and
/// are sealed into few large batches when the server is back, rather than into one small batch
/// per probe cycle that would each need their own request.
///
/// Commands the server sent with its answers are appended to `commands`.
pub async fn drain(
    spool: &SharedSpool,
    pusher: &Pusher,
    backoff: &mut Backoff,
    collector: &CollectorInfo,
    commands: &mut Vec<CollectorCommand>,
) -> Result<DrainStatus, SpoolError> {
    loop {
        let batch = match spool.run(|s| s.oldest_batch()).await? {
            Some(batch) => batch,
            None => {
                let info = collector.clone();
                // While the server is failing, seal only a small batch to find out when it is
                // back; the backlog is sealed in large batches once a push went through.
                let in_outage = backoff.failures() > 0;
                let sealed =
                    spool.run(move |s| if in_outage { s.seal_probe(&info) } else { s.seal(&info) }).await?;
                if sealed == 0 {
                    backoff.reset();
                    return Ok(DrainStatus::Empty);
                }
                continue;
            }
        };
        let seq = batch.seq;
        match pusher.push(&batch).await {
            PushOutcome::Accepted { commands: sent } => {
                commands.extend(sent);
                spool.run(move |s| s.delivered(seq)).await?;
                backoff.reset();
                tracing::info!(batch_id = %batch.batch_id, results = batch.result_count, "batch delivered");
            }
            PushOutcome::Rejected { detail } => {
                tracing::error!(
                    batch_id = %batch.batch_id,
                    results = batch.result_count,
                    server = %detail,
                    "the server refused this batch for good; it is kept in spool/rejected/ and the next batch follows"
                );
                spool.run(move |s| s.reject(seq, &detail)).await?;
            }
            PushOutcome::Throttled { retry_after, detail } => {
                let delay = match retry_after {
                    Some(delay) => delay,
                    None => backoff.next_delay(),
                };
                tracing::warn!(batch_id = %batch.batch_id, server = %detail, retry_in = ?delay, "the server asked us to wait");
                return Ok(DrainStatus::RetryIn { delay, holdup: Holdup::Throttled });
            }
            PushOutcome::Failed { detail } => {
                let delay = backoff.next_delay();
                tracing::warn!(
                    batch_id = %batch.batch_id,
                    error = %detail,
                    attempt = backoff.failures(),
                    retry_in = ?delay,
                    "push failed; the batch stays in the spool"
                );
                return Ok(DrainStatus::RetryIn { delay, holdup: Holdup::Unavailable });
            }
            PushOutcome::Unauthorized { detail } => {
                let delay = backoff.longest_delay();
                tracing::error!(
                    batch_id = %batch.batch_id,
                    server = %detail,
                    retry_in = ?delay,
                    "the server refused this collector's credentials: the collector may have been revoked \
                     (re-enroll with `wbd-collector enroll --force`), or this machine's clock may be off \
                     (push tokens are valid for two minutes); batches are kept"
                );
                return Ok(DrainStatus::RetryIn { delay, holdup: Holdup::Unauthorized });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    #[test]
    fn backoff_grows_to_the_cap_and_resets() {
        let mut b =
            Backoff::new(BackoffPolicy { base: Duration::from_millis(100), cap: Duration::from_secs(1) });
        assert_eq!(b.ceiling(), Duration::from_millis(100));
        for _ in 0..3 {
            assert!(b.next_delay() <= b.ceiling());
        }
        assert_eq!(b.ceiling(), Duration::from_millis(800));
        for _ in 0..100 {
            assert!(b.next_delay() <= Duration::from_secs(1));
        }
        assert_eq!(b.ceiling(), Duration::from_secs(1));
        b.reset();
        assert_eq!(b.ceiling(), Duration::from_millis(100));
        assert_eq!(b.longest_delay(), Duration::from_secs(1));
    }

    #[test]
    fn retry_after_takes_seconds_and_dates() {
        let now = DateTime::parse_from_rfc3339("2026-01-01T00:00:00Z").unwrap().with_timezone(&Utc);
        assert_eq!(parse_retry_after("7", now), Some(Duration::from_secs(7)));
        assert_eq!(parse_retry_after("Thu, 01 Jan 2026 00:00:30 GMT", now), Some(Duration::from_secs(30)));
        assert_eq!(parse_retry_after("Wed, 31 Dec 2025 00:00:30 GMT", now), Some(Duration::ZERO));
        assert_eq!(parse_retry_after("999999", now), Some(MAX_RETRY_AFTER));
        assert_eq!(parse_retry_after("soon", now), None);
    }

    #[test]
    fn answers_map_to_spool_actions() {
        let now = Utc::now();
        let mut h = HeaderMap::new();
        assert_eq!(classify(StatusCode::ACCEPTED, &h, b"", now), PushOutcome::Accepted { commands: vec![] });
        let with_command = br#"{"batch_id":"00000000-0000-0000-0000-000000000000","accepted":1,
            "commands":[{"id":"00000000-0000-0000-0000-000000000001","command":"run_probes","probes":["proxy"]}]}"#;
        let PushOutcome::Accepted { commands } = classify(StatusCode::ACCEPTED, &h, with_command, now) else {
            panic!("202 is accepted")
        };
        assert_eq!(commands.len(), 1);
        assert_eq!(
            classify(StatusCode::ACCEPTED, &h, b"not json", now),
            PushOutcome::Accepted { commands: vec![] }
        );
        h.insert(RETRY_AFTER, HeaderValue::from_static("3"));
        assert!(matches!(
            classify(StatusCode::SERVICE_UNAVAILABLE, &h, b"", now),
            PushOutcome::Throttled { retry_after: Some(d), .. } if d == Duration::from_secs(3)
        ));
        let h = HeaderMap::new();
        assert!(matches!(
            classify(StatusCode::TOO_MANY_REQUESTS, &h, b"", now),
            PushOutcome::Throttled { retry_after: None, .. }
        ));
        assert!(matches!(classify(StatusCode::FORBIDDEN, &h, b"", now), PushOutcome::Unauthorized { .. }));
        for s in [400, 409, 413, 422] {
            let s = StatusCode::from_u16(s).unwrap();
            assert!(matches!(classify(s, &h, b"", now), PushOutcome::Rejected { .. }), "{s}");
        }
        for s in [200, 302, 404, 500, 502] {
            let s = StatusCode::from_u16(s).unwrap();
            assert!(matches!(classify(s, &h, b"", now), PushOutcome::Failed { .. }), "{s}");
        }
    }

    #[test]
    fn traceparent_is_w3c_shaped_and_follows_the_batch() {
        let id = Uuid::new_v4();
        let tp = traceparent(id);
        let parts: Vec<&str> = tp.split('-').collect();
        assert_eq!(parts.len(), 4);
        assert_eq!(parts[0], "00");
        assert_eq!(parts[1], id.simple().to_string());
        assert_eq!(parts[2].len(), 16);
        assert_ne!(parts[2], "0000000000000000");
        assert_eq!(parts[3], "01");
    }
}
