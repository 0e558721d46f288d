//! The PostgreSQL backend of [`Store`](crate::Store), for the distributed deployment (many API and
//! worker processes on one database): how it connects, and what its dialect says differently
//! from SQLite's. The queries themselves are written once for both backends in `sql/`, which is
//! compiled inside this module.
//!
//! Concurrency relies on row locks rather than on serializable transactions: ingest locks the
//! collector row before it reads and rewrites that collector's facts, the outbox is claimed with
//! `FOR UPDATE SKIP LOCKED`, and evaluations are guarded by `facts_version` and per-finding
//! versions checked in the `UPDATE`s themselves. Lock order is always collector, then facts and
//! tenant in one statement (ingest), and tenant → findings (evaluation): the two never wait for
//! each other in a cycle, since an ingest takes no finding and an evaluation no fact.

use chrono::{DateTime, Utc};
use sqlx::migrate::Migrator;
use sqlx::postgres::PgRow;
use sqlx::{Postgres, Transaction};
use uuid::Uuid;

use crate::convert::{count_to_i64, micros, saturating_i64};
use sqlx::Row as _;
use sqlx::types::Json;

use crate::delivery_model::AttemptRow;
use crate::ingest_plan::{ApplyStart, BatchRecorded, IngestWrite, IngestWritten};
use crate::{Backend, BatchWrite, CollectorId, PushTokenUse, RateDecision, RateLimit, Result, TenantScope};

static MIGRATOR: Migrator = sqlx::migrate!("../../migrations/postgres");

pub struct PgStore {
    pool: sql::Pools,
}

/// `crate::check` on PostgreSQL: one connection, one read.
pub(crate) async fn check(url: &str) -> Result<crate::DatabaseCheck> {
    use sqlx::Connection as _;
    let mut conn = sqlx::PgConnection::connect(url).await?;
    let applied = crate::applied_versions(
        sqlx::query_scalar::<_, i64>(crate::APPLIED_MIGRATIONS).fetch_all(&mut conn).await,
    )?;
    let _ = conn.close().await;
    Ok(crate::compare_migrations(Backend::Postgres, &applied, &MIGRATOR))
}

impl PgStore {
    /// Connects and applies the PostgreSQL migrations (sqlx serialises concurrent migrators with
    /// an advisory lock, so many processes may start at once).
    pub async fn connect(url: &str, max_connections: u32) -> Result<Self> {
        let pool = crate::pool_options::<Postgres>().max_connections(max_connections).connect(url).await?;
        MIGRATOR.run(&pool).await?;
        // Row locks let any number of writers share the pool: reads and writes take from one.
        Ok(Self { pool: sql::Pools::shared(pool) })
    }
}

// ---- the dialect: what `sql/` takes from this backend --------------------------------------------

type Db = Postgres;
type BackendStore = PgStore;
type Tx = Transaction<'static, Postgres>;
const BACKEND: Backend = Backend::Postgres;

/// Writers lock the rows they change as they go, so a write transaction begins plainly.
const BEGIN_WRITE: &str = "BEGIN";
/// A tenant's snapshot is read in one MVCC snapshot, so its versions match the rows read.
const BEGIN_SNAPSHOT: &str = "BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY";
/// The tenant's snapshot is read in one statement: a statement costs a round trip and about
/// 30 µs of the server's CPU besides its work (BENCHMARKS.md, issue 15).
const SNAPSHOT_IN_ONE_STATEMENT: bool = true;

/// No index hints: PostgreSQL's planner reads the table's statistics.
macro_rules! indexed_by {
    ($index:literal) => {
        ""
    };
}

/// The clause that locks the rows a `SELECT` reads:
/// - `for_update`: for the transaction's change;
/// - `for_share`: against changes until the transaction ends;
/// - `for_no_key_update`: against other writers of the row (an integration's slots and budget, a
///   delivery's lease), without conflicting with the `KEY SHARE` lock that a referencing insert
///   takes, so enqueuing a delivery never waits for a claim, nor deadlocks with one;
/// - `skip_locked "t"`: for the change, skipping rows of `t` (a table or alias in the query)
///   another transaction holds, so concurrent claimers take disjoint rows instead of waiting.
macro_rules! row_lock {
    (for_update) => {
        " FOR UPDATE"
    };
    (for_share) => {
        " FOR SHARE"
    };
    (for_no_key_update) => {
        " FOR NO KEY UPDATE"
    };
    (skip_locked $table:literal) => {
        concat!(" FOR UPDATE OF ", $table, " SKIP LOCKED")
    };
}

/// `$column` among the values `$subquery` selects, as an array computed once (an InitPlan): the
/// planner then fetches just those rows by tuple id or index. A plain `IN (subquery)` over a
/// `LIMIT`ed batch is planned as a hash join over a sequential scan of the whole table.
macro_rules! in_batch {
    ($column:expr, $subquery:expr) => {
        concat!($column, " = ANY(ARRAY(", $subquery, "))")
    };
}

/// `$column` among the texts bound to `$param` (see [`text_list`]).
macro_rules! in_list {
    ($column:expr, $param:literal) => {
        concat!($column, " = ANY(", $param, "::text[])")
    };
}

/// Texts bound as one parameter, for [`in_list`].
fn text_list(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| (*s).to_owned()).collect()
}

/// A row's physical address, for deleting exactly the rows a locking subquery chose.
macro_rules! row_address {
    () => {
        "ctid"
    };
}

#[path = "sql/mod.rs"]
#[allow(clippy::duplicate_mod, reason = "compiled once per backend, by design: see sql/mod.rs")]
mod sql;

/// The stored latest facts of a batch's (probe, subject) keys, in one round trip.
async fn stored_fact_rows(
    tx: &mut Tx,
    collector_id: CollectorId,
    keys: Vec<(String, String)>,
) -> Result<Vec<PgRow>> {
    let (probes, subjects): (Vec<String>, Vec<String>) = keys.into_iter().unzip();
    Ok(sqlx::query(
        "SELECT f.probe, f.subject, f.observed_at, f.digest, f.first_seen_at, f.repeat_count, f.history_id
         FROM facts f
         JOIN UNNEST($2::text[], $3::text[]) AS k (probe, subject)
              ON f.probe = k.probe AND f.subject = k.subject
         WHERE f.collector_id = $1",
    )
    .bind(collector_id.0)
    .bind(probes)
    .bind(subjects)
    .fetch_all(&mut **tx)
    .await?)
}

/// Records a batch and its collector's heartbeat in one statement. The `UPDATE` takes the
/// collector's row lock, which the ingest holds until it commits (see [`stored_fact_rows`]).
async fn record_batch(
    tx: &mut Tx,
    scope: TenantScope,
    batch: &BatchWrite,
    received_at: DateTime<Utc>,
) -> Result<BatchRecorded> {
    let row = sqlx::query(
        "WITH batch AS (
             INSERT INTO batches (collector_id, batch_id, org_id, tenant_id, body_hash, result_count, received_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7)
             ON CONFLICT (collector_id, batch_id) DO NOTHING
             RETURNING 1
         ), heartbeat AS (
             UPDATE collectors
             SET last_seen_at = $7, version = $8, hostname = $9, os = $10, push_interval_secs = $11,
                 spool_dropped = $12, silent_after = $13
             WHERE id = $1 AND org_id = $3 AND tenant_id = $4 AND status = 'active'
               AND EXISTS (SELECT 1 FROM batch)
             RETURNING 1
         )
         SELECT EXISTS (SELECT 1 FROM batch) AS new, EXISTS (SELECT 1 FROM heartbeat) AS active",
    )
    .bind(batch.collector_id.0)
    .bind(batch.batch_id)
    .bind(scope.org_id.0)
    .bind(scope.tenant_id.0)
    .bind(&batch.body_hash)
    .bind(count_to_i64(batch.results.len()))
    .bind(received_at)
    .bind(&batch.collector_version)
    .bind(&batch.collector_hostname)
    .bind(&batch.collector_os)
    .bind(i64::from(batch.push_interval_secs))
    .bind(saturating_i64(batch.spool_dropped))
    .bind(micros(batch.silent_after))
    .fetch_one(&mut **tx)
    .await?;
    Ok(match (row.try_get::<bool, _>("new")?, row.try_get::<bool, _>("active")?) {
        (false, _) => BatchRecorded::Seen,
        (true, false) => BatchRecorded::CollectorInactive,
        (true, true) => BatchRecorded::New,
    })
}

/// Writes everything an ingest writes after its plan in one statement of data-modifying CTEs:
/// the new facts version, the probes that reported in it, the outbox message, the new history
/// runs, the ended ones, the changed latest facts and the repeated ones. Each CTE takes
/// its rows from `UNNEST` arrays, so an empty kind writes nothing. The sub-statements touch
/// disjoint rows (the plan has at most one write per fact and per run), and the facts' foreign
/// key to their new runs is checked at the end of the statement, when the runs are in.
async fn write_ingest(tx: &mut Tx, write: &IngestWrite<'_>) -> Result<IngestWritten> {
    let (scope, plan) = (write.scope, &write.plan);
    let (runs, ended, facts, repeats) = (&plan.new_runs, &plan.ended_runs, &plan.facts, &plan.repeats);
    sqlx::query(
        "WITH version AS (
             UPDATE tenants SET facts_version = facts_version + 1 WHERE id = $2 AND org_id = $1
             RETURNING facts_version
         ), probes AS (
             INSERT INTO probe_versions (tenant_id, probe, org_id, facts_version)
             SELECT $2, p.probe, $1, version.facts_version FROM version, UNNEST($4::text[]) AS p (probe)
             ON CONFLICT (tenant_id, probe) DO UPDATE SET facts_version = EXCLUDED.facts_version
         ), message AS (
             INSERT INTO outbox (id, org_id, tenant_id, kind, traceparent, created_at, lease_until, attempts)
             VALUES ($5, $1, $2, $6, $7, $8, NULL, 0)
         ), runs AS (
             INSERT INTO fact_history (id, org_id, tenant_id, collector_id, probe, subject, digest, payload,
                                       first_seen_at, last_seen_at, count)
             SELECT r.id, $1, $2, $3, r.probe, r.subject, r.digest, r.payload::jsonb, r.first_seen_at,
                    r.last_seen_at, r.count
             FROM UNNEST($9::uuid[], $10::text[], $11::text[], $12::text[], $13::text[], $14::timestamptz[],
                         $15::timestamptz[], $16::bigint[])
                  AS r (id, probe, subject, digest, payload, first_seen_at, last_seen_at, count)
         ), ended AS (
             UPDATE fact_history h SET last_seen_at = e.last_seen_at, count = e.count
             FROM UNNEST($17::uuid[], $18::timestamptz[], $19::bigint[]) AS e (id, last_seen_at, count)
             WHERE h.id = e.id AND h.collector_id = $3
         ), changed AS (
             INSERT INTO facts (collector_id, probe, subject, org_id, tenant_id, observed_at, payload, timings,
                                digest, first_seen_at, repeat_count, history_id)
             SELECT $3, f.probe, f.subject, $1, $2, f.observed_at, f.payload::jsonb, f.timings, f.digest,
                    f.first_seen_at, f.repeat_count, f.history_id
             FROM UNNEST($20::text[], $21::text[], $22::timestamptz[], $23::text[], $24::text[], $25::text[],
                         $26::timestamptz[], $27::bigint[], $28::uuid[])
                  AS f (probe, subject, observed_at, payload, timings, digest, first_seen_at, repeat_count,
                        history_id)
             ON CONFLICT (collector_id, probe, subject) DO UPDATE
             SET observed_at = EXCLUDED.observed_at, payload = EXCLUDED.payload, timings = EXCLUDED.timings,
                 digest = EXCLUDED.digest, first_seen_at = EXCLUDED.first_seen_at,
                 repeat_count = EXCLUDED.repeat_count, history_id = EXCLUDED.history_id
         ), repeated AS (
             UPDATE facts f SET observed_at = r.observed_at, timings = r.timings, repeat_count = r.repeat_count
             FROM UNNEST($29::text[], $30::text[], $31::timestamptz[], $32::text[], $33::bigint[])
                  AS r (probe, subject, observed_at, timings, repeat_count)
             WHERE f.collector_id = $3 AND f.probe = r.probe AND f.subject = r.subject
         )
         SELECT facts_version FROM version",
    )
    .bind(scope.org_id.0)
    .bind(scope.tenant_id.0)
    .bind(write.collector_id.0)
    .bind(&write.probes)
    .bind(write.message_id)
    .bind(Json(&write.message))
    .bind(write.traceparent)
    .bind(write.received_at)
    .bind(runs.iter().map(|r| r.id).collect::<Vec<_>>())
    .bind(runs.iter().map(|r| r.probe).collect::<Vec<_>>())
    .bind(runs.iter().map(|r| r.subject).collect::<Vec<_>>())
    .bind(runs.iter().map(|r| r.digest).collect::<Vec<_>>())
    .bind(runs.iter().map(|r| r.payload).collect::<Vec<_>>())
    .bind(runs.iter().map(|r| r.first_seen_at).collect::<Vec<_>>())
    .bind(runs.iter().map(|r| r.last_seen_at).collect::<Vec<_>>())
    .bind(runs.iter().map(|r| r.count).collect::<Vec<_>>())
    .bind(ended.iter().map(|e| e.id).collect::<Vec<_>>())
    .bind(ended.iter().map(|e| e.last_seen_at).collect::<Vec<_>>())
    .bind(ended.iter().map(|e| e.count).collect::<Vec<_>>())
    .bind(facts.iter().map(|f| f.probe).collect::<Vec<_>>())
    .bind(facts.iter().map(|f| f.subject).collect::<Vec<_>>())
    .bind(facts.iter().map(|f| f.observed_at).collect::<Vec<_>>())
    .bind(facts.iter().map(|f| f.payload).collect::<Vec<_>>())
    .bind(facts.iter().map(|f| f.timings).collect::<Vec<_>>())
    .bind(facts.iter().map(|f| f.digest).collect::<Vec<_>>())
    .bind(facts.iter().map(|f| f.first_seen_at).collect::<Vec<_>>())
    .bind(facts.iter().map(|f| f.repeat_count).collect::<Vec<_>>())
    .bind(facts.iter().map(|f| f.history_id).collect::<Vec<_>>())
    .bind(repeats.iter().map(|r| r.probe).collect::<Vec<_>>())
    .bind(repeats.iter().map(|r| r.subject).collect::<Vec<_>>())
    .bind(repeats.iter().map(|r| r.observed_at).collect::<Vec<_>>())
    .bind(repeats.iter().map(|r| r.timings).collect::<Vec<_>>())
    .bind(repeats.iter().map(|r| r.repeat_count).collect::<Vec<_>>())
    // No row: the tenant is gone (the transaction is rolled back).
    .fetch_one(&mut **tx)
    .await?;
    Ok(IngestWritten::Everything)
}

/// Records a push token's use and forgets the collector's expired ones in one statement (one
/// transaction, one commit); the token being recorded is never among those forgotten.
async fn use_push_token(
    pool: &sqlx::PgPool,
    id: CollectorId,
    jti: Uuid,
    expires_at: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Result<bool> {
    let done = sqlx::query(
        "WITH forgotten AS (
             DELETE FROM push_token_uses WHERE collector_id = $1 AND expires_at < $4 AND jti <> $2
         )
         INSERT INTO push_token_uses (collector_id, jti, expires_at) VALUES ($1, $2, $3)
         ON CONFLICT (collector_id, jti) DO NOTHING",
    )
    .bind(id.0)
    .bind(jti)
    .bind(expires_at)
    .bind(now)
    .execute(pool)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// A push token's use and, for its first use, one request of the collector's rate limit, in one
/// statement (the two statements of [`use_push_token`] and `take_rate_limit`, one commit): a
/// replay counts nothing, a refusal writes no limit. The limit's `tat` as the statement found
/// it says how long a refused push waits.
async fn use_push_token_counted(
    pool: &sqlx::PgPool,
    id: CollectorId,
    jti: Uuid,
    expires_at: DateTime<Utc>,
    bucket: &str,
    limit: RateLimit,
    now: DateTime<Utc>,
) -> Result<Option<PushTokenUse>> {
    let now_micros = now.timestamp_micros();
    let row = sqlx::query(
        "WITH forgotten AS (
             DELETE FROM push_token_uses WHERE collector_id = $1 AND expires_at < $4 AND jti <> $2
         ), used AS (
             INSERT INTO push_token_uses (collector_id, jti, expires_at) VALUES ($1, $2, $3)
             ON CONFLICT (collector_id, jti) DO NOTHING
             RETURNING 1
         ), taken AS (
             INSERT INTO rate_limits (bucket, tat) SELECT $5, $6 + $7 FROM used
             ON CONFLICT (bucket) DO UPDATE
                SET tat = (CASE WHEN rate_limits.tat > $6 THEN rate_limits.tat ELSE $6 END) + $7
              WHERE (CASE WHEN rate_limits.tat > $6 THEN rate_limits.tat ELSE $6 END) + $7 <= $6 + $8
             RETURNING 1
         )
         SELECT EXISTS (SELECT 1 FROM used) AS used, EXISTS (SELECT 1 FROM taken) AS taken,
                (SELECT tat FROM rate_limits WHERE bucket = $5) AS tat",
    )
    .bind(id.0)
    .bind(jti)
    .bind(expires_at)
    .bind(now)
    .bind(bucket)
    .bind(now_micros)
    .bind(limit.interval_micros())
    .bind(limit.period_micros())
    .fetch_one(pool)
    .await?;
    if !row.try_get::<bool, _>("used")? {
        return Ok(Some(PushTokenUse::Replayed));
    }
    if row.try_get::<bool, _>("taken")? {
        return Ok(Some(PushTokenUse::Used(RateDecision::Allowed)));
    }
    Ok(Some(PushTokenUse::Used(limit.refusal(row.try_get("tat")?, now_micros))))
}

/// Starts applying an evaluation, in one statement: moves the tenant's evaluated version if its
/// facts are still at `facts_version` and the message was not processed, and then records the
/// message. The tenant's row lock comes first, as in every evaluation (tenant, then findings):
/// a second worker with the same message waits for it and then finds the message recorded.
async fn begin_apply(
    tx: &mut Tx,
    scope: TenantScope,
    message_id: Option<Uuid>,
    facts_version: i64,
    unknown_rules: Option<u32>,
    now: DateTime<Utc>,
) -> Result<ApplyStart> {
    start_apply(&mut **tx, scope, message_id, facts_version, unknown_rules, now).await
}

/// Applies an evaluation that changes no finding nor streak: [`begin_apply`]'s one statement,
/// committed on its own (`None` where a backend needs the transaction). It writes nothing
/// unless the tenant's facts are still at `facts_version` and the message is new; a twin that
/// raced it to the message only rewrites the same version.
async fn apply_alone(
    pool: &sql::Pools,
    scope: TenantScope,
    message_id: Option<Uuid>,
    facts_version: i64,
    unknown_rules: Option<u32>,
    now: DateTime<Utc>,
) -> Result<Option<ApplyStart>> {
    Ok(Some(start_apply(pool.write(), scope, message_id, facts_version, unknown_rules, now).await?))
}

async fn start_apply<'e>(
    executor: impl sqlx::PgExecutor<'e>,
    scope: TenantScope,
    message_id: Option<Uuid>,
    facts_version: i64,
    unknown_rules: Option<u32>,
    now: DateTime<Utc>,
) -> Result<ApplyStart> {
    let row = sqlx::query(
        "WITH seen AS (
             SELECT 1 FROM processed_messages WHERE message_id = $5
         ), current AS (
             UPDATE tenants SET evaluated_facts_version = $3, unknown_rules = COALESCE($4, unknown_rules)
             WHERE id = $1 AND org_id = $2 AND facts_version = $3 AND NOT EXISTS (SELECT 1 FROM seen)
             RETURNING 1
         ), recorded AS (
             INSERT INTO processed_messages (message_id, processed_at)
             SELECT $5, $6 WHERE $5 IS NOT NULL AND EXISTS (SELECT 1 FROM current)
             ON CONFLICT (message_id) DO NOTHING
             RETURNING 1
         )
         SELECT EXISTS (SELECT 1 FROM seen) AS seen, EXISTS (SELECT 1 FROM current) AS current,
                $5::uuid IS NULL OR EXISTS (SELECT 1 FROM recorded) AS recorded",
    )
    .bind(scope.tenant_id.0)
    .bind(scope.org_id.0)
    .bind(facts_version)
    .bind(unknown_rules.map(i64::from))
    .bind(message_id)
    .bind(now)
    .fetch_one(executor)
    .await?;
    let (seen, current, recorded): (bool, bool, bool) =
        (row.try_get("seen")?, row.try_get("current")?, row.try_get("recorded")?);
    Ok(match (seen, current, recorded) {
        (true, _, _) => ApplyStart::AlreadyProcessed,
        (false, false, _) => ApplyStart::Moved,
        // A twin with the same message recorded it while this one waited for the tenant.
        (false, true, false) => ApplyStart::AlreadyProcessed,
        (false, true, true) => ApplyStart::Current,
    })
}

/// Findings by id, each with its tenant's name (`tenant_name`), in one statement.
async fn findings_by_id(tx: &mut Tx, ids: &[Uuid]) -> Result<Vec<PgRow>> {
    Ok(sqlx::query(concat!(
        "SELECT ",
        finding_cols!(),
        ", (SELECT name FROM tenants t WHERE t.id = findings.tenant_id) AS tenant_name
         FROM findings WHERE id = ANY($1)"
    ))
    .bind(ids)
    .fetch_all(&mut **tx)
    .await?)
}

/// Marks finding events dispatched (their deliveries are in the same transaction), in one
/// statement.
async fn mark_dispatched(tx: &mut Tx, ids: &[Uuid], now: DateTime<Utc>) -> Result<()> {
    if !ids.is_empty() {
        sqlx::query(
            "UPDATE finding_events SET dispatched_at = $2, dispatch_lease_until = NULL WHERE id = ANY($1)",
        )
        .bind(ids)
        .bind(now)
        .execute(&mut **tx)
        .await?;
    }
    Ok(())
}

/// Writes finished attempts whose leases still hold their deliveries, in one statement: each
/// delivery's new state and its attempt row. Returns the ids of the deliveries written.
async fn finish_attempts(tx: &mut Tx, rows: &[AttemptRow<'_>]) -> Result<Vec<Uuid>> {
    Ok(sqlx::query_scalar(
        "WITH held AS (
             UPDATE deliveries d SET status = v.status, attempts = v.attempt, next_attempt_at = v.next_attempt_at,
                 lease_id = NULL, lease_until = NULL, last_attempt_at = v.at, last_status = v.http_status,
                 last_error = v.error, updated_at = v.at
             FROM UNNEST($1::uuid[], $2::uuid[], $3::text[], $4::bigint[], $5::timestamptz[], $6::timestamptz[],
                         $7::bigint[], $8::text[])
                  AS v (id, lease_id, status, attempt, next_attempt_at, at, http_status, error)
             WHERE d.id = v.id AND d.status = 'pending' AND d.lease_id = v.lease_id
             RETURNING d.id
         ), attempts AS (
             INSERT INTO delivery_attempts (id, delivery_id, org_id, attempt, at, succeeded, status, latency_ms,
                                            error, response_excerpt, exchanges)
             SELECT a.id, a.delivery_id, a.org_id, a.attempt, a.at, a.succeeded, a.http_status, a.latency_ms,
                    a.error, a.response_excerpt, a.exchanges::jsonb
             FROM UNNEST($9::uuid[], $1::uuid[], $10::uuid[], $4::bigint[], $6::timestamptz[], $11::bool[],
                         $7::bigint[], $12::bigint[], $8::text[], $13::text[], $14::text[])
                  AS a (id, delivery_id, org_id, attempt, at, succeeded, http_status, latency_ms, error,
                        response_excerpt, exchanges)
             WHERE a.delivery_id IN (SELECT id FROM held)
         )
         SELECT id FROM held",
    )
    .bind(rows.iter().map(|r| r.delivery_id).collect::<Vec<_>>())
    .bind(rows.iter().map(|r| r.lease_id).collect::<Vec<_>>())
    .bind(rows.iter().map(|r| r.status).collect::<Vec<_>>())
    .bind(rows.iter().map(|r| r.attempt).collect::<Vec<_>>())
    .bind(rows.iter().map(|r| r.next_attempt_at).collect::<Vec<_>>())
    .bind(rows.iter().map(|r| r.at).collect::<Vec<_>>())
    .bind(rows.iter().map(|r| r.http_status).collect::<Vec<_>>())
    .bind(rows.iter().map(|r| r.error).collect::<Vec<_>>())
    .bind(rows.iter().map(|_| Uuid::now_v7()).collect::<Vec<_>>())
    .bind(rows.iter().map(|r| r.org_id).collect::<Vec<_>>())
    .bind(rows.iter().map(|r| r.succeeded).collect::<Vec<_>>())
    .bind(rows.iter().map(|r| r.latency_ms).collect::<Vec<_>>())
    .bind(rows.iter().map(|r| r.response_excerpt).collect::<Vec<_>>())
    .bind(rows.iter().map(|r| r.exchanges.to_string()).collect::<Vec<_>>())
    .fetch_all(&mut **tx)
    .await?)
}

/// Leases the deliveries a claim took, in one statement.
async fn lease_deliveries(tx: &mut Tx, ids: &[Uuid], lease_id: Uuid, until: DateTime<Utc>) -> Result<()> {
    if !ids.is_empty() {
        sqlx::query("UPDATE deliveries SET lease_id = $2, lease_until = $3 WHERE id = ANY($1)")
            .bind(ids)
            .bind(lease_id)
            .bind(until)
            .execute(&mut **tx)
            .await?;
    }
    Ok(())
}

async fn delete_outbox(pool: &sql::Pools, ids: &[Uuid]) -> Result<()> {
    if !ids.is_empty() {
        sqlx::query("DELETE FROM outbox WHERE id = ANY($1)").bind(ids).execute(pool.write()).await?;
    }
    Ok(())
}

/// Moves a message in one statement (a data-modifying CTE).
async fn dead_letter_outbox(pool: &sql::Pools, id: Uuid, reason: &str, now: DateTime<Utc>) -> Result<()> {
    sqlx::query(concat!(
        "WITH moved AS (DELETE FROM outbox WHERE id = $1 RETURNING ",
        outbox_cols!(),
        ")
         INSERT INTO dead_letters (",
        outbox_cols!(),
        ", reason, dead_at)
         SELECT ",
        outbox_cols!(),
        ", $2, $3 FROM moved
         ON CONFLICT (id) DO NOTHING"
    ))
    .bind(id)
    .bind(reason)
    .bind(micros(now))
    .execute(pool.write())
    .await?;
    Ok(())
}

/// The commands for the answer to `batch_id`, in one statement: claim what waits (neither
/// cancelled nor run out), and add what an earlier attempt of this batch claimed (the second
/// SELECT sees the table as it was before the UPDATE, so nothing twice).
async fn deliver_collector_commands(
    pool: &sql::Pools,
    scope: TenantScope,
    collector: CollectorId,
    batch_id: Uuid,
    now: DateTime<Utc>,
) -> Result<Vec<PgRow>> {
    Ok(sqlx::query(concat!(
        "WITH claimed AS (
             UPDATE collector_commands SET delivered_batch_id = $4, delivered_at = $5
             WHERE collector_id = $1 AND org_id = $2 AND tenant_id = $3 AND delivered_batch_id IS NULL
               AND cancelled_at IS NULL AND expires_at > $5
             RETURNING ",
        command_cols!(),
        "
         )
         SELECT ",
        command_cols!(),
        " FROM claimed
         UNION ALL
         SELECT ",
        command_cols!(),
        " FROM collector_commands
         WHERE collector_id = $1 AND org_id = $2 AND tenant_id = $3 AND delivered_batch_id = $4
         ORDER BY created_at, id"
    ))
    .bind(collector.0)
    .bind(scope.org_id.0)
    .bind(scope.tenant_id.0)
    .bind(batch_id)
    .bind(now)
    .fetch_all(pool.write())
    .await?)
}
