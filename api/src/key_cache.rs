//! The API keys an API process saw active recently, so that a request with an access token does
//! not read its key from the database every time. The bound on trusting an entry is
//! `auth.key_cache_secs`: a key revoked through this process is forgotten at once, a key revoked
//! through another API process stops working here within that bound. Only active keys are kept;
//! a refused key is looked up again on every request.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use wbd_store::{ApiKeyId, OrgId, Role};

/// Entries kept at most; a process serving more keys than this reads the rest from the store.
const MAX_ENTRIES: usize = 10_000;

pub struct ApiKeyCache {
    ttl: Duration,
    entries: Mutex<HashMap<ApiKeyId, Seen>>,
}

#[derive(Clone, Copy)]
struct Seen {
    org: OrgId,
    role: Role,
    until: Instant,
}

impl ApiKeyCache {
    pub fn new(ttl: Duration) -> Self {
        ApiKeyCache { ttl, entries: Mutex::new(HashMap::new()) }
    }

    /// The organisation and role of `key` if it was seen active less than the bound ago.
    pub fn get(&self, key: ApiKeyId, now: Instant) -> Option<(OrgId, Role)> {
        let entries = self.entries.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        entries.get(&key).filter(|seen| now < seen.until).map(|seen| (seen.org, seen.role))
    }

    /// Remembers that `key` was active at `now`.
    pub fn put(&self, key: ApiKeyId, org: OrgId, role: Role, now: Instant) {
        if self.ttl.is_zero() {
            return;
        }
        let mut entries = self.entries.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if entries.len() >= MAX_ENTRIES {
            entries.retain(|_, seen| now < seen.until);
            if entries.len() >= MAX_ENTRIES {
                entries.clear();
            }
        }
        entries.insert(key, Seen { org, role, until: now + self.ttl });
    }

    /// Forgets `key` (revoked through this process).
    pub fn forget(&self, key: ApiKeyId) {
        self.entries.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).remove(&key);
    }
}

#[cfg(test)]
mod tests {
    use uuid::Uuid;

    use super::*;

    fn ids() -> (ApiKeyId, OrgId) {
        (ApiKeyId(Uuid::new_v4()), OrgId(Uuid::new_v4()))
    }

    #[test]
    fn an_entry_is_trusted_for_the_bound_only() {
        let cache = ApiKeyCache::new(Duration::from_secs(10));
        let (key, org) = ids();
        let t0 = Instant::now();
        assert_eq!(cache.get(key, t0), None);
        cache.put(key, org, Role::Technician, t0);
        assert_eq!(cache.get(key, t0 + Duration::from_secs(9)), Some((org, Role::Technician)));
        assert_eq!(cache.get(key, t0 + Duration::from_secs(10)), None, "no longer than the bound");
    }

    #[test]
    fn a_forgotten_key_is_read_again_and_a_zero_bound_keeps_nothing() {
        let cache = ApiKeyCache::new(Duration::from_secs(10));
        let (key, org) = ids();
        let t0 = Instant::now();
        cache.put(key, org, Role::OrgAdmin, t0);
        cache.forget(key);
        assert_eq!(cache.get(key, t0), None);

        let off = ApiKeyCache::new(Duration::ZERO);
        off.put(key, org, Role::OrgAdmin, t0);
        assert_eq!(off.get(key, t0), None);
    }

    #[test]
    fn it_stays_bounded() {
        let cache = ApiKeyCache::new(Duration::from_secs(10));
        let t0 = Instant::now();
        for _ in 0..MAX_ENTRIES + 5 {
            let (key, org) = ids();
            cache.put(key, org, Role::ReadOnly, t0);
        }
        assert!(cache.entries.lock().unwrap().len() <= MAX_ENTRIES);
    }
}
