//! The rules' view of a tenant: its stored snapshot (collectors and latest facts) turned into
//! the [`TenantFacts`] the rule pack and custom rules read, and the decoded outputs this process
//! keeps per tenant so that an unchanged fact is not read nor decoded again.

use std::collections::HashMap;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::Deserialize;
use wbd_rules::{CollectorState, FactInput, TenantFacts};
use wbd_store::{CollectorStatus, SnapshotFact, SnapshotPayload, TenantScope, TenantSnapshot};
use wbd_wire::ProbeOutput;

use crate::kept::KeptPerTenant;

/// Decoded outputs of a tenant's facts, by digest. The digest covers everything but an
/// output's timings, so one output per digest serves every fact with it (see
/// [`ProbeOutput::set_timings`]).
pub type Outputs = HashMap<String, Arc<ProbeOutput>>;

/// The rules' view of a stored snapshot at `now`, and the outputs of its facts by digest.
///
/// A fact the snapshot left unread ([`SnapshotPayload::Known`]) is the output `held` has for its
/// digest with the fact's timings laid over it. A fact whose payload is not a [`ProbeOutput`]
/// this build understands, or whose output is not held, is skipped with a warning: one bad row
/// must not stop the tenant's other rules.
pub fn facts_from_snapshot(
    snapshot: &TenantSnapshot,
    held: &Outputs,
    now: DateTime<Utc>,
) -> (TenantFacts, Outputs) {
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
    let mut outputs = Outputs::with_capacity(snapshot.facts.len());
    let facts = snapshot
        .facts
        .iter()
        .filter_map(|fact| {
            let output = output_of(fact, held, &mut outputs)?;
            Some(FactInput {
                collector_id: fact.collector_id.0,
                subject: fact.subject.clone(),
                observed_at: fact.observed_at,
                output,
            })
        })
        .collect();
    (TenantFacts { now, collectors, facts }, outputs)
}

/// The fact's output, decoded from its payload or laid over the held output of its digest;
/// keeps the output in `outputs` under the digest.
fn output_of(fact: &SnapshotFact, held: &Outputs, outputs: &mut Outputs) -> Option<ProbeOutput> {
    let output = match &fact.payload {
        SnapshotPayload::Read(payload) => match ProbeOutput::deserialize(payload) {
            Ok(output) => {
                if !outputs.contains_key(&fact.digest) {
                    outputs.insert(fact.digest.clone(), Arc::new(output.clone()));
                }
                output
            }
            Err(error) => {
                tracing::warn!(
                    collector_id = %fact.collector_id,
                    subject = %fact.subject,
                    probe = %fact.probe,
                    %error,
                    "skipping a fact whose payload is not a probe output this build can read"
                );
                return None;
            }
        },
        SnapshotPayload::Known(timings) => {
            let Some(kept) = outputs.get(&fact.digest).or_else(|| held.get(&fact.digest)).cloned() else {
                tracing::warn!(
                    collector_id = %fact.collector_id,
                    subject = %fact.subject,
                    digest = %fact.digest,
                    "skipping a fact whose payload was left unread for an output this process does not hold"
                );
                return None;
            };
            let mut output = ProbeOutput::clone(&kept);
            output.set_timings(timings);
            outputs.entry(fact.digest.clone()).or_insert(kept);
            output
        }
    };
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
    Some(output)
}

/// The outputs this process decoded lately, per tenant: an evaluation names their digests to
/// the store, which then sends only the timings of those facts.
pub(crate) static KEPT_OUTPUTS: KeptPerTenant<Arc<Outputs>> = KeptPerTenant::new(MAX_KEPT_OUTPUTS);

/// Outputs kept at most, over all tenants (about 50 MB of typical outputs); beyond, the tenants
/// evaluated least recently are dropped, half of them at a time.
const MAX_KEPT_OUTPUTS: usize = 50_000;

/// The outputs kept for the tenant (none if it was not evaluated lately).
pub(crate) fn kept_outputs(scope: TenantScope) -> Arc<Outputs> {
    KEPT_OUTPUTS.get(scope, |_| true).unwrap_or_default()
}

/// Keeps the outputs of the tenant's current facts, replacing what was kept for it.
pub(crate) fn keep_outputs(scope: TenantScope, outputs: Outputs) {
    let weight = outputs.len().max(1);
    KEPT_OUTPUTS.put(scope, Arc::new(outputs), weight, |_| false);
}
