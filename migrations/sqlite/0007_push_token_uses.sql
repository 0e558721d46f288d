-- Each collector push token is accepted once: its `jti` is kept here until the token expires,
-- so a token read off the wire (by a TLS-inspecting proxy, say) cannot push a second batch.
-- A collector's expired rows are deleted as it pushes, so the table holds a few rows per
-- collector.
CREATE TABLE push_token_uses (
    collector_id BLOB NOT NULL,
    jti          BLOB NOT NULL,
    expires_at   TEXT NOT NULL,
    PRIMARY KEY (collector_id, jti)
);
