//! Rules over the Entra Connect server probe (catalogue §2.2–2.4; seed checklist points 7, 8).
//!
//! | id | catalogue | fails when |
//! |---|---|---|
//! | `adsync-service-running` | PWB-SVC-01 | the ADSync service is not `Running` |
//! | `writeback-enabled` | PWB-SVC-02 | writeback is off on the Entra connector |
//! | `staging-mode-off` | PWB-SVC-03 | the server is in staging mode and no other server of the tenant is active |
//! | `single-active-writeback-server` | PWB-SVC-04 | two or more servers are active with writeback on (subject `tenant`) |
//! | `connect-version-supported` | PWB-VER-01/02, seed 8 | the version is below `min_version` (default 2.5.79.0) |
//! | `full-sync-completed` | PWB-SVC-10, seed 7 | an AD or Entra connector's newest full import or full sync failed, or it was never imported and synchronised (no successful full run in the history or the collector's memory, and no object joined in its connector space); unknown when the history holds only newer runs and nothing else tells |
//! | `tls12-enabled` | PWB-HOST-03 | a TLS 1.2 registry value is absent or wrong |
//! | `dotnet-version` | PWB-HOST-02 | .NET Framework release is below `min_release` (default 461808, 4.7.2) |
//! | `sync-scheduler-enabled` | PWB-SVC-11 | the sync cycle is disabled or the scheduler suspended |
//! | `connect-host-os-supported` | PWB-HOST-01 | the OS build is not in `supported_os_builds` (WS2016, 2019, 2022) |
//! | `restrict-remote-sam` | PWB-HOST-06 | `RestrictRemoteSam` is set and does not name the connector account's SID (from the AD probe) |
//! | `ldap-sign-and-seal` | PWB-SVC-15 | an AD connector does not sign and encrypt LDAP traffic |
//! | `cloud-sync-agent-version` | PWB-CS-01 | an installed cloud sync agent is older than `min_version` (default 1.1.977.0); not applicable without an agent |
//! | `cloud-sync-agent-running` | PWB-CS-02 | an installed cloud sync agent's service is not `Running`; not applicable without an agent |
//!
//! Subject: `<probe subject>@<collector id>`, except where noted. A fact the report does not
//! carry (`None`: not read) gives "unknown", never a failure.

use std::collections::BTreeSet;

use chrono::{DateTime, TimeZone, Utc};
use serde_json::json;
use wbd_wire::{
    ConnectServerReport, ConnectorKind, ProbeKind, ProbeOutput, RegistryDword, RegistryString, RunSummary,
};

use super::{RuleDef, Verdict, field_missing, observed, site_evidence};
use crate::facts::Observation;
use crate::{DottedVersion, Message, Outcome, Params, Severity, TenantFacts};

pub(crate) const SERVICE: &str = "adsync-service-running";
pub(crate) const WRITEBACK: &str = "writeback-enabled";
pub(crate) const STAGING: &str = "staging-mode-off";
pub(crate) const SINGLE: &str = "single-active-writeback-server";
pub(crate) const VERSION: &str = "connect-version-supported";
pub(crate) const FULL_SYNC: &str = "full-sync-completed";
pub(crate) const TLS12: &str = "tls12-enabled";
pub(crate) const DOTNET: &str = "dotnet-version";
pub(crate) const SCHEDULER: &str = "sync-scheduler-enabled";
pub(crate) const HOST_OS: &str = "connect-host-os-supported";
pub(crate) const REMOTE_SAM: &str = "restrict-remote-sam";
pub(crate) const SIGN_SEAL: &str = "ldap-sign-and-seal";
pub(crate) const CLOUD_SYNC: &str = "cloud-sync-agent-version";
pub(crate) const CLOUD_SYNC_RUNNING: &str = "cloud-sync-agent-running";

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
    rule!(SERVICE, check_service, service_fixtures),
    rule!(WRITEBACK, check_writeback, writeback_fixtures),
    rule!(STAGING, check_staging, staging_fixtures),
    rule!(SINGLE, check_single, single_fixtures),
    rule!(VERSION, check_version, version_fixtures),
    rule!(FULL_SYNC, check_full_sync, full_sync_fixtures),
    rule!(TLS12, check_tls12, tls12_fixtures),
    rule!(DOTNET, check_dotnet, dotnet_fixtures),
    rule!(SCHEDULER, check_scheduler, scheduler_fixtures),
    rule!(HOST_OS, check_host_os, host_os_fixtures),
    rule!(REMOTE_SAM, check_remote_sam, remote_sam_fixtures),
    rule!(SIGN_SEAL, check_sign_seal, sign_seal_fixtures),
    rule!(CLOUD_SYNC, check_cloud_sync, cloud_sync_fixtures),
    rule!(CLOUD_SYNC_RUNNING, check_cloud_sync_running, cloud_sync_running_fixtures),
];

/// The day Connect Sync builds below 2.5.79.0 stop working (catalogue §3, "mandatory floor").
fn floor_deadline() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 9, 30, 0, 0, 0).single().unwrap_or(DateTime::<Utc>::MAX_UTC)
}

type ConnectObservation<'a> = Observation<'a, ConnectServerReport>;

pub(crate) fn connect_observations(facts: &TenantFacts) -> Result<Vec<ConnectObservation<'_>>, Vec<Verdict>> {
    observed(facts, ProbeKind::ConnectServer, |output| match output {
        ProbeOutput::ConnectServer(report) => Some(report),
        _ => None,
    })
}

fn per_server(facts: &TenantFacts, judge: impl Fn(&ConnectObservation<'_>) -> Outcome) -> Vec<Verdict> {
    match connect_observations(facts) {
        Ok(observations) => {
            observations.iter().map(|o| Verdict { subject: o.subject(), outcome: judge(o) }).collect()
        }
        Err(no_data) => no_data,
    }
}

fn missing(field: &str) -> Outcome {
    field_missing(ProbeKind::ConnectServer, field)
}

/// The server's name for texts: its host name, else the collector's name.
fn server_name<'a>(o: &ConnectObservation<'a>) -> &'a str {
    o.report.hostname.as_deref().unwrap_or(&o.collector.name)
}

fn evidence(o: &ConnectObservation<'_>) -> serde_json::Map<String, serde_json::Value> {
    let mut evidence = site_evidence(o);
    evidence.insert("server".into(), json!(server_name(o)));
    evidence
}

/// Writeback on, from the report or its Entra connector.
pub(crate) fn writeback_on(report: &ConnectServerReport) -> Option<bool> {
    report.writeback_enabled.or_else(|| {
        report.connectors.iter().find(|c| c.kind == ConnectorKind::EntraId).and_then(|c| c.writeback_enabled)
    })
}

pub(crate) fn staging(report: &ConnectServerReport) -> Option<bool> {
    report.staging_mode.or_else(|| report.scheduler.as_ref().and_then(|s| s.staging_mode_enabled))
}

fn check_service(facts: &TenantFacts, _params: &Params) -> Vec<Verdict> {
    per_server(facts, |o| {
        let Some(service) = &o.report.adsync_service else { return missing("adsync_service") };
        if service.status.eq_ignore_ascii_case("running") {
            return Outcome::Pass;
        }
        let mut ev = evidence(o);
        ev.insert("status".into(), json!(service.status));
        ev.insert("start_type".into(), json!(service.start_type));
        let message = Message::new("adsync-service-running.not-running")
            .arg("server", server_name(o))
            .arg("status", service.status.as_str());
        Outcome::fail(Severity::Critical, message, ev.into())
    })
}

fn check_writeback(facts: &TenantFacts, _params: &Params) -> Vec<Verdict> {
    per_server(facts, |o| match writeback_on(o.report) {
        None => missing("writeback_enabled"),
        Some(true) => Outcome::Pass,
        Some(false) => Outcome::fail(
            Severity::Critical,
            Message::new("writeback-enabled.off").arg("server", server_name(o)),
            evidence(o).into(),
        ),
    })
}

/// Host names of servers that are not staging and have writeback on.
fn active_servers<'a>(observations: &[ConnectObservation<'a>]) -> BTreeSet<String> {
    observations
        .iter()
        .filter(|o| staging(o.report) == Some(false) && writeback_on(o.report) == Some(true))
        .map(|o| server_name(o).to_ascii_lowercase())
        .collect()
}

fn check_staging(facts: &TenantFacts, _params: &Params) -> Vec<Verdict> {
    let observations = match connect_observations(facts) {
        Ok(observations) => observations,
        Err(no_data) => return no_data,
    };
    let active = active_servers(&observations);
    observations
        .iter()
        .map(|o| {
            let outcome = match staging(o.report) {
                None => missing("staging_mode"),
                Some(false) => Outcome::Pass,
                // A staging server beside an active one is the documented standby set-up.
                Some(true) if !active.is_empty() => Outcome::Pass,
                Some(true) => Outcome::fail(
                    Severity::Critical,
                    Message::new("staging-mode-off.staging").arg("server", server_name(o)),
                    evidence(o).into(),
                ),
            };
            Verdict { subject: o.subject(), outcome }
        })
        .collect()
}

fn check_single(facts: &TenantFacts, _params: &Params) -> Vec<Verdict> {
    let observations = match connect_observations(facts) {
        Ok(observations) => observations,
        Err(no_data) => return no_data,
    };
    let active = active_servers(&observations);
    let outcome = if active.len() > 1 {
        let servers: Vec<&String> = active.iter().collect();
        Outcome::fail(
            Severity::Critical,
            Message::new("single-active-writeback-server.several")
                .arg("servers", json!(servers))
                .arg("count", active.len()),
            json!({ "servers": servers }),
        )
    } else if observations.iter().all(|o| staging(o.report).is_none() || writeback_on(o.report).is_none()) {
        missing("staging_mode")
    } else {
        Outcome::Pass
    };
    vec![Verdict::tenant(outcome)]
}

fn check_version(facts: &TenantFacts, params: &Params) -> Vec<Verdict> {
    let minimum = params.version("min_version");
    let now = facts.now;
    per_server(facts, |o| {
        let Some(text) = o.report.connect_version.as_deref() else { return missing("connect_version") };
        let Some(version) = DottedVersion::parse(text) else {
            return Outcome::unknown(
                Message::new("connect-version-supported.unreadable").arg("version", text),
            );
        };
        if version >= minimum {
            return Outcome::Pass;
        }
        let mut ev = evidence(o);
        ev.insert("version".into(), json!(version.to_string()));
        ev.insert("min_version".into(), json!(minimum.to_string()));
        let (key, severity) = if version.major() < 2 {
            ("connect-version-supported.v1", Severity::Critical)
        } else if now >= floor_deadline() {
            ("connect-version-supported.stopped", Severity::Critical)
        } else {
            ("connect-version-supported.below", Severity::High)
        };
        let message = Message::new(key)
            .arg("server", server_name(o))
            .arg("version", version.to_string())
            .arg("min_version", minimum.to_string())
            .arg("deadline", "2026-09-30");
        Outcome::fail(severity, message, ev.into())
    })
}

/// What the facts say about one connector's full import and full sync.
enum FullRuns {
    /// Both completed (seen in the history or remembered), or the connector space holds joined
    /// objects, which only a completed import and synchronisation put there.
    Done,
    /// The newest full run in the history failed, and no later one succeeded.
    Failed,
    /// Never: nothing joined, or no run at all.
    Never,
    /// The history holds only newer runs, and nothing else tells.
    Undecided,
}

fn newest_success<'a>(
    history: Option<&'a RunSummary>,
    remembered: Option<&'a RunSummary>,
) -> Option<&'a RunSummary> {
    let when = |r: &RunSummary| r.ended_at.or(r.started_at);
    [history.filter(|r| r.succeeded()), remembered.filter(|r| r.succeeded())]
        .into_iter()
        .flatten()
        .max_by_key(|r| when(r))
}

fn full_runs(c: &wbd_wire::ConnectorState) -> FullRuns {
    let when = |r: &RunSummary| r.ended_at.or(r.started_at);
    let import = newest_success(c.last_full_import.as_ref(), c.remembered_full_import.as_ref());
    let sync = newest_success(c.last_full_sync.as_ref(), c.remembered_full_sync.as_ref());
    // A failed full run that is newer than every success of its kind.
    let failed = |newest: Option<&RunSummary>, success: Option<&RunSummary>| {
        newest.is_some_and(|r| !r.succeeded() && success.is_none_or(|s| when(r) > when(s)))
    };
    if failed(c.last_full_import.as_ref(), import) || failed(c.last_full_sync.as_ref(), sync) {
        return FullRuns::Failed;
    }
    if import.is_some() && sync.is_some() {
        return FullRuns::Done;
    }
    match c.statistics.as_ref().and_then(|s| s.total_connectors) {
        Some(joined) if joined > 0 => FullRuns::Done,
        Some(_) => FullRuns::Never,
        None if c.runs_in_history.is_some_and(|n| n > 0) || c.last_run.is_some() => FullRuns::Undecided,
        None => FullRuns::Never,
    }
}

fn check_full_sync(facts: &TenantFacts, _params: &Params) -> Vec<Verdict> {
    per_server(facts, |o| {
        let connectors: Vec<_> =
            o.report.connectors.iter().filter(|c| c.kind != ConnectorKind::Other).collect();
        if connectors.is_empty() {
            return missing("connectors");
        }
        let judged: Vec<_> = connectors.iter().map(|c| (*c, full_runs(c))).collect();
        let named = |pick: fn(&FullRuns) -> bool| -> Vec<&str> {
            judged.iter().filter(|(_, r)| pick(r)).map(|(c, _)| c.name.as_str()).collect()
        };
        let failed = named(|r| matches!(r, FullRuns::Failed));
        let never = named(|r| matches!(r, FullRuns::Never));
        let undecided = named(|r| matches!(r, FullRuns::Undecided));
        if failed.is_empty() && never.is_empty() {
            if undecided.is_empty() {
                return Outcome::Pass;
            }
            return Outcome::unknown(
                Message::new("full-sync-completed.history-short")
                    .arg("server", server_name(o))
                    .arg("connectors", json!(undecided)),
            );
        }
        let mut ev = evidence(o);
        let detail: Vec<_> = judged
            .iter()
            .filter(|(_, r)| matches!(r, FullRuns::Failed | FullRuns::Never))
            .map(|(c, _)| {
                json!({
                    "connector": c.name,
                    "full_import": c.last_full_import.as_ref().map(|r| &r.result),
                    "full_sync": c.last_full_sync.as_ref().map(|r| &r.result),
                    "joined_objects": c.statistics.as_ref().and_then(|s| s.total_connectors),
                })
            })
            .collect();
        ev.insert("connectors".into(), json!(detail));
        let message = if failed.is_empty() {
            Message::new("full-sync-completed.missing").arg("connectors", json!(never))
        } else {
            Message::new("full-sync-completed.failed").arg("connectors", json!(failed))
        };
        Outcome::fail(Severity::Medium, message.arg("server", server_name(o)), ev.into())
    })
}

fn check_tls12(facts: &TenantFacts, _params: &Params) -> Vec<Verdict> {
    per_server(facts, |o| {
        let Some(tls) = &o.report.tls12 else { return missing("tls12") };
        // (registry value, the value it must have)
        let expected = [
            (".NET 64-bit SystemDefaultTlsVersions", tls.dotnet64_system_default_tls_versions, 1),
            (".NET 64-bit SchUseStrongCrypto", tls.dotnet64_sch_use_strong_crypto, 1),
            (".NET 32-bit SystemDefaultTlsVersions", tls.dotnet32_system_default_tls_versions, 1),
            (".NET 32-bit SchUseStrongCrypto", tls.dotnet32_sch_use_strong_crypto, 1),
            ("SCHANNEL TLS 1.2 Server Enabled", tls.schannel_server_enabled, 1),
            ("SCHANNEL TLS 1.2 Server DisabledByDefault", tls.schannel_server_disabled_by_default, 0),
            ("SCHANNEL TLS 1.2 Client Enabled", tls.schannel_client_enabled, 1),
            ("SCHANNEL TLS 1.2 Client DisabledByDefault", tls.schannel_client_disabled_by_default, 0),
        ];
        if expected.iter().all(|(_, value, _)| value.is_none()) {
            return missing("tls12");
        }
        let wrong: Vec<String> = expected
            .iter()
            .filter_map(|(name, value, want)| match value {
                Some(RegistryDword::Set(v)) if v == want => None,
                Some(RegistryDword::Set(v)) => Some(format!("{name} = {v} (≠ {want})")),
                Some(RegistryDword::Absent) => Some(format!("{name} (absent)")),
                None => None,
            })
            .collect();
        if wrong.is_empty() {
            return Outcome::Pass;
        }
        let mut ev = evidence(o);
        ev.insert("settings".into(), json!(wrong));
        let message =
            Message::new("tls12-enabled.wrong").arg("server", server_name(o)).arg("settings", json!(wrong));
        Outcome::fail(Severity::Medium, message, ev.into())
    })
}

fn check_dotnet(facts: &TenantFacts, params: &Params) -> Vec<Verdict> {
    let min_release = params.int("min_release");
    per_server(facts, |o| {
        let Some(release) = o.report.dotnet_release else { return missing("dotnet_release") };
        let found = match release {
            RegistryDword::Set(v) if i64::from(v) >= min_release => return Outcome::Pass,
            RegistryDword::Set(v) => json!(v),
            RegistryDword::Absent => json!("-"),
        };
        let mut ev = evidence(o);
        ev.insert("release".into(), found.clone());
        let message = Message::new("dotnet-version.old")
            .arg("server", server_name(o))
            .arg("release", found)
            .arg("min_release", min_release);
        Outcome::fail(Severity::High, message, ev.into())
    })
}

fn check_scheduler(facts: &TenantFacts, _params: &Params) -> Vec<Verdict> {
    per_server(facts, |o| {
        let Some(scheduler) = &o.report.scheduler else { return missing("scheduler") };
        let key = if scheduler.sync_cycle_enabled == Some(false) {
            "sync-scheduler-enabled.disabled"
        } else if scheduler.scheduler_suspended == Some(true) {
            "sync-scheduler-enabled.suspended"
        } else if scheduler.sync_cycle_enabled.is_none() && scheduler.scheduler_suspended.is_none() {
            return missing("scheduler.sync_cycle_enabled");
        } else {
            return Outcome::Pass;
        };
        let mut ev = evidence(o);
        ev.insert("sync_cycle_enabled".into(), json!(scheduler.sync_cycle_enabled));
        ev.insert("scheduler_suspended".into(), json!(scheduler.scheduler_suspended));
        Outcome::fail(Severity::Medium, Message::new(key).arg("server", server_name(o)), ev.into())
    })
}

/// Windows Server 2025's build: not supported for Connect Sync (catalogue §3).
const WS2025_BUILD: u32 = 26100;

fn check_host_os(facts: &TenantFacts, params: &Params) -> Vec<Verdict> {
    let supported: Vec<u32> =
        params.strings("supported_os_builds").filter_map(|b| b.trim().parse().ok()).collect();
    per_server(facts, |o| {
        let Some(build) = o.report.os_build else { return missing("os_build") };
        if supported.contains(&build) {
            return Outcome::Pass;
        }
        let caption = o.report.os_caption.as_deref().unwrap_or("?");
        let key = if build == WS2025_BUILD {
            "connect-host-os-supported.ws2025"
        } else {
            "connect-host-os-supported.unsupported"
        };
        let mut ev = evidence(o);
        ev.insert("os_build".into(), json!(build));
        ev.insert("os_caption".into(), json!(caption));
        let message =
            Message::new(key).arg("server", server_name(o)).arg("caption", caption).arg("build", build);
        Outcome::fail(Severity::High, message, ev.into())
    })
}

fn check_remote_sam(facts: &TenantFacts, _params: &Params) -> Vec<Verdict> {
    // The connector account's SID, from any AD report of the tenant.
    let sids: Vec<String> = facts
        .observations(|output| match output {
            ProbeOutput::ActiveDirectory(report) => Some(report),
            _ => None,
        })
        .iter()
        .filter_map(|a| a.report.connector_account.as_ref().and_then(|c| c.sid.clone()))
        .collect();
    per_server(facts, |o| {
        let Some(value) = &o.report.restrict_remote_sam else { return missing("restrict_remote_sam") };
        let sddl = match value {
            RegistryString::Absent => return Outcome::Pass,
            RegistryString::Set(sddl) => sddl,
        };
        if sids.iter().any(|sid| sddl.to_ascii_uppercase().contains(&sid.to_ascii_uppercase())) {
            return Outcome::Pass;
        }
        let mut ev = evidence(o);
        ev.insert("restrict_remote_sam".into(), json!(sddl));
        let message = Message::new("restrict-remote-sam.restricted")
            .arg("server", server_name(o))
            .arg("sddl", sddl.as_str());
        Outcome::fail(Severity::Medium, message, ev.into())
    })
}

fn check_sign_seal(facts: &TenantFacts, _params: &Params) -> Vec<Verdict> {
    per_server(facts, |o| {
        let ad: Vec<_> =
            o.report.connectors.iter().filter(|c| c.kind == ConnectorKind::ActiveDirectory).collect();
        if ad.iter().all(|c| c.sign_and_seal.is_none()) {
            return missing("connectors.sign_and_seal");
        }
        let off: Vec<&str> =
            ad.iter().filter(|c| c.sign_and_seal == Some(false)).map(|c| c.name.as_str()).collect();
        if off.is_empty() {
            return Outcome::Pass;
        }
        let mut ev = evidence(o);
        ev.insert("connectors".into(), json!(off));
        let message = Message::new("ldap-sign-and-seal.off")
            .arg("server", server_name(o))
            .arg("connectors", json!(off));
        Outcome::fail(Severity::Medium, message, ev.into())
    })
}

fn check_cloud_sync(facts: &TenantFacts, params: &Params) -> Vec<Verdict> {
    let minimum = params.version("min_version");
    per_server(facts, |o| {
        let Some(agent) = &o.report.cloud_sync_agent else { return missing("cloud_sync_agent") };
        if !agent.installed {
            return Outcome::not_applicable(
                Message::new("cloud-sync-agent-version.not-installed").arg("server", server_name(o)),
            );
        }
        let Some(version) = agent.version.as_deref().and_then(DottedVersion::parse) else {
            return missing("cloud_sync_agent.version");
        };
        if version >= minimum {
            return Outcome::Pass;
        }
        let mut ev = evidence(o);
        ev.insert("agent_version".into(), json!(version.to_string()));
        let message = Message::new("cloud-sync-agent-version.old")
            .arg("server", server_name(o))
            .arg("version", version.to_string())
            .arg("min_version", minimum.to_string());
        Outcome::fail(Severity::High, message, ev.into())
    })
}

fn check_cloud_sync_running(facts: &TenantFacts, _params: &Params) -> Vec<Verdict> {
    per_server(facts, |o| {
        let Some(agent) = &o.report.cloud_sync_agent else { return missing("cloud_sync_agent") };
        if !agent.installed {
            return Outcome::not_applicable(
                Message::new("cloud-sync-agent-running.not-installed").arg("server", server_name(o)),
            );
        }
        let Some(service) = &agent.service else { return missing("cloud_sync_agent.service") };
        if service.status.eq_ignore_ascii_case("running") {
            return Outcome::Pass;
        }
        let mut ev = evidence(o);
        ev.insert("status".into(), json!(service.status));
        let message = Message::new("cloud-sync-agent-running.stopped")
            .arg("server", server_name(o))
            .arg("status", service.status.as_str());
        Outcome::fail(Severity::High, message, ev.into())
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use chrono::Duration;
    use wbd_wire::{
        CloudSyncAgent, ConnectStateSource, ConnectorState, ConnectorStatistics, SchedulerState,
        ServiceState, SyncedPartition, Tls12Settings,
    };

    use super::*;
    use crate::rules::fixtures::*;

    fn run_summary(profile: &str, result: &str) -> RunSummary {
        RunSummary {
            run_profile: profile.to_owned(),
            result: result.to_owned(),
            started_at: Some(now() - Duration::days(2)),
            ended_at: Some(now() - Duration::days(2) + Duration::minutes(4)),
        }
    }

    fn connector(name: &str, kind: ConnectorKind) -> ConnectorState {
        let ad = kind == ConnectorKind::ActiveDirectory;
        ConnectorState {
            name: name.to_owned(),
            kind,
            identifier: None,
            created_at: Some(now() - Duration::days(400)),
            writeback_enabled: (kind == ConnectorKind::EntraId).then_some(true),
            only_use_preferred_dcs: ad.then_some(true),
            preferred_dcs: if ad { vec!["dc01.corp.example".to_owned()] } else { vec![] },
            last_dc: ad.then(|| "dc01.corp.example".to_owned()),
            sign_and_seal: ad.then_some(true),
            last_full_import: Some(run_summary("Full Import", "success")),
            last_full_sync: Some(run_summary("Full Synchronization", "success")),
            last_run: Some(run_summary("Delta Synchronization", "success")),
            partitions: if ad {
                vec![SyncedPartition {
                    dn: "DC=corp,DC=example".to_owned(),
                    inclusions: vec!["OU=Staff,DC=corp,DC=example".to_owned()],
                    exclusions: vec!["DC=corp,DC=example".to_owned()],
                }]
            } else {
                vec![]
            },
            runs_in_history: Some(12),
            remembered_full_import: None,
            remembered_full_sync: None,
            statistics: Some(ConnectorStatistics { total_connectors: Some(1_200) }),
        }
    }

    /// A healthy, current Connect server with writeback on.
    pub(crate) fn healthy_report(hostname: &str) -> ConnectServerReport {
        let set = |v| Some(RegistryDword::Set(v));
        ConnectServerReport {
            source: ConnectStateSource::Live,
            read_at: Some(now() - Duration::minutes(1)),
            hostname: Some(hostname.to_owned()),
            connect_version: Some("2.5.190.0".to_owned()),
            writeback_enabled: Some(true),
            staging_mode: Some(false),
            connectors: vec![
                connector("corp.example", ConnectorKind::ActiveDirectory),
                connector("contoso.onmicrosoft.com - AAD", ConnectorKind::EntraId),
            ],
            scheduler: Some(SchedulerState {
                sync_cycle_enabled: Some(true),
                scheduler_suspended: Some(false),
                staging_mode_enabled: Some(false),
                maintenance_enabled: Some(true),
                sync_cycle_in_progress: Some(false),
                next_sync_cycle_start: Some(now() + Duration::minutes(20)),
                effective_sync_interval_secs: Some(1800),
            }),
            adsync_service: Some(ServiceState {
                status: "Running".to_owned(),
                start_type: Some("Automatic".to_owned()),
            }),
            machine_role: Some("RoleMemberServer".to_owned()),
            auto_upgrade: Some("Enabled".to_owned()),
            os_caption: Some("Microsoft Windows Server 2022 Standard".to_owned()),
            os_build: Some(20348),
            tls12: Some(Tls12Settings {
                dotnet64_system_default_tls_versions: set(1),
                dotnet64_sch_use_strong_crypto: set(1),
                dotnet32_system_default_tls_versions: set(1),
                dotnet32_sch_use_strong_crypto: set(1),
                schannel_server_enabled: set(1),
                schannel_server_disabled_by_default: set(0),
                schannel_client_enabled: set(1),
                schannel_client_disabled_by_default: set(0),
            }),
            dotnet_release: set(533320),
            restrict_remote_sam: Some(RegistryString::Absent),
            cloud_sync_agent: Some(CloudSyncAgent { installed: false, version: None, service: None }),
            errors: vec![],
        }
    }

    pub(crate) fn healthy() -> ProbeOutput {
        ProbeOutput::ConnectServer(healthy_report("aadc01.corp.example"))
    }

    pub(crate) fn with(change: impl FnOnce(&mut ConnectServerReport)) -> ProbeOutput {
        let mut report = healthy_report("aadc01.corp.example");
        change(&mut report);
        ProbeOutput::ConnectServer(report)
    }

    fn one(output: ProbeOutput) -> crate::TenantFacts {
        site_with(vec![("connect", output)])
    }

    fn empty() -> ConnectServerReport {
        ConnectServerReport {
            source: ConnectStateSource::Export { path: "C:\\wbd\\connect.json".to_owned() },
            read_at: None,
            hostname: None,
            connect_version: None,
            writeback_enabled: None,
            staging_mode: None,
            connectors: vec![],
            scheduler: None,
            adsync_service: None,
            machine_role: None,
            auto_upgrade: None,
            os_caption: None,
            os_build: None,
            tls12: None,
            dotnet_release: None,
            restrict_remote_sam: None,
            cloud_sync_agent: None,
            errors: vec!["Get-ADSyncScheduler: access denied".to_owned()],
        }
    }

    fn unread() -> Fixture {
        Fixture::new("nothing read", one(ProbeOutput::ConnectServer(empty())), Expect::Unknown)
    }

    fn no_probe() -> Fixture {
        Fixture::new("no probe", site_with(vec![]), Expect::Unknown)
    }

    pub(crate) fn service_fixtures() -> Vec<Fixture> {
        let stopped = with(|r| {
            r.adsync_service = Some(ServiceState { status: "Stopped".to_owned(), start_type: None })
        });
        vec![
            Fixture::new("stopped", one(stopped), Expect::Fail(Severity::Critical)),
            Fixture::new("running", one(healthy()), Expect::Pass),
            unread(),
            no_probe(),
        ]
    }

    pub(crate) fn writeback_fixtures() -> Vec<Fixture> {
        let off = with(|r| {
            r.writeback_enabled = None;
            for c in &mut r.connectors {
                c.writeback_enabled = c.writeback_enabled.map(|_| false);
            }
        });
        vec![
            Fixture::new("off", one(off), Expect::Fail(Severity::Critical)),
            Fixture::new("on", one(healthy()), Expect::Pass),
            unread(),
            no_probe(),
        ]
    }

    pub(crate) fn staging_fixtures() -> Vec<Fixture> {
        let staging = || with(|r| r.staging_mode = Some(true));
        let standby = {
            let site = collector("site-a");
            let other = collector("site-b");
            let fact = |c: &crate::CollectorState, output| crate::FactInput {
                collector_id: c.id,
                subject: "connect".to_owned(),
                observed_at: now(),
                output,
            };
            let mut active = healthy_report("aadc02.corp.example");
            active.staging_mode = Some(false);
            tenant(
                vec![site.clone(), other.clone()],
                vec![fact(&site, staging()), fact(&other, ProbeOutput::ConnectServer(active))],
            )
        };
        vec![
            Fixture::new("only server is staging", one(staging()), Expect::Fail(Severity::Critical)),
            Fixture::new("active", one(healthy()), Expect::Pass),
            Fixture::new("standby beside an active server", standby, Expect::Pass),
            unread(),
            no_probe(),
        ]
    }

    pub(crate) fn two_active_servers() -> crate::TenantFacts {
        let a = collector("site-a");
        let b = collector("site-b");
        let fact = |c: &crate::CollectorState, host: &str| crate::FactInput {
            collector_id: c.id,
            subject: "connect".to_owned(),
            observed_at: now(),
            output: ProbeOutput::ConnectServer(healthy_report(host)),
        };
        tenant(
            vec![a.clone(), b.clone()],
            vec![fact(&a, "aadc01.corp.example"), fact(&b, "aadc02.corp.example")],
        )
    }

    pub(crate) fn single_fixtures() -> Vec<Fixture> {
        vec![
            Fixture::new("two active servers", two_active_servers(), Expect::Fail(Severity::Critical)),
            Fixture::new("one server", one(healthy()), Expect::Pass),
            unread(),
            no_probe(),
        ]
    }

    pub(crate) fn version_fixtures() -> Vec<Fixture> {
        let old = || with(|r| r.connect_version = Some("2.4.129.0".to_owned()));
        let mut after_deadline = one(old());
        after_deadline.now = floor_deadline() + Duration::days(1);
        vec![
            Fixture::new("below the floor", one(old()), Expect::Fail(Severity::High)),
            Fixture::new(
                "below the floor after the deadline",
                after_deadline,
                Expect::Fail(Severity::Critical),
            ),
            Fixture::new(
                "1.x",
                one(with(|r| r.connect_version = Some("1.6.4.0".to_owned()))),
                Expect::Fail(Severity::Critical),
            ),
            Fixture::new("current", one(healthy()), Expect::Pass),
            Fixture::new("a higher floor", one(healthy()), Expect::Fail(Severity::High))
                .with_param("min_version", json!("2.6.91.0")),
            Fixture::new(
                "unreadable",
                one(with(|r| r.connect_version = Some("unknown".to_owned()))),
                Expect::Unknown,
            ),
            unread(),
            no_probe(),
        ]
    }

    /// A fresh install: no full run, nothing joined in either connector space.
    pub(crate) fn never_fully_synced() -> ProbeOutput {
        with(|r| {
            for c in &mut r.connectors {
                c.last_full_import = None;
                c.last_full_sync = None;
                c.statistics = Some(ConnectorStatistics { total_connectors: Some(0) });
            }
        })
    }

    /// A server that has run for months: the history holds only the last delta runs.
    fn long_running(change: impl Fn(&mut ConnectorState)) -> ProbeOutput {
        with(|r| {
            for c in &mut r.connectors {
                c.last_full_import = None;
                c.last_full_sync = None;
                c.runs_in_history = Some(50);
                change(c);
            }
        })
    }

    pub(crate) fn full_sync_fixtures() -> Vec<Fixture> {
        let failed = with(|r| {
            r.connectors[0].last_full_sync = Some(run_summary("Full Synchronization", "stopped-server-down"))
        });
        let remembered = long_running(|c| {
            c.statistics = None;
            c.remembered_full_import = Some(run_summary("Full Import", "success"));
            c.remembered_full_sync = Some(run_summary("Full Synchronization", "completed-sync-errors"));
        });
        vec![
            Fixture::new("never fully synced", one(never_fully_synced()), Expect::Fail(Severity::Medium)),
            Fixture::new("full sync failed", one(failed), Expect::Fail(Severity::Medium)),
            Fixture::new("done", one(healthy()), Expect::Pass),
            Fixture::new("long-running, objects joined", one(long_running(|_| {})), Expect::Pass),
            Fixture::new("long-running, full runs remembered", one(remembered), Expect::Pass),
            Fixture::new(
                "long-running, nothing else known",
                one(long_running(|c| c.statistics = None)),
                Expect::Unknown,
            ),
            unread(),
            no_probe(),
        ]
    }

    pub(crate) fn tls12_fixtures() -> Vec<Fixture> {
        let off = with(|r| {
            if let Some(tls) = r.tls12.as_mut() {
                tls.dotnet64_sch_use_strong_crypto = Some(RegistryDword::Absent);
                tls.schannel_client_enabled = Some(RegistryDword::Set(0));
            }
        });
        vec![
            Fixture::new("strong crypto missing", one(off), Expect::Fail(Severity::Medium)),
            Fixture::new("set", one(healthy()), Expect::Pass),
            unread(),
            no_probe(),
        ]
    }

    pub(crate) fn dotnet_fixtures() -> Vec<Fixture> {
        vec![
            Fixture::new(
                "4.6.2",
                one(with(|r| r.dotnet_release = Some(RegistryDword::Set(394802)))),
                Expect::Fail(Severity::High),
            ),
            Fixture::new(
                "absent",
                one(with(|r| r.dotnet_release = Some(RegistryDword::Absent))),
                Expect::Fail(Severity::High),
            ),
            Fixture::new("4.8.1", one(healthy()), Expect::Pass),
            unread(),
            no_probe(),
        ]
    }

    pub(crate) fn scheduler_fixtures() -> Vec<Fixture> {
        let set = |enabled: bool, suspended: bool| {
            with(move |r| {
                if let Some(s) = r.scheduler.as_mut() {
                    s.sync_cycle_enabled = Some(enabled);
                    s.scheduler_suspended = Some(suspended);
                }
            })
        };
        vec![
            Fixture::new("cycle disabled", one(set(false, false)), Expect::Fail(Severity::Medium)),
            Fixture::new("suspended", one(set(true, true)), Expect::Fail(Severity::Medium)),
            Fixture::new("running", one(healthy()), Expect::Pass),
            unread(),
        ]
    }

    pub(crate) fn host_os_fixtures() -> Vec<Fixture> {
        let os = |caption: &str, build| {
            let caption = caption.to_owned();
            with(move |r| {
                r.os_caption = Some(caption);
                r.os_build = Some(build);
            })
        };
        vec![
            Fixture::new(
                "Windows Server 2025",
                one(os("Microsoft Windows Server 2025 Standard", 26100)),
                Expect::Fail(Severity::High),
            ),
            Fixture::new(
                "Windows Server 2012 R2",
                one(os("Microsoft Windows Server 2012 R2 Standard", 9600)),
                Expect::Fail(Severity::High),
            ),
            Fixture::new("Windows Server 2022", one(healthy()), Expect::Pass),
            Fixture::new(
                "2025 accepted",
                one(os("Microsoft Windows Server 2025 Standard", 26100)),
                Expect::Pass,
            )
            .with_param("supported_os_builds", json!(["20348", "26100"])),
            unread(),
        ]
    }

    pub(crate) fn remote_sam_fixtures() -> Vec<Fixture> {
        let sddl = |value: &str| {
            let value = value.to_owned();
            with(move |r| r.restrict_remote_sam = Some(RegistryString::Set(value)))
        };
        let ad = crate::rules::active_directory::tests::healthy();
        let allowed = "O:BAG:BAD:(A;;RC;;;BA)(A;;RC;;;S-1-5-21-1004336348-1177238915-682003330-1107)";
        vec![
            Fixture::new("admins only", one(sddl("O:BAG:BAD:(A;;RC;;;BA)")), Expect::Fail(Severity::Medium)),
            Fixture::new(
                "connector account allowed",
                site_with(vec![("connect", sddl(allowed)), ("corp.example", ad)]),
                Expect::Pass,
            ),
            Fixture::new(
                "not set",
                one(with(|r| r.restrict_remote_sam = Some(RegistryString::Absent))),
                Expect::Pass,
            ),
            unread(),
        ]
    }

    pub(crate) fn sign_seal_fixtures() -> Vec<Fixture> {
        let off = with(|r| r.connectors[0].sign_and_seal = Some(false));
        vec![
            Fixture::new("off", one(off), Expect::Fail(Severity::Medium)),
            Fixture::new("on", one(healthy()), Expect::Pass),
            unread(),
        ]
    }

    pub(crate) fn cloud_sync_fixtures() -> Vec<Fixture> {
        let agent = |version: &str| {
            let version = version.to_owned();
            with(move |r| {
                r.cloud_sync_agent = Some(CloudSyncAgent {
                    installed: true,
                    version: Some(version),
                    service: Some(ServiceState { status: "Running".to_owned(), start_type: None }),
                });
            })
        };
        let absent = with(|r| {
            r.cloud_sync_agent = Some(CloudSyncAgent { installed: false, version: None, service: None })
        });
        vec![
            Fixture::new("old agent", one(agent("1.1.587.0")), Expect::Fail(Severity::High)),
            Fixture::new("current agent", one(agent("1.1.1107.0")), Expect::Pass),
            Fixture::new("no agent", one(absent), Expect::NotApplicable),
            Fixture::new("not looked at", one(with(|r| r.cloud_sync_agent = None)), Expect::Unknown),
        ]
    }

    pub(crate) fn cloud_sync_running_fixtures() -> Vec<Fixture> {
        let agent = |status: &str| {
            let status = status.to_owned();
            with(move |r| {
                r.cloud_sync_agent = Some(CloudSyncAgent {
                    installed: true,
                    version: Some("1.1.1107.0".to_owned()),
                    service: Some(ServiceState { status, start_type: Some("Automatic".to_owned()) }),
                });
            })
        };
        vec![
            Fixture::new("stopped", one(agent("Stopped")), Expect::Fail(Severity::High)),
            Fixture::new("running", one(agent("Running")), Expect::Pass),
            Fixture::new("no agent", one(healthy()), Expect::NotApplicable),
            Fixture::new("not looked at", one(with(|r| r.cloud_sync_agent = None)), Expect::Unknown),
        ]
    }
}
