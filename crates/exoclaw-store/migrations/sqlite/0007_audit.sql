-- exoclaw store, schema version 7 (SQLite): the audit log of tool permissions.
--
-- One row per entry (exoclaw_core::AuditEntry): a permission decision (which rule or default
-- decided, in which scope and file), a person's answer, or a call that changed something or
-- reached outside, with its outcome. Rows are only ever appended. Arguments are never stored, only
-- the resources a call touches, secrets redacted. No foreign key to `sessions`: deleting a session
-- keeps its audit trail.

CREATE TABLE audit_log (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    -- When (microseconds since the Unix epoch, like every time in this schema).
    at          INTEGER NOT NULL,
    -- The session (a UUID as text); NULL outside a session.
    session_id  TEXT,
    -- The tool called.
    tool        TEXT    NOT NULL,
    -- `decided`, `answered` or `executed`.
    kind        TEXT    NOT NULL,
    -- The whole entry as a JSON object, byte for byte as serialised.
    entry       TEXT    NOT NULL
);

-- `exoclaw audit --session` and `--tool`: the newest first.
CREATE INDEX audit_log_by_session ON audit_log (session_id, id);
CREATE INDEX audit_log_by_tool ON audit_log (tool, id);
