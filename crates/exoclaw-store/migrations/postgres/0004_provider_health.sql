-- exoclaw store, schema version 4 (PostgreSQL): the gateway's latest health check of each provider.
--
-- A running gateway checks keyless provider servers (ollama, llama.cpp, …) every 30 seconds and
-- records each check here, replacing the provider's previous one, so that `exoclaw providers
-- status`, another process, can show what the gateway last saw. Several gateways sharing the
-- database overwrite each other's checks: the row is the latest check by any of them.

CREATE TABLE provider_health (
    -- The provider instance's name (`[providers.NAME]`).
    provider    text        NOT NULL PRIMARY KEY,
    checked_at  timestamptz NOT NULL,
    -- Why it failed; NULL when the provider answered.
    error       text
);
