-- Identity: users and their login sessions (keel issue 5).
-- users.email is stored lower-cased (unique, so case-insensitively unique); password_hash is
-- an Argon2id PHC string; roles is a JSON array of role names.
CREATE TABLE users (
    id            TEXT PRIMARY KEY,
    email         TEXT NOT NULL UNIQUE CHECK (length(email) BETWEEN 3 AND 254
                                              AND email = lower(email)),
    name          TEXT NOT NULL CHECK (length(name) BETWEEN 1 AND 100),
    password_hash TEXT NOT NULL,
    roles         TEXT NOT NULL DEFAULT '["user"]',
    created_at_ms INTEGER NOT NULL,
    updated_at_ms INTEGER NOT NULL
);
-- One row per login.  id is the "sid" claim of the tokens issued for it.  refresh_token_hash
-- is keel_token_hash() of the current refresh token (HMAC-SHA256 under a key derived from
-- REFRESH_TOKEN_SIGNING_KEY); previous_token_hash the one it replaced; rotations counts the
-- refreshes.  A revoked session (revoked_at_ms set) accepts neither its refresh token nor
-- its access tokens.
CREATE TABLE sessions (
    id                  TEXT PRIMARY KEY,
    user_id             TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    refresh_token_hash  TEXT NOT NULL,
    previous_token_hash TEXT,
    rotations           INTEGER NOT NULL DEFAULT 0,
    device_fingerprint  TEXT NOT NULL DEFAULT '',
    ip_address          TEXT NOT NULL DEFAULT '',
    created_at_ms       INTEGER NOT NULL,
    last_used_at_ms     INTEGER NOT NULL,
    expires_at_ms       INTEGER NOT NULL,
    revoked_at_ms       INTEGER,
    revoke_reason       TEXT
);
CREATE INDEX sessions_user ON sessions (user_id, created_at_ms);
