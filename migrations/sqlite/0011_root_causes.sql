-- One root cause, not a cascade (issue 13 item 13). A rule of the pack may name the rules whose
-- failure explains its own (`explained_by` in pack.toml). While such a root finding is active,
-- the evaluator groups the consequence under it:
--   root_finding_id: the active finding that explains this one (kept current by every
--     evaluation of the tenant; left as it was when the finding resolves, for its history).
--     Consequences are not counted in the tenant's health score.
--   announced: whether the finding has been told to integrations on its own. A finding that
--     opens (or reopens) under a root is not (no ticket of its own) until its root resolves while
--     it still fails; one announced before its root appeared keeps its ticket to the end.
ALTER TABLE findings ADD COLUMN root_finding_id BLOB;
ALTER TABLE findings ADD COLUMN announced INTEGER NOT NULL DEFAULT 1;
-- The root of a finding that had not been announced when the event happened: such an event is
-- not delivered (the root's ticket stands for it). NULL for every event that is delivered.
ALTER TABLE finding_events ADD COLUMN root_finding_id BLOB;
