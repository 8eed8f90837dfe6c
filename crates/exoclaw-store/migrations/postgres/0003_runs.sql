-- exoclaw store, schema version 3 (PostgreSQL): checkpoints of turns in progress, and who holds
-- each session's lock.
--
-- `runs`: one row per session with a turn under way: the agent's run (exoclaw_core::Run) as JSON,
-- replaced after every step of the turn and deleted in the transaction that commits the turn's
-- messages. A row that is still here when no process runs the turn is an interrupted turn, to
-- resume or discard. Deleting the session deletes its run.

CREATE TABLE runs (
    session_id  uuid        NOT NULL PRIMARY KEY REFERENCES sessions (id) ON DELETE CASCADE,
    -- `json`, not `jsonb`, for the reasons given for `messages.parts`: the text stays as written.
    run         json        NOT NULL,
    saved_at    timestamptz NOT NULL
);

-- `interrupted_sessions`: the most recently saved first.
CREATE INDEX runs_by_saved ON runs (saved_at DESC, session_id DESC);

-- `session_locks`: who holds a session's lock, so that a process refused it can say which. The lock
-- itself is a session-level advisory lock on the holder's own connection (the server releases it
-- when that connection ends, however the process ended); a row counts only while the backend it
-- names holds the advisory lock, so a row left by a killed process is ignored and later replaced.
-- No foreign key: a session may be locked before it is created. (SQLite keeps the same details in
-- the lock files beside the database.)
CREATE TABLE session_locks (
    session_id   uuid        NOT NULL PRIMARY KEY,
    -- pg_backend_pid() of the connection that holds the advisory lock.
    backend_pid  integer     NOT NULL,
    -- `pid N (exoclaw chat) on HOST since TIME`, for the message of a process refused the lock.
    holder       text        NOT NULL,
    since        timestamptz NOT NULL
);
