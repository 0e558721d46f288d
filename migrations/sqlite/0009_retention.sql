-- Retention: what grows with every push, evaluation and delivery is removed once it is older
-- than the `[retention]` settings, by a sweep that deletes in small batches. Each index below
-- serves one of the sweep's deletes (oldest first, a batch at a time), so no delete scans a
-- whole table. Nothing still pending is ever removed.

-- Collector commands run out: one not delivered by `expires_at` is never delivered (and shows
-- as `expired`), and a person may cancel one that waits. Commands made before this migration
-- expire a day after they were asked for (the default `collectors.command_ttl_secs`); SQLite
-- cannot add a NOT NULL column without a default, so the default is replaced at once.
ALTER TABLE collector_commands ADD COLUMN expires_at TEXT NOT NULL DEFAULT '1970-01-01T00:00:00+00:00';
UPDATE collector_commands SET expires_at = strftime('%Y-%m-%dT%H:%M:%f+00:00', created_at, '+1 day');
ALTER TABLE collector_commands ADD COLUMN cancelled_at TEXT;
ALTER TABLE collector_commands ADD COLUMN cancelled_by TEXT;
-- A collector's commands, newest first (the id is a UUIDv7).
CREATE INDEX collector_commands_list_idx ON collector_commands (collector_id, id);
-- Every command is delivered, cancelled or expired by `expires_at`: the sweep goes by it.
CREATE INDEX collector_commands_expires_idx ON collector_commands (expires_at);

-- Finished deliveries (succeeded or failed), by when they finished. Partial, so the pending
-- ones the engine updates on every claim and attempt do not maintain it.
CREATE INDEX deliveries_finished_idx ON deliveries (updated_at, id) WHERE status <> 'pending';

-- History runs by when they began (a run ends before the next one begins); the same index as
-- on PostgreSQL, where `last_seen_at` must stay unindexed.
CREATE INDEX fact_history_first_seen_idx ON fact_history (first_seen_at);
-- Which history run a latest fact belongs to: the sweep keeps those, and the foreign key's check
-- on every deleted run looks here instead of scanning `facts`.
CREATE INDEX facts_history_idx ON facts (history_id);

CREATE INDEX audit_log_at_idx ON audit_log (at);
CREATE INDEX processed_messages_at_idx ON processed_messages (processed_at);
CREATE INDEX batches_received_idx ON batches (received_at);
CREATE INDEX dead_letters_dead_at_idx ON dead_letters (dead_at);
