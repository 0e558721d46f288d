//! The Windows-side probes fed the files an MSP exports: Connect server state written by
//! `Export-WbdConnectState.ps1` (PowerShell 7 and 5.1 renderings, and a machine without
//! Connect), and Application-log events as Event Viewer and `wevtutil` write them.

use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::{DateTime, Utc};
use wbd_collector::config::{ConnectSettings, EventLogSettings, Schedule, WindowsSource};
use wbd_collector::probe::{ConnectServerProber, EventLogProber};
use wbd_wire::{
    ConnectServerReport, ConnectorKind, EventLevel, EventLogReport, EventLogSource, ProbeOutput,
    RegistryDword, RegistryString,
};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name)
}

fn schedule() -> Schedule {
    Schedule { enabled: true, interval: Duration::from_secs(300), jitter_percent: 0 }
}

fn at(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

async fn connect(path: PathBuf) -> (String, ConnectServerReport) {
    let settings = ConnectSettings {
        schedule: schedule(),
        source: WindowsSource::Export(path),
        timeout: Duration::from_secs(5),
    };
    let result = ConnectServerProber::new(settings, std::env::temp_dir()).probe().await;
    match result.output {
        ProbeOutput::ConnectServer(report) => (result.subject, report),
        other => panic!("connect server result expected, got {other:?}"),
    }
}

#[tokio::test]
async fn a_healthy_server_exported_by_powershell_7() {
    let (subject, r) = connect(fixture("connect/healthy-ps7.json")).await;

    assert_eq!(subject, "connect-server:AADC01");
    assert!(r.errors.is_empty(), "{:?}", r.errors);
    assert_eq!(r.connect_version.as_deref(), Some("2.5.79.0"));
    assert_eq!((r.writeback_enabled, r.staging_mode), (Some(true), Some(false)));
    assert_eq!(r.adsync_service.as_ref().unwrap().status, "Running");
    assert_eq!(r.machine_role.as_deref(), Some("RoleMemberServer"));
    assert_eq!(r.os_build, Some(20_348));
    assert_eq!(r.dotnet_release, Some(RegistryDword::Set(528_449)));
    assert_eq!(r.restrict_remote_sam, Some(RegistryString::Absent));
    let tls = r.tls12.as_ref().unwrap();
    assert_eq!(tls.schannel_client_disabled_by_default, Some(RegistryDword::Set(0)));
    let scheduler = r.scheduler.as_ref().unwrap();
    assert_eq!(scheduler.effective_sync_interval_secs, Some(1_800));
    assert_eq!(scheduler.next_sync_cycle_start, Some(at("2026-11-20T09:52:40Z")));

    let ad = &r.connectors[0];
    assert_eq!(
        (ad.kind, ad.preferred_dcs.as_slice()),
        (ConnectorKind::ActiveDirectory, ["DC01.corp.contoso.com".to_owned()].as_slice())
    );
    assert_eq!(ad.sign_and_seal, Some(true));
    assert_eq!(ad.only_use_preferred_dcs, None, "the export does not know it, so it is unknown");
    // The newest run of each profile, not the first listed.
    let import = ad.last_full_import.as_ref().unwrap();
    assert_eq!((import.result.as_str(), import.ended_at), ("success", Some(at("2026-11-02T03:14:21Z"))));
    let sync = ad.last_full_sync.as_ref().unwrap();
    assert_eq!(sync.result, "completed-sync-errors");
    assert!(sync.succeeded());
    assert_eq!(ad.last_run.as_ref().unwrap().run_profile, "Delta Synchronization");
    let entra = &r.connectors[1];
    assert_eq!((entra.kind, entra.writeback_enabled), (ConnectorKind::EntraId, Some(true)));
}

#[tokio::test]
async fn a_staging_server_exported_by_windows_powershell_5_1() {
    let (subject, r) = connect(fixture("connect/staging-ps51.json")).await;

    assert_eq!(subject, "connect-server:AADC02");
    assert_eq!(r.read_at, Some(at("2026-11-20T09:10:12.417Z")));
    assert_eq!((r.writeback_enabled, r.staging_mode), (Some(false), Some(true)));
    // ServiceControllerStatus 4, rendered as a number.
    assert_eq!(r.adsync_service.as_ref().unwrap().status, "Running");
    let scheduler = r.scheduler.as_ref().unwrap();
    assert_eq!((scheduler.sync_cycle_enabled, scheduler.scheduler_suspended), (Some(true), Some(true)));
    assert_eq!(scheduler.effective_sync_interval_secs, Some(1_800), "a TimeSpan object");
    assert_eq!(r.auto_upgrade.as_deref(), Some("Suspended"));
    assert_eq!(r.machine_role.as_deref(), Some("RolePrimaryDomainController"));
    assert_eq!(r.dotnet_release, Some(RegistryDword::Set(461_814)));
    assert_eq!(r.restrict_remote_sam, Some(RegistryString::Set("O:BAG:BAD:(A;;RC;;;BA)".into())));
    let tls = r.tls12.as_ref().unwrap();
    assert_eq!(tls.dotnet64_system_default_tls_versions, Some(RegistryDword::Absent));
    assert_eq!(tls.schannel_client_enabled, Some(RegistryDword::Set(0)));
    // One connector, rendered as a bare object; one run, likewise.
    assert_eq!(r.connectors.len(), 1);
    let c = &r.connectors[0];
    assert_eq!(c.created_at, DateTime::from_timestamp(1_600_000_000, 0));
    let import = c.last_full_import.as_ref().unwrap();
    assert!(!import.succeeded());
    assert_eq!(import.ended_at, Some(at("2026-11-20T07:34:20Z")));
    assert_eq!(c.last_full_sync, None);
    let agent = r.cloud_sync_agent.as_ref().unwrap();
    assert_eq!((agent.installed, agent.version.as_deref()), (true, Some("1.1.1107.0")));
    // The script's own error and the unreadable hand-edited value are both reported.
    assert_eq!(r.errors.len(), 2, "{:?}", r.errors);
    assert!(r.errors[0].contains("Get-ADSyncRunProfileResult"));
    assert!(r.errors[1].contains("onlyUsePreferredDcs"));
}

#[tokio::test]
async fn a_machine_without_connect_and_files_that_are_no_export() {
    let (subject, r) = connect(fixture("connect/not-installed.json")).await;
    assert_eq!(subject, "connect-server:FILESRV01");
    assert_eq!(r.adsync_service.as_ref().unwrap().status, "NotInstalled");
    assert_eq!((r.connect_version.as_ref(), r.writeback_enabled, r.staging_mode), (None, None, None));
    assert!(r.connectors.is_empty());
    assert_eq!(r.tls12.as_ref().unwrap().schannel_server_enabled, None);
    assert_eq!(r.errors.len(), 2);

    let (_, missing) = connect(fixture("connect/does-not-exist.json")).await;
    assert!(missing.errors[0].contains("probes.connect_server.export_file"), "{:?}", missing.errors);
    let (_, wrong) = connect(fixture("eventlog/application-saved.xml")).await;
    assert!(wrong.errors[0].contains("not JSON"), "{:?}", wrong.errors);
}

fn event_settings(path: PathBuf, max_entries: u32) -> EventLogSettings {
    EventLogSettings {
        schedule: schedule(),
        source: WindowsSource::Export(path),
        providers: vec!["PasswordResetService".into(), "ADSync".into()],
        max_entries,
    }
}

async fn events(prober: &EventLogProber) -> EventLogReport {
    match prober.probe().await.output {
        ProbeOutput::EventLog(report) => report,
        other => panic!("event log result expected, got {other:?}"),
    }
}

fn count(r: &EventLogReport, id: u32) -> u32 {
    r.counts.iter().find(|c| c.event_id == id).map_or(0, |c| c.count)
}

#[tokio::test]
async fn event_viewer_exports_give_the_writeback_events_with_their_text() {
    let prober = EventLogProber::new(event_settings(fixture("eventlog/application-saved.xml"), 200), None);

    let r = events(&prober).await;

    assert_eq!(r.failure, None);
    assert!(
        matches!(&r.source, EventLogSource::ExportFile { path } if path.ends_with("application-saved.xml"))
    );
    assert_eq!(r.since, None);
    // The SQL Server event is not from a writeback provider.
    assert_eq!(r.entries.len(), 9);
    assert!(r.entries.iter().all(|e| e.provider == "PasswordResetService" || e.provider == "ADSync"));
    assert_eq!((count(&r, 31019), count(&r, 31015), count(&r, 31016)), (2, 1, 1));
    let policy = r.entries.iter().find(|e| e.event_id == 6329).unwrap();
    assert_eq!((policy.provider.as_str(), policy.level), ("ADSync", EventLevel::Error));
    assert!(policy.message.as_deref().unwrap().contains("0x80230619"), "{policy:?}");
    let heartbeat = r.entries.iter().find(|e| e.event_id == 31019).unwrap();
    assert!(heartbeat.message.as_deref().unwrap().contains("ssprdedicatedsbprodscu.servicebus.windows.net"));
    assert_eq!(r.entries.last().unwrap().event_id, 31016, "oldest first, newest last");
    assert_eq!(r.entries[0].record_id, Some(90_211));
}

#[tokio::test]
async fn runs_read_only_what_is_new_since_the_last_one() {
    let dir = tempfile::tempdir().unwrap();
    let export = dir.path().join("events.xml");
    std::fs::copy(fixture("eventlog/application-saved.xml"), &export).unwrap();
    let bookmark = dir.path().join("probes/event_log.json");
    let prober = EventLogProber::new(event_settings(export.clone(), 3), Some(bookmark.clone()));

    let first = events(&prober).await;
    assert_eq!((first.entries.len(), first.entries_omitted), (3, 6), "only the newest three are listed");
    assert_eq!(first.counts.iter().map(|c| c.count).sum::<u32>(), 9, "but all are counted");
    assert!(bookmark.exists());

    let again = events(&prober).await;
    assert_eq!(again.since, Some(at("2026-11-20T11:00:00Z")));
    assert!(again.entries.is_empty() && again.counts.is_empty(), "{again:#?}");
    assert_eq!(again.last_seen, first.last_seen, "the long-term view survives an empty window");

    // `wevtutil qe Application /f:xml` output: bare events, UTF-16, with four newer ones.
    std::fs::copy(fixture("eventlog/wevtutil-bare-utf16.xml"), &export).unwrap();
    let newer = events(&prober).await;
    assert_eq!(newer.counts.iter().map(|c| c.count).sum::<u32>(), 4);
    assert_eq!(newer.entries_omitted, 1);
    assert_eq!(newer.entries.iter().map(|e| e.event_id).collect::<Vec<_>>(), vec![31019, 31044, 6800]);
    assert_eq!(
        newer.entries[1].message.as_deref(),
        Some("No serviceHost for service bus endpoints are in running state.")
    );
    let heartbeat = newer.last_seen.iter().find(|c| c.event_id == 31019).unwrap();
    assert_eq!((heartbeat.count, heartbeat.newest), (3, at("2026-11-20T12:05:03.6Z")));
    let stopped = newer.last_seen.iter().find(|c| c.event_id == 31016).unwrap();
    assert_eq!(stopped.newest, at("2026-11-20T11:00:00Z"), "newest 31015 is after the newest 31016 again");
}

#[tokio::test]
async fn an_unreadable_export_is_a_failure_that_names_the_setting() {
    let dir = tempfile::tempdir().unwrap();
    let broken = dir.path().join("broken.xml");
    std::fs::write(&broken, "<Events><Event><System>").unwrap();
    let r = events(&EventLogProber::new(event_settings(broken, 10), None)).await;
    assert!(r.failure.as_deref().unwrap().contains("probes.event_log.export_file"), "{r:?}");

    let r = events(&EventLogProber::new(event_settings(dir.path().join("missing.xml"), 10), None)).await;
    assert!(r.failure.as_deref().unwrap().contains("cannot read"), "{r:?}");
}

/// The rule pack's verdict of `rule` on these facts of one site (the Connect server report, and
/// the AD report `ad_json` when given).
fn connect_verdict(
    report: ConnectServerReport,
    ad_json: Option<serde_json::Value>,
    rule: &str,
) -> wbd_rules::Outcome {
    let now = at("2027-02-11T08:40:00Z");
    let site = uuid::Uuid::nil();
    let fact = |subject: &str, output| wbd_rules::FactInput {
        collector_id: site,
        subject: subject.to_owned(),
        observed_at: now,
        output,
    };
    let mut facts = vec![fact("connect-server:AADC01", ProbeOutput::ConnectServer(report))];
    if let Some(ad) = ad_json {
        facts.push(fact(
            "ldap:ldaps://dc01",
            ProbeOutput::ActiveDirectory(serde_json::from_value(ad).unwrap()),
        ));
    }
    let tenant = wbd_rules::TenantFacts {
        now,
        collectors: vec![wbd_rules::CollectorState {
            id: site,
            name: "AADC01".into(),
            active: true,
            last_seen_at: Some(now),
            silent_after: Some(now + chrono::Duration::minutes(15)),
            push_interval_secs: 300,
        }],
        facts,
    };
    wbd_rules::evaluate(&tenant).into_iter().find(|e| e.rule_id == rule).expect("evaluated").outcome
}

#[tokio::test]
async fn a_long_running_server_with_its_connector_configuration() {
    let (_, r) = connect(fixture("connect/long-running-ps7.json")).await;

    assert!(r.errors.is_empty(), "{:?}", r.errors);
    let ad = &r.connectors[0];
    // "Only use preferred domain controllers" and the list, from the connector's own configuration.
    assert_eq!(ad.only_use_preferred_dcs, Some(true));
    assert_eq!(ad.preferred_dcs, vec!["DC02.corp.contoso.com", "DC03.corp.contoso.com"]);
    assert_eq!((ad.last_dc.as_deref(), ad.sign_and_seal), (Some("DC02.corp.contoso.com"), Some(true)));
    // The containers Connect synchronises: only the selected partition, with its filter.
    assert_eq!(ad.partitions.len(), 1);
    let p = &ad.partitions[0];
    assert_eq!(p.dn, "DC=corp,DC=contoso,DC=com");
    assert_eq!(
        p.inclusions,
        vec!["OU=Synced Users,DC=corp,DC=contoso,DC=com", "OU=Service Desk,DC=corp,DC=contoso,DC=com"]
    );
    assert_eq!(p.exclusions[0], "DC=corp,DC=contoso,DC=com");
    // Months of delta cycles: the last 50 runs hold no full run, but objects are joined.
    assert_eq!((ad.runs_in_history, ad.last_full_import.as_ref()), (Some(50), None));
    assert_eq!(ad.statistics.as_ref().and_then(|s| s.total_connectors), Some(1_834));

    // Full import and full sync: the joined objects prove them.
    let full = connect_verdict(r.clone(), None, "full-sync-completed");
    assert!(full.is_pass(), "{full:?}");
    // The PDC emulator (DC01) is not the first preferred DC: decided, and it must stay reachable.
    let ad_report = serde_json::json!({"server": "ldaps://dc01.corp.contoso.com", "pdc_emulator": "DC01.corp.contoso.com"});
    let pdc = connect_verdict(r, Some(ad_report), "preferred-dc-pdc-emulator");
    let text = pdc.text(wbd_rules::Lang::En).unwrap_or_default();
    assert!(pdc.is_fail(), "{pdc:?}");
    assert!(
        text.contains("DC02.corp.contoso.com") && text.contains("keep DC01.corp.contoso.com reachable"),
        "{text}"
    );
}

#[tokio::test]
async fn full_runs_seen_once_are_remembered_after_the_history_dropped_them() {
    let dir = tempfile::tempdir().unwrap();
    let export = dir.path().join("connect-state.json");
    let memory = dir.path().join("probes/connect_server.json");
    let settings = ConnectSettings {
        schedule: schedule(),
        source: WindowsSource::Export(export.clone()),
        timeout: Duration::from_secs(5),
    };
    let probe = |prober: ConnectServerProber| async move {
        match prober.probe().await.output {
            ProbeOutput::ConnectServer(report) => report,
            other => panic!("connect server result expected, got {other:?}"),
        }
    };
    // Soon after set-up: the history still shows the full runs.
    std::fs::copy(fixture("connect/healthy-ps7.json"), &export).unwrap();
    let prober =
        ConnectServerProber::new(settings.clone(), dir.path().to_owned()).remembering_in(memory.clone());
    let first = probe(prober.clone()).await;
    assert!(first.connectors[0].remembered_full_import.is_some());
    assert!(memory.exists());
    // Months later: only delta runs in the history, and no statistics in this export.
    let mut later: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(fixture("connect/long-running-ps7.json")).unwrap())
            .unwrap();
    for c in later["connectors"].as_array_mut().unwrap() {
        c.as_object_mut().unwrap().remove("statistics");
    }
    std::fs::write(&export, later.to_string()).unwrap();

    let remembered = probe(prober).await;
    let ad = &remembered.connectors[0];
    assert_eq!(ad.last_full_import, None);
    let import = ad.remembered_full_import.as_ref().expect("remembered");
    assert_eq!(import.ended_at, Some(at("2026-11-02T03:14:21Z")));
    assert!(connect_verdict(remembered, None, "full-sync-completed").is_pass());

    // Without the memory, the short history alone decides nothing (before: a false failure).
    let forgetful = probe(ConnectServerProber::new(settings, dir.path().to_owned())).await;
    let verdict = connect_verdict(forgetful, None, "full-sync-completed");
    assert!(matches!(verdict, wbd_rules::Outcome::Unknown { .. }), "{verdict:?}");
}
