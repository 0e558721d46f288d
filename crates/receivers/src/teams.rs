//! A Teams Workflows flow triggered by "When a Teams webhook request is received" that posts
//! each Adaptive Card attachment to a channel (the "Post to a channel when a webhook request is
//! received" template).
//!
//! The trigger answers like Logic Apps / Power Automate do: `202 Accepted` (empty) as soon as
//! the run is queued; `401` with `DirectApiAuthorizationRequired` without `sig` or
//! `DirectApiInvalidAuthorizationSignature` with a wrong one; `404 WorkflowNotFound` for another
//! flow id; `400 InvalidRequestContent` for a body that is not JSON. Posting happens in the run,
//! after the answer: a message that is not `{"type": "message", "attachments": [Adaptive
//! Card…]}`, or a card Teams cannot render (not `AdaptiveCard`, version above 1.5, unknown
//! elements, TextBlock without text, FactSet without facts, OpenUrl without url), makes a
//! failed run ([`TeamsState::failed_runs`]) and posts nothing, as in Teams.

use std::sync::Mutex;

use actix_web::{HttpRequest, HttpResponse, web};
use serde_json::{Value, json};

use crate::{Api, Common, Observed};

#[derive(Debug)]
pub struct TeamsState {
    common: Common,
    workflow_id: String,
    signature: String,
    posted: Mutex<Vec<Value>>,
    failed_runs: Mutex<Vec<String>>,
}

impl TeamsState {
    /// The flow `workflow_id` whose URL carries `sig=signature`.
    pub fn new(workflow_id: &str, signature: &str) -> TeamsState {
        TeamsState {
            common: Common::default(),
            workflow_id: workflow_id.to_owned(),
            signature: signature.to_owned(),
            posted: Mutex::new(Vec::new()),
            failed_runs: Mutex::new(Vec::new()),
        }
    }

    /// The path and query of the flow's URL, as the trigger shows it.
    pub fn path_and_query(&self) -> String {
        format!(
            "/workflows/{}/triggers/manual/paths/invoke?api-version=2016-06-01&sp=%2Ftriggers%2Fmanual%2Frun&sv=1.0&sig={}",
            self.workflow_id, self.signature
        )
    }

    /// The cards (attachment `content`) posted to the channel, oldest first.
    pub fn posted(&self) -> Vec<Value> {
        self.posted.lock().unwrap().clone()
    }

    /// Why runs failed, oldest first.
    pub fn failed_runs(&self) -> Vec<String> {
        self.failed_runs.lock().unwrap().clone()
    }
}

fn error(status: actix_web::http::StatusCode, code: &str, message: &str) -> HttpResponse {
    HttpResponse::build(status).json(json!({"error": {"code": code, "message": message}}))
}

fn element_ok(element: &Value) -> Result<(), String> {
    let kind = element.get("type").and_then(Value::as_str).unwrap_or("");
    let has_str = |key: &str| element.get(key).and_then(Value::as_str).is_some_and(|s| !s.is_empty());
    match kind {
        "TextBlock" if has_str("text") => Ok(()),
        "TextBlock" => Err("TextBlock without text".into()),
        "FactSet" => {
            let facts = element.get("facts").and_then(Value::as_array).filter(|f| !f.is_empty());
            let ok = facts.is_some_and(|facts| {
                facts.iter().all(|f| {
                    f.get("title").is_some_and(Value::is_string)
                        && f.get("value").is_some_and(Value::is_string)
                })
            });
            if ok { Ok(()) } else { Err("FactSet needs facts with string title and value".into()) }
        }
        "Image" if has_str("url") => Ok(()),
        "Container" => element
            .get("items")
            .and_then(Value::as_array)
            .ok_or_else(|| "Container without items".to_owned())?
            .iter()
            .try_for_each(element_ok),
        "ColumnSet" | "ActionSet" | "RichTextBlock" | "Table" => Ok(()),
        other => Err(format!("unknown or incomplete element type {other:?}")),
    }
}

/// What Teams would refuse in the run's posting step.
fn card_ok(message: &Value) -> Result<Vec<Value>, String> {
    if message.get("type").and_then(Value::as_str) != Some("message") {
        return Err("the body's type is not \"message\"".into());
    }
    let attachments = message
        .get("attachments")
        .and_then(Value::as_array)
        .filter(|a| !a.is_empty())
        .ok_or_else(|| "no attachments".to_owned())?;
    let mut cards = Vec::new();
    for attachment in attachments {
        if attachment.get("contentType").and_then(Value::as_str)
            != Some("application/vnd.microsoft.card.adaptive")
        {
            return Err("attachment is not an Adaptive Card (Workflows do not post MessageCards)".into());
        }
        let card = attachment.get("content").ok_or_else(|| "attachment without content".to_owned())?;
        if card.get("type").and_then(Value::as_str) != Some("AdaptiveCard") {
            return Err("content.type is not AdaptiveCard".into());
        }
        let version = card.get("version").and_then(Value::as_str).unwrap_or("");
        let (major, minor) = version.split_once('.').unwrap_or(("", ""));
        if major != "1" || !minor.parse::<u8>().is_ok_and(|m| m <= 5) {
            return Err(format!("Adaptive Card version {version:?} is not supported by Teams"));
        }
        card.get("body")
            .and_then(Value::as_array)
            .ok_or_else(|| "card without body".to_owned())?
            .iter()
            .try_for_each(element_ok)?;
        for action in card.get("actions").and_then(Value::as_array).into_iter().flatten() {
            match action.get("type").and_then(Value::as_str) {
                Some("Action.OpenUrl")
                    if action.get("url").and_then(Value::as_str).is_some_and(|u| !u.is_empty()) => {}
                Some("Action.Submit" | "Action.ShowCard" | "Action.ToggleVisibility" | "Action.Execute") => {}
                other => return Err(format!("action {other:?} is incomplete or unknown")),
            }
        }
        cards.push(card.clone());
    }
    Ok(cards)
}

async fn invoke(req: HttpRequest, body: web::Bytes, state: web::Data<TeamsState>) -> HttpResponse {
    let lose_answer = match state.common().observe(&req, &body).await {
        Observed::Answer(response) => return response,
        Observed::Handle { lose_answer } => lose_answer,
    };
    use actix_web::http::StatusCode;
    if req.match_info().get("id") != Some(state.workflow_id.as_str()) {
        return error(StatusCode::NOT_FOUND, "WorkflowNotFound", "The workflow could not be found.");
    }
    let params = web::Query::<Vec<(String, String)>>::from_query(req.query_string())
        .map(|q| q.into_inner())
        .unwrap_or_default();
    match params.iter().find(|(k, _)| k == "sig").map(|(_, v)| v.as_str()) {
        None => {
            return error(
                StatusCode::UNAUTHORIZED,
                "DirectApiAuthorizationRequired",
                "The request must be authenticated only by Shared Access scheme.",
            );
        }
        Some(sig) if sig != state.signature => {
            return error(
                StatusCode::UNAUTHORIZED,
                "DirectApiInvalidAuthorizationSignature",
                "The provided authorization signature is not valid for this request.",
            );
        }
        Some(_) => {}
    }
    let Ok(message) = serde_json::from_slice::<Value>(&body) else {
        return error(
            StatusCode::BAD_REQUEST,
            "InvalidRequestContent",
            "The input body for trigger 'manual' of type 'Request' must be of type JSON.",
        );
    };
    // The run, after the trigger has accepted the request.
    match card_ok(&message) {
        Ok(cards) => state.posted.lock().unwrap().extend(cards),
        Err(reason) => state.failed_runs.lock().unwrap().push(reason),
    }
    Common::answer(lose_answer, HttpResponse::Accepted().finish())
}

impl Api for TeamsState {
    fn common(&self) -> &Common {
        &self.common
    }

    fn configure(cfg: &mut web::ServiceConfig) {
        cfg.route("/workflows/{id}/triggers/manual/paths/invoke", web::post().to(invoke)).route(
            "/powerautomate/automations/direct/workflows/{id}/triggers/manual/paths/invoke",
            web::post().to(invoke),
        );
    }
}
