//! Rule evaluation speed: `wbd_rules::evaluate` (the shipped pack) and
//! `wbd_rules::custom::evaluate_custom` (custom rules in CEL) over simulated tenants, in a tight
//! loop on one core. The criterion benchmark (`benches/rules.rs`) measures the same
//! tenants with statistics; this one gives the figures of a `--all` run.

use std::hint::black_box;
use std::time::{Duration, Instant};

use chrono::Utc;
use wbd_rules::custom::{CompiledRule, CustomRule, compile, evaluate_custom};
use wbd_rules::{Severity, TenantFacts};

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

/// Custom rules of the kinds an MSP writes (taken from the rules crate's conformance set, so they
/// compile against the published fact schema): an endpoint check, a version check, nested list
/// checks on idle connections, licences and event logs.
pub const CUSTOM_RULES: [(&str, &str); 5] = [
    ("custom-tcp-blocked", "facts.endpoint.exists(e, e.failure != null && e.failure.step == 'tcp')"),
    (
        "custom-connect-old",
        "facts.connect_server.exists(c, !version_at_least(c.connect_version, '2.5.79.0'))",
    ),
    (
        "custom-idle-cut",
        "facts.idle_connection.exists(i, i.holds.exists(h, h.outcome == 'cut_on_use' && h.hold_secs <= 180))",
    ),
    (
        "custom-few-p1-licences",
        "facts.graph.exists(g, g.service_plans.exists(p, p.service_plan_name == 'AAD_PREMIUM' && p.assigned_units < 20))",
    ),
    (
        "custom-recent-32002",
        "facts.event_log.exists(l, l.last_seen.exists(e, e.event_id == 32002 && e.newest > now - duration('1h')))",
    ),
];

/// [`CUSTOM_RULES`] compiled (`wbd_rules::custom::compile`, the check the API runs on save).
pub fn compiled_custom_rules() -> Result<Vec<CompiledRule>, String> {
    CUSTOM_RULES
        .iter()
        .map(|(id, condition)| {
            let rule = CustomRule {
                id: (*id).to_owned(),
                title: format!("Benchmark rule {id}"),
                severity: Severity::Medium,
                condition: (*condition).to_owned(),
                subject_expr: None,
            };
            compile(&rule).map_err(|e| format!("{id}: {e}"))
        })
        .collect()
}

/// How fast custom rules run: `evaluate_custom` over `facts` (which converts the facts to CEL
/// values once per call, then runs every rule) for about `time`; and the time `compile` takes.
pub fn measure_custom(facts: &TenantFacts, time: Duration) -> Result<CustomSpeed, String> {
    let compile_started = Instant::now();
    let mut compiles = 0u32;
    while compile_started.elapsed() < time / 4 || compiles < 3 {
        black_box(compiled_custom_rules()?);
        compiles += 1;
    }
    let compile_micros =
        compile_started.elapsed().as_secs_f64() * 1e6 / f64::from(compiles) / CUSTOM_RULES.len() as f64;
    let rules = compiled_custom_rules()?;
    black_box(evaluate_custom(&rules, facts));
    let started = Instant::now();
    let mut calls = 0u64;
    while (started.elapsed() < time || calls < 5) && calls < 10_000_000 {
        black_box(evaluate_custom(black_box(&rules), black_box(facts)));
        calls += 1;
    }
    let secs = started.elapsed().as_secs_f64();
    let per_s = calls as f64 / secs;
    Ok(CustomSpeed {
        rules: rules.len(),
        evaluations_per_s: per_s,
        rule_runs_per_s: per_s * rules.len() as f64,
        micros_per_evaluation: secs * 1e6 / calls as f64,
        compile_micros_per_rule: compile_micros,
    })
}

#[derive(Debug, Clone, Copy)]
pub struct CustomSpeed {
    pub rules: usize,
    /// Calls of `evaluate_custom` (all the rules over one tenant) per second.
    pub evaluations_per_s: f64,
    /// Single rule runs per second.
    pub rule_runs_per_s: f64,
    pub micros_per_evaluation: f64,
    pub compile_micros_per_rule: f64,
}

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

    #[test]
    fn custom_rules_compile_and_decide() {
        let facts = facts_for(SHAPES[0]);
        let rules = compiled_custom_rules().unwrap();
        let evaluations = evaluate_custom(&rules, &facts);
        assert_eq!(evaluations.len(), CUSTOM_RULES.len());
        // Over the healthy host probes the rules decide (none is unknown).
        assert!(
            evaluations.iter().all(|e| !matches!(e.outcome, wbd_rules::Outcome::Unknown { .. })),
            "{evaluations:#?}"
        );
        let speed = measure_custom(&facts, Duration::from_millis(20)).unwrap();
        assert!(speed.evaluations_per_s > 0.0 && speed.compile_micros_per_rule > 0.0);
    }
}
