//! Integration credentials encrypted at rest.
//!
//! API keys, passwords and signing secrets of integrations are stored sealed with AES-256-GCM
//! under a key from the server's configuration, so a copy of the database alone does not give
//! them away. The `aad` binds a sealed value to where it belongs (the integration's id and the
//! field), so it cannot be copied into another row and opened there.
//!
//! Format: `wbs1` | key id (8 bytes: the start of SHA-256 of the key) | nonce (12 random bytes)
//! | ciphertext and tag. The key id lets a server that was given a new key still open values
//! sealed under the previous ones (rotation), and re-seal them ([`Sealer::is_current`]).

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use aws_lc_rs::digest;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

const MAGIC: &[u8; 4] = b"wbs1";
const KEY_ID_LEN: usize = 8;
const KEY_LEN: usize = 32;
const HEADER_LEN: usize = MAGIC.len() + KEY_ID_LEN + NONCE_LEN;
const TAG_LEN: usize = 16;

/// Why a sealed value cannot be opened.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SealError {
    #[error("sealed under a key this server does not have (key id {key_id}); add it to the previous keys")]
    UnknownKey { key_id: String },
    #[error("the sealed value was altered or belongs elsewhere (authentication failed)")]
    Tampered,
    #[error("not a sealed value: {0}")]
    Malformed(&'static str),
}

type KeyId = [u8; KEY_ID_LEN];

struct SealingKey {
    id: KeyId,
    key: LessSafeKey,
}

impl SealingKey {
    /// `which` names the key in errors ("the current key", "previous key 2").
    fn from_base64(encoded: &str, which: &str) -> Result<SealingKey, String> {
        // The key itself never appears in an error.
        let bytes = STANDARD.decode(encoded.trim()).map_err(|_| format!("{which} is not valid base64"))?;
        if bytes.len() != KEY_LEN {
            return Err(format!(
                "{which} must be {KEY_LEN} bytes (base64 of 32 random bytes), not {}",
                bytes.len()
            ));
        }
        let mut id = [0u8; KEY_ID_LEN];
        id.copy_from_slice(&digest::digest(&digest::SHA256, &bytes).as_ref()[..KEY_ID_LEN]);
        let key =
            UnboundKey::new(&AES_256_GCM, &bytes).map_err(|_| format!("{which} is not an AES-256 key"))?;
        Ok(SealingKey { id, key: LessSafeKey::new(key) })
    }
}

/// Seals with the current key; opens with the current or any previous key.
pub struct Sealer {
    current: SealingKey,
    previous: Vec<SealingKey>,
}

impl std::fmt::Debug for Sealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sealer")
            .field("current_key_id", &hex(&self.current.id))
            .field("previous_key_ids", &self.previous.iter().map(|k| hex(&k.id)).collect::<Vec<_>>())
            .finish()
    }
}

impl Sealer {
    /// Keys are base64 of 32 bytes ([`Sealer::generate_key`]). `previous_keys_b64` are keys
    /// that were current before, kept so values sealed under them can still be opened.
    pub fn new(current_key_b64: &str, previous_keys_b64: &[String]) -> Result<Sealer, String> {
        let current = SealingKey::from_base64(current_key_b64, "the current sealing key")?;
        let previous = previous_keys_b64
            .iter()
            .enumerate()
            .map(|(i, key)| SealingKey::from_base64(key, &format!("previous sealing key {}", i + 1)))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Sealer { current, previous })
    }

    /// A new random key in the form [`Sealer::new`] takes.
    pub fn generate_key() -> String {
        let mut key = [0u8; KEY_LEN];
        aws_lc_rs::rand::fill(&mut key).expect("the system random generator works");
        STANDARD.encode(key)
    }

    /// Encrypts `plaintext` under the current key, bound to `aad`.
    pub fn seal(&self, plaintext: &[u8], aad: &[u8]) -> Vec<u8> {
        let mut nonce = [0u8; NONCE_LEN];
        // A random 96-bit nonce per value: safe for far more values than we will ever seal
        // under one key.
        aws_lc_rs::rand::fill(&mut nonce).expect("the system random generator works");
        let mut out = Vec::with_capacity(HEADER_LEN + plaintext.len() + TAG_LEN);
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&self.current.id);
        out.extend_from_slice(&nonce);
        let mut body = plaintext.to_vec();
        self.current
            .key
            .seal_in_place_append_tag(Nonce::assume_unique_for_key(nonce), Aad::from(aad), &mut body)
            // Fails only for inputs beyond GCM's limit (64 GiB), far over any credential.
            .expect("AES-GCM seals a credential-sized value");
        out.extend_from_slice(&body);
        out
    }

    /// Decrypts a value from [`Sealer::seal`] with the key it names, checking `aad`.
    pub fn open(&self, sealed: &[u8], aad: &[u8]) -> Result<Vec<u8>, SealError> {
        let (key_id, nonce, body) = split(sealed)?;
        let key = self.key(&key_id).ok_or_else(|| SealError::UnknownKey { key_id: hex(&key_id) })?;
        let mut body = body.to_vec();
        let plaintext = key
            .key
            .open_in_place(Nonce::assume_unique_for_key(nonce), Aad::from(aad), &mut body)
            .map_err(|_| SealError::Tampered)?;
        Ok(plaintext.to_vec())
    }

    /// Whether `sealed` is under the current key (otherwise it should be re-sealed).
    pub fn is_current(&self, sealed: &[u8]) -> bool {
        split(sealed).is_ok_and(|(key_id, _, _)| key_id == self.current.id)
    }

    fn key(&self, id: &KeyId) -> Option<&SealingKey> {
        std::iter::once(&self.current).chain(&self.previous).find(|k| k.id == *id)
    }
}

fn split(sealed: &[u8]) -> Result<(KeyId, [u8; NONCE_LEN], &[u8]), SealError> {
    if sealed.len() < HEADER_LEN + TAG_LEN {
        return Err(SealError::Malformed("too short"));
    }
    let (magic, rest) = sealed.split_at(MAGIC.len());
    if magic != MAGIC {
        return Err(SealError::Malformed("unknown format"));
    }
    let (key_id, rest) = rest.split_at(KEY_ID_LEN);
    let (nonce, body) = rest.split_at(NONCE_LEN);
    let mut id = [0u8; KEY_ID_LEN];
    id.copy_from_slice(key_id);
    let mut n = [0u8; NONCE_LEN];
    n.copy_from_slice(nonce);
    Ok((id, n, body))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const AAD: &[u8] = b"integration:0193e1c2/credentials";

    #[test]
    fn round_trip() {
        let sealer = Sealer::new(&Sealer::generate_key(), &[]).unwrap();
        let sealed = sealer.seal(b"api-key-123", AAD);
        assert!(sealed.starts_with(b"wbs1"));
        assert!(!sealed.windows(11).any(|w| w == b"api-key-123"));
        assert_eq!(sealer.open(&sealed, AAD).unwrap(), b"api-key-123");
        assert_ne!(sealer.seal(b"api-key-123", AAD), sealed, "a fresh nonce each time");
        assert_eq!(sealer.open(&sealer.seal(b"", AAD), AAD).unwrap(), b"");
        assert!(sealer.is_current(&sealed));
    }

    #[test]
    fn another_aad_or_any_changed_byte_fails() {
        let sealer = Sealer::new(&Sealer::generate_key(), &[]).unwrap();
        let sealed = sealer.seal(b"api-key-123", AAD);
        assert_eq!(sealer.open(&sealed, b"integration:other/credentials"), Err(SealError::Tampered));
        for i in HEADER_LEN - NONCE_LEN..sealed.len() {
            let mut tampered = sealed.clone();
            tampered[i] ^= 0x01;
            assert_eq!(sealer.open(&tampered, AAD), Err(SealError::Tampered), "byte {i}");
        }
    }

    #[test]
    fn malformed_values_are_named() {
        let sealer = Sealer::new(&Sealer::generate_key(), &[]).unwrap();
        assert_eq!(sealer.open(b"wbs1", AAD), Err(SealError::Malformed("too short")));
        let mut other = sealer.seal(b"x", AAD);
        other[..4].copy_from_slice(b"wbs9");
        assert_eq!(sealer.open(&other, AAD), Err(SealError::Malformed("unknown format")));
        assert!(!sealer.is_current(b"junk"));
    }

    #[test]
    fn rotation_opens_old_values_and_seals_under_the_new_key() {
        let (old_key, new_key) = (Sealer::generate_key(), Sealer::generate_key());
        let old = Sealer::new(&old_key, &[]).unwrap();
        let sealed_before = old.seal(b"secret", AAD);
        let rotated = Sealer::new(&new_key, std::slice::from_ref(&old_key)).unwrap();
        assert_eq!(rotated.open(&sealed_before, AAD).unwrap(), b"secret");
        assert!(!rotated.is_current(&sealed_before));
        let resealed = rotated.seal(b"secret", AAD);
        assert!(rotated.is_current(&resealed));
        assert!(matches!(old.open(&resealed, AAD), Err(SealError::UnknownKey { .. })));
    }

    #[test]
    fn an_unknown_key_is_reported_by_id() {
        let a = Sealer::new(&Sealer::generate_key(), &[]).unwrap();
        let b = Sealer::new(&Sealer::generate_key(), &[]).unwrap();
        let err = b.open(&a.seal(b"secret", AAD), AAD).unwrap_err();
        assert_eq!(err, SealError::UnknownKey { key_id: hex(&a.current.id) });
    }

    #[test]
    fn bad_keys_are_named_without_being_echoed() {
        let err = Sealer::new("c2hvcnQ=", &[]).unwrap_err();
        assert!(err.contains("current") && err.contains("32 bytes") && !err.contains("c2hvcnQ="), "{err}");
        let err = Sealer::new(&Sealer::generate_key(), &[Sealer::generate_key(), "not base64!".into()])
            .unwrap_err();
        assert!(err.contains("previous sealing key 2") && !err.contains("not base64!"), "{err}");
    }

    #[test]
    fn debug_shows_key_ids_only() {
        let key = Sealer::generate_key();
        let sealer = Sealer::new(&key, &[]).unwrap();
        let shown = format!("{sealer:?}");
        assert!(!shown.contains(&key) && shown.contains(&hex(&sealer.current.id)), "{shown}");
    }
}
