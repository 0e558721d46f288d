-- A destination that answers 429 (or 502/503/504 with Retry-After) pauses the whole
-- integration, not only the delivery that heard it: claims skip it until `throttled_until`.
-- `throttle_streak` counts throttling answers in a row, doubling the pause when the destination
-- does not say how long to wait.
ALTER TABLE integrations ADD COLUMN throttled_until TEXT;
ALTER TABLE integrations ADD COLUMN throttle_streak INTEGER NOT NULL DEFAULT 0;

-- An integration's failed deliveries, newest first: the `?status=failed` listing and "replay every
-- failed one since T" read only those (few among many succeeded). Partial, so the updates every
-- delivery goes through (claim, attempt) do not maintain it unless the delivery failed.
CREATE INDEX deliveries_failed_idx ON deliveries (integration_id, id) WHERE status = 'failed';
