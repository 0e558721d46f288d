//! Rules over the Microsoft Graph probe: tenant-wide facts (catalogue §2.1; seed checklist
//! points 1, 2, 4 and 5). Subject: `tenant`; the newest Graph report of any active collector is
//! judged.
//!
//! | id | catalogue | fails when |
//! |---|---|---|
//! | `tenant-writeback-licence` | PWB-LIC-01/03, seed 1 | no enabled Entra ID P1/P2 service plan in a user SKU (device and room SKUs that carry one are named, not counted), or none of its licences assigned |
//! | `licensed-admin-and-test-user` | PWB-LIC-02/04, seed 2 | fewer than two P1/P2 licences are assigned, so an administrator and a test user cannot both hold one (the Graph probe reports no per-user licences, so two or more assigned passes without naming who holds them) |
//! | `sspr-enabled` | PWB-POL-01, seed 4 | the test user's `isSsprEnabled` is false |
//! | `cloud-admin-available` | PWB-ADM-01, seed 5 | no cloud-only user holds Global Administrator or Hybrid Identity Administrator (a user on a federated domain, when the domains were read, is not one) |
//! | `tenant-sync-recent` | PWB-TEN-01 | the tenant is not syncing, or the last sync is older than `max_sync_age_mins` |
//! | `sspr-for-administrators` | PWB-POL-05 | `authorizationPolicy.allowedToUseSSPR` is false |
//! | `test-user-sspr-capable` | PWB-POL-06 | the test user cannot reset (`isSsprCapable` false); when SSPR is off for them the text points at that root cause (`explained_by = ["sspr-enabled"]`) instead of asking for methods |

use chrono::Duration;
use serde_json::json;
use wbd_wire::{GraphReport, ProbeKind, ProbeOutput, ServicePlanLicences};

use super::{RuleDef, Verdict, field_missing, observed, probe_error};
use crate::facts::Observation;
use crate::{Message, Outcome, Params, Severity, TenantFacts};

pub(crate) const LICENCE: &str = "tenant-writeback-licence";
pub(crate) const ADMIN_AND_TEST_USER: &str = "licensed-admin-and-test-user";
pub(crate) const SSPR: &str = "sspr-enabled";
pub(crate) const CLOUD_ADMIN: &str = "cloud-admin-available";
pub(crate) const SYNC_RECENT: &str = "tenant-sync-recent";
pub(crate) const SSPR_ADMINS: &str = "sspr-for-administrators";
pub(crate) const SSPR_CAPABLE: &str = "test-user-sspr-capable";

macro_rules! rule {
    ($id:expr, $check:ident, $fixtures:ident) => {
        RuleDef {
            id: $id,
            check: $check,
            #[cfg(test)]
            fixtures: tests::$fixtures,
        }
    };
}

pub(crate) const RULES: &[RuleDef] = &[
    rule!(LICENCE, check_licence, licence_fixtures),
    rule!(ADMIN_AND_TEST_USER, check_admin_and_test_user, admin_and_test_user_fixtures),
    rule!(SSPR, check_sspr, sspr_fixtures),
    rule!(CLOUD_ADMIN, check_cloud_admin, cloud_admin_fixtures),
    rule!(SYNC_RECENT, check_sync_recent, sync_recent_fixtures),
    rule!(SSPR_ADMINS, check_sspr_admins, sspr_admins_fixtures),
    rule!(SSPR_CAPABLE, check_sspr_capable, sspr_capable_fixtures),
];

/// Service plan ids of Entra ID P1 (`AAD_PREMIUM`) and P2 (`AAD_PREMIUM_P2`).
const WRITEBACK_PLANS: [&str; 2] =
    ["41781fb2-bc02-4b7c-bd55-b576c07bb09d", "eec0eb4f-6444-4f95-aba0-50c24d67f998"];
/// Directory role templates that may enable writeback: Global Administrator, Hybrid Identity
/// Administrator.
const SETUP_ROLES: [&str; 2] =
    ["62e90394-69f5-4237-9190-012177145e10", "8ac3fc64-6eca-42ea-9e69-59f4c7b60eb2"];

/// Judges the newest Graph report of the tenant, whoever read it (the central reader or a
/// collector's Graph probe: README, "which Graph report counts"); a failure's evidence names that
/// source under `source`.
fn tenant_wide(facts: &TenantFacts, judge: impl Fn(&GraphReport) -> Outcome) -> Vec<Verdict> {
    let observations = match observed(facts, ProbeKind::Graph, |output| match output {
        ProbeOutput::Graph(report) => Some(report),
        _ => None,
    }) {
        Ok(observations) => observations,
        Err(no_data) => return no_data,
    };
    let newest = observations.iter().max_by_key(|o| o.observed_at);
    let outcome = match newest {
        Some(o) => match &o.report.failure {
            Some(error) => probe_error(ProbeKind::Graph, error),
            None => with_source(judge(o.report), o),
        },
        None => Outcome::no_data(ProbeKind::Graph),
    };
    vec![Verdict::tenant(outcome)]
}

/// `outcome`, its evidence (if it failed) saying which report it judged.
fn with_source(mut outcome: Outcome, o: &Observation<'_, GraphReport>) -> Outcome {
    if let Outcome::Fail { evidence: serde_json::Value::Object(evidence), .. } = &mut outcome {
        evidence.insert(
            "source".to_owned(),
            json!({
                "collector_id": o.collector.id,
                "collector_name": o.collector.name,
            }),
        );
    }
    outcome
}

fn missing(field: &str) -> Outcome {
    field_missing(ProbeKind::Graph, field)
}

fn is_writeback_plan(plan: &ServicePlanLicences) -> bool {
    WRITEBACK_PLANS.iter().any(|id| plan.service_plan_id.eq_ignore_ascii_case(id))
        || matches!(plan.service_plan_name.as_str(), "AAD_PREMIUM" | "AAD_PREMIUM_P2")
}

/// The P1/P2 plans with user licences (the collector counts only user SKUs, see
/// [`ServicePlanLicences`]).
fn writeback_plans(plans: &[ServicePlanLicences]) -> Vec<&ServicePlanLicences> {
    plans.iter().filter(|p| is_writeback_plan(p)).filter(|p| p.provisioned && p.enabled_units > 0).collect()
}

/// Licences assigned that carry writeback rights: every P2 SKU also carries the P1 plan, so the
/// larger of the two counts, not their sum.
fn assigned(plans: &[&ServicePlanLicences]) -> u64 {
    plans.iter().map(|p| p.assigned_units).max().unwrap_or_default()
}

fn check_licence(facts: &TenantFacts, _params: &Params) -> Vec<Verdict> {
    tenant_wide(facts, |report| {
        let Some(plans) = &report.service_plans else { return missing("service_plans") };
        let usable = writeback_plans(plans);
        if usable.is_empty() {
            // P1/P2 only in device or room SKUs: not a user licence, and the text says why.
            let mut devices: Vec<&str> = plans
                .iter()
                .filter(|p| is_writeback_plan(p))
                .flat_map(|p| p.non_user_skus.iter().map(String::as_str))
                .collect();
            devices.sort_unstable();
            devices.dedup();
            if !devices.is_empty() {
                return Outcome::fail(
                    Severity::Critical,
                    Message::new("tenant-writeback-licence.device-only")
                        .arg("tenant", report.tenant.as_str())
                        .arg("skus", json!(devices)),
                    json!({ "non_user_skus": devices }),
                );
            }
            let names: Vec<&str> = plans.iter().map(|p| p.service_plan_name.as_str()).collect();
            return Outcome::fail(
                Severity::Critical,
                Message::new("tenant-writeback-licence.none").arg("tenant", report.tenant.as_str()),
                json!({ "service_plans": names }),
            );
        }
        if assigned(&usable) == 0 {
            let skus: Vec<&str> = usable.iter().flat_map(|p| p.skus.iter().map(String::as_str)).collect();
            return Outcome::fail(
                Severity::Critical,
                Message::new("tenant-writeback-licence.unassigned").arg("skus", json!(skus)),
                json!({ "skus": skus, "assigned_units": 0 }),
            );
        }
        Outcome::Pass
    })
}

fn check_admin_and_test_user(facts: &TenantFacts, _params: &Params) -> Vec<Verdict> {
    tenant_wide(facts, |report| {
        let Some(plans) = &report.service_plans else { return missing("service_plans") };
        let usable = writeback_plans(plans);
        let count = assigned(&usable);
        if usable.is_empty() {
            // `tenant-writeback-licence` reports the tenant without any writeback licence.
            return Outcome::unknown(Message::new("licensed-admin-and-test-user.no-plan"));
        }
        if count < 2 {
            return Outcome::fail(
                Severity::High,
                Message::new("licensed-admin-and-test-user.too-few").arg("count", count),
                json!({ "assigned_units": count }),
            );
        }
        // Enough licences are assigned for both; which users hold them is not reported.
        Outcome::Pass
    })
}

fn check_sspr(facts: &TenantFacts, _params: &Params) -> Vec<Verdict> {
    tenant_wide(facts, |report| {
        let Some(user) = &report.test_user else { return missing("test_user") };
        if !user.found {
            return Outcome::unknown(
                Message::new("sspr-enabled.user-not-found").arg("user", user.user_principal_name.as_str()),
            );
        }
        match user.is_sspr_enabled {
            None => missing("test_user.is_sspr_enabled"),
            Some(true) => Outcome::Pass,
            Some(false) => Outcome::fail(
                Severity::High,
                Message::new("sspr-enabled.disabled").arg("user", user.user_principal_name.as_str()),
                json!({ "user": user.user_principal_name, "is_sspr_enabled": false }),
            ),
        }
    })
}

fn check_cloud_admin(facts: &TenantFacts, _params: &Params) -> Vec<Verdict> {
    tenant_wide(facts, |report| {
        let Some(roles) = &report.admin_roles else { return missing("admin_roles") };
        let setup: Vec<_> = roles
            .iter()
            .filter(|r| SETUP_ROLES.iter().any(|id| r.role_template_id.eq_ignore_ascii_case(id)))
            .collect();
        if setup.is_empty() {
            return missing("admin_roles");
        }
        let users = setup
            .iter()
            .flat_map(|r| r.members.iter())
            .filter(|m| m.principal_type.eq_ignore_ascii_case("user"));
        let (synced, cloud): (Vec<_>, Vec<_>) = users.partition(|m| m.on_premises_sync_enabled == Some(true));
        // A cloud account on a federated domain signs in through the federation: not a cloud
        // administrator for the Connect wizard (known only when the domains were read).
        let federated_domain = |upn: Option<&str>| {
            let Some((_, domain)) = upn.and_then(|u| u.rsplit_once('@')) else { return false };
            report
                .admin_domains
                .iter()
                .flatten()
                .any(|d| d.is_federated() && d.id.eq_ignore_ascii_case(domain))
        };
        let (federated, cloud): (Vec<_>, Vec<_>) =
            cloud.into_iter().partition(|m| federated_domain(m.user_principal_name.as_deref()));
        if !cloud.is_empty() {
            return Outcome::Pass;
        }
        if !federated.is_empty() {
            let mut names: Vec<&str> =
                federated.iter().map(|m| m.user_principal_name.as_deref().unwrap_or(m.id.as_str())).collect();
            names.sort_unstable();
            names.dedup();
            return Outcome::fail(
                Severity::High,
                Message::new("cloud-admin-available.federated").arg("federated", json!(names)),
                json!({ "federated_admins": names }),
            );
        }
        let mut names: Vec<&str> =
            synced.iter().map(|m| m.user_principal_name.as_deref().unwrap_or(m.id.as_str())).collect();
        names.sort_unstable();
        names.dedup();
        Outcome::fail(
            Severity::High,
            Message::new("cloud-admin-available.none")
                .arg("synced", if names.is_empty() { json!("-") } else { json!(names) }),
            json!({ "synced_admins": names }),
        )
    })
}

fn check_sync_recent(facts: &TenantFacts, params: &Params) -> Vec<Verdict> {
    let max_age = params.int("max_sync_age_mins");
    let now = facts.now;
    tenant_wide(facts, |report| {
        let Some(org) = &report.organization else { return missing("organization") };
        if org.on_premises_sync_enabled != Some(true) {
            return Outcome::fail(
                Severity::High,
                Message::new("tenant-sync-recent.not-syncing"),
                json!({ "on_premises_sync_enabled": org.on_premises_sync_enabled }),
            );
        }
        let Some(last) = org.on_premises_last_sync else {
            return missing("organization.on_premises_last_sync");
        };
        if last >= now - Duration::minutes(max_age) {
            return Outcome::Pass;
        }
        let last_text = last.format("%Y-%m-%d %H:%M UTC").to_string();
        Outcome::fail(
            Severity::High,
            Message::new("tenant-sync-recent.stale").arg("last", last_text.as_str()).arg("minutes", max_age),
            json!({ "last_sync": last, "max_sync_age_mins": max_age }),
        )
    })
}

fn check_sspr_admins(facts: &TenantFacts, _params: &Params) -> Vec<Verdict> {
    tenant_wide(facts, |report| match report.allowed_to_use_sspr {
        None => missing("allowed_to_use_sspr"),
        Some(true) => Outcome::Pass,
        Some(false) => Outcome::fail(
            Severity::Medium,
            Message::new("sspr-for-administrators.off"),
            json!({ "allowed_to_use_sspr": false }),
        ),
    })
}

fn check_sspr_capable(facts: &TenantFacts, _params: &Params) -> Vec<Verdict> {
    tenant_wide(facts, |report| {
        let Some(user) = &report.test_user else { return missing("test_user") };
        if !user.found {
            return Outcome::unknown(
                Message::new("test-user-sspr-capable.user-not-found")
                    .arg("user", user.user_principal_name.as_str()),
            );
        }
        match user.is_sspr_capable {
            None => missing("test_user.is_sspr_capable"),
            Some(true) => Outcome::Pass,
            Some(false) => {
                let methods = if user.methods_registered.is_empty() {
                    json!("-")
                } else {
                    json!(user.methods_registered)
                };
                let registered = user.is_sspr_registered == Some(true) || !user.methods_registered.is_empty();
                // Capable needs SSPR enabled *and* enough methods. With SSPR off the root cause is
                // `sspr-enabled` (this rule's explained_by): never ask for methods already there.
                let key = match (user.is_sspr_enabled, registered) {
                    (Some(false), true) => "test-user-sspr-capable.sspr-off",
                    (Some(false), false) => "test-user-sspr-capable.sspr-off-unregistered",
                    _ => "test-user-sspr-capable.not-capable",
                };
                Outcome::fail(
                    Severity::Medium,
                    Message::new(key)
                        .arg("user", user.user_principal_name.as_str())
                        .arg("methods", methods.clone()),
                    json!({
                        "user": user.user_principal_name,
                        "methods_registered": methods,
                        "is_sspr_enabled": user.is_sspr_enabled,
                        "is_sspr_registered": user.is_sspr_registered,
                    }),
                )
            }
        }
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use wbd_wire::{AdminRoleMembers, OrganizationSync, RoleMember, UserRegistration};

    use super::*;
    use crate::rules::fixtures::*;

    fn plan(id: &str, name: &str, skus: &[&str], enabled: u64, assigned: u64) -> ServicePlanLicences {
        ServicePlanLicences {
            service_plan_id: id.to_owned(),
            service_plan_name: name.to_owned(),
            skus: skus.iter().map(|s| (*s).to_owned()).collect(),
            provisioned: true,
            enabled_units: enabled,
            assigned_units: assigned,
            non_user_skus: vec![],
        }
    }

    fn member(upn: &str, synced: bool) -> RoleMember {
        RoleMember {
            id: format!("id-{upn}"),
            principal_type: "user".to_owned(),
            display_name: None,
            user_principal_name: Some(upn.to_owned()),
            on_premises_sync_enabled: synced.then_some(true),
        }
    }

    /// A tenant with Business Premium (P1) for 25 users, 18 assigned, SSPR on for the test user, a
    /// cloud-only Global Administrator, and a sync 12 minutes ago.
    pub(crate) fn healthy_report() -> GraphReport {
        GraphReport {
            tenant: "contoso.onmicrosoft.com".to_owned(),
            graph_base_url: "https://graph.microsoft.com".to_owned(),
            service_plans: Some(vec![
                plan(WRITEBACK_PLANS[0], "AAD_PREMIUM", &["SPB"], 25, 18),
                plan("c7699d2e-19aa-44de-8edf-1736da088ca1", "SHAREPOINTSTANDARD", &["SPB"], 25, 18),
            ]),
            organization: Some(OrganizationSync {
                id: "7f3c0000-0000-0000-0000-000000000001".to_owned(),
                display_name: Some("Contoso".to_owned()),
                on_premises_sync_enabled: Some(true),
                on_premises_last_sync: Some(now() - Duration::minutes(12)),
            }),
            allowed_to_use_sspr: Some(true),
            test_user: Some(UserRegistration {
                user_principal_name: "wbd.test@contoso.com".to_owned(),
                found: true,
                is_admin: Some(false),
                is_sspr_enabled: Some(true),
                is_sspr_registered: Some(true),
                is_sspr_capable: Some(true),
                methods_registered: vec!["mobilePhone".to_owned(), "email".to_owned()],
                last_updated: Some(now() - Duration::days(3)),
            }),
            admin_roles: Some(vec![
                AdminRoleMembers {
                    role_template_id: SETUP_ROLES[0].to_owned(),
                    role_name: "Global Administrator".to_owned(),
                    members: vec![
                        member("admin@contoso.onmicrosoft.com", false),
                        member("jan@contoso.com", true),
                    ],
                },
                AdminRoleMembers {
                    role_template_id: SETUP_ROLES[1].to_owned(),
                    role_name: "Hybrid Identity Administrator".to_owned(),
                    members: vec![],
                },
            ]),
            errors: vec![],
            failure: None,
            access_refused: None,
            app_credential_expires_at: None,
            own_app: false,
            admin_registrations: None,
            admin_domains: None,
        }
    }

    pub(crate) fn healthy() -> ProbeOutput {
        ProbeOutput::Graph(healthy_report())
    }

    pub(crate) fn with(change: impl FnOnce(&mut GraphReport)) -> ProbeOutput {
        let mut report = healthy_report();
        change(&mut report);
        ProbeOutput::Graph(report)
    }

    fn one(output: ProbeOutput) -> TenantFacts {
        site_with(vec![("contoso.onmicrosoft.com", output)])
    }

    fn token_failed() -> Fixture {
        Fixture::new(
            "token refused",
            one(with(|r| r.failure = Some("AADSTS7000215: invalid client secret".to_owned()))),
            Expect::Unknown,
        )
    }

    fn no_probe() -> Fixture {
        Fixture::new("no probe", site_with(vec![]), Expect::Unknown)
    }

    /// Office 365 E3 only: no P1/P2 plan.
    pub(crate) fn no_premium() -> ProbeOutput {
        with(|r| {
            r.service_plans = Some(vec![plan(
                "c7699d2e-19aa-44de-8edf-1736da088ca1",
                "SHAREPOINTSTANDARD",
                &["ENTERPRISEPACK"],
                50,
                40,
            )])
        })
    }

    /// A single P1 licence, assigned.
    pub(crate) fn one_licence() -> ProbeOutput {
        with(|r| {
            r.service_plans = Some(vec![plan(WRITEBACK_PLANS[0], "AAD_PREMIUM", &["AAD_PREMIUM"], 1, 1)])
        })
    }

    pub(crate) fn licence_fixtures() -> Vec<Fixture> {
        let rooms_only = with(|r| {
            let mut p1 = plan(WRITEBACK_PLANS[0], "AAD_PREMIUM", &[], 0, 0);
            p1.provisioned = false;
            p1.non_user_skus = vec!["Microsoft_Teams_Rooms_Pro".to_owned()];
            r.service_plans = Some(vec![p1]);
        });
        let unassigned = with(|r| {
            r.service_plans =
                Some(vec![plan(WRITEBACK_PLANS[1], "AAD_PREMIUM_P2", &["AAD_PREMIUM_P2"], 10, 0)])
        });
        vec![
            Fixture::new("no P1/P2", one(no_premium()), Expect::Fail(Severity::Critical)),
            Fixture::new("P1 only in a room SKU", one(rooms_only), Expect::Fail(Severity::Critical)),
            Fixture::new("P2 bought, none assigned", one(unassigned), Expect::Fail(Severity::Critical)),
            Fixture::new("Business Premium", one(healthy()), Expect::Pass),
            Fixture::new("licences not read", one(with(|r| r.service_plans = None)), Expect::Unknown),
            token_failed(),
            no_probe(),
        ]
    }

    pub(crate) fn admin_and_test_user_fixtures() -> Vec<Fixture> {
        vec![
            Fixture::new("one licence", one(one_licence()), Expect::Fail(Severity::High)),
            Fixture::new("enough licences", one(healthy()), Expect::Pass),
            Fixture::new("no plan", one(no_premium()), Expect::Unknown),
        ]
    }

    /// SSPR is off for the test user, who registered methods: Graph then reports the user as
    /// registered but not capable (capable needs enabled and registered).
    pub(crate) fn sspr_off() -> ProbeOutput {
        with(|r| {
            if let Some(user) = r.test_user.as_mut() {
                user.is_sspr_enabled = Some(false);
                user.is_sspr_capable = Some(false);
            }
        })
    }

    pub(crate) fn sspr_fixtures() -> Vec<Fixture> {
        vec![
            Fixture::new("disabled", one(sspr_off()), Expect::Fail(Severity::High)),
            Fixture::new("enabled", one(healthy()), Expect::Pass),
            Fixture::new(
                "test user not found",
                one(with(|r| {
                    if let Some(user) = r.test_user.as_mut() {
                        user.found = false;
                    }
                })),
                Expect::Unknown,
            ),
            Fixture::new("no test user", one(with(|r| r.test_user = None)), Expect::Unknown),
        ]
    }

    pub(crate) fn synced_admins_only() -> ProbeOutput {
        with(|r| {
            if let Some(roles) = r.admin_roles.as_mut() {
                roles[0].members = vec![member("jan@contoso.com", true)];
            }
        })
    }

    /// The only non-synced admin is `admin@fabrikam.com`, on a domain signing in as `auth`.
    fn federated_admin(auth: &str) -> ProbeOutput {
        with(|r| {
            if let Some(roles) = r.admin_roles.as_mut() {
                roles[0].members = vec![member("admin@fabrikam.com", false), member("jan@contoso.com", true)];
            }
            r.admin_domains = Some(vec![
                wbd_wire::DomainAuthentication {
                    id: "contoso.com".to_owned(),
                    authentication_type: "Managed".to_owned(),
                },
                wbd_wire::DomainAuthentication {
                    id: "fabrikam.com".to_owned(),
                    authentication_type: auth.to_owned(),
                },
            ]);
        })
    }

    pub(crate) fn cloud_admin_fixtures() -> Vec<Fixture> {
        vec![
            Fixture::new("only synced admins", one(synced_admins_only()), Expect::Fail(Severity::High)),
            Fixture::new("a cloud admin", one(healthy()), Expect::Pass),
            Fixture::new(
                "the cloud admin is on a federated domain",
                one(federated_admin("Federated")),
                Expect::Fail(Severity::High),
            ),
            Fixture::new(
                "the cloud admin's domain is managed",
                one(federated_admin("Managed")),
                Expect::Pass,
            ),
            Fixture::new("roles not read", one(with(|r| r.admin_roles = None)), Expect::Unknown),
        ]
    }

    pub(crate) fn sync_recent_fixtures() -> Vec<Fixture> {
        let stale = || {
            with(|r| {
                if let Some(org) = r.organization.as_mut() {
                    org.on_premises_last_sync = Some(now() - Duration::hours(7));
                }
            })
        };
        let off = with(|r| {
            if let Some(org) = r.organization.as_mut() {
                org.on_premises_sync_enabled = Some(false);
            }
        });
        vec![
            Fixture::new("seven hours", one(stale()), Expect::Fail(Severity::High)),
            Fixture::new("sync off", one(off), Expect::Fail(Severity::High)),
            Fixture::new("twelve minutes", one(healthy()), Expect::Pass),
            Fixture::new("a day allowed", one(stale()), Expect::Pass)
                .with_param("max_sync_age_mins", json!(1440)),
            Fixture::new("not read", one(with(|r| r.organization = None)), Expect::Unknown),
        ]
    }

    pub(crate) fn sspr_admins_fixtures() -> Vec<Fixture> {
        vec![
            Fixture::new(
                "off",
                one(with(|r| r.allowed_to_use_sspr = Some(false))),
                Expect::Fail(Severity::Medium),
            ),
            Fixture::new("on", one(healthy()), Expect::Pass),
            Fixture::new("not read", one(with(|r| r.allowed_to_use_sspr = None)), Expect::Unknown),
        ]
    }

    pub(crate) fn sspr_capable_fixtures() -> Vec<Fixture> {
        let sspr_off_unregistered = with(|r| {
            if let Some(user) = r.test_user.as_mut() {
                user.is_sspr_enabled = Some(false);
                user.is_sspr_capable = Some(false);
                user.is_sspr_registered = Some(false);
                user.methods_registered.clear();
            }
        });
        vec![
            Fixture::new("SSPR off, methods registered", one(sspr_off()), Expect::Fail(Severity::Medium)),
            Fixture::new(
                "SSPR off, nothing registered",
                one(sspr_off_unregistered),
                Expect::Fail(Severity::Medium),
            ),
            Fixture::new(
                "no methods",
                one(with(|r| {
                    if let Some(user) = r.test_user.as_mut() {
                        user.is_sspr_capable = Some(false);
                        user.is_sspr_registered = Some(false);
                        user.methods_registered.clear();
                    }
                })),
                Expect::Fail(Severity::Medium),
            ),
            Fixture::new("registered", one(healthy()), Expect::Pass),
            Fixture::new(
                "test user not found",
                one(with(|r| {
                    if let Some(user) = r.test_user.as_mut() {
                        user.found = false;
                    }
                })),
                Expect::Unknown,
            ),
        ]
    }

    /// The central reader and a collector's Graph probe both read the tenant: the newest report
    /// is judged, whichever read it, and a failure's evidence names that source.
    #[test]
    fn the_newest_graph_report_wins_and_the_evidence_names_its_source() {
        use crate::{CollectorState, FactInput};
        let site = collector("site-a");
        let central =
            CollectorState { name: wbd_wire::CENTRAL_GRAPH_READER.to_owned(), ..collector("central") };
        let fact = |c: &CollectorState, minutes_ago: i64, output: ProbeOutput| FactInput {
            collector_id: c.id,
            subject: "graph:contoso.onmicrosoft.com".to_owned(),
            observed_at: now() - Duration::minutes(minutes_ago),
            output,
        };
        let off = || with(|r| r.allowed_to_use_sspr = Some(false));

        // The collector's older report failed; the central reader's newer one passes.
        let facts = tenant(
            vec![site.clone(), central.clone()],
            vec![fact(&site, 30, off()), fact(&central, 5, healthy())],
        );
        let verdicts = run_rule(SSPR_ADMINS, &facts);
        assert_eq!(verdicts.len(), 1);
        assert!(verdicts[0].outcome.is_pass());

        // The other way round: the central reader's newer report fails, and says it read it.
        let facts = tenant(
            vec![site.clone(), central.clone()],
            vec![fact(&site, 30, healthy()), fact(&central, 5, off())],
        );
        let verdicts = run_rule(SSPR_ADMINS, &facts);
        let Outcome::Fail { evidence, .. } = &verdicts[0].outcome else { panic!("{verdicts:?}") };
        assert_eq!(evidence["source"]["collector_name"], wbd_wire::CENTRAL_GRAPH_READER);
        assert_eq!(evidence["source"]["collector_id"], json!(central.id));

        // A collector's newer failing report names the collector.
        let facts = tenant(
            vec![site.clone(), central.clone()],
            vec![fact(&site, 1, off()), fact(&central, 5, healthy())],
        );
        let verdicts = run_rule(SSPR_ADMINS, &facts);
        let Outcome::Fail { evidence, .. } = &verdicts[0].outcome else { panic!("{verdicts:?}") };
        assert_eq!(evidence["source"]["collector_name"], "site-a");
    }
}
