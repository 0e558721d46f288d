//! Entra Connect server probe: the sync engine's configuration and health, read live on the
//! Windows server (ADSync PowerShell module, registry, service manager) or from the JSON export
//! that `Export-WbdConnectState.ps1` writes.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// What the collector learned about the Entra Connect Sync server.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ConnectServerReport {
    pub source: ConnectStateSource,
    /// When the state was read (for an export: when the script ran).
    #[serde(default)]
    pub read_at: Option<DateTime<Utc>>,
    /// The server the state describes.
    #[serde(default)]
    pub hostname: Option<String>,
    /// Product version of the sync engine (`miiserver.exe`), e.g. `2.5.79.0`.
    #[serde(default)]
    pub connect_version: Option<String>,
    /// Password writeback enabled on the Entra connector
    /// (`Get-ADSyncAADPasswordResetConfiguration`).
    #[serde(default)]
    pub writeback_enabled: Option<bool>,
    /// Staging mode (`Get-ADSyncScheduler`.StagingModeEnabled): no writeback at all.
    #[serde(default)]
    pub staging_mode: Option<bool>,
    #[serde(default)]
    pub connectors: Vec<ConnectorState>,
    #[serde(default)]
    pub scheduler: Option<SchedulerState>,
    /// The ADSync Windows service.
    #[serde(default)]
    pub adsync_service: Option<ServiceState>,
    /// `Microsoft.SystemInformation.MachineRole` (e.g. `RoleMemberServer`).
    #[serde(default)]
    pub machine_role: Option<String>,
    /// `Get-ADSyncAutoUpgrade`: `Enabled`, `Suspended` or `Disabled`.
    #[serde(default)]
    pub auto_upgrade: Option<String>,
    /// Host operating system caption and build.
    #[serde(default)]
    pub os_caption: Option<String>,
    #[serde(default)]
    pub os_build: Option<u32>,
    #[serde(default)]
    pub tls12: Option<Tls12Settings>,
    /// `HKLM\SOFTWARE\Microsoft\NET Framework Setup\NDP\v4\Full\Release`.
    #[serde(default)]
    pub dotnet_release: Option<RegistryDword>,
    /// `HKLM\SYSTEM\CurrentControlSet\Control\Lsa\RestrictRemoteSam` (an SDDL string).
    #[serde(default)]
    pub restrict_remote_sam: Option<RegistryString>,
    /// Entra cloud sync provisioning agent on this host, if the probe looked.
    #[serde(default)]
    pub cloud_sync_agent: Option<CloudSyncAgent>,
    /// Parts of the state that could not be read (cmdlet errors, missing keys in an export).
    #[serde(default)]
    pub errors: Vec<String>,
}

/// Where the Connect server state came from.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ConnectStateSource {
    /// Read on this machine (Windows).
    Live,
    /// Parsed from an export file.
    Export { path: String },
}

/// One sync connector (management agent).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ConnectorState {
    pub name: String,
    pub kind: ConnectorKind,
    #[serde(default)]
    pub identifier: Option<String>,
    #[serde(default)]
    pub created_at: Option<DateTime<Utc>>,
    /// Entra connector only: password writeback enabled on it.
    #[serde(default)]
    pub writeback_enabled: Option<bool>,
    /// AD connectors: "Only use preferred domain controllers" (the domain partition's
    /// `dc-failover` is `0` in the connector's configuration).
    #[serde(default)]
    pub only_use_preferred_dcs: Option<bool>,
    /// AD connectors: the preferred DC list, in order.
    #[serde(default)]
    pub preferred_dcs: Vec<String>,
    /// AD connectors: the DC last used.
    #[serde(default)]
    pub last_dc: Option<String>,
    /// AD connectors: LDAP sign and seal.
    #[serde(default)]
    pub sign_and_seal: Option<bool>,
    /// AD connectors: the selected directory partitions and the containers synced in each.
    #[serde(default)]
    pub partitions: Vec<SyncedPartition>,
    /// The newest Full Import in the run history the export holds.
    #[serde(default)]
    pub last_full_import: Option<RunSummary>,
    /// The newest Full Synchronization in that history.
    #[serde(default)]
    pub last_full_sync: Option<RunSummary>,
    /// The newest run of any profile.
    #[serde(default)]
    pub last_run: Option<RunSummary>,
    /// How many runs that history holds. The export asks for the last 50, and the sync engine
    /// purges older runs (after 7 days by default), so on a server that has run for a while the
    /// full runs are no longer in it.
    #[serde(default)]
    pub runs_in_history: Option<u32>,
    /// The newest successful Full Import seen for the connector: in this history, or in an
    /// earlier one (a collector with a state directory keeps what it has seen across runs).
    #[serde(default)]
    pub remembered_full_import: Option<RunSummary>,
    /// Likewise for Full Synchronization.
    #[serde(default)]
    pub remembered_full_sync: Option<RunSummary>,
    /// The connector's own statistics (`Get-ADSyncConnectorStatistics`).
    #[serde(default)]
    pub statistics: Option<ConnectorStatistics>,
}

/// One directory partition an AD connector synchronises, with its container filter.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct SyncedPartition {
    /// The partition's DN, e.g. `DC=corp,DC=example`.
    pub dn: String,
    /// Containers included (their subtrees are synced), e.g. `OU=Staff,DC=corp,DC=example`.
    #[serde(default)]
    pub inclusions: Vec<String>,
    /// Containers excluded inside the included ones. The most specific rule wins: excluding the
    /// partition's head and including an OU syncs only that OU.
    #[serde(default)]
    pub exclusions: Vec<String>,
}

/// `Get-ADSyncConnectorStatistics` of one connector.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ConnectorStatistics {
    /// Objects in the connector space joined to the metaverse (`TotalConnectors`): more than
    /// zero only after the connector was imported and synchronised.
    #[serde(default)]
    pub total_connectors: Option<u64>,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Hash)]
#[serde(rename_all = "snake_case")]
pub enum ConnectorKind {
    ActiveDirectory,
    EntraId,
    Other,
}

/// One run of a run profile.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct RunSummary {
    /// e.g. `Full Import`, `Full Synchronization`, `Delta Import`.
    pub run_profile: String,
    /// The engine's result text, e.g. `success`, `completed-warnings`, `stopped-server-down`.
    pub result: String,
    #[serde(default)]
    pub started_at: Option<DateTime<Utc>>,
    #[serde(default)]
    pub ended_at: Option<DateTime<Utc>>,
}

impl RunSummary {
    /// The engine reports success as `success` (and a few `completed-*` variants that still
    /// applied changes).
    pub fn succeeded(&self) -> bool {
        let r = self.result.to_ascii_lowercase();
        r == "success" || r.starts_with("completed-")
    }
}

/// `Get-ADSyncScheduler`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct SchedulerState {
    #[serde(default)]
    pub sync_cycle_enabled: Option<bool>,
    #[serde(default)]
    pub scheduler_suspended: Option<bool>,
    #[serde(default)]
    pub staging_mode_enabled: Option<bool>,
    #[serde(default)]
    pub maintenance_enabled: Option<bool>,
    #[serde(default)]
    pub sync_cycle_in_progress: Option<bool>,
    #[serde(default)]
    pub next_sync_cycle_start: Option<DateTime<Utc>>,
    /// `CurrentlyEffectiveSyncCycleInterval`, in seconds.
    #[serde(default)]
    pub effective_sync_interval_secs: Option<u64>,
}

/// A Windows service.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ServiceState {
    /// `Running`, `Stopped`, `NotInstalled`, …
    pub status: String,
    /// `Automatic`, `Manual`, `Disabled`, …
    #[serde(default)]
    pub start_type: Option<String>,
}

/// TLS 1.2 registry settings (catalogue PWB-HOST-03).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Tls12Settings {
    /// `HKLM\SOFTWARE\Microsoft\.NETFramework\v4.0.30319`
    #[serde(default)]
    pub dotnet64_system_default_tls_versions: Option<RegistryDword>,
    #[serde(default)]
    pub dotnet64_sch_use_strong_crypto: Option<RegistryDword>,
    /// `HKLM\SOFTWARE\WOW6432Node\Microsoft\.NETFramework\v4.0.30319`
    #[serde(default)]
    pub dotnet32_system_default_tls_versions: Option<RegistryDword>,
    #[serde(default)]
    pub dotnet32_sch_use_strong_crypto: Option<RegistryDword>,
    /// `…\SCHANNEL\Protocols\TLS 1.2\Server` and `\Client`.
    #[serde(default)]
    pub schannel_server_enabled: Option<RegistryDword>,
    #[serde(default)]
    pub schannel_server_disabled_by_default: Option<RegistryDword>,
    #[serde(default)]
    pub schannel_client_enabled: Option<RegistryDword>,
    #[serde(default)]
    pub schannel_client_disabled_by_default: Option<RegistryDword>,
}

/// A DWORD registry value that was read: absent, or set. (`None` around it: not read.)
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Hash)]
#[serde(tag = "state", content = "value", rename_all = "snake_case")]
pub enum RegistryDword {
    Absent,
    Set(u32),
}

/// A string registry value that was read: absent, or set.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, Hash)]
#[serde(tag = "state", content = "value", rename_all = "snake_case")]
pub enum RegistryString {
    Absent,
    Set(String),
}

/// The Entra cloud sync provisioning agent.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct CloudSyncAgent {
    pub installed: bool,
    #[serde(default)]
    pub version: Option<String>,
    #[serde(default)]
    pub service: Option<ServiceState>,
}
