//! ServiceNow (Table API): one incident per problem.
//!
//! - **Create**: `POST /api/now/table/incident` with `short_description` (the ticket title, cut
//!   to the field's 160 characters), `description` (the ticket body), `correlation_id` (the
//!   problem key: the field ServiceNow keeps for an external system's id, and queryable),
//!   `correlation_display`, `urgency` and `impact` from the finding's severity (critical 1/1 →
//!   priority 1, high 1/2 → 2, medium 2/2 → 3, low 2/3 → 4, info 3/3 → 5 with the default
//!   priority matrix) and the optional `assignment_group`, `caller_id` and `category`.
//! - **Find**: `GET /api/now/table/incident?sysparm_query=correlation_id=<key>^ORDERBYDESCsys_created_on
//!   &sysparm_limit=1`.
//! - **Note**: `PATCH /api/now/table/incident/{sys_id}` with `work_notes` (journal field: each
//!   write adds an entry). A `Closed` (7) or `Canceled` (8) incident refuses every write to a
//!   non-admin (403, ACL); the note is then dropped (`Outcome::Done`): a closed incident is a
//!   finished record, and an acknowledgement or another tenant's recovery is no reason to open a
//!   child incident. The next problem event makes that child (see Reopen).
//! - **Close**: reads the incident first. An open one gets one `PATCH` with `state` =
//!   `resolved_state`, `close_code`, `close_notes` and a work note; one already resolved (a person,
//!   or an earlier attempt, did) only gets the work note, keeping its resolution; a closed or
//!   canceled one is left alone (`Outcome::Done`).
//! - **Reopen**: reads the incident first. A resolved one (6) gets `state` = `reopen_state` and
//!   a work note (`Outcome::Done`); an open one (New, In Progress, On Hold …) only the work note,
//!   keeping its state. A closed or canceled one cannot be reopened: a new incident is created
//!   with `parent_incident` pointing to the old one (`Outcome::Ticket`); a retry finds that
//!   incident by its correlation id instead of creating another.
//!
//! A `404` for the stored sys_id ("No Record found") is [`DeliveryError::TicketGone`].
//!
//! Settings:
//! - `url`: the instance, `https://<instance>.service-now.com`.
//! - `config.username`, `credentials.password`: a user with the `itil` role (Basic auth).
//!   Integration users should be "Web service access only".
//! - `config.assignment_group`, `config.caller_id`, `config.category` (optional): sys_ids (or
//!   the display values the instance accepts) of the group, caller and category of new incidents.
//! - `config.resolved_state` (default 6 Resolved), `config.reopen_state` (default 2 In Progress;
//!   some instances use 1 New): the incident `state` choice values.
//! - `config.close_code` (default `Solution provided`): a value of the instance's `close_code`
//!   choice list ("Resolution code"), which the data policy makes mandatory when resolving.
//!   Releases before Utah offer `Solved (Permanently)` and the like instead.
//!
//! Closed incidents can only be changed by admins, which is why a reopen after the instance's
//! auto-close makes a child incident, and a note to a closed incident is dropped, rather than
//! asking the integration user for admin rights.

use async_trait::async_trait;
use serde_json::{Map, Value, json};
use url::Url;

use super::{Fields, check_base_url, endpoint, gone_on_404};
use crate::connector::{
    Action, ConfigError, Connector, ConnectorSettings, DeliveryError, Http, IntegrationKind, Outcome,
    TicketRef,
};
use crate::event::{Event, truncate};

/// States from which an incident cannot be reopened, nor written to: Closed, Canceled.
const FINAL_STATES: [&str; 2] = ["7", "8"];
/// The out-of-box Resolved state.
const RESOLVED: &str = "6";

pub fn build(settings: &ConnectorSettings) -> Result<Box<dyn Connector>, Vec<ConfigError>> {
    let mut errors = Vec::new();
    let mut config = Fields::new("config", &settings.config, &mut errors);
    let username = config.required_str("username");
    let assignment_group = config.optional_str("assignment_group");
    let caller_id = config.optional_str("caller_id");
    let category = config.optional_str("category");
    let resolved_state = config.u64_or("resolved_state", 6);
    let reopen_state = config.u64_or("reopen_state", 2);
    let close_code = config.str_or("close_code", "Solution provided");
    let mut credentials = Fields::new("credentials", &settings.credentials, &mut errors);
    let password = credentials.required_str("password");
    check_base_url(&settings.url, &mut errors);
    if !errors.is_empty() {
        return Err(errors);
    }
    Ok(Box::new(ServiceNow {
        base: settings.url.clone(),
        username,
        password,
        assignment_group,
        caller_id,
        category,
        resolved_state,
        reopen_state,
        close_code,
    }))
}

struct ServiceNow {
    base: Url,
    username: String,
    password: String,
    assignment_group: Option<String>,
    caller_id: Option<String>,
    category: Option<String>,
    resolved_state: u64,
    reopen_state: u64,
    close_code: String,
}

impl std::fmt::Debug for ServiceNow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServiceNow")
            .field("base", &self.base.as_str())
            .field("username", &self.username)
            .finish_non_exhaustive()
    }
}

/// Urgency and impact (1 high … 3 low) for a finding severity.
fn urgency_impact(event: &Event) -> (u8, u8) {
    match event.data.finding.as_ref().map(|f| f.severity.as_str()) {
        Some("critical") => (1, 1),
        Some("high") => (1, 2),
        Some("medium") => (2, 2),
        Some("low") => (2, 3),
        _ => (3, 3),
    }
}

/// The incident an answer describes: its sys_id and state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Incident {
    pub sys_id: String,
    pub state: String,
}

pub fn incident_of(record: &Value) -> Option<Incident> {
    let sys_id = record.get("sys_id")?.as_str().filter(|s| !s.is_empty())?.to_owned();
    let state = match record.get("state") {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Number(n)) => n.to_string(),
        _ => String::new(),
    };
    Some(Incident { sys_id, state })
}

impl ServiceNow {
    fn table_url(&self, sys_id: Option<&str>) -> Url {
        let mut segments = vec!["api", "now", "table", "incident"];
        segments.extend(sys_id);
        let mut url = endpoint(&self.base, &segments);
        url.query_pairs_mut()
            .append_pair("sysparm_fields", "sys_id,number,state")
            .append_pair("sysparm_exclude_reference_link", "true");
        url
    }

    fn request(&self, http: &Http, method: reqwest::Method, url: Url) -> reqwest::RequestBuilder {
        http.client()
            .request(method, url)
            .basic_auth(&self.username, Some(&self.password))
            .header(reqwest::header::ACCEPT, "application/json")
    }

    fn ticket(&self, sys_id: &str) -> TicketRef {
        let mut url = endpoint(&self.base, &["nav_to.do"]);
        url.query_pairs_mut().append_pair("uri", &format!("incident.do?sys_id={sys_id}"));
        TicketRef { external_id: sys_id.to_owned(), url: Some(url.to_string()) }
    }

    /// The `result` record of an answer.
    async fn send_for_record(
        &self,
        http: &Http,
        request: reqwest::RequestBuilder,
    ) -> Result<Incident, DeliveryError> {
        let answer = http.send(request).await?.json()?;
        answer
            .get("result")
            .and_then(incident_of)
            .ok_or_else(|| DeliveryError::Protocol("ServiceNow's answer has no incident sys_id".into()))
    }

    async fn create(
        &self,
        http: &Http,
        event: &Event,
        key: &str,
        parent: Option<&str>,
    ) -> Result<TicketRef, DeliveryError> {
        let (urgency, impact) = urgency_impact(event);
        let mut fields = Map::new();
        fields.insert("short_description".into(), json!(truncate(&event.ticket_title(), 160)));
        fields.insert("description".into(), json!(event.ticket_body()));
        fields.insert("correlation_id".into(), json!(key));
        fields.insert("correlation_display".into(), json!("Writeback Doctor"));
        fields.insert("urgency".into(), json!(urgency.to_string()));
        fields.insert("impact".into(), json!(impact.to_string()));
        for (name, value) in [
            ("assignment_group", &self.assignment_group),
            ("caller_id", &self.caller_id),
            ("category", &self.category),
        ] {
            if let Some(value) = value {
                fields.insert(name.into(), json!(value));
            }
        }
        if let Some(parent) = parent {
            fields.insert("parent_incident".into(), json!(parent));
        }
        let request =
            self.request(http, reqwest::Method::POST, self.table_url(None)).json(&Value::Object(fields));
        let incident = self.send_for_record(http, request).await?;
        Ok(self.ticket(&incident.sys_id))
    }

    /// The newest incident with correlation id `key`.
    async fn find(&self, http: &Http, key: &str) -> Result<Option<Incident>, DeliveryError> {
        // `^` and `=` would change the encoded query; keys are `[a-z0-9-]`.
        if !key.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') {
            return Err(DeliveryError::Protocol(format!("the problem key {key:?} cannot be queried")));
        }
        let mut url = endpoint(&self.base, &["api", "now", "table", "incident"]);
        url.query_pairs_mut()
            .append_pair("sysparm_query", &format!("correlation_id={key}^ORDERBYDESCsys_created_on"))
            .append_pair("sysparm_limit", "1")
            .append_pair("sysparm_fields", "sys_id,number,state")
            .append_pair("sysparm_exclude_reference_link", "true");
        let answer = http.send(self.request(http, reqwest::Method::GET, url)).await?.json()?;
        let Some(records) = answer.get("result").and_then(Value::as_array) else {
            return Err(DeliveryError::Protocol("ServiceNow's query answer has no result list".into()));
        };
        Ok(records.first().and_then(incident_of))
    }

    async fn update(&self, http: &Http, sys_id: &str, fields: Value) -> Result<Incident, DeliveryError> {
        let request = self.request(http, reqwest::Method::PATCH, self.table_url(Some(sys_id))).json(&fields);
        gone_on_404(self.send_for_record(http, request).await, sys_id)
    }

    /// Resolved: the out-of-box state or the one configured for resolving.
    fn is_resolved(&self, state: &str) -> bool {
        state == RESOLVED || state == self.resolved_state.to_string()
    }

    /// The stored incident as it is now.
    async fn current(&self, http: &Http, sys_id: &str) -> Result<Incident, DeliveryError> {
        let request = self.request(http, reqwest::Method::GET, self.table_url(Some(sys_id)));
        gone_on_404(self.send_for_record(http, request).await, sys_id)
    }

    async fn note(&self, http: &Http, event: &Event, ticket: &TicketRef) -> Result<Outcome, DeliveryError> {
        let sys_id = ticket.external_id.as_str();
        match self.update(http, sys_id, json!({"work_notes": event.note_text()})).await {
            // Refused: closed meanwhile (the ACL), or something to fix (roles, data policy).
            Err(e @ DeliveryError::Status { status: 403, .. }) => {
                if FINAL_STATES.contains(&self.current(http, sys_id).await?.state.as_str()) {
                    tracing::info!(incident = sys_id, "the incident is closed; the note is not added");
                    Ok(Outcome::Done)
                } else {
                    Err(e)
                }
            }
            other => other.map(|_| Outcome::Done),
        }
    }

    async fn close(&self, http: &Http, event: &Event, ticket: &TicketRef) -> Result<Outcome, DeliveryError> {
        let sys_id = ticket.external_id.as_str();
        let state = self.current(http, sys_id).await?.state;
        if FINAL_STATES.contains(&state.as_str()) {
            return Ok(Outcome::Done);
        }
        let note = event.note_text();
        let fields = if self.is_resolved(&state) {
            json!({"work_notes": note})
        } else {
            json!({
                "state": self.resolved_state.to_string(),
                "close_code": self.close_code,
                "close_notes": note,
                "work_notes": note,
            })
        };
        self.update(http, sys_id, fields).await?;
        Ok(Outcome::Done)
    }

    async fn reopen(
        &self,
        http: &Http,
        event: &Event,
        ticket: &TicketRef,
        key: &str,
    ) -> Result<Outcome, DeliveryError> {
        let current = self.current(http, &ticket.external_id).await?;
        if !FINAL_STATES.contains(&current.state.as_str()) {
            // Only a resolved incident is reopened; an open one keeps its state (On Hold …).
            let fields = if self.is_resolved(&current.state) {
                json!({"state": self.reopen_state.to_string(), "work_notes": event.note_text()})
            } else {
                json!({"work_notes": event.note_text()})
            };
            self.update(http, &ticket.external_id, fields).await?;
            return Ok(Outcome::Done);
        }
        // Closed for good: a new incident under the old one, unless an earlier attempt made it.
        if let Some(newest) = self.find(http, key).await?
            && newest.sys_id != ticket.external_id
            && !FINAL_STATES.contains(&newest.state.as_str())
        {
            return Ok(Outcome::Ticket(self.ticket(&newest.sys_id)));
        }
        Ok(Outcome::Ticket(self.create(http, event, key, Some(&ticket.external_id)).await?))
    }
}

#[async_trait]
impl Connector for ServiceNow {
    fn kind(&self) -> IntegrationKind {
        IntegrationKind::Servicenow
    }

    fn destinations(&self) -> Vec<Url> {
        vec![self.base.clone()]
    }

    #[tracing::instrument(skip_all, fields(action = action.name()))]
    async fn perform(&self, http: &Http, action: Action<'_>) -> Result<Outcome, DeliveryError> {
        match action {
            Action::Create { event, key } => Ok(Outcome::Ticket(self.create(http, event, key, None).await?)),
            Action::Find { key, .. } => Ok(match self.find(http, key).await? {
                Some(incident) => Outcome::Ticket(self.ticket(&incident.sys_id)),
                None => Outcome::NotFound,
            }),
            Action::Note { event, ticket } => self.note(http, event, ticket).await,
            Action::Close { event, ticket } => self.close(http, event, ticket).await,
            Action::Reopen { event, ticket, key } => self.reopen(http, event, ticket, key).await,
            Action::Send { event } => Err(DeliveryError::Protocol(format!(
                "ServiceNow keeps incidents; the engine sent a message action for {}",
                event.event_type
            ))),
        }
    }
}
