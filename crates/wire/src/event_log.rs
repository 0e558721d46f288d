//! Event log probe: PasswordResetService and ADSync events from the Application log since the
//! previous run.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// The writeback-relevant events of one window.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct EventLogReport {
    pub source: EventLogSource,
    /// Start of the window (exclusive): the newest event the previous run saw. `None`: first
    /// run, the whole log (or file) was read.
    #[serde(default)]
    pub since: Option<DateTime<Utc>>,
    /// Events in the window, oldest first, at most the probe's entry limit.
    #[serde(default)]
    pub entries: Vec<EventEntry>,
    /// Events in the window beyond the entry limit (counted in `counts`, not listed).
    #[serde(default)]
    pub entries_omitted: u32,
    /// Per (provider, event id): how many in the window and when the newest was.
    #[serde(default)]
    pub counts: Vec<EventCount>,
    /// Per (provider, event id): the newest occurrence the collector has ever seen, kept
    /// across runs (so "newest of 31015 vs 31016" is answerable from one report).
    #[serde(default)]
    pub last_seen: Vec<EventCount>,
    /// The log or file could not be read.
    #[serde(default)]
    pub failure: Option<String>,
}

/// Where the events came from.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum EventLogSource {
    /// The live Windows event log (`log` is e.g. `Application`).
    Live { log: String },
    /// A `wevtutil qe /f:xml` (or Event Viewer "Save as XML") export.
    ExportFile { path: String },
}

/// One event.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct EventEntry {
    /// Provider (source) name: `PasswordResetService`, `ADSync`, …
    pub provider: String,
    pub event_id: u32,
    pub level: EventLevel,
    pub time_created: DateTime<Utc>,
    #[serde(default)]
    pub record_id: Option<u64>,
    /// Start of the message text (bounded), from the rendered message or the event data.
    #[serde(default)]
    pub message: Option<String>,
}

/// Windows event levels.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[serde(rename_all = "snake_case")]
pub enum EventLevel {
    Critical,
    Error,
    Warning,
    Information,
    Verbose,
    /// `LogAlways` (0) or a level this build does not know.
    Other,
}

impl EventLevel {
    /// From the numeric `<Level>` of the event XML.
    pub fn from_level(level: u8) -> Self {
        match level {
            1 => EventLevel::Critical,
            2 => EventLevel::Error,
            3 => EventLevel::Warning,
            4 => EventLevel::Information,
            5 => EventLevel::Verbose,
            _ => EventLevel::Other,
        }
    }
}

/// How often one (provider, event id) occurred and when last.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct EventCount {
    pub provider: String,
    pub event_id: u32,
    pub count: u32,
    pub newest: DateTime<Utc>,
}
