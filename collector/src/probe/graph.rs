//! The Microsoft Graph probe: the tenant-side facts writeback depends on, read app-only by an
//! app registration in the customer's own tenant (for `probe --once` on site, and for MSPs who
//! will not consent to the installation's shared app; the server reads Graph centrally
//! otherwise).
//!
//! The reading itself is `wbd-graph`'s, the same the server's central reader uses: the OAuth 2.0
//! client-credentials grant (`{authority}/{tenant}/oauth2/v2.0/token`, scope `{graph}/.default`;
//! the authority and the Graph base URL are settings, so national clouds work), the reads and the
//! permissions each needs (Organization.Read.All, Policy.Read.All, AuditLog.Read.All,
//! RoleManagement.Read.Directory, User.Read.All), paging on the Graph host only, `Retry-After`.
//! Each read that fails leaves its fact `None` and adds an entry to `errors`; a failed token
//! request fails the whole report (`failure`).

use std::time::Instant;

use chrono::Utc;
use wbd_graph::{ClientCredential, GraphApp, GraphReader};
// Read by the fuzz target `collector_answers` (what the probe takes from Microsoft's answers).
pub use wbd_graph::{aggregate_service_plans, read_token_answer};
use wbd_wire::{ProbeOutput, ProbeResult};

use super::tls::millis;
use crate::config::GraphSettings;

/// Names the settings in the token endpoint's refusals.
const SETTINGS_HINT: &str = "probes.graph.client_id / client_secret";

/// Runs the Graph probe; keeps its access token between runs until shortly before it expires.
#[derive(Debug, Clone)]
pub struct GraphProber {
    settings: GraphSettings,
    reader: GraphReader,
}

impl GraphProber {
    pub fn new(settings: GraphSettings, client: reqwest::Client) -> Self {
        let app = GraphApp {
            client_id: settings.client_id.clone(),
            credential: ClientCredential::Secret(wbd_graph::Secret::new(settings.client_secret.expose())),
            authority: settings.authority.clone(),
            graph_base_url: settings.graph_base_url.clone(),
            timeout: settings.timeout,
            settings_hint: SETTINGS_HINT.to_owned(),
            // A secret's expiry is not configured on the collector.
            secret_expires_at: None,
        };
        GraphProber { reader: GraphReader::new(app, client), settings }
    }

    #[tracing::instrument(skip_all, fields(tenant = %self.settings.tenant))]
    pub async fn probe(&self) -> ProbeResult {
        let observed_at = Utc::now();
        let started = Instant::now();
        let report = self.reader.read(&self.settings.tenant, self.settings.test_user.as_deref()).await;
        ProbeResult {
            subject: format!("graph:{}", self.settings.tenant),
            observed_at,
            duration_ms: millis(started.elapsed()),
            output: ProbeOutput::Graph(report),
        }
    }
}
