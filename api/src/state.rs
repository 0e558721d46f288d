//! What every handler shares.

use std::sync::Arc;

use wbd_notify::sealing::Sealer;
use wbd_notify::ssrf::NetworkPolicy;
use wbd_platform::Settings;
use wbd_queue::Queue;
use wbd_store::Store;

use crate::key_cache::ApiKeyCache;
use crate::tokens::TokenIssuer;

pub struct AppState {
    pub store: Arc<dyn Store>,
    pub queue: Queue,
    pub tokens: TokenIssuer,
    /// API keys seen active recently (see `auth.key_cache_secs`).
    pub api_keys: ApiKeyCache,
    pub settings: Settings,
    /// Seals integration secrets; `None` when no key is configured (integrations cannot be
    /// saved then).
    pub sealer: Option<Arc<Sealer>>,
    /// What integration destinations may be (checked when they are saved).
    pub network: NetworkPolicy,
}
