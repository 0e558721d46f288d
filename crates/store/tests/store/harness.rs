//! Yields a fresh, migrated store per backend for each test: SQLite on a temporary file, and
//! PostgreSQL in a throw-away database on the server `WBD_TEST_DATABASE_URL` names.
//!
//! A PostgreSQL test that is not asked for shows as *ignored* in the test output; one that is
//! asked for (`-- --include-ignored`) fails when the variable is unset or the server unreachable:
//! a misconfigured CI must not turn into a green run that silently skipped PostgreSQL.

use std::ops::Deref;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::{AssertSqlSafe, Connection, Executor, PgConnection, Row, SqliteConnection};
use wbd_store::{Backend, CollectorId, Store};

const PG_ENV: &str = "WBD_TEST_DATABASE_URL";

/// Declares one contract test per backend: `NAME::sqlite`, which always runs, and
/// `NAME::postgres`, which is reported as ignored unless the run includes ignored tests
/// (`-- --include-ignored`), and then fails when `WBD_TEST_DATABASE_URL` is unset or PostgreSQL
/// cannot be reached. Each runs on a fresh, migrated store; a failure names its backend.
macro_rules! contract_test {
    ($(#[$meta:meta])* async fn $name:ident($store:ident) $body:block) => {
        $(#[$meta])*
        mod $name {
            #[allow(unused_imports)]
            use super::*;

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                $crate::harness::run_on(
                    $crate::harness::sqlite().await,
                    async |$store: &$crate::harness::TestStore| -> anyhow::Result<()> { $body },
                )
                .await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            #[ignore = "needs PostgreSQL: set WBD_TEST_DATABASE_URL and run with -- --include-ignored"]
            async fn postgres() {
                $crate::harness::run_on(
                    $crate::harness::postgres().await,
                    async |$store: &$crate::harness::TestStore| -> anyhow::Result<()> { $body },
                )
                .await;
            }
        }
    };
}

/// Runs `test` on `store`; a failure names the backend it happened on.
pub async fn run_on(store: TestStore, test: impl AsyncFn(&TestStore) -> anyhow::Result<()>) {
    if let Err(e) = test(&store).await {
        panic!("on {}: {e:?}", store.label());
    }
}

/// One backend's store for one test, with what is needed to look behind the trait.
pub struct TestStore {
    pub store: Arc<dyn Store>,
    url: String,
    _cleanup: Cleanup,
}

impl Deref for TestStore {
    type Target = dyn Store;
    fn deref(&self) -> &Self::Target {
        self.store.as_ref()
    }
}

impl TestStore {
    pub fn label(&self) -> &'static str {
        match self.store.backend() {
            Backend::Postgres => "postgres",
            Backend::Sqlite => "sqlite",
        }
    }

    /// The history runs of one subject, oldest first: (digest, first_seen, last_seen, count).
    /// Not part of the trait (nothing reads history yet), so read straight from the database.
    /// The open run's last sighting and count are its latest fact's (see `ingest_plan`).
    pub async fn history(
        &self,
        collector: CollectorId,
        probe: &str,
        subject: &str,
    ) -> anyhow::Result<Vec<(String, DateTime<Utc>, DateTime<Utc>, i64)>> {
        self.runs(
            "SELECT h.digest, h.first_seen_at, COALESCE(f.observed_at, h.last_seen_at),
                    COALESCE(f.repeat_count, h.count)
             FROM fact_history h LEFT JOIN facts f ON f.history_id = h.id
             WHERE h.collector_id = $1 AND h.probe = $2 AND h.subject = $3 ORDER BY h.first_seen_at",
            (collector, probe, subject),
        )
        .await
    }

    /// The `fact_history` rows of one subject as stored, without the open run's figures from its
    /// fact: what the ingest wrote.
    pub async fn history_rows(
        &self,
        collector: CollectorId,
        probe: &str,
        subject: &str,
    ) -> anyhow::Result<Vec<(String, DateTime<Utc>, DateTime<Utc>, i64)>> {
        self.runs(
            "SELECT digest, first_seen_at, last_seen_at, count FROM fact_history
             WHERE collector_id = $1 AND probe = $2 AND subject = $3 ORDER BY first_seen_at",
            (collector, probe, subject),
        )
        .await
    }

    async fn runs(
        &self,
        sql: &'static str,
        (collector, probe, subject): (CollectorId, &str, &str),
    ) -> anyhow::Result<Vec<(String, DateTime<Utc>, DateTime<Utc>, i64)>> {
        macro_rules! read {
            ($conn:expr) => {{
                let mut conn = $conn;
                let rows =
                    sqlx::query(sql).bind(collector.0).bind(probe).bind(subject).fetch_all(&mut conn).await?;
                let runs = rows
                    .iter()
                    .map(|r| Ok((r.try_get(0)?, r.try_get(1)?, r.try_get(2)?, r.try_get(3)?)))
                    .collect::<Result<Vec<_>, sqlx::Error>>()?;
                conn.close().await?;
                runs
            }};
        }
        Ok(match self.store.backend() {
            Backend::Postgres => read!(PgConnection::connect(&self.url).await?),
            Backend::Sqlite => read!(SqliteConnection::connect(&self.url).await?),
        })
    }

    /// Runs one statement with one id bound, straight on the database, to set up states the
    /// trait cannot produce (such as corrupt rows).
    pub async fn execute_raw(&self, sql: &'static str, id: uuid::Uuid) -> anyhow::Result<u64> {
        Ok(match self.store.backend() {
            Backend::Postgres => {
                let mut conn = PgConnection::connect(&self.url).await?;
                sqlx::query(sql).bind(id).execute(&mut conn).await?.rows_affected()
            }
            Backend::Sqlite => {
                let mut conn = SqliteConnection::connect(&self.url).await?;
                sqlx::query(sql).bind(id).execute(&mut conn).await?.rows_affected()
            }
        })
    }
    /// Runs `during` while another connection holds `sql` (one id bound) in an open write
    /// transaction, which commits after `pause`: a store call racing another process's write.
    pub async fn while_another_writes<T>(
        &self,
        sql: &'static str,
        id: uuid::Uuid,
        pause: Duration,
        during: impl Future<Output = T>,
    ) -> anyhow::Result<T> {
        macro_rules! race {
            ($conn:expr, $begin:literal) => {{
                let mut conn = $conn;
                let mut tx = conn.begin_with($begin).await?;
                sqlx::query(sql).bind(id).execute(&mut *tx).await?;
                let (out, committed) = tokio::join!(during, async {
                    tokio::time::sleep(pause).await;
                    tx.commit().await
                });
                committed?;
                out
            }};
        }
        Ok(match self.store.backend() {
            Backend::Postgres => race!(PgConnection::connect(&self.url).await?, "BEGIN"),
            Backend::Sqlite => race!(SqliteConnection::connect(&self.url).await?, "BEGIN IMMEDIATE"),
        })
    }
}

enum Cleanup {
    /// Removed when dropped.
    Sqlite {
        _dir: tempfile::TempDir,
    },
    Postgres {
        admin_url: String,
        database: String,
    },
}

impl Drop for Cleanup {
    /// Drops the test database, also when the test panicked. Best effort: a leftover
    /// `wbd_test_*` database is harmless. Runs on its own thread and runtime because `Drop` cannot
    /// await, and `WITH (FORCE)` closes the store's pooled connections that may still be open.
    fn drop(&mut self) {
        let Cleanup::Postgres { admin_url, database } = self else { return };
        let (admin_url, database) = (admin_url.clone(), database.clone());
        let dropper = std::thread::spawn(move || {
            let Ok(runtime) = tokio::runtime::Builder::new_current_thread().enable_all().build() else {
                return;
            };
            runtime.block_on(async {
                if let Ok(mut conn) = PgConnection::connect(&admin_url).await {
                    let sql = format!("DROP DATABASE IF EXISTS \"{database}\" WITH (FORCE)");
                    let _ = conn.execute(AssertSqlSafe(sql)).await;
                    let _ = conn.close().await;
                }
            });
        });
        let _ = dropper.join();
    }
}

/// A fresh, migrated SQLite store in a temporary directory.
pub async fn sqlite() -> TestStore {
    let dir = tempfile::tempdir().expect("create a temporary directory for SQLite");
    let url = format!("sqlite://{}", dir.path().join("store.db").display());
    let store = wbd_store::connect(&url, 4).await.expect("open the SQLite store");
    TestStore { store, url, _cleanup: Cleanup::Sqlite { _dir: dir } }
}

/// A fresh, migrated PostgreSQL store in a throw-away database on the server named by
/// `WBD_TEST_DATABASE_URL`; panics when it is unset or unreachable (the test was asked to run).
pub async fn postgres() -> TestStore {
    let admin_url = match std::env::var(PG_ENV) {
        Ok(url) if !url.trim().is_empty() => url.trim().to_owned(),
        _ => panic!("{PG_ENV} is not set: this PostgreSQL contract test cannot run without it"),
    };
    let admin_url = admin_url.as_str();
    let database = format!("wbd_test_{}", uuid::Uuid::new_v4().simple());
    let mut admin = tokio::time::timeout(Duration::from_secs(15), PgConnection::connect(admin_url))
        .await
        .unwrap_or_else(|_| panic!("{PG_ENV} is set but PostgreSQL did not answer within 15 s"))
        .unwrap_or_else(|e| panic!("{PG_ENV} is set but PostgreSQL is unreachable: {e}"));
    // template0 never has sessions, so parallel tests cannot trip over "source database is being
    // accessed by other users".
    admin
        .execute(AssertSqlSafe(format!("CREATE DATABASE \"{database}\" TEMPLATE template0")))
        .await
        .unwrap_or_else(|e| panic!("create test database {database}: {e}"));
    let _ = admin.close().await;

    // From here on the guard drops the database even if connecting or migrating fails.
    let cleanup = Cleanup::Postgres { admin_url: admin_url.to_owned(), database: database.clone() };
    let url = with_database(admin_url, &database);
    let store =
        wbd_store::connect(&url, 4).await.unwrap_or_else(|e| panic!("open the PostgreSQL store: {e}"));
    TestStore { store, url, _cleanup: cleanup }
}

/// `admin_url` with its database (path) replaced, keeping any query parameters.
fn with_database(admin_url: &str, database: &str) -> String {
    let (base, query) = match admin_url.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (admin_url, None),
    };
    let authority_start = base.find("://").map_or(0, |i| i + 3);
    let root = match base[authority_start..].find('/') {
        Some(slash) => &base[..authority_start + slash],
        None => base,
    };
    match query {
        Some(query) => format!("{root}/{database}?{query}"),
        None => format!("{root}/{database}"),
    }
}

#[test]
fn database_is_swapped_in_the_url() {
    assert_eq!(with_database("postgres://u@h:5432/postgres", "x"), "postgres://u@h:5432/x");
    assert_eq!(with_database("postgres://u@h:5432", "x"), "postgres://u@h:5432/x");
    assert_eq!(with_database("postgres://u@h/db?sslmode=disable", "x"), "postgres://u@h/x?sslmode=disable");
}
