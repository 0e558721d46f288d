//! The retention sweep on large tables: a store filled straight through SQL with old fact history
//! runs and old finished deliveries with their attempts (plus recent rows, latest facts and
//! pending deliveries that must stay), then swept the way the worker does it
//! ([`wbd_platform::retention::sweep_table`]: batches of `retention.batch_size`, a pause between
//! them). Reports rows per second (with and without the pauses) and the slowest single batch —
//! on SQLite, the longest any other writer waits for the sweep.

use std::time::{Duration, Instant};

use anyhow::{Context as _, ensure};
use chrono::{TimeDelta, Utc};
use sqlx::{AssertSqlSafe, PgPool, SqlitePool};
use tokio_util::sync::CancellationToken;
use wbd_platform::retention::{TableSweep, sweep_table};
use wbd_store::{RetentionTable, Store};

use crate::delivery::Backend;
use crate::deploy::PgDatabase;

/// What to fill and how to sweep it.
#[derive(Debug, Clone, Copy)]
pub struct SweepLoad {
    /// Old fact history runs, and old delivery attempts (ten per delivery).
    pub rows: usize,
    pub batch_size: u32,
    pub pause: Duration,
}

/// The sweep of one table.
#[derive(Debug, Clone)]
pub struct Swept {
    pub table: RetentionTable,
    pub seeded: u64,
    pub seed_time: Duration,
    pub sweep: TableSweep,
    pub wall: Duration,
}

/// Rows that must survive the sweep: recent runs and the runs latest facts belong to; recent and
/// pending deliveries. A tenth of the old rows, so the sweep has to tell them apart.
fn kept(rows: usize) -> usize {
    (rows / 10).max(1)
}

/// Subjects whose latest fact holds one of the old runs.
const SUBJECTS: usize = 1_000;

enum Db {
    Sqlite { pool: SqlitePool, _dir: tempfile::TempDir },
    Postgres { pool: PgPool, database: PgDatabase },
}

impl Db {
    async fn execute(&self, sql: String) -> anyhow::Result<u64> {
        Ok(match self {
            Db::Sqlite { pool, .. } => sqlx::query(AssertSqlSafe(sql)).execute(pool).await?.rows_affected(),
            Db::Postgres { pool, .. } => sqlx::query(AssertSqlSafe(sql)).execute(pool).await?.rows_affected(),
        })
    }

    async fn count(&self, sql: &'static str) -> anyhow::Result<i64> {
        Ok(match self {
            Db::Sqlite { pool, .. } => sqlx::query_scalar(sql).fetch_one(pool).await?,
            Db::Postgres { pool, .. } => sqlx::query_scalar(sql).fetch_one(pool).await?,
        })
    }

    fn is_pg(&self) -> bool {
        matches!(self, Db::Postgres { .. })
    }
}

/// Fills a fresh store of `backend` and sweeps fact history, then deliveries.
pub async fn measure(backend: Backend<'_>, load: SweepLoad) -> anyhow::Result<Vec<Swept>> {
    let (store, db) = open(backend).await?;
    let result = fill_and_sweep(store.as_ref(), &db, load).await;
    drop(store);
    if let Db::Postgres { pool, database } = db {
        pool.close().await;
        database.drop_database().await;
    }
    result
}

async fn open(backend: Backend<'_>) -> anyhow::Result<(std::sync::Arc<dyn Store>, Db)> {
    // The product's default pool size (`database.max_connections`).
    const CONNECTIONS: u32 = 10;
    Ok(match backend {
        Backend::Sqlite => {
            let dir = tempfile::tempdir()?;
            let url = format!("sqlite://{}", dir.path().join("wbd.db").display());
            let store = wbd_store::connect(&url, CONNECTIONS).await.context("opening the SQLite store")?;
            let pool = SqlitePool::connect(&url).await?;
            (store, Db::Sqlite { pool, _dir: dir })
        }
        Backend::Postgres { admin_url } => {
            let database = PgDatabase::create(admin_url).await?;
            let store = match wbd_store::connect(&database.url, CONNECTIONS).await {
                Ok(store) => store,
                Err(e) => {
                    database.drop_database().await;
                    return Err(anyhow::Error::new(e).context("opening the PostgreSQL store"));
                }
            };
            let pool = PgPool::connect(&database.url).await?;
            (store, Db::Postgres { pool, database })
        }
    })
}

async fn fill_and_sweep(store: &dyn Store, db: &Db, load: SweepLoad) -> anyhow::Result<Vec<Swept>> {
    let now = Utc::now();
    let org = store.create_organization("Benchmark MSP", now).await?;
    let scope = wbd_store::OrgScope { org_id: org.id };
    let tenant = store.create_tenant(scope, "Contoso", None, now).await?;
    let collector = store
        .create_collector(
            wbd_store::TenantScope { org_id: org.id, tenant_id: tenant.id },
            "site",
            "bench-token-hash",
            now,
            300,
            now,
        )
        .await?;
    let (o, t, c) = (org.id.0.simple(), tenant.id.0.simple(), collector.id.0.simple());
    let integration = uuid::Uuid::now_v7().simple();
    let rows = load.rows;
    let deliveries = (rows / 10).max(1);
    let keep = kept(rows);

    // Old rows are 200 days old (a second apart), recent ones an hour old: a cutoff of 90 days
    // (fact history) or 30 days (deliveries) takes exactly the old ones that are not pinned.
    let sql =
        if db.is_pg() { Seed::new(&o, &t, &c, &integration) } else { Seed::sqlite(&o, &t, &c, &integration) };
    let started = Instant::now();
    db.execute(sql.history(rows, "200 days", 0)).await.context("seeding old fact history")?;
    db.execute(sql.history(keep, "1 hour", rows)).await.context("seeding recent fact history")?;
    db.execute(sql.latest_facts()).await.context("seeding latest facts")?;
    let history_seed = started.elapsed();
    let pinned = db.count("SELECT count(*) FROM facts").await?;
    let started = Instant::now();
    db.execute(sql.integration()).await?;
    db.execute(sql.deliveries(deliveries, "200 days", "succeeded", 0))
        .await
        .context("seeding old deliveries")?;
    db.execute(sql.deliveries(keep / 10 + 1, "1 hour", "succeeded", deliveries)).await?;
    db.execute(sql.deliveries(keep / 10 + 1, "200 days", "pending", deliveries + keep)).await?;
    db.execute(sql.attempts()).await.context("seeding attempts")?;
    let delivery_seed = started.elapsed();
    if let Db::Postgres { pool, .. } = db {
        sqlx::query("ANALYZE").execute(pool).await?;
    }
    let history_before = db.count("SELECT count(*) FROM fact_history").await?;
    let attempts_before = db.count("SELECT count(*) FROM delivery_attempts").await?;
    let deliveries_before = db.count("SELECT count(*) FROM deliveries").await?;

    let cancel = CancellationToken::new();
    let mut out = Vec::new();
    for (table, days, seeded, seed_time) in [
        (RetentionTable::FactHistory, 90, history_before, history_seed),
        (RetentionTable::Deliveries, 30, attempts_before + deliveries_before, delivery_seed),
    ] {
        let cutoff = now - TimeDelta::days(days);
        let started = Instant::now();
        let sweep = sweep_table(store, table, cutoff, load.batch_size, load.pause, &cancel).await?;
        let wall = started.elapsed();
        out.push(Swept { table, seeded: u64::try_from(seeded).unwrap_or(0), seed_time, sweep, wall });
    }

    // What had to stay, stayed.
    let history_after = db.count("SELECT count(*) FROM fact_history").await?;
    let expected_history = i64::try_from(keep).unwrap_or(i64::MAX) + pinned;
    ensure!(
        history_after == expected_history,
        "fact history left {history_after}, expected {expected_history}"
    );
    let unpinned =
        db.count("SELECT count(*) FROM facts WHERE history_id NOT IN (SELECT id FROM fact_history)").await?;
    ensure!(unpinned == 0, "{unpinned} latest facts lost their history run");
    let pending = db.count("SELECT count(*) FROM deliveries WHERE status = 'pending'").await?;
    let left = db.count("SELECT count(*) FROM deliveries").await?;
    ensure!(
        pending == i64::try_from(keep / 10 + 1).unwrap_or(0) && left == 2 * pending,
        "deliveries left {left} ({pending} pending)"
    );
    Ok(out)
}

/// The seeding statements, one per dialect: a set-based insert of `n` rows each.
struct Seed {
    pg: bool,
    org: String,
    tenant: String,
    collector: String,
    integration: String,
}

impl Seed {
    fn new(o: &impl ToString, t: &impl ToString, c: &impl ToString, i: &impl ToString) -> Self {
        Seed {
            pg: true,
            org: o.to_string(),
            tenant: t.to_string(),
            collector: c.to_string(),
            integration: i.to_string(),
        }
    }

    fn sqlite(o: &impl ToString, t: &impl ToString, c: &impl ToString, i: &impl ToString) -> Self {
        Seed { pg: false, ..Self::new(o, t, c, i) }
    }

    /// An id literal.
    fn id(&self, hex: &str) -> String {
        if self.pg { format!("'{hex}'::uuid") } else { format!("x'{hex}'") }
    }

    /// `n` numbers from `from + 1`, as `i`.
    fn series(&self, n: usize, from: usize) -> String {
        if self.pg {
            format!("generate_series({}, {}) AS s(i)", from + 1, from + n)
        } else {
            format!(
                "(WITH RECURSIVE s(i) AS (SELECT {} UNION ALL SELECT i + 1 FROM s WHERE i < {}) SELECT i FROM s) AS s",
                from + 1,
                from + n
            )
        }
    }

    fn new_id(&self) -> &'static str {
        if self.pg { "gen_random_uuid()" } else { "randomblob(16)" }
    }

    /// The time `age` ago plus `i` seconds, as each backend stores it.
    fn time(&self, age: &str) -> String {
        if self.pg {
            format!("now() - interval '{age}' + i * interval '1 second'")
        } else {
            format!("strftime('%Y-%m-%dT%H:%M:%f+00:00', 'now', '-{age}', '+' || i || ' seconds')")
        }
    }

    fn history(&self, n: usize, age: &str, from: usize) -> String {
        format!(
            "INSERT INTO fact_history (id, org_id, tenant_id, collector_id, probe, subject, digest, payload,
                                       first_seen_at, last_seen_at, count)
             SELECT {id}, {o}, {t}, {c}, 'endpoint', 'subject-' || (i % {SUBJECTS}), 'digest-' || i,
                    '{{\"reachable\": true, \"latency_ms\": 42}}', {at}, {at}, 3
             FROM {series}",
            id = self.new_id(),
            o = self.id(&self.org),
            t = self.id(&self.tenant),
            c = self.id(&self.collector),
            at = self.time(age),
            series = self.series(n, from),
        )
    }

    /// A latest fact per subject, on the subject's *oldest* run: old as it is, it must stay.
    fn latest_facts(&self) -> String {
        format!(
            "INSERT INTO facts (collector_id, probe, subject, org_id, tenant_id, observed_at, payload, digest,
                                first_seen_at, repeat_count, history_id)
             SELECT h.collector_id, h.probe, h.subject, h.org_id, h.tenant_id, h.last_seen_at, h.payload,
                    h.digest, h.first_seen_at, 1, h.id
             FROM fact_history h
             WHERE h.first_seen_at = (SELECT min(first_seen_at) FROM fact_history m
                                      WHERE m.collector_id = h.collector_id AND m.probe = h.probe
                                        AND m.subject = h.subject)
               AND h.collector_id = {c}",
            c = self.id(&self.collector),
        )
    }

    fn integration(&self) -> String {
        let (secrets, yes) = if self.pg { ("'\\x00'::bytea", "TRUE") } else { ("x'00'", "1") };
        format!(
            "INSERT INTO integrations (id, org_id, name, kind, url, config, secrets, filter, routing, max_in_flight,
                                       enabled, created_at, updated_at, version)
             VALUES ({i}, {o}, 'Ops hook', 'webhook', 'https://hooks.example.com', '{{}}', {secrets},
                     '{{}}', 'per_tenant', 10, {yes}, {now}, {now}, 1)",
            i = self.id(&self.integration),
            o = self.id(&self.org),
            now = if self.pg { "now()" } else { "strftime('%Y-%m-%dT%H:%M:%f+00:00', 'now')" },
        )
    }

    fn deliveries(&self, n: usize, age: &str, status: &str, from: usize) -> String {
        format!(
            "INSERT INTO deliveries (id, org_id, integration_id, event_id, event_type, payload, occurred_at,
                                     status, attempts, created_at, updated_at)
             SELECT {id}, {o}, {i}, {id}, 'finding.opened', '{{\"title\": \"relay blocked\"}}', {at}, '{status}',
                    10, {at}, {at}
             FROM {series}",
            id = self.new_id(),
            o = self.id(&self.org),
            i = self.id(&self.integration),
            at = self.time(age),
            series = self.series(n, from),
        )
    }

    /// Ten attempts for every delivery.
    fn attempts(&self) -> String {
        let yes = if self.pg { "TRUE" } else { "1" };
        format!(
            "INSERT INTO delivery_attempts (id, delivery_id, org_id, attempt, at, succeeded, status, latency_ms,
                                            error, response_excerpt, exchanges)
             SELECT {id}, d.id, d.org_id, a.i, d.updated_at, {yes}, 200, 42, NULL, 'ok',
                    '[{{\"request\": \"POST /wbd\", \"status\": 200, \"latency_ms\": 42}}]'
             FROM deliveries d, {series}",
            id = self.new_id(),
            series = self.series(10, 0).replace("AS s(i)", "AS a(i)").replace(") AS s", ") AS a"),
        )
    }
}
