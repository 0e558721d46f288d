//! Autotask (Datto) PSA REST API v1.0, as far as tickets and their notes go.
//!
//! Routes under `/ATServicesRest/V1.0`: `POST /Tickets` (create, answers `{"itemId"}`),
//! `PATCH /Tickets` (update by the body's `id`), `POST /Tickets/query` (a `filter` list of
//! `{"op", "field", "value"}` with `eq`, `noteq`, `contains`, `beginsWith` and `in`, plus
//! `maxRecords`; answers `{"items", "pageDetails"}`), `GET /Tickets/{id}` (`{"item"}`) and
//! `POST/GET /Tickets/{id}/Notes`.
//!
//! As Autotask does: every call needs the `UserName`, `Secret` and `ApiIntegrationCode`
//! headers (401 otherwise); errors are `{"errors": ["…"]}`; a ticket needs `companyID`,
//! `title`, `status` and `priority` from the picklists; `externalID` holds at most 50
//! characters; notes need `title`, `description`, `noteType` and `publish`. A ticket a person
//! deleted ([`AutotaskState::delete_ticket`]) is answered like one that never was: `{"item":
//! null}` by id, 404 for updates and notes.

use std::sync::Mutex;

use actix_web::{HttpRequest, HttpResponse, web};
use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use crate::{Api, Common, Observed};

#[derive(Debug, Clone)]
pub struct AtNote {
    pub id: u64,
    pub title: String,
    pub description: String,
    pub note_type: u64,
    pub publish: u64,
    pub created: DateTime<Utc>,
}

#[derive(Debug, Clone)]
pub struct AtTicket {
    pub id: u64,
    pub ticket_number: String,
    pub title: String,
    pub description: String,
    pub company_id: u64,
    pub queue_id: Option<u64>,
    pub status: u64,
    pub priority: u64,
    pub external_id: Option<String>,
    pub completed_date: Option<DateTime<Utc>>,
    pub notes: Vec<AtNote>,
}

impl AtTicket {
    pub fn note_texts(&self) -> Vec<String> {
        self.notes.iter().map(|n| n.description.clone()).collect()
    }

    fn to_json(&self) -> Value {
        json!({
            "id": self.id,
            "ticketNumber": self.ticket_number,
            "title": self.title,
            "description": self.description,
            "companyID": self.company_id,
            "queueID": self.queue_id,
            "status": self.status,
            "priority": self.priority,
            "externalID": self.external_id,
            "completedDate": self.completed_date.map(|d| d.to_rfc3339()),
            "userDefinedFields": [],
        })
    }

    fn field(&self, name: &str) -> Option<Value> {
        Some(match name.to_ascii_lowercase().as_str() {
            "id" => json!(self.id),
            "ticketnumber" => json!(self.ticket_number),
            "title" => json!(self.title),
            "description" => json!(self.description),
            "companyid" => json!(self.company_id),
            "queueid" => json!(self.queue_id),
            "status" => json!(self.status),
            "priority" => json!(self.priority),
            "externalid" => json!(self.external_id),
            _ => return None,
        })
    }
}

/// The receiver's state: expected credentials, picklists and the tickets.
#[derive(Debug)]
pub struct AutotaskState {
    common: Common,
    username: String,
    secret: String,
    integration_code: String,
    /// Status picklist values; `complete` marks the ticket completed.
    statuses: Vec<u64>,
    complete: u64,
    priorities: Vec<u64>,
    tickets: Mutex<Vec<AtTicket>>,
    /// Tickets ever created: ids are never reused after a delete.
    created: Mutex<u64>,
    next_note: Mutex<u64>,
}

impl AutotaskState {
    /// Accepts these API user credentials. Statuses are the stock 1 New, 5 Complete,
    /// 7 Waiting Customer, 8 In Progress; priorities 1 High, 2 Medium, 3 Low, 4 Critical.
    pub fn new(username: &str, secret: &str, integration_code: &str) -> AutotaskState {
        AutotaskState {
            common: Common::default(),
            username: username.to_owned(),
            secret: secret.to_owned(),
            integration_code: integration_code.to_owned(),
            statuses: vec![1, 5, 7, 8],
            complete: 5,
            priorities: vec![1, 2, 3, 4],
            tickets: Mutex::new(Vec::new()),
            created: Mutex::new(0),
            next_note: Mutex::new(1),
        }
    }

    /// Gives a ticket the status picklist value `status` as a person would in Autotask.
    pub fn set_status(&self, id: u64, status: u64) {
        assert!(self.statuses.contains(&status), "a status of the picklist");
        if let Some(ticket) = self.tickets.lock().unwrap().iter_mut().find(|t| t.id == id) {
            ticket.completed_date = (status == self.complete).then(Utc::now);
            ticket.status = status;
        }
    }

    /// Completes a ticket as a person would.
    pub fn close_by_person(&self, id: u64) {
        self.set_status(id, self.complete);
    }

    /// Deletes a ticket as a person would.
    pub fn delete_ticket(&self, id: u64) {
        self.tickets.lock().unwrap().retain(|t| t.id != id);
    }

    pub fn tickets(&self) -> Vec<AtTicket> {
        self.tickets.lock().unwrap().clone()
    }

    pub fn ticket(&self, id: u64) -> Option<AtTicket> {
        self.tickets.lock().unwrap().iter().find(|t| t.id == id).cloned()
    }

    /// The 401 Autotask answers to missing or wrong credentials, if they are.
    fn refusal(&self, req: &HttpRequest) -> Option<HttpResponse> {
        let header = |name: &str| req.headers().get(name).and_then(|v| v.to_str().ok()).unwrap_or("");
        let ok = header("UserName") == self.username
            && header("Secret") == self.secret
            && header("ApiIntegrationCode") == self.integration_code;
        (!ok).then(|| {
            HttpResponse::Unauthorized().json(
                json!({"errors": ["Unauthorized: the user name, secret or integration code is not valid."]}),
            )
        })
    }
}

fn errors(status: actix_web::http::StatusCode, message: &str) -> HttpResponse {
    HttpResponse::build(status).json(json!({ "errors": [message] }))
}

fn bad_request(message: &str) -> HttpResponse {
    errors(actix_web::http::StatusCode::BAD_REQUEST, message)
}

fn not_found(id: u64) -> HttpResponse {
    errors(actix_web::http::StatusCode::NOT_FOUND, &format!("Unable to find Tickets with Id {id}."))
}

macro_rules! observe {
    ($state:expr, $req:expr, $body:expr) => {
        match $state.common().observe(&$req, &$body).await {
            Observed::Answer(response) => return response,
            Observed::Handle { lose_answer } => {
                if let Some(response) = $state.refusal(&$req) {
                    return response;
                }
                lose_answer
            }
        }
    };
}

fn json_body(body: &[u8]) -> Option<serde_json::Map<String, Value>> {
    match serde_json::from_slice(body) {
        Ok(Value::Object(map)) => Some(map),
        _ => None,
    }
}

fn field_u64(input: &serde_json::Map<String, Value>, name: &str) -> Option<u64> {
    input.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).and_then(|(_, v)| v.as_u64())
}

fn field_str<'a>(input: &'a serde_json::Map<String, Value>, name: &str) -> Option<&'a str> {
    input.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).and_then(|(_, v)| v.as_str())
}

async fn create_ticket(req: HttpRequest, body: web::Bytes, state: web::Data<AutotaskState>) -> HttpResponse {
    let lose_answer = observe!(state, req, body);
    let Some(input) = json_body(&body) else {
        return bad_request("The request body is not a Tickets entity.");
    };
    let mut missing = Vec::new();
    let company_id = field_u64(&input, "companyID");
    let title = field_str(&input, "title").map(str::trim).filter(|t| !t.is_empty());
    let status = field_u64(&input, "status");
    let priority = field_u64(&input, "priority");
    for (name, present) in [
        ("companyID", company_id.is_some()),
        ("title", title.is_some()),
        ("status", status.is_some()),
        ("priority", priority.is_some()),
    ] {
        if !present {
            missing.push(format!("{name} is required."));
        }
    }
    if !missing.is_empty() {
        return HttpResponse::BadRequest().json(json!({ "errors": missing }));
    }
    let (Some(company_id), Some(title), Some(status), Some(priority)) = (company_id, title, status, priority)
    else {
        return bad_request("Required fields are missing.");
    };
    if title.chars().count() > 255 {
        return bad_request("title: the value exceeds the maximum length of 255.");
    }
    if !state.statuses.contains(&status) {
        return bad_request(&format!("Value {status} is not a valid picklist value for the field status."));
    }
    if !state.priorities.contains(&priority) {
        return bad_request(&format!(
            "Value {priority} is not a valid picklist value for the field priority."
        ));
    }
    let description = field_str(&input, "description").unwrap_or("").to_owned();
    if description.chars().count() > 8_000 {
        return bad_request("description: the value exceeds the maximum length of 8000.");
    }
    let external_id = field_str(&input, "externalID").map(str::to_owned);
    if external_id.as_ref().is_some_and(|x| x.chars().count() > 50) {
        return bad_request("externalID: the value exceeds the maximum length of 50.");
    }
    let id = {
        let mut tickets = state.tickets.lock().unwrap();
        let sequence = {
            let mut created = state.created.lock().unwrap();
            *created += 1;
            *created
        };
        let id = 29_680_000 + sequence;
        tickets.push(AtTicket {
            id,
            ticket_number: format!("T20261120.{sequence:04}"),
            title: title.to_owned(),
            description,
            company_id,
            queue_id: field_u64(&input, "queueID"),
            status,
            priority,
            external_id,
            completed_date: (status == state.complete).then(Utc::now),
            notes: Vec::new(),
        });
        id
    };
    Common::answer(lose_answer, HttpResponse::Ok().json(json!({ "itemId": id })))
}

async fn update_ticket(req: HttpRequest, body: web::Bytes, state: web::Data<AutotaskState>) -> HttpResponse {
    let lose_answer = observe!(state, req, body);
    let Some(input) = json_body(&body) else {
        return bad_request("The request body is not a Tickets entity.");
    };
    let Some(id) = field_u64(&input, "id") else { return bad_request("id is required.") };
    let mut tickets = state.tickets.lock().unwrap();
    let Some(ticket) = tickets.iter_mut().find(|t| t.id == id) else { return not_found(id) };
    if let Some(status) = field_u64(&input, "status") {
        if !state.statuses.contains(&status) {
            return bad_request(&format!(
                "Value {status} is not a valid picklist value for the field status."
            ));
        }
        ticket.completed_date = (status == state.complete).then(Utc::now);
        ticket.status = status;
    }
    if let Some(priority) = field_u64(&input, "priority") {
        if !state.priorities.contains(&priority) {
            return bad_request(&format!(
                "Value {priority} is not a valid picklist value for the field priority."
            ));
        }
        ticket.priority = priority;
    }
    if let Some(title) = field_str(&input, "title") {
        ticket.title = title.to_owned();
    }
    Common::answer(lose_answer, HttpResponse::Ok().json(json!({ "itemId": id })))
}

/// Whether `ticket` passes one filter item (nested `and`/`or` groups included).
fn passes(ticket: &AtTicket, item: &Value) -> Result<bool, String> {
    let op = item.get("op").and_then(Value::as_str).unwrap_or("").to_ascii_lowercase();
    if op == "and" || op == "or" {
        let items = item.get("items").and_then(Value::as_array).ok_or("a group needs items")?;
        let results = items.iter().map(|i| passes(ticket, i)).collect::<Result<Vec<_>, _>>()?;
        return Ok(if op == "and" { results.iter().all(|r| *r) } else { results.iter().any(|r| *r) });
    }
    let field = item.get("field").and_then(Value::as_str).ok_or("a condition needs a field")?;
    let actual = ticket.field(field).ok_or_else(|| format!("Unknown field {field} for entity Tickets."))?;
    let expected = item.get("value").cloned().unwrap_or(Value::Null);
    let text = |v: &Value| match v {
        Value::String(s) => s.to_ascii_lowercase(),
        other => other.to_string(),
    };
    Ok(match op.as_str() {
        // Autotask compares strings case-insensitively.
        "eq" => text(&actual) == text(&expected) && !actual.is_null(),
        "noteq" => text(&actual) != text(&expected),
        "contains" => actual.as_str().is_some_and(|a| a.to_ascii_lowercase().contains(&text(&expected))),
        "beginswith" => actual.as_str().is_some_and(|a| a.to_ascii_lowercase().starts_with(&text(&expected))),
        "in" => expected.as_array().is_some_and(|vs| vs.iter().any(|v| text(v) == text(&actual))),
        "exist" => !actual.is_null(),
        "notexist" => actual.is_null(),
        other => return Err(format!("Unsupported operator {other}.")),
    })
}

async fn query_tickets(req: HttpRequest, body: web::Bytes, state: web::Data<AutotaskState>) -> HttpResponse {
    let lose_answer = observe!(state, req, body);
    let Some(input) = json_body(&body) else { return bad_request("The query is not valid JSON.") };
    let Some(filter) =
        input.iter().find(|(k, _)| k.eq_ignore_ascii_case("filter")).and_then(|(_, v)| v.as_array())
    else {
        return bad_request("The query must have a filter.");
    };
    if filter.is_empty() {
        return bad_request("The query must have at least one filter.");
    }
    let max = field_u64(&input, "maxRecords").unwrap_or(500).clamp(1, 500) as usize;
    let mut items = Vec::new();
    for ticket in state.tickets.lock().unwrap().iter() {
        let mut all = true;
        for item in filter {
            match passes(ticket, item) {
                Ok(true) => {}
                Ok(false) => all = false,
                Err(message) => return bad_request(&message),
            }
        }
        if all && items.len() < max {
            items.push(ticket.to_json());
        }
    }
    let answer = json!({
        "items": items,
        "pageDetails": { "count": items.len(), "requestCount": max, "prevPageUrl": null, "nextPageUrl": null },
    });
    Common::answer(lose_answer, HttpResponse::Ok().json(answer))
}

fn path_id(req: &HttpRequest) -> u64 {
    req.match_info().get("id").and_then(|id| id.parse().ok()).unwrap_or(0)
}

async fn get_ticket(req: HttpRequest, body: web::Bytes, state: web::Data<AutotaskState>) -> HttpResponse {
    let lose_answer = observe!(state, req, body);
    let id = path_id(&req);
    // Autotask answers 200 with a null item for an unknown id.
    let item = state.ticket(id).map(|t| t.to_json()).unwrap_or(Value::Null);
    Common::answer(lose_answer, HttpResponse::Ok().json(json!({ "item": item })))
}

async fn create_note(req: HttpRequest, body: web::Bytes, state: web::Data<AutotaskState>) -> HttpResponse {
    let lose_answer = observe!(state, req, body);
    let id = path_id(&req);
    let Some(input) = json_body(&body) else {
        return bad_request("The request body is not a TicketNotes entity.");
    };
    if field_u64(&input, "ticketID").is_some_and(|t| t != id) {
        return bad_request("ticketID does not match the parent ticket.");
    }
    let title = field_str(&input, "title").map(str::trim).filter(|t| !t.is_empty());
    let description = field_str(&input, "description").map(str::trim).filter(|t| !t.is_empty());
    let note_type = field_u64(&input, "noteType");
    let publish = field_u64(&input, "publish");
    let mut missing = Vec::new();
    for (name, present) in [
        ("title", title.is_some()),
        ("description", description.is_some()),
        ("noteType", note_type.is_some()),
        ("publish", publish.is_some()),
    ] {
        if !present {
            missing.push(format!("{name} is required."));
        }
    }
    let (Some(title), Some(description), Some(note_type), Some(publish)) =
        (title, description, note_type, publish)
    else {
        return HttpResponse::BadRequest().json(json!({ "errors": missing }));
    };
    if title.chars().count() > 250 {
        return bad_request("title: the value exceeds the maximum length of 250.");
    }
    let note_id = {
        let mut next = state.next_note.lock().unwrap();
        *next += 1;
        *next
    };
    let mut tickets = state.tickets.lock().unwrap();
    let Some(ticket) = tickets.iter_mut().find(|t| t.id == id) else { return not_found(id) };
    ticket.notes.push(AtNote {
        id: note_id,
        title: title.to_owned(),
        description: description.to_owned(),
        note_type,
        publish,
        created: Utc::now(),
    });
    Common::answer(lose_answer, HttpResponse::Ok().json(json!({ "itemId": note_id })))
}

async fn list_notes(req: HttpRequest, body: web::Bytes, state: web::Data<AutotaskState>) -> HttpResponse {
    let lose_answer = observe!(state, req, body);
    let id = path_id(&req);
    let Some(ticket) = state.ticket(id) else { return not_found(id) };
    let items: Vec<Value> = ticket
        .notes
        .iter()
        .map(|n| {
            json!({
                "id": n.id,
                "ticketID": id,
                "title": n.title,
                "description": n.description,
                "noteType": n.note_type,
                "publish": n.publish,
                "createDateTime": n.created.to_rfc3339(),
            })
        })
        .collect();
    let answer = json!({ "items": items, "pageDetails": { "count": items.len() } });
    Common::answer(lose_answer, HttpResponse::Ok().json(answer))
}

impl Api for AutotaskState {
    fn common(&self) -> &Common {
        &self.common
    }

    fn configure(cfg: &mut web::ServiceConfig) {
        cfg.service(
            web::scope("/ATServicesRest/V1.0")
                .route("/Tickets", web::post().to(create_ticket))
                .route("/Tickets", web::patch().to(update_ticket))
                .route("/Tickets/query", web::post().to(query_tickets))
                .route("/Tickets/{id}", web::get().to(get_ticket))
                .route("/Tickets/{id}/Notes", web::post().to(create_note))
                .route("/Tickets/{id}/Notes", web::get().to(list_notes)),
        );
    }
}
