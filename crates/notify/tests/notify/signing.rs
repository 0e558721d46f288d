//! Our Standard Webhooks signatures, checked by an independent implementation (the
//! `standardwebhooks` crate receivers use).

use chrono::Utc;
use reqwest::header::{HeaderMap, HeaderValue};
use standardwebhooks::Webhook;
use wbd_notify::signing::{SigningSecret, sign, signature_header};

const BODY: &[u8] = br#"{"type":"finding.opened","timestamp":"2026-11-20T10:00:00Z","data":{}}"#;

fn headers(msg_id: &str, timestamp: i64, signature: &str) -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert("webhook-id", HeaderValue::from_str(msg_id).unwrap());
    h.insert("webhook-timestamp", HeaderValue::from_str(&timestamp.to_string()).unwrap());
    h.insert("webhook-signature", HeaderValue::from_str(signature).unwrap());
    h
}

fn verifier(secret: &SigningSecret) -> Webhook {
    Webhook::new(&secret.to_whsec()).unwrap()
}

#[test]
fn both_secrets_of_a_rotation_verify_the_two_signature_header() {
    let (new, old) = (SigningSecret::generate(), SigningSecret::generate());
    let now = Utc::now().timestamp();
    let header = signature_header("msg_abc", now, BODY, &[new.clone(), old.clone()]);
    assert_eq!(header.split(' ').count(), 2);
    let h = headers("msg_abc", now, &header);
    verifier(&new).verify(BODY, &h).expect("the new secret verifies");
    verifier(&old).verify(BODY, &h).expect("the old secret verifies");
    assert!(verifier(&SigningSecret::generate()).verify(BODY, &h).is_err(), "another secret does not");
}

#[test]
fn a_changed_body_id_or_timestamp_fails() {
    let secret = SigningSecret::generate();
    let now = Utc::now().timestamp();
    let signature = sign("msg_abc", now, BODY, &secret);
    let v = verifier(&secret);
    v.verify(BODY, &headers("msg_abc", now, &signature)).expect("the original verifies");
    let mut changed = BODY.to_vec();
    changed[10] ^= 0x01;
    assert!(v.verify(&changed, &headers("msg_abc", now, &signature)).is_err(), "body");
    assert!(v.verify(BODY, &headers("msg_abd", now, &signature)).is_err(), "id");
    assert!(v.verify(BODY, &headers("msg_abc", now - 1, &signature)).is_err(), "timestamp");
}

#[test]
fn a_timestamp_outside_five_minutes_fails() {
    let secret = SigningSecret::generate();
    let v = verifier(&secret);
    let now = Utc::now().timestamp();
    for (timestamp, ok) in [(now - 240, true), (now + 240, true), (now - 360, false), (now + 360, false)] {
        let signature = sign("msg_abc", timestamp, BODY, &secret);
        assert_eq!(
            v.verify(BODY, &headers("msg_abc", timestamp, &signature)).is_ok(),
            ok,
            "{}",
            timestamp - now
        );
    }
}

#[test]
fn the_text_form_is_what_receivers_load() {
    let secret = SigningSecret::generate();
    let text = secret.to_whsec();
    assert_eq!(SigningSecret::parse(&text).unwrap(), secret);
    // A 32-byte secret is 44 base64 characters after the prefix.
    assert_eq!(text.len(), "whsec_".len() + 44);
}
