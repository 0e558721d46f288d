//! The HTTP client every delivery uses, and the network policy it enforces (SSRF guard).
//!
//! Integration URLs are typed by customers, so a delivery must not become a way to reach what
//! only our servers can reach: loopback services, the private network, cloud metadata
//! (`169.254.169.254`). Checking the URL when it is saved is not enough: a name can resolve to
//! a public address on save and to `127.0.0.1` at delivery time (DNS rebinding). So the check
//! happens where the socket is opened:
//!
//! - names are resolved by [`Guard`]'s own resolver, which drops every refused address from the
//!   answer and fails with [`Blocked`] when none is left; the connection only ever goes to an
//!   address that passed the check;
//! - IP-literal hosts never reach a resolver, so [`crate::connector::Http::send`] checks the URL
//!   with [`NetworkPolicy::check_url`] before each request;
//! - redirects are never followed (a public endpoint could redirect to an internal one) and no
//!   proxy is used (the proxy would resolve, and connect, on our behalf).
//!
//! An on-premises install may need to reach a PSA on its own network: the operator allow-lists
//! those subnets ([`NetworkPolicy::new`]).

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use url::{Host, Url};

/// A destination we refuse, with the reason in words a user can act on.
///
/// It travels from the resolver through reqwest's error chain;
/// [`crate::connector::Http`] finds it there and reports [`crate::DeliveryError::Blocked`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Blocked(pub String);

/// Connecting takes at most this long, whatever the attempt's timeout.
const MAX_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// What deliveries may reach. Public addresses always; anything else only if allow-listed.
#[derive(Debug, Clone, Default)]
pub struct NetworkPolicy {
    allow: Vec<IpNet>,
    https_only: bool,
    /// Names answered from this table instead of DNS (tests); still filtered.
    static_hosts: HashMap<String, Vec<IpAddr>>,
}

impl NetworkPolicy {
    /// `allow`: CIDRs (`10.20.0.0/16`, `fd00::/8`) or bare addresses (`192.168.1.10`) the
    /// operator lets deliveries reach although they are not public. `https_only` refuses
    /// plain-HTTP destinations. The error names the entry that does not parse.
    pub fn new(allow: &[String], https_only: bool) -> Result<NetworkPolicy, String> {
        let allow = allow
            .iter()
            .map(|entry| {
                IpNet::parse(entry).map_err(|why| format!("network allow-list entry `{entry}`: {why}"))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(NetworkPolicy { allow, https_only, static_hosts: HashMap::new() })
    }

    /// Answers `name` with `addrs` instead of asking DNS (for tests). The addresses are still
    /// checked like a DNS answer.
    pub fn with_static_host(mut self, name: &str, addrs: Vec<IpAddr>) -> Self {
        self.static_hosts.insert(normalize_host(name), addrs);
        self
    }

    pub fn https_only(&self) -> bool {
        self.https_only
    }

    /// Whether a connection to `ip` is allowed.
    pub fn check_ip(&self, ip: IpAddr) -> Result<(), Blocked> {
        let Some(kind) = refusal(ip) else { return Ok(()) };
        if self.is_allow_listed(ip) {
            return Ok(());
        }
        Err(Blocked(format!(
            "{ip} is {kind} address; deliveries may reach it only if the operator allow-lists it"
        )))
    }

    /// What can be decided from the URL alone: the scheme (http or https; https only if so
    /// configured), no credentials in the URL, and the address if the host is an IP literal.
    /// Host names are checked when they are resolved.
    ///
    /// Credentials in a URL are refused when an integration is saved (its destinations are
    /// checked here); by the time a request is sent, reqwest has moved them into an
    /// `Authorization` header.
    ///
    /// The `url` crate has already turned every IPv4 spelling (`2130706433`, `0177.0.0.1`,
    /// `0x7f.1`) into the dotted form, as browsers do, so those arrive here as IP literals.
    pub fn check_url(&self, url: &Url) -> Result<(), Blocked> {
        match url.scheme() {
            "https" => {}
            "http" if !self.https_only => {}
            "http" => return Err(Blocked("this server delivers to https URLs only".into())),
            other => return Err(Blocked(format!("`{other}` URLs cannot be delivered to; use https"))),
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(Blocked(
                "the URL carries a user name or password; put credentials in the integration's settings"
                    .into(),
            ));
        }
        match url.host() {
            None => Err(Blocked("the URL has no host".into())),
            Some(Host::Ipv4(ip)) => self.check_ip(IpAddr::V4(ip)),
            Some(Host::Ipv6(ip)) => self.check_ip(IpAddr::V6(ip)),
            Some(Host::Domain(_)) => Ok(()),
        }
    }

    /// The addresses of a DNS answer for `host` that may be connected to; [`Blocked`] if the
    /// answer had addresses but none of them may be. A mixed answer keeps its public part:
    /// the connection can then only go there.
    pub fn filter_resolved(&self, host: &str, resolved: &[IpAddr]) -> Result<Vec<IpAddr>, Blocked> {
        let (allowed, refused): (Vec<IpAddr>, Vec<IpAddr>) =
            resolved.iter().partition(|ip| self.check_ip(**ip).is_ok());
        if !refused.is_empty() {
            // The addresses go to the operator's log only: showing them to whoever typed the
            // URL would let them map our internal DNS.
            tracing::warn!(
                host,
                ?refused,
                kept = allowed.len(),
                "DNS answer holds addresses deliveries may not reach"
            );
        }
        if allowed.is_empty() && !refused.is_empty() {
            return Err(Blocked(format!(
                "{host} resolves only to loopback, private, link-local or reserved addresses; \
                 deliveries may reach those only if the operator allow-lists them"
            )));
        }
        Ok(allowed)
    }

    /// Resolves `host` (static table, else the system resolver) and keeps what may be reached.
    async fn resolve(&self, host: &str) -> Result<Vec<IpAddr>, Box<dyn std::error::Error + Send + Sync>> {
        let resolved: Vec<IpAddr> = match self.static_hosts.get(&normalize_host(host)) {
            Some(addrs) => addrs.clone(),
            None => tokio::net::lookup_host((host, 0)).await?.map(|addr| addr.ip()).collect(),
        };
        if resolved.is_empty() {
            return Err(format!("{host} has no address").into());
        }
        // Boxed as `Blocked` itself (not inside an io::Error, whose `source()` would skip it)
        // so the connector can find it in the error chain.
        Ok(self.filter_resolved(host, &resolved)?)
    }

    fn is_allow_listed(&self, ip: IpAddr) -> bool {
        // `::ffff:10.1.2.3` reaches 10.1.2.3: an allow-listed IPv4 net covers its mapped form.
        let mapped = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4),
            IpAddr::V4(_) => None,
        };
        self.allow.iter().any(|net| net.contains(ip) || mapped.is_some_and(|v4| net.contains(v4)))
    }
}

fn normalize_host(name: &str) -> String {
    name.trim_end_matches('.').to_ascii_lowercase()
}

/// A network: an address and a prefix length (`10.20.0.0/16`, `fd00::/8`, or a bare address).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpNet {
    addr: IpAddr,
    prefix: u8,
}

impl IpNet {
    /// Reads `10.20.0.0/16`, `fd00::/8` or a bare address; the error says what is wrong.
    pub fn parse(entry: &str) -> Result<IpNet, String> {
        let entry = entry.trim();
        let (addr, prefix) = match entry.split_once('/') {
            Some((addr, prefix)) => (addr, Some(prefix)),
            None => (entry, None),
        };
        let addr: IpAddr = addr.parse().map_err(|_| "not an IPv4 or IPv6 address".to_owned())?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) => match p.parse::<u8>() {
                Ok(p) if p <= max => p,
                _ => return Err(format!("the prefix length must be a number from 0 to {max}")),
            },
        };
        Ok(IpNet { addr, prefix })
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => in_v4(ip, u32::from(net), self.prefix),
            (IpAddr::V6(net), IpAddr::V6(ip)) => in_v6(ip, u128::from(net), self.prefix),
            _ => false,
        }
    }
}

fn in_v4(ip: Ipv4Addr, net: u32, prefix: u8) -> bool {
    let mask = u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
    u32::from(ip) & mask == net & mask
}

fn in_v6(ip: Ipv6Addr, net: u128, prefix: u8) -> bool {
    let mask = u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0);
    u128::from(ip) & mask == net & mask
}

/// Whether `ip` is a public unicast address, that is, one a delivery may reach without the
/// operator's allow-list. IPv6 forms that carry an IPv4 address (mapped, compatible, NAT64,
/// 6to4, Teredo) are judged by that address too.
pub fn is_public(ip: IpAddr) -> bool {
    refusal(ip).is_none()
}

/// IPv4 ranges that are not public, as `(network, prefix, what it is)`.
const REFUSED_V4: &[(u32, u8, &str)] = &[
    (0x0000_0000, 8, "a \"this network\""),
    (0x0a00_0000, 8, "a private"),
    (0x6440_0000, 10, "a carrier-grade NAT (shared)"),
    (0x7f00_0000, 8, "a loopback"),
    (0xa9fe_0000, 16, "a link-local (cloud metadata)"),
    (0xac10_0000, 12, "a private"),
    (0xc000_0000, 24, "an IETF protocol"),
    (0xc000_0200, 24, "a documentation"),
    (0xc058_6300, 24, "a 6to4 relay"),
    (0xc0a8_0000, 16, "a private"),
    (0xc612_0000, 15, "a benchmarking"),
    (0xc633_6400, 24, "a documentation"),
    (0xcb00_7100, 24, "a documentation"),
    (0xe000_0000, 4, "a multicast"),
    // 240/4 includes the broadcast address 255.255.255.255.
    (0xf000_0000, 4, "a reserved"),
];

/// IPv6 ranges that are not public. Forms carrying IPv4 are handled before this table.
const REFUSED_V6: &[(u128, u8, &str)] = &[
    (0, 128, "the unspecified"),
    (1, 128, "a loopback"),
    (0xfe80 << 112, 10, "a link-local"),
    (0xfc00 << 112, 7, "a unique local (private)"),
    (0xff00 << 112, 8, "a multicast"),
    (0xfec0 << 112, 10, "a site-local"),
    (0x0100 << 112, 64, "a discard-only"),
    (0x2001_0db8 << 96, 32, "a documentation"),
    (0x3fff << 112, 20, "a documentation"),
    (0x2001_0002 << 96, 48, "a benchmarking"),
    (0x2001_0010 << 96, 28, "an ORCHID"),
    (0x2001_0020 << 96, 28, "an ORCHID"),
    (0x0064_ff9b_0001 << 80, 48, "a local-use NAT64"),
];

/// Why `ip` is not public (`"a loopback"` …), or `None` if it is.
fn refusal(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => refusal_v4(v4),
        IpAddr::V6(v6) => refusal_v6(v6),
    }
}

fn refusal_v4(ip: Ipv4Addr) -> Option<&'static str> {
    REFUSED_V4.iter().find(|(net, prefix, _)| in_v4(ip, *net, *prefix)).map(|(_, _, kind)| *kind)
}

fn refusal_v6(ip: Ipv6Addr) -> Option<&'static str> {
    let bits = u128::from(ip);
    // Exact special addresses first, so `::1` is called a loopback rather than an
    // IPv4-compatible 0.0.0.1.
    if bits <= 1 {
        return REFUSED_V6.iter().find(|(net, _, _)| *net == bits).map(|(_, _, kind)| *kind);
    }
    if let Some(v4) = ipv4_destination(ip) {
        return refusal_v4(v4);
    }
    if let Some((_, _, kind)) = REFUSED_V6.iter().find(|(net, prefix, _)| in_v6(ip, *net, *prefix)) {
        return Some(kind);
    }
    // 6to4 (2002:AABB:CCDD::/48) tunnels to the IPv4 address AA.BB.CC.DD.
    if in_v6(ip, 0x2002 << 112, 16) {
        let embedded = Ipv4Addr::from(((bits >> 80) & 0xffff_ffff) as u32);
        if let Some(kind) = refusal_v4(embedded) {
            return Some(kind);
        }
    }
    // Teredo (2001:0::/32): the server's IPv4 address follows the prefix; the client's is the
    // last 32 bits, inverted.
    if in_v6(ip, 0x2001_0000 << 96, 32) {
        let server = Ipv4Addr::from(((bits >> 64) & 0xffff_ffff) as u32);
        let client = Ipv4Addr::from(!((bits & 0xffff_ffff) as u32));
        if let Some(kind) = refusal_v4(server).or_else(|| refusal_v4(client)) {
            return Some(kind);
        }
    }
    // Only 2000::/3 is allocated as global unicast; anything else is not a destination.
    if !in_v6(ip, 0x2000 << 112, 3) {
        return Some("a reserved");
    }
    None
}

/// The IPv4 address an IPv6 address stands for, where the IPv4 address *is* the destination:
/// IPv4-mapped `::ffff:a.b.c.d`, IPv4-compatible `::a.b.c.d` (deprecated, still routed by some
/// stacks), IPv4-translated `::ffff:0:a.b.c.d` (SIIT) and the NAT64 well-known prefix
/// `64:ff9b::/96`.
fn ipv4_destination(ip: Ipv6Addr) -> Option<Ipv4Addr> {
    let carriers: [(u128, u8); 4] =
        [(0xffff << 32, 96), (0, 96), (0xffff << 48, 96), (0x0064_ff9b << 96, 96)];
    carriers
        .iter()
        .any(|(net, prefix)| in_v6(ip, *net, *prefix))
        .then(|| Ipv4Addr::from((u128::from(ip) & 0xffff_ffff) as u32))
}

/// reqwest's resolver for [`Guard`]: resolves, then keeps only addresses the policy allows.
struct GuardedResolver {
    policy: Arc<NetworkPolicy>,
}

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let policy = self.policy.clone();
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let allowed = policy.resolve(&host).await?;
            // Port 0: reqwest puts in the URL's port.
            let addrs: Addrs = Box::new(allowed.into_iter().map(|ip| SocketAddr::new(ip, 0)));
            Ok(addrs)
        })
    }
}

/// The network policy and the HTTP client that enforces it. Build one per process and share
/// it (the client pools connections); [`crate::connector::Http`] borrows it per attempt.
#[derive(Clone)]
pub struct Guard {
    policy: Arc<NetworkPolicy>,
    client: reqwest::Client,
}

impl std::fmt::Debug for Guard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Guard").field("policy", &self.policy).finish_non_exhaustive()
    }
}

impl Guard {
    /// `attempt_timeout` bounds one request from connecting to the last byte of the answer.
    pub fn new(policy: NetworkPolicy, attempt_timeout: Duration) -> Guard {
        let policy = Arc::new(policy);
        let client = reqwest::Client::builder()
            .dns_resolver(Arc::new(GuardedResolver { policy: policy.clone() }))
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .timeout(attempt_timeout)
            .connect_timeout(attempt_timeout.min(MAX_CONNECT_TIMEOUT))
            .user_agent(concat!("WritebackDoctor/", env!("CARGO_PKG_VERSION")))
            .https_only(policy.https_only)
            .build()
            // Fails only if the TLS backend cannot start, which no delivery could survive.
            .expect("the HTTP client (TLS backend) can be built");
        Guard { policy, client }
    }

    pub fn policy(&self) -> &NetworkPolicy {
        &self.policy
    }

    pub fn client(&self) -> &reqwest::Client {
        &self.client
    }

    pub(crate) fn shared_policy(&self) -> Arc<NetworkPolicy> {
        self.policy.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn internal_ipv4_ranges_are_refused() {
        for s in [
            "0.0.0.0",
            "0.1.2.3",
            "10.0.0.1",
            "10.255.255.255",
            "100.64.0.1",
            "100.127.255.254",
            "127.0.0.1",
            "127.255.255.254",
            "169.254.169.254",
            "172.16.0.1",
            "172.31.255.255",
            "192.0.0.8",
            "192.0.2.1",
            "192.88.99.1",
            "192.168.1.1",
            "198.18.0.1",
            "198.19.255.255",
            "198.51.100.7",
            "203.0.113.9",
            "224.0.0.1",
            "239.255.255.250",
            "240.0.0.1",
            "255.255.255.255",
        ] {
            assert!(!is_public(ip(s)), "{s} must be refused");
        }
    }

    #[test]
    fn public_ipv4_and_range_edges_pass() {
        for s in [
            "1.1.1.1",
            "8.8.8.8",
            "100.63.255.255",
            "100.128.0.0",
            "172.15.255.255",
            "172.32.0.0",
            "169.253.255.255",
            "192.0.1.1",
            "198.17.255.255",
            "198.20.0.0",
            "223.255.255.255",
            "52.95.110.1",
        ] {
            assert!(is_public(ip(s)), "{s} is public");
        }
    }

    #[test]
    fn internal_ipv6_ranges_are_refused() {
        for s in [
            "::",
            "::1",
            "fe80::1",
            "febf::1",
            "fc00::1",
            "fd12:3456::1",
            "ff02::1",
            "2001:db8::1",
            "100::1",
            "fec0::1",
            "3fff::1",
            "4000::1",
            "64:ff9b:1::a00:1",
        ] {
            assert!(!is_public(ip(s)), "{s} must be refused");
        }
    }

    #[test]
    fn ipv4_carried_in_ipv6_is_judged_by_the_ipv4_address() {
        for s in [
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
            "::ffff:a9fe:a9fe",
            "::ffff:10.0.0.1",
            "::127.0.0.1",
            "::ffff:0:127.0.0.1",
            "64:ff9b::169.254.169.254",
            "64:ff9b::7f00:1",
            // 6to4 of 127.0.0.1 and 10.0.0.1
            "2002:7f00:1::1",
            "2002:a00:1::",
            // Teredo: client 127.0.0.1 inverted is 80ff:fffe; server 1.2.3.4 is public
            "2001:0:102:304::80ff:fffe",
            // Teredo with a private server address
            "2001:0:a00:1::",
        ] {
            assert!(!is_public(ip(s)), "{s} must be refused");
        }
        for s in [
            "::ffff:8.8.8.8",
            "64:ff9b::808:808",
            "2002:808:808::1",
            // Teredo: server 65.54.227.120, client 8.8.8.8 (inverted f7f7:f7f7)
            "2001:0:4136:e378:8000:63bf:f7f7:f7f7",
            "2606:4700:4700::1111",
            "2a00:1450:4001:80b::200e",
        ] {
            assert!(is_public(ip(s)), "{s} is public");
        }
    }

    #[test]
    fn allow_list_entries_parse_and_name_the_bad_one() {
        let policy =
            NetworkPolicy::new(&["10.20.0.0/16".into(), "192.168.1.10".into(), "fd00::/8".into()], false)
                .unwrap();
        assert!(policy.check_ip(ip("10.20.3.4")).is_ok());
        assert!(policy.check_ip(ip("::ffff:10.20.3.4")).is_ok(), "mapped form of an allowed net");
        assert!(policy.check_ip(ip("10.21.0.1")).is_err());
        assert!(policy.check_ip(ip("192.168.1.10")).is_ok());
        assert!(policy.check_ip(ip("192.168.1.11")).is_err());
        assert!(policy.check_ip(ip("fd12::1")).is_ok());
        assert!(policy.check_ip(ip("127.0.0.1")).is_err());
        assert!(policy.check_ip(ip("8.8.8.8")).is_ok());

        for (entry, says) in
            [("10.0.0.0/33", "0 to 32"), ("fd00::/129", "0 to 128"), ("intranet", "not an IPv4")]
        {
            let err = NetworkPolicy::new(&["10.0.0.0/8".into(), entry.into()], false).unwrap_err();
            assert!(err.contains(entry) && err.contains(says), "{err}");
        }
        let all = NetworkPolicy::new(&["0.0.0.0/0".into()], false).unwrap();
        assert!(all.check_ip(ip("169.254.169.254")).is_ok());
    }

    #[test]
    fn refusals_say_what_the_address_is() {
        let policy = NetworkPolicy::new(&[], false).unwrap();
        let Blocked(why) = policy.check_ip(ip("169.254.169.254")).unwrap_err();
        assert!(why.contains("link-local") && why.contains("allow-list"), "{why}");
        let Blocked(why) = policy.check_ip(ip("::1")).unwrap_err();
        assert!(why.contains("loopback"), "{why}");
    }

    #[test]
    fn urls_are_checked_for_scheme_credentials_and_literal_addresses() {
        let policy = NetworkPolicy::new(&[], false).unwrap();
        let check = |u: &str| policy.check_url(&Url::parse(u).unwrap());
        assert!(check("https://psa.example.com/v4_6_release/apis/3.0").is_ok());
        assert!(check("http://psa.example.com/").is_ok());
        assert!(check("ftp://psa.example.com/").is_err());
        assert!(check("file:///etc/passwd").is_err());
        assert!(check("https://user:pass@psa.example.com/").is_err());
        assert!(check("https://user@psa.example.com/").is_err());
        // The url crate normalises every IPv4 spelling, so all of these are literal 127.0.0.1
        // or 169.254.169.254.
        for u in [
            "http://127.0.0.1/",
            "http://2130706433/",
            "http://0177.0.0.1/",
            "http://0x7f.1/",
            "http://127.1/",
            "http://169.254.169.254/latest/meta-data/",
            "http://2852039166/",
            "http://0251.0376.0251.0376/",
            "http://0xa9fea9fe/",
            "http://0xa9.0xfe.0xa9.0xfe/",
            "http://[::ffff:169.254.169.254]/",
            "http://[::ffff:a9fe:a9fe]/",
            "http://[::1]/",
            "http://0.0.0.0/",
            "http://[::]/",
        ] {
            assert!(check(u).is_err(), "{u} must be refused");
        }
        let https_only = NetworkPolicy::new(&[], true).unwrap();
        assert!(https_only.check_url(&Url::parse("http://psa.example.com/").unwrap()).is_err());
        assert!(https_only.check_url(&Url::parse("https://psa.example.com/").unwrap()).is_ok());
    }

    #[test]
    fn a_dns_answer_keeps_only_reachable_addresses() {
        let policy = NetworkPolicy::new(&[], false).unwrap();
        let mixed =
            [ip("10.0.0.5"), ip("93.184.215.14"), ip("::1"), ip("2606:2800:21f:cb07:6820:80da:af6b:8b2c")];
        assert_eq!(
            policy.filter_resolved("mixed.example", &mixed).unwrap(),
            vec![ip("93.184.215.14"), ip("2606:2800:21f:cb07:6820:80da:af6b:8b2c")]
        );
        let Blocked(why) =
            policy.filter_resolved("rebind.example", &[ip("127.0.0.1"), ip("169.254.169.254")]).unwrap_err();
        assert!(why.contains("rebind.example"), "{why}");
        assert!(!why.contains("127.0.0.1"), "internal addresses are not shown to the user: {why}");
    }

    #[tokio::test]
    async fn the_resolver_uses_the_static_table_and_filters_it() {
        let policy = NetworkPolicy::new(&[], false)
            .unwrap()
            .with_static_host("Victim.Example.", vec![ip("127.0.0.1")])
            .with_static_host("mixed.example", vec![ip("192.168.0.1"), ip("8.8.8.8")]);
        let err = policy.resolve("victim.example").await.unwrap_err();
        assert!(err.downcast_ref::<Blocked>().is_some(), "{err}");
        assert_eq!(policy.resolve("mixed.example").await.unwrap(), vec![ip("8.8.8.8")]);
        let err = policy.resolve("localhost").await.unwrap_err();
        assert!(err.downcast_ref::<Blocked>().is_some(), "localhost resolves to loopback: {err}");
    }
}
