//! What the delivery side reads from the servers it sends to: `Retry-After` and how it moves the
//! retry schedule and the integration's pause (`wbd_notify::schedule`, used by the delivery
//! engine), an answer's body as JSON, and each connector's reading of it: Halo's token and saved
//! ticket, PagerDuty's event answer, a ServiceNow record, Autotask's item id, Jira's transitions.
//!
//! Input: one byte (the attempt count and throttling streak), a `Retry-After` line, then the body.
#![no_main]

use chrono::{DateTime, Utc};
use libfuzzer_sys::fuzz_target;
use wbd_notify::connector::{Response, parse_retry_after};
use wbd_notify::connectors::{autotask, halopsa, jira, pagerduty, servicenow};
use wbd_notify::schedule::RetrySchedule;

fuzz_target!(|data: &[u8]| {
    let Some((&counts, rest)) = data.split_first() else { return };
    let (retry_after, body) = match rest.iter().position(|b| *b == b'\n') {
        Some(at) => (&rest[..at], &rest[at + 1..]),
        None => (&rest[..0], rest),
    };
    let now = DateTime::parse_from_rfc3339("2026-11-20T10:00:00Z").expect("a time").with_timezone(&Utc);
    let asked = std::str::from_utf8(retry_after).ok().and_then(|v| parse_retry_after(v, now));
    let schedule = RetrySchedule::standard();
    if let Some(delay) = schedule.next_delay(u32::from(counts & 0x0f), asked) {
        chrono::Duration::from_std(delay).expect("a delay the engine can add to a time");
    }
    let pause = schedule.throttle(asked, u32::from(counts >> 4) * 3);
    chrono::Duration::from_std(pause).expect("a pause the engine can add to a time");

    let response = Response { status: 200, headers: Default::default(), body: body.to_vec() };
    let Ok(answer) = response.json() else { return };
    if let Ok((_, renew_after)) = halopsa::read_token_answer(&answer) {
        assert!(std::time::Instant::now().checked_add(renew_after).is_some());
    }
    let _ = halopsa::read_saved_ticket(&answer);
    let _ = pagerduty::read_event_answer(&answer);
    let _ = answer.get("result").and_then(servicenow::incident_of);
    let _ = autotask::item_id(&answer, "the created ticket");
    let _ = jira::read_transitions(&answer);
});
