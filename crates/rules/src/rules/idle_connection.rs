//! `idle-connection-survives` (seed checklist point 8; catalogue PWB-HOST-09): a TLS connection
//! to each writeback endpoint survives being idle for at least `min_idle_secs` (default 180 s:
//! the seed asks for two to three minutes, because the relay's connections sit idle between
//! resets and a firewall or proxy that drops them silently breaks writeback).
//!
//! Subject: `<probe subject>@<collector id>`. Fails when a connection was cut while idle before
//! `min_idle_secs`, or a hold no longer than `min_idle_secs` was cut; passes when a hold of at
//! least `min_idle_secs` survived; unknown when no connection could be opened, or only shorter
//! holds were tried (raise the collector's hold durations).
//!
//! The text says when the connection was cut (the measured time, in whole seconds, when the other
//! side closed it while idle) rather than which configured hold failed; a connection that was
//! silently dropped is only found dead on use, so then it says between which holds.
//!
//! Evidence: `collector_id`, `collector_name`, `host`, `port`, `via_proxy`, `holds` (seconds and
//! outcome; not the millisecond of the cut, which varies).

use serde_json::json;
use wbd_wire::{IdleConnectionReport, IdleOutcome, ProbeKind, ProbeOutput};

use super::{RuleDef, Verdict, observed, site_evidence};
use crate::facts::Observation;
use crate::{Message, Outcome, Params, Severity, TenantFacts};

pub(crate) const ID: &str = "idle-connection-survives";

pub(crate) const RULES: &[RuleDef] = &[RuleDef {
    id: ID,
    check,
    #[cfg(test)]
    fixtures: tests::fixtures,
}];

fn check(facts: &TenantFacts, params: &Params) -> Vec<Verdict> {
    let observations = match observed(facts, ProbeKind::IdleConnection, |output| match output {
        ProbeOutput::IdleConnection(report) => Some(report),
        _ => None,
    }) {
        Ok(observations) => observations,
        Err(no_data) => return no_data,
    };
    let min_secs = u32::try_from(params.int("min_idle_secs")).unwrap_or(u32::MAX);
    observations.iter().map(|o| Verdict { subject: o.subject(), outcome: judge(o, min_secs) }).collect()
}

fn judge(observation: &Observation<'_, IdleConnectionReport>, min_secs: u32) -> Outcome {
    let report = observation.report;
    let min_ms = u64::from(min_secs) * 1000;
    // When the other side closed a connection while it sat idle, the probe saw when: that is the
    // idle timeout in the path. A connection found dead on use was cut some time during its hold.
    let cut_while_idle = report
        .holds
        .iter()
        .filter(|h| h.outcome == IdleOutcome::CutWhileIdle)
        .filter_map(|h| h.cut_after_ms.map(|ms| (ms, h)))
        .filter(|(ms, h)| *ms < min_ms || h.hold_secs <= min_secs)
        .min_by_key(|(ms, h)| (*ms / 1000, h.hold_secs));
    let found_dead = report
        .holds
        .iter()
        .filter(|h| h.outcome.is_cut() && h.hold_secs <= min_secs)
        .filter(|h| h.outcome == IdleOutcome::CutOnUse || h.cut_after_ms.is_none())
        .map(|h| h.hold_secs)
        .min();
    let base = |key: &'static str| {
        Message::new(key)
            .arg("collector", observation.collector.name.as_str())
            .arg("host", report.host.as_str())
            .arg("port", report.port)
            .arg("min_secs", min_secs)
    };
    let via = report.via_proxy.as_deref().unwrap_or("-");
    let survived = report.longest_survived_secs().map_or(json!("-"), |s| json!(s));
    let message = match (cut_while_idle, found_dead) {
        // Whole seconds: a firewall's idle timeout is a whole number, and the summary must not
        // change with the milliseconds it took to notice the close.
        (Some((ms, hold)), _) => Some(
            base("idle-connection-survives.cut")
                .arg("cut_secs", ms / 1000)
                .arg("hold_secs", hold.hold_secs)
                .arg("survived_secs", survived)
                .arg("via", via),
        ),
        (None, Some(hold_secs)) => Some(
            base("idle-connection-survives.dropped")
                .arg("hold_secs", hold_secs)
                .arg("survived_secs", survived)
                .arg("via", via),
        ),
        (None, None) => None,
    };
    if let Some(message) = message {
        let mut evidence = site_evidence(observation);
        evidence.insert("host".into(), json!(report.host));
        evidence.insert("port".into(), json!(report.port));
        evidence.insert("via_proxy".into(), json!(report.via_proxy));
        let holds: Vec<_> =
            report.holds.iter().map(|h| json!({"hold_secs": h.hold_secs, "outcome": h.outcome})).collect();
        evidence.insert("holds".into(), json!(holds));
        evidence.insert("min_idle_secs".into(), json!(min_secs));
        return Outcome::fail(Severity::High, message, evidence.into());
    }
    if report.longest_survived_secs().is_some_and(|s| s >= min_secs) {
        return Outcome::Pass;
    }
    if report.holds.iter().all(|h| h.outcome == IdleOutcome::ConnectFailed) {
        return Outcome::unknown(base("idle-connection-survives.not-connected"));
    }
    let longest = report.holds.iter().map(|h| h.hold_secs).max().unwrap_or_default();
    Outcome::unknown(base("idle-connection-survives.too-short").arg("longest_secs", longest))
}

#[cfg(test)]
pub(crate) mod tests {
    use wbd_wire::{EndpointRole, IdleHold};

    use super::*;
    use crate::rules::fixtures::*;

    pub(crate) fn report(holds: &[(u32, IdleOutcome)]) -> IdleConnectionReport {
        IdleConnectionReport {
            host: RELAY_HOST.to_owned(),
            port: 443,
            role: EndpointRole::ServiceBusRelay,
            via_proxy: None,
            holds: holds
                .iter()
                .map(|&(hold_secs, outcome)| IdleHold {
                    hold_secs,
                    outcome,
                    cut_after_ms: outcome.is_cut().then_some(u64::from(hold_secs) * 1000 - 17),
                    error: outcome.is_cut().then(|| "connection reset by peer".to_owned()),
                })
                .collect(),
        }
    }

    pub(crate) fn healthy() -> ProbeOutput {
        ProbeOutput::IdleConnection(report(&[(60, IdleOutcome::Survived), (180, IdleOutcome::Survived)]))
    }

    /// A firewall that drops idle sessions after about 90 seconds.
    pub(crate) fn cut_at_90() -> ProbeOutput {
        ProbeOutput::IdleConnection(report(&[(60, IdleOutcome::Survived), (120, IdleOutcome::CutOnUse)]))
    }

    pub(crate) fn fixtures() -> Vec<Fixture> {
        let subject = "ssprdedicatedsbprodscu.servicebus.windows.net:443";
        let one = |output| site_with(vec![(subject, output)]);
        vec![
            Fixture::new("dropped after a minute", one(cut_at_90()), Expect::Fail(Severity::High)),
            Fixture::new(
                "closed while idle",
                one(ProbeOutput::IdleConnection(closed_at_95())),
                Expect::Fail(Severity::High),
            ),
            Fixture::new("survives three minutes", one(healthy()), Expect::Pass),
            Fixture::new(
                "cut at 180 s passes when 120 s is enough",
                one(ProbeOutput::IdleConnection(report(&[
                    (120, IdleOutcome::Survived),
                    (180, IdleOutcome::CutWhileIdle),
                ]))),
                Expect::Pass,
            )
            .with_param("min_idle_secs", json!(120)),
            Fixture::new(
                "could not connect",
                one(ProbeOutput::IdleConnection(report(&[(180, IdleOutcome::ConnectFailed)]))),
                Expect::Unknown,
            ),
            Fixture::new(
                "only short holds",
                one(ProbeOutput::IdleConnection(report(&[(30, IdleOutcome::Survived)]))),
                Expect::Unknown,
            ),
            Fixture::new("no probe", site_with(vec![]), Expect::Unknown),
        ]
    }

    #[test]
    fn a_silent_drop_names_the_window_and_the_requirement() {
        let verdicts = run_rule(ID, &site_with(vec![("relay:443", cut_at_90())]));
        let Outcome::Fail { summary, evidence, .. } = &verdicts[0].outcome else {
            panic!("expected a failure")
        };
        assert!(summary.contains("between 60 s and 120 s"), "{summary}");
        assert!(summary.contains("180"), "{summary}");
        assert_eq!(evidence["holds"][1]["outcome"], "cut_on_use");
        assert_no_timing_fields(evidence);
    }

    /// A firewall that closes idle flows after 95 s: the 120 s and 180 s holds are both cut then.
    fn closed_at_95() -> IdleConnectionReport {
        let mut cut = report(&[
            (60, IdleOutcome::Survived),
            (120, IdleOutcome::CutWhileIdle),
            (180, IdleOutcome::CutWhileIdle),
        ]);
        cut.holds[1].cut_after_ms = Some(95_020);
        cut.holds[2].cut_after_ms = Some(95_004);
        cut
    }

    #[test]
    fn a_cut_while_idle_says_when_it_was_cut() {
        let one = |r| site_with(vec![("relay:443", ProbeOutput::IdleConnection(r))]);
        let verdicts = run_rule(ID, &one(closed_at_95()));
        let summary = fail_summary(&verdicts[0].outcome);
        assert!(summary.contains("cut after 95 s idle"), "{summary}");
        assert!(!summary.contains("hold of 120"), "{summary}");
        // Noticing the cut a few milliseconds later changes nothing.
        let mut later = closed_at_95();
        later.holds[2].cut_after_ms = Some(95_870);
        assert_eq!(verdicts, run_rule(ID, &one(later)));
    }

    #[test]
    fn a_cut_before_the_minimum_fails_even_in_a_longer_hold() {
        // Only a 300 s hold was tried; the firewall closed it after 150 s.
        let mut long = report(&[(300, IdleOutcome::CutWhileIdle)]);
        long.holds[0].cut_after_ms = Some(150_000);
        let verdicts = run_rule(ID, &site_with(vec![("relay:443", ProbeOutput::IdleConnection(long))]));
        assert!(fail_summary(&verdicts[0].outcome).contains("cut after 150 s idle"));
    }
}
