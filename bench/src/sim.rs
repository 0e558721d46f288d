//! Simulated collectors that do what `wbd-collector` does on the wire: enroll through the API
//! with a fresh Ed25519 key, sign a short-lived EdDSA push token for every request, and push
//! gzipped batches. Plus the admin calls that create their tenants.

use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{Ed25519KeyPair, KeyPair as _};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::Utc;
use futures_util::{StreamExt as _, TryStreamExt as _};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use reqwest::StatusCode;
use reqwest::header::{AUTHORIZATION, CONTENT_ENCODING, CONTENT_TYPE};
use serde_json::{Value, json};
use uuid::Uuid;
use wbd_wire::{COLLECTOR_TOKEN_AUDIENCE, CollectorTokenClaims, ENROLL_PATH, INGEST_PATH};

use crate::workload::{self, Site};

/// An HTTP client for the load: plain HTTP/1.1 over loopback, a bounded timeout on everything.
pub fn http_client(connections: usize) -> anyhow::Result<reqwest::Client> {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .connect_timeout(Duration::from_secs(5))
        .pool_max_idle_per_host(connections.max(1))
        .no_proxy()
        .build()
        .context("building the HTTP client")
}

/// An organisation admin, logged in.
#[derive(Debug, Clone)]
pub struct Admin {
    pub base: String,
    pub token: String,
}

impl Admin {
    pub async fn login(client: &reqwest::Client, base: &str, api_key: &str) -> anyhow::Result<Admin> {
        let res = client
            .post(format!("{base}/v1/auth/token"))
            .json(&json!({ "api_key": api_key }))
            .send()
            .await
            .context("POST /v1/auth/token")?;
        let body = expect_json(res, StatusCode::OK, "log in").await?;
        let token = body["access_token"].as_str().context("no access_token in the login answer")?;
        Ok(Admin { base: base.to_owned(), token: token.to_owned() })
    }

    async fn post(&self, client: &reqwest::Client, path: &str, body: Value) -> anyhow::Result<Value> {
        let res = client
            .post(format!("{}{path}", self.base))
            .bearer_auth(&self.token)
            .json(&body)
            .send()
            .await
            .with_context(|| format!("POST {path}"))?;
        expect_json(res, StatusCode::CREATED, path).await
    }

    /// A new tenant with one collector, enrolled with a fresh key.
    pub async fn enrolled_collector(
        &self,
        client: &reqwest::Client,
        name: &str,
        site: Site,
    ) -> anyhow::Result<SimCollector> {
        let tenant = self.post(client, "/v1/tenants", json!({ "name": name })).await?;
        let tenant_id = tenant["id"].as_str().context("tenant id")?;
        let created = self
            .post(
                client,
                &format!("/v1/tenants/{tenant_id}/collectors"),
                json!({ "name": format!("{name} site"), "push_interval_secs": workload::PUSH_INTERVAL_SECS }),
            )
            .await?;
        let token = created["enrollment_token"].as_str().context("enrollment token")?;
        Ok(SimCollector::enroll(client, &self.base, token, name).await?.with_site(site))
    }

    /// `count` tenants with an enrolled collector each, created a few at a time.
    pub async fn enrolled_collectors(
        &self,
        client: &reqwest::Client,
        prefix: &str,
        count: usize,
        endpoints: usize,
        flip_probability: f64,
        seed: u64,
    ) -> anyhow::Result<Vec<SimCollector>> {
        futures_util::stream::iter(0..count)
            .map(|i| {
                let site = Site::new(seed + i as u64, endpoints, flip_probability);
                async move { self.enrolled_collector(client, &format!("{prefix} {i:04}"), site).await }
            })
            .buffered(8)
            .try_collect()
            .await
    }
}

async fn expect_json(res: reqwest::Response, status: StatusCode, what: &str) -> anyhow::Result<Value> {
    let got = res.status();
    if got != status {
        let body = res.text().await.unwrap_or_default();
        bail!("{what}: expected {status}, got {got}: {body}");
    }
    res.json().await.with_context(|| format!("{what}: reading the JSON answer"))
}

/// One simulated collector: its identity, its key and its site.
pub struct SimCollector {
    pub id: Uuid,
    pub tenant_id: Uuid,
    pub hostname: String,
    pub site: Site,
    key: EncodingKey,
    /// Batches this collector pushed (the next batch's sequence number is this plus one).
    pub pushed: u64,
}

/// What one push answered.
#[derive(Debug, Clone, Copy)]
pub struct PushOutcome {
    pub status: Option<StatusCode>,
    /// From sending the request to having read the answer.
    pub latency: Duration,
    /// When the answer was read.
    pub answered_at: Instant,
    pub results: usize,
}

impl PushOutcome {
    pub fn accepted(&self) -> bool {
        self.status == Some(StatusCode::ACCEPTED)
    }
}

impl SimCollector {
    /// `POST /v1/collectors/enroll` with a new Ed25519 key, as `wbd-collector enroll` does.
    pub async fn enroll(
        client: &reqwest::Client,
        base: &str,
        enrollment_token: &str,
        name: &str,
    ) -> anyhow::Result<SimCollector> {
        let pkcs8 = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new())
            .map_err(|_| anyhow::anyhow!("generating an Ed25519 key failed"))?;
        let pair = Ed25519KeyPair::from_pkcs8(pkcs8.as_ref())
            .map_err(|_| anyhow::anyhow!("reading the new Ed25519 key failed"))?;
        let hostname = format!("AADC-{}", name.replace(' ', "-"));
        let res = client
            .post(format!("{base}{ENROLL_PATH}"))
            .json(&json!({
                "enrollment_token": enrollment_token,
                "public_key": URL_SAFE_NO_PAD.encode(pair.public_key().as_ref()),
                "hostname": hostname,
                "version": "0.1.0",
            }))
            .send()
            .await
            .context("POST /v1/collectors/enroll")?;
        let body = expect_json(res, StatusCode::CREATED, "enroll").await?;
        Ok(SimCollector {
            id: body["collector_id"].as_str().context("collector_id")?.parse()?,
            tenant_id: body["tenant_id"].as_str().context("tenant_id")?.parse()?,
            hostname,
            site: Site::new(0, 1, 0.0),
            key: EncodingKey::from_ed_der(pkcs8.as_ref()),
            pushed: 0,
        })
    }

    pub fn with_site(mut self, site: Site) -> SimCollector {
        self.site = site;
        self
    }

    /// A push token as the collector signs it: EdDSA, `kid` = collector id, two minutes.
    pub fn token(&self, body_sha256: &str) -> anyhow::Result<String> {
        let now = Utc::now().timestamp();
        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = Some(self.id.to_string());
        let claims = CollectorTokenClaims {
            sub: self.id,
            aud: COLLECTOR_TOKEN_AUDIENCE.into(),
            iat: now,
            exp: now + 120,
            jti: Uuid::new_v4(),
            body_sha256: Some(body_sha256.to_owned()),
        };
        jsonwebtoken::encode(&header, &claims, &self.key).context("signing the push token")
    }

    /// Seals the next probe cycle into a gzipped batch body; with `marker`, the batch carries
    /// its sequence number in the marker endpoint. Returns (body, results, sequence).
    pub fn next_body(&mut self, marker: bool) -> anyhow::Result<(workload::PushBody, usize, u64)> {
        let sequence = self.pushed + 1;
        let now = Utc::now();
        let results = if marker { self.site.cycle_with_marker(now, sequence) } else { self.site.cycle(now) };
        let count = results.len();
        let body = workload::gzip_json(&workload::batch(results, &self.hostname))?;
        Ok((body, count, sequence))
    }

    /// One `POST /v1/ingest`, timed. A transport error is an outcome (no status), not an error.
    pub async fn push(
        &mut self,
        client: &reqwest::Client,
        base: &str,
        body: workload::PushBody,
        results: usize,
    ) -> anyhow::Result<PushOutcome> {
        let token = self.token(&body.sha256)?;
        let started = Instant::now();
        let sent = client
            .post(format!("{base}{INGEST_PATH}"))
            .header(CONTENT_TYPE, "application/json")
            .header(CONTENT_ENCODING, "gzip")
            .header(AUTHORIZATION, format!("Bearer {token}"))
            .body(body.gzipped)
            .send()
            .await;
        let status = match sent {
            Ok(res) => {
                let status = res.status();
                // Read the answer: the request is done when the client has it.
                let _ = res.bytes().await;
                Some(status)
            }
            Err(_) => None,
        };
        let answered_at = Instant::now();
        if status == Some(StatusCode::ACCEPTED) {
            self.pushed += 1;
        }
        Ok(PushOutcome { status, latency: answered_at - started, answered_at, results })
    }
}
