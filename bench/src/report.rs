//! The result of a run: figures per phase (each with its unit), the conditions they were
//! measured under, and the targets marked met or missed. Printed as a table and written
//! as JSON so that runs can be compared.

use std::fmt::Write as _;
use std::path::Path;

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::machine::{CpuUse, MachineInfo};

/// One measured figure.
#[derive(Debug, Clone, Serialize)]
pub struct Figure {
    /// Stable key within its phase, e.g. `e2e_results_per_s`.
    pub key: String,
    pub label: String,
    /// `None` when it could not be measured (the reason is in `note`).
    pub value: Option<f64>,
    pub unit: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// Everything one phase measured.
#[derive(Debug, Clone, Serialize)]
pub struct PhaseReport {
    pub id: String,
    pub title: String,
    /// How the phase was run (load shape, processes, durations).
    pub conditions: Vec<String>,
    pub figures: Vec<Figure>,
    /// Where the CPU went during the phase's main measurement window.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub cpu: Vec<NamedCpuUse>,
    pub notes: Vec<String>,
    /// Set when the phase failed; its figures are then partial.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct NamedCpuUse {
    pub window: String,
    #[serde(flatten)]
    pub usage: CpuUse,
}

impl PhaseReport {
    pub fn new(id: &str, title: &str) -> PhaseReport {
        PhaseReport {
            id: id.to_owned(),
            title: title.to_owned(),
            conditions: Vec::new(),
            figures: Vec::new(),
            cpu: Vec::new(),
            notes: Vec::new(),
            error: None,
        }
    }

    pub fn condition(&mut self, text: impl Into<String>) {
        self.conditions.push(text.into());
    }

    pub fn note(&mut self, text: impl Into<String>) {
        self.notes.push(text.into());
    }

    pub fn figure(&mut self, key: &str, label: &str, value: f64, unit: &str) {
        self.figures.push(Figure {
            key: key.to_owned(),
            label: label.to_owned(),
            value: value.is_finite().then_some(value),
            unit: unit.to_owned(),
            note: None,
        });
    }

    /// A figure that could not be measured, with the reason.
    pub fn missing(&mut self, key: &str, label: &str, unit: &str, why: impl Into<String>) {
        self.figures.push(Figure {
            key: key.to_owned(),
            label: label.to_owned(),
            value: None,
            unit: unit.to_owned(),
            note: Some(why.into()),
        });
    }

    pub fn value(&self, key: &str) -> Option<f64> {
        self.figures.iter().find(|f| f.key == key).and_then(|f| f.value)
    }
}

/// Whether a target of the issue was reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TargetStatus {
    Met,
    Missed,
    NotMeasured,
}

/// The direction of a target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Bound {
    #[serde(rename = ">=")]
    AtLeast,
    #[serde(rename = "<=")]
    AtMost,
}

#[derive(Debug, Clone, Serialize)]
pub struct TargetCheck {
    pub id: String,
    pub text: String,
    /// `phase.figure` the target reads.
    pub figure: String,
    pub bound: Bound,
    pub target: f64,
    pub measured: Option<f64>,
    pub unit: String,
    pub status: TargetStatus,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// What a target asks of one figure.
pub struct Target {
    pub id: &'static str,
    pub text: &'static str,
    pub phase: &'static str,
    pub figure: &'static str,
    pub bound: Bound,
    pub value: f64,
    pub unit: &'static str,
}

impl Target {
    /// Checks the target against the phases; `caveat` is attached (e.g. "measured over 10 s,
    /// not 60 s") when the figure exists but the run was shorter than the target asks.
    pub fn check(&self, phases: &[PhaseReport], caveat: Option<String>) -> TargetCheck {
        let measured = phases.iter().find(|p| p.id == self.phase).and_then(|p| p.value(self.figure));
        let status = match measured {
            None => TargetStatus::NotMeasured,
            Some(v) => {
                let met = match self.bound {
                    Bound::AtLeast => v >= self.value,
                    Bound::AtMost => v <= self.value,
                };
                if met { TargetStatus::Met } else { TargetStatus::Missed }
            }
        };
        TargetCheck {
            id: self.id.to_owned(),
            text: self.text.to_owned(),
            figure: format!("{}.{}", self.phase, self.figure),
            bound: self.bound,
            target: self.value,
            measured,
            unit: self.unit.to_owned(),
            status,
            note: if measured.is_some() { caveat } else { Some("not measured in this run".into()) },
        }
    }
}

/// The git state the measured binaries were built from.
#[derive(Debug, Clone, Serialize)]
pub struct GitState {
    pub commit: String,
    /// Uncommitted changes in the work tree when the run started (they may be in the binaries).
    pub dirty: bool,
}

impl GitState {
    pub fn read(root: &Path) -> GitState {
        let git = |args: &[&str]| {
            std::process::Command::new("git")
                .args(args)
                .current_dir(root)
                .output()
                .ok()
                .filter(|o| o.status.success())
                .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        };
        GitState {
            commit: git(&["rev-parse", "HEAD"]).unwrap_or_else(|| "unknown".into()),
            dirty: git(&["status", "--porcelain", "--untracked-files=no"]).is_some_and(|s| !s.is_empty()),
        }
    }
}

/// The conditions of the whole run.
#[derive(Debug, Clone, Serialize)]
pub struct RunConditions {
    pub command: String,
    pub loadavg_at_start: [f64; 3],
    pub loadavg_at_end: [f64; 3],
    pub quick: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub tool: String,
    pub started_at: DateTime<Utc>,
    pub finished_at: DateTime<Utc>,
    pub git: GitState,
    pub machine: MachineInfo,
    pub conditions: RunConditions,
    pub settings: serde_json::Value,
    pub phases: Vec<PhaseReport>,
    pub targets: Vec<TargetCheck>,
}

impl Report {
    /// The human-readable form.
    pub fn table(&self) -> String {
        let mut out = String::new();
        let m = &self.machine;
        let _ = writeln!(
            out,
            "Writeback Doctor benchmark, {} (UTC), commit {}{}",
            self.started_at.format("%Y-%m-%d %H:%M"),
            short(&self.git.commit),
            if self.git.dirty { " + uncommitted changes" } else { "" }
        );
        let _ = writeln!(
            out,
            "machine: {}, {} cores ({}), {} MiB, Linux {}",
            m.hostname, m.cores, m.cpu_model, m.memory_mib, m.kernel
        );
        let [a, b, c] = self.conditions.loadavg_at_start;
        let [d, e, f] = self.conditions.loadavg_at_end;
        let _ = writeln!(out, "load average at start {a:.2} {b:.2} {c:.2}, at end {d:.2} {e:.2} {f:.2}");
        for phase in &self.phases {
            let _ = writeln!(out, "\n== {} ==", phase.title);
            for condition in &phase.conditions {
                let _ = writeln!(out, "   {condition}");
            }
            let width = phase.figures.iter().map(|f| f.label.chars().count()).max().unwrap_or(0);
            for figure in &phase.figures {
                let value = figure.value.map(format_value).unwrap_or_else(|| "n/a".into());
                let note = figure.note.as_deref().map(|n| format!("  ({n})")).unwrap_or_default();
                let _ = writeln!(out, "  {:<width$}  {:>12} {}{note}", figure.label, value, figure.unit);
            }
            for usage in &phase.cpu {
                let groups = usage
                    .usage
                    .by_group
                    .iter()
                    .filter(|g| g.cores >= 0.005)
                    .map(|g| format!("{} {:.2}", g.group, g.cores))
                    .collect::<Vec<_>>()
                    .join(", ");
                let _ = writeln!(
                    out,
                    "  CPU during {} (cores used; machine {:.0}% busy): {groups}",
                    usage.window,
                    usage.usage.machine_busy_fraction * 100.0
                );
            }
            for note in &phase.notes {
                let _ = writeln!(out, "  note: {note}");
            }
            if let Some(error) = &phase.error {
                let _ = writeln!(out, "  FAILED: {error}");
            }
        }
        if !self.targets.is_empty() {
            let _ = writeln!(out, "\n== Targets (issue 15) ==");
            for t in &self.targets {
                let status = match t.status {
                    TargetStatus::Met => "met",
                    TargetStatus::Missed => "MISSED",
                    TargetStatus::NotMeasured => "not measured",
                };
                let bound = match t.bound {
                    Bound::AtLeast => ">=",
                    Bound::AtMost => "<=",
                };
                let measured = t.measured.map(format_value).unwrap_or_else(|| "n/a".into());
                let note = t.note.as_deref().map(|n| format!("  ({n})")).unwrap_or_default();
                let _ = writeln!(
                    out,
                    "  [{status:^12}] {}: {measured} {} (target {bound} {} {}){note}",
                    t.text,
                    t.unit,
                    format_value(t.target),
                    t.unit
                );
            }
        }
        out
    }

    pub fn write_json(&self, path: &Path) -> anyhow::Result<()> {
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(path, serde_json::to_vec_pretty(self)?)?;
        Ok(())
    }
}

fn short(commit: &str) -> &str {
    commit.get(..10).unwrap_or(commit)
}

/// Thousands separated above 1,000; three significant-ish decimals below.
pub fn format_value(v: f64) -> String {
    if !v.is_finite() {
        return "n/a".into();
    }
    let abs = v.abs();
    if abs >= 1_000.0 {
        let rounded = v.round() as i64;
        let digits = rounded.unsigned_abs().to_string();
        let mut grouped = String::new();
        for (i, ch) in digits.chars().enumerate() {
            if i > 0 && (digits.len() - i).is_multiple_of(3) {
                grouped.push(',');
            }
            grouped.push(ch);
        }
        if rounded < 0 { format!("-{grouped}") } else { grouped }
    } else if abs >= 100.0 {
        format!("{v:.0}")
    } else if abs >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_format_for_reading() {
        assert_eq!(format_value(12_345.6), "12,346");
        assert_eq!(format_value(1_000.0), "1,000");
        assert_eq!(format_value(999.4), "999");
        assert_eq!(format_value(12.34), "12.3");
        assert_eq!(format_value(0.456), "0.46");
        assert_eq!(format_value(-2_500.0), "-2,500");
        assert_eq!(format_value(f64::NAN), "n/a");
    }

    #[test]
    fn targets_are_met_missed_or_not_measured() {
        let mut phase = PhaseReport::new("embedded", "Embedded");
        phase.figure("e2e_results_per_s", "end to end", 6_000.0, "results/s");
        phase.missing("p99", "p99", "ms", "no samples");
        let phases = vec![phase];
        let at_least = Target {
            id: "T",
            text: "t",
            phase: "embedded",
            figure: "e2e_results_per_s",
            bound: Bound::AtLeast,
            value: 5_000.0,
            unit: "results/s",
        };
        assert_eq!(at_least.check(&phases, None).status, TargetStatus::Met);
        let too_high = Target { value: 7_000.0, ..at_least };
        assert_eq!(too_high.check(&phases, None).status, TargetStatus::Missed);
        let at_most = Target { figure: "p99", bound: Bound::AtMost, ..too_high };
        assert_eq!(at_most.check(&phases, None).status, TargetStatus::NotMeasured);
        let elsewhere = Target { phase: "distributed", ..at_most };
        assert_eq!(elsewhere.check(&phases, None).status, TargetStatus::NotMeasured);
    }
}
