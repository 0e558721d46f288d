//! The pure rule engine of Writeback Doctor and the rule pack it ships.
//!
//! This crate owns *what is wrong*: it reads a tenant's latest facts and says, per rule and
//! subject, whether the check passes, fails (with severity, a message a technician can act on in
//! English, Polish or Ukrainian, and evidence), or cannot be decided. It does no I/O: the worker
//! loads the facts, calls [`evaluate_with`], and turns the [`Evaluation`]s into finding changes.
//! That keeps every rule fast to test and benchmark with hand-built facts.
//!
//! # Inputs and outputs
//!
//! - [`TenantFacts`]: the evaluation instant (`now`), the tenant's collectors ([`CollectorState`])
//!   and the latest fact per (collector, probe, subject) ([`FactInput`], the typed
//!   [`wbd_wire::ProbeOutput`] a collector reported).
//! - [`evaluate_with`] runs every enabled rule of the pack with the tenant's [`PackSettings`]
//!   (severity and parameter overrides) and returns one [`Evaluation`] per (rule, subject), in
//!   pack order, then by subject: the same facts always give the same list. [`evaluate`] is the
//!   same with the pack's defaults.
//! - [`rules()`] / [`rules_in`] list the pack's metadata ([`RuleInfo`]) in English or another
//!   [`Lang`]: id, title, default severity, probe kinds read, description, remediation steps,
//!   references, parameters ([`ParamSpec`]), flap damping ([`FlapDamping`]), and the catalogue
//!   ids and seed checklist points the rule covers.
//! - [`custom`]: tenants' own rules in CEL, checked against the published fact schema.
//!
//! ```
//! use wbd_rules::{Lang, Outcome, PackSettings, TenantFacts, evaluate_with, render};
//!
//! let facts = TenantFacts { now: chrono::Utc::now(), collectors: vec![], facts: vec![] };
//! let settings = PackSettings::merge(&PackSettings::defaults(), &PackSettings::defaults());
//! for evaluation in evaluate_with(&facts, &settings) {
//!     // No collector reported anything: every rule says which probe it is waiting for.
//!     if let Outcome::Unknown { message, .. } = &evaluation.outcome {
//!         let polish = render(message, Lang::Pl);
//!         assert!(!polish.is_empty());
//!     }
//!     assert!(!evaluation.outcome.is_fail());
//! }
//! ```
//!
//! # Outcomes and messages
//!
//! [`Outcome::Fail`] carries a [`Message`] (a text key and typed arguments) and its English
//! rendering (`summary`); [`Outcome::Unknown`] and [`Outcome::NotApplicable`] likewise
//! (`reason`). Unknown means the facts do not let the rule decide; not applicable means the facts
//! say the check has nothing to judge at this site (no proxy in use): the worker treats it like a
//! pass and never counts it as undecided, so a healthy site scores 100. A rule whose probe has not
//! reported says so ("not evaluated: no data from the X probe"), with the subject `tenant`.
//! [`render`] renders a message in any [`Lang`] at response time, falling back to English.
//!
//! # Subjects
//!
//! A finding's fingerprint is (tenant, rule, subject), so a subject must be stable across runs
//! and distinct between the things a rule judges:
//!
//! - rules over one collector's report: `<probe subject>@<collector id>`, e.g.
//!   `passwordreset.microsoftonline.com:443@0192…`. The collector id keeps two sites that probe
//!   the same thing apart; the id, not the name, because names may be edited.
//! - tenant-wide rules (Graph facts, "one active writeback server"): `tenant`.
//! - `collector-silent`: the collector id.
//!
//! Facts of collectors that are not active (pending, revoked, or unknown to the tenant) are not
//! evaluated: nothing will refresh them, so they would keep a finding open forever.
//!
//! # Evidence
//!
//! Evidence holds only fields that change when the observed situation changes (host, port, role,
//! failing step, error text, certificate issuer, …), never timings such as `dns_ms`: the worker
//! updates a finding whenever its evidence changes, and timings would churn findings.
//!
//! # Overrides
//!
//! [`PackSettings`] holds overrides by rule id ([`RuleSettings`]: `disabled`, `severity`,
//! `params`, `open_after`, `resolve_after`); [`PackSettings::merge`] lays a tenant's over its
//! organisation's, and [`PackSettings::validate`] refuses unknown rules, unknown parameters,
//! wrong types and out-of-range values with a [`SettingsError`] naming the field. A disabled rule
//! yields no evaluation (the worker then resolves its open findings as no longer observed).
//!
//! # Adding a rule
//!
//! Add a `[[rule]]` to `packs/writeback/pack.toml` (position = evaluation order), its texts to
//! `en.toml`, `pl.toml` and `uk.toml`, and a [`rules`] module entry (`RuleDef`: id, check,
//! fixtures). The tests refuse a rule without a failing and a passing fixture, a language with a
//! missing text, and a message whose placeholders the rule does not supply.

mod catalog;
pub mod custom;
mod evaluation;
mod facts;
mod message;
mod params;
mod rules;
mod settings;

use std::sync::LazyLock;

pub use evaluation::{Evaluation, FlapDamping, Outcome, RuleInfo, Severity};
pub use facts::{CollectorState, FactInput, TenantFacts};
pub use message::{Lang, Message, keys, render};
pub use params::{DottedVersion, ParamKind, ParamProblem, ParamSpec, Params};
pub use settings::{
    EffectiveRule, MAX_FLAP_COUNT, PackSettings, RuleSettings, SettingsError, SettingsProblem,
};

/// Metadata of every rule in the shipped pack, in evaluation order, in English.
pub fn rules() -> &'static [RuleInfo] {
    catalog::infos(Lang::En)
}

/// Metadata of every rule in the shipped pack, in evaluation order, in `lang`.
pub fn rules_in(lang: Lang) -> &'static [RuleInfo] {
    catalog::infos(lang)
}

/// The metadata of one rule in `lang`.
pub fn rule_info(id: &str, lang: Lang) -> Option<&'static RuleInfo> {
    rules_in(lang).iter().find(|info| info.id == id)
}

/// The pack in evaluation order: each rule's metadata with its check.
static PACK: LazyLock<Vec<(&'static RuleInfo, rules::Check)>> = LazyLock::new(|| {
    rules().iter().filter_map(|info| rules::find(info.id).map(|rule| (info, rule.check))).collect()
});

/// Runs every rule of the pack over the tenant's latest facts, with the pack's defaults.
///
/// Returns one evaluation per (rule, subject), ordered by pack order, then subject.
pub fn evaluate(facts: &TenantFacts) -> Vec<Evaluation> {
    evaluate_with(facts, &PackSettings::default())
}

/// Runs every enabled rule of the pack over the tenant's latest facts, with `settings` (usually
/// [`PackSettings::merge`] of the organisation's and the tenant's overrides).
///
/// A disabled rule yields nothing; a severity override replaces the severity of every failure of
/// that rule; parameter overrides that do not pass their type are ignored (settings are
/// validated when saved). Ordered by pack order, then subject.
pub fn evaluate_with(facts: &TenantFacts, settings: &PackSettings) -> Vec<Evaluation> {
    let mut evaluations = Vec::with_capacity(PACK.len() + facts.facts.len());
    for (info, check) in PACK.iter() {
        let effective = settings.effective(info);
        if !effective.enabled {
            continue;
        }
        let mut verdicts = check(facts, &effective.params);
        verdicts.sort_by(|a, b| a.subject.cmp(&b.subject));
        evaluations.extend(verdicts.into_iter().map(|verdict| {
            let mut outcome = verdict.outcome;
            if let (Outcome::Fail { severity, .. }, Some(forced)) =
                (&mut outcome, effective.severity_override)
            {
                *severity = forced;
            }
            // A finding is named after its problem; anything else after the check.
            let title = if outcome.is_fail() { info.problem } else { info.title };
            Evaluation { rule_id: info.id.into(), subject: verdict.subject, title: title.into(), outcome }
        }));
    }
    evaluations
}

#[cfg(test)]
mod scenarios;

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet, HashSet};

    use serde_json::json;

    use super::*;
    use crate::rules::fixtures::*;
    use crate::rules::{FAMILIES, Verdict};

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
    }

    #[test]
    fn metadata_and_code_name_the_same_rules() {
        let in_metadata: BTreeSet<&str> = rules().iter().map(|info| info.id).collect();
        let mut in_code = BTreeSet::new();
        for rule in FAMILIES.iter().flat_map(|family| family.iter()) {
            assert!(in_code.insert(rule.id), "rule {} is declared twice in code", rule.id);
        }
        assert_eq!(in_metadata, in_code);
        assert_eq!(PACK.len(), rules().len());
        for lang in Lang::ALL {
            let ids: Vec<_> = rules_in(lang).iter().map(|info| info.id).collect();
            assert_eq!(ids, rules().iter().map(|info| info.id).collect::<Vec<_>>(), "{lang}");
        }
    }

    #[test]
    fn pack_metadata_is_complete() {
        for lang in Lang::ALL {
            for info in rules_in(lang) {
                assert_eq!(info.lang, lang);
                assert!(!info.title.is_empty(), "{}", info.id);
                assert!(!info.problem.is_empty(), "{}", info.id);
                assert!(!info.description.is_empty(), "{}", info.id);
                assert!(!info.remediation.is_empty(), "{}", info.id);
                assert!(!info.references.is_empty(), "{}", info.id);
                for param in info.params {
                    assert!(!param.description.is_empty(), "{}: {}", info.id, param.name);
                }
            }
        }
    }

    /// Runs a fixture's rule with the fixture's parameters.
    fn run_fixture(id: &str, fixture: &Fixture) -> Vec<Verdict> {
        let info = rule_info(id, Lang::En).expect("metadata");
        let settings = RuleSettings { params: fixture.params.clone(), ..RuleSettings::default() };
        assert_eq!(settings.validate(id), Ok(()), "{id} / {}: fixture parameters are invalid", fixture.name);
        let settings = PackSettings { rules: BTreeMap::from([(id.to_owned(), settings)]) };
        let effective = settings.effective(info);
        let rule = rules::find(id).expect("rule");
        (rule.check)(&fixture.facts, &effective.params)
    }

    fn assert_renders_everywhere(id: &str, fixture: &str, message: &Message) {
        for part in message.flatten() {
            let rule_prefix = format!("{id}.");
            assert!(
                part.key.starts_with(&rule_prefix) || part.key.starts_with("common."),
                "{id} / {fixture}: message key {} belongs to another rule",
                part.key
            );
            for lang in Lang::ALL {
                let template = catalog::message_template(lang, &part.key)
                    .unwrap_or_else(|| panic!("{id} / {fixture}: {lang} has no text for {}", part.key));
                for name in message::placeholders(template) {
                    assert!(
                        part.args.contains_key(name),
                        "{id} / {fixture}: {lang} text of {} uses {{{name}}}, which the rule does not supply (args: {:?})",
                        part.key,
                        part.args.keys().collect::<Vec<_>>()
                    );
                }
            }
        }
        for lang in Lang::ALL {
            let text = render(message, lang);
            assert!(
                !text.contains('{') || text.contains("{\""),
                "{id} / {fixture}: unfilled placeholder in {lang}: {text}"
            );
        }
    }

    #[test]
    fn every_rule_has_failing_and_passing_fixtures_and_they_hold() {
        let mut used_keys: BTreeSet<String> = BTreeSet::new();
        for rule in FAMILIES.iter().flat_map(|family| family.iter()) {
            let fixtures = (rule.fixtures)();
            assert!(
                fixtures.iter().any(|f| matches!(f.expect, Expect::Fail(_))),
                "rule {} has no failing fixture",
                rule.id
            );
            assert!(
                fixtures.iter().any(|f| f.expect == Expect::Pass),
                "rule {} has no passing fixture",
                rule.id
            );
            for fixture in &fixtures {
                let verdicts = run_fixture(rule.id, fixture);
                let what = format!("{} / {}: {verdicts:#?}", rule.id, fixture.name);
                assert!(!verdicts.is_empty(), "{what}");
                match fixture.expect {
                    Expect::Fail(severity) => assert!(
                        verdicts.iter().any(
                            |v| matches!(&v.outcome, Outcome::Fail { severity: s, .. } if *s == severity)
                        ),
                        "expected a {severity} failure: {what}"
                    ),
                    Expect::Pass => {
                        assert!(verdicts.iter().all(|v| v.outcome.is_pass()), "expected passes: {what}")
                    }
                    Expect::Unknown => assert!(
                        verdicts.iter().all(|v| matches!(v.outcome, Outcome::Unknown { .. })),
                        "expected unknowns: {what}"
                    ),
                    Expect::NotApplicable => assert!(
                        verdicts.iter().all(|v| v.outcome.is_not_applicable()),
                        "expected not applicable: {what}"
                    ),
                }
                for verdict in &verdicts {
                    if let Some(message) = verdict.outcome.message() {
                        assert_renders_everywhere(rule.id, fixture.name, message);
                        used_keys.extend(message.flatten().into_iter().map(|m| m.key.into_owned()));
                    }
                    if let Outcome::Fail { evidence, summary, message, .. } = &verdict.outcome {
                        assert_no_timing_fields(evidence);
                        assert_eq!(summary, &message.english());
                    }
                }
            }
        }
        // Every sentence a rule can say is said by at least one fixture, so its placeholders were
        // checked against real arguments.
        for key in catalog::message_keys(Lang::En) {
            if key.starts_with("common.") {
                continue;
            }
            assert!(used_keys.contains(key), "no fixture produces message {key}");
        }
    }

    #[test]
    fn empty_tenant_yields_no_failure_and_says_what_is_missing() {
        let facts = TenantFacts { now: now(), collectors: vec![], facts: vec![] };
        let evaluations = evaluate(&facts);
        assert!(evaluations.iter().all(|e| !e.outcome.is_fail()));
        let no_data: Vec<_> = evaluations
            .iter()
            .filter(|e| e.outcome.message().is_some_and(|m| m.key == keys::NO_DATA))
            .collect();
        assert_eq!(no_data.len(), rules().iter().filter(|r| !r.reads.is_empty()).count());
        assert!(no_data.iter().all(|e| e.subject == "tenant"));
        let Outcome::Unknown { reason, .. } = &no_data[0].outcome else { unreachable!() };
        assert!(reason.starts_with("Not evaluated: no data from the endpoint probe"), "{reason}");
    }

    #[test]
    fn tenant_with_a_fresh_collector_and_no_facts_yields_no_failure() {
        let site = collector("site-a");
        let evaluations = evaluate(&tenant(vec![site.clone()], vec![]));
        assert!(evaluations.iter().all(|e| !e.outcome.is_fail()));
        let silent: Vec<_> = evaluations.iter().filter(|e| e.rule_id == "collector-silent").collect();
        assert_eq!(silent.len(), 1);
        assert_eq!(silent[0].outcome, Outcome::Pass);
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
        let order: Vec<_> = rules().iter().map(|r| r.id).collect();
        let position = |id| order.iter().position(|r| *r == id).expect("known rule");
        for pair in first.windows(2) {
            assert!(position(&pair[0].rule_id) <= position(&pair[1].rule_id));
            if pair[0].rule_id == pair[1].rule_id {
                assert!(pair[0].subject < pair[1].subject);
            }
        }
        assert_eq!(first.iter().filter(|e| e.rule_id == "endpoint-reachable").count(), 3);
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
    fn a_failure_is_titled_by_its_problem_and_a_pass_by_its_check() {
        let site = collector("site-a");
        let facts = tenant(
            vec![site.clone()],
            vec![endpoint_fact(&site, relay_tcp_blocked()), endpoint_fact(&site, healthy_password_reset())],
        );
        let reachable: Vec<_> =
            evaluate(&facts).into_iter().filter(|e| e.rule_id == "endpoint-reachable").collect();
        let failed = reachable.iter().find(|e| e.outcome.is_fail()).expect("the relay fails");
        assert_eq!(failed.title, "Writeback endpoint is unreachable");
        let passed = reachable.iter().find(|e| e.outcome.is_pass()).expect("the service passes");
        assert_eq!(passed.title, "Writeback endpoint is reachable");
        assert_eq!(
            rule_info("endpoint-reachable", Lang::Pl).map(|i| i.problem),
            Some("Punkt końcowy zapisu zwrotnego jest nieosiągalny")
        );
    }

    #[test]
    fn evaluation_serialises_with_a_tagged_outcome_and_its_message() {
        let site = collector("site-a");
        let facts = tenant(vec![site.clone()], vec![endpoint_fact(&site, relay_dns_failed())]);
        let evaluation = evaluate(&facts).remove(0);
        let json = serde_json::to_value(&evaluation).expect("evaluation serialises");
        assert_eq!(json["rule_id"], "endpoint-reachable");
        assert_eq!(json["outcome"]["result"], "fail");
        assert_eq!(json["outcome"]["severity"], "critical");
        assert_eq!(json["outcome"]["message"]["key"], "endpoint-reachable.dns-relay");
        let outcome: Outcome = serde_json::from_value(json["outcome"].clone()).expect("outcome deserialises");
        assert_eq!(outcome, evaluation.outcome);
        let polish = outcome.text(Lang::Pl).expect("text");
        let ukrainian = outcome.text(Lang::Uk).expect("text");
        assert_ne!(polish, ukrainian);
        assert!(polish.contains("servicebus.windows.net"), "{polish}");
    }

    #[test]
    fn overrides_disable_rules_change_severity_and_parameters() {
        let facts = site_with(vec![("relay:443", crate::rules::idle_connection::tests::cut_at_90())]);
        let idle = |evaluations: Vec<Evaluation>| {
            evaluations.into_iter().find(|e| e.rule_id == "idle-connection-survives").map(|e| e.outcome)
        };
        assert!(idle(evaluate(&facts)).is_some_and(|o| o.is_fail()));

        let org: PackSettings = serde_json::from_value(json!({
            "idle-connection-survives": { "severity": "low" }
        }))
        .expect("settings");
        let outcome = idle(evaluate_with(&facts, &org)).expect("evaluated");
        assert!(matches!(outcome, Outcome::Fail { severity: Severity::Low, .. }), "{outcome:?}");

        let tenant_level: PackSettings = serde_json::from_value(
            json!({ "idle-connection-survives": { "params": { "min_idle_secs": 60 } } }),
        )
        .expect("settings");
        let merged = PackSettings::merge(&org, &tenant_level);
        assert!(idle(evaluate_with(&facts, &merged)).is_some_and(|o| o.is_pass()));

        let disabled: PackSettings =
            serde_json::from_value(json!({ "idle-connection-survives": { "disabled": true } }))
                .expect("settings");
        assert!(idle(evaluate_with(&facts, &PackSettings::merge(&merged, &disabled))).is_none());
        let re_enabled: PackSettings =
            serde_json::from_value(json!({ "idle-connection-survives": { "disabled": false } }))
                .expect("settings");
        assert!(idle(evaluate_with(&facts, &PackSettings::merge(&disabled, &re_enabled))).is_some());
    }

    #[test]
    fn invalid_overrides_name_the_field() {
        let settings: PackSettings = serde_json::from_value(json!({
            "idle-connection-survives": { "params": { "min_idle_secs": 5, "max_idle": 3 }, "open_after": 0 },
            "connect-version-supported": { "params": { "min_version": 2 } },
            "no-such-rule": { "disabled": true }
        }))
        .expect("shape is right");
        let errors = settings.validate().expect_err("refused");
        let fields: Vec<String> = errors.iter().map(|e| format!("{} {}", e.rule_id, e.field)).collect();
        assert_eq!(
            fields,
            [
                "connect-version-supported params.min_version",
                "idle-connection-survives params.max_idle",
                "idle-connection-survives params.min_idle_secs",
                "idle-connection-survives open_after",
                "no-such-rule ",
            ]
        );
        let texts: Vec<String> = errors.iter().map(ToString::to_string).collect();
        assert!(texts[0].contains("expected a value of type version"), "{texts:?}");
        assert!(texts[1].contains("unknown parameter (known: min_idle_secs)"), "{texts:?}");
        assert!(texts[2].contains("5 is out of range (allowed 30 to 3600)"), "{texts:?}");
        assert_eq!(errors[2].pointer(), "/idle-connection-survives/params/min_idle_secs");
        assert!(serde_json::from_value::<PackSettings>(json!({"x": {"colour": "red"}})).is_err());
    }

    #[test]
    fn effective_flap_damping_follows_overrides() {
        let info = rule_info("idle-connection-survives", Lang::En).expect("rule");
        let defaults = PackSettings::defaults().effective(info);
        assert_eq!(defaults.flap, info.flap);
        let settings: PackSettings =
            serde_json::from_value(json!({ "idle-connection-survives": { "open_after": 4 } }))
                .expect("settings");
        let effective = settings.effective(info);
        assert_eq!(effective.flap.open_after, 4);
        assert_eq!(effective.flap.resolve_after, info.flap.resolve_after);
    }
}
