//! A custom rule as `PUT /v1/custom-rules/{id}` checks it (`wbd_rules::custom::compile`: limits,
//! syntax, names against the fact schema, a dry run on the sample tenant) and, once accepted, as
//! the worker evaluates it: over the sample tenant's facts and over a tenant with no facts.
//!
//! Input: the condition, optionally followed by a line `--subject--` and a subject expression.
#![no_main]

use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;
use wbd_rules::custom::{CustomRule, compile, evaluate_custom};
use wbd_rules::{Severity, TenantFacts};

static SAMPLE: LazyLock<TenantFacts> = LazyLock::new(|| {
    serde_json::from_str(include_str!("../../crates/rules/packs/cel/sample-tenant.json"))
        .expect("sample tenant")
});

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let (condition, subject_expr) = match text.split_once("\n--subject--\n") {
        Some((condition, subject)) => (condition, Some(subject.to_owned())),
        None => (text, None),
    };
    let rule = CustomRule {
        id: "fuzz-rule".into(),
        title: "Fuzzed rule".into(),
        severity: Severity::Medium,
        condition: condition.to_owned(),
        subject_expr,
    };
    let Ok(compiled) = compile(&rule) else { return };
    let empty = TenantFacts { now: SAMPLE.now, collectors: vec![], facts: vec![] };
    for facts in [&*SAMPLE, &empty] {
        let evaluations = evaluate_custom(std::slice::from_ref(&compiled), facts);
        assert_eq!(evaluations.len(), 1);
    }
});
