//! The long-term memory store's traits, one per concern, and the records they keep: indexed
//! entries searched by full text and by embedding ([`MemoryIndex`]), each session's rolling
//! summary ([`SummaryStore`]) and facts with supersession ([`FactStore`]). `exoclaw-store`
//! implements them for SQLite and PostgreSQL; the ArcadeDB adapter too. How they are used —
//! what goes in a context, when archival runs, how search results are ranked — is
//! `exoclaw-memory`'s.
//!
//! The session store stays the source of truth: every message is kept there, and the memory
//! store is an index over it that can be rebuilt. An entry is keyed by its session, its kind and
//! its position, so indexing the same message twice keeps one entry.

use crate::StoreError;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use exoclaw_types::{Role, SessionId};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// What an indexed entry holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum EntryKind {
    /// A message of a session; `seq` is its position in the session (0 first).
    Message,
    /// A summary of a session's archived messages; `seq` is how many messages it covers.
    Summary,
    /// A note the agent was asked to remember (the `remember` tool); `seq` orders a session's
    /// notes.
    Note,
    /// A passage of a knowledge-base document; `session` names the document's version and `seq`
    /// orders its passages.
    Knowledge,
}

impl EntryKind {
    /// The kind's name as stored.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Message => "message",
            Self::Summary => "summary",
            Self::Note => "note",
            Self::Knowledge => "knowledge",
        }
    }

    /// The kind stored as `name`.
    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "message" => Some(Self::Message),
            "summary" => Some(Self::Summary),
            "note" => Some(Self::Note),
            "knowledge" => Some(Self::Knowledge),
            _ => None,
        }
    }
}

/// An entry to index.
#[derive(Debug, Clone, PartialEq)]
pub struct NewEntry {
    /// Whose memory it is: the user a session's key names (its peer), or `local`.
    pub owner: String,
    /// The session it comes from.
    pub session: SessionId,
    /// What it holds.
    pub kind: EntryKind,
    /// Its position (see [`EntryKind`]); with the session and the kind, its identity.
    pub seq: u64,
    /// Who wrote it, for messages.
    pub role: Option<Role>,
    /// Its text, as searched and as shown.
    pub text: String,
    /// When it was written.
    pub created_at: DateTime<Utc>,
    /// Its embedding, when an embedder was available.
    pub embedding: Option<Vec<f32>>,
}

/// An indexed entry, as found.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct MemoryEntry {
    /// The store's id for it.
    pub id: i64,
    /// Whose memory it is.
    pub owner: String,
    /// The session it comes from.
    pub session: SessionId,
    /// What it holds.
    pub kind: EntryKind,
    /// Its position (see [`EntryKind`]).
    pub seq: u64,
    /// Who wrote it, for messages.
    pub role: Option<Role>,
    /// Its text.
    pub text: String,
    /// When it was written.
    pub created_at: DateTime<Utc>,
}

/// An entry with how well it matched.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScoredEntry {
    /// The entry.
    pub entry: MemoryEntry,
    /// Higher is better. Full text: the BM25 relevance as a positive number (SQLite's `bm25()`
    /// negated; PostgreSQL's `ts_rank`). Embeddings: the cosine similarity.
    pub score: f32,
}

/// Which entries [`MemoryIndex::forget`] removes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ForgetEntries {
    /// These entries, by id.
    Ids(Vec<i64>),
    /// Every entry of a session.
    Session(SessionId),
    /// Every entry whose text contains this (case-insensitively).
    Containing(String),
}

/// Entries searched by full text and by embedding.
#[async_trait]
pub trait MemoryIndex: Send + Sync {
    /// Adds `entries`, replacing any with the same session, kind and `seq`. All or none.
    async fn index(&self, entries: &[NewEntry]) -> Result<(), StoreError>;

    /// How many of the session's messages are indexed: the `seq` the next one to index has
    /// (one past the highest message ever indexed; 0 for none). A mark kept apart from the
    /// entries: [`forget`](Self::forget) never lowers it, so forgotten messages are not indexed
    /// again; only [`reset_session`](Self::reset_session) sets it back to 0.
    async fn indexed_messages(&self, session: SessionId) -> Result<u64, StoreError>;

    /// Forgets everything derived from the session's messages — its entries, its summary and its
    /// indexing mark — for when the messages themselves are cleared or deleted: the session's
    /// memory starts over. Facts learned from it are kept (they belong to the user).
    async fn reset_session(&self, session: SessionId) -> Result<(), StoreError>;

    /// The owner's entries that match `query`'s words, best first, at most `limit`. The query is
    /// plain text: the store turns it into its own query language, so no input is a syntax error.
    async fn search_text(
        &self,
        owner: &str,
        query: &str,
        limit: usize,
    ) -> Result<Vec<ScoredEntry>, StoreError>;

    /// The owner's entries whose embeddings are nearest `embedding` (cosine), best first, at most
    /// `limit`. Entries without an embedding are not considered.
    async fn search_embedding(
        &self,
        owner: &str,
        embedding: &[f32],
        limit: usize,
    ) -> Result<Vec<ScoredEntry>, StoreError>;

    /// The owner's entries, newest first, at most `limit` (for export and listing).
    async fn entries(&self, owner: &str, limit: usize) -> Result<Vec<MemoryEntry>, StoreError>;

    /// Removes the owner's entries that `which` names; gives how many went.
    async fn forget(&self, owner: &str, which: &ForgetEntries) -> Result<u64, StoreError>;

    /// Entries of every owner that have no embedding (indexed while no embedder was configured,
    /// or while it failed), oldest first, at most `limit`: what
    /// [`embed_entries`](Self::embed_entries) is to be given. Entries whose embedding was
    /// [refused](Self::refuse_embeddings) are not among them.
    async fn unembedded(&self, limit: usize) -> Result<Vec<MemoryEntry>, StoreError>;

    /// Marks the entries named by id that have no embedding as refused by the embedder (it
    /// rejected their text, not a passing failure), so that [`unembedded`](Self::unembedded)
    /// no longer lists them: they stay found by full text. Indexing an entry again (same session,
    /// kind and position) clears the mark. Gives how many were marked.
    async fn refuse_embeddings(&self, ids: &[i64]) -> Result<u64, StoreError>;

    /// Gives each entry named by id in `embeddings` that has no embedding the one paired with it:
    /// the entry is replaced by itself with the embedding, under a new id (as
    /// [`index`](Self::index) replaces entries: the ids of embedded entries only grow, which
    /// caches of embeddings rely on). An entry gone meanwhile (forgotten) or embedded already is
    /// left as it is. Gives how many were embedded. All or none.
    async fn embed_entries(&self, embeddings: &[(i64, Vec<f32>)]) -> Result<u64, StoreError>;
}

/// A session's rolling summary: what its first `through` messages said.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Summary {
    /// The session.
    pub session: SessionId,
    /// How many of the session's messages (from the first) it covers.
    pub through: u64,
    /// The summary.
    pub text: String,
    /// The `provider/model` that wrote it.
    pub model: String,
    /// When it was written.
    pub created_at: DateTime<Utc>,
}

/// Sessions' rolling summaries, one current per session.
#[async_trait]
pub trait SummaryStore: Send + Sync {
    /// Stores `summary` as its session's current one, unless the current one covers as many
    /// messages or more (a slower archival finishing late changes nothing); gives whether it
    /// was stored.
    async fn save_summary(&self, summary: &Summary) -> Result<bool, StoreError>;

    /// The session's current summary.
    async fn summary(&self, session: SessionId) -> Result<Option<Summary>, StoreError>;
}

/// A fact to record.
#[derive(Debug, Clone, PartialEq)]
pub struct NewFact {
    /// Whose memory it is.
    pub owner: String,
    /// What it is about (`user`, a person, a project).
    pub subject: String,
    /// The relation, in `snake_case` (`lives_in`, `works_at`, `likes`).
    pub predicate: String,
    /// The value.
    pub object: String,
    /// How sure the extraction was, 0 to 1.
    pub confidence: f32,
    /// Whether the subject has one value of this predicate at a time, so a new value supersedes
    /// the current one (`lives_in`), or may have many (`likes`).
    pub single_valued: bool,
    /// The message it was learned from: its session and position.
    pub source: Option<(SessionId, u64)>,
    /// When it became true (when it was said, unless the text said otherwise).
    pub valid_from: DateTime<Utc>,
}

/// A recorded fact.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Fact {
    /// The store's id for it.
    pub id: i64,
    /// Whose memory it is.
    pub owner: String,
    /// What it is about.
    pub subject: String,
    /// The relation.
    pub predicate: String,
    /// The value.
    pub object: String,
    /// How sure the extraction was, 0 to 1.
    pub confidence: f32,
    /// The message it was learned from.
    pub source: Option<(SessionId, u64)>,
    /// When it was recorded.
    pub learned_at: DateTime<Utc>,
    /// When it became true.
    pub valid_from: DateTime<Utc>,
    /// When a newer fact replaced it; `None` while it is current.
    pub invalidated_at: Option<DateTime<Utc>>,
    /// The fact that replaced it.
    pub superseded_by: Option<i64>,
}

impl Fact {
    /// Whether nothing has replaced it.
    pub fn is_current(&self) -> bool {
        self.invalidated_at.is_none()
    }
}

/// What recording a fact did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FactRecorded {
    /// It is new; these current facts (same owner, subject and single-valued predicate, another
    /// object) were marked superseded by it.
    New {
        /// The new fact's id.
        id: i64,
        /// The facts it replaced.
        superseded: Vec<i64>,
    },
    /// The same fact is current already; its confidence was raised to the new one's if higher.
    Known {
        /// The current fact's id.
        id: i64,
    },
}

/// Facts, with supersession: an old value is kept, marked, never deleted unless forgotten.
#[async_trait]
pub trait FactStore: Send + Sync {
    /// Records `fact` in one transaction (see [`FactRecorded`]). Objects compare
    /// case-insensitively.
    async fn record_fact(&self, fact: &NewFact) -> Result<FactRecorded, StoreError>;

    /// The owner's facts, current ones only or superseded ones too, newest first.
    async fn facts(&self, owner: &str, include_superseded: bool) -> Result<Vec<Fact>, StoreError>;

    /// Deletes the owner's fact `id` (and the record of what it superseded); gives whether it
    /// was there.
    async fn forget_fact(&self, owner: &str, id: i64) -> Result<bool, StoreError>;
}

/// A whole long-term memory store: every concern, on one database.
pub trait MemoryStore: MemoryIndex + SummaryStore + FactStore + std::fmt::Debug {}

impl<T: MemoryIndex + SummaryStore + FactStore + std::fmt::Debug> MemoryStore for T {}
