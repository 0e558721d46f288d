//! The pure rule engine of Writeback Doctor and the rule pack it ships.
//!
//! This crate owns *what is wrong*: it reads a tenant's latest facts and says, per rule and
//! subject, whether the check passes, fails (with severity, a summary a technician can act on,
//! and evidence), or cannot be decided. It does no I/O: the worker loads the facts, calls
//! [`evaluate`], and turns the [`Evaluation`]s into finding changes. That keeps every rule fast
//! to test and benchmark with hand-built facts.
//!
//! # Inputs and outputs
//!
//! - [`TenantFacts`]: the evaluation instant (`now`), the tenant's collectors ([`CollectorState`])
//!   and the latest fact per (collector, probe, subject) ([`FactInput`], the typed
//!   [`wbd_wire::ProbeOutput`] a collector reported).
//! - [`evaluate`] runs every rule of the pack and returns one [`Evaluation`] per (rule, subject),
//!   in pack order, then by subject: the same facts always give the same list.
//! - [`rules()`] lists the pack's metadata ([`RuleInfo`]): id, title, default severity, the probe
//!   kinds the rule reads, description, remediation and references.
//!
//! # Subjects
//!
//! A finding's fingerprint is (tenant, rule, subject), so a subject must be stable across runs
//! and distinct between the things a rule judges:
//!
//! - endpoint rules: `<probe subject>@<collector id>`, e.g.
//!   `passwordreset.microsoftonline.com:443@0192…`. The probe subject is the `host:port` the
//!   collector reports; the collector id keeps two sites that probe the same host apart (one site
//!   may be blocked while the other is not). The id, not the name, because names need not be
//!   unique and may be edited; the name appears in the summary and the evidence instead.
//! - `collector-silent`: the collector id.
//!
//! Facts of collectors that are not active (pending, revoked, or unknown to the tenant) are not
//! evaluated: nothing will refresh them, so they would keep a finding open forever. Their
//! subjects simply stop being evaluated, and the worker resolves findings whose subject is no
//! longer evaluated.
//!
//! # Evidence
//!
//! Evidence holds only fields that change when the observed situation changes (host, port, role,
//! failing step, error text, certificate issuer, …), never timings such as `dns_ms` or
//! `handshake_ms`: the worker updates a finding whenever its evidence changes, and timings would
//! turn every push into an update event and a ticket comment.
//!
//! # Adding a rule
//!
//! One module per rule under `src/rules/`, exposing `INFO: RuleInfo` and
//! `check(&TenantFacts) -> Vec<Verdict>`, with its fixtures and tests beside it; then one line in
//! the pack list in `src/rules/mod.rs`. Rule texts are English here; translations and rule
//! metadata files will hang off the rule id.

mod evaluation;
mod facts;
mod rules;

pub use evaluation::{Evaluation, Outcome, RuleInfo, Severity};
pub use facts::{CollectorState, FactInput, TenantFacts};

/// Metadata of every rule in the shipped pack, in evaluation order.
pub fn rules() -> &'static [RuleInfo] {
    rules::PACK_INFO
}

/// Runs every rule of the pack over the tenant's latest facts.
///
/// Returns one evaluation per (rule, subject), ordered by pack order, then subject.
pub fn evaluate(facts: &TenantFacts) -> Vec<Evaluation> {
    let mut evaluations = Vec::new();
    for (info, check) in rules::PACK_INFO.iter().zip(rules::PACK_CHECKS) {
        let mut verdicts = check(facts);
        verdicts.sort_by(|a, b| a.subject.cmp(&b.subject));
        evaluations.extend(verdicts.into_iter().map(|verdict| Evaluation {
            rule_id: info.id,
            subject: verdict.subject,
            title: info.title,
            outcome: verdict.outcome,
        }));
    }
    evaluations
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;
    use crate::rules::fixtures::*;

    #[test]
    fn pack_ids_are_unique_and_kebab_case() {
        let mut seen = HashSet::new();
        for info in rules() {
            assert!(seen.insert(info.id), "duplicate rule id {}", info.id);
            assert!(
                info.id.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-'),
                "rule id {} is not kebab-case",
                info.id
            );
        }
        assert_eq!(rules().len(), rules::PACK_CHECKS.len());
    }

    #[test]
    fn pack_metadata_is_complete() {
        for info in rules() {
            assert!(!info.title.is_empty(), "{}", info.id);
            assert!(!info.description.is_empty(), "{}", info.id);
            assert!(!info.remediation.is_empty(), "{}", info.id);
            assert!(!info.references.is_empty(), "{}", info.id);
            for reference in info.references {
                assert!(reference.starts_with("https://"), "{}: {reference}", info.id);
            }
        }
    }

    #[test]
    fn shipped_pack_has_the_first_rules() {
        let ids: Vec<_> = rules().iter().map(|r| r.id).collect();
        assert_eq!(ids, ["endpoint-reachable", "endpoint-tls-trusted", "collector-silent"]);
        let severities: Vec<_> = rules().iter().map(|r| r.severity).collect();
        assert_eq!(severities, [Severity::Critical, Severity::Critical, Severity::High]);
    }

    #[test]
    fn empty_tenant_yields_no_failure() {
        let facts = TenantFacts { now: now(), collectors: vec![], facts: vec![] };
        assert!(evaluate(&facts).iter().all(|e| !e.outcome.is_fail()));
        assert!(evaluate(&facts).is_empty());
    }

    #[test]
    fn tenant_with_a_fresh_collector_and_no_facts_yields_no_failure() {
        let site = collector("site-a");
        let facts = tenant(vec![site], vec![]);
        let evaluations = evaluate(&facts);
        assert_eq!(evaluations.len(), 1);
        assert_eq!(evaluations[0].rule_id, "collector-silent");
        assert_eq!(evaluations[0].outcome, Outcome::Pass);
    }

    #[test]
    fn evaluations_are_ordered_by_pack_then_subject_and_repeatable() {
        let a = collector("site-a");
        let b = collector("site-b");
        let facts = tenant(
            vec![b.clone(), a.clone()],
            vec![
                endpoint_fact(&b, healthy_relay()),
                endpoint_fact(&a, healthy_password_reset()),
                endpoint_fact(&a, healthy_relay()),
            ],
        );
        let first = evaluate(&facts);
        let rule_ids: Vec<_> = first.iter().map(|e| e.rule_id).collect();
        assert_eq!(
            rule_ids,
            [
                "endpoint-reachable",
                "endpoint-reachable",
                "endpoint-reachable",
                "endpoint-tls-trusted",
                "endpoint-tls-trusted",
                "endpoint-tls-trusted",
                "collector-silent",
                "collector-silent",
            ]
        );
        for pair in first.windows(2) {
            if pair[0].rule_id == pair[1].rule_id {
                assert!(pair[0].subject < pair[1].subject);
            }
        }
        assert_eq!(first, evaluate(&facts));
    }

    #[test]
    fn the_same_endpoint_from_two_collectors_gives_two_subjects() {
        let a = collector("site-a");
        let b = collector("site-b");
        let facts = tenant(
            vec![a.clone(), b.clone()],
            vec![endpoint_fact(&a, healthy_relay()), endpoint_fact(&b, relay_tcp_blocked())],
        );
        let reachable: Vec<_> =
            evaluate(&facts).into_iter().filter(|e| e.rule_id == "endpoint-reachable").collect();
        assert_eq!(reachable.len(), 2);
        assert_ne!(reachable[0].subject, reachable[1].subject);
        let failing: Vec<_> = reachable.iter().filter(|e| e.outcome.is_fail()).collect();
        assert_eq!(failing.len(), 1);
        assert!(failing[0].subject.ends_with(&b.id.to_string()));
    }

    #[test]
    fn timings_do_not_change_any_evaluation() {
        let site = collector("site-a");
        let slow = with_timings(relay_intercepted(), 900);
        let fast = with_timings(relay_intercepted(), 3);
        let a = evaluate(&tenant(vec![site.clone()], vec![endpoint_fact(&site, slow)]));
        let b = evaluate(&tenant(vec![site.clone()], vec![endpoint_fact(&site, fast)]));
        assert_eq!(a, b);
    }

    #[test]
    fn no_evidence_carries_a_timing_field() {
        let site = collector("site-a");
        let mut silent = collector("site-b");
        silent.silent_after = Some(now() - chrono::Duration::minutes(20));
        let facts = tenant(
            vec![site.clone(), silent],
            vec![
                endpoint_fact_for(&site, "a:443", relay_dns_failed()),
                endpoint_fact_for(&site, "b:443", relay_tcp_blocked()),
                endpoint_fact_for(&site, "c:443", password_reset_tls_failed()),
                endpoint_fact_for(&site, "d:443", relay_intercepted()),
                endpoint_fact_for(&site, "e:443", legacy_tls()),
            ],
        );
        let evaluations = evaluate(&facts);
        let fails: Vec<_> = evaluations.iter().filter(|e| e.outcome.is_fail()).collect();
        assert!(fails.len() >= 6, "{evaluations:#?}");
        for evaluation in fails {
            if let Outcome::Fail { evidence, .. } = &evaluation.outcome {
                assert_no_timing_fields(evidence);
            }
        }
    }

    #[test]
    fn evaluation_serialises_with_a_tagged_outcome() {
        let site = collector("site-a");
        let facts = tenant(vec![site.clone()], vec![endpoint_fact(&site, relay_dns_failed())]);
        let evaluation = evaluate(&facts).remove(0);
        let json = serde_json::to_value(&evaluation).expect("evaluation serialises");
        assert_eq!(json["rule_id"], "endpoint-reachable");
        assert_eq!(json["outcome"]["result"], "fail");
        assert_eq!(json["outcome"]["severity"], "critical");
    }
}
