-- exoclaw store, schema version 7 (PostgreSQL): the audit log of tool permissions.
--
-- One row per entry (exoclaw_core::AuditEntry): a permission decision (which rule or default
-- decided, in which scope and file), a person's answer, or a call that changed something or
-- reached outside, with its outcome. Rows are only ever appended. Arguments are never stored, only
-- the resources a call touches, secrets redacted. No foreign key to `sessions`: deleting a session
-- keeps its audit trail.

CREATE TABLE audit_log (
    id          bigserial   PRIMARY KEY,
    at          timestamptz NOT NULL,
    -- NULL outside a session.
    session_id  uuid,
    tool        text        NOT NULL,
    -- `decided`, `answered` or `executed`.
    kind        text        NOT NULL,
    -- `json`, not `jsonb`: the entry stays as written.
    entry       json        NOT NULL
);

-- `exoclaw audit --session` and `--tool`: the newest first.
CREATE INDEX audit_log_by_session ON audit_log (session_id, id);
CREATE INDEX audit_log_by_tool ON audit_log (tool, id);
