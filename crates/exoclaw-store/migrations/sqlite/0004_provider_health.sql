-- exoclaw store, schema version 4 (SQLite): the gateway's latest health check of each provider.
--
-- A running gateway checks keyless provider servers (ollama, llama.cpp, …) every 30 seconds and
-- records each check here, replacing the provider's previous one, so that `exoclaw providers
-- status`, another process, can show what the gateway last saw.

CREATE TABLE provider_health (
    -- The provider instance's name (`[providers.NAME]`).
    provider    TEXT    NOT NULL PRIMARY KEY,
    -- When the check ended (microseconds since the Unix epoch, like every time in this schema).
    checked_at  INTEGER NOT NULL,
    -- Why it failed; NULL when the provider answered.
    error       TEXT
) WITHOUT ROWID;
