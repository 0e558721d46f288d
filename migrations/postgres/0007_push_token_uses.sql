-- Each collector push token is accepted once: its `jti` is kept here until the token expires,
-- so a token read off the wire (by a TLS-inspecting proxy, say) cannot push a second batch.
-- Shared by every API process. A collector's expired rows are deleted as it pushes, so the
-- table holds a few rows per collector.
CREATE TABLE push_token_uses (
    collector_id UUID        NOT NULL,
    jti          UUID        NOT NULL,
    expires_at   TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (collector_id, jti)
);
