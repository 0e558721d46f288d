//! ConnectWise PSA (Manage) REST API 3.0: one service ticket per problem.
//!
//! - **Create**: `POST {api}/service/tickets` on the configured board and company, with the
//!   ticket title as `summary` (cut to ConnectWise's 100 characters), the ticket body as
//!   `initialDescription` (ConnectWise turns it into the first "Detail Description" note) and
//!   the problem key in `externalXRef`, the ticket's external cross-reference field, which
//!   `conditions` can search.
//! - **Find**: `GET {api}/service/tickets?conditions=externalXRef="<key>"&orderBy=id desc`.
//! - **Note**: `POST {api}/service/tickets/{id}/notes` with `internalAnalysisFlag` (an internal
//!   note: the customer's contact is not emailed).
//! - **Close**: `GET {api}/service/tickets/{id}`; unless its `closedFlag` says a person closed it
//!   already (their closed status is kept), a JSON Patch of `status` to the closed status; then a
//!   note with `resolutionFlag` (it shows as the ticket's resolution).
//! - **Reopen**: `GET` the ticket; if it is closed (`closedFlag`), a JSON Patch of `status` to the
//!   reopen status (ConnectWise reopens a closed ticket by giving it an open status); then an
//!   internal note (`Outcome::Done`). An open ticket keeps its status, whichever it is.
//!
//! The status is changed before the note is added: if the answer to the status change is lost,
//! the retry sees the new status and adds the note, instead of adding the note twice.
//!
//! A `404` for the stored ticket (`/service/tickets/{id}`, its notes) is
//! [`DeliveryError::TicketGone`]: a person deleted or merged it.
//!
//! Authentication is HTTP Basic with `<login company>+<public key>` as user and the private key
//! as password, plus the `clientId` header every ConnectWise API call needs.
//!
//! Settings (statuses, priorities and ticket types belong to each board, so they are the MSP's):
//! - `url`: the API host, e.g. `https://api-na.myconnectwise.net` (the codebase and
//!   `/apis/3.0` are appended), or a full API root ending in `/apis/3.0`.
//! - `config.login_company` (required): the company id typed at ConnectWise login.
//! - `config.board_id` (required): the service board tickets go to.
//! - `config.company_id` or `config.company_identifier` (one required): the ConnectWise company
//!   (by record id or by its identifier, e.g. `Contoso`) tickets are filed under.
//! - `config.closed_status` (default `>Closed`), `config.reopen_status` (default `New`): status
//!   names on that board; `config.closed_status_id` / `config.reopen_status_id` take precedence
//!   when set.
//! - `config.priority_ids` (optional): `{"critical": id, "high": id, "medium": id, "low": id}`,
//!   the board's priority records for our severities; without it the board's default applies.
//! - `config.type_id` (optional): the service type on the board.
//! - `config.codebase` (default `v4_6_release`): the codebase in the API path.
//! - `config.web_url` (optional): where people open Manage, for ticket links; by default the API
//!   host without its `api-` prefix (`api-na.myconnectwise.net` → `na.myconnectwise.net`).
//! - `credentials.public_key`, `credentials.private_key`: the API member's key pair.
//! - `credentials.client_id`: the integration's clientId from developer.connectwise.com.

use async_trait::async_trait;
use base64::Engine as _;
use serde_json::{Value, json};
use url::Url;

use super::{Fields, base_url_ok, check_key, gone_on_404, priority_ids, ticket_id};
use crate::connector::{
    Action, ConfigError, Connector, ConnectorSettings, DeliveryError, Http, IntegrationKind, Outcome,
    TicketRef,
};
use crate::event::{Event, truncate};

/// ConnectWise rejects longer summaries (`MaxLengthField`).
const SUMMARY_MAX: usize = 100;
/// ConnectWise ticket numbers are whole numbers; anything else was not stored by us.
const TICKET_ID: &str = "a ConnectWise ticket number";

pub fn build(settings: &ConnectorSettings) -> Result<Box<dyn Connector>, Vec<ConfigError>> {
    let mut errors = Vec::new();
    let mut config = Fields::new("config", &settings.config, &mut errors);
    let login_company = config.required_str("login_company");
    let board_id = config.required_u64("board_id");
    let company_id = config.optional_u64("company_id");
    let company_identifier = config.optional_str("company_identifier");
    let closed_status = status_setting(&mut config, "closed_status", ">Closed");
    let reopen_status = status_setting(&mut config, "reopen_status", "New");
    let type_id = config.optional_u64("type_id");
    let codebase = config.str_or("codebase", "v4_6_release");
    let web_url = config.optional_str("web_url");
    let company = match (company_id, company_identifier) {
        (Some(id), _) => json!({ "id": id }),
        (None, Some(identifier)) => json!({ "identifier": identifier }),
        (None, None) => {
            if !config.errors.iter().any(|e| e.field == "config.company_id") {
                config.errors.push(ConfigError::new(
                    "config.company_id",
                    "is required (or config.company_identifier): the company tickets are filed under",
                ));
            }
            Value::Null
        }
    };
    let priority_ids = priority_ids(&settings.config, &mut errors, None, "priority id", "priority record id");
    let mut credentials = Fields::new("credentials", &settings.credentials, &mut errors);
    let public_key = credentials.required_str("public_key");
    let private_key = credentials.required_str("private_key");
    let client_id = credentials.required_str("client_id");

    let api = api_root(&settings.url, &codebase, &mut errors);
    let web = web_url
        .as_deref()
        .map(|u| match Url::parse(u) {
            Ok(url) => Some(url),
            Err(_) => {
                errors.push(ConfigError::new("config.web_url", "must be an absolute URL"));
                None
            }
        })
        .unwrap_or_else(|| Some(default_web_url(&settings.url)));
    if !errors.is_empty() {
        return Err(errors);
    }
    let (Some(api), Some(web)) = (api, web) else {
        return Err(vec![ConfigError::new("url", "must be the ConnectWise API address")]);
    };
    let credentials = format!("{login_company}+{public_key}:{private_key}");
    Ok(Box::new(ConnectWise {
        authorization: format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(credentials)),
        client_id,
        ticket_link: ticket_link(&web, &codebase, &login_company),
        api,
        board_id,
        company,
        closed_status,
        reopen_status,
        priority_ids,
        type_id,
    }))
}

/// A status as the MSP configured it: by id when given, otherwise by its name on the board.
fn status_setting(config: &mut Fields<'_>, name: &str, default: &str) -> Value {
    match config.optional_u64(&format!("{name}_id")) {
        Some(id) => json!({ "id": id }),
        None => json!({ "name": config.str_or(name, default) }),
    }
}

/// `{url}/{codebase}/apis/3.0/`, or `url` itself when it already is an API root.
fn api_root(url: &Url, codebase: &str, errors: &mut Vec<ConfigError>) -> Option<Url> {
    if !base_url_ok(
        url,
        errors,
        "must be the ConnectWise API address (https://…)",
        "must be the ConnectWise API address without query or fragment",
    ) {
        return None;
    }
    let mut root = url.clone();
    let path = root.path().trim_end_matches('/').to_owned();
    if path.to_ascii_lowercase().ends_with("/apis/3.0") {
        root.set_path(&format!("{path}/"));
        return Some(root);
    }
    if codebase.contains(['/', '?', '#']) || codebase.is_empty() {
        errors
            .push(ConfigError::new("config.codebase", "must be a single path segment such as v4_6_release"));
        return None;
    }
    root.set_path(&format!("{path}/{codebase}/apis/3.0/"));
    Some(root)
}

/// Where people open Manage: the API host without its `api-` prefix.
fn default_web_url(api: &Url) -> Url {
    let mut web = api.clone();
    web.set_path("/");
    web.set_query(None);
    if let Some(host) = api.host_str().and_then(|h| h.strip_prefix("api-")) {
        let host = host.to_owned();
        // Cannot fail: the host was valid with the prefix.
        let _ = web.set_host(Some(&host));
    }
    web
}

/// The ticket page of Manage's web client, with `{id}` for the ticket number.
fn ticket_link(web: &Url, codebase: &str, login_company: &str) -> String {
    let mut link = web.clone();
    let base = link.path().trim_end_matches('/').to_owned();
    link.set_path(&format!("{base}/{codebase}/services/system_io/Service/fv_sr100_request.rws"));
    link.query_pairs_mut().append_pair("service_recid", "ID").append_pair("companyName", login_company);
    link.to_string().replace("service_recid=ID", "service_recid={id}")
}

struct ConnectWise {
    api: Url,
    /// `Basic base64(company+public:private)`: a secret.
    authorization: String,
    /// The integration's clientId: treated as a secret by ConnectWise.
    client_id: String,
    ticket_link: String,
    board_id: u64,
    company: Value,
    closed_status: Value,
    reopen_status: Value,
    priority_ids: Option<[u64; 4]>,
    type_id: Option<u64>,
}

impl ConnectWise {
    fn url(&self, path: &str) -> Result<Url, DeliveryError> {
        self.api.join(path).map_err(|e| DeliveryError::Protocol(format!("cannot build the API address: {e}")))
    }

    fn request(&self, http: &Http, method: reqwest::Method, url: Url) -> reqwest::RequestBuilder {
        http.client()
            .request(method, url)
            .header(reqwest::header::AUTHORIZATION, &self.authorization)
            .header("clientId", &self.client_id)
            .header(reqwest::header::ACCEPT, "application/json")
    }

    fn ticket(&self, id: u64) -> TicketRef {
        TicketRef {
            external_id: id.to_string(),
            url: Some(self.ticket_link.replace("{id}", &id.to_string())),
        }
    }

    async fn create(&self, http: &Http, event: &Event, key: &str) -> Result<Outcome, DeliveryError> {
        check_key(key)?;
        let mut body = json!({
            "summary": truncate(&event.ticket_title(), SUMMARY_MAX),
            "initialDescription": event.ticket_body(),
            "board": { "id": self.board_id },
            "company": self.company,
            "externalXRef": key,
        });
        if let Some(ids) = self.priority_ids {
            body["priority"] = json!({ "id": ids[usize::from(event.priority().clamp(1, 4)) - 1] });
        }
        if let Some(type_id) = self.type_id {
            body["type"] = json!({ "id": type_id });
        }
        let url = self.url("service/tickets")?;
        let answer = http.send(self.request(http, reqwest::Method::POST, url).json(&body)).await?.json()?;
        let id = answer
            .get("id")
            .and_then(Value::as_u64)
            .ok_or_else(|| DeliveryError::Protocol("the created ticket has no id".into()))?;
        Ok(Outcome::Ticket(self.ticket(id)))
    }

    async fn find(&self, http: &Http, key: &str) -> Result<Outcome, DeliveryError> {
        check_key(key)?;
        let mut url = self.url("service/tickets")?;
        url.query_pairs_mut()
            .append_pair("conditions", &format!("externalXRef=\"{key}\""))
            .append_pair("orderBy", "id desc")
            .append_pair("pageSize", "1");
        let answer = http.send(self.request(http, reqwest::Method::GET, url)).await?.json()?;
        let tickets = answer
            .as_array()
            .ok_or_else(|| DeliveryError::Protocol("the ticket search did not answer a list".into()))?;
        match tickets.first() {
            None => Ok(Outcome::NotFound),
            Some(ticket) => {
                let id = ticket
                    .get("id")
                    .and_then(Value::as_u64)
                    .ok_or_else(|| DeliveryError::Protocol("a found ticket has no id".into()))?;
                Ok(Outcome::Ticket(self.ticket(id)))
            }
        }
    }

    async fn add_note(&self, http: &Http, id: u64, text: String, flag: &str) -> Result<(), DeliveryError> {
        let mut body = json!({ "text": text });
        body[flag] = Value::Bool(true);
        let url = self.url(&format!("service/tickets/{id}/notes"))?;
        gone_on_404(
            http.send(self.request(http, reqwest::Method::POST, url).json(&body)).await,
            &id.to_string(),
        )?;
        Ok(())
    }

    async fn set_status(&self, http: &Http, id: u64, status: &Value) -> Result<(), DeliveryError> {
        let patch = json!([{ "op": "replace", "path": "status", "value": status }]);
        let url = self.url(&format!("service/tickets/{id}"))?;
        gone_on_404(
            http.send(self.request(http, reqwest::Method::PATCH, url).json(&patch)).await,
            &id.to_string(),
        )?;
        Ok(())
    }

    /// Whether the ticket is closed now (a person may have closed or reopened it).
    async fn is_closed(&self, http: &Http, id: u64) -> Result<bool, DeliveryError> {
        let url = self.url(&format!("service/tickets/{id}"))?;
        let answer =
            gone_on_404(http.send(self.request(http, reqwest::Method::GET, url)).await, &id.to_string())?
                .json()?;
        answer
            .get("closedFlag")
            .and_then(Value::as_bool)
            .ok_or_else(|| DeliveryError::Protocol(format!("ticket {id} has no closedFlag")))
    }
}

#[async_trait]
impl Connector for ConnectWise {
    fn kind(&self) -> IntegrationKind {
        IntegrationKind::Connectwise
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
                self.add_note(http, ticket_id(ticket, TICKET_ID)?, event.note_text(), "internalAnalysisFlag")
                    .await?;
                Ok(Outcome::Done)
            }
            Action::Close { event, ticket } => {
                let id = ticket_id(ticket, TICKET_ID)?;
                if !self.is_closed(http, id).await? {
                    self.set_status(http, id, &self.closed_status).await?;
                }
                self.add_note(http, id, event.note_text(), "resolutionFlag").await?;
                Ok(Outcome::Done)
            }
            Action::Reopen { event, ticket, .. } => {
                let id = ticket_id(ticket, TICKET_ID)?;
                if self.is_closed(http, id).await? {
                    self.set_status(http, id, &self.reopen_status).await?;
                }
                self.add_note(http, id, event.note_text(), "internalAnalysisFlag").await?;
                Ok(Outcome::Done)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_root_appends_the_codebase_unless_given() {
        let mut errors = Vec::new();
        let root =
            api_root(&Url::parse("https://api-na.myconnectwise.net").unwrap(), "v4_6_release", &mut errors);
        assert_eq!(root.unwrap().as_str(), "https://api-na.myconnectwise.net/v4_6_release/apis/3.0/");
        let given = Url::parse("https://cw.msp.example/v2025_1/apis/3.0").unwrap();
        assert_eq!(
            api_root(&given, "v4_6_release", &mut errors).unwrap().as_str(),
            "https://cw.msp.example/v2025_1/apis/3.0/"
        );
        assert!(errors.is_empty(), "{errors:?}");
    }

    #[test]
    fn ticket_links_point_at_the_web_host() {
        let web = default_web_url(&Url::parse("https://api-na.myconnectwise.net/").unwrap());
        let link = ticket_link(&web, "v4_6_release", "contoso msp");
        assert_eq!(
            link.replace("{id}", "42"),
            "https://na.myconnectwise.net/v4_6_release/services/system_io/Service/fv_sr100_request.rws?service_recid=42&companyName=contoso+msp"
        );
    }
}
