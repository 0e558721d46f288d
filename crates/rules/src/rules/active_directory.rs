//! Rules over the Active Directory probe, some combined with the Connect server probe
//! (catalogue §2.6; seed checklist points 3 and 6).
//!
//! | id | catalogue | fails when |
//! |---|---|---|
//! | `connector-account-permissions` | PWB-AD-01 | Reset Password, write `lockoutTime` or write `pwdLastSet` is not allowed on a container Entra Connect synchronises (from the AD report's sync scope and the tenant's Connect reports; the domain root is judged only when it is synced, or when nothing says what is) |
//! | `inheritance-not-blocked` | PWB-AD-02 | objects in the synced scope block inherited permissions *and* do not grant the rights themselves (each counted once) |
//! | `min-password-age-zero` | PWB-AD-06 | the domain's minimum password age, or that of a fine-grained policy applying to synced users, is above `max_min_pwd_age_hours` (default 0) |
//! | `dc-password-policy-control` | PWB-AD-08 | the answering DC lacks the LDAP password-policy hints control |
//! | `dc-os-supported` | seed 6 (re-checked, §3) | a DC's OS build is below `min_os_build` (default 14393, Windows Server 2016) |
//! | `preferred-dc-pdc-emulator` | seed 3, PWB-SVC-14/AD-09 | an AD connector does not use "only preferred DCs" with the PDC emulator first |
//! | `preferred-dc-writable` | PWB-AD-10 | a preferred or last-used DC is read-only |
//! | `protected-accounts-in-scope` | PWB-AD-03 | accounts with `adminCount=1` are in the synced scope (writeback cannot reset them, by design) |
//! | `connector-account-usable` | PWB-SVC-12 | the connector account is disabled, expired, locked out, its password expired or must change, or it may not sign in now (also decided when the probe's own bind as that account was refused) |
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

/// The writeback rights an access state lacks: `None` when not read.
fn lacking(container: &wbd_wire::ContainerRights) -> Option<Vec<&'static str>> {
    let rights = [
        ("Reset Password", container.reset_password),
        ("Write lockoutTime", container.write_lockout_time),
        ("Write pwdLastSet", container.write_pwd_last_set),
    ];
    if container.error.is_some() || rights.iter().any(|(_, state)| state.is_none()) {
        return None;
    }
    Some(
        rights
            .iter()
            .filter(|(_, state)| *state != Some(AccessState::Allowed))
            .map(|(name, _)| *name)
            .collect(),
    )
}

fn same_dn(a: &str, b: &str) -> bool {
    let squash =
        |dn: &str| dn.split(',').map(|rdn| rdn.trim().to_ascii_lowercase()).collect::<Vec<_>>().join(",");
    squash(a) == squash(b)
}

/// The containers Entra Connect synchronises in the report's domain: as the AD probe learned
/// them (configuration, Connect state on its machine), and from any Connect report of the tenant.
fn synced_containers(facts: &TenantFacts, o: &AdObservation<'_>) -> Vec<String> {
    let mut scope: Vec<String> = o.report.sync_scope.as_ref().map(|s| s.included.clone()).unwrap_or_default();
    if let (Some(domain), Ok(connect)) = (o.report.domain_dn.as_deref(), connect_observations(facts)) {
        for report in connect.iter().map(|c| c.report) {
            let partitions = report.connectors.iter().flat_map(|c| c.partitions.iter());
            for partition in partitions.filter(|p| same_dn(&p.dn, domain)) {
                scope.extend(partition.inclusions.iter().cloned());
            }
        }
    }
    let mut unique: Vec<String> = Vec::new();
    for dn in scope {
        if !unique.iter().any(|u| same_dn(u, &dn)) {
            unique.push(dn);
        }
    }
    unique
}

fn check_permissions(facts: &TenantFacts, _params: &Params) -> Vec<Verdict> {
    per_domain(facts, |o| {
        let Some(account) = &o.report.connector_account else { return missing("connector_account") };
        if account.containers.iter().all(|c| c.error.is_some()) {
            return match account.containers.iter().find_map(|c| c.error.as_deref()) {
                Some(error) => probe_error(ProbeKind::ActiveDirectory, error),
                None => missing("connector_account.containers"),
            };
        }
        let scope = synced_containers(facts, o);
        let rights_at = |dn: &str| account.containers.iter().find(|c| same_dn(&c.dn, dn));
        if scope.is_empty() {
            // Nobody said which containers are synced. Rights granted at the domain head reach
            // every container that inherits; rights granted lower down (what
            // Set-ADSyncPasswordWritebackPermissions -ADobjectDN does) cannot be judged here.
            let head = o.report.domain_dn.as_deref().and_then(rights_at).and_then(lacking);
            return match head {
                Some(missing_rights) if missing_rights.is_empty() => Outcome::Pass,
                Some(_) => Outcome::unknown(
                    Message::new("connector-account-permissions.scope-unknown")
                        .arg("account", account.configured.as_str())
                        .arg("domain", domain_name(o)),
                ),
                None => missing("connector_account.containers"),
            };
        }
        let mut gaps = Vec::new();
        let mut not_read = Vec::new();
        for dn in &scope {
            match rights_at(dn).and_then(lacking) {
                None => not_read.push(dn.as_str()),
                Some(missing_rights) if missing_rights.is_empty() => {}
                Some(missing_rights) => gaps.push(json!({ "container": dn, "missing": missing_rights })),
            }
        }
        if gaps.is_empty() {
            if not_read.is_empty() {
                return Outcome::Pass;
            }
            return Outcome::unknown(
                Message::new("connector-account-permissions.not-read")
                    .arg("domain", domain_name(o))
                    .arg("containers", json!(not_read)),
            );
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
        let Some(blocked) = &account.inheritance_blocked else {
            return missing("connector_account.inheritance_blocked");
        };
        let without = &blocked.without_rights;
        if without.count == 0 {
            return Outcome::Pass;
        }
        let mut ev = evidence(o);
        ev.insert("objects".into(), json!(without.sample));
        ev.insert("count".into(), json!(without.count));
        let message = Message::new("inheritance-not-blocked.blocked")
            .arg("domain", domain_name(o))
            .arg("count", without.count)
            .arg("objects", json!(without.sample));
        Outcome::fail(Severity::High, message, ev.into())
    })
}

fn check_min_age(facts: &TenantFacts, params: &Params) -> Vec<Verdict> {
    let max_hours = params.int("max_min_pwd_age_hours");
    let limit = u64::try_from(max_hours).unwrap_or_default() * 3600;
    per_domain(facts, |o| {
        let Some(age) = o.report.password_policy.as_ref().and_then(|p| p.min_pwd_age_secs) else {
            return missing("password_policy.min_pwd_age_secs");
        };
        let domain = domain_name(o);
        let mut parts = Vec::new();
        let mut evidence_policies = Vec::new();
        if age > limit {
            parts.push(
                Message::new("min-password-age-zero.too-long")
                    .arg("domain", domain)
                    .arg("hours", age.div_ceil(3600))
                    .nested(),
            );
            evidence_policies.push(json!({ "policy": "domain", "min_pwd_age_secs": age }));
        }
        // Fine-grained policies that are the resultant policy of synced users.
        let applying: Vec<_> = o
            .report
            .fine_grained_policies
            .iter()
            .flatten()
            .filter(|p| p.synced_users.is_some_and(|n| n > 0))
            .collect();
        let mut unreadable = Vec::new();
        for pso in &applying {
            match pso.min_pwd_age_secs {
                Some(pso_age) if pso_age > limit => {
                    parts.push(
                        Message::new("min-password-age-zero.pso-too-long")
                            .arg("domain", domain)
                            .arg("pso", pso.name.as_str())
                            .arg("users", pso.synced_users.unwrap_or_default())
                            .arg("hours", pso_age.div_ceil(3600))
                            .nested(),
                    );
                    evidence_policies.push(json!({ "policy": pso.dn, "min_pwd_age_secs": pso_age }));
                }
                Some(_) => {}
                None => unreadable.push(pso.name.as_str()),
            }
        }
        if !parts.is_empty() {
            let mut ev = evidence(o);
            ev.insert("policies".into(), json!(evidence_policies));
            let message = Message::new("min-password-age-zero.summary").arg("parts", parts);
            return Outcome::fail(Severity::Medium, message, ev.into());
        }
        if !unreadable.is_empty() {
            return Outcome::unknown(
                Message::new("min-password-age-zero.pso-unreadable")
                    .arg("domain", domain)
                    .arg("policies", json!(unreadable)),
            );
        }
        if o.report.fine_grained_policies.is_none() {
            return missing("fine_grained_policies");
        }
        Outcome::Pass
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

/// `userAccountControl` bit ACCOUNTDISABLE (for reports that carry no `state`).
const UAC_DISABLED: u32 = 0x2;

fn check_account_usable(facts: &TenantFacts, _params: &Params) -> Vec<Verdict> {
    let now = facts.now;
    let judge = |o: &AdObservation<'_>| {
        let Some(account) = &o.report.connector_account else {
            return match &o.report.failure {
                Some(failure) => probe_error(ProbeKind::ActiveDirectory, &failure.error),
                None => missing("connector_account"),
            };
        };
        // A report that predates `state` carries only the stored userAccountControl.
        let fallback;
        let state = match &account.state {
            Some(state) => state,
            None => {
                let Some(uac) = account.user_account_control else {
                    return match &o.report.failure {
                        Some(failure) => probe_error(ProbeKind::ActiveDirectory, &failure.error),
                        None => missing("connector_account.state"),
                    };
                };
                fallback = wbd_wire::ConnectorAccountState {
                    disabled: Some(uac & UAC_DISABLED != 0),
                    ..Default::default()
                };
                &fallback
            }
        };
        let account_name = account.configured.as_str();
        let yes = |fact: Option<bool>| fact == Some(true);
        let expired = yes(state.account_expired) || state.expires_at.is_some_and(|at| at <= now);
        let mut causes = Vec::new();
        if yes(state.not_found) {
            causes.push(Message::new("connector-account-usable.cause-not-found"));
        }
        if yes(state.disabled) {
            causes.push(Message::new("connector-account-usable.cause-disabled"));
        }
        if expired {
            let date =
                state.expires_at.map_or_else(|| "-".to_owned(), |at| at.format("%Y-%m-%d").to_string());
            causes.push(Message::new("connector-account-usable.cause-expired").arg("date", date));
        }
        if yes(state.locked_out) {
            causes.push(Message::new("connector-account-usable.cause-locked"));
        }
        if yes(state.must_change_password) {
            causes.push(Message::new("connector-account-usable.cause-must-change"));
        } else if yes(state.password_expired) {
            causes.push(Message::new("connector-account-usable.cause-password-expired"));
        }
        if yes(state.logon_restricted) {
            causes.push(Message::new("connector-account-usable.cause-logon-restricted"));
        }
        if causes.is_empty() {
            if yes(state.wrong_password) {
                return Outcome::unknown(
                    Message::new("connector-account-usable.wrong-password").arg("account", account_name),
                );
            }
            let known =
                [state.disabled, state.locked_out, state.password_expired, state.must_change_password];
            if known.iter().all(Option::is_none) && state.account_expired.is_none() {
                return missing("connector_account.state");
            }
            return Outcome::Pass;
        }
        let keys: Vec<String> =
            causes.iter().map(|c| c.key.rsplit('.').next().unwrap_or_default().to_owned()).collect();
        let mut ev = evidence(o);
        ev.insert("account".into(), json!(account.configured));
        ev.insert("causes".into(), json!(keys));
        ev.insert("bind_refusal_code".into(), json!(state.bind_refusal_code));
        let message = Message::new("connector-account-usable.unusable")
            .arg("account", account_name)
            .arg("causes", causes.into_iter().map(Message::nested).collect::<Vec<_>>());
        Outcome::fail(Severity::High, message, ev.into())
    };
    match ad_observations(facts) {
        Ok(observations) => {
            observations.iter().map(|o| Verdict { subject: o.subject(), outcome: judge(o) }).collect()
        }
        Err(no_data) => no_data,
    }
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
    use chrono::Duration;
    use wbd_wire::{
        AdFailure, AdStep, BlockedInheritance, ConnectorAccountRights, ConnectorAccountState,
        ContainerRights, DomainController, DomainPasswordPolicy, FineGrainedPolicy, ProtectedAccounts,
        SampledCount, SyncScope, SyncScopeSource, SyncedPartition,
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
            error: None,
        }
    }

    fn usable() -> ConnectorAccountState {
        ConnectorAccountState {
            disabled: Some(false),
            expires_at: None,
            account_expired: Some(false),
            password_expired: Some(false),
            locked_out: Some(false),
            must_change_password: Some(false),
            ..ConnectorAccountState::default()
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
                state: Some(usable()),
                containers: vec![
                    full_rights("DC=corp,DC=example"),
                    full_rights("OU=Staff,DC=corp,DC=example"),
                ],
                inheritance_blocked: Some(BlockedInheritance {
                    blocked: 0,
                    without_rights: SampledCount { count: 0, sample: vec![], truncated: false },
                    truncated: false,
                }),
            }),
            fine_grained_policies: Some(vec![]),
            sync_scope: Some(SyncScope {
                included: vec!["OU=Staff,DC=corp,DC=example".to_owned()],
                excluded: vec![],
                sources: vec![SyncScopeSource::Configuration],
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

    /// What Set-ADSyncPasswordWritebackPermissions -ADobjectDN leaves: the rights on the synced
    /// OU only, none at the domain root (here even denied there, inherited by the OU, whose
    /// explicit grant comes first).
    fn rights_on_the_synced_ou_only() -> ProbeOutput {
        with(|r| {
            if let Some(account) = r.connector_account.as_mut() {
                account.containers[0].reset_password = Some(AccessState::Denied);
                account.containers[0].write_lockout_time = Some(AccessState::NotGranted);
                account.containers[0].write_pwd_last_set = Some(AccessState::NotGranted);
            }
        })
    }

    pub(crate) fn permissions_fixtures() -> Vec<Fixture> {
        let scope_unknown = || {
            with(|r| {
                r.sync_scope = None;
                if let Some(account) = r.connector_account.as_mut() {
                    account.containers[0].reset_password = Some(AccessState::NotGranted);
                }
            })
        };
        let synced_not_read = with(|r| {
            if let Some(scope) = r.sync_scope.as_mut() {
                scope.included.push("OU=Branch,DC=corp,DC=example".to_owned());
            }
        });
        // The scope comes from the Connect server's connector configuration only.
        let from_connect = |ad: ProbeOutput| {
            let connect = crate::rules::connect_server::tests::with(|c| {
                c.connectors[0].partitions = vec![SyncedPartition {
                    dn: "DC=corp,DC=example".to_owned(),
                    inclusions: vec!["OU=Staff,DC=corp,DC=example".to_owned()],
                    exclusions: vec!["DC=corp,DC=example".to_owned()],
                }];
            });
            connect_and_ad(connect, ad)
        };
        let unscoped = |change: fn(&mut ActiveDirectoryReport)| {
            with(move |r| {
                r.sync_scope = None;
                change(r);
            })
        };
        vec![
            Fixture::new("reset right missing", one(no_reset_right()), Expect::Fail(Severity::Critical)),
            Fixture::new("granted", one(healthy()), Expect::Pass),
            Fixture::new("granted on the synced OU only", one(rights_on_the_synced_ou_only()), Expect::Pass),
            Fixture::new(
                "synced OU from Connect lacks rights",
                from_connect(unscoped(|r| {
                    if let Some(account) = r.connector_account.as_mut() {
                        account.containers[1].write_lockout_time = Some(AccessState::NotGranted);
                    }
                })),
                Expect::Fail(Severity::Critical),
            ),
            Fixture::new(
                "synced OU from Connect granted, root denied",
                from_connect(unscoped(|r| {
                    if let Some(account) = r.connector_account.as_mut() {
                        account.containers[0].reset_password = Some(AccessState::Denied);
                    }
                })),
                Expect::Pass,
            ),
            Fixture::new("scope unknown, root lacks rights", one(scope_unknown()), Expect::Unknown),
            Fixture::new("scope unknown, root grants", one(unscoped(|_| {})), Expect::Pass),
            Fixture::new("a synced OU not read", one(synced_not_read), Expect::Unknown),
            Fixture::new("not read", one(with(|r| r.connector_account = None)), Expect::Unknown),
            unreachable(),
            no_probe(),
        ]
    }

    pub(crate) fn inheritance_fixtures() -> Vec<Fixture> {
        let blocked = |without: u32| {
            with(move |r| {
                if let Some(account) = r.connector_account.as_mut() {
                    account.inheritance_blocked = Some(BlockedInheritance {
                        blocked: 3,
                        without_rights: SampledCount {
                            count: without,
                            sample: [
                                "CN=CFO,OU=Staff,DC=corp,DC=example",
                                "OU=Board,OU=Staff,DC=corp,DC=example",
                            ][..without as usize]
                                .iter()
                                .map(|s| (*s).to_owned())
                                .collect(),
                            truncated: false,
                        },
                        truncated: false,
                    });
                }
            })
        };
        vec![
            Fixture::new("blocked without rights", one(blocked(2)), Expect::Fail(Severity::High)),
            Fixture::new("blocked but granted there", one(blocked(0)), Expect::Pass),
            Fixture::new("inherits", one(healthy()), Expect::Pass),
            Fixture::new(
                "not scanned",
                one(with(|r| {
                    if let Some(account) = r.connector_account.as_mut() {
                        account.inheritance_blocked = None;
                    }
                })),
                Expect::Unknown,
            ),
            unreachable(),
        ]
    }

    fn pso(min_age_secs: Option<u64>, synced_users: u32) -> FineGrainedPolicy {
        FineGrainedPolicy {
            dn: "CN=Staff PSO,CN=Password Settings Container,CN=System,DC=corp,DC=example".to_owned(),
            name: "Staff PSO".to_owned(),
            precedence: Some(10),
            min_pwd_age_secs: min_age_secs,
            applies_to: vec!["CN=Staff,OU=Groups,DC=corp,DC=example".to_owned()],
            synced_users: Some(synced_users),
        }
    }

    pub(crate) fn min_age_fixtures() -> Vec<Fixture> {
        let one_day = || {
            with(|r| {
                if let Some(policy) = r.password_policy.as_mut() {
                    policy.min_pwd_age_secs = Some(86400);
                }
            })
        };
        let with_pso = |p: FineGrainedPolicy| with(move |r| r.fine_grained_policies = Some(vec![p]));
        let both = with(|r| {
            if let Some(policy) = r.password_policy.as_mut() {
                policy.min_pwd_age_secs = Some(3600);
            }
            r.fine_grained_policies = Some(vec![pso(Some(2 * 86400), 40)]);
        });
        vec![
            Fixture::new("one day", one(one_day()), Expect::Fail(Severity::Medium)),
            Fixture::new("zero", one(healthy()), Expect::Pass),
            Fixture::new("one day allowed", one(one_day()), Expect::Pass)
                .with_param("max_min_pwd_age_hours", json!(24)),
            Fixture::new("not read", one(with(|r| r.password_policy = None)), Expect::Unknown),
            Fixture::new(
                "a PSO of synced users",
                one(with_pso(pso(Some(2 * 86400), 12))),
                Expect::Fail(Severity::Medium),
            ),
            Fixture::new("domain and PSO", one(both), Expect::Fail(Severity::Medium)),
            Fixture::new("a PSO of nobody synced", one(with_pso(pso(Some(2 * 86400), 0))), Expect::Pass),
            Fixture::new("a PSO at zero", one(with_pso(pso(Some(0), 12))), Expect::Pass),
            Fixture::new("a PSO not readable", one(with_pso(pso(None, 12))), Expect::Unknown),
            Fixture::new("PSOs not searched", one(with(|r| r.fine_grained_policies = None)), Expect::Unknown),
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
        let state = |change: fn(&mut ConnectorAccountState)| {
            with(move |r| {
                if let Some(account) = r.connector_account.as_mut() {
                    let mut state = usable();
                    change(&mut state);
                    account.state = Some(state);
                }
            })
        };
        // The probe bound as the connector account and the DC refused it (data 775).
        let refused = with(|r| {
            r.failure = Some(AdFailure {
                step: AdStep::Bind,
                error: "LDAP result 49: … data 775, v4563".to_owned(),
            });
            if let Some(account) = r.connector_account.as_mut() {
                account.containers.clear();
                account.state = Some(ConnectorAccountState {
                    locked_out: Some(true),
                    bind_refusal_code: Some("775".to_owned()),
                    ..ConnectorAccountState::default()
                });
            }
        });
        let old_report = |uac: u32| {
            with(move |r| {
                if let Some(account) = r.connector_account.as_mut() {
                    account.state = None;
                    account.user_account_control = Some(uac);
                }
            })
        };
        vec![
            Fixture::new("disabled", one(state(|s| s.disabled = Some(true))), Expect::Fail(Severity::High)),
            Fixture::new(
                "expired yesterday",
                one(state(|s| s.expires_at = Some(now() - Duration::days(1)))),
                Expect::Fail(Severity::High),
            ),
            Fixture::new(
                "locked out",
                one(state(|s| s.locked_out = Some(true))),
                Expect::Fail(Severity::High),
            ),
            Fixture::new(
                "password expired",
                one(state(|s| s.password_expired = Some(true))),
                Expect::Fail(Severity::High),
            ),
            Fixture::new(
                "must change",
                one(state(|s| {
                    s.must_change_password = Some(true);
                    s.password_expired = Some(true);
                })),
                Expect::Fail(Severity::High),
            ),
            Fixture::new(
                "logon hours",
                one(state(|s| s.logon_restricted = Some(true))),
                Expect::Fail(Severity::High),
            ),
            Fixture::new(
                "no such account",
                one(state(|s| s.not_found = Some(true))),
                Expect::Fail(Severity::High),
            ),
            Fixture::new("bind refused: locked out", one(refused), Expect::Fail(Severity::High)),
            Fixture::new("older report: disabled", one(old_report(0x202)), Expect::Fail(Severity::High)),
            Fixture::new("normal", one(healthy()), Expect::Pass),
            Fixture::new(
                "expires next year",
                one(state(|s| s.expires_at = Some(now() + Duration::days(365)))),
                Expect::Pass,
            ),
            Fixture::new(
                "wrong bind password",
                one(state(|s| s.wrong_password = Some(true))),
                Expect::Unknown,
            ),
            Fixture::new(
                "not read",
                one(with(|r| {
                    if let Some(account) = r.connector_account.as_mut() {
                        account.state = None;
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
