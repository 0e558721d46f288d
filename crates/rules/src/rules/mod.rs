//! The shipped rule pack: Rust code over the typed wire schema, one module per rule or per small
//! family of rules reading the same probe, each with its fixtures and tests beside it.
//!
//! A module exposes `RULES: &[RuleDef]`: per rule its id, its check and (in tests) its fixtures.
//! [`FAMILIES`] below is the only list of modules; the order of evaluation and the metadata come
//! from `packs/writeback/pack.toml`, and a test makes sure both name the same rules.

pub(crate) mod active_directory;
mod collector_silent;
pub(crate) mod connect_server;
mod endpoint;
mod endpoint_reachable;
mod endpoint_tls_trusted;
pub(crate) mod event_log;
#[cfg(test)]
pub(crate) mod fixtures;
pub(crate) mod graph;
mod graph_access;
pub(crate) mod idle_connection;
pub(crate) mod proxy;

use wbd_wire::{ProbeKind, ProbeOutput};

use crate::facts::Observation;
use crate::message::keys;
use crate::{Message, Outcome, Params, TenantFacts};

/// A rule's outcome for one subject, before the rule's id and title are attached.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Verdict {
    pub subject: String,
    pub outcome: Outcome,
}

/// The subject of tenant-wide verdicts, and of "no data" verdicts (no collector to name).
pub(crate) const TENANT_SUBJECT: &str = "tenant";

impl Verdict {
    pub fn tenant(outcome: Outcome) -> Self {
        Verdict { subject: TENANT_SUBJECT.to_owned(), outcome }
    }
}

pub(crate) type Check = fn(&TenantFacts, &Params) -> Vec<Verdict>;

/// One rule of the pack, as its module declares it.
pub(crate) struct RuleDef {
    pub id: &'static str,
    pub check: Check,
    /// Facts that fail and facts that pass the rule (see [`fixtures::Fixture`]).
    #[cfg(test)]
    pub fixtures: fn() -> Vec<fixtures::Fixture>,
}

/// Every module of the pack.
pub(crate) static FAMILIES: &[&[RuleDef]] = &[
    endpoint_reachable::RULES,
    endpoint_tls_trusted::RULES,
    idle_connection::RULES,
    proxy::RULES,
    connect_server::RULES,
    event_log::RULES,
    active_directory::RULES,
    graph::RULES,
    graph_access::RULES,
    collector_silent::RULES,
];

/// The rule with this id.
pub(crate) fn find(id: &str) -> Option<&'static RuleDef> {
    FAMILIES.iter().flat_map(|family| family.iter()).find(|rule| rule.id == id)
}

/// Runs one rule with its default parameters (for tests).
#[cfg(test)]
pub(crate) fn run_rule(id: &str, facts: &TenantFacts) -> Vec<Verdict> {
    let rule = find(id).unwrap_or_else(|| panic!("no rule {id}"));
    let info =
        crate::rules().iter().find(|info| info.id == id).unwrap_or_else(|| panic!("no metadata for {id}"));
    (rule.check)(facts, &Params::defaults(info.params))
}

/// The observations `pick` selects, or the "no data" verdict of a rule reading `kind`.
pub(crate) fn observed<'a, T>(
    facts: &'a TenantFacts,
    kind: ProbeKind,
    pick: impl Fn(&'a ProbeOutput) -> Option<&'a T>,
) -> Result<Vec<Observation<'a, T>>, Vec<Verdict>> {
    let observations = facts.observations(pick);
    if observations.is_empty() {
        Err(vec![Verdict::tenant(Outcome::no_data(kind))])
    } else {
        Ok(observations)
    }
}

/// "The probe ran but could not read what the rule needs": `{probe}`, `{error}`.
pub(crate) fn probe_error(kind: ProbeKind, error: &str) -> Outcome {
    Outcome::unknown(Message::new(keys::PROBE_ERROR).arg("probe", kind.as_str()).arg("error", error))
}

/// "The probe reported, but not this field": `{probe}`, `{field}`.
pub(crate) fn field_missing(kind: ProbeKind, field: &str) -> Outcome {
    Outcome::unknown(Message::new(keys::FIELD_MISSING).arg("probe", kind.as_str()).arg("field", field))
}

/// Evidence fields naming the site a report came from.
pub(crate) fn site_evidence<T>(
    observation: &Observation<'_, T>,
) -> serde_json::Map<String, serde_json::Value> {
    let mut evidence = serde_json::Map::new();
    evidence.insert("collector_id".into(), serde_json::json!(observation.collector.id));
    evidence.insert("collector_name".into(), serde_json::json!(observation.collector.name));
    evidence
}
