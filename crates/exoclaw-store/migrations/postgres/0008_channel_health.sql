-- exoclaw store, schema version 8 (PostgreSQL): what the gateway last saw of each chat channel's
-- connection.
--
-- A running gateway records each change of a connected channel's state (Discord's Gateway, the
-- KĀDI broker, Slack's Socket Mode, Telegram's long polling) here, replacing the channel's previous
-- one, so that `exoclaw channels status`, another process, can show it. Several gateways sharing
-- the database overwrite each other's states: the row is the latest report by any of them.

CREATE TABLE channel_health (
    -- The channel's name (`discord`, `kadi`, …).
    channel     text        NOT NULL PRIMARY KEY,
    connected   boolean     NOT NULL,
    -- Since when it has been in this state.
    since       timestamptz NOT NULL,
    -- What went wrong last, while it is not connected; NULL when connected.
    error       text
);
