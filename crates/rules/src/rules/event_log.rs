//! Rules over the event log probe (catalogue §2b; seed checklist point 9).
//!
//! | id | catalogue | fails when |
//! |---|---|---|
//! | `writeback-service-started` | PWB-SVC-05 | the newest of 31016 (stopped) or ADSync 6800 (start error) is newer than the newest 31015 (started) |
//! | `relay-heartbeat-recent` | PWB-SVC-06 | writeback started, but no 31019 heartbeat for `max_heartbeat_age_mins` |
//! | `relay-service-hosts-running` | PWB-SVC-07 | a 31044 within `lookback_hours`, not followed by a 31015 |
//! | `relay-connection-errors` | §2b 32001/32002/31034 → PWB-NET-01/02 | one of them within `lookback_hours` and after the newest 31019 heartbeat |
//! | `ad-permission-errors` | §2b 33004 → PWB-AD-01/02/03, PWB-HOST-06 | a 33004 within `lookback_hours` |
//! | `setup-admin-auth-failed` | §2b 32009/31014/32011 → PWB-ADM-01 | one of them within `lookback_hours` and after the newest 31005 |
//! | `writeback-reonboard-needed` | seed 9, PWB-SVC-08 | 32004/32005/32007/32008/32010, or ADSync 6329 with `0x8023061f`, within `lookback_hours` and after the newest 31005 (onboarding success) |
//!
//! Subject: `<probe subject>@<collector id>`. Times come from `last_seen` (kept by the collector
//! across runs), so a quiet window does not look like a fix; evidence names event ids and the
//! newest time of each, which only change when the event recurs.

use chrono::{DateTime, Duration, Utc};
use serde_json::json;
use wbd_wire::{EventLogReport, ProbeKind, ProbeOutput};

use super::{RuleDef, Verdict, observed, probe_error, site_evidence};
use crate::facts::Observation;
use crate::{Message, Outcome, Params, Severity, TenantFacts};

pub(crate) const STARTED: &str = "writeback-service-started";
pub(crate) const HEARTBEAT: &str = "relay-heartbeat-recent";
pub(crate) const HOSTS: &str = "relay-service-hosts-running";
pub(crate) const REONBOARD: &str = "writeback-reonboard-needed";
pub(crate) const RELAY_ERRORS: &str = "relay-connection-errors";
pub(crate) const AD_DENIED: &str = "ad-permission-errors";
pub(crate) const SETUP_ADMIN: &str = "setup-admin-auth-failed";

pub(crate) const RULES: &[RuleDef] = &[
    RuleDef {
        id: STARTED,
        check: check_started,
        #[cfg(test)]
        fixtures: tests::started_fixtures,
    },
    RuleDef {
        id: HEARTBEAT,
        check: check_heartbeat,
        #[cfg(test)]
        fixtures: tests::heartbeat_fixtures,
    },
    RuleDef {
        id: HOSTS,
        check: check_hosts,
        #[cfg(test)]
        fixtures: tests::hosts_fixtures,
    },
    RuleDef {
        id: REONBOARD,
        check: check_reonboard,
        #[cfg(test)]
        fixtures: tests::reonboard_fixtures,
    },
    RuleDef {
        id: RELAY_ERRORS,
        check: check_relay_errors,
        #[cfg(test)]
        fixtures: tests::relay_errors_fixtures,
    },
    RuleDef {
        id: AD_DENIED,
        check: check_ad_denied,
        #[cfg(test)]
        fixtures: tests::ad_denied_fixtures,
    },
    RuleDef {
        id: SETUP_ADMIN,
        check: check_setup_admin,
        #[cfg(test)]
        fixtures: tests::setup_admin_fixtures,
    },
];

const PRS: &str = "PasswordResetService";
const ADSYNC: &str = "ADSync";

/// Errors that disabling and re-enabling writeback repairs (catalogue §2b).
const REONBOARD_EVENTS: [u32; 5] = [32004, 32005, 32007, 32008, 32010];
/// The ADSync 6329 text of a forest added after writeback was enabled.
const FOREST_NOT_ONBOARDED: &str = "0x8023061f";

type EventObservation<'a> = Observation<'a, EventLogReport>;

fn per_log(facts: &TenantFacts, judge: impl Fn(&EventObservation<'_>) -> Outcome) -> Vec<Verdict> {
    match observed(facts, ProbeKind::EventLog, |output| match output {
        ProbeOutput::EventLog(report) => Some(report),
        _ => None,
    }) {
        Ok(observations) => observations
            .iter()
            .map(|o| {
                let outcome = match &o.report.failure {
                    Some(error) => probe_error(ProbeKind::EventLog, error),
                    None => judge(o),
                };
                Verdict { subject: o.subject(), outcome }
            })
            .collect(),
        Err(no_data) => no_data,
    }
}

/// The newest occurrence of (provider, id) ever seen, from `last_seen` and the window's counts.
fn newest(report: &EventLogReport, provider: &str, id: u32) -> Option<DateTime<Utc>> {
    report
        .last_seen
        .iter()
        .chain(&report.counts)
        .filter(|c| c.event_id == id && c.provider.eq_ignore_ascii_case(provider))
        .map(|c| c.newest)
        .chain(
            report
                .entries
                .iter()
                .filter(|e| e.event_id == id && e.provider.eq_ignore_ascii_case(provider))
                .map(|e| e.time_created),
        )
        .max()
}

fn at(time: DateTime<Utc>) -> String {
    time.format("%Y-%m-%d %H:%M UTC").to_string()
}

fn lookback(facts_now: DateTime<Utc>, params: &Params) -> DateTime<Utc> {
    facts_now - Duration::hours(params.int("lookback_hours"))
}

fn check_started(facts: &TenantFacts, _params: &Params) -> Vec<Verdict> {
    per_log(facts, |o| {
        let report = o.report;
        let started = newest(report, PRS, 31015);
        let stopped = newest(report, PRS, 31016);
        let start_error = newest(report, ADSYNC, 6800);
        let after_start = |t: Option<DateTime<Utc>>| t.filter(|t| started.is_none_or(|s| *t > s));
        let (key, id, time) = if let Some(t) = after_start(start_error) {
            ("writeback-service-started.start-error", 6800, t)
        } else if let Some(t) = after_start(stopped) {
            ("writeback-service-started.stopped", 31016, t)
        } else if started.is_some() {
            return Outcome::Pass;
        } else {
            return Outcome::unknown(Message::new("writeback-service-started.no-start-event"));
        };
        let mut evidence = site_evidence(o);
        evidence.insert("event_id".into(), json!(id));
        evidence.insert("newest".into(), json!(time));
        evidence.insert("last_started".into(), json!(started));
        let message = Message::new(key).arg("collector", o.collector.name.as_str()).arg("at", at(time));
        Outcome::fail(Severity::High, message, evidence.into())
    })
}

fn check_heartbeat(facts: &TenantFacts, params: &Params) -> Vec<Verdict> {
    let max_age = params.int("max_heartbeat_age_mins");
    let now = facts.now;
    per_log(facts, |o| {
        let report = o.report;
        let Some(started) = newest(report, PRS, 31015) else {
            return Outcome::unknown(Message::new("relay-heartbeat-recent.not-started"));
        };
        let beat = newest(report, PRS, 31019);
        if beat.is_some_and(|b| b >= now - Duration::minutes(max_age)) {
            return Outcome::Pass;
        }
        // Right after a start the first heartbeat may not have come yet.
        if started >= now - Duration::minutes(max_age) {
            return Outcome::Pass;
        }
        let mut evidence = site_evidence(o);
        evidence.insert("last_heartbeat".into(), json!(beat));
        evidence.insert("max_heartbeat_age_mins".into(), json!(max_age));
        let message = Message::new("relay-heartbeat-recent.silent")
            .arg("collector", o.collector.name.as_str())
            .arg("last", beat.map_or_else(|| "-".to_owned(), at))
            .arg("minutes", max_age);
        Outcome::fail(Severity::High, message, evidence.into())
    })
}

fn check_hosts(facts: &TenantFacts, params: &Params) -> Vec<Verdict> {
    let since = lookback(facts.now, params);
    per_log(facts, |o| {
        let report = o.report;
        let Some(down) = newest(report, PRS, 31044).filter(|t| *t >= since) else { return Outcome::Pass };
        if newest(report, PRS, 31015).is_some_and(|started| started > down) {
            return Outcome::Pass;
        }
        let mut evidence = site_evidence(o);
        evidence.insert("newest_31044".into(), json!(down));
        let message = Message::new("relay-service-hosts-running.down")
            .arg("collector", o.collector.name.as_str())
            .arg("at", at(down));
        Outcome::fail(Severity::Critical, message, evidence.into())
    })
}

fn check_reonboard(facts: &TenantFacts, params: &Params) -> Vec<Verdict> {
    let since = lookback(facts.now, params);
    per_log(facts, |o| {
        let report = o.report;
        let onboarded = newest(report, PRS, 31005);
        let relevant = |t: &DateTime<Utc>| *t >= since && onboarded.is_none_or(|on| *t > on);
        let mut seen: Vec<(u32, DateTime<Utc>)> = REONBOARD_EVENTS
            .iter()
            .filter_map(|&id| newest(report, PRS, id).filter(relevant).map(|t| (id, t)))
            .collect();
        let forest = report
            .entries
            .iter()
            .filter(|e| {
                e.event_id == 6329
                    && e.provider.eq_ignore_ascii_case(ADSYNC)
                    && e.message
                        .as_deref()
                        .is_some_and(|m| m.to_ascii_lowercase().contains(FOREST_NOT_ONBOARDED))
            })
            .map(|e| e.time_created)
            .filter(relevant)
            .max();
        if let Some(t) = forest {
            seen.push((6329, t));
        }
        if seen.is_empty() {
            return Outcome::Pass;
        }
        let ids: Vec<u32> = seen.iter().map(|(id, _)| *id).collect();
        let latest = seen.iter().map(|(_, t)| *t).max().unwrap_or(facts.now);
        let mut evidence = site_evidence(o);
        evidence.insert("event_ids".into(), json!(ids));
        evidence.insert("last_onboarded".into(), json!(onboarded));
        let message = Message::new("writeback-reonboard-needed.errors")
            .arg("collector", o.collector.name.as_str())
            .arg("events", json!(ids))
            .arg("at", at(latest));
        Outcome::fail(Severity::High, message, evidence.into())
    })
}

/// Fails with `key` when any of `ids` (PasswordResetService) occurred within the look-back and
/// after the newest `cleared_by` event (if given).
fn recent_errors(
    facts: &TenantFacts,
    params: &Params,
    ids: &'static [u32],
    cleared_by: Option<u32>,
    key: &'static str,
) -> Vec<Verdict> {
    let since = lookback(facts.now, params);
    per_log(facts, |o| {
        let report = o.report;
        let cleared = cleared_by.and_then(|id| newest(report, PRS, id));
        let seen: Vec<(u32, DateTime<Utc>)> = ids
            .iter()
            .filter_map(|&id| newest(report, PRS, id).map(|t| (id, t)))
            .filter(|(_, t)| *t >= since && cleared.is_none_or(|c| *t > c))
            .collect();
        let Some(latest) = seen.iter().map(|(_, t)| *t).max() else { return Outcome::Pass };
        let events: Vec<u32> = seen.iter().map(|(id, _)| *id).collect();
        let mut evidence = site_evidence(o);
        evidence.insert("event_ids".into(), json!(events));
        let message = Message::new(key)
            .arg("collector", o.collector.name.as_str())
            .arg("events", json!(events))
            .arg("at", at(latest));
        Outcome::fail(Severity::High, message, evidence.into())
    })
}

fn check_relay_errors(facts: &TenantFacts, params: &Params) -> Vec<Verdict> {
    recent_errors(facts, params, &[32001, 32002, 31034], Some(31019), "relay-connection-errors.errors")
}

fn check_ad_denied(facts: &TenantFacts, params: &Params) -> Vec<Verdict> {
    recent_errors(facts, params, &[33004], None, "ad-permission-errors.denied")
}

fn check_setup_admin(facts: &TenantFacts, params: &Params) -> Vec<Verdict> {
    recent_errors(facts, params, &[32009, 31014, 32011], Some(31005), "setup-admin-auth-failed.failed")
}

#[cfg(test)]
pub(crate) mod tests {
    use wbd_wire::{EventCount, EventEntry, EventLevel, EventLogSource};

    use super::*;
    use crate::rules::fixtures::*;

    /// An event log report whose `last_seen` holds these (provider, id, minutes ago).
    pub(crate) fn log(events: &[(&str, u32, i64)]) -> EventLogReport {
        let counts: Vec<EventCount> = events
            .iter()
            .map(|&(provider, event_id, ago)| EventCount {
                provider: provider.to_owned(),
                event_id,
                count: 1,
                newest: now() - Duration::minutes(ago),
            })
            .collect();
        EventLogReport {
            source: EventLogSource::Live { log: "Application".to_owned() },
            since: Some(now() - Duration::minutes(15)),
            entries: vec![],
            entries_omitted: 0,
            counts: vec![],
            last_seen: counts,
            failure: None,
        }
    }

    /// Writeback started two days ago, onboarded long before, heartbeat three minutes ago.
    pub(crate) fn healthy() -> ProbeOutput {
        ProbeOutput::EventLog(log(&[(PRS, 31005, 60 * 24 * 30), (PRS, 31015, 60 * 48), (PRS, 31019, 3)]))
    }

    pub(crate) fn with(extra: &[(&str, u32, i64)]) -> ProbeOutput {
        let mut events = vec![(PRS, 31005, 60 * 24 * 30), (PRS, 31015, 60 * 48), (PRS, 31019, 3)];
        events.extend_from_slice(extra);
        ProbeOutput::EventLog(log(&events))
    }

    fn one(output: ProbeOutput) -> crate::TenantFacts {
        site_with(vec![("Application", output)])
    }

    fn unreadable() -> Fixture {
        let mut report = log(&[]);
        report.failure = Some("The specified channel could not be found".to_owned());
        Fixture::new("log unreadable", one(ProbeOutput::EventLog(report)), Expect::Unknown)
    }

    pub(crate) fn started_fixtures() -> Vec<Fixture> {
        vec![
            Fixture::new("stopped after start", one(with(&[(PRS, 31016, 30)])), Expect::Fail(Severity::High)),
            Fixture::new("start error", one(with(&[(ADSYNC, 6800, 60 * 47)])), Expect::Fail(Severity::High)),
            Fixture::new("started", one(healthy()), Expect::Pass),
            Fixture::new("stopped before the last start", one(with(&[(PRS, 31016, 60 * 50)])), Expect::Pass),
            Fixture::new(
                "no start event",
                one(ProbeOutput::EventLog(log(&[(PRS, 31019, 3)]))),
                Expect::Unknown,
            ),
            unreadable(),
            Fixture::new("no probe", site_with(vec![]), Expect::Unknown),
        ]
    }

    pub(crate) fn silent_relay() -> ProbeOutput {
        ProbeOutput::EventLog(log(&[(PRS, 31005, 60 * 24 * 30), (PRS, 31015, 60 * 48), (PRS, 31019, 95)]))
    }

    pub(crate) fn heartbeat_fixtures() -> Vec<Fixture> {
        vec![
            Fixture::new("no heartbeat for 95 minutes", one(silent_relay()), Expect::Fail(Severity::High)),
            Fixture::new("heartbeat 3 minutes ago", one(healthy()), Expect::Pass),
            Fixture::new("tolerant threshold", one(silent_relay()), Expect::Pass)
                .with_param("max_heartbeat_age_mins", json!(120)),
            Fixture::new("just started", one(ProbeOutput::EventLog(log(&[(PRS, 31015, 2)]))), Expect::Pass),
            Fixture::new("never started", one(ProbeOutput::EventLog(log(&[]))), Expect::Unknown),
            unreadable(),
        ]
    }

    pub(crate) fn hosts_fixtures() -> Vec<Fixture> {
        vec![
            Fixture::new(
                "31044 an hour ago",
                one(with(&[(PRS, 31044, 60)])),
                Expect::Fail(Severity::Critical),
            ),
            Fixture::new("none", one(healthy()), Expect::Pass),
            Fixture::new("31044 before the last start", one(with(&[(PRS, 31044, 60 * 49)])), Expect::Pass),
            unreadable(),
        ]
    }

    pub(crate) fn decryption_errors() -> ProbeOutput {
        with(&[(PRS, 32004, 20), (PRS, 32008, 25)])
    }

    pub(crate) fn reonboard_fixtures() -> Vec<Fixture> {
        let mut forest = log(&[(PRS, 31005, 60 * 24 * 30), (PRS, 31015, 60 * 48), (PRS, 31019, 3)]);
        forest.entries.push(EventEntry {
            provider: ADSYNC.to_owned(),
            event_id: 6329,
            level: EventLevel::Error,
            time_created: now() - Duration::minutes(40),
            record_id: Some(991),
            message: Some("BAIL: MMS(4812): 0x8023061F (password synchronization is not enabled on this Management Agent)".to_owned()),
        });
        vec![
            Fixture::new("decryption errors", one(decryption_errors()), Expect::Fail(Severity::High)),
            Fixture::new(
                "forest added later",
                one(ProbeOutput::EventLog(forest)),
                Expect::Fail(Severity::High),
            ),
            Fixture::new("clean", one(healthy()), Expect::Pass),
            Fixture::new(
                "errors before the last re-enable",
                one(ProbeOutput::EventLog(log(&[(PRS, 32004, 50), (PRS, 31005, 30)]))),
                Expect::Pass,
            ),
            Fixture::new("errors outside the window", one(with(&[(PRS, 32004, 60 * 30)])), Expect::Pass),
            unreadable(),
        ]
    }

    pub(crate) fn relay_errors_fixtures() -> Vec<Fixture> {
        vec![
            Fixture::new(
                "service bus error after the last heartbeat",
                one(with(&[(PRS, 32002, 1)])),
                Expect::Fail(Severity::High),
            ),
            Fixture::new("error followed by heartbeats", one(with(&[(PRS, 32002, 20)])), Expect::Pass),
            Fixture::new("clean", one(healthy()), Expect::Pass),
            unreadable(),
        ]
    }

    pub(crate) fn ad_denied_fixtures() -> Vec<Fixture> {
        vec![
            Fixture::new(
                "access denied an hour ago",
                one(with(&[(PRS, 33004, 60)])),
                Expect::Fail(Severity::High),
            ),
            Fixture::new("two days ago", one(with(&[(PRS, 33004, 60 * 48)])), Expect::Pass),
            Fixture::new("clean", one(healthy()), Expect::Pass),
            unreadable(),
        ]
    }

    pub(crate) fn setup_admin_fixtures() -> Vec<Fixture> {
        let failed = ProbeOutput::EventLog(log(&[
            (PRS, 31005, 60 * 24 * 30),
            (PRS, 31015, 60 * 48),
            (PRS, 31019, 3),
            (PRS, 32009, 30),
        ]));
        let retried = ProbeOutput::EventLog(log(&[
            (PRS, 32009, 50),
            (PRS, 31005, 40),
            (PRS, 31015, 40),
            (PRS, 31019, 3),
        ]));
        vec![
            Fixture::new("token refused", one(failed), Expect::Fail(Severity::High)),
            Fixture::new("succeeded on the next try", one(retried), Expect::Pass),
            Fixture::new("clean", one(healthy()), Expect::Pass),
            unreadable(),
        ]
    }
}
