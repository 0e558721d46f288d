//! PagerDuty Events API v2 (`POST /v2/enqueue`).
//!
//! Alerts are kept per routing key and dedup key as PagerDuty keeps them: a `trigger` whose
//! dedup key has an open (triggered or acknowledged) alert is added to that alert's log; after
//! a `resolve`, a `trigger` opens a new alert (a new incident) under the same key; `acknowledge`
//! and `resolve` of a key with no open alert are accepted and change nothing. Events are checked
//! like PagerDuty does (32-character alphanumeric routing key of a known integration, event
//! action, summary ≤ 1,024 characters, source, severity, dedup key ≤ 255) and refused with
//! `400 {"status": "invalid event", "message": "Event object is invalid", "errors": [...]}`.
//! Accepted events are answered `202 {"status": "success", "message": "Event processed",
//! "dedup_key": …}`.

use std::sync::Mutex;

use actix_web::{HttpRequest, HttpResponse, web};
use serde_json::{Value, json};

use crate::{Api, Common, Observed};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AlertStatus {
    Triggered,
    Acknowledged,
    Resolved,
}

#[derive(Debug, Clone)]
pub struct Alert {
    pub routing_key: String,
    pub dedup_key: String,
    /// The incident this alert opened (1, 2, … in order of creation).
    pub incident_number: u64,
    pub status: AlertStatus,
    /// The `payload` of the trigger that opened the alert.
    pub payload: Value,
    pub links: Value,
    /// Every event applied to the alert, oldest first (the alert's log).
    pub log: Vec<Value>,
}

impl Alert {
    /// The event actions of the log, oldest first.
    pub fn actions(&self) -> Vec<String> {
        self.log.iter().filter_map(|e| e.get("event_action")?.as_str().map(str::to_owned)).collect()
    }
}

#[derive(Debug)]
pub struct PagerDutyState {
    common: Common,
    routing_keys: Vec<String>,
    alerts: Mutex<Vec<Alert>>,
}

impl PagerDutyState {
    /// Accepts events for the integrations with these routing keys.
    pub fn new(routing_keys: &[&str]) -> PagerDutyState {
        PagerDutyState {
            common: Common::default(),
            routing_keys: routing_keys.iter().map(|k| (*k).to_owned()).collect(),
            alerts: Mutex::new(Vec::new()),
        }
    }

    /// Every alert ever opened, oldest first.
    pub fn alerts(&self) -> Vec<Alert> {
        self.alerts.lock().unwrap().clone()
    }

    /// The alerts of one dedup key, oldest first.
    pub fn alerts_for(&self, dedup_key: &str) -> Vec<Alert> {
        self.alerts().into_iter().filter(|a| a.dedup_key == dedup_key).collect()
    }
}

fn invalid(errors: &[String]) -> HttpResponse {
    HttpResponse::BadRequest().json(json!({
        "status": "invalid event",
        "message": "Event object is invalid",
        "errors": errors,
    }))
}

fn present(value: Option<&Value>) -> Option<&str> {
    value.and_then(Value::as_str).filter(|s| !s.trim().is_empty())
}

/// The problems PagerDuty would list for `event`.
fn check(state: &PagerDutyState, event: &Value) -> Vec<String> {
    let mut errors = Vec::new();
    match present(event.get("routing_key")) {
        None => errors.push("'routing_key' is missing or blank".to_owned()),
        Some(key) => {
            if key.len() != 32 {
                errors.push("Length of 'routing_key' is incorrect (should be 32 characters)".to_owned());
            }
            if !key.chars().all(|c| c.is_ascii_alphanumeric()) {
                errors.push("'routing_key' cannot contain non-alphanumeric characters.".to_owned());
            }
            if errors.is_empty() && !state.routing_keys.iter().any(|k| k == key) {
                errors.push("Invalid routing key".to_owned());
            }
        }
    }
    let action = present(event.get("event_action"));
    match action {
        None => errors.push("'event_action' is missing or blank".to_owned()),
        Some("trigger" | "acknowledge" | "resolve") => {}
        Some(_) => errors
            .push("'event_action' is invalid (must be one of: trigger, acknowledge, resolve)".to_owned()),
    }
    match event.get("dedup_key") {
        None | Some(Value::Null) if action != Some("trigger") => {
            errors.push("'dedup_key' is missing or blank".to_owned())
        }
        None | Some(Value::Null) => {}
        Some(Value::String(k)) if k.is_empty() || k.chars().count() > 255 => {
            errors.push("'dedup_key' must be between 1 and 255 characters".to_owned())
        }
        Some(Value::String(_)) => {}
        Some(_) => errors.push("'dedup_key' must be a string".to_owned()),
    }
    if action == Some("trigger") {
        let payload = event.get("payload");
        match present(payload.and_then(|p| p.get("summary"))) {
            None => errors.push("'payload.summary' is missing or blank".to_owned()),
            Some(s) if s.chars().count() > 1024 => {
                errors.push("'payload.summary' must be at most 1024 characters".to_owned())
            }
            Some(_) => {}
        }
        if present(payload.and_then(|p| p.get("source"))).is_none() {
            errors.push("'payload.source' is missing or blank".to_owned());
        }
        match present(payload.and_then(|p| p.get("severity"))) {
            Some("critical" | "error" | "warning" | "info") => {}
            Some(_) => errors.push(
                "'payload.severity' is invalid (must be one of: critical, error, warning, info)".to_owned(),
            ),
            None => errors.push("'payload.severity' is missing or blank".to_owned()),
        }
        if let Some(links) = event.get("links") {
            let ok =
                links.as_array().is_some_and(|l| l.iter().all(|link| present(link.get("href")).is_some()));
            if !ok {
                errors.push("'links' must be a list of objects with an 'href'".to_owned());
            }
        }
    }
    errors
}

async fn enqueue(req: HttpRequest, body: web::Bytes, state: web::Data<PagerDutyState>) -> HttpResponse {
    let lose_answer = match state.common().observe(&req, &body).await {
        Observed::Answer(response) => return response,
        Observed::Handle { lose_answer } => lose_answer,
    };
    let Ok(event) = serde_json::from_slice::<Value>(&body) else {
        return invalid(&["Event object is not valid JSON".to_owned()]);
    };
    let errors = check(&state, &event);
    if !errors.is_empty() {
        return invalid(&errors);
    }
    let routing_key = event["routing_key"].as_str().unwrap_or_default().to_owned();
    let action = event["event_action"].as_str().unwrap_or_default().to_owned();
    let dedup_key = {
        let mut alerts = state.alerts.lock().unwrap();
        let dedup_key = match event.get("dedup_key").and_then(Value::as_str) {
            Some(k) => k.to_owned(),
            None => format!("{:032x}", uuid::Uuid::new_v4().as_u128()),
        };
        let open = alerts.iter_mut().rev().find(|a| {
            a.routing_key == routing_key && a.dedup_key == dedup_key && a.status != AlertStatus::Resolved
        });
        match (action.as_str(), open) {
            ("trigger", Some(alert)) => alert.log.push(event.clone()),
            ("trigger", None) => {
                let incident_number = alerts.len() as u64 + 1;
                alerts.push(Alert {
                    routing_key,
                    dedup_key: dedup_key.clone(),
                    incident_number,
                    status: AlertStatus::Triggered,
                    payload: event["payload"].clone(),
                    links: event.get("links").cloned().unwrap_or(Value::Null),
                    log: vec![event.clone()],
                });
            }
            ("acknowledge", Some(alert)) => {
                alert.status = AlertStatus::Acknowledged;
                alert.log.push(event.clone());
            }
            ("resolve", Some(alert)) => {
                alert.status = AlertStatus::Resolved;
                alert.log.push(event.clone());
            }
            // Nothing open under this key: accepted, and nothing happens.
            _ => {}
        }
        dedup_key
    };
    let answer = json!({"status": "success", "message": "Event processed", "dedup_key": dedup_key});
    Common::answer(lose_answer, HttpResponse::Accepted().json(answer))
}

impl Api for PagerDutyState {
    fn common(&self) -> &Common {
        &self.common
    }

    fn configure(cfg: &mut web::ServiceConfig) {
        cfg.route("/v2/enqueue", web::post().to(enqueue));
    }
}
