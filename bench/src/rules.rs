//! Rule evaluation speed: `wbd_rules::evaluate` (the shipped pack) over simulated tenants, in a
//! tight loop on one core. The criterion benchmark (`benches/rules.rs`) measures the same
//! tenants with statistics; this one gives the figures of a `--all` run.

use std::hint::black_box;
use std::time::{Duration, Instant};

use chrono::Utc;
use wbd_rules::TenantFacts;

use crate::workload::tenant_facts;

/// A tenant shape the benchmark evaluates.
#[derive(Debug, Clone, Copy)]
pub struct TenantShape {
    pub name: &'static str,
    pub sites: usize,
    /// Results of one site's cycle: the six host probes plus endpoints.
    pub results_per_site: usize,
}

/// The shapes: one site with the collector's default two endpoints and every host probe, and a
/// larger tenant with two sites of 50 results each (the shape of the load's batches).
pub const SHAPES: [TenantShape; 2] = [
    TenantShape { name: "typical tenant: 1 site, 8 facts", sites: 1, results_per_site: 8 },
    TenantShape { name: "large tenant: 2 sites, 100 facts", sites: 2, results_per_site: 50 },
];

pub fn facts_for(shape: TenantShape) -> TenantFacts {
    tenant_facts(shape.sites, shape.results_per_site, Utc::now())
}

#[derive(Debug, Clone, Copy)]
pub struct RuleSpeed {
    pub facts: usize,
    /// Verdicts (rule × subject) one evaluation yields.
    pub verdicts: usize,
    pub evaluations_per_s: f64,
    pub verdicts_per_s: f64,
    pub micros_per_evaluation: f64,
}

/// Calls `evaluate` over `facts` for about `time` (at least 10 calls, at most 50 million).
pub fn measure(facts: &TenantFacts, time: Duration) -> RuleSpeed {
    let verdicts = wbd_rules::evaluate(facts).len();
    // Warm the caches and the allocator.
    for _ in 0..10 {
        black_box(wbd_rules::evaluate(black_box(facts)));
    }
    let started = Instant::now();
    let mut calls = 0u64;
    while (started.elapsed() < time || calls < 10) && calls < 50_000_000 {
        for _ in 0..10 {
            black_box(wbd_rules::evaluate(black_box(facts)));
        }
        calls += 10;
    }
    let secs = started.elapsed().as_secs_f64();
    let per_s = calls as f64 / secs;
    RuleSpeed {
        facts: facts.facts.len(),
        verdicts,
        evaluations_per_s: per_s,
        verdicts_per_s: per_s * verdicts as f64,
        micros_per_evaluation: secs * 1e6 / calls as f64,
    }
}

// ---- CEL custom rules -------------------------------------------------------------------------
//
// PLACE FOR THE CEL MICRO-BENCHMARK. Custom rules written in CEL are being added to
// `crates/rules`; when this benchmark was written the crate exposed no public API to compile
// and evaluate a CEL rule, so there is nothing honest to measure yet and no figure is reported
// (the report says "not available"). When the API lands: compile one representative custom rule
// once (e.g. "an endpoint whose TLS issuer is not in an allow-list"), evaluate it over
// `facts_for(SHAPES[1])` in the loop of `measure`, report evaluations/s and verdicts/s under the
// keys `cel_*`, and add it to `benches/rules.rs`.

/// Why no CEL figure is reported.
pub const CEL_NOT_AVAILABLE: &str = "wbd_rules has no public CEL API yet (another change is adding it); see the marked place in bench/src/rules.rs";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn measuring_counts_verdicts() {
        let facts = facts_for(SHAPES[1]);
        let speed = measure(&facts, Duration::from_millis(20));
        assert_eq!(speed.facts, 100);
        assert!(speed.verdicts >= 180, "two endpoint rules per endpoint at least: {}", speed.verdicts);
        assert!(speed.evaluations_per_s > 0.0);
    }
}
