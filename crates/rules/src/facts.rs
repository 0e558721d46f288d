//! What the rules read: a tenant's collectors and its latest facts, at one instant.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;
use wbd_wire::{EndpointReport, ProbeOutput};

/// Everything the rules know about one tenant.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TenantFacts {
    /// The evaluation instant; rules never read a clock.
    pub now: DateTime<Utc>,
    pub collectors: Vec<CollectorState>,
    /// The latest fact per (collector, probe, subject).
    pub facts: Vec<FactInput>,
}

/// A collector of the tenant as the rules see it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CollectorState {
    pub id: Uuid,
    pub name: String,
    /// Enrolled and not revoked: expected to push, and its facts are current.
    pub active: bool,
    pub last_seen_at: Option<DateTime<Utc>>,
    /// The collector counts as silent if it has not pushed again by then.
    pub silent_after: Option<DateTime<Utc>>,
    pub push_interval_secs: u32,
}

/// One probe result as the collector reported it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FactInput {
    pub collector_id: Uuid,
    /// The probe's own subject, e.g. `passwordreset.microsoftonline.com:443`.
    pub subject: String,
    pub observed_at: DateTime<Utc>,
    pub output: ProbeOutput,
}

impl TenantFacts {
    pub fn collector(&self, id: Uuid) -> Option<&CollectorState> {
        self.collectors.iter().find(|c| c.id == id)
    }

    /// The reports `pick` selects, of active collectors only, one per (collector, probe
    /// subject) — the newest if the input repeats one — ordered by collector id, then subject.
    pub(crate) fn observations<'a, T>(
        &'a self,
        pick: impl Fn(&'a ProbeOutput) -> Option<&'a T>,
    ) -> Vec<Observation<'a, T>> {
        let mut latest: BTreeMap<(Uuid, &str), Observation<'a, T>> = BTreeMap::new();
        for fact in &self.facts {
            let Some(report) = pick(&fact.output) else { continue };
            let Some(collector) = self.collector(fact.collector_id).filter(|c| c.active) else {
                continue;
            };
            let observation = Observation {
                collector,
                probe_subject: &fact.subject,
                observed_at: fact.observed_at,
                report,
            };
            match latest.entry((collector.id, fact.subject.as_str())) {
                std::collections::btree_map::Entry::Occupied(mut kept) => {
                    if observation.observed_at > kept.get().observed_at {
                        kept.insert(observation);
                    }
                }
                std::collections::btree_map::Entry::Vacant(slot) => {
                    slot.insert(observation);
                }
            }
        }
        latest.into_values().collect()
    }

    /// The endpoint reports of active collectors (see [`TenantFacts::observations`]).
    pub(crate) fn endpoint_observations(&self) -> Vec<EndpointObservation<'_>> {
        self.observations(|output| match output {
            ProbeOutput::Endpoint(report) => Some(report),
            _ => None,
        })
    }
}

/// One report with the collector that made it.
#[derive(Debug)]
pub(crate) struct Observation<'a, T> {
    pub collector: &'a CollectorState,
    pub probe_subject: &'a str,
    pub observed_at: DateTime<Utc>,
    pub report: &'a T,
}

impl<T> Clone for Observation<'_, T> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<T> Copy for Observation<'_, T> {}

impl<T> Observation<'_, T> {
    /// `<probe subject>@<collector id>`: stable across runs, distinct between sites.
    pub fn subject(&self) -> String {
        format!("{}@{}", self.probe_subject, self.collector.id)
    }
}

/// One endpoint report with the collector that made it.
pub(crate) type EndpointObservation<'a> = Observation<'a, EndpointReport>;

#[cfg(test)]
mod tests {
    use chrono::Duration;

    use crate::rules::fixtures::*;

    #[test]
    fn newest_report_wins_when_a_subject_repeats() {
        let site = collector("site-a");
        let mut old = endpoint_fact(&site, relay_tcp_blocked());
        old.observed_at = now() - Duration::minutes(10);
        let new = endpoint_fact(&site, healthy_relay());
        let facts = tenant(vec![site.clone()], vec![new.clone(), old]);
        let observations = facts.endpoint_observations();
        assert_eq!(observations.len(), 1);
        assert_eq!(observations[0].observed_at, new.observed_at);
        assert!(observations[0].report.failure.is_none());
    }

    #[test]
    fn facts_of_inactive_or_unknown_collectors_are_ignored() {
        let mut revoked = collector("old-site");
        revoked.active = false;
        let stranger = collector("not-in-tenant");
        let facts = tenant(
            vec![revoked.clone()],
            vec![endpoint_fact(&revoked, relay_tcp_blocked()), endpoint_fact(&stranger, relay_tcp_blocked())],
        );
        assert!(facts.endpoint_observations().is_empty());
    }

    #[test]
    fn subject_names_probe_subject_and_collector() {
        let site = collector("site-a");
        let facts = tenant(vec![site.clone()], vec![endpoint_fact(&site, healthy_password_reset())]);
        let observations = facts.endpoint_observations();
        assert_eq!(observations[0].subject(), format!("passwordreset.microsoftonline.com:443@{}", site.id));
    }
}
