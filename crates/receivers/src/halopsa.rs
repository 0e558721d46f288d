//! HaloPSA: its OAuth2 authorisation server and the tickets and actions of its REST API.
//!
//! Routes: `POST /auth/token` (client credentials, form-encoded; answers `access_token`,
//! `token_type`, `expires_in`), `POST/GET /api/Tickets` (a posted array creates tickets, or
//! updates those that carry an `id`), `GET /api/Tickets/{id}`, `POST/GET /api/Actions` (notes; an
//! action's `new_status` changes the ticket's status as Halo does).
//!
//! The ticket list is no more helpful than Halo's: it knows `third_party_id_string`, `search`
//! (in the summary), `client_id`, `open_only`, `closed_only`, `order` (`id`) with `orderdesc`,
//! `count`, and `pageinate` with `page_size` and `page_no`; any other parameter is ignored, not
//! refused, so a filter that does not exist filters nothing. Without `orderdesc` the oldest come
//! first; without `pageinate` or `count`, everything comes. Rows carry the list's default columns
//! (id, summary, status, client, site, type, team, priority), not `details` or
//! `third_party_id_string`: `GET /api/Tickets/{id}` has every field.
//! [`HaloState::ignoring_reference_filter`] makes the list ignore `third_party_id_string` too, for
//! an instance that does not honour it. A deleted ticket ([`HaloState::delete_ticket`]) answers
//! 404 by id, and actions for it are refused like those for any unknown ticket.
//!
//! As Halo does: a wrong client id or secret gets 400 `{"error": "invalid_client"}` (RFC 6749
//! §5.2); API calls need `Authorization: Bearer` with a live token (401 otherwise); tokens
//! expire after the configured lifetime and can be revoked ([`HaloState::revoke_tokens`]).

use std::sync::Mutex;
use std::time::{Duration, Instant};

use actix_web::{HttpRequest, HttpResponse, web};
use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use crate::{Api, Common, Observed, bad_request, bearer};

#[derive(Debug, Clone)]
pub struct HaloAction {
    pub id: u64,
    pub outcome: String,
    pub note: String,
    pub hidden_from_user: bool,
    pub new_status: Option<u64>,
    pub created: DateTime<Utc>,
}

#[derive(Debug, Clone)]
pub struct HaloTicket {
    pub id: u64,
    pub summary: String,
    pub details: String,
    pub status_id: u64,
    pub priority_id: Option<u64>,
    pub client_id: Option<u64>,
    pub site_id: Option<u64>,
    pub tickettype_id: Option<u64>,
    pub team_id: Option<u64>,
    pub third_party_id_string: Option<String>,
    pub actions: Vec<HaloAction>,
}

impl HaloTicket {
    /// The notes of the ticket's actions, as sent (HTML).
    pub fn note_texts(&self) -> Vec<String> {
        self.actions.iter().map(|a| a.note.clone()).collect()
    }

    /// The list's default columns.
    fn row(&self, statuses: &[(u64, &str, bool)]) -> Value {
        let mut row = self.to_json(statuses);
        if let Some(columns) = row.as_object_mut() {
            columns.remove("details");
            columns.remove("third_party_id_string");
        }
        row
    }

    fn to_json(&self, statuses: &[(u64, &str, bool)]) -> Value {
        let status = statuses.iter().find(|s| s.0 == self.status_id);
        json!({
            "id": self.id,
            "summary": self.summary,
            "details": self.details,
            "status_id": self.status_id,
            "status_name": status.map(|s| s.1),
            "priority_id": self.priority_id,
            "client_id": self.client_id,
            "site_id": self.site_id,
            "tickettype_id": self.tickettype_id,
            "team_id": self.team_id,
            "third_party_id_string": self.third_party_id_string,
        })
    }
}

fn action_json(ticket_id: u64, action: &HaloAction) -> Value {
    json!({
        "id": action.id,
        "ticket_id": ticket_id,
        "outcome": action.outcome,
        "note_html": action.note,
        "hiddenfromuser": action.hidden_from_user,
        "new_status": action.new_status,
        "datetime": action.created.to_rfc3339(),
    })
}

/// Halo's stock statuses: id, name, whether closed.
const STATUSES: [(u64, &str, bool); 5] = [
    (1, "New", false),
    (2, "In Progress", false),
    (3, "Action Required", false),
    (8, "Re-Opened", false),
    (9, "Closed", true),
];

/// The receiver's state: the API application, issued tokens, tickets.
#[derive(Debug)]
pub struct HaloState {
    common: Common,
    client_id: String,
    client_secret: String,
    token_lifetime: Mutex<Duration>,
    tokens: Mutex<Vec<(String, Instant)>>,
    tickets: Mutex<Vec<HaloTicket>>,
    /// Tickets ever created: ids are never reused after a delete.
    created: Mutex<u64>,
    next_action: Mutex<u64>,
    reference_filter: bool,
}

impl HaloState {
    /// Accepts the application `client_id` / `client_secret`; tokens live an hour.
    pub fn new(client_id: &str, client_secret: &str) -> HaloState {
        HaloState {
            common: Common::default(),
            client_id: client_id.to_owned(),
            client_secret: client_secret.to_owned(),
            token_lifetime: Mutex::new(Duration::from_secs(3600)),
            tokens: Mutex::new(Vec::new()),
            tickets: Mutex::new(Vec::new()),
            created: Mutex::new(0),
            next_action: Mutex::new(1),
            reference_filter: true,
        }
    }

    /// The ticket list ignores `third_party_id_string`, as an instance that does not know it would.
    pub fn ignoring_reference_filter(mut self) -> HaloState {
        self.reference_filter = false;
        self
    }

    /// Gives a ticket the status `status_id` as a person would in Halo.
    pub fn set_status(&self, id: u64, status_id: u64) {
        assert!(status_known(status_id), "a stock status");
        if let Some(ticket) = self.tickets.lock().unwrap().iter_mut().find(|t| t.id == id) {
            ticket.status_id = status_id;
        }
    }

    /// Closes a ticket as a person would (status 9, Closed).
    pub fn close_by_person(&self, id: u64) {
        self.set_status(id, 9);
    }

    /// Deletes a ticket as a person would.
    pub fn delete_ticket(&self, id: u64) {
        self.tickets.lock().unwrap().retain(|t| t.id != id);
    }

    /// A ticket logged outside Writeback Doctor (by a person, or by a tool that sets a reference).
    pub fn add_ticket(&self, summary: &str, third_party_id_string: Option<&str>) -> u64 {
        let mut tickets = self.tickets.lock().unwrap();
        let id = self.next_ticket_id();
        tickets.push(HaloTicket {
            id,
            summary: summary.to_owned(),
            details: String::new(),
            status_id: 1,
            priority_id: None,
            client_id: None,
            site_id: None,
            tickettype_id: None,
            team_id: None,
            third_party_id_string: third_party_id_string.map(str::to_owned),
            actions: Vec::new(),
        });
        id
    }

    fn next_ticket_id(&self) -> u64 {
        let mut created = self.created.lock().unwrap();
        *created += 1;
        5000 + *created
    }

    /// Tokens issued from now on live this long (`expires_in` says so, in whole seconds).
    pub fn set_token_lifetime(&self, lifetime: Duration) {
        *self.token_lifetime.lock().unwrap() = lifetime;
    }

    /// Every token issued so far stops working (as when the application's secret is rotated).
    pub fn revoke_tokens(&self) {
        self.tokens.lock().unwrap().clear();
    }

    /// How many tokens were issued.
    pub fn token_requests(&self) -> usize {
        self.common.requests().iter().filter(|r| r.path == "/auth/token").count()
    }

    pub fn tickets(&self) -> Vec<HaloTicket> {
        self.tickets.lock().unwrap().clone()
    }

    pub fn ticket(&self, id: u64) -> Option<HaloTicket> {
        self.tickets.lock().unwrap().iter().find(|t| t.id == id).cloned()
    }

    /// The 401 Halo answers without a live bearer token, if so.
    fn refusal(&self, req: &HttpRequest) -> Option<HttpResponse> {
        let now = Instant::now();
        let live = bearer(req).is_some_and(|token| {
            self.tokens.lock().unwrap().iter().any(|(issued, until)| *issued == token && now < *until)
        });
        (!live).then(|| {
            HttpResponse::Unauthorized()
                .insert_header(("WWW-Authenticate", "Bearer error=\"invalid_token\""))
                .finish()
        })
    }
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

fn pairs(text: &str) -> Vec<(String, String)> {
    web::Query::<Vec<(String, String)>>::from_query(text).map(|q| q.into_inner()).unwrap_or_default()
}

fn param<'a>(pairs: &'a [(String, String)], name: &str) -> Option<&'a str> {
    pairs.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
}

async fn token(req: HttpRequest, body: web::Bytes, state: web::Data<HaloState>) -> HttpResponse {
    let lose_answer = match state.common().observe(&req, &body).await {
        Observed::Answer(response) => return response,
        Observed::Handle { lose_answer } => lose_answer,
    };
    let form = pairs(std::str::from_utf8(&body).unwrap_or(""));
    if param(&form, "grant_type") != Some("client_credentials") {
        return HttpResponse::BadRequest().json(json!({"error": "unsupported_grant_type"}));
    }
    if param(&form, "client_id") != Some(state.client_id.as_str())
        || param(&form, "client_secret") != Some(state.client_secret.as_str())
    {
        return HttpResponse::BadRequest().json(json!({"error": "invalid_client"}));
    }
    let scope = param(&form, "scope").unwrap_or("all").to_owned();
    let lifetime = *state.token_lifetime.lock().unwrap();
    let value = format!("halo-{}", uuid::Uuid::new_v4().simple());
    state.tokens.lock().unwrap().push((value.clone(), Instant::now() + lifetime));
    Common::answer(
        lose_answer,
        HttpResponse::Ok().json(json!({
            "scope": scope,
            "token_type": "Bearer",
            "access_token": value,
            "expires_in": lifetime.as_secs(),
        })),
    )
}

fn array_body(body: &[u8]) -> Option<Vec<Value>> {
    match serde_json::from_slice(body) {
        Ok(Value::Array(items)) if !items.is_empty() => Some(items),
        _ => None,
    }
}

/// One object for one posted item, an array for several (as Halo answers).
fn saved(items: Vec<Value>) -> Value {
    if items.len() == 1 { items.into_iter().next().unwrap_or(Value::Null) } else { Value::Array(items) }
}

fn status_known(id: u64) -> bool {
    STATUSES.iter().any(|s| s.0 == id)
}

async fn post_tickets(req: HttpRequest, body: web::Bytes, state: web::Data<HaloState>) -> HttpResponse {
    let lose_answer = observe!(state, req, body);
    let Some(items) = array_body(&body) else {
        return bad_request("The request body must be an array of tickets");
    };
    let mut tickets = state.tickets.lock().unwrap();
    // Validate everything first: Halo saves all or nothing.
    for item in &items {
        let id = item.get("id").and_then(Value::as_u64).unwrap_or(0);
        if id > 0 && !tickets.iter().any(|t| t.id == id) {
            return bad_request(&format!("Ticket {id} does not exist"));
        }
        if id == 0 && item.get("summary").and_then(Value::as_str).is_none_or(|s| s.trim().is_empty()) {
            return bad_request("Please enter a summary");
        }
        if let Some(status) = item.get("status_id").and_then(Value::as_u64)
            && !status_known(status)
        {
            return bad_request(&format!("Status {status} does not exist"));
        }
    }
    let mut answers = Vec::new();
    for item in items {
        let id = item.get("id").and_then(Value::as_u64).unwrap_or(0);
        let u64_of = |name: &str| item.get(name).and_then(Value::as_u64);
        let str_of = |name: &str| item.get(name).and_then(Value::as_str).map(str::to_owned);
        let ticket = if id > 0 {
            let Some(ticket) = tickets.iter_mut().find(|t| t.id == id) else { continue };
            if let Some(status) = u64_of("status_id") {
                ticket.status_id = status;
            }
            if let Some(priority) = u64_of("priority_id") {
                ticket.priority_id = Some(priority);
            }
            if let Some(summary) = str_of("summary") {
                ticket.summary = summary;
            }
            if let Some(reference) = str_of("third_party_id_string") {
                ticket.third_party_id_string = Some(reference);
            }
            ticket.clone()
        } else {
            let ticket = HaloTicket {
                id: state.next_ticket_id(),
                summary: str_of("summary").unwrap_or_default(),
                details: str_of("details").unwrap_or_default(),
                status_id: u64_of("status_id").unwrap_or(1),
                priority_id: u64_of("priority_id"),
                client_id: u64_of("client_id"),
                site_id: u64_of("site_id"),
                tickettype_id: u64_of("tickettype_id"),
                team_id: u64_of("team_id"),
                third_party_id_string: str_of("third_party_id_string"),
                actions: Vec::new(),
            };
            tickets.push(ticket.clone());
            ticket
        };
        answers.push(ticket.to_json(&STATUSES));
    }
    Common::answer(lose_answer, HttpResponse::Created().json(saved(answers)))
}

async fn list_tickets(req: HttpRequest, body: web::Bytes, state: web::Data<HaloState>) -> HttpResponse {
    let lose_answer = observe!(state, req, body);
    let query = pairs(req.query_string());
    let flag = |name: &str| param(&query, name).is_some_and(|v| v.eq_ignore_ascii_case("true"));
    let number = |name: &str| param(&query, name).and_then(|v| v.parse::<usize>().ok());
    let reference = param(&query, "third_party_id_string").filter(|_| state.reference_filter);
    let search = param(&query, "search").map(str::to_ascii_lowercase);
    let client = param(&query, "client_id").and_then(|c| c.parse::<u64>().ok());
    let (open_only, closed_only) = (flag("open_only"), flag("closed_only"));
    let closed = |t: &HaloTicket| STATUSES.iter().any(|s| s.0 == t.status_id && s.2);
    let mut found: Vec<Value> = state
        .tickets
        .lock()
        .unwrap()
        .iter()
        .filter(|t| reference.is_none_or(|r| t.third_party_id_string.as_deref() == Some(r)))
        .filter(|t| search.as_ref().is_none_or(|s| t.summary.to_ascii_lowercase().contains(s.as_str())))
        .filter(|t| client.is_none_or(|c| t.client_id == Some(c)))
        .filter(|t| !open_only || !closed(t))
        .filter(|t| !closed_only || closed(t))
        .map(|t| t.row(&STATUSES))
        .collect();
    // Tickets are kept in id order; `order` knows `id` only here.
    if flag("orderdesc") && param(&query, "order").is_none_or(|o| o.eq_ignore_ascii_case("id")) {
        found.reverse();
    }
    let record_count = found.len();
    let answer = if flag("pageinate") {
        let size = number("page_size").unwrap_or(50).max(1);
        let page = number("page_no").unwrap_or(1).max(1);
        let rows: Vec<Value> = found.into_iter().skip((page - 1) * size).take(size).collect();
        json!({ "page_no": page, "page_size": size, "record_count": record_count, "tickets": rows })
    } else {
        let rows: Vec<Value> = found.into_iter().take(number("count").unwrap_or(usize::MAX)).collect();
        json!({ "record_count": record_count, "tickets": rows })
    };
    Common::answer(lose_answer, HttpResponse::Ok().json(answer))
}

async fn get_ticket(req: HttpRequest, body: web::Bytes, state: web::Data<HaloState>) -> HttpResponse {
    let lose_answer = observe!(state, req, body);
    let id = req.match_info().get("id").and_then(|id| id.parse::<u64>().ok()).unwrap_or(0);
    match state.ticket(id) {
        Some(ticket) => Common::answer(lose_answer, HttpResponse::Ok().json(ticket.to_json(&STATUSES))),
        None => HttpResponse::NotFound().json(json!({"message": format!("Ticket {id} not found")})),
    }
}

async fn post_actions(req: HttpRequest, body: web::Bytes, state: web::Data<HaloState>) -> HttpResponse {
    let lose_answer = observe!(state, req, body);
    let Some(items) = array_body(&body) else {
        return bad_request("The request body must be an array of actions");
    };
    let mut tickets = state.tickets.lock().unwrap();
    for item in &items {
        let ticket_id = item.get("ticket_id").and_then(Value::as_u64).unwrap_or(0);
        if !tickets.iter().any(|t| t.id == ticket_id) {
            return bad_request(&format!("Ticket {ticket_id} does not exist"));
        }
        let note = item.get("note_html").or_else(|| item.get("note")).and_then(Value::as_str);
        if note.is_none_or(|n| n.trim().is_empty()) {
            return bad_request("Please enter a note");
        }
        if let Some(status) = item.get("new_status").and_then(Value::as_u64)
            && !status_known(status)
        {
            return bad_request(&format!("Status {status} does not exist"));
        }
    }
    let mut answers = Vec::new();
    for item in items {
        let ticket_id = item.get("ticket_id").and_then(Value::as_u64).unwrap_or(0);
        let Some(ticket) = tickets.iter_mut().find(|t| t.id == ticket_id) else { continue };
        let id = {
            let mut next = state.next_action.lock().unwrap();
            *next += 1;
            *next
        };
        let action = HaloAction {
            id,
            outcome: item.get("outcome").and_then(Value::as_str).unwrap_or("Note").to_owned(),
            note: item
                .get("note_html")
                .or_else(|| item.get("note"))
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_owned(),
            hidden_from_user: item.get("hiddenfromuser").and_then(Value::as_bool).unwrap_or(false),
            new_status: item.get("new_status").and_then(Value::as_u64),
            created: Utc::now(),
        };
        if let Some(status) = action.new_status {
            ticket.status_id = status;
        }
        answers.push(action_json(ticket_id, &action));
        ticket.actions.push(action);
    }
    Common::answer(lose_answer, HttpResponse::Created().json(saved(answers)))
}

async fn list_actions(req: HttpRequest, body: web::Bytes, state: web::Data<HaloState>) -> HttpResponse {
    let lose_answer = observe!(state, req, body);
    let query = pairs(req.query_string());
    let ticket_id = param(&query, "ticket_id").and_then(|t| t.parse::<u64>().ok());
    let Some(ticket) = ticket_id.and_then(|id| state.ticket(id)) else {
        return bad_request("ticket_id is required and must exist");
    };
    let actions: Vec<Value> = ticket.actions.iter().map(|a| action_json(ticket.id, a)).collect();
    Common::answer(
        lose_answer,
        HttpResponse::Ok().json(json!({ "record_count": actions.len(), "actions": actions })),
    )
}

impl Api for HaloState {
    fn common(&self) -> &Common {
        &self.common
    }

    fn configure(cfg: &mut web::ServiceConfig) {
        cfg.route("/auth/token", web::post().to(token))
            .route("/api/Tickets", web::post().to(post_tickets))
            .route("/api/Tickets", web::get().to(list_tickets))
            .route("/api/Tickets/{id}", web::get().to(get_ticket))
            .route("/api/Actions", web::post().to(post_actions))
            .route("/api/Actions", web::get().to(list_actions));
    }
}
