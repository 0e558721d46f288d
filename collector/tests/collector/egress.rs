//! A site that lets its servers out only through its proxy, for real: the collector runs in a
//! network namespace whose direct egress iptables drops, with only a squid proxy (Basic
//! authentication) reachable. The writeback endpoint (a TLS server with a test CA) listens outside
//! the namespace, reachable through squid only.
//!
//! Needs root, iproute2, iptables, squid and openssl (Debian: `apt-get install -y iproute2
//! iptables squid openssl`), so the tests show as ignored unless the run asks for them
//! (`-- --include-ignored`); asked for without them, they fail and say what to install.

use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::helpers::*;
use crate::peers::spawn_https_responder_on;

const PROXY_USER: &str = "wbd-site";
const PROXY_PASSWORD: &str = "Squ1d-Pass-2026";
const AUTH_HELPER: &str = "/usr/lib/squid/basic_ncsa_auth";

fn which(program: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")?
        .to_str()?
        .split(':')
        .chain(["/usr/sbin", "/sbin"])
        .map(|dir| Path::new(dir).join(program))
        .find(|p| p.is_file())
}

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}):\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A network namespace joined to this host by a veth pair (host `.1`, namespace `.2`), whose
/// only way out is TCP to the proxy port on the host side. Removed on drop, with its proxy.
struct ProxyOnlySite {
    netns: String,
    host_ip: Ipv4Addr,
    squid: Option<Child>,
    squid_port: u16,
    dir: tempfile::TempDir,
}

impl Drop for ProxyOnlySite {
    fn drop(&mut self) {
        if let Some(mut squid) = self.squid.take() {
            let _ = squid.kill();
            let _ = squid.wait();
        }
        // Deleting the namespace deletes the veth pair with it.
        let _ = Command::new("ip").args(["netns", "del", &self.netns]).status();
    }
}

impl ProxyOnlySite {
    /// Sets the link up; fails the test, saying what to install, when the machine cannot.
    fn link() -> ProxyOnlySite {
        let install = "install them with `apt-get install -y iproute2 iptables squid openssl` (as root), \
                       or leave out `--include-ignored` to skip the proxy-only egress tests";
        for program in ["ip", "iptables", "squid", "openssl"] {
            assert!(which(program).is_some(), "{program} is not installed: {install}");
        }
        let auth_helper = Path::new(AUTH_HELPER);
        assert!(auth_helper.is_file(), "squid's basic_ncsa_auth is missing: {install}");
        let uid = run(Command::new("id").arg("-u"));
        assert_eq!(uid.trim(), "0", "network namespaces need root; {install}");

        // Names and a /30 of our own per test (interface names are at most 15 characters).
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let pid = std::process::id();
        let tag = format!("{}{n}", pid % 100_000);
        let netns = format!("wbd-egress-{tag}");
        let (host_if, ns_if) = (format!("wbdh{tag}"), format!("wbdn{tag}"));
        let host_ip = Ipv4Addr::new(10, 213, (pid % 250) as u8, (n * 4 % 252 + 1) as u8);
        let ns_ip = Ipv4Addr::from(u32::from(host_ip) + 1);

        let dir = tempfile::tempdir().unwrap();
        let site = ProxyOnlySite { netns: netns.clone(), host_ip, squid: None, squid_port: 0, dir };
        let ns = |args: &[&str]| {
            run(Command::new("ip").args(["netns", "exec", &netns]).args(args));
        };
        run(Command::new("ip").args(["netns", "add", &netns]));
        run(Command::new("ip").args(["link", "add", &host_if, "type", "veth", "peer", "name", &ns_if]));
        run(Command::new("ip").args(["link", "set", &ns_if, "netns", &netns]));
        run(Command::new("ip").args(["addr", "add", &format!("{host_ip}/30"), "dev", &host_if]));
        run(Command::new("ip").args(["link", "set", &host_if, "up"]));
        ns(&["ip", "link", "set", "lo", "up"]);
        ns(&["ip", "addr", "add", &format!("{ns_ip}/30"), "dev", &ns_if]);
        ns(&["ip", "link", "set", &ns_if, "up"]);
        ns(&["ip", "route", "add", "default", "via", &host_ip.to_string()]);
        site
    }

    /// Starts the proxy, squid with Basic authentication on the host side of the link (refusing
    /// CONNECT to `denied_port`), and drops every other way out of the namespace.
    fn start_proxy(&mut self, denied_port: Option<u16>) {
        let host_ip = self.host_ip;
        self.squid_port = {
            let probe = std::net::TcpListener::bind((host_ip, 0)).unwrap();
            probe.local_addr().unwrap().port()
        };
        let work = self.dir.path();
        // squid drops to its own user: let it read and write its directory.
        run(Command::new("chmod").args(["0777", &work.display().to_string()]));
        let hash = run(Command::new("openssl").args(["passwd", "-apr1", PROXY_PASSWORD]));
        std::fs::write(work.join("passwd"), format!("{PROXY_USER}:{}\n", hash.trim())).unwrap();
        let deny = match denied_port {
            Some(port) => format!("acl refused port {port}\nhttp_access deny CONNECT refused\n"),
            None => String::new(),
        };
        let conf = format!(
            "http_port {host_ip}:{port}\n\
             pid_filename none\n\
             cache deny all\n\
             shutdown_lifetime 0 seconds\n\
             access_log stdio:{work}/access.log\n\
             cache_log {work}/cache.log\n\
             coredump_dir {work}\n\
             netdb_filename none\n\
             auth_param basic program {helper} {work}/passwd\n\
             auth_param basic realm wbd-test\n\
             acl site_users proxy_auth REQUIRED\n\
             {deny}\
             http_access allow site_users\n\
             http_access deny all\n",
            port = self.squid_port,
            work = work.display(),
            helper = AUTH_HELPER,
        );
        std::fs::write(work.join("squid.conf"), conf).unwrap();
        let squid = Command::new(which("squid").unwrap())
            .args(["-N", "-f"])
            .arg(work.join("squid.conf"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(work.join("squid.stderr")).unwrap())
            .spawn()
            .unwrap();
        self.squid = Some(squid);
        let started = Instant::now();
        while TcpStream::connect_timeout(
            &SocketAddr::from((host_ip, self.squid_port)),
            Duration::from_secs(1),
        )
        .is_err()
        {
            let exited = self.squid.as_mut().and_then(|s| s.try_wait().ok().flatten());
            if exited.is_some() || started.elapsed() > Duration::from_secs(30) {
                let log = std::fs::read_to_string(work.join("squid.stderr")).unwrap_or_default();
                let cache = std::fs::read_to_string(work.join("cache.log")).unwrap_or_default();
                panic!("squid did not start ({exited:?}):\n{log}\n{cache}");
            }
            std::thread::sleep(Duration::from_millis(100));
        }

        // Direct egress dropped: only loopback and the proxy port on the host side get out.
        let netns = self.netns.clone();
        let ns = |args: &[&str]| {
            run(Command::new("ip").args(["netns", "exec", &netns]).args(args));
        };
        let port = self.squid_port.to_string();
        ns(&["iptables", "-A", "OUTPUT", "-o", "lo", "-j", "ACCEPT"]);
        ns(&[
            "iptables",
            "-A",
            "OUTPUT",
            "-p",
            "tcp",
            "-d",
            &host_ip.to_string(),
            "--dport",
            &port,
            "-j",
            "ACCEPT",
        ]);
        ns(&["iptables", "-A", "OUTPUT", "-j", "DROP"]);
    }

    fn proxy_url(&self) -> String {
        format!("http://{}:{}", self.host_ip, self.squid_port)
    }

    /// `wbd-collector probe --once` inside the namespace, with this config.
    async fn probe_once(&self, config: &str) -> Output {
        let path = self.dir.path().join("collector.toml");
        std::fs::write(&path, config).unwrap();
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.netns, env!("CARGO_BIN_EXE_wbd-collector")])
            .args(["probe", "--once", "--config"])
            .arg(&path);
        cmd.env_remove("RUST_LOG").env_remove("HTTPS_PROXY").env_remove("https_proxy").env("NO_COLOR", "1");
        for (name, _) in std::env::vars_os() {
            if name.to_string_lossy().starts_with("WBD_COLLECTOR_") {
                cmd.env_remove(name);
            }
        }
        cmd.env("WBD_TEST_PROXY_PASSWORD", PROXY_PASSWORD);
        tokio::task::spawn_blocking(move || cmd.output().unwrap()).await.unwrap()
    }

    fn access_log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("access.log")).unwrap_or_default()
    }
}

/// A probe config for one password reset endpoint on the host side, trusting `ca`, reached
/// through the site's proxy with its credentials.
fn config(site: &ProxyOnlySite, ca: &TestCa, endpoint: SocketAddr) -> String {
    let ca_file = ca.write_pem(site.dir.path());
    format!(
        "extra_trusted_ca_files = [{ca_file:?}]\n\
         connect_timeout_secs = 2\n\
         [proxy]\n\
         url = \"{proxy}\"\n\
         username = \"{PROXY_USER}\"\n\
         password_env = \"WBD_TEST_PROXY_PASSWORD\"\n\
         [probes.idle_connection]\n\
         enabled = false\n\
         [[endpoints]]\n\
         host = \"{ip}\"\n\
         port = {port}\n\
         role = \"password_reset\"\n\
         server_name = \"localhost\"\n",
        proxy = site.proxy_url(),
        ip = endpoint.ip(),
        port = endpoint.port(),
    )
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[tokio::test]
#[ignore = "needs root, iproute2, iptables, squid and openssl: run with -- --include-ignored"]
async fn a_site_that_goes_out_only_through_its_proxy_is_judged_on_that_path() {
    init_test_log();
    let mut site = ProxyOnlySite::link();
    let ca = TestCa::new("WBD Public-like Root CA");
    let endpoint = spawn_https_responder_on(ca.leaf("localhost"), site.host_ip).await;
    site.start_proxy(None);

    let out = site.probe_once(&config(&site, &ca, endpoint)).await;
    let stdout = text(&out.stdout);
    let stderr = text(&out.stderr);

    // The direct attempt really was dropped, and the proxy really carried the tunnel.
    assert!(stdout.contains("OK through the proxy  (direct: FAILED at tcp)"), "{stdout}\n{stderr}");
    assert!(
        stdout.contains(&format!("through the proxy {}:{} (configured)", site.host_ip, site.squid_port)),
        "{stdout}"
    );
    let log = site.access_log();
    assert!(log.contains(&format!("CONNECT {endpoint}")) && log.contains(PROXY_USER), "squid log:\n{log}");
    // No false "outbound 443 blocked": nothing fails, and the run passes.
    assert!(stdout.contains("check(s) passed, 0 failed,"), "{stdout}");
    assert!(!stdout.contains("Writeback endpoint is unreachable"), "{stdout}");
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{stderr}");
}

#[tokio::test]
#[ignore = "needs root, iproute2, iptables, squid and openssl: run with -- --include-ignored"]
async fn a_proxy_that_refuses_the_endpoint_is_the_finding_not_the_dropped_direct_path() {
    init_test_log();
    let mut site = ProxyOnlySite::link();
    let ca = TestCa::new("WBD Public-like Root CA");
    let endpoint = spawn_https_responder_on(ca.leaf("localhost"), site.host_ip).await;
    site.start_proxy(Some(endpoint.port()));

    let out = site.probe_once(&config(&site, &ca, endpoint)).await;
    let stdout = text(&out.stdout);

    assert_eq!(out.status.code(), Some(1), "a failing verdict\n{stdout}");
    assert!(stdout.contains("FAILED through the proxy at tunnel  (direct: FAILED at tcp)"), "{stdout}");
    assert!(stdout.contains("Writeback endpoint is unreachable"), "{stdout}");
    let proxy = format!("{}:{}", site.host_ip, site.squid_port);
    assert!(
        stdout.contains(&format!("The proxy {proxy}, through which Entra Connect reaches the internet, refused to open a tunnel to {endpoint} (HTTP 403")),
        "{stdout}"
    );
    assert!(
        stdout.contains("A direct connection fails too (at the tcp step), so the proxy is the only way out."),
        "{stdout}"
    );
}
