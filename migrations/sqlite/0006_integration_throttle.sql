-- A destination that answers 429 (or 502/503/504 with Retry-After) pauses the whole
-- integration, not only the delivery that heard it: claims skip it until `throttled_until`.
-- `throttle_streak` counts throttling answers in a row, doubling the pause when the destination
-- does not say how long to wait.
ALTER TABLE integrations ADD COLUMN throttled_until TEXT;
ALTER TABLE integrations ADD COLUMN throttle_streak INTEGER NOT NULL DEFAULT 0;

-- An integration's deliveries of one status, newest first: the `?status=` listing (failed ones
-- are few among many succeeded) reads only its page.
CREATE INDEX deliveries_status_idx ON deliveries (integration_id, status, id);
-- Failed deliveries by when their event happened: "replay every failed one since T" reads only
-- those, not every delivery of the integration.
CREATE INDEX deliveries_failed_idx ON deliveries (integration_id, occurred_at) WHERE status = 'failed';
