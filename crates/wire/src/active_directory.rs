//! Active Directory probe: what the DCs say over LDAP(S) about the domain, its controllers, its
//! password policy, the connector account's rights on the synced OUs and protected accounts.
//!
//! Every fact is optional: a probe that could bind but not read the configuration partition
//! still reports what it read, and "not known" (`None`) never reads as "false".

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// What one LDAP session with a domain controller found.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ActiveDirectoryReport {
    /// The LDAP URL the probe used (`ldaps://dc01.corp.example:636`).
    pub server: String,
    /// The DN the probe bound as, if it bound with credentials.
    #[serde(default)]
    pub bound_as: Option<String>,
    /// Domain naming context, e.g. `DC=corp,DC=example`.
    #[serde(default)]
    pub domain_dn: Option<String>,
    /// DNS name of the domain, e.g. `corp.example`.
    #[serde(default)]
    pub domain_dns_name: Option<String>,
    /// NetBIOS name of the domain, from its crossRef.
    #[serde(default)]
    pub netbios_name: Option<String>,
    /// `msDS-Behavior-Version` of the domain head (0 = 2000 … 7 = 2016, 10 = 2025).
    #[serde(default)]
    pub domain_functional_level: Option<u32>,
    /// rootDSE `forestFunctionality`.
    #[serde(default)]
    pub forest_functional_level: Option<u32>,
    /// DNS host name of the PDC emulator (`fSMORoleOwner` of the domain head → its server).
    #[serde(default)]
    pub pdc_emulator: Option<String>,
    /// rootDSE `dnsHostName`: the DC that answered.
    #[serde(default)]
    pub answering_dc: Option<String>,
    /// The answering DC advertises an LDAP password-policy hints control
    /// (`1.2.840.113556.1.4.2239` or the deprecated `…2066`); writeback needs it.
    #[serde(default)]
    pub policy_hints_control: Option<bool>,
    /// rootDSE `currentTime` of the answering DC (for clock-skew checks).
    #[serde(default)]
    pub dc_current_time: Option<DateTime<Utc>>,
    /// Every domain controller of the domain.
    #[serde(default)]
    pub domain_controllers: Vec<DomainController>,
    #[serde(default)]
    pub password_policy: Option<DomainPasswordPolicy>,
    /// Fine-grained password policies (PSOs) of the domain, with how many synced users each
    /// applies to. `None` when the probe could not search for them (see `errors`).
    #[serde(default)]
    pub fine_grained_policies: Option<Vec<FineGrainedPolicy>>,
    /// The containers Entra Connect synchronises in this domain, as the probe learned them.
    /// `None`: neither the collector's configuration nor a Connect export says.
    #[serde(default)]
    pub sync_scope: Option<SyncScope>,
    #[serde(default)]
    pub connector_account: Option<ConnectorAccountRights>,
    /// Accounts with `adminCount=1` in the searched scope (writeback cannot reset them).
    #[serde(default)]
    pub protected_accounts: Option<ProtectedAccounts>,
    /// Queries that failed after the bind; their facts are `None` above.
    #[serde(default)]
    pub errors: Vec<AdQueryError>,
    /// The connection itself failed; nothing above was read.
    #[serde(default)]
    pub failure: Option<AdFailure>,
}

/// One domain controller (a computer with SERVER_TRUST_ACCOUNT or PARTIAL_SECRETS_ACCOUNT).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct DomainController {
    pub dn: String,
    #[serde(default)]
    pub dns_host_name: Option<String>,
    #[serde(default)]
    pub operating_system: Option<String>,
    #[serde(default)]
    pub operating_system_version: Option<String>,
    /// Read-only DC (PARTIAL_SECRETS_ACCOUNT); writeback cannot use it.
    #[serde(default)]
    pub read_only: Option<bool>,
    pub is_pdc_emulator: bool,
}

/// The default domain password policy (domain head attributes).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct DomainPasswordPolicy {
    /// `minPwdAge` in seconds (0: users may change again at once).
    #[serde(default)]
    pub min_pwd_age_secs: Option<u64>,
    /// `maxPwdAge` in seconds (`None` also when passwords never expire).
    #[serde(default)]
    pub max_pwd_age_secs: Option<u64>,
    #[serde(default)]
    pub pwd_history_length: Option<u32>,
    #[serde(default)]
    pub min_pwd_length: Option<u32>,
    /// `pwdProperties` bit field (1 = complexity required).
    #[serde(default)]
    pub pwd_properties: Option<u32>,
    #[serde(default)]
    pub lockout_threshold: Option<u32>,
}

/// A fine-grained password policy (`msDS-PasswordSettings` object).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct FineGrainedPolicy {
    pub dn: String,
    pub name: String,
    /// `msDS-PasswordSettingsPrecedence` (lower wins).
    #[serde(default)]
    pub precedence: Option<u32>,
    /// `msDS-MinimumPasswordAge` in seconds; `None` when the probe's account may not read the
    /// policy's settings.
    #[serde(default)]
    pub min_pwd_age_secs: Option<u64>,
    /// `msDS-PSOAppliesTo`: the users and groups it is linked to (empty when unreadable).
    #[serde(default)]
    pub applies_to: Vec<String>,
    /// Users in the synced scope whose resultant policy (`msDS-ResultantPSO`) this is.
    #[serde(default)]
    pub synced_users: Option<u32>,
}

/// The containers Entra Connect synchronises in one domain.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct SyncScope {
    /// Included containers: their subtrees are synced.
    pub included: Vec<String>,
    /// Containers excluded inside the included ones.
    #[serde(default)]
    pub excluded: Vec<String>,
    /// Where the scope came from.
    #[serde(default)]
    pub sources: Vec<SyncScopeSource>,
}

/// Where a synced scope was learned.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[serde(rename_all = "snake_case")]
pub enum SyncScopeSource {
    /// `probes.active_directory.synced_ous` in the collector's configuration.
    Configuration,
    /// The AD connector's partition and container filter, from the Connect server state.
    Connect,
}

/// The AD DS connector account and what it may do to users under each synced OU.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ConnectorAccountRights {
    /// The account as configured (sAMAccountName, UPN or DN).
    pub configured: String,
    /// Its DN, when the account was found.
    #[serde(default)]
    pub dn: Option<String>,
    /// Its objectSid, `S-1-5-21-…`.
    #[serde(default)]
    pub sid: Option<String>,
    /// Number of group SIDs (`tokenGroups`) considered besides its own, Everyone and
    /// Authenticated Users.
    #[serde(default)]
    pub group_sid_count: Option<u32>,
    /// `userAccountControl` of the account (disabled, locked, …).
    #[serde(default)]
    pub user_account_control: Option<u32>,
    /// Whether the account can sign in at all, and if not why.
    #[serde(default)]
    pub state: Option<ConnectorAccountState>,
    /// One entry per container checked: the domain head first, then each synced container.
    #[serde(default)]
    pub containers: Vec<ContainerRights>,
    /// Objects in the synced scope whose DACL does not inherit, with the account's effective
    /// rights at each. `None` when not scanned.
    #[serde(default)]
    pub inheritance_blocked: Option<BlockedInheritance>,
}

/// Whether the connector account can sign in: each fact `None` when unknown.
///
/// Read from `userAccountControl` (disabled), `accountExpires`, `pwdLastSet` (0: must change),
/// and `msDS-User-Account-Control-Computed` (locked out, password expired), which the DC
/// computes (the stored `userAccountControl` never carries those two). When the probe binds as
/// the connector account and the DC refuses, the refusal's data code says the same.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct ConnectorAccountState {
    #[serde(default)]
    pub disabled: Option<bool>,
    /// `accountExpires`; `None` when it never expires (or was not read).
    #[serde(default)]
    pub expires_at: Option<DateTime<Utc>>,
    #[serde(default)]
    pub account_expired: Option<bool>,
    #[serde(default)]
    pub password_expired: Option<bool>,
    #[serde(default)]
    pub locked_out: Option<bool>,
    #[serde(default)]
    pub must_change_password: Option<bool>,
    /// Logon hours or workstation restrictions refused the sign-in (data 530, 531).
    #[serde(default)]
    pub logon_restricted: Option<bool>,
    /// The account does not exist (data 525).
    #[serde(default)]
    pub not_found: Option<bool>,
    /// The DC refused the password the collector was given for the account (data 52e).
    #[serde(default)]
    pub wrong_password: Option<bool>,
    /// The data code of the DC's refusal when the probe bound as this account (`775`, …).
    #[serde(default)]
    pub bind_refusal_code: Option<String>,
}

/// Objects whose DACL is protected (inheritance disabled) in the synced scope, each counted once.
/// The synced containers themselves (judged by their own rights), the domain head and accounts
/// with `adminCount=1` (protected by design) are not counted.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct BlockedInheritance {
    /// OUs and users found with a protected DACL.
    pub blocked: u32,
    /// Of those, the ones where the connector account lacks Reset Password, write `lockoutTime`
    /// or write `pwdLastSet` (for an OU: on the users below it): writeback cannot reset them.
    pub without_rights: SampledCount,
    /// The scan stopped at its limit, so the counts are lower bounds.
    #[serde(default)]
    pub truncated: bool,
}

/// Effective rights of the connector account on user objects below one container, computed
/// from the container's DACL (ACEs that user objects inherit, in order, deny before allow).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ContainerRights {
    pub dn: String,
    /// Extended right Reset Password (`00299570-246d-11d0-a768-00aa006e0529`).
    #[serde(default)]
    pub reset_password: Option<AccessState>,
    /// Extended right Change Password (`ab721a53-1e2f-11d0-9819-00aa0040529b`).
    #[serde(default)]
    pub change_password: Option<AccessState>,
    /// Write property `lockoutTime` (`28630ebf-41d5-11d1-a9c1-0000f80367c1`).
    #[serde(default)]
    pub write_lockout_time: Option<AccessState>,
    /// Write property `pwdLastSet` (`bf967a0a-0de6-11d0-a285-00aa003049e2`).
    #[serde(default)]
    pub write_pwd_last_set: Option<AccessState>,
    /// The container's own DACL is protected (SE_DACL_PROTECTED): rights from above stop here.
    #[serde(default)]
    pub inheritance_blocked: Option<bool>,
    /// Why the rights are unknown, if they are.
    #[serde(default)]
    pub error: Option<String>,
}

/// Outcome of an access check for one right.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Hash)]
#[serde(rename_all = "snake_case")]
pub enum AccessState {
    /// An ACE grants it (and no earlier ACE denies it).
    Allowed,
    /// An ACE denies it before any ACE grants it.
    Denied,
    /// No ACE for the account or its groups mentions it.
    NotGranted,
}

/// A count with a bounded sample of names.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct SampledCount {
    pub count: u32,
    /// Up to the probe's sample size, sorted.
    #[serde(default)]
    pub sample: Vec<String>,
    /// The search stopped at its limit, so `count` is a lower bound.
    #[serde(default)]
    pub truncated: bool,
}

/// Accounts with `adminCount=1`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ProtectedAccounts {
    /// The base DNs searched (the synced OUs, or the domain head).
    #[serde(default)]
    pub scope: Vec<String>,
    /// `sAMAccountName`s.
    pub accounts: SampledCount,
}

/// A query after the bind that failed.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct AdQueryError {
    /// What was being read (`pdc_emulator`, `domain_controllers`, `acl:<dn>`, …).
    pub query: String,
    pub error: String,
}

/// The steps of opening an LDAP session, in order.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Hash)]
#[serde(rename_all = "snake_case")]
pub enum AdStep {
    Connect,
    Tls,
    Bind,
    RootDse,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct AdFailure {
    pub step: AdStep,
    pub error: String,
}
