//! The storage contract: every test runs against each backend (SQLite always, PostgreSQL when
//! `WBD_TEST_DATABASE_URL` is set), so both implementations of `Store` behave the same.

#[macro_use]
mod harness;

mod fixtures;

mod deliveries;
mod enrollment;
mod evaluation;
mod graph;
mod ingest;
mod keys_and_secrets;
mod lifecycle;
mod outbox;
mod overview;
mod rate_limits;
mod retention;
mod rule_config;
mod tenancy;

#[tokio::test]
async fn an_unknown_url_scheme_is_refused() {
    let refused = wbd_store::connect("mysql://localhost/wbd", 1).await;
    assert!(matches!(refused, Err(wbd_store::StoreError::UnsupportedUrl(_))));
}
