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
