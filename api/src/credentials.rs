//! API keys and enrollment tokens: random secrets with a recognisable prefix, stored only as
//! hashes.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::RngCore as _;
use sha2::{Digest as _, Sha256};

const API_KEY_PREFIX: &str = "wbdk_";
const ENROLLMENT_TOKEN_PREFIX: &str = "wbde_";

/// A new random secret with a recognisable prefix (secret scanners can match it).
fn new_secret(prefix: &str) -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    format!("{prefix}{}", URL_SAFE_NO_PAD.encode(bytes))
}

/// SHA-256, hex. Keys and tokens are 256-bit random, so a plain hash is enough: there is
/// nothing to brute-force that a slow hash would protect.
pub fn hash_secret(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

/// A freshly minted API key: the secret (shown once) and what is stored.
pub struct NewApiKey {
    pub secret: String,
    pub prefix: String,
    pub hash: String,
}

pub fn new_api_key() -> NewApiKey {
    let secret = new_secret(API_KEY_PREFIX);
    let prefix = secret.chars().take(API_KEY_PREFIX.len() + 6).collect();
    let hash = hash_secret(&secret);
    NewApiKey { secret, prefix, hash }
}

pub fn new_enrollment_token() -> (String, String) {
    let token = new_secret(ENROLLMENT_TOKEN_PREFIX);
    let hash = hash_secret(&token);
    (token, hash)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_prefixed_random_and_hash_stably() {
        let a = new_api_key();
        let b = new_api_key();
        assert!(a.secret.starts_with("wbdk_"));
        assert_ne!(a.secret, b.secret);
        assert!(a.secret.starts_with(&a.prefix));
        assert_eq!(a.hash, hash_secret(&a.secret));
        assert_eq!(a.hash.len(), 64);
    }
}
