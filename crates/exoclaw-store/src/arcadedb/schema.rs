//! The document types, properties and indexes the memory store keeps in ArcadeDB, created on
//! connect when missing. Every statement is idempotent (`IF NOT EXISTS`), so connecting to a
//! database that has them already changes nothing.
//!
//! - `MemoryEntry`: one document per indexed entry, unique on (`session`, `kind`, `seq`), with
//!   exoclaw's integer `id` (unique), a Lucene `FULL_TEXT` index on `text` with Lucene's
//!   `EnglishAnalyzer` (Porter stemming, as the SQLite store's FTS5 table has, so `lives` finds
//!   `lived`; it also drops English stop words), and the embedding as a
//!   list of floats (scored in process: ArcadeDB's vector index wants a fixed dimension per
//!   index, and entries from different embedders may differ).
//! - `MemorySummary`: one document per session (unique on `session`).
//! - `MemoryMark`: one document per session that has had messages indexed (unique on
//!   `session`): its indexing mark, one past the highest message position ever indexed, which
//!   forgetting entries never lowers.
//! - `MemoryFact`: one document per fact with its integer `id` (unique), the object stored
//!   trimmed; the owner's current facts of a subject and predicate are few, so objects are
//!   compared (case-insensitively) in process.
//! - `MemoryCounter`: one document per id sequence (`entry`, `fact`), unique on `name`. ArcadeDB
//!   has no sequences its SQL can reach over HTTP; ids are taken from these counters inside the
//!   transaction that uses them, so two writers racing for an id conflict and one retries.
//!
//! Times are stored as integer microseconds since the Unix epoch, as the SQLite store does, so
//! every backend gives back exactly the same values.

/// The full-text index on entries' text, as `SEARCH_INDEX` names it.
pub(super) const ENTRY_TEXT_INDEX: &str = "MemoryEntry[text]";

/// The statements that create the schema, in order.
pub(super) const STATEMENTS: &[&str] = &[
    "CREATE DOCUMENT TYPE MemoryEntry IF NOT EXISTS",
    "CREATE PROPERTY MemoryEntry.id IF NOT EXISTS LONG",
    "CREATE PROPERTY MemoryEntry.owner IF NOT EXISTS STRING",
    "CREATE PROPERTY MemoryEntry.session IF NOT EXISTS STRING",
    "CREATE PROPERTY MemoryEntry.kind IF NOT EXISTS STRING",
    "CREATE PROPERTY MemoryEntry.seq IF NOT EXISTS LONG",
    "CREATE PROPERTY MemoryEntry.role IF NOT EXISTS STRING",
    "CREATE PROPERTY MemoryEntry.text IF NOT EXISTS STRING",
    "CREATE PROPERTY MemoryEntry.created_at IF NOT EXISTS LONG",
    "CREATE PROPERTY MemoryEntry.embedding IF NOT EXISTS LIST",
    "CREATE PROPERTY MemoryEntry.embedding_refused IF NOT EXISTS BOOLEAN",
    "CREATE INDEX IF NOT EXISTS ON MemoryEntry (id) UNIQUE",
    "CREATE INDEX IF NOT EXISTS ON MemoryEntry (session, kind, seq) UNIQUE",
    "CREATE INDEX IF NOT EXISTS ON MemoryEntry (owner) NOTUNIQUE",
    r#"CREATE INDEX IF NOT EXISTS ON MemoryEntry (text) FULL_TEXT METADATA {"analyzer": "org.apache.lucene.analysis.en.EnglishAnalyzer"}"#,
    "CREATE DOCUMENT TYPE MemorySummary IF NOT EXISTS",
    "CREATE PROPERTY MemorySummary.session IF NOT EXISTS STRING",
    "CREATE PROPERTY MemorySummary.through IF NOT EXISTS LONG",
    "CREATE PROPERTY MemorySummary.text IF NOT EXISTS STRING",
    "CREATE PROPERTY MemorySummary.model IF NOT EXISTS STRING",
    "CREATE PROPERTY MemorySummary.created_at IF NOT EXISTS LONG",
    "CREATE INDEX IF NOT EXISTS ON MemorySummary (session) UNIQUE",
    "CREATE DOCUMENT TYPE MemoryMark IF NOT EXISTS",
    "CREATE PROPERTY MemoryMark.session IF NOT EXISTS STRING",
    "CREATE PROPERTY MemoryMark.indexed IF NOT EXISTS LONG",
    "CREATE INDEX IF NOT EXISTS ON MemoryMark (session) UNIQUE",
    "CREATE DOCUMENT TYPE MemoryFact IF NOT EXISTS",
    "CREATE PROPERTY MemoryFact.id IF NOT EXISTS LONG",
    "CREATE PROPERTY MemoryFact.owner IF NOT EXISTS STRING",
    "CREATE PROPERTY MemoryFact.subject IF NOT EXISTS STRING",
    "CREATE PROPERTY MemoryFact.predicate IF NOT EXISTS STRING",
    "CREATE PROPERTY MemoryFact.object IF NOT EXISTS STRING",
    "CREATE PROPERTY MemoryFact.confidence IF NOT EXISTS DOUBLE",
    "CREATE PROPERTY MemoryFact.source_session IF NOT EXISTS STRING",
    "CREATE PROPERTY MemoryFact.source_seq IF NOT EXISTS LONG",
    "CREATE PROPERTY MemoryFact.learned_at IF NOT EXISTS LONG",
    "CREATE PROPERTY MemoryFact.valid_from IF NOT EXISTS LONG",
    "CREATE PROPERTY MemoryFact.invalidated_at IF NOT EXISTS LONG",
    "CREATE PROPERTY MemoryFact.superseded_by IF NOT EXISTS LONG",
    "CREATE INDEX IF NOT EXISTS ON MemoryFact (id) UNIQUE",
    "CREATE INDEX IF NOT EXISTS ON MemoryFact (owner, subject, predicate) NOTUNIQUE",
    "CREATE DOCUMENT TYPE MemoryCounter IF NOT EXISTS",
    "CREATE PROPERTY MemoryCounter.name IF NOT EXISTS STRING",
    "CREATE PROPERTY MemoryCounter.value IF NOT EXISTS LONG",
    "CREATE INDEX IF NOT EXISTS ON MemoryCounter (name) UNIQUE",
];
