//! `collector-silent`: every active collector keeps pushing. A silent collector means the
//! tenant's facts are getting old and nobody would notice writeback breaking at that site.
//!
//! Subject: the collector id. Fails when an active collector's silence deadline
//! (`silent_after`, moved forward by every push) lies before `now`. Passes for an active
//! collector within its deadline, and for a pending or revoked one (nobody expects it to push;
//! a revoked collector's silence finding thus resolves).
//!
//! Evidence: `collector_name`, `last_seen_at`, `push_interval_secs`. `last_seen_at` only changes
//! when the collector pushes, and a push resolves the finding anyway.

use serde_json::json;

use super::{RuleDef, Verdict};
use crate::{CollectorState, Message, Outcome, Params, Severity, TenantFacts};

pub(crate) const ID: &str = "collector-silent";

pub(crate) const RULES: &[RuleDef] = &[RuleDef {
    id: ID,
    check,
    #[cfg(test)]
    fixtures: tests::fixtures,
}];

fn check(facts: &TenantFacts, _params: &Params) -> Vec<Verdict> {
    facts
        .collectors
        .iter()
        .map(|collector| Verdict { subject: collector.id.to_string(), outcome: judge(collector, facts) })
        .collect()
}

fn judge(collector: &CollectorState, facts: &TenantFacts) -> Outcome {
    let overdue = collector.active && collector.silent_after.is_some_and(|deadline| deadline < facts.now);
    if !overdue {
        return Outcome::Pass;
    }
    let name = &collector.name;
    let interval = collector.push_interval_secs;
    let message = match collector.last_seen_at {
        Some(last) => Message::new("collector-silent.overdue")
            .arg("last_seen", last.format("%Y-%m-%d %H:%M UTC").to_string()),
        None => Message::new("collector-silent.never-pushed"),
    };
    Outcome::fail(
        Severity::High,
        message.arg("collector", name.as_str()).arg("interval", interval),
        json!({
            "collector_name": name,
            "last_seen_at": collector.last_seen_at,
            "push_interval_secs": interval,
        }),
    )
}

#[cfg(test)]
mod tests {
    use chrono::Duration;

    use super::*;
    use crate::rules::fixtures::*;

    pub(crate) fn fixtures() -> Vec<Fixture> {
        let mut never = overdue("never");
        never.last_seen_at = None;
        vec![
            Fixture::new("overdue", tenant(vec![overdue("site-a")], vec![]), Expect::Fail(Severity::High)),
            Fixture::new("never pushed", tenant(vec![never], vec![]), Expect::Fail(Severity::High)),
            Fixture::new("on time", tenant(vec![collector("site-a")], vec![]), Expect::Pass),
        ]
    }

    fn run(collector: CollectorState) -> Verdict {
        let verdicts = run_rule(ID, &tenant(vec![collector], vec![]));
        assert_eq!(verdicts.len(), 1);
        verdicts.into_iter().next().expect("one verdict")
    }

    fn overdue(name: &str) -> CollectorState {
        let mut c = collector(name);
        c.last_seen_at = Some(now() - Duration::minutes(42));
        c.silent_after = Some(now() - Duration::minutes(27));
        c
    }

    #[test]
    fn collector_within_its_deadline_passes() {
        let c = collector("site-a");
        let verdict = run(c.clone());
        assert_eq!(verdict.subject, c.id.to_string());
        assert_eq!(verdict.outcome, Outcome::Pass);
    }

    #[test]
    fn enrolled_collector_that_pushed_passes() {
        let mut c = collector("site-a");
        c.last_seen_at = Some(now());
        c.silent_after = Some(now() + Duration::seconds(900));
        assert_eq!(run(c).outcome, Outcome::Pass);
    }

    #[test]
    fn overdue_collector_fails_with_its_last_push() {
        let c = overdue("Fabrikam DC site");
        let verdict = run(c.clone());
        assert_eq!(verdict.subject, c.id.to_string());
        let Outcome::Fail { severity, summary, evidence, .. } = verdict.outcome else {
            panic!("expected a failure")
        };
        assert_eq!(severity, Severity::High);
        assert!(summary.contains("'Fabrikam DC site' last pushed at 2026-03-02 11:18 UTC"), "{summary}");
        assert!(summary.contains("every 300 s"), "{summary}");
        assert_eq!(evidence["collector_name"], "Fabrikam DC site");
        assert_eq!(evidence["push_interval_secs"], 300);
        assert_eq!(evidence["last_seen_at"], json!(c.last_seen_at));
        assert_no_timing_fields(&evidence);
    }

    #[test]
    fn enrolled_collector_that_never_pushed_fails_once_overdue() {
        let mut c = overdue("site-a");
        c.last_seen_at = None;
        let text = fail_summary(&run(c).outcome).to_owned();
        assert!(text.contains("has never pushed"), "{text}");
    }

    #[test]
    fn deadline_exactly_now_is_not_yet_silent() {
        let mut c = collector("site-a");
        c.silent_after = Some(now());
        assert_eq!(run(c).outcome, Outcome::Pass);
    }

    #[test]
    fn revoked_or_pending_collectors_pass() {
        let mut revoked = overdue("retired");
        revoked.active = false;
        assert_eq!(run(revoked).outcome, Outcome::Pass);
        let mut pending = collector("new");
        pending.active = false;
        pending.last_seen_at = None;
        pending.silent_after = None;
        assert_eq!(run(pending).outcome, Outcome::Pass);
    }

    #[test]
    fn evidence_is_the_same_on_every_evaluation_while_silent() {
        let c = overdue("site-a");
        let mut later = tenant(vec![c.clone()], vec![]);
        later.now += Duration::hours(5);
        let first = run(c);
        let second = run_rule(ID, &later).into_iter().next().expect("one verdict");
        assert_eq!(first, second);
    }
}
