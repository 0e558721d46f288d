//! The `healthcheck` subcommand of `wbd-api` and `wbd-worker`: asks the process's own health
//! endpoint over loopback, as a container's `HEALTHCHECK` or an orchestrator's exec probe does,
//! and answers with the exit code (0 healthy, 1 not). It needs no shell and no other tool in the
//! image.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

/// The loopback URL of `path` on a process listening on `listen` (an unspecified address such as
/// `0.0.0.0` is asked on loopback).
pub fn local_url(listen: SocketAddr, tls: bool, path: &str) -> String {
    let ip = match listen.ip() {
        ip if ip.is_unspecified() && ip.is_ipv6() => IpAddr::V6(std::net::Ipv6Addr::LOCALHOST),
        ip if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        ip => ip,
    };
    let scheme = if tls { "https" } else { "http" };
    format!("{scheme}://{}{path}", SocketAddr::new(ip, listen.port()))
}

/// Asks `url` once; `Ok` on a 2xx answer within `timeout`, else what went wrong. The process's
/// own certificate is not verified: the request never leaves the machine.
pub async fn check(url: &str, timeout: Duration) -> anyhow::Result<()> {
    let client = reqwest::Client::builder()
        .timeout(timeout)
        .danger_accept_invalid_certs(true)
        .redirect(reqwest::redirect::Policy::none())
        .build()?;
    let answer = client.get(url).send().await?;
    if answer.status().is_success() { Ok(()) } else { anyhow::bail!("{url} answered {}", answer.status()) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unspecified_listen_address_is_asked_on_loopback() {
        let url = local_url("0.0.0.0:8090".parse().unwrap(), false, "/healthz");
        assert_eq!(url, "http://127.0.0.1:8090/healthz");
        let url = local_url("[::]:8443".parse().unwrap(), true, "/healthz");
        assert_eq!(url, "https://[::1]:8443/healthz");
        let url = local_url("10.1.2.3:80".parse().unwrap(), false, "/readyz");
        assert_eq!(url, "http://10.1.2.3:80/readyz");
    }
}
