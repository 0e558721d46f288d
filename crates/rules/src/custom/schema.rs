//! The published fact document custom rules read, its schema, and its conversion to CEL values.
//!
//! # The document
//!
//! ```text
//! now          timestamp            the evaluation instant
//! collectors   list of {id, name, active, last_seen_at, silent_after, push_interval_secs}
//! facts        {endpoint, idle_connection, proxy, active_directory, connect_server,
//!               event_log, graph, script}: one list per probe kind
//! ```
//!
//! Each element of a `facts.<kind>` list is the probe's typed report as the wire schema
//! serialises it (field names as in `wbd-wire`, snake_case), plus four fields naming where it came
//! from: `collector_id`, `collector_name`, `probe_subject`, `observed_at`. Only active collectors'
//! newest report per (collector, probe subject) is included, as for the shipped rules.
//!
//! Fields whose name ends in `_at`, and the wire's other instants ([`TIMESTAMP_KEYS`]), are CEL
//! timestamps (compare them with `now - duration('1h')`); other values are ints, doubles,
//! strings, bools, lists, maps or `null` (an optional fact that was not read). The script probe's
//! `value` is whatever the script printed, so any field below it is accepted.
//!
//! The schema is derived from a built-in sample tenant (`packs/cel/sample-tenant.json`) whose
//! reports deserialise into the wire types and populate every optional part; a test keeps that
//! sample in step with the wire schema. [`schema_paths`] lists every path, e.g.
//! `facts.endpoint[].tls.chain_top_issuer`.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, LazyLock};

use cel::objects::{Key, Map};
use serde_json::{Value as Json, json};
use wbd_wire::{ProbeKind, ProbeOutput};

use crate::TenantFacts;

/// The sample tenant custom rules are dry-run against when saved.
const SAMPLE_JSON: &str = include_str!("../../packs/cel/sample-tenant.json");

/// The wire's instants whose names do not end in `_at`.
pub const TIMESTAMP_KEYS: &[&str] = &[
    "now",
    "silent_after",
    "not_before",
    "not_after",
    "since",
    "newest",
    "time_created",
    "dc_current_time",
    "next_sync_cycle_start",
    "on_premises_last_sync",
    "last_updated",
];

/// Keys whose content is free-form (the script probe's output).
const DYNAMIC_KEYS: &[&str] = &["value"];

/// The fields added to every report in `facts.<kind>`.
pub const ORIGIN_FIELDS: [&str; 4] = ["collector_id", "collector_name", "probe_subject", "observed_at"];

pub(crate) fn is_timestamp_key(key: &str) -> bool {
    key.ends_with("_at") || TIMESTAMP_KEYS.contains(&key)
}

/// The shape of a value in the document.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Node {
    /// Anything: not checked below this point.
    Any,
    /// A string, number, bool, timestamp or null.
    Scalar,
    Object(BTreeMap<String, Node>),
    List(Box<Node>),
}

impl Node {
    /// The union of two shapes (the sample may show different fields in different elements).
    fn merge(self, other: Node) -> Node {
        match (self, other) {
            (Node::Object(mut a), Node::Object(b)) => {
                for (key, node) in b {
                    let merged = match a.remove(&key) {
                        Some(existing) => existing.merge(node),
                        None => node,
                    };
                    a.insert(key, merged);
                }
                Node::Object(a)
            }
            (Node::List(a), Node::List(b)) => Node::List(Box::new(a.merge(*b))),
            (Node::Scalar, other) | (other, Node::Scalar) => match other {
                Node::Scalar => Node::Scalar,
                // `null` in one element, an object or list in another: keep the richer shape.
                richer => richer,
            },
            (Node::Any, _) | (_, Node::Any) => Node::Any,
            _ => Node::Any,
        }
    }

    fn of(value: &Json, key: Option<&str>) -> Node {
        if key.is_some_and(|k| DYNAMIC_KEYS.contains(&k)) {
            return Node::Any;
        }
        match value {
            Json::Object(map) => {
                Node::Object(map.iter().map(|(k, v)| (k.clone(), Node::of(v, Some(k)))).collect())
            }
            Json::Array(items) => {
                // An empty list says nothing about its elements: `Scalar` yields to any richer
                // shape another occurrence shows.
                let element =
                    items.iter().map(|v| Node::of(v, key)).reduce(Node::merge).unwrap_or(Node::Scalar);
                Node::List(Box::new(element))
            }
            _ => Node::Scalar,
        }
    }
}

/// The JSON form of the document for `facts` (see the module docs).
pub fn fact_document(facts: &TenantFacts) -> Json {
    let collectors: Vec<Json> = facts
        .collectors
        .iter()
        .map(|c| {
            json!({
                "id": c.id,
                "name": c.name,
                "active": c.active,
                "last_seen_at": c.last_seen_at,
                "silent_after": c.silent_after,
                "push_interval_secs": c.push_interval_secs,
            })
        })
        .collect();
    let mut by_kind: BTreeMap<&'static str, Vec<Json>> =
        ProbeKind::ALL.iter().map(|kind| (kind.as_str(), Vec::new())).collect();
    for observation in facts.observations(Some::<&ProbeOutput>) {
        let output = observation.report;
        // The wire's tagged form is `{"probe": kind, "data": report}`.
        let mut report = match serde_json::to_value(output) {
            Ok(Json::Object(mut tagged)) => match tagged.remove("data") {
                Some(Json::Object(data)) => data,
                _ => continue,
            },
            _ => continue,
        };
        report.insert("collector_id".into(), json!(observation.collector.id));
        report.insert("collector_name".into(), json!(observation.collector.name));
        report.insert("probe_subject".into(), json!(observation.probe_subject));
        report.insert("observed_at".into(), json!(observation.observed_at));
        by_kind.entry(output.kind().as_str()).or_default().push(Json::Object(report));
    }
    json!({
        "now": facts.now,
        "collectors": collectors,
        "facts": by_kind,
    })
}

/// Converts the document to CEL values: timestamps where [`is_timestamp_key`] says so.
pub(crate) fn to_cel(value: &Json, key: Option<&str>) -> cel::Value {
    match value {
        Json::Null => cel::Value::Null,
        Json::Bool(b) => cel::Value::Bool(*b),
        Json::Number(n) => match (n.as_i64(), n.as_u64()) {
            (Some(i), _) => cel::Value::Int(i),
            (None, Some(u)) => cel::Value::UInt(u),
            (None, None) => cel::Value::Float(n.as_f64().unwrap_or(f64::NAN)),
        },
        Json::String(s) => {
            if key.is_some_and(is_timestamp_key)
                && let Ok(at) = chrono::DateTime::parse_from_rfc3339(s)
            {
                return cel::Value::Timestamp(at);
            }
            cel::Value::String(Arc::new(s.clone()))
        }
        Json::Array(items) => cel::Value::List(Arc::new(items.iter().map(|v| to_cel(v, key)).collect())),
        Json::Object(map) => {
            let entries: HashMap<Key, cel::Value> =
                map.iter().map(|(k, v)| (Key::from(k.clone()), to_cel(v, Some(k)))).collect();
            cel::Value::Map(Map { map: Arc::new(entries) })
        }
    }
}

/// The built-in sample tenant.
pub(crate) static SAMPLE: LazyLock<Result<TenantFacts, String>> =
    LazyLock::new(|| serde_json::from_str(SAMPLE_JSON).map_err(|e| format!("sample-tenant.json: {e}")));

/// The schema: root variable → shape.
pub(crate) static SCHEMA: LazyLock<BTreeMap<String, Node>> = LazyLock::new(|| {
    let document = match SAMPLE.as_ref() {
        Ok(sample) => fact_document(sample),
        // The sample is compiled in and tested; without it no field can be checked, so every
        // field is accepted rather than every rule refused.
        Err(_) => json!({"now": null, "collectors": [], "facts": {}}),
    };
    match Node::of(&document, None) {
        Node::Object(mut roots) => {
            // Every probe kind has its list, even if the sample lacked one.
            if let Some(Node::Object(kinds)) = roots.get_mut("facts") {
                for kind in ProbeKind::ALL {
                    kinds.entry(kind.as_str().to_owned()).or_insert_with(|| Node::List(Box::new(Node::Any)));
                }
            }
            roots
        }
        _ => BTreeMap::new(),
    }
});

/// Every path of the published schema, e.g. `facts.endpoint[].host`, sorted.
pub fn schema_paths() -> Vec<String> {
    fn walk(prefix: &str, node: &Node, out: &mut Vec<String>) {
        match node {
            Node::Object(fields) => {
                for (name, child) in fields {
                    let path = if prefix.is_empty() { name.clone() } else { format!("{prefix}.{name}") };
                    out.push(path.clone());
                    walk(&path, child, out);
                }
            }
            Node::List(element) => walk(&format!("{prefix}[]"), element, out),
            Node::Any => out.push(format!("{prefix}.*")),
            Node::Scalar => {}
        }
    }
    let mut out = Vec::new();
    walk("", &Node::Object(SCHEMA.clone()), &mut out);
    out.sort();
    out
}
