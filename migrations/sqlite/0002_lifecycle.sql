-- SQLite twin of migrations/postgres/0002_lifecycle.sql (same storage classes as 0001).
--
-- Findings people can act on: acknowledgement and suppression, flap-damping streaks, the
-- collector a finding rests on, what the evaluator could not decide, and commands for collectors.

-- The collector whose facts a per-collector finding rests on (NULL for tenant-wide findings);
-- decides staleness and where "re-test now" is sent.
ALTER TABLE findings ADD COLUMN collector_id BLOB;
ALTER TABLE findings ADD COLUMN acknowledged_at TEXT;
ALTER TABLE findings ADD COLUMN acknowledged_by TEXT;
ALTER TABLE findings ADD COLUMN suppressed_until TEXT;
ALTER TABLE findings ADD COLUMN suppression_reason TEXT;
ALTER TABLE findings ADD COLUMN suppressed_by TEXT;
-- The sweep looks for suppressions that ran out.
CREATE INDEX findings_suppressed_idx ON findings (suppressed_until) WHERE status = 'suppressed';

-- What a person wrote with an action (acknowledgement note, suppression reason), and until when
-- a suppression holds.
ALTER TABLE finding_events ADD COLUMN note TEXT;
ALTER TABLE finding_events ADD COLUMN suppressed_until TEXT;

-- Rules the last evaluation could not decide (outcome "unknown"), written only when it changes.
ALTER TABLE tenants ADD COLUMN unknown_rules INTEGER NOT NULL DEFAULT 0;

-- Flap damping: consecutive failing (or passing) evaluations of one fingerprint towards opening
-- (or resolving) its finding. A row exists only while a transition is pending: it is written
-- by the first evaluation that differs from the finding's state and deleted by the transition
-- or by an evaluation that agrees with the state again. One of `fails` and `passes` is zero.
CREATE TABLE finding_streaks (
    tenant_id   BLOB NOT NULL,
    fingerprint TEXT NOT NULL,
    org_id      BLOB NOT NULL,
    fails       INTEGER NOT NULL,
    passes      INTEGER NOT NULL,
    updated_at  TEXT NOT NULL,
    PRIMARY KEY (tenant_id, fingerprint),
    FOREIGN KEY (org_id, tenant_id) REFERENCES tenants (org_id, id)
) STRICT;

-- Commands for a collector, handed out in the answer to its next push. `delivered_batch_id` is
-- the batch whose answer carried the command: a retry of that batch gets it again.
CREATE TABLE collector_commands (
    id                 BLOB PRIMARY KEY,
    org_id             BLOB NOT NULL,
    tenant_id          BLOB NOT NULL,
    collector_id       BLOB NOT NULL,
    finding_id         BLOB REFERENCES findings (id),
    -- The command as the wire schema serialises it (`wbd_wire::CommandAction`).
    action             TEXT NOT NULL,
    requested_by       TEXT NOT NULL,
    created_at         TEXT NOT NULL,
    delivered_batch_id BLOB,
    delivered_at       TEXT,
    FOREIGN KEY (org_id, tenant_id, collector_id) REFERENCES collectors (org_id, tenant_id, id)
) STRICT;
CREATE INDEX collector_commands_pending_idx ON collector_commands (collector_id, created_at)
    WHERE delivered_batch_id IS NULL;
CREATE INDEX collector_commands_batch_idx ON collector_commands (collector_id, delivered_batch_id);
