-- A delivery claim reads each integration's oldest due deliveries and stops at its free slots:
-- in this order, from this index, it costs what it claims, not the integration's backlog.
CREATE INDEX deliveries_integration_due_idx ON deliveries (integration_id, next_attempt_at, id)
    WHERE status = 'pending';
