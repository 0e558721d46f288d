//! Script probe: a site-specific executable the operator configured, whose stdout is JSON.

use serde::{Deserialize, Serialize};

/// One run of a configured script.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ScriptReport {
    /// The configured name (also the probe subject).
    pub name: String,
    /// The executable that ran.
    pub program: String,
    /// Exit code; `None` when it was killed (timeout) or ended by a signal.
    #[serde(default)]
    pub exit_code: Option<i32>,
    pub timed_out: bool,
    pub duration_ms: u64,
    /// The JSON value the script printed on stdout, when it printed one.
    #[serde(default)]
    pub value: Option<serde_json::Value>,
    /// Why there is no value (did not start, timed out, stdout not JSON, non-zero exit, …).
    #[serde(default)]
    pub error: Option<String>,
    /// The end of stderr, for the technician (bounded).
    #[serde(default)]
    pub stderr_tail: Option<String>,
}
