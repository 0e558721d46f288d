//! What an ingest writes to `facts` and `fact_history`, decided in Rust from the batch and the
//! stored latest facts, so both backends apply exactly the same rules:
//!
//! - per (probe, subject) the results are taken in `observed_at` order; a result older than the
//!   current fact is ignored (an older observation never overwrites a newer one, and does not
//!   touch history either), and so is a repeat of the current fact with the same `observed_at`
//!   and digest (the same result delivered again in another batch is not counted twice);
//! - a result with the current digest extends the current history run (`last_seen_at`, count)
//!   and the fact's `repeat_count`; a result with another digest starts a new run;
//! - the fact ends as the newest accepted result, with `first_seen_at` of its run.
//!
//! Only what changed is written: a fact whose stored run goes on (every accepted result repeated
//! it) is a [`FactRepeat`], which moves `observed_at`, `repeat_count` and the timings and leaves
//! the stored payload alone; a payload is written only with a new run ([`FactUpsert`]). The plan
//! borrows the batch's JSON texts: nothing is parsed or copied on the way to the statements.
//!
//! A run still open is not rewritten by its repeats: while a latest fact points at its run
//! (`facts.history_id`), the fact's `observed_at` and `repeat_count` are the run's last sighting
//! and count, and the run's own `last_seen_at` and `count` are what they were when it was written.
//! They are set once, to the fact's values, in the batch that ends the run ([`RunEnd`]). A
//! repeated result therefore writes one row (the fact), not two. Whoever reads history takes the
//! open run's figures from its fact (`LEFT JOIN facts ON facts.history_id = fact_history.id`);
//! retention never deletes an open run, and judges ended ones by their final `last_seen_at`.
//!
//! The backend reads the stored facts under the collector's row lock (PostgreSQL) or inside an
//! immediate transaction (SQLite), so the plan's absolute values cannot race another ingest.

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::FactWrite;
use crate::convert::micros;

/// The stored latest fact of one (probe, subject) of the collector.
#[derive(Debug, Clone)]
pub(crate) struct StoredFact {
    pub observed_at: DateTime<Utc>,
    pub digest: String,
    pub first_seen_at: DateTime<Utc>,
    pub repeat_count: i64,
    pub history_id: Uuid,
}

/// The new state of a latest fact whose value changed in this batch (insert or overwrite).
#[derive(Debug, Clone)]
pub(crate) struct FactUpsert<'a> {
    pub probe: &'a str,
    pub subject: &'a str,
    pub observed_at: DateTime<Utc>,
    pub payload: &'a str,
    pub timings: &'a str,
    pub digest: &'a str,
    pub first_seen_at: DateTime<Utc>,
    pub repeat_count: i64,
    pub history_id: Uuid,
}

/// A stored latest fact that the batch only repeated: its payload, digest and run stay.
#[derive(Debug, Clone)]
pub(crate) struct FactRepeat<'a> {
    pub probe: &'a str,
    pub subject: &'a str,
    pub observed_at: DateTime<Utc>,
    pub timings: &'a str,
    pub repeat_count: i64,
}

/// A stored history run that a change ended in this batch: its final last sighting and count,
/// the values its latest fact held (with this batch's repeats) until the change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RunEnd {
    pub id: Uuid,
    pub last_seen_at: DateTime<Utc>,
    pub count: i64,
}

/// A new history run.
#[derive(Debug, Clone)]
pub(crate) struct NewRun<'a> {
    pub id: Uuid,
    pub probe: &'a str,
    pub subject: &'a str,
    pub digest: &'a str,
    pub payload: &'a str,
    pub first_seen_at: DateTime<Utc>,
    pub last_seen_at: DateTime<Utc>,
    pub count: i64,
}

#[derive(Debug, Default)]
pub(crate) struct IngestPlan<'a> {
    /// Insert these first: facts reference their run.
    pub new_runs: Vec<NewRun<'a>>,
    pub ended_runs: Vec<RunEnd>,
    pub facts: Vec<FactUpsert<'a>>,
    pub repeats: Vec<FactRepeat<'a>>,
}

/// The distinct (probe, subject) keys of a batch, for reading the stored facts.
pub(crate) fn keys(results: &[FactWrite]) -> Vec<(String, String)> {
    let mut keys: Vec<(String, String)> =
        results.iter().map(|r| (r.probe.clone(), r.subject.clone())).collect();
    keys.sort();
    keys.dedup();
    keys
}

/// Where the current value of one key stands while the batch is replayed.
struct Current<'a, 's> {
    observed_at: DateTime<Utc>,
    /// The current digest: the stored fact's, or a result's of this batch.
    digest: &'s str,
    first_seen_at: DateTime<Utc>,
    repeat_count: i64,
    history_id: Uuid,
    /// The newest accepted result; `None` while the stored fact is untouched.
    newest: Option<&'a FactWrite>,
    /// Index into `new_runs`, or `None` for the stored run.
    new_run: Option<usize>,
}

pub(crate) fn plan<'a>(
    results: &'a [FactWrite],
    stored: &HashMap<(String, String), StoredFact>,
) -> IngestPlan<'a> {
    let mut by_key: BTreeMap<(&str, &str), Vec<&FactWrite>> = BTreeMap::new();
    for r in results {
        by_key.entry((r.probe.as_str(), r.subject.as_str())).or_default().push(r);
    }

    let mut plan = IngestPlan::default();
    for ((probe, subject), mut group) in by_key {
        // Stable: results observed at the same instant keep their batch order (the last wins).
        group.sort_by_key(|r| r.observed_at);

        let stored = stored.get(&(probe.to_owned(), subject.to_owned()));
        let mut current = stored.map(|s| Current {
            observed_at: s.observed_at,
            digest: s.digest.as_str(),
            first_seen_at: s.first_seen_at,
            repeat_count: s.repeat_count,
            history_id: s.history_id,
            newest: None,
            new_run: None,
        });

        for r in group {
            let at = micros(r.observed_at);
            match current.as_mut() {
                Some(c) if at < c.observed_at || (at == c.observed_at && r.digest == c.digest) => {}
                Some(c) if r.digest == c.digest => {
                    c.observed_at = at;
                    c.newest = Some(r);
                    c.repeat_count += 1;
                    // A stored run's figures stay in its fact until the run ends.
                    if let Some(run) = c.new_run.and_then(|i| plan.new_runs.get_mut(i)) {
                        run.last_seen_at = at;
                        run.count += 1;
                    }
                }
                _ => {
                    if let Some(c) = current.as_ref().filter(|c| c.new_run.is_none()) {
                        plan.ended_runs.push(RunEnd {
                            id: c.history_id,
                            last_seen_at: c.observed_at,
                            count: c.repeat_count,
                        });
                    }
                    let id = Uuid::now_v7();
                    plan.new_runs.push(NewRun {
                        id,
                        probe,
                        subject,
                        digest: &r.digest,
                        payload: &r.payload,
                        first_seen_at: at,
                        last_seen_at: at,
                        count: 1,
                    });
                    current = Some(Current {
                        observed_at: at,
                        digest: &r.digest,
                        first_seen_at: at,
                        repeat_count: 1,
                        history_id: id,
                        newest: Some(r),
                        new_run: Some(plan.new_runs.len() - 1),
                    });
                }
            }
        }

        let Some(c) = current else { continue };
        let Some(newest) = c.newest else { continue };
        if c.new_run.is_some() {
            plan.facts.push(FactUpsert {
                probe,
                subject,
                observed_at: c.observed_at,
                payload: &newest.payload,
                timings: &newest.timings,
                // A new run's digest is its results'.
                digest: &newest.digest,
                first_seen_at: c.first_seen_at,
                repeat_count: c.repeat_count,
                history_id: c.history_id,
            });
        } else {
            plan.repeats.push(FactRepeat {
                probe,
                subject,
                observed_at: c.observed_at,
                timings: &newest.timings,
                repeat_count: c.repeat_count,
            });
        }
    }
    plan
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{TimeDelta, TimeZone};
    use serde_json::json;

    fn t(secs: i64) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).single().expect("valid time") + TimeDelta::seconds(secs)
    }

    /// The stored fact of `tcp`/`relay`: digest "a" since 5 s, repeated twice, last at 10 s.
    fn stored_a(history_id: Uuid) -> HashMap<(String, String), StoredFact> {
        HashMap::from([(
            ("tcp".to_owned(), "relay".to_owned()),
            StoredFact {
                observed_at: t(10),
                digest: "a".into(),
                first_seen_at: t(5),
                repeat_count: 2,
                history_id,
            },
        )])
    }

    fn result(secs: i64, digest: &str) -> FactWrite {
        FactWrite {
            probe: "tcp".into(),
            subject: "relay".into(),
            observed_at: t(secs),
            payload: json!({ "digest": digest, "at": secs }).to_string(),
            timings: json!({ "/at": secs }).to_string(),
            digest: digest.into(),
        }
    }

    #[test]
    fn runs_within_one_batch() {
        let batch = [result(3, "b"), result(1, "a"), result(2, "a"), result(4, "a")];
        let plan = plan(&batch, &HashMap::new());
        let runs: Vec<_> = plan.new_runs.iter().map(|r| (r.digest, r.count, r.last_seen_at)).collect();
        assert_eq!(runs, [("a", 2, t(2)), ("b", 1, t(3)), ("a", 1, t(4))]);
        assert!(plan.ended_runs.is_empty());
        let fact = &plan.facts[0];
        assert_eq!((fact.digest, fact.first_seen_at, fact.repeat_count), ("a", t(4), 1));
        assert_eq!(fact.history_id, plan.new_runs[2].id);
        assert_eq!(fact.payload, json!({ "digest": "a", "at": 4 }).to_string());
        assert!(plan.repeats.is_empty());
    }

    #[test]
    fn repeats_write_only_the_fact_and_ignore_older_results() {
        let stored = stored_a(Uuid::now_v7());
        let batch = [result(9, "b"), result(10, "a"), result(11, "a"), result(12, "a")];
        let plan = plan(&batch, &stored);
        // The open run is not touched: its fact carries its last sighting and count.
        assert!(plan.new_runs.is_empty() && plan.ended_runs.is_empty());
        // Only repeats: the payload stays, the newest result's timings are written.
        assert!(plan.facts.is_empty());
        let repeat = &plan.repeats[0];
        assert_eq!((repeat.repeat_count, repeat.observed_at), (4, t(12)));
        assert_eq!(repeat.timings, json!({ "/at": 12 }).to_string());
    }

    #[test]
    fn a_change_after_repeats_writes_the_payload_and_ends_the_run() {
        let run = Uuid::now_v7();
        let stored = stored_a(run);
        let batch = [result(11, "a"), result(12, "b"), result(13, "b")];
        let plan = plan(&batch, &stored);
        assert!(plan.repeats.is_empty());
        // The stored run ends with the stored repeats and this batch's one.
        assert_eq!(plan.ended_runs, [RunEnd { id: run, last_seen_at: t(11), count: 3 }]);
        assert_eq!(plan.new_runs.iter().map(|r| (r.count, r.last_seen_at)).collect::<Vec<_>>(), [(2, t(13))]);
        let fact = &plan.facts[0];
        assert_eq!((fact.digest, fact.first_seen_at, fact.repeat_count), ("b", t(12), 2));
        assert_eq!(fact.history_id, plan.new_runs[0].id);
        assert_eq!(fact.payload, json!({ "digest": "b", "at": 13 }).to_string());
        assert_eq!(fact.timings, json!({ "/at": 13 }).to_string());
    }

    #[test]
    fn a_change_alone_ends_the_run_with_the_stored_figures() {
        let run = Uuid::now_v7();
        let change = [result(12, "b")];
        let plan = plan(&change, &stored_a(run));
        assert_eq!(plan.ended_runs, [RunEnd { id: run, last_seen_at: t(10), count: 2 }]);
        // A run that begins and changes within the batch is written ended: nothing to close.
        let changes = [result(12, "b"), result(13, "c")];
        let plan = super::plan(&changes, &stored_a(run));
        assert_eq!(plan.ended_runs, [RunEnd { id: run, last_seen_at: t(10), count: 2 }]);
        let runs: Vec<_> = plan.new_runs.iter().map(|r| (r.digest, r.last_seen_at, r.count)).collect();
        assert_eq!(runs, [("b", t(12), 1), ("c", t(13), 1)]);
    }

    #[test]
    fn nothing_newer_changes_nothing() {
        let stored = stored_a(Uuid::now_v7());
        let batch = [result(3, "b"), result(10, "a")];
        let plan = plan(&batch, &stored);
        assert!(
            plan.new_runs.is_empty()
                && plan.ended_runs.is_empty()
                && plan.facts.is_empty()
                && plan.repeats.is_empty()
        );
    }
}

/// Everything an accepted batch writes once its plan is made: the plan, the probes that reported
/// in the new facts version (flap damping reads them) and the outbox message announcing it.
pub(crate) struct IngestWrite<'a> {
    pub scope: crate::TenantScope,
    pub collector_id: crate::CollectorId,
    pub plan: IngestPlan<'a>,
    /// Distinct and sorted.
    pub probes: Vec<&'a str>,
    pub message_id: Uuid,
    pub message: crate::MessageKind,
    pub traceparent: Option<&'a str>,
    pub received_at: DateTime<Utc>,
}

/// What a dialect's `record_batch` found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BatchRecorded {
    /// The batch is new, and its collector's heartbeat is written (and its row locked).
    New,
    /// This collector sent a batch with this id before (a retry, or a conflict).
    Seen,
    /// The collector is not active (revoked meanwhile): nothing may be stored.
    CollectorInactive,
}

/// What a dialect's `write_ingest` wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum IngestWritten {
    /// All of it, in one statement.
    Everything,
    /// The plan only: the version, the probes and the message follow, a statement each.
    PlanOnly,
}

/// What a dialect's `begin_apply` found, inside the evaluation's write transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ApplyStart {
    /// The message is recorded as processed and the tenant is still at the evaluated version
    /// (its row locked on PostgreSQL): the changes may be applied.
    Current,
    /// Another evaluation processed this message already.
    AlreadyProcessed,
    /// Facts arrived since the snapshot: the evaluation is stale.
    Moved,
}
