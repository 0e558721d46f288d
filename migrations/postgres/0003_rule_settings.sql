-- Per-organisation and per-tenant rule overrides, custom (CEL) rules, and the audit log of who
-- changed them. `scope_key` is 'org' for organisation-wide rows and the tenant id otherwise, so
-- one primary key covers both levels.
CREATE TABLE rule_settings (
    org_id     UUID NOT NULL REFERENCES organizations (id),
    tenant_id  UUID,
    scope_key  TEXT NOT NULL,
    rule_id    TEXT NOT NULL,
    settings   JSONB NOT NULL,
    updated_at TIMESTAMPTZ NOT NULL,
    updated_by TEXT NOT NULL,
    PRIMARY KEY (org_id, scope_key, rule_id),
    FOREIGN KEY (org_id, tenant_id) REFERENCES tenants (org_id, id)
);

CREATE TABLE custom_rules (
    org_id     UUID NOT NULL REFERENCES organizations (id),
    tenant_id  UUID,
    scope_key  TEXT NOT NULL,
    rule_id    TEXT NOT NULL,
    definition JSONB NOT NULL,
    created_at TIMESTAMPTZ NOT NULL,
    updated_at TIMESTAMPTZ NOT NULL,
    updated_by TEXT NOT NULL,
    PRIMARY KEY (org_id, scope_key, rule_id),
    FOREIGN KEY (org_id, tenant_id) REFERENCES tenants (org_id, id)
);

CREATE TABLE audit_log (
    id        UUID PRIMARY KEY,
    org_id    UUID NOT NULL REFERENCES organizations (id),
    tenant_id UUID,
    actor     TEXT NOT NULL,
    action    TEXT NOT NULL,
    target    TEXT NOT NULL,
    before    JSONB,
    after     JSONB,
    at        TIMESTAMPTZ NOT NULL
);
CREATE INDEX audit_log_org_idx ON audit_log (org_id, id);

-- The rule's message behind a finding's summary (a text key and its arguments), so the API can
-- render the summary in the caller's language; NULL for findings written before.
ALTER TABLE findings ADD COLUMN message JSONB;
