//! The rules' view of a tenant: its stored snapshot (collectors and latest facts) turned into
//! the [`TenantFacts`] the rule pack and custom rules read.

use chrono::{DateTime, Utc};
use wbd_rules::{CollectorState, FactInput, TenantFacts};
use wbd_store::{CollectorStatus, TenantSnapshot};
use wbd_wire::ProbeOutput;

/// The rules' view of a stored snapshot at `now`.
///
/// A fact whose payload is not a [`ProbeOutput`] this build understands is skipped with a
/// warning: one bad row must not stop the tenant's other rules.
pub fn facts_from_snapshot(snapshot: &TenantSnapshot, now: DateTime<Utc>) -> TenantFacts {
    let collectors = snapshot
        .collectors
        .iter()
        .map(|c| CollectorState {
            id: c.id.0,
            name: c.name.clone(),
            active: c.status == CollectorStatus::Active,
            last_seen_at: c.last_seen_at,
            silent_after: c.silent_after,
            push_interval_secs: c.push_interval_secs,
        })
        .collect();
    let facts = snapshot
        .facts
        .iter()
        .filter_map(|fact| match serde_json::from_value::<ProbeOutput>(fact.payload.clone()) {
            Ok(output) => {
                if output.kind().as_str() != fact.probe {
                    // The payload is the typed record; the column is only an index.
                    tracing::warn!(
                        collector_id = %fact.collector_id,
                        subject = %fact.subject,
                        probe = %fact.probe,
                        payload_probe = output.kind().as_str(),
                        "fact's probe column disagrees with its payload; using the payload"
                    );
                }
                Some(FactInput {
                    collector_id: fact.collector_id.0,
                    subject: fact.subject.clone(),
                    observed_at: fact.observed_at,
                    output,
                })
            }
            Err(error) => {
                tracing::warn!(
                    collector_id = %fact.collector_id,
                    subject = %fact.subject,
                    probe = %fact.probe,
                    %error,
                    "skipping a fact whose payload is not a probe output this build can read"
                );
                None
            }
        })
        .collect();
    TenantFacts { now, collectors, facts }
}
