-- Findings people can act on: acknowledgement and suppression, flap-damping streaks, the
-- collector a finding rests on, what the evaluator could not decide, and commands for collectors.

-- The collector whose facts a per-collector finding rests on (NULL for tenant-wide findings);
-- decides staleness and where "re-test now" is sent.
ALTER TABLE findings ADD COLUMN collector_id UUID;
ALTER TABLE findings ADD COLUMN acknowledged_at TIMESTAMPTZ;
ALTER TABLE findings ADD COLUMN acknowledged_by TEXT;
ALTER TABLE findings ADD COLUMN suppressed_until TIMESTAMPTZ;
ALTER TABLE findings ADD COLUMN suppression_reason TEXT;
ALTER TABLE findings ADD COLUMN suppressed_by TEXT;
-- The sweep looks for suppressions that ran out.
CREATE INDEX findings_suppressed_idx ON findings (suppressed_until) WHERE status = 'suppressed';

-- What a person wrote with an action (acknowledgement note, suppression reason), and until when
-- a suppression holds.
ALTER TABLE finding_events ADD COLUMN note TEXT;
ALTER TABLE finding_events ADD COLUMN suppressed_until TIMESTAMPTZ;

-- Rules the last evaluation could not decide (outcome "unknown"), written only when it changes.
ALTER TABLE tenants ADD COLUMN unknown_rules BIGINT NOT NULL DEFAULT 0;

-- Flap damping: consecutive failing (or passing) evaluations of one fingerprint towards opening
-- (or resolving) its finding. A row exists only while a transition is pending: it is written
-- by the first evaluation that differs from the finding's state and deleted by the transition
-- or by an evaluation that agrees with the state again. One of `fails` and `passes` is zero.
CREATE TABLE finding_streaks (
    tenant_id   UUID NOT NULL,
    fingerprint TEXT NOT NULL,
    org_id      UUID NOT NULL,
    fails       BIGINT NOT NULL,
    passes      BIGINT NOT NULL,
    updated_at  TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (tenant_id, fingerprint),
    FOREIGN KEY (org_id, tenant_id) REFERENCES tenants (org_id, id)
);

-- Commands for a collector, handed out in the answer to its next push. `delivered_batch_id` is
-- the batch whose answer carried the command: a retry of that batch gets it again.
CREATE TABLE collector_commands (
    id                 UUID PRIMARY KEY,
    org_id             UUID NOT NULL,
    tenant_id          UUID NOT NULL,
    collector_id       UUID NOT NULL,
    finding_id         UUID REFERENCES findings (id),
    -- The command as the wire schema serialises it (`wbd_wire::CommandAction`).
    action             JSONB NOT NULL,
    requested_by       TEXT NOT NULL,
    created_at         TIMESTAMPTZ NOT NULL,
    delivered_batch_id UUID,
    delivered_at       TIMESTAMPTZ,
    FOREIGN KEY (org_id, tenant_id, collector_id) REFERENCES collectors (org_id, tenant_id, id)
);
CREATE INDEX collector_commands_pending_idx ON collector_commands (collector_id, created_at)
    WHERE delivered_batch_id IS NULL;
CREATE INDEX collector_commands_batch_idx ON collector_commands (collector_id, delivered_batch_id);
