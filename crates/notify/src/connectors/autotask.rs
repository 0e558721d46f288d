//! Autotask (Datto) PSA REST API v1.0: one ticket per problem.
//!
//! - **Create**: `POST {zone}/ATServicesRest/V1.0/Tickets` with the company, queue, status
//!   "new", the mapped priority, the ticket title (`title`), the ticket body (`description`,
//!   cut to Autotask's 8,000 characters) and the problem key in `externalID`, a queryable text
//!   field of the ticket (50 characters; our keys have at most 40). Autotask answers
//!   `{"itemId": <id>}`.
//! - **Find**: `POST …/Tickets/query` with `{"filter": [{"op": "eq", "field": "externalID",
//!   "value": "<key>"}]}`; the answer's `items` are the tickets.
//! - **Note**: `POST …/Tickets/{id}/Notes` (the TicketNotes child collection) with title,
//!   description, note type and publish setting.
//! - **Close**: `GET …/Tickets/{id}`; unless a person completed it already, `PATCH …/Tickets`
//!   with `{"id", "status": <complete>}`; then a note.
//! - **Reopen**: `GET …/Tickets/{id}`; if it is complete, `PATCH …/Tickets` with the reopen
//!   status (Autotask reopens a completed ticket when it gets an open status); then a note
//!   (`Outcome::Done`). An open ticket keeps its status (In Progress, Waiting Customer …).
//!
//! The status is changed before the note: a retry after a lost answer sees the new status and
//! adds the note, instead of adding the note twice.
//!
//! A ticket is gone ([`DeliveryError::TicketGone`]) when `GET …/Tickets/{id}` answers no item
//! (Autotask answers `200 {"item": null}` for an id it does not have) or 404; a 404 on its notes
//! is checked that way.
//!
//! Authentication is three headers on every call: `UserName` and `Secret` of an API-only user
//! and `ApiIntegrationCode` (the tracking identifier of the integration).
//!
//! Autotask has a 10,000 requests/hour budget per database shared by every integration of the
//! MSP (see [`IntegrationKind::default_hourly_budget`]); one delivery here is one to three calls.
//!
//! Settings (picklist values are per Autotask database: read them from
//! `GET /Tickets/entityInformation/fields` and `GET /TicketNotes/entityInformation/fields`):
//! - `url`: the zone's API host, e.g. `https://webservices5.autotask.net` (`ZoneInformation`
//!   tells which); `/ATServicesRest/V1.0` is appended unless the URL already names it.
//! - `config.company_id` (required): the Autotask company (account) tickets belong to.
//! - `config.queue_id` (required): the Service Desk queue tickets land in.
//! - `config.new_status` (default 1 "New"), `config.complete_status` (default 5 "Complete"),
//!   `config.reopen_status` (default 1): status picklist values.
//! - `config.priority_ids` (default Autotask's stock picklist
//!   `{"critical": 4, "high": 1, "medium": 2, "low": 3}`): priority picklist values.
//! - `config.ticket_type`, `config.source`, `config.issue_type`, `config.sub_issue_type`
//!   (optional picklist values; the queue's or database's defaults otherwise).
//! - `config.note_type` (default 1) and `config.note_publish` (default 1, "All Autotask
//!   Users"): the TicketNotes picklists.
//! - `config.web_url` (optional): the web UI host for ticket links; by default derived from a
//!   `webservicesN.autotask.net` zone as `wwN.autotask.net`.
//! - `credentials.username`, `credentials.secret`, `credentials.integration_code`.

use async_trait::async_trait;
use serde_json::{Value, json};
use url::Url;

use super::{Fields, base_url_ok, check_key, gone_on_404, priority_ids, ticket_id};
use crate::connector::{
    Action, ConfigError, Connector, ConnectorSettings, DeliveryError, Http, IntegrationKind, Outcome,
    TicketRef,
};
use crate::event::{Event, truncate};

const TITLE_MAX: usize = 255;
const DESCRIPTION_MAX: usize = 8_000;
const NOTE_TITLE_MAX: usize = 250;
const NOTE_DESCRIPTION_MAX: usize = 32_000;
/// Autotask's stock priority picklist: High 1, Medium 2, Low 3, Critical 4.
const DEFAULT_PRIORITIES: [u64; 4] = [4, 1, 2, 3];
/// What our ticket references are, for [`ticket_id`].
const TICKET_ID: &str = "an Autotask ticket id";

pub fn build(settings: &ConnectorSettings) -> Result<Box<dyn Connector>, Vec<ConfigError>> {
    let mut errors = Vec::new();
    let mut config = Fields::new("config", &settings.config, &mut errors);
    let company_id = config.required_u64("company_id");
    let queue_id = config.required_u64("queue_id");
    let new_status = config.u64_or("new_status", 1);
    let complete_status = config.u64_or("complete_status", 5);
    let reopen_status = config.u64_or("reopen_status", 1);
    let ticket_type = config.optional_u64("ticket_type");
    let source = config.optional_u64("source");
    let issue_type = config.optional_u64("issue_type");
    let sub_issue_type = config.optional_u64("sub_issue_type");
    let note_type = config.u64_or("note_type", 1);
    let note_publish = config.u64_or("note_publish", 1);
    let web_url = config.optional_str("web_url");
    let priority_ids = priority_ids(
        &settings.config,
        &mut errors,
        Some(DEFAULT_PRIORITIES),
        "priority value",
        "priority picklist value",
    )
    .unwrap_or(DEFAULT_PRIORITIES);
    let mut credentials = Fields::new("credentials", &settings.credentials, &mut errors);
    let username = credentials.required_str("username");
    let secret = credentials.required_str("secret");
    let integration_code = credentials.required_str("integration_code");
    let api = api_root(&settings.url, &mut errors);
    let web = match web_url.as_deref() {
        Some(u) => match Url::parse(u) {
            Ok(url) => Some(url),
            Err(_) => {
                errors.push(ConfigError::new("config.web_url", "must be an absolute URL"));
                None
            }
        },
        None => default_web_url(&settings.url),
    };
    if !errors.is_empty() {
        return Err(errors);
    }
    let Some(api) = api else {
        return Err(vec![ConfigError::new("url", "must be the Autotask zone's API address")]);
    };
    Ok(Box::new(Autotask {
        api,
        web,
        username,
        secret,
        integration_code,
        company_id,
        queue_id,
        new_status,
        complete_status,
        reopen_status,
        priority_ids,
        ticket_type,
        source,
        issue_type,
        sub_issue_type,
        note_type,
        note_publish,
    }))
}

/// `{zone}/ATServicesRest/V1.0/`, or the URL itself when it already names the REST root.
fn api_root(url: &Url, errors: &mut Vec<ConfigError>) -> Option<Url> {
    if !base_url_ok(
        url,
        errors,
        "must be the Autotask zone's API address (https://…)",
        "must be the zone's API address without query or fragment",
    ) {
        return None;
    }
    let mut root = url.clone();
    let path = root.path().trim_end_matches('/').to_owned();
    let lower = path.to_ascii_lowercase();
    let full = if lower.ends_with("/atservicesrest/v1.0") {
        format!("{path}/")
    } else if lower.ends_with("/atservicesrest") {
        format!("{path}/V1.0/")
    } else {
        format!("{path}/ATServicesRest/V1.0/")
    };
    root.set_path(&full);
    Some(root)
}

/// `webservicesN.autotask.net` → `https://wwN.autotask.net/`; other hosts have no known web UI.
fn default_web_url(api: &Url) -> Option<Url> {
    let host = api.host_str()?;
    let zone = host.strip_prefix("webservices")?.strip_suffix(".autotask.net")?;
    if !zone.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Url::parse(&format!("https://ww{zone}.autotask.net/")).ok()
}

struct Autotask {
    api: Url,
    web: Option<Url>,
    username: String,
    /// A secret.
    secret: String,
    integration_code: String,
    company_id: u64,
    queue_id: u64,
    new_status: u64,
    complete_status: u64,
    reopen_status: u64,
    priority_ids: [u64; 4],
    ticket_type: Option<u64>,
    source: Option<u64>,
    issue_type: Option<u64>,
    sub_issue_type: Option<u64>,
    note_type: u64,
    note_publish: u64,
}

impl Autotask {
    fn url(&self, path: &str) -> Result<Url, DeliveryError> {
        self.api.join(path).map_err(|e| DeliveryError::Protocol(format!("cannot build the API address: {e}")))
    }

    fn request(&self, http: &Http, method: reqwest::Method, url: Url) -> reqwest::RequestBuilder {
        http.client()
            .request(method, url)
            .header("UserName", &self.username)
            .header("Secret", &self.secret)
            .header("ApiIntegrationCode", &self.integration_code)
            .header(reqwest::header::ACCEPT, "application/json")
    }

    /// The ticket, with the Autotask Extend link that opens its detail page.
    fn ticket(&self, id: u64) -> TicketRef {
        let url = self.web.as_ref().and_then(|web| {
            let mut link = web.join("Autotask/AutotaskExtend/ExecuteCommand.aspx").ok()?;
            link.query_pairs_mut()
                .append_pair("Code", "OpenTicketDetail")
                .append_pair("TicketID", &id.to_string());
            Some(link.to_string())
        });
        TicketRef { external_id: id.to_string(), url }
    }

    async fn create(&self, http: &Http, event: &Event, key: &str) -> Result<Outcome, DeliveryError> {
        check_key(key)?;
        let mut body = json!({
            "companyID": self.company_id,
            "queueID": self.queue_id,
            "status": self.new_status,
            "priority": self.priority_ids[usize::from(event.priority().clamp(1, 4)) - 1],
            "title": truncate(&event.ticket_title(), TITLE_MAX),
            "description": truncate(&event.ticket_body(), DESCRIPTION_MAX),
            "externalID": key,
        });
        for (field, value) in [
            ("ticketType", self.ticket_type),
            ("source", self.source),
            ("issueType", self.issue_type),
            ("subIssueType", self.sub_issue_type),
        ] {
            if let Some(value) = value {
                body[field] = json!(value);
            }
        }
        let url = self.url("Tickets")?;
        let answer = http.send(self.request(http, reqwest::Method::POST, url).json(&body)).await?.json()?;
        Ok(Outcome::Ticket(self.ticket(item_id(&answer, "the created ticket")?)))
    }

    async fn find(&self, http: &Http, key: &str) -> Result<Outcome, DeliveryError> {
        check_key(key)?;
        let query = json!({
            "filter": [{ "op": "eq", "field": "externalID", "value": key }],
            "maxRecords": 10,
        });
        let url = self.url("Tickets/query")?;
        let answer = http.send(self.request(http, reqwest::Method::POST, url).json(&query)).await?.json()?;
        let items = answer
            .get("items")
            .and_then(Value::as_array)
            .ok_or_else(|| DeliveryError::Protocol("the ticket query answered no items".into()))?;
        // The newest ticket with the key, should a person have copied it to another one.
        let newest = items.iter().filter_map(|t| t.get("id").and_then(Value::as_u64)).max();
        match newest {
            Some(id) => Ok(Outcome::Ticket(self.ticket(id))),
            None if items.is_empty() => Ok(Outcome::NotFound),
            None => Err(DeliveryError::Protocol("a found ticket has no id".into())),
        }
    }

    async fn add_note(&self, http: &Http, id: u64, event: &Event) -> Result<(), DeliveryError> {
        let body = json!({
            "ticketID": id,
            "title": truncate(&event.headline(), NOTE_TITLE_MAX),
            "description": truncate(&event.note_text(), NOTE_DESCRIPTION_MAX),
            "noteType": self.note_type,
            "publish": self.note_publish,
        });
        let url = self.url(&format!("Tickets/{id}/Notes"))?;
        let answer = match http.send(self.request(http, reqwest::Method::POST, url).json(&body)).await {
            // The parent is missing, or the address is wrong: the ticket itself says which.
            Err(e @ DeliveryError::Status { status: 404, .. }) => {
                self.is_complete(http, id).await?;
                return Err(e);
            }
            other => other?.json()?,
        };
        item_id(&answer, "the created note")?;
        Ok(())
    }

    async fn set_status(&self, http: &Http, id: u64, status: u64) -> Result<(), DeliveryError> {
        let url = self.url("Tickets")?;
        let body = json!({ "id": id, "status": status });
        let answer = http.send(self.request(http, reqwest::Method::PATCH, url).json(&body)).await?.json()?;
        item_id(&answer, "the updated ticket")?;
        Ok(())
    }

    /// Whether the ticket is complete now (a person may have completed or reopened it).
    async fn is_complete(&self, http: &Http, id: u64) -> Result<bool, DeliveryError> {
        let url = self.url(&format!("Tickets/{id}"))?;
        let answer =
            gone_on_404(http.send(self.request(http, reqwest::Method::GET, url)).await, &id.to_string())?
                .json()?;
        match answer.get("item") {
            Some(item) if item.is_object() => Ok(item.get("status").and_then(Value::as_u64)
                == Some(self.complete_status)
                || item.get("completedDate").is_some_and(|d| !d.is_null())),
            Some(Value::Null) => Err(DeliveryError::TicketGone(id.to_string())),
            _ => Err(DeliveryError::Protocol(format!("the answer for ticket {id} has no item"))),
        }
    }
}

/// Autotask's answer to a create or update: `{"itemId": <id>}`.
pub fn item_id(answer: &Value, what: &str) -> Result<u64, DeliveryError> {
    answer
        .get("itemId")
        .and_then(Value::as_u64)
        .ok_or_else(|| DeliveryError::Protocol(format!("{what} has no itemId")))
}

#[async_trait]
impl Connector for Autotask {
    fn kind(&self) -> IntegrationKind {
        IntegrationKind::Autotask
    }

    fn destinations(&self) -> Vec<Url> {
        vec![self.api.clone()]
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
                if !self.is_complete(http, id).await? {
                    self.set_status(http, id, self.complete_status).await?;
                }
                self.add_note(http, id, event).await?;
                Ok(Outcome::Done)
            }
            Action::Reopen { event, ticket, .. } => {
                let id = ticket_id(ticket, TICKET_ID)?;
                if self.is_complete(http, id).await? {
                    self.set_status(http, id, self.reopen_status).await?;
                }
                self.add_note(http, id, event).await?;
                Ok(Outcome::Done)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rest_root_is_appended_once() {
        let mut errors = Vec::new();
        for (given, root) in [
            ("https://webservices5.autotask.net", "https://webservices5.autotask.net/ATServicesRest/V1.0/"),
            (
                "https://webservices5.autotask.net/atservicesrest",
                "https://webservices5.autotask.net/atservicesrest/V1.0/",
            ),
            (
                "https://webservices5.autotask.net/ATServicesRest/V1.0/",
                "https://webservices5.autotask.net/ATServicesRest/V1.0/",
            ),
        ] {
            assert_eq!(api_root(&Url::parse(given).unwrap(), &mut errors).unwrap().as_str(), root);
        }
        assert!(errors.is_empty());
    }

    #[test]
    fn zone_hosts_map_to_their_web_ui() {
        let web = default_web_url(&Url::parse("https://webservices14.autotask.net/").unwrap()).unwrap();
        assert_eq!(web.as_str(), "https://ww14.autotask.net/");
        assert!(default_web_url(&Url::parse("http://127.0.0.1:8080/").unwrap()).is_none());
    }
}
