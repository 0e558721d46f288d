-- Integrations: where an organisation's finding events go (webhooks, PSA tickets, chat), the
-- deliveries of events to them with every attempt, and the tickets they keep per problem.

-- A finding event is the outbox of notifications: it is written in the transaction that changes
-- the finding, and the dispatcher turns it into one delivery per matching integration, then
-- stamps it. Events written before this migration are not announced again.
ALTER TABLE finding_events ADD COLUMN dispatched_at TEXT;
ALTER TABLE finding_events ADD COLUMN dispatch_lease_until TEXT;
UPDATE finding_events SET dispatched_at = at;
-- The trace of the change (W3C traceparent), continued by the deliveries it makes.
ALTER TABLE finding_events ADD COLUMN traceparent TEXT;
CREATE INDEX finding_events_undispatched_idx ON finding_events (at, id) WHERE dispatched_at IS NULL;

CREATE TABLE integrations (
    id              BLOB PRIMARY KEY,
    org_id          BLOB NOT NULL REFERENCES organizations (id),
    name            TEXT NOT NULL,
    kind            TEXT NOT NULL,
    -- NULL when the URL itself is a secret (chat webhooks): then it is sealed in `secrets`.
    url             TEXT,
    -- Non-secret options of the kind.
    config          TEXT NOT NULL,
    -- Credentials, signing secrets and secret URLs: AES-256-GCM sealed JSON, never returned.
    secrets         BLOB NOT NULL,
    -- Which events: {tenant_ids, severities, rule_ids, event_types}; an empty list means all.
    filter          TEXT NOT NULL,
    -- `per_tenant`: one ticket per finding; `digest`: one ticket per problem across tenants.
    routing         TEXT NOT NULL,
    max_in_flight   INTEGER NOT NULL,
    hourly_budget   INTEGER,
    -- The budget's current one-hour window and what it has used.
    budget_window_start TEXT,
    budget_used     INTEGER NOT NULL DEFAULT 0,
    enabled         INTEGER NOT NULL,
    disabled_reason TEXT,
    disabled_at     TEXT,
    -- Since when every attempt failed (NULL after a success): drives the automatic disable.
    failing_since   TEXT,
    last_success_at TEXT,
    -- Whether an `integration-disabled` finding is open for it (resolved by the next success).
    alerted         INTEGER NOT NULL DEFAULT FALSE,
    created_at      TEXT NOT NULL,
    updated_at      TEXT NOT NULL,
    version         INTEGER NOT NULL,
    UNIQUE (org_id, id)
) STRICT;
CREATE INDEX integrations_org_idx ON integrations (org_id, id);

-- One event for one integration. Unique per (integration, event): a duplicate event, or a
-- dispatcher that runs twice, cannot deliver it twice.
CREATE TABLE deliveries (
    id              BLOB PRIMARY KEY,
    org_id          BLOB NOT NULL,
    integration_id  BLOB NOT NULL REFERENCES integrations (id) ON DELETE CASCADE,
    event_id        BLOB NOT NULL,
    event_type      TEXT NOT NULL,
    tenant_id       BLOB,
    finding_id      BLOB,
    -- The ticket this delivery acts on (NULL for message kinds); deliveries of one ticket go
    -- in event order, one at a time.
    ticket_key      TEXT,
    payload         TEXT NOT NULL,
    traceparent     TEXT,
    occurred_at     TEXT NOT NULL,
    -- `pending` (waiting or in flight), `succeeded`, `failed` (attempts exhausted or disabled).
    status          TEXT NOT NULL,
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at TEXT,
    lease_id        BLOB,
    lease_until     TEXT,
    last_attempt_at TEXT,
    last_status     INTEGER,
    last_error      TEXT,
    created_at      TEXT NOT NULL,
    updated_at      TEXT NOT NULL,
    UNIQUE (integration_id, event_id)
) STRICT;
CREATE INDEX deliveries_due_idx ON deliveries (next_attempt_at) WHERE status = 'pending';
CREATE INDEX deliveries_ticket_idx ON deliveries (integration_id, ticket_key, occurred_at) WHERE status = 'pending';
CREATE INDEX deliveries_integration_idx ON deliveries (integration_id, id);
-- Deliveries in flight (leased): counted per integration by every claim.
CREATE INDEX deliveries_leased_idx ON deliveries (lease_until, integration_id) WHERE status = 'pending';

CREATE TABLE delivery_attempts (
    id          BLOB PRIMARY KEY,
    delivery_id BLOB NOT NULL REFERENCES deliveries (id) ON DELETE CASCADE,
    org_id      BLOB NOT NULL,
    attempt     INTEGER NOT NULL,
    at          TEXT NOT NULL,
    succeeded   INTEGER NOT NULL,
    status      INTEGER,
    latency_ms  INTEGER NOT NULL,
    error       TEXT,
    response_excerpt TEXT,
    -- Every request of the attempt: [{request, status, latency_ms, response_excerpt, error}].
    exchanges   TEXT NOT NULL
) STRICT;
CREATE INDEX delivery_attempts_delivery_idx ON delivery_attempts (delivery_id, attempt);

-- The ticket (or alert) an integration keeps for one problem.
CREATE TABLE tickets (
    id             BLOB PRIMARY KEY,
    org_id         BLOB NOT NULL,
    integration_id BLOB NOT NULL REFERENCES integrations (id) ON DELETE CASCADE,
    ticket_key     TEXT NOT NULL,
    -- NULL while a create's outcome is unknown (state `creating`).
    external_id    TEXT,
    url            TEXT,
    -- `creating`, `open`, `closed`.
    state          TEXT NOT NULL,
    created_at     TEXT NOT NULL,
    updated_at     TEXT NOT NULL,
    UNIQUE (integration_id, ticket_key)
) STRICT;

-- Which findings a ticket stands for (one, or several tenants' under digest routing).
CREATE TABLE ticket_findings (
    ticket_id  BLOB NOT NULL REFERENCES tickets (id) ON DELETE CASCADE,
    finding_id BLOB NOT NULL,
    org_id     BLOB NOT NULL,
    tenant_id  BLOB NOT NULL,
    open       INTEGER NOT NULL,
    PRIMARY KEY (ticket_id, finding_id)
) STRICT;
CREATE INDEX ticket_findings_finding_idx ON ticket_findings (finding_id);
