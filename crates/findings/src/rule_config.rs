//! A tenant's rule configuration as the evaluator applies it: its organisation's overrides with
//! the tenant's laid on top, and the custom (CEL) rules of both levels, compiled once and cached
//! by their definition.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock, Mutex};

use chrono::{DateTime, Utc};
use wbd_rules::custom::{self, CompiledRule, CustomRule};
use wbd_rules::{Evaluation, PackSettings, RuleSettings};
use wbd_store::{Store, StoreError, TenantScope, TenantSnapshot};

use crate::facts::facts_from_snapshot;

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
    let facts = facts_from_snapshot(snapshot, now);
    let mut evaluations = wbd_rules::evaluate_with(&facts, &rules.pack);
    if !rules.custom.is_empty() {
        evaluations.extend(custom::evaluate_custom(&rules.custom, &facts).into_iter().map(Evaluation::from));
    }
    evaluations
}
