-- Rate limits (GCRA): one row per recently busy thing (`addr:…`, `credential:…`, `org:…`,
-- `collector:…`) holding the time, in microseconds since the epoch, at which its allowance is
-- whole again. The embedded server keeps its limits in memory (it is the only process); the
-- table gives the SQLite store the same contract as the PostgreSQL one.
CREATE TABLE rate_limits (
    bucket TEXT    PRIMARY KEY,
    tat    INTEGER NOT NULL
);
CREATE INDEX rate_limits_tat_idx ON rate_limits (tat);
