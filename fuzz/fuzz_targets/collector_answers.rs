//! What the collector reads from servers: the API's answer to a push (status, `Retry-After`,
//! body: the 202's commands or a problem document), to an enrollment, and Microsoft's token and
//! licence answers to the Graph probe.
//!
//! Input: two bytes of status, a `Retry-After` line, then the body.
#![no_main]

use chrono::{DateTime, Utc};
use libfuzzer_sys::fuzz_target;
use wbd_collector::http_client::describe_error_response;
use wbd_collector::probe::graph::{aggregate_service_plans, read_token_answer};
use wbd_collector::push::{classify, parse_retry_after};
use wbd_wire::EnrollResponse;

fuzz_target!(|data: &[u8]| {
    let [hi, lo, rest @ ..] = data else { return };
    let Ok(status) = reqwest::StatusCode::from_u16(100 + u16::from_be_bytes([*hi, *lo]) % 500) else {
        return;
    };
    let (retry_after, body) = match rest.iter().position(|b| *b == b'\n') {
        Some(at) => (&rest[..at], &rest[at + 1..]),
        None => (&rest[..0], rest),
    };
    let now = DateTime::parse_from_rfc3339("2026-11-20T10:00:00Z").expect("a time").with_timezone(&Utc);
    let mut headers = reqwest::header::HeaderMap::new();
    if let Ok(value) = reqwest::header::HeaderValue::from_bytes(retry_after) {
        headers.insert(reqwest::header::RETRY_AFTER, value);
    }
    let _ = classify(status, &headers, body, now);
    if let Ok(text) = std::str::from_utf8(retry_after) {
        let _ = parse_retry_after(text, now);
    }
    let _ = describe_error_response(status, body);
    let _ = serde_json::from_slice::<EnrollResponse>(body);
    if let Ok((_, lifetime)) = read_token_answer(status, body, "[probes.graph]") {
        assert!(std::time::Instant::now().checked_add(lifetime).is_some());
    }
    if let Ok(serde_json::Value::Array(skus)) = serde_json::from_slice(body) {
        let _ = aggregate_service_plans(&skus);
    }
});
