//! What a request that no handler takes is answered: `405 method_not_allowed` with `Allow` when
//! its path is one of ours (e.g. `TRACE /v1/tenants`, `DELETE /v1/overview`), `404 not_found`
//! otherwise. `HEAD` is served wherever `GET` is ([`head_as_get`]). Which methods a path has comes from the OpenAPI document, the same route list the
//! server registers.

use actix_web::dev::ResourceDef;
use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpRequest, HttpResponse, ResponseError as _, web};
use utoipa::openapi::OpenApi;

use crate::error::{ApiError, ErrorCode};

/// The served paths (as route templates) with the methods each answers.
pub struct KnownRoutes {
    routes: Vec<(ResourceDef, Vec<&'static str>)>,
}

impl KnownRoutes {
    /// The routes of `doc`, plus the few served outside it (`extra`).
    pub fn new(doc: &OpenApi, extra: &[(&str, &'static str)]) -> Self {
        let mut routes: Vec<(ResourceDef, Vec<&'static str>)> = doc
            .paths
            .paths
            .iter()
            .map(|(path, item)| {
                let methods = [
                    ("GET", item.get.is_some()),
                    ("PUT", item.put.is_some()),
                    ("POST", item.post.is_some()),
                    ("DELETE", item.delete.is_some()),
                    ("PATCH", item.patch.is_some()),
                ]
                .into_iter()
                .filter_map(|(method, served)| served.then_some(method))
                .collect();
                (ResourceDef::new(path.as_str()), methods)
            })
            .collect();
        routes.extend(extra.iter().map(|(path, method)| (ResourceDef::new(*path), vec![*method])));
        KnownRoutes { routes }
    }

    /// The methods served at `path`, in a stable order; empty when the path is not ours. A
    /// template without parameters that matches wins over those with (`/v1/collectors/enroll`
    /// is not a collector id).
    pub fn allowed(&self, path: &str) -> Vec<&'static str> {
        let matching: Vec<&(ResourceDef, Vec<&'static str>)> =
            self.routes.iter().filter(|(def, _)| def.is_match(path)).collect();
        let exact = matching.iter().any(|(def, _)| is_fixed(def));
        let mut methods: Vec<&'static str> = matching
            .into_iter()
            .filter(|(def, _)| !exact || is_fixed(def))
            .flat_map(|(_, methods)| methods.iter().copied())
            .collect();
        methods.sort_unstable();
        methods.dedup();
        methods
    }
}

/// The default service.
pub async fn unrouted(req: HttpRequest, known: web::Data<KnownRoutes>) -> HttpResponse {
    method_not_allowed(&req, &known).unwrap_or_else(|| {
        ApiError::new(ErrorCode::NotFound, format!("no route {} {}", req.method(), req.path()))
            .error_response()
    })
}

/// `HEAD` where `GET` is served is answered as `GET` is, without the body (RFC 9110 §9.3.2):
/// the request is routed as a `GET`, and the connection, which read the request as `HEAD`, sends
/// the answer's head only, with the length the body would have had.
pub fn head_as_get(req: &mut actix_web::dev::ServiceRequest, known: &KnownRoutes) {
    use actix_web::http::Method;
    if req.method() == Method::HEAD && known.allowed(req.path()).contains(&"GET") {
        req.head_mut().method = Method::GET;
    }
}

/// The 405 for a request to a fixed path (a route template without parameters) that does not
/// answer its method, given before routing: a route with a parameter beside it would take the
/// request otherwise (`GET /v1/collectors/enroll` would reach `GET /v1/collectors/{id}`).
pub fn refused_at_fixed_path(req: &HttpRequest, known: &KnownRoutes) -> Option<HttpResponse> {
    let fixed = known.routes.iter().any(|(def, _)| is_fixed(def) && def.is_match(req.path()));
    if fixed { method_not_allowed(req, known) } else { None }
}

fn is_fixed(def: &ResourceDef) -> bool {
    def.pattern().is_some_and(|p| !p.contains('{'))
}

/// The 405 for `req`, when its path is ours and does not answer its method.
fn method_not_allowed(req: &HttpRequest, known: &KnownRoutes) -> Option<HttpResponse> {
    let allowed = known.allowed(req.path());
    if allowed.is_empty() || allowed.contains(&req.method().as_str()) {
        return None;
    }
    // Where GET is served, so is HEAD (`head_as_get`).
    let mut allowed = allowed;
    if allowed.contains(&"GET") {
        allowed.push("HEAD");
        allowed.sort_unstable();
    }
    let allow = allowed.join(", ");
    let mut response = ApiError::new(
        ErrorCode::MethodNotAllowed,
        format!("{} is not served at {}; it answers {allow}", req.method(), req.path()),
    )
    .error_response();
    if let Ok(value) = HeaderValue::from_str(&allow) {
        response.headers_mut().insert(header::ALLOW, value);
    }
    Some(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_path_is_known_by_its_templates_and_answers_their_methods() {
        let doc = crate::openapi::document();
        let known = KnownRoutes::new(&doc, &[("/v1/openapi.json", "GET")]);
        assert_eq!(known.allowed("/v1/tenants"), ["GET", "POST"]);
        assert_eq!(known.allowed("/v1/tenants/not-even-an-id"), ["GET"]);
        assert_eq!(known.allowed("/v1/rule-settings/some-rule"), ["DELETE", "PUT"]);
        assert_eq!(known.allowed("/v1/openapi.json"), ["GET"]);
        assert_eq!(known.allowed("/v1/collectors/enroll"), ["POST"]);
        assert!(known.allowed("/v1/nothing-here").is_empty());
        assert!(known.allowed("/v1/tenants/a/b/c").is_empty());
    }
}
