//! When each probe runs: one job per probe (one per configured script), each with its own
//! interval and jitter, all due at start-up; plus "run now" and schedule changes from the
//! server's commands.
//!
//! A job is never started twice at once: while it runs it is not due, and its next run is
//! counted from when it finished, so a slow probe (an idle-connection hold) cannot pile up.

use std::time::Duration;

use rand::Rng;
use tokio::time::Instant;
use wbd_wire::ProbeKind;

use crate::config::Schedule;

/// One schedulable probe run.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Job {
    pub kind: ProbeKind,
    /// Which script, for [`ProbeKind::Script`].
    pub script: Option<String>,
}

impl Job {
    pub fn new(kind: ProbeKind) -> Self {
        Job { kind, script: None }
    }

    pub fn script(name: impl Into<String>) -> Self {
        Job { kind: ProbeKind::Script, script: Some(name.into()) }
    }
}

impl std::fmt::Display for Job {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.script {
            Some(name) => write!(f, "script:{name}"),
            None => f.write_str(self.kind.as_str()),
        }
    }
}

#[derive(Debug, Clone)]
struct JobState {
    job: Job,
    schedule: Schedule,
    next_due: Instant,
    running: bool,
}

/// The schedule of every job.
#[derive(Debug, Clone, Default)]
pub struct Scheduler {
    jobs: Vec<JobState>,
}

impl Scheduler {
    /// Every enabled job is due at `now`.
    pub fn new(jobs: impl IntoIterator<Item = (Job, Schedule)>, now: Instant) -> Self {
        Scheduler {
            jobs: jobs
                .into_iter()
                .map(|(job, schedule)| JobState { job, schedule, next_due: now, running: false })
                .collect(),
        }
    }

    /// The jobs due at `now`, now marked running.
    pub fn take_due(&mut self, now: Instant) -> Vec<Job> {
        self.jobs
            .iter_mut()
            .filter(|s| s.schedule.enabled && !s.running && s.next_due <= now)
            .map(|s| {
                s.running = true;
                s.job.clone()
            })
            .collect()
    }

    /// `job` finished at `now`: its next run is one jittered interval away.
    pub fn finished(&mut self, job: &Job, now: Instant) {
        if let Some(s) = self.jobs.iter_mut().find(|s| &s.job == job) {
            s.running = false;
            s.next_due = now + jittered(s.schedule.interval, s.schedule.jitter_percent);
        }
    }

    /// When the next job falls due (`None`: nothing is enabled and idle).
    pub fn next_due(&self) -> Option<Instant> {
        self.jobs.iter().filter(|s| s.schedule.enabled && !s.running).map(|s| s.next_due).min()
    }

    /// "Re-test now": the jobs of these kinds (every enabled job when empty) are due at `now`.
    /// Returns how many jobs that made due.
    pub fn run_now(&mut self, kinds: &[ProbeKind], now: Instant) -> usize {
        let mut n = 0;
        // A running job is left alone: the run in progress is the fresh result.
        let wanted = |s: &JobState| {
            s.schedule.enabled && !s.running && (kinds.is_empty() || kinds.contains(&s.job.kind))
        };
        for s in self.jobs.iter_mut().filter(|s| wanted(s)) {
            s.next_due = s.next_due.min(now);
            n += 1;
        }
        n
    }

    /// Changes the interval and/or enablement of every job of `kind`; returns how many changed.
    pub fn set_schedule(
        &mut self,
        kind: ProbeKind,
        interval: Option<Duration>,
        enabled: Option<bool>,
        now: Instant,
    ) -> usize {
        let mut n = 0;
        for s in self.jobs.iter_mut().filter(|s| s.job.kind == kind) {
            if let Some(interval) = interval {
                s.schedule.interval = interval;
                s.next_due = s.next_due.min(now + interval);
            }
            if let Some(enabled) = enabled {
                if enabled && !s.schedule.enabled {
                    s.next_due = now;
                }
                s.schedule.enabled = enabled;
            }
            n += 1;
        }
        n
    }

    pub fn jobs(&self) -> impl Iterator<Item = &Job> {
        self.jobs.iter().map(|s| &s.job)
    }

    pub fn is_running(&self) -> bool {
        self.jobs.iter().any(|s| s.running)
    }
}

/// `interval` ± `percent`%.
pub fn jittered(interval: Duration, percent: u8) -> Duration {
    if percent == 0 {
        return interval;
    }
    let spread = f64::from(percent) / 100.0;
    interval.mul_f64(rand::rng().random_range(1.0 - spread..=1.0 + spread))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn every(secs: u64) -> Schedule {
        Schedule { enabled: true, interval: Duration::from_secs(secs), jitter_percent: 10 }
    }

    #[test]
    fn jobs_run_once_at_a_time_and_then_wait_their_interval() {
        let t0 = Instant::now();
        let mut s =
            Scheduler::new([(Job::new(ProbeKind::Endpoint), every(300)), (Job::script("a"), every(60))], t0);
        let due = s.take_due(t0);
        assert_eq!(due.len(), 2);
        assert!(s.take_due(t0 + Duration::from_secs(1000)).is_empty(), "running jobs are not due again");
        s.finished(&Job::script("a"), t0);
        let next = s.next_due().unwrap();
        assert!(next >= t0 + Duration::from_secs(54) && next <= t0 + Duration::from_secs(66));
        assert!(s.take_due(t0 + Duration::from_secs(30)).is_empty());
        assert_eq!(s.take_due(t0 + Duration::from_secs(67)), vec![Job::script("a")]);
    }

    #[test]
    fn commands_make_jobs_due_or_change_them() {
        let t0 = Instant::now();
        let mut s = Scheduler::new(
            [(Job::new(ProbeKind::Endpoint), every(300)), (Job::new(ProbeKind::Graph), every(3600))],
            t0,
        );
        for job in s.take_due(t0) {
            s.finished(&job, t0);
        }
        let later = t0 + Duration::from_secs(5);
        assert_eq!(s.run_now(&[ProbeKind::Graph], later), 1);
        assert_eq!(s.take_due(later), vec![Job::new(ProbeKind::Graph)]);
        assert_eq!(s.set_schedule(ProbeKind::Endpoint, None, Some(false), later), 1);
        assert_eq!(s.run_now(&[], later), 0, "a disabled job is not run, a running one is already running");
        assert_eq!(s.set_schedule(ProbeKind::Endpoint, Some(Duration::from_secs(10)), Some(true), later), 1);
        assert_eq!(s.take_due(later), vec![Job::new(ProbeKind::Endpoint)]);
    }

    #[test]
    fn jitter_stays_within_its_percentage() {
        for _ in 0..200 {
            let d = jittered(Duration::from_secs(300), 10);
            assert!(d >= Duration::from_secs(270) && d <= Duration::from_secs(330), "{d:?}");
        }
        assert_eq!(jittered(Duration::from_secs(5), 0), Duration::from_secs(5));
    }
}
