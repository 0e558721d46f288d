//! Query parameters are typed and every listing pages the same way: `cursor` (from the previous
//! page's `next_cursor`) and `limit`. A bad value of any parameter is refused before anything is
//! read, as a problem that names the parameter.

use reqwest::StatusCode;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::helpers::*;

impl TestApp {
    /// One page of a listing: `query` is the query string, without `?`.
    pub async fn page(&self, token: &str, path: &str, query: &str) -> Value {
        let res = self.get(token, &format!("{path}?{query}")).await;
        assert_eq!(res.status(), StatusCode::OK, "{path}?{query}");
        res.json().await.unwrap()
    }

    /// Every page of a listing, `limit` at a time, passing `next_cursor` as `cursor_name`.
    pub async fn page_through(&self, token: &str, path: &str, cursor_name: &str, limit: u32) -> Vec<Value> {
        let mut pages = Vec::new();
        let mut query = format!("limit={limit}");
        loop {
            let page = self.page(token, path, &query).await;
            let next = page["next_cursor"].as_str().map(str::to_owned);
            pages.push(page);
            match next {
                Some(cursor) => query = format!("limit={limit}&{cursor_name}={cursor}"),
                None => return pages,
            }
        }
    }
}

/// The ids of a page's items.
pub fn page_ids(page: &Value) -> Vec<String> {
    page["items"].as_array().expect("items").iter().map(|i| i["id"].as_str().unwrap().to_owned()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_audit_log_pages_with_cursor() {
    let app = spawn_app().await;
    let org = app.bootstrap_org("MSP").await;
    for severity in ["medium", "low", "high"] {
        let body = json!({ "severity": severity });
        let res = app.put(&org.token, "/v1/rule-settings/endpoint-reachable", &body).await;
        assert_eq!(res.status(), StatusCode::OK);
    }
    let all = page_ids(&app.page(&org.token, "/v1/audit-log", "").await);
    assert_eq!(all.len(), 3);
    let pages = app.page_through(&org.token, "/v1/audit-log", "cursor", 2).await;
    assert_eq!(pages.iter().flat_map(page_ids).collect::<Vec<_>>(), all);
    assert_eq!(pages[0]["items"][0]["after"], json!({ "severity": "high" }), "newest first");

    // `before` was only ever the deliveries' name for the cursor; here it is no parameter.
    let res = app.get(&org.token, &format!("/v1/audit-log?before={}", all[0])).await;
    let p = problem(res, StatusCode::BAD_REQUEST, "invalid_parameter").await;
    assert!(p["detail"].as_str().unwrap().contains("`before`"), "{p}");
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_parameter_is_a_problem_naming_it() {
    let app = spawn_app().await;
    let org = app.bootstrap_org("MSP").await;
    let deliveries = format!("/v1/integrations/{}/deliveries", Uuid::new_v4());
    let cases = [
        ("/v1/findings?status=lost".to_owned(), "status"),
        ("/v1/findings?severity=apocalyptic".to_owned(), "severity"),
        ("/v1/findings?limit=0".to_owned(), "limit"),
        ("/v1/findings?limit=many".to_owned(), "limit"),
        ("/v1/findings?cursor=zzz".to_owned(), "cursor"),
        ("/v1/findings?tenant_id=7".to_owned(), "tenant_id"),
        ("/v1/findings?colour=red".to_owned(), "colour"),
        ("/v1/collectors?tenant_id=7".to_owned(), "tenant_id"),
        ("/v1/rule-settings?tenant_id=7".to_owned(), "tenant_id"),
        ("/v1/custom-rules?tenant_id=7".to_owned(), "tenant_id"),
        ("/v1/audit-log?limit=201".to_owned(), "limit"),
        ("/v1/audit-log?cursor=zzz".to_owned(), "cursor"),
        (format!("{deliveries}?status=lost"), "status"),
        (format!("{deliveries}?since=yesterday"), "since"),
        (format!("{deliveries}?before=zzz"), "before"),
        (format!("{deliveries}?limit=0"), "limit"),
    ];
    for (path, name) in &cases {
        let res = app.get(&org.token, path).await;
        let p = problem(res, StatusCode::BAD_REQUEST, "invalid_parameter").await;
        let detail = p["detail"].as_str().unwrap_or_default();
        assert!(detail.contains(&format!("`{name}`")), "{path}: {detail}");
    }
    // The words a client saw before the parameters were typed.
    let res = app.get(&org.token, "/v1/findings?status=lost").await;
    let p = problem(res, StatusCode::BAD_REQUEST, "invalid_parameter").await;
    assert_eq!(p["detail"], "`status` must be one of: open, acknowledged, suppressed, resolved");
    let res = app.get(&org.token, "/v1/findings?limit=0").await;
    let p = problem(res, StatusCode::BAD_REQUEST, "invalid_parameter").await;
    assert_eq!(p["detail"], "`limit` must be between 1 and 200");

    // A language the pack does not ship is no error: the answer falls back to English.
    let rules: Value = app.page(&org.token, "/v1/rules", "lang=xx").await;
    assert_eq!(rules[0]["lang"], "en");
    app.shutdown().await;
}
