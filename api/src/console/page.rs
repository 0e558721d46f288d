//! What every console answer shares: the security headers (a strict Content-Security-Policy
//! above all), HTML and redirect responses, and the page chrome the layout template reads.

use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderName, HeaderValue};
use actix_web::{HttpResponse, HttpResponseBuilder};
use wbd_rules::Lang;

use super::error::ConsoleError;

/// Nothing but our own files: no inline script or style, no other origin, no framing, forms
/// post only to us.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
     img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// The headers every console answer carries, pages, redirects, errors and assets alike.
pub fn with_security_headers(response: &mut HttpResponseBuilder) {
    response
        .insert_header((header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY))
        .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .insert_header((header::REFERRER_POLICY, "same-origin"))
        .insert_header((header::X_FRAME_OPTIONS, "DENY"))
        .insert_header((HeaderName::from_static("cross-origin-opener-policy"), "same-origin"));
}

/// A builder for a page answer: security headers, never cached (pages show one organisation's
/// data to one person).
pub fn builder(status: StatusCode) -> HttpResponseBuilder {
    let mut response = HttpResponse::build(status);
    with_security_headers(&mut response);
    response.insert_header((header::CACHE_CONTROL, "no-store"));
    response
}

/// Renders `template` as the answer.
pub fn render<T: askama::Template>(
    mut response: HttpResponseBuilder,
    template: &T,
) -> Result<HttpResponse, ConsoleError> {
    let body = template.render().map_err(ConsoleError::internal)?;
    Ok(response.content_type("text/html; charset=utf-8").body(body))
}

/// `303 See Other` to `location` (after a form, and to the sign-in page).
pub fn see_other(location: &str) -> HttpResponseBuilder {
    let mut response = builder(StatusCode::SEE_OTHER);
    if let Ok(value) = HeaderValue::from_str(location) {
        response.insert_header((header::LOCATION, value));
    }
    response
}

/// A language the picker offers.
pub struct LangOption {
    pub code: &'static str,
    pub name: &'static str,
    pub selected: bool,
}

/// The signed-in person, as the layout shows them.
pub struct SignedIn {
    pub role: &'static str,
    /// The synchronizer token every form of this session sends back (`csrf`).
    pub csrf: String,
}

/// What the layout (`console/base.html`) needs besides a page's own content.
pub struct Chrome {
    pub css: &'static str,
    pub js: &'static str,
    pub icon: &'static str,
    /// The path of this page: the language picker submits to it.
    pub path: String,
    /// The language of the rule texts on this page.
    pub lang: &'static str,
    pub langs: Vec<LangOption>,
    pub user: Option<SignedIn>,
    /// The layout's own words, in `lang`.
    pub t: &'static ChromeTexts,
}

/// The words of the layout (skip link, navigation, session, footer) in one language. The pages'
/// own texts are English; the findings' texts come from the rule pack in every language.
pub struct ChromeTexts {
    pub skip: &'static str,
    pub main_nav: &'static str,
    pub overview: &'static str,
    pub integrations: &'static str,
    pub custom_rules: &'static str,
    pub rest_api: &'static str,
    pub language: &'static str,
    pub apply: &'static str,
    pub signed_in_as: &'static str,
    pub sign_out: &'static str,
    pub footer: &'static str,
}

const ENGLISH: ChromeTexts = ChromeTexts {
    skip: "Skip to content",
    main_nav: "Main",
    overview: "Overview",
    integrations: "Integrations",
    custom_rules: "Custom rules",
    rest_api: "REST API",
    language: "Language",
    apply: "Apply",
    signed_in_as: "Signed in as",
    sign_out: "Sign out",
    footer: "Writeback Doctor: why SSPR password writeback fails, for every tenant you look after.",
};

const POLISH: ChromeTexts = ChromeTexts {
    skip: "Przejdź do treści",
    main_nav: "Menu główne",
    overview: "Przegląd",
    integrations: "Integracje",
    custom_rules: "Własne reguły",
    rest_api: "REST API",
    language: "Język",
    apply: "Zastosuj",
    signed_in_as: "Zalogowano jako",
    sign_out: "Wyloguj",
    footer: "Writeback Doctor: dlaczego zapisywanie zwrotne haseł SSPR nie działa, w każdej dzierżawie, którą się opiekujesz.",
};

const UKRAINIAN: ChromeTexts = ChromeTexts {
    skip: "Перейти до вмісту",
    main_nav: "Головне меню",
    overview: "Огляд",
    integrations: "Інтеграції",
    custom_rules: "Власні правила",
    rest_api: "REST API",
    language: "Мова",
    apply: "Застосувати",
    signed_in_as: "Ви увійшли як",
    sign_out: "Вийти",
    footer: "Writeback Doctor: чому не працює зворотний запис паролів SSPR, у кожному клієнті, який ви обслуговуєте.",
};

/// The layout's words in `lang`.
pub fn chrome_texts(lang: Lang) -> &'static ChromeTexts {
    match lang {
        Lang::En => &ENGLISH,
        Lang::Pl => &POLISH,
        Lang::Uk => &UKRAINIAN,
    }
}

impl Chrome {
    pub fn new(path: &str, lang: Lang, user: Option<SignedIn>) -> Chrome {
        Chrome {
            css: super::assets::css_url(),
            js: super::assets::js_url(),
            icon: super::assets::icon_url(),
            path: path.to_owned(),
            lang: lang.as_str(),
            langs: Lang::ALL
                .iter()
                .map(|l| LangOption { code: l.as_str(), name: lang_name(*l), selected: *l == lang })
                .collect(),
            user,
            t: chrome_texts(lang),
        }
    }
}

/// A language by its own name.
pub fn lang_name(lang: Lang) -> &'static str {
    match lang {
        Lang::En => "English",
        Lang::Pl => "Polski",
        Lang::Uk => "Українська",
    }
}

/// The cookie that remembers the language picked.
const LANG_COOKIE: &str = "wbd_lang";

/// The language of a page's rule texts: `?lang=` when it names a shipped language (then
/// remembered: the second value is the `Set-Cookie` to send), else the one remembered, else the
/// best match of `Accept-Language`, else English.
pub fn page_lang(req: &actix_web::HttpRequest, asked: Option<&str>) -> (Lang, Option<String>) {
    if let Some(lang) = asked.and_then(Lang::from_tag) {
        let cookie =
            format!("{LANG_COOKIE}={}; Path=/; HttpOnly; SameSite=Strict; Max-Age=31536000", lang.as_str());
        return (lang, Some(cookie));
    }
    if let Some(lang) = super::session::cookie(req, LANG_COOKIE).and_then(Lang::from_tag) {
        return (lang, None);
    }
    (crate::params::request_lang(req, None), None)
}

/// A page answer (200) that remembers the language picked, if one was.
pub fn page_builder(remember_lang: Option<String>) -> HttpResponseBuilder {
    let mut response = builder(StatusCode::OK);
    if let Some(cookie) = remember_lang {
        response.append_header((header::SET_COOKIE, cookie));
    }
    response
}
