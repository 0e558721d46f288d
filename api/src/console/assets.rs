//! The console's stylesheet and script, compiled into the binary and served under a name that
//! carries a hash of their content (`console.<hash>.css`), so that a browser may keep them for a
//! year: a new build changes the name. An old name answers 404.

use std::sync::LazyLock;

use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};
use sha2::{Digest as _, Sha256};

use super::page::with_security_headers;

struct Asset {
    /// `console.<hash>.css`
    name: String,
    /// `/assets/console.<hash>.css`
    url: String,
    etag: String,
    body: &'static [u8],
    content_type: &'static str,
}

impl Asset {
    fn new(stem: &str, extension: &str, body: &'static [u8], content_type: &'static str) -> Asset {
        let hash = hex::encode(&Sha256::digest(body)[..8]);
        let name = format!("{stem}.{hash}.{extension}");
        Asset { url: format!("/assets/{name}"), etag: format!("\"{hash}\""), name, body, content_type }
    }
}

static ASSETS: LazyLock<[Asset; 3]> = LazyLock::new(|| {
    [
        Asset::new("console", "css", include_bytes!("../../static/console.css"), "text/css; charset=utf-8"),
        Asset::new(
            "console",
            "js",
            include_bytes!("../../static/console.js"),
            "text/javascript; charset=utf-8",
        ),
        Asset::new("icon", "svg", include_bytes!("../../static/icon.svg"), "image/svg+xml"),
    ]
});

/// Where the stylesheet is served.
pub fn css_url() -> &'static str {
    &ASSETS[0].url
}

/// Where the script is served.
pub fn js_url() -> &'static str {
    &ASSETS[1].url
}

/// Where the icon is served.
pub fn icon_url() -> &'static str {
    &ASSETS[2].url
}

/// `GET /assets/{file}`
pub async fn asset(req: HttpRequest, file: web::Path<String>) -> HttpResponse {
    let Some(asset) = ASSETS.iter().find(|a| a.name == *file) else {
        let mut response = HttpResponse::NotFound();
        with_security_headers(&mut response);
        return response.content_type("text/plain; charset=utf-8").body("no such asset");
    };
    let unchanged = req
        .headers()
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|tags| tags.split(',').any(|t| t.trim() == asset.etag || t.trim() == "*"));
    let mut response = if unchanged { HttpResponse::NotModified() } else { HttpResponse::Ok() };
    with_security_headers(&mut response);
    response
        .insert_header((header::CACHE_CONTROL, "public, max-age=31536000, immutable"))
        .insert_header((header::ETAG, asset.etag.clone()));
    if unchanged {
        return response.finish();
    }
    response.content_type(asset.content_type).body(asset.body)
}
