-- Every accepted batch writes its collector's heartbeat (`last_seen_at`, `silent_after`, the
-- agent's version and host). `silent_after` was indexed for the silence sweep, so no heartbeat
-- could be a heap-only update: each one added an entry to every index of `collectors`, and the
-- lookups that follow in the same ingest (the foreign-key checks of the batch and its facts, the
-- next push's authentication) walked the dead entries of that collector's earlier heartbeats
-- (the benchmark: 0.065 ms per key check on `collectors` against 0.006 ms on `tenants`). The
-- sweep, every `worker.silence_sweep_secs`, reads the table instead: one pass over a table of a
-- few hundred bytes per collector. Room on each page lets the heartbeat stay on its page.
-- PostgreSQL only: SQLite rewrites just the index entries of the columns that change.
DROP INDEX collectors_silent_idx;
ALTER TABLE collectors SET (fillfactor = 70);
