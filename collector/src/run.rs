//! `wbd-collector run`: the agent loop.
//!
//! Each probe runs on its own schedule (see [`crate::schedule`]); when a probe finishes, each of
//! its results is written to the spool and a push follows shortly (results that finish together
//! share a batch). Between pushes, batches the server could not take are retried on the backoff
//! schedule, or after the server's `Retry-After`. The server's answer may carry commands ("re-test
//! now", schedule changes), which change the schedule at once.
//!
//! Shutdown: no new probe starts; probes already running get [`SHUTDOWN_GRACE`] to finish and
//! write their results, then are abandoned (a half-done probe has no result to lose); an
//! in-flight push is abandoned too (the batch stays sealed and is re-sent with the same id).

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio::time::{Instant, sleep, sleep_until};
use uuid::Uuid;
use wbd_wire::{CollectorCommand, CollectorInfo, CommandAction, ProbeResult};

use crate::config::Settings;
use crate::http_client::{self, ClientSetupError};
use crate::identity::{Identity, IdentityError, StateDir};
use crate::probe::{ProbeSet, ProbeSetupError};
use crate::push::{self, Backoff, BackoffPolicy, DrainStatus, Holdup, Pusher};
use crate::schedule::{Job, Scheduler};
use crate::server_url::{ServerUrl, ServerUrlError};
use crate::spool::{SharedSpool, Spool, SpoolError};

/// How long running probes may take to finish once shutdown is requested.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);
/// Results finishing within this time of each other go out in one push.
const PUSH_DEBOUNCE: Duration = Duration::from_millis(300);
/// Command ids remembered, so a repeated command is acted on once.
const SEEN_COMMANDS: usize = 1_000;
/// Bounds of a server-set probe interval.
const MIN_COMMANDED_INTERVAL: Duration = Duration::from_secs(10);
const MAX_COMMANDED_INTERVAL: Duration = Duration::from_secs(7 * 86_400);

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Identity(#[from] IdentityError),
    #[error("the server URL in identity.json is not usable: {0}")]
    ServerUrl(#[from] ServerUrlError),
    #[error(transparent)]
    Client(#[from] ClientSetupError),
    #[error(transparent)]
    Probe(#[from] ProbeSetupError),
    #[error("cannot open the spool: {0}")]
    Spool(#[from] SpoolError),
}

/// What one probe run (or a round of them) wrote.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CycleReport {
    pub probed: usize,
    pub spooled: usize,
}

/// How `run --once` ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OnceOutcome {
    pub cycle: CycleReport,
    /// Batches still in the spool (0 when everything was delivered).
    pub pending_batches: usize,
    /// Why batches remain, if they do.
    pub holdup: Option<Holdup>,
}

/// A started collector: identity loaded, spool open, probes built, ready to run.
#[derive(Debug)]
pub struct Collector {
    settings: Settings,
    identity: Identity,
    probes: Arc<ProbeSet>,
    spool: SharedSpool,
    pusher: Pusher,
    info: CollectorInfo,
}

impl Collector {
    /// Loads the identity from the state directory, opens the spool and builds the probes.
    pub fn start(settings: Settings) -> Result<Collector, StartError> {
        let state = StateDir::new(&settings.state_dir);
        let identity = state.load_identity()?;
        let key = state.load_key()?;
        let server = ServerUrl::parse(&identity.server)?;
        let client = http_client::server_client(&settings.server_ca, settings.proxy.as_ref())?;
        let pusher = Pusher::new(client, &server, identity.collector_id, &key);
        let probes = Arc::new(ProbeSet::new(&settings, Some(&settings.state_dir))?);
        let spool = Spool::open(state.spool_dir(), settings.spool_max_bytes)?;

        let expected = settings.push_interval_secs.unwrap_or(identity.push_interval_secs);
        let cycle_secs = settings.probe_interval.as_secs();
        if cycle_secs > u64::from(expected) {
            tracing::warn!(
                probe_interval_secs = cycle_secs,
                push_interval_secs = expected,
                "results are pushed after each endpoint probe, and probe_interval_secs is longer than the push \
                 interval the server expects: the server may report this collector as silent"
            );
        }
        let info = CollectorInfo {
            version: env!("CARGO_PKG_VERSION").to_owned(),
            hostname: crate::host::hostname(),
            os: crate::host::os_description(),
            // The endpoint probe runs every probe_interval and is always followed by a push.
            push_interval_secs: u32::try_from(cycle_secs).unwrap_or(u32::MAX),
            spool_dropped: 0,
        };
        let jobs: Vec<String> = probes.enabled_jobs().iter().map(ToString::to_string).collect();
        tracing::info!(
            collector_id = %identity.collector_id,
            tenant_id = %identity.tenant_id,
            server = %server,
            probes = %jobs.join(", "),
            pending_batches = spool.pending_batches(),
            pending_results = spool.pending_results(),
            "collector started"
        );
        Ok(Collector { settings, identity, probes, spool: SharedSpool::new(spool), pusher, info })
    }

    pub fn identity(&self) -> &Identity {
        &self.identity
    }

    pub fn probes(&self) -> &Arc<ProbeSet> {
        &self.probes
    }

    fn backoff_policy(&self) -> BackoffPolicy {
        BackoffPolicy { base: self.settings.retry_base, cap: self.settings.retry_cap }
    }

    /// Writes results to the spool, one file each.
    pub async fn spool_results(&self, results: Vec<ProbeResult>) -> CycleReport {
        let probed = results.len();
        let mut spooled = 0;
        for result in results {
            let subject = result.subject.clone();
            match self.spool.run(move |s| s.append(&result)).await {
                Ok(()) => spooled += 1,
                Err(e) => tracing::error!(subject = %subject, error = %e, "could not spool a probe result"),
            }
        }
        CycleReport { probed, spooled }
    }

    /// Runs one job and spools its results.
    pub async fn run_job(&self, job: &Job) -> CycleReport {
        let results = self.probes.run(job).await;
        let report = self.spool_results(results).await;
        tracing::info!(probe = %job, probed = report.probed, spooled = report.spooled, "probe done");
        report
    }

    /// Runs every enabled probe at once and spools the results.
    pub async fn probe_cycle(&self) -> CycleReport {
        let results = self.probes.run_all().await;
        let report = self.spool_results(results).await;
        tracing::info!(probed = report.probed, spooled = report.spooled, "probe cycle done");
        report
    }

    /// Seals pending results and pushes until the spool is empty or the server asks to wait;
    /// the server's commands are appended to `commands`.
    pub async fn push_pending(
        &self,
        backoff: &mut Backoff,
        commands: &mut Vec<CollectorCommand>,
    ) -> Result<DrainStatus, SpoolError> {
        // The spool fills in `spool_dropped` when it seals.
        push::drain(&self.spool, &self.pusher, backoff, &self.info, commands).await
    }

    /// Batches waiting in the spool.
    pub async fn pending_batches(&self) -> usize {
        self.spool.run(|s| Ok(s.pending_batches())).await.unwrap_or(0)
    }

    /// Results dropped by the spool bound, ever.
    pub async fn spool_dropped(&self) -> u64 {
        self.spool.run(|s| Ok(s.dropped())).await.unwrap_or(0)
    }

    /// Runs until `shutdown` turns true.
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        let collector = Arc::new(self);
        let mut scheduler = Scheduler::new(collector.probes.jobs(), Instant::now());
        let mut running: JoinSet<(Job, CycleReport)> = JoinSet::new();
        let mut running_jobs: HashMap<tokio::task::Id, Job> = HashMap::new();
        let mut backoff = Backoff::new(collector.backoff_policy());
        let mut seen = SeenCommands::default();
        // `None`: nothing to push. `Some(t)`: push (or retry) at `t`.
        let mut next_push: Option<Instant> = None;
        loop {
            if *shutdown.borrow() {
                break;
            }
            let now = Instant::now();
            for job in scheduler.take_due(now) {
                let c = Arc::clone(&collector);
                let task_job = job.clone();
                let handle = running.spawn(async move {
                    let report = c.run_job(&task_job).await;
                    (task_job, report)
                });
                running_jobs.insert(handle.id(), job);
            }
            if let Some(at) = next_push
                && Instant::now() >= at
            {
                let mut commands = Vec::new();
                let status = tokio::select! {
                    status = collector.push_pending(&mut backoff, &mut commands) => status,
                    () = shutdown_requested(&mut shutdown) => break,
                };
                next_push = match status {
                    Ok(DrainStatus::Empty) => None,
                    Ok(DrainStatus::RetryIn { delay, .. }) => Some(Instant::now() + delay),
                    Err(e) => {
                        let delay = backoff.next_delay();
                        tracing::error!(error = %e, retry_in = ?delay, "the spool could not be pushed");
                        Some(Instant::now() + delay)
                    }
                };
                apply_commands(&mut scheduler, commands, &mut seen, Instant::now());
                continue;
            }
            let far = Instant::now() + Duration::from_secs(3600);
            let wake = [scheduler.next_due(), next_push].into_iter().flatten().min().unwrap_or(far);
            tokio::select! {
                () = sleep_until(wake) => {}
                Some(joined) = running.join_next_with_id(), if !running.is_empty() => {
                    let now = Instant::now();
                    let id = match &joined { Ok((id, _)) => *id, Err(e) => e.id() };
                    if let Some(job) = running_jobs.remove(&id) {
                        scheduler.finished(&job, now);
                    }
                    if let Err(e) = joined {
                        tracing::error!(error = %e, "a probe task failed");
                    }
                    // New results go out soon, unless we are already waiting on the server
                    // (it asked us to, or it is down): that wait is respected.
                    next_push.get_or_insert(now + PUSH_DEBOUNCE);
                }
                () = shutdown_requested(&mut shutdown) => break,
            }
        }
        finish_running(running).await;
        tracing::info!("collector stopped");
    }

    /// Probes once (every enabled probe), then pushes until the spool is empty, the server
    /// refuses our credentials, or `retry_for` has passed.
    pub async fn run_once(self, retry_for: Duration, mut shutdown: watch::Receiver<bool>) -> OnceOutcome {
        let cycle = self.probe_cycle().await;
        let deadline = Instant::now() + retry_for;
        let mut backoff = Backoff::new(self.backoff_policy());
        let mut holdup = None;
        while !*shutdown.borrow() {
            let mut commands = Vec::new();
            let status = tokio::select! {
                status = self.push_pending(&mut backoff, &mut commands) => status,
                () = shutdown_requested(&mut shutdown) => break,
            };
            if !commands.is_empty() {
                tracing::info!(
                    commands = commands.len(),
                    "the server sent commands; a single run does not act on them"
                );
            }
            let delay = match status {
                Ok(DrainStatus::Empty) => {
                    holdup = None;
                    break;
                }
                Ok(DrainStatus::RetryIn { holdup: Holdup::Unauthorized, .. }) => {
                    holdup = Some(Holdup::Unauthorized);
                    break;
                }
                Ok(DrainStatus::RetryIn { delay, holdup: h }) => {
                    holdup = Some(h);
                    delay
                }
                Err(e) => {
                    tracing::error!(error = %e, "the spool could not be pushed");
                    holdup = Some(Holdup::Unavailable);
                    backoff.next_delay()
                }
            };
            if Instant::now() + delay > deadline {
                break;
            }
            tokio::select! {
                () = sleep(delay) => {}
                () = shutdown_requested(&mut shutdown) => break,
            }
        }
        let pending_batches = self.pending_batches().await;
        OnceOutcome { cycle, pending_batches, holdup: if pending_batches == 0 { None } else { holdup } }
    }
}

/// Gives running probes [`SHUTDOWN_GRACE`] to write their results, then abandons them.
async fn finish_running(mut running: JoinSet<(Job, CycleReport)>) {
    if running.is_empty() {
        return;
    }
    tracing::info!(running = running.len(), "waiting for running probes to write their results");
    let deadline = Instant::now() + SHUTDOWN_GRACE;
    loop {
        tokio::select! {
            joined = running.join_next() => match joined {
                None => return,
                Some(Err(e)) => tracing::error!(error = %e, "a probe task failed"),
                Some(Ok(_)) => {}
            },
            () = sleep_until(deadline) => {
                tracing::info!(abandoned = running.len(), "probes still running at shutdown were abandoned (no result yet, nothing lost)");
                running.abort_all();
                return;
            }
        }
    }
}

/// Remembers the ids of commands already acted on (bounded).
#[derive(Debug, Default)]
struct SeenCommands {
    ids: HashSet<Uuid>,
    order: VecDeque<Uuid>,
}

impl SeenCommands {
    /// `true` the first time an id is seen.
    fn first_time(&mut self, id: Uuid) -> bool {
        if !self.ids.insert(id) {
            return false;
        }
        self.order.push_back(id);
        if self.order.len() > SEEN_COMMANDS
            && let Some(old) = self.order.pop_front()
        {
            self.ids.remove(&old);
        }
        true
    }
}

/// Acts on the server's commands.
fn apply_commands(
    scheduler: &mut Scheduler,
    commands: Vec<CollectorCommand>,
    seen: &mut SeenCommands,
    now: Instant,
) {
    for command in commands {
        if !seen.first_time(command.id) {
            continue;
        }
        match command.action {
            CommandAction::RunProbes { probes, reason } => {
                let n = scheduler.run_now(&probes, now);
                tracing::info!(command = %command.id, jobs = n, reason = reason.as_deref().unwrap_or(""), "the server asked to re-test now");
            }
            CommandAction::SetProbeSchedule { probe, interval_secs, enabled } => {
                let interval = interval_secs.map(|s| {
                    Duration::from_secs(u64::from(s)).clamp(MIN_COMMANDED_INTERVAL, MAX_COMMANDED_INTERVAL)
                });
                let n = scheduler.set_schedule(probe, interval, enabled, now);
                tracing::info!(command = %command.id, %probe, ?interval, ?enabled, jobs = n, "the server changed a probe's schedule");
            }
            CommandAction::Unknown => {
                tracing::info!(command = %command.id, "the server sent a command this collector does not know; ignored");
            }
        }
    }
}

/// Resolves when shutdown is requested; never, if the sender is gone (no one can ask anymore).
async fn shutdown_requested(rx: &mut watch::Receiver<bool>) {
    if rx.wait_for(|stop| *stop).await.is_err() {
        std::future::pending::<()>().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Schedule;
    use wbd_wire::ProbeKind;

    #[test]
    fn commands_act_once_and_change_the_schedule() {
        let t0 = Instant::now();
        let every = |secs| Schedule { enabled: true, interval: Duration::from_secs(secs), jitter_percent: 0 };
        let mut scheduler = Scheduler::new(
            [
                (Job::new(ProbeKind::Endpoint), every(300)),
                (Job::new(ProbeKind::ActiveDirectory), every(3600)),
            ],
            t0,
        );
        for job in scheduler.take_due(t0) {
            scheduler.finished(&job, t0);
        }
        let mut seen = SeenCommands::default();
        let id = Uuid::new_v4();
        let run_ad = CollectorCommand {
            id,
            action: CommandAction::RunProbes {
                probes: vec![ProbeKind::ActiveDirectory],
                reason: Some("re-test".into()),
            },
        };
        let later = t0 + Duration::from_secs(1);
        apply_commands(&mut scheduler, vec![run_ad.clone()], &mut seen, later);
        assert_eq!(scheduler.take_due(later), vec![Job::new(ProbeKind::ActiveDirectory)]);
        scheduler.finished(&Job::new(ProbeKind::ActiveDirectory), later);
        // The same command again is ignored.
        apply_commands(&mut scheduler, vec![run_ad], &mut seen, later);
        assert!(scheduler.take_due(later).is_empty());
        // A schedule change: the interval is clamped to the allowed range.
        let slow = CollectorCommand {
            id: Uuid::new_v4(),
            action: CommandAction::SetProbeSchedule {
                probe: ProbeKind::Endpoint,
                interval_secs: Some(1),
                enabled: None,
            },
        };
        apply_commands(&mut scheduler, vec![slow], &mut seen, later);
        assert!(scheduler.take_due(later + Duration::from_secs(9)).is_empty());
        assert_eq!(scheduler.take_due(later + Duration::from_secs(10)), vec![Job::new(ProbeKind::Endpoint)]);
        let unknown = CollectorCommand { id: Uuid::new_v4(), action: CommandAction::Unknown };
        apply_commands(&mut scheduler, vec![unknown], &mut seen, later);
    }
}
