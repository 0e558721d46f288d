//! The central Microsoft Graph connector: a tenant's consent to the installation's app, the
//! consent in progress, and what the reader last saw.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::{CollectorId, OrgId, TenantId, TenantScope, UnknownValue};

/// The name of the collector row that stands for the central Graph reader of a tenant: facts it
/// reads are that collector's, so evidence says where they came from. The same text as
/// `wbd_wire::CENTRAL_GRAPH_READER`, by which the rules tell the central reader's reports from a
/// collector's (the store does not depend on the wire crate; a test keeps the two equal).
pub const GRAPH_READER_COLLECTOR: &str = "Microsoft Graph (central reader)";

/// Whether the app may read a connected tenant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GraphConnectionState {
    Connected,
    /// The identity platform refused the app for the tenant (consent revoked, app removed):
    /// reading stops until the tenant is connected again.
    ConsentRevoked,
}

impl GraphConnectionState {
    pub fn as_str(self) -> &'static str {
        match self {
            GraphConnectionState::Connected => "connected",
            GraphConnectionState::ConsentRevoked => "consent_revoked",
        }
    }
}

impl fmt::Display for GraphConnectionState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for GraphConnectionState {
    type Err = UnknownValue;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "connected" => Ok(GraphConnectionState::Connected),
            "consent_revoked" => Ok(GraphConnectionState::ConsentRevoked),
            other => Err(UnknownValue(other.to_owned())),
        }
    }
}

/// A tenant connected to the installation's Graph app.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GraphConnection {
    pub tenant_id: TenantId,
    pub org_id: OrgId,
    /// The Entra tenant Microsoft named when its administrator consented.
    pub entra_tenant_id: String,
    pub state: GraphConnectionState,
    pub consented_at: DateTime<Utc>,
    /// Who asked for the consent (`api_key:<id>`).
    pub consented_by: String,
    /// Application permissions the last read was refused.
    pub missing_permissions: Vec<String>,
    /// Graph asked the reader to wait until then.
    pub throttled_until: Option<DateTime<Utc>>,
    pub last_read_at: Option<DateTime<Utc>>,
    pub last_error: Option<String>,
    pub next_read_at: DateTime<Utc>,
    /// The collector row standing for the central reader (made when the tenant connects).
    pub collector_id: Option<CollectorId>,
    /// The UPN of the tenant's test user, whose `userRegistrationDetails` the reader reads (the
    /// central counterpart of a collector's `probes.graph.test_user`).
    pub test_user: Option<String>,
}

/// A consent asked for: the nonce its signed `state` carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GraphConsentRequest {
    pub nonce: Uuid,
    pub created_by: String,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
}

/// What became of a consent callback.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GraphConsentOutcome {
    /// The state was spent and the tenant is connected.
    Connected(Box<GraphConnection>),
    /// The state was spent; the administrator did not consent (nothing else changed).
    Declined { requested_by: String },
    /// No such state for this organisation and tenant, or it was used already, or it expired
    /// (nothing changed).
    StateUnusable,
}

/// A connected tenant whose read is due, leased to one reader.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GraphReadClaim {
    pub scope: TenantScope,
    pub entra_tenant_id: String,
    /// The collector row the read's facts are written for.
    pub collector_id: CollectorId,
    /// The tenant's test user, if one is set.
    pub test_user: Option<String>,
    /// Names this claim: only its holder may finish the read.
    pub lease_id: Uuid,
    /// When the read was due.
    pub due_at: DateTime<Utc>,
}

/// What a read found, as the connection keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct GraphReadResult {
    /// Application permissions Graph refused (403).
    pub missing_permissions: Vec<String>,
    /// Why the read (or part of it) failed, if it did.
    pub error: Option<String>,
    /// Graph asked the reader to wait until then.
    pub throttled_until: Option<DateTime<Utc>>,
    /// The identity platform refused the app for the tenant: reading stops until it is
    /// connected again.
    pub consent_revoked: bool,
    /// When to read the tenant next.
    pub next_read_at: DateTime<Utc>,
}
