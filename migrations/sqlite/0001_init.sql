-- Writeback Doctor, SQLite schema v1: the same logical schema as migrations/postgres.
--
-- Storage classes: ids are 16-byte BLOBs (how sqlx encodes `Uuid` for SQLite, and memcmp order
-- equals UUID order, so `id < ?` pages like PostgreSQL), timestamps are RFC 3339 TEXT in UTC as
-- sqlx writes `DateTime<Utc>` (fixed-width apart from the fraction, which sorts correctly),
-- JSON is TEXT. Tables are STRICT so a value of the wrong class is refused, not stored.
--
-- Every row that belongs to an organisation carries `org_id`, and every row that belongs to a
-- tenant carries `tenant_id` too, so that each query can be scoped in SQL. Composite foreign keys
-- make a row that mixes one organisation's tenant with another's collector impossible to store.

CREATE TABLE server_secrets (
    name  TEXT PRIMARY KEY,
    value BLOB NOT NULL
) STRICT;

CREATE TABLE organizations (
    id         BLOB PRIMARY KEY,
    name       TEXT NOT NULL,
    created_at TEXT NOT NULL
) STRICT;

CREATE TABLE api_keys (
    id         BLOB PRIMARY KEY,
    org_id     BLOB NOT NULL REFERENCES organizations (id),
    name       TEXT NOT NULL,
    role       TEXT NOT NULL,
    prefix     TEXT NOT NULL,
    key_hash   TEXT NOT NULL UNIQUE,
    created_at TEXT NOT NULL,
    revoked_at TEXT
) STRICT;
CREATE INDEX api_keys_org_idx ON api_keys (org_id, created_at);

CREATE TABLE tenants (
    id                      BLOB PRIMARY KEY,
    org_id                  BLOB NOT NULL REFERENCES organizations (id),
    name                    TEXT NOT NULL,
    entra_tenant_id         TEXT,
    created_at              TEXT NOT NULL,
    -- Bumped by every ingest; an evaluation applies only if it saw the current value.
    facts_version           INTEGER NOT NULL DEFAULT 0,
    evaluated_facts_version INTEGER NOT NULL DEFAULT 0,
    UNIQUE (org_id, id)
) STRICT;

CREATE TABLE collectors (
    id                    BLOB PRIMARY KEY,
    org_id                BLOB NOT NULL,
    tenant_id             BLOB NOT NULL,
    name                  TEXT NOT NULL,
    status                TEXT NOT NULL,
    -- Kept after enrollment (status tells a used token from a waiting one), so a second use of
    -- a token answers "already used" rather than "unknown".
    enrollment_token_hash TEXT UNIQUE,
    enrollment_expires_at TEXT,
    public_key            BLOB,
    hostname              TEXT,
    version               TEXT,
    os                    TEXT,
    push_interval_secs    INTEGER NOT NULL,
    enrolled_at           TEXT,
    last_seen_at          TEXT,
    silent_after          TEXT,
    spool_dropped         INTEGER NOT NULL DEFAULT 0,
    created_at            TEXT NOT NULL,
    revoked_at            TEXT,
    UNIQUE (org_id, tenant_id, id),
    FOREIGN KEY (org_id, tenant_id) REFERENCES tenants (org_id, id)
) STRICT;
CREATE INDEX collectors_tenant_idx ON collectors (tenant_id, created_at);
CREATE INDEX collectors_org_idx ON collectors (org_id, created_at);
-- The silence sweep only looks at active collectors.
CREATE INDEX collectors_silent_idx ON collectors (silent_after) WHERE status = 'active';

CREATE TABLE batches (
    collector_id BLOB NOT NULL,
    batch_id     BLOB NOT NULL,
    org_id       BLOB NOT NULL,
    tenant_id    BLOB NOT NULL,
    body_hash    TEXT NOT NULL,
    result_count INTEGER NOT NULL,
    received_at  TEXT NOT NULL,
    PRIMARY KEY (collector_id, batch_id),
    FOREIGN KEY (org_id, tenant_id, collector_id) REFERENCES collectors (org_id, tenant_id, id)
) STRICT;

-- One row per run of an unchanged digest of one (collector, probe, subject).
CREATE TABLE fact_history (
    id            BLOB PRIMARY KEY,
    org_id        BLOB NOT NULL,
    tenant_id     BLOB NOT NULL,
    collector_id  BLOB NOT NULL,
    probe         TEXT NOT NULL,
    subject       TEXT NOT NULL,
    digest        TEXT NOT NULL,
    -- The payload of the first result of the run.
    payload       TEXT NOT NULL,
    first_seen_at TEXT NOT NULL,
    last_seen_at  TEXT NOT NULL,
    count         INTEGER NOT NULL,
    FOREIGN KEY (org_id, tenant_id, collector_id) REFERENCES collectors (org_id, tenant_id, id)
) STRICT;
CREATE INDEX fact_history_subject_idx ON fact_history (collector_id, probe, subject, first_seen_at);
CREATE INDEX fact_history_tenant_idx ON fact_history (tenant_id);

-- The latest fact per (collector, probe, subject).
CREATE TABLE facts (
    collector_id  BLOB NOT NULL,
    probe         TEXT NOT NULL,
    subject       TEXT NOT NULL,
    org_id        BLOB NOT NULL,
    tenant_id     BLOB NOT NULL,
    observed_at   TEXT NOT NULL,
    payload       TEXT NOT NULL,
    digest        TEXT NOT NULL,
    first_seen_at TEXT NOT NULL,
    repeat_count  INTEGER NOT NULL,
    -- The history run the current value belongs to: an unchanged result extends it.
    history_id    BLOB NOT NULL REFERENCES fact_history (id),
    PRIMARY KEY (collector_id, probe, subject),
    FOREIGN KEY (org_id, tenant_id, collector_id) REFERENCES collectors (org_id, tenant_id, id)
) STRICT;
CREATE INDEX facts_tenant_idx ON facts (tenant_id);

CREATE TABLE outbox (
    id          BLOB PRIMARY KEY,
    org_id      BLOB NOT NULL,
    tenant_id   BLOB NOT NULL,
    kind        TEXT NOT NULL,
    traceparent TEXT,
    created_at  TEXT NOT NULL,
    lease_until TEXT,
    attempts    INTEGER NOT NULL DEFAULT 0
) STRICT;
CREATE INDEX outbox_created_idx ON outbox (created_at, id);

CREATE TABLE dead_letters (
    id          BLOB PRIMARY KEY,
    org_id      BLOB NOT NULL,
    tenant_id   BLOB NOT NULL,
    kind        TEXT NOT NULL,
    traceparent TEXT,
    created_at  TEXT NOT NULL,
    attempts    INTEGER NOT NULL,
    reason      TEXT NOT NULL,
    dead_at     TEXT NOT NULL
) STRICT;

CREATE TABLE processed_messages (
    message_id   BLOB PRIMARY KEY,
    processed_at TEXT NOT NULL
) STRICT;

CREATE TABLE findings (
    id           BLOB PRIMARY KEY,
    org_id       BLOB NOT NULL,
    tenant_id    BLOB NOT NULL,
    fingerprint  TEXT NOT NULL,
    rule_id      TEXT NOT NULL,
    subject      TEXT NOT NULL,
    severity     TEXT NOT NULL,
    status       TEXT NOT NULL,
    title        TEXT NOT NULL,
    summary      TEXT NOT NULL,
    evidence     TEXT NOT NULL,
    opened_at    TEXT NOT NULL,
    updated_at   TEXT NOT NULL,
    resolved_at  TEXT,
    reopen_count INTEGER NOT NULL DEFAULT 0,
    version      INTEGER NOT NULL,
    UNIQUE (tenant_id, fingerprint),
    FOREIGN KEY (org_id, tenant_id) REFERENCES tenants (org_id, id)
) STRICT;
-- Listing newest first per organisation (the id is a UUIDv7, so it orders by time).
CREATE INDEX findings_org_idx ON findings (org_id, id);
CREATE INDEX findings_tenant_idx ON findings (tenant_id, id);

CREATE TABLE finding_events (
    id         BLOB PRIMARY KEY,
    finding_id BLOB NOT NULL REFERENCES findings (id),
    org_id     BLOB NOT NULL,
    tenant_id  BLOB NOT NULL,
    kind       TEXT NOT NULL,
    actor      TEXT NOT NULL,
    at         TEXT NOT NULL,
    severity   TEXT NOT NULL,
    summary    TEXT NOT NULL
) STRICT;
CREATE INDEX finding_events_finding_idx ON finding_events (finding_id, at, id);
