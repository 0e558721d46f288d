//! A tenant's rule configuration as the evaluator applies it: its organisation's overrides with
//! the tenant's laid on top, and the custom (CEL) rules of both levels, compiled once and cached
//! by their definition.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock, Mutex};

use chrono::{DateTime, Utc};
use wbd_rules::custom::{self, CompiledRule, CustomRule};
use wbd_rules::{Evaluation, PackSettings, RuleSettings};
use wbd_store::{Store, StoreError, TenantScope, TenantSnapshot};

use crate::facts::{Outputs, facts_from_snapshot};
use crate::kept::KeptPerTenant;

/// What the evaluator runs for one tenant.
#[derive(Debug, Clone, Default)]
pub struct TenantRules {
    /// Overrides of shipped rules, organisation then tenant, merged.
    pub pack: PackSettings,
    /// Custom rules of the organisation and the tenant (a tenant's rule replaces an
    /// organisation's rule with the same id).
    pub custom: Vec<Arc<CompiledRule>>,
}

impl TenantRules {
    /// This configuration with `settings` laid over it and `rule` added (replacing a rule with
    /// the same id): what a dry run tries.
    pub fn with(&self, settings: PackSettings, rule: Option<CompiledRule>) -> TenantRules {
        let pack = PackSettings::merge(&self.pack, &settings);
        let mut custom = self.custom.clone();
        if let Some(rule) = rule {
            custom.retain(|r| r.rule().id != rule.rule().id);
            custom.push(Arc::new(rule));
        }
        TenantRules { pack, custom }
    }
}

/// Reads and merges the tenant's configuration. A stored document that no longer reads or
/// compiles (a rule pack upgrade changed a parameter, say) is skipped with a warning rather than
/// stopping the tenant's evaluation.
pub async fn load_tenant_rules(store: &dyn Store, scope: TenantScope) -> Result<TenantRules, StoreError> {
    let org = scope.org();
    let settings = store.list_rule_settings(org, Some(scope.tenant_id)).await?;
    let (mut org_pack, mut tenant_pack) = (PackSettings::defaults(), PackSettings::defaults());
    for row in settings {
        match serde_json::from_value::<RuleSettings>(row.settings) {
            Ok(s) => {
                let level = if row.tenant_id.is_some() { &mut tenant_pack } else { &mut org_pack };
                level.rules.insert(row.rule_id, s);
            }
            Err(e) => {
                tracing::warn!(rule_id = %row.rule_id, error = %e, "skipping an unreadable rule override")
            }
        }
    }
    let mut by_id: HashMap<String, Arc<CompiledRule>> = HashMap::new();
    // Organisation rows come first, so a tenant's rule with the same id replaces it.
    for row in store.list_custom_rules(org, Some(scope.tenant_id)).await? {
        match compiled(&row.definition) {
            Ok(rule) => {
                by_id.insert(row.rule_id, rule);
            }
            Err(e) => {
                tracing::warn!(rule_id = %row.rule_id, error = %e, "skipping a custom rule that no longer compiles")
            }
        }
    }
    let mut custom: Vec<_> = by_id.into_values().collect();
    custom.sort_by(|a, b| a.rule().id.cmp(&b.rule().id));
    Ok(TenantRules { pack: PackSettings::merge(&org_pack, &tenant_pack), custom })
}

/// The tenant's configuration as of `rules_version` (from its snapshot), read from the store
/// only when this process does not hold that version or a later one. Every rule change moves the
/// tenant's version in its own transaction (see `tenants.rules_version`); rules read after the
/// version was read are at least that version, so a kept entry is never older than it claims.
pub async fn current_tenant_rules(
    store: &dyn Store,
    scope: TenantScope,
    rules_version: i64,
) -> Result<Arc<TenantRules>, StoreError> {
    if let Some(rules) = KEPT_RULES.get(scope, rules_version) {
        return Ok(rules);
    }
    let rules = Arc::new(load_tenant_rules(store, scope).await?);
    KEPT_RULES.put(scope, rules_version, rules.clone());
    Ok(rules)
}

/// The rule configurations this process evaluated with lately, per tenant, with their version.
static KEPT_RULES: KeptRules = KeptRules::new();

/// Tenants whose configuration is kept at most; beyond, the older half is dropped.
const MAX_KEPT_RULES: usize = 10_000;

struct KeptRules(KeptPerTenant<(i64, Arc<TenantRules>)>);

impl KeptRules {
    const fn new() -> Self {
        Self(KeptPerTenant::new(MAX_KEPT_RULES))
    }

    fn get(&self, scope: TenantScope, version: i64) -> Option<Arc<TenantRules>> {
        self.0.get(scope, |(kept, _)| *kept >= version).map(|(_, rules)| rules)
    }

    fn put(&self, scope: TenantScope, version: i64, rules: Arc<TenantRules>) {
        self.0.put(scope, (version, rules), 1, |(kept, _)| *kept > version);
    }
}

/// Compiling checks the expression against the schema and dry-runs it, which costs far more
/// than evaluating it; every tenant of an organisation shares its rules, so keep them.
fn compiled(definition: &serde_json::Value) -> Result<Arc<CompiledRule>, String> {
    static CACHE: LazyLock<Mutex<HashMap<String, Arc<CompiledRule>>>> = LazyLock::new(Default::default);
    const MAX_CACHED: usize = 4_096;
    let key = definition.to_string();
    if let Some(rule) = CACHE.lock().map_err(|e| e.to_string())?.get(&key) {
        return Ok(rule.clone());
    }
    let rule: CustomRule = serde_json::from_value(definition.clone()).map_err(|e| e.to_string())?;
    let rule = Arc::new(custom::compile(&rule).map_err(|e| e.to_string())?);
    let mut cache = CACHE.lock().map_err(|e| e.to_string())?;
    if cache.len() >= MAX_CACHED {
        cache.clear();
    }
    cache.insert(key, rule.clone());
    Ok(rule)
}

/// Every shipped rule (with the tenant's overrides) and every custom rule over the snapshot.
pub fn run_rules(snapshot: &TenantSnapshot, rules: &TenantRules, now: DateTime<Utc>) -> Vec<Evaluation> {
    let (facts, _) = facts_from_snapshot(snapshot, &Outputs::new(), now);
    evaluate_facts(&facts, rules)
}

/// Every shipped rule (with the tenant's overrides) and every custom rule over `facts`.
pub(crate) fn evaluate_facts(facts: &wbd_rules::TenantFacts, rules: &TenantRules) -> Vec<Evaluation> {
    let mut evaluations = wbd_rules::evaluate_with(facts, &rules.pack);
    if !rules.custom.is_empty() {
        evaluations.extend(custom::evaluate_custom(&rules.custom, facts).into_iter().map(Evaluation::from));
    }
    evaluations
}

#[cfg(test)]
mod kept_rules_tests {
    use wbd_store::{OrgId, TenantId};

    use super::*;

    fn scope() -> TenantScope {
        TenantScope { org_id: OrgId(uuid::Uuid::new_v4()), tenant_id: TenantId(uuid::Uuid::new_v4()) }
    }

    #[test]
    fn a_kept_configuration_serves_its_version_and_older_ones_only() {
        let kept = KeptRules::new();
        let tenant = scope();
        assert!(kept.get(tenant, 0).is_none(), "nothing kept yet");
        kept.put(tenant, 3, Arc::new(TenantRules::default()));
        assert!(kept.get(tenant, 3).is_some());
        assert!(kept.get(tenant, 2).is_some(), "a snapshot read before the change");
        assert!(kept.get(tenant, 4).is_none(), "the configuration changed since: read it again");
        assert!(kept.get(scope(), 0).is_none(), "another tenant's is its own");
    }

    #[test]
    fn an_older_read_never_replaces_a_newer_one() {
        let kept = KeptRules::new();
        let tenant = scope();
        kept.put(tenant, 5, Arc::new(TenantRules::default()));
        kept.put(tenant, 4, Arc::new(TenantRules::default()));
        assert!(kept.get(tenant, 5).is_some());
    }

    #[test]
    fn when_full_the_least_recently_put_half_goes() {
        let kept = KeptRules::new();
        let tenants: Vec<TenantScope> = (0..MAX_KEPT_RULES).map(|_| scope()).collect();
        for tenant in &tenants {
            kept.put(*tenant, 1, Arc::new(TenantRules::default()));
        }
        let newcomer = scope();
        kept.put(newcomer, 1, Arc::new(TenantRules::default()));
        assert!(kept.get(newcomer, 1).is_some());
        assert!(kept.get(tenants[0], 1).is_none(), "the oldest went");
        assert!(kept.get(tenants[MAX_KEPT_RULES - 1], 1).is_some(), "the newest stayed");
        let left = tenants.iter().filter(|t| kept.get(**t, 1).is_some()).count();
        assert_eq!(left, MAX_KEPT_RULES / 2, "half of them");
    }
}
