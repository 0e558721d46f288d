//! Which events an integration receives, as given and as checked: tenants of the organisation,
//! known severities, shipped or custom rules, known event types.

use std::collections::HashSet;

use chrono::Utc;
use uuid::Uuid;
use wbd_notify::EventType;
use wbd_store::{IntegrationFilter, OrgScope, Severity, Store, StoreError, TenantId};

use super::problems::Problems;

/// A filter as a request gives it. Every list narrows; an empty list means all.
#[derive(Debug, Clone, Default)]
pub struct FilterDraft {
    pub tenant_ids: Vec<Uuid>,
    pub severities: Vec<String>,
    pub rule_ids: Vec<String>,
    pub event_types: Vec<String>,
}

/// The filter `draft` names, without repeats; what it names wrongly is added to `problems`.
pub(super) async fn check_filter(
    store: &dyn Store,
    org: OrgScope,
    draft: &FilterDraft,
    problems: &mut Problems,
) -> Result<IntegrationFilter, StoreError> {
    let mut filter = IntegrationFilter::default();
    for (i, id) in draft.tenant_ids.iter().enumerate() {
        let tenant = TenantId(*id);
        if filter.tenant_ids.contains(&tenant) {
            continue;
        }
        match store.get_tenant(org, tenant).await? {
            Some(_) => filter.tenant_ids.push(tenant),
            None => problems.invalid(
                format!("filter.tenant_ids[{i}]"),
                format!("names no tenant of your organisation ({id})"),
            ),
        }
    }
    for (i, text) in draft.severities.iter().enumerate() {
        match text.trim().parse::<Severity>() {
            Ok(s) if !filter.severities.contains(&s) => filter.severities.push(s),
            Ok(_) => {}
            Err(_) => problems.invalid(
                format!("filter.severities[{i}]"),
                format!("{text:?} is not a severity (critical, high, medium, low, info)"),
            ),
        }
    }
    let shipped: HashSet<&str> = wbd_rules::rules().iter().map(|r| r.id).collect();
    let mut custom: Option<HashSet<String>> = None;
    for (i, id) in draft.rule_ids.iter().enumerate() {
        let id = id.trim();
        if filter.rule_ids.iter().any(|r| r == id) {
            continue;
        }
        let known = shipped.contains(id) || {
            if custom.is_none() {
                custom = Some(custom_rule_ids(store, org).await?);
            }
            custom.as_ref().is_some_and(|c| c.contains(id))
        };
        if known {
            filter.rule_ids.push(id.to_owned());
        } else {
            problems.invalid(
                format!("filter.rule_ids[{i}]"),
                format!("{id:?} is neither a shipped rule (GET /v1/rules) nor one of your custom rules"),
            );
        }
    }
    for (i, text) in draft.event_types.iter().enumerate() {
        match EventType::parse(text.trim()) {
            Some(t) if !filter.event_types.iter().any(|x| x == t.as_str()) => {
                filter.event_types.push(t.as_str().to_owned());
            }
            Some(_) => {}
            None => {
                let known = EventType::ALL.map(EventType::as_str).join(", ");
                problems.invalid(
                    format!("filter.event_types[{i}]"),
                    format!("{text:?} is not an event type ({known})"),
                );
            }
        }
    }
    Ok(filter)
}

/// The ids of the organisation's custom rules, at organisation and tenant level.
async fn custom_rule_ids(store: &dyn Store, org: OrgScope) -> Result<HashSet<String>, StoreError> {
    let mut ids: HashSet<String> =
        store.list_custom_rules(org, None).await?.into_iter().map(|r| r.rule_id).collect();
    for summary in store.list_tenant_summaries(org, Utc::now()).await? {
        let rules = store.list_custom_rules(org, Some(summary.tenant.id)).await?;
        ids.extend(rules.into_iter().map(|r| r.rule_id));
    }
    Ok(ids)
}
