//! Standard Webhooks signatures, so receivers can check a delivery came from us, unchanged.
//!
//! Per <https://www.standardwebhooks.com/>: the signed content is `{msg_id}.{timestamp}.{body}`,
//! the signature HMAC-SHA256 under the secret's bytes, sent base64-encoded as `v1,<sig>` in the
//! `webhook-signature` header beside `webhook-id` and `webhook-timestamp` (unix seconds).
//! During a secret rotation the header carries one signature per secret, space separated, so
//! receivers holding either secret accept the message.

use aws_lc_rs::hmac;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

/// The prefix of a secret's text form.
const PREFIX: &str = "whsec_";
/// Secrets we generate: 256 bits, as the HMAC's block of security.
const GENERATED_BYTES: usize = 32;
/// The spec asks for at least 24 bytes; shorter secrets are refused on input.
const MIN_BYTES: usize = 24;
/// The spec's upper bound (64 bytes); anything longer is not a Standard Webhooks secret.
const MAX_BYTES: usize = 64;

/// A webhook signing secret. Its text form is `whsec_` + base64 of the bytes.
#[derive(Clone, PartialEq, Eq)]
pub struct SigningSecret {
    bytes: Vec<u8>,
}

impl std::fmt::Debug for SigningSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SigningSecret(<redacted>)")
    }
}

impl SigningSecret {
    /// A new random secret (32 bytes from the system's CSPRNG).
    pub fn generate() -> SigningSecret {
        let mut bytes = vec![0u8; GENERATED_BYTES];
        // Fails only if the OS has no randomness to give, when nothing secret can be made.
        aws_lc_rs::rand::fill(&mut bytes).expect("the system random generator works");
        SigningSecret { bytes }
    }

    /// Reads the `whsec_…` form. The error says what is wrong without repeating the secret.
    pub fn parse(text: &str) -> Result<SigningSecret, String> {
        let encoded =
            text.trim().strip_prefix(PREFIX).ok_or_else(|| format!("must start with `{PREFIX}`"))?;
        let bytes = STANDARD.decode(encoded).map_err(|_| format!("must be `{PREFIX}` followed by base64"))?;
        if !(MIN_BYTES..=MAX_BYTES).contains(&bytes.len()) {
            return Err(format!(
                "must encode {MIN_BYTES} to {MAX_BYTES} bytes (this one has {}); generate a new one",
                bytes.len()
            ));
        }
        Ok(SigningSecret { bytes })
    }

    /// The text form, to show once to the user who creates or rotates it.
    pub fn to_whsec(&self) -> String {
        format!("{PREFIX}{}", STANDARD.encode(&self.bytes))
    }
}

/// The signature of one message under one secret: `v1,<base64 HMAC-SHA256>`.
pub fn sign(msg_id: &str, timestamp: i64, body: &[u8], secret: &SigningSecret) -> String {
    let key = hmac::Key::new(hmac::HMAC_SHA256, &secret.bytes);
    let mut ctx = hmac::Context::with_key(&key);
    ctx.update(msg_id.as_bytes());
    ctx.update(b".");
    ctx.update(timestamp.to_string().as_bytes());
    ctx.update(b".");
    ctx.update(body);
    format!("v1,{}", STANDARD.encode(ctx.sign().as_ref()))
}

/// The `webhook-signature` header value: one signature per secret, in the order given
/// (newest first), space separated.
pub fn signature_header(msg_id: &str, timestamp: i64, body: &[u8], secrets: &[SigningSecret]) -> String {
    secrets.iter().map(|secret| sign(msg_id, timestamp, body, secret)).collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_the_spec_example() {
        // The example of the Standard Webhooks reference implementations.
        let secret = SigningSecret::parse("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        let sig = sign("msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, br#"{"test": 2432232314}"#, &secret);
        assert_eq!(sig, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
    }

    #[test]
    fn secrets_round_trip_and_stay_out_of_debug() {
        let secret = SigningSecret::generate();
        let text = secret.to_whsec();
        assert!(text.starts_with("whsec_"));
        assert_eq!(SigningSecret::parse(&text).unwrap(), secret);
        assert_ne!(SigningSecret::generate(), secret);
        assert!(!format!("{secret:?}").contains(&text[6..]));
    }

    #[test]
    fn bad_secrets_are_refused_without_echoing_them() {
        for bad in ["MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "whsec_not base64!", "whsec_c2hvcnQ="] {
            let err = SigningSecret::parse(bad).unwrap_err();
            assert!(!err.contains(bad), "{err}");
        }
    }

    #[test]
    fn one_signature_per_secret_newest_first() {
        let (new, old) = (SigningSecret::generate(), SigningSecret::generate());
        let header = signature_header("msg_1", 1, b"{}", &[new.clone(), old.clone()]);
        assert_eq!(header, format!("{} {}", sign("msg_1", 1, b"{}", &new), sign("msg_1", 1, b"{}", &old)));
    }
}
