//! Placeholder until the connector lands (replaced, not shipped).

use crate::connector::{ConfigError, Connector, ConnectorSettings};

pub fn build(_settings: &ConnectorSettings) -> Result<Box<dyn Connector>, Vec<ConfigError>> {
    Err(vec![ConfigError::new("kind", "not available yet")])
}
