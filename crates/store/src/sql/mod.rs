//! The store's queries, written once for both backends, one module per aggregate.
//!
//! This module is compiled twice: `pg.rs` and `sqlite.rs` each include it (`#[path]`), and each
//! copy takes from its backend, named `dialect` here, what the two dialects say differently:
//!
//! - `Db`, `BackendStore` and `BACKEND`: the sqlx database, the store type and its name;
//! - `BEGIN_WRITE` and `BEGIN_SNAPSHOT`: how a write transaction and a consistent read begin;
//! - `SNAPSHOT_IN_ONE_STATEMENT`: whether a tenant's snapshot is one statement or a read
//!   transaction of six (see `evaluation`);
//! - `row_lock!(for_update | for_share | for_no_key_update | skip_locked "table")`: the clause
//!   that locks the rows a `SELECT` reads (PostgreSQL's; empty on SQLite, whose write
//!   transactions run one at a time);
//! - `in_batch!(column, subquery)` and `row_address!()`: how a delete names the batch of rows a
//!   subquery chose (PostgreSQL: `ctid = ANY(ARRAY(…))`, so the planner fetches just those rows;
//!   SQLite: `rowid IN (…)`);
//! - the few operations whose SQL has a different shape per dialect: the reads and writes of an
//!   ingest (`record_batch`, `stored_fact_rows`, `write_ingest`), a push token's use
//!   (`use_push_token`), the start of applying an evaluation (`begin_apply`), `delete_outbox`,
//!   `dead_letter_outbox` and `deliver_collector_commands`. On PostgreSQL these fold several
//!   writes into one statement with data-modifying CTEs: there a statement's round trip costs
//!   more than its rows; SQLite has no data-modifying CTEs and no network.
//!
//! Everything else is one text: sqlx declares the type of every bound value to PostgreSQL (so
//! `$1 IS NULL` needs no cast), and JSON columns decode through `Json` from PostgreSQL's `jsonb`
//! and SQLite's TEXT alike. The `Store` and `DeliveryStore` implementations at the bottom hand
//! each method to the aggregate module that owns it.

use super::{self as dialect};

mod accounts;
mod audit;
mod collectors;
mod commands;
mod console_sessions;
mod deliveries;
mod delivery_engine;
mod dispatch;
mod evaluation;
mod findings;
mod graph;
mod ingest;
mod integration_health;
mod integrations;
mod outbox;
mod rate_limits;
mod retention;
mod rows;
mod rule_config;
mod tenants;

type DbPool = Pools;
type DbRow = <dialect::Db as sqlx::Database>::Row;
type Tx = sqlx::Transaction<'static, dialect::Db>;

/// What the aggregate modules share: the model, the conversions and this backend's types.
mod prelude {
    pub(super) use std::time::Duration;

    pub(super) use chrono::{DateTime, Utc};
    pub(super) use sqlx::Row;
    pub(super) use sqlx::types::Json;
    pub(super) use uuid::Uuid;

    pub(super) use super::audit::{NewAuditEntry, insert_audit};
    pub(super) use super::findings::{NewEvent, insert_event};
    pub(super) use super::{DbPool, DbRow, Tx, dialect, evaluation_write_tx, read_snapshot, rows, write_tx};
    pub(super) use crate::convert::{lease_until, micros, parse_enum, saturating_i64, to_u32, to_u64};
    pub(super) use crate::ingest_plan::ApplyStart;
    pub(super) use crate::*;
}

use prelude::*;

/// The store's connections: where a statement that only reads goes, and where every write goes.
/// Each query says which it is (`pool.read()` / `pool.write()`). On PostgreSQL both are one pool
/// (row locks let writers share it); on SQLite writes go through a pool of one connection, so
/// the process's writers queue for it in memory, woken the moment it is free, instead of
/// colliding on the file's lock and sleeping in SQLite's busy handler (see `sqlite.rs`).
/// A function that holds a write transaction must never take a second write connection.
pub(super) struct Pools {
    read: sqlx::Pool<dialect::Db>,
    /// `None`: writes share the read pool.
    write: Option<sqlx::Pool<dialect::Db>>,
    /// With one writer: the evaluations' turn at it. One evaluation at a time waits for (or
    /// holds) the write connection, however many run at once, so under load the ingests queued
    /// for the writer go first and the evaluation that follows covers the batches that came
    /// meanwhile, instead of every evaluation taking a turn of its own.
    evaluation_turn: Option<tokio::sync::Semaphore>,
}

impl Pools {
    /// One pool for reads and writes.
    #[allow(dead_code, reason = "each backend's copy of this module uses one of the two")]
    pub(super) fn shared(pool: sqlx::Pool<dialect::Db>) -> Self {
        Self { read: pool, write: None, evaluation_turn: None }
    }

    /// Reads and writes from pools of their own.
    #[allow(dead_code, reason = "each backend's copy of this module uses one of the two")]
    pub(super) fn split(read: sqlx::Pool<dialect::Db>, write: sqlx::Pool<dialect::Db>) -> Self {
        Self { read, write: Some(write), evaluation_turn: Some(tokio::sync::Semaphore::new(1)) }
    }

    fn stats(&self) -> PoolStats {
        let one = |pool: &sqlx::Pool<dialect::Db>| PoolStats {
            open: pool.size(),
            idle: u32::try_from(pool.num_idle()).unwrap_or(u32::MAX),
            max: pool.options().get_max_connections(),
        };
        let mut stats = one(&self.read);
        if let Some(write) = &self.write {
            let w = one(write);
            stats = PoolStats {
                open: stats.open.saturating_add(w.open),
                idle: stats.idle.saturating_add(w.idle),
                max: stats.max.saturating_add(w.max),
            };
        }
        stats
    }

    pub(super) fn read(&self) -> &sqlx::Pool<dialect::Db> {
        &self.read
    }

    pub(super) fn write(&self) -> &sqlx::Pool<dialect::Db> {
        self.write.as_ref().unwrap_or(&self.read)
    }
}

/// A transaction that writes: on SQLite it holds the write lock from its first statement.
async fn write_tx(pool: &DbPool) -> Result<Tx> {
    Ok(pool.write().begin_with(dialect::BEGIN_WRITE).await?)
}

/// A write transaction for applying an evaluation, and the evaluations' turn at the writer it
/// holds (see `Pools`); keep the turn until the transaction ends.
async fn evaluation_write_tx(pool: &DbPool) -> Result<(Tx, Option<tokio::sync::SemaphorePermit<'_>>)> {
    // A semaphore that is never closed always grants its permit.
    let turn = match &pool.evaluation_turn {
        Some(turn) => turn.acquire().await.ok(),
        None => None,
    };
    Ok((write_tx(pool).await?, turn))
}

/// A read-only transaction whose reads all see one snapshot.
async fn read_snapshot(pool: &DbPool) -> Result<Tx> {
    Ok(pool.read().begin_with(dialect::BEGIN_SNAPSHOT).await?)
}

/// Implements a storage trait for this backend's store: `$item`s as written, and each
/// `module::method(args) -> T;` as `async fn method(&self, args) -> Result<T>` that calls
/// `module::method(&self.pool, args)`. The signatures are the trait's (lib.rs); the compiler
/// checks both sides.
macro_rules! forward {
    (impl $trait:ident { $($item:item)* } to {
        $($module:ident::$method:ident($($arg:ident: $ty:ty),*) -> $ret:ty;)*
    }) => {
        #[async_trait::async_trait]
        impl crate::$trait for dialect::BackendStore {
            $($item)*
            $(async fn $method(&self, $($arg: $ty),*) -> Result<$ret> {
                $module::$method(&self.pool, $($arg),*).await
            })*
        }
    };
}

forward! { impl Store {
    fn backend(&self) -> Backend {
        dialect::BACKEND
    }

    fn pool_stats(&self) -> PoolStats {
        self.pool.stats()
    }
} to {
    accounts::ping() -> ();
    accounts::get_or_create_secret(name: &str, generated: Vec<u8>) -> Vec<u8>;
    accounts::create_organization(name: &str, now: DateTime<Utc>) -> Organization;
    accounts::create_api_key(org: OrgScope, name: &str, role: Role, prefix: &str, key_hash: &str, now: DateTime<Utc>) -> ApiKey;
    accounts::find_api_key_by_hash(key_hash: &str) -> Option<ApiKey>;
    accounts::list_api_keys(org: OrgScope) -> Vec<ApiKey>;
    accounts::get_api_key(org: OrgScope, id: ApiKeyId) -> Option<ApiKey>;
    accounts::revoke_api_key(org: OrgScope, id: ApiKeyId, now: DateTime<Utc>) -> Option<ApiKey>;

    console_sessions::create_console_session(org: OrgScope, key: ApiKeyId, id_hash: &str, now: DateTime<Utc>, expires_at: DateTime<Utc>) -> bool;
    console_sessions::find_console_session(id_hash: &str, now: DateTime<Utc>) -> Option<ConsoleSession>;
    console_sessions::end_console_session(org: OrgScope, id_hash: &str) -> bool;

    tenants::create_tenant(org: OrgScope, name: &str, entra_tenant_id: Option<&str>, now: DateTime<Utc>) -> Tenant;
    tenants::get_tenant(org: OrgScope, id: TenantId) -> Option<Tenant>;
    tenants::list_tenant_summaries(org: OrgScope, now: DateTime<Utc>) -> Vec<TenantSummary>;
    tenants::get_tenant_summary(scope: TenantScope, now: DateTime<Utc>) -> Option<TenantSummary>;

    collectors::create_collector(scope: TenantScope, name: &str, enrollment_token_hash: &str, enrollment_expires_at: DateTime<Utc>, push_interval_secs: u32, now: DateTime<Utc>) -> Collector;
    collectors::enroll_collector(enrollment: &Enrollment) -> Result<Collector, EnrollError>;
    collectors::find_collector_for_auth(id: CollectorId, now: DateTime<Utc>) -> Option<PushingCollector>;
    collectors::use_push_token(id: CollectorId, jti: Uuid, expires_at: DateTime<Utc>, now: DateTime<Utc>) -> bool;
    collectors::use_push_token_counted(id: CollectorId, jti: Uuid, expires_at: DateTime<Utc>, bucket: &str, limit: RateLimit, now: DateTime<Utc>) -> PushTokenUse;
    rate_limits::take_rate_limit(bucket: &str, limit: RateLimit, now: DateTime<Utc>) -> RateDecision;
    rate_limits::forget_rate_limits(now: DateTime<Utc>) -> u64;
    collectors::get_collector(org: OrgScope, id: CollectorId) -> Option<Collector>;
    collectors::list_collectors(org: OrgScope, tenant: Option<TenantId>) -> Vec<Collector>;
    collectors::revoke_collector(org: OrgScope, id: CollectorId, now: DateTime<Utc>) -> Option<Collector>;

    ingest::ingest_batch(scope: TenantScope, batch: &BatchWrite) -> IngestOutcome;
    ingest::list_facts(scope: TenantScope) -> Vec<Fact>;

    outbox::claim_outbox(limit: u32, lease: Duration, now: DateTime<Utc>) -> Vec<OutboxMessage>;
    dialect::delete_outbox(ids: &[Uuid]) -> ();
    dialect::dead_letter_outbox(id: Uuid, reason: &str, now: DateTime<Utc>) -> ();
    outbox::count_outbox() -> u64;
    outbox::count_dead_letters() -> u64;
    outbox::oldest_outbox_message() -> Option<DateTime<Utc>>;

    evaluation::load_tenant_snapshot(scope: TenantScope, known_digests: &[&str]) -> Option<TenantSnapshot>;
    evaluation::apply_evaluation(scope: TenantScope, message_id: Option<Uuid>, facts_version: i64, changes: &EvaluationChanges, now: DateTime<Utc>) -> ApplyOutcome;
    evaluation::tenants_with_silent_collectors(now: DateTime<Utc>) -> Vec<TenantScope>;
    evaluation::tenants_with_expired_suppressions(now: DateTime<Utc>) -> Vec<TenantScope>;

    findings::list_findings(org: OrgScope, filter: &FindingFilter) -> Vec<Finding>;
    findings::get_finding(org: OrgScope, id: FindingId) -> Option<Finding>;
    findings::list_finding_events(org: OrgScope, id: FindingId) -> Vec<FindingEvent>;
    findings::act_on_finding(org: OrgScope, id: FindingId, expected_version: i64, action: &FindingAction, actor: &str, now: DateTime<Utc>) -> ActionOutcome;
    findings::request_retest(scope: TenantScope, finding: FindingId, commands: &[CommandWrite], actor: &str, note: &str, expires_at: DateTime<Utc>, now: DateTime<Utc>) -> Option<Vec<CollectorCommandRecord>>;
    findings::deliver_collector_commands(scope: TenantScope, collector: CollectorId, batch_id: Uuid, now: DateTime<Utc>) -> Vec<CollectorCommandRecord>;
    commands::list_collector_commands(org: OrgScope, collector: CollectorId, before: Option<Uuid>, limit: u32) -> Vec<CollectorCommandRecord>;
    commands::cancel_collector_command(org: OrgScope, collector: CollectorId, id: Uuid, actor: &str, now: DateTime<Utc>) -> CommandCancel;

    retention::sweep_expired(table: RetentionTable, cutoff: DateTime<Utc>, limit: u32) -> SweptBatch;

    rule_config::list_rule_settings(org: OrgScope, tenant: Option<TenantId>) -> Vec<StoredRuleSetting>;
    rule_config::list_custom_rules(org: OrgScope, tenant: Option<TenantId>) -> Vec<StoredCustomRule>;
    rule_config::write_rule_config(org: OrgScope, scope: RuleScope, kind: RuleConfigKind, rule_id: &str, document: Option<&serde_json::Value>, actor: &str, now: DateTime<Utc>) -> RuleConfigWrite;

    audit::list_audit_log(org: OrgScope, before: Option<Uuid>, limit: u32) -> Vec<AuditEntry>;

    graph::create_graph_consent_request(scope: TenantScope, nonce: Uuid, actor: &str, expires_at: DateTime<Utc>, now: DateTime<Utc>) -> ();
    graph::pending_graph_consent(scope: TenantScope, now: DateTime<Utc>) -> Option<GraphConsentRequest>;
    graph::complete_graph_consent(scope: TenantScope, nonce: Uuid, entra_tenant_id: Option<&str>, now: DateTime<Utc>) -> GraphConsentOutcome;
    graph::get_graph_connection(scope: TenantScope) -> Option<GraphConnection>;
    graph::delete_graph_connection(scope: TenantScope, actor: &str, now: DateTime<Utc>) -> bool;
    graph::claim_graph_reads(limit: u32, lease: Duration, installation: bool, now: DateTime<Utc>) -> Vec<GraphReadClaim>;
    graph::finish_graph_read(scope: TenantScope, lease_id: Uuid, result: &GraphReadResult, now: DateTime<Utc>) -> bool;
    graph::request_graph_read(scope: TenantScope, now: DateTime<Utc>) -> bool;
    graph::set_graph_test_user(scope: TenantScope, test_user: Option<&str>, actor: &str, now: DateTime<Utc>) -> Option<GraphConnection>;
    graph::get_graph_own_app(scope: TenantScope) -> Option<GraphOwnApp>;
    graph::set_graph_own_app(scope: TenantScope, expected_version: Option<i64>, write: &GraphOwnAppWrite, actor: &str, now: DateTime<Utc>) -> GraphOwnAppOutcome;
    graph::delete_graph_own_app(scope: TenantScope, actor: &str, now: DateTime<Utc>) -> bool;
    graph::record_graph_app_problem(problem: &str, retry_at: DateTime<Utc>, now: DateTime<Utc>) -> bool;
    graph::clear_graph_app_problem() -> bool;
    graph::graph_app_problem() -> Option<GraphAppProblem>;
}}

forward! { impl DeliveryStore {} to {
    integrations::create_integration(org: OrgScope, write: &IntegrationWrite, actor: &str, now: DateTime<Utc>) -> Integration;
    integrations::list_integrations(org: OrgScope) -> Vec<Integration>;
    integrations::get_integration(org: OrgScope, id: Uuid) -> Option<Integration>;
    integrations::update_integration(org: OrgScope, id: Uuid, expected_version: i64, write: &IntegrationWrite, actor: &str, now: DateTime<Utc>) -> IntegrationUpdate;
    integrations::delete_integration(org: OrgScope, id: Uuid, actor: &str, now: DateTime<Utc>) -> bool;
    integrations::enabled_integrations(org: OrgScope) -> Vec<Integration>;
    integration_health::disable_integration(org: OrgScope, integration_id: Uuid, reason: &str, notify: &[NewDelivery], now: DateTime<Utc>) -> bool;

    deliveries::list_deliveries(org: OrgScope, integration_id: Uuid, filter: &DeliveryFilter) -> Vec<Delivery>;
    deliveries::get_delivery(org: OrgScope, id: Uuid) -> Option<(Delivery, Vec<DeliveryAttempt>)>;
    deliveries::replay_deliveries(org: OrgScope, integration_id: Uuid, delivery_id: Option<Uuid>, failed_since: Option<DateTime<Utc>>, actor: &str, now: DateTime<Utc>) -> u64;
    deliveries::enqueue_deliveries(deliveries: &[NewDelivery], now: DateTime<Utc>) -> u64;
    deliveries::list_finding_tickets(org: OrgScope, finding_ids: &[FindingId]) -> Vec<FindingTicket>;
    deliveries::count_pending_deliveries() -> u64;

    dispatch::claim_undispatched_events(limit: u32, lease: Duration, now: DateTime<Utc>) -> Vec<UndispatchedEvent>;
    dispatch::record_dispatch(event_ids: &[Uuid], deliveries: &[NewDelivery], now: DateTime<Utc>) -> u64;

    delivery_engine::claim_deliveries(limit: u32, lease: Duration, now: DateTime<Utc>) -> Vec<ClaimedDelivery>;
    delivery_engine::mark_ticket_creating(delivery: &Delivery, lease_id: Uuid, now: DateTime<Utc>) -> bool;
    delivery_engine::complete_attempts(done: &[(&Delivery, &AttemptRecord)]) -> Vec<bool>;
    delivery_engine::ticket_open_findings(integration_id: Uuid, ticket_key: &str) -> Vec<(FindingId, TenantId, String)>;
}}
