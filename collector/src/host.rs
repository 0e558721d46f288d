//! Facts about the machine the collector runs on, as reported to the server.
//!
//! Read from the environment and `/proc` rather than through a system call, so that the crate
//! keeps `unsafe_code = "forbid"` and needs no extra dependency.

/// The machine's host name, or `unknown-host` when none can be found.
pub fn hostname() -> String {
    #[cfg(windows)]
    let candidates = [std::env::var("COMPUTERNAME").ok()];
    #[cfg(not(windows))]
    let candidates = [
        std::fs::read_to_string("/proc/sys/kernel/hostname").ok(),
        std::fs::read_to_string("/etc/hostname").ok(),
        std::env::var("HOSTNAME").ok(),
    ];
    candidates
        .into_iter()
        .flatten()
        .map(|name| name.trim().to_owned())
        .find(|name| !name.is_empty())
        .unwrap_or_else(|| "unknown-host".to_owned())
}

/// A short description of the operating system, e.g. `linux x86_64 (Debian GNU/Linux 12)`.
pub fn os_description() -> String {
    let base = format!("{} {}", std::env::consts::OS, std::env::consts::ARCH);
    match pretty_os_name() {
        Some(name) => format!("{base} ({name})"),
        None => base,
    }
}

#[cfg(target_os = "linux")]
fn pretty_os_name() -> Option<String> {
    let text = std::fs::read_to_string("/etc/os-release").ok()?;
    text.lines()
        .find_map(|line| line.strip_prefix("PRETTY_NAME="))
        .map(|v| v.trim().trim_matches('"').to_owned())
        .filter(|v| !v.is_empty())
}

#[cfg(not(target_os = "linux"))]
fn pretty_os_name() -> Option<String> {
    None
}

#[cfg(test)]
mod tests {
    #[test]
    fn hostname_and_os_are_never_empty() {
        assert!(!super::hostname().is_empty());
        assert!(super::os_description().contains(std::env::consts::OS));
    }
}
