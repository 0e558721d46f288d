//! Query parameters, typed: each value is parsed by the `web::Query` extractor into a type that
//! can only hold an acceptable value, and a bad one is refused there — `400 invalid_parameter`
//! with a `detail` that names the parameter (see `error::query_error`) — before a handler runs.
//! [`query_value!`] declares such a type; the ones several resources share are here (paging in
//! `paging`), the others beside their resource.

use actix_web::HttpRequest;
use actix_web::http::header;
use serde::Deserialize;
use utoipa::IntoParams;
use uuid::Uuid;
use wbd_rules::Lang;
use wbd_store::TenantId;

/// Declares a query value type: `Name(Inner)` read from the parameter's text with `parse`
/// (`Option<Inner>`), and refused with `refusal`, which names the parameter.
macro_rules! query_value {
    ($(#[$doc:meta])* $name:ident($inner:ty), |$text:ident| $parse:expr, $refusal:expr $(,)?) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
        #[serde(try_from = "String")]
        pub struct $name(pub $inner);

        impl TryFrom<String> for $name {
            type Error = String;

            fn try_from($text: String) -> Result<Self, String> {
                let parsed: Option<$inner> = $parse;
                parsed.map($name).ok_or_else(|| $refusal.to_string())
            }
        }
    };
}
pub(crate) use query_value;

query_value!(
    /// `tenant_id`: one tenant of the caller's organisation.
    TenantFilter(TenantId),
    |text| Uuid::parse_str(&text).ok().map(TenantId),
    "`tenant_id` must be a tenant id (a UUID)",
);

/// `lang`: a language tag. One the pack does not ship is no error: the answer falls back to
/// `Accept-Language`.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(from = "String")]
pub struct LangTag(Option<Lang>);

impl From<String> for LangTag {
    fn from(tag: String) -> Self {
        LangTag(Lang::from_tag(&tag))
    }
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct LangQuery {
    /// `en`, `pl` or `uk`; overrides `Accept-Language`.
    #[param(value_type = Option<String>)]
    pub lang: Option<LangTag>,
}

/// The language of a response: `?lang=` when it names a shipped language, else the best match
/// of `Accept-Language`, else English.
pub fn request_lang(req: &HttpRequest, asked: Option<LangTag>) -> Lang {
    if let Some(LangTag(Some(lang))) = asked {
        return lang;
    }
    req.headers().get(header::ACCEPT_LANGUAGE).and_then(|v| v.to_str().ok()).map_or(Lang::En, Lang::negotiate)
}

#[cfg(test)]
mod tests {
    use actix_web::web;

    use super::*;
    use crate::error::query_detail;
    use crate::paging::{DEFAULT_PAGE, PageCursor, PageSize};

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Listing {
        limit: Option<PageSize>,
        cursor: Option<PageCursor>,
        tenant_id: Option<TenantFilter>,
        lang: Option<LangTag>,
    }

    fn parse(query: &str) -> Result<Listing, String> {
        web::Query::<Listing>::from_query(query).map(web::Query::into_inner).map_err(|e| query_detail(&e))
    }

    #[test]
    fn a_bad_value_is_refused_naming_its_parameter() {
        assert_eq!(parse("limit=0").unwrap_err(), "`limit` must be between 1 and 200");
        assert_eq!(parse("limit=201").unwrap_err(), "`limit` must be between 1 and 200");
        assert_eq!(parse("limit=ten").unwrap_err(), "`limit` must be between 1 and 200");
        assert_eq!(parse("cursor=zzz").unwrap_err(), "`cursor` must be a value from next_cursor");
        assert_eq!(parse("tenant_id=7").unwrap_err(), "`tenant_id` must be a tenant id (a UUID)");
    }

    #[test]
    fn good_values_are_typed_and_an_unknown_language_is_no_error() {
        let id = Uuid::new_v4();
        let q = parse(&format!("limit=200&cursor={id}&tenant_id={id}&lang=xx")).unwrap();
        assert_eq!(q.limit, Some(PageSize(200)));
        assert_eq!(q.cursor, Some(PageCursor(id)));
        assert_eq!(q.tenant_id, Some(TenantFilter(TenantId(id))));
        assert!(matches!(q.lang, Some(LangTag(None))));
        assert_eq!(parse("").unwrap().limit.unwrap_or_default(), PageSize(DEFAULT_PAGE));
    }
}
