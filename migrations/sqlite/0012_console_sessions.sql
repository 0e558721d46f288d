-- Console sessions: a browser signed in with an API key. The cookie holds a random 256-bit id;
-- only its SHA-256 is stored, so a copy of the database opens no session. A session carries
-- the role of its API key, read on every request (a revoked key ends its sessions at once), and
-- ends at `expires_at` or at sign-out (the row is deleted). Expired rows are removed whenever a
-- session is opened.
CREATE TABLE console_sessions (
    id_hash    TEXT PRIMARY KEY,
    org_id     BLOB NOT NULL REFERENCES organizations (id),
    api_key_id BLOB NOT NULL REFERENCES api_keys (id),
    created_at TEXT NOT NULL,
    expires_at TEXT NOT NULL
) STRICT;
CREATE INDEX console_sessions_expires_idx ON console_sessions (expires_at);
