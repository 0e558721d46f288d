//! Running the product for a measurement: the release binaries, a fresh PostgreSQL database
//! (`wbd_bench_<uuid>`, dropped afterwards) or SQLite file, a unique RabbitMQ prefix (its queues
//! deleted afterwards), `wbd-api` and `wbd-worker` processes on loopback ports of their choosing,
//! and a direct read-only view of the database to follow the evaluation.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::str::FromStr as _;
use std::time::Duration;

use anyhow::{Context as _, bail};
use serde_json::Value;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqlitePoolOptions};
use sqlx::{Connection as _, PgPool, Row as _, SqlitePool};
use tokio::process::{Child, Command};
use uuid::Uuid;

/// The release binaries the benchmark starts.
#[derive(Debug, Clone)]
pub struct Binaries {
    pub api: PathBuf,
    pub worker: PathBuf,
    pub collector: PathBuf,
}

/// The command that builds what the benchmark runs.
pub const BUILD_COMMAND: &str = "cargo build --release -p wbd-api -p wbd-worker -p wbd-collector";

impl Binaries {
    /// `dir` or, by default, `target/release` of this workspace (honouring `CARGO_TARGET_DIR`).
    pub fn locate(dir: Option<&Path>) -> Binaries {
        let dir = dir.map(Path::to_path_buf).unwrap_or_else(|| target_dir().join("release"));
        let bin = |name: &str| dir.join(format!("{name}{}", std::env::consts::EXE_SUFFIX));
        Binaries { api: bin("wbd-api"), worker: bin("wbd-worker"), collector: bin("wbd-collector") }
    }

    /// Fails with the build command when one of `needed` is missing.
    pub fn check(&self, needed: &[&Path]) -> anyhow::Result<()> {
        let missing: Vec<String> =
            needed.iter().filter(|p| !p.exists()).map(|p| p.display().to_string()).collect();
        if !missing.is_empty() {
            bail!(
                "missing release binaries: {}. Build them first with `{BUILD_COMMAND}` (the benchmark \
                 measures release builds only), or point --bin-dir at them.",
                missing.join(", ")
            );
        }
        for path in needed {
            if let Some(age) = stale_by(path) {
                eprintln!(
                    "warning: {} is older than the newest source file by {} s; rebuild with `{BUILD_COMMAND}` to measure the current code",
                    path.display(),
                    age.as_secs()
                );
            }
        }
        Ok(())
    }
}

/// The workspace root (the benchmark's crate sits in `bench/`).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().map(Path::to_path_buf).unwrap_or_else(|| ".".into())
}

pub fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|| workspace_root().join("target"))
}

/// How much older `binary` is than the newest `.rs`/`.sql`/`.toml` under the product's crates.
fn stale_by(binary: &Path) -> Option<Duration> {
    let built = std::fs::metadata(binary).ok()?.modified().ok()?;
    let root = workspace_root();
    let mut newest = built;
    for dir in ["api/src", "worker/src", "collector/src", "crates", "migrations"] {
        newest = newest.max(newest_source(&root.join(dir)));
    }
    newest.duration_since(built).ok().filter(|d| *d > Duration::from_secs(1))
}

fn newest_source(dir: &Path) -> std::time::SystemTime {
    let mut newest = std::time::SystemTime::UNIX_EPOCH;
    let Ok(entries) = std::fs::read_dir(dir) else { return newest };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            if !path.ends_with("tests") && !path.ends_with("benches") {
                newest = newest.max(newest_source(&path));
            }
        } else if path.extension().is_some_and(|e| e == "rs" || e == "sql" || e == "toml")
            && let Ok(modified) = entry.metadata().and_then(|m| m.modified())
        {
            newest = newest.max(modified);
        }
    }
    newest
}

/// Refuses anything but loopback: every byte of the benchmark stays on this machine.
pub fn require_loopback(what: &str, url: &str) -> anyhow::Result<()> {
    let parsed = reqwest::Url::parse(url).with_context(|| format!("{what}: {url:?} is not a URL"))?;
    let host = parsed.host_str().unwrap_or("");
    let loopback = host == "localhost"
        || host.trim_matches(['[', ']']).parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback());
    if !loopback {
        bail!("{what} must point at this machine (127.0.0.1, ::1 or localhost), not {host:?}");
    }
    Ok(())
}

/// A fresh PostgreSQL database, dropped by [`PgDatabase::drop_database`].
#[derive(Debug, Clone)]
pub struct PgDatabase {
    admin_url: String,
    pub name: String,
    pub url: String,
}

impl PgDatabase {
    pub async fn create(admin_url: &str) -> anyhow::Result<PgDatabase> {
        let name = format!("wbd_bench_{}", Uuid::new_v4().simple());
        let mut admin = sqlx::PgConnection::connect(admin_url)
            .await
            .with_context(|| format!("connecting to PostgreSQL at {admin_url}"))?;
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut admin)
            .await
            .with_context(|| format!("CREATE DATABASE {name}"))?;
        let url = database_url(admin_url, &name)?;
        Ok(PgDatabase { admin_url: admin_url.to_owned(), name, url })
    }

    pub async fn drop_database(&self) {
        match sqlx::PgConnection::connect(&self.admin_url).await {
            Ok(mut admin) => {
                let sql = format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name);
                if let Err(e) = sqlx::query(sqlx::AssertSqlSafe(sql)).execute(&mut admin).await {
                    eprintln!("warning: dropping database {} failed: {e}", self.name);
                }
            }
            Err(e) => eprintln!("warning: cannot connect to drop database {}: {e}", self.name),
        }
    }
}

/// `admin_url` with its database replaced by `name`; the query (e.g. `?sslmode=disable`) stays.
pub fn database_url(admin_url: &str, name: &str) -> anyhow::Result<String> {
    let mut url = reqwest::Url::parse(admin_url).with_context(|| format!("{admin_url:?} is not a URL"))?;
    if url.path().trim_matches('/').is_empty() {
        bail!("the PostgreSQL URL must name a database, e.g. postgres://postgres@127.0.0.1:5432/postgres");
    }
    url.set_path(&format!("/{name}"));
    Ok(url.to_string())
}

/// Deletes the queues and exchange the product declared under `prefix`.
pub async fn delete_queues(amqp_url: &str, prefix: &str) {
    use lapin::options::{ExchangeDeleteOptions, QueueDeleteOptions};
    let Ok(conn) = lapin::Connection::connect(amqp_url, lapin::ConnectionProperties::default()).await else {
        eprintln!("warning: cannot connect to RabbitMQ to delete the {prefix}.* queues");
        return;
    };
    if let Ok(ch) = conn.create_channel().await {
        for q in [format!("{prefix}.evaluate"), format!("{prefix}.evaluate.dead"), format!("{prefix}.floor")]
        {
            let _ = ch.queue_delete(q.as_str().into(), QueueDeleteOptions::default()).await;
        }
        let _ = ch
            .exchange_delete(format!("{prefix}.dead").as_str().into(), ExchangeDeleteOptions::default())
            .await;
    }
    let _ = conn.close(200, "done".into()).await;
}

/// A started product process and its log file.
pub struct ProductProcess {
    pub name: String,
    pub child: Child,
    pub log: PathBuf,
}

impl ProductProcess {
    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The last lines of the log, for error messages.
    pub fn log_tail(&self) -> String {
        let text = self.log_text();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(15)..].join("\n")
    }
}

/// How the processes of a deployment are configured.
#[derive(Debug, Clone)]
pub struct ProcessEnv {
    pub database_url: String,
    pub amqp_url: Option<String>,
    pub prefix: String,
    pub log_level: String,
    /// Extra `WBD_*` settings, applied last.
    pub extra: Vec<(String, String)>,
}

/// The product as started for one phase.
pub struct Deployment {
    pub label: String,
    pub env: ProcessEnv,
    pub dir: tempfile::TempDir,
    pub apis: Vec<ProductProcess>,
    pub workers: Vec<ProductProcess>,
    pub bases: Vec<String>,
    pub db: DbView,
    pg: Option<PgDatabase>,
    bins: Binaries,
}

impl Deployment {
    /// PostgreSQL + RabbitMQ: `apis` × `wbd-api` (with the outbox relay) and `workers` ×
    /// `wbd-worker`.
    pub async fn distributed(
        bins: &Binaries,
        admin_url: &str,
        amqp_url: &str,
        apis: usize,
        workers: usize,
        log_level: &str,
        extra: Vec<(String, String)>,
    ) -> anyhow::Result<Deployment> {
        let pg = PgDatabase::create(admin_url).await?;
        let env = ProcessEnv {
            database_url: pg.url.clone(),
            amqp_url: Some(amqp_url.to_owned()),
            prefix: format!("wbdbench.{}", Uuid::new_v4().simple()),
            log_level: log_level.to_owned(),
            extra,
        };
        let db = match DbView::postgres(&pg.url).await {
            Ok(db) => db,
            Err(e) => {
                pg.drop_database().await;
                return Err(e);
            }
        };
        let mut deployment = Deployment {
            label: "distributed".into(),
            env,
            dir: tempfile::tempdir()?,
            apis: Vec::new(),
            workers: Vec::new(),
            bases: Vec::new(),
            db,
            pg: Some(pg),
            bins: bins.clone(),
        };
        if let Err(e) = deployment.start(apis, workers).await {
            deployment.teardown().await;
            return Err(e);
        }
        Ok(deployment)
    }

    /// One `wbd-api` on a fresh PostgreSQL database with its local queue and the worker inside (no
    /// RabbitMQ): the embedded shape on the distributed store.
    pub async fn single_on_postgres(
        bins: &Binaries,
        admin_url: &str,
        log_level: &str,
        extra: Vec<(String, String)>,
    ) -> anyhow::Result<Deployment> {
        let pg = PgDatabase::create(admin_url).await?;
        let env = ProcessEnv {
            database_url: pg.url.clone(),
            amqp_url: None,
            prefix: "wbd".into(),
            log_level: log_level.to_owned(),
            extra,
        };
        let db = match DbView::postgres(&pg.url).await {
            Ok(db) => db,
            Err(e) => {
                pg.drop_database().await;
                return Err(e);
            }
        };
        let mut deployment = Deployment {
            label: "single on PostgreSQL".into(),
            env,
            dir: tempfile::tempdir()?,
            apis: Vec::new(),
            workers: Vec::new(),
            bases: Vec::new(),
            db,
            pg: Some(pg),
            bins: bins.clone(),
        };
        if let Err(e) = deployment.start(1, 0).await {
            deployment.teardown().await;
            return Err(e);
        }
        Ok(deployment)
    }

    /// One `wbd-api` on SQLite with the worker inside (the default way to run it).
    pub async fn embedded(
        bins: &Binaries,
        log_level: &str,
        extra: Vec<(String, String)>,
    ) -> anyhow::Result<Deployment> {
        let dir = tempfile::tempdir()?;
        let db_path = dir.path().join("wbd.db");
        let env = ProcessEnv {
            database_url: format!("sqlite://{}", db_path.display()),
            amqp_url: None,
            prefix: "wbd".into(),
            log_level: log_level.to_owned(),
            extra,
        };
        // The view opens the file after the API created it (see `start`).
        let mut deployment = Deployment {
            label: "embedded".into(),
            env,
            dir,
            apis: Vec::new(),
            workers: Vec::new(),
            bases: Vec::new(),
            db: DbView::None,
            pg: None,
            bins: bins.clone(),
        };
        if let Err(e) = deployment.start(1, 0).await {
            deployment.teardown().await;
            return Err(e);
        }
        match DbView::sqlite(&db_path).await {
            Ok(db) => deployment.db = db,
            Err(e) => {
                deployment.teardown().await;
                return Err(e);
            }
        }
        Ok(deployment)
    }

    async fn start(&mut self, apis: usize, workers: usize) -> anyhow::Result<()> {
        for i in 0..apis.max(1) {
            let name = format!("api{}", i + 1);
            let mut cmd = self.command(&self.bins.api.clone(), &name)?;
            cmd.env("WBD_SERVER__LISTEN", "127.0.0.1:0");
            let child = cmd.spawn().with_context(|| format!("starting {}", self.bins.api.display()))?;
            let log = self.dir.path().join(format!("{name}.log"));
            let mut process = ProductProcess { name, child, log };
            let port = listening_port(&mut process).await?;
            let base = format!("http://127.0.0.1:{port}");
            wait_ready(&base, &process).await?;
            self.bases.push(base);
            self.apis.push(process);
        }
        for i in 0..workers {
            let name = format!("worker{}", i + 1);
            let child = self
                .command(&self.bins.worker.clone(), &name)?
                .spawn()
                .with_context(|| format!("starting {}", self.bins.worker.display()))?;
            let log = self.dir.path().join(format!("{name}.log"));
            let mut process = ProductProcess { name, child, log };
            // A worker that cannot start says so now, not as a stalled evaluation later.
            tokio::time::sleep(Duration::from_millis(700)).await;
            if let Some(status) = process.child.try_wait()? {
                bail!("{} exited at start ({status}):\n{}", process.name, process.log_tail());
            }
            self.workers.push(process);
        }
        Ok(())
    }

    fn command(&self, bin: &Path, name: &str) -> anyhow::Result<Command> {
        let log = std::fs::File::create(self.dir.path().join(format!("{name}.log")))?;
        let mut cmd = Command::new(bin);
        cmd.env("DATABASE_URL", &self.env.database_url)
            .env("WBD_QUEUE__PREFIX", &self.env.prefix)
            // The "listening" line tells the port; the rest at the chosen level.
            .env("RUST_LOG", format!("{},wbd_api::startup=info", self.env.log_level))
            .env("WBD_TELEMETRY__LOG_FORMAT", "json")
            // Every simulated site enrolls from this one loopback address, in seconds; a real
            // site enrolls once, from its own.
            .env("WBD_RATE_LIMITS__AUTH_PER_ADDRESS", "0")
            .env_remove("WBD_CONFIG")
            .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT")
            .current_dir(self.dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .kill_on_drop(true);
        match &self.env.amqp_url {
            Some(url) => cmd.env("AMQP_URL", url),
            None => cmd.env_remove("AMQP_URL"),
        };
        for (k, v) in &self.env.extra {
            cmd.env(k, v);
        }
        Ok(cmd)
    }

    /// `wbd-api bootstrap` as an operator runs it; returns the first org-admin API key.
    pub async fn bootstrap(&self, org_name: &str) -> anyhow::Result<String> {
        let out = self
            .command(&self.bins.api, "bootstrap")?
            .args(["bootstrap", "--org-name", org_name])
            .stdout(Stdio::piped())
            .output()
            .await
            .context("running wbd-api bootstrap")?;
        if !out.status.success() {
            let log = std::fs::read_to_string(self.dir.path().join("bootstrap.log")).unwrap_or_default();
            bail!("wbd-api bootstrap failed ({}): {log}", out.status);
        }
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .find(|l| l.starts_with("wbdk_"))
            .map(str::to_owned)
            .context("wbd-api bootstrap printed no API key")
    }

    pub fn pids(&self) -> Vec<u32> {
        self.apis.iter().chain(&self.workers).filter_map(ProductProcess::pid).collect()
    }

    /// Fails if a product process has exited (then the figures would be meaningless).
    pub fn check_alive(&mut self) -> anyhow::Result<()> {
        for p in self.apis.iter_mut().chain(self.workers.iter_mut()) {
            if let Some(status) = p.child.try_wait()? {
                bail!("{} exited during the run ({status}):\n{}", p.name, p.log_tail());
            }
        }
        Ok(())
    }

    /// Lines of the product's logs at WARN or ERROR, counted per process.
    pub fn warnings(&self) -> Vec<(String, usize, Option<String>)> {
        self.apis
            .iter()
            .chain(&self.workers)
            .map(|p| {
                let text = p.log_text();
                let bad: Vec<&str> = text
                    .lines()
                    .filter(|l| l.contains("\"level\":\"WARN\"") || l.contains("\"level\":\"ERROR\""))
                    .collect();
                (p.name.clone(), bad.len(), bad.first().map(|l| l.chars().take(400).collect()))
            })
            .collect()
    }

    /// Runs experimental SQL against the product's PostgreSQL database (after its migrations,
    /// before any load): a way to try a schema or index change without rebuilding.
    pub async fn run_sql(&self, statements: &[String]) -> anyhow::Result<()> {
        let Some(pg) = &self.pg else {
            bail!("--pg-sql needs the distributed (PostgreSQL) phase");
        };
        let mut conn = sqlx::PgConnection::connect(&pg.url).await?;
        for statement in statements {
            sqlx::query(sqlx::AssertSqlSafe(statement.clone()))
                .execute(&mut conn)
                .await
                .with_context(|| format!("--pg-sql {statement:?}"))?;
        }
        conn.close().await?;
        Ok(())
    }

    /// Stops the processes, drops the database and deletes the queues.
    pub async fn teardown(mut self) {
        for p in self.apis.iter_mut().chain(self.workers.iter_mut()) {
            let _ = p.child.start_kill();
            let _ = tokio::time::timeout(Duration::from_secs(10), p.child.wait()).await;
        }
        self.db.close().await;
        if let Some(pg) = &self.pg {
            pg.drop_database().await;
        }
        if let Some(url) = &self.env.amqp_url {
            delete_queues(url, &self.env.prefix).await;
        }
    }
}

/// The port `wbd-api` names in its JSON "listening" log line.
async fn listening_port(process: &mut ProductProcess) -> anyhow::Result<u16> {
    for _ in 0..300 {
        for line in process.log_text().lines() {
            let Ok(entry) = serde_json::from_str::<Value>(line) else { continue };
            if entry["fields"]["message"] == "wbd-api listening"
                && let Some(port) = entry["fields"]["port"].as_u64().and_then(|p| u16::try_from(p).ok())
            {
                return Ok(port);
            }
        }
        if let Some(status) = process.child.try_wait()? {
            bail!("{} exited at start ({status}):\n{}", process.name, process.log_tail());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    bail!("{} never said where it listens:\n{}", process.name, process.log_tail())
}

async fn wait_ready(base: &str, process: &ProductProcess) -> anyhow::Result<()> {
    let client = reqwest::Client::builder().timeout(Duration::from_secs(2)).no_proxy().build()?;
    for _ in 0..150 {
        if let Ok(res) = client.get(format!("{base}/readyz")).send().await
            && res.status().is_success()
        {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    bail!("{} never became ready:\n{}", process.name, process.log_tail())
}

/// A read-only view of the product's database, to see evaluation progress and findings
/// without going through the API under load.
pub enum DbView {
    None,
    Postgres(PgPool),
    Sqlite(SqlitePool),
}

/// Summed over every tenant: each accepted batch adds one to `facts_version`; an evaluation
/// sets `evaluated_facts_version` to the `facts_version` it saw.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Versions {
    pub facts: i64,
    pub evaluated: i64,
}

impl DbView {
    async fn postgres(url: &str) -> anyhow::Result<DbView> {
        let options = PgConnectOptions::from_str(url)?.application_name("wbd-bench");
        let pool = PgPoolOptions::new().max_connections(2).connect_with(options).await?;
        Ok(DbView::Postgres(pool))
    }

    async fn sqlite(path: &Path) -> anyhow::Result<DbView> {
        let options =
            SqliteConnectOptions::new().filename(path).read_only(true).busy_timeout(Duration::from_secs(5));
        let pool = SqlitePoolOptions::new().max_connections(1).connect_with(options).await?;
        Ok(DbView::Sqlite(pool))
    }

    async fn close(&self) {
        match self {
            DbView::None => {}
            DbView::Postgres(pool) => pool.close().await,
            DbView::Sqlite(pool) => pool.close().await,
        }
    }

    pub async fn versions(&self) -> anyhow::Result<Versions> {
        const SQL: &str = "SELECT CAST(COALESCE(SUM(facts_version), 0) AS BIGINT) AS f,
                                  CAST(COALESCE(SUM(evaluated_facts_version), 0) AS BIGINT) AS e
                           FROM tenants";
        let row = match self {
            DbView::None => bail!("no database view"),
            DbView::Postgres(pool) => {
                let row = sqlx::query(SQL).fetch_one(pool).await?;
                (row.try_get::<i64, _>("f")?, row.try_get::<i64, _>("e")?)
            }
            DbView::Sqlite(pool) => {
                let row = sqlx::query(SQL).fetch_one(pool).await?;
                (row.try_get::<i64, _>("f")?, row.try_get::<i64, _>("e")?)
            }
        };
        Ok(Versions { facts: row.0, evaluated: row.1 })
    }

    /// Evaluations that were committed for a queue message (the silence sweep's are not counted).
    pub async fn applied_evaluations(&self) -> anyhow::Result<i64> {
        const SQL: &str = "SELECT COUNT(*) AS n FROM processed_messages";
        Ok(match self {
            DbView::None => bail!("no database view"),
            DbView::Postgres(pool) => sqlx::query(SQL).fetch_one(pool).await?.try_get("n")?,
            DbView::Sqlite(pool) => sqlx::query(SQL).fetch_one(pool).await?.try_get("n")?,
        })
    }

    /// Findings of every state, and the events written for them.
    pub async fn finding_counts(&self) -> anyhow::Result<(i64, i64)> {
        const SQL: &str =
            "SELECT (SELECT COUNT(*) FROM findings) AS f, (SELECT COUNT(*) FROM finding_events) AS e";
        let row = match self {
            DbView::None => bail!("no database view"),
            DbView::Postgres(pool) => {
                let row = sqlx::query(SQL).fetch_one(pool).await?;
                (row.try_get("f")?, row.try_get("e")?)
            }
            DbView::Sqlite(pool) => {
                let row = sqlx::query(SQL).fetch_one(pool).await?;
                (row.try_get("f")?, row.try_get("e")?)
            }
        };
        Ok(row)
    }

    /// The marker finding's error text per tenant, for the tenants given.
    pub async fn marker_errors(&self, tenants: &[Uuid]) -> anyhow::Result<Vec<(Uuid, String)>> {
        if tenants.is_empty() {
            return Ok(Vec::new());
        }
        let subject = format!("{}:443@%", crate::workload::MARKER_HOST);
        match self {
            DbView::None => bail!("no database view"),
            DbView::Postgres(pool) => {
                let rows = sqlx::query(
                    "SELECT tenant_id, evidence->>'error' AS error FROM findings
                     WHERE tenant_id = ANY($1) AND rule_id = 'endpoint-reachable' AND subject LIKE $2",
                )
                .bind(tenants)
                .bind(&subject)
                .fetch_all(pool)
                .await?;
                rows.iter()
                    .map(|r| {
                        Ok((
                            r.try_get("tenant_id")?,
                            r.try_get::<Option<String>, _>("error")?.unwrap_or_default(),
                        ))
                    })
                    .collect()
            }
            DbView::Sqlite(pool) => {
                let placeholders = vec!["?"; tenants.len()].join(", ");
                let sql = format!(
                    "SELECT tenant_id, json_extract(evidence, '$.error') AS error FROM findings
                     WHERE tenant_id IN ({placeholders}) AND rule_id = 'endpoint-reachable' AND subject LIKE ?"
                );
                let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
                for t in tenants {
                    query = query.bind(*t);
                }
                let rows = query.bind(&subject).fetch_all(pool).await?;
                rows.iter()
                    .map(|r| {
                        Ok((
                            r.try_get("tenant_id")?,
                            r.try_get::<Option<String>, _>("error")?.unwrap_or_default(),
                        ))
                    })
                    .collect()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_benchmark_database_keeps_the_url_s_options() {
        assert_eq!(
            database_url("postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable", "wbd_bench_x")
                .unwrap(),
            "postgres://postgres@127.0.0.1:5432/wbd_bench_x?sslmode=disable"
        );
        assert_eq!(
            database_url("postgres://postgres@127.0.0.1:5432/postgres", "b").unwrap(),
            "postgres://postgres@127.0.0.1:5432/b"
        );
        assert!(database_url("postgres://postgres@127.0.0.1:5432", "b").is_err());
    }

    #[test]
    fn only_loopback_urls_are_accepted() {
        assert!(require_loopback("db", "postgres://postgres@127.0.0.1:5432/postgres").is_ok());
        assert!(require_loopback("db", "postgres://postgres@localhost/postgres").is_ok());
        assert!(require_loopback("mq", "amqp://guest:guest@[::1]:5672/%2f").is_ok());
        assert!(require_loopback("db", "postgres://postgres@db.example.com/postgres").is_err());
        assert!(require_loopback("db", "not a url").is_err());
    }
}
