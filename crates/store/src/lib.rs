//! The data-access layer: one [`Store`] trait with a PostgreSQL and a SQLite implementation.
//!
//! Each query is written once, in the module of its aggregate under `sql/`, which each backend
//! (`pg`, `sqlite`) compiles with what its dialect says differently (see `sql/mod.rs`).
//!
//! The backend is chosen from the URL scheme ([`connect`]). Each backend applies its own
//! migrations (`migrations/postgres`, `migrations/sqlite` at the workspace root) when it
//! connects. Every method that touches an organisation's or a tenant's data takes the scope
//! first; the few unscoped lookups exist to *establish* a scope (authentication, enrollment)
//! or to serve the background machinery (outbox, silence sweep).

/// An enum kept in the database as text: `as_str` and `FromStr` (refusing unknown text with
/// [`UnknownValue`]) from one list of variants and their texts.
macro_rules! string_enum {
    ($(#[$m:meta])* $name:ident { $($(#[$vm:meta])* $variant:ident = $text:literal),+ $(,)? }) => {
        $(#[$m])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
        #[serde(rename_all = "snake_case")]
        pub enum $name { $($(#[$vm])* $variant),+ }

        impl $name {
            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text),+ }
            }
        }

        impl std::str::FromStr for $name {
            type Err = $crate::UnknownValue;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                match s {
                    $($text => Ok($name::$variant),)+
                    other => Err($crate::UnknownValue(other.to_owned())),
                }
            }
        }
    };
}

#[macro_use]
mod columns;
mod convert;
mod delivery_model;
mod ingest_plan;
pub mod model;
pub mod pg;
mod policy;
mod rate_limit;
pub mod sqlite;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use uuid::Uuid;

pub use delivery_model::*;
pub use rate_limit::{PushTokenUse, RateDecision, RateLimit};

/// The rule id of the finding that says an integration was switched off (raised by the
/// delivery engine, not by the rule pack; the evaluator leaves it alone).
pub const INTEGRATION_DISABLED_RULE: &str = "integration-disabled";
pub use model::*;

/// Storage errors. Callers map `NotFound`-like results through `Option`, not through errors.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error")]
    Database(#[from] sqlx::Error),
    #[error("migration failed")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    #[error("unsupported database URL {0:?}: use postgres://… or sqlite://…")]
    UnsupportedUrl(String),
    #[error("a {what} with this {field} already exists")]
    Duplicate { what: &'static str, field: &'static str },
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// A store's connection pool at one moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolStats {
    /// Connections open, idle or in use.
    pub open: u32,
    pub idle: u32,
    pub max: u32,
}

/// Which backend a store runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Postgres,
    Sqlite,
}

/// What became of [`DeliveryStore::update_integration`].
#[derive(Debug, Clone, PartialEq)]
pub enum IntegrationUpdate {
    /// Stored; the integration as it is now.
    Updated(Box<Integration>),
    /// The organisation has no such integration.
    NotFound,
    /// Its version is no longer the one the write was made from; nothing changed.
    Changed { current_version: i64 },
}

/// Integrations, deliveries, attempts and tickets (issue: findings reach the MSP's ticketing
/// system). Part of every [`Store`].
#[async_trait]
pub trait DeliveryStore: Send + Sync {
    // ---- integrations (API) -----------------------------------------------------------------

    /// Stores a new integration, with an audit entry (no secrets in it).
    async fn create_integration(
        &self,
        org: OrgScope,
        write: &IntegrationWrite,
        actor: &str,
        now: DateTime<Utc>,
    ) -> Result<Integration>;

    async fn list_integrations(&self, org: OrgScope) -> Result<Vec<Integration>>;

    async fn get_integration(&self, org: OrgScope, id: Uuid) -> Result<Option<Integration>>;

    /// Replaces an integration's settings if it still has `expected_version` (the version the
    /// write was made from), else nothing changes (`Changed`): a write made from an older read
    /// would undo what happened since (the engine switching it off, a rotated secret). Bumps the
    /// version. Switching it on again clears its failure streak and disable reason.
    async fn update_integration(
        &self,
        org: OrgScope,
        id: Uuid,
        expected_version: i64,
        write: &IntegrationWrite,
        actor: &str,
        now: DateTime<Utc>,
    ) -> Result<IntegrationUpdate>;

    /// Deletes an integration with its deliveries and tickets; `false` if there is none.
    async fn delete_integration(
        &self,
        org: OrgScope,
        id: Uuid,
        actor: &str,
        now: DateTime<Utc>,
    ) -> Result<bool>;

    // ---- deliveries (API) -------------------------------------------------------------------

    /// An integration's deliveries, newest first.
    async fn list_deliveries(
        &self,
        org: OrgScope,
        integration_id: Uuid,
        filter: &DeliveryFilter,
    ) -> Result<Vec<Delivery>>;

    /// A delivery with every attempt, oldest first.
    async fn get_delivery(&self, org: OrgScope, id: Uuid)
    -> Result<Option<(Delivery, Vec<DeliveryAttempt>)>>;

    /// Sends deliveries again from a fresh schedule: one (`delivery_id`, unless it is pending),
    /// or every failed one of events since `failed_since`. Returns how many: none when the
    /// integration is switched off or no longer exists.
    async fn replay_deliveries(
        &self,
        org: OrgScope,
        integration_id: Uuid,
        delivery_id: Option<Uuid>,
        failed_since: Option<DateTime<Utc>>,
        actor: &str,
        now: DateTime<Utc>,
    ) -> Result<u64>;

    /// Queues deliveries (a duplicate of an (integration, event) pair is ignored).
    async fn enqueue_deliveries(&self, deliveries: &[NewDelivery], now: DateTime<Utc>) -> Result<u64>;

    /// The tickets of these findings, in the order of `finding_ids`, each one's oldest first;
    /// one query for a page of findings.
    async fn list_finding_tickets(
        &self,
        org: OrgScope,
        finding_ids: &[FindingId],
    ) -> Result<Vec<FindingTicket>>;

    // ---- dispatcher -------------------------------------------------------------------------

    /// Finding events not yet turned into deliveries, oldest first, held for `lease`.
    async fn claim_undispatched_events(
        &self,
        limit: u32,
        lease: Duration,
        now: DateTime<Utc>,
    ) -> Result<Vec<UndispatchedEvent>>;

    async fn enabled_integrations(&self, org: OrgScope) -> Result<Vec<Integration>>;

    /// Stores the deliveries of dispatched events and stamps the events, in one transaction.
    async fn record_dispatch(
        &self,
        event_ids: &[Uuid],
        deliveries: &[NewDelivery],
        now: DateTime<Utc>,
    ) -> Result<u64>;

    // ---- delivery engine --------------------------------------------------------------------

    /// Due deliveries, held for `lease`: at most each integration's free in-flight slots and
    /// what is left of its hourly budget, none of an integration throttled until later, and
    /// per ticket only the oldest pending one, and none while another of the ticket's
    /// deliveries is in flight (a replay of an older event).
    async fn claim_deliveries(
        &self,
        limit: u32,
        lease: Duration,
        now: DateTime<Utc>,
    ) -> Result<Vec<ClaimedDelivery>>;

    /// Records that a ticket create is about to be sent (state `creating`, since `now`), so
    /// that a retry looks for the ticket before creating another. A ticket already `creating`
    /// keeps its time; one with an external id (deleted in the destination, being replaced)
    /// forgets it. `false` if the lease is lost.
    async fn mark_ticket_creating(
        &self,
        delivery: &Delivery,
        lease_id: Uuid,
        now: DateTime<Utc>,
    ) -> Result<bool>;

    /// Writes attempts and their consequences (delivery state, integration health, ticket) in
    /// one transaction, in the order given; for each, `false` (nothing written for it) if its
    /// lease was lost.
    async fn complete_attempts(&self, done: &[(&Delivery, &AttemptRecord)]) -> Result<Vec<bool>>;

    /// [`Store::complete_attempts`] of one attempt.
    async fn complete_attempt(&self, delivery: &Delivery, record: &AttemptRecord) -> Result<bool> {
        Ok(self.complete_attempts(&[(delivery, record)]).await?.first().copied().unwrap_or(false))
    }

    /// The findings a ticket stands for that are still open, with their tenants' names.
    async fn ticket_open_findings(
        &self,
        integration_id: Uuid,
        ticket_key: &str,
    ) -> Result<Vec<(FindingId, TenantId, String)>>;

    /// Switches an integration off and queues `notify` (the organisation's other
    /// integrations hear about it); `false` if it was already off.
    async fn disable_integration(
        &self,
        org: OrgScope,
        integration_id: Uuid,
        reason: &str,
        notify: &[NewDelivery],
        now: DateTime<Utc>,
    ) -> Result<bool>;

    async fn count_pending_deliveries(&self) -> Result<u64>;
}

#[async_trait]
pub trait Store: DeliveryStore + Send + Sync + 'static {
    fn backend(&self) -> Backend;

    /// Cheap round trip for readiness checks.
    async fn ping(&self) -> Result<()>;

    // ---- server secrets -------------------------------------------------------------------

    /// Returns the secret stored under `name`, storing `generated` first if there is none.
    /// Every API process sharing the database thus signs and checks tokens with one key.
    async fn get_or_create_secret(&self, name: &str, generated: Vec<u8>) -> Result<Vec<u8>>;

    // ---- organisations and API keys -------------------------------------------------------

    async fn create_organization(&self, name: &str, now: DateTime<Utc>) -> Result<Organization>;

    /// Stores a new key; `key_hash` is the SHA-256 (hex) of the whole secret key.
    async fn create_api_key(
        &self,
        org: OrgScope,
        name: &str,
        role: Role,
        prefix: &str,
        key_hash: &str,
        now: DateTime<Utc>,
    ) -> Result<ApiKey>;

    /// Authentication lookup by hash; returns revoked keys too (the caller refuses them).
    async fn find_api_key_by_hash(&self, key_hash: &str) -> Result<Option<ApiKey>>;

    async fn list_api_keys(&self, org: OrgScope) -> Result<Vec<ApiKey>>;

    /// One key of the organisation (revoked ones too); `None` if it has no such key.
    async fn get_api_key(&self, org: OrgScope, id: ApiKeyId) -> Result<Option<ApiKey>>;

    /// Marks a key revoked; `None` if the organisation has no such key.
    async fn revoke_api_key(&self, org: OrgScope, id: ApiKeyId, now: DateTime<Utc>)
    -> Result<Option<ApiKey>>;

    // ---- console sessions -----------------------------------------------------------------

    /// Opens a console session for the organisation's API key `key`, found later by `id_hash`
    /// (the SHA-256 of the id the browser holds) until `expires_at`; `false` (nothing stored)
    /// when the organisation has no such key or it is revoked. Forgets the sessions that
    /// expired by `now`.
    async fn create_console_session(
        &self,
        org: OrgScope,
        key: ApiKeyId,
        id_hash: &str,
        now: DateTime<Utc>,
        expires_at: DateTime<Utc>,
    ) -> Result<bool>;

    /// Authentication lookup of a console session by the hash of its id: `None` when there is
    /// none, it expired by `now`, or its API key was revoked.
    async fn find_console_session(&self, id_hash: &str, now: DateTime<Utc>)
    -> Result<Option<ConsoleSession>>;

    /// Ends the organisation's session `id_hash` (sign-out); `false` if there was none.
    async fn end_console_session(&self, org: OrgScope, id_hash: &str) -> Result<bool>;

    // ---- tenants --------------------------------------------------------------------------

    async fn create_tenant(
        &self,
        org: OrgScope,
        name: &str,
        entra_tenant_id: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<Tenant>;

    async fn get_tenant(&self, org: OrgScope, id: TenantId) -> Result<Option<Tenant>>;

    /// All tenants of the organisation with their health figures; `now` decides silence.
    async fn list_tenant_summaries(&self, org: OrgScope, now: DateTime<Utc>) -> Result<Vec<TenantSummary>>;

    async fn get_tenant_summary(
        &self,
        scope: TenantScope,
        now: DateTime<Utc>,
    ) -> Result<Option<TenantSummary>>;

    // ---- collectors -----------------------------------------------------------------------

    /// A pending collector waiting for enrollment with the token whose SHA-256 is given.
    async fn create_collector(
        &self,
        scope: TenantScope,
        name: &str,
        enrollment_token_hash: &str,
        enrollment_expires_at: DateTime<Utc>,
        push_interval_secs: u32,
        now: DateTime<Utc>,
    ) -> Result<Collector>;

    /// Atomically consumes the enrollment token and activates the collector.
    async fn enroll_collector(&self, enrollment: &Enrollment) -> Result<Result<Collector, EnrollError>>;

    /// Authentication lookup of a pushing collector by its id (from its token) at `now`, and
    /// whether commands wait for it.
    async fn find_collector_for_auth(
        &self,
        id: CollectorId,
        now: DateTime<Utc>,
    ) -> Result<Option<PushingCollector>>;

    /// Records that the collector presented the push token `jti` (valid until `expires_at`):
    /// `true` the first time, `false` for every later use until it expires, from any API
    /// process. Forgets the collector's tokens that expired before `now`.
    async fn use_push_token(
        &self,
        id: CollectorId,
        jti: Uuid,
        expires_at: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<bool>;

    /// [`Store::use_push_token`], and for a first use [`Store::take_rate_limit`] of `limit` for
    /// `bucket` (the collector's): one statement on PostgreSQL. A replay counts nothing.
    async fn use_push_token_counted(
        &self,
        id: CollectorId,
        jti: Uuid,
        expires_at: DateTime<Utc>,
        bucket: &str,
        limit: RateLimit,
        now: DateTime<Utc>,
    ) -> Result<PushTokenUse>;

    /// Takes one request of `limit` for `bucket` (e.g. `org:<id>`) at `now`: allowed, or refused
    /// with how long to wait. Shared by every process on the same database; a refusal changes
    /// nothing.
    async fn take_rate_limit(
        &self,
        bucket: &str,
        limit: RateLimit,
        now: DateTime<Utc>,
    ) -> Result<RateDecision>;

    /// Forgets the rate-limited things whose allowance is whole again at `now`; answers how many.
    async fn forget_rate_limits(&self, now: DateTime<Utc>) -> Result<u64>;

    async fn get_collector(&self, org: OrgScope, id: CollectorId) -> Result<Option<Collector>>;

    async fn list_collectors(&self, org: OrgScope, tenant: Option<TenantId>) -> Result<Vec<Collector>>;

    /// Revokes at once; `None` if the organisation has no such collector.
    async fn revoke_collector(
        &self,
        org: OrgScope,
        id: CollectorId,
        now: DateTime<Utc>,
    ) -> Result<Option<Collector>>;

    // ---- ingest ---------------------------------------------------------------------------

    /// In one transaction: records the batch id (idempotency), upserts the latest facts
    /// (an older `observed_at` never overwrites a newer one), extends fact history, updates the
    /// collector's heartbeat, bumps the tenant's `facts_version`, and writes the outbox message.
    ///
    /// `accepted` counts every result of the batch, including results that arrived after a newer
    /// observation of the same subject and so changed nothing. `batch.collector_id` must be an
    /// active collector of `scope`: otherwise (e.g. revoked since it authenticated) nothing is
    /// written and the call fails with `StoreError::Database(sqlx::Error::RowNotFound)`, or with a
    /// foreign-key violation if the collector does not belong to the scope at all.
    async fn ingest_batch(&self, scope: TenantScope, batch: &BatchWrite) -> Result<IngestOutcome>;

    async fn list_facts(&self, scope: TenantScope) -> Result<Vec<Fact>>;

    // ---- outbox / local queue -------------------------------------------------------------

    /// Claims up to `limit` outbox messages nobody holds (or whose lease ran out), oldest
    /// first, leasing them until `now + lease` and counting the attempt. Safe to call from
    /// many processes at once.
    async fn claim_outbox(
        &self,
        limit: u32,
        lease: Duration,
        now: DateTime<Utc>,
    ) -> Result<Vec<OutboxMessage>>;

    /// Removes messages that were published (or, in embedded mode, processed).
    async fn delete_outbox(&self, ids: &[Uuid]) -> Result<()>;

    /// Moves a message that failed too often to the dead-letter table, keeping its reason.
    async fn dead_letter_outbox(&self, id: Uuid, reason: &str, now: DateTime<Utc>) -> Result<()>;

    async fn count_outbox(&self) -> Result<u64>;

    async fn count_dead_letters(&self) -> Result<u64>;

    /// When the oldest message waiting in the outbox was written (`None`: it is empty).
    async fn oldest_outbox_message(&self) -> Result<Option<DateTime<Utc>>>;

    /// The connection pool's use now.
    fn pool_stats(&self) -> PoolStats;

    // ---- evaluation -----------------------------------------------------------------------

    /// Everything the rules need about one tenant, read consistently. The payload of a fact
    /// whose digest is among `known_digests` is not read (the caller holds an output with that
    /// digest): only its timings are ([`SnapshotPayload::Known`]).
    async fn load_tenant_snapshot(
        &self,
        scope: TenantScope,
        known_digests: &[&str],
    ) -> Result<Option<TenantSnapshot>>;

    /// In one transaction, all or nothing: records `message_id` as processed (if given; a
    /// repeat answers `AlreadyProcessed`), checks that the tenant's `facts_version` is still
    /// `facts_version`, that each finding still has its `expected_version` and each streak its
    /// expected counts (else `Conflict`), applies the finding changes with one event each (actor
    /// `system`) and the streak changes, stores the tenant's `unknown_rules` if given, and
    /// records `facts_version` as evaluated.
    async fn apply_evaluation(
        &self,
        scope: TenantScope,
        message_id: Option<Uuid>,
        facts_version: i64,
        changes: &EvaluationChanges,
        now: DateTime<Utc>,
    ) -> Result<ApplyOutcome>;

    /// Tenants with an active collector whose silence deadline passed before `now`.
    async fn tenants_with_silent_collectors(&self, now: DateTime<Utc>) -> Result<Vec<TenantScope>>;

    /// Tenants with a suppressed finding whose suppression ran out at or before `now` (the
    /// evaluator announces it again if it still fails).
    async fn tenants_with_expired_suppressions(&self, now: DateTime<Utc>) -> Result<Vec<TenantScope>>;

    // ---- findings -------------------------------------------------------------------------

    /// Newest first; see [`FindingFilter`].
    async fn list_findings(&self, org: OrgScope, filter: &FindingFilter) -> Result<Vec<Finding>>;

    async fn get_finding(&self, org: OrgScope, id: FindingId) -> Result<Option<Finding>>;

    /// Oldest first.
    async fn list_finding_events(&self, org: OrgScope, id: FindingId) -> Result<Vec<FindingEvent>>;

    /// A person's action on a finding, in one transaction: applies `action` if the finding still
    /// has `expected_version` (else `Changed`) and its status allows it (else `Refused`, see
    /// [`FindingAction::check`]), bumps the version, and records one event with `actor`.
    async fn act_on_finding(
        &self,
        org: OrgScope,
        id: FindingId,
        expected_version: i64,
        action: &FindingAction,
        actor: &str,
        now: DateTime<Utc>,
    ) -> Result<ActionOutcome>;

    // ---- collector commands ---------------------------------------------------------------

    /// "Re-test now", in one transaction: stores `commands` for their collectors, each running
    /// out at `expires_at` (a command identical to one still waiting for the same collector is
    /// not stored twice: the waiting one is returned instead, running out no sooner than
    /// `expires_at`) and records a `retest_requested` event on the finding with `actor` and
    /// `note`. `None` if the tenant has no such finding. Every collector must be one of the
    /// tenant's.
    #[allow(clippy::too_many_arguments)]
    async fn request_retest(
        &self,
        scope: TenantScope,
        finding: FindingId,
        commands: &[CommandWrite],
        actor: &str,
        note: &str,
        expires_at: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<Option<Vec<CollectorCommandRecord>>>;

    /// The commands to hand `collector` in the answer to `batch_id`: every command still waiting
    /// (not cancelled, not run out by `now`) is marked delivered with this batch, and every
    /// command delivered with this batch before (a retry of the batch) is returned again.
    /// Oldest first.
    async fn deliver_collector_commands(
        &self,
        scope: TenantScope,
        collector: CollectorId,
        batch_id: Uuid,
        now: DateTime<Utc>,
    ) -> Result<Vec<CollectorCommandRecord>>;

    /// The organisation's collector's commands, newest first, at most `limit`, those with an id
    /// below `before` when given (empty for another organisation's collector).
    async fn list_collector_commands(
        &self,
        org: OrgScope,
        collector: CollectorId,
        before: Option<Uuid>,
        limit: u32,
    ) -> Result<Vec<CollectorCommandRecord>>;

    /// Cancels a command that is still pending at `now`, with an audit entry, in one
    /// transaction; a command delivered meanwhile is not cancelled (`NotPending`).
    async fn cancel_collector_command(
        &self,
        org: OrgScope,
        collector: CollectorId,
        id: Uuid,
        actor: &str,
        now: DateTime<Utc>,
    ) -> Result<CommandCancel>;

    // ---- retention ------------------------------------------------------------------------

    /// Removes one batch of about `limit` rows of `table` older than `cutoff` (see
    /// [`RetentionTable`] for what counts as old, and what is never removed), oldest first, in
    /// one short write. Callers repeat while a batch comes back `full`. Safe to run from several
    /// processes at once: on PostgreSQL concurrent sweepers take disjoint rows.
    async fn sweep_expired(
        &self,
        table: RetentionTable,
        cutoff: DateTime<Utc>,
        limit: u32,
    ) -> Result<SweptBatch>;

    // ---- rule configuration ---------------------------------------------------------------

    /// The organisation's overrides, plus the tenant's when a tenant is given.
    async fn list_rule_settings(
        &self,
        org: OrgScope,
        tenant: Option<TenantId>,
    ) -> Result<Vec<StoredRuleSetting>>;

    /// The organisation's custom rules, plus the tenant's when a tenant is given.
    async fn list_custom_rules(
        &self,
        org: OrgScope,
        tenant: Option<TenantId>,
    ) -> Result<Vec<StoredCustomRule>>;

    /// In one transaction: stores (`Some`) or removes (`None`) the override or custom rule
    /// `rule_id` at `scope`, writes an audit entry with the document before and after, and asks
    /// for every affected tenant to be evaluated again (an outbox message each). Answers the
    /// document that was there before, or `NoSuchTenant` (nothing changed) when the scope's
    /// tenant is not the organisation's. Removing what is not there changes nothing.
    #[allow(clippy::too_many_arguments)]
    async fn write_rule_config(
        &self,
        org: OrgScope,
        scope: RuleScope,
        kind: RuleConfigKind,
        rule_id: &str,
        document: Option<&serde_json::Value>,
        actor: &str,
        now: DateTime<Utc>,
    ) -> Result<RuleConfigWrite>;

    /// Newest first, at most `limit`, entries with an id below `before` when given.
    async fn list_audit_log(
        &self,
        org: OrgScope,
        before: Option<Uuid>,
        limit: u32,
    ) -> Result<Vec<AuditEntry>>;

    // ---- the central Graph connector ------------------------------------------------------

    /// Records a consent asked for by `actor`: `nonce` may be spent once, before `expires_at`,
    /// by the consent callback of this organisation and tenant.
    async fn create_graph_consent_request(
        &self,
        scope: TenantScope,
        nonce: Uuid,
        actor: &str,
        expires_at: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<()>;

    /// The latest consent asked for that can still be spent (a consent pending).
    async fn pending_graph_consent(
        &self,
        scope: TenantScope,
        now: DateTime<Utc>,
    ) -> Result<Option<GraphConsentRequest>>;

    /// The consent callback, in one transaction: spends `nonce` (only if it belongs to `scope`,
    /// is unused and unexpired; otherwise nothing changes: `StateUnusable`); then, if Microsoft
    /// named the Entra tenant that consented (`entra_tenant_id`), connects the tenant — a new
    /// connection, or the same one again (its state and reader history start afresh) — with an
    /// audit entry by the person who asked; without it, only the state is spent (`Declined`).
    /// The first read is due at `now`.
    async fn complete_graph_consent(
        &self,
        scope: TenantScope,
        nonce: Uuid,
        entra_tenant_id: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<GraphConsentOutcome>;

    async fn get_graph_connection(&self, scope: TenantScope) -> Result<Option<GraphConnection>>;

    /// Disconnects a tenant: removes its connection and any consent pending, with an audit
    /// entry; `false` if it had neither.
    async fn delete_graph_connection(
        &self,
        scope: TenantScope,
        actor: &str,
        now: DateTime<Utc>,
    ) -> Result<bool>;

    /// Leases up to `limit` connected tenants whose read is due (not throttled, not leased by
    /// another reader), oldest due first, for `lease`. Any number of workers may claim at once:
    /// each tenant goes to one of them, and comes back only when its lease runs out unfinished.
    /// Tenants with an own app are always taken (with the app); tenants read with the
    /// installation's app only when `installation` (the reader has that app) and the app has no
    /// problem recorded whose `retry_at` is still ahead.
    async fn claim_graph_reads(
        &self,
        limit: u32,
        lease: Duration,
        installation: bool,
        now: DateTime<Utc>,
    ) -> Result<Vec<GraphReadClaim>>;

    /// Records what the read under `lease_id` found and when the next one is due, ending the
    /// lease; `false` (nothing written) if the lease is no longer this reader's.
    async fn finish_graph_read(
        &self,
        scope: TenantScope,
        lease_id: Uuid,
        result: &GraphReadResult,
        now: DateTime<Utc>,
    ) -> Result<bool>;

    /// Re-test now: a connected tenant's next read becomes due at once; `false` if it is not
    /// connected (or already due).
    async fn request_graph_read(&self, scope: TenantScope, now: DateTime<Utc>) -> Result<bool>;

    /// Sets (or with `None` clears) the tenant's test user, whose registration the reader
    /// reads; a connected tenant is read again at once. Audited. `None` if the tenant is not
    /// connected to Graph.
    async fn set_graph_test_user(
        &self,
        scope: TenantScope,
        test_user: Option<&str>,
        actor: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<GraphConnection>>;

    /// The tenant's own Graph app, if one is set.
    async fn get_graph_own_app(&self, scope: TenantScope) -> Result<Option<GraphOwnApp>>;

    /// Sets (or replaces) the tenant's own app, in one transaction: refused (`Changed`, nothing
    /// written) when `expected_version` is given and the app is not at it (or there is none);
    /// else the app is written (version 1, or one more), the tenant is connected through it —
    /// a new connection, or the one it had (through either app) with its reader history started
    /// afresh — with its first read due at `now`, and an audit entry (without the credential)
    /// is written.
    async fn set_graph_own_app(
        &self,
        scope: TenantScope,
        expected_version: Option<i64>,
        write: &GraphOwnAppWrite,
        actor: &str,
        now: DateTime<Utc>,
    ) -> Result<GraphOwnAppOutcome>;

    /// Removes the tenant's own app and the connection it read through (reading stops), with an
    /// audit entry; `false` if it had none.
    async fn delete_graph_own_app(&self, scope: TenantScope, actor: &str, now: DateTime<Utc>)
    -> Result<bool>;

    /// Records that the installation's app itself was refused (`problem`): no tenant is read with
    /// it before `retry_at`. `true` if this is a new problem (none was recorded).
    async fn record_graph_app_problem(
        &self,
        problem: &str,
        retry_at: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<bool>;

    /// The installation's app was accepted again: forgets its problem; `true` if there was one.
    async fn clear_graph_app_problem(&self) -> Result<bool>;

    /// The installation's app's problem, if one is recorded.
    async fn graph_app_problem(&self) -> Result<Option<GraphAppProblem>>;
}

/// What `check` found of a database: reachable, and how its migrations stand against this
/// build's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DatabaseCheck {
    pub backend: Backend,
    /// Migrations of this build the database has applied…
    pub applied: usize,
    /// …and not yet (applied at the next start, or by `wbd-api migrate`).
    pub pending: usize,
    /// Migrations the database has that this build does not know (a newer version ran on it:
    /// this one would refuse to start).
    pub unknown: usize,
    /// A SQLite file that does not exist yet (it is created at the first start).
    pub missing_file: bool,
}

/// Connects to the database named by `url` without changing anything (no migration, no file
/// created) and compares its migrations with this build's.
pub async fn check(url: &str) -> Result<DatabaseCheck> {
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        pg::check(url).await
    } else if url.starts_with("sqlite:") {
        sqlite::check(url).await
    } else {
        Err(StoreError::UnsupportedUrl(url.to_owned()))
    }
}

/// Compares the versions a database applied with `migrator`'s.
fn compare_migrations(
    backend: Backend,
    applied: &[i64],
    migrator: &sqlx::migrate::Migrator,
) -> DatabaseCheck {
    let known: Vec<i64> =
        migrator.iter().filter(|m| !m.migration_type.is_down_migration()).map(|m| m.version).collect();
    DatabaseCheck {
        backend,
        applied: known.iter().filter(|v| applied.contains(v)).count(),
        pending: known.iter().filter(|v| !applied.contains(v)).count(),
        unknown: applied.iter().filter(|v| !known.contains(v)).count(),
        missing_file: false,
    }
}

/// The versions recorded in sqlx's migration table: `query`'s result, where a missing table
/// means none applied yet.
fn applied_versions(query: std::result::Result<Vec<i64>, sqlx::Error>) -> Result<Vec<i64>> {
    match query {
        Ok(versions) => Ok(versions),
        Err(sqlx::Error::Database(e)) if e.message().contains("_sqlx_migrations") => Ok(Vec::new()),
        Err(e) => Err(e.into()),
    }
}

/// sqlx's record of the migrations a database applied.
const APPLIED_MIGRATIONS: &str = "SELECT version FROM _sqlx_migrations WHERE success ORDER BY version";

/// Connects to the store named by `url` (`postgres://…`, `postgresql://…` or `sqlite://…`;
/// a SQLite file is created if missing and runs in WAL mode) and applies its migrations.
pub async fn connect(url: &str, max_connections: u32) -> Result<Arc<dyn Store>> {
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        Ok(Arc::new(pg::PgStore::connect(url, max_connections).await?))
    } else if url.starts_with("sqlite:") {
        Ok(Arc::new(sqlite::SqliteStore::connect(url, max_connections).await?))
    } else {
        Err(StoreError::UnsupportedUrl(url.to_owned()))
    }
}

/// How long a pooled connection may sit idle before it is checked again as it is handed out.
const RECHECK_IDLE_AFTER: Duration = Duration::from_secs(5);

/// The pool options both backends share. sqlx checks every connection as it goes back to the
/// pool (a round trip), and by default again as it is handed out: two round trips per use
/// beside the statements themselves, which on the ingest and evaluation paths made about a
/// quarter of PostgreSQL's work sending answers. A connection used within the last few seconds
/// was checked as it came back, so only one idle for longer is checked again before use.
fn pool_options<DB: sqlx::Database>() -> sqlx::pool::PoolOptions<DB> {
    sqlx::pool::PoolOptions::<DB>::new().test_before_acquire(false).before_acquire(|conn, meta| {
        Box::pin(async move {
            if meta.idle_for >= RECHECK_IDLE_AFTER {
                sqlx::Connection::ping(conn).await?;
            }
            Ok(true)
        })
    })
}
