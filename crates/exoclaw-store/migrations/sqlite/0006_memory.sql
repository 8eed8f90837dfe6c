-- exoclaw store, schema version 6 (SQLite): long-term memory (exoclaw_core::memory).
--
-- An index over sessions that can be rebuilt from them, so no foreign key to `sessions`: the
-- memory store may be another database than the sessions'.

-- Indexed entries: messages, summaries and notes, searched by full text and by embedding.
CREATE TABLE memory_entries (
    -- AUTOINCREMENT: an id is never given twice, not even after the newest entry is deleted, so
    -- that the largest id and a count (`memory_vector_state`) tell a cache of embeddings whether
    -- rows were added since it loaded.
    id          INTEGER NOT NULL PRIMARY KEY AUTOINCREMENT,
    owner       TEXT    NOT NULL,
    session_id  TEXT    NOT NULL,
    -- 'message', 'summary' or 'note'.
    kind        TEXT    NOT NULL,
    seq         INTEGER NOT NULL,
    -- The role's serde name, for messages.
    role        TEXT,
    text        TEXT    NOT NULL,
    created_at  INTEGER NOT NULL,
    -- The embedding as little-endian f32s; NULL when none was computed.
    embedding   BLOB,
    UNIQUE (session_id, kind, seq)
);

CREATE INDEX memory_entries_by_owner ON memory_entries (owner, id);
-- `entries`: the owner's newest first.
CREATE INDEX memory_entries_by_time ON memory_entries (owner, created_at, id);

-- Full text, stemmed ("live" finds "lives"), over the entries' text without a copy of it.
CREATE VIRTUAL TABLE memory_fts USING fts5 (
    text,
    content = 'memory_entries',
    content_rowid = 'id',
    tokenize = 'porter unicode61 remove_diacritics 2'
);

CREATE TRIGGER memory_fts_insert AFTER INSERT ON memory_entries BEGIN
    INSERT INTO memory_fts (rowid, text) VALUES (new.id, new.text);
END;

CREATE TRIGGER memory_fts_delete AFTER DELETE ON memory_entries BEGIN
    INSERT INTO memory_fts (memory_fts, rowid, text) VALUES ('delete', old.id, old.text);
END;

CREATE TRIGGER memory_fts_update AFTER UPDATE OF id, text ON memory_entries BEGIN
    INSERT INTO memory_fts (memory_fts, rowid, text) VALUES ('delete', old.id, old.text);
    INSERT INTO memory_fts (rowid, text) VALUES (new.id, new.text);
END;

-- Per owner, what its entries with embeddings look like, kept by triggers: how many there are,
-- the largest id ever given to one, and how many were ever deleted or changed in place. A
-- process's cache of the owner's embeddings compares these (one primary-key lookup) before each
-- search: more rows and a larger id with nothing removed means only the new rows need loading;
-- anything removed or changed means loading them all again. So another process's writes are seen.
CREATE TABLE memory_vector_state (
    owner       TEXT    NOT NULL PRIMARY KEY,
    embedded    INTEGER NOT NULL DEFAULT 0,
    max_id      INTEGER NOT NULL DEFAULT 0,
    removed     INTEGER NOT NULL DEFAULT 0
) WITHOUT ROWID;

CREATE TRIGGER memory_vectors_insert AFTER INSERT ON memory_entries
    WHEN new.embedding IS NOT NULL BEGIN
    INSERT OR IGNORE INTO memory_vector_state (owner) VALUES (new.owner);
    UPDATE memory_vector_state SET embedded = embedded + 1, max_id = MAX(max_id, new.id)
        WHERE owner = new.owner;
END;

CREATE TRIGGER memory_vectors_delete AFTER DELETE ON memory_entries
    WHEN old.embedding IS NOT NULL BEGIN
    UPDATE memory_vector_state SET embedded = embedded - 1, removed = removed + 1
        WHERE owner = old.owner;
END;

-- exoclaw itself never updates an entry in place (it replaces it: a new id), but a change made by
-- hand must not leave caches stale.
CREATE TRIGGER memory_vectors_update AFTER UPDATE OF id, owner, embedding ON memory_entries
    WHEN old.embedding IS NOT NULL OR new.embedding IS NOT NULL BEGIN
    UPDATE memory_vector_state SET embedded = embedded - 1, removed = removed + 1
        WHERE owner = old.owner AND old.embedding IS NOT NULL;
    INSERT OR IGNORE INTO memory_vector_state (owner) VALUES (new.owner);
    UPDATE memory_vector_state
        SET embedded = embedded + 1, max_id = MAX(max_id, new.id), removed = removed + 1
        WHERE owner = new.owner AND new.embedding IS NOT NULL;
END;

-- Each session's indexing mark: one past the highest message position ever indexed. Kept apart
-- from the entries so that forgetting entries never lowers it (forgotten messages are not indexed
-- again); only resetting the session (its messages cleared or deleted) removes it.
CREATE TABLE memory_marks (
    session_id  TEXT    NOT NULL PRIMARY KEY,
    indexed     INTEGER NOT NULL
) WITHOUT ROWID;

-- Each session's rolling summary: what its first `through` messages said.
CREATE TABLE memory_summaries (
    session_id  TEXT    NOT NULL PRIMARY KEY,
    through     INTEGER NOT NULL,
    text        TEXT    NOT NULL,
    model       TEXT    NOT NULL,
    created_at  INTEGER NOT NULL
) WITHOUT ROWID;

-- Facts, with supersession: a replaced fact is kept, marked with when and by which fact.
CREATE TABLE memory_facts (
    id              INTEGER NOT NULL PRIMARY KEY,
    owner           TEXT    NOT NULL,
    subject         TEXT    NOT NULL,
    predicate       TEXT    NOT NULL,
    object          TEXT    NOT NULL,
    confidence      REAL    NOT NULL,
    -- The message it was learned from.
    source_session  TEXT,
    source_seq      INTEGER,
    learned_at      INTEGER NOT NULL,
    valid_from      INTEGER NOT NULL,
    -- NULL while current.
    invalidated_at  INTEGER,
    -- Forgetting the newer fact clears the pointer; the old one stays invalidated.
    superseded_by   INTEGER REFERENCES memory_facts (id) ON DELETE SET NULL
);

-- `record_fact`: the current facts of an owner's subject and predicate.
CREATE INDEX memory_facts_current ON memory_facts (owner, subject, predicate)
    WHERE invalidated_at IS NULL;
-- `facts`: the owner's newest first.
CREATE INDEX memory_facts_by_owner ON memory_facts (owner, learned_at, id);
-- The foreign key: finding the facts that point at a deleted one.
CREATE INDEX memory_facts_by_successor ON memory_facts (superseded_by)
    WHERE superseded_by IS NOT NULL;
