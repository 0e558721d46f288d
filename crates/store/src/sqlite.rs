//! The SQLite backend of [`Store`](crate::Store), for the embedded single-box deployment: how it
//! opens its file, and what its dialect says differently from PostgreSQL's. The queries
//! themselves are written once for both backends in `sql/`, which is compiled inside this module.
//!
//! SQLite allows one writer at a time, so the store has one writer on purpose: every write (a
//! statement or a transaction) runs on the write pool's single connection, and the process's
//! writers (ingest, evaluation, the queue, deliveries) wait for it in the pool's queue, woken as
//! soon as it is free. Left to collide on the file's lock they would wait in SQLite's busy
//! handler, which sleeps in steps of up to 100 ms whatever happens meanwhile: that made every
//! collision cost milliseconds. Reads run on read-only connections beside the writer (WAL), and
//! a deferred read transaction sees one consistent snapshot. Every multi-statement write still
//! begins `IMMEDIATE`, taking the file's lock up front, for another process writing the same
//! file (an admin command). So the row-lock clauses the shared queries take are empty here.
//!
//! Timestamps are compared as text: sqlx writes every `DateTime<Utc>` as RFC 3339 with `+00:00`
//! and only the fraction varies in length (0, 3 or 6 digits, shortest exact), which still sorts
//! correctly because a longer fraction of an equal prefix is never zero.

use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::migrate::Migrator;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqliteRow, SqliteSynchronous};
use sqlx::{QueryBuilder, Row, Sqlite, Transaction};
use uuid::Uuid;

use crate::convert::{count_to_i64, micros, saturating_i64};
use crate::delivery_model::AttemptRow;
use crate::ingest_plan::{ApplyStart, BatchRecorded, IngestWrite, IngestWritten};
use crate::{Backend, BatchWrite, CollectorId, Result, TenantScope};

static MIGRATOR: Migrator = sqlx::migrate!("../../migrations/sqlite");

pub struct SqliteStore {
    pool: sql::Pools,
}

/// `crate::check` on SQLite: opens the file read-only if it exists; a missing file is reported,
/// not created.
pub(crate) async fn check(url: &str) -> Result<crate::DatabaseCheck> {
    use sqlx::Connection as _;
    let options = SqliteConnectOptions::from_str(url)?.read_only(true).create_if_missing(false);
    if !options.get_filename().exists() {
        let mut check = crate::compare_migrations(Backend::Sqlite, &[], &MIGRATOR);
        check.missing_file = true;
        return Ok(check);
    }
    let mut conn = sqlx::SqliteConnection::connect_with(&options).await?;
    let applied = crate::applied_versions(
        sqlx::query_scalar::<_, i64>(crate::APPLIED_MIGRATIONS).fetch_all(&mut conn).await,
    )?;
    let _ = conn.close().await;
    Ok(crate::compare_migrations(Backend::Sqlite, &applied, &MIGRATOR))
}

impl SqliteStore {
    /// Opens (creating if missing) the database file in WAL mode and applies the SQLite
    /// migrations: `max_connections` readers, opened read-only so a write can never slip onto
    /// one, and the one writer (see the module documentation). `sqlite::memory:` is unsuitable:
    /// each connection would get its own empty database.
    pub async fn connect(url: &str, max_connections: u32) -> Result<Self> {
        let options = SqliteConnectOptions::from_str(url)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            // NORMAL is durable across process crashes in WAL mode; only an OS crash may lose the
            // last commits, which is the usual trade for an embedded server.
            .synchronous(SqliteSynchronous::Normal)
            // Only another process (an admin command beside the server) can make a connection
            // wait for the file's lock: this process's writes queue for its one writer.
            .busy_timeout(Duration::from_secs(5))
            .foreign_keys(true);
        // The writer is opened first and kept open: it creates the file, the WAL and its index,
        // which read-only connections cannot create.
        let write = crate::pool_options::<Sqlite>()
            .max_connections(1)
            .min_connections(1)
            .idle_timeout(None)
            .max_lifetime(None)
            .connect_with(options.clone())
            .await?;
        MIGRATOR.run(&write).await?;
        let read = crate::pool_options::<Sqlite>()
            .max_connections(max_connections)
            .connect_with(options.read_only(true).create_if_missing(false))
            .await?;
        Ok(Self { pool: sql::Pools::split(read, write) })
    }
}

// ---- the dialect: what `sql/` takes from this backend --------------------------------------------

type Db = Sqlite;
type BackendStore = SqliteStore;
type Tx = Transaction<'static, Sqlite>;
const BACKEND: Backend = Backend::Sqlite;

/// Takes the write lock from the first statement on (see the module documentation).
const BEGIN_WRITE: &str = "BEGIN IMMEDIATE";
/// A deferred transaction reads one WAL snapshot.
const BEGIN_SNAPSHOT: &str = "BEGIN";
/// The tenant's snapshot is read by six statements in a read transaction: in process a statement
/// costs little, and the one-statement form's wide rows made the embedded product 7% slower
/// (BENCHMARKS.md, issue 15).
const SNAPSHOT_IN_ONE_STATEMENT: bool = false;

/// Names the index a query must read: SQLite's planner has no statistics (no `ANALYZE`), so it
/// takes an equality on an indexed column over a narrow range on another index, even when the
/// equality matches every row of a backlog and the range a handful.
macro_rules! indexed_by {
    ($index:literal) => {
        concat!(" INDEXED BY ", $index)
    };
}

/// No row locks: a write transaction holds the whole database (see the module documentation).
macro_rules! row_lock {
    ($($clause:tt)+) => {
        ""
    };
}

/// `$column` among the values `$subquery` selects: SQLite runs the subquery once into a
/// temporary index and looks each row up by key.
macro_rules! in_batch {
    ($column:expr, $subquery:expr) => {
        concat!($column, " IN (", $subquery, ")")
    };
}

/// `$column` among the texts bound to `$param` (see [`text_list`]), which SQLite reads once.
macro_rules! in_list {
    ($column:expr, $param:literal) => {
        concat!($column, " IN (SELECT value FROM json_each(", $param, "))")
    };
}

/// Texts bound as one parameter, for [`in_list`]: a JSON array, as SQLite binds no arrays.
fn text_list(items: &[&str]) -> String {
    serde_json::Value::from(items.iter().map(|s| serde_json::Value::from(*s)).collect::<Vec<_>>()).to_string()
}

/// A row's address, for deleting exactly the rows a subquery chose.
macro_rules! row_address {
    () => {
        "rowid"
    };
}

#[path = "sql/mod.rs"]
#[allow(clippy::duplicate_mod, reason = "compiled once per backend, by design: see sql/mod.rs")]
mod sql;

/// Rows per multi-row statement. SQLite allows 32,766 bound values in one statement and the
/// widest row here binds 12, so a chunk stays far below the limit whatever a batch holds.
const ROWS_PER_STATEMENT: usize = 500;

/// The stored latest facts of a batch's (probe, subject) keys, a chunk of keys per statement.
///
/// Statements, not rows, are what cost here: sqlx runs each SQLite connection on a thread of
/// its own, so every statement is a round trip between threads (two context switches), which
/// costs more than SQLite's own work for a row. A batch of 50 results used to make ~160 of them
/// while holding the one writer; now it makes a handful.
async fn stored_fact_rows(
    tx: &mut Tx,
    collector_id: CollectorId,
    keys: Vec<(String, String)>,
) -> Result<Vec<SqliteRow>> {
    let mut rows = Vec::with_capacity(keys.len());
    for chunk in keys.chunks(ROWS_PER_STATEMENT) {
        // Driven by the keys, so each is one primary-key lookup (`(probe, subject) IN (...)`
        // would scan all the collector's facts).
        let mut query = QueryBuilder::<Sqlite>::new(
            "SELECT f.probe, f.subject, f.observed_at, f.digest, f.first_seen_at, f.repeat_count, f.history_id
             FROM (",
        );
        query.push_values(chunk, |mut row, (probe, subject)| {
            row.push_bind(probe.as_str()).push_bind(subject.as_str());
        });
        query.push(") AS k JOIN facts AS f ON f.collector_id = ");
        query.push_bind(collector_id.0).push(" AND f.probe = k.column1 AND f.subject = k.column2");
        rows.extend(query.build().persistent(false).fetch_all(&mut **tx).await?);
    }
    Ok(rows)
}

/// Records a batch, then its collector's heartbeat, inside the ingest's immediate transaction.
async fn record_batch(
    tx: &mut Tx,
    scope: TenantScope,
    batch: &BatchWrite,
    received_at: DateTime<Utc>,
) -> Result<BatchRecorded> {
    let inserted = sqlx::query(
        "INSERT INTO batches (collector_id, batch_id, org_id, tenant_id, body_hash, result_count, received_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7)
         ON CONFLICT (collector_id, batch_id) DO NOTHING",
    )
    .bind(batch.collector_id.0)
    .bind(batch.batch_id)
    .bind(scope.org_id.0)
    .bind(scope.tenant_id.0)
    .bind(&batch.body_hash)
    .bind(count_to_i64(batch.results.len()))
    .bind(received_at)
    .execute(&mut **tx)
    .await?;
    if inserted.rows_affected() == 0 {
        return Ok(BatchRecorded::Seen);
    }
    let heartbeat = sqlx::query(
        "UPDATE collectors
         SET last_seen_at = $4, version = $5, hostname = $6, os = $7, push_interval_secs = $8,
             spool_dropped = $9, silent_after = $10
         WHERE id = $1 AND org_id = $2 AND tenant_id = $3 AND status = 'active'",
    )
    .bind(batch.collector_id.0)
    .bind(scope.org_id.0)
    .bind(scope.tenant_id.0)
    .bind(received_at)
    .bind(&batch.collector_version)
    .bind(&batch.collector_hostname)
    .bind(&batch.collector_os)
    .bind(i64::from(batch.push_interval_secs))
    .bind(saturating_i64(batch.spool_dropped))
    .bind(micros(batch.silent_after))
    .execute(&mut **tx)
    .await?;
    Ok(if heartbeat.rows_affected() == 0 { BatchRecorded::CollectorInactive } else { BatchRecorded::New })
}

/// Writes an ingest plan in the immediate transaction of the ingest: new history runs, run
/// ends and latest facts, each as multi-row statements (see [`stored_fact_rows`] for why);
/// the version, the probes and the message follow in the shared code. The statements' text
/// depends on the row count, so they are not kept in the statement cache.
async fn write_ingest(tx: &mut Tx, write: &IngestWrite<'_>) -> Result<IngestWritten> {
    let (scope, collector_id, plan) = (write.scope, write.collector_id, &write.plan);
    for runs in plan.new_runs.chunks(ROWS_PER_STATEMENT) {
        let mut query = QueryBuilder::<Sqlite>::new(
            "INSERT INTO fact_history (id, org_id, tenant_id, collector_id, probe, subject, digest, payload,
                                       first_seen_at, last_seen_at, count) ",
        );
        query.push_values(runs, |mut row, run| {
            row.push_bind(run.id)
                .push_bind(scope.org_id.0)
                .push_bind(scope.tenant_id.0)
                .push_bind(collector_id.0)
                .push_bind(run.probe)
                .push_bind(run.subject)
                .push_bind(run.digest)
                .push_bind(run.payload)
                .push_bind(run.first_seen_at)
                .push_bind(run.last_seen_at)
                .push_bind(run.count);
        });
        query.build().persistent(false).execute(&mut **tx).await?;
    }
    for ended in plan.ended_runs.chunks(ROWS_PER_STATEMENT) {
        // VALUES names its columns column1, column2, ...
        let mut query = QueryBuilder::<Sqlite>::new(
            "UPDATE fact_history SET last_seen_at = e.column2, count = e.column3 FROM (",
        );
        query.push_values(ended, |mut row, end| {
            row.push_bind(end.id).push_bind(end.last_seen_at).push_bind(end.count);
        });
        query.push(") AS e WHERE fact_history.id = e.column1 AND fact_history.collector_id = ");
        query.push_bind(collector_id.0);
        query.build().persistent(false).execute(&mut **tx).await?;
    }
    for facts in plan.facts.chunks(ROWS_PER_STATEMENT) {
        let mut query = QueryBuilder::<Sqlite>::new(
            "INSERT INTO facts (collector_id, probe, subject, org_id, tenant_id, observed_at, payload, timings,
                                digest, first_seen_at, repeat_count, history_id) ",
        );
        query.push_values(facts, |mut row, fact| {
            row.push_bind(collector_id.0)
                .push_bind(fact.probe)
                .push_bind(fact.subject)
                .push_bind(scope.org_id.0)
                .push_bind(scope.tenant_id.0)
                .push_bind(fact.observed_at)
                .push_bind(fact.payload)
                .push_bind(fact.timings)
                .push_bind(fact.digest)
                .push_bind(fact.first_seen_at)
                .push_bind(fact.repeat_count)
                .push_bind(fact.history_id);
        });
        query.push(
            " ON CONFLICT (collector_id, probe, subject) DO UPDATE
             SET observed_at = excluded.observed_at, payload = excluded.payload, timings = excluded.timings,
                 digest = excluded.digest, first_seen_at = excluded.first_seen_at,
                 repeat_count = excluded.repeat_count, history_id = excluded.history_id",
        );
        query.build().persistent(false).execute(&mut **tx).await?;
    }
    for repeats in plan.repeats.chunks(ROWS_PER_STATEMENT) {
        let mut query = QueryBuilder::<Sqlite>::new(
            "UPDATE facts SET observed_at = r.column3, timings = r.column4, repeat_count = r.column5 FROM (",
        );
        query.push_values(repeats, |mut row, repeat| {
            row.push_bind(repeat.probe)
                .push_bind(repeat.subject)
                .push_bind(repeat.observed_at)
                .push_bind(repeat.timings)
                .push_bind(repeat.repeat_count);
        });
        query.push(") AS r WHERE facts.collector_id = ");
        query.push_bind(collector_id.0);
        query.push(" AND facts.probe = r.column1 AND facts.subject = r.column2");
        query.build().persistent(false).execute(&mut **tx).await?;
    }
    Ok(IngestWritten::PlanOnly)
}

/// No one statement for a push token's use and its rate limit: the store does them in turn.
async fn use_push_token_counted(
    _pool: &sqlx::SqlitePool,
    _id: CollectorId,
    _jti: Uuid,
    _expires_at: DateTime<Utc>,
    _bucket: &str,
    _limit: crate::RateLimit,
    _now: DateTime<Utc>,
) -> Result<Option<crate::PushTokenUse>> {
    Ok(None)
}

/// Records a push token's use, then forgets the collector's expired ones: two statements (SQLite
/// has no data-modifying CTEs) on one turn at the writer.
async fn use_push_token(
    pool: &sqlx::SqlitePool,
    id: CollectorId,
    jti: Uuid,
    expires_at: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Result<bool> {
    let mut conn = pool.acquire().await?;
    let first = sqlx::query(
        "INSERT INTO push_token_uses (collector_id, jti, expires_at) VALUES ($1, $2, $3)
         ON CONFLICT (collector_id, jti) DO NOTHING",
    )
    .bind(id.0)
    .bind(jti)
    .bind(expires_at)
    .execute(&mut *conn)
    .await?
    .rows_affected()
        == 1;
    sqlx::query("DELETE FROM push_token_uses WHERE collector_id = $1 AND expires_at < $2")
        .bind(id.0)
        .bind(now)
        .execute(&mut *conn)
        .await?;
    Ok(first)
}

/// The start of applying an evaluation: the message recorded as processed, then the tenant's
/// evaluated version moved if the facts did not move since the snapshot.
async fn begin_apply(
    tx: &mut Tx,
    scope: TenantScope,
    message_id: Option<Uuid>,
    facts_version: i64,
    unknown_rules: Option<u32>,
    now: DateTime<Utc>,
) -> Result<ApplyStart> {
    if let Some(message_id) = message_id {
        let recorded = sqlx::query(
            "INSERT INTO processed_messages (message_id, processed_at) VALUES ($1, $2)
             ON CONFLICT (message_id) DO NOTHING",
        )
        .bind(message_id)
        .bind(now)
        .execute(&mut **tx)
        .await?;
        if recorded.rows_affected() == 0 {
            return Ok(ApplyStart::AlreadyProcessed);
        }
    }
    let current = sqlx::query(
        "UPDATE tenants SET evaluated_facts_version = $3, unknown_rules = COALESCE($4, unknown_rules)
         WHERE id = $1 AND org_id = $2 AND facts_version = $3",
    )
    .bind(scope.tenant_id.0)
    .bind(scope.org_id.0)
    .bind(facts_version)
    .bind(unknown_rules.map(i64::from))
    .execute(&mut **tx)
    .await?;
    Ok(if current.rows_affected() == 0 { ApplyStart::Moved } else { ApplyStart::Current })
}

/// An evaluation that changes nothing still takes the writer's transaction on SQLite: its
/// statements are several, and the writer is in this process (no round trip to save).
async fn apply_alone(
    _pool: &sql::Pools,
    _scope: TenantScope,
    _message_id: Option<Uuid>,
    _facts_version: i64,
    _unknown_rules: Option<u32>,
    _now: DateTime<Utc>,
) -> Result<Option<ApplyStart>> {
    Ok(None)
}

/// Binds `ids` as the list an `IN (` just pushed is waiting for, and closes it (SQLite has no
/// arrays to bind).
fn push_id_list(query: &mut QueryBuilder<Sqlite>, ids: &[Uuid]) {
    let mut list = query.separated(", ");
    for id in ids {
        list.push_bind(*id);
    }
    query.push(")");
}

/// Writes finished attempts whose leases still hold their deliveries: each delivery's new state
/// and its attempt row, two statements each (statements cost little in process). Returns the ids
/// of the deliveries written.
async fn finish_attempts(tx: &mut Tx, rows: &[AttemptRow<'_>]) -> Result<Vec<Uuid>> {
    let mut held = Vec::with_capacity(rows.len());
    for row in rows {
        let written = sqlx::query(
            "UPDATE deliveries SET status = $3, attempts = $4, next_attempt_at = $5, lease_id = NULL,
                 lease_until = NULL, last_attempt_at = $6, last_status = $7, last_error = $8, updated_at = $6
             WHERE id = $1 AND status = 'pending' AND lease_id = $2",
        )
        .bind(row.delivery_id)
        .bind(row.lease_id)
        .bind(row.status)
        .bind(row.attempt)
        .bind(row.next_attempt_at)
        .bind(row.at)
        .bind(row.http_status)
        .bind(row.error)
        .execute(&mut **tx)
        .await?;
        if written.rows_affected() == 0 {
            continue;
        }
        sqlx::query(
            "INSERT INTO delivery_attempts (id, delivery_id, org_id, attempt, at, succeeded, status, latency_ms,
                 error, response_excerpt, exchanges)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
        )
        .bind(Uuid::now_v7())
        .bind(row.delivery_id)
        .bind(row.org_id)
        .bind(row.attempt)
        .bind(row.at)
        .bind(row.succeeded)
        .bind(row.http_status)
        .bind(row.latency_ms)
        .bind(row.error)
        .bind(row.response_excerpt)
        .bind(sqlx::types::Json(row.exchanges))
        .execute(&mut **tx)
        .await?;
        held.push(row.delivery_id);
    }
    Ok(held)
}

/// Leases the deliveries a claim took, a statement per chunk of ids.
async fn lease_deliveries(tx: &mut Tx, ids: &[Uuid], lease_id: Uuid, until: DateTime<Utc>) -> Result<()> {
    for chunk in ids.chunks(ROWS_PER_STATEMENT) {
        let mut query = QueryBuilder::<Sqlite>::new("UPDATE deliveries SET lease_id = ");
        query.push_bind(lease_id).push(", lease_until = ").push_bind(until).push(" WHERE id IN (");
        push_id_list(&mut query, chunk);
        query.build().persistent(false).execute(&mut **tx).await?;
    }
    Ok(())
}

/// Findings by id, each with its tenant's name (`tenant_name`): one statement per chunk of ids
/// (SQLite has no arrays to bind).
async fn findings_by_id(tx: &mut Tx, ids: &[Uuid]) -> Result<Vec<SqliteRow>> {
    let mut out = Vec::with_capacity(ids.len());
    for chunk in ids.chunks(ROWS_PER_STATEMENT) {
        let mut query = QueryBuilder::<Sqlite>::new(concat!(
            "SELECT ",
            finding_cols!(),
            ", (SELECT name FROM tenants t WHERE t.id = findings.tenant_id) AS tenant_name
             FROM findings WHERE id IN ("
        ));
        push_id_list(&mut query, chunk);
        out.extend(query.build().persistent(false).fetch_all(&mut **tx).await?);
    }
    Ok(out)
}

/// Marks finding events dispatched (their deliveries are in the same transaction): one
/// statement per chunk of ids.
async fn mark_dispatched(tx: &mut Tx, ids: &[Uuid], now: DateTime<Utc>) -> Result<()> {
    for chunk in ids.chunks(ROWS_PER_STATEMENT) {
        let mut query = QueryBuilder::<Sqlite>::new("UPDATE finding_events SET dispatched_at = ");
        query.push_bind(now).push(", dispatch_lease_until = NULL WHERE id IN (");
        push_id_list(&mut query, chunk);
        query.build().persistent(false).execute(&mut **tx).await?;
    }
    Ok(())
}

/// One statement per chunk of ids (SQLite has no arrays to bind); a single id, the common case
/// (one acknowledged message), keeps its cached statement.
async fn delete_outbox(pool: &sql::Pools, ids: &[Uuid]) -> Result<()> {
    match ids {
        [] => {}
        [id] => {
            sqlx::query("DELETE FROM outbox WHERE id = $1").bind(id).execute(pool.write()).await?;
        }
        _ => {
            let mut tx = pool.write().begin_with(BEGIN_WRITE).await?;
            for chunk in ids.chunks(ROWS_PER_STATEMENT) {
                let mut query = QueryBuilder::<Sqlite>::new("DELETE FROM outbox WHERE id IN (");
                push_id_list(&mut query, chunk);
                query.build().persistent(false).execute(&mut *tx).await?;
            }
            tx.commit().await?;
        }
    }
    Ok(())
}

/// Copies, then deletes (SQLite has no data-modifying CTEs), in one transaction.
async fn dead_letter_outbox(pool: &sql::Pools, id: Uuid, reason: &str, now: DateTime<Utc>) -> Result<()> {
    let mut tx = pool.write().begin_with(BEGIN_WRITE).await?;
    sqlx::query(concat!(
        "INSERT OR IGNORE INTO dead_letters (",
        outbox_cols!(),
        ", reason, dead_at) SELECT ",
        outbox_cols!(),
        ", $2, $3 FROM outbox WHERE id = $1"
    ))
    .bind(id)
    .bind(reason)
    .bind(micros(now))
    .execute(&mut *tx)
    .await?;
    sqlx::query("DELETE FROM outbox WHERE id = $1").bind(id).execute(&mut *tx).await?;
    tx.commit().await?;
    Ok(())
}

/// The commands for the answer to `batch_id`: those waiting (neither cancelled nor run out), now
/// marked delivered with this batch, and those an earlier attempt of this batch marked. Almost
/// every push finds nothing waiting: read first, and take the write lock only when there is something to hand out.
async fn deliver_collector_commands(
    pool: &sql::Pools,
    scope: TenantScope,
    collector: CollectorId,
    batch_id: Uuid,
    now: DateTime<Utc>,
) -> Result<Vec<SqliteRow>> {
    const FOR_BATCH: &str = concat!(
        "SELECT ",
        command_cols!(),
        " FROM collector_commands
         WHERE collector_id = $1 AND org_id = $2 AND tenant_id = $3
           AND ((delivered_batch_id IS NULL AND cancelled_at IS NULL AND expires_at > $5)
                OR delivered_batch_id = $4)
         ORDER BY created_at, id"
    );
    let for_batch = || {
        sqlx::query(FOR_BATCH)
            .bind(collector.0)
            .bind(scope.org_id.0)
            .bind(scope.tenant_id.0)
            .bind(batch_id)
            .bind(now)
    };
    let rows = for_batch().fetch_all(pool.read()).await?;
    let delivered =
        |row: &SqliteRow| row.try_get::<Option<Uuid>, _>("delivered_batch_id").is_ok_and(|b| b.is_some());
    if rows.iter().all(delivered) {
        return Ok(rows);
    }
    let mut tx = pool.write().begin_with(BEGIN_WRITE).await?;
    sqlx::query(
        "UPDATE collector_commands SET delivered_batch_id = $4, delivered_at = $5
         WHERE collector_id = $1 AND org_id = $2 AND tenant_id = $3 AND delivered_batch_id IS NULL
           AND cancelled_at IS NULL AND expires_at > $5",
    )
    .bind(collector.0)
    .bind(scope.org_id.0)
    .bind(scope.tenant_id.0)
    .bind(batch_id)
    .bind(now)
    .execute(&mut *tx)
    .await?;
    let rows = for_batch().fetch_all(&mut *tx).await?;
    tx.commit().await?;
    Ok(rows)
}
