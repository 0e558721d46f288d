//! The probes the collector runs on each cycle. Each probe kind lives in its own module and
//! yields `wbd_wire::ProbeResult`s; this module runs a cycle of them.

pub mod endpoint;

use std::sync::Arc;

use wbd_wire::ProbeResult;

use crate::config::EndpointTarget;
pub use endpoint::{EndpointProber, ProbeSetupError};

/// Probes every endpoint concurrently and returns the results in the order of `targets`.
pub async fn probe_endpoints(prober: &Arc<EndpointProber>, targets: &[EndpointTarget]) -> Vec<ProbeResult> {
    let mut tasks = tokio::task::JoinSet::new();
    for (index, target) in targets.iter().cloned().enumerate() {
        let prober = Arc::clone(prober);
        tasks.spawn(async move { (index, prober.probe(&target).await) });
    }
    let mut results: Vec<(usize, ProbeResult)> = Vec::with_capacity(targets.len());
    while let Some(joined) = tasks.join_next().await {
        match joined {
            Ok(pair) => results.push(pair),
            // A probe task can only fail by panicking; losing one result is better than
            // taking the whole collector down, and the log says which cycle it was.
            Err(e) => tracing::error!(error = %e, "an endpoint probe task failed"),
        }
    }
    results.sort_by_key(|(index, _)| *index);
    results.into_iter().map(|(_, r)| r).collect()
}
