//! ConnectWise PSA (Manage) REST API 3.0, as far as service tickets go.
//!
//! Routes under `/v4_6_release/apis/3.0`: `POST/GET /service/tickets` (the list honours
//! `conditions` — `field = "text"`, `field = 12`, `field = true` joined by `and` — plus
//! `orderBy=id [asc|desc]`, `page` and `pageSize`), `GET/PATCH /service/tickets/{id}` (JSON
//! Patch) and `POST/GET /service/tickets/{id}/notes`.
//!
//! As ConnectWise does: every call needs Basic `company+publicKey:privateKey` and a `clientId`
//! header (401 otherwise); `initialDescription` becomes the ticket's first note (with
//! `detailDescriptionFlag`); summaries over 100 characters, unknown board statuses and notes
//! without one of the three flags are refused with 400 `InvalidObject` and an `errors` list.
//! A ticket a person deleted ([`ConnectwiseState::delete_ticket`]) answers 404 `NotFound`, as
//! one that never was.

use std::sync::Mutex;

use actix_web::{HttpRequest, HttpResponse, web};
use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use crate::{Api, Common, Observed, basic_auth};

/// A status of the board: id, name, whether it closes the ticket.
#[derive(Debug, Clone)]
pub struct BoardStatus {
    pub id: u64,
    pub name: String,
    pub closed: bool,
}

#[derive(Debug, Clone)]
pub struct CwNote {
    pub id: u64,
    pub text: String,
    pub detail_description: bool,
    pub internal_analysis: bool,
    pub resolution: bool,
    pub created: DateTime<Utc>,
}

#[derive(Debug, Clone)]
pub struct CwTicket {
    pub id: u64,
    pub summary: String,
    pub board_id: u64,
    pub status: BoardStatus,
    pub company: Value,
    pub priority_id: Option<u64>,
    pub type_id: Option<u64>,
    pub external_x_ref: Option<String>,
    pub notes: Vec<CwNote>,
}

impl CwTicket {
    pub fn note_texts(&self) -> Vec<String> {
        self.notes.iter().map(|n| n.text.clone()).collect()
    }

    fn to_json(&self) -> Value {
        json!({
            "id": self.id,
            "summary": self.summary,
            "recordType": "ServiceTicket",
            "board": { "id": self.board_id, "name": "Service Board" },
            "status": { "id": self.status.id, "name": self.status.name },
            "company": self.company,
            "priority": self.priority_id.map(|id| json!({ "id": id })),
            "type": self.type_id.map(|id| json!({ "id": id })),
            "externalXRef": self.external_x_ref,
            "closedFlag": self.status.closed,
        })
    }
}

fn note_json(ticket_id: u64, note: &CwNote) -> Value {
    json!({
        "id": note.id,
        "ticketId": ticket_id,
        "text": note.text,
        "detailDescriptionFlag": note.detail_description,
        "internalAnalysisFlag": note.internal_analysis,
        "resolutionFlag": note.resolution,
        "dateCreated": note.created.to_rfc3339(),
    })
}

/// The receiver's state: expected credentials, the board's statuses and the tickets.
#[derive(Debug)]
pub struct ConnectwiseState {
    common: Common,
    user: String,
    private_key: String,
    client_id: String,
    statuses: Vec<BoardStatus>,
    tickets: Mutex<Vec<CwTicket>>,
    /// Tickets ever created: numbers are never reused after a delete.
    created: Mutex<u64>,
    next_note: Mutex<u64>,
}

const API: &str = "/v4_6_release/apis/3.0";

impl ConnectwiseState {
    /// Accepts `login_company+public_key:private_key` with `client_id`. The board has the
    /// statuses `New` (1), `In Progress` (2), `>Closed` (5, closing) and `Re-opened` (6).
    pub fn new(
        login_company: &str,
        public_key: &str,
        private_key: &str,
        client_id: &str,
    ) -> ConnectwiseState {
        let status = |id, name: &str, closed| BoardStatus { id, name: name.to_owned(), closed };
        ConnectwiseState {
            common: Common::default(),
            user: format!("{login_company}+{public_key}"),
            private_key: private_key.to_owned(),
            client_id: client_id.to_owned(),
            statuses: vec![
                status(1, "New", false),
                status(2, "In Progress", false),
                status(5, ">Closed", true),
                status(6, "Re-opened", false),
            ],
            tickets: Mutex::new(Vec::new()),
            created: Mutex::new(0),
            next_note: Mutex::new(1),
        }
    }

    /// Moves a ticket to the board status `name` as a person would in Manage.
    pub fn set_status(&self, id: u64, name: &str) {
        let status = self.status(&json!({ "name": name })).expect("a status of the board");
        if let Some(ticket) = self.tickets.lock().unwrap().iter_mut().find(|t| t.id == id) {
            ticket.status = status;
        }
    }

    /// Closes a ticket as a person would (`>Closed`).
    pub fn close_by_person(&self, id: u64) {
        self.set_status(id, ">Closed");
    }

    /// Deletes a ticket as a person would: its number answers 404 from now on.
    pub fn delete_ticket(&self, id: u64) {
        self.tickets.lock().unwrap().retain(|t| t.id != id);
    }

    pub fn tickets(&self) -> Vec<CwTicket> {
        self.tickets.lock().unwrap().clone()
    }

    pub fn ticket(&self, id: u64) -> Option<CwTicket> {
        self.tickets.lock().unwrap().iter().find(|t| t.id == id).cloned()
    }

    fn note(&self, text: String, detail: bool, internal: bool, resolution: bool) -> CwNote {
        let mut next = self.next_note.lock().unwrap();
        let id = *next;
        *next += 1;
        CwNote {
            id,
            text,
            detail_description: detail,
            internal_analysis: internal,
            resolution,
            created: Utc::now(),
        }
    }

    /// The 401 ConnectWise answers to missing or wrong credentials, if they are.
    fn refusal(&self, req: &HttpRequest) -> Option<HttpResponse> {
        let client_id = req.headers().get("clientId").and_then(|v| v.to_str().ok());
        if client_id != Some(self.client_id.as_str()) {
            return Some(
                HttpResponse::Unauthorized()
                    .json(json!({"code": "Unauthorized", "message": "clientId is missing or not valid"})),
            );
        }
        match basic_auth(req) {
            Some((user, password)) if user == self.user && password == self.private_key => None,
            _ => Some(HttpResponse::Unauthorized().json(json!({
                "code": "Unauthorized",
                "message": "Incorrect public/private key or company",
            }))),
        }
    }

    fn status(&self, reference: &Value) -> Option<BoardStatus> {
        if let Some(id) = reference.get("id").and_then(Value::as_u64) {
            return self.statuses.iter().find(|s| s.id == id).cloned();
        }
        let name = reference.get("name").and_then(Value::as_str)?;
        self.statuses.iter().find(|s| s.name.eq_ignore_ascii_case(name)).cloned()
    }
}

/// ConnectWise's validation error: `{"code": "InvalidObject", "message", "errors": [...]}`.
fn invalid(resource: &str, field: &str, code: &str, message: &str) -> HttpResponse {
    HttpResponse::BadRequest().json(json!({
        "code": "InvalidObject",
        "message": format!("{resource} object is invalid"),
        "errors": [{ "code": code, "message": message, "resource": resource, "field": field }],
    }))
}

fn not_found(id: u64) -> HttpResponse {
    HttpResponse::NotFound().json(json!({"code": "NotFound", "message": format!("Ticket ID {id} not found")}))
}

fn parse_body(body: &[u8]) -> Option<Value> {
    serde_json::from_slice(body).ok()
}

fn bad_json() -> HttpResponse {
    HttpResponse::BadRequest().json(json!({"code": "InvalidObject", "message": "Invalid JSON"}))
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

async fn create_ticket(
    req: HttpRequest,
    body: web::Bytes,
    state: web::Data<ConnectwiseState>,
) -> HttpResponse {
    let lose_answer = observe!(state, req, body);
    let Some(input) = parse_body(&body) else { return bad_json() };
    let summary = input.get("summary").and_then(Value::as_str).unwrap_or("").trim().to_owned();
    if summary.is_empty() {
        return invalid("ticket", "summary", "NullOrEmpty", "summary may not be empty");
    }
    if summary.chars().count() > 100 {
        return invalid(
            "ticket",
            "summary",
            "MaxLengthField",
            "The field summary must be a string with a maximum length of 100.",
        );
    }
    let company = match input.get("company") {
        Some(c) if c.get("id").and_then(Value::as_u64).is_some() || c.get("identifier").is_some() => {
            c.clone()
        }
        _ => return invalid("ticket", "company", "NullOrEmpty", "company may not be empty"),
    };
    let board_id = input.get("board").and_then(|b| b.get("id")).and_then(Value::as_u64).unwrap_or(1);
    let status = match input.get("status") {
        None | Some(Value::Null) => state.statuses[0].clone(),
        Some(reference) => match state.status(reference) {
            Some(s) => s,
            None => {
                return invalid(
                    "ticket",
                    "status/id",
                    "NotFound",
                    &format!("Service Status not found for Service Board {board_id}"),
                );
            }
        },
    };
    let external_x_ref = input.get("externalXRef").and_then(Value::as_str).map(str::to_owned);
    if external_x_ref.as_ref().is_some_and(|x| x.chars().count() > 100) {
        return invalid(
            "ticket",
            "externalXRef",
            "MaxLengthField",
            "The field externalXRef must be a string with a maximum length of 100.",
        );
    }
    let mut notes = Vec::new();
    if let Some(description) = input.get("initialDescription").and_then(Value::as_str) {
        notes.push(state.note(description.to_owned(), true, false, false));
    }
    let ticket = {
        let mut tickets = state.tickets.lock().unwrap();
        let mut created = state.created.lock().unwrap();
        *created += 1;
        let ticket = CwTicket {
            id: 1000 + *created,
            summary,
            board_id,
            status,
            company,
            priority_id: input.get("priority").and_then(|p| p.get("id")).and_then(Value::as_u64),
            type_id: input.get("type").and_then(|p| p.get("id")).and_then(Value::as_u64),
            external_x_ref,
            notes,
        };
        tickets.push(ticket.clone());
        ticket
    };
    Common::answer(lose_answer, HttpResponse::Created().json(ticket.to_json()))
}

/// One `field op value` of a `conditions` string.
struct Condition {
    field: String,
    value: Value,
}

/// Parses `a = "x" and b/id = 3 and closedFlag = false` (the subset the connectors use).
fn parse_conditions(text: &str) -> Option<Vec<Condition>> {
    let mut conditions = Vec::new();
    let mut rest = text.trim();
    while !rest.is_empty() {
        let eq = rest.find('=')?;
        let field = rest[..eq].trim().to_owned();
        if field.is_empty() || field.contains(' ') {
            return None;
        }
        let after = rest[eq + 1..].trim_start();
        let (value, remainder) = if let Some(quoted) = after.strip_prefix('"') {
            let end = quoted.find('"')?;
            (Value::String(quoted[..end].to_owned()), &quoted[end + 1..])
        } else {
            let end = after.find(' ').unwrap_or(after.len());
            let token = &after[..end];
            let value = match token {
                "true" => Value::Bool(true),
                "false" => Value::Bool(false),
                _ => Value::from(token.parse::<u64>().ok()?),
            };
            (value, &after[end..])
        };
        conditions.push(Condition { field, value });
        let remainder = remainder.trim_start();
        rest = if remainder.is_empty() {
            remainder
        } else {
            let lower = remainder.to_ascii_lowercase();
            if !lower.starts_with("and ") {
                return None;
            }
            &remainder[4..]
        };
    }
    Some(conditions)
}

fn matches(ticket: &CwTicket, condition: &Condition) -> Option<bool> {
    let actual = match condition.field.to_ascii_lowercase().as_str() {
        "id" => json!(ticket.id),
        "summary" => json!(ticket.summary),
        "externalxref" => json!(ticket.external_x_ref),
        "board/id" => json!(ticket.board_id),
        "status/id" => json!(ticket.status.id),
        "status/name" => json!(ticket.status.name),
        "company/id" => ticket.company.get("id").cloned().unwrap_or(Value::Null),
        "closedflag" => json!(ticket.status.closed),
        _ => return None,
    };
    Some(actual == condition.value)
}

async fn list_tickets(
    req: HttpRequest,
    body: web::Bytes,
    state: web::Data<ConnectwiseState>,
) -> HttpResponse {
    let lose_answer = observe!(state, req, body);
    let query = web::Query::<Vec<(String, String)>>::from_query(req.query_string())
        .map(|q| q.into_inner())
        .unwrap_or_default();
    let param =
        |name: &str| query.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str());
    let conditions = match param("conditions") {
        None => Vec::new(),
        Some(text) => match parse_conditions(text) {
            Some(c) => c,
            None => {
                return HttpResponse::BadRequest().json(
                    json!({"code": "InvalidObject", "message": format!("Invalid conditions: {text}")}),
                );
            }
        },
    };
    let mut found = Vec::new();
    for ticket in state.tickets.lock().unwrap().iter() {
        let mut all = true;
        for condition in &conditions {
            match matches(ticket, condition) {
                Some(true) => {}
                Some(false) => all = false,
                None => {
                    return HttpResponse::BadRequest().json(json!({
                        "code": "InvalidObject",
                        "message": format!("Unknown field {} in conditions", condition.field),
                    }));
                }
            }
        }
        if all {
            found.push(ticket.clone());
        }
    }
    if param("orderBy").is_some_and(|o| o.trim().eq_ignore_ascii_case("id desc")) {
        found.reverse();
    }
    let page_size = param("pageSize").and_then(|p| p.parse::<usize>().ok()).unwrap_or(25).clamp(1, 1000);
    let page = param("page").and_then(|p| p.parse::<usize>().ok()).unwrap_or(1).max(1);
    let items: Vec<Value> =
        found.iter().skip((page - 1) * page_size).take(page_size).map(CwTicket::to_json).collect();
    Common::answer(lose_answer, HttpResponse::Ok().json(items))
}

fn path_id(req: &HttpRequest) -> Option<u64> {
    req.match_info().get("id")?.parse().ok()
}

async fn get_ticket(req: HttpRequest, body: web::Bytes, state: web::Data<ConnectwiseState>) -> HttpResponse {
    let lose_answer = observe!(state, req, body);
    let Some(id) = path_id(&req) else { return not_found(0) };
    match state.ticket(id) {
        Some(ticket) => Common::answer(lose_answer, HttpResponse::Ok().json(ticket.to_json())),
        None => not_found(id),
    }
}

async fn patch_ticket(
    req: HttpRequest,
    body: web::Bytes,
    state: web::Data<ConnectwiseState>,
) -> HttpResponse {
    let lose_answer = observe!(state, req, body);
    let Some(id) = path_id(&req) else { return not_found(0) };
    let patch = match parse_body(&body) {
        Some(Value::Array(ops)) => ops,
        Some(_) => {
            return HttpResponse::BadRequest()
                .json(json!({"code": "InvalidObject", "message": "The body must be a JSON Patch array"}));
        }
        None => return bad_json(),
    };
    let mut tickets = state.tickets.lock().unwrap();
    let Some(ticket) = tickets.iter_mut().find(|t| t.id == id) else { return not_found(id) };
    let mut updated = ticket.clone();
    for op in &patch {
        let kind = op.get("op").and_then(Value::as_str).unwrap_or("");
        if !matches!(kind, "replace" | "add") {
            return invalid(
                "ticket",
                "op",
                "InvalidOperation",
                &format!("Unsupported patch operation {kind:?}"),
            );
        }
        let path =
            op.get("path").and_then(Value::as_str).unwrap_or("").trim_start_matches('/').to_ascii_lowercase();
        let value = op.get("value").cloned().unwrap_or(Value::Null);
        match path.as_str() {
            "status" => match state.status(&value) {
                Some(s) => updated.status = s,
                None => {
                    return invalid(
                        "ticket",
                        "status/id",
                        "NotFound",
                        &format!("Service Status not found for Service Board {}", updated.board_id),
                    );
                }
            },
            "summary" => match value.as_str() {
                Some(s) if !s.trim().is_empty() && s.chars().count() <= 100 => updated.summary = s.to_owned(),
                _ => {
                    return invalid(
                        "ticket",
                        "summary",
                        "MaxLengthField",
                        "summary must be 1 to 100 characters",
                    );
                }
            },
            "priority" => updated.priority_id = value.get("id").and_then(Value::as_u64),
            "externalxref" => updated.external_x_ref = value.as_str().map(str::to_owned),
            other => return invalid("ticket", other, "InvalidField", &format!("Cannot patch {other}")),
        }
    }
    *ticket = updated.clone();
    Common::answer(lose_answer, HttpResponse::Ok().json(updated.to_json()))
}

async fn add_note(req: HttpRequest, body: web::Bytes, state: web::Data<ConnectwiseState>) -> HttpResponse {
    let lose_answer = observe!(state, req, body);
    let Some(id) = path_id(&req) else { return not_found(0) };
    let Some(input) = parse_body(&body) else { return bad_json() };
    let text = input.get("text").and_then(Value::as_str).unwrap_or("").to_owned();
    if text.trim().is_empty() {
        return invalid("note", "text", "NullOrEmpty", "text may not be empty");
    }
    let flag = |name: &str| input.get(name).and_then(Value::as_bool).unwrap_or(false);
    let (detail, internal, resolution) =
        (flag("detailDescriptionFlag"), flag("internalAnalysisFlag"), flag("resolutionFlag"));
    if !(detail || internal || resolution) {
        return invalid(
            "note",
            "detailDescriptionFlag",
            "MissingRequiredField",
            "At least one of detailDescriptionFlag, internalAnalysisFlag or resolutionFlag must be true",
        );
    }
    let note = state.note(text, detail, internal, resolution);
    let mut tickets = state.tickets.lock().unwrap();
    let Some(ticket) = tickets.iter_mut().find(|t| t.id == id) else { return not_found(id) };
    let answer = note_json(id, &note);
    ticket.notes.push(note);
    Common::answer(lose_answer, HttpResponse::Created().json(answer))
}

async fn list_notes(req: HttpRequest, body: web::Bytes, state: web::Data<ConnectwiseState>) -> HttpResponse {
    let lose_answer = observe!(state, req, body);
    let Some(id) = path_id(&req) else { return not_found(0) };
    match state.ticket(id) {
        Some(ticket) => {
            let notes: Vec<Value> = ticket.notes.iter().map(|n| note_json(id, n)).collect();
            Common::answer(lose_answer, HttpResponse::Ok().json(notes))
        }
        None => not_found(id),
    }
}

impl Api for ConnectwiseState {
    fn common(&self) -> &Common {
        &self.common
    }

    fn configure(cfg: &mut web::ServiceConfig) {
        cfg.service(
            web::scope(API)
                .route("/service/tickets", web::post().to(create_ticket))
                .route("/service/tickets", web::get().to(list_tickets))
                .route("/service/tickets/{id}", web::get().to(get_ticket))
                .route("/service/tickets/{id}", web::patch().to(patch_ticket))
                .route("/service/tickets/{id}/notes", web::post().to(add_note))
                .route("/service/tickets/{id}/notes", web::get().to(list_notes)),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conditions_parse_the_connectors_subset() {
        let parsed =
            parse_conditions(r#"externalXRef="wbd-1" and board/id = 3 and closedFlag = false"#).unwrap();
        assert_eq!(parsed.len(), 3);
        assert_eq!(parsed[0].field, "externalXRef");
        assert_eq!(parsed[0].value, json!("wbd-1"));
        assert_eq!(parsed[1].value, json!(3));
        assert_eq!(parsed[2].value, json!(false));
        assert!(parse_conditions("externalXRef like wbd").is_none());
    }
}
