//! Findings as people see and act on them: listing, events, acknowledge/suppress/unsuppress,
//! "re-test now" and the collector commands it stores; and the one way every finding event is
//! written (`insert_event`).

use super::prelude::*;

/// An event row to write.
pub(super) struct NewEvent<'a> {
    pub(super) kind: FindingEventKind,
    pub(super) actor: &'a str,
    pub(super) severity: Severity,
    pub(super) summary: &'a str,
    pub(super) note: Option<&'a str>,
    pub(super) suppressed_until: Option<DateTime<Utc>>,
    /// The trace the change happened in (an evaluation's, continued from the ingest), carried
    /// on to the deliveries the event makes.
    pub(super) traceparent: Option<&'a str>,
}

impl<'a> NewEvent<'a> {
    /// A change the system made (no note, no suppression, no trace).
    pub(super) fn system(kind: FindingEventKind, severity: Severity, summary: &'a str) -> Self {
        NewEvent {
            kind,
            actor: "system",
            severity,
            summary,
            note: None,
            suppressed_until: None,
            traceparent: None,
        }
    }
}

pub(super) async fn insert_event(
    tx: &mut Tx,
    scope: TenantScope,
    finding_id: Uuid,
    event: &NewEvent<'_>,
    now: DateTime<Utc>,
) -> Result<()> {
    // The root travels with the event of a finding not announced on its own: the dispatcher
    // delivers nothing for it (the root's ticket stands for it).
    sqlx::query(
        "INSERT INTO finding_events (id, finding_id, org_id, tenant_id, kind, actor, at, severity, summary,
                                     note, suppressed_until, traceparent, root_finding_id)
         SELECT $1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12,
                CASE WHEN f.announced THEN NULL ELSE f.root_finding_id END
         FROM findings f WHERE f.id = $2",
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

pub(super) async fn list_findings(
    pool: &DbPool,
    org: OrgScope,
    filter: &FindingFilter,
) -> Result<Vec<Finding>> {
    let rows = sqlx::query(concat!(
        "SELECT ",
        finding_cols!(),
        " FROM findings
         WHERE org_id = $1
           AND ($2 IS NULL OR tenant_id = $2)
           AND ($3 IS NULL OR status = $3)
           AND ($4 IS NULL OR severity = $4)
           AND ($5 IS NULL OR rule_id = $5)
           AND ($6 IS NULL OR id < $6)
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
    .fetch_all(pool.read())
    .await?;
    rows.iter().map(rows::finding).collect()
}

pub(super) async fn get_finding(pool: &DbPool, org: OrgScope, id: FindingId) -> Result<Option<Finding>> {
    let row =
        sqlx::query(concat!("SELECT ", finding_cols!(), " FROM findings WHERE id = $1 AND org_id = $2"))
            .bind(id.0)
            .bind(org.org_id.0)
            .fetch_optional(pool.read())
            .await?;
    row.as_ref().map(rows::finding).transpose()
}

pub(super) async fn list_finding_events(
    pool: &DbPool,
    org: OrgScope,
    id: FindingId,
) -> Result<Vec<FindingEvent>> {
    let rows = sqlx::query(concat!(
        "SELECT ",
        event_cols!(),
        " FROM finding_events WHERE finding_id = $1 AND org_id = $2 ORDER BY at, id"
    ))
    .bind(id.0)
    .bind(org.org_id.0)
    .fetch_all(pool.read())
    .await?;
    rows.iter().map(rows::event).collect()
}

pub(super) async fn act_on_finding(
    pool: &DbPool,
    org: OrgScope,
    id: FindingId,
    expected_version: i64,
    action: &FindingAction,
    actor: &str,
    now: DateTime<Utc>,
) -> Result<ActionOutcome> {
    let now = micros(now);
    let mut tx = write_tx(pool).await?;
    let row = sqlx::query(concat!(
        "SELECT ",
        finding_cols!(),
        " FROM findings WHERE id = $1 AND org_id = $2",
        row_lock!(for_update)
    ))
    .bind(id.0)
    .bind(org.org_id.0)
    .fetch_optional(&mut *tx)
    .await?;
    let Some(finding) = row.as_ref().map(rows::finding).transpose()? else {
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
    let (sql, note, until) = match action {
        FindingAction::Acknowledge { note } => (
            concat!(
                "UPDATE findings SET status = 'acknowledged', acknowledged_at = $3, acknowledged_by = $4,
                                     updated_at = $3, version = version + 1
                 WHERE id = $1 AND org_id = $2 RETURNING ",
                finding_cols!()
            ),
            note.as_deref(),
            None,
        ),
        FindingAction::Suppress { reason, until } => (
            concat!(
                "UPDATE findings SET status = 'suppressed', suppressed_until = $5, suppression_reason = $6,
                                     suppressed_by = $4, updated_at = $3, version = version + 1
                 WHERE id = $1 AND org_id = $2 RETURNING ",
                finding_cols!()
            ),
            Some(reason.as_str()),
            Some(micros(*until)),
        ),
        FindingAction::Unsuppress => (
            concat!(
                "UPDATE findings SET status = 'open', suppressed_until = NULL, suppression_reason = NULL,
                                     suppressed_by = NULL, acknowledged_at = NULL, acknowledged_by = NULL,
                                     updated_at = $3, version = version + 1
                 WHERE id = $1 AND org_id = $2 RETURNING ",
                finding_cols!()
            ),
            None,
            None,
        ),
    };
    // Each statement uses the values it needs of these six.
    let row = sqlx::query(sql)
        .bind(id.0)
        .bind(org.org_id.0)
        .bind(now)
        .bind(actor)
        .bind(until)
        .bind(note)
        .fetch_one(&mut *tx)
        .await?;
    let updated = rows::finding(&row)?;
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

#[allow(clippy::too_many_arguments)]
pub(super) async fn request_retest(
    pool: &DbPool,
    scope: TenantScope,
    finding: FindingId,
    commands: &[CommandWrite],
    actor: &str,
    note: &str,
    expires_at: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Result<Option<Vec<CollectorCommandRecord>>> {
    let now = micros(now);
    let expires_at = micros(expires_at);
    let mut tx = write_tx(pool).await?;
    let current = sqlx::query(concat!(
        "SELECT severity, summary FROM findings WHERE id = $1 AND org_id = $2 AND tenant_id = $3",
        row_lock!(for_share)
    ))
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
               AND cancelled_at IS NULL AND expires_at > $5 AND action = $4
             ORDER BY created_at, id LIMIT 1"
        ))
        .bind(command.collector_id.0)
        .bind(scope.org_id.0)
        .bind(scope.tenant_id.0)
        .bind(&command.action)
        .bind(now)
        .fetch_optional(&mut *tx)
        .await?;
        let row = match waiting {
            // Asked again: the waiting command now runs out no sooner than a new one would.
            Some(row) => {
                let id: Uuid = row.try_get("id")?;
                sqlx::query(concat!(
                    "UPDATE collector_commands SET expires_at = $2 WHERE id = $1 AND expires_at < $2 RETURNING ",
                    command_cols!()
                ))
                .bind(id)
                .bind(expires_at)
                .fetch_optional(&mut *tx)
                .await?
                .unwrap_or(row)
            }
            None => {
                sqlx::query(concat!(
                    "INSERT INTO collector_commands (id, org_id, tenant_id, collector_id, finding_id, action,
                                                     requested_by, created_at, expires_at)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) RETURNING ",
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
                .bind(expires_at)
                .fetch_one(&mut *tx)
                .await?
            }
        };
        stored.push(rows::command(&row)?);
    }
    let summary: String = current.try_get("summary")?;
    let event = NewEvent {
        kind: FindingEventKind::RetestRequested,
        actor,
        severity: parse_enum(current.try_get("severity")?, "findings.severity")?,
        summary: &summary,
        note: Some(note),
        suppressed_until: None,
        traceparent: None,
    };
    insert_event(&mut tx, scope, finding.0, &event, now).await?;
    tx.commit().await?;
    Ok(Some(stored))
}

/// Which commands the answer to a batch carries is the dialect's (`deliver_collector_commands`):
/// PostgreSQL claims and re-reads in one statement, SQLite reads first and writes only when
/// something waits.
pub(super) async fn deliver_collector_commands(
    pool: &DbPool,
    scope: TenantScope,
    collector: CollectorId,
    batch_id: Uuid,
    now: DateTime<Utc>,
) -> Result<Vec<CollectorCommandRecord>> {
    let rows = dialect::deliver_collector_commands(pool, scope, collector, batch_id, micros(now)).await?;
    rows.iter().map(rows::command).collect()
}
