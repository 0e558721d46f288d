//! Who this collector is: its Ed25519 key pair and the ids the server gave it at enrollment,
//! both kept in the state directory.
//!
//! ```text
//! <state_dir>/
//!   identity.json      {server, collector_id, tenant_id, push_interval_secs}
//!   private_key.pk8    PKCS#8 (DER) Ed25519 private key, owner-only
//!   spool/             see `spool`
//! ```

use std::fmt;
use std::path::{Path, PathBuf};

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{Ed25519KeyPair, KeyPair};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::fsutil::{self, FileAccess};

pub const IDENTITY_FILE: &str = "identity.json";
pub const PRIVATE_KEY_FILE: &str = "private_key.pk8";
pub const SPOOL_DIR: &str = "spool";

/// What enrollment established, as stored in `identity.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Identity {
    /// The server's base URL.
    pub server: String,
    pub collector_id: Uuid,
    pub tenant_id: Uuid,
    /// The push interval the server asked for.
    pub push_interval_secs: u32,
}

#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    #[error(
        "{} not found: this collector is not enrolled yet (run `wbd-collector enroll --server URL --token TOKEN --state-dir {}`)",
        path.display(),
        dir.display()
    )]
    NotEnrolled { path: PathBuf, dir: PathBuf },
    #[error("cannot read {}: {source}", path.display())]
    Read { path: PathBuf, source: std::io::Error },
    #[error("cannot write {}: {source}", path.display())]
    Write { path: PathBuf, source: std::io::Error },
    #[error("{} is damaged: {message}", path.display())]
    Damaged { path: PathBuf, message: String },
    #[error("could not generate a key pair: {0}")]
    KeyGeneration(String),
}

/// The collector's Ed25519 private key (PKCS#8 DER).
pub struct CollectorKey {
    pkcs8: Vec<u8>,
    public: [u8; 32],
}

impl fmt::Debug for CollectorKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never print the private key, not even in a debug log.
        f.debug_struct("CollectorKey").field("public_key", &self.public_key_b64()).finish_non_exhaustive()
    }
}

impl CollectorKey {
    /// A fresh key pair from the operating system's CSPRNG.
    pub fn generate() -> Result<Self, IdentityError> {
        let doc = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new())
            .map_err(|e| IdentityError::KeyGeneration(e.to_string()))?;
        Self::from_pkcs8(doc.as_ref()).map_err(IdentityError::KeyGeneration)
    }

    /// Checks that `der` is a usable Ed25519 PKCS#8 key.
    pub fn from_pkcs8(der: &[u8]) -> Result<Self, String> {
        let pair = Ed25519KeyPair::from_pkcs8(der).map_err(|e| format!("not an Ed25519 PKCS#8 key: {e}"))?;
        let public: [u8; 32] = pair
            .public_key()
            .as_ref()
            .try_into()
            .map_err(|_| "the public key is not 32 bytes long".to_owned())?;
        Ok(CollectorKey { pkcs8: der.to_vec(), public })
    }

    pub fn pkcs8_der(&self) -> &[u8] {
        &self.pkcs8
    }

    /// The raw 32-byte public key.
    pub fn public_key(&self) -> &[u8; 32] {
        &self.public
    }

    /// The public key as the server expects it: base64url, no padding.
    pub fn public_key_b64(&self) -> String {
        URL_SAFE_NO_PAD.encode(self.public)
    }
}

/// The state directory and the files in it.
#[derive(Debug, Clone)]
pub struct StateDir {
    root: PathBuf,
}

impl StateDir {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        StateDir { root: root.into() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn identity_path(&self) -> PathBuf {
        self.root.join(IDENTITY_FILE)
    }

    pub fn key_path(&self) -> PathBuf {
        self.root.join(PRIVATE_KEY_FILE)
    }

    pub fn spool_dir(&self) -> PathBuf {
        self.root.join(SPOOL_DIR)
    }

    pub fn is_enrolled(&self) -> bool {
        self.identity_path().exists()
    }

    pub fn create(&self) -> Result<(), IdentityError> {
        fsutil::create_private_dir_all(&self.root)
            .map_err(|source| IdentityError::Write { path: self.root.clone(), source })
    }

    pub fn load_identity(&self) -> Result<Identity, IdentityError> {
        let path = self.identity_path();
        let bytes = self.read_required(&path)?;
        serde_json::from_slice(&bytes).map_err(|e| IdentityError::Damaged { path, message: e.to_string() })
    }

    pub fn load_key(&self) -> Result<CollectorKey, IdentityError> {
        let path = self.key_path();
        let bytes = self.read_required(&path)?;
        CollectorKey::from_pkcs8(&bytes).map_err(|message| IdentityError::Damaged { path, message })
    }

    pub fn save_identity(&self, identity: &Identity) -> Result<(), IdentityError> {
        let path = self.identity_path();
        let json = serde_json::to_vec_pretty(identity)
            .map_err(|e| IdentityError::Damaged { path: path.clone(), message: e.to_string() })?;
        fsutil::write_atomic(&path, &json, FileAccess::Default)
            .map_err(|source| IdentityError::Write { path, source })
    }

    pub fn save_key(&self, key: &CollectorKey) -> Result<(), IdentityError> {
        let path = self.key_path();
        fsutil::write_atomic(&path, key.pkcs8_der(), FileAccess::OwnerOnly)
            .map_err(|source| IdentityError::Write { path, source })
    }

    fn read_required(&self, path: &Path) -> Result<Vec<u8>, IdentityError> {
        match fsutil::read_optional(path) {
            Ok(Some(bytes)) => Ok(bytes),
            Ok(None) => Err(IdentityError::NotEnrolled { path: path.to_owned(), dir: self.root.clone() }),
            Err(source) => Err(IdentityError::Read { path: path.to_owned(), source }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_round_trips_through_pkcs8() {
        let key = CollectorKey::generate().unwrap();
        let again = CollectorKey::from_pkcs8(key.pkcs8_der()).unwrap();
        assert_eq!(key.public_key(), again.public_key());
        assert_eq!(URL_SAFE_NO_PAD.decode(key.public_key_b64()).unwrap().len(), 32);
        assert!(!format!("{key:?}").contains(&format!("{:?}", key.pkcs8_der())));
    }

    #[test]
    fn missing_identity_says_how_to_enroll() {
        let dir = tempfile::tempdir().unwrap();
        let err = StateDir::new(dir.path()).load_identity().unwrap_err().to_string();
        assert!(err.contains("wbd-collector enroll"), "{err}");
    }

    #[test]
    fn identity_and_key_are_saved_and_loaded() {
        let dir = tempfile::tempdir().unwrap();
        let state = StateDir::new(dir.path().join("state"));
        state.create().unwrap();
        let id = Identity {
            server: "https://x".into(),
            collector_id: Uuid::new_v4(),
            tenant_id: Uuid::new_v4(),
            push_interval_secs: 300,
        };
        state.save_identity(&id).unwrap();
        let key = CollectorKey::generate().unwrap();
        state.save_key(&key).unwrap();
        assert_eq!(state.load_identity().unwrap(), id);
        assert_eq!(state.load_key().unwrap().public_key(), key.public_key());
    }
}
