//! The Entra Connect server probe: the sync engine's configuration and health.
//!
//! Both ways in go through the same export format, `wbd-connect-state/1`, written by
//! `deploy/collector/Export-WbdConnectState.ps1`:
//! - on Windows (the collector runs on the Connect server) the probe runs that script itself
//!   (it is built into the binary) with Windows PowerShell and parses its stdout;
//! - anywhere, it parses a file an MSP produced by running the script by hand
//!   (`probes.connect_server.export_file`).
//!
//! The parser is lenient about how PowerShell renders values, because the file may come from
//! Windows PowerShell 5.1 or PowerShell 7, or be edited by hand: dates as ISO 8601 or
//! `/Date(ms)/`, booleans as `true` or `"True"`, a one-element list as a bare object, intervals
//! as `"00:30:00"` or a TimeSpan object. Anything it cannot read becomes an entry in `errors` and
//! leaves that fact unknown (`None`), never `false`.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Instant;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use wbd_wire::{
    CloudSyncAgent, ConnectServerReport, ConnectStateSource, ConnectorKind, ConnectorState,
    ConnectorStatistics, ProbeOutput, ProbeResult, RegistryDword, RegistryString, RunSummary, SchedulerState,
    ServiceState, SyncedPartition, Tls12Settings,
};

use super::event_log::decode_text;
use super::tls::millis;
use crate::config::{ConnectSettings, WindowsSource};
use crate::fsutil::{self, FileAccess};

/// The export format this build reads.
pub const EXPORT_SCHEMA: &str = "wbd-connect-state/1";
/// The export script, as shipped in `deploy/collector/`.
pub const EXPORT_SCRIPT: &str = include_str!("../../../deploy/collector/Export-WbdConnectState.ps1");

/// Parses an export. `Err` only when the text is not an export at all; missing or odd parts
/// are reported in `errors`.
pub fn parse_export(text: &str, source: ConnectStateSource) -> Result<ConnectServerReport, String> {
    let root: Value =
        serde_json::from_str(text.trim_start_matches('\u{feff}')).map_err(|e| format!("not JSON: {e}"))?;
    let Some(obj) = root.as_object() else {
        return Err("not a Connect state export (expected a JSON object)".to_owned());
    };
    match obj.get("schema").and_then(Value::as_str) {
        Some(EXPORT_SCHEMA) => {}
        Some(other) => {
            return Err(format!(
                "export schema `{other}` is not supported (this collector reads `{EXPORT_SCHEMA}`)"
            ));
        }
        None => return Err(format!("not a Connect state export (no \"schema\": \"{EXPORT_SCHEMA}\")")),
    }
    let mut errors: Vec<String> =
        one_or_many(obj.get("errors")).iter().filter_map(|v| v.as_str().map(str::to_owned)).collect();

    let global = obj.get("globalSettings");
    let global_str = |name: &str| global.and_then(|g| g.get(name)).and_then(text_of);
    let scheduler = obj.get("scheduler").filter(|v| v.is_object()).map(|s| SchedulerState {
        sync_cycle_enabled: flex_bool(s.get("syncCycleEnabled")),
        scheduler_suspended: flex_bool(s.get("schedulerSuspended")),
        staging_mode_enabled: flex_bool(s.get("stagingModeEnabled")),
        maintenance_enabled: flex_bool(s.get("maintenanceEnabled")),
        sync_cycle_in_progress: flex_bool(s.get("syncCycleInProgress")),
        next_sync_cycle_start: flex_time(s.get("nextSyncCycleStartTimeInUTC")),
        effective_sync_interval_secs: flex_duration_secs(s.get("currentlyEffectiveSyncCycleInterval")),
    });
    // Staging mode: the scheduler's flag, else the global setting.
    let staging_mode = scheduler
        .as_ref()
        .and_then(|s| s.staging_mode_enabled)
        .or_else(|| flex_bool(global.and_then(|g| g.get("Microsoft.Synchronize.StagingMode"))));

    let mut connectors = Vec::new();
    for (i, c) in one_or_many(obj.get("connectors")).into_iter().enumerate() {
        let Some(name) = c.get("name").and_then(text_of) else {
            errors.push(format!("connectors[{i}]: no name"));
            continue;
        };
        let type_name = c.get("connectorTypeName").and_then(text_of).unwrap_or_default();
        let sub_type = c.get("subType").and_then(text_of).unwrap_or_default();
        let kind = if type_name.eq_ignore_ascii_case("AD") {
            ConnectorKind::ActiveDirectory
        } else if sub_type.starts_with("Windows Azure Active Directory") || sub_type.contains("Entra") {
            ConnectorKind::EntraId
        } else {
            ConnectorKind::Other
        };
        let runs: Vec<RunSummary> = one_or_many(c.get("runs"))
            .into_iter()
            .filter_map(|r| {
                Some(RunSummary {
                    run_profile: r.get("runProfileName").and_then(text_of)?,
                    result: r.get("result").and_then(text_of).unwrap_or_else(|| "unknown".to_owned()),
                    started_at: flex_time(r.get("startDate")),
                    ended_at: flex_time(r.get("endDate")),
                })
            })
            .collect();
        let newest = |pred: &dyn Fn(&RunSummary) -> bool| {
            runs.iter().filter(|r| pred(r)).max_by_key(|r| r.ended_at.or(r.started_at)).cloned()
        };
        // The connector's own partition configuration, as Get-ADSyncServerConfiguration exports it.
        let configured = match c.get("maPartitionData").and_then(Value::as_str) {
            Some(xml) => match parse_partition_data(xml) {
                Ok(data) => Some(data),
                Err(e) => {
                    errors.push(format!("connectors[{i}].maPartitionData: {e}"));
                    None
                }
            },
            None => None,
        };
        let only_use_preferred = c.get("onlyUsePreferredDcs");
        let only_use_preferred_dcs = flex_bool(only_use_preferred)
            .or_else(|| configured.as_ref().and_then(|d| d.only_use_preferred_dcs));
        if flex_bool(only_use_preferred).is_none()
            && let Some(v) = only_use_preferred.filter(|v| !v.is_null())
        {
            errors.push(format!("connectors[{i}].onlyUsePreferredDcs: unreadable value {v}"));
        }
        let listed: Vec<String> =
            one_or_many(c.get("preferredDcs")).iter().filter_map(|v| text_of(v)).collect();
        let preferred_dcs = match &configured {
            Some(data) if listed.is_empty() => data.preferred_dcs.clone(),
            _ => listed,
        };
        let runs_in_history = match c.get("runs") {
            Some(Value::Null) | None => None,
            Some(_) => u32::try_from(runs.len()).ok(),
        };
        connectors.push(ConnectorState {
            name,
            kind,
            identifier: c.get("identifier").and_then(text_of),
            created_at: flex_time(c.get("creationTime")),
            writeback_enabled: flex_bool(c.get("passwordResetEnabled")),
            only_use_preferred_dcs,
            preferred_dcs,
            last_dc: c
                .get("lastDc")
                .and_then(text_of)
                .or_else(|| configured.as_ref().and_then(|d| d.last_dc.clone())),
            sign_and_seal: flex_bool(c.get("signAndSeal"))
                .or_else(|| configured.as_ref().and_then(|d| d.sign_and_seal)),
            partitions: configured.map(|d| d.partitions).unwrap_or_default(),
            last_full_import: newest(&|r| is_full_import(r)),
            last_full_sync: newest(&|r| is_full_sync(r)),
            last_run: newest(&|_| true),
            runs_in_history,
            // What this history shows; the prober adds what earlier runs showed.
            remembered_full_import: newest_success(&runs, is_full_import),
            remembered_full_sync: newest_success(&runs, is_full_sync),
            statistics: c.get("statistics").filter(|v| !v.is_null()).map(|v| ConnectorStatistics {
                total_connectors: v
                    .get("totalConnectors")
                    .or_else(|| v.get("TotalConnectors"))
                    .and_then(|n| n.as_u64().or_else(|| n.as_str().and_then(|s| s.trim().parse().ok()))),
            }),
        });
    }
    // Writeback is a property of the Entra connector; unknown unless one said so.
    let entra: Vec<Option<bool>> =
        connectors.iter().filter(|c| c.kind == ConnectorKind::EntraId).map(|c| c.writeback_enabled).collect();
    let writeback_enabled = if entra.contains(&Some(true)) {
        Some(true)
    } else if !entra.is_empty() && entra.iter().all(|w| *w == Some(false)) {
        Some(false)
    } else {
        None
    };

    let registry = obj.get("registry");
    let reg = |path: &[&str]| {
        let mut v = registry;
        for key in path {
            v = v.and_then(|x| x.get(*key));
        }
        v
    };
    let tls12 = reg(&["tls12"]).filter(|v| v.is_object()).map(|_| Tls12Settings {
        dotnet64_system_default_tls_versions: reg_dword(reg(&["tls12", "dotnet64SystemDefaultTlsVersions"])),
        dotnet64_sch_use_strong_crypto: reg_dword(reg(&["tls12", "dotnet64SchUseStrongCrypto"])),
        dotnet32_system_default_tls_versions: reg_dword(reg(&["tls12", "dotnet32SystemDefaultTlsVersions"])),
        dotnet32_sch_use_strong_crypto: reg_dword(reg(&["tls12", "dotnet32SchUseStrongCrypto"])),
        schannel_server_enabled: reg_dword(reg(&["tls12", "serverEnabled"])),
        schannel_server_disabled_by_default: reg_dword(reg(&["tls12", "serverDisabledByDefault"])),
        schannel_client_enabled: reg_dword(reg(&["tls12", "clientEnabled"])),
        schannel_client_disabled_by_default: reg_dword(reg(&["tls12", "clientDisabledByDefault"])),
    });

    Ok(ConnectServerReport {
        source,
        read_at: flex_time(obj.get("exportedAt")),
        hostname: obj.get("computerName").and_then(text_of),
        connect_version: obj.get("connectVersion").and_then(text_of),
        writeback_enabled,
        staging_mode,
        connectors,
        scheduler,
        adsync_service: service(obj.get("adsyncService")),
        machine_role: global_str("Microsoft.SystemInformation.MachineRole"),
        auto_upgrade: obj.get("autoUpgrade").and_then(text_of),
        os_caption: obj.get("os").and_then(|o| o.get("caption")).and_then(text_of),
        os_build: obj
            .get("os")
            .and_then(|o| o.get("buildNumber"))
            .and_then(|b| b.as_u64().or_else(|| b.as_str().and_then(|s| s.trim().parse().ok())))
            .and_then(|b| u32::try_from(b).ok()),
        tls12,
        dotnet_release: reg_dword(reg(&["netFrameworkRelease"])),
        restrict_remote_sam: reg_string(reg(&["restrictRemoteSam"])),
        cloud_sync_agent: obj.get("cloudSyncAgent").filter(|v| v.is_object()).and_then(|a| {
            Some(CloudSyncAgent {
                installed: flex_bool(a.get("installed"))?,
                version: a.get("version").and_then(text_of),
                service: service(a.get("service")),
            })
        }),
        errors,
    })
}

/// What an AD connector's `<ma-partition-data>` says (the connector XML that
/// `Get-ADSyncServerConfiguration` writes, which the export script passes on as it is).
#[derive(Debug, Default, PartialEq)]
pub struct PartitionData {
    /// The selected partitions and their container filters.
    pub partitions: Vec<SyncedPartition>,
    /// `dc-failover` of the domain partition: `0` when "Only use preferred domain controllers"
    /// is ticked (`1`: Connect may fail over to other DCs).
    pub only_use_preferred_dcs: Option<bool>,
    pub preferred_dcs: Vec<String>,
    pub last_dc: Option<String>,
    pub sign_and_seal: Option<bool>,
}

/// Reads `<ma-partition-data>`: for each selected partition its DN (`custom-data/
/// adma-partition-data/dn`, else `name`), `filter/containers/inclusions|exclusions`, and from the
/// domain partition (`is-domain` 1, else the first selected one) `preferred-dcs`, `dc-failover`,
/// `last-dc` and `sign-and-seal`.
pub fn parse_partition_data(xml: &str) -> Result<PartitionData, String> {
    let doc = roxmltree::Document::parse(xml).map_err(|e| format!("not XML: {e}"))?;
    let root = doc.root_element();
    let holder = if root.has_tag_name("ma-partition-data") {
        root
    } else {
        root.descendants()
            .find(|n| n.has_tag_name("ma-partition-data"))
            .ok_or("no <ma-partition-data> element")?
    };
    let mut data = PartitionData::default();
    let mut domain: Option<roxmltree::Node<'_, '_>> = None;
    for partition in holder.children().filter(|n| n.has_tag_name("partition")) {
        if text_at(partition, &["selected"]).as_deref() != Some("1") {
            continue;
        }
        let adma = |path: &[&str]| {
            let mut full = vec!["custom-data", "adma-partition-data"];
            full.extend_from_slice(path);
            text_at(partition, &full)
        };
        let Some(dn) = adma(&["dn"]).or_else(|| text_at(partition, &["name"])) else { continue };
        let containers = |kind: &str| {
            child(partition, "filter").and_then(|f| child(f, "containers")).and_then(|c| child(c, kind))
        };
        data.partitions.push(SyncedPartition {
            dn,
            inclusions: texts_of(containers("inclusions"), "inclusion"),
            exclusions: texts_of(containers("exclusions"), "exclusion"),
        });
        if domain.is_none() || adma(&["is-domain"]).as_deref() == Some("1") {
            domain = Some(partition);
        }
    }
    if let Some(partition) = domain {
        let adma = |name: &str| text_at(partition, &["custom-data", "adma-partition-data", name]);
        data.only_use_preferred_dcs = adma("dc-failover").map(|v| v == "0");
        data.last_dc = adma("last-dc");
        data.sign_and_seal = adma("sign-and-seal").map(|v| v == "1");
        let preferred = child(partition, "custom-data")
            .and_then(|c| child(c, "adma-partition-data"))
            .and_then(|a| child(a, "preferred-dcs"));
        data.preferred_dcs = texts_of(preferred, "preferred-dc");
    }
    Ok(data)
}

fn child<'a, 'i>(node: roxmltree::Node<'a, 'i>, name: &str) -> Option<roxmltree::Node<'a, 'i>> {
    node.children().find(|c| c.has_tag_name(name))
}

/// The trimmed, non-empty text at `path` below `node`.
fn text_at(node: roxmltree::Node<'_, '_>, path: &[&str]) -> Option<String> {
    let mut at = Some(node);
    for step in path {
        at = at.and_then(|a| child(a, step));
    }
    at.and_then(|a| a.text()).map(str::trim).filter(|t| !t.is_empty()).map(str::to_owned)
}

/// The texts of the `item` children of `list`.
fn texts_of(list: Option<roxmltree::Node<'_, '_>>, item: &str) -> Vec<String> {
    list.into_iter()
        .flat_map(|l| l.children().filter(|n| n.has_tag_name(item)).collect::<Vec<_>>())
        .filter_map(|n| n.text().map(str::trim).filter(|t| !t.is_empty()).map(str::to_owned))
        .collect()
}

fn is_full_import(run: &RunSummary) -> bool {
    run.run_profile.eq_ignore_ascii_case("Full Import")
}

fn is_full_sync(run: &RunSummary) -> bool {
    run.run_profile.eq_ignore_ascii_case("Full Synchronization")
        || run.run_profile.eq_ignore_ascii_case("Full Sync")
}

fn run_time(run: &RunSummary) -> Option<DateTime<Utc>> {
    run.ended_at.or(run.started_at)
}

fn newest_success(runs: &[RunSummary], kind: fn(&RunSummary) -> bool) -> Option<RunSummary> {
    runs.iter().filter(|r| kind(r) && r.succeeded()).max_by_key(|r| run_time(r)).cloned()
}

/// The newest successful full runs seen per connector, kept across runs in the state directory
/// (`<state_dir>/probes/connect_server.json`): the export's history holds only the last runs,
/// and the sync engine purges older ones, so on a server that has run for a while the full
/// import and full sync of its set-up are gone from it.
#[derive(Debug, Default, Serialize, Deserialize)]
struct FullRunMemory {
    /// By connector identifier (else name), lower case.
    #[serde(default)]
    connectors: BTreeMap<String, RememberedRuns>,
}

#[derive(Debug, Default, Clone, Serialize, Deserialize)]
struct RememberedRuns {
    #[serde(default)]
    full_import: Option<RunSummary>,
    #[serde(default)]
    full_sync: Option<RunSummary>,
}

fn newer(a: Option<RunSummary>, b: Option<RunSummary>) -> Option<RunSummary> {
    match (a, b) {
        (Some(a), Some(b)) => Some(if run_time(&b) > run_time(&a) { b } else { a }),
        (a, b) => a.or(b),
    }
}

impl FullRunMemory {
    /// Adds what `report` shows and fills its connectors' `remembered_*` with what is known.
    fn merge(&mut self, report: &mut ConnectServerReport) {
        for c in &mut report.connectors {
            let key = c.identifier.clone().unwrap_or_else(|| c.name.clone()).to_ascii_lowercase();
            let kept = self.connectors.entry(key).or_default();
            kept.full_import = newer(kept.full_import.take(), c.remembered_full_import.take());
            kept.full_sync = newer(kept.full_sync.take(), c.remembered_full_sync.take());
            c.remembered_full_import = kept.full_import.clone();
            c.remembered_full_sync = kept.full_sync.clone();
        }
    }
}

/// A list, a bare object standing for a one-element list (PowerShell 5.1), or nothing.
fn one_or_many(v: Option<&Value>) -> Vec<&Value> {
    match v {
        Some(Value::Array(items)) => items.iter().filter(|i| !i.is_null()).collect(),
        Some(Value::Null) | None => Vec::new(),
        Some(other) => vec![other],
    }
}

fn text_of(v: &Value) -> Option<String> {
    match v {
        Value::String(s) if !s.trim().is_empty() => Some(s.trim().to_owned()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

fn flex_bool(v: Option<&Value>) -> Option<bool> {
    match v? {
        Value::Bool(b) => Some(*b),
        Value::Number(n) => n.as_i64().map(|n| n != 0),
        Value::String(s) => match s.trim().to_ascii_lowercase().as_str() {
            "true" | "1" | "yes" => Some(true),
            "false" | "0" | "no" => Some(false),
            _ => None,
        },
        _ => None,
    }
}

/// ISO 8601 (with or without offset; without one it is UTC) or `/Date(ms)/`.
fn flex_time(v: Option<&Value>) -> Option<DateTime<Utc>> {
    let s = v?.as_str()?.trim();
    if let Some(inner) = s.strip_prefix("/Date(").and_then(|r| r.strip_suffix(")/")) {
        // `/Date(1732093200000)/` or `/Date(1732093200000+0100)/`: the milliseconds are UTC.
        let digits: String = inner
            .chars()
            .enumerate()
            .take_while(|(i, c)| c.is_ascii_digit() || (*i == 0 && *c == '-'))
            .map(|(_, c)| c)
            .collect();
        return DateTime::from_timestamp_millis(digits.parse().ok()?);
    }
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Some(t.with_timezone(&Utc));
    }
    chrono::NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S%.f").ok().map(|n| n.and_utc())
}

/// `"00:30:00"`, `"1.00:00:00"`, a TimeSpan object (`TotalSeconds`), or seconds; unknown when
/// the export's numbers do not make a count of seconds (negative, or past `u64`).
fn flex_duration_secs(v: Option<&Value>) -> Option<u64> {
    match v? {
        Value::Number(n) => n.as_u64(),
        Value::Object(o) => o.get("TotalSeconds").and_then(Value::as_f64).and_then(whole_secs),
        Value::String(s) => {
            let s = s.trim();
            let (days, rest) = match s.split_once('.') {
                Some((d, r)) if r.contains(':') && !d.contains(':') => (d.parse::<u64>().ok()?, r),
                _ => (0, s),
            };
            let parts: Vec<&str> = rest.split(':').collect();
            let [h, m, sec] = parts.as_slice() else { return None };
            let sec = whole_secs(sec.parse().ok()?)?;
            days.checked_mul(86_400)?
                .checked_add(h.parse::<u64>().ok()?.checked_mul(3_600)?)?
                .checked_add(m.parse::<u64>().ok()?.checked_mul(60)?)?
                .checked_add(sec)
        }
        _ => None,
    }
}

/// Whole seconds of a finite, non-negative number that fits in `u64`.
fn whole_secs(secs: f64) -> Option<u64> {
    // `u64::MAX as f64` is 2^64, one past the largest u64: below it, the cast is exact enough.
    (secs.is_finite() && secs >= 0.0 && secs < u64::MAX as f64).then_some(secs as u64)
}

fn service(v: Option<&Value>) -> Option<ServiceState> {
    let v = v.filter(|v| v.is_object())?;
    // ServiceControllerStatus as a number when a script forgot `.ToString()`.
    let status = match v.get("status")? {
        Value::Number(n) => match n.as_u64()? {
            1 => "Stopped",
            2 => "StartPending",
            3 => "StopPending",
            4 => "Running",
            5 => "ContinuePending",
            6 => "PausePending",
            7 => "Paused",
            _ => return None,
        }
        .to_owned(),
        other => text_of(other)?,
    };
    Some(ServiceState { status, start_type: v.get("startType").and_then(text_of) })
}

fn reg_dword(v: Option<&Value>) -> Option<RegistryDword> {
    let v = v?;
    match v.get("state").and_then(Value::as_str)? {
        "absent" => Some(RegistryDword::Absent),
        "set" => {
            let value = v.get("value")?;
            let n = value.as_u64().or_else(|| value.as_str().and_then(parse_dword_text))?;
            u32::try_from(n).ok().map(RegistryDword::Set)
        }
        _ => None,
    }
}

fn parse_dword_text(s: &str) -> Option<u64> {
    let s = s.trim();
    match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        Some(hex) => u64::from_str_radix(hex, 16).ok(),
        None => s.parse().ok(),
    }
}

fn reg_string(v: Option<&Value>) -> Option<RegistryString> {
    let v = v?;
    match v.get("state").and_then(Value::as_str)? {
        "absent" => Some(RegistryString::Absent),
        "set" => v.get("value").and_then(text_of).map(RegistryString::Set),
        _ => None,
    }
}

/// Runs the Connect server probe.
#[derive(Debug, Clone)]
pub struct ConnectServerProber {
    settings: ConnectSettings,
    /// Where the live mode writes the script before running it (Windows).
    work_dir: std::path::PathBuf,
    /// Where the full runs seen so far are kept (`None`: nothing is remembered, as in
    /// `probe --once`).
    memory_path: Option<std::path::PathBuf>,
}

impl ConnectServerProber {
    pub fn new(settings: ConnectSettings, work_dir: std::path::PathBuf) -> Self {
        ConnectServerProber { settings, work_dir, memory_path: None }
    }

    /// Keeps the newest full import and full sync seen per connector in `path`, so that they
    /// are still known after the sync engine purged them from its run history.
    pub fn remembering_in(mut self, path: std::path::PathBuf) -> Self {
        self.memory_path = Some(path);
        self
    }

    fn remember(&self, report: &mut ConnectServerReport) {
        let Some(path) = &self.memory_path else { return };
        let mut memory: FullRunMemory = match fsutil::read_optional(path) {
            Ok(Some(bytes)) => serde_json::from_slice(&bytes).unwrap_or_else(|e| {
                tracing::warn!(path = %path.display(), error = %e, "the Connect full-run memory is unreadable; starting over");
                FullRunMemory::default()
            }),
            Ok(None) => FullRunMemory::default(),
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "cannot read the Connect full-run memory");
                FullRunMemory::default()
            }
        };
        memory.merge(report);
        let written = serde_json::to_vec_pretty(&memory).map_err(std::io::Error::other).and_then(|bytes| {
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir)?;
            }
            fsutil::write_atomic(path, &bytes, FileAccess::Default)
        });
        if let Err(e) = written {
            tracing::warn!(path = %path.display(), error = %e, "cannot save the Connect full-run memory");
        }
    }

    fn source(&self) -> ConnectStateSource {
        match &self.settings.source {
            WindowsSource::Export(path) => ConnectStateSource::Export { path: path.display().to_string() },
            WindowsSource::Live => ConnectStateSource::Live,
        }
    }

    /// Reads the Connect server state (the export file, or live on Windows) without remembering
    /// anything; the Active Directory probe reads the synced containers this way.
    pub async fn read_state(&self) -> Result<ConnectServerReport, String> {
        let read = match &self.settings.source {
            WindowsSource::Export(path) => read_export_file(path).await,
            WindowsSource::Live => read_live(&self.work_dir, self.settings.timeout).await,
        };
        read.and_then(|text| parse_export(&text, self.source()))
    }

    #[tracing::instrument(skip_all)]
    pub async fn probe(&self) -> ProbeResult {
        let observed_at = Utc::now();
        let started = Instant::now();
        let report = match self.read_state().await {
            Ok(mut report) => {
                self.remember(&mut report);
                report
            }
            Err(error) => {
                tracing::info!(%error, "Connect server probe failed");
                unknown_report(self.source(), error)
            }
        };
        let subject =
            format!("connect-server:{}", report.hostname.clone().unwrap_or_else(|| "unknown".to_owned()));
        ProbeResult {
            subject,
            observed_at,
            duration_ms: millis(started.elapsed()),
            output: ProbeOutput::ConnectServer(report),
        }
    }
}

/// A report that knows nothing but why.
fn unknown_report(source: ConnectStateSource, error: String) -> ConnectServerReport {
    ConnectServerReport {
        source,
        read_at: None,
        hostname: None,
        connect_version: None,
        writeback_enabled: None,
        staging_mode: None,
        connectors: Vec::new(),
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
        errors: vec![error],
    }
}

async fn read_export_file(path: &Path) -> Result<String, String> {
    let bytes = tokio::fs::read(path).await.map_err(|e| {
        format!(
            "cannot read the Connect state export {} (probes.connect_server.export_file): {e}",
            path.display()
        )
    })?;
    Ok(decode_text(&bytes))
}

#[cfg(windows)]
async fn read_live(work_dir: &Path, limit: std::time::Duration) -> Result<String, String> {
    let script = work_dir.join("Export-WbdConnectState.ps1");
    tokio::fs::create_dir_all(work_dir)
        .await
        .map_err(|e| format!("cannot create {}: {e}", work_dir.display()))?;
    // Written with a BOM so Windows PowerShell 5.1 reads it as UTF-8.
    let mut bytes = vec![0xEF, 0xBB, 0xBF];
    bytes.extend_from_slice(EXPORT_SCRIPT.as_bytes());
    tokio::fs::write(&script, bytes).await.map_err(|e| format!("cannot write {}: {e}", script.display()))?;
    let run = tokio::process::Command::new("powershell.exe")
        .args(["-NoProfile", "-NonInteractive", "-ExecutionPolicy", "Bypass", "-File"])
        .arg(&script)
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(limit, run)
        .await
        .map_err(|_| {
            format!(
                "the export script did not finish within {}s (probes.connect_server.timeout_secs)",
                limit.as_secs()
            )
        })?
        .map_err(|e| format!("cannot run powershell.exe: {e}"))?;
    if !output.status.success() {
        return Err(format!("the export script failed: {}", decode_text(&output.stderr).trim()));
    }
    Ok(decode_text(&output.stdout))
}

#[cfg(not(windows))]
async fn read_live(_work_dir: &Path, _limit: std::time::Duration) -> Result<String, String> {
    Err("the live Connect server state can only be read on Windows; set probes.connect_server.export_file"
        .to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_duration_too_long_to_count_is_unknown_rather_than_a_crash() {
        // Found by the fuzz target `connect_export`: each part fits, their sum in seconds does not.
        for text in ["213503982334602.00:00:00", "0.5124095576030432:00:00", "00:307445734561825861:00"] {
            assert_eq!(flex_duration_secs(Some(&Value::from(text))), None, "{text}");
        }
        assert_eq!(flex_duration_secs(Some(&Value::from("00:00:1e300"))), None);
        assert_eq!(flex_duration_secs(Some(&Value::from("00:00:-5"))), None);
        assert_eq!(flex_duration_secs(Some(&serde_json::json!({"TotalSeconds": 1e300}))), None);
        assert_eq!(flex_duration_secs(Some(&Value::from("10675199.02:48:05"))), Some(922_337_203_685));
        let export = r#"{"schema": "wbd-connect-state/1", "scheduler": {"syncCycleEnabled": true,
            "currentlyEffectiveSyncCycleInterval": "213503982334602.00:00:00"}}"#;
        let report =
            parse_export(export, ConnectStateSource::Export { path: "x.json".into() }).expect("still read");
        let scheduler = report.scheduler.expect("a scheduler");
        assert_eq!(
            (scheduler.sync_cycle_enabled, scheduler.effective_sync_interval_secs),
            (Some(true), None)
        );
    }

    #[test]
    fn powershell_value_shapes_are_understood() {
        assert_eq!(flex_bool(Some(&Value::from("True"))), Some(true));
        assert_eq!(flex_bool(Some(&Value::from("maybe"))), None);
        assert_eq!(flex_duration_secs(Some(&Value::from("00:30:00"))), Some(1_800));
        assert_eq!(flex_duration_secs(Some(&Value::from("1.02:00:00"))), Some(93_600));
        assert_eq!(
            flex_duration_secs(Some(
                &serde_json::json!({"Ticks": 18_000_000_000u64, "TotalSeconds": 1800.0})
            )),
            Some(1_800)
        );
        assert_eq!(
            flex_time(Some(&Value::from("/Date(1732093200000)/"))),
            DateTime::from_timestamp(1_732_093_200, 0)
        );
        assert_eq!(
            flex_time(Some(&Value::from("2024-11-20T09:00:00.000Z"))),
            DateTime::from_timestamp(1_732_093_200, 0)
        );
        assert_eq!(
            flex_time(Some(&Value::from("2024-11-20T09:00:00"))),
            DateTime::from_timestamp(1_732_093_200, 0)
        );
        assert_eq!(
            reg_dword(Some(&serde_json::json!({"state": "set", "value": "0x1"}))),
            Some(RegistryDword::Set(1))
        );
    }

    #[test]
    fn foreign_json_is_refused_with_the_reason() {
        let source = ConnectStateSource::Live;
        assert!(parse_export("[]", source.clone()).unwrap_err().contains("JSON object"));
        assert!(parse_export("{}", source.clone()).unwrap_err().contains("wbd-connect-state/1"));
        assert!(
            parse_export(r#"{"schema":"wbd-connect-state/9"}"#, source)
                .unwrap_err()
                .contains("not supported")
        );
    }

    #[test]
    fn the_shipped_script_writes_the_schema_this_parser_reads() {
        assert!(EXPORT_SCRIPT.contains(&format!("schema       = '{EXPORT_SCHEMA}'")));
        // The keys this parser reads for the partition configuration and the statistics.
        for key in [
            "$entry.maPartitionData",
            "$entry.statistics",
            "totalConnectors",
            "Get-ADSyncConnectorStatistics",
        ] {
            assert!(EXPORT_SCRIPT.contains(key), "{key}");
        }
    }

    #[test]
    fn partition_data_gives_the_synced_containers_and_the_dc_choice() {
        let xml = "<ma-partition-data>\
            <partition><name>DC=a,DC=example</name><selected>1</selected>\
              <filter><containers><exclusions/><inclusions><inclusion>DC=a,DC=example</inclusion></inclusions></containers></filter>\
              <custom-data><adma-partition-data><dn>DC=a,DC=example</dn><is-domain>1</is-domain>\
                <sign-and-seal>0</sign-and-seal><dc-failover>1</dc-failover><last-dc>dc9.a.example</last-dc>\
              </adma-partition-data></custom-data></partition>\
            <partition><name>DC=DomainDnsZones,DC=a,DC=example</name><selected>0</selected></partition>\
          </ma-partition-data>";
        let data = parse_partition_data(xml).unwrap();
        assert_eq!(data.partitions.len(), 1, "unselected partitions are not synced");
        assert_eq!(data.partitions[0].inclusions, vec!["DC=a,DC=example"]);
        assert!(data.partitions[0].exclusions.is_empty());
        assert_eq!(data.only_use_preferred_dcs, Some(false), "dc-failover 1: other DCs may be used");
        assert_eq!((data.sign_and_seal, data.last_dc.as_deref()), (Some(false), Some("dc9.a.example")));
        assert!(data.preferred_dcs.is_empty());
        // Inside a whole exported connector file, too; and not XML at all says so.
        let wrapped = format!("<ma-data><name>x</name>{xml}</ma-data>");
        assert_eq!(parse_partition_data(&wrapped).unwrap(), data);
        assert!(parse_partition_data("{").unwrap_err().contains("not XML"));
    }
}
