-- Rate limits shared by every API process: one row per recently busy thing (`addr:…`,
-- `credential:…`, `org:…`, `collector:…`) holding the time, in microseconds since the epoch,
-- at which its allowance is whole again (GCRA). A row whose time has passed means the same as
-- no row; the API forgets those every minute.
CREATE TABLE rate_limits (
    bucket TEXT   PRIMARY KEY,
    tat    BIGINT NOT NULL
);
CREATE INDEX rate_limits_tat_idx ON rate_limits (tat);
