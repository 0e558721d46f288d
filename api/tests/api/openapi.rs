//! `openapi.yaml` is the contract: it must equal what the server generates from its own route
//! list, and every documented route must be served.

use reqwest::Method;
use serde_json::Value;

use crate::helpers::*;

#[test]
fn committed_openapi_yaml_matches_the_server() {
    let generated = wbd_api::openapi::yaml().unwrap();
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../openapi.yaml");
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == generated,
        "openapi.yaml differs from the server's routes; regenerate it with `cargo run -p wbd-api -- openapi > openapi.yaml`"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_documented_route_is_served() {
    let app = spawn_app().await;
    let doc = serde_json::to_value(wbd_api::openapi::document()).unwrap();
    let paths = doc["paths"].as_object().unwrap();
    assert!(paths.len() >= 15, "suspiciously few paths: {}", paths.len());
    let id = uuid::Uuid::new_v4().to_string();
    for (path, item) in paths {
        let concrete = path.replace("{id}", &id).replace("{tenant_id}", &id);
        for method in item.as_object().unwrap().keys() {
            let method: Method = method.to_uppercase().parse().unwrap();
            let res = app.client.request(method.clone(), app.url(&concrete)).send().await.unwrap();
            let status = res.status();
            let body: Value = res.json().await.unwrap_or(Value::Null);
            let unrouted =
                status == 404 && body["detail"].as_str().is_some_and(|d| d.starts_with("no route"));
            assert!(
                !unrouted && status != 405,
                "{method} {path} is documented but not served ({status} {body})"
            );
        }
    }
    app.shutdown().await;
}

#[test]
fn every_operation_has_its_own_id() {
    let doc = serde_json::to_value(wbd_api::openapi::document()).unwrap();
    let mut seen: std::collections::BTreeMap<String, String> = std::collections::BTreeMap::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            let id =
                op["operationId"].as_str().unwrap_or_else(|| panic!("{method} {path} has no operationId"));
            let here = format!("{method} {path}");
            if let Some(before) = seen.insert(id.to_owned(), here.clone()) {
                panic!("operationId {id:?} is used by {before} and {here}");
            }
        }
    }
}

#[test]
fn page_sizes_are_documented_with_their_range() {
    let doc = serde_json::to_value(wbd_api::openapi::document()).unwrap();
    for path in ["/v1/integrations/{id}/deliveries", "/v1/findings"] {
        let params = doc["paths"][path]["get"]["parameters"].as_array().unwrap();
        let limit = params.iter().find(|p| p["name"] == "limit").expect("a limit parameter");
        assert_eq!(
            (limit["schema"]["minimum"].as_f64(), limit["schema"]["maximum"].as_f64()),
            (Some(1.0), Some(200.0)),
            "{path}: {limit}"
        );
    }
}

/// The browsable docs: Swagger UI at `/docs/`, every file it loads served by the API itself (no
/// CDN: MSP networks often block them), reading the API's own document; the document as YAML
/// beside the JSON, the same as `openapi.yaml`.
#[tokio::test]
async fn the_docs_are_served_from_the_binary_and_read_the_apis_own_document() {
    let app = spawn_app().await;
    let client = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let res = client.get(app.url("/docs")).send().await.unwrap();
    assert_eq!(res.status(), reqwest::StatusCode::PERMANENT_REDIRECT);
    assert_eq!(res.headers()["location"], "/docs/");

    let page = app.client.get(app.url("/docs/")).send().await.unwrap();
    assert_eq!(page.status(), reqwest::StatusCode::OK);
    assert!(page.headers()["content-type"].to_str().unwrap().starts_with("text/html"));
    let page = page.text().await.unwrap();
    let assets: Vec<&str> = page
        .split(['"', '\''])
        .filter(|s| s.ends_with(".js") || s.ends_with(".css") || s.ends_with(".png"))
        .collect();
    assert!(assets.iter().any(|a| a.ends_with("swagger-ui-bundle.js")), "{page}");
    for asset in &assets {
        assert!(!asset.contains("://") && !asset.starts_with("//"), "{asset} is not served by the API");
        let url = app.url(&format!("/docs/{}", asset.trim_start_matches("./")));
        let res = app.client.get(&url).send().await.unwrap();
        assert_eq!(res.status(), reqwest::StatusCode::OK, "{url}");
        assert!(!res.bytes().await.unwrap().is_empty(), "{url}");
    }
    let init =
        app.client.get(app.url("/docs/swagger-initializer.js")).send().await.unwrap().text().await.unwrap();
    assert!(init.contains("\"/v1/openapi.json\""), "{init}");

    let yaml = app.client.get(app.url("/v1/openapi.yaml")).send().await.unwrap();
    assert_eq!(yaml.headers()["content-type"], "application/yaml");
    let committed = include_str!("../../../openapi.yaml");
    assert_eq!(yaml.text().await.unwrap(), committed, "GET /v1/openapi.yaml is openapi.yaml");
    app.shutdown().await;
}
