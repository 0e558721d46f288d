//! What this process keeps per tenant between evaluations (its rule configuration, its decoded
//! fact outputs), bounded: each entry weighs something (one configuration, so many outputs), and
//! when the weight kept passes the bound, the half of the tenants put least recently is dropped.
//! A sweep then costs one pass per half-bound's worth of puts at most.

use std::collections::HashMap;
use std::sync::Mutex;

use wbd_store::TenantScope;

pub(crate) struct KeptPerTenant<T> {
    inner: Mutex<Option<Inner<T>>>,
    max_weight: usize,
}

struct Inner<T> {
    by_tenant: HashMap<TenantScope, Entry<T>>,
    weight: usize,
    /// Counts puts: each entry's stamp says how recently it was put.
    puts: u64,
}

struct Entry<T> {
    value: T,
    weight: usize,
    stamp: u64,
}

impl<T: Clone> KeptPerTenant<T> {
    pub(crate) const fn new(max_weight: usize) -> Self {
        Self { inner: Mutex::new(None), max_weight }
    }

    /// The tenant's kept value, if `usable` accepts it.
    pub(crate) fn get(&self, scope: TenantScope, usable: impl FnOnce(&T) -> bool) -> Option<T> {
        let inner = self.inner.lock().ok()?;
        inner.as_ref()?.by_tenant.get(&scope).map(|e| &e.value).filter(|v| usable(v)).cloned()
    }

    /// Keeps `value` for the tenant, unless `keep_old` prefers the value kept now.
    pub(crate) fn put(&self, scope: TenantScope, value: T, weight: usize, keep_old: impl FnOnce(&T) -> bool) {
        let Ok(mut inner) = self.inner.lock() else { return };
        let inner = inner.get_or_insert_with(|| Inner { by_tenant: HashMap::new(), weight: 0, puts: 0 });
        if inner.by_tenant.get(&scope).is_some_and(|old| keep_old(&old.value)) {
            return;
        }
        inner.puts += 1;
        let entry = Entry { value, weight, stamp: inner.puts };
        if let Some(old) = inner.by_tenant.insert(scope, entry) {
            inner.weight -= old.weight;
        }
        inner.weight += weight;
        if inner.weight > self.max_weight && inner.by_tenant.len() > 1 {
            let mut stamps: Vec<u64> = inner.by_tenant.values().map(|e| e.stamp).collect();
            let middle = stamps.len() / 2;
            let (_, median, _) = stamps.select_nth_unstable(middle);
            let median = *median;
            inner.by_tenant.retain(|_, e| e.stamp >= median);
            inner.weight = inner.by_tenant.values().map(|e| e.weight).sum();
        }
    }
}

#[cfg(test)]
mod tests {
    use wbd_store::{OrgId, TenantId};

    use super::*;

    fn scope() -> TenantScope {
        TenantScope { org_id: OrgId(uuid::Uuid::new_v4()), tenant_id: TenantId(uuid::Uuid::new_v4()) }
    }

    #[test]
    fn when_the_weight_passes_the_bound_the_least_recently_put_half_goes() {
        let kept = KeptPerTenant::new(100);
        let tenants: Vec<TenantScope> = (0..10).map(|_| scope()).collect();
        for tenant in &tenants {
            kept.put(*tenant, 1, 10, |_| false);
        }
        assert!(tenants.iter().all(|t| kept.get(*t, |_| true).is_some()), "100 is within the bound");
        // Putting a tenant again moves it to the newest, and only its new weight counts.
        kept.put(tenants[0], 2, 10, |_| false);
        assert_eq!(kept.get(tenants[0], |_| true), Some(2));
        let newcomer = scope();
        kept.put(newcomer, 3, 10, |_| false);
        assert_eq!(kept.get(newcomer, |_| true), Some(3));
        assert_eq!(kept.get(tenants[0], |_| true), Some(2), "put recently, so kept");
        assert!(kept.get(tenants[1], |_| true).is_none(), "the least recently put went");
        let left = tenants.iter().filter(|t| kept.get(**t, |_| true).is_some()).count();
        assert_eq!(left, 5, "half of the eleven, and the newcomer");
    }

    #[test]
    fn a_tenant_heavier_than_the_bound_is_still_kept_alone() {
        let kept = KeptPerTenant::new(10);
        let (small, heavy) = (scope(), scope());
        kept.put(small, 1, 1, |_| false);
        kept.put(heavy, 2, 50, |_| false);
        assert_eq!(kept.get(heavy, |_| true), Some(2));
        assert!(kept.get(small, |_| true).is_none());
    }

    #[test]
    fn an_entry_is_served_only_as_the_caller_accepts_and_replaced_only_as_it_prefers() {
        let kept = KeptPerTenant::new(10);
        let tenant = scope();
        kept.put(tenant, 5, 1, |_| false);
        assert!(kept.get(tenant, |v| *v > 5).is_none());
        kept.put(tenant, 4, 1, |old| *old > 4);
        assert_eq!(kept.get(tenant, |_| true), Some(5), "the older value did not replace the newer");
        assert!(kept.get(scope(), |_| true).is_none(), "another tenant's is its own");
    }
}
