-- The central Microsoft Graph connector (issue 12): the installation's multi-tenant Entra app,
-- consented to once per customer tenant.
--
-- A consent in progress: POST /v1/tenants/{id}/graph/consent makes a signed `state` naming this
-- nonce; the consent callback spends it (once, before it expires) and learns from it which
-- organisation, tenant and person asked.
CREATE TABLE graph_consent_states (
    nonce      UUID PRIMARY KEY,
    org_id     UUID NOT NULL,
    tenant_id  UUID NOT NULL,
    created_by TEXT NOT NULL,
    created_at TIMESTAMPTZ NOT NULL,
    expires_at TIMESTAMPTZ NOT NULL,
    used_at    TIMESTAMPTZ,
    FOREIGN KEY (org_id, tenant_id) REFERENCES tenants (org_id, id) ON DELETE CASCADE
);
CREATE INDEX graph_consent_states_tenant_idx ON graph_consent_states (tenant_id, expires_at);

-- A tenant whose administrator consented: the Entra tenant Microsoft named, when and who, and
-- what the reader last saw. `state`: `connected` or `consent_revoked` (the identity platform
-- refused the app for the tenant; reading stops until the tenant is connected again).
-- `next_read_at`, `lease_id`, `lease_until`: the reader's schedule, claimed with a lease so that
-- no two workers read a tenant in the same period. `collector_id`: the tenant's collector row that
-- stands for the central reader, so that its facts take the same path (and say where they came
-- from) as a collector's.
CREATE TABLE graph_connections (
    tenant_id           UUID PRIMARY KEY,
    org_id              UUID NOT NULL,
    entra_tenant_id     TEXT NOT NULL,
    state               TEXT NOT NULL,
    consented_at        TIMESTAMPTZ NOT NULL,
    consented_by        TEXT NOT NULL,
    -- Application permissions the last read was refused (403).
    missing_permissions JSONB NOT NULL DEFAULT '[]',
    throttled_until     TIMESTAMPTZ,
    last_read_at        TIMESTAMPTZ,
    last_error          TEXT,
    next_read_at        TIMESTAMPTZ NOT NULL,
    lease_id            UUID,
    collector_id        UUID,
    lease_until         TIMESTAMPTZ,
    FOREIGN KEY (org_id, tenant_id) REFERENCES tenants (org_id, id) ON DELETE CASCADE
);
CREATE INDEX graph_connections_due_idx ON graph_connections (next_read_at) WHERE state = 'connected';
