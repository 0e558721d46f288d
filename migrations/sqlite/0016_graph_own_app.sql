-- Bring your own app (issue 12): an MSP whose customer will not consent to the installation's
-- multi-tenant app sets, per tenant, an Entra app of the customer's own (PUT
-- /v1/tenants/{id}/graph/app). The credential (a client secret, or a certificate with its private
-- key) is sealed like integration credentials (AES-256-GCM under delivery.secrets_key, bound to
-- the organisation and tenant) and never leaves the server. `version` counts the times it was
-- set, so a change can name the version it was made from.
CREATE TABLE graph_own_apps (
    tenant_id             BLOB PRIMARY KEY,
    org_id                BLOB NOT NULL,
    client_id             TEXT NOT NULL,
    entra_tenant_id       TEXT NOT NULL,
    cloud                 TEXT NOT NULL,
    credential_kind       TEXT NOT NULL,
    credential_expires_at TEXT,
    sealed_credential     BLOB NOT NULL,
    version               INTEGER NOT NULL,
    updated_at            TEXT NOT NULL,
    updated_by            TEXT NOT NULL,
    FOREIGN KEY (org_id, tenant_id) REFERENCES tenants (org_id, id) ON DELETE CASCADE
) STRICT;

-- Which app reads a connected tenant: `installation` (it consented to the installation's app) or
-- `own` (its row in graph_own_apps). A connection's `state` may now also be
-- `credential_invalid`: the tenant's own app was refused for its credential.
ALTER TABLE graph_connections ADD COLUMN app TEXT NOT NULL DEFAULT 'installation';

-- A problem of an app itself rather than of a tenant: the installation's credential refused
-- (a wrong or expired secret, a certificate the app registration does not have). One row per
-- app (`installation`); while `retry_at` is ahead, no tenant is read with that app, and no
-- tenant is marked revoked for it.
CREATE TABLE graph_app_problems (
    app      TEXT PRIMARY KEY,
    problem  TEXT NOT NULL,
    since    TEXT NOT NULL,
    seen_at  TEXT NOT NULL,
    retry_at TEXT NOT NULL
) STRICT;
