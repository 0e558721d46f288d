//! The Microsoft clouds an app lives in: each has its own identity platform (authority) and its
//! own Graph host, and a token of one is worthless in another.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// A Microsoft cloud.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Cloud {
    /// The global (commercial) cloud.
    #[default]
    Global,
    /// Microsoft Cloud for US Government (GCC High, DoD).
    UsGovernment,
    /// Microsoft Azure operated by 21Vianet.
    China,
}

impl Cloud {
    pub const ALL: [Cloud; 3] = [Cloud::Global, Cloud::UsGovernment, Cloud::China];

    /// The identity platform's base URL (no trailing slash).
    pub fn authority(self) -> &'static str {
        match self {
            Cloud::Global => "https://login.microsoftonline.com",
            Cloud::UsGovernment => "https://login.microsoftonline.us",
            Cloud::China => "https://login.chinacloudapi.cn",
        }
    }

    /// Microsoft Graph's base URL (no trailing slash, no version).
    pub fn graph_base_url(self) -> &'static str {
        match self {
            Cloud::Global => "https://graph.microsoft.com",
            Cloud::UsGovernment => "https://graph.microsoft.us",
            Cloud::China => "https://microsoftgraph.chinacloudapi.cn",
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Cloud::Global => "global",
            Cloud::UsGovernment => "us_government",
            Cloud::China => "china",
        }
    }
}

impl fmt::Display for Cloud {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A name that is not one of [`Cloud::ALL`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not a cloud: global, us_government or china")]
pub struct UnknownCloud(pub String);

impl FromStr for Cloud {
    type Err = UnknownCloud;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Cloud::ALL.into_iter().find(|c| c.as_str() == s.trim()).ok_or_else(|| UnknownCloud(s.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_cloud_has_its_own_hosts() {
        assert_eq!(Cloud::Global.authority(), "https://login.microsoftonline.com");
        assert_eq!(Cloud::Global.graph_base_url(), "https://graph.microsoft.com");
        assert_eq!(Cloud::UsGovernment.authority(), "https://login.microsoftonline.us");
        assert_eq!(Cloud::UsGovernment.graph_base_url(), "https://graph.microsoft.us");
        assert_eq!(Cloud::China.authority(), "https://login.chinacloudapi.cn");
        assert_eq!(Cloud::China.graph_base_url(), "https://microsoftgraph.chinacloudapi.cn");
        for cloud in Cloud::ALL {
            assert_eq!(cloud.as_str().parse::<Cloud>(), Ok(cloud));
        }
        assert!("azure".parse::<Cloud>().unwrap_err().to_string().contains("global, us_government or china"));
    }
}
