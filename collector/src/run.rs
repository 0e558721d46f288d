//! `wbd-collector run`: the agent loop.
//!
//! Every `probe_interval` (±10% jitter, so that collectors started together drift apart) the
//! endpoints are probed, each result is written to the spool, and everything pending is pushed.
//! Between cycles, batches the server could not take are retried on the backoff schedule. A
//! shutdown request lets a running probe cycle finish writing its results, then stops; an
//! in-flight push is simply abandoned (the batch stays sealed and is re-sent with the same id).

use std::sync::Arc;
use std::time::Duration;

use rand::Rng;
use tokio::sync::watch;
use tokio::time::{Instant, sleep, sleep_until};
use wbd_wire::CollectorInfo;

use crate::config::Settings;
use crate::http_client::{self, ClientSetupError};
use crate::identity::{Identity, IdentityError, StateDir};
use crate::probe::{self, EndpointProber, ProbeSetupError};
use crate::push::{self, Backoff, BackoffPolicy, DrainStatus, Holdup, Pusher};
use crate::server_url::{ServerUrl, ServerUrlError};
use crate::spool::{SharedSpool, Spool, SpoolError};

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

/// What one probe cycle wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
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

/// A started collector: identity loaded, spool open, ready to probe and push.
#[derive(Debug)]
pub struct Collector {
    settings: Settings,
    identity: Identity,
    prober: Arc<EndpointProber>,
    spool: SharedSpool,
    pusher: Pusher,
    info: CollectorInfo,
}

impl Collector {
    /// Loads the identity from the state directory and opens the spool.
    pub fn start(settings: Settings) -> Result<Collector, StartError> {
        let state = StateDir::new(&settings.state_dir);
        let identity = state.load_identity()?;
        let key = state.load_key()?;
        let server = ServerUrl::parse(&identity.server)?;
        let client = http_client::server_client(&settings.server_ca)?;
        let pusher = Pusher::new(client, &server, identity.collector_id, &key);
        let prober = Arc::new(EndpointProber::new(&settings.extra_trusted_cas, settings.connect_timeout)?);
        let spool = Spool::open(state.spool_dir(), settings.spool_max_bytes)?;

        let expected = settings.push_interval_secs.unwrap_or(identity.push_interval_secs);
        let cycle_secs = settings.probe_interval.as_secs();
        if cycle_secs > u64::from(expected) {
            tracing::warn!(
                probe_interval_secs = cycle_secs,
                push_interval_secs = expected,
                "results are pushed after each probe cycle, and probe_interval_secs is longer than the push \
                 interval the server expects: the server may report this collector as silent"
            );
        }
        let info = CollectorInfo {
            version: env!("CARGO_PKG_VERSION").to_owned(),
            hostname: crate::host::hostname(),
            os: crate::host::os_description(),
            // We push after every probe cycle, so that is the cadence the server should expect.
            push_interval_secs: u32::try_from(cycle_secs).unwrap_or(u32::MAX),
            spool_dropped: 0,
        };
        tracing::info!(
            collector_id = %identity.collector_id,
            tenant_id = %identity.tenant_id,
            server = %server,
            endpoints = settings.endpoints.len(),
            pending_batches = spool.pending_batches(),
            pending_results = spool.pending_results(),
            "collector started"
        );
        Ok(Collector { settings, identity, prober, spool: SharedSpool::new(spool), pusher, info })
    }

    pub fn identity(&self) -> &Identity {
        &self.identity
    }

    fn backoff_policy(&self) -> BackoffPolicy {
        BackoffPolicy { base: self.settings.retry_base, cap: self.settings.retry_cap }
    }

    /// Probes every endpoint and writes each result to the spool.
    pub async fn probe_cycle(&self) -> CycleReport {
        let results = probe::probe_endpoints(&self.prober, &self.settings.endpoints).await;
        let probed = results.len();
        let mut spooled = 0;
        for result in results {
            let subject = result.subject.clone();
            match self.spool.run(move |s| s.append(&result)).await {
                Ok(()) => spooled += 1,
                Err(e) => tracing::error!(endpoint = %subject, error = %e, "could not spool a probe result"),
            }
        }
        tracing::info!(probed, spooled, "probe cycle done");
        CycleReport { probed, spooled }
    }

    /// Seals pending results and pushes until the spool is empty or the server asks to wait.
    pub async fn push_pending(&self, backoff: &mut Backoff) -> Result<DrainStatus, SpoolError> {
        push::drain(&self.spool, &self.pusher, backoff, &self.info).await
    }

    /// Batches waiting in the spool.
    pub async fn pending_batches(&self) -> usize {
        self.spool.run(|s| Ok(s.pending_batches())).await.unwrap_or(0)
    }

    /// Runs until `shutdown` turns true.
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        let mut backoff = Backoff::new(self.backoff_policy());
        let mut next_probe = Instant::now();
        // `None`: nothing to push until the next cycle. `Some(t)`: push (or retry) at `t`.
        let mut next_push: Option<Instant> = None;
        loop {
            if *shutdown.borrow() {
                break;
            }
            if Instant::now() >= next_probe {
                // Not raced against shutdown: a cycle that started finishes writing its results.
                self.probe_cycle().await;
                next_probe = Instant::now() + jittered(self.settings.probe_interval);
                // A fresh cycle is pushed right away, unless we are already waiting on the
                // server (it asked us to, or it is down): that wait is respected.
                next_push.get_or_insert_with(Instant::now);
                if *shutdown.borrow() {
                    break;
                }
            }
            if let Some(at) = next_push
                && Instant::now() >= at
            {
                let status = tokio::select! {
                    status = self.push_pending(&mut backoff) => status,
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
            }
            let wake = next_push.map_or(next_probe, |at| at.min(next_probe));
            tokio::select! {
                () = sleep_until(wake) => {}
                () = shutdown_requested(&mut shutdown) => break,
            }
        }
        tracing::info!("collector stopped");
    }

    /// Probes once, then pushes until the spool is empty, the server refuses our credentials,
    /// or `retry_for` has passed.
    pub async fn run_once(self, retry_for: Duration, mut shutdown: watch::Receiver<bool>) -> OnceOutcome {
        let cycle = self.probe_cycle().await;
        let deadline = Instant::now() + retry_for;
        let mut backoff = Backoff::new(self.backoff_policy());
        let mut holdup = None;
        while !*shutdown.borrow() {
            let status = tokio::select! {
                status = self.push_pending(&mut backoff) => status,
                () = shutdown_requested(&mut shutdown) => break,
            };
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

/// `interval` ±10%.
fn jittered(interval: Duration) -> Duration {
    interval.mul_f64(rand::rng().random_range(0.9..=1.1))
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

    #[test]
    fn jitter_stays_within_ten_percent() {
        for _ in 0..200 {
            let d = jittered(Duration::from_secs(300));
            assert!(d >= Duration::from_secs(270) && d <= Duration::from_secs(330), "{d:?}");
        }
    }
}
