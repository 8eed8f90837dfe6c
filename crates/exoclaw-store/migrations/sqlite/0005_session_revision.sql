-- exoclaw store, schema version 5 (SQLite): each session's revision.
--
-- Every write that changes a session's messages (a turn's commit, clearing it) adds one to its
-- revision, in the same transaction. A runtime that keeps a session's history in memory reads the
-- revision with the session (under the session's lock) and reads the messages again only when it
-- moved: when another process wrote the session since. Revision 0 means never written, so no
-- messages: sessions that have messages start at 1.

ALTER TABLE sessions ADD COLUMN revision INTEGER NOT NULL DEFAULT 0;

UPDATE sessions SET revision = 1
    WHERE EXISTS (SELECT 1 FROM messages m WHERE m.session_id = sessions.id);
