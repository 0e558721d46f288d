//! Placeholder: the SSRF-guarded client (being written).

/// A destination address we refuse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Blocked(pub String);
