//! The delivery store's queries, written once for both backends, one module per aggregate.
//!
//! This module is compiled twice: `pg.rs` and `sqlite.rs` each include it (`#[path]`), and each
//! copy takes from its backend, named `dialect` here, what the two dialects say differently:
//!
//! - `Db` and `BackendStore`: the sqlx database and the store type;
//! - `BEGIN_WRITE`: how a write transaction begins;
//! - `row_lock!(for_update | for_share | for_no_key_update | skip_locked "table")`: the clause
//!   that locks the rows a `SELECT` reads (PostgreSQL's; empty on SQLite, whose write
//!   transactions run one at a time);
//! - the finding rows and events the deliveries act on (`finding_from_row`, `event_from_row`,
//!   `NewEvent`, `insert_event`).
//!
//! Everything else is one text, and JSON columns decode through `Json` from PostgreSQL's `jsonb`
//! and SQLite's TEXT alike. The `DeliveryStore` implementation at the bottom hands each method
//! to the aggregate module that owns it.

use super::{self as dialect};

mod audit;
mod deliveries;
mod delivery_engine;
mod dispatch;
mod integration_health;
mod integrations;
mod rows;

type DbPool = sqlx::Pool<dialect::Db>;
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
    pub(super) use super::dialect::{NewEvent, insert_event};
    pub(super) use super::{DbPool, DbRow, Tx, dialect, rows, write_tx};
    pub(super) use crate::convert::{lease_until, micros, parse_enum, saturating_i64, to_u32, to_u64};
    pub(super) use crate::*;
}

use prelude::*;

/// A transaction that writes: on SQLite it holds the write lock from its first statement.
async fn write_tx(pool: &DbPool) -> Result<Tx> {
    Ok(pool.begin_with(dialect::BEGIN_WRITE).await?)
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
    delivery_engine::complete_attempt(delivery: &Delivery, record: &AttemptRecord) -> bool;
    delivery_engine::ticket_open_findings(integration_id: Uuid, ticket_key: &str) -> Vec<(FindingId, TenantId, String)>;
}}
