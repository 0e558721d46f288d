-- A destination that answers 429 (or 502/503/504 with Retry-After) pauses the whole
-- integration, not only the delivery that heard it: claims skip it until `throttled_until`.
-- `throttle_streak` counts throttling answers in a row, doubling the pause when the destination
-- does not say how long to wait.
ALTER TABLE integrations ADD COLUMN throttled_until TIMESTAMPTZ;
ALTER TABLE integrations ADD COLUMN throttle_streak INTEGER NOT NULL DEFAULT 0;
