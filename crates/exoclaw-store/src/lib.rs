//! exoclaw's storage: sessions, their messages and metered usage, in SQLite (the default, one file
//! on the machine) or PostgreSQL (shared by several exoclaw nodes), behind the
//! [`SessionStore`], [`UsageStore`], [`KeyStore`], [`RunStore`], [`SessionLocks`],
//! [`ProviderHealthStore`], [`ChannelHealthStore`] and [`AuditLog`] traits of `exoclaw-core`; and long-term memory behind its
//! [`MemoryIndex`], [`SummaryStore`] and [`FactStore`] ([`MemoryStore`]: all three).
//!
//! [`Store::open`] takes the configured `storage.url`: `sqlite://PATH`, `sqlite::memory:`, a plain
//! file path, or `postgres://…` / `postgresql://…`. Opening creates what is missing (the SQLite file
//! and its directory; the tables in either database) and brings the schema up to date with the
//! migrations embedded in the binary (`migrations/sqlite`, `migrations/postgres`).
//!
//! # Schema
//!
//! The same tables in both databases:
//!
//! - `sessions`: id (a UUIDv7), the optional routing key as four nullable columns (so a conversation
//!   is found through an index, not by parsing a string), title, model, created and updated times.
//! - `messages`: one row per message, ordered by a per-session `seq` (`UNIQUE(session_id, seq)`),
//!   with the parts as JSON text exactly as serialised. Parts are stored whole rather than in
//!   tables of their own: they are always read back whole, in order, and new part kinds then need
//!   no migration. Deleting a session deletes its messages (`ON DELETE CASCADE`).
//! - `usage`: one row per model call. It is a ledger: deleting a session keeps its usage, with
//!   `session_id` set to NULL, so budgets and cost reports stay right. Unreported token counts are
//!   NULL, never 0.
//! - `api_keys`: the gateway's virtual keys, by hash.
//! - `runs`: the checkpoint of each turn in progress ([`RunStore`]), one row per session, replaced
//!   after every step and deleted by the commit of the turn; a row left over is an interrupted
//!   turn.
//! - `provider_health`: the latest health check of each provider by a running gateway
//!   ([`ProviderHealthStore`]), one row per provider, for `exoclaw providers status`.
//! - `channel_health`: the latest state of each chat channel connection of a running gateway
//!   ([`ChannelHealthStore`]), one row per channel, for `exoclaw channels status`.
//! - `memory_entries`: long-term memory's index ([`MemoryIndex`]): messages, summaries and notes,
//!   one row per (session, kind, seq), with the owner, the text and the embedding (little-endian
//!   f32s in a BLOB / `bytea`; no vector extension). No foreign key to `sessions`: the memory can
//!   live in another database, and it is an index that can be rebuilt from the sessions.
//!   Re-indexing an entry replaces its row (a new id). Full text: an FTS5 table over the text
//!   (`memory_fts`, external content, Porter stemming, kept by triggers) in SQLite; a generated
//!   `tsvector` column with a GIN index in PostgreSQL. Embedding search is done in process over a
//!   cache of each owner's vectors (`memory_vectors.rs`), checked before each search against
//!   `memory_vector_state` (per owner: embedded rows, largest id, removals; kept by triggers), so
//!   other processes' writes are seen.
//! - `memory_summaries`: each session's rolling summary ([`SummaryStore`]), replaced only by one
//!   that covers more messages.
//! - `audit_log`: the permission audit trail ([`AuditLog`]): every decision, answer and executed
//!   call that changed something or reached out, one row per entry with the entry as JSON and its
//!   time, session and tool as columns for the listing's filters. Appended only; no foreign key, so
//!   a deleted session keeps its trail.
//! - `memory_facts`: facts ([`FactStore`]), with supersession: a new value of a single-valued
//!   predicate marks the current one `invalidated_at` and `superseded_by`, never deletes it.
//!
//! PostgreSQL also has `session_locks`, saying who holds each session's lock; SQLite keeps that in
//! the lock files beside the database ([`SessionLocks`]: OS file locks in `<database>.locks/`, or
//! advisory locks in PostgreSQL).
//!
//! The SQL the two backends share is written once (`sql.rs`); [`Store`] hands every trait method
//! to its backend through one macro.
//!
//! SQLite stores UUIDs as text and times as integer microseconds since the Unix epoch; Postgres
//! uses `uuid`, `timestamptz`, `bigint` and `json` (not `jsonb`, which would reorder the keys of
//! tool-call arguments). Either way times are kept to the microsecond, so both backends give back
//! exactly the same values.
//!
//! # Durability
//!
//! [`SessionStore::commit_turn`] writes a turn's messages and usage in one transaction: after a
//! crash either the whole turn is there or none of it. SQLite runs in WAL mode with
//! `synchronous = NORMAL`: a crashed or killed process loses nothing that was committed; a power
//! loss or OS crash may lose the last few transactions, but never leaves the file corrupt. (FULL
//! would sync on every commit, several milliseconds on most disks, for turns that took seconds of
//! model time to produce and can be asked again.) Postgres durability is the server's.

mod arcadedb;
mod codec;
mod lock;
mod memory;
mod memory_vectors;
mod postgres;
mod redact;
mod sql;
mod sqlite;

use std::path::Path;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use exoclaw_core::Run;
pub use exoclaw_core::{
    AuditEntry, AuditLog, AuditQuery, ChannelHealth, ChannelHealthStore, EntryKind, Fact, FactRecorded,
    FactStore, ForgetEntries, KeyStore, MemoryEntry, MemoryIndex, MemoryStore, NewApiKey, NewEntry, NewFact,
    NewSession, ProviderHealth, ProviderHealthStore, RunStore, ScoredEntry, SessionLease, SessionLocks,
    SessionStore, StoreError, StoreErrorSource, Summary, SummaryStore, UsageStore,
};
use exoclaw_types::{ApiKey, Message, SessionId, SessionInfo, SessionKey, UsageRecord};

pub use arcadedb::ArcadeDbMemory;
pub use postgres::PgStore;
pub use redact::redact_url;
pub use sqlite::SqliteStore;

/// A store on whichever database the configured URL names.
#[derive(Debug, Clone)]
pub enum Store {
    /// An SQLite file (or in-memory database) on this machine.
    Sqlite(SqliteStore),
    /// A PostgreSQL database.
    Postgres(PgStore),
}

impl Store {
    /// Opens the store at `url`: `sqlite://PATH`, `sqlite:PATH`, `sqlite::memory:`, a plain file
    /// path, or `postgres://USER:PASSWORD@HOST:PORT/DATABASE` (`postgresql://` too). Creates what is
    /// missing and migrates the schema. Errors say which database failed (passwords masked) and what
    /// to do.
    pub async fn open(url: &str) -> Result<Self, StoreError> {
        match StorageUrl::parse(url) {
            StorageUrl::Postgres(url) => Ok(Self::Postgres(PgStore::connect(url).await?)),
            StorageUrl::Sqlite(url) => Ok(Self::Sqlite(SqliteStore::open_url(url).await?)),
            StorageUrl::Memory => Ok(Self::Sqlite(SqliteStore::open_in_memory().await?)),
            StorageUrl::File(path) => Ok(Self::Sqlite(SqliteStore::open(path).await?)),
            StorageUrl::Empty | StorageUrl::Unsupported(_) => Err(Self::unusable(url)),
        }
    }

    /// Checks that `url` is one [`Store::open`] can use, without opening anything: an empty or
    /// unsupported URL, or a malformed PostgreSQL one, is the error `open` would give. Gives
    /// whether it names a database server (PostgreSQL), which may be down for a while, rather
    /// than a local SQLite database.
    pub fn check_url(url: &str) -> Result<bool, StoreError> {
        match StorageUrl::parse(url) {
            StorageUrl::Postgres(url) => PgStore::options(url).map(|_| true),
            StorageUrl::Sqlite(_) | StorageUrl::Memory | StorageUrl::File(_) => Ok(false),
            StorageUrl::Empty | StorageUrl::Unsupported(_) => Err(Self::unusable(url)),
        }
    }

    /// The error [`Store::open`] gives for an empty or unsupported `url`.
    fn unusable(url: &str) -> StoreError {
        match StorageUrl::parse(url) {
            StorageUrl::Unsupported(scheme) => StoreError::open(format!(
                "storage URL scheme {scheme}:// is not supported; use a file path, sqlite://PATH or \
                 postgres://…"
            )),
            _ => StoreError::open(
                "the storage URL is empty; set storage.url to a file path, sqlite://PATH or postgres://…",
            ),
        }
    }

    /// Opens the store at `url` like [`Store::open`], but only if it exists: `None` for an SQLite
    /// file that is not there, which is then left uncreated (for commands that only read, such
    /// as `exoclaw providers status`). A PostgreSQL database or an in-memory one is always opened.
    pub async fn open_existing(url: &str) -> Result<Option<Self>, StoreError> {
        let file = match StorageUrl::parse(url) {
            StorageUrl::Sqlite(url) => sqlite::file_of_url(url),
            StorageUrl::File(path) => Some(path.to_path_buf()),
            _ => None,
        };
        match file {
            Some(path) if !path.exists() => Ok(None),
            _ => Self::open(url).await.map(Some),
        }
    }

    /// Where the data lives: the SQLite file, or the Postgres URL with its password masked.
    pub fn location(&self) -> &str {
        match self {
            Self::Sqlite(store) => store.location(),
            Self::Postgres(store) => store.location(),
        }
    }

    /// Closes every connection (for SQLite, checkpointing the WAL into the main file). Calls after
    /// this fail.
    pub async fn close(&self) {
        match self {
            Self::Sqlite(store) => store.close().await,
            Self::Postgres(store) => store.close().await,
        }
    }
}

/// Implements store traits for [`Store`] by handing each call to the backend it holds, so every
/// method is forwarded by the same two lines. A method left out of a list would silently run the
/// trait's default (where it has one) instead of the backend's, so each list names every method
/// of its trait.
macro_rules! forward_to_backend {
    ($(
        $trait:ident {
            $(fn $method:ident(&self $(, $arg:ident: $ty:ty)*) -> $ret:ty;)+
        }
    )+) => {
        $(
            #[async_trait]
            impl $trait for Store {
                $(
                    async fn $method(&self $(, $arg: $ty)*) -> $ret {
                        match self {
                            Self::Sqlite(store) => store.$method($($arg),*).await,
                            Self::Postgres(store) => store.$method($($arg),*).await,
                        }
                    }
                )+
            }
        )+
    };
}

forward_to_backend! {
    SessionStore {
        fn create_session(&self, new: NewSession) -> Result<SessionInfo, StoreError>;
        fn session(&self, id: SessionId) -> Result<Option<SessionInfo>, StoreError>;
        fn session_by_key(&self, key: &SessionKey) -> Result<Option<SessionInfo>, StoreError>;
        fn list_sessions(&self, limit: u32) -> Result<Vec<SessionInfo>, StoreError>;
        fn messages(&self, id: SessionId) -> Result<Vec<Message>, StoreError>;
        fn commit_turn(
            &self,
            id: SessionId,
            messages: &[Message],
            usage: &[UsageRecord],
            model: Option<&str>
        ) -> Result<(), StoreError>;
        fn clear_session(&self, id: SessionId) -> Result<(), StoreError>;
        fn delete_session(&self, id: SessionId) -> Result<bool, StoreError>;
    }
    UsageStore {
        fn record_usage(&self, record: &UsageRecord) -> Result<(), StoreError>;
        fn record_usage_batch(&self, records: &[UsageRecord]) -> Result<(), StoreError>;
        fn usage_since(&self, since: DateTime<Utc>) -> Result<Vec<UsageRecord>, StoreError>;
    }
    KeyStore {
        fn create_key(&self, new: NewApiKey) -> Result<ApiKey, StoreError>;
        fn list_keys(&self) -> Result<Vec<ApiKey>, StoreError>;
        fn key_by_hash(&self, hash: &str) -> Result<Option<ApiKey>, StoreError>;
        fn revoke_key(&self, name_or_id: &str) -> Result<bool, StoreError>;
        fn add_key_spend(&self, id: &str, usd: f64) -> Result<(), StoreError>;
    }
    RunStore {
        fn save_run(&self, session: SessionId, run: &Run) -> Result<(), StoreError>;
        fn interrupted_run(&self, session: SessionId) -> Result<Option<Run>, StoreError>;
        fn interrupted_sessions(&self) -> Result<Vec<SessionId>, StoreError>;
        fn discard_run(&self, session: SessionId) -> Result<(), StoreError>;
    }
    SessionLocks {
        fn lock_session(&self, session: SessionId, wait: bool) -> Result<SessionLease, StoreError>;
    }
    ProviderHealthStore {
        fn record_provider_health(&self, checks: &[ProviderHealth]) -> Result<(), StoreError>;
        fn provider_health(&self) -> Result<Vec<ProviderHealth>, StoreError>;
    }
    ChannelHealthStore {
        fn record_channel_health(&self, state: &ChannelHealth) -> Result<(), StoreError>;
        fn channel_health(&self) -> Result<Vec<ChannelHealth>, StoreError>;
    }
    MemoryIndex {
        fn index(&self, entries: &[NewEntry]) -> Result<(), StoreError>;
        fn indexed_messages(&self, session: SessionId) -> Result<u64, StoreError>;
        fn reset_session(&self, session: SessionId) -> Result<(), StoreError>;
        fn search_text(&self, owner: &str, query: &str, limit: usize) -> Result<Vec<ScoredEntry>, StoreError>;
        fn search_embedding(
            &self,
            owner: &str,
            embedding: &[f32],
            limit: usize
        ) -> Result<Vec<ScoredEntry>, StoreError>;
        fn entries(&self, owner: &str, limit: usize) -> Result<Vec<MemoryEntry>, StoreError>;
        fn forget(&self, owner: &str, which: &ForgetEntries) -> Result<u64, StoreError>;
        fn unembedded(&self, limit: usize) -> Result<Vec<MemoryEntry>, StoreError>;
        fn refuse_embeddings(&self, ids: &[i64]) -> Result<u64, StoreError>;
        fn embed_entries(&self, embeddings: &[(i64, Vec<f32>)]) -> Result<u64, StoreError>;
    }
    SummaryStore {
        fn save_summary(&self, summary: &Summary) -> Result<bool, StoreError>;
        fn summary(&self, session: SessionId) -> Result<Option<Summary>, StoreError>;
    }
    AuditLog {
        fn record_audit(&self, entries: &[AuditEntry]) -> Result<(), StoreError>;
        fn audit_entries(&self, query: &AuditQuery) -> Result<Vec<AuditEntry>, StoreError>;
    }
    FactStore {
        fn record_fact(&self, fact: &NewFact) -> Result<FactRecorded, StoreError>;
        fn facts(&self, owner: &str, include_superseded: bool) -> Result<Vec<Fact>, StoreError>;
        fn forget_fact(&self, owner: &str, id: i64) -> Result<bool, StoreError>;
    }
}

/// What a storage URL names, as [`Store::open`] reads it.
enum StorageUrl<'a> {
    /// Nothing.
    Empty,
    /// `postgres://…` or `postgresql://…`.
    Postgres(&'a str),
    /// `sqlite:…` (a file or an in-memory database).
    Sqlite(&'a str),
    /// `:memory:`.
    Memory,
    /// A plain file path.
    File(&'a Path),
    /// Another `scheme://`.
    Unsupported(&'a str),
}

impl<'a> StorageUrl<'a> {
    fn parse(url: &'a str) -> Self {
        let url = url.trim();
        if url.is_empty() {
            Self::Empty
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Self::Postgres(url)
        } else if url.starts_with("sqlite:") {
            Self::Sqlite(url)
        } else if url == ":memory:" {
            Self::Memory
        } else if let Some((scheme, _)) = url.split_once("://") {
            Self::Unsupported(scheme)
        } else {
            Self::File(Path::new(url))
        }
    }
}
