//! Idle connection probe: does a TLS connection to a writeback endpoint survive being idle?
//!
//! The Service Bus relay keeps long-lived connections that sit idle between reset requests;
//! firewalls and proxies that drop idle sessions after less than two to three minutes break it.

use serde::{Deserialize, Serialize};

use crate::EndpointRole;

/// One endpoint, held idle for each configured duration in turn.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct IdleConnectionReport {
    pub host: String,
    pub port: u16,
    pub role: EndpointRole,
    /// The proxy the connections went through (`host:port`, never credentials), if any.
    #[serde(default)]
    pub via_proxy: Option<String>,
    /// One entry per hold, shortest first.
    #[serde(default)]
    pub holds: Vec<IdleHold>,
}

impl IdleConnectionReport {
    /// The longest hold the connection survived, if any.
    pub fn longest_survived_secs(&self) -> Option<u32> {
        self.holds.iter().filter(|h| h.outcome == IdleOutcome::Survived).map(|h| h.hold_secs).max()
    }

    /// The shortest hold after which the connection was found cut, if any.
    pub fn shortest_cut_secs(&self) -> Option<u32> {
        self.holds.iter().filter(|h| h.outcome.is_cut()).map(|h| h.hold_secs).min()
    }
}

/// One idle hold: connect, stay silent for `hold_secs`, then use the connection.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct IdleHold {
    pub hold_secs: u32,
    pub outcome: IdleOutcome,
    /// When the cut was noticed, in milliseconds after the connection went idle (for a cut
    /// while idle: when the peer closed it; for a cut on use: when the use failed).
    #[serde(default)]
    pub cut_after_ms: Option<u64>,
    /// What the failure looked like (reset, close without TLS close-notify, timeout, …).
    #[serde(default)]
    pub error: Option<String>,
}

/// How an idle hold ended.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Hash)]
#[serde(rename_all = "snake_case")]
pub enum IdleOutcome {
    /// The connection answered a request after the hold.
    Survived,
    /// The peer or a middlebox closed or reset the connection during the hold.
    CutWhileIdle,
    /// The connection looked open, but the first use after the hold failed (a silent drop).
    CutOnUse,
    /// The connection could not be opened, so nothing was held.
    ConnectFailed,
}

impl IdleOutcome {
    pub fn is_cut(self) -> bool {
        matches!(self, IdleOutcome::CutWhileIdle | IdleOutcome::CutOnUse)
    }
}
