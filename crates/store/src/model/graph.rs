//! The central Microsoft Graph connector: a tenant's consent to the installation's app, the
//! consent in progress, and what the reader last saw.

use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::{CollectorId, OrgId, TenantId, TenantScope};

/// The name of the collector row that stands for the central Graph reader of a tenant: facts it
/// reads are that collector's, so evidence says where they came from. It is the wire's
/// [`wbd_wire::CENTRAL_GRAPH_READER`], by which the rules tell the central reader's reports from
/// a collector's.
pub const GRAPH_READER_COLLECTOR: &str = wbd_wire::CENTRAL_GRAPH_READER;

string_enum!(
    /// Whether the app may read a connected tenant.
    GraphConnectionState {
        Connected = "connected",
        /// The identity platform refused the app for the tenant (consent revoked, app removed):
        /// reading stops until the tenant is connected again.
        ConsentRevoked = "consent_revoked",
        /// The tenant's own app was refused for its credential (a wrong or expired secret, a
        /// certificate the app registration does not have): reading stops until the app is set
        /// again.
        CredentialInvalid = "credential_invalid",
    }
);

impl fmt::Display for GraphConnectionState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

string_enum!(
    /// Which app reads a tenant: the installation's multi-tenant app (`[graph]`), which the
    /// tenant consented to, or the tenant's own app ("bring your own app"), set by an org admin.
    GraphAppKind { Installation = "installation", Own = "own" }
);

/// A tenant connected to Microsoft Graph: through the installation's app, or its own.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GraphConnection {
    pub tenant_id: TenantId,
    pub org_id: OrgId,
    /// The app that reads it.
    pub app: GraphAppKind,
    /// The Entra tenant Microsoft named when its administrator consented (or, with an own app,
    /// the one the app was set for: a GUID or a verified domain).
    pub entra_tenant_id: String,
    pub state: GraphConnectionState,
    /// When the consent was given (with an own app: when the app was set).
    pub consented_at: DateTime<Utc>,
    /// Who asked for the consent, or set the own app (`api_key:<id>`).
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

string_enum!(
    /// How a tenant's own app proves who it is.
    GraphCredentialKind { ClientSecret = "client_secret", Certificate = "certificate" }
);

/// A tenant's own Entra app ("bring your own app"): read with it instead of the installation's.
/// The credential is sealed by the caller (the store never sees it in the clear); `Debug` leaves
/// it out.
#[derive(Clone, PartialEq, Eq)]
pub struct GraphOwnApp {
    pub tenant_id: TenantId,
    pub org_id: OrgId,
    /// The app's (client) id, a GUID.
    pub client_id: String,
    /// The customer's Entra tenant the app reads: a GUID or a verified domain.
    pub entra_tenant_id: String,
    /// `global`, `us_government` or `china`.
    pub cloud: String,
    pub credential_kind: GraphCredentialKind,
    /// When the credential expires, if known (a certificate's `notAfter`, or as given for a
    /// secret).
    pub credential_expires_at: Option<DateTime<Utc>>,
    pub sealed_credential: Vec<u8>,
    /// Counts the times it was set; a change may name the version it was made from.
    pub version: i64,
    pub updated_at: DateTime<Utc>,
    pub updated_by: String,
}

impl fmt::Debug for GraphOwnApp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GraphOwnApp")
            .field("tenant_id", &self.tenant_id)
            .field("client_id", &self.client_id)
            .field("entra_tenant_id", &self.entra_tenant_id)
            .field("cloud", &self.cloud)
            .field("credential_kind", &self.credential_kind)
            .field("credential_expires_at", &self.credential_expires_at)
            .field("version", &self.version)
            .finish_non_exhaustive()
    }
}

/// What setting a tenant's own app writes.
#[derive(Clone, PartialEq, Eq)]
pub struct GraphOwnAppWrite {
    pub client_id: String,
    pub entra_tenant_id: String,
    pub cloud: String,
    pub credential_kind: GraphCredentialKind,
    pub credential_expires_at: Option<DateTime<Utc>>,
    pub sealed_credential: Vec<u8>,
}

impl fmt::Debug for GraphOwnAppWrite {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GraphOwnAppWrite")
            .field("client_id", &self.client_id)
            .field("entra_tenant_id", &self.entra_tenant_id)
            .field("cloud", &self.cloud)
            .field("credential_kind", &self.credential_kind)
            .finish_non_exhaustive()
    }
}

/// What became of setting a tenant's own app.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GraphOwnAppOutcome {
    /// Set; the tenant is connected through it, its first read due at once.
    Set { app: Box<GraphOwnApp>, connection: Box<GraphConnection> },
    /// The app is not at the version the change was made from (`None`: there is none); nothing
    /// changed.
    Changed { current_version: Option<i64> },
}

/// A problem of the installation's app itself (its credential refused), not of any tenant:
/// reads with it pause until `retry_at`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GraphAppProblem {
    pub problem: String,
    /// Since when (the first read that saw it).
    pub since: DateTime<Utc>,
    /// The last read that saw it.
    pub seen_at: DateTime<Utc>,
    /// When reads with the app are tried again.
    pub retry_at: DateTime<Utc>,
}

/// A connected tenant whose read is due, leased to one reader.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GraphReadClaim {
    pub scope: TenantScope,
    pub entra_tenant_id: String,
    /// The tenant's own app, when it reads with one (else the installation's).
    pub own_app: Option<GraphOwnApp>,
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
    /// The tenant's own app was refused for its credential: reading stops until the app is set
    /// again.
    pub credential_invalid: bool,
    /// When to read the tenant next.
    pub next_read_at: DateTime<Utc>,
}
