//! An integration's secrets at rest: which key seals them, what the sealed document holds, and
//! how a stored integration becomes the settings of its connector.

use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use url::Url;
use wbd_notify::sealing::Sealer;
use wbd_notify::{ConnectorSettings, IntegrationKind};
use wbd_store::{Integration, OrgId};

use crate::settings::DeliverySettings;

/// A webhook signing secret; a rotated-out one stays valid until `expires_at`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredSigningSecret {
    pub secret: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<DateTime<Utc>>,
}

/// What an integration keeps sealed: credentials, the URL when it is itself a secret, and the
/// webhook signing secrets (newest first).
#[derive(Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SealedSecrets {
    #[serde(default)]
    pub credentials: serde_json::Value,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub signing_secrets: Vec<StoredSigningSecret>,
}

impl std::fmt::Debug for SealedSecrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SealedSecrets(<redacted>)")
    }
}

impl SealedSecrets {
    /// The names of the credentials that are set (what the API may show).
    pub fn credential_names(&self) -> Vec<String> {
        match &self.credentials {
            serde_json::Value::Object(map) => map.keys().cloned().collect(),
            _ => Vec::new(),
        }
    }

    /// Signing secrets still valid at `now`, newest first.
    pub fn valid_signing_secrets(&self, now: DateTime<Utc>) -> Vec<String> {
        self.signing_secrets
            .iter()
            .filter(|s| s.expires_at.is_none_or(|at| at > now))
            .map(|s| s.secret.clone())
            .collect()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SecretsError {
    #[error(
        "integration secrets cannot be sealed: set delivery.secrets_key (WBD_DELIVERY__SECRETS_KEY) to the \
         base64 of 32 random bytes, the same in every process"
    )]
    NoKey,
    #[error(
        "the integration's secrets cannot be opened ({0}); was delivery.secrets_key changed without keeping the old key in delivery.previous_secrets_keys?"
    )]
    Open(String),
    #[error("stored integration is unusable: {0}")]
    Corrupt(String),
}

/// The sealer of `d`: `delivery.secrets_key` if set; else, on SQLite, a key file beside the
/// database `database_url` names (made on first use, mode 0600); else none (integrations cannot
/// be saved).
pub fn sealer_from_settings(d: &DeliverySettings, database_url: &str) -> anyhow::Result<Option<Sealer>> {
    if !d.secrets_key.is_empty() {
        let sealer = Sealer::new(&d.secrets_key, &d.previous_secrets_keys)
            .map_err(|e| anyhow::anyhow!("delivery.secrets_key: {e}"))?;
        return Ok(Some(sealer));
    }
    let Some(path) = key_file_path(database_url) else { return Ok(None) };
    let key = read_or_create_key(&path)?;
    let sealer = Sealer::new(&key, &d.previous_secrets_keys)
        .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    Ok(Some(sealer))
}

/// `<database file>.secrets-key` for a SQLite file URL; `None` for PostgreSQL and in-memory.
fn key_file_path(database_url: &str) -> Option<PathBuf> {
    let rest = database_url.strip_prefix("sqlite://").or_else(|| database_url.strip_prefix("sqlite:"))?;
    let file = rest.split('?').next().unwrap_or(rest);
    if file.is_empty() || file == ":memory:" {
        return None;
    }
    Some(PathBuf::from(format!("{file}.secrets-key")))
}

fn read_or_create_key(path: &Path) -> anyhow::Result<String> {
    use anyhow::Context as _;
    match std::fs::read_to_string(path) {
        Ok(text) => return Ok(text.trim().to_owned()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    }
    let key = Sealer::generate_key();
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    match options.open(path) {
        Ok(mut file) => {
            use std::io::Write as _;
            file.write_all(key.as_bytes()).with_context(|| format!("writing {}", path.display()))?;
            tracing::info!(path = %path.display(), "made the key that seals integration secrets; back it up with the database");
            Ok(key)
        }
        // Another process made it first.
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(std::fs::read_to_string(path)
            .with_context(|| format!("reading {}", path.display()))?
            .trim()
            .to_owned()),
        Err(e) => Err(e).with_context(|| format!("creating {}", path.display())),
    }
}

/// Binds sealed secrets to their organisation: secrets copied to another organisation's row do
/// not open.
fn aad(org: OrgId) -> Vec<u8> {
    format!("wbd-integration-secrets:{org}").into_bytes()
}

pub fn seal(sealer: &Sealer, org: OrgId, secrets: &SealedSecrets) -> Vec<u8> {
    let plain = serde_json::to_vec(secrets).expect("secrets serialise");
    sealer.seal(&plain, &aad(org))
}

pub fn open(sealer: &Sealer, org: OrgId, sealed: &[u8]) -> Result<SealedSecrets, SecretsError> {
    let plain = sealer.open(sealed, &aad(org)).map_err(|e| SecretsError::Open(e.to_string()))?;
    serde_json::from_slice(&plain).map_err(|e| SecretsError::Corrupt(format!("sealed document: {e}")))
}

/// The connector settings of a stored integration, secrets opened.
pub fn connector_settings(
    integration: &Integration,
    secrets: &SealedSecrets,
    now: DateTime<Utc>,
) -> Result<ConnectorSettings, SecretsError> {
    let kind = IntegrationKind::parse(&integration.kind)
        .ok_or_else(|| SecretsError::Corrupt(format!("unknown kind {:?}", integration.kind)))?;
    let url = secrets
        .url
        .as_deref()
        .or(integration.url.as_deref())
        .ok_or_else(|| SecretsError::Corrupt("no URL".into()))?;
    let url = Url::parse(url).map_err(|e| SecretsError::Corrupt(format!("URL: {e}")))?;
    Ok(ConnectorSettings {
        kind,
        url,
        config: integration.config.clone(),
        credentials: secrets.credentials.clone(),
        signing_secrets: secrets.valid_signing_secrets(now),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_key_file_sits_beside_the_sqlite_database() {
        assert_eq!(key_file_path("sqlite://wbd.db"), Some(PathBuf::from("wbd.db.secrets-key")));
        assert_eq!(
            key_file_path("sqlite:///var/lib/wbd/wbd.db?mode=rwc"),
            Some(PathBuf::from("/var/lib/wbd/wbd.db.secrets-key"))
        );
        assert_eq!(key_file_path("sqlite::memory:"), None);
        assert_eq!(key_file_path("postgres://db/wbd"), None);
    }

    #[test]
    fn secrets_open_only_for_their_organisation() {
        let sealer = Sealer::new(&Sealer::generate_key(), &[]).unwrap();
        let secrets = SealedSecrets {
            credentials: serde_json::json!({"api_token": "t0p"}),
            url: None,
            signing_secrets: Vec::new(),
        };
        let org = OrgId::new();
        let sealed = seal(&sealer, org, &secrets);
        assert!(!String::from_utf8_lossy(&sealed).contains("t0p"));
        assert_eq!(open(&sealer, org, &sealed).unwrap(), secrets);
        assert!(matches!(open(&sealer, OrgId::new(), &sealed), Err(SecretsError::Open(_))));
    }

    #[test]
    fn a_rotated_out_signing_secret_expires() {
        let now = Utc::now();
        let secrets = SealedSecrets {
            credentials: serde_json::Value::Null,
            url: None,
            signing_secrets: vec![
                StoredSigningSecret { secret: "whsec_new".into(), expires_at: None },
                StoredSigningSecret {
                    secret: "whsec_old".into(),
                    expires_at: Some(now + chrono::Duration::hours(1)),
                },
                StoredSigningSecret {
                    secret: "whsec_older".into(),
                    expires_at: Some(now - chrono::Duration::hours(1)),
                },
            ],
        };
        assert_eq!(secrets.valid_signing_secrets(now), ["whsec_new", "whsec_old"]);
    }
}
