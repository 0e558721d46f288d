//! The event log probe: PasswordResetService and ADSync events (catalogue §2b) since the
//! previous run.
//!
//! On Windows it asks `wevtutil` for the Application log's events of the configured providers
//! newer than the bookmark, as rendered XML (the message text included). Elsewhere it reads an
//! exported file in the same XML format: `wevtutil qe Application /f:RenderedXml /e:Events`
//! (or `/f:xml`), or Event Viewer's "Save Selected Events… → XML". Both go through one parser.
//!
//! The bookmark (`<state_dir>/probes/event_log.json`) holds the newest event seen and, per
//! (provider, event id), the newest occurrence ever seen, so each report carries the window's
//! events and counts plus the long-term "last seen" per id. The bookmark is written only after
//! the result has been produced; a crash in between repeats a window rather than skipping one.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use wbd_wire::{
    EventCount, EventEntry, EventLevel, EventLogReport, EventLogSource, ProbeOutput, ProbeResult,
};

use super::tls::millis;
use crate::config::{EventLogSettings, WindowsSource};
use crate::fsutil::{self, FileAccess};

/// Longest message excerpt kept per event.
pub const MESSAGE_EXCERPT_CHARS: usize = 512;

#[derive(Debug, thiserror::Error)]
pub enum EventXmlError {
    #[error("not event XML: {0}")]
    Xml(String),
    #[error("event #{index}: {message}")]
    Event { index: usize, message: String },
}

/// Parses `wevtutil` / Event Viewer XML: a document whose root is `<Events>` (or a single
/// `<Event>`), or bare `<Event>` elements one after another as `wevtutil qe /f:xml` prints them.
pub fn parse_events_xml(text: &str) -> Result<Vec<EventEntry>, EventXmlError> {
    let body = strip_declaration(text.trim_start_matches('\u{feff}'));
    let wrapped;
    let doc_text = if body.trim().is_empty() {
        return Ok(Vec::new());
    } else if roxmltree::Document::parse(body).is_ok() {
        body
    } else {
        wrapped = format!("<Events>{body}</Events>");
        wrapped.as_str()
    };
    let doc = roxmltree::Document::parse(doc_text).map_err(|e| EventXmlError::Xml(e.to_string()))?;
    let events = doc.descendants().filter(|n| n.is_element() && n.tag_name().name() == "Event");
    let mut out = Vec::new();
    for (index, event) in events.enumerate() {
        out.push(parse_event(event).map_err(|message| EventXmlError::Event { index, message })?);
    }
    Ok(out)
}

fn strip_declaration(text: &str) -> &str {
    let t = text.trim_start();
    if t.starts_with("<?xml")
        && let Some(end) = t.find("?>")
    {
        return &t[end + 2..];
    }
    t
}

fn child<'a, 'i>(node: roxmltree::Node<'a, 'i>, name: &str) -> Option<roxmltree::Node<'a, 'i>> {
    node.children().find(|c| c.is_element() && c.tag_name().name() == name)
}

fn parse_event(event: roxmltree::Node<'_, '_>) -> Result<EventEntry, String> {
    let system = child(event, "System").ok_or("no <System>")?;
    let provider =
        child(system, "Provider").and_then(|p| p.attribute("Name")).ok_or("no <Provider Name=…>")?.to_owned();
    let event_id: u32 = child(system, "EventID")
        .and_then(|n| n.text())
        .ok_or("no <EventID>")?
        .trim()
        .parse()
        .map_err(|e| format!("<EventID> is not a number: {e}"))?;
    let level = child(system, "Level")
        .and_then(|n| n.text())
        .and_then(|t| t.trim().parse::<u8>().ok())
        .map_or(EventLevel::Other, EventLevel::from_level);
    let time_text = child(system, "TimeCreated")
        .and_then(|n| n.attribute("SystemTime"))
        .ok_or("no <TimeCreated SystemTime=…>")?;
    let time_created = DateTime::parse_from_rfc3339(time_text.trim())
        .map_err(|e| format!("TimeCreated `{time_text}`: {e}"))?
        .with_timezone(&Utc);
    let record_id = child(system, "EventRecordID").and_then(|n| n.text()).and_then(|t| t.trim().parse().ok());
    let rendered = child(event, "RenderingInfo").and_then(|r| child(r, "Message")).and_then(|m| m.text());
    let message = match rendered {
        Some(text) => Some(text.to_owned()),
        None => event_data_text(event),
    }
    .map(|m| excerpt(&m))
    .filter(|m| !m.is_empty());
    Ok(EventEntry { provider, event_id, level, time_created, record_id, message })
}

/// The `<EventData>` values, `Name=value` when named, as one text.
fn event_data_text(event: roxmltree::Node<'_, '_>) -> Option<String> {
    let data = child(event, "EventData")?;
    let parts: Vec<String> = data
        .children()
        .filter(|c| c.is_element() && c.tag_name().name() == "Data")
        .filter_map(|d| {
            let text = d.text()?.trim();
            if text.is_empty() {
                return None;
            }
            Some(match d.attribute("Name") {
                Some(name) => format!("{name}={text}"),
                None => text.to_owned(),
            })
        })
        .collect();
    (!parts.is_empty()).then(|| parts.join("\n"))
}

fn excerpt(text: &str) -> String {
    let normalized = text.replace("\r\n", "\n");
    let trimmed = normalized.trim();
    if trimmed.chars().count() <= MESSAGE_EXCERPT_CHARS {
        trimmed.to_owned()
    } else {
        let cut: String = trimmed.chars().take(MESSAGE_EXCERPT_CHARS).collect();
        format!("{cut}…")
    }
}

/// What the previous runs left.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Bookmark {
    pub newest: Option<DateTime<Utc>>,
    pub newest_record_id: Option<u64>,
    #[serde(default)]
    pub last_seen: Vec<EventCount>,
}

impl Bookmark {
    /// Whether `e` is newer than the bookmark.
    fn is_new(&self, e: &EventEntry) -> bool {
        match self.newest {
            None => true,
            Some(newest) if e.time_created > newest => true,
            Some(newest) if e.time_created == newest => {
                matches!((e.record_id, self.newest_record_id), (Some(id), Some(seen)) if id > seen)
            }
            Some(_) => false,
        }
    }
}

/// Builds the report for the events newer than `bookmark`, and the bookmark to keep.
pub fn window_report(
    source: EventLogSource,
    mut events: Vec<EventEntry>,
    providers: &[String],
    max_entries: u32,
    bookmark: &Bookmark,
) -> (EventLogReport, Bookmark) {
    events.retain(|e| providers.iter().any(|p| p.eq_ignore_ascii_case(&e.provider)) && bookmark.is_new(e));
    events.sort_by_key(|e| (e.time_created, e.record_id));

    let mut counts: BTreeMap<(String, u32), EventCount> = BTreeMap::new();
    for e in &events {
        counts
            .entry((e.provider.clone(), e.event_id))
            .and_modify(|c| {
                c.count = c.count.saturating_add(1);
                c.newest = c.newest.max(e.time_created);
            })
            .or_insert(EventCount {
                provider: e.provider.clone(),
                event_id: e.event_id,
                count: 1,
                newest: e.time_created,
            });
    }
    let mut last_seen: BTreeMap<(String, u32), EventCount> =
        bookmark.last_seen.iter().map(|c| ((c.provider.clone(), c.event_id), c.clone())).collect();
    for c in counts.values() {
        last_seen
            .entry((c.provider.clone(), c.event_id))
            .and_modify(|seen| {
                seen.count = seen.count.saturating_add(c.count);
                seen.newest = seen.newest.max(c.newest);
            })
            .or_insert_with(|| c.clone());
    }
    let newest = events.last();
    let next = Bookmark {
        newest: newest.map(|e| e.time_created).or(bookmark.newest),
        newest_record_id: newest.map_or(bookmark.newest_record_id, |e| e.record_id),
        last_seen: last_seen.values().cloned().collect(),
    };
    let limit = usize::try_from(max_entries).unwrap_or(usize::MAX);
    let omitted = events.len().saturating_sub(limit);
    // The newest events matter most: keep the last `limit`.
    let entries: Vec<EventEntry> = events.into_iter().skip(omitted).collect();
    let report = EventLogReport {
        source,
        since: bookmark.newest,
        entries,
        entries_omitted: u32::try_from(omitted).unwrap_or(u32::MAX),
        counts: counts.into_values().collect(),
        last_seen: next.last_seen.clone(),
        failure: None,
    };
    (report, next)
}

/// Runs the event log probe, with an optional bookmark file.
#[derive(Debug, Clone)]
pub struct EventLogProber {
    settings: EventLogSettings,
    bookmark_path: Option<PathBuf>,
}

impl EventLogProber {
    /// `bookmark_path`: where the window start is kept between runs (`None`: every run reads
    /// everything available, as `probe --once` does).
    pub fn new(settings: EventLogSettings, bookmark_path: Option<PathBuf>) -> Self {
        EventLogProber { settings, bookmark_path }
    }

    #[tracing::instrument(skip_all)]
    pub async fn probe(&self) -> ProbeResult {
        let observed_at = Utc::now();
        let started = Instant::now();
        let bookmark = self.load_bookmark();
        let (source, read) = match &self.settings.source {
            WindowsSource::Export(path) => {
                (EventLogSource::ExportFile { path: path.display().to_string() }, read_export(path).await)
            }
            WindowsSource::Live => (
                EventLogSource::Live { log: "Application".to_owned() },
                read_live(&self.settings.providers, bookmark.newest).await,
            ),
        };
        let (report, subject) = match read {
            Ok(events) => {
                let (report, next) = window_report(
                    source,
                    events,
                    &self.settings.providers,
                    self.settings.max_entries,
                    &bookmark,
                );
                self.save_bookmark(&next);
                let subject = subject_for(&report.source);
                (report, subject)
            }
            Err(failure) => {
                tracing::info!(error = %failure, "event log probe failed");
                let subject = subject_for(&source);
                let report = EventLogReport {
                    source,
                    since: bookmark.newest,
                    entries: Vec::new(),
                    entries_omitted: 0,
                    counts: Vec::new(),
                    last_seen: bookmark.last_seen.clone(),
                    failure: Some(failure),
                };
                (report, subject)
            }
        };
        ProbeResult {
            subject,
            observed_at,
            duration_ms: millis(started.elapsed()),
            output: ProbeOutput::EventLog(report),
        }
    }

    fn load_bookmark(&self) -> Bookmark {
        let Some(path) = &self.bookmark_path else { return Bookmark::default() };
        match fsutil::read_optional(path) {
            Ok(Some(bytes)) => serde_json::from_slice(&bytes).unwrap_or_else(|e| {
                tracing::warn!(path = %path.display(), error = %e, "the event log bookmark is unreadable; starting over");
                Bookmark::default()
            }),
            Ok(None) => Bookmark::default(),
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "cannot read the event log bookmark; starting over");
                Bookmark::default()
            }
        }
    }

    fn save_bookmark(&self, bookmark: &Bookmark) {
        let Some(path) = &self.bookmark_path else { return };
        let written = serde_json::to_vec_pretty(bookmark).map_err(std::io::Error::other).and_then(|bytes| {
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir)?;
            }
            fsutil::write_atomic(path, &bytes, FileAccess::Default)
        });
        if let Err(e) = written {
            // The next run repeats this window: duplicates, not losses.
            tracing::warn!(path = %path.display(), error = %e, "cannot save the event log bookmark");
        }
    }
}

fn subject_for(source: &EventLogSource) -> String {
    match source {
        EventLogSource::Live { log } => format!("eventlog:{log}"),
        EventLogSource::ExportFile { .. } => "eventlog:export".to_owned(),
    }
}

async fn read_export(path: &Path) -> Result<Vec<EventEntry>, String> {
    let bytes = tokio::fs::read(path).await.map_err(|e| {
        format!("cannot read the event export {} (probes.event_log.export_file): {e}", path.display())
    })?;
    let text = decode_text(&bytes);
    parse_events_xml(&text).map_err(|e| format!("{} (probes.event_log.export_file): {e}", path.display()))
}

/// Text as Windows tools write it: UTF-8 (with or without BOM) or UTF-16 LE with BOM.
pub fn decode_text(bytes: &[u8]) -> String {
    if let Some(rest) = bytes.strip_prefix(&[0xFF, 0xFE]) {
        let units: Vec<u16> = rest.chunks_exact(2).map(|c| u16::from_le_bytes([c[0], c[1]])).collect();
        return String::from_utf16_lossy(&units);
    }
    String::from_utf8_lossy(bytes.strip_prefix(&[0xEF, 0xBB, 0xBF]).unwrap_or(bytes)).into_owned()
}

/// The XPath query `wevtutil` runs: the providers' events after `since` (or of the last day).
pub fn live_query(providers: &[String], since: Option<DateTime<Utc>>) -> String {
    let names = providers.iter().map(|p| format!("@Name='{p}'")).collect::<Vec<_>>().join(" or ");
    let time = match since {
        Some(t) => format!("TimeCreated[@SystemTime>='{}']", t.format("%Y-%m-%dT%H:%M:%S%.3fZ")),
        None => "TimeCreated[timediff(@SystemTime) <= 86400000]".to_owned(),
    };
    format!("*[System[Provider[{names}] and {time}]]")
}

#[cfg(windows)]
async fn read_live(providers: &[String], since: Option<DateTime<Utc>>) -> Result<Vec<EventEntry>, String> {
    let query = live_query(providers, since);
    let output = tokio::process::Command::new("wevtutil")
        .args(["qe", "Application", &format!("/q:{query}"), "/f:RenderedXml", "/e:Events"])
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(std::time::Duration::from_secs(120), output)
        .await
        .map_err(|_| "wevtutil did not finish within 120s".to_owned())?
        .map_err(|e| format!("cannot run wevtutil: {e}"))?;
    if !output.status.success() {
        return Err(format!("wevtutil failed: {}", decode_text(&output.stderr).trim()));
    }
    parse_events_xml(&decode_text(&output.stdout)).map_err(|e| format!("wevtutil output: {e}"))
}

#[cfg(not(windows))]
async fn read_live(_providers: &[String], _since: Option<DateTime<Utc>>) -> Result<Vec<EventEntry>, String> {
    Err("the live event log can only be read on Windows; set probes.event_log.export_file".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    const TWO: &str = r#"<Event xmlns='http://schemas.microsoft.com/win/2004/08/events/event'><System><Provider Name='PasswordResetService'/><EventID Qualifiers='0'>31019</EventID><Level>4</Level><TimeCreated SystemTime='2026-11-20T10:15:03.1234567Z'/><EventRecordID>10</EventRecordID><Channel>Application</Channel></System><EventData><Data>ServiceBusHeartBeat</Data></EventData></Event>
<Event xmlns='http://schemas.microsoft.com/win/2004/08/events/event'><System><Provider Name='ADSync'/><EventID Qualifiers='0'>6329</EventID><Level>2</Level><TimeCreated SystemTime='2026-11-20T10:16:00.0000000Z'/><EventRecordID>11</EventRecordID></System><EventData><Data Name='a'>x</Data></EventData></Event>"#;

    #[test]
    fn bare_wevtutil_output_parses() {
        let events = parse_events_xml(TWO).unwrap();
        assert_eq!(events.len(), 2);
        assert_eq!(events[0].provider, "PasswordResetService");
        assert_eq!(events[0].event_id, 31019);
        assert_eq!(events[0].level, EventLevel::Information);
        assert_eq!(events[0].record_id, Some(10));
        assert_eq!(events[0].message.as_deref(), Some("ServiceBusHeartBeat"));
        assert_eq!(events[1].level, EventLevel::Error);
        assert_eq!(events[1].message.as_deref(), Some("a=x"));
        assert!(parse_events_xml("   ").unwrap().is_empty());
        assert!(parse_events_xml("<Events><Event><System/></Event></Events>").is_err());
    }

    #[test]
    fn the_query_names_providers_and_window() {
        let q = live_query(&["PasswordResetService".into(), "ADSync".into()], None);
        assert_eq!(
            q,
            "*[System[Provider[@Name='PasswordResetService' or @Name='ADSync'] and TimeCreated[timediff(@SystemTime) <= 86400000]]]"
        );
        let since = DateTime::parse_from_rfc3339("2026-11-20T10:15:03.123Z").unwrap().with_timezone(&Utc);
        assert!(
            live_query(&["ADSync".into()], Some(since)).contains("@SystemTime>='2026-11-20T10:15:03.123Z'")
        );
    }

    #[test]
    fn utf16_exports_are_decoded() {
        let mut bytes = vec![0xFF, 0xFE];
        for u in "<Events/>".encode_utf16() {
            bytes.extend_from_slice(&u.to_le_bytes());
        }
        assert_eq!(decode_text(&bytes), "<Events/>");
    }
}
