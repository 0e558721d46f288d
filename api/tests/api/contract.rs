//! The points where the server and `openapi.yaml` once disagreed, each checked with real
//! requests, so that a plain `cargo test` guards them. `.ci/contract` looks much wider
//! (schemathesis over every operation); this is its short list.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::helpers::*;

fn document() -> Value {
    serde_json::to_value(wbd_api::openapi::document()).unwrap()
}

const HOST: &str = "passwordreset.microsoftonline.com";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_method_a_path_does_not_serve_is_405_with_allow() {
    let app = spawn_app().await;
    let org = app.bootstrap_org("Northwind MSP").await;
    let trace = Method::from_bytes(b"TRACE").unwrap();
    let cases = [
        (trace.clone(), "/v1/tenants", "GET, HEAD, POST"),
        (Method::DELETE, "/v1/overview", "GET, HEAD"),
        (Method::OPTIONS, "/v1/rule-settings/endpoint-reachable", "DELETE, PUT"),
        (trace, "/healthz", "GET, HEAD"),
        // A fixed path beside a route with a parameter: not a collector id that cannot be read.
        (Method::GET, "/v1/collectors/enroll", "POST"),
        (Method::PUT, "/v1/openapi.json", "GET, HEAD"),
    ];
    for (method, path, allow) in cases {
        for token in [None, Some(&org.token)] {
            let mut req = app.client.request(method.clone(), app.url(path));
            if let Some(token) = token {
                req = req.bearer_auth(token);
            }
            let res = req.send().await.unwrap();
            let header = res.headers().get("allow").and_then(|v| v.to_str().ok()).map(str::to_owned);
            assert_eq!(header.as_deref(), Some(allow), "{method} {path}");
            problem(res, StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed").await;
        }
    }
    let res = app.client.request(Method::GET, app.url("/v1/no-such-thing")).send().await.unwrap();
    assert!(res.headers().get("allow").is_none());
    problem(res, StatusCode::NOT_FOUND, "not_found").await;
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_optional_body_may_be_null_as_documented() {
    let app = spawn_app().await;
    let org = app.bootstrap_org("Northwind MSP").await;
    let (tenant, site) = app.tenant_with_collector(&org).await;
    site.push_evaluated(&app, &org, &batch(vec![refused_endpoint(HOST, 443)])).await;
    let query = format!("tenant_id={tenant}&rule_id=endpoint-reachable");
    let findings = app.wait_for_findings(&org.token, &query, |f| f.len() == 1).await;
    let id = findings[0]["id"].as_str().unwrap().to_owned();

    let doc = document();
    for action in ["acknowledge", "unsuppress"] {
        let schema = &doc["paths"][format!("/v1/findings/{{id}}/{action}")]["post"]["requestBody"]["content"]
            ["application/json"]["schema"];
        assert!(schema["oneOf"].as_array().unwrap().contains(&json!({ "type": "null" })), "{schema}");
    }

    let ack = app.post(&org.token, &format!("/v1/findings/{id}/acknowledge"), &Value::Null).await;
    assert_eq!(ack.status(), StatusCode::OK);
    let ack: Value = ack.json().await.unwrap();
    assert_eq!(ack["status"], "acknowledged");

    let until = chrono::Utc::now() + chrono::Duration::days(1);
    let suppress = json!({ "reason": "maintenance window", "until": until });
    let res = app.post(&org.token, &format!("/v1/findings/{id}/suppress"), &suppress).await;
    assert_eq!(res.status(), StatusCode::OK);
    let res = app.post(&org.token, &format!("/v1/findings/{id}/unsuppress"), &Value::Null).await;
    assert_eq!(res.status(), StatusCode::OK);
    let back: Value = res.json().await.unwrap();
    assert_eq!(back["status"], "open");
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_that_is_not_json_is_415_and_documented_so() {
    let app = spawn_app().await;
    let org = app.bootstrap_org("Northwind MSP").await;
    let tenant = app.create_tenant(&org, "Contoso").await;
    let finding = uuid::Uuid::new_v4();
    let posts = [
        "/v1/tenants".to_owned(),
        format!("/v1/tenants/{tenant}/collectors"),
        format!("/v1/findings/{finding}/acknowledge"),
        "/v1/auth/token".to_owned(),
    ];
    for path in &posts {
        let res = app
            .client
            .post(app.url(path))
            .bearer_auth(&org.token)
            .header("content-type", "text/plain")
            .body(r#"{"name":"Contoso"}"#)
            .send()
            .await
            .unwrap();
        problem(res, StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type").await;
    }
    // Larger than the 64 KiB a JSON body may be.
    let big = json!({ "name": "x".repeat(70 * 1024) });
    for path in ["/v1/tenants".to_owned(), format!("/v1/findings/{finding}/acknowledge")] {
        let res = app.post(&org.token, &path, &big).await;
        problem(res, StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large").await;
    }

    let doc = document();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            if op.get("requestBody").is_some() {
                for status in ["400", "413", "415"] {
                    assert!(op["responses"].get(status).is_some(), "{method} {path} does not list {status}");
                }
            }
            let has = |at: &str| op["parameters"].as_array().is_some_and(|p| p.iter().any(|p| p["in"] == at));
            if has("query") {
                assert!(op["responses"].get("400").is_some(), "{method} {path} does not list 400");
            }
            if has("path") {
                assert!(op["responses"].get("404").is_some(), "{method} {path} does not list 404");
            }
        }
    }
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rule_override_needs_no_params_and_the_document_says_so() {
    let app = spawn_app().await;
    let org = app.bootstrap_org("Northwind MSP").await;
    let schema = &document()["components"]["schemas"]["RuleSettingsDoc"];
    let required = schema["required"].as_array().cloned().unwrap_or_default();
    assert!(!required.contains(&json!("params")), "{schema}");
    assert_eq!(schema["additionalProperties"], false);

    let path = "/v1/rule-settings/endpoint-reachable";
    let res = app.put(&org.token, path, &json!({ "severity": "low" })).await;
    assert_eq!(res.status(), StatusCode::OK);
    let view: Value = res.json().await.unwrap();
    assert_eq!(view["settings"], json!({ "severity": "low" }));
    // What the document refuses, the server refuses.
    for refused in [json!({ "open_after": 0 }), json!({ "severity": "urgent" }), json!({ "colour": "red" })] {
        let res = app.put(&org.token, path, &refused).await;
        assert!(res.status().is_client_error(), "{refused} answered {}", res.status());
    }
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parameter_defaults_have_the_types_the_document_gives() {
    let app = spawn_app().await;
    let org = app.bootstrap_org("Northwind MSP").await;
    let schema = &document()["components"]["schemas"]["ParamView"]["properties"]["default"];
    let types: Vec<&str> =
        schema["oneOf"].as_array().unwrap().iter().map(|s| s["type"].as_str().unwrap()).collect();
    assert_eq!(types, ["integer", "boolean", "string", "array"], "{schema}");

    let rules: Value = app.get(&org.token, "/v1/rules").await.json().await.unwrap();
    let mut seen = std::collections::BTreeSet::new();
    for param in rules.as_array().unwrap().iter().flat_map(|r| r["params"].as_array().unwrap()) {
        let default = &param["default"];
        let kind = match default {
            Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
            Value::Bool(_) => "boolean",
            Value::String(_) => "string",
            Value::Array(items) if items.iter().all(Value::is_string) => "array",
            other => panic!("{}: default {other} is none of {types:?}", param["name"]),
        };
        seen.insert(kind);
    }
    assert!(seen.len() > 1, "the pack's defaults are of several types: {seen:?}");
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_are_read_as_json_schema_reads_them() {
    let app = spawn_app().await;
    let org = app.bootstrap_org("Northwind MSP").await;
    let tenant = app.create_tenant(&org, "Contoso").await;
    // A whole number is an integer.
    let res = app
        .post(
            &org.token,
            &format!("/v1/tenants/{tenant}/collectors"),
            &json!({ "name": "AADC01", "push_interval_secs": 300.0 }),
        )
        .await;
    assert_eq!(res.status(), StatusCode::CREATED);
    let created: Value = res.json().await.unwrap();
    assert_eq!(created["collector"]["push_interval_secs"], 300);
    // An array is not an object, even where serde could read the struct from it.
    let res = app.post(&org.token, &format!("/v1/tenants/{tenant}/dry-run"), &json!([null, null])).await;
    problem(res, StatusCode::BAD_REQUEST, "malformed_json").await;
    // Blank names are refused, and the document says which names are acceptable.
    let res = app.post(&org.token, "/v1/tenants", &json!({ "name": "  " })).await;
    problem(res, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").await;
    // The length counts as sent, as maxLength does: 200 characters and a blank are too many.
    let res = app.post(&org.token, "/v1/tenants", &json!({ "name": format!(" {}", "x".repeat(200)) })).await;
    problem(res, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").await;
    let name = &document()["components"]["schemas"]["DisplayName"];
    assert_eq!((name["minLength"].as_u64(), name["maxLength"].as_u64()), (Some(1), Some(200)), "{name}");
    app.shutdown().await;
}

#[test]
fn every_reference_in_the_document_names_a_schema_it_has() {
    let doc = document();
    let schemas = doc["components"]["schemas"].as_object().unwrap();
    let mut stack = vec![&doc];
    while let Some(value) = stack.pop() {
        match value {
            Value::Object(fields) => {
                if let Some(Value::String(target)) = fields.get("$ref") {
                    let name = target.strip_prefix("#/components/schemas/").unwrap_or(target);
                    assert!(schemas.contains_key(name), "{target} is not in the document");
                }
                stack.extend(fields.values());
            }
            Value::Array(items) => stack.extend(items),
            _ => {}
        }
    }
}

/// `HEAD` where `GET` is served: the same status and headers, the length the body would have,
/// and no body (RFC 9110 §9.3.2); the same checks too (no token, no answer).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn head_answers_as_get_without_the_body() {
    let app = spawn_app().await;
    let org = app.bootstrap_org("Northwind MSP").await;
    app.create_tenant(&org, "Contoso").await;
    for path in ["/v1/tenants", "/healthz", "/v1/openapi.json"] {
        let get = app.client.get(app.url(path)).bearer_auth(&org.token).send().await.unwrap();
        assert_eq!(get.status(), StatusCode::OK, "GET {path}");
        let length = get.bytes().await.unwrap().len();
        let head = app.client.head(app.url(path)).bearer_auth(&org.token).send().await.unwrap();
        assert_eq!(head.status(), StatusCode::OK, "HEAD {path}");
        let announced = head.headers().get("content-length").and_then(|v| v.to_str().ok()).map(str::to_owned);
        assert_eq!(announced, Some(length.to_string()), "HEAD {path}");
        assert!(head.bytes().await.unwrap().is_empty(), "HEAD {path} sent a body");
    }
    let res = app.client.head(app.url("/v1/tenants")).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    // Where there is no GET, HEAD is not served either (the 405 has no body: it is a HEAD's).
    let res = app.client.head(app.url("/v1/ingest")).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(res.headers()["allow"], "POST");
    app.shutdown().await;
}
