//! A generic webhook endpoint: accepts a POST on any path and answers `204 No Content` (or the
//! status it is told to answer with).
//!
//! It does not verify signatures: tests do that with an independent implementation, from the
//! recorded headers and body, so a bug shared by sender and receiver cannot hide.

use std::sync::Mutex;

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};

use crate::{Api, Common, Observed, Recorded};

#[derive(Debug)]
pub struct WebhookReceiver {
    common: Common,
    answer_status: Mutex<u16>,
    deliveries: Mutex<Vec<Recorded>>,
}

impl Default for WebhookReceiver {
    fn default() -> Self {
        WebhookReceiver::new()
    }
}

impl WebhookReceiver {
    /// An endpoint that accepts everything with `204 No Content`.
    pub fn new() -> WebhookReceiver {
        WebhookReceiver {
            common: Common::default(),
            answer_status: Mutex::new(204),
            deliveries: Mutex::default(),
        }
    }

    /// Answers every accepted delivery with `status` (e.g. 200, or 410 to ask the sender to stop).
    pub fn with_answer_status(self, status: u16) -> WebhookReceiver {
        self.set_answer_status(status);
        self
    }

    pub fn set_answer_status(&self, status: u16) {
        *self.answer_status.lock().unwrap() = status;
    }

    /// The deliveries that were handled (not those answered by an injected fault), in order.
    pub fn deliveries(&self) -> Vec<Recorded> {
        self.deliveries.lock().unwrap().clone()
    }
}

async fn deliver(req: HttpRequest, body: web::Bytes, state: web::Data<WebhookReceiver>) -> HttpResponse {
    let lose_answer = match state.common.observe(&req, &body).await {
        Observed::Answer(answer) => return answer,
        Observed::Handle { lose_answer } => lose_answer,
    };
    // Built here rather than taken from the request log, whose last entry may be another
    // request's when deliveries arrive concurrently.
    let delivery = Recorded {
        at: chrono::Utc::now(),
        method: req.method().to_string(),
        path: req.path().to_owned(),
        query: req.query_string().to_owned(),
        headers: req
            .headers()
            .iter()
            .map(|(n, v)| (n.as_str().to_ascii_lowercase(), v.to_str().unwrap_or("").to_owned()))
            .collect(),
        body: body.to_vec(),
    };
    state.deliveries.lock().unwrap().push(delivery);
    let status = StatusCode::from_u16(*state.answer_status.lock().unwrap()).unwrap_or(StatusCode::NO_CONTENT);
    Common::answer(lose_answer, HttpResponse::build(status).finish())
}

impl Api for WebhookReceiver {
    fn common(&self) -> &Common {
        &self.common
    }

    fn configure(cfg: &mut web::ServiceConfig) {
        cfg.route("/{path:.*}", web::post().to(deliver));
    }
}
