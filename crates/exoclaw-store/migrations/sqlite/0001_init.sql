-- exoclaw store, schema version 1 (SQLite).
--
-- Never edit a migration that has shipped: databases record its checksum and refuse to open with a
-- changed one. Add the next file (0002_….sql) and list it in src/sqlite.rs.
--
-- Ids are UUIDs as lowercase hyphenated text. Timestamps are INTEGER microseconds since the Unix
-- epoch (UTC): they sort correctly, compare cheaply and keep the same precision as Postgres'
-- timestamptz, so both backends hand back identical values.

CREATE TABLE sessions (
    id          TEXT    NOT NULL PRIMARY KEY,
    -- The routing key: either all four parts or none.
    agent       TEXT,
    channel     TEXT,
    account     TEXT,
    peer        TEXT,
    title       TEXT,
    model       TEXT,
    created_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL,
    CHECK ((agent IS NULL) = (channel IS NULL)
       AND (agent IS NULL) = (account IS NULL)
       AND (agent IS NULL) = (peer IS NULL))
);

-- `list_sessions`: most recently updated first.
CREATE INDEX sessions_by_updated ON sessions (updated_at, id);
-- `session_by_key`: the most recent session of a conversation.
CREATE INDEX sessions_by_key ON sessions (agent, channel, account, peer, updated_at, id)
    WHERE agent IS NOT NULL;

CREATE TABLE messages (
    id          TEXT    NOT NULL PRIMARY KEY,
    session_id  TEXT    NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
    -- 1, 2, 3, … within a session, in commit order.
    seq         INTEGER NOT NULL,
    role        TEXT    NOT NULL,
    -- The message's parts as a JSON array, byte for byte as serialised.
    parts       TEXT    NOT NULL,
    created_at  INTEGER NOT NULL,
    UNIQUE (session_id, seq)
);

-- Usage is a ledger: it outlives the sessions it served (deleting a session sets `session_id` to
-- NULL), so budgets and cost reports stay right. No foreign key, so that a record arriving for a
-- session deleted meanwhile is still kept.
CREATE TABLE usage (
    id                  INTEGER NOT NULL PRIMARY KEY,
    at                  INTEGER NOT NULL,
    session_id          TEXT,
    agent               TEXT    NOT NULL,
    provider            TEXT    NOT NULL,
    model               TEXT    NOT NULL,
    -- NULL: the provider did not say (never silently 0).
    input_tokens        INTEGER,
    output_tokens       INTEGER,
    cache_read_tokens   INTEGER,
    cache_write_tokens  INTEGER,
    latency_ms          INTEGER NOT NULL,
    ttft_ms             INTEGER,
    cost_usd            REAL,
    estimated           INTEGER NOT NULL DEFAULT 0
);

CREATE INDEX usage_by_time ON usage (at, id);
CREATE INDEX usage_by_session ON usage (session_id) WHERE session_id IS NOT NULL;
