//! What request bodies share: optional JSON bodies, and the display names several resources
//! carry.

use actix_web::HttpRequest;
use actix_web::http::header;
use serde::de::DeserializeOwned;

use crate::error::{ApiError, ApiResult, ErrorCode};

/// Reads an optional JSON body: nothing (or only whitespace) is `T::default()`; anything else
/// must be JSON that fits `T`. A function the handler calls (not an extractor), so that who is
/// calling and what they may do are checked before the body is.
pub fn optional_json<T: DeserializeOwned + Default>(req: &HttpRequest, body: &[u8]) -> ApiResult<T> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    let content_type = req.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    let mime = content_type.split(';').next().unwrap_or("").trim();
    if !mime.eq_ignore_ascii_case("application/json") {
        return Err(ApiError::new(ErrorCode::UnsupportedMediaType, "send Content-Type: application/json"));
    }
    serde_json::from_slice(body).map_err(|e| ApiError::new(ErrorCode::MalformedJson, e.to_string()))
}

/// A display name (of a key, tenant, collector, host …): trimmed, 1 to 200 characters, no
/// control characters; refused as `validation_failed` naming `field`.
pub fn display_name(field: &str, name: &str) -> ApiResult<String> {
    let name = name.trim();
    if name.is_empty() || name.chars().count() > 200 {
        return Err(ApiError::new(ErrorCode::Validation, format!("`{field}` must be 1 to 200 characters")));
    }
    if name.chars().any(char::is_control) {
        return Err(ApiError::new(
            ErrorCode::Validation,
            format!("`{field}` must not contain control characters"),
        ));
    }
    Ok(name.to_owned())
}

#[cfg(test)]
mod tests {
    use actix_web::test::TestRequest;
    use serde::Deserialize;

    use super::*;

    #[derive(Debug, Default, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Note {
        note: Option<String>,
        version: Option<i64>,
    }

    #[test]
    fn an_empty_optional_body_is_the_default_and_anything_else_must_be_json() {
        let req = TestRequest::default().to_http_request();
        let empty: Note = optional_json(&req, b"  ").expect("empty is fine");
        assert!(empty.note.is_none() && empty.version.is_none());
        let not_json = optional_json::<Note>(&req, b"{}").expect_err("no content type");
        assert_eq!(not_json.code, ErrorCode::UnsupportedMediaType);
        let req =
            TestRequest::default().insert_header(("content-type", "application/json")).to_http_request();
        let parsed: Note = optional_json(&req, br#"{"note":"on it","version":3}"#).expect("json");
        assert_eq!((parsed.note.as_deref(), parsed.version), (Some("on it"), Some(3)));
        let unknown = optional_json::<Note>(&req, br#"{"notes":"x"}"#).expect_err("unknown field");
        assert_eq!(unknown.code, ErrorCode::MalformedJson);
    }
}
