//! Commands the server hands a collector in its answer to a push.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::ProbeKind;

/// One command, with an id so a collector acts on it once even if the server repeats it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct CollectorCommand {
    pub id: Uuid,
    #[serde(flatten)]
    pub action: CommandAction,
}

/// What the server asks for. A collector that does not know an action receives
/// [`CommandAction::Unknown`] and ignores it, so new actions need no schema bump.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(tag = "command", rename_all = "snake_case")]
pub enum CommandAction {
    /// "Re-test now": run these probes at once (all configured probes when empty).
    RunProbes {
        #[serde(default)]
        probes: Vec<ProbeKind>,
        /// Why, for the collector's log (e.g. "technician asked from the finding page").
        #[serde(default)]
        reason: Option<String>,
    },
    /// Change a probe's schedule until the collector restarts (the file stays authoritative).
    SetProbeSchedule {
        probe: ProbeKind,
        /// New interval between runs; `None` keeps the current one.
        #[serde(default)]
        interval_secs: Option<u32>,
        /// Pause (`false`) or resume (`true`) the probe; `None` keeps the current state.
        #[serde(default)]
        enabled: Option<bool>,
    },
    /// An action this build does not know.
    #[serde(other)]
    Unknown,
}
