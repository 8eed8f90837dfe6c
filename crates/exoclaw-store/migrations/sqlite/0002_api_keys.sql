-- exoclaw store, schema version 2 (SQLite): the gateway's virtual keys.
--
-- The key itself is never stored: only its SHA-256 (`hash`) and its first characters (`prefix`),
-- to tell keys apart in lists.

CREATE TABLE api_keys (
    id          TEXT    NOT NULL PRIMARY KEY,
    name        TEXT    NOT NULL,
    hash        TEXT    NOT NULL UNIQUE,
    prefix      TEXT    NOT NULL,
    -- Models it may use, a JSON array of names and `*` patterns; empty: every model.
    models      TEXT    NOT NULL DEFAULT '[]',
    budget_usd  REAL,
    spent_usd   REAL    NOT NULL DEFAULT 0,
    rpm         INTEGER,
    created_at  INTEGER NOT NULL,
    revoked_at  INTEGER
);

-- A name names one live key; revoked keys keep theirs.
CREATE UNIQUE INDEX api_keys_live_name ON api_keys (name) WHERE revoked_at IS NULL;
