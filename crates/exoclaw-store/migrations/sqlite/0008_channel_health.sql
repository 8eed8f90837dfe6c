-- exoclaw store, schema version 8 (SQLite): what the gateway last saw of each chat channel's
-- connection.
--
-- A running gateway records each change of a connected channel's state (Discord's Gateway, the
-- KĀDI broker, Slack's Socket Mode, Telegram's long polling) here, replacing the channel's previous
-- one, so that `exoclaw channels status`, another process, can show it.

CREATE TABLE channel_health (
    -- The channel's name (`discord`, `kadi`, …).
    channel     TEXT    NOT NULL PRIMARY KEY,
    -- 1 when connected, 0 when not.
    connected   INTEGER NOT NULL,
    -- Since when it has been in this state (microseconds since the Unix epoch).
    since       INTEGER NOT NULL,
    -- What went wrong last, while it is not connected; NULL when connected.
    error       TEXT
) WITHOUT ROWID;
