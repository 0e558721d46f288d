//! The PostgreSQL backend of [`Store`](crate::Store), for the distributed deployment (many API and
//! worker processes on one database).
//!
//! Concurrency relies on row locks rather than on serializable transactions: ingest locks the
//! collector row before it reads and rewrites that collector's facts, the outbox is claimed with
//! `FOR UPDATE SKIP LOCKED`, and evaluations are guarded by `facts_version` and per-finding
//! versions checked in the `UPDATE`s themselves. Lock order is always collector → facts → tenant
//! (ingest) and tenant → findings (evaluation), so the two never deadlock.

use std::collections::HashMap;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::migrate::Migrator;
use sqlx::postgres::{PgPool, PgPoolOptions, PgRow};
use sqlx::types::Json;
use sqlx::{Postgres, Row, Transaction};
use uuid::Uuid;

use crate::convert::{
    count_to_i64, lease_until, message_kind, micros, parse_enum, saturating_i64, to_u32, to_u64,
    unique_violation,
};
use crate::ingest_plan::{self, StoredFact};
use crate::policy::{self, TokenHolder};
use crate::*;

static MIGRATOR: Migrator = sqlx::migrate!("../../migrations/postgres");

/// Column lists, spelled once so that every query and its row mapper agree.
macro_rules! org_cols {
    () => {
        "id, name, created_at"
    };
}
macro_rules! api_key_cols {
    () => {
        "id, org_id, name, role, prefix, created_at, revoked_at"
    };
}
macro_rules! tenant_cols {
    () => {
        "id, org_id, name, entra_tenant_id, created_at"
    };
}
macro_rules! collector_cols {
    () => {
        "id, org_id, tenant_id, name, status, enrollment_expires_at, public_key, hostname, version, os, \
         push_interval_secs, enrolled_at, last_seen_at, silent_after, spool_dropped, created_at, revoked_at"
    };
}
macro_rules! fact_cols {
    () => {
        "collector_id, probe, subject, observed_at, payload, digest, first_seen_at, repeat_count"
    };
}
macro_rules! outbox_cols {
    () => {
        "id, org_id, tenant_id, kind, traceparent, created_at, attempts"
    };
}
macro_rules! finding_cols {
    () => {
        "id, org_id, tenant_id, fingerprint, rule_id, subject, severity, status, title, summary, evidence, \
         opened_at, updated_at, resolved_at, reopen_count, version, collector_id, acknowledged_at, \
         acknowledged_by, suppressed_until, suppression_reason, suppressed_by, message"
    };
}
macro_rules! event_cols {
    () => {
        "id, finding_id, kind, actor, at, severity, summary, note, suppressed_until"
    };
}
macro_rules! command_cols {
    () => {
        "id, collector_id, finding_id, action, requested_by, created_at, delivered_batch_id, delivered_at"
    };
}

/// Open (or acknowledged) findings per severity, suppressed findings, collectors, silence and
/// undecided rules per tenant; `$3` optionally picks one.
const TENANT_SUMMARIES: &str = "
    SELECT t.id, t.org_id, t.name, t.entra_tenant_id, t.created_at,
           COALESCE(f.critical, 0) AS open_critical, COALESCE(f.high, 0) AS open_high,
           COALESCE(f.medium, 0) AS open_medium, COALESCE(f.low, 0) AS open_low,
           COALESCE(f.info, 0) AS open_info, COALESCE(f.suppressed, 0) AS suppressed,
           COALESCE(c.collectors, 0) AS collectors, COALESCE(c.silent, 0) AS silent_collectors,
           t.unknown_rules, c.last_seen_at
    FROM tenants t
    LEFT JOIN (
        SELECT tenant_id,
               count(*) FILTER (WHERE status <> 'suppressed' AND severity = 'critical') AS critical,
               count(*) FILTER (WHERE status <> 'suppressed' AND severity = 'high') AS high,
               count(*) FILTER (WHERE status <> 'suppressed' AND severity = 'medium') AS medium,
               count(*) FILTER (WHERE status <> 'suppressed' AND severity = 'low') AS low,
               count(*) FILTER (WHERE status <> 'suppressed' AND severity = 'info') AS info,
               count(*) FILTER (WHERE status = 'suppressed') AS suppressed
        FROM findings
        WHERE org_id = $1 AND status <> 'resolved' AND ($3::uuid IS NULL OR tenant_id = $3)
        GROUP BY tenant_id
    ) f ON f.tenant_id = t.id
    LEFT JOIN (
        SELECT tenant_id,
               count(*) FILTER (WHERE status <> 'revoked') AS collectors,
               count(*) FILTER (WHERE status = 'active' AND silent_after < $2) AS silent,
               max(last_seen_at) AS last_seen_at
        FROM collectors
        WHERE org_id = $1 AND ($3::uuid IS NULL OR tenant_id = $3)
        GROUP BY tenant_id
    ) c ON c.tenant_id = t.id
    WHERE t.org_id = $1 AND ($3::uuid IS NULL OR t.id = $3)";

pub struct PgStore {
    pool: PgPool,
}

impl PgStore {
    /// Connects and applies the PostgreSQL migrations (sqlx serialises concurrent migrators with
    /// an advisory lock, so many processes may start at once).
    pub async fn connect(url: &str, max_connections: u32) -> Result<Self> {
        let pool = PgPoolOptions::new().max_connections(max_connections).connect(url).await?;
        MIGRATOR.run(&pool).await?;
        Ok(Self { pool })
    }

    async fn tenant_summaries(
        &self,
        org: OrgScope,
        tenant: Option<TenantId>,
        now: DateTime<Utc>,
    ) -> Result<Vec<TenantSummary>> {
        let rows = sqlx::query(TENANT_SUMMARIES)
            .bind(org.org_id.0)
            .bind(micros(now))
            .bind(tenant.map(|t| t.0))
            .fetch_all(&self.pool)
            .await?;
        let mut summaries = rows.iter().map(summary_from_row).collect::<Result<Vec<_>>>()?;
        policy::sort_worst_first(&mut summaries);
        Ok(summaries)
    }
}

// ---- row mapping ------------------------------------------------------------------------------

fn org_from_row(row: &PgRow) -> Result<Organization> {
    Ok(Organization {
        id: OrgId(row.try_get("id")?),
        name: row.try_get("name")?,
        created_at: row.try_get("created_at")?,
    })
}

fn api_key_from_row(row: &PgRow) -> Result<ApiKey> {
    Ok(ApiKey {
        id: ApiKeyId(row.try_get("id")?),
        org_id: OrgId(row.try_get("org_id")?),
        name: row.try_get("name")?,
        role: parse_enum(row.try_get("role")?, "api_keys.role")?,
        prefix: row.try_get("prefix")?,
        created_at: row.try_get("created_at")?,
        revoked_at: row.try_get("revoked_at")?,
    })
}

fn tenant_from_row(row: &PgRow) -> Result<Tenant> {
    Ok(Tenant {
        id: TenantId(row.try_get("id")?),
        org_id: OrgId(row.try_get("org_id")?),
        name: row.try_get("name")?,
        entra_tenant_id: row.try_get("entra_tenant_id")?,
        created_at: row.try_get("created_at")?,
    })
}

fn summary_from_row(row: &PgRow) -> Result<TenantSummary> {
    let count = |column: &'static str| -> Result<u32> { to_u32(row.try_get(column)?, column) };
    Ok(TenantSummary {
        tenant: tenant_from_row(row)?,
        open_critical: count("open_critical")?,
        open_high: count("open_high")?,
        open_medium: count("open_medium")?,
        open_low: count("open_low")?,
        open_info: count("open_info")?,
        suppressed: count("suppressed")?,
        collectors: count("collectors")?,
        silent_collectors: count("silent_collectors")?,
        unknown_rules: count("unknown_rules")?,
        last_seen_at: row.try_get("last_seen_at")?,
    })
}

fn collector_from_row(row: &PgRow) -> Result<Collector> {
    Ok(Collector {
        id: CollectorId(row.try_get("id")?),
        org_id: OrgId(row.try_get("org_id")?),
        tenant_id: TenantId(row.try_get("tenant_id")?),
        name: row.try_get("name")?,
        status: parse_enum(row.try_get("status")?, "collectors.status")?,
        enrollment_expires_at: row.try_get("enrollment_expires_at")?,
        public_key: row.try_get("public_key")?,
        hostname: row.try_get("hostname")?,
        version: row.try_get("version")?,
        os: row.try_get("os")?,
        push_interval_secs: to_u32(row.try_get("push_interval_secs")?, "collectors.push_interval_secs")?,
        enrolled_at: row.try_get("enrolled_at")?,
        last_seen_at: row.try_get("last_seen_at")?,
        silent_after: row.try_get("silent_after")?,
        spool_dropped: to_u64(row.try_get("spool_dropped")?, "collectors.spool_dropped")?,
        created_at: row.try_get("created_at")?,
        revoked_at: row.try_get("revoked_at")?,
    })
}

fn fact_from_row(row: &PgRow) -> Result<Fact> {
    Ok(Fact {
        collector_id: CollectorId(row.try_get("collector_id")?),
        probe: row.try_get("probe")?,
        subject: row.try_get("subject")?,
        observed_at: row.try_get("observed_at")?,
        payload: row.try_get("payload")?,
        digest: row.try_get("digest")?,
        first_seen_at: row.try_get("first_seen_at")?,
        repeat_count: to_u64(row.try_get("repeat_count")?, "facts.repeat_count")?,
    })
}

fn outbox_from_row(row: &PgRow) -> Result<OutboxMessage> {
    Ok(OutboxMessage {
        id: row.try_get("id")?,
        org_id: OrgId(row.try_get("org_id")?),
        tenant_id: TenantId(row.try_get("tenant_id")?),
        kind: message_kind(row.try_get("kind")?)?,
        traceparent: row.try_get("traceparent")?,
        created_at: row.try_get("created_at")?,
        attempts: to_u32(row.try_get("attempts")?, "outbox.attempts")?,
    })
}

fn finding_from_row(row: &PgRow) -> Result<Finding> {
    Ok(Finding {
        id: FindingId(row.try_get("id")?),
        org_id: OrgId(row.try_get("org_id")?),
        tenant_id: TenantId(row.try_get("tenant_id")?),
        fingerprint: row.try_get("fingerprint")?,
        rule_id: row.try_get("rule_id")?,
        subject: row.try_get("subject")?,
        severity: parse_enum(row.try_get("severity")?, "findings.severity")?,
        status: parse_enum(row.try_get("status")?, "findings.status")?,
        title: row.try_get("title")?,
        summary: row.try_get("summary")?,
        evidence: row.try_get("evidence")?,
        opened_at: row.try_get("opened_at")?,
        updated_at: row.try_get("updated_at")?,
        resolved_at: row.try_get("resolved_at")?,
        reopen_count: to_u32(row.try_get("reopen_count")?, "findings.reopen_count")?,
        version: row.try_get("version")?,
        collector_id: row.try_get::<Option<Uuid>, _>("collector_id")?.map(CollectorId),
        acknowledged_at: row.try_get("acknowledged_at")?,
        acknowledged_by: row.try_get("acknowledged_by")?,
        suppressed_until: row.try_get("suppressed_until")?,
        suppression_reason: row.try_get("suppression_reason")?,
        suppressed_by: row.try_get("suppressed_by")?,
        message: row.try_get::<Option<serde_json::Value>, _>("message")?,
    })
}

fn event_from_row(row: &PgRow) -> Result<FindingEvent> {
    Ok(FindingEvent {
        id: row.try_get("id")?,
        finding_id: FindingId(row.try_get("finding_id")?),
        kind: parse_enum(row.try_get("kind")?, "finding_events.kind")?,
        actor: row.try_get("actor")?,
        at: row.try_get("at")?,
        severity: parse_enum(row.try_get("severity")?, "finding_events.severity")?,
        summary: row.try_get("summary")?,
        note: row.try_get("note")?,
        suppressed_until: row.try_get("suppressed_until")?,
    })
}

fn streak_from_row(row: &PgRow) -> Result<FindingStreak> {
    Ok(FindingStreak {
        fingerprint: row.try_get("fingerprint")?,
        fails: to_u32(row.try_get("fails")?, "finding_streaks.fails")?,
        passes: to_u32(row.try_get("passes")?, "finding_streaks.passes")?,
        updated_at: row.try_get("updated_at")?,
    })
}

fn command_from_row(row: &PgRow) -> Result<CollectorCommandRecord> {
    Ok(CollectorCommandRecord {
        id: row.try_get("id")?,
        collector_id: CollectorId(row.try_get("collector_id")?),
        finding_id: row.try_get::<Option<Uuid>, _>("finding_id")?.map(FindingId),
        action: row.try_get("action")?,
        requested_by: row.try_get("requested_by")?,
        created_at: row.try_get("created_at")?,
        delivered_batch_id: row.try_get("delivered_batch_id")?,
        delivered_at: row.try_get("delivered_at")?,
    })
}

// ---- evaluation steps -------------------------------------------------------------------------

/// Applies one change inside the evaluation transaction; `false` means a guard failed (the
/// finding moved since the snapshot, or an `Open` found the fingerprint taken).
async fn apply_change(
    tx: &mut Transaction<'static, Postgres>,
    scope: TenantScope,
    change: &FindingChange,
    now: DateTime<Utc>,
    traceparent: Option<&str>,
) -> Result<bool> {
    let (finding_id, kind, severity, summary): (Uuid, FindingEventKind, Severity, &str) = match change {
        FindingChange::Open {
            fingerprint,
            rule_id,
            subject,
            collector_id,
            severity,
            title,
            summary,
            evidence,
        } => {
            let id = FindingId::new();
            let inserted = sqlx::query(
                "INSERT INTO findings (id, org_id, tenant_id, fingerprint, rule_id, subject, severity, status,
                                       title, summary, evidence, opened_at, updated_at, resolved_at,
                                       reopen_count, version, collector_id)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, 'open', $8, $9, $10, $11, $11, NULL, 0, 1, $12)
                 ON CONFLICT (tenant_id, fingerprint) DO NOTHING",
            )
            .bind(id.0)
            .bind(scope.org_id.0)
            .bind(scope.tenant_id.0)
            .bind(fingerprint)
            .bind(rule_id)
            .bind(subject)
            .bind(severity.as_str())
            .bind(title)
            .bind(summary)
            .bind(evidence)
            .bind(now)
            .bind(collector_id.map(|c| c.0))
            .execute(&mut **tx)
            .await?;
            if inserted.rows_affected() == 0 {
                return Ok(false);
            }
            (id.0, FindingEventKind::Opened, *severity, summary.as_str())
        }
        FindingChange::Reopen { id, expected_version, severity, summary, evidence } => {
            let updated = sqlx::query(
                "UPDATE findings
                 SET status = 'open', severity = $5, summary = $6, evidence = $7, updated_at = $8,
                     resolved_at = NULL, reopen_count = reopen_count + 1, version = version + 1
                 WHERE id = $1 AND org_id = $2 AND tenant_id = $3 AND version = $4 AND status = 'resolved'",
            )
            .bind(id.0)
            .bind(scope.org_id.0)
            .bind(scope.tenant_id.0)
            .bind(expected_version)
            .bind(severity.as_str())
            .bind(summary)
            .bind(evidence)
            .bind(now)
            .execute(&mut **tx)
            .await?;
            if updated.rows_affected() == 0 {
                return Ok(false);
            }
            (id.0, FindingEventKind::Reopened, *severity, summary.as_str())
        }
        FindingChange::Reannounce { id, expected_version, severity, summary, evidence } => {
            let updated = sqlx::query(
                "UPDATE findings
                 SET status = 'open', severity = $5, summary = $6, evidence = $7, updated_at = $8,
                     suppressed_until = NULL, suppression_reason = NULL, suppressed_by = NULL,
                     acknowledged_at = NULL, acknowledged_by = NULL, version = version + 1
                 WHERE id = $1 AND org_id = $2 AND tenant_id = $3 AND version = $4 AND status = 'suppressed'",
            )
            .bind(id.0)
            .bind(scope.org_id.0)
            .bind(scope.tenant_id.0)
            .bind(expected_version)
            .bind(severity.as_str())
            .bind(summary)
            .bind(evidence)
            .bind(now)
            .execute(&mut **tx)
            .await?;
            if updated.rows_affected() == 0 {
                return Ok(false);
            }
            (id.0, FindingEventKind::SuppressionExpired, *severity, summary.as_str())
        }
        FindingChange::Update { id, expected_version, severity, summary, evidence } => {
            let updated = sqlx::query(
                "UPDATE findings
                 SET severity = $5, summary = $6, evidence = $7, updated_at = $8, version = version + 1
                 WHERE id = $1 AND org_id = $2 AND tenant_id = $3 AND version = $4 AND status <> 'resolved'",
            )
            .bind(id.0)
            .bind(scope.org_id.0)
            .bind(scope.tenant_id.0)
            .bind(expected_version)
            .bind(severity.as_str())
            .bind(summary)
            .bind(evidence)
            .bind(now)
            .execute(&mut **tx)
            .await?;
            if updated.rows_affected() == 0 {
                return Ok(false);
            }
            (id.0, FindingEventKind::Updated, *severity, summary.as_str())
        }
        FindingChange::Resolve { id, expected_version, summary } => {
            // Resolving ends any acknowledgement or suppression: if it fails again, it is news.
            let severity: Option<String> = sqlx::query_scalar(
                "UPDATE findings
                 SET status = 'resolved', summary = $5, resolved_at = $6, updated_at = $6,
                     acknowledged_at = NULL, acknowledged_by = NULL, suppressed_until = NULL,
                     suppression_reason = NULL, suppressed_by = NULL, version = version + 1
                 WHERE id = $1 AND org_id = $2 AND tenant_id = $3 AND version = $4 AND status <> 'resolved'
                 RETURNING severity",
            )
            .bind(id.0)
            .bind(scope.org_id.0)
            .bind(scope.tenant_id.0)
            .bind(expected_version)
            .bind(summary)
            .bind(now)
            .fetch_optional(&mut **tx)
            .await?;
            let Some(severity) = severity else { return Ok(false) };
            (id.0, FindingEventKind::Resolved, parse_enum(&severity, "findings.severity")?, summary.as_str())
        }
    };
    let event = NewEvent {
        kind,
        actor: "system",
        severity,
        summary,
        note: None,
        suppressed_until: None,
        traceparent,
    };
    insert_event(tx, scope, finding_id, &event, now).await?;
    Ok(true)
}

/// An event row to write.
struct NewEvent<'a> {
    kind: FindingEventKind,
    actor: &'a str,
    severity: Severity,
    summary: &'a str,
    note: Option<&'a str>,
    suppressed_until: Option<DateTime<Utc>>,
    /// The trace the change happened in (an evaluation's, continued from the ingest), carried
    /// on to the deliveries the event makes.
    traceparent: Option<&'a str>,
}

async fn insert_event(
    tx: &mut Transaction<'static, Postgres>,
    scope: TenantScope,
    finding_id: Uuid,
    event: &NewEvent<'_>,
    now: DateTime<Utc>,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO finding_events (id, finding_id, org_id, tenant_id, kind, actor, at, severity, summary,
                                     note, suppressed_until, traceparent)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
    )
    .bind(Uuid::now_v7())
    .bind(finding_id)
    .bind(scope.org_id.0)
    .bind(scope.tenant_id.0)
    .bind(event.kind.as_str())
    .bind(event.actor)
    .bind(now)
    .bind(event.severity.as_str())
    .bind(event.summary)
    .bind(event.note)
    .bind(event.suppressed_until.map(micros))
    .bind(event.traceparent)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Applies one streak change; `false` means the streak is no longer what the snapshot held.
async fn apply_streak(
    tx: &mut Transaction<'static, Postgres>,
    scope: TenantScope,
    change: &StreakChange,
    now: DateTime<Utc>,
) -> Result<bool> {
    let done = match change {
        StreakChange::Set { fingerprint, expected: None, fails, passes } => sqlx::query(
            "INSERT INTO finding_streaks (tenant_id, fingerprint, org_id, fails, passes, updated_at)
             VALUES ($1, $2, $3, $4, $5, $6)
             ON CONFLICT (tenant_id, fingerprint) DO NOTHING",
        )
        .bind(scope.tenant_id.0)
        .bind(fingerprint)
        .bind(scope.org_id.0)
        .bind(i64::from(*fails))
        .bind(i64::from(*passes))
        .bind(now)
        .execute(&mut **tx)
        .await?
        .rows_affected(),
        StreakChange::Set { fingerprint, expected: Some((old_fails, old_passes)), fails, passes } => {
            sqlx::query(
                "UPDATE finding_streaks SET fails = $6, passes = $7, updated_at = $8
                 WHERE tenant_id = $1 AND org_id = $2 AND fingerprint = $3 AND fails = $4 AND passes = $5",
            )
            .bind(scope.tenant_id.0)
            .bind(scope.org_id.0)
            .bind(fingerprint)
            .bind(i64::from(*old_fails))
            .bind(i64::from(*old_passes))
            .bind(i64::from(*fails))
            .bind(i64::from(*passes))
            .bind(now)
            .execute(&mut **tx)
            .await?
            .rows_affected()
        }
        StreakChange::Clear { fingerprint, expected: (old_fails, old_passes) } => sqlx::query(
            "DELETE FROM finding_streaks
             WHERE tenant_id = $1 AND org_id = $2 AND fingerprint = $3 AND fails = $4 AND passes = $5",
        )
        .bind(scope.tenant_id.0)
        .bind(scope.org_id.0)
        .bind(fingerprint)
        .bind(i64::from(*old_fails))
        .bind(i64::from(*old_passes))
        .execute(&mut **tx)
        .await?
        .rows_affected(),
    };
    Ok(done == 1)
}

// ---- ingest steps -----------------------------------------------------------------------------

/// Reads the stored latest facts of the batch's keys (one round trip).
async fn stored_facts(
    tx: &mut Transaction<'static, Postgres>,
    collector_id: CollectorId,
    results: &[FactWrite],
) -> Result<HashMap<(String, String), StoredFact>> {
    let (probes, subjects): (Vec<String>, Vec<String>) = ingest_plan::keys(results).into_iter().unzip();
    let rows = sqlx::query(
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
    .await?;
    rows.iter()
        .map(|row| {
            Ok((
                (row.try_get("probe")?, row.try_get("subject")?),
                StoredFact {
                    observed_at: row.try_get("observed_at")?,
                    digest: row.try_get("digest")?,
                    first_seen_at: row.try_get("first_seen_at")?,
                    repeat_count: row.try_get("repeat_count")?,
                    history_id: row.try_get("history_id")?,
                },
            ))
        })
        .collect()
}

/// Writes the plan with one multi-row statement per kind of write.
async fn write_plan(
    tx: &mut Transaction<'static, Postgres>,
    scope: TenantScope,
    collector_id: CollectorId,
    plan: &ingest_plan::IngestPlan,
) -> Result<()> {
    if !plan.new_runs.is_empty() {
        let runs = &plan.new_runs;
        sqlx::query(
            "INSERT INTO fact_history (id, org_id, tenant_id, collector_id, probe, subject, digest, payload,
                                       first_seen_at, last_seen_at, count)
             SELECT r.id, $1, $2, $3, r.probe, r.subject, r.digest, r.payload, r.first_seen_at,
                    r.last_seen_at, r.count
             FROM UNNEST($4::uuid[], $5::text[], $6::text[], $7::text[], $8::jsonb[], $9::timestamptz[],
                         $10::timestamptz[], $11::bigint[])
                  AS r (id, probe, subject, digest, payload, first_seen_at, last_seen_at, count)",
        )
        .bind(scope.org_id.0)
        .bind(scope.tenant_id.0)
        .bind(collector_id.0)
        .bind(runs.iter().map(|r| r.id).collect::<Vec<_>>())
        .bind(runs.iter().map(|r| r.probe.clone()).collect::<Vec<_>>())
        .bind(runs.iter().map(|r| r.subject.clone()).collect::<Vec<_>>())
        .bind(runs.iter().map(|r| r.digest.clone()).collect::<Vec<_>>())
        .bind(runs.iter().map(|r| r.payload.clone()).collect::<Vec<_>>())
        .bind(runs.iter().map(|r| r.first_seen_at).collect::<Vec<_>>())
        .bind(runs.iter().map(|r| r.last_seen_at).collect::<Vec<_>>())
        .bind(runs.iter().map(|r| r.count).collect::<Vec<_>>())
        .execute(&mut **tx)
        .await?;
    }

    if !plan.extensions.is_empty() {
        let ext = &plan.extensions;
        sqlx::query(
            "UPDATE fact_history h SET last_seen_at = e.last_seen_at, count = h.count + e.added
             FROM UNNEST($2::uuid[], $3::timestamptz[], $4::bigint[]) AS e (id, last_seen_at, added)
             WHERE h.id = e.id AND h.collector_id = $1",
        )
        .bind(collector_id.0)
        .bind(ext.iter().map(|e| e.id).collect::<Vec<_>>())
        .bind(ext.iter().map(|e| e.last_seen_at).collect::<Vec<_>>())
        .bind(ext.iter().map(|e| e.added).collect::<Vec<_>>())
        .execute(&mut **tx)
        .await?;
    }

    if !plan.facts.is_empty() {
        let facts = &plan.facts;
        sqlx::query(
            "INSERT INTO facts (collector_id, probe, subject, org_id, tenant_id, observed_at, payload, digest,
                                first_seen_at, repeat_count, history_id)
             SELECT $1, f.probe, f.subject, $2, $3, f.observed_at, f.payload, f.digest, f.first_seen_at,
                    f.repeat_count, f.history_id
             FROM UNNEST($4::text[], $5::text[], $6::timestamptz[], $7::jsonb[], $8::text[],
                         $9::timestamptz[], $10::bigint[], $11::uuid[])
                  AS f (probe, subject, observed_at, payload, digest, first_seen_at, repeat_count, history_id)
             ON CONFLICT (collector_id, probe, subject) DO UPDATE
             SET observed_at = EXCLUDED.observed_at, payload = EXCLUDED.payload, digest = EXCLUDED.digest,
                 first_seen_at = EXCLUDED.first_seen_at, repeat_count = EXCLUDED.repeat_count,
                 history_id = EXCLUDED.history_id",
        )
        .bind(collector_id.0)
        .bind(scope.org_id.0)
        .bind(scope.tenant_id.0)
        .bind(facts.iter().map(|f| f.probe.clone()).collect::<Vec<_>>())
        .bind(facts.iter().map(|f| f.subject.clone()).collect::<Vec<_>>())
        .bind(facts.iter().map(|f| f.observed_at).collect::<Vec<_>>())
        .bind(facts.iter().map(|f| f.payload.clone()).collect::<Vec<_>>())
        .bind(facts.iter().map(|f| f.digest.clone()).collect::<Vec<_>>())
        .bind(facts.iter().map(|f| f.first_seen_at).collect::<Vec<_>>())
        .bind(facts.iter().map(|f| f.repeat_count).collect::<Vec<_>>())
        .bind(facts.iter().map(|f| f.history_id).collect::<Vec<_>>())
        .execute(&mut **tx)
        .await?;
    }
    Ok(())
}

#[async_trait]
impl Store for PgStore {
    fn backend(&self) -> Backend {
        Backend::Postgres
    }

    async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    async fn get_or_create_secret(&self, name: &str, generated: Vec<u8>) -> Result<Vec<u8>> {
        // Two statements on purpose: after a lost race the SELECT takes a fresh snapshot that
        // sees the winner's row, which a single CTE statement would not.
        sqlx::query("INSERT INTO server_secrets (name, value) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING")
            .bind(name)
            .bind(generated)
            .execute(&self.pool)
            .await?;
        let value = sqlx::query_scalar("SELECT value FROM server_secrets WHERE name = $1")
            .bind(name)
            .fetch_one(&self.pool)
            .await?;
        Ok(value)
    }

    async fn create_organization(&self, name: &str, now: DateTime<Utc>) -> Result<Organization> {
        let row = sqlx::query(concat!(
            "INSERT INTO organizations (id, name, created_at) VALUES ($1, $2, $3) RETURNING ",
            org_cols!()
        ))
        .bind(OrgId::new().0)
        .bind(name)
        .bind(micros(now))
        .fetch_one(&self.pool)
        .await?;
        org_from_row(&row)
    }

    async fn create_api_key(
        &self,
        org: OrgScope,
        name: &str,
        role: Role,
        prefix: &str,
        key_hash: &str,
        now: DateTime<Utc>,
    ) -> Result<ApiKey> {
        let row = sqlx::query(concat!(
            "INSERT INTO api_keys (id, org_id, name, role, prefix, key_hash, created_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING ",
            api_key_cols!()
        ))
        .bind(ApiKeyId::new().0)
        .bind(org.org_id.0)
        .bind(name)
        .bind(role.as_str())
        .bind(prefix)
        .bind(key_hash)
        .bind(micros(now))
        .fetch_one(&self.pool)
        .await
        .map_err(|e| unique_violation(e, "api key", "key hash"))?;
        api_key_from_row(&row)
    }

    async fn find_api_key_by_hash(&self, key_hash: &str) -> Result<Option<ApiKey>> {
        let row = sqlx::query(concat!("SELECT ", api_key_cols!(), " FROM api_keys WHERE key_hash = $1"))
            .bind(key_hash)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(api_key_from_row).transpose()
    }

    async fn list_api_keys(&self, org: OrgScope) -> Result<Vec<ApiKey>> {
        let rows = sqlx::query(concat!(
            "SELECT ",
            api_key_cols!(),
            " FROM api_keys WHERE org_id = $1 ORDER BY created_at, id"
        ))
        .bind(org.org_id.0)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(api_key_from_row).collect()
    }

    async fn get_api_key(&self, org: OrgScope, id: ApiKeyId) -> Result<Option<ApiKey>> {
        let row =
            sqlx::query(concat!("SELECT ", api_key_cols!(), " FROM api_keys WHERE id = $1 AND org_id = $2"))
                .bind(id.0)
                .bind(org.org_id.0)
                .fetch_optional(&self.pool)
                .await?;
        row.as_ref().map(api_key_from_row).transpose()
    }

    async fn revoke_api_key(
        &self,
        org: OrgScope,
        id: ApiKeyId,
        now: DateTime<Utc>,
    ) -> Result<Option<ApiKey>> {
        // Revoking twice keeps the first revocation time.
        let row = sqlx::query(concat!(
            "UPDATE api_keys SET revoked_at = COALESCE(revoked_at, $3)
             WHERE id = $1 AND org_id = $2 RETURNING ",
            api_key_cols!()
        ))
        .bind(id.0)
        .bind(org.org_id.0)
        .bind(micros(now))
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(api_key_from_row).transpose()
    }

    async fn create_tenant(
        &self,
        org: OrgScope,
        name: &str,
        entra_tenant_id: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<Tenant> {
        let row = sqlx::query(concat!(
            "INSERT INTO tenants (id, org_id, name, entra_tenant_id, created_at) VALUES ($1, $2, $3, $4, $5)
             RETURNING ",
            tenant_cols!()
        ))
        .bind(TenantId::new().0)
        .bind(org.org_id.0)
        .bind(name)
        .bind(entra_tenant_id)
        .bind(micros(now))
        .fetch_one(&self.pool)
        .await?;
        tenant_from_row(&row)
    }

    async fn get_tenant(&self, org: OrgScope, id: TenantId) -> Result<Option<Tenant>> {
        let row =
            sqlx::query(concat!("SELECT ", tenant_cols!(), " FROM tenants WHERE id = $1 AND org_id = $2"))
                .bind(id.0)
                .bind(org.org_id.0)
                .fetch_optional(&self.pool)
                .await?;
        row.as_ref().map(tenant_from_row).transpose()
    }

    async fn list_tenant_summaries(&self, org: OrgScope, now: DateTime<Utc>) -> Result<Vec<TenantSummary>> {
        self.tenant_summaries(org, None, now).await
    }

    async fn get_tenant_summary(
        &self,
        scope: TenantScope,
        now: DateTime<Utc>,
    ) -> Result<Option<TenantSummary>> {
        Ok(self.tenant_summaries(scope.org(), Some(scope.tenant_id), now).await?.into_iter().next())
    }

    async fn create_collector(
        &self,
        scope: TenantScope,
        name: &str,
        enrollment_token_hash: &str,
        enrollment_expires_at: DateTime<Utc>,
        push_interval_secs: u32,
        now: DateTime<Utc>,
    ) -> Result<Collector> {
        let row = sqlx::query(concat!(
            "INSERT INTO collectors (id, org_id, tenant_id, name, status, enrollment_token_hash,
                                     enrollment_expires_at, push_interval_secs, created_at)
             VALUES ($1, $2, $3, $4, 'pending', $5, $6, $7, $8) RETURNING ",
            collector_cols!()
        ))
        .bind(CollectorId::new().0)
        .bind(scope.org_id.0)
        .bind(scope.tenant_id.0)
        .bind(name)
        .bind(enrollment_token_hash)
        .bind(micros(enrollment_expires_at))
        .bind(i64::from(push_interval_secs))
        .bind(micros(now))
        .fetch_one(&self.pool)
        .await
        .map_err(|e| unique_violation(e, "collector", "enrollment token"))?;
        collector_from_row(&row)
    }

    async fn enroll_collector(&self, enrollment: &Enrollment) -> Result<Result<Collector, EnrollError>> {
        let mut tx = self.pool.begin().await?;
        // The row lock makes a concurrent enrollment with the same token wait, then see `active`.
        let holder = sqlx::query(
            "SELECT id, status, enrolled_at, enrollment_expires_at FROM collectors
             WHERE enrollment_token_hash = $1 FOR UPDATE",
        )
        .bind(&enrollment.enrollment_token_hash)
        .fetch_optional(&mut *tx)
        .await?;
        let holder = holder
            .map(|row| -> Result<(Uuid, TokenHolder)> {
                Ok((
                    row.try_get("id")?,
                    TokenHolder {
                        status: parse_enum(row.try_get("status")?, "collectors.status")?,
                        enrolled_at: row.try_get("enrolled_at")?,
                        enrollment_expires_at: row.try_get("enrollment_expires_at")?,
                    },
                ))
            })
            .transpose()?;
        let now = micros(enrollment.now);
        if let Err(refused) = policy::check_enrollment(holder.map(|(_, h)| h), now) {
            tx.rollback().await?;
            return Ok(Err(refused));
        }
        let Some((id, _)) = holder else { return Ok(Err(EnrollError::UnknownToken)) };
        let row = sqlx::query(concat!(
            "UPDATE collectors
             SET status = 'active', public_key = $2, hostname = $3, version = $4, enrolled_at = $5,
                 silent_after = $6, enrollment_expires_at = NULL
             WHERE id = $1 AND status = 'pending' RETURNING ",
            collector_cols!()
        ))
        .bind(id)
        .bind(&enrollment.public_key)
        .bind(&enrollment.hostname)
        .bind(&enrollment.version)
        .bind(now)
        .bind(micros(enrollment.silent_after))
        .fetch_one(&mut *tx)
        .await?;
        let collector = collector_from_row(&row)?;
        tx.commit().await?;
        Ok(Ok(collector))
    }

    async fn find_collector_for_auth(&self, id: CollectorId) -> Result<Option<Collector>> {
        let row = sqlx::query(concat!("SELECT ", collector_cols!(), " FROM collectors WHERE id = $1"))
            .bind(id.0)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(collector_from_row).transpose()
    }

    async fn get_collector(&self, org: OrgScope, id: CollectorId) -> Result<Option<Collector>> {
        let row = sqlx::query(concat!(
            "SELECT ",
            collector_cols!(),
            " FROM collectors WHERE id = $1 AND org_id = $2"
        ))
        .bind(id.0)
        .bind(org.org_id.0)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(collector_from_row).transpose()
    }

    async fn list_collectors(&self, org: OrgScope, tenant: Option<TenantId>) -> Result<Vec<Collector>> {
        let rows = sqlx::query(concat!(
            "SELECT ",
            collector_cols!(),
            " FROM collectors WHERE org_id = $1 AND ($2::uuid IS NULL OR tenant_id = $2)
              ORDER BY created_at, id"
        ))
        .bind(org.org_id.0)
        .bind(tenant.map(|t| t.0))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(collector_from_row).collect()
    }

    async fn revoke_collector(
        &self,
        org: OrgScope,
        id: CollectorId,
        now: DateTime<Utc>,
    ) -> Result<Option<Collector>> {
        let row = sqlx::query(concat!(
            "UPDATE collectors SET status = 'revoked', revoked_at = COALESCE(revoked_at, $3)
             WHERE id = $1 AND org_id = $2 RETURNING ",
            collector_cols!()
        ))
        .bind(id.0)
        .bind(org.org_id.0)
        .bind(micros(now))
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(collector_from_row).transpose()
    }

    async fn ingest_batch(&self, scope: TenantScope, batch: &BatchWrite) -> Result<IngestOutcome> {
        let received_at = micros(batch.received_at);
        let result_count = count_to_i64(batch.results.len());
        let mut tx = self.pool.begin().await?;

        // A concurrent retry of the same batch waits here for the first one and then conflicts.
        let inserted = sqlx::query(
            "INSERT INTO batches (collector_id, batch_id, org_id, tenant_id, body_hash, result_count,
                                  received_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7)
             ON CONFLICT (collector_id, batch_id) DO NOTHING",
        )
        .bind(batch.collector_id.0)
        .bind(batch.batch_id)
        .bind(scope.org_id.0)
        .bind(scope.tenant_id.0)
        .bind(&batch.body_hash)
        .bind(result_count)
        .bind(received_at)
        .execute(&mut *tx)
        .await?;
        if inserted.rows_affected() == 0 {
            let stored = sqlx::query(
                "SELECT body_hash, result_count FROM batches
                 WHERE collector_id = $1 AND batch_id = $2 AND org_id = $3 AND tenant_id = $4",
            )
            .bind(batch.collector_id.0)
            .bind(batch.batch_id)
            .bind(scope.org_id.0)
            .bind(scope.tenant_id.0)
            .fetch_optional(&mut *tx)
            .await?;
            tx.rollback().await?;
            return match stored {
                Some(row) if row.try_get::<String, _>("body_hash")? == batch.body_hash => {
                    Ok(IngestOutcome::Duplicate {
                        accepted: to_u32(row.try_get("result_count")?, "batches.result_count")?,
                    })
                }
                _ => Ok(IngestOutcome::Conflict),
            };
        }

        // Heartbeat first: the row lock serialises ingests of one collector, which owns its facts.
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
        .execute(&mut *tx)
        .await?;
        if heartbeat.rows_affected() == 0 {
            tx.rollback().await?;
            return Err(StoreError::Database(sqlx::Error::RowNotFound));
        }

        if !batch.results.is_empty() {
            let stored = stored_facts(&mut tx, batch.collector_id, &batch.results).await?;
            let plan = ingest_plan::plan(&batch.results, &stored);
            write_plan(&mut tx, scope, batch.collector_id, &plan).await?;
        }

        sqlx::query("UPDATE tenants SET facts_version = facts_version + 1 WHERE id = $1 AND org_id = $2")
            .bind(scope.tenant_id.0)
            .bind(scope.org_id.0)
            .execute(&mut *tx)
            .await?;

        let kind = MessageKind::BatchIngested { collector_id: batch.collector_id, batch_id: batch.batch_id };
        sqlx::query(
            "INSERT INTO outbox (id, org_id, tenant_id, kind, traceparent, created_at, lease_until, attempts)
             VALUES ($1, $2, $3, $4, $5, $6, NULL, 0)",
        )
        .bind(Uuid::now_v7())
        .bind(scope.org_id.0)
        .bind(scope.tenant_id.0)
        .bind(Json(&kind))
        .bind(&batch.traceparent)
        .bind(received_at)
        .execute(&mut *tx)
        .await?;

        tx.commit().await?;
        Ok(IngestOutcome::Accepted { accepted: u32::try_from(batch.results.len()).unwrap_or(u32::MAX) })
    }

    async fn list_facts(&self, scope: TenantScope) -> Result<Vec<Fact>> {
        let rows = sqlx::query(concat!(
            "SELECT ",
            fact_cols!(),
            " FROM facts WHERE tenant_id = $1 AND org_id = $2 ORDER BY collector_id, probe, subject"
        ))
        .bind(scope.tenant_id.0)
        .bind(scope.org_id.0)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(fact_from_row).collect()
    }

    async fn claim_outbox(
        &self,
        limit: u32,
        lease: Duration,
        now: DateTime<Utc>,
    ) -> Result<Vec<OutboxMessage>> {
        // SKIP LOCKED lets concurrent claimers take disjoint rows instead of waiting on each other.
        let rows = sqlx::query(concat!(
            "WITH due AS (
                 SELECT id AS due_id FROM outbox
                 WHERE lease_until IS NULL OR lease_until <= $1
                 ORDER BY created_at, id
                 LIMIT $2
                 FOR UPDATE SKIP LOCKED
             )
             UPDATE outbox o SET lease_until = $3, attempts = o.attempts + 1
             FROM due WHERE o.id = due.due_id
             RETURNING ",
            outbox_cols!()
        ))
        .bind(micros(now))
        .bind(i64::from(limit))
        .bind(lease_until(now, lease))
        .fetch_all(&self.pool)
        .await?;
        let mut messages = rows.iter().map(outbox_from_row).collect::<Result<Vec<_>>>()?;
        // RETURNING has no order of its own.
        messages.sort_by_key(|m| (m.created_at, m.id));
        Ok(messages)
    }

    async fn delete_outbox(&self, ids: &[Uuid]) -> Result<()> {
        if ids.is_empty() {
            return Ok(());
        }
        sqlx::query("DELETE FROM outbox WHERE id = ANY($1)").bind(ids).execute(&self.pool).await?;
        Ok(())
    }

    async fn dead_letter_outbox(&self, id: Uuid, reason: &str, now: DateTime<Utc>) -> Result<()> {
        sqlx::query(
            "WITH moved AS (
                 DELETE FROM outbox WHERE id = $1
                 RETURNING id, org_id, tenant_id, kind, traceparent, created_at, attempts
             )
             INSERT INTO dead_letters
                 (id, org_id, tenant_id, kind, traceparent, created_at, attempts, reason, dead_at)
             SELECT id, org_id, tenant_id, kind, traceparent, created_at, attempts, $2, $3 FROM moved
             ON CONFLICT (id) DO NOTHING",
        )
        .bind(id)
        .bind(reason)
        .bind(micros(now))
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn count_outbox(&self) -> Result<u64> {
        let n: i64 = sqlx::query_scalar("SELECT count(*) FROM outbox").fetch_one(&self.pool).await?;
        to_u64(n, "count(outbox)")
    }

    async fn count_dead_letters(&self) -> Result<u64> {
        let n: i64 = sqlx::query_scalar("SELECT count(*) FROM dead_letters").fetch_one(&self.pool).await?;
        to_u64(n, "count(dead_letters)")
    }

    async fn load_tenant_snapshot(&self, scope: TenantScope) -> Result<Option<TenantSnapshot>> {
        // One snapshot for all four reads, so facts_version matches the facts and findings read.
        let mut tx = self.pool.begin_with("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY").await?;
        let versions = sqlx::query(
            "SELECT facts_version, evaluated_facts_version, unknown_rules FROM tenants
             WHERE id = $1 AND org_id = $2",
        )
        .bind(scope.tenant_id.0)
        .bind(scope.org_id.0)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(versions) = versions else {
            tx.rollback().await?;
            return Ok(None);
        };
        let collectors = sqlx::query(concat!(
            "SELECT ",
            collector_cols!(),
            " FROM collectors WHERE tenant_id = $1 AND org_id = $2 ORDER BY created_at, id"
        ))
        .bind(scope.tenant_id.0)
        .bind(scope.org_id.0)
        .fetch_all(&mut *tx)
        .await?;
        let facts = sqlx::query(concat!(
            "SELECT ",
            fact_cols!(),
            " FROM facts WHERE tenant_id = $1 AND org_id = $2 ORDER BY collector_id, probe, subject"
        ))
        .bind(scope.tenant_id.0)
        .bind(scope.org_id.0)
        .fetch_all(&mut *tx)
        .await?;
        let findings = sqlx::query(concat!(
            "SELECT ",
            finding_cols!(),
            " FROM findings WHERE tenant_id = $1 AND org_id = $2 ORDER BY id"
        ))
        .bind(scope.tenant_id.0)
        .bind(scope.org_id.0)
        .fetch_all(&mut *tx)
        .await?;
        let streaks = sqlx::query(
            "SELECT fingerprint, fails, passes, updated_at FROM finding_streaks
             WHERE tenant_id = $1 AND org_id = $2 ORDER BY fingerprint",
        )
        .bind(scope.tenant_id.0)
        .bind(scope.org_id.0)
        .fetch_all(&mut *tx)
        .await?;
        tx.commit().await?;

        Ok(Some(TenantSnapshot {
            scope,
            facts_version: versions.try_get("facts_version")?,
            evaluated_facts_version: versions.try_get("evaluated_facts_version")?,
            collectors: collectors.iter().map(collector_from_row).collect::<Result<_>>()?,
            facts: facts.iter().map(fact_from_row).collect::<Result<_>>()?,
            findings: findings.iter().map(finding_from_row).collect::<Result<_>>()?,
            streaks: streaks.iter().map(streak_from_row).collect::<Result<_>>()?,
            unknown_rules: to_u32(versions.try_get("unknown_rules")?, "tenants.unknown_rules")?,
        }))
    }

    async fn apply_evaluation(
        &self,
        scope: TenantScope,
        message_id: Option<Uuid>,
        facts_version: i64,
        changes: &EvaluationChanges,
        now: DateTime<Utc>,
    ) -> Result<ApplyOutcome> {
        let now = micros(now);
        let mut tx = self.pool.begin().await?;

        if let Some(message_id) = message_id {
            // A concurrent worker with the same message waits here until the first one finishes.
            let recorded = sqlx::query(
                "INSERT INTO processed_messages (message_id, processed_at) VALUES ($1, $2)
                 ON CONFLICT (message_id) DO NOTHING",
            )
            .bind(message_id)
            .bind(now)
            .execute(&mut *tx)
            .await?;
            if recorded.rows_affected() == 0 {
                tx.rollback().await?;
                return Ok(ApplyOutcome::AlreadyProcessed);
            }
        }

        // Locks the tenant row: an ingest committing meanwhile either happened before (and the
        // version no longer matches) or waits until this evaluation is in.
        let current = sqlx::query(
            "UPDATE tenants SET evaluated_facts_version = $3, unknown_rules = COALESCE($4, unknown_rules)
             WHERE id = $1 AND org_id = $2 AND facts_version = $3",
        )
        .bind(scope.tenant_id.0)
        .bind(scope.org_id.0)
        .bind(facts_version)
        .bind(changes.unknown_rules.map(i64::from))
        .execute(&mut *tx)
        .await?;
        if current.rows_affected() == 0 {
            tx.rollback().await?;
            return Ok(ApplyOutcome::Conflict);
        }

        for change in &changes.findings {
            if !apply_change(&mut tx, scope, change, now, changes.traceparent.as_deref()).await? {
                tx.rollback().await?;
                return Ok(ApplyOutcome::Conflict);
            }
        }
        for change in &changes.streaks {
            if !apply_streak(&mut tx, scope, change, now).await? {
                tx.rollback().await?;
                return Ok(ApplyOutcome::Conflict);
            }
        }
        for (fingerprint, message) in &changes.messages {
            sqlx::query(
                "UPDATE findings SET message = $4 WHERE org_id = $1 AND tenant_id = $2 AND fingerprint = $3",
            )
            .bind(scope.org_id.0)
            .bind(scope.tenant_id.0)
            .bind(fingerprint)
            .bind(Json(message))
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(ApplyOutcome::Applied)
    }

    async fn tenants_with_expired_suppressions(&self, now: DateTime<Utc>) -> Result<Vec<TenantScope>> {
        let rows = sqlx::query(
            "SELECT DISTINCT org_id, tenant_id FROM findings
             WHERE status = 'suppressed' AND suppressed_until <= $1
             ORDER BY org_id, tenant_id",
        )
        .bind(micros(now))
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(TenantScope {
                    org_id: OrgId(row.try_get("org_id")?),
                    tenant_id: TenantId(row.try_get("tenant_id")?),
                })
            })
            .collect()
    }

    async fn tenants_with_silent_collectors(&self, now: DateTime<Utc>) -> Result<Vec<TenantScope>> {
        let rows = sqlx::query(
            "SELECT DISTINCT org_id, tenant_id FROM collectors
             WHERE status = 'active' AND silent_after < $1
             ORDER BY org_id, tenant_id",
        )
        .bind(micros(now))
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(TenantScope {
                    org_id: OrgId(row.try_get("org_id")?),
                    tenant_id: TenantId(row.try_get("tenant_id")?),
                })
            })
            .collect()
    }

    async fn list_findings(&self, org: OrgScope, filter: &FindingFilter) -> Result<Vec<Finding>> {
        let rows = sqlx::query(concat!(
            "SELECT ",
            finding_cols!(),
            " FROM findings
             WHERE org_id = $1
               AND ($2::uuid IS NULL OR tenant_id = $2)
               AND ($3::text IS NULL OR status = $3)
               AND ($4::text IS NULL OR severity = $4)
               AND ($5::text IS NULL OR rule_id = $5)
               AND ($6::uuid IS NULL OR id < $6)
             ORDER BY id DESC
             LIMIT $7"
        ))
        .bind(org.org_id.0)
        .bind(filter.tenant_id.map(|t| t.0))
        .bind(filter.status.map(FindingStatus::as_str))
        .bind(filter.severity.map(Severity::as_str))
        .bind(filter.rule_id.as_deref())
        .bind(filter.before.map(|f| f.0))
        .bind(i64::from(filter.limit))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(finding_from_row).collect()
    }

    async fn get_finding(&self, org: OrgScope, id: FindingId) -> Result<Option<Finding>> {
        let row =
            sqlx::query(concat!("SELECT ", finding_cols!(), " FROM findings WHERE id = $1 AND org_id = $2"))
                .bind(id.0)
                .bind(org.org_id.0)
                .fetch_optional(&self.pool)
                .await?;
        row.as_ref().map(finding_from_row).transpose()
    }

    async fn list_finding_events(&self, org: OrgScope, id: FindingId) -> Result<Vec<FindingEvent>> {
        let rows = sqlx::query(concat!(
            "SELECT ",
            event_cols!(),
            " FROM finding_events WHERE finding_id = $1 AND org_id = $2 ORDER BY at, id"
        ))
        .bind(id.0)
        .bind(org.org_id.0)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(event_from_row).collect()
    }

    async fn act_on_finding(
        &self,
        org: OrgScope,
        id: FindingId,
        expected_version: i64,
        action: &FindingAction,
        actor: &str,
        now: DateTime<Utc>,
    ) -> Result<ActionOutcome> {
        let now = micros(now);
        let mut tx = self.pool.begin().await?;
        let row = sqlx::query(concat!(
            "SELECT ",
            finding_cols!(),
            " FROM findings WHERE id = $1 AND org_id = $2 FOR UPDATE"
        ))
        .bind(id.0)
        .bind(org.org_id.0)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(finding) = row.as_ref().map(finding_from_row).transpose()? else {
            tx.rollback().await?;
            return Ok(ActionOutcome::NotFound);
        };
        if finding.version != expected_version {
            tx.rollback().await?;
            return Ok(ActionOutcome::Changed { current_version: finding.version });
        }
        if let Err(refused) = action.check(finding.status) {
            tx.rollback().await?;
            return Ok(ActionOutcome::Refused(refused));
        }
        let scope = TenantScope { org_id: org.org_id, tenant_id: finding.tenant_id };
        let row = match action {
            FindingAction::Acknowledge { .. } => {
                sqlx::query(concat!(
                    "UPDATE findings SET status = 'acknowledged', acknowledged_at = $3, acknowledged_by = $4,
                                         updated_at = $3, version = version + 1
                     WHERE id = $1 AND org_id = $2 RETURNING ",
                    finding_cols!()
                ))
                .bind(id.0)
                .bind(org.org_id.0)
                .bind(now)
                .bind(actor)
                .fetch_one(&mut *tx)
                .await?
            }
            FindingAction::Suppress { reason, until } => {
                sqlx::query(concat!(
                "UPDATE findings SET status = 'suppressed', suppressed_until = $5, suppression_reason = $6,
                                         suppressed_by = $4, updated_at = $3, version = version + 1
                     WHERE id = $1 AND org_id = $2 RETURNING ",
                finding_cols!()
            ))
                .bind(id.0)
                .bind(org.org_id.0)
                .bind(now)
                .bind(actor)
                .bind(micros(*until))
                .bind(reason)
                .fetch_one(&mut *tx)
                .await?
            }
            FindingAction::Unsuppress => {
                sqlx::query(concat!(
                    "UPDATE findings SET status = 'open', suppressed_until = NULL, suppression_reason = NULL,
                                         suppressed_by = NULL, acknowledged_at = NULL, acknowledged_by = NULL,
                                         updated_at = $3, version = version + 1
                     WHERE id = $1 AND org_id = $2 RETURNING ",
                    finding_cols!()
                ))
                .bind(id.0)
                .bind(org.org_id.0)
                .bind(now)
                .fetch_one(&mut *tx)
                .await?
            }
        };
        let (note, until) = match action {
            FindingAction::Acknowledge { note } => (note.as_deref(), None),
            FindingAction::Suppress { reason, until } => (Some(reason.as_str()), Some(micros(*until))),
            FindingAction::Unsuppress => (None, None),
        };
        let updated = finding_from_row(&row)?;
        let event = NewEvent {
            kind: action.event_kind(),
            actor,
            severity: updated.severity,
            summary: &updated.summary,
            note,
            suppressed_until: until,
            traceparent: None,
        };
        insert_event(&mut tx, scope, id.0, &event, now).await?;
        tx.commit().await?;
        Ok(ActionOutcome::Applied(Box::new(updated)))
    }

    async fn request_retest(
        &self,
        scope: TenantScope,
        finding: FindingId,
        commands: &[CommandWrite],
        actor: &str,
        note: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<Vec<CollectorCommandRecord>>> {
        let now = micros(now);
        let mut tx = self.pool.begin().await?;
        let current = sqlx::query(
            "SELECT severity, summary FROM findings WHERE id = $1 AND org_id = $2 AND tenant_id = $3
             FOR SHARE",
        )
        .bind(finding.0)
        .bind(scope.org_id.0)
        .bind(scope.tenant_id.0)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(current) = current else {
            tx.rollback().await?;
            return Ok(None);
        };
        let mut stored = Vec::with_capacity(commands.len());
        for command in commands {
            let waiting = sqlx::query(concat!(
                "SELECT ",
                command_cols!(),
                " FROM collector_commands
                 WHERE collector_id = $1 AND org_id = $2 AND tenant_id = $3 AND delivered_batch_id IS NULL
                   AND action = $4
                 ORDER BY created_at, id LIMIT 1"
            ))
            .bind(command.collector_id.0)
            .bind(scope.org_id.0)
            .bind(scope.tenant_id.0)
            .bind(&command.action)
            .fetch_optional(&mut *tx)
            .await?;
            let row = match waiting {
                Some(row) => row,
                None => {
                    sqlx::query(concat!(
                    "INSERT INTO collector_commands (id, org_id, tenant_id, collector_id, finding_id, action,
                                                         requested_by, created_at)
                         VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING ",
                    command_cols!()
                ))
                    .bind(Uuid::now_v7())
                    .bind(scope.org_id.0)
                    .bind(scope.tenant_id.0)
                    .bind(command.collector_id.0)
                    .bind(finding.0)
                    .bind(&command.action)
                    .bind(actor)
                    .bind(now)
                    .fetch_one(&mut *tx)
                    .await?
                }
            };
            stored.push(command_from_row(&row)?);
        }
        let severity: String = current.try_get("severity")?;
        let summary: String = current.try_get("summary")?;
        let event = NewEvent {
            kind: FindingEventKind::RetestRequested,
            actor,
            severity: parse_enum(&severity, "findings.severity")?,
            summary: &summary,
            note: Some(note),
            suppressed_until: None,
            traceparent: None,
        };
        insert_event(&mut tx, scope, finding.0, &event, now).await?;
        tx.commit().await?;
        Ok(Some(stored))
    }

    async fn deliver_collector_commands(
        &self,
        scope: TenantScope,
        collector: CollectorId,
        batch_id: Uuid,
        now: DateTime<Utc>,
    ) -> Result<Vec<CollectorCommandRecord>> {
        // One statement: claim what waits, and add what an earlier attempt of this batch claimed
        // (the second SELECT sees the table as it was before the UPDATE, so nothing twice).
        let rows = sqlx::query(concat!(
            "WITH claimed AS (
                 UPDATE collector_commands SET delivered_batch_id = $4, delivered_at = $5
                 WHERE collector_id = $1 AND org_id = $2 AND tenant_id = $3 AND delivered_batch_id IS NULL
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
        .bind(micros(now))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(command_from_row).collect()
    }

    async fn list_rule_settings(
        &self,
        org: OrgScope,
        tenant: Option<TenantId>,
    ) -> Result<Vec<StoredRuleSetting>> {
        let rows = sqlx::query(
            "SELECT tenant_id, rule_id, settings, updated_at, updated_by FROM rule_settings
             WHERE org_id = $1 AND (tenant_id IS NULL OR tenant_id = $2)
             ORDER BY scope_key <> 'org', rule_id",
        )
        .bind(org.org_id.0)
        .bind(tenant.map(|t| t.0))
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(StoredRuleSetting {
                    tenant_id: row.try_get::<Option<Uuid>, _>("tenant_id")?.map(TenantId),
                    rule_id: row.try_get("rule_id")?,
                    settings: row.try_get::<serde_json::Value, _>("settings")?,
                    updated_at: row.try_get("updated_at")?,
                    updated_by: row.try_get("updated_by")?,
                })
            })
            .collect()
    }

    async fn list_custom_rules(
        &self,
        org: OrgScope,
        tenant: Option<TenantId>,
    ) -> Result<Vec<StoredCustomRule>> {
        let rows = sqlx::query(
            "SELECT tenant_id, rule_id, definition, created_at, updated_at, updated_by FROM custom_rules
             WHERE org_id = $1 AND (tenant_id IS NULL OR tenant_id = $2)
             ORDER BY scope_key <> 'org', rule_id",
        )
        .bind(org.org_id.0)
        .bind(tenant.map(|t| t.0))
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(StoredCustomRule {
                    tenant_id: row.try_get::<Option<Uuid>, _>("tenant_id")?.map(TenantId),
                    rule_id: row.try_get("rule_id")?,
                    definition: row.try_get::<serde_json::Value, _>("definition")?,
                    created_at: row.try_get("created_at")?,
                    updated_at: row.try_get("updated_at")?,
                    updated_by: row.try_get("updated_by")?,
                })
            })
            .collect()
    }

    async fn write_rule_config(
        &self,
        org: OrgScope,
        scope: RuleScope,
        kind: RuleConfigKind,
        rule_id: &str,
        document: Option<&serde_json::Value>,
        actor: &str,
        now: DateTime<Utc>,
    ) -> Result<RuleConfigWrite> {
        let now = micros(now);
        let mut tx = self.pool.begin().await?;
        let tenants: Vec<Uuid> = match scope {
            RuleScope::Tenant(t) => {
                let found: Option<Uuid> =
                    sqlx::query_scalar("SELECT id FROM tenants WHERE id = $1 AND org_id = $2")
                        .bind(t.0)
                        .bind(org.org_id.0)
                        .fetch_optional(&mut *tx)
                        .await?;
                match found {
                    Some(id) => vec![id],
                    None => return Ok(RuleConfigWrite::NoSuchTenant),
                }
            }
            RuleScope::Org => {
                sqlx::query_scalar("SELECT id FROM tenants WHERE org_id = $1")
                    .bind(org.org_id.0)
                    .fetch_all(&mut *tx)
                    .await?
            }
        };
        let key = scope.key();
        let select = match kind {
            RuleConfigKind::Setting => {
                "SELECT settings AS document FROM rule_settings WHERE org_id = $1 AND scope_key = $2 AND rule_id = $3"
            }
            RuleConfigKind::Custom => {
                "SELECT definition AS document FROM custom_rules WHERE org_id = $1 AND scope_key = $2 AND rule_id = $3"
            }
        };
        let before =
            sqlx::query(select).bind(org.org_id.0).bind(&key).bind(rule_id).fetch_optional(&mut *tx).await?;
        let before = match &before {
            Some(row) => Some(row.try_get::<serde_json::Value, _>("document")?),
            None => None,
        };
        match (document, &before) {
            (None, None) => return Ok(RuleConfigWrite::Written { before: None }),
            (Some(doc), _) => {
                let upsert = match kind {
                    RuleConfigKind::Setting => {
                        "INSERT INTO rule_settings (org_id, tenant_id, scope_key, rule_id, settings, updated_at, updated_by)
                         VALUES ($1, $2, $3, $4, $5, $6, $7)
                         ON CONFLICT (org_id, scope_key, rule_id) DO UPDATE
                         SET settings = excluded.settings, updated_at = excluded.updated_at, updated_by = excluded.updated_by"
                    }
                    RuleConfigKind::Custom => {
                        "INSERT INTO custom_rules (org_id, tenant_id, scope_key, rule_id, definition, created_at, updated_at, updated_by)
                         VALUES ($1, $2, $3, $4, $5, $6, $6, $7)
                         ON CONFLICT (org_id, scope_key, rule_id) DO UPDATE
                         SET definition = excluded.definition, updated_at = excluded.updated_at, updated_by = excluded.updated_by"
                    }
                };
                sqlx::query(upsert)
                    .bind(org.org_id.0)
                    .bind(scope.tenant_id().map(|t| t.0))
                    .bind(&key)
                    .bind(rule_id)
                    .bind(Json(doc))
                    .bind(now)
                    .bind(actor)
                    .execute(&mut *tx)
                    .await?;
            }
            (None, Some(_)) => {
                let delete = match kind {
                    RuleConfigKind::Setting => {
                        "DELETE FROM rule_settings WHERE org_id = $1 AND scope_key = $2 AND rule_id = $3"
                    }
                    RuleConfigKind::Custom => {
                        "DELETE FROM custom_rules WHERE org_id = $1 AND scope_key = $2 AND rule_id = $3"
                    }
                };
                sqlx::query(delete).bind(org.org_id.0).bind(&key).bind(rule_id).execute(&mut *tx).await?;
            }
        }
        let action = format!("{}.{}", kind.audit_prefix(), if document.is_some() { "put" } else { "delete" });
        sqlx::query(
            "INSERT INTO audit_log (id, org_id, tenant_id, actor, action, target, before, after, at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        )
        .bind(Uuid::now_v7())
        .bind(org.org_id.0)
        .bind(scope.tenant_id().map(|t| t.0))
        .bind(actor)
        .bind(action)
        .bind(rule_id)
        .bind(before.as_ref().map(Json))
        .bind(document.map(Json))
        .bind(now)
        .execute(&mut *tx)
        .await?;
        // A deleted custom rule evaluates nothing any more: its findings resolve now, attributed to
        // whoever deleted it — unless the same rule id is still configured at the other level.
        if kind == RuleConfigKind::Custom && document.is_none() {
            for &tenant in &tenants {
                let still: Option<String> = sqlx::query_scalar(
                    "SELECT rule_id FROM custom_rules WHERE org_id = $1 AND rule_id = $2
                     AND (scope_key = 'org' OR tenant_id = $3) LIMIT 1",
                )
                .bind(org.org_id.0)
                .bind(rule_id)
                .bind(tenant)
                .fetch_optional(&mut *tx)
                .await?;
                if still.is_some() {
                    continue;
                }
                let summary = format!("The custom rule {rule_id} was deleted.");
                let resolved = sqlx::query(
                    "UPDATE findings
                     SET status = 'resolved', summary = $4, resolved_at = $5, updated_at = $5,
                         acknowledged_at = NULL, acknowledged_by = NULL, suppressed_until = NULL,
                         suppression_reason = NULL, suppressed_by = NULL, version = version + 1
                     WHERE org_id = $1 AND tenant_id = $2 AND rule_id = $3 AND status <> 'resolved'
                     RETURNING id, severity",
                )
                .bind(org.org_id.0)
                .bind(tenant)
                .bind(rule_id)
                .bind(&summary)
                .bind(now)
                .fetch_all(&mut *tx)
                .await?;
                let scope = TenantScope { org_id: org.org_id, tenant_id: TenantId(tenant) };
                for row in resolved {
                    let severity: String = row.try_get("severity")?;
                    let event = NewEvent {
                        kind: FindingEventKind::Resolved,
                        actor,
                        severity: parse_enum(&severity, "findings.severity")?,
                        summary: &summary,
                        note: None,
                        suppressed_until: None,
                        traceparent: None,
                    };
                    insert_event(&mut tx, scope, row.try_get("id")?, &event, now).await?;
                }
            }
        }
        // The affected tenants are evaluated again under the new configuration: the version bump
        // keeps the worker from skipping them as already evaluated.
        for tenant in tenants {
            sqlx::query("UPDATE tenants SET facts_version = facts_version + 1 WHERE id = $1")
                .bind(tenant)
                .execute(&mut *tx)
                .await?;
            sqlx::query(
                "INSERT INTO outbox (id, org_id, tenant_id, kind, traceparent, created_at, lease_until, attempts)
                 VALUES ($1, $2, $3, $4, NULL, $5, NULL, 0)",
            )
            .bind(Uuid::now_v7())
            .bind(org.org_id.0)
            .bind(tenant)
            .bind(Json(&MessageKind::RulesChanged))
            .bind(now)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(RuleConfigWrite::Written { before })
    }

    async fn list_audit_log(
        &self,
        org: OrgScope,
        before: Option<Uuid>,
        limit: u32,
    ) -> Result<Vec<AuditEntry>> {
        let rows = sqlx::query(
            "SELECT id, tenant_id, actor, action, target, before, after, at FROM audit_log
             WHERE org_id = $1 AND ($2::uuid IS NULL OR id < $2) ORDER BY id DESC LIMIT $3",
        )
        .bind(org.org_id.0)
        .bind(before)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(AuditEntry {
                    id: row.try_get("id")?,
                    tenant_id: row.try_get::<Option<Uuid>, _>("tenant_id")?.map(TenantId),
                    actor: row.try_get("actor")?,
                    action: row.try_get("action")?,
                    target: row.try_get("target")?,
                    before: row.try_get::<Option<serde_json::Value>, _>("before")?,
                    after: row.try_get::<Option<serde_json::Value>, _>("after")?,
                    at: row.try_get("at")?,
                })
            })
            .collect()
    }
}

// ---- the dialect: what `sql/` takes from this backend --------------------------------------------

type Db = Postgres;
type BackendStore = PgStore;

/// Writers lock the rows they change as they go, so a write transaction begins plainly.
const BEGIN_WRITE: &str = "BEGIN";

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

#[path = "sql/mod.rs"]
#[allow(clippy::duplicate_mod, reason = "compiled once per backend, by design: see sql/mod.rs")]
mod sql;
