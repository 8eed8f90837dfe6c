-- exoclaw store, schema version 2 (PostgreSQL): the gateway's virtual keys.
--
-- The key itself is never stored: only its SHA-256 (`hash`) and its first characters (`prefix`),
-- to tell keys apart in lists.

CREATE TABLE api_keys (
    id          uuid             NOT NULL PRIMARY KEY,
    name        text             NOT NULL,
    hash        text             NOT NULL UNIQUE,
    prefix      text             NOT NULL,
    -- Models it may use, names and `*` patterns; empty: every model.
    models      text[]           NOT NULL DEFAULT '{}',
    budget_usd  double precision,
    spent_usd   double precision NOT NULL DEFAULT 0,
    rpm         integer,
    created_at  timestamptz      NOT NULL,
    revoked_at  timestamptz
);

-- A name names one live key; revoked keys keep theirs.
CREATE UNIQUE INDEX api_keys_live_name ON api_keys (name) WHERE revoked_at IS NULL;
