//! What the machine is and what it is doing: model, cores, load, and CPU time per process group,
//! read from `/proc` (Linux only). The figures say under which conditions a run was measured.

use std::collections::BTreeMap;
use std::time::Instant;

use serde::Serialize;

/// The machine a run was measured on.
#[derive(Debug, Clone, Serialize)]
pub struct MachineInfo {
    pub hostname: String,
    pub cpu_model: String,
    pub cores: usize,
    pub memory_mib: u64,
    pub kernel: String,
    pub clock_ticks_per_sec: u64,
}

impl MachineInfo {
    pub fn read() -> MachineInfo {
        let cpuinfo = read("/proc/cpuinfo");
        let cpu_model = cpuinfo
            .lines()
            .find_map(|l| l.strip_prefix("model name").and_then(|r| r.split_once(':')).map(|(_, v)| v.trim()))
            .unwrap_or("unknown")
            .to_owned();
        let memory_kib = read("/proc/meminfo")
            .lines()
            .find_map(|l| l.strip_prefix("MemTotal:"))
            .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
            .unwrap_or(0);
        MachineInfo {
            hostname: read("/proc/sys/kernel/hostname").trim().to_owned(),
            cpu_model,
            cores: std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
            memory_mib: memory_kib / 1024,
            kernel: read("/proc/sys/kernel/osrelease").trim().to_owned(),
            clock_ticks_per_sec: clock_ticks(),
        }
    }
}

fn read(path: &str) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

/// `CLK_TCK`, the unit of the CPU times in `/proc/<pid>/stat` (asked of `getconf`, since the
/// workspace forbids the unsafe `sysconf` call; 100 on every Linux we know).
pub fn clock_ticks() -> u64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|out| String::from_utf8(out.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100)
}

/// The 1, 5 and 15 minute load averages.
pub fn loadavg() -> [f64; 3] {
    let text = read("/proc/loadavg");
    let mut it = text.split_whitespace().map(|v| v.parse::<f64>().unwrap_or(f64::NAN));
    [it.next().unwrap_or(f64::NAN), it.next().unwrap_or(f64::NAN), it.next().unwrap_or(f64::NAN)]
}

/// User + system CPU seconds of one process, or `None` if it is gone.
pub fn process_cpu_secs(pid: u32, ticks: u64) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (_, times) = stat_fields(&stat)?;
    Some((times.0 + times.1) as f64 / ticks as f64)
}

/// User + system CPU seconds of this process's threads whose name starts with `prefix` (e.g.
/// the threads of an in-process server), from `/proc/self/task`.
pub fn threads_cpu_secs(prefix: &str, ticks: u64) -> f64 {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else { return 0.0 };
    let total: u64 = tasks
        .flatten()
        .filter_map(|task| std::fs::read_to_string(task.path().join("stat")).ok())
        .filter_map(|stat| {
            let (comm, (utime, stime)) = stat_fields(&stat)?;
            comm.starts_with(prefix).then_some(utime + stime)
        })
        .sum();
    total as f64 / ticks as f64
}

/// CPU seconds of this process's children that have been waited for (`cutime + cstime`): the
/// way to read the CPU of a short-lived child after it exited.
pub fn reaped_children_cpu_secs(ticks: u64) -> f64 {
    let stat = read("/proc/self/stat");
    let Some(close) = stat.rfind(')') else { return 0.0 };
    let fields: Vec<&str> = stat[close + 1..].split_whitespace().collect();
    // After the comm: state is field 3, so field N is at index N - 3; cutime 16, cstime 17.
    let cutime: u64 = fields.get(13).and_then(|v| v.parse().ok()).unwrap_or(0);
    let cstime: u64 = fields.get(14).and_then(|v| v.parse().ok()).unwrap_or(0);
    (cutime + cstime) as f64 / ticks as f64
}

/// `VmRSS` and `VmHWM` of a process, in KiB.
pub fn memory_kib(pid: u32) -> Option<(u64, u64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
    };
    Some((field("VmRSS:")?, field("VmHWM:")?))
}

/// (comm, (utime, stime)) of a `/proc/<pid>/stat` line.
fn stat_fields(stat: &str) -> Option<(&str, (u64, u64))> {
    let open = stat.find('(')?;
    let close = stat.rfind(')')?;
    let comm = &stat[open + 1..close];
    let fields: Vec<&str> = stat[close + 1..].split_whitespace().collect();
    // utime is field 14 and stime field 15 of proc(5); fields[0] is field 3 (state).
    let utime = fields.get(11)?.parse().ok()?;
    let stime = fields.get(12)?.parse().ok()?;
    Some((comm, (utime, stime)))
}

/// Which part of the system a process belongs to, by its command name.
pub fn group_of(comm: &str) -> &'static str {
    match comm {
        "wbd-api" => "wbd-api",
        "wbd-worker" => "wbd-worker",
        "wbd-collector" => "wbd-collector",
        "wbd-bench" => "load generator (wbd-bench)",
        "postgres" => "PostgreSQL",
        "beam.smp" | "erl_child_setup" | "inet_gethost" | "epmd" | "1_scheduler" => "RabbitMQ",
        c if c.starts_with("rustc")
            || c == "cargo"
            || c == "cc"
            || c == "ld"
            || c.starts_with("cc1")
            || c == "collect2"
            || c.starts_with("build-script")
            || c == "clippy-driver" =>
        {
            "other: compilers (rustc, cargo, cc, ld)"
        }
        _ => "other processes",
    }
}

/// CPU ticks of every process, grouped, plus the machine's busy and total ticks, at one instant.
#[derive(Debug, Clone)]
pub struct CpuSnapshot {
    at: Instant,
    groups: BTreeMap<&'static str, u64>,
    machine_busy: u64,
    machine_total: u64,
}

/// Where the CPU went between two snapshots.
#[derive(Debug, Clone, Serialize)]
pub struct CpuUse {
    pub wall_secs: f64,
    /// Busy share of all cores of the machine, 0 to 1.
    pub machine_busy_fraction: f64,
    /// CPU seconds per group ("cores" = seconds per wall second).
    pub by_group: Vec<GroupCpu>,
}

#[derive(Debug, Clone, Serialize)]
pub struct GroupCpu {
    pub group: String,
    pub cpu_secs: f64,
    pub cores: f64,
}

impl CpuSnapshot {
    pub fn take() -> CpuSnapshot {
        let mut groups: BTreeMap<&'static str, u64> = BTreeMap::new();
        if let Ok(dir) = std::fs::read_dir("/proc") {
            for entry in dir.flatten() {
                if !entry.file_name().to_str().is_some_and(|n| n.bytes().all(|b| b.is_ascii_digit())) {
                    continue;
                }
                let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else { continue };
                let Some((comm, (utime, stime))) = stat_fields(&stat) else { continue };
                *groups.entry(group_of(comm)).or_default() += utime + stime;
            }
        }
        let (machine_busy, machine_total) = machine_ticks();
        CpuSnapshot { at: Instant::now(), groups, machine_busy, machine_total }
    }

    /// The CPU used from `self` to `later`. A process that started in between counts from 0; the
    /// CPU of one that ended in between is lost (short-lived processes are undercounted).
    pub fn until(&self, later: &CpuSnapshot, ticks: u64) -> CpuUse {
        let wall = later.at.duration_since(self.at).as_secs_f64();
        let mut by_group: BTreeMap<&'static str, u64> = BTreeMap::new();
        for (group, total) in &later.groups {
            let before = self.groups.get(group).copied().unwrap_or(0);
            by_group.insert(group, total.saturating_sub(before));
        }
        let busy = later.machine_busy.saturating_sub(self.machine_busy);
        let total = later.machine_total.saturating_sub(self.machine_total);
        let mut groups: Vec<GroupCpu> = by_group
            .into_iter()
            .map(|(group, t)| {
                let cpu_secs = t as f64 / ticks as f64;
                GroupCpu {
                    group: group.to_owned(),
                    cpu_secs,
                    cores: if wall > 0.0 { cpu_secs / wall } else { 0.0 },
                }
            })
            .filter(|g| g.cpu_secs > 0.0)
            .collect();
        groups.sort_by(|a, b| b.cpu_secs.total_cmp(&a.cpu_secs));
        // Busy time no process still alive at the end accounts for: mostly short-lived processes
        // (each rustc of a build elsewhere on the machine), whose CPU leaves with them.
        let cores = std::thread::available_parallelism().map(|n| n.get() as f64).unwrap_or(1.0);
        let busy_secs = if total > 0 { busy as f64 / total as f64 * wall * cores } else { 0.0 };
        let attributed: f64 = groups.iter().map(|g| g.cpu_secs).sum();
        if busy_secs - attributed > 0.01 * wall {
            groups.push(GroupCpu {
                group: "unattributed (processes that ended meanwhile)".into(),
                cpu_secs: busy_secs - attributed,
                cores: (busy_secs - attributed) / wall,
            });
        }
        CpuUse {
            wall_secs: wall,
            machine_busy_fraction: if total > 0 { busy as f64 / total as f64 } else { 0.0 },
            by_group: groups,
        }
    }
}

/// (busy, total) jiffies of all cores from `/proc/stat`.
fn machine_ticks() -> (u64, u64) {
    let stat = read("/proc/stat");
    let Some(line) = stat.lines().next() else { return (0, 0) };
    let values: Vec<u64> = line.split_whitespace().skip(1).filter_map(|v| v.parse().ok()).collect();
    let total: u64 = values.iter().take(8).sum();
    // idle + iowait are not busy.
    let idle = values.get(3).copied().unwrap_or(0) + values.get(4).copied().unwrap_or(0);
    (total.saturating_sub(idle), total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_line_with_spaces_in_the_name_parses() {
        let line = "1234 (tokio runtime) S 1 1234 1234 0 -1 4194560 100 0 0 0 250 75 3 4 20 0 8 0 100";
        let (comm, (utime, stime)) = stat_fields(line).unwrap();
        assert_eq!(comm, "tokio runtime");
        assert_eq!((utime, stime), (250, 75));
    }

    #[test]
    fn groups_name_the_parts_of_the_system() {
        assert_eq!(group_of("postgres"), "PostgreSQL");
        assert_eq!(group_of("beam.smp"), "RabbitMQ");
        assert_eq!(group_of("rustc"), "other: compilers (rustc, cargo, cc, ld)");
        assert_eq!(group_of("bash"), "other processes");
    }

    #[test]
    fn this_process_is_visible() {
        let ticks = clock_ticks();
        assert!(process_cpu_secs(std::process::id(), ticks).is_some());
        assert!(memory_kib(std::process::id()).is_some_and(|(rss, hwm)| rss > 0 && hwm >= rss));
    }
}
