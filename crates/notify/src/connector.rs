//! What one integration does with an event, and the recorded HTTP exchanges of an attempt.
//!
//! The delivery engine decides *what* should happen (send a message; create, note, close or
//! reopen a ticket) from the event and the ticket it has stored; a [`Connector`] knows *how* its
//! destination does it. Every HTTP request goes through [`Http`], which records it for the
//! attempt log and classifies the answer: anything but 2xx is a failure (3xx included: we never
//! follow redirects), `410 Gone` disables the integration, `Retry-After` is kept for the schedule.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use reqwest::header::HeaderMap;
use serde::{Deserialize, Serialize};
use url::Url;

use crate::event::Event;
use crate::ssrf::{Blocked, Guard, NetworkPolicy};

/// The destinations we deliver to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum IntegrationKind {
    /// Any HTTPS endpoint, signed per Standard Webhooks.
    Webhook,
    /// ConnectWise PSA (Manage) REST API.
    Connectwise,
    /// Autotask (Datto) PSA REST API.
    Autotask,
    Halopsa,
    /// Jira Cloud REST API v3.
    Jira,
    /// ServiceNow Table API (incidents).
    Servicenow,
    /// PagerDuty Events API v2.
    Pagerduty,
    /// Slack incoming webhook.
    Slack,
    /// Microsoft Teams workflow ("When a Teams webhook request is received") webhook.
    Teams,
}

impl IntegrationKind {
    pub const ALL: [IntegrationKind; 9] = [
        IntegrationKind::Webhook,
        IntegrationKind::Connectwise,
        IntegrationKind::Autotask,
        IntegrationKind::Halopsa,
        IntegrationKind::Jira,
        IntegrationKind::Servicenow,
        IntegrationKind::Pagerduty,
        IntegrationKind::Slack,
        IntegrationKind::Teams,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            IntegrationKind::Webhook => "webhook",
            IntegrationKind::Connectwise => "connectwise",
            IntegrationKind::Autotask => "autotask",
            IntegrationKind::Halopsa => "halopsa",
            IntegrationKind::Jira => "jira",
            IntegrationKind::Servicenow => "servicenow",
            IntegrationKind::Pagerduty => "pagerduty",
            IntegrationKind::Slack => "slack",
            IntegrationKind::Teams => "teams",
        }
    }

    pub fn parse(s: &str) -> Option<IntegrationKind> {
        IntegrationKind::ALL.into_iter().find(|k| k.as_str() == s)
    }

    /// Whether the destination keeps one ticket (or alert) per problem, which we create, note,
    /// close and reopen; otherwise every event is one message.
    pub fn keeps_tickets(self) -> bool {
        !matches!(self, IntegrationKind::Webhook | IntegrationKind::Slack | IntegrationKind::Teams)
    }

    /// Whether the destination URL itself is a secret (chat webhooks carry their token in the
    /// path): it is then stored encrypted with the credentials and redacted in attempt logs.
    pub fn url_is_secret(self) -> bool {
        matches!(self, IntegrationKind::Slack | IntegrationKind::Teams)
    }

    /// Requests in flight at once to one integration, unless configured.
    pub fn default_max_in_flight(self) -> u32 {
        match self {
            IntegrationKind::Webhook | IntegrationKind::Pagerduty => 8,
            _ => 2,
        }
    }

    /// Deliveries per rolling hour to one integration, unless configured. Autotask allows
    /// 10,000 requests per hour per database *shared by every integration of the MSP*, and one
    /// delivery can take three requests: we leave most of the budget to the MSP's other tools.
    /// PagerDuty quotes 120 events per minute per integration key.
    pub fn default_hourly_budget(self) -> Option<u32> {
        match self {
            IntegrationKind::Autotask => Some(1_000),
            IntegrationKind::Pagerduty => Some(6_000),
            IntegrationKind::Slack | IntegrationKind::Teams => Some(1_800),
            _ => None,
        }
    }
}

impl std::fmt::Display for IntegrationKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Everything a connector is built from. `credentials` and `signing_secrets` are decrypted
/// secrets: never log or return them.
#[derive(Clone)]
pub struct ConnectorSettings {
    pub kind: IntegrationKind,
    /// The destination: the webhook endpoint, the PSA instance's base URL, the PagerDuty
    /// events endpoint, the Slack/Teams webhook URL.
    pub url: Url,
    /// Non-secret options of the kind (board, queue, project, status names …).
    pub config: serde_json::Value,
    /// Secret options of the kind (API keys, passwords, routing keys …).
    pub credentials: serde_json::Value,
    /// Webhook signing secrets (`whsec_…`), newest first; two during a rotation.
    pub signing_secrets: Vec<String>,
}

impl std::fmt::Debug for ConnectorSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConnectorSettings")
            .field("kind", &self.kind)
            .field(
                "url",
                &if self.kind.url_is_secret() { "<secret>".to_owned() } else { self.url.to_string() },
            )
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

/// A setting that cannot work, named by its path (`config.board_id`, `credentials.api_token`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ConfigError {
    pub field: String,
    pub message: String,
}

impl ConfigError {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> ConfigError {
        ConfigError { field: field.into(), message: message.into() }
    }
}

/// The ticket (or alert) an integration keeps for one problem.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TicketRef {
    /// The destination's id (ConnectWise ticket number, Jira issue key, ServiceNow sys_id,
    /// PagerDuty dedup key …).
    pub external_id: String,
    /// A link a person can open, when the destination has one.
    pub url: Option<String>,
}

/// What the engine asks a connector to do.
#[derive(Debug, Clone, Copy)]
pub enum Action<'a> {
    /// Message destinations (webhook, Slack, Teams): deliver the event.
    Send { event: &'a Event },
    /// Open a ticket for the problem. `key` (≤ 40 characters of `[a-z0-9-]`) is stable for the
    /// problem: store it on the ticket where the destination allows, so [`Action::Find`] can
    /// find the ticket again if the answer to this request is lost.
    Create { event: &'a Event, key: &'a str },
    /// Look for a ticket an earlier `Create` with this key made, whose answer never reached
    /// us (timeout, crash). `Outcome::Ticket` if there is one, `Outcome::NotFound` otherwise.
    Find { event: &'a Event, key: &'a str },
    /// Add a note to an open ticket (recurrence, acknowledgement, suppression …).
    Note { event: &'a Event, ticket: &'a TicketRef },
    /// The problem is gone: close the ticket with a note saying so.
    Close { event: &'a Event, ticket: &'a TicketRef },
    /// The problem is (still or again) there: make sure `ticket` is open, with a note. A
    /// closed ticket is reopened if the destination can (returns `Outcome::Done`), otherwise a
    /// new ticket linked to it is opened (returns `Outcome::Ticket`). A ticket that is open
    /// already — never closed, or a person reopened it and moved it on — only gets the note: its
    /// status is left as it is. The engine sends this for every problem event on a ticket it
    /// knows, because a person may have closed the ticket in the destination meanwhile.
    Reopen { event: &'a Event, ticket: &'a TicketRef, key: &'a str },
}

impl Action<'_> {
    pub fn name(&self) -> &'static str {
        match self {
            Action::Send { .. } => "send",
            Action::Create { .. } => "create",
            Action::Find { .. } => "find",
            Action::Note { .. } => "note",
            Action::Close { .. } => "close",
            Action::Reopen { .. } => "reopen",
        }
    }

    pub fn event(&self) -> &Event {
        match self {
            Action::Send { event }
            | Action::Create { event, .. }
            | Action::Find { event, .. }
            | Action::Note { event, .. }
            | Action::Close { event, .. }
            | Action::Reopen { event, .. } => event,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Done,
    /// A ticket was created (or found, or a linked one created on reopen).
    Ticket(TicketRef),
    /// `Find` found nothing.
    NotFound,
}

/// Why an attempt failed. Every variant but [`DeliveryError::Gone`] is retried on schedule.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DeliveryError {
    /// The destination resolved only to addresses we refuse (loopback, private, metadata …).
    #[error("destination refused: {0}")]
    Blocked(String),
    /// No answer: connection refused or reset, TLS failure, timeout.
    #[error("transport error: {0}")]
    Transport(String),
    /// An answer other than 2xx (3xx included).
    #[error("HTTP {status}")]
    Status { status: u16, retry_after: Option<Duration>, excerpt: String },
    /// `410 Gone`: the receiver asks us to stop; the integration is disabled.
    #[error("HTTP 410 Gone")]
    Gone { excerpt: String },
    /// A 2xx answer we could not use (no ticket id in it …).
    #[error("unexpected answer: {0}")]
    Protocol(String),
    /// The stored ticket no longer exists in the destination (a person deleted or merged it):
    /// return it only when the destination says so of that very ticket (a `404` for its id),
    /// never for a failure that might pass. The engine then opens a new ticket for a problem
    /// event and treats a recovery as done, instead of retrying for days.
    #[error("the ticket {0} no longer exists in the destination")]
    TicketGone(String),
}

impl DeliveryError {
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            DeliveryError::Status { retry_after, .. } => *retry_after,
            _ => None,
        }
    }

    /// Whether the destination asked us to slow down — `429`, or a `502`/`503`/`504` with
    /// `Retry-After` — which pauses the whole integration, not just this delivery.
    pub fn throttles(&self) -> bool {
        match self {
            DeliveryError::Status { status: 429, .. } => true,
            DeliveryError::Status { status: 502..=504, retry_after, .. } => retry_after.is_some(),
            _ => false,
        }
    }

    pub fn status(&self) -> Option<u16> {
        match self {
            DeliveryError::Status { status, .. } => Some(*status),
            DeliveryError::Gone { .. } => Some(410),
            _ => None,
        }
    }
}

/// One request of an attempt, as the attempt log shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Exchange {
    /// `POST https://example.com/path` (the path of secret URLs is redacted).
    pub request: String,
    /// `None` when no answer came (see `error`).
    pub status: Option<u16>,
    pub latency_ms: u64,
    /// The start of the answer's body (≤ 512 characters).
    pub response_excerpt: Option<String>,
    pub error: Option<String>,
}

/// A received answer (2xx).
#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

impl Response {
    /// The body as JSON (empty body → `null`).
    pub fn json(&self) -> Result<serde_json::Value, DeliveryError> {
        if self.body.iter().all(u8::is_ascii_whitespace) {
            return Ok(serde_json::Value::Null);
        }
        serde_json::from_slice(&self.body)
            .map_err(|e| DeliveryError::Protocol(format!("the answer is not JSON: {e}")))
    }
}

/// Answers larger than this are cut (we only need ids and excerpts).
const MAX_BODY: usize = 256 * 1024;
const EXCERPT_CHARS: usize = 512;

/// The HTTP side of one attempt: the guarded client, and the record of every exchange.
pub struct Http {
    client: reqwest::Client,
    /// Checked before each request: IP-literal hosts never reach the guarded resolver.
    policy: Arc<NetworkPolicy>,
    redact_paths: bool,
    exchanges: Mutex<Vec<Exchange>>,
}

impl Http {
    /// Sends through `guard`'s client and policy. `redact_paths` hides URL paths in the log
    /// (chat webhooks carry their token there).
    pub fn new(guard: &Guard, redact_paths: bool) -> Http {
        Http {
            client: guard.client().clone(),
            policy: guard.shared_policy(),
            redact_paths,
            exchanges: Mutex::new(Vec::new()),
        }
    }

    pub fn client(&self) -> &reqwest::Client {
        &self.client
    }

    /// What was exchanged so far.
    pub fn exchanges(&self) -> Vec<Exchange> {
        self.exchanges.lock().expect("exchange log").clone()
    }

    /// Sends `request` and returns a 2xx answer; anything else is an error (and recorded).
    pub async fn send(&self, request: reqwest::RequestBuilder) -> Result<Response, DeliveryError> {
        self.exchange(request, false).await
    }

    /// Like [`Http::send`], for requests whose successful answer holds a credential (an OAuth
    /// token): the log keeps its status and timing but not its body.
    pub async fn send_sensitive(&self, request: reqwest::RequestBuilder) -> Result<Response, DeliveryError> {
        self.exchange(request, true).await
    }

    async fn exchange(
        &self,
        request: reqwest::RequestBuilder,
        sensitive: bool,
    ) -> Result<Response, DeliveryError> {
        let request =
            request.build().map_err(|e| DeliveryError::Protocol(format!("cannot build request: {e}")))?;
        let label = format!("{} {}", request.method(), self.describe(request.url()));
        let mut exchange =
            Exchange { request: label, status: None, latency_ms: 0, response_excerpt: None, error: None };
        if let Err(blocked) = self.policy.check_url(request.url()) {
            let err = DeliveryError::Blocked(blocked.0);
            exchange.error = Some(err.to_string());
            self.exchanges.lock().expect("exchange log").push(exchange);
            return Err(err);
        }
        let started = Instant::now();
        let result = self.client.execute(request).await;
        let outcome = match result {
            Err(e) => {
                let err = classify_transport(&e);
                exchange.error = Some(err.to_string());
                Err(err)
            }
            Ok(response) => {
                let status = response.status().as_u16();
                let headers = response.headers().clone();
                let body = read_capped(response).await;
                exchange.status = Some(status);
                let excerpt = excerpt(&body);
                exchange.response_excerpt = if sensitive && (200..300).contains(&status) {
                    Some("(withheld: the answer carries a credential)".to_owned())
                } else {
                    (!excerpt.is_empty()).then(|| excerpt.clone())
                };
                match body {
                    Err(e) => {
                        exchange.error = Some(e.to_string());
                        Err(e)
                    }
                    Ok(body) if (200..300).contains(&status) => Ok(Response { status, headers, body }),
                    Ok(_) if status == 410 => Err(DeliveryError::Gone { excerpt }),
                    Ok(_) => {
                        let retry_after = headers
                            .get(reqwest::header::RETRY_AFTER)
                            .and_then(|v| v.to_str().ok())
                            .and_then(|v| parse_retry_after(v, Utc::now()));
                        Err(DeliveryError::Status { status, retry_after, excerpt })
                    }
                }
            }
        };
        exchange.latency_ms = started.elapsed().as_millis().try_into().unwrap_or(u64::MAX);
        self.exchanges.lock().expect("exchange log").push(exchange);
        outcome
    }

    fn describe(&self, url: &Url) -> String {
        let origin = url.origin().ascii_serialization();
        if self.redact_paths { format!("{origin}/…") } else { format!("{origin}{}", url.path()) }
    }
}

fn classify_transport(e: &reqwest::Error) -> DeliveryError {
    // The guarded resolver's refusal travels in the error's source chain. An io::Error
    // wrapping it would hide it from `source()`, so look inside those too.
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = source {
        let inner = err.downcast_ref::<std::io::Error>().and_then(|io| io.get_ref()).map(|inner| inner as _);
        if let Some(blocked) =
            [Some(err), inner].into_iter().flatten().find_map(|e| e.downcast_ref::<Blocked>())
        {
            return DeliveryError::Blocked(blocked.to_string());
        }
        source = err.source();
    }
    if e.is_timeout() {
        DeliveryError::Transport("no answer before the attempt timed out".into())
    } else if e.is_connect() {
        DeliveryError::Transport(format!("cannot connect: {}", root_cause(e)))
    } else {
        DeliveryError::Transport(root_cause(e))
    }
}

fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut last = e;
    while let Some(next) = last.source() {
        last = next;
    }
    last.to_string()
}

async fn read_capped(response: reqwest::Response) -> Result<Vec<u8>, DeliveryError> {
    let mut response = response;
    let mut body = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|e| DeliveryError::Transport(format!("answer cut off: {}", root_cause(&e))))?
    {
        let room = MAX_BODY.saturating_sub(body.len());
        body.extend_from_slice(&chunk[..chunk.len().min(room)]);
        if body.len() >= MAX_BODY {
            break;
        }
    }
    Ok(body)
}

fn excerpt(body: &Result<Vec<u8>, DeliveryError>) -> String {
    match body {
        Ok(bytes) => crate::event::truncate(String::from_utf8_lossy(bytes).trim(), EXCERPT_CHARS),
        Err(_) => String::new(),
    }
}

/// `Retry-After`: delay-seconds or an HTTP date. A date in the past means "now".
pub fn parse_retry_after(value: &str, now: DateTime<Utc>) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = DateTime::parse_from_rfc2822(value).ok()?.with_timezone(&Utc);
    Some((at - now).to_std().unwrap_or(Duration::ZERO))
}

/// One integration's way of delivering.
#[async_trait]
pub trait Connector: Send + Sync {
    fn kind(&self) -> IntegrationKind;

    /// Every URL this integration may send to (checked against the network policy on save;
    /// the resolver checks each connection again).
    fn destinations(&self) -> Vec<Url>;

    async fn perform(&self, http: &Http, action: Action<'_>) -> Result<Outcome, DeliveryError>;

    /// How long a new ticket may take to show in the search [`Action::Find`] uses (Jira's
    /// search is eventually consistent). Until a create is this old, a `Find` that sees
    /// nothing does not prove the create failed: the engine waits rather than create again.
    fn search_lag(&self) -> Duration {
        Duration::ZERO
    }

    /// Whether the ticket's external id is the key itself (PagerDuty's `dedup_key`): a ticket
    /// whose create is uncertain can then be acted on without finding it first.
    fn key_is_ticket_id(&self) -> bool {
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_reads_seconds_and_dates() {
        let now = DateTime::parse_from_rfc3339("2026-11-20T10:00:00Z").unwrap().with_timezone(&Utc);
        assert_eq!(parse_retry_after("120", now), Some(Duration::from_secs(120)));
        assert_eq!(parse_retry_after("Fri, 20 Nov 2026 10:01:30 GMT", now), Some(Duration::from_secs(90)));
        assert_eq!(parse_retry_after("Fri, 20 Nov 2026 09:00:00 GMT", now), Some(Duration::ZERO));
        assert_eq!(parse_retry_after("soon", now), None);
    }

    #[test]
    fn too_many_requests_and_an_overloaded_server_that_says_when_throttle() {
        let status = |status, retry_after: Option<u64>| DeliveryError::Status {
            status,
            retry_after: retry_after.map(Duration::from_secs),
            excerpt: String::new(),
        };
        assert!(status(429, None).throttles());
        assert!(status(429, Some(30)).throttles());
        assert!(status(503, Some(30)).throttles());
        assert!(!status(503, None).throttles(), "a plain outage is a failure, not a throttle");
        assert!(!status(500, Some(30)).throttles());
        assert!(!DeliveryError::Transport("reset".into()).throttles());
    }

    #[test]
    fn kinds_round_trip_through_their_names() {
        for k in IntegrationKind::ALL {
            assert_eq!(IntegrationKind::parse(k.as_str()), Some(k));
            assert_eq!(serde_json::to_value(k).unwrap(), serde_json::json!(k.as_str()));
        }
    }
}
