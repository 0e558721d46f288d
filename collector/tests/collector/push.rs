//! Pushing batches to a scripted server: what each answer does to the spool, and what the
//! server receives.

use std::io::Read;
use std::time::Duration;

use flate2::read::GzDecoder;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use uuid::Uuid;
use wbd_collector::http_client::server_client;
use wbd_collector::identity::CollectorKey;
use wbd_collector::push::{Backoff, BackoffPolicy, DrainStatus, Holdup, Pusher, drain};
use wbd_collector::server_url::ServerUrl;
use wbd_collector::spool::{SharedSpool, Spool};
use wbd_wire::{COLLECTOR_TOKEN_AUDIENCE, CollectorInfo, CollectorTokenClaims, IngestBatch, SCHEMA_VERSION};

use crate::helpers::*;

const BIG: u64 = 64 * 1024 * 1024;
const POLICY: BackoffPolicy =
    BackoffPolicy { base: Duration::from_millis(10), cap: Duration::from_millis(50) };

struct Fixture {
    _dir: tempfile::TempDir,
    spool_dir: std::path::PathBuf,
    spool: SharedSpool,
    pusher: Pusher,
    key: CollectorKey,
    collector_id: Uuid,
    server: MockServer,
    backoff: Backoff,
}

impl Fixture {
    async fn new(default: Reply) -> Fixture {
        init_test_log();
        let server = MockServer::start(default).await;
        Self::with_server(server)
    }

    fn with_server(server: MockServer) -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let spool_dir = dir.path().join("spool");
        let key = CollectorKey::generate().unwrap();
        let collector_id = Uuid::new_v4();
        let url = ServerUrl::parse(&server.base_url).unwrap();
        let pusher = Pusher::new(server_client(&[], None).unwrap(), &url, collector_id, &key);
        let spool = SharedSpool::new(Spool::open(&spool_dir, BIG).unwrap());
        Fixture {
            _dir: dir,
            spool_dir,
            spool,
            pusher,
            key,
            collector_id,
            server,
            backoff: Backoff::new(POLICY),
        }
    }

    /// Spools results and seals them into one batch.
    async fn sealed_batch(&self, subjects: &[&str]) {
        let results: Vec<_> = subjects.iter().map(|s| sample_result(s)).collect();
        self.spool
            .run(move |s| {
                for r in &results {
                    s.append(r)?;
                }
                s.seal(&info())
            })
            .await
            .unwrap();
    }

    /// Spools results without sealing them (what a probe cycle does).
    async fn spooled(&self, subjects: &[&str]) {
        let results: Vec<_> = subjects.iter().map(|s| sample_result(s)).collect();
        self.spool
            .run(move |s| {
                for r in &results {
                    s.append(r)?;
                }
                Ok(())
            })
            .await
            .unwrap();
    }

    async fn drain(&mut self) -> DrainStatus {
        drain(&self.spool, &self.pusher, &mut self.backoff, &info(), &mut Vec::new()).await.unwrap()
    }

    async fn pending_batches(&self) -> usize {
        self.spool.run(|s| Ok(s.pending_batches())).await.unwrap()
    }
}

fn info() -> CollectorInfo {
    CollectorInfo {
        version: "test".into(),
        hostname: "site-a".into(),
        os: "linux".into(),
        push_interval_secs: 300,
        spool_dropped: 0,
    }
}

fn accepted(batch_id: Uuid, n: u32) -> Reply {
    Reply::json(202, serde_json::json!({"batch_id": batch_id, "accepted": n}).to_string())
}

/// The batch inside a recorded push (gzip-compressed JSON).
pub fn decode_batch(req: &Recorded) -> IngestBatch {
    assert_eq!(req.headers.get("content-encoding").map(String::as_str), Some("gzip"));
    assert_eq!(req.headers.get("content-type").map(String::as_str), Some("application/json"));
    let mut json = Vec::new();
    GzDecoder::new(req.body.as_slice()).read_to_end(&mut json).unwrap();
    serde_json::from_slice(&json).unwrap()
}

#[tokio::test]
async fn retry_after_is_honoured_and_the_batch_is_delivered_once() {
    let mut f = Fixture::new(Reply::new(500)).await;
    f.server.script([
        Reply::problem(503, "Service Unavailable", "ingest paused", "unavailable").header("Retry-After", "7"),
        accepted(Uuid::nil(), 2),
    ]);
    f.sealed_batch(&["a:443", "b:443"]).await;

    let first = f.drain().await;
    assert_eq!(first, DrainStatus::RetryIn { delay: Duration::from_secs(7), holdup: Holdup::Throttled });
    assert_eq!(f.pending_batches().await, 1);

    assert_eq!(f.drain().await, DrainStatus::Empty);
    assert_eq!(f.pending_batches().await, 0);
    let requests = f.server.requests();
    assert_eq!(requests.len(), 2);
    let (b1, b2) = (decode_batch(&requests[0]), decode_batch(&requests[1]));
    assert_eq!(b1.batch_id, b2.batch_id, "a retry must reuse the batch id");
    assert_eq!(b1, b2);
    assert!(std::fs::read_dir(f.spool_dir.join("batches")).unwrap().next().is_none());

    // Nothing left: a further drain sends nothing.
    assert_eq!(f.drain().await, DrainStatus::Empty);
    assert_eq!(f.server.requests().len(), 2);
}

#[tokio::test]
async fn the_push_is_signed_gzipped_and_traced() {
    let mut f = Fixture::new(accepted(Uuid::nil(), 1)).await;
    f.sealed_batch(&["a:443"]).await;
    f.sealed_batch(&["b:443"]).await;
    assert_eq!(f.drain().await, DrainStatus::Empty);

    let requests = f.server.requests();
    assert_eq!(requests.len(), 2);
    let mut jtis = Vec::new();
    for req in &requests {
        assert_eq!(req.method, "POST");
        assert_eq!(req.path, wbd_wire::INGEST_PATH);

        let batch = decode_batch(req);
        assert_eq!(batch.schema_version, SCHEMA_VERSION);
        assert_eq!(batch.collector.hostname, "site-a");
        assert_eq!(batch.results.len(), 1);

        let token = req.headers["authorization"].strip_prefix("Bearer ").unwrap();
        let header = jsonwebtoken::decode_header(token).unwrap();
        assert_eq!(header.alg, Algorithm::EdDSA);
        assert_eq!(header.kid, Some(f.collector_id.to_string()));
        let mut validation = Validation::new(Algorithm::EdDSA);
        validation.set_audience(&[COLLECTOR_TOKEN_AUDIENCE]);
        // The server knows the raw public key sent at enrollment; both encodings verify.
        let claims = jsonwebtoken::decode::<CollectorTokenClaims>(
            token,
            &DecodingKey::from_ed_der(f.key.public_key()),
            &validation,
        )
        .unwrap()
        .claims;
        jsonwebtoken::decode::<CollectorTokenClaims>(
            token,
            &DecodingKey::from_ed_components(&f.key.public_key_b64()).unwrap(),
            &validation,
        )
        .unwrap();
        assert_eq!(claims.sub, f.collector_id);
        assert_eq!(claims.aud, COLLECTOR_TOKEN_AUDIENCE);
        assert_eq!(claims.exp - claims.iat, 120);
        assert!(claims.exp - claims.iat <= wbd_wire::COLLECTOR_TOKEN_MAX_TTL_SECS);
        jtis.push(claims.jti);

        let traceparent = &req.headers["traceparent"];
        let parts: Vec<&str> = traceparent.split('-').collect();
        assert_eq!(parts.len(), 4, "{traceparent}");
        assert_eq!(parts[0], "00");
        assert_eq!(parts[1], batch.batch_id.simple().to_string());
        assert_eq!(parts[2].len(), 16);
        assert_eq!(parts[3], "01");
    }
    assert_ne!(jtis[0], jtis[1], "every request gets a fresh token");

    // A token signed with another key does not verify.
    let other = CollectorKey::generate().unwrap();
    let token = requests[0].headers["authorization"].strip_prefix("Bearer ").unwrap();
    let mut validation = Validation::new(Algorithm::EdDSA);
    validation.set_audience(&[COLLECTOR_TOKEN_AUDIENCE]);
    assert!(
        jsonwebtoken::decode::<CollectorTokenClaims>(
            token,
            &DecodingKey::from_ed_der(other.public_key()),
            &validation
        )
        .is_err()
    );
}

#[tokio::test]
async fn a_refused_batch_is_set_aside_and_the_next_one_delivered() {
    let mut f = Fixture::new(accepted(Uuid::nil(), 1)).await;
    f.server.script([Reply::problem(
        422,
        "Invalid batch",
        "results[0].probe: unknown kind",
        "invalid_batch",
    )]);
    f.sealed_batch(&["poisoned:443"]).await;
    f.sealed_batch(&["fine:443"]).await;

    assert_eq!(f.drain().await, DrainStatus::Empty);

    let requests = f.server.requests();
    assert_eq!(requests.len(), 2);
    assert_eq!(decode_batch(&requests[0]).results[0].subject, "poisoned:443");
    assert_eq!(decode_batch(&requests[1]).results[0].subject, "fine:443");
    let rejected_dir = f.spool_dir.join("rejected");
    let mut names: Vec<String> = std::fs::read_dir(&rejected_dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names.len(), 2, "{names:?}");
    let reason = std::fs::read_to_string(rejected_dir.join(&names[1])).unwrap();
    assert!(reason.contains("422") && reason.contains("unknown kind"), "{reason}");
    let kept: IngestBatch =
        serde_json::from_slice(&std::fs::read(rejected_dir.join(&names[0])).unwrap()).unwrap();
    assert_eq!(kept.batch_id, decode_batch(&requests[0]).batch_id);
}

#[tokio::test]
async fn conflicts_and_oversize_answers_are_rejected_too() {
    let mut f = Fixture::new(accepted(Uuid::nil(), 1)).await;
    f.server.script([Reply::new(409), Reply::new(413), Reply::new(400)]);
    for s in ["a:443", "b:443", "c:443", "d:443"] {
        f.sealed_batch(&[s]).await;
    }
    assert_eq!(f.drain().await, DrainStatus::Empty);
    assert_eq!(f.server.requests().len(), 4);
    let rejected = std::fs::read_dir(f.spool_dir.join("rejected")).unwrap().count();
    assert_eq!(rejected, 6, "three batches, each with its reason file");
}

#[tokio::test]
async fn refused_credentials_keep_the_batch_and_wait_the_longest() {
    let mut f =
        Fixture::new(Reply::problem(401, "Unauthorized", "collector revoked", "collector_revoked")).await;
    f.sealed_batch(&["a:443"]).await;

    let status = f.drain().await;

    assert_eq!(status, DrainStatus::RetryIn { delay: POLICY.cap, holdup: Holdup::Unauthorized });
    assert_eq!(f.pending_batches().await, 1);
    // 403 is treated the same way.
    f.server.script([Reply::new(403)]);
    assert!(matches!(f.drain().await, DrainStatus::RetryIn { holdup: Holdup::Unauthorized, .. }));
}

#[tokio::test]
async fn server_errors_back_off_with_jitter_and_keep_the_batch() {
    let mut f = Fixture::new(Reply::new(500)).await;
    f.sealed_batch(&["a:443"]).await;
    for _ in 0..5 {
        match f.drain().await {
            DrainStatus::RetryIn { delay, holdup: Holdup::Unavailable } => assert!(delay <= POLICY.cap),
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(f.pending_batches().await, 1);
    assert_eq!(f.server.requests().len(), 5);
    // 429 without Retry-After also backs off.
    f.server.script([Reply::new(429)]);
    assert!(matches!(f.drain().await, DrainStatus::RetryIn { holdup: Holdup::Throttled, .. }));
}

#[tokio::test]
async fn results_from_an_outage_are_sealed_together_once_the_backlog_is_through() {
    let mut f = Fixture::new(accepted(Uuid::nil(), 1)).await;
    f.server.script([Reply::new(502), Reply::new(502)]);
    f.sealed_batch(&["before:443"]).await;
    f.spooled(&["during-1:443"]).await;
    assert!(matches!(f.drain().await, DrainStatus::RetryIn { .. }));
    f.spooled(&["during-2:443"]).await;
    assert!(matches!(f.drain().await, DrainStatus::RetryIn { .. }));
    let unsealed = f.spool.run(|s| Ok((s.pending_results(), s.pending_batches()))).await.unwrap();
    assert_eq!(unsealed, (2, 1), "new results wait unsealed behind the undelivered batch");

    assert_eq!(f.drain().await, DrainStatus::Empty);

    let requests = f.server.requests();
    assert_eq!(requests.len(), 4);
    let subjects = |r: &Recorded| decode_batch(r).results.into_iter().map(|r| r.subject).collect::<Vec<_>>();
    assert_eq!(subjects(&requests[2]), ["before:443"]);
    assert_eq!(subjects(&requests[3]), ["during-1:443", "during-2:443"]);
}

#[tokio::test]
async fn an_unreachable_server_keeps_the_batch() {
    init_test_log();
    let port = closed_port().await;
    let server = MockServer::start(Reply::new(202)).await;
    let mut f = Fixture::with_server(server);
    let url = ServerUrl::parse(&format!("http://127.0.0.1:{port}")).unwrap();
    f.pusher = Pusher::new(server_client(&[], None).unwrap(), &url, f.collector_id, &f.key);
    f.sealed_batch(&["a:443"]).await;

    assert!(matches!(f.drain().await, DrainStatus::RetryIn { holdup: Holdup::Unavailable, .. }));
    assert_eq!(f.pending_batches().await, 1);
}
