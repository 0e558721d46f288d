//! What request bodies share: JSON objects read as JSON Schema reads them ([`JsonObject`],
//! [`optional_json`]), and the display names several resources carry.

use actix_web::dev::Payload;
use actix_web::http::header;
use actix_web::{FromRequest, HttpRequest, web};
use futures_util::StreamExt as _;
use futures_util::future::LocalBoxFuture;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};
use utoipa::openapi::RefOr;
use utoipa::openapi::schema::{Object, ObjectBuilder, Schema, Type};
use utoipa::{PartialSchema, ToSchema};

use crate::error::{ApiError, ApiResult, ErrorCode};

/// The largest JSON body, in bytes (the app's `JsonConfig`; [`OptionalBody`]).
pub const MAX_JSON_BYTES: usize = 64 * 1024;

/// The raw body of an operation whose JSON body is optional (read with [`optional_json`]), at
/// most [`MAX_JSON_BYTES`]: larger is `413 payload_too_large`, a problem like every other answer
/// (`web::Bytes` answers its own plain-text 413, and only past the 4 MiB of a batch).
pub struct OptionalBody(pub web::Bytes);

impl FromRequest for OptionalBody {
    type Error = actix_web::Error;
    type Future = LocalBoxFuture<'static, Result<Self, Self::Error>>;

    fn from_request(_req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let mut payload = payload.take();
        Box::pin(async move {
            let mut body = web::BytesMut::new();
            while let Some(chunk) = payload.next().await {
                let chunk = chunk.map_err(|e| ApiError::new(ErrorCode::MalformedJson, e.to_string()))?;
                if body.len() + chunk.len() > MAX_JSON_BYTES {
                    let detail = format!("the body may be at most {MAX_JSON_BYTES} bytes");
                    return Err(ApiError::new(ErrorCode::PayloadTooLarge, detail).into());
                }
                body.extend_from_slice(&chunk);
            }
            Ok(OptionalBody(body.freeze()))
        })
    }
}

/// A JSON body that must be an object, read into `T` the way the OpenAPI document (JSON Schema)
/// describes it, which `web::Json<T>` alone does not:
///
/// - an array is refused (serde would read a struct from an array of its fields);
/// - a number without a fraction is an integer (`300.0` is `300`).
///
/// Size, content type and syntax are checked by `web::Json` (the app's `JsonConfig`: 413, 415,
/// 400); a body of the wrong shape is `400 malformed_json`.
pub struct JsonObject<T>(pub T);

impl<T> JsonObject<T> {
    pub fn into_inner(self) -> T {
        self.0
    }
}

impl<T> std::ops::Deref for JsonObject<T> {
    type Target = T;

    fn deref(&self) -> &T {
        &self.0
    }
}

impl<T: DeserializeOwned + 'static> FromRequest for JsonObject<T> {
    type Error = actix_web::Error;
    type Future = LocalBoxFuture<'static, Result<Self, Self::Error>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let body = web::Json::<Map<String, Value>>::from_request(req, payload);
        Box::pin(async move {
            let web::Json(object) = body.await?;
            Ok(JsonObject(read_object(object)?))
        })
    }
}

/// `object` as `T`, whole numbers as integers.
fn read_object<T: DeserializeOwned>(mut object: Map<String, Value>) -> ApiResult<T> {
    object.values_mut().for_each(whole_numbers_as_integers);
    serde_json::from_value(Value::Object(object))
        .map_err(|e| ApiError::new(ErrorCode::MalformedJson, e.to_string()))
}

/// Turns every number without a fraction (`300.0`, `1e3`) into an integer, as JSON Schema counts
/// it one.
fn whole_numbers_as_integers(value: &mut Value) {
    match value {
        Value::Number(n) if !n.is_i64() && !n.is_u64() => {
            let whole = n.as_f64().filter(|f| f.fract() == 0.0);
            // Within ±2^53 a float is the integer it spells.
            if let Some(f) = whole.filter(|f| f.abs() <= 9_007_199_254_740_992.0) {
                #[allow(clippy::cast_possible_truncation)]
                let integer = f as i64;
                *value = Value::from(integer);
            }
        }
        Value::Array(items) => items.iter_mut().for_each(whole_numbers_as_integers),
        Value::Object(fields) => fields.values_mut().for_each(whole_numbers_as_integers),
        _ => {}
    }
}

/// Reads an optional JSON body: nothing (or only whitespace) and `null` are `T::default()`;
/// anything else must be a JSON object that fits `T` (read as [`JsonObject`] reads it). A
/// function the handler calls (not an extractor), so that who is calling and what they may do
/// are checked before the body is.
pub fn optional_json<T: DeserializeOwned + Default>(req: &HttpRequest, body: &[u8]) -> ApiResult<T> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    let content_type = req.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    let mime = content_type.split(';').next().unwrap_or("").trim();
    if !mime.eq_ignore_ascii_case("application/json") {
        return Err(ApiError::new(ErrorCode::UnsupportedMediaType, "send Content-Type: application/json"));
    }
    match serde_json::from_slice::<Option<Map<String, Value>>>(body) {
        Ok(Some(object)) => read_object(object),
        Ok(None) => Ok(T::default()),
        Err(e) => Err(ApiError::new(ErrorCode::MalformedJson, e.to_string())),
    }
}

/// The longest display name, in characters.
pub const MAX_DISPLAY_NAME_CHARS: usize = 200;

/// Text that is not only whitespace and has no control characters (`char::is_control`: U+0000 to
/// U+001F and U+007F to U+009F), as an ECMA-262 regular expression for the OpenAPI document.
pub const NAME_PATTERN: &str =
    r"^[^\u0000-\u001f\u007f-\u009f]*[^\s\u0000-\u001f\u007f-\u009f][^\u0000-\u001f\u007f-\u009f]*$";

/// A display name (of a key, tenant, collector, host …): trimmed, 1 to 200 characters, no
/// control characters; refused as `validation_failed` naming `field`. Its schema is
/// [`DisplayName`].
pub fn display_name(field: &str, name: &str) -> ApiResult<String> {
    // The length as sent (blanks around included), as the schema's maxLength counts it.
    let too_long = name.chars().count() > MAX_DISPLAY_NAME_CHARS;
    // Blank as the schema's pattern (`\s`, ECMAScript's) counts it: Unicode whitespace and the
    // zero-width no-break space U+FEFF, which Rust's `trim` keeps.
    let name = name.trim_matches(|c: char| c.is_whitespace() || c == '\u{feff}');
    if name.is_empty() || too_long {
        return Err(ApiError::new(
            ErrorCode::Validation,
            format!("`{field}` must be 1 to {MAX_DISPLAY_NAME_CHARS} characters"),
        ));
    }
    if name.chars().any(char::is_control) {
        return Err(ApiError::new(
            ErrorCode::Validation,
            format!("`{field}` must not contain control characters"),
        ));
    }
    Ok(name.to_owned())
}

/// The schema of what [`display_name`] accepts, for fields to name with
/// `#[schema(value_type = DisplayName)]`.
pub struct DisplayName;

impl PartialSchema for DisplayName {
    fn schema() -> RefOr<Schema> {
        name_schema(MAX_DISPLAY_NAME_CHARS).into()
    }
}

/// The schema of a name of 1 to `max` characters, not only whitespace, without control
/// characters.
pub fn name_schema(max: usize) -> Object {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .description(Some(format!("1 to {max} characters, not only whitespace, no control characters")))
        .min_length(Some(1))
        .max_length(Some(max))
        .pattern(Some(NAME_PATTERN))
        .build()
}

impl ToSchema for DisplayName {}

#[cfg(test)]
mod tests {
    use actix_web::test::TestRequest;
    use serde::Deserialize;

    use super::*;

    #[test]
    fn a_name_of_only_blanks_is_refused_whatever_the_blank() {
        for blank in ["", "   ", "\u{feff}", " \u{feff}\u{3000} "] {
            assert!(display_name("name", blank).is_err(), "{blank:?} was accepted");
        }
        assert_eq!(display_name("name", "\u{feff} Contoso ").ok().as_deref(), Some("Contoso"));
    }

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
        let null: Note = optional_json(&req, b"null").expect("null is no body");
        assert!(null.note.is_none() && null.version.is_none());
        let whole: Note = optional_json(&req, br#"{"version":3.0}"#).expect("3.0 is an integer");
        assert_eq!(whole.version, Some(3));
        let fraction = optional_json::<Note>(&req, br#"{"version":3.5}"#).expect_err("3.5 is not");
        assert_eq!(fraction.code, ErrorCode::MalformedJson);
        let array = optional_json::<Note>(&req, br#"["on it", 3]"#).expect_err("not an object");
        assert_eq!(array.code, ErrorCode::MalformedJson);
        let unknown = optional_json::<Note>(&req, br#"{"notes":"x"}"#).expect_err("unknown field");
        assert_eq!(unknown.code, ErrorCode::MalformedJson);
    }
}
