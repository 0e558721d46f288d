//! Organisations, their API keys, tenants and collectors.

use std::str::FromStr;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::*;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Organization {
    pub id: OrgId,
    pub name: String,
    pub created_at: DateTime<Utc>,
}

/// Roles of a human or automation principal (API key holder).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Everything in the organisation, including keys, tenants and collectors.
    OrgAdmin,
    /// Reads everything and works findings.
    Technician,
    /// Reads only.
    ReadOnly,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::OrgAdmin => "org_admin",
            Role::Technician => "technician",
            Role::ReadOnly => "read_only",
        }
    }
}

impl FromStr for Role {
    type Err = UnknownValue;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "org_admin" => Ok(Role::OrgAdmin),
            "technician" => Ok(Role::Technician),
            "read_only" => Ok(Role::ReadOnly),
            other => Err(UnknownValue(other.to_owned())),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiKey {
    pub id: ApiKeyId,
    pub org_id: OrgId,
    pub name: String,
    pub role: Role,
    /// The first characters of the key, shown so a human can tell keys apart.
    pub prefix: String,
    pub created_at: DateTime<Utc>,
    pub revoked_at: Option<DateTime<Utc>>,
}

/// A browser signed in to the console with an API key, as the store finds it: only while it has
/// not expired and its key is not revoked, with the key's role as it is now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConsoleSession {
    pub org_id: OrgId,
    pub api_key_id: ApiKeyId,
    pub role: Role,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tenant {
    pub id: TenantId,
    pub org_id: OrgId,
    pub name: String,
    /// The customer's Entra tenant (directory) id, when known.
    pub entra_tenant_id: Option<String>,
    pub created_at: DateTime<Utc>,
}

/// A tenant with the figures the MSP overview needs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TenantSummary {
    pub tenant: Tenant,
    /// Findings that are open or acknowledged (present and not suppressed), by severity: root
    /// causes and findings that stand alone (a consequence of another finding counts once, as
    /// its root, in `consequences`).
    pub open_critical: u32,
    pub open_high: u32,
    pub open_medium: u32,
    pub open_low: u32,
    pub open_info: u32,
    /// Findings suppressed by someone (present, but accepted for now).
    pub suppressed: u32,
    /// Open or acknowledged findings that another active finding explains (grouped under it).
    pub consequences: u32,
    pub collectors: u32,
    /// Active collectors past their silence deadline.
    pub silent_collectors: u32,
    /// Rules the last evaluation could not decide (outcome "unknown").
    pub unknown_rules: u32,
    /// The most recent push of any of its collectors.
    pub last_seen_at: Option<DateTime<Utc>>,
}

impl TenantSummary {
    /// The tenant's health, 0 (worst) to 100:
    ///
    /// `100 − 40 × critical − 20 × high − 8 × medium − 3 × low − 15 × silent collectors
    /// − min(unknown rules, 10)`, at least 0.
    ///
    /// Only open and acknowledged findings count (a suppressed finding was accepted for now; an
    /// info finding is context), and a cascade counts once: a consequence of another finding is
    /// not counted beside its root cause. A silent collector weighs like a high finding: nothing is known
    /// about its site any more. An undecided rule costs a point, at most ten: missing data is
    /// worth looking at, but must not outweigh a real failure.
    pub fn health_score(&self) -> u8 {
        let penalty = 40 * u64::from(self.open_critical)
            + 20 * u64::from(self.open_high)
            + 8 * u64::from(self.open_medium)
            + 3 * u64::from(self.open_low)
            + 15 * u64::from(self.silent_collectors)
            + u64::from(self.unknown_rules.min(10));
        u8::try_from(100u64.saturating_sub(penalty)).unwrap_or(0)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CollectorStatus {
    /// Created, waiting for its one-time enrollment.
    Pending,
    /// Enrolled; may push.
    Active,
    /// Refused from now on.
    Revoked,
}

impl CollectorStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            CollectorStatus::Pending => "pending",
            CollectorStatus::Active => "active",
            CollectorStatus::Revoked => "revoked",
        }
    }
}

impl FromStr for CollectorStatus {
    type Err = UnknownValue;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "pending" => Ok(CollectorStatus::Pending),
            "active" => Ok(CollectorStatus::Active),
            "revoked" => Ok(CollectorStatus::Revoked),
            other => Err(UnknownValue(other.to_owned())),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Collector {
    pub id: CollectorId,
    pub org_id: OrgId,
    pub tenant_id: TenantId,
    pub name: String,
    pub status: CollectorStatus,
    /// Until when the one-time enrollment token is valid (pending collectors only).
    pub enrollment_expires_at: Option<DateTime<Utc>>,
    /// Raw 32-byte Ed25519 public key registered at enrollment.
    pub public_key: Option<Vec<u8>>,
    pub hostname: Option<String>,
    pub version: Option<String>,
    pub os: Option<String>,
    pub push_interval_secs: u32,
    pub enrolled_at: Option<DateTime<Utc>>,
    pub last_seen_at: Option<DateTime<Utc>>,
    /// When this collector counts as silent if it has not pushed again by then.
    pub silent_after: Option<DateTime<Utc>>,
    /// Results the collector reported dropping from its spool, as last reported.
    pub spool_dropped: u64,
    pub created_at: DateTime<Utc>,
    pub revoked_at: Option<DateTime<Utc>>,
}

impl Collector {
    pub fn scope(&self) -> TenantScope {
        TenantScope { org_id: self.org_id, tenant_id: self.tenant_id }
    }
}

/// A pushing collector as its push is authenticated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PushingCollector {
    pub collector: Collector,
    /// Whether a command waited for it then (not delivered, not cancelled, not run out): a push
    /// answered without looking for commands loses none, as the next one hands them out.
    pub commands_waiting: bool,
}

/// What an enrollment stores: the key and what the collector said about itself.
#[derive(Debug, Clone)]
pub struct Enrollment {
    pub enrollment_token_hash: String,
    pub public_key: Vec<u8>,
    pub hostname: String,
    pub version: String,
    pub now: DateTime<Utc>,
    /// Deadline for the first push.
    pub silent_after: DateTime<Utc>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum EnrollError {
    #[error("no collector waits for this enrollment token")]
    UnknownToken,
    #[error("the enrollment token has expired")]
    Expired,
    #[error("the enrollment token was already used")]
    AlreadyUsed,
}
