//! The central server's base URL, and the rule that it is reached over HTTPS.
//!
//! The collector authenticates with a bearer token and sends tenant data, so plain HTTP is only
//! accepted to loopback (a developer's laptop, an end-to-end test). Everything else must be
//! `https://`.

use std::fmt;
use std::net::IpAddr;

use reqwest::Url;

/// A validated server base URL (`https://…`, or `http://` to a loopback host).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerUrl(Url);

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ServerUrlError {
    #[error("`{url}` is not a valid URL: {reason}")]
    Invalid { url: String, reason: String },
    #[error("`{url}`: the server must be reached over https:// (plain http:// is only allowed to loopback)")]
    PlainHttpToRemote { url: String },
    #[error("`{url}`: unsupported scheme `{scheme}`, use https://")]
    UnsupportedScheme { url: String, scheme: String },
    #[error("`{url}`: {what} are not allowed in the server URL")]
    UnexpectedPart { url: String, what: &'static str },
}

impl ServerUrl {
    pub fn parse(raw: &str) -> Result<Self, ServerUrlError> {
        let invalid = |reason: String| ServerUrlError::Invalid { url: raw.to_owned(), reason };
        let url = Url::parse(raw.trim()).map_err(|e| invalid(e.to_string()))?;
        let host = url.host_str().ok_or_else(|| invalid("it has no host".into()))?;
        match url.scheme() {
            "https" => {}
            "http" if is_loopback(host) => {}
            "http" => return Err(ServerUrlError::PlainHttpToRemote { url: raw.to_owned() }),
            other => {
                return Err(ServerUrlError::UnsupportedScheme {
                    url: raw.to_owned(),
                    scheme: other.to_owned(),
                });
            }
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(ServerUrlError::UnexpectedPart {
                url: raw.to_owned(),
                what: "user names and passwords",
            });
        }
        if url.query().is_some() || url.fragment().is_some() {
            return Err(ServerUrlError::UnexpectedPart {
                url: raw.to_owned(),
                what: "queries and fragments",
            });
        }
        Ok(ServerUrl(url))
    }

    /// `path` (absolute, e.g. [`wbd_wire::INGEST_PATH`]) under the base URL, keeping any path
    /// prefix the server is mounted under.
    pub fn endpoint(&self, path: &str) -> Url {
        let mut url = self.0.clone();
        let joined = format!("{}/{}", self.0.path().trim_end_matches('/'), path.trim_start_matches('/'));
        url.set_path(&joined);
        url
    }

    pub fn as_str(&self) -> &str {
        self.0.as_str()
    }
}

impl fmt::Display for ServerUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0.as_str())
    }
}

/// `host` as `Url::host_str` gives it: a domain, an IPv4 address, or an IPv6 address in brackets.
fn is_loopback(host: &str) -> bool {
    let bare = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')).unwrap_or(host);
    if let Ok(ip) = bare.parse::<IpAddr>() {
        return ip.is_loopback();
    }
    let name = bare.trim_end_matches('.').to_ascii_lowercase();
    name == "localhost" || name.ends_with(".localhost")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn https_anywhere_and_http_only_to_loopback() {
        assert!(ServerUrl::parse("https://wbd.example.com").is_ok());
        assert!(ServerUrl::parse("http://127.0.0.1:8080").is_ok());
        assert!(ServerUrl::parse("http://127.10.0.1:8080").is_ok());
        assert!(ServerUrl::parse("http://[::1]:8080/").is_ok());
        assert!(ServerUrl::parse("http://LOCALHOST:8080").is_ok());
        assert!(matches!(
            ServerUrl::parse("http://wbd.example.com"),
            Err(ServerUrlError::PlainHttpToRemote { .. })
        ));
        assert!(matches!(ServerUrl::parse("http://10.0.0.5"), Err(ServerUrlError::PlainHttpToRemote { .. })));
        assert!(matches!(ServerUrl::parse("ftp://x"), Err(ServerUrlError::UnsupportedScheme { .. })));
        assert!(matches!(ServerUrl::parse("not a url"), Err(ServerUrlError::Invalid { .. })));
        assert!(matches!(ServerUrl::parse("https://u:p@x"), Err(ServerUrlError::UnexpectedPart { .. })));
    }

    #[test]
    fn endpoints_keep_the_mount_prefix() {
        let s = ServerUrl::parse("https://x.example/wbd/").unwrap();
        assert_eq!(s.endpoint(wbd_wire::INGEST_PATH).as_str(), "https://x.example/wbd/v1/ingest");
        let s = ServerUrl::parse("https://x.example").unwrap();
        assert_eq!(s.endpoint(wbd_wire::ENROLL_PATH).as_str(), "https://x.example/v1/collectors/enroll");
    }
}
