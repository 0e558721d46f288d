//! ServiceNow Table API for `incident`, as far as ticket connectors use it.
//!
//! Records are answered as `{"result": {...}}` (lists as `{"result": [...]}`) with string field
//! values, errors as `{"error": {"message", "detail"}, "status": "failure"}`. `work_notes` is a
//! journal field: every write adds an entry and the field reads back empty. Resolving (state 6)
//! requires `close_code` and `close_notes`, as the default data policy does. A Closed (7)
//! incident refuses every write, work notes included, as the out-of-box write ACLs do for a
//! non-admin: `403 {"error": {"message": "Operation Failed", "detail": "ACL Exception Update
//! Failed due to security constraints"}}`. A deleted incident ([`ServiceNowState::delete_incident`])
//! answers 404 like one that never was. `sysparm_query` understands `field=value` terms joined by `^` and a trailing
//! `ORDERBYfield` / `ORDERBYDESCfield`; `sysparm_limit` and `sysparm_fields` apply.

use std::sync::Mutex;

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use serde_json::{Map, Value, json};

use crate::{Api, Common, Observed, basic_auth};

/// Fields the Table API lets a caller write on an incident (others are ignored, like
/// read-only fields on a real instance).
const WRITABLE: [&str; 14] = [
    "short_description",
    "description",
    "correlation_id",
    "correlation_display",
    "urgency",
    "impact",
    "assignment_group",
    "caller_id",
    "category",
    "state",
    "close_code",
    "close_notes",
    "parent_incident",
    "work_notes",
];
const STATES: [&str; 8] = ["1", "2", "3", "6", "7", "8", "-5", "-6"];
/// The out-of-box `close_code` choices (current releases), and the pre-Utah ones.
const CLOSE_CODES: [&str; 14] = [
    "Duplicate",
    "Known error",
    "No resolution provided",
    "Resolved by caller",
    "Resolved by change",
    "Resolved by problem",
    "Resolved by request",
    "Solution provided",
    "Workaround provided",
    "User error",
    "Solved (Permanently)",
    "Solved (Work Around)",
    "Not Solved (Not Reproducible)",
    "Closed/Resolved by Caller",
];

#[derive(Debug, Clone)]
pub struct Incident {
    pub sys_id: String,
    pub number: String,
    /// Every field as stored (string values), `work_notes` excepted.
    pub fields: Map<String, Value>,
    /// The work-note journal, oldest first.
    pub work_notes: Vec<String>,
    /// Creation order (stands for `sys_created_on`).
    pub created: usize,
}

impl Incident {
    pub fn field(&self, name: &str) -> &str {
        self.fields.get(name).and_then(Value::as_str).unwrap_or("")
    }

    pub fn state(&self) -> &str {
        self.field("state")
    }

    fn record(&self) -> Value {
        let mut record = self.fields.clone();
        record.insert("sys_id".into(), json!(self.sys_id));
        record.insert("number".into(), json!(self.number));
        record.insert("work_notes".into(), json!(""));
        Value::Object(record)
    }
}

#[derive(Debug)]
pub struct ServiceNowState {
    common: Common,
    username: String,
    password: String,
    incidents: Mutex<Vec<Incident>>,
    /// Incidents ever created: sys_ids and numbers are never reused after a delete.
    created: Mutex<usize>,
}

impl ServiceNowState {
    pub fn new(username: &str, password: &str) -> ServiceNowState {
        ServiceNowState {
            common: Common::default(),
            username: username.to_owned(),
            password: password.to_owned(),
            incidents: Mutex::new(Vec::new()),
            created: Mutex::new(0),
        }
    }

    /// Closes an incident as a person (or the auto-close rule) would: state 7, read-only after.
    pub fn close_by_person(&self, sys_id: &str) {
        self.set_field(sys_id, "state", "7");
    }

    /// Deletes an incident as an admin would: its sys_id answers 404 from now on.
    pub fn delete_incident(&self, sys_id: &str) {
        self.incidents.lock().unwrap().retain(|i| i.sys_id != sys_id);
    }

    pub fn incidents(&self) -> Vec<Incident> {
        self.incidents.lock().unwrap().clone()
    }

    pub fn incident(&self, sys_id: &str) -> Option<Incident> {
        self.incidents.lock().unwrap().iter().find(|i| i.sys_id == sys_id).cloned()
    }

    /// Sets a field as a person or a business rule would (e.g. the auto-close to state 7).
    pub fn set_field(&self, sys_id: &str, name: &str, value: &str) {
        if let Some(incident) = self.incidents.lock().unwrap().iter_mut().find(|i| i.sys_id == sys_id) {
            incident.fields.insert(name.into(), json!(value));
        }
    }

    fn authorized(&self, req: &HttpRequest) -> bool {
        basic_auth(req).is_some_and(|(user, password)| user == self.username && password == self.password)
    }
}

fn failure(status: StatusCode, message: &str, detail: &str) -> HttpResponse {
    HttpResponse::build(status)
        .json(json!({"error": {"message": message, "detail": detail}, "status": "failure"}))
}

fn not_found() -> HttpResponse {
    failure(
        StatusCode::NOT_FOUND,
        "No Record found",
        "Record doesn't exist or ACL restricts the record retrieval",
    )
}

fn invalid_body() -> HttpResponse {
    failure(StatusCode::BAD_REQUEST, "Exception while reading request", "The payload is not valid JSON.")
}

/// The query parameters of a request.
fn params(req: &HttpRequest) -> Vec<(String, String)> {
    web::Query::<Vec<(String, String)>>::from_query(req.query_string())
        .map(|q| q.into_inner())
        .unwrap_or_default()
}

fn param(params: &[(String, String)], name: &str) -> Option<String> {
    params.iter().find(|(n, _)| n == name).map(|(_, v)| v.clone())
}

/// Keeps only `sysparm_fields`, if given.
fn select(record: Value, params: &[(String, String)]) -> Value {
    let Some(fields) = param(params, "sysparm_fields") else {
        return record;
    };
    let wanted: Vec<&str> = fields.split(',').map(str::trim).collect();
    match record {
        Value::Object(map) => {
            Value::Object(map.into_iter().filter(|(k, _)| wanted.contains(&k.as_str())).collect())
        }
        other => other,
    }
}

/// The value as the Table API stores it: a string.
fn as_field_string(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// Applies writable fields of `input` to `incident`, checking states and resolution fields.
fn apply(incident: &mut Incident, input: &Map<String, Value>) -> Result<(), Box<HttpResponse>> {
    let previous_state = incident.state().to_owned();
    if previous_state == "7" {
        return Err(Box::new(failure(
            StatusCode::FORBIDDEN,
            "Operation Failed",
            "ACL Exception Update Failed due to security constraints",
        )));
    }
    for (name, value) in input {
        if !WRITABLE.contains(&name.as_str()) {
            continue;
        }
        let Some(text) = as_field_string(value) else {
            return Err(Box::new(failure(
                StatusCode::BAD_REQUEST,
                "Invalid field value",
                &format!("Field {name} must be a string value"),
            )));
        };
        if name == "work_notes" {
            if !text.trim().is_empty() {
                incident.work_notes.push(text);
            }
        } else {
            incident.fields.insert(name.clone(), json!(text));
        }
    }
    let state = incident.state().to_owned();
    if !STATES.contains(&state.as_str()) {
        return Err(Box::new(failure(
            StatusCode::BAD_REQUEST,
            "Invalid state",
            &format!("State {state} is not a choice"),
        )));
    }
    if state == "6" && previous_state != "6" {
        let code = incident.field("close_code");
        if !CLOSE_CODES.contains(&code) || incident.field("close_notes").trim().is_empty() {
            return Err(Box::new(failure(
                StatusCode::FORBIDDEN,
                "Operation Failed",
                "Data Policy Exception: the following fields are mandatory: Resolution code, Resolution notes",
            )));
        }
    }
    Ok(())
}

/// `field=value^field=value` terms and an optional `ORDERBY[DESC]field`.
struct Query {
    terms: Vec<(String, String)>,
    order: Option<(String, bool)>,
}

fn parse_query(query: &str) -> Option<Query> {
    let mut terms = Vec::new();
    let mut order = None;
    for part in query.split('^').filter(|p| !p.is_empty()) {
        if let Some(field) = part.strip_prefix("ORDERBYDESC") {
            order = Some((field.to_owned(), true));
        } else if let Some(field) = part.strip_prefix("ORDERBY") {
            order = Some((field.to_owned(), false));
        } else {
            let (field, value) = part.split_once('=')?;
            if field.is_empty() || field.contains(['!', '<', '>']) {
                return None;
            }
            terms.push((field.to_owned(), value.to_owned()));
        }
    }
    Some(Query { terms, order })
}

macro_rules! observe {
    ($state:expr, $req:expr, $body:expr) => {
        match $state.common().observe(&$req, &$body).await {
            Observed::Answer(response) => return response,
            Observed::Handle { lose_answer } => {
                if !$state.authorized(&$req) {
                    return failure(
                        StatusCode::UNAUTHORIZED,
                        "User Not Authenticated",
                        "Required to provide Auth information",
                    );
                }
                lose_answer
            }
        }
    };
}

async fn create(req: HttpRequest, body: web::Bytes, state: web::Data<ServiceNowState>) -> HttpResponse {
    let lose_answer = observe!(state, req, body);
    let Ok(Value::Object(input)) = serde_json::from_slice::<Value>(&body) else {
        return invalid_body();
    };
    let record = {
        let mut incidents = state.incidents.lock().unwrap();
        let n = {
            let mut created = state.created.lock().unwrap();
            *created += 1;
            *created
        };
        let mut incident = Incident {
            sys_id: format!("{:032x}", 0x5e7_0000_u128 + n as u128),
            number: format!("INC{:07}", 10_000 + n),
            fields: Map::new(),
            work_notes: Vec::new(),
            created: n,
        };
        for (name, default) in [("state", "1"), ("urgency", "3"), ("impact", "3")] {
            incident.fields.insert(name.into(), json!(default));
        }
        if let Err(response) = apply(&mut incident, &input) {
            return *response;
        }
        if incident.field("short_description").trim().is_empty() {
            return failure(
                StatusCode::FORBIDDEN,
                "Operation Failed",
                "Data Policy Exception: the following fields are mandatory: Short description",
            );
        }
        let record = incident.record();
        incidents.push(incident);
        record
    };
    let params = params(&req);
    Common::answer(lose_answer, HttpResponse::Created().json(json!({"result": select(record, &params)})))
}

async fn list(req: HttpRequest, body: web::Bytes, state: web::Data<ServiceNowState>) -> HttpResponse {
    let lose_answer = observe!(state, req, body);
    let params = params(&req);
    let Some(query) = parse_query(&param(&params, "sysparm_query").unwrap_or_default()) else {
        return failure(StatusCode::BAD_REQUEST, "Invalid query", "sysparm_query is not understood");
    };
    let mut found: Vec<Incident> = state
        .incidents()
        .into_iter()
        .filter(|i| {
            query
                .terms
                .iter()
                .all(|(field, value)| i.record().get(field).and_then(Value::as_str) == Some(value))
        })
        .collect();
    if let Some((field, descending)) = &query.order {
        if field == "sys_created_on" {
            found.sort_by_key(|i| i.created);
        } else {
            found.sort_by(|a, b| a.field(field).cmp(b.field(field)));
        }
        if *descending {
            found.reverse();
        }
    }
    let limit = param(&params, "sysparm_limit").and_then(|l| l.parse::<usize>().ok()).unwrap_or(10_000);
    let result: Vec<Value> = found.iter().take(limit).map(|i| select(i.record(), &params)).collect();
    Common::answer(lose_answer, HttpResponse::Ok().json(json!({"result": result})))
}

async fn get(req: HttpRequest, body: web::Bytes, state: web::Data<ServiceNowState>) -> HttpResponse {
    let lose_answer = observe!(state, req, body);
    let Some(incident) = state.incident(req.match_info().get("sys_id").unwrap_or("")) else {
        return not_found();
    };
    let params = params(&req);
    Common::answer(
        lose_answer,
        HttpResponse::Ok().json(json!({"result": select(incident.record(), &params)})),
    )
}

async fn update(req: HttpRequest, body: web::Bytes, state: web::Data<ServiceNowState>) -> HttpResponse {
    let lose_answer = observe!(state, req, body);
    let Ok(Value::Object(input)) = serde_json::from_slice::<Value>(&body) else {
        return invalid_body();
    };
    let sys_id = req.match_info().get("sys_id").unwrap_or("").to_owned();
    let record = {
        let mut incidents = state.incidents.lock().unwrap();
        let Some(stored) = incidents.iter_mut().find(|i| i.sys_id == sys_id) else {
            return not_found();
        };
        // All or nothing, like a rejected update.
        let mut changed = stored.clone();
        if let Err(response) = apply(&mut changed, &input) {
            return *response;
        }
        *stored = changed;
        stored.record()
    };
    let params = params(&req);
    Common::answer(lose_answer, HttpResponse::Ok().json(json!({"result": select(record, &params)})))
}

impl Api for ServiceNowState {
    fn common(&self) -> &Common {
        &self.common
    }

    fn configure(cfg: &mut web::ServiceConfig) {
        cfg.route("/api/now/table/incident", web::post().to(create))
            .route("/api/now/table/incident", web::get().to(list))
            .route("/api/now/table/incident/{sys_id}", web::get().to(get))
            .route("/api/now/table/incident/{sys_id}", web::patch().to(update))
            .route("/api/now/table/incident/{sys_id}", web::put().to(update));
    }
}
