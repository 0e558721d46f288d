//! Evaluation: the consistent snapshot of a tenant the rules read, and applying what they
//! concluded, all or nothing, guarded by `facts_version` and each finding's version and streak;
//! and the sweeps that find tenants to evaluate although nothing was pushed.

use super::prelude::*;

/// The tenant's snapshot: its versions, collectors, latest facts, findings, streaks and probe
/// versions, all as of one moment, so the facts version matches the facts and findings read.
/// On PostgreSQL one statement reads them all (no transaction's two extra round trips); on
/// SQLite a read transaction of six does (see `SNAPSHOT_IN_ONE_STATEMENT`).
pub(super) async fn load_tenant_snapshot(
    pool: &DbPool,
    scope: TenantScope,
    known_digests: &[&str],
) -> Result<Option<TenantSnapshot>> {
    if dialect::SNAPSHOT_IN_ONE_STATEMENT {
        snapshot_in_one_statement(pool, scope, known_digests).await
    } else {
        snapshot_in_a_transaction(pool, scope, known_digests).await
    }
}

async fn snapshot_in_one_statement(
    pool: &DbPool,
    scope: TenantScope,
    known_digests: &[&str],
) -> Result<Option<TenantSnapshot>> {
    // One statement reads one snapshot of the database.
    let fetched = sqlx::query(snapshot_sql())
        .bind(scope.tenant_id.0)
        .bind(scope.org_id.0)
        .bind(dialect::text_list(known_digests))
        .fetch_all(pool.read())
        .await?;
    let mut versions = None;
    let (mut collectors, mut facts, mut findings, mut streaks) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let mut probe_versions = std::collections::BTreeMap::new();
    for row in &fetched {
        match row.try_get::<&str, _>("kind")? {
            "tenant" => versions = Some(row),
            "collector" => collectors.push(rows::collector_with_version(row, "collector_version")?),
            "fact" => facts.push(rows::snapshot_fact(row)?),
            "finding" => findings.push(rows::finding(row)?),
            "streak" => streaks.push(rows::streak(row)?),
            "probe" => {
                probe_versions
                    .insert(row.try_get::<String, _>("probe")?, row.try_get::<i64, _>("facts_version")?);
            }
            other => return Err(StoreError::Corrupt(format!("tenant snapshot: unknown row kind {other}"))),
        }
    }
    let Some(versions) = versions else { return Ok(None) };
    // The order both backends give, whatever the text collation.
    collectors.sort_by_key(|c| (c.created_at, c.id.0));
    facts.sort_by(|a, b| {
        (a.collector_id.0, &a.probe, &a.subject).cmp(&(b.collector_id.0, &b.probe, &b.subject))
    });
    findings.sort_by_key(|f| f.id.0);
    streaks.sort_by(|a, b| a.fingerprint.cmp(&b.fingerprint));
    Ok(Some(TenantSnapshot {
        scope,
        facts_version: versions.try_get("facts_version")?,
        evaluated_facts_version: versions.try_get("evaluated_facts_version")?,
        rules_version: versions.try_get("rules_version")?,
        collectors,
        facts,
        findings,
        streaks,
        unknown_rules: to_u32(versions.try_get("unknown_rules")?, "tenants.unknown_rules")?,
        probe_versions,
    }))
}

async fn snapshot_in_a_transaction(
    pool: &DbPool,
    scope: TenantScope,
    known_digests: &[&str],
) -> Result<Option<TenantSnapshot>> {
    // One snapshot for all the reads, so facts_version matches the facts and findings read.
    let mut tx = read_snapshot(pool).await?;
    let versions = sqlx::query(
        "SELECT facts_version, evaluated_facts_version, unknown_rules, rules_version FROM tenants
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
    let of_tenant = |sql: &'static str| sqlx::query(sql).bind(scope.tenant_id.0).bind(scope.org_id.0);
    let collectors = of_tenant(concat!(
        "SELECT ",
        collector_cols!(),
        " FROM collectors WHERE tenant_id = $1 AND org_id = $2 ORDER BY created_at, id"
    ))
    .fetch_all(&mut *tx)
    .await?;
    // A payload the reader holds the output of (by digest) is not sent: only its timings are
    // (see `SnapshotPayload`). A fact without timings is always sent, whole.
    let facts = of_tenant(concat!(
        "SELECT collector_id, probe, subject, observed_at, digest, timings,
                CASE WHEN timings IS NOT NULL AND ",
        in_list!("digest", "$3"),
        " THEN NULL ELSE payload END AS payload
         FROM facts WHERE tenant_id = $1 AND org_id = $2 ORDER BY collector_id, probe, subject"
    ))
    .bind(dialect::text_list(known_digests))
    .fetch_all(&mut *tx)
    .await?;
    let findings = of_tenant(concat!(
        "SELECT ",
        finding_cols!(),
        " FROM findings WHERE tenant_id = $1 AND org_id = $2 ORDER BY id"
    ))
    .fetch_all(&mut *tx)
    .await?;
    let streaks = of_tenant(
        "SELECT fingerprint, fails, passes, updated_at FROM finding_streaks
         WHERE tenant_id = $1 AND org_id = $2 ORDER BY fingerprint",
    )
    .fetch_all(&mut *tx)
    .await?;
    let probe_versions =
        of_tenant("SELECT probe, facts_version FROM probe_versions WHERE tenant_id = $1 AND org_id = $2")
            .fetch_all(&mut *tx)
            .await?;
    // Ended by dropping it: a read-only snapshot ends the same by rollback as by commit, and
    // sqlx sends the rollback with the connection's check as it returns to the pool, a round
    // trip fewer than a commit.
    drop(tx);

    Ok(Some(TenantSnapshot {
        scope,
        facts_version: versions.try_get("facts_version")?,
        evaluated_facts_version: versions.try_get("evaluated_facts_version")?,
        rules_version: versions.try_get("rules_version")?,
        collectors: collectors.iter().map(rows::collector).collect::<Result<_>>()?,
        facts: facts.iter().map(rows::snapshot_fact).collect::<Result<_>>()?,
        findings: findings.iter().map(rows::finding).collect::<Result<_>>()?,
        streaks: streaks.iter().map(rows::streak).collect::<Result<_>>()?,
        unknown_rules: to_u32(versions.try_get("unknown_rules")?, "tenants.unknown_rules")?,
        probe_versions: probe_versions
            .iter()
            .map(|row| Ok((row.try_get::<String, _>("probe")?, row.try_get::<i64, _>("facts_version")?)))
            .collect::<Result<_>>()?,
    }))
}

/// The columns of the snapshot's rows, and the type a branch that has no such column casts its
/// NULL to (PostgreSQL types a `UNION`'s columns pair by pair, and two untyped NULLs make text).
const SNAPSHOT_COLUMNS: &[(&str, &str)] = &[
    ("kind", "text"),
    // the tenant
    ("facts_version", "bigint"),
    ("evaluated_facts_version", "bigint"),
    ("unknown_rules", "bigint"),
    ("rules_version", "bigint"),
    // a collector (and a finding: id, org_id, tenant_id, status)
    ("id", "uuid"),
    ("org_id", "uuid"),
    ("tenant_id", "uuid"),
    ("name", "text"),
    ("status", "text"),
    ("enrollment_expires_at", "timestamptz"),
    ("public_key", "bytea"),
    ("hostname", "text"),
    ("collector_version", "text"),
    ("os", "text"),
    ("push_interval_secs", "bigint"),
    ("enrolled_at", "timestamptz"),
    ("last_seen_at", "timestamptz"),
    ("silent_after", "timestamptz"),
    ("spool_dropped", "bigint"),
    ("created_at", "timestamptz"),
    ("revoked_at", "timestamptz"),
    // a latest fact (and a finding: collector_id, subject; a probe version: probe)
    ("collector_id", "uuid"),
    ("probe", "text"),
    ("subject", "text"),
    ("observed_at", "timestamptz"),
    ("digest", "text"),
    ("timings", "text"),
    ("payload", "jsonb"),
    // a finding (and a streak: fingerprint, updated_at)
    ("fingerprint", "text"),
    ("rule_id", "text"),
    ("severity", "text"),
    ("title", "text"),
    ("summary", "text"),
    ("evidence", "jsonb"),
    ("opened_at", "timestamptz"),
    ("updated_at", "timestamptz"),
    ("resolved_at", "timestamptz"),
    ("reopen_count", "bigint"),
    ("version", "bigint"),
    ("acknowledged_at", "timestamptz"),
    ("acknowledged_by", "text"),
    ("suppressed_until", "timestamptz"),
    ("suppression_reason", "text"),
    ("suppressed_by", "text"),
    ("message", "jsonb"),
    ("root_finding_id", "uuid"),
    ("announced", "boolean"),
    // a streak
    ("fails", "bigint"),
    ("passes", "bigint"),
];

/// One `SELECT` per kind of row: its kind, the table and condition, and the columns it fills
/// (`column` or `column = expression`). `$1` is the tenant, `$2` its organisation, `$3` the
/// digests whose payloads the reader holds (see `SnapshotPayload`: a fact without timings is
/// always sent whole).
const SNAPSHOT_BRANCHES: &[(&str, &str, &[&str])] = &[
    (
        "tenant",
        "tenants WHERE id = $1 AND org_id = $2",
        &["facts_version", "evaluated_facts_version", "unknown_rules", "rules_version"],
    ),
    (
        "collector",
        "collectors WHERE tenant_id = $1 AND org_id = $2",
        &[
            "id",
            "org_id",
            "tenant_id",
            "name",
            "status",
            "enrollment_expires_at",
            "public_key",
            "hostname",
            "collector_version = version",
            "os",
            "push_interval_secs",
            "enrolled_at",
            "last_seen_at",
            "silent_after",
            "spool_dropped",
            "created_at",
            "revoked_at",
        ],
    ),
    (
        "fact",
        "facts WHERE tenant_id = $1 AND org_id = $2",
        &[
            "collector_id",
            "probe",
            "subject",
            "observed_at",
            "digest",
            "timings",
            concat!(
                "payload = CASE WHEN timings IS NOT NULL AND ",
                in_list!("digest", "$3"),
                " THEN NULL ELSE payload END"
            ),
        ],
    ),
    (
        "finding",
        "findings WHERE tenant_id = $1 AND org_id = $2",
        &[
            "id",
            "org_id",
            "tenant_id",
            "fingerprint",
            "rule_id",
            "subject",
            "severity",
            "status",
            "title",
            "summary",
            "evidence",
            "opened_at",
            "updated_at",
            "resolved_at",
            "reopen_count",
            "version",
            "collector_id",
            "acknowledged_at",
            "acknowledged_by",
            "suppressed_until",
            "suppression_reason",
            "suppressed_by",
            "message",
            "root_finding_id",
            "announced",
        ],
    ),
    (
        "streak",
        "finding_streaks WHERE tenant_id = $1 AND org_id = $2",
        &["fingerprint", "fails", "passes", "updated_at"],
    ),
    ("probe", "probe_versions WHERE tenant_id = $1 AND org_id = $2", &["probe", "facts_version"]),
];

/// The tenant snapshot's statement: a `UNION ALL` of [`SNAPSHOT_BRANCHES`], each naming every
/// column of [`SNAPSHOT_COLUMNS`] (NULL where it has none), so that the row decoders find their
/// columns by name.
fn snapshot_sql() -> &'static str {
    static SQL: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    SQL.get_or_init(|| {
        let branches: Vec<String> = SNAPSHOT_BRANCHES
            .iter()
            .map(|(kind, from, filled)| {
                let columns: Vec<String> = SNAPSHOT_COLUMNS
                    .iter()
                    .map(|(column, ty)| {
                        if *column == "kind" {
                            return format!("CAST('{kind}' AS text) AS kind");
                        }
                        let expression = filled.iter().find_map(|filled| match filled.split_once(" = ") {
                            Some((name, expression)) if name == *column => Some(expression.to_owned()),
                            None if filled == column => Some((*column).to_owned()),
                            _ => None,
                        });
                        match expression {
                            Some(expression) => format!("{expression} AS {column}"),
                            None => format!("CAST(NULL AS {ty}) AS {column}"),
                        }
                    })
                    .collect();
                format!("SELECT {} FROM {from}", columns.join(", "))
            })
            .collect();
        branches.join("\nUNION ALL\n")
    })
}

pub(super) async fn apply_evaluation(
    pool: &DbPool,
    scope: TenantScope,
    message_id: Option<Uuid>,
    facts_version: i64,
    changes: &EvaluationChanges,
    now: DateTime<Utc>,
) -> Result<ApplyOutcome> {
    let now = micros(now);
    if changes.findings.is_empty()
        && changes.groups.is_empty()
        && changes.streaks.is_empty()
        && let Some(start) =
            dialect::apply_alone(pool, scope, message_id, facts_version, changes.unknown_rules, now).await?
    {
        // Nothing but the tenant's evaluated version (and the message) to write: one statement,
        // committed on its own, on PostgreSQL.
        return Ok(match start {
            ApplyStart::Current => ApplyOutcome::Applied,
            ApplyStart::AlreadyProcessed => ApplyOutcome::AlreadyProcessed,
            ApplyStart::Moved => ApplyOutcome::Conflict,
        });
    }
    let (mut tx, _turn) = evaluation_write_tx(pool).await?;

    // The tenant's evaluated version moves and the message is recorded as processed, only if
    // the facts are still those read and the message is new. The tenant row stays locked
    // (PostgreSQL): an ingest committing meanwhile either happened before (and the version no
    // longer matches) or waits until this evaluation is in, and a concurrent worker with the
    // same message waits, then finds it recorded. One statement on PostgreSQL.
    match dialect::begin_apply(&mut tx, scope, message_id, facts_version, changes.unknown_rules, now).await? {
        ApplyStart::Current => {}
        ApplyStart::AlreadyProcessed => {
            tx.rollback().await?;
            return Ok(ApplyOutcome::AlreadyProcessed);
        }
        ApplyStart::Moved => {
            tx.rollback().await?;
            return Ok(ApplyOutcome::Conflict);
        }
    }

    // Whether a finding that (re)opens is announced on its own depends on its root cause. With
    // no grouping in this evaluation its root stays as it is, and the change itself sets it (an
    // opened finding has none: the column's default holds); otherwise it is set once the
    // grouping is applied.
    let announce_in_change = changes.groups.is_empty();
    // Events are written after the grouping, so that each says whether its finding stands alone.
    let mut events = Vec::with_capacity(changes.findings.len());
    for change in &changes.findings {
        match apply_change(&mut tx, scope, change, announce_in_change, now).await? {
            Some(event) => events.push(event),
            None => {
                tx.rollback().await?;
                return Ok(ApplyOutcome::Conflict);
            }
        }
    }
    for group in &changes.groups {
        if let Some(promoted) = apply_group(&mut tx, scope, group).await? {
            events.push(promoted);
        }
    }
    for (finding_id, kind, severity, summary) in &events {
        if !announce_in_change
            && matches!(
                kind,
                FindingEventKind::Opened | FindingEventKind::Reopened | FindingEventKind::SuppressionExpired
            )
        {
            // Announced on its own unless it (re)opens under a root cause.
            sqlx::query("UPDATE findings SET announced = (root_finding_id IS NULL) WHERE id = $1")
                .bind(finding_id)
                .execute(&mut *tx)
                .await?;
        }
        let event = NewEvent {
            kind: *kind,
            actor: "system",
            severity: *severity,
            summary,
            note: None,
            suppressed_until: None,
            traceparent: changes.traceparent.as_deref(),
        };
        insert_event(&mut tx, scope, *finding_id, &event, now).await?;
    }
    for change in &changes.streaks {
        if !apply_streak(&mut tx, scope, change, now).await? {
            tx.rollback().await?;
            return Ok(ApplyOutcome::Conflict);
        }
    }
    tx.commit().await?;
    Ok(ApplyOutcome::Applied)
}

/// The event a change makes, written once the evaluation's grouping is applied.
type PendingEvent<'a> = (Uuid, FindingEventKind, Severity, &'a str);

/// Applies one change inside the evaluation transaction, with its message, and returns the event
/// it makes; `None` means a guard failed (the finding moved since the snapshot, or an `Open`
/// found the fingerprint taken). With `announce`, a finding that reopens is marked announced on
/// its own unless it has a root cause (see [`apply_evaluation`]).
async fn apply_change<'a>(
    tx: &mut Tx,
    scope: TenantScope,
    change: &'a FindingChange,
    announce: bool,
    now: DateTime<Utc>,
) -> Result<Option<PendingEvent<'a>>> {
    let event: PendingEvent<'a> = match change {
        FindingChange::Open {
            fingerprint,
            rule_id,
            subject,
            collector_id,
            severity,
            title,
            summary,
            evidence,
            message,
        } => {
            let id = FindingId::new();
            let inserted = sqlx::query(
                "INSERT INTO findings (id, org_id, tenant_id, fingerprint, rule_id, subject, severity, status,
                                       title, summary, evidence, opened_at, updated_at, resolved_at,
                                       reopen_count, version, collector_id, message)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, 'open', $8, $9, $10, $11, $11, NULL, 0, 1, $12, $13)
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
            .bind(message.as_ref().map(Json))
            .execute(&mut **tx)
            .await?;
            if inserted.rows_affected() == 0 {
                return Ok(None);
            }
            (id.0, FindingEventKind::Opened, *severity, summary.as_str())
        }
        // These three bind the same values; they differ in the status they expect and in what
        // else they reset.
        FindingChange::Reopen { id, expected_version, severity, summary, evidence, message }
        | FindingChange::Reannounce { id, expected_version, severity, summary, evidence, message }
        | FindingChange::Update { id, expected_version, severity, summary, evidence, message } => {
            let (sql, kind) = match change {
                FindingChange::Reopen { .. } => (
                    "UPDATE findings
                     SET status = 'open', severity = $5, summary = $6, evidence = $7, updated_at = $8,
                         resolved_at = NULL, reopen_count = reopen_count + 1, version = version + 1,
                         message = COALESCE($9, message),
                         announced = CASE WHEN $10 THEN root_finding_id IS NULL ELSE announced END
                     WHERE id = $1 AND org_id = $2 AND tenant_id = $3 AND version = $4 AND status = 'resolved'",
                    FindingEventKind::Reopened,
                ),
                FindingChange::Reannounce { .. } => (
                    "UPDATE findings
                     SET status = 'open', severity = $5, summary = $6, evidence = $7, updated_at = $8,
                         suppressed_until = NULL, suppression_reason = NULL, suppressed_by = NULL,
                         acknowledged_at = NULL, acknowledged_by = NULL, version = version + 1,
                         message = COALESCE($9, message),
                         announced = CASE WHEN $10 THEN root_finding_id IS NULL ELSE announced END
                     WHERE id = $1 AND org_id = $2 AND tenant_id = $3 AND version = $4 AND status = 'suppressed'",
                    FindingEventKind::SuppressionExpired,
                ),
                _ => (
                    "UPDATE findings
                     SET severity = $5, summary = $6, evidence = $7, updated_at = $8, version = version + 1,
                         message = COALESCE($9, message)
                     WHERE id = $1 AND org_id = $2 AND tenant_id = $3 AND version = $4 AND status <> 'resolved'",
                    FindingEventKind::Updated,
                ),
            };
            let query = sqlx::query(sql)
                .bind(id.0)
                .bind(scope.org_id.0)
                .bind(scope.tenant_id.0)
                .bind(expected_version)
                .bind(severity.as_str())
                .bind(summary)
                .bind(evidence)
                .bind(now)
                .bind(message.as_ref().map(Json));
            // An update leaves the finding's announcement alone: it does not (re)open.
            let query = if kind == FindingEventKind::Updated { query } else { query.bind(announce) };
            let updated = query.execute(&mut **tx).await?;
            if updated.rows_affected() == 0 {
                return Ok(None);
            }
            (id.0, kind, *severity, summary.as_str())
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
            let Some(severity) = severity else { return Ok(None) };
            (id.0, FindingEventKind::Resolved, parse_enum(&severity, "findings.severity")?, summary.as_str())
        }
    };
    Ok(Some(event))
}

/// Groups an active finding under its root cause (or lets it stand alone). A finding that had
/// not been announced and loses its root while open or acknowledged is announced now: returns
/// that event.
async fn apply_group<'a>(
    tx: &mut Tx,
    scope: TenantScope,
    group: &'a GroupChange,
) -> Result<Option<PendingEvent<'a>>> {
    let row = sqlx::query(
        "UPDATE findings
         SET root_finding_id = (SELECT r.id FROM findings r
                                WHERE r.tenant_id = $3 AND r.org_id = $2 AND r.fingerprint = $4)
         WHERE org_id = $2 AND tenant_id = $3 AND fingerprint = $1
         RETURNING id, status, severity, announced, root_finding_id",
    )
    .bind(&group.fingerprint)
    .bind(scope.org_id.0)
    .bind(scope.tenant_id.0)
    .bind(group.root_fingerprint.as_deref())
    .fetch_optional(&mut **tx)
    .await?;
    let Some(row) = row else { return Ok(None) };
    let id: Uuid = row.try_get("id")?;
    let status: FindingStatus = parse_enum(row.try_get("status")?, "findings.status")?;
    let announced: bool = row.try_get("announced")?;
    let root: Option<Uuid> = row.try_get("root_finding_id")?;
    if root.is_some() || announced || !status.is_active() {
        return Ok(None);
    }
    sqlx::query("UPDATE findings SET announced = TRUE WHERE id = $1").bind(id).execute(&mut **tx).await?;
    if status == FindingStatus::Suppressed {
        // Accepted for now: announced when its suppression runs out, if it still fails.
        return Ok(None);
    }
    let severity = parse_enum(row.try_get("severity")?, "findings.severity")?;
    Ok(Some((
        id,
        FindingEventKind::RootCauseResolved,
        severity,
        "Its root cause was resolved, but this still fails: it needs fixing on its own.",
    )))
}

/// Applies one streak change; `false` means the streak is no longer what the snapshot held.
async fn apply_streak(
    tx: &mut Tx,
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

pub(super) async fn tenants_with_silent_collectors(
    pool: &DbPool,
    now: DateTime<Utc>,
) -> Result<Vec<TenantScope>> {
    let rows = sqlx::query(
        "SELECT DISTINCT org_id, tenant_id FROM collectors
         WHERE status = 'active' AND silent_after < $1
         ORDER BY org_id, tenant_id",
    )
    .bind(micros(now))
    .fetch_all(pool.read())
    .await?;
    rows.iter().map(rows::tenant_scope).collect()
}

pub(super) async fn tenants_with_expired_suppressions(
    pool: &DbPool,
    now: DateTime<Utc>,
) -> Result<Vec<TenantScope>> {
    let rows = sqlx::query(
        "SELECT DISTINCT org_id, tenant_id FROM findings
         WHERE status = 'suppressed' AND suppressed_until <= $1
         ORDER BY org_id, tenant_id",
    )
    .bind(micros(now))
    .fetch_all(pool.read())
    .await?;
    rows.iter().map(rows::tenant_scope).collect()
}
