-- exoclaw store, schema version 1 (PostgreSQL).
--
-- Never edit a migration that has shipped: databases record its checksum and refuse to open with a
-- changed one. Add the next file (0002_….sql) and list it in src/postgres.rs.

CREATE TABLE sessions (
    id          uuid        NOT NULL PRIMARY KEY,
    -- The routing key: either all four parts or none.
    agent       text,
    channel     text,
    account     text,
    peer        text,
    title       text,
    model       text,
    created_at  timestamptz NOT NULL,
    updated_at  timestamptz NOT NULL,
    CHECK ((agent IS NULL) = (channel IS NULL)
       AND (agent IS NULL) = (account IS NULL)
       AND (agent IS NULL) = (peer IS NULL))
);

-- `list_sessions`: most recently updated first.
CREATE INDEX sessions_by_updated ON sessions (updated_at DESC, id DESC);
-- `session_by_key`: the most recent session of a conversation.
CREATE INDEX sessions_by_key ON sessions (agent, channel, account, peer, updated_at DESC, id DESC)
    WHERE agent IS NOT NULL;

CREATE TABLE messages (
    id          uuid        NOT NULL PRIMARY KEY,
    session_id  uuid        NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
    -- 1, 2, 3, … within a session, in commit order.
    seq         bigint      NOT NULL,
    role        text        NOT NULL,
    -- `json`, not `jsonb`: json keeps the text exactly as serialised. jsonb would reorder object keys
    -- (tool-call arguments would reach the model in another order after a reload, which also breaks
    -- providers' prompt caches) and rejects `\u0000`, which tool output can contain.
    parts       json        NOT NULL,
    created_at  timestamptz NOT NULL,
    UNIQUE (session_id, seq)
);

-- Usage is a ledger: it outlives the sessions it served (deleting a session sets `session_id` to
-- NULL), so budgets and cost reports stay right. No foreign key, so that a record arriving for a
-- session deleted meanwhile is still kept.
CREATE TABLE usage (
    id                  bigint           GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at                  timestamptz      NOT NULL,
    session_id          uuid,
    agent               text             NOT NULL,
    provider            text             NOT NULL,
    model               text             NOT NULL,
    -- NULL: the provider did not say (never silently 0).
    input_tokens        bigint,
    output_tokens       bigint,
    cache_read_tokens   bigint,
    cache_write_tokens  bigint,
    latency_ms          bigint           NOT NULL,
    ttft_ms             bigint,
    cost_usd            double precision,
    estimated           boolean          NOT NULL DEFAULT false
);

CREATE INDEX usage_by_time ON usage (at, id);
CREATE INDEX usage_by_session ON usage (session_id) WHERE session_id IS NOT NULL;
