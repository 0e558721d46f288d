//! What the console answers when something cannot be done: an HTML page that says what and why
//! (the REST API's problem codes, in words), never a problem document; signed out, the sign-in
//! page.

use std::fmt;

use actix_web::http::StatusCode;
use actix_web::http::header;
use actix_web::{HttpResponse, ResponseError};
use askama::Template;
use wbd_rules::Lang;

use super::page::{Chrome, builder, see_other};
use crate::error::{ApiError, ErrorCode};

pub enum ConsoleError {
    /// No session, or one that ended: to the sign-in page.
    SignedOut,
    /// A page that explains why nothing was done.
    Refused { status: StatusCode, title: &'static str, detail: String, retry_after: Option<u64> },
}

impl ConsoleError {
    pub fn not_found(what: &str) -> ConsoleError {
        ConsoleError::Refused {
            status: StatusCode::NOT_FOUND,
            title: "Not found",
            detail: format!("There is no such {what} in your organisation."),
            retry_after: None,
        }
    }

    pub fn bad_request(detail: impl Into<String>) -> ConsoleError {
        ConsoleError::Refused {
            status: StatusCode::BAD_REQUEST,
            title: "This request cannot be read",
            detail: detail.into(),
            retry_after: None,
        }
    }

    /// A write that failed the CSRF checks.
    pub fn forged() -> ConsoleError {
        ConsoleError::Refused {
            status: StatusCode::FORBIDDEN,
            title: "This form was not sent from this console",
            detail: "Nothing was changed. The form came from another site, or from a page of an earlier \
                     sign-in. Open the page again and repeat what you did."
                .to_owned(),
            retry_after: None,
        }
    }

    pub fn internal(cause: impl Into<anyhow::Error>) -> ConsoleError {
        ConsoleError::from(ApiError::internal(cause))
    }
}

impl From<ApiError> for ConsoleError {
    fn from(e: ApiError) -> Self {
        e.log_if_unexpected();
        let title = match e.code {
            ErrorCode::Forbidden => "Your role does not allow this",
            ErrorCode::NotFound => "Not found",
            ErrorCode::FindingChanged => "The finding changed meanwhile",
            ErrorCode::InvalidTransition => "Not possible in the finding's state",
            ErrorCode::RetestUnavailable => "Nothing can re-test this finding now",
            ErrorCode::Validation => "Please check what you entered",
            ErrorCode::RateLimited => "Too many requests",
            ErrorCode::Internal => "Something went wrong",
            other => other.title(),
        };
        let detail = match e.code {
            ErrorCode::Internal => {
                "Nothing was changed. The error is in the server's log; try again in a moment.".to_owned()
            }
            _ => e.to_string(),
        };
        ConsoleError::Refused { status: e.code.status(), title, detail, retry_after: e.retry_after }
    }
}

impl From<wbd_store::StoreError> for ConsoleError {
    fn from(e: wbd_store::StoreError) -> Self {
        ConsoleError::from(ApiError::from(e))
    }
}

impl fmt::Debug for ConsoleError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConsoleError::SignedOut => f.write_str("signed out"),
            ConsoleError::Refused { status, detail, .. } => write!(f, "{status}: {detail}"),
        }
    }
}

impl fmt::Display for ConsoleError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

#[derive(Template)]
#[template(path = "console/error.html")]
struct ErrorPage<'a> {
    chrome: Chrome,
    title: &'a str,
    detail: &'a str,
    status: u16,
}

impl ResponseError for ConsoleError {
    fn status_code(&self) -> StatusCode {
        match self {
            ConsoleError::SignedOut => StatusCode::SEE_OTHER,
            ConsoleError::Refused { status, .. } => *status,
        }
    }

    fn error_response(&self) -> HttpResponse {
        match self {
            ConsoleError::SignedOut => see_other("/sign-in").finish(),
            ConsoleError::Refused { status, title, detail, retry_after } => {
                let mut response = builder(*status);
                if let Some(secs) = retry_after {
                    response.insert_header((header::RETRY_AFTER, secs.to_string()));
                }
                let page = ErrorPage {
                    chrome: Chrome::new("/", Lang::En, None),
                    title,
                    detail,
                    status: status.as_u16(),
                };
                match page.render() {
                    Ok(body) => response.content_type("text/html; charset=utf-8").body(body),
                    Err(e) => {
                        tracing::error!(error = %e, "rendering the console's error page failed");
                        response.content_type("text/plain; charset=utf-8").body(format!("{title}: {detail}"))
                    }
                }
            }
        }
    }
}
