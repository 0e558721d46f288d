//! What every handler shares.

use std::sync::Arc;

use wbd_notify::sealing::Sealer;
use wbd_notify::ssrf::NetworkPolicy;
use wbd_platform::Settings;
use wbd_queue::Queue;
use wbd_store::Store;

use crate::consent_state::ConsentStateKey;
use crate::key_cache::ApiKeyCache;
use crate::rate_limit::RateLimiter;
use crate::tokens::TokenIssuer;

pub struct AppState {
    pub store: Arc<dyn Store>,
    pub queue: Queue,
    pub tokens: TokenIssuer,
    /// API keys seen active recently (see `auth.key_cache_secs`).
    pub api_keys: ApiKeyCache,
    /// `rate_limits.*`: shared through the database on PostgreSQL, in memory on SQLite.
    pub rate_limits: Arc<RateLimiter>,
    pub settings: Settings,
    /// Seals integration secrets; `None` when no key is configured (integrations cannot be
    /// saved then).
    pub sealer: Option<Arc<Sealer>>,
    /// What integration destinations may be (checked when they are saved).
    pub network: NetworkPolicy,
    /// Signs and checks the `state` of the Graph admin-consent flow.
    pub consent_states: ConsentStateKey,
}
