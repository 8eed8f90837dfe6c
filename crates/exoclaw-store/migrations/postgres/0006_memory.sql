-- exoclaw store, schema version 6 (PostgreSQL): long-term memory (exoclaw_core::memory).
--
-- An index over sessions that can be rebuilt from them, so no foreign key to `sessions`: the
-- memory store may be another database than the sessions'.

-- Indexed entries: messages, summaries and notes, searched by full text and by embedding.
CREATE TABLE memory_entries (
    -- An identity is never given twice, so the largest id and a count (`memory_vector_state`)
    -- tell a cache of embeddings whether rows were added since it loaded.
    id          bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    owner       text        NOT NULL,
    session_id  uuid        NOT NULL,
    -- 'message', 'summary' or 'note'.
    kind        text        NOT NULL,
    seq         bigint      NOT NULL,
    -- The role's serde name, for messages.
    role        text,
    text        text        NOT NULL,
    created_at  timestamptz NOT NULL,
    -- The embedding as little-endian f32s (no vector extension is assumed); NULL when none.
    embedding   bytea,
    -- Full text, stemmed ("live" finds "lives").
    tsv         tsvector    GENERATED ALWAYS AS (to_tsvector('english', text)) STORED,
    UNIQUE (session_id, kind, seq)
);

CREATE INDEX memory_entries_by_owner ON memory_entries (owner, id);
-- `entries`: the owner's newest first.
CREATE INDEX memory_entries_by_time ON memory_entries (owner, created_at DESC, id DESC);
CREATE INDEX memory_entries_text ON memory_entries USING gin (tsv);

-- Per owner, what its entries with embeddings look like, kept by a trigger: how many there are,
-- the largest id ever given to one, and how many were ever deleted or changed in place. A
-- process's cache of the owner's embeddings compares these (one primary-key lookup) before each
-- search: more rows and a larger id with nothing removed means only the new rows need loading;
-- anything removed or changed means loading them all again. So other nodes' writes are seen.
CREATE TABLE memory_vector_state (
    owner       text        NOT NULL PRIMARY KEY,
    embedded    bigint      NOT NULL DEFAULT 0,
    max_id      bigint      NOT NULL DEFAULT 0,
    removed     bigint      NOT NULL DEFAULT 0
);

-- exoclaw itself never updates an entry in place (it replaces it: a new id), but a change made by
-- hand must not leave caches stale.
CREATE FUNCTION memory_vectors_track() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP <> 'INSERT' THEN
        IF OLD.embedding IS NOT NULL THEN
            UPDATE memory_vector_state SET embedded = embedded - 1, removed = removed + 1
                WHERE owner = OLD.owner;
        END IF;
    END IF;
    IF TG_OP <> 'DELETE' THEN
        IF NEW.embedding IS NOT NULL THEN
            INSERT INTO memory_vector_state AS s (owner, embedded, max_id, removed)
                VALUES (NEW.owner, 1, NEW.id, CASE WHEN TG_OP = 'UPDATE' THEN 1 ELSE 0 END)
                ON CONFLICT (owner) DO UPDATE SET embedded = s.embedded + 1,
                    max_id = GREATEST(s.max_id, excluded.max_id), removed = s.removed + excluded.removed;
        END IF;
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER memory_vectors_track AFTER INSERT OR DELETE OR UPDATE OF id, owner, embedding
    ON memory_entries FOR EACH ROW EXECUTE FUNCTION memory_vectors_track();

-- Each session's indexing mark: one past the highest message position ever indexed. Kept apart
-- from the entries so that forgetting entries never lowers it (forgotten messages are not indexed
-- again); only resetting the session (its messages cleared or deleted) removes it.
CREATE TABLE memory_marks (
    session_id  uuid        NOT NULL PRIMARY KEY,
    indexed     bigint      NOT NULL
);

-- Each session's rolling summary: what its first `through` messages said.
CREATE TABLE memory_summaries (
    session_id  uuid        NOT NULL PRIMARY KEY,
    through     bigint      NOT NULL,
    text        text        NOT NULL,
    model       text        NOT NULL,
    created_at  timestamptz NOT NULL
);

-- Facts, with supersession: a replaced fact is kept, marked with when and by which fact.
CREATE TABLE memory_facts (
    id              bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    owner           text        NOT NULL,
    subject         text        NOT NULL,
    predicate       text        NOT NULL,
    object          text        NOT NULL,
    confidence      real        NOT NULL,
    -- The message it was learned from.
    source_session  uuid,
    source_seq      bigint,
    learned_at      timestamptz NOT NULL,
    valid_from      timestamptz NOT NULL,
    -- NULL while current.
    invalidated_at  timestamptz,
    -- Forgetting the newer fact clears the pointer; the old one stays invalidated.
    superseded_by   bigint      REFERENCES memory_facts (id) ON DELETE SET NULL
);

-- `record_fact`: the current facts of an owner's subject and predicate.
CREATE INDEX memory_facts_current ON memory_facts (owner, subject, predicate)
    WHERE invalidated_at IS NULL;
-- `facts`: the owner's newest first.
CREATE INDEX memory_facts_by_owner ON memory_facts (owner, learned_at DESC, id DESC);
-- The foreign key: finding the facts that point at a deleted one.
CREATE INDEX memory_facts_by_successor ON memory_facts (superseded_by)
    WHERE superseded_by IS NOT NULL;
