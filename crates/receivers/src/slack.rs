//! Slack incoming webhooks (`POST /services/T…/B…/<secret>`).
//!
//! Answers as Slack does, in text/plain: `200 ok`; `404 no_service` for a webhook that does not
//! exist (unknown team or bot id); `403 invalid_token` for a wrong secret; `410
//! channel_is_archived` once the channel is archived ([`SlackState::archive_channel`]);
//! `400 invalid_payload` for a body that is not a JSON object, `400 no_text` without `text` or
//! `blocks`, `400 invalid_blocks` for Block Kit that breaks Slack's limits (50 blocks; header
//! plain text ≤ 150; section text ≤ 3,000 or 1–10 fields ≤ 2,000; button text ≤ 75 and URL ≤
//! 3,000; context 1–10 elements).

use std::sync::Mutex;

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use serde_json::Value;

use crate::{Api, Common, Observed};

#[derive(Debug, Clone)]
pub struct SlackMessage {
    pub text: Option<String>,
    pub blocks: Vec<Value>,
}

impl SlackMessage {
    /// Every text of the message (fallback, block texts, fields, buttons and their URLs),
    /// one per line, for assertions.
    pub fn all_text(&self) -> String {
        fn collect(value: &Value, out: &mut Vec<String>) {
            match value {
                Value::String(s) => out.push(s.clone()),
                Value::Array(items) => items.iter().for_each(|i| collect(i, out)),
                Value::Object(map) => {
                    for (key, v) in map {
                        if matches!(key.as_str(), "text" | "url" | "fields" | "elements") {
                            collect(v, out);
                        }
                    }
                }
                _ => {}
            }
        }
        let mut out: Vec<String> = self.text.iter().cloned().collect();
        self.blocks.iter().for_each(|b| collect(b, &mut out));
        out.join("\n")
    }
}

#[derive(Debug)]
pub struct SlackState {
    common: Common,
    team: String,
    bot: String,
    secret: String,
    archived: Mutex<bool>,
    messages: Mutex<Vec<SlackMessage>>,
}

impl SlackState {
    /// One webhook, `/services/{team}/{bot}/{secret}`.
    pub fn new(team: &str, bot: &str, secret: &str) -> SlackState {
        SlackState {
            common: Common::default(),
            team: team.to_owned(),
            bot: bot.to_owned(),
            secret: secret.to_owned(),
            archived: Mutex::new(false),
            messages: Mutex::new(Vec::new()),
        }
    }

    /// The webhook's path.
    pub fn path(&self) -> String {
        format!("/services/{}/{}/{}", self.team, self.bot, self.secret)
    }

    pub fn archive_channel(&self) {
        *self.archived.lock().unwrap() = true;
    }

    /// The messages posted to the channel, oldest first.
    pub fn messages(&self) -> Vec<SlackMessage> {
        self.messages.lock().unwrap().clone()
    }
}

fn answer(status: StatusCode, text: &str) -> HttpResponse {
    HttpResponse::build(status).content_type("text/plain; charset=utf-8").body(text.to_owned())
}

fn text_len(value: &Value) -> usize {
    value.get("text").and_then(Value::as_str).map_or(0, |s| s.chars().count())
}

fn text_ok(object: &Value, kinds: &[&str], max: usize) -> bool {
    let kind = object.get("type").and_then(Value::as_str).unwrap_or("");
    kinds.contains(&kind) && (1..=max).contains(&text_len(object))
}

/// Whether `blocks` keeps Block Kit's rules as far as Slack checks them on post.
fn blocks_ok(blocks: &[Value]) -> bool {
    blocks.len() <= 50
        && blocks.iter().all(|block| match block.get("type").and_then(Value::as_str) {
            Some("header") => block.get("text").is_some_and(|t| text_ok(t, &["plain_text"], 150)),
            Some("section") => {
                let text = block.get("text").map(|t| text_ok(t, &["plain_text", "mrkdwn"], 3000));
                let fields = block.get("fields").map(|f| {
                    f.as_array().is_some_and(|f| {
                        (1..=10).contains(&f.len())
                            && f.iter().all(|x| text_ok(x, &["plain_text", "mrkdwn"], 2000))
                    })
                });
                match (text, fields) {
                    (None, None) => false,
                    (t, f) => t.unwrap_or(true) && f.unwrap_or(true),
                }
            }
            Some("context") => block.get("elements").and_then(Value::as_array).is_some_and(|e| {
                (1..=10).contains(&e.len()) && e.iter().all(|x| text_ok(x, &["plain_text", "mrkdwn"], 3000))
            }),
            Some("actions") => block.get("elements").and_then(Value::as_array).is_some_and(|e| {
                (1..=25).contains(&e.len())
                    && e.iter().all(|x| {
                        x.get("type").and_then(Value::as_str) == Some("button")
                            && x.get("text").is_some_and(|t| text_ok(t, &["plain_text"], 75))
                            && x.get("url")
                                .is_none_or(|u| u.as_str().is_some_and(|u| (1..=3000).contains(&u.len())))
                    })
            }),
            Some("divider") => true,
            _ => false,
        })
}

async fn post(req: HttpRequest, body: web::Bytes, state: web::Data<SlackState>) -> HttpResponse {
    let lose_answer = match state.common().observe(&req, &body).await {
        Observed::Answer(response) => return response,
        Observed::Handle { lose_answer } => lose_answer,
    };
    let info = req.match_info();
    if info.get("team") != Some(state.team.as_str()) || info.get("bot") != Some(state.bot.as_str()) {
        return answer(StatusCode::NOT_FOUND, "no_service");
    }
    if info.get("secret") != Some(state.secret.as_str()) {
        return answer(StatusCode::FORBIDDEN, "invalid_token");
    }
    if *state.archived.lock().unwrap() {
        return answer(StatusCode::GONE, "channel_is_archived");
    }
    let Ok(Value::Object(message)) = serde_json::from_slice::<Value>(&body) else {
        return answer(StatusCode::BAD_REQUEST, "invalid_payload");
    };
    let text =
        message.get("text").and_then(Value::as_str).filter(|t| !t.trim().is_empty()).map(str::to_owned);
    let blocks = match message.get("blocks") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(blocks)) => blocks.clone(),
        Some(_) => return answer(StatusCode::BAD_REQUEST, "invalid_blocks_format"),
    };
    if text.is_none() && blocks.is_empty() {
        return answer(StatusCode::BAD_REQUEST, "no_text");
    }
    if !blocks_ok(&blocks) {
        return answer(StatusCode::BAD_REQUEST, "invalid_blocks");
    }
    state.messages.lock().unwrap().push(SlackMessage { text, blocks });
    Common::answer(lose_answer, answer(StatusCode::OK, "ok"))
}

impl Api for SlackState {
    fn common(&self) -> &Common {
        &self.common
    }

    fn configure(cfg: &mut web::ServiceConfig) {
        cfg.route("/services/{team}/{bot}/{secret}", web::post().to(post));
    }
}
