//! How the app proves who it is to the identity platform: a client secret, or (preferred) a
//! certificate whose private key signs a client assertion (RFC 7523, a JWT the token endpoint
//! checks against the certificate uploaded to the app registration).
//!
//! The assertion's header names the certificate by its SHA-256 thumbprint (`x5t#S256`, the
//! base64url of SHA-256 over the certificate's DER); its claims are `aud` = the token endpoint,
//! `iss` = `sub` = the client id, a random `jti`, and `nbf`/`exp` a few minutes apart. Keys are
//! RSA (PKCS#8 or PKCS#1 in PEM), signed PS256 (RSASSA-PSS, the default) or RS256.

use std::fmt;
use std::path::Path;
use std::sync::Arc;

use aws_lc_rs::signature::{self, KeyPair as _};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, TimeZone, Utc};
use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use serde::{Deserialize, Serialize};

/// `client_assertion_type` of a JWT client assertion.
pub const JWT_BEARER: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// How long an assertion is valid: long enough for clock skew, short enough to be useless if
/// copied.
pub const ASSERTION_LIFETIME_SECS: i64 = 300;

/// A client secret; never shown by `Debug`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// The app's credential.
#[derive(Debug, Clone)]
pub enum ClientCredential {
    Secret(Secret),
    Certificate(Arc<CertificateCredential>),
}

/// The signature algorithm of client assertions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum AssertionAlgorithm {
    /// RSASSA-PSS with SHA-256 (what Microsoft recommends).
    #[default]
    #[serde(rename = "PS256")]
    Ps256,
    /// RSASSA-PKCS1-v1_5 with SHA-256.
    #[serde(rename = "RS256")]
    Rs256,
}

impl AssertionAlgorithm {
    pub fn as_str(self) -> &'static str {
        match self {
            AssertionAlgorithm::Ps256 => "PS256",
            AssertionAlgorithm::Rs256 => "RS256",
        }
    }
}

impl std::str::FromStr for AssertionAlgorithm {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim() {
            "PS256" | "ps256" => Ok(AssertionAlgorithm::Ps256),
            "RS256" | "rs256" => Ok(AssertionAlgorithm::Rs256),
            other => Err(format!("`{other}` is not PS256 or RS256")),
        }
    }
}

/// Why a certificate credential cannot be used. Never contains key material.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CredentialError {
    #[error("cannot read {path}: {reason}")]
    Read { path: String, reason: String },
    #[error("no certificate (-----BEGIN CERTIFICATE-----) in the PEM")]
    NoCertificate,
    #[error("no private key (-----BEGIN PRIVATE KEY----- or RSA PRIVATE KEY) in the PEM")]
    NoPrivateKey,
    #[error("the private key is not a usable RSA key (2048 to 8192 bits, PKCS#8 or PKCS#1): {0}")]
    NotRsa(String),
    #[error("the certificate cannot be read: {0}")]
    BadCertificate(String),
    #[error("the private key does not belong to the certificate")]
    KeyMismatch,
    #[error("signing the client assertion failed")]
    Signing,
}

/// A certificate and its RSA private key.
pub struct CertificateCredential {
    key: signature::RsaKeyPair,
    thumbprint_s256: String,
    not_after: Option<DateTime<Utc>>,
    algorithm: AssertionAlgorithm,
}

impl fmt::Debug for CertificateCredential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CertificateCredential")
            .field("x5t#S256", &self.thumbprint_s256)
            .field("not_after", &self.not_after)
            .field("algorithm", &self.algorithm)
            .finish_non_exhaustive()
    }
}

/// The claims of a client assertion.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AssertionClaims {
    pub aud: String,
    pub iss: String,
    pub sub: String,
    pub jti: String,
    pub nbf: i64,
    pub iat: i64,
    pub exp: i64,
}

impl CertificateCredential {
    /// From PEM files: the certificate, and the key (the same file when it holds both).
    pub fn from_files(
        certificate: &Path,
        key: Option<&Path>,
        algorithm: AssertionAlgorithm,
    ) -> Result<Self, CredentialError> {
        let read = |p: &Path| {
            std::fs::read(p)
                .map_err(|e| CredentialError::Read { path: p.display().to_string(), reason: e.to_string() })
        };
        let cert_pem = read(certificate)?;
        let key_pem = match key {
            Some(k) => read(k)?,
            None => cert_pem.clone(),
        };
        Self::from_pem(&cert_pem, &key_pem, algorithm)
    }

    /// From PEM text: the first certificate of `cert_pem` and the private key of `key_pem`
    /// (which may be the same text).
    pub fn from_pem(
        cert_pem: &[u8],
        key_pem: &[u8],
        algorithm: AssertionAlgorithm,
    ) -> Result<Self, CredentialError> {
        let cert = CertificateDer::pem_slice_iter(cert_pem)
            .next()
            .ok_or(CredentialError::NoCertificate)?
            .map_err(|e| CredentialError::BadCertificate(e.to_string()))?;
        let key = PrivateKeyDer::from_pem_slice(key_pem).map_err(|_| CredentialError::NoPrivateKey)?;
        let key = match &key {
            PrivateKeyDer::Pkcs8(k) => signature::RsaKeyPair::from_pkcs8(k.secret_pkcs8_der()),
            PrivateKeyDer::Pkcs1(k) => signature::RsaKeyPair::from_der(k.secret_pkcs1_der()),
            _ => return Err(CredentialError::NotRsa("an elliptic-curve key".into())),
        }
        .map_err(|e| CredentialError::NotRsa(e.to_string()))?;
        let (public_key, not_after) = certificate_facts(cert.as_ref())?;
        if public_key != key.public_key().as_ref() {
            return Err(CredentialError::KeyMismatch);
        }
        let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, cert.as_ref());
        Ok(CertificateCredential {
            key,
            thumbprint_s256: URL_SAFE_NO_PAD.encode(digest.as_ref()),
            not_after,
            algorithm,
        })
    }

    /// `x5t#S256`: base64url of SHA-256 over the certificate's DER.
    pub fn thumbprint_s256(&self) -> &str {
        &self.thumbprint_s256
    }

    /// When the certificate expires (`None` if it could not be read).
    pub fn not_after(&self) -> Option<DateTime<Utc>> {
        self.not_after
    }

    pub fn algorithm(&self) -> AssertionAlgorithm {
        self.algorithm
    }

    /// A signed client assertion for `client_id` at `token_endpoint`.
    pub fn client_assertion(
        &self,
        client_id: &str,
        token_endpoint: &str,
        now: DateTime<Utc>,
    ) -> Result<String, CredentialError> {
        let header = serde_json::json!({
            "alg": self.algorithm.as_str(),
            "typ": "JWT",
            "x5t#S256": self.thumbprint_s256,
        });
        let at = now.timestamp();
        let claims = AssertionClaims {
            aud: token_endpoint.to_owned(),
            iss: client_id.to_owned(),
            sub: client_id.to_owned(),
            jti: uuid::Uuid::new_v4().to_string(),
            nbf: at,
            iat: at,
            exp: at + ASSERTION_LIFETIME_SECS,
        };
        let claims = serde_json::to_vec(&claims).map_err(|_| CredentialError::Signing)?;
        let mut message = URL_SAFE_NO_PAD.encode(header.to_string());
        message.push('.');
        message.push_str(&URL_SAFE_NO_PAD.encode(claims));
        let padding: &'static dyn signature::RsaEncoding = match self.algorithm {
            AssertionAlgorithm::Ps256 => &signature::RSA_PSS_SHA256,
            AssertionAlgorithm::Rs256 => &signature::RSA_PKCS1_SHA256,
        };
        let mut sig = vec![0u8; self.key.public_modulus_len()];
        self.key
            .sign(padding, &aws_lc_rs::rand::SystemRandom::new(), message.as_bytes(), &mut sig)
            .map_err(|_| CredentialError::Signing)?;
        message.push('.');
        message.push_str(&URL_SAFE_NO_PAD.encode(sig));
        Ok(message)
    }
}

/// The certificate's public key (PKCS#1 `RSAPublicKey` DER, as the key pair states its own) and
/// its expiry, read from the DER without a full X.509 parser: the two fields sit at fixed places
/// in `tbsCertificate`.
fn certificate_facts(der: &[u8]) -> Result<(Vec<u8>, Option<DateTime<Utc>>), CredentialError> {
    let bad = |what: &str| CredentialError::BadCertificate(what.to_owned());
    let (cert, _) = der::element(der, der::SEQUENCE).ok_or_else(|| bad("not a DER certificate"))?;
    let (tbs, _) = der::element(cert, der::SEQUENCE).ok_or_else(|| bad("no tbsCertificate"))?;
    let mut rest = tbs;
    // [0] version (optional), serialNumber, signature, issuer, validity, subject, spki.
    if rest.first() == Some(&0xa0) {
        rest = der::skip(rest).ok_or_else(|| bad("bad version"))?;
    }
    rest = der::skip(rest).ok_or_else(|| bad("bad serial number"))?;
    rest = der::skip(rest).ok_or_else(|| bad("bad signature algorithm"))?;
    rest = der::skip(rest).ok_or_else(|| bad("bad issuer"))?;
    let (validity, after) = der::element(rest, der::SEQUENCE).ok_or_else(|| bad("bad validity"))?;
    let not_after = der::skip(validity).and_then(der::time);
    rest = der::skip(after).ok_or_else(|| bad("bad subject"))?;
    let (spki, _) = der::element(rest, der::SEQUENCE).ok_or_else(|| bad("bad public key info"))?;
    let after_alg = der::skip(spki).ok_or_else(|| bad("bad public key algorithm"))?;
    let (bits, _) = der::element(after_alg, der::BIT_STRING).ok_or_else(|| bad("bad public key"))?;
    // The first byte of a BIT STRING counts unused bits (0 for a key).
    let key = bits.get(1..).filter(|_| bits.first() == Some(&0)).ok_or_else(|| bad("bad public key bits"))?;
    Ok((key.to_vec(), not_after))
}

/// The little DER a certificate's outer fields need.
mod der {
    use super::*;

    pub const SEQUENCE: u8 = 0x30;
    pub const BIT_STRING: u8 = 0x03;
    const UTC_TIME: u8 = 0x17;
    const GENERALIZED_TIME: u8 = 0x18;

    /// The contents of the element at the start of `input` (of tag `tag`) and what follows it.
    pub fn element(input: &[u8], tag: u8) -> Option<(&[u8], &[u8])> {
        if *input.first()? != tag {
            return None;
        }
        let (len, header) = length(input.get(1..)?)?;
        let start = 1 + header;
        let end = start.checked_add(len)?;
        Some((input.get(start..end)?, input.get(end..)?))
    }

    /// What follows the element at the start of `input`, whatever its tag.
    pub fn skip(input: &[u8]) -> Option<&[u8]> {
        let tag = *input.first()?;
        element(input, tag).map(|(_, rest)| rest)
    }

    /// The length and how many bytes it took.
    fn length(input: &[u8]) -> Option<(usize, usize)> {
        let first = *input.first()?;
        if first < 0x80 {
            return Some((usize::from(first), 1));
        }
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 {
            return None;
        }
        let mut len = 0usize;
        for b in input.get(1..=n)? {
            len = (len << 8) | usize::from(*b);
        }
        Some((len, 1 + n))
    }

    /// A UTCTime or GeneralizedTime at the start of `input` (`YYMMDDhhmmssZ` or
    /// `YYYYMMDDhhmmssZ`).
    pub fn time(input: &[u8]) -> Option<DateTime<Utc>> {
        let (text, year_digits) = match *input.first()? {
            UTC_TIME => (element(input, UTC_TIME)?.0, 2),
            GENERALIZED_TIME => (element(input, GENERALIZED_TIME)?.0, 4),
            _ => return None,
        };
        let text = std::str::from_utf8(text).ok()?;
        let digits = text.strip_suffix('Z')?;
        let num = |range: std::ops::Range<usize>| digits.get(range)?.parse::<u32>().ok();
        let mut year = i32::try_from(num(0..year_digits)?).ok()?;
        if year_digits == 2 {
            year += if year < 50 { 2000 } else { 1900 };
        }
        let o = year_digits;
        Utc.with_ymd_and_hms(
            year,
            num(o..o + 2)?,
            num(o + 2..o + 4)?,
            num(o + 4..o + 6)?,
            num(o + 6..o + 8)?,
            num(o + 8..o + 10)?,
        )
        .single()
    }
}
