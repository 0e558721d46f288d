//! Rate limits (`rate_limits.*`): per client address and per presented credential on the two
//! operations that take a secret (token exchange and enrollment), per organisation on the
//! authenticated API, per collector on pushes. Beyond a limit the answer is `429 rate_limited`
//! with `Retry-After`.
//!
//! On PostgreSQL each limit is kept in the database, so every API process shares it (an
//! attacker gains nothing by spreading over the processes behind a load balancer). The embedded
//! server is the only process on its SQLite file: it keeps its limits in memory and spares the
//! single writer a write per request. Both apply the same rule ([`RateLimit::take`]).

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix_web::HttpRequest;
use chrono::{DateTime, Utc};
use uuid::Uuid;
use wbd_notify::ssrf::IpNet;
use wbd_platform::settings::RateLimitSettings;
use wbd_store::{Backend, CollectorId, OrgId, PushTokenUse, RateDecision, RateLimit, Store};

use crate::error::{ApiError, ApiResult};

/// Things remembered in memory at most; beyond it the ones whose allowance is whole again are
/// forgotten, and if every one is still limited the oldest-limited half goes (a flood of
/// addresses cannot grow the map without bound).
const MAX_LOCAL_ENTRIES: usize = 100_000;

/// What a request is counted against.
#[derive(Debug, Clone, Copy)]
pub enum Subject<'a> {
    /// A client address on token exchange and enrollment.
    Address(IpAddr),
    /// The digest of a presented API key or enrollment token.
    Credential(&'a str),
    Organisation(OrgId),
    Collector(CollectorId),
}

impl Subject<'_> {
    fn bucket(&self) -> String {
        match self {
            Subject::Address(ip) => format!("addr:{}", address_group(*ip)),
            Subject::Credential(digest) => format!("credential:{digest}"),
            Subject::Organisation(org) => format!("org:{org}"),
            Subject::Collector(id) => format!("collector:{id}"),
        }
    }

    fn limit(&self, settings: &RateLimitSettings) -> Option<RateLimit> {
        RateLimit::per_minute(match self {
            Subject::Address(_) => settings.auth_per_address,
            Subject::Credential(_) => settings.auth_per_credential,
            Subject::Organisation(_) => settings.api_per_organisation,
            Subject::Collector(_) => settings.ingest_per_collector,
        })
    }

    /// The limit's name in metrics (`wbd_rate_limited_total{limit}`).
    fn name(&self) -> &'static str {
        match self {
            Subject::Address(_) => "address",
            Subject::Credential(_) => "credential",
            Subject::Organisation(_) => "organisation",
            Subject::Collector(_) => "collector",
        }
    }

    fn refusal(&self) -> &'static str {
        match self {
            Subject::Address(_) => "too many sign-in and enrollment attempts from this address",
            Subject::Credential(_) => "too many attempts with this credential",
            Subject::Organisation(_) => "your organisation has sent too many requests",
            Subject::Collector(_) => "this collector has pushed too often",
        }
    }
}

/// An IPv4 client counts by its address; an IPv6 client by its /64, the smallest network a site
/// is normally given (one host can use any address in it).
fn address_group(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(v6) => IpAddr::V6(Ipv6Addr::from(u128::from(v6) & (u128::MAX << 64))),
        v4 => v4,
    }
}

pub struct RateLimiter {
    settings: RateLimitSettings,
    trusted_proxies: Vec<IpNet>,
    /// `Some` on PostgreSQL: the limits live in the database.
    shared: Option<Arc<dyn Store>>,
    local: Mutex<HashMap<String, i64>>,
}

impl RateLimiter {
    /// `trusted_proxies` are `server.trusted_proxies`; an entry that does not parse is an error
    /// that names it.
    pub fn new(
        settings: &RateLimitSettings,
        trusted_proxies: &[String],
        store: Arc<dyn Store>,
    ) -> Result<RateLimiter, String> {
        let trusted_proxies = trusted_proxies
            .iter()
            .map(|entry| {
                IpNet::parse(entry).map_err(|why| format!("server.trusted_proxies `{entry}`: {why}"))
            })
            .collect::<Result<_, _>>()?;
        let shared = (store.backend() == Backend::Postgres).then_some(store);
        Ok(RateLimiter { settings: settings.clone(), trusted_proxies, shared, local: Mutex::default() })
    }

    /// Whether the limits are kept in the database (shared by every API process).
    pub fn is_shared(&self) -> bool {
        self.shared.is_some()
    }

    /// Counts one request against `subject`: `Ok` within its limit (or when it has none), else
    /// `429 rate_limited` with `Retry-After`.
    pub async fn check(&self, subject: Subject<'_>, now: DateTime<Utc>) -> ApiResult<()> {
        let Some(limit) = subject.limit(&self.settings) else { return Ok(()) };
        let bucket = subject.bucket();
        let decision = match &self.shared {
            Some(store) => store.take_rate_limit(&bucket, limit, now).await?,
            None => self.take_local(&bucket, limit, now.timestamp_micros()),
        };
        Self::decided(subject, &bucket, decision)
    }

    /// Records a push token's use (see [`Store::use_push_token`]) and counts the push against
    /// its collector's limit: `Ok(false)` for a replay, which counts nothing; `429 rate_limited`
    /// beyond the limit. On PostgreSQL the two are one statement.
    pub async fn use_push_token(
        &self,
        store: &dyn Store,
        collector: CollectorId,
        jti: Uuid,
        expires_at: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> ApiResult<bool> {
        let subject = Subject::Collector(collector);
        if let (Some(shared), Some(limit)) = (&self.shared, subject.limit(&self.settings)) {
            let bucket = subject.bucket();
            return match shared
                .use_push_token_counted(collector, jti, expires_at, &bucket, limit, now)
                .await?
            {
                PushTokenUse::Replayed => Ok(false),
                PushTokenUse::Used(decision) => Self::decided(subject, &bucket, decision).map(|()| true),
            };
        }
        if !store.use_push_token(collector, jti, expires_at, now).await? {
            return Ok(false);
        }
        self.check(subject, now).await.map(|()| true)
    }

    fn decided(subject: Subject<'_>, bucket: &str, decision: RateDecision) -> ApiResult<()> {
        match decision {
            RateDecision::Allowed => Ok(()),
            RateDecision::Refused { retry_after } => {
                let secs = retry_after_secs(retry_after);
                tracing::warn!(bucket, retry_after_secs = secs, "rate limit reached");
                metrics::counter!("wbd_rate_limited_total", "limit" => subject.name()).increment(1);
                Err(ApiError::rate_limited(format!("{}; retry in {secs} s", subject.refusal()), secs))
            }
        }
    }

    /// Token exchange and enrollment: one attempt from the request's client address with the
    /// secret whose digest is `digest` (the address is checked first, so a flood of made-up
    /// secrets from one address is stopped there).
    pub async fn check_secret_attempt(
        &self,
        req: &HttpRequest,
        digest: &str,
        now: DateTime<Utc>,
    ) -> ApiResult<()> {
        if let Some(address) = self.client_address(req) {
            self.check(Subject::Address(address), now).await?;
        }
        self.check(Subject::Credential(digest), now).await
    }

    fn take_local(&self, bucket: &str, limit: RateLimit, now: i64) -> RateDecision {
        let mut entries = self.local.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        match limit.take(entries.get(bucket).copied(), now) {
            Ok(tat) => {
                if entries.len() >= MAX_LOCAL_ENTRIES && !entries.contains_key(bucket) {
                    forget_local(&mut entries, now);
                }
                entries.insert(bucket.to_owned(), tat);
                RateDecision::Allowed
            }
            Err(retry_after) => RateDecision::Refused { retry_after },
        }
    }

    /// Forgets what no longer limits anything (in the database on PostgreSQL, which every API
    /// process does now and then; in memory otherwise).
    pub async fn forget_expired(&self, now: DateTime<Utc>) -> wbd_store::Result<u64> {
        match &self.shared {
            Some(store) => store.forget_rate_limits(now).await,
            None => {
                let mut entries = self.local.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                let before = entries.len();
                entries.retain(|_, tat| *tat > now.timestamp_micros());
                Ok((before - entries.len()) as u64)
            }
        }
    }

    /// The address a request comes from: its peer, or, when the peer is a trusted proxy, the
    /// nearest address in `X-Forwarded-For` that is not one (proxies append, so the addresses
    /// to the left of the last untrusted one are the client's to invent).
    pub fn client_address(&self, req: &HttpRequest) -> Option<IpAddr> {
        let peer = req.peer_addr()?.ip().to_canonical();
        if !self.is_trusted(peer) {
            return Some(peer);
        }
        let mut client = peer;
        let forwarded = req.headers().get_all("x-forwarded-for").filter_map(|v| v.to_str().ok());
        let hops: Vec<&str> = forwarded.flat_map(|v| v.split(',')).map(str::trim).collect();
        for hop in hops.iter().rev() {
            match hop.parse::<IpAddr>() {
                Ok(ip) => {
                    client = ip.to_canonical();
                    if !self.is_trusted(client) {
                        break;
                    }
                }
                // A hop we cannot read: count the request against the last one we could.
                Err(_) => break,
            }
        }
        Some(client)
    }

    fn is_trusted(&self, ip: IpAddr) -> bool {
        self.trusted_proxies.iter().any(|net| net.contains(ip))
    }
}

/// When the map is full: forgets the things whose allowance is whole again, and when that is not
/// enough, the half that will be free soonest (a flood of new addresses cannot exhaust memory).
fn forget_local(entries: &mut HashMap<String, i64>, now: i64) {
    entries.retain(|_, tat| *tat > now);
    if entries.len() >= MAX_LOCAL_ENTRIES {
        let mut tats: Vec<i64> = entries.values().copied().collect();
        let (_, median, _) = tats.select_nth_unstable(entries.len() / 2);
        let median = *median;
        entries.retain(|_, tat| *tat > median);
    }
}

/// `Retry-After` in whole seconds, never 0 (a client told 0 would come straight back).
fn retry_after_secs(wait: Duration) -> u64 {
    wait.as_secs() + u64::from(wait.subsec_nanos() > 0 || wait.is_zero())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_ipv6_client_counts_by_its_64() {
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:bbbb::2".parse().unwrap();
        let other: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(address_group(a), address_group(b));
        assert_ne!(address_group(a), address_group(other));
        let mapped: IpAddr = "::ffff:192.0.2.7".parse().unwrap();
        assert_eq!(address_group(mapped), "192.0.2.7".parse::<IpAddr>().unwrap());
    }

    #[test]
    fn retry_after_rounds_up_and_is_never_zero() {
        assert_eq!(retry_after_secs(Duration::from_millis(19_001)), 20);
        assert_eq!(retry_after_secs(Duration::from_secs(20)), 20);
        assert_eq!(retry_after_secs(Duration::ZERO), 1);
    }

    #[test]
    fn a_full_map_forgets_what_became_free_first() {
        let mut entries: HashMap<String, i64> =
            (0..MAX_LOCAL_ENTRIES as i64).map(|i| (format!("addr:{i}"), 1_000 + i)).collect();
        forget_local(&mut entries, 0);
        assert!(entries.len() <= MAX_LOCAL_ENTRIES / 2);
        assert!(entries.contains_key(&format!("addr:{}", MAX_LOCAL_ENTRIES - 1)), "the busiest stay");
        assert!(!entries.contains_key("addr:0"));
    }
}
