//! HaloPSA REST API: one ticket per problem.
//!
//! - **Token**: OAuth2 client credentials, `POST {auth_url}/token` (form-encoded
//!   `grant_type=client_credentials`, `client_id`, `client_secret`, `scope`; hosted tenants add
//!   `?tenant=`). The bearer token is cached until shortly before its `expires_in` and fetched
//!   again when an API call answers 401 (revoked, or the clock disagreed); that call is then
//!   repeated once with the new token.
//! - **Create**: `POST {base}/api/Tickets` with a one-element array: `summary` (the ticket
//!   title), `details` (the ticket body as HTML), `third_party_id_string` (the problem key, a
//!   native ticket field, so no custom field is needed) and the configured customer, site, ticket
//!   type, team and priority. Halo answers the saved ticket.
//! - **Find**: `GET {base}/api/Tickets?third_party_id_string=<key>&order=id&orderdesc=true
//!   &pageinate=true&page_size=50&page_no=N` → `{"record_count", "tickets"}`, newest first, at
//!   most 4 pages. A ticket is ours only if its `third_party_id_string` is exactly
//!   the key; when a list row leaves that column out, `GET {base}/api/Tickets/{id}` tells
//!   (for at most 10 rows whose summary is one of ours).
//!
//!   Why the filter is not trusted: no Halo documentation we could check says what the list does
//!   with it. A client generated from Halo's API reference (an n8n node) passes
//!   `third_party_id_string` and `third_party_id` as list filters; runZero's Halo integration
//!   relies on it but tells users to confirm on a pilot ticket that their instance honours it
//!   exactly, and to read the ticket when list rows omit the field. The paging (`pageinate`,
//!   `page_size`, `page_no`) and ordering (`order`, `orderdesc`) parameters are the ones those
//!   clients and the HaloAPI PowerShell module share. So the filter only narrows the list where
//!   Halo applies it, the exact match is ours, and a lost create, being among the newest tickets,
//!   is found by a bounded look at the newest ones even where the filter is ignored.
//! - **Note**: `POST {base}/api/Actions` with `[{ticket_id, outcome, note_html,
//!   hiddenfromuser}]`.
//! - **Close** / **Reopen**: `GET {base}/api/Tickets/{id}` for its status, then, unless it is
//!   already closed (close) or open (reopen: an open ticket keeps its status, "In Progress" or
//!   any other), `POST {base}/api/Tickets` with `[{id, status_id}]` (Halo updates a ticket posted
//!   with its id), then the note (`Outcome::Done` for reopen: Halo reopens a closed ticket by
//!   giving it an open status). The status goes first so that a retry after a lost answer sees
//!   the new status and only adds the note.
//!
//! A `404` for `GET {base}/api/Tickets/{id}` is [`DeliveryError::TicketGone`]; a refused note is
//! checked that way.
//!
//! Settings (ids come from Configuration → Tickets in the MSP's Halo):
//! - `url`: the Halo web address, e.g. `https://contoso.halopsa.com` (the API is `{url}/api`,
//!   ticket links `{url}/ticket?id=<id>`).
//! - `config.auth_url` (default `{url}/auth`): the authorisation server of API Details.
//! - `config.tenant` (optional): the hosted-authentication tenant, when API Details shows one.
//! - `config.scope` (default `all`): the application's OAuth scope.
//! - `config.customer_id`, `config.site_id`, `config.tickettype_id`, `config.team_id`
//!   (optional): where tickets are filed; Halo's defaults otherwise.
//! - `config.priority_ids` (default `{"critical": 1, "high": 2, "medium": 3, "low": 4}`, Halo's
//!   stock priorities): the priority per severity.
//! - `config.closed_status_id` (default 9, "Closed"): the status we close with and take for
//!   closed; `config.reopen_status_id` (default 1, "New").
//! - `config.note_outcome` (default `Private Note`): the action outcome our notes use; they are
//!   hidden from the end user.
//! - `credentials.client_id`, `credentials.client_secret`: the API application (Configuration →
//!   Integrations → Halo API, authentication method "Client ID and Secret").

use std::time::{Duration, Instant};

use async_trait::async_trait;
use serde_json::{Value, json};
use tokio::sync::Mutex;
use url::Url;

use super::{Fields, base_url_ok, check_key, gone_on_404, priority_ids, ticket_id};
use crate::connector::{
    Action, ConfigError, Connector, ConnectorSettings, DeliveryError, Http, IntegrationKind, Outcome,
    Response, TicketRef,
};
use crate::event::{Event, truncate};

/// Halo's ticket summary column.
const SUMMARY_MAX: usize = 250;
/// Halo's stock priorities run from 1 (critical) to 4 (low), as `Event::priority` does.
const DEFAULT_PRIORITIES: [u64; 4] = [1, 2, 3, 4];
/// What our ticket references are, for [`ticket_id`].
const TICKET_ID: &str = "a Halo ticket id";
/// A cached token is renewed this long before Halo says it expires (at most a tenth of its life).
const TOKEN_MARGIN: Duration = Duration::from_secs(60);
/// Longest a token is kept, whatever its `expires_in` says (Halo's live for an hour by default).
const MAX_TOKEN_LIFETIME: Duration = Duration::from_secs(24 * 3_600);
/// Find reads the newest tickets in pages of this many…
const FIND_PAGE_SIZE: usize = 50;
/// …and at most this many pages: a lost create is among the newest tickets.
const FIND_PAGES: u32 = 4;
/// Rows without the reference column whose ticket Find reads to check it, at most.
const FIND_CHECKS: usize = 10;
/// How our ticket summaries start ([`Event::ticket_title`]).
const OUR_SUMMARY: &str = "[Writeback Doctor]";

pub fn build(settings: &ConnectorSettings) -> Result<Box<dyn Connector>, Vec<ConfigError>> {
    let mut errors = Vec::new();
    let mut config = Fields::new("config", &settings.config, &mut errors);
    let auth_url = config.optional_str("auth_url");
    let tenant = config.optional_str("tenant");
    let scope = config.str_or("scope", "all");
    let customer_id = config.optional_u64("customer_id");
    let site_id = config.optional_u64("site_id");
    let tickettype_id = config.optional_u64("tickettype_id");
    let team_id = config.optional_u64("team_id");
    let closed_status_id = config.u64_or("closed_status_id", 9);
    let reopen_status_id = config.u64_or("reopen_status_id", 1);
    let note_outcome = config.str_or("note_outcome", "Private Note");
    let priority_ids =
        priority_ids(&settings.config, &mut errors, Some(DEFAULT_PRIORITIES), "priority id", "priority id")
            .unwrap_or(DEFAULT_PRIORITIES);
    let mut credentials = Fields::new("credentials", &settings.credentials, &mut errors);
    let client_id = credentials.required_str("client_id");
    let client_secret = credentials.required_str("client_secret");

    let base = web_root(&settings.url, &mut errors);
    let token_url =
        base.as_ref().and_then(|base| token_url(base, auth_url.as_deref(), tenant.as_deref(), &mut errors));
    if !errors.is_empty() {
        return Err(errors);
    }
    let (Some(base), Some(token_url)) = (base, token_url) else {
        return Err(vec![ConfigError::new("url", "must be the Halo web address")]);
    };
    let api = base.join("api/").map_err(|_| vec![ConfigError::new("url", "must be the Halo web address")])?;
    Ok(Box::new(HaloPsa {
        api,
        base,
        token_url,
        client_id,
        client_secret,
        scope,
        customer_id,
        site_id,
        tickettype_id,
        team_id,
        priority_ids,
        closed_status_id,
        reopen_status_id,
        note_outcome,
        token: Mutex::new(None),
    }))
}

/// The Halo web root with a trailing slash (an `/api` suffix is dropped).
fn web_root(url: &Url, errors: &mut Vec<ConfigError>) -> Option<Url> {
    if !base_url_ok(
        url,
        errors,
        "must be the Halo web address (https://…)",
        "must be the Halo web address without query or fragment",
    ) {
        return None;
    }
    let mut root = url.clone();
    let path = root.path().trim_end_matches('/');
    let path = path.strip_suffix("/api").unwrap_or(path).to_owned();
    root.set_path(&format!("{path}/"));
    Some(root)
}

/// `{auth_url}/token`, with `?tenant=` for hosted authentication.
fn token_url(
    base: &Url,
    auth_url: Option<&str>,
    tenant: Option<&str>,
    errors: &mut Vec<ConfigError>,
) -> Option<Url> {
    let auth = match auth_url {
        None => base.join("auth").ok()?,
        Some(text) => match Url::parse(text) {
            Ok(url) if matches!(url.scheme(), "https" | "http") && !url.cannot_be_a_base() => url,
            _ => {
                errors.push(ConfigError::new(
                    "config.auth_url",
                    "must be the authorisation server's https:// address",
                ));
                return None;
            }
        },
    };
    let mut token = auth;
    let path = token.path().trim_end_matches('/').to_owned();
    let path = if path.ends_with("/token") { path } else { format!("{path}/token") };
    token.set_path(&path);
    if let Some(tenant) = tenant {
        token.query_pairs_mut().append_pair("tenant", tenant);
    }
    Some(token)
}

/// A bearer token and when to stop using it.
struct CachedToken {
    value: String,
    renew_at: Instant,
}

struct HaloPsa {
    api: Url,
    base: Url,
    token_url: Url,
    client_id: String,
    /// A secret.
    client_secret: String,
    scope: String,
    customer_id: Option<u64>,
    site_id: Option<u64>,
    tickettype_id: Option<u64>,
    team_id: Option<u64>,
    priority_ids: [u64; 4],
    closed_status_id: u64,
    reopen_status_id: u64,
    note_outcome: String,
    /// The current bearer token (a secret), shared by every action of this integration.
    token: Mutex<Option<CachedToken>>,
}

/// Halo's token answer: the bearer token, and how soon to fetch a new one — a little before it
/// expires, and after a day at the latest, whatever `expires_in` says (a number too large to add
/// to a clock panicked the delivery task).
pub fn read_token_answer(answer: &Value) -> Result<(String, Duration), DeliveryError> {
    let value = answer
        .get("access_token")
        .and_then(Value::as_str)
        .filter(|t| !t.is_empty())
        .ok_or_else(|| DeliveryError::Protocol("the token answer has no access_token".into()))?
        .to_owned();
    let lifetime = Duration::from_secs(answer.get("expires_in").and_then(Value::as_u64).unwrap_or(3600))
        .min(MAX_TOKEN_LIFETIME);
    Ok((value, lifetime.saturating_sub(TOKEN_MARGIN.min(lifetime / 10))))
}

/// Halo's answer to a posted ticket: its id (some versions wrap the ticket in an array).
pub fn read_saved_ticket(answer: &Value) -> Result<u64, DeliveryError> {
    let saved = match answer {
        Value::Array(items) => items.first().unwrap_or(&Value::Null),
        other => other,
    };
    saved
        .get("id")
        .and_then(Value::as_u64)
        .filter(|id| *id > 0)
        .ok_or_else(|| DeliveryError::Protocol("the saved ticket has no id".into()))
}

impl HaloPsa {
    /// The cached token, or a new one if there is none or it is about to expire.
    async fn token(&self, http: &Http) -> Result<String, DeliveryError> {
        // Held across the request: concurrent actions wait for one token instead of each
        // fetching their own.
        let mut cached = self.token.lock().await;
        if let Some(token) = cached.as_ref().filter(|t| Instant::now() < t.renew_at) {
            return Ok(token.value.clone());
        }
        let form = url::form_urlencoded::Serializer::new(String::new())
            .append_pair("grant_type", "client_credentials")
            .append_pair("client_id", &self.client_id)
            .append_pair("client_secret", &self.client_secret)
            .append_pair("scope", &self.scope)
            .finish();
        let request = http
            .client()
            .post(self.token_url.clone())
            .header(reqwest::header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .header(reqwest::header::ACCEPT, "application/json")
            .body(form);
        let answer = http.send_sensitive(request).await?.json()?;
        let (value, renew_after) = read_token_answer(&answer)?;
        *cached = Some(CachedToken { value: value.clone(), renew_at: Instant::now() + renew_after });
        Ok(value)
    }

    /// Drops `rejected` from the cache (unless another action already replaced it).
    async fn forget(&self, rejected: &str) {
        let mut cached = self.token.lock().await;
        if cached.as_ref().is_some_and(|t| t.value == rejected) {
            *cached = None;
        }
    }

    /// One API call with the bearer token; a 401 renews the token and repeats the call once.
    async fn call(
        &self,
        http: &Http,
        method: reqwest::Method,
        url: Url,
        body: Option<&Value>,
    ) -> Result<Response, DeliveryError> {
        let request = |token: &str| {
            let mut request = http
                .client()
                .request(method.clone(), url.clone())
                .bearer_auth(token)
                .header(reqwest::header::ACCEPT, "application/json");
            if let Some(body) = body {
                request = request.json(body);
            }
            request
        };
        let token = self.token(http).await?;
        match http.send(request(&token)).await {
            Err(DeliveryError::Status { status: 401, .. }) => {
                self.forget(&token).await;
                let token = self.token(http).await?;
                http.send(request(&token)).await
            }
            other => other,
        }
    }

    fn url(&self, path: &str) -> Result<Url, DeliveryError> {
        self.api.join(path).map_err(|e| DeliveryError::Protocol(format!("cannot build the API address: {e}")))
    }

    fn ticket(&self, id: u64) -> TicketRef {
        let mut link = self.base.join("ticket").unwrap_or_else(|_| self.base.clone());
        link.query_pairs_mut().append_pair("id", &id.to_string());
        TicketRef { external_id: id.to_string(), url: Some(link.to_string()) }
    }

    async fn create(&self, http: &Http, event: &Event, key: &str) -> Result<Outcome, DeliveryError> {
        check_key(key)?;
        let mut ticket = json!({
            "summary": truncate(&event.ticket_title(), SUMMARY_MAX),
            "details": html(&event.ticket_body()),
            "third_party_id_string": key,
            "priority_id": self.priority_ids[usize::from(event.priority().clamp(1, 4)) - 1],
        });
        for (field, value) in [
            ("client_id", self.customer_id),
            ("site_id", self.site_id),
            ("tickettype_id", self.tickettype_id),
            ("team_id", self.team_id),
        ] {
            if let Some(value) = value {
                ticket[field] = json!(value);
            }
        }
        let answer = self
            .call(http, reqwest::Method::POST, self.url("Tickets")?, Some(&json!([ticket])))
            .await?
            .json()?;
        Ok(Outcome::Ticket(self.ticket(read_saved_ticket(&answer)?)))
    }

    async fn find(&self, http: &Http, key: &str) -> Result<Outcome, DeliveryError> {
        check_key(key)?;
        let mut checks = 0;
        for page in 1..=FIND_PAGES {
            let mut url = self.url("Tickets")?;
            url.query_pairs_mut()
                .append_pair("third_party_id_string", key)
                .append_pair("order", "id")
                .append_pair("orderdesc", "true")
                .append_pair("pageinate", "true")
                .append_pair("page_size", &FIND_PAGE_SIZE.to_string())
                .append_pair("page_no", &page.to_string());
            let answer = self.call(http, reqwest::Method::GET, url, None).await?.json()?;
            let rows = answer
                .get("tickets")
                .and_then(Value::as_array)
                .ok_or_else(|| DeliveryError::Protocol("the ticket list has no tickets".into()))?;
            for row in rows {
                let Some(id) = row.get("id").and_then(Value::as_u64) else { continue };
                let reference = match row.get("third_party_id_string") {
                    Some(reference) => reference.clone(),
                    None if row
                        .get("summary")
                        .and_then(Value::as_str)
                        .is_some_and(|s| !s.starts_with(OUR_SUMMARY)) =>
                    {
                        continue;
                    }
                    // The list left the column out: the ticket itself has it.
                    None if checks < FIND_CHECKS => {
                        checks += 1;
                        match self.fetch(http, id).await {
                            Ok(ticket) => ticket.get("third_party_id_string").cloned().unwrap_or(Value::Null),
                            // Deleted since it was listed.
                            Err(DeliveryError::TicketGone(_)) => continue,
                            Err(e) => return Err(e),
                        }
                    }
                    None => {
                        tracing::warn!(
                            key,
                            "too many tickets to check for the problem key; taking it as not found"
                        );
                        return Ok(Outcome::NotFound);
                    }
                };
                if reference.as_str() == Some(key) {
                    return Ok(Outcome::Ticket(self.ticket(id)));
                }
            }
            if rows.len() < FIND_PAGE_SIZE {
                break;
            }
        }
        Ok(Outcome::NotFound)
    }

    /// `GET /api/Tickets/{id}`: the whole ticket, or `TicketGone`.
    async fn fetch(&self, http: &Http, id: u64) -> Result<Value, DeliveryError> {
        let url = self.url(&format!("Tickets/{id}"))?;
        gone_on_404(self.call(http, reqwest::Method::GET, url, None).await, &id.to_string())?.json()
    }

    /// Whether the ticket has the closed status now (a person may have closed or reopened it).
    async fn is_closed(&self, http: &Http, id: u64) -> Result<bool, DeliveryError> {
        let ticket = self.fetch(http, id).await?;
        let status = ticket
            .get("status_id")
            .and_then(Value::as_u64)
            .ok_or_else(|| DeliveryError::Protocol(format!("ticket {id} has no status_id")))?;
        Ok(status == self.closed_status_id)
    }

    async fn add_note(&self, http: &Http, id: u64, event: &Event) -> Result<(), DeliveryError> {
        let action = json!([{
            "ticket_id": id,
            "outcome": self.note_outcome,
            "note_html": html(&event.note_text()),
            "hiddenfromuser": true,
        }]);
        match self.call(http, reqwest::Method::POST, self.url("Actions")?, Some(&action)).await {
            // Halo refuses an action for a missing ticket; the ticket itself says if it is gone.
            Err(e @ DeliveryError::Status { status: 400 | 404, .. }) => {
                self.fetch(http, id).await?;
                Err(e)
            }
            other => other.map(drop),
        }
    }

    async fn set_status(&self, http: &Http, id: u64, status_id: u64) -> Result<(), DeliveryError> {
        let update = json!([{ "id": id, "status_id": status_id }]);
        self.call(http, reqwest::Method::POST, self.url("Tickets")?, Some(&update)).await?;
        Ok(())
    }
}

#[async_trait]
impl Connector for HaloPsa {
    fn kind(&self) -> IntegrationKind {
        IntegrationKind::Halopsa
    }

    fn destinations(&self) -> Vec<Url> {
        let mut auth = self.token_url.clone();
        auth.set_query(None);
        vec![self.api.clone(), auth]
    }

    async fn perform(&self, http: &Http, action: Action<'_>) -> Result<Outcome, DeliveryError> {
        match action {
            Action::Send { .. } => Ok(Outcome::Done),
            Action::Create { event, key } => self.create(http, event, key).await,
            Action::Find { key, .. } => self.find(http, key).await,
            Action::Note { event, ticket } => {
                self.add_note(http, ticket_id(ticket, TICKET_ID)?, event).await?;
                Ok(Outcome::Done)
            }
            Action::Close { event, ticket } => {
                let id = ticket_id(ticket, TICKET_ID)?;
                if !self.is_closed(http, id).await? {
                    self.set_status(http, id, self.closed_status_id).await?;
                }
                self.add_note(http, id, event).await?;
                Ok(Outcome::Done)
            }
            Action::Reopen { event, ticket, .. } => {
                let id = ticket_id(ticket, TICKET_ID)?;
                if self.is_closed(http, id).await? {
                    self.set_status(http, id, self.reopen_status_id).await?;
                }
                self.add_note(http, id, event).await?;
                Ok(Outcome::Done)
            }
        }
    }
}

/// Halo keeps ticket details and notes as HTML: escape the text and keep its line breaks.
fn html(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 16);
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\n' => out.push_str("<br>"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_answer_is_renewed_before_it_expires_and_within_a_day() {
        let read = |answer: Value| read_token_answer(&answer);
        assert_eq!(
            read(json!({"access_token": "t", "expires_in": 3600})),
            Ok(("t".into(), Duration::from_secs(3540)))
        );
        assert_eq!(
            read(json!({"access_token": "t", "expires_in": 300})),
            Ok(("t".into(), Duration::from_secs(270)))
        );
        // `Instant::now() + expires_in` overflowed and panicked the delivery task.
        let (_, renew_after) = read(json!({"access_token": "t", "expires_in": u64::MAX})).expect("a token");
        assert_eq!(renew_after, MAX_TOKEN_LIFETIME - TOKEN_MARGIN);
        assert!(Instant::now().checked_add(renew_after).is_some());
        assert!(read(json!({"access_token": "", "expires_in": 10})).is_err());
        assert!(read(Value::Null).is_err());
    }

    #[test]
    fn a_saved_ticket_answer_gives_its_id() {
        assert_eq!(read_saved_ticket(&json!({"id": 7})), Ok(7));
        assert_eq!(read_saved_ticket(&json!([{"id": 7}])), Ok(7));
        assert!(read_saved_ticket(&json!([])).is_err());
        assert!(read_saved_ticket(&json!({"id": 0})).is_err());
    }

    #[test]
    fn addresses_follow_the_halo_layout() {
        let mut errors = Vec::new();
        let base = web_root(&Url::parse("https://contoso.halopsa.com/api").unwrap(), &mut errors).unwrap();
        assert_eq!(base.as_str(), "https://contoso.halopsa.com/");
        let token = token_url(&base, None, Some("contoso"), &mut errors).unwrap();
        assert_eq!(token.as_str(), "https://contoso.halopsa.com/auth/token?tenant=contoso");
        let custom = token_url(&base, Some("https://auth.halopsa.com/auth/"), None, &mut errors).unwrap();
        assert_eq!(custom.as_str(), "https://auth.halopsa.com/auth/token");
        assert!(errors.is_empty(), "{errors:?}");
    }

    #[test]
    fn text_becomes_escaped_html() {
        assert_eq!(html("a < b & c\nnext"), "a &lt; b &amp; c<br>next");
    }
}
