-- exoclaw store, schema version 9 (SQLite): entries whose embedding the embedder refused.
--
-- An embedder that rejects one entry's text (a provider answering 400 to it) would otherwise
-- fail every backfill batch that holds it. Such an entry is marked here and no longer listed as
-- waiting for an embedding; it stays found by full text. Indexing it again clears the mark (the
-- row is replaced).

ALTER TABLE memory_entries ADD COLUMN embedding_refused INTEGER NOT NULL DEFAULT 0;
