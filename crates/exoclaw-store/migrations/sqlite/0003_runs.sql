-- exoclaw store, schema version 3 (SQLite): checkpoints of turns in progress.
--
-- One row per session with a turn under way: the agent's run (exoclaw_core::Run) as JSON, replaced
-- after every step of the turn and deleted in the transaction that commits the turn's messages. A
-- row that is still here when no process runs the turn is an interrupted turn, to resume or
-- discard. Deleting the session deletes its run.

CREATE TABLE runs (
    session_id  TEXT    NOT NULL PRIMARY KEY REFERENCES sessions (id) ON DELETE CASCADE,
    -- The run as a JSON object, byte for byte as serialised.
    run         TEXT    NOT NULL,
    -- When it was last saved (microseconds since the Unix epoch, like every time in this schema).
    saved_at    INTEGER NOT NULL
) WITHOUT ROWID;

-- `interrupted_sessions`: the most recently saved first.
CREATE INDEX runs_by_saved ON runs (saved_at, session_id);
