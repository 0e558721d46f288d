-- Writeback Doctor, PostgreSQL schema v1.
--
-- Every row that belongs to an organisation carries `org_id`, and every row that belongs to a
-- tenant carries `tenant_id` too, so that each query can be scoped in SQL. Composite foreign keys
-- (`(org_id, tenant_id)` → tenants, `(org_id, tenant_id, collector_id)` → collectors) make a row
-- that mixes one organisation's tenant with another's collector impossible to store.
-- Integers are BIGINT throughout so that both backends decode to i64.

CREATE TABLE server_secrets (
    name  TEXT PRIMARY KEY,
    value BYTEA NOT NULL
);

CREATE TABLE organizations (
    id         UUID PRIMARY KEY,
    name       TEXT NOT NULL,
    created_at TIMESTAMPTZ NOT NULL
);

CREATE TABLE api_keys (
    id         UUID PRIMARY KEY,
    org_id     UUID NOT NULL REFERENCES organizations (id),
    name       TEXT NOT NULL,
    role       TEXT NOT NULL,
    prefix     TEXT NOT NULL,
    key_hash   TEXT NOT NULL UNIQUE,
    created_at TIMESTAMPTZ NOT NULL,
    revoked_at TIMESTAMPTZ
);
CREATE INDEX api_keys_org_idx ON api_keys (org_id, created_at);

CREATE TABLE tenants (
    id                      UUID PRIMARY KEY,
    org_id                  UUID NOT NULL REFERENCES organizations (id),
    name                    TEXT NOT NULL,
    entra_tenant_id         TEXT,
    created_at              TIMESTAMPTZ NOT NULL,
    -- Bumped by every ingest; an evaluation applies only if it saw the current value.
    facts_version           BIGINT NOT NULL DEFAULT 0,
    evaluated_facts_version BIGINT NOT NULL DEFAULT 0,
    UNIQUE (org_id, id)
);

CREATE TABLE collectors (
    id                    UUID PRIMARY KEY,
    org_id                UUID NOT NULL,
    tenant_id             UUID NOT NULL,
    name                  TEXT NOT NULL,
    status                TEXT NOT NULL,
    -- Kept after enrollment (status tells a used token from a waiting one), so a second use of
    -- a token answers "already used" rather than "unknown".
    enrollment_token_hash TEXT UNIQUE,
    enrollment_expires_at TIMESTAMPTZ,
    public_key            BYTEA,
    hostname              TEXT,
    version               TEXT,
    os                    TEXT,
    push_interval_secs    BIGINT NOT NULL,
    enrolled_at           TIMESTAMPTZ,
    last_seen_at          TIMESTAMPTZ,
    silent_after          TIMESTAMPTZ,
    spool_dropped         BIGINT NOT NULL DEFAULT 0,
    created_at            TIMESTAMPTZ NOT NULL,
    revoked_at            TIMESTAMPTZ,
    UNIQUE (org_id, tenant_id, id),
    FOREIGN KEY (org_id, tenant_id) REFERENCES tenants (org_id, id)
);
CREATE INDEX collectors_tenant_idx ON collectors (tenant_id, created_at);
CREATE INDEX collectors_org_idx ON collectors (org_id, created_at);
-- The silence sweep only looks at active collectors.
CREATE INDEX collectors_silent_idx ON collectors (silent_after) WHERE status = 'active';

CREATE TABLE batches (
    collector_id UUID NOT NULL,
    batch_id     UUID NOT NULL,
    org_id       UUID NOT NULL,
    tenant_id    UUID NOT NULL,
    body_hash    TEXT NOT NULL,
    result_count BIGINT NOT NULL,
    received_at  TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (collector_id, batch_id),
    FOREIGN KEY (org_id, tenant_id, collector_id) REFERENCES collectors (org_id, tenant_id, id)
);

-- One row per run of an unchanged digest of one (collector, probe, subject).
CREATE TABLE fact_history (
    id            UUID PRIMARY KEY,
    org_id        UUID NOT NULL,
    tenant_id     UUID NOT NULL,
    collector_id  UUID NOT NULL,
    probe         TEXT NOT NULL,
    subject       TEXT NOT NULL,
    digest        TEXT NOT NULL,
    -- The payload of the first result of the run.
    payload       JSONB NOT NULL,
    first_seen_at TIMESTAMPTZ NOT NULL,
    last_seen_at  TIMESTAMPTZ NOT NULL,
    count         BIGINT NOT NULL,
    FOREIGN KEY (org_id, tenant_id, collector_id) REFERENCES collectors (org_id, tenant_id, id)
);
CREATE INDEX fact_history_subject_idx ON fact_history (collector_id, probe, subject, first_seen_at);
CREATE INDEX fact_history_tenant_idx ON fact_history (tenant_id);

-- The latest fact per (collector, probe, subject).
CREATE TABLE facts (
    collector_id  UUID NOT NULL,
    probe         TEXT NOT NULL,
    subject       TEXT NOT NULL,
    org_id        UUID NOT NULL,
    tenant_id     UUID NOT NULL,
    observed_at   TIMESTAMPTZ NOT NULL,
    payload       JSONB NOT NULL,
    digest        TEXT NOT NULL,
    first_seen_at TIMESTAMPTZ NOT NULL,
    repeat_count  BIGINT NOT NULL,
    -- The history run the current value belongs to: an unchanged result extends it.
    history_id    UUID NOT NULL REFERENCES fact_history (id),
    PRIMARY KEY (collector_id, probe, subject),
    FOREIGN KEY (org_id, tenant_id, collector_id) REFERENCES collectors (org_id, tenant_id, id)
);
CREATE INDEX facts_tenant_idx ON facts (tenant_id);

CREATE TABLE outbox (
    id          UUID PRIMARY KEY,
    org_id      UUID NOT NULL,
    tenant_id   UUID NOT NULL,
    kind        JSONB NOT NULL,
    traceparent TEXT,
    created_at  TIMESTAMPTZ NOT NULL,
    lease_until TIMESTAMPTZ,
    attempts    BIGINT NOT NULL DEFAULT 0
);
CREATE INDEX outbox_created_idx ON outbox (created_at, id);

CREATE TABLE dead_letters (
    id          UUID PRIMARY KEY,
    org_id      UUID NOT NULL,
    tenant_id   UUID NOT NULL,
    kind        JSONB NOT NULL,
    traceparent TEXT,
    created_at  TIMESTAMPTZ NOT NULL,
    attempts    BIGINT NOT NULL,
    reason      TEXT NOT NULL,
    dead_at     TIMESTAMPTZ NOT NULL
);

CREATE TABLE processed_messages (
    message_id   UUID PRIMARY KEY,
    processed_at TIMESTAMPTZ NOT NULL
);

CREATE TABLE findings (
    id           UUID PRIMARY KEY,
    org_id       UUID NOT NULL,
    tenant_id    UUID NOT NULL,
    fingerprint  TEXT NOT NULL,
    rule_id      TEXT NOT NULL,
    subject      TEXT NOT NULL,
    severity     TEXT NOT NULL,
    status       TEXT NOT NULL,
    title        TEXT NOT NULL,
    summary      TEXT NOT NULL,
    evidence     JSONB NOT NULL,
    opened_at    TIMESTAMPTZ NOT NULL,
    updated_at   TIMESTAMPTZ NOT NULL,
    resolved_at  TIMESTAMPTZ,
    reopen_count BIGINT NOT NULL DEFAULT 0,
    version      BIGINT NOT NULL,
    UNIQUE (tenant_id, fingerprint),
    FOREIGN KEY (org_id, tenant_id) REFERENCES tenants (org_id, id)
);
-- Listing newest first per organisation (the id is a UUIDv7, so it orders by time).
CREATE INDEX findings_org_idx ON findings (org_id, id);
CREATE INDEX findings_tenant_idx ON findings (tenant_id, id);

CREATE TABLE finding_events (
    id         UUID PRIMARY KEY,
    finding_id UUID NOT NULL REFERENCES findings (id),
    org_id     UUID NOT NULL,
    tenant_id  UUID NOT NULL,
    kind       TEXT NOT NULL,
    actor      TEXT NOT NULL,
    at         TIMESTAMPTZ NOT NULL,
    severity   TEXT NOT NULL,
    summary    TEXT NOT NULL
);
CREATE INDEX finding_events_finding_idx ON finding_events (finding_id, at, id);
