//! Jira Cloud REST API v3, as far as ticket connectors use it: issues, comments, workflow
//! transitions, issue links and JQL search by label.
//!
//! Answers and error bodies have Jira's shapes (`{"errorMessages": [...], "errors": {...}}`).
//! Descriptions and comments must be Atlassian Document Format documents, as v3 requires.
//! The workflow is a team-managed project's: statuses `To Do`, `In Progress`, `Done`, and a
//! transition named after each status, offered from every other status. With
//! [`JiraState::done_is_final`] nothing leaves `Done` (a company-managed workflow without a
//! reopen transition). Search understands `labels = "x"` with an optional
//! `ORDER BY created ASC|DESC`, and refuses any other JQL with Jira's parse error.
//!
//! Like Jira Cloud's `/search/jql`, search can lag behind creates
//! ([`JiraState::with_search_lag`]; none by default), while reads by key are current. Issues a
//! person deleted ([`JiraState::delete_issue`]) answer 404 everywhere, and their links go with
//! them.
//!
//! Issue links are made with `POST /issueLink` or, as Jira allows, in the create itself:
//! `"update": {"issuelinks": [{"add": {"type": {"name": ..}, "outwardIssue": {"key": ..}}}]}`
//! links the new issue as the inward issue (`inwardIssue` of the issueLink form) to the given
//! one; `inwardIssue` instead makes the new issue the outward one. The link type and the other
//! issue are checked before anything is created (a `400` with the `issuelinks` error otherwise),
//! so an issue is never left without its link. Other `update` fields are refused, as a create
//! screen without them would.
//!
//! `GET /issue/{key}` returns the issue's fields whatever `fields` asks for, except
//! `issuelinks`, which comes only when asked (`fields` absent, or naming `issuelinks`, `*all` or
//! `*navigable`, and not `-issuelinks`); search returns it only when its `fields` ask for it.
//! Each link has Jira's shape: `id`, `self`, `type` (`id`, `name`, `inward`, `outward`) and the
//! *other* issue as `inwardIssue` or `outwardIssue` (`id`, `key`, `self`, `fields.summary`,
//! `fields.status`, `fields.issuetype`): on an issue that is a link's outward issue, the
//! inward one appears as `inwardIssue`, and the other way round.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use actix_web::{HttpRequest, HttpResponse, web};
use serde_json::{Value, json};

use crate::{Api, Common, Faults, Observed, basic_auth};

/// The statuses of the workflow: (transition id, name, status category key).
const STATUSES: [(&str, &str, &str); 3] =
    [("11", "To Do", "new"), ("21", "In Progress", "indeterminate"), ("31", "Done", "done")];
/// The site's issue link types: (id, name, inward description, outward description).
const LINK_TYPES: [(&str, &str, &str, &str); 4] = [
    ("10000", "Blocks", "is blocked by", "blocks"),
    ("10001", "Cloners", "is cloned by", "clones"),
    ("10002", "Duplicate", "is duplicated by", "duplicates"),
    ("10003", "Relates", "relates to", "relates to"),
];
const ISSUE_TYPES: [&str; 4] = ["Task", "Bug", "Story", "Incident"];

#[derive(Debug, Clone)]
pub struct JiraIssue {
    pub id: String,
    pub key: String,
    pub project: String,
    pub issue_type: String,
    pub summary: String,
    /// The ADF description as sent.
    pub description: Value,
    pub labels: Vec<String>,
    pub status: String,
    /// Comments, ADF bodies as sent.
    pub comments: Vec<Value>,
    /// When it was created (search shows it once `search_lag` has passed).
    pub created: Instant,
}

impl JiraIssue {
    /// The plain text of the description.
    pub fn description_text(&self) -> String {
        adf_text(&self.description)
    }

    /// The plain text of every comment.
    pub fn comment_texts(&self) -> Vec<String> {
        self.comments.iter().map(adf_text).collect()
    }
}

/// An issue link: `(type, inward issue key, outward issue key)`.
pub type JiraLink = (String, String, String);

/// A stored issue link.
#[derive(Debug, Clone)]
struct StoredLink {
    id: String,
    /// The link type's name, as in [`LINK_TYPES`].
    link_type: &'static str,
    inward: String,
    outward: String,
}

#[derive(Debug)]
pub struct JiraState {
    common: Common,
    email: String,
    api_token: String,
    project: String,
    done_is_final: bool,
    search_lag: Duration,
    issues: Mutex<Vec<JiraIssue>>,
    /// Issues ever created: keys are never reused after a delete.
    created: Mutex<usize>,
    links: Mutex<Vec<StoredLink>>,
    /// Faults to arm when the next create arrives (see [`JiraState::set_faults_at_next_create`]).
    faults_at_next_create: Mutex<Option<Faults>>,
}

impl JiraState {
    /// A site with one project `project` that accepts `email` with `api_token`.
    pub fn new(email: &str, api_token: &str, project: &str) -> JiraState {
        JiraState {
            common: Common::default(),
            email: email.to_owned(),
            api_token: api_token.to_owned(),
            project: project.to_owned(),
            done_is_final: false,
            search_lag: Duration::ZERO,
            issues: Mutex::new(Vec::new()),
            created: Mutex::new(0),
            links: Mutex::new(Vec::new()),
            faults_at_next_create: Mutex::new(None),
        }
    }

    /// No transition leaves `Done`.
    pub fn done_is_final(mut self) -> JiraState {
        self.done_is_final = true;
        self
    }

    /// Search shows an issue only once it is this old, as Jira Cloud's eventually consistent
    /// `/search/jql` may.
    pub fn with_search_lag(mut self, lag: Duration) -> JiraState {
        self.search_lag = lag;
        self
    }

    /// Deletes an issue as a person would: its key answers 404 from now on, and its links are
    /// gone.
    pub fn delete_issue(&self, key: &str) {
        self.issues.lock().unwrap().retain(|i| i.key != key);
        self.links.lock().unwrap().retain(|l| l.inward != key && l.outward != key);
    }

    /// Sets `faults` (as [`Common::set_faults`]) when the next `POST /issue` arrives, just before
    /// it is observed: the faults hit that create whatever requests come before it (a reopen's
    /// reads, say). `Faults { lose_answer_next: 1, .. }` loses the create's answer only.
    pub fn set_faults_at_next_create(&self, faults: Faults) {
        *self.faults_at_next_create.lock().unwrap() = Some(faults);
    }

    pub fn issues(&self) -> Vec<JiraIssue> {
        self.issues.lock().unwrap().clone()
    }

    pub fn issue(&self, key: &str) -> Option<JiraIssue> {
        self.issues.lock().unwrap().iter().find(|i| i.key == key).cloned()
    }

    pub fn links(&self) -> Vec<JiraLink> {
        self.links
            .lock()
            .unwrap()
            .iter()
            .map(|l| (l.link_type.to_owned(), l.inward.clone(), l.outward.clone()))
            .collect()
    }

    /// Stores a link between two existing issues (checked by the caller).
    fn add_link(&self, link_type: &'static str, inward: &str, outward: &str) {
        let mut links = self.links.lock().unwrap();
        let id = (10_000 + links.len() + 1).to_string();
        links.push(StoredLink { id, link_type, inward: inward.to_owned(), outward: outward.to_owned() });
    }

    /// The issue with this key or id.
    fn issue_by_key_or_id(&self, issue: &Value) -> Option<JiraIssue> {
        let key = issue.get("key").and_then(Value::as_str);
        let id = issue.get("id").and_then(Value::as_str);
        self.issues
            .lock()
            .unwrap()
            .iter()
            .find(|i| key.is_some_and(|k| k == i.key) || id.is_some_and(|d| d == i.id))
            .cloned()
    }

    /// Moves an issue to `status` as a person would in the UI.
    pub fn set_status(&self, key: &str, status: &str) {
        if let Some(issue) = self.issues.lock().unwrap().iter_mut().find(|i| i.key == key) {
            issue.status = status.to_owned();
        }
    }

    fn authorized(&self, req: &HttpRequest) -> bool {
        basic_auth(req).is_some_and(|(user, token)| user == self.email && token == self.api_token)
    }

    fn offered_transitions(&self, status: &str) -> Vec<(&'static str, &'static str, &'static str)> {
        if self.done_is_final && status == "Done" {
            return Vec::new();
        }
        STATUSES.into_iter().filter(|(_, name, _)| *name != status).collect()
    }

    /// The issue as `GET /issue/{key}` shows it; `issuelinks` only if `with_links`.
    fn issue_json(&self, req: &HttpRequest, issue: &JiraIssue, with_links: bool) -> Value {
        let mut answer = json!({
            "id": issue.id,
            "key": issue.key,
            "self": format!("{}/rest/api/3/issue/{}", origin(req), issue.id),
            "fields": {
                "summary": issue.summary,
                "labels": issue.labels,
                "issuetype": {"name": issue.issue_type},
                "project": {"key": issue.project},
                "status": status_json(&issue.status),
            },
        });
        if with_links {
            answer["fields"]["issuelinks"] = Value::Array(self.links_json(req, &issue.key));
        }
        answer
    }

    /// The `issuelinks` field of issue `key`: each link with the other issue.
    fn links_json(&self, req: &HttpRequest, key: &str) -> Vec<Value> {
        let links = self.links.lock().unwrap().clone();
        let mut shown = Vec::new();
        for link in links.iter().filter(|l| l.inward == key || l.outward == key) {
            let (role, other) = if link.outward == key {
                ("inwardIssue", &link.inward)
            } else {
                ("outwardIssue", &link.outward)
            };
            let Some(other) = self.issue(other) else {
                continue;
            };
            let Some((type_id, name, inward, outward)) =
                LINK_TYPES.iter().find(|(_, name, _, _)| *name == link.link_type)
            else {
                continue;
            };
            let mut entry = json!({
                "id": link.id,
                "self": format!("{}/rest/api/3/issueLink/{}", origin(req), link.id),
                "type": {
                    "id": type_id,
                    "name": name,
                    "inward": inward,
                    "outward": outward,
                    "self": format!("{}/rest/api/3/issueLinkType/{type_id}", origin(req)),
                },
            });
            entry[role] = json!({
                "id": other.id,
                "key": other.key,
                "self": format!("{}/rest/api/3/issue/{}", origin(req), other.id),
                "fields": {
                    "summary": other.summary,
                    "status": status_json(&other.status),
                    "issuetype": {"name": other.issue_type},
                },
            });
            shown.push(entry);
        }
        shown
    }
}

fn status_json(status: &str) -> Value {
    let category = STATUSES.iter().find(|(_, n, _)| *n == status).map(|(_, _, c)| *c).unwrap_or("new");
    json!({"name": status, "statusCategory": {"key": category}})
}

/// Whether a `fields` list (`GET /issue` query or search body) asks for `issuelinks`; `None`
/// (no `fields`) means `default`.
fn wants_links<'a>(fields: Option<impl Iterator<Item = &'a str>>, default: bool) -> bool {
    let Some(fields) = fields else {
        return default;
    };
    let mut wanted = false;
    for field in fields.map(str::trim) {
        match field {
            "-issuelinks" => return false,
            "issuelinks" | "*all" | "*navigable" => wanted = true,
            _ => {}
        }
    }
    wanted
}

fn origin(req: &HttpRequest) -> String {
    let info = req.connection_info();
    format!("{}://{}", info.scheme(), info.host())
}

fn errors(status: actix_web::http::StatusCode, messages: &[&str], fields: Value) -> HttpResponse {
    HttpResponse::build(status).json(json!({"errorMessages": messages, "errors": fields}))
}

fn unauthorized() -> HttpResponse {
    errors(
        actix_web::http::StatusCode::UNAUTHORIZED,
        &["Client must be authenticated to access this resource."],
        json!({}),
    )
}

fn not_found() -> HttpResponse {
    errors(
        actix_web::http::StatusCode::NOT_FOUND,
        &["Issue does not exist or you do not have permission to see it."],
        json!({}),
    )
}

fn bad(messages: &[&str], fields: Value) -> HttpResponse {
    errors(actix_web::http::StatusCode::BAD_REQUEST, messages, fields)
}

/// Whether `value` is an ADF document (`{"type":"doc","version":1,"content":[...]}`) whose
/// text nodes are non-empty, as Jira checks.
fn is_adf(value: &Value) -> bool {
    fn nodes_ok(node: &Value) -> bool {
        let Some(kind) = node.get("type").and_then(Value::as_str) else {
            return false;
        };
        if kind == "text" && node.get("text").and_then(Value::as_str).is_none_or(str::is_empty) {
            return false;
        }
        match node.get("content") {
            None => true,
            Some(Value::Array(children)) => children.iter().all(nodes_ok),
            Some(_) => false,
        }
    }
    value.get("type").and_then(Value::as_str) == Some("doc")
        && value.get("version").and_then(Value::as_u64) == Some(1)
        && value.get("content").is_some_and(Value::is_array)
        && nodes_ok(value)
}

/// The text of an ADF document: paragraphs on their own lines, hard breaks as line breaks.
fn adf_text(value: &Value) -> String {
    fn walk(node: &Value, out: &mut String) {
        match node.get("type").and_then(Value::as_str) {
            Some("text") => out.push_str(node.get("text").and_then(Value::as_str).unwrap_or("")),
            Some("hardBreak") => out.push('\n'),
            _ => {
                for child in node.get("content").and_then(Value::as_array).into_iter().flatten() {
                    walk(child, out);
                }
                if node.get("type").and_then(Value::as_str) == Some("paragraph") {
                    out.push('\n');
                }
            }
        }
    }
    let mut out = String::new();
    walk(value, &mut out);
    out
}

/// `labels = "x"` (or `labels = x`), optionally `ORDER BY created ASC|DESC`: the label and
/// whether the newest comes first.
fn parse_label_jql(jql: &str) -> Option<(String, bool)> {
    let jql = jql.trim();
    let (clause, order) = match jql.to_ascii_lowercase().find(" order by ") {
        Some(at) => (&jql[..at], Some(jql[at + " order by ".len()..].trim().to_ascii_lowercase())),
        None => (jql, None),
    };
    let newest_first = match order.as_deref() {
        None | Some("created asc") | Some("created") => false,
        Some("created desc") => true,
        Some(_) => return None,
    };
    let (field, value) = clause.split_once('=')?;
    if !field.trim().eq_ignore_ascii_case("labels") {
        return None;
    }
    let value = value.trim();
    let label = if let Some(quoted) = value.strip_prefix('"').and_then(|v| v.strip_suffix('"')) {
        quoted.replace("\\\"", "\"").replace("\\\\", "\\")
    } else if !value.is_empty() && value.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') {
        value.to_owned()
    } else {
        return None;
    };
    Some((label, newest_first))
}

macro_rules! observe {
    ($state:expr, $req:expr, $body:expr) => {
        match $state.common().observe(&$req, &$body).await {
            Observed::Answer(response) => return response,
            Observed::Handle { lose_answer } => {
                if !$state.authorized(&$req) {
                    return unauthorized();
                }
                lose_answer
            }
        }
    };
}

/// A link to make with a new issue: its type and the other issue's key; `new_is_inward` when the
/// request named the other issue `outwardIssue`.
struct NewLink {
    link_type: &'static str,
    other: String,
    new_is_inward: bool,
}

/// The links a create's `update.issuelinks` asks for, checked as Jira does; a problem goes to
/// `problems` under the field's name.
fn links_to_create(
    state: &JiraState,
    update: &Value,
    problems: &mut serde_json::Map<String, Value>,
) -> Vec<NewLink> {
    let mut links = Vec::new();
    let Some(update) = update.as_object() else {
        if !update.is_null() {
            problems.insert("update".into(), json!("The update must be an object of field operations."));
        }
        return links;
    };
    for (field, operations) in update {
        if field != "issuelinks" {
            problems.insert(
                field.clone(),
                json!(format!(
                    "Field '{field}' cannot be set. It is not on the appropriate screen, or unknown."
                )),
            );
            continue;
        }
        let Some(operations) = operations.as_array() else {
            problems.insert("issuelinks".into(), json!("Field issuelinks must be an array of operations."));
            continue;
        };
        for operation in operations {
            let Some(add) =
                operation.get("add").filter(|_| operation.as_object().is_some_and(|o| o.len() == 1))
            else {
                problems.insert(
                    "issuelinks".into(),
                    json!("Field 'issuelinks' only supports the 'add' operation."),
                );
                continue;
            };
            let type_name = add.pointer("/type/name").and_then(Value::as_str);
            let type_id = add.pointer("/type/id").and_then(Value::as_str);
            let Some((_, link_type, _, _)) = LINK_TYPES.iter().find(|(id, name, _, _)| {
                type_name.is_some_and(|n| n == *name) || type_id.is_some_and(|i| i == *id)
            }) else {
                let named = type_name.or(type_id).unwrap_or("");
                problems.insert(
                    "issuelinks".into(),
                    json!(format!("No issue link type with name '{named}' found.")),
                );
                continue;
            };
            let (other, new_is_inward) = match (add.get("outwardIssue"), add.get("inwardIssue")) {
                (Some(outward), None) => (outward, true),
                (None, Some(inward)) => (inward, false),
                _ => {
                    problems.insert(
                        "issuelinks".into(),
                        json!("Specify either an inwardIssue or an outwardIssue for the issue link."),
                    );
                    continue;
                }
            };
            let Some(other) = state.issue_by_key_or_id(other) else {
                let named =
                    other.get("key").or_else(|| other.get("id")).and_then(Value::as_str).unwrap_or("");
                problems.insert(
                    "issuelinks".into(),
                    json!(format!("Issue '{named}' does not exist or you do not have permission to see it.")),
                );
                continue;
            };
            links.push(NewLink { link_type, other: other.key, new_is_inward });
        }
    }
    links
}

async fn create_issue(req: HttpRequest, body: web::Bytes, state: web::Data<JiraState>) -> HttpResponse {
    let armed = state.faults_at_next_create.lock().unwrap().take();
    if let Some(faults) = armed {
        state.common().set_faults(faults);
    }
    let lose_answer = observe!(state, req, body);
    let Ok(input) = serde_json::from_slice::<Value>(&body) else {
        return bad(
            &["Invalid request payload. Refer to the REST API documentation and try again."],
            json!({}),
        );
    };
    let fields = &input["fields"];
    let mut problems = serde_json::Map::new();
    if fields.pointer("/project/key").and_then(Value::as_str) != Some(state.project.as_str()) {
        problems.insert("project".into(), json!("valid project is required"));
    }
    let issue_type = fields.pointer("/issuetype/name").and_then(Value::as_str).unwrap_or("");
    if !ISSUE_TYPES.contains(&issue_type) {
        problems.insert("issuetype".into(), json!("Specify a valid issue type"));
    }
    let summary = fields.get("summary").and_then(Value::as_str).unwrap_or("");
    if summary.trim().is_empty() {
        problems.insert("summary".into(), json!("You must specify a summary of the issue."));
    } else if summary.chars().count() > 255 || summary.contains('\n') {
        problems.insert("summary".into(), json!("Summary must be less than 255 characters and on one line."));
    }
    let description = fields.get("description").cloned().unwrap_or(Value::Null);
    if !description.is_null() && !is_adf(&description) {
        problems.insert(
            "description".into(),
            json!("Operation value must be an Atlassian Document (see the Atlassian Document Format)"),
        );
    }
    let mut labels = Vec::new();
    match fields.get("labels") {
        None | Some(Value::Null) => {}
        Some(Value::Array(items)) => {
            for item in items {
                match item.as_str() {
                    Some(l) if !l.is_empty() && !l.contains(char::is_whitespace) && l.len() <= 255 => {
                        labels.push(l.to_owned())
                    }
                    _ => {
                        problems.insert("labels".into(), json!(format!("The label '{item}' is not valid.")));
                    }
                }
            }
        }
        Some(_) => {
            problems.insert("labels".into(), json!("Field labels must be an array of strings."));
        }
    }
    let links = links_to_create(&state, &input["update"], &mut problems);
    if !problems.is_empty() {
        return bad(&[], Value::Object(problems));
    }
    let issue = {
        let mut issues = state.issues.lock().unwrap();
        let n = {
            let mut created = state.created.lock().unwrap();
            *created += 1;
            *created
        };
        let issue = JiraIssue {
            id: (10_000 + n).to_string(),
            key: format!("{}-{n}", state.project),
            project: state.project.clone(),
            issue_type: issue_type.to_owned(),
            summary: summary.to_owned(),
            description,
            labels,
            status: "To Do".into(),
            comments: Vec::new(),
            created: Instant::now(),
        };
        // Checked above, and stored under the same lock as the issue: no read sees the issue
        // without its links.
        for link in &links {
            if link.new_is_inward {
                state.add_link(link.link_type, &issue.key, &link.other);
            } else {
                state.add_link(link.link_type, &link.other, &issue.key);
            }
        }
        issues.push(issue.clone());
        issue
    };
    let answer = json!({
        "id": issue.id,
        "key": issue.key,
        "self": format!("{}/rest/api/3/issue/{}", origin(&req), issue.id),
    });
    Common::answer(lose_answer, HttpResponse::Created().json(answer))
}

async fn get_issue(req: HttpRequest, body: web::Bytes, state: web::Data<JiraState>) -> HttpResponse {
    let lose_answer = observe!(state, req, body);
    let key = req.match_info().get("key").unwrap_or("");
    let Some(issue) = state.issue(key) else {
        return not_found();
    };
    let query = web::Query::<Vec<(String, String)>>::from_query(req.query_string())
        .map(|q| q.into_inner())
        .unwrap_or_default();
    let fields: Vec<&str> =
        query.iter().filter(|(name, _)| name == "fields").flat_map(|(_, value)| value.split(',')).collect();
    let asked = query.iter().any(|(name, _)| name == "fields");
    let with_links = wants_links(asked.then(|| fields.iter().copied()), true);
    Common::answer(lose_answer, HttpResponse::Ok().json(state.issue_json(&req, &issue, with_links)))
}

async fn add_comment(req: HttpRequest, body: web::Bytes, state: web::Data<JiraState>) -> HttpResponse {
    let lose_answer = observe!(state, req, body);
    let key = req.match_info().get("key").unwrap_or("").to_owned();
    let Ok(input) = serde_json::from_slice::<Value>(&body) else {
        return bad(
            &["Invalid request payload. Refer to the REST API documentation and try again."],
            json!({}),
        );
    };
    let comment = input.get("body").cloned().unwrap_or(Value::Null);
    if !is_adf(&comment) {
        return bad(&[], json!({"comment": "Comment body can not be empty!"}));
    }
    let id = {
        let mut issues = state.issues.lock().unwrap();
        let Some(issue) = issues.iter_mut().find(|i| i.key == key) else {
            return not_found();
        };
        issue.comments.push(comment.clone());
        format!("{}{}", issue.id, issue.comments.len())
    };
    let answer = json!({"id": id, "body": comment, "created": chrono::Utc::now().to_rfc3339()});
    Common::answer(lose_answer, HttpResponse::Created().json(answer))
}

async fn get_transitions(req: HttpRequest, body: web::Bytes, state: web::Data<JiraState>) -> HttpResponse {
    let lose_answer = observe!(state, req, body);
    let key = req.match_info().get("key").unwrap_or("");
    let Some(issue) = state.issue(key) else {
        return not_found();
    };
    let transitions: Vec<Value> = state
        .offered_transitions(&issue.status)
        .into_iter()
        .map(|(id, name, category)| {
            json!({"id": id, "name": name, "to": {"id": id, "name": name, "statusCategory": {"key": category}}})
        })
        .collect();
    Common::answer(
        lose_answer,
        HttpResponse::Ok().json(json!({"expand": "transitions", "transitions": transitions})),
    )
}

async fn do_transition(req: HttpRequest, body: web::Bytes, state: web::Data<JiraState>) -> HttpResponse {
    let lose_answer = observe!(state, req, body);
    let key = req.match_info().get("key").unwrap_or("").to_owned();
    let Ok(input) = serde_json::from_slice::<Value>(&body) else {
        return bad(
            &["Invalid request payload. Refer to the REST API documentation and try again."],
            json!({}),
        );
    };
    let wanted = input.pointer("/transition/id").and_then(Value::as_str).unwrap_or("").to_owned();
    {
        let mut issues = state.issues.lock().unwrap();
        let Some(issue) = issues.iter_mut().find(|i| i.key == key) else {
            return not_found();
        };
        let Some((_, target, _)) =
            state.offered_transitions(&issue.status).into_iter().find(|(id, _, _)| *id == wanted)
        else {
            let message = format!("Transition id '{wanted}' is not valid for this issue.");
            return bad(&[&message], json!({}));
        };
        issue.status = target.to_owned();
    }
    Common::answer(lose_answer, HttpResponse::NoContent().finish())
}

async fn search(req: HttpRequest, body: web::Bytes, state: web::Data<JiraState>) -> HttpResponse {
    let lose_answer = observe!(state, req, body);
    let Ok(input) = serde_json::from_slice::<Value>(&body) else {
        return bad(
            &["Invalid request payload. Refer to the REST API documentation and try again."],
            json!({}),
        );
    };
    let jql = input.get("jql").and_then(Value::as_str).unwrap_or("");
    let Some((label, newest_first)) = parse_label_jql(jql) else {
        let message = format!("Error in the JQL Query: unsupported or malformed query '{jql}'.");
        return bad(&[&message], json!({}));
    };
    let max = input.get("maxResults").and_then(Value::as_u64).unwrap_or(50).clamp(1, 5000) as usize;
    let mut found: Vec<JiraIssue> = state
        .issues()
        .into_iter()
        .filter(|i| i.labels.contains(&label) && i.created.elapsed() >= state.search_lag)
        .collect();
    if newest_first {
        found.reverse();
    }
    let with_links = wants_links(
        input.get("fields").and_then(Value::as_array).map(|f| f.iter().filter_map(Value::as_str)),
        false,
    );
    let issues: Vec<Value> = found.iter().take(max).map(|i| state.issue_json(&req, i, with_links)).collect();
    Common::answer(
        lose_answer,
        HttpResponse::Ok().json(json!({"issues": issues, "isLast": found.len() <= max})),
    )
}

async fn link_issues(req: HttpRequest, body: web::Bytes, state: web::Data<JiraState>) -> HttpResponse {
    let lose_answer = observe!(state, req, body);
    let Ok(input) = serde_json::from_slice::<Value>(&body) else {
        return bad(
            &["Invalid request payload. Refer to the REST API documentation and try again."],
            json!({}),
        );
    };
    let link_type = input.pointer("/type/name").and_then(Value::as_str).unwrap_or("");
    let Some((_, link_type, _, _)) = LINK_TYPES.iter().find(|(_, name, _, _)| *name == link_type) else {
        let message = format!("No issue link type with name '{link_type}' found.");
        return errors(actix_web::http::StatusCode::NOT_FOUND, &[&message], json!({}));
    };
    let inward = input.pointer("/inwardIssue/key").and_then(Value::as_str).unwrap_or("");
    let outward = input.pointer("/outwardIssue/key").and_then(Value::as_str).unwrap_or("");
    if state.issue(inward).is_none() || state.issue(outward).is_none() {
        return not_found();
    }
    state.add_link(link_type, inward, outward);
    Common::answer(lose_answer, HttpResponse::Created().finish())
}

impl Api for JiraState {
    fn common(&self) -> &Common {
        &self.common
    }

    fn configure(cfg: &mut web::ServiceConfig) {
        cfg.route("/rest/api/3/issue", web::post().to(create_issue))
            .route("/rest/api/3/issue/{key}", web::get().to(get_issue))
            .route("/rest/api/3/issue/{key}/comment", web::post().to(add_comment))
            .route("/rest/api/3/issue/{key}/transitions", web::get().to(get_transitions))
            .route("/rest/api/3/issue/{key}/transitions", web::post().to(do_transition))
            .route("/rest/api/3/search/jql", web::post().to(search))
            .route("/rest/api/3/issueLink", web::post().to(link_issues));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_jql_is_understood() {
        assert_eq!(parse_label_jql("labels = \"wbd-1\""), Some(("wbd-1".into(), false)));
        assert_eq!(parse_label_jql("labels = wbd-1 ORDER BY created DESC"), Some(("wbd-1".into(), true)));
        assert_eq!(parse_label_jql("project = OPS"), None);
        assert_eq!(parse_label_jql("labels = \"x\" ORDER BY priority"), None);
    }
}
