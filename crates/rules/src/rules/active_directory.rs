//! Rules over the Active Directory probe, some combined with the Connect server probe
//! (catalogue §2.6; seed checklist points 3 and 6).
//!
//! | id | catalogue | fails when |
//! |---|---|---|
//! | `connector-account-permissions` | PWB-AD-01 | Reset Password, write `lockoutTime` or write `pwdLastSet` is not allowed on a checked container |
//! | `inheritance-not-blocked` | PWB-AD-02 | a checked container, or objects below it, block inherited permissions |
//! | `min-password-age-zero` | PWB-AD-06 | the domain's minimum password age is above `max_min_pwd_age_hours` (default 0) |
//! | `dc-password-policy-control` | PWB-AD-08 | the answering DC lacks the LDAP password-policy hints control |
//! | `dc-os-supported` | seed 6 (re-checked, §3) | a DC's OS build is below `min_os_build` (default 14393, Windows Server 2016) |
//! | `preferred-dc-pdc-emulator` | seed 3, PWB-SVC-14/AD-09 | an AD connector does not use "only preferred DCs" with the PDC emulator first |
//! | `preferred-dc-writable` | PWB-AD-10 | a preferred or last-used DC is read-only |
//! | `protected-accounts-in-scope` | PWB-AD-03 | accounts with `adminCount=1` are in the synced scope (writeback cannot reset them, by design) |
//! | `connector-account-usable` | PWB-SVC-12 | the connector account is disabled or its password expired |
//! | `forest-functional-level` | PWB-AD-11 | the forest functional level is below Windows Server 2003 |
//!
//! Subject: `<probe subject>@<collector id>` of the AD report (for the two preferred-DC rules,
//! of the Connect server report). An AD report whose connection failed gives "unknown".

use std::collections::BTreeSet;

use serde_json::json;
use wbd_wire::{AccessState, ActiveDirectoryReport, ConnectorKind, ProbeKind, ProbeOutput};

use super::connect_server::connect_observations;
use super::{RuleDef, Verdict, field_missing, observed, probe_error, site_evidence};
use crate::facts::Observation;
use crate::{Message, Outcome, Params, Severity, TenantFacts};

pub(crate) const PERMISSIONS: &str = "connector-account-permissions";
pub(crate) const INHERITANCE: &str = "inheritance-not-blocked";
pub(crate) const MIN_AGE: &str = "min-password-age-zero";
pub(crate) const HINTS: &str = "dc-password-policy-control";
pub(crate) const DC_OS: &str = "dc-os-supported";
pub(crate) const PDC: &str = "preferred-dc-pdc-emulator";
pub(crate) const WRITABLE: &str = "preferred-dc-writable";
pub(crate) const PROTECTED: &str = "protected-accounts-in-scope";
pub(crate) const ACCOUNT_USABLE: &str = "connector-account-usable";
pub(crate) const FOREST_LEVEL: &str = "forest-functional-level";

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
    rule!(PERMISSIONS, check_permissions, permissions_fixtures),
    rule!(INHERITANCE, check_inheritance, inheritance_fixtures),
    rule!(MIN_AGE, check_min_age, min_age_fixtures),
    rule!(HINTS, check_hints, hints_fixtures),
    rule!(DC_OS, check_dc_os, dc_os_fixtures),
    rule!(PDC, check_pdc, pdc_fixtures),
    rule!(WRITABLE, check_writable, writable_fixtures),
    rule!(PROTECTED, check_protected, protected_fixtures),
    rule!(ACCOUNT_USABLE, check_account_usable, account_usable_fixtures),
    rule!(FOREST_LEVEL, check_forest_level, forest_level_fixtures),
];

type AdObservation<'a> = Observation<'a, ActiveDirectoryReport>;

fn ad_observations(facts: &TenantFacts) -> Result<Vec<AdObservation<'_>>, Vec<Verdict>> {
    observed(facts, ProbeKind::ActiveDirectory, |output| match output {
        ProbeOutput::ActiveDirectory(report) => Some(report),
        _ => None,
    })
}

fn per_domain(facts: &TenantFacts, judge: impl Fn(&AdObservation<'_>) -> Outcome) -> Vec<Verdict> {
    match ad_observations(facts) {
        Ok(observations) => observations
            .iter()
            .map(|o| {
                let outcome = match &o.report.failure {
                    Some(failure) => probe_error(ProbeKind::ActiveDirectory, &failure.error),
                    None => judge(o),
                };
                Verdict { subject: o.subject(), outcome }
            })
            .collect(),
        Err(no_data) => no_data,
    }
}

fn missing(field: &str) -> Outcome {
    field_missing(ProbeKind::ActiveDirectory, field)
}

fn domain_name<'a>(o: &AdObservation<'a>) -> &'a str {
    o.report.domain_dns_name.as_deref().or(o.report.domain_dn.as_deref()).unwrap_or(&o.report.server)
}

fn evidence(o: &AdObservation<'_>) -> serde_json::Map<String, serde_json::Value> {
    let mut evidence = site_evidence(o);
    evidence.insert("domain".into(), json!(domain_name(o)));
    evidence
}

fn check_permissions(facts: &TenantFacts, _params: &Params) -> Vec<Verdict> {
    per_domain(facts, |o| {
        let Some(account) = &o.report.connector_account else { return missing("connector_account") };
        let judged: Vec<_> = account.containers.iter().filter(|c| c.error.is_none()).collect();
        if judged.is_empty() {
            return missing("connector_account.containers");
        }
        let mut gaps = Vec::new();
        for container in &judged {
            let rights = [
                ("Reset Password", container.reset_password),
                ("Write lockoutTime", container.write_lockout_time),
                ("Write pwdLastSet", container.write_pwd_last_set),
            ];
            let lacking: Vec<&str> = rights
                .iter()
                .filter(|(_, state)| matches!(state, Some(AccessState::Denied | AccessState::NotGranted)))
                .map(|(name, _)| *name)
                .collect();
            if !lacking.is_empty() {
                gaps.push(json!({ "container": container.dn, "missing": lacking }));
            }
        }
        if gaps.is_empty() {
            return Outcome::Pass;
        }
        let containers: Vec<&str> = gaps.iter().filter_map(|g| g["container"].as_str()).collect();
        let mut ev = evidence(o);
        ev.insert("account".into(), json!(account.configured));
        ev.insert("gaps".into(), json!(gaps));
        let message = Message::new("connector-account-permissions.missing")
            .arg("account", account.configured.as_str())
            .arg("domain", domain_name(o))
            .arg("containers", json!(containers));
        Outcome::fail(Severity::Critical, message, ev.into())
    })
}

fn check_inheritance(facts: &TenantFacts, _params: &Params) -> Vec<Verdict> {
    per_domain(facts, |o| {
        let Some(account) = &o.report.connector_account else { return missing("connector_account") };
        let containers = &account.containers;
        if containers
            .iter()
            .all(|c| c.inheritance_blocked.is_none() && c.descendants_inheritance_blocked.is_none())
        {
            return missing("inheritance_blocked");
        }
        let mut blocked: Vec<String> =
            containers.iter().filter(|c| c.inheritance_blocked == Some(true)).map(|c| c.dn.clone()).collect();
        let mut count = blocked.len() as u64;
        for c in containers {
            if let Some(below) = &c.descendants_inheritance_blocked {
                count += u64::from(below.count);
                blocked.extend(below.sample.iter().cloned());
            }
        }
        if count == 0 {
            return Outcome::Pass;
        }
        blocked.sort();
        blocked.dedup();
        let mut ev = evidence(o);
        ev.insert("objects".into(), json!(blocked));
        ev.insert("count".into(), json!(count));
        let message = Message::new("inheritance-not-blocked.blocked")
            .arg("domain", domain_name(o))
            .arg("count", count)
            .arg("objects", json!(blocked));
        Outcome::fail(Severity::High, message, ev.into())
    })
}

fn check_min_age(facts: &TenantFacts, params: &Params) -> Vec<Verdict> {
    let max_hours = params.int("max_min_pwd_age_hours");
    per_domain(facts, |o| {
        let Some(age) = o.report.password_policy.as_ref().and_then(|p| p.min_pwd_age_secs) else {
            return missing("password_policy.min_pwd_age_secs");
        };
        let limit = u64::try_from(max_hours).unwrap_or_default() * 3600;
        if age <= limit {
            return Outcome::Pass;
        }
        let hours = age.div_ceil(3600);
        let mut ev = evidence(o);
        ev.insert("min_pwd_age_secs".into(), json!(age));
        let message =
            Message::new("min-password-age-zero.too-long").arg("domain", domain_name(o)).arg("hours", hours);
        Outcome::fail(Severity::Medium, message, ev.into())
    })
}

fn check_hints(facts: &TenantFacts, _params: &Params) -> Vec<Verdict> {
    per_domain(facts, |o| match o.report.policy_hints_control {
        None => missing("policy_hints_control"),
        Some(true) => Outcome::Pass,
        Some(false) => {
            let dc = o.report.answering_dc.as_deref().unwrap_or(&o.report.server);
            let mut ev = evidence(o);
            ev.insert("dc".into(), json!(dc));
            Outcome::fail(
                Severity::High,
                Message::new("dc-password-policy-control.missing").arg("dc", dc),
                ev.into(),
            )
        }
    })
}

/// The build in an `operatingSystemVersion` such as `10.0 (14393)`.
fn os_build(version: &str) -> Option<u32> {
    let open = version.find('(')?;
    let close = version[open..].find(')')? + open;
    version[open + 1..close].trim().parse().ok()
}

fn check_dc_os(facts: &TenantFacts, params: &Params) -> Vec<Verdict> {
    let min_build = u32::try_from(params.int("min_os_build")).unwrap_or(u32::MAX);
    per_domain(facts, |o| {
        let dcs = &o.report.domain_controllers;
        let known: Vec<_> = dcs
            .iter()
            .filter_map(|dc| dc.operating_system_version.as_deref().and_then(os_build).map(|b| (dc, b)))
            .collect();
        if known.is_empty() {
            return missing("domain_controllers.operating_system_version");
        }
        let old: Vec<String> = known
            .iter()
            .filter(|(_, build)| *build < min_build)
            .map(|(dc, _)| {
                let name = dc.dns_host_name.as_deref().unwrap_or(&dc.dn);
                format!("{name} ({})", dc.operating_system.as_deref().unwrap_or("?"))
            })
            .collect();
        if old.is_empty() {
            return Outcome::Pass;
        }
        let mut ev = evidence(o);
        ev.insert("domain_controllers".into(), json!(old));
        let message = Message::new("dc-os-supported.old")
            .arg("domain", domain_name(o))
            .arg("dcs", json!(old))
            .arg("min_build", min_build);
        Outcome::fail(Severity::Medium, message, ev.into())
    })
}

/// The first DNS label, lower-case: preferred DCs are often written as short names.
fn host_key(name: &str) -> String {
    name.trim().trim_end_matches('.').split('.').next().unwrap_or_default().to_ascii_lowercase()
}

/// Checks each Connect server's AD connectors against what the AD reports say about the DCs.
fn per_connect_with_ad(
    facts: &TenantFacts,
    judge: impl Fn(&Observation<'_, wbd_wire::ConnectServerReport>, &[AdObservation<'_>]) -> Outcome,
) -> Vec<Verdict> {
    let connect = match connect_observations(facts) {
        Ok(observations) => observations,
        Err(no_data) => return no_data,
    };
    let ad = match ad_observations(facts) {
        Ok(observations) => observations,
        Err(no_data) => return no_data,
    };
    connect.iter().map(|o| Verdict { subject: o.subject(), outcome: judge(o, &ad) }).collect()
}

fn check_pdc(facts: &TenantFacts, _params: &Params) -> Vec<Verdict> {
    per_connect_with_ad(facts, |o, ad| {
        let pdcs: BTreeSet<String> =
            ad.iter().filter_map(|a| a.report.pdc_emulator.as_deref()).map(host_key).collect();
        if pdcs.is_empty() {
            return missing("pdc_emulator");
        }
        let connectors: Vec<_> =
            o.report.connectors.iter().filter(|c| c.kind == ConnectorKind::ActiveDirectory).collect();
        if connectors.is_empty() || connectors.iter().all(|c| c.only_use_preferred_dcs.is_none()) {
            return field_missing(ProbeKind::ConnectServer, "connectors.only_use_preferred_dcs");
        }
        let off: Vec<_> = connectors
            .iter()
            .filter(|c| {
                c.only_use_preferred_dcs != Some(true)
                    || c.preferred_dcs.first().is_none_or(|first| !pdcs.contains(&host_key(first)))
            })
            .collect();
        let Some(first) = off.first() else { return Outcome::Pass };
        let pdc_names: Vec<&str> = ad.iter().filter_map(|a| a.report.pdc_emulator.as_deref()).collect();
        let mut ev = site_evidence(o);
        ev.insert("connector".into(), json!(first.name));
        ev.insert("only_use_preferred_dcs".into(), json!(first.only_use_preferred_dcs));
        ev.insert("preferred_dcs".into(), json!(first.preferred_dcs));
        ev.insert("pdc_emulator".into(), json!(pdc_names));
        let key = if first.only_use_preferred_dcs == Some(true) {
            "preferred-dc-pdc-emulator.not-first"
        } else {
            "preferred-dc-pdc-emulator.not-restricted"
        };
        let preferred = if first.preferred_dcs.is_empty() { json!("-") } else { json!(first.preferred_dcs) };
        let message = Message::new(key)
            .arg("connector", first.name.as_str())
            .arg("pdc", json!(pdc_names))
            .arg("preferred", preferred);
        Outcome::fail(Severity::Low, message, ev.into())
    })
}

fn check_writable(facts: &TenantFacts, _params: &Params) -> Vec<Verdict> {
    per_connect_with_ad(facts, |o, ad| {
        let dcs: Vec<_> = ad.iter().flat_map(|a| a.report.domain_controllers.iter()).collect();
        if dcs.iter().all(|dc| dc.read_only.is_none()) {
            return missing("domain_controllers.read_only");
        }
        let read_only: BTreeSet<String> = dcs
            .iter()
            .filter(|dc| dc.read_only == Some(true))
            .filter_map(|dc| dc.dns_host_name.as_deref().map(host_key))
            .collect();
        let used: BTreeSet<&str> = o
            .report
            .connectors
            .iter()
            .filter(|c| c.kind == ConnectorKind::ActiveDirectory)
            .flat_map(|c| c.preferred_dcs.iter().chain(c.last_dc.iter()))
            .map(String::as_str)
            .collect();
        let bad: Vec<&str> = used.into_iter().filter(|name| read_only.contains(&host_key(name))).collect();
        if bad.is_empty() {
            return Outcome::Pass;
        }
        let mut ev = site_evidence(o);
        ev.insert("read_only_dcs".into(), json!(bad));
        Outcome::fail(
            Severity::High,
            Message::new("preferred-dc-writable.read-only").arg("dcs", json!(bad)),
            ev.into(),
        )
    })
}

fn check_protected(facts: &TenantFacts, _params: &Params) -> Vec<Verdict> {
    per_domain(facts, |o| {
        let Some(protected) = &o.report.protected_accounts else { return missing("protected_accounts") };
        let accounts = &protected.accounts;
        if accounts.count == 0 {
            return Outcome::Pass;
        }
        let mut ev = evidence(o);
        ev.insert("count".into(), json!(accounts.count));
        ev.insert("sample".into(), json!(accounts.sample));
        let message = Message::new("protected-accounts-in-scope.found")
            .arg("domain", domain_name(o))
            .arg("count", accounts.count)
            .arg("accounts", json!(accounts.sample));
        Outcome::fail(Severity::Low, message, ev.into())
    })
}

/// `userAccountControl` bits: ACCOUNTDISABLE and PASSWORD_EXPIRED.
const UAC_DISABLED: u32 = 0x2;
const UAC_PASSWORD_EXPIRED: u32 = 0x80_0000;

fn check_account_usable(facts: &TenantFacts, _params: &Params) -> Vec<Verdict> {
    per_domain(facts, |o| {
        let Some(account) = &o.report.connector_account else { return missing("connector_account") };
        let Some(uac) = account.user_account_control else {
            return missing("connector_account.user_account_control");
        };
        let key = if uac & UAC_DISABLED != 0 {
            "connector-account-usable.disabled"
        } else if uac & UAC_PASSWORD_EXPIRED != 0 {
            "connector-account-usable.expired"
        } else {
            return Outcome::Pass;
        };
        let mut ev = evidence(o);
        ev.insert("account".into(), json!(account.configured));
        ev.insert("user_account_control".into(), json!(uac));
        Outcome::fail(
            Severity::High,
            Message::new(key).arg("account", account.configured.as_str()),
            ev.into(),
        )
    })
}

/// `msDS-Behavior-Version` of Windows Server 2003.
const FFL_2003: u32 = 2;

fn check_forest_level(facts: &TenantFacts, _params: &Params) -> Vec<Verdict> {
    per_domain(facts, |o| match o.report.forest_functional_level {
        None => missing("forest_functional_level"),
        Some(level) if level >= FFL_2003 => Outcome::Pass,
        Some(level) => {
            let mut ev = evidence(o);
            ev.insert("forest_functional_level".into(), json!(level));
            Outcome::fail(
                Severity::Low,
                Message::new("forest-functional-level.old").arg("domain", domain_name(o)).arg("level", level),
                ev.into(),
            )
        }
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use wbd_wire::{
        AdFailure, AdStep, ConnectorAccountRights, ContainerRights, DomainController, DomainPasswordPolicy,
        ProtectedAccounts, SampledCount,
    };

    use super::*;
    use crate::rules::connect_server::tests as connect;
    use crate::rules::fixtures::*;

    fn dc(name: &str, os: &str, version: &str, read_only: bool, pdc: bool) -> DomainController {
        DomainController {
            dn: format!("CN={},OU=Domain Controllers,DC=corp,DC=example", host_key(name).to_uppercase()),
            dns_host_name: Some(name.to_owned()),
            operating_system: Some(os.to_owned()),
            operating_system_version: Some(version.to_owned()),
            read_only: Some(read_only),
            is_pdc_emulator: pdc,
        }
    }

    fn full_rights(dn: &str) -> ContainerRights {
        ContainerRights {
            dn: dn.to_owned(),
            reset_password: Some(AccessState::Allowed),
            change_password: Some(AccessState::Allowed),
            write_lockout_time: Some(AccessState::Allowed),
            write_pwd_last_set: Some(AccessState::Allowed),
            inheritance_blocked: Some(false),
            descendants_inheritance_blocked: Some(SampledCount {
                count: 0,
                sample: vec![],
                truncated: false,
            }),
            error: None,
        }
    }

    /// A healthy domain: PDC dc01 (WS2022), a writable dc02 and a read-only rodc01 (WS2019).
    pub(crate) fn healthy_report() -> ActiveDirectoryReport {
        ActiveDirectoryReport {
            server: "ldaps://dc01.corp.example:636".to_owned(),
            bound_as: Some("CN=svc-wbd,OU=Service,DC=corp,DC=example".to_owned()),
            domain_dn: Some("DC=corp,DC=example".to_owned()),
            domain_dns_name: Some("corp.example".to_owned()),
            netbios_name: Some("CORP".to_owned()),
            domain_functional_level: Some(7),
            forest_functional_level: Some(7),
            pdc_emulator: Some("dc01.corp.example".to_owned()),
            answering_dc: Some("dc01.corp.example".to_owned()),
            policy_hints_control: Some(true),
            dc_current_time: Some(now()),
            domain_controllers: vec![
                dc("dc01.corp.example", "Windows Server 2022 Standard", "10.0 (20348)", false, true),
                dc("dc02.corp.example", "Windows Server 2022 Standard", "10.0 (20348)", false, false),
                dc("rodc01.corp.example", "Windows Server 2019 Standard", "10.0 (17763)", true, false),
            ],
            password_policy: Some(DomainPasswordPolicy {
                min_pwd_age_secs: Some(0),
                max_pwd_age_secs: Some(42 * 86400),
                pwd_history_length: Some(24),
                min_pwd_length: Some(12),
                pwd_properties: Some(1),
                lockout_threshold: Some(10),
            }),
            connector_account: Some(ConnectorAccountRights {
                configured: "CORP\\MSOL_4f1c2a9e1b2d".to_owned(),
                dn: Some("CN=MSOL_4f1c2a9e1b2d,CN=Users,DC=corp,DC=example".to_owned()),
                sid: Some("S-1-5-21-1004336348-1177238915-682003330-1107".to_owned()),
                group_sid_count: Some(3),
                user_account_control: Some(66048),
                containers: vec![
                    full_rights("DC=corp,DC=example"),
                    full_rights("OU=Staff,DC=corp,DC=example"),
                ],
            }),
            protected_accounts: Some(ProtectedAccounts {
                scope: vec!["OU=Staff,DC=corp,DC=example".to_owned()],
                accounts: SampledCount { count: 0, sample: vec![], truncated: false },
            }),
            errors: vec![],
            failure: None,
        }
    }

    pub(crate) fn healthy() -> ProbeOutput {
        ProbeOutput::ActiveDirectory(healthy_report())
    }

    pub(crate) fn with(change: impl FnOnce(&mut ActiveDirectoryReport)) -> ProbeOutput {
        let mut report = healthy_report();
        change(&mut report);
        ProbeOutput::ActiveDirectory(report)
    }

    fn one(output: ProbeOutput) -> TenantFacts {
        site_with(vec![("corp.example", output)])
    }

    fn unreachable() -> Fixture {
        let failed = with(|r| {
            r.failure = Some(AdFailure { step: AdStep::Bind, error: "invalid credentials".to_owned() })
        });
        Fixture::new("bind failed", one(failed), Expect::Unknown)
    }

    fn no_probe() -> Fixture {
        Fixture::new("no probe", site_with(vec![]), Expect::Unknown)
    }

    pub(crate) fn no_reset_right() -> ProbeOutput {
        with(|r| {
            if let Some(account) = r.connector_account.as_mut() {
                account.containers[1].reset_password = Some(AccessState::NotGranted);
                account.containers[1].write_pwd_last_set = Some(AccessState::Denied);
            }
        })
    }

    pub(crate) fn permissions_fixtures() -> Vec<Fixture> {
        vec![
            Fixture::new("reset right missing", one(no_reset_right()), Expect::Fail(Severity::Critical)),
            Fixture::new("granted", one(healthy()), Expect::Pass),
            Fixture::new("not read", one(with(|r| r.connector_account = None)), Expect::Unknown),
            unreachable(),
            no_probe(),
        ]
    }

    pub(crate) fn inheritance_fixtures() -> Vec<Fixture> {
        let blocked = with(|r| {
            if let Some(account) = r.connector_account.as_mut() {
                account.containers[1].descendants_inheritance_blocked = Some(SampledCount {
                    count: 2,
                    sample: vec![
                        "CN=CFO,OU=Staff,DC=corp,DC=example".to_owned(),
                        "OU=Board,OU=Staff,DC=corp,DC=example".to_owned(),
                    ],
                    truncated: false,
                });
            }
        });
        vec![
            Fixture::new("protected objects", one(blocked), Expect::Fail(Severity::High)),
            Fixture::new("inherits", one(healthy()), Expect::Pass),
            unreachable(),
        ]
    }

    pub(crate) fn min_age_fixtures() -> Vec<Fixture> {
        let one_day = || {
            with(|r| {
                if let Some(policy) = r.password_policy.as_mut() {
                    policy.min_pwd_age_secs = Some(86400);
                }
            })
        };
        vec![
            Fixture::new("one day", one(one_day()), Expect::Fail(Severity::Medium)),
            Fixture::new("zero", one(healthy()), Expect::Pass),
            Fixture::new("one day allowed", one(one_day()), Expect::Pass)
                .with_param("max_min_pwd_age_hours", json!(24)),
            Fixture::new("not read", one(with(|r| r.password_policy = None)), Expect::Unknown),
        ]
    }

    pub(crate) fn hints_fixtures() -> Vec<Fixture> {
        vec![
            Fixture::new(
                "no control",
                one(with(|r| r.policy_hints_control = Some(false))),
                Expect::Fail(Severity::High),
            ),
            Fixture::new("control present", one(healthy()), Expect::Pass),
            Fixture::new("not read", one(with(|r| r.policy_hints_control = None)), Expect::Unknown),
        ]
    }

    pub(crate) fn old_dc() -> ProbeOutput {
        with(|r| {
            r.domain_controllers[1] =
                dc("dc02.corp.example", "Windows Server 2012 R2 Standard", "6.3 (9600)", false, false);
        })
    }

    pub(crate) fn dc_os_fixtures() -> Vec<Fixture> {
        vec![
            Fixture::new("2012 R2", one(old_dc()), Expect::Fail(Severity::Medium)),
            Fixture::new("2019 and 2022", one(healthy()), Expect::Pass),
            Fixture::new("2022 floor", one(healthy()), Expect::Fail(Severity::Medium))
                .with_param("min_os_build", json!(20348)),
            Fixture::new("versions unknown", one(with(|r| r.domain_controllers.clear())), Expect::Unknown),
        ]
    }

    /// Connect (on site-a) and AD facts together.
    pub(crate) fn connect_and_ad(connect: ProbeOutput, ad: ProbeOutput) -> TenantFacts {
        site_with(vec![("connect", connect), ("corp.example", ad)])
    }

    pub(crate) fn preferring(dcs: &[&str], only: bool) -> ProbeOutput {
        connect::with(|r| {
            for c in r.connectors.iter_mut().filter(|c| c.kind == ConnectorKind::ActiveDirectory) {
                c.only_use_preferred_dcs = Some(only);
                c.preferred_dcs = dcs.iter().map(|d| (*d).to_owned()).collect();
            }
        })
    }

    pub(crate) fn pdc_fixtures() -> Vec<Fixture> {
        vec![
            Fixture::new(
                "another DC first",
                connect_and_ad(preferring(&["dc02.corp.example"], true), healthy()),
                Expect::Fail(Severity::Low),
            ),
            Fixture::new(
                "not restricted",
                connect_and_ad(preferring(&[], false), healthy()),
                Expect::Fail(Severity::Low),
            ),
            Fixture::new(
                "PDC first (short name)",
                connect_and_ad(preferring(&["DC01"], true), healthy()),
                Expect::Pass,
            ),
            Fixture::new(
                "PDC unknown",
                connect_and_ad(connect::healthy(), with(|r| r.pdc_emulator = None)),
                Expect::Unknown,
            ),
            Fixture::new("no AD probe", site_with(vec![("connect", connect::healthy())]), Expect::Unknown),
            no_probe(),
        ]
    }

    pub(crate) fn writable_fixtures() -> Vec<Fixture> {
        vec![
            Fixture::new(
                "RODC preferred",
                connect_and_ad(preferring(&["rodc01.corp.example"], true), healthy()),
                Expect::Fail(Severity::High),
            ),
            Fixture::new("writable", connect_and_ad(connect::healthy(), healthy()), Expect::Pass),
            Fixture::new(
                "read-only unknown",
                connect_and_ad(
                    connect::healthy(),
                    with(|r| r.domain_controllers.iter_mut().for_each(|d| d.read_only = None)),
                ),
                Expect::Unknown,
            ),
            no_probe(),
        ]
    }

    pub(crate) fn protected_fixtures() -> Vec<Fixture> {
        let with_count = |count: u32| {
            with(move |r| {
                r.protected_accounts = Some(ProtectedAccounts {
                    scope: vec!["OU=Staff,DC=corp,DC=example".to_owned()],
                    accounts: SampledCount {
                        count,
                        sample: (0..count.min(3)).map(|i| format!("adm-{i}")).collect(),
                        truncated: false,
                    },
                });
            })
        };
        vec![
            Fixture::new("admins in the synced OU", one(with_count(2)), Expect::Fail(Severity::Low)),
            Fixture::new("none", one(with_count(0)), Expect::Pass),
            Fixture::new("not searched", one(with(|r| r.protected_accounts = None)), Expect::Unknown),
        ]
    }

    pub(crate) fn account_usable_fixtures() -> Vec<Fixture> {
        let uac = |value: u32| {
            with(move |r| {
                if let Some(account) = r.connector_account.as_mut() {
                    account.user_account_control = Some(value);
                }
            })
        };
        vec![
            Fixture::new("disabled", one(uac(0x202)), Expect::Fail(Severity::High)),
            Fixture::new("password expired", one(uac(0x80_0200)), Expect::Fail(Severity::High)),
            Fixture::new("normal", one(healthy()), Expect::Pass),
            Fixture::new(
                "not read",
                one(with(|r| {
                    if let Some(account) = r.connector_account.as_mut() {
                        account.user_account_control = None;
                    }
                })),
                Expect::Unknown,
            ),
        ]
    }

    pub(crate) fn forest_level_fixtures() -> Vec<Fixture> {
        vec![
            Fixture::new(
                "Windows 2000 forest",
                one(with(|r| r.forest_functional_level = Some(0))),
                Expect::Fail(Severity::Low),
            ),
            Fixture::new("2016 forest", one(healthy()), Expect::Pass),
            Fixture::new("not read", one(with(|r| r.forest_functional_level = None)), Expect::Unknown),
        ]
    }

    #[test]
    fn os_builds_are_read_from_the_version_text() {
        assert_eq!(os_build("10.0 (14393)"), Some(14393));
        assert_eq!(os_build("6.3 (9600)"), Some(9600));
        assert_eq!(os_build("10.0"), None);
        assert_eq!(host_key("DC01.corp.example."), "dc01");
    }
}
