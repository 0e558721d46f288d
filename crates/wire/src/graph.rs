//! Microsoft Graph probe: the tenant facts writeback depends on, read with an app-only token.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// The name of the collector row that stands for the server's central Graph reader of a tenant
/// (the store makes that row; rules tell its reports from a collector's Graph probe by it).
pub const CENTRAL_GRAPH_READER: &str = "Microsoft Graph (central reader)";

/// What Graph said about one Entra tenant. A call that failed leaves its field `None` and adds
/// an entry to `errors`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct GraphReport {
    /// The Entra tenant id (or domain) the token was issued for.
    pub tenant: String,
    /// Graph base URL used (national clouds differ).
    pub graph_base_url: String,
    /// Licences aggregated by service plan across the tenant's subscribed SKUs.
    #[serde(default)]
    pub service_plans: Option<Vec<ServicePlanLicences>>,
    #[serde(default)]
    pub organization: Option<OrganizationSync>,
    /// `authorizationPolicy.allowedToUseSSPR` (SSPR for administrators).
    #[serde(default)]
    pub allowed_to_use_sspr: Option<bool>,
    /// `userRegistrationDetails` of the configured test user.
    #[serde(default)]
    pub test_user: Option<UserRegistration>,
    /// Members of the admin roles that matter for writeback.
    #[serde(default)]
    pub admin_roles: Option<Vec<AdminRoleMembers>>,
    /// `userRegistrationDetails` of the tenant's administrators (`isAdmin eq true`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub admin_registrations: Option<Vec<UserRegistration>>,
    /// The domains of the admin roles' users (`GET /domains/{id}`): a user on a federated
    /// domain signs in through the federation, not as a cloud administrator.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub admin_domains: Option<Vec<DomainAuthentication>>,
    #[serde(default)]
    pub errors: Vec<GraphCallError>,
    /// Getting a token failed; nothing above was read.
    #[serde(default)]
    pub failure: Option<String>,
    /// The identity platform refused the app for this tenant for good, not for a passing fault:
    /// consent revoked, the app or its service principal deleted, its credential refused. Its
    /// error code (`AADSTS700016`, `unauthorized_client`, …); `failure` has the whole answer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_refused: Option<String>,
    /// When the credential (certificate or secret) the app read with expires, if known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app_credential_expires_at: Option<DateTime<Utc>>,
    /// The server's central reader read the tenant with the tenant's own app (set by an org
    /// admin, "bring your own app") rather than the installation's: a refusal or an expiry is
    /// then that app's, and the fix a finding names is too.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub own_app: bool,
}

/// One service plan (e.g. `AAD_PREMIUM`) and the user-assignable SKUs that carry it.
///
/// Only SKUs that apply to users (`appliesTo: User`, SKU and plan) count: device and room SKUs
/// (Teams Rooms, shared devices) also carry Entra ID P1/P2 plans but license no user.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ServicePlanLicences {
    pub service_plan_id: String,
    pub service_plan_name: String,
    /// `skuPartNumber`s of the user SKUs carrying the plan.
    #[serde(default)]
    pub skus: Vec<String>,
    /// The plan's provisioning status is `Success` in at least one enabled user SKU.
    pub provisioned: bool,
    /// Sum of `prepaidUnits.enabled` of the enabled user SKUs where the plan is enabled.
    pub enabled_units: u64,
    /// Sum of `consumedUnits` (assigned licences) of those SKUs.
    pub assigned_units: u64,
    /// `skuPartNumber`s of SKUs that carry the plan but do not apply to users (device and room
    /// SKUs); their units are not counted above.
    #[serde(default)]
    pub non_user_skus: Vec<String>,
}

/// `GET /organization`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct OrganizationSync {
    pub id: String,
    #[serde(default)]
    pub display_name: Option<String>,
    /// `true` syncing, `false` previously synced, `None` never synced.
    #[serde(default)]
    pub on_premises_sync_enabled: Option<bool>,
    #[serde(default)]
    pub on_premises_last_sync: Option<DateTime<Utc>>,
}

/// `userRegistrationDetails` of one user.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct UserRegistration {
    pub user_principal_name: String,
    /// The report has a row for the user.
    pub found: bool,
    #[serde(default)]
    pub is_admin: Option<bool>,
    #[serde(default)]
    pub is_sspr_enabled: Option<bool>,
    #[serde(default)]
    pub is_sspr_registered: Option<bool>,
    #[serde(default)]
    pub is_sspr_capable: Option<bool>,
    #[serde(default)]
    pub methods_registered: Vec<String>,
    #[serde(default)]
    pub last_updated: Option<DateTime<Utc>>,
}

/// One directory role and its members.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct AdminRoleMembers {
    pub role_template_id: String,
    pub role_name: String,
    #[serde(default)]
    pub members: Vec<RoleMember>,
}

impl AdminRoleMembers {
    pub fn synced_count(&self) -> usize {
        self.members.iter().filter(|m| m.on_premises_sync_enabled == Some(true)).count()
    }

    pub fn cloud_only_count(&self) -> usize {
        self.members.iter().filter(|m| m.on_premises_sync_enabled != Some(true)).count()
    }
}

/// A principal assigned a role.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct RoleMember {
    pub id: String,
    /// `user`, `group`, `servicePrincipal`, …
    pub principal_type: String,
    #[serde(default)]
    pub display_name: Option<String>,
    #[serde(default)]
    pub user_principal_name: Option<String>,
    /// Synced from on-premises (`true`); `None` for cloud-only users and non-users.
    #[serde(default)]
    pub on_premises_sync_enabled: Option<bool>,
}

/// A verified domain and how its users sign in.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct DomainAuthentication {
    /// The domain name, lower-case (`contoso.com`).
    pub id: String,
    /// `Managed` (cloud authentication) or `Federated`.
    pub authentication_type: String,
}

impl DomainAuthentication {
    pub fn is_federated(&self) -> bool {
        self.authentication_type.eq_ignore_ascii_case("Federated")
    }
}

/// A Graph call that failed.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct GraphCallError {
    /// The resource, e.g. `subscribedSkus`.
    pub call: String,
    #[serde(default)]
    pub status: Option<u16>,
    /// Graph's `error.code`, e.g. `Authorization_RequestDenied`.
    #[serde(default)]
    pub code: Option<String>,
    pub message: String,
}
