//! The probes. Each probe kind lives in its own module and yields typed
//! `wbd_wire::ProbeResult`s; [`ProbeSet`] builds every configured probe from the settings and
//! runs one scheduled [`Job`] at a time.
//!
//! | module | probe | subject of its results |
//! |---|---|---|
//! | [`endpoint`] | DNS, TCP, TLS to each writeback endpoint | `host:port` |
//! | [`idle_connection`] | TLS connections held idle, then used | `host:port` |
//! | [`proxy`] | the site's proxy: tunnel, auth, TLS inspection | `proxy` |
//! | [`active_directory`] | the domain over LDAP(S) | `ldap:<url>` |
//! | [`connect_server`] | the Entra Connect Sync server | `connect-server:<host>` |
//! | [`event_log`] | PasswordResetService / ADSync events | `eventlog:Application` or `eventlog:export` |
//! | [`graph`] | the tenant through Microsoft Graph | `graph:<tenant>` |
//! | [`script`] | a site-specific executable | `script:<name>` |

pub mod active_directory;
pub mod connect_server;
pub mod endpoint;
pub mod event_log;
pub mod graph;
pub mod idle_connection;
pub mod proxy;
pub mod script;
pub mod tls;

use std::path::Path;
use std::sync::Arc;

use wbd_wire::{ProbeKind, ProbeResult};

use crate::config::{EndpointTarget, Schedule, ScriptSettings, Settings};
use crate::http_client;
use crate::schedule::Job;
pub use active_directory::ActiveDirectoryProber;
pub use connect_server::ConnectServerProber;
pub use endpoint::EndpointProber;
pub use event_log::EventLogProber;
pub use graph::GraphProber;
pub use idle_connection::IdleConnectionProber;
pub use proxy::{ProxyProber, SiteProxy};
pub use tls::{ProbeSetupError, TlsChecker};

/// Every configured probe, ready to run.
#[derive(Debug, Clone)]
pub struct ProbeSet {
    endpoints: Vec<EndpointTarget>,
    endpoint: Arc<EndpointProber>,
    endpoint_schedule: Schedule,
    idle: (IdleConnectionProber, Schedule),
    /// Notified when the idle-connection probe starts holding a connection.
    idle_holding: Arc<tokio::sync::Notify>,
    proxy: (ProxyProber, Schedule),
    active_directory: Option<(ActiveDirectoryProber, Schedule)>,
    connect_server: Option<(ConnectServerProber, Schedule)>,
    event_log: Option<(EventLogProber, Schedule)>,
    graph: Option<(GraphProber, Schedule)>,
    scripts: Vec<ScriptSettings>,
}

impl ProbeSet {
    /// Builds the probes. `state_dir`: where probes keep what they need between runs (the
    /// event-log bookmark, the Connect export script); `None` for one-off runs.
    pub fn new(settings: &Settings, state_dir: Option<&Path>) -> Result<ProbeSet, ProbeSetupError> {
        let tls = Arc::new(TlsChecker::new(&settings.extra_trusted_cas, settings.connect_timeout)?);
        let site_proxy = SiteProxy::discover(settings.proxy.as_ref());
        let p = &settings.probes;
        let idle_proxy = if p.idle_connection.via_proxy { site_proxy.clone() } else { None };
        let probes_dir = state_dir.map(|d| d.join("probes"));
        let work_dir = probes_dir.clone().unwrap_or_else(std::env::temp_dir);
        let idle_holding = Arc::new(tokio::sync::Notify::new());
        let active_directory = match &p.active_directory {
            Some(ad) => {
                let prober = ActiveDirectoryProber::new(ad.clone())?;
                // The AD connectors' container filter tells which containers Connect syncs.
                let prober = match &p.connect_server {
                    Some(c) => {
                        prober.with_connect_state(ConnectServerProber::new(c.clone(), work_dir.clone()))
                    }
                    None => prober,
                };
                Some((prober, ad.schedule))
            }
            None => None,
        };
        let graph =
            match &p.graph {
                Some(g) => {
                    let client = http_client::outbound_client(&[], settings.proxy.as_ref(), g.timeout)
                        .map_err(|e| ProbeSetupError::Setting {
                            setting: "probes.graph".to_owned(),
                            message: e.to_string(),
                        })?;
                    Some((GraphProber::new(g.clone(), client), g.schedule))
                }
                None => None,
            };
        Ok(ProbeSet {
            endpoints: settings.endpoints.clone(),
            endpoint: Arc::new(
                EndpointProber::with_checker(Arc::clone(&tls), settings.connect_timeout)
                    .through(if p.endpoint_via_proxy { site_proxy.clone() } else { None }),
            ),
            endpoint_schedule: p.endpoint,
            idle: (
                IdleConnectionProber::new(
                    Arc::clone(&tls),
                    idle_proxy,
                    p.idle_connection.holds.clone(),
                    settings.connect_timeout,
                )
                .notify_holds(Arc::clone(&idle_holding)),
                p.idle_connection.schedule,
            ),
            idle_holding,
            proxy: (
                ProxyProber::new(site_proxy, Arc::clone(&tls), settings.connect_timeout),
                p.proxy.schedule,
            ),
            active_directory,
            connect_server: p.connect_server.as_ref().map(|c| {
                let prober = ConnectServerProber::new(c.clone(), work_dir);
                let prober = match &probes_dir {
                    Some(dir) => prober.remembering_in(dir.join("connect_server.json")),
                    None => prober,
                };
                (prober, c.schedule)
            }),
            event_log: p.event_log.as_ref().map(|e| {
                (
                    EventLogProber::new(e.clone(), probes_dir.as_ref().map(|d| d.join("event_log.json"))),
                    e.schedule,
                )
            }),
            graph,
            scripts: p.scripts.clone(),
        })
    }

    /// Notified each time the idle-connection probe starts holding a connection idle (nothing is
    /// held when no connection opens).
    pub fn idle_holds(&self) -> Arc<tokio::sync::Notify> {
        Arc::clone(&self.idle_holding)
    }

    /// Every job with its schedule, in the order of [`ProbeKind::ALL`].
    pub fn jobs(&self) -> Vec<(Job, Schedule)> {
        let mut jobs = vec![
            (Job::new(ProbeKind::Endpoint), self.endpoint_schedule),
            (Job::new(ProbeKind::IdleConnection), self.idle.1),
            (Job::new(ProbeKind::Proxy), self.proxy.1),
        ];
        let optional = [
            (ProbeKind::ActiveDirectory, self.active_directory.as_ref().map(|p| p.1)),
            (ProbeKind::ConnectServer, self.connect_server.as_ref().map(|p| p.1)),
            (ProbeKind::EventLog, self.event_log.as_ref().map(|p| p.1)),
            (ProbeKind::Graph, self.graph.as_ref().map(|p| p.1)),
        ];
        jobs.extend(optional.into_iter().filter_map(|(kind, s)| s.map(|s| (Job::new(kind), s))));
        jobs.extend(self.scripts.iter().map(|s| (Job::script(&s.name), s.schedule)));
        jobs
    }

    /// The enabled jobs.
    pub fn enabled_jobs(&self) -> Vec<Job> {
        self.jobs().into_iter().filter(|(_, s)| s.enabled).map(|(j, _)| j).collect()
    }

    /// Runs one job to completion. Never fails: what went wrong is in the results.
    pub async fn run(&self, job: &Job) -> Vec<ProbeResult> {
        match job.kind {
            ProbeKind::Endpoint => probe_endpoints(&self.endpoint, &self.endpoints).await,
            ProbeKind::IdleConnection => {
                let mut tasks = tokio::task::JoinSet::new();
                for (index, target) in self.endpoints.iter().cloned().enumerate() {
                    let prober = self.idle.0.clone();
                    tasks.spawn(async move { (index, prober.probe(&target).await) });
                }
                collect_in_order(tasks, "idle connection").await
            }
            ProbeKind::Proxy => vec![self.proxy.0.probe(&self.endpoints).await],
            ProbeKind::ActiveDirectory => match &self.active_directory {
                Some((p, _)) => vec![p.probe().await],
                None => Vec::new(),
            },
            ProbeKind::ConnectServer => match &self.connect_server {
                Some((p, _)) => vec![p.probe().await],
                None => Vec::new(),
            },
            ProbeKind::EventLog => match &self.event_log {
                Some((p, _)) => vec![p.probe().await],
                None => Vec::new(),
            },
            ProbeKind::Graph => match &self.graph {
                Some((p, _)) => vec![p.probe().await],
                None => Vec::new(),
            },
            ProbeKind::Script => {
                let wanted = |s: &&ScriptSettings| job.script.as_deref().is_none_or(|name| name == s.name);
                let mut out = Vec::new();
                for script in self.scripts.iter().filter(wanted) {
                    out.push(script::run_script(script).await);
                }
                out
            }
        }
    }

    /// Runs every enabled job at once and returns the results in job order.
    pub async fn run_all(self: &Arc<Self>) -> Vec<ProbeResult> {
        let mut tasks = tokio::task::JoinSet::new();
        for (index, job) in self.enabled_jobs().into_iter().enumerate() {
            let set = Arc::clone(self);
            tasks.spawn(async move { (index, set.run(&job).await) });
        }
        collect_in_order(tasks, "probe").await.into_iter().flatten().collect()
    }
}

async fn collect_in_order<T: Send + 'static>(
    mut tasks: tokio::task::JoinSet<(usize, T)>,
    what: &str,
) -> Vec<T> {
    let mut done = Vec::new();
    while let Some(joined) = tasks.join_next().await {
        match joined {
            Ok(pair) => done.push(pair),
            // A probe task can only fail by panicking; losing one result is better than
            // taking the whole collector down.
            Err(e) => tracing::error!(error = %e, "a {what} task failed"),
        }
    }
    done.sort_by_key(|(index, _)| *index);
    done.into_iter().map(|(_, r)| r).collect()
}

/// Probes every endpoint concurrently and returns the results in the order of `targets`.
pub async fn probe_endpoints(prober: &Arc<EndpointProber>, targets: &[EndpointTarget]) -> Vec<ProbeResult> {
    let mut tasks = tokio::task::JoinSet::new();
    for (index, target) in targets.iter().cloned().enumerate() {
        let prober = Arc::clone(prober);
        tasks.spawn(async move { (index, prober.probe(&target).await) });
    }
    collect_in_order(tasks, "endpoint probe").await
}
