-- Fewer statements per evaluation (issue 15). `rules_version` moves with every change to the
-- tenant's rule configuration (its own overrides and custom rules, or its organisation's), in
-- the transaction of the change. The evaluation reads it with the tenant's facts, and a worker
-- that knows the configuration of that version evaluates with it instead of reading it again.
ALTER TABLE tenants ADD COLUMN rules_version BIGINT NOT NULL DEFAULT 0;
