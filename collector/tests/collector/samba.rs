//! The Active Directory probe against a real Samba AD domain controller that these tests
//! provision once per run.
//!
//! Needs root and Samba's AD DC packages (Debian: `apt-get install -y samba samba-ad-provision
//! samba-ad-dc`), so the tests show as ignored unless the run asks for them
//! (`-- --include-ignored`); asked for without root or Samba, they fail and say what to install.
//!
//! The DC is provisioned into a temporary directory with only its LDAP service, bound to an
//! address of its own in 127.0.0.0/8 (chosen from the test process id), so it neither needs
//! nor disturbs ports 389/636 on 127.0.0.1 and two test runs do not meet. It stops when the test
//! process ends: `samba -i` exits when its stdin closes. Objects and ACLs are set up with
//! `samba-tool` (`ou add`, `user create`, `group addmembers`, `dsacl set`) and, for what
//! `samba-tool` cannot do (protecting an OU's DACL, `adminCount`), Samba's own Python bindings.
//! LDAPS uses the certificate Samba generates for itself, trusted explicitly through `ca_file`.

use std::io::Read;
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use wbd_collector::config::{AdSettings, ConnectSettings, WindowsSource};
use wbd_collector::config::{Schedule, Secret, Settings};
use wbd_collector::probe::ActiveDirectoryProber;
use wbd_collector::probe::ConnectServerProber;
use wbd_wire::{AccessState, ActiveDirectoryReport, AdStep, ProbeOutput, SyncScopeSource};

const REALM: &str = "WBDTEST.EXAMPLE";
const DOMAIN_DN: &str = "DC=wbdtest,DC=example";
const ADMIN_PASSWORD: &str = "Adm1n-Pass-2026!";
const READER_PASSWORD: &str = "Read3r-Pass-2026!";
const CONNECTOR: &str = "MSOL_0a1b2c3d4e5f";
const CONNECTOR_PASSWORD: &str = "Conn3ctor-Pass-2026!";
const PSO_READER_PASSWORD: &str = "Ps0-Read3r-Pass-2026!";
const USER_PASSWORD: &str = "Us3r-Pass-2026!";
const RESET_PASSWORD: &str = "00299570-246d-11d0-a768-00aa006e0529";
const LOCKOUT_TIME: &str = "28630ebf-41d5-11d1-a9c1-0000f80367c1";
const USER_ACCOUNT_RESTRICTIONS: &str = "4c164200-20c0-11d0-a768-00aa006e0529";
const PWD_LAST_SET: &str = "bf967a0a-0de6-11d0-a285-00aa003049e2";
const USER_CLASS: &str = "bf967aba-0de6-11d0-a285-00aa003049e2";

/// A running Samba DC.
pub struct SambaDc {
    pub ip: Ipv4Addr,
    pub cert_pem: PathBuf,
    // Held so the DC lives as long as the test process; closing stdin stops it.
    _stdin: Mutex<ChildStdin>,
    _child: Mutex<Child>,
}

impl SambaDc {
    pub fn ldaps_url(&self) -> String {
        format!("ldaps://{}:636", self.ip)
    }

    pub fn reader_dn(&self) -> String {
        format!("CN=wbd-reader,CN=Users,{DOMAIN_DN}")
    }
}

static DC: OnceLock<Result<SambaDc, String>> = OnceLock::new();

/// The shared DC, provisioned by the first test that asks; a DC that cannot be provisioned
/// fails every test that needs it.
pub fn samba_dc() -> &'static SambaDc {
    match DC.get_or_init(provision) {
        Ok(dc) => dc,
        Err(e) => panic!("{e}"),
    }
}

fn run(what: &str, cmd: &mut Command) -> Result<String, String> {
    let out = cmd.output().map_err(|e| format!("{what}: cannot run {cmd:?}: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "{what} failed ({}):\n{}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn which(program: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")?
        .to_str()?
        .split(':')
        .chain(["/usr/sbin", "/sbin"])
        .map(|dir| Path::new(dir).join(program))
        .find(|p| p.is_file())
}

fn provision() -> Result<SambaDc, String> {
    let install = "install Samba's AD DC with `apt-get install -y samba samba-ad-provision samba-ad-dc` \
                   (as root), or leave out `--include-ignored` to skip the Active Directory tests";
    let samba_tool = which("samba-tool").ok_or_else(|| format!("samba-tool is not installed: {install}"))?;
    let samba = which("samba").ok_or_else(|| format!("the samba daemon is not installed: {install}"))?;
    let uid = run("id -u", Command::new("id").arg("-u"))?;
    if uid.trim() != "0" {
        return Err(format!("provisioning a Samba DC needs root (running as uid {}); {install}", uid.trim()));
    }
    // Samba's Python bindings live with the interpreter samba-tool runs on.
    let mut shebang = String::new();
    std::fs::File::open(&samba_tool)
        .and_then(|mut f| f.read_to_string(&mut shebang))
        .map_err(|e| e.to_string())?;
    let python = shebang
        .lines()
        .next()
        .and_then(|l| l.strip_prefix("#!"))
        .map(|l| l.trim().to_owned())
        .unwrap_or("python3".into());
    let python: Vec<String> = python.split_whitespace().map(str::to_owned).collect();

    remove_stale_dirs();
    let pid = std::process::id();
    let dir = std::env::temp_dir().join(format!("wbd-samba-{pid}"));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    std::fs::write(dir.join("owner.pid"), pid.to_string()).map_err(|e| e.to_string())?;
    let ip = Ipv4Addr::new(127, 66, (pid / 250 % 250 + 1) as u8, (pid % 250 + 1) as u8);

    let started = Instant::now();
    run(
        "samba-tool domain provision",
        Command::new(&samba_tool)
            .args([
                "domain",
                "provision",
                "--realm",
                REALM,
                "--domain",
                "WBDTEST",
                "--adminpass",
                ADMIN_PASSWORD,
            ])
            .args(["--server-role=dc", "--use-rfc2307", "--dns-backend=NONE", "--host-name=dc1"])
            .arg(format!("--targetdir={}", dir.display()))
            .arg(format!("--option=interfaces = {ip}/8"))
            .arg("--option=bind interfaces only = yes")
            .arg("--option=server services = ldap")
            .arg(format!("--option=log file = {}/log.%m", dir.display())),
    )
    .map_err(|e| {
        format!(
            "{e}\n(A missing schema or LDB module means Samba's AD DC parts are not installed: {install}.)"
        )
    })?;
    let conf = dir.join("etc/smb.conf");
    let ldb = dir.join("private/sam.ldb");
    let tool = |what: &str, args: &[&str]| -> Result<String, String> {
        run(what, Command::new(&samba_tool).args(args).arg("-H").arg(&ldb).arg("-s").arg(&conf))
    };
    for ou in ["OU=Staff", "OU=Locked,OU=Staff", "OU=Granted,OU=Staff", "OU=Contractors", "OU=Synced"] {
        tool("ou add", &["ou", "add", ou])?;
    }
    // No minimum password age for the domain (so that only the fine-grained policy below has
    // one), and a lockout threshold, so that an account can be locked out.
    tool(
        "passwordsettings",
        &["domain", "passwordsettings", "set", "--min-pwd-age=0", "--account-lockout-threshold=3"],
    )?;
    tool("user create reader", &["user", "create", "wbd-reader", READER_PASSWORD])?;
    tool("user create pso reader", &["user", "create", "wbd-pso-reader", PSO_READER_PASSWORD])?;
    tool("user create connector", &["user", "create", CONNECTOR, CONNECTOR_PASSWORD])?;
    tool("user create synced", &["user", "create", "syn.user", USER_PASSWORD, "--userou=OU=Synced"])?;
    tool(
        "user create granted",
        &["user", "create", "gr.user", USER_PASSWORD, "--userou=OU=Granted,OU=Staff"],
    )?;
    tool("user create in Users", &["user", "create", "cn.user", USER_PASSWORD])?;
    // Connector accounts that cannot sign in, one reason each.
    for name in ["conn-disabled", "conn-expired", "conn-mustchange", "conn-locked"] {
        tool("user create account", &["user", "create", name, CONNECTOR_PASSWORD])?;
    }
    tool("user disable", &["user", "disable", "conn-disabled"])?;
    tool("user setexpiry", &["user", "setexpiry", "conn-expired", "--days=0"])?;
    tool(
        "user must change",
        &[
            "user",
            "setpassword",
            "conn-mustchange",
            &format!("--newpassword={CONNECTOR_PASSWORD}"),
            "--must-change-at-next-login",
        ],
    )?;
    // A fine-grained password policy with a two-day minimum age, for a group of synced users.
    tool("group add synced users", &["group", "add", "WBD-Synced-Users"])?;
    tool("group addmembers synced", &["group", "addmembers", "WBD-Synced-Users", "syn.user"])?;
    tool(
        "pso create",
        &["domain", "passwordsettings", "pso", "create", "wbd-two-days", "10", "--min-pwd-age=2"],
    )?;
    tool("pso apply", &["domain", "passwordsettings", "pso", "apply", "wbd-two-days", "WBD-Synced-Users"])?;
    tool("user create staff", &["user", "create", "sam.staff", "Us3r-Pass-2026!", "--userou=OU=Staff"])?;
    tool("user create admin", &["user", "create", "adm.staff", "Us3r-Pass-2026!", "--userou=OU=Staff"])?;
    tool(
        "user create locked",
        &["user", "create", "pat.locked", "Us3r-Pass-2026!", "--userou=OU=Locked,OU=Staff"],
    )?;
    tool("group add", &["group", "add", "WBD-Writeback"])?;
    tool("group addmembers", &["group", "addmembers", "WBD-Writeback", CONNECTOR])?;
    let sid_of = |name: &str| -> Result<String, String> {
        let shown = tool("show sid", &["user", "show", name, "--attributes=objectSid"])
            .or_else(|_| tool("show sid", &["group", "show", name, "--attributes=objectSid"]))?;
        shown
            .lines()
            .find_map(|l| l.strip_prefix("objectSid: "))
            .map(str::to_owned)
            .ok_or_else(|| format!("no objectSid for {name} in {shown}"))
    };
    let connector_sid = sid_of(CONNECTOR)?;
    let group_sid = sid_of("WBD-Writeback")?;

    // What SDProp would do for a protected account, and inheritance disabled on two OUs (before
    // the grants on their parent, so none of them reaches them).
    let script = format!(
        r#"
import ldb
from samba.samdb import SamDB
from samba.param import LoadParm
from samba.auth import system_session
from samba.ndr import ndr_unpack, ndr_pack
from samba.dcerpc import security
lp = LoadParm(); lp.load("{conf}")
db = SamDB("{ldb}", session_info=system_session(), lp=lp)
m = ldb.Message(); m.dn = ldb.Dn(db, "CN=adm.staff,OU=Staff,{DOMAIN_DN}")
m["adminCount"] = ldb.MessageElement("1", ldb.FLAG_MOD_REPLACE, "adminCount")
db.modify(m)
for dn in ["OU=Locked,OU=Staff,{DOMAIN_DN}", "OU=Granted,OU=Staff,{DOMAIN_DN}"]:
    res = db.search(base=dn, scope=ldb.SCOPE_BASE, attrs=["nTSecurityDescriptor"])
    sd = ndr_unpack(security.descriptor, res[0]["nTSecurityDescriptor"][0])
    sd.type |= security.SEC_DESC_DACL_PROTECTED
    m = ldb.Message(); m.dn = ldb.Dn(db, dn)
    m["nTSecurityDescriptor"] = ldb.MessageElement(ndr_pack(sd), ldb.FLAG_MOD_REPLACE, "nTSecurityDescriptor")
    db.modify(m, controls=["sd_flags:1:4"])
"#,
        conf = conf.display(),
        ldb = ldb.display()
    );
    run(
        "python (adminCount, protected DACL)",
        Command::new(&python[0]).args(&python[1..]).arg("-c").arg(script),
    )?;

    // OU=Staff: what Set-ADSyncPasswordWritebackPermissions grants (reset password, write
    // lockoutTime, write pwdLastSet through its property set), inherited by user objects.
    let staff = format!("OU=Staff,{DOMAIN_DN}");
    let grants = format!(
        "(OA;CI;CR;{RESET_PASSWORD};{USER_CLASS};{connector_sid})(OA;CI;WP;{LOCKOUT_TIME};{USER_CLASS};{connector_sid})(OA;CI;WP;{USER_ACCOUNT_RESTRICTIONS};{USER_CLASS};{connector_sid})"
    );
    tool("dsacl set Staff", &["dsacl", "set", &format!("--objectdn={staff}"), &format!("--sddl={grants}")])?;
    // OU=Contractors: reset password allowed but then denied to Everyone (the deny comes first),
    // pwdLastSet through a group the connector is in, lockoutTime not at all.
    let contractors = format!("OU=Contractors,{DOMAIN_DN}");
    let allow = format!(
        "(OA;CI;CR;{RESET_PASSWORD};{USER_CLASS};{connector_sid})(OA;CI;WP;{PWD_LAST_SET};{USER_CLASS};{group_sid})"
    );
    tool(
        "dsacl set Contractors",
        &["dsacl", "set", &format!("--objectdn={contractors}"), &format!("--sddl={allow}")],
    )?;
    let deny = format!("(OD;CI;CR;{RESET_PASSWORD};{USER_CLASS};WD)");
    tool(
        "dsacl set Contractors deny",
        &["dsacl", "set", &format!("--objectdn={contractors}"), &format!("--sddl={deny}")],
    )?;
    // OU=Synced: what Set-ADSyncPasswordWritebackPermissions -ADobjectDN grants on one OU; the
    // domain root denies Reset Password to the connector's group (inherited by the OU, where
    // the explicit grant comes first).
    let synced = format!("OU=Synced,{DOMAIN_DN}");
    tool(
        "dsacl set Synced",
        &["dsacl", "set", &format!("--objectdn={synced}"), &format!("--sddl={grants}")],
    )?;
    // OU=Granted does not inherit, but holds the grants itself.
    let granted = format!("OU=Granted,OU=Staff,{DOMAIN_DN}");
    tool(
        "dsacl set Granted",
        &["dsacl", "set", &format!("--objectdn={granted}"), &format!("--sddl={grants}")],
    )?;
    let head_deny = format!("(OD;CI;CR;{RESET_PASSWORD};{USER_CLASS};{group_sid})");
    tool(
        "dsacl set head deny",
        &["dsacl", "set", &format!("--objectdn={DOMAIN_DN}"), &format!("--sddl={head_deny}")],
    )?;
    // A second reader that may read the fine-grained password policies' settings.
    let pso_reader_sid = sid_of("wbd-pso-reader")?;
    let psc = format!("CN=Password Settings Container,CN=System,{DOMAIN_DN}");
    let read = format!("(A;CI;RPLCLORC;;;{pso_reader_sid})");
    tool("dsacl set PSC read", &["dsacl", "set", &format!("--objectdn={psc}"), &format!("--sddl={read}")])?;

    let log = std::fs::File::create(dir.join("samba.out")).map_err(|e| e.to_string())?;
    let log2 = log.try_clone().map_err(|e| e.to_string())?;
    let mut child = Command::new(&samba)
        .args(["-i", "-M", "single", "-s"])
        .arg(&conf)
        .stdin(Stdio::piped())
        .stdout(log)
        .stderr(log2)
        .spawn()
        .map_err(|e| format!("cannot start samba: {e}"))?;
    let stdin = child.stdin.take().ok_or("no stdin for samba")?;
    let cert_pem = dir.join("private/tls/cert.pem");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            let out = std::fs::read_to_string(dir.join("samba.out")).unwrap_or_default();
            return Err(format!("samba exited ({status}) before listening:\n{out}"));
        }
        let up = TcpStream::connect_timeout(&SocketAddr::from((ip, 636)), Duration::from_millis(200)).is_ok();
        if up && cert_pem.is_file() {
            break;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let out = std::fs::read_to_string(dir.join("samba.out")).unwrap_or_default();
            return Err(format!("samba did not listen on {ip}:636 within 60 s:\n{out}"));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    eprintln!("Samba AD DC provisioned and listening on {ip} in {:.1} s", started.elapsed().as_secs_f64());
    Ok(SambaDc { ip, cert_pem, _stdin: Mutex::new(stdin), _child: Mutex::new(child) })
}

/// Removes DC directories of earlier test processes that are gone.
fn remove_stale_dirs() {
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else { return };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(pid) = name.strip_prefix("wbd-samba-") else { continue };
        if !Path::new("/proc").join(pid).exists() {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

fn config(dc: &SambaDc, extra: &str) -> String {
    format!(
        r#"
[probes.active_directory]
url = "{url}"
bind_dn = "{reader}"
bind_password_env = "WBD_TEST_LDAP_PASSWORD"
ca_file = "{ca}"
connector_account = "{CONNECTOR}"
synced_ous = ["OU=Staff,{DOMAIN_DN}", "OU=Locked,OU=Staff,{DOMAIN_DN}", "OU=Contractors,{DOMAIN_DN}"]
timeout_secs = 10
{extra}
"#,
        url = dc.ldaps_url(),
        reader = dc.reader_dn(),
        ca = dc.cert_pem.display(),
    )
}

fn settings(toml: &str) -> Settings {
    let env = |name: &str| (name == "WBD_TEST_LDAP_PASSWORD").then(|| READER_PASSWORD.to_owned());
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.toml");
    std::fs::write(&path, toml).unwrap();
    Settings::load_with_env(Some(&path), env).unwrap()
}

async fn probe(settings: &Settings) -> ActiveDirectoryReport {
    let ad = settings.probes.active_directory.clone().expect("the AD probe is configured");
    let result = ActiveDirectoryProber::new(ad).unwrap().probe().await;
    match result.output {
        ProbeOutput::ActiveDirectory(report) => report,
        other => panic!("AD result expected, got {other:?}"),
    }
}

#[tokio::test]
#[ignore = "needs root and a Samba AD DC (apt-get install samba samba-ad-provision samba-ad-dc): run with -- --include-ignored"]
async fn the_domain_its_dc_and_the_connector_account_rights_are_read() {
    let dc = samba_dc();
    let settings = settings(&config(dc, ""));

    let r = probe(&settings).await;

    assert_eq!(r.failure, None, "{r:#?}");
    assert!(r.errors.is_empty(), "{:#?}", r.errors);
    // No fine-grained policy applies to a user in these OUs (and the reader may not search them).
    assert_eq!(r.fine_grained_policies, Some(vec![]));
    assert_eq!(r.bound_as.as_deref(), Some(dc.reader_dn().as_str()));
    assert_eq!(r.domain_dn.as_deref(), Some(DOMAIN_DN));
    assert_eq!(r.domain_dns_name.as_deref(), Some("wbdtest.example"));
    assert_eq!(r.netbios_name.as_deref(), Some("WBDTEST"));
    assert_eq!(r.pdc_emulator.as_deref(), Some("dc1.wbdtest.example"));
    assert_eq!(r.answering_dc.as_deref(), Some("dc1.wbdtest.example"));
    assert!(r.domain_functional_level.is_some() && r.forest_functional_level.is_some());
    assert!(r.policy_hints_control.is_some());
    let skew = (r.dc_current_time.unwrap() - chrono::Utc::now()).num_seconds().abs();
    assert!(skew < 120, "the DC's clock is this machine's: {skew} s apart");
    assert_eq!(r.domain_controllers.len(), 1);
    let only = &r.domain_controllers[0];
    assert_eq!(only.dns_host_name.as_deref(), Some("dc1.wbdtest.example"));
    assert_eq!(only.operating_system.as_deref(), Some("Samba"));
    assert_eq!((only.read_only, only.is_pdc_emulator), (Some(false), true));
    let policy = r.password_policy.as_ref().unwrap();
    assert_eq!(policy.min_pwd_age_secs, Some(0), "set to 0 for the domain; a PSO has two days");
    assert_eq!(policy.pwd_history_length, Some(24));

    let c = r.connector_account.as_ref().unwrap();
    assert_eq!(c.dn.as_deref(), Some(format!("CN={CONNECTOR},CN=Users,{DOMAIN_DN}").as_str()));
    assert!(c.sid.as_deref().unwrap().starts_with("S-1-5-21-"));
    assert!(c.group_sid_count.unwrap() >= 2, "Domain Users and WBD-Writeback: {c:?}");
    let names: Vec<&str> = c.containers.iter().map(|o| o.dn.as_str()).collect();
    assert_eq!(names[0], DOMAIN_DN, "the domain head is checked first");
    let ou = |prefix: &str| c.containers.iter().find(|o| o.dn.starts_with(prefix)).unwrap();

    let head = ou("DC=");
    assert_eq!(head.reset_password, Some(AccessState::Denied), "denied to the connector's group");
    assert_eq!(head.inheritance_blocked, Some(false));

    let staff = ou("OU=Staff");
    assert_eq!(staff.error, None);
    assert_eq!(staff.reset_password, Some(AccessState::Allowed));
    assert_eq!(staff.write_lockout_time, Some(AccessState::Allowed));
    assert_eq!(
        staff.write_pwd_last_set,
        Some(AccessState::Allowed),
        "granted through User-Account-Restrictions"
    );
    assert_eq!(
        staff.change_password,
        Some(AccessState::Allowed),
        "Everyone may change their own password by default"
    );
    assert_eq!(staff.inheritance_blocked, Some(false), "{staff:?}");
    // Below the synced OUs, only OU=Granted blocks inheritance (OU=Locked is a synced OU, judged
    // with its own rights), and it grants the rights itself.
    let blocked = c.inheritance_blocked.as_ref().unwrap();
    assert_eq!((blocked.blocked, blocked.without_rights.count), (1, 0), "{blocked:?}");
    let state = c.state.as_ref().unwrap();
    assert_eq!(
        (
            state.disabled,
            state.locked_out,
            state.password_expired,
            state.must_change_password,
            state.account_expired
        ),
        (Some(false), Some(false), Some(false), Some(false), Some(false))
    );
    let scope = r.sync_scope.as_ref().unwrap();
    assert_eq!(
        (scope.included.len(), scope.sources.as_slice()),
        (3, [SyncScopeSource::Configuration].as_slice())
    );

    let locked = ou("OU=Locked");
    assert_eq!(locked.inheritance_blocked, Some(true));
    assert_eq!(locked.reset_password, Some(AccessState::NotGranted), "the grant on OU=Staff stops here");
    assert_eq!(locked.write_lockout_time, Some(AccessState::NotGranted));

    let contractors = ou("OU=Contractors");
    assert_eq!(contractors.reset_password, Some(AccessState::Denied), "a deny for Everyone comes first");
    assert_eq!(contractors.write_pwd_last_set, Some(AccessState::Allowed), "through the group");
    assert_eq!(contractors.write_lockout_time, Some(AccessState::NotGranted));

    let protected = r.protected_accounts.as_ref().unwrap();
    assert_eq!(protected.accounts.count, 1, "{protected:?}");
    assert_eq!(protected.accounts.sample, vec!["adm.staff"]);
    assert_eq!(protected.scope.len(), 3);
}

#[tokio::test]
#[ignore = "needs root and a Samba AD DC (apt-get install samba samba-ad-provision samba-ad-dc): run with -- --include-ignored"]
async fn starttls_and_the_whole_domain_as_scope() {
    let dc = samba_dc();
    let toml = config(dc, "")
        .replace(&dc.ldaps_url(), &format!("ldap://{}:389", dc.ip))
        .replace("timeout_secs = 10", "timeout_secs = 10\nstarttls = true");
    let toml = toml.lines().filter(|l| !l.starts_with("synced_ous")).collect::<Vec<_>>().join("\n");

    let r = probe(&settings(&toml)).await;

    assert_eq!(r.failure, None, "{r:#?}");
    let protected = r.protected_accounts.as_ref().unwrap();
    assert_eq!(protected.scope, vec![DOMAIN_DN]);
    assert!(protected.accounts.sample.contains(&"Administrator".to_owned()), "{protected:?}");
    assert!(protected.accounts.sample.contains(&"adm.staff".to_owned()), "{protected:?}");
    assert_eq!(r.connector_account.as_ref().unwrap().containers.len(), 1);
}

#[tokio::test]
#[ignore = "needs root and a Samba AD DC (apt-get install samba samba-ad-provision samba-ad-dc): run with -- --include-ignored"]
async fn failures_say_which_step_failed() {
    let dc = samba_dc();
    let base = settings(&config(dc, ""));
    let ad = base.probes.active_directory.clone().unwrap();

    // A wrong password.
    let mut wrong = ad.clone();
    wrong.bind_password = Some(Secret::new("not-the-password"));
    let r = probe_with(wrong).await;
    let f = r.failure.unwrap();
    assert_eq!(f.step, AdStep::Bind);
    assert!(f.error.contains("invalid credentials"), "{f:?}");

    // Samba's self-signed certificate, not trusted.
    let mut untrusted = ad.clone();
    untrusted.ca_certs.clear();
    let r = probe_with(untrusted).await;
    assert_eq!(r.failure.unwrap().step, AdStep::Tls);

    // Nothing listens there.
    let mut nobody = ad.clone();
    nobody.url = "ldaps://127.66.255.254:636".into();
    let r = probe_with(nobody).await;
    assert_eq!(r.failure.unwrap().step, AdStep::Connect);

    // A connector account that does not exist: every container says so, the rest is read.
    let mut missing = ad.clone();
    missing.connector_account = Some("MSOL_doesnotexist".into());
    missing.schedule = Schedule { enabled: true, ..missing.schedule };
    let r = probe_with(missing).await;
    assert_eq!(r.failure, None);
    assert!(r.pdc_emulator.is_some());
    let c = r.connector_account.unwrap();
    assert_eq!(c.dn, None);
    assert!(c.containers.iter().all(|o| o.error.as_deref().unwrap().contains("not found")), "{c:?}");
}

async fn probe_with(ad: AdSettings) -> ActiveDirectoryReport {
    match ActiveDirectoryProber::new(ad).unwrap().probe().await.output {
        ProbeOutput::ActiveDirectory(report) => report,
        other => panic!("AD result expected, got {other:?}"),
    }
}

/// The reader's AD settings, synchronising these OUs (none: no `synced_ous`).
fn ad_settings(dc: &SambaDc, synced_ous: &[&str]) -> AdSettings {
    let ous: Vec<String> = synced_ous.iter().map(|ou| format!("\"{ou},{DOMAIN_DN}\"")).collect();
    let toml = config(dc, "")
        .lines()
        .map(|l| {
            if l.starts_with("synced_ous") {
                format!("synced_ous = [{}]", ous.join(", "))
            } else {
                l.to_owned()
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    settings(&toml).probes.active_directory.expect("the AD probe is configured")
}

/// The rule pack's verdict of `rule` on one AD report, as the server would give it.
fn verdict(report: &ActiveDirectoryReport, rule: &str) -> wbd_rules::Outcome {
    let now = chrono::Utc::now();
    let site = uuid::Uuid::nil();
    let facts = wbd_rules::TenantFacts {
        now,
        collectors: vec![wbd_rules::CollectorState {
            id: site,
            name: "site".into(),
            active: true,
            last_seen_at: Some(now),
            silent_after: Some(now + chrono::Duration::minutes(15)),
            push_interval_secs: 300,
        }],
        facts: vec![wbd_rules::FactInput {
            collector_id: site,
            subject: format!("ldap:{}", report.server),
            observed_at: now,
            output: ProbeOutput::ActiveDirectory(report.clone()),
        }],
    };
    wbd_rules::evaluate(&facts).into_iter().find(|e| e.rule_id == rule).expect("evaluated").outcome
}

fn text(outcome: &wbd_rules::Outcome) -> String {
    outcome.text(wbd_rules::Lang::En).unwrap_or_default()
}

/// An LDAPS session with the DC bound as `dn`; the error is the DC's answer.
async fn bind_as(dc: &SambaDc, dn: &str, password: &str) -> Result<ldap3::Ldap, String> {
    let settings = ldap3::LdapConnSettings::new().set_no_tls_verify(true);
    let (conn, mut ldap) =
        ldap3::LdapConnAsync::with_settings(settings, &dc.ldaps_url()).await.map_err(|e| e.to_string())?;
    ldap3::drive!(conn);
    ldap.simple_bind(dn, password).await.and_then(|r| r.success()).map_err(|e| e.to_string())?;
    Ok(ldap)
}

/// Ground truth: the connector account resets `target`'s password itself, as writeback would.
async fn connector_resets(dc: &SambaDc, target: &str) -> Result<(), String> {
    let mut ldap = bind_as(dc, &format!("CN={CONNECTOR},CN=Users,{DOMAIN_DN}"), CONNECTOR_PASSWORD).await?;
    let quoted: Vec<u8> = "\"Wr1teback-Reset-2026!\"".encode_utf16().flat_map(u16::to_le_bytes).collect();
    let change = ldap3::Mod::Replace(b"unicodePwd".to_vec(), std::collections::HashSet::from([quoted]));
    let result = ldap
        .modify(target, vec![change])
        .await
        .and_then(|r| r.success())
        .map(|_| ())
        .map_err(|e| e.to_string());
    let _ = ldap.unbind().await;
    result
}

#[tokio::test]
#[ignore = "needs root and a Samba AD DC (apt-get install samba samba-ad-provision samba-ad-dc): run with -- --include-ignored"]
async fn rights_granted_on_the_synced_ou_only_are_enough() {
    let dc = samba_dc();
    // What Set-ADSyncPasswordWritebackPermissions -ADobjectDN leaves: rights on OU=Synced, none
    // (here: a deny for the connector's group) on the domain root.
    let r = probe_with(ad_settings(dc, &["OU=Synced"])).await;

    let c = r.connector_account.as_ref().unwrap();
    let at = |dn: &str| c.containers.iter().find(|o| o.dn.eq_ignore_ascii_case(dn)).unwrap();
    assert_eq!(at(DOMAIN_DN).reset_password, Some(AccessState::Denied));
    let synced = at(&format!("OU=Synced,{DOMAIN_DN}"));
    assert_eq!(
        (synced.reset_password, synced.write_lockout_time, synced.write_pwd_last_set),
        (Some(AccessState::Allowed), Some(AccessState::Allowed), Some(AccessState::Allowed)),
        "the explicit grant on the OU comes before the deny it inherits"
    );
    let outcome = verdict(&r, "connector-account-permissions");
    assert!(outcome.is_pass(), "judged on the synced OU, not the domain root: {outcome:?}");
    // Ground truth: the connector account resets a synced user, and not one under the root's deny.
    assert_eq!(connector_resets(dc, &format!("CN=syn.user,OU=Synced,{DOMAIN_DN}")).await, Ok(()));
    let refused = connector_resets(dc, &format!("CN=cn.user,CN=Users,{DOMAIN_DN}")).await;
    assert!(refused.is_err(), "the deny at the root holds where nothing overrides it");

    // The same scope read from the Connect server's connector configuration instead.
    let dir = tempfile::tempdir().unwrap();
    let export = dir.path().join("connect-state.json");
    let partitions = format!(
        "<ma-partition-data><partition><name>{DOMAIN_DN}</name><selected>1</selected><filter><containers>\
         <exclusions><exclusion>{DOMAIN_DN}</exclusion></exclusions>\
         <inclusions><inclusion>OU=Synced,{DOMAIN_DN}</inclusion></inclusions></containers></filter>\
         <custom-data><adma-partition-data><dn>{DOMAIN_DN}</dn><is-domain>1</is-domain></adma-partition-data></custom-data>\
         </partition></ma-partition-data>"
    );
    let state = serde_json::json!({
        "schema": "wbd-connect-state/1", "computerName": "AADC01",
        "connectors": [{"name": "wbdtest.example", "connectorTypeName": "AD", "maPartitionData": partitions, "runs": []}]
    });
    std::fs::write(&export, state.to_string()).unwrap();
    let connect = ConnectServerProber::new(
        ConnectSettings {
            schedule: Schedule { enabled: true, interval: Duration::from_secs(900), jitter_percent: 0 },
            source: WindowsSource::Export(export),
            timeout: Duration::from_secs(5),
        },
        dir.path().to_owned(),
    );
    let prober = ActiveDirectoryProber::new(ad_settings(dc, &[])).unwrap().with_connect_state(connect);
    let ProbeOutput::ActiveDirectory(r) = prober.probe().await.output else { panic!("AD result expected") };
    let scope = r.sync_scope.as_ref().unwrap();
    assert_eq!(
        (scope.included.as_slice(), scope.sources.as_slice()),
        ([format!("OU=Synced,{DOMAIN_DN}")].as_slice(), [SyncScopeSource::Connect].as_slice())
    );
    assert!(verdict(&r, "connector-account-permissions").is_pass());
}

#[tokio::test]
#[ignore = "needs root and a Samba AD DC (apt-get install samba samba-ad-provision samba-ad-dc): run with -- --include-ignored"]
async fn blocked_inheritance_is_reported_once_and_only_where_the_rights_are_missing() {
    let dc = samba_dc();
    let r = probe_with(ad_settings(dc, &["OU=Staff"])).await;

    let blocked = r.connector_account.as_ref().unwrap().inheritance_blocked.as_ref().unwrap();
    // OU=Locked and OU=Granted do not inherit; OU=Granted holds the grants itself.
    assert_eq!(blocked.blocked, 2, "{blocked:?}");
    assert_eq!(blocked.without_rights.sample, [format!("OU=Locked,OU=Staff,{DOMAIN_DN}")]);
    let outcome = verdict(&r, "inheritance-not-blocked");
    let said = text(&outcome);
    assert!(outcome.is_fail(), "{outcome:?}");
    assert!(said.contains("(1 in all)"), "counted once: {said}");
    assert!(said.contains("OU=Locked") && !said.contains("OU=Granted"), "{said}");
    // Ground truth: the connector account resets the user behind OU=Granted, not the one behind
    // OU=Locked.
    assert_eq!(connector_resets(dc, &format!("CN=gr.user,OU=Granted,OU=Staff,{DOMAIN_DN}")).await, Ok(()));
    assert!(connector_resets(dc, &format!("CN=pat.locked,OU=Locked,OU=Staff,{DOMAIN_DN}")).await.is_err());
}

#[tokio::test]
#[ignore = "needs root and a Samba AD DC (apt-get install samba samba-ad-provision samba-ad-dc): run with -- --include-ignored"]
async fn fine_grained_password_policies_are_read_where_the_account_may() {
    let dc = samba_dc();
    // The plain reader sees that a policy applies to the synced user, not its settings.
    let r = probe_with(ad_settings(dc, &["OU=Synced"])).await;
    let policies = r.fine_grained_policies.as_ref().unwrap();
    assert_eq!(policies.len(), 1, "{policies:?}");
    assert_eq!(
        (policies[0].name.as_str(), policies[0].min_pwd_age_secs, policies[0].synced_users),
        ("wbd-two-days", None, Some(1))
    );
    let outcome = verdict(&r, "min-password-age-zero");
    assert!(matches!(outcome, wbd_rules::Outcome::Unknown { .. }), "not a pass it cannot know: {outcome:?}");
    assert!(text(&outcome).contains("wbd-two-days"), "{}", text(&outcome));

    // An account allowed to read the Password Settings Container reads it all.
    let mut ad = ad_settings(dc, &["OU=Synced"]);
    ad.bind_dn = Some(format!("CN=wbd-pso-reader,CN=Users,{DOMAIN_DN}"));
    ad.bind_password = Some(Secret::new(PSO_READER_PASSWORD));
    let r = probe_with(ad).await;
    let pso = &r.fine_grained_policies.as_ref().unwrap()[0];
    assert_eq!(
        (pso.min_pwd_age_secs, pso.synced_users, pso.precedence),
        (Some(2 * 86_400), Some(1), Some(10))
    );
    assert_eq!(pso.applies_to, [format!("CN=WBD-Synced-Users,CN=Users,{DOMAIN_DN}")]);
    let outcome = verdict(&r, "min-password-age-zero");
    let said = text(&outcome);
    assert!(outcome.is_fail(), "{outcome:?}");
    assert!(said.contains("wbd-two-days") && said.contains("48 hours"), "{said}");
}

#[tokio::test]
#[ignore = "needs root and a Samba AD DC (apt-get install samba samba-ad-provision samba-ad-dc): run with -- --include-ignored"]
async fn the_connector_account_state_is_read_and_a_refused_bind_decoded() {
    let dc = samba_dc();
    // Three wrong passwords lock conn-locked out (the domain's threshold).
    let locked = format!("CN=conn-locked,CN=Users,{DOMAIN_DN}");
    for _ in 0..3 {
        let _ = bind_as(dc, &locked, "not-its-password").await;
    }
    for (account, cause) in [
        ("conn-disabled", "It is disabled"),
        ("conn-expired", "The account expired on"),
        ("conn-mustchange", "must change its password"),
        ("conn-locked", "It is locked out"),
    ] {
        // Read by the reader.
        let mut ad = ad_settings(dc, &["OU=Synced"]);
        ad.connector_account = Some(account.to_owned());
        let r = probe_with(ad.clone()).await;
        let outcome = verdict(&r, "connector-account-usable");
        assert!(outcome.is_fail() && text(&outcome).contains(cause), "{account}: {}", text(&outcome));

        // The probe binding as that account: the DC's refusal says the same.
        ad.bind_dn = Some(format!("CN={account},CN=Users,{DOMAIN_DN}"));
        ad.bind_password = Some(Secret::new(CONNECTOR_PASSWORD));
        let r = probe_with(ad).await;
        assert_eq!(r.failure.as_ref().map(|f| f.step), Some(AdStep::Bind), "{account}: {r:?}");
        let state = r.connector_account.as_ref().and_then(|c| c.state.as_ref()).expect("decoded");
        assert!(state.bind_refusal_code.is_some(), "{account}: {state:?}");
        let outcome = verdict(&r, "connector-account-usable");
        assert!(
            outcome.is_fail() && text(&outcome).contains(cause),
            "{account}, bound as itself: {outcome:?}"
        );
    }
    // The real connector account can sign in.
    let r = probe_with(ad_settings(dc, &["OU=Synced"])).await;
    assert!(verdict(&r, "connector-account-usable").is_pass());
}
