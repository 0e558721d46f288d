//! Query parameters several resources share.

use actix_web::HttpRequest;
use actix_web::http::header;
use serde::Deserialize;
use utoipa::IntoParams;
use wbd_rules::Lang;

/// `limit` query values: default and ceiling.
pub const DEFAULT_PAGE: u32 = 50;
pub const MAX_PAGE: u32 = 200;

/// The language of a response: `?lang=` when it names a shipped language, else the best match
/// of `Accept-Language`, else English.
pub fn request_lang(req: &HttpRequest, lang: Option<&str>) -> Lang {
    if let Some(lang) = lang.and_then(Lang::from_tag) {
        return lang;
    }
    req.headers().get(header::ACCEPT_LANGUAGE).and_then(|v| v.to_str().ok()).map_or(Lang::En, Lang::negotiate)
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct LangQuery {
    /// `en`, `pl` or `uk`; overrides `Accept-Language`.
    pub lang: Option<String>,
}
