//! The long-term memory store on an ArcadeDB server: [`ArcadeDbMemory`] implements
//! `exoclaw-core`'s [`MemoryIndex`], [`SummaryStore`] and [`FactStore`] over ArcadeDB's HTTP API
//! (SQL with named parameters; see `client.rs`), on the types `schema.rs` creates.
//!
//! - Full-text search uses ArcadeDB's Lucene `FULL_TEXT` index (English analyzer: stemmed, like
//!   the SQLite store's FTS5 table) through `SEARCH_INDEX`, ranked by Lucene's BM25 score
//!   (`$score`). The user's text never reaches Lucene's query parser as syntax: its words (as the
//!   SQL stores take them) each become a quoted term, joined with `OR` (see [`text_query`]).
//! - Embedding search reads the owner's stored vectors and scores cosine similarity in this
//!   process on every search. (The SQL stores' cached, quantised search in `memory_vectors.rs`
//!   needs a per-owner change record kept by every write; ArcadeDB has none yet.)
//! - Writes that must be all-or-none, or that read before they write (upserts, summaries that
//!   only move forward, facts and their supersession), run in one HTTP-session transaction and
//!   are run again when ArcadeDB reports that they lost a race (see `client.rs`).

mod backfill;
mod client;
mod schema;

use std::fmt;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use exoclaw_core::{
    EntryKind, Fact, FactRecorded, FactStore, ForgetEntries, MemoryEntry, MemoryIndex, NewEntry, NewFact,
    ScoredEntry, StoreError, Summary, SummaryStore,
};
use exoclaw_types::SessionId;
use secrecy::SecretString;
use serde::Deserialize;
use serde_json::{Map, Value, json};

use self::client::{ArcadeError, Client, Tx};
use crate::{
    codec::{from_i64, from_micros, now, opt_from_i64, role_from_str, role_to_str, to_i64, to_micros},
    memory::{
        contains_text, distinct_entries, embedding_of, message_marks, query_words, same_object, sql_limit,
        stored_confidence,
    },
    redact::{open_error, redact_url, scrub},
};

/// ArcadeDB's HTTP port when the URL names none.
const DEFAULT_PORT: u16 = 2480;

/// How many statements one request of an [`MemoryIndex::index`] batch carries.
const STATEMENTS_PER_REQUEST: usize = 200;

/// An entry's columns, as selected.
const ENTRY_FIELDS: &str = "id, owner, session, kind, seq, role, text, created_at";

/// A fact's columns, as selected.
const FACT_FIELDS: &str = "id, owner, subject, predicate, object, confidence, source_session, source_seq, \
                           learned_at, valid_from, invalidated_at, superseded_by";

/// The long-term memory store in an ArcadeDB database.
#[derive(Clone)]
pub struct ArcadeDbMemory {
    client: Client,
    /// The URL with its password masked, for messages.
    location: String,
}

impl fmt::Debug for ArcadeDbMemory {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ArcadeDbMemory").field("location", &self.location).finish_non_exhaustive()
    }
}

impl ArcadeDbMemory {
    /// Checks that `url` is an ArcadeDB URL [`connect`](Self::connect) can use, without
    /// connecting: a malformed one is an error that says the form (password masked).
    pub fn check_url(url: &str) -> Result<(), StoreError> {
        Self::parse_url(url).map(|_| ())
    }

    fn parse_url(url: &str) -> Result<ArcadeUrl, StoreError> {
        ArcadeUrl::parse(url).map_err(|why| {
            StoreError::open(scrub(
                &format!(
                    "storage URL {} is not a valid ArcadeDB URL: {why}; the form is \
                     arcadedb://USER:PASSWORD@HOST:PORT/DATABASE",
                    redact_url(url)
                ),
                url,
            ))
        })
    }

    /// Connects to the database at `url`, `arcadedb://USER:PASSWORD@HOST:PORT/DATABASE` (the
    /// port defaults to 2480; user and password may be percent-encoded), creating the database
    /// and the memory store's types and indexes when they are missing. Errors say which server
    /// failed (password masked) and what to do.
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        let location = redact_url(url);
        let parts = Self::parse_url(url)?;
        let client = Client::new(parts.base, parts.database, parts.user, parts.password)
            .map_err(|e| open_error("could not set up an HTTP client for ArcadeDB", url, e))?;
        let store = Self { client, location };
        let failed = |doing: &str, e: ArcadeError| open_error(&store.open_advice(doing, &e), url, e);

        let exists = store.client.database_exists().await.map_err(|e| failed("look for the database", e))?;
        if !exists && let Err(e) = store.client.create_database().await {
            // Another process may have created it since we looked.
            if !matches!(store.client.database_exists().await, Ok(true)) {
                return Err(failed("create the database", e));
            }
        }
        for statement in schema::STATEMENTS {
            store
                .schema_statement(statement)
                .await
                .map_err(|e| failed("create the memory store's types", e))?;
        }
        tracing::debug!(url = %store.location, "opened the ArcadeDB memory store");
        Ok(store)
    }

    /// The database URL, with its password masked.
    pub fn location(&self) -> &str {
        &self.location
    }

    /// Runs one schema statement; a second time when it fails, since another process creating
    /// the same schema at the same moment can make an `IF NOT EXISTS` lose the race.
    async fn schema_statement(&self, statement: &str) -> Result<(), ArcadeError> {
        match self.client.sql(None, statement, Map::new()).await {
            Ok(_) => Ok(()),
            Err(ArcadeError::Refused { .. }) => self.client.sql(None, statement, Map::new()).await.map(drop),
            Err(e) => Err(e),
        }
    }

    /// What went wrong opening the store, and what to do about it.
    fn open_advice(&self, doing: &str, error: &ArcadeError) -> String {
        let location = &self.location;
        match error {
            ArcadeError::Unreachable(_) => format!(
                "could not reach ArcadeDB at {location} to {doing}; check that the server is \
                 running and that the host and port in the URL are right"
            ),
            e if e.is_unauthorized() => {
                format!("ArcadeDB at {location} refused the login; check the user and password in the URL")
            }
            ArcadeError::Refused { .. } | ArcadeError::Protocol(_) => {
                format!("ArcadeDB at {location} failed to {doing}")
            }
        }
    }

    /// A failed operation, for a person: what was being done, where, and what to do.
    fn failed(&self, doing: &str, error: ArcadeError) -> StoreError {
        let location = &self.location;
        let message = match &error {
            ArcadeError::Unreachable(_) => format!(
                "could not {doing}: ArcadeDB at {location} did not answer; check that the server is \
                 running"
            ),
            e if e.is_unauthorized() => format!(
                "could not {doing}: ArcadeDB at {location} refused the login; check the user and \
                 password in the URL"
            ),
            ArcadeError::Refused { .. } | ArcadeError::Protocol(_) => {
                format!("could not {doing} in ArcadeDB at {location}")
            }
        };
        StoreError::database_from(message, error)
    }

    /// Rows of an SQL query outside any transaction.
    async fn rows(
        &self,
        doing: &str,
        command: &str,
        params: Map<String, Value>,
    ) -> Result<Vec<Value>, StoreError> {
        self.client.sql(None, command, params).await.map_err(|e| self.failed(doing, e))
    }

    /// The next `count` ids of the counter `name`, taken inside `tx`: gives the first.
    async fn take_ids(&self, tx: &Tx, name: &str, count: usize) -> Result<i64, ArcadeError> {
        let count =
            i64::try_from(count).map_err(|_| ArcadeError::Protocol(format!("{count} ids at once")))?;
        let rows = self
            .client
            .sql(
                Some(tx),
                "UPDATE MemoryCounter SET value = ifnull(value, 0) + :count UPSERT RETURN AFTER \
                 WHERE name = :name",
                params([("count", json!(count)), ("name", json!(name))]),
            )
            .await?;
        let last = rows
            .first()
            .and_then(|row| row.get("value"))
            .and_then(Value::as_i64)
            .ok_or_else(|| ArcadeError::Protocol(format!("counter {name} gave no value: {rows:?}")))?;
        Ok(last - count + 1)
    }

    /// Indexes `entries` (one per key) inside `tx` (see [`MemoryIndex::index`]), and raises the
    /// sessions' indexing `marks`. Each entry is an upsert on its key that gives the entry a new
    /// id, as re-indexing does in the SQL stores.
    async fn index_in(
        &self,
        tx: &Tx,
        entries: &[Stored],
        marks: &[(SessionId, i64)],
    ) -> Result<(), ArcadeError> {
        let first_id = self.take_ids(tx, "entry", entries.len()).await?;
        for (chunk_start, chunk) in
            (0..).step_by(STATEMENTS_PER_REQUEST).zip(entries.chunks(STATEMENTS_PER_REQUEST))
        {
            let mut script = String::new();
            let mut values = Map::new();
            for (i, entry) in chunk.iter().enumerate() {
                script.push_str(&format!(
                    "UPDATE MemoryEntry SET id = :id{i}, owner = :owner{i}, role = :role{i}, text = :text{i}, \
                     created_at = :created_at{i}, embedding = :embedding{i}, embedding_refused = false UPSERT \
                     WHERE session = :session{i} AND kind = :kind{i} AND seq = :seq{i};\n"
                ));
                for (name, value) in [
                    ("id", json!(first_id + chunk_start + i as i64)),
                    ("owner", json!(entry.owner)),
                    ("session", json!(entry.session)),
                    ("kind", json!(entry.kind)),
                    ("seq", json!(entry.seq)),
                    ("role", json!(entry.role)),
                    ("text", json!(entry.text)),
                    ("created_at", json!(entry.created_at)),
                    ("embedding", json!(entry.embedding)),
                ] {
                    values.insert(format!("{name}{i}"), value);
                }
            }
            self.client.command(Some(tx), "sqlscript", &script, values).await?;
        }
        for (session, mark) in marks {
            self.client
                .sql(
                    Some(tx),
                    "UPDATE MemoryMark SET indexed = max(ifnull(indexed, 0), :mark) UPSERT \
                     WHERE session = :session",
                    params([("session", json!(session.to_string())), ("mark", json!(mark))]),
                )
                .await?;
        }
        Ok(())
    }

    /// Deletes session `session`'s entries (whoever's), summary and indexing mark inside `tx`.
    async fn reset_session_in(&self, tx: &Tx, session: &str) -> Result<(), ArcadeError> {
        for statement in [
            "DELETE FROM MemoryEntry WHERE session = :session",
            "DELETE FROM MemorySummary WHERE session = :session",
            "DELETE FROM MemoryMark WHERE session = :session",
        ] {
            self.client.sql(Some(tx), statement, params([("session", json!(session))])).await?;
        }
        Ok(())
    }

    /// Saves `summary` inside `tx` unless the current one covers as much (see
    /// [`SummaryStore::save_summary`]).
    async fn save_summary_in(&self, tx: &Tx, summary: &Summary, through: i64) -> Result<bool, ArcadeError> {
        let session = summary.session.to_string();
        let rows = self
            .client
            .sql(
                Some(tx),
                "SELECT through FROM MemorySummary WHERE session = :session",
                params([("session", json!(session))]),
            )
            .await?;
        if rows
            .iter()
            .filter_map(|row| row.get("through").and_then(Value::as_i64))
            .any(|current| current >= through)
        {
            return Ok(false);
        }
        self.client
            .sql(
                Some(tx),
                "UPDATE MemorySummary SET through = :through, text = :text, model = :model, \
                 created_at = :created_at UPSERT WHERE session = :session",
                params([
                    ("session", json!(session)),
                    ("through", json!(through)),
                    ("text", json!(summary.text)),
                    ("model", json!(summary.model)),
                    ("created_at", json!(to_micros(summary.created_at))),
                ]),
            )
            .await?;
        Ok(true)
    }

    /// Records `fact` inside `tx` (see [`FactStore::record_fact`]).
    async fn record_fact_in(
        &self,
        tx: &Tx,
        fact: &NewFact,
        learned_at: i64,
    ) -> Result<FactRecorded, ArcadeError> {
        let object = fact.object.trim();
        let confidence = stored_confidence(fact.confidence);
        let current = self
            .client
            .sql(
                Some(tx),
                "SELECT id, object, confidence FROM MemoryFact WHERE owner = :owner AND \
                 subject = :subject AND predicate = :predicate AND invalidated_at IS NULL \
                 ORDER BY id DESC",
                params([
                    ("owner", json!(fact.owner)),
                    ("subject", json!(fact.subject)),
                    ("predicate", json!(fact.predicate)),
                ]),
            )
            .await?;
        let current: Vec<CurrentFactRow> = current
            .into_iter()
            .map(serde_json::from_value)
            .collect::<Result<_, _>>()
            .map_err(|e| ArcadeError::Protocol(e.to_string()))?;

        if let Some(same) = current.iter().find(|row| same_object(&row.object, object)) {
            if f64::from(confidence) > same.confidence.unwrap_or(f64::NEG_INFINITY) {
                self.client
                    .sql(
                        Some(tx),
                        "UPDATE MemoryFact SET confidence = :confidence WHERE id = :id",
                        params([("confidence", json!(confidence)), ("id", json!(same.id))]),
                    )
                    .await?;
            }
            return Ok(FactRecorded::Known { id: same.id });
        }

        let id = self.take_ids(tx, "fact", 1).await?;
        let mut superseded: Vec<i64> =
            if fact.single_valued { current.iter().map(|row| row.id).collect() } else { Vec::new() };
        superseded.sort_unstable();
        let valid_from = to_micros(fact.valid_from);
        if !superseded.is_empty() {
            self.client
                .sql(
                    Some(tx),
                    "UPDATE MemoryFact SET invalidated_at = :invalidated, superseded_by = :successor \
                     WHERE id IN :ids",
                    params([
                        ("invalidated", json!(valid_from)),
                        ("successor", json!(id)),
                        ("ids", json!(superseded)),
                    ]),
                )
                .await?;
        }
        let (source_session, source_seq) = match fact.source {
            Some((session, seq)) => (Some(session.to_string()), Some(seq)),
            None => (None, None),
        };
        self.client
            .sql(
                Some(tx),
                "INSERT INTO MemoryFact SET id = :id, owner = :owner, subject = :subject, \
                 predicate = :predicate, object = :object, \
                 confidence = :confidence, source_session = :source_session, source_seq = :source_seq, \
                 learned_at = :learned_at, valid_from = :valid_from, invalidated_at = null, \
                 superseded_by = null",
                params([
                    ("id", json!(id)),
                    ("owner", json!(fact.owner)),
                    ("subject", json!(fact.subject)),
                    ("predicate", json!(fact.predicate)),
                    ("object", json!(object)),
                    ("confidence", json!(confidence)),
                    ("source_session", json!(source_session)),
                    ("source_seq", json!(source_seq)),
                    ("learned_at", json!(learned_at)),
                    ("valid_from", json!(valid_from)),
                ]),
            )
            .await?;
        Ok(FactRecorded::New { id, superseded })
    }

    /// Deletes the owner's fact `id` inside `tx`, clearing the link from the facts it superseded.
    async fn forget_fact_in(&self, tx: &Tx, owner: &str, id: i64) -> Result<bool, ArcadeError> {
        let rows = self
            .client
            .sql(
                Some(tx),
                "DELETE FROM MemoryFact WHERE owner = :owner AND id = :id",
                params([("owner", json!(owner)), ("id", json!(id))]),
            )
            .await?;
        if count_of(&rows) == 0 {
            return Ok(false);
        }
        self.client
            .sql(
                Some(tx),
                "UPDATE MemoryFact SET superseded_by = null WHERE owner = :owner AND superseded_by = :id",
                params([("owner", json!(owner)), ("id", json!(id))]),
            )
            .await?;
        Ok(true)
    }

    /// Deletes the owner's entries with these ids; gives how many went.
    async fn delete_entries(&self, owner: &str, ids: &[i64]) -> Result<u64, StoreError> {
        if ids.is_empty() {
            return Ok(0);
        }
        let rows = self
            .rows(
                "forget memory entries",
                "DELETE FROM MemoryEntry WHERE owner = :owner AND id IN :ids",
                params([("owner", json!(owner)), ("ids", json!(ids))]),
            )
            .await?;
        Ok(count_of(&rows))
    }
}

#[async_trait]
impl MemoryIndex for ArcadeDbMemory {
    async fn index(&self, entries: &[NewEntry]) -> Result<(), StoreError> {
        // The last of several entries with one key wins, as successive upserts would have it.
        let distinct = distinct_entries(entries);
        let stored = distinct.iter().copied().map(Stored::new).collect::<Result<Vec<_>, _>>()?;
        if stored.is_empty() {
            return Ok(());
        }
        let marks = message_marks(&distinct)?;
        let (stored, marks) = (&stored, &marks);
        self.client
            .transaction(|tx| async move { self.index_in(&tx, stored, marks).await })
            .await
            .map_err(|e| self.failed(&format!("index {} memory entries", stored.len()), e))
    }

    async fn indexed_messages(&self, session: SessionId) -> Result<u64, StoreError> {
        let rows = self
            .rows(
                "count the indexed messages",
                "SELECT indexed FROM MemoryMark WHERE session = :session",
                params([("session", json!(session.to_string()))]),
            )
            .await?;
        match rows.first().and_then(|row| row.get("indexed")).and_then(Value::as_i64) {
            Some(mark) => from_i64(mark, "indexing mark"),
            None => Ok(0),
        }
    }

    async fn reset_session(&self, session: SessionId) -> Result<(), StoreError> {
        let id = session.to_string();
        let id = id.as_str();
        self.client
            .transaction(|tx| async move { self.reset_session_in(&tx, id).await })
            .await
            .map_err(|e| self.failed(&format!("reset the memory of session {session}"), e))
    }

    async fn search_text(
        &self,
        owner: &str,
        query: &str,
        limit: usize,
    ) -> Result<Vec<ScoredEntry>, StoreError> {
        let Some(query) = text_query(query) else { return Ok(Vec::new()) };
        if limit == 0 {
            return Ok(Vec::new());
        }
        let rows = self
            .rows(
                "search memory by text",
                &format!(
                    "SELECT {ENTRY_FIELDS}, $score AS score FROM MemoryEntry WHERE \
                     SEARCH_INDEX('{}', :query) = true AND owner = :owner ORDER BY score DESC, id \
                     LIMIT :limit",
                    schema::ENTRY_TEXT_INDEX
                ),
                params([
                    ("query", json!(query)),
                    ("owner", json!(owner)),
                    ("limit", json!(sql_limit(limit))),
                ]),
            )
            .await?;
        rows.into_iter()
            .map(|row| {
                let row: EntryRow = decode(row, "a memory entry")?;
                let score = row.score.unwrap_or_default() as f32;
                Ok(ScoredEntry { entry: row.into_entry()?, score })
            })
            .collect()
    }

    async fn search_embedding(
        &self,
        owner: &str,
        embedding: &[f32],
        limit: usize,
    ) -> Result<Vec<ScoredEntry>, StoreError> {
        if limit == 0 || embedding.is_empty() {
            return Ok(Vec::new());
        }
        let rows = self
            .rows(
                "search memory by embedding",
                &format!("SELECT {ENTRY_FIELDS}, embedding FROM MemoryEntry WHERE owner = :owner AND embedding IS NOT NULL"),
                params([("owner", json!(owner))]),
            )
            .await?;
        let mut scored = Vec::new();
        for row in rows {
            let row: EntryRow = decode(row, "a memory entry")?;
            let Some(score) = row.embedding.as_deref().and_then(|stored| cosine(embedding, stored)) else {
                continue;
            };
            scored.push((score, row));
        }
        // Best first; ties by id, so the order is the same every time.
        scored.sort_by(|(a, ra), (b, rb)| b.total_cmp(a).then(ra.id.cmp(&rb.id)));
        scored
            .into_iter()
            .take(limit)
            .map(|(score, row)| Ok(ScoredEntry { entry: row.into_entry()?, score }))
            .collect()
    }

    async fn entries(&self, owner: &str, limit: usize) -> Result<Vec<MemoryEntry>, StoreError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let rows = self
            .rows(
                "list memory entries",
                &format!(
                    "SELECT {ENTRY_FIELDS} FROM MemoryEntry WHERE owner = :owner \
                     ORDER BY created_at DESC, id DESC LIMIT :limit"
                ),
                params([("owner", json!(owner)), ("limit", json!(sql_limit(limit)))]),
            )
            .await?;
        rows.into_iter().map(|row| decode::<EntryRow>(row, "a memory entry")?.into_entry()).collect()
    }

    async fn unembedded(&self, limit: usize) -> Result<Vec<MemoryEntry>, StoreError> {
        self.unembedded_entries(limit).await
    }

    async fn embed_entries(&self, embeddings: &[(i64, Vec<f32>)]) -> Result<u64, StoreError> {
        self.embed_unembedded(embeddings).await
    }

    async fn refuse_embeddings(&self, ids: &[i64]) -> Result<u64, StoreError> {
        self.refuse_unembedded(ids).await
    }

    async fn forget(&self, owner: &str, which: &ForgetEntries) -> Result<u64, StoreError> {
        match which {
            ForgetEntries::Ids(ids) => self.delete_entries(owner, ids).await,
            ForgetEntries::Session(session) => {
                let rows = self
                    .rows(
                        "forget a session's memory entries",
                        "DELETE FROM MemoryEntry WHERE owner = :owner AND session = :session",
                        params([("owner", json!(owner)), ("session", json!(session.to_string()))]),
                    )
                    .await?;
                Ok(count_of(&rows))
            }
            ForgetEntries::Containing(needle) => {
                // Matched here rather than with ILIKE, whose wildcards (`%`, `?`) ArcadeDB gives
                // no documented way to escape: the text to match is anybody's.
                if needle.is_empty() {
                    return Ok(0);
                }
                let rows = self
                    .rows(
                        "find memory entries to forget",
                        "SELECT id, text FROM MemoryEntry WHERE owner = :owner",
                        params([("owner", json!(owner))]),
                    )
                    .await?;
                let mut ids = Vec::new();
                for row in rows {
                    let row: IdText = decode(row, "a memory entry")?;
                    if contains_text(&row.text, needle) {
                        ids.push(row.id);
                    }
                }
                self.delete_entries(owner, &ids).await
            }
        }
    }
}

#[async_trait]
impl SummaryStore for ArcadeDbMemory {
    async fn save_summary(&self, summary: &Summary) -> Result<bool, StoreError> {
        let through = to_i64(summary.through, "summary length")?;
        self.client
            .transaction(|tx| async move { self.save_summary_in(&tx, summary, through).await })
            .await
            .map_err(|e| self.failed(&format!("save the summary of session {}", summary.session), e))
    }

    async fn summary(&self, session: SessionId) -> Result<Option<Summary>, StoreError> {
        let rows = self
            .rows(
                "read a session's summary",
                "SELECT session, through, text, model, created_at FROM MemorySummary WHERE session = :session",
                params([("session", json!(session.to_string()))]),
            )
            .await?;
        let Some(row) = rows.into_iter().next() else { return Ok(None) };
        let row: SummaryRow = decode(row, "a summary")?;
        Ok(Some(Summary {
            session: parse_session(&row.session)?,
            through: from_i64(row.through, "summary length")?,
            text: row.text,
            model: row.model,
            created_at: from_micros(row.created_at)?,
        }))
    }
}

#[async_trait]
impl FactStore for ArcadeDbMemory {
    async fn record_fact(&self, fact: &NewFact) -> Result<FactRecorded, StoreError> {
        let learned_at = to_micros(now());
        self.client
            .transaction(|tx| async move { self.record_fact_in(&tx, fact, learned_at).await })
            .await
            .map_err(|e| self.failed("record a fact", e))
    }

    async fn facts(&self, owner: &str, include_superseded: bool) -> Result<Vec<Fact>, StoreError> {
        let current = if include_superseded { "" } else { " AND invalidated_at IS NULL" };
        let rows = self
            .rows(
                "list facts",
                &format!(
                    "SELECT {FACT_FIELDS} FROM MemoryFact WHERE owner = :owner{current} \
                     ORDER BY learned_at DESC, id DESC"
                ),
                params([("owner", json!(owner))]),
            )
            .await?;
        rows.into_iter().map(|row| decode::<FactRow>(row, "a fact")?.into_fact()).collect()
    }

    async fn forget_fact(&self, owner: &str, id: i64) -> Result<bool, StoreError> {
        self.client
            .transaction(|tx| async move { self.forget_fact_in(&tx, owner, id).await })
            .await
            .map_err(|e| self.failed(&format!("forget fact {id}"), e))
    }
}

/// The parts of an `arcadedb://` URL.
struct ArcadeUrl {
    /// `http://host:port`.
    base: String,
    database: String,
    user: String,
    password: SecretString,
}

impl ArcadeUrl {
    /// Reads `arcadedb://USER:PASSWORD@HOST[:PORT]/DATABASE`; says what is wrong otherwise
    /// (never quoting the password).
    fn parse(url: &str) -> Result<Self, String> {
        let rest = url.trim().strip_prefix("arcadedb://").ok_or("it does not start with arcadedb://")?;
        // The last `@` ends the user info: a password may hold `@` or `/`.
        let (userinfo, rest) = rest.rsplit_once('@').ok_or("it names no USER:PASSWORD@")?;
        let (user, password) = userinfo.split_once(':').ok_or("it has a user but no password")?;
        let (host_port, database) = rest.split_once('/').ok_or("it names no database after the host")?;
        let database = database.split(['?', '#']).next().unwrap_or_default();
        if database.is_empty() || !database.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        {
            return Err(format!("the database name {database:?} must be letters, digits, `_` or `-`"));
        }
        let (host, port) = match host_port.rsplit_once(':') {
            Some((host, port)) if !port.contains(']') => {
                (host, port.parse::<u16>().map_err(|_| format!("the port {port:?} is not a number"))?)
            }
            _ => (host_port, DEFAULT_PORT),
        };
        if host.is_empty() {
            return Err("it names no host".to_owned());
        }
        let user = percent_decode(user).ok_or("the user is not valid percent-encoded UTF-8")?;
        let password = percent_decode(password).ok_or("the password is not valid percent-encoded UTF-8")?;
        Ok(Self {
            base: format!("http://{host}:{port}"),
            database: database.to_owned(),
            user,
            password: SecretString::from(password),
        })
    }
}

/// Percent-decoding (`%40` → `@`); `None` when the result is not UTF-8.
fn percent_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && let Some(byte) = text.get(i + 1..i + 3).and_then(|hex| u8::from_str_radix(hex, 16).ok())
        {
            out.push(byte);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// Lucene query text for the words of `text` (the SQL stores' words: runs of letters and
/// digits, lowercased, each once), each a quoted term joined with `OR`, so that nothing the user
/// typed is read as query syntax (`AND`, `field:`, `*`, brackets, quotes: none survive
/// [`query_words`], and quoting keeps even a word like `and` a plain term). `None` when there is
/// no word to search for.
fn text_query(text: &str) -> Option<String> {
    let words = query_words(text);
    if words.is_empty() {
        return None;
    }
    // Quoted, `\` and `"` would need escaping; words are letters and digits only.
    let terms: Vec<String> = words.iter().map(|word| format!("\"{word}\"")).collect();
    Some(terms.join(" OR "))
}

/// The cosine similarity of two vectors; `None` when their lengths differ or either is zero.
fn cosine(a: &[f32], b: &[f32]) -> Option<f32> {
    if a.len() != b.len() {
        return None;
    }
    let (mut dot, mut norm_a, mut norm_b) = (0f64, 0f64, 0f64);
    for (&x, &y) in a.iter().zip(b) {
        let (x, y) = (f64::from(x), f64::from(y));
        dot += x * y;
        norm_a += x * x;
        norm_b += y * y;
    }
    if norm_a == 0.0 || norm_b == 0.0 {
        return None;
    }
    Some((dot / (norm_a.sqrt() * norm_b.sqrt())) as f32)
}

/// The `count` a `DELETE` answers with.
fn count_of(rows: &[Value]) -> u64 {
    rows.first().and_then(|row| row.get("count")).and_then(Value::as_u64).unwrap_or(0)
}

/// Named parameters.
fn params<const N: usize>(pairs: [(&str, Value); N]) -> Map<String, Value> {
    pairs.into_iter().map(|(name, value)| (name.to_owned(), value)).collect()
}

/// A row as `T`.
fn decode<T: for<'de> Deserialize<'de>>(row: Value, what: &str) -> Result<T, StoreError> {
    serde_json::from_value(row).map_err(|e| {
        StoreError::corrupt_from(
            format!("{what} in ArcadeDB could not be read (written by a newer exoclaw?)"),
            e,
        )
    })
}

fn parse_session(text: &str) -> Result<SessionId, StoreError> {
    text.parse().map_err(|e| StoreError::corrupt_from(format!("stored session id {text:?} is not a UUID"), e))
}

/// An entry as it is written.
struct Stored {
    owner: String,
    session: String,
    kind: &'static str,
    seq: i64,
    role: Option<&'static str>,
    text: String,
    created_at: i64,
    embedding: Option<Vec<f32>>,
}

impl Stored {
    fn new(entry: &NewEntry) -> Result<Self, StoreError> {
        Ok(Self {
            owner: entry.owner.clone(),
            session: entry.session.to_string(),
            kind: entry.kind.as_str(),
            seq: to_i64(entry.seq, "entry position")?,
            role: entry.role.map(role_to_str),
            text: entry.text.clone(),
            created_at: to_micros(entry.created_at),
            embedding: embedding_of(entry).map(<[f32]>::to_vec),
        })
    }
}

#[derive(Deserialize)]
struct IdText {
    id: i64,
    text: String,
}

#[derive(Deserialize)]
struct EntryRow {
    id: i64,
    owner: String,
    session: String,
    kind: String,
    seq: i64,
    role: Option<String>,
    text: String,
    created_at: i64,
    #[serde(default)]
    score: Option<f64>,
    #[serde(default)]
    embedding: Option<Vec<f32>>,
}

impl EntryRow {
    fn into_entry(self) -> Result<MemoryEntry, StoreError> {
        Ok(MemoryEntry {
            id: self.id,
            owner: self.owner,
            session: parse_session(&self.session)?,
            kind: EntryKind::parse(&self.kind).ok_or_else(|| {
                StoreError::corrupt(format!(
                    "unknown memory entry kind {:?} (written by a newer exoclaw?)",
                    self.kind
                ))
            })?,
            seq: from_i64(self.seq, "entry position")?,
            role: self.role.as_deref().map(role_from_str).transpose()?,
            text: self.text,
            created_at: from_micros(self.created_at)?,
        })
    }
}

#[derive(Deserialize)]
struct SummaryRow {
    session: String,
    through: i64,
    text: String,
    model: String,
    created_at: i64,
}

#[derive(Deserialize)]
struct CurrentFactRow {
    id: i64,
    object: String,
    confidence: Option<f64>,
}

#[derive(Deserialize)]
struct FactRow {
    id: i64,
    owner: String,
    subject: String,
    predicate: String,
    object: String,
    confidence: f64,
    source_session: Option<String>,
    source_seq: Option<i64>,
    learned_at: i64,
    valid_from: i64,
    invalidated_at: Option<i64>,
    superseded_by: Option<i64>,
}

impl FactRow {
    fn into_fact(self) -> Result<Fact, StoreError> {
        let source = match (self.source_session, opt_from_i64(self.source_seq, "source position")?) {
            (Some(session), Some(seq)) => Some((parse_session(&session)?, seq)),
            _ => None,
        };
        let time = |micros: i64| -> Result<DateTime<Utc>, StoreError> { from_micros(micros) };
        Ok(Fact {
            id: self.id,
            owner: self.owner,
            subject: self.subject,
            predicate: self.predicate,
            object: self.object,
            confidence: self.confidence as f32,
            source,
            learned_at: time(self.learned_at)?,
            valid_from: time(self.valid_from)?,
            invalidated_at: self.invalidated_at.map(time).transpose()?,
            superseded_by: self.superseded_by,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::ExposeSecret;

    #[test]
    fn urls_give_host_port_database_and_decoded_credentials() {
        let url = ArcadeUrl::parse("arcadedb://root:p%40ss/w@rd@db.example:2481/memory").unwrap();
        assert_eq!(url.base, "http://db.example:2481");
        assert_eq!(url.database, "memory");
        assert_eq!(url.user, "root");
        assert_eq!(url.password.expose_secret(), "p@ss/w@rd");

        let url = ArcadeUrl::parse("arcadedb://root:pw@[::1]/memory").unwrap();
        assert_eq!(url.base, "http://[::1]:2480");
    }

    #[test]
    fn bad_urls_say_what_is_wrong_without_the_password() {
        for (url, says) in [
            ("postgres://root:secret1@host/db", "arcadedb://"),
            ("arcadedb://host:2480/db", "USER:PASSWORD@"),
            ("arcadedb://root:secret1@host:2480", "database"),
            ("arcadedb://root:secret1@host:http/db", "port"),
            ("arcadedb://root:secret1@host/my db", "database name"),
        ] {
            let why = ArcadeUrl::parse(url).err().unwrap();
            assert!(why.contains(says), "{url}: {why}");
            assert!(!why.contains("secret1"), "{url}: {why}");
        }
    }

    #[test]
    fn user_text_becomes_quoted_phrases_joined_by_or() {
        assert_eq!(
            text_query("Where does Alice live?").unwrap(),
            r#""where" OR "does" OR "alice" OR "live""#
        );
        assert_eq!(text_query(r#"say "hi\" AND (x"#).unwrap(), r#""say" OR "hi" OR "and" OR "x""#);
        assert_eq!(text_query("  ?? *** ( "), None);
        assert_eq!(text_query("paris Paris PARIS").unwrap(), r#""paris""#);
    }

    #[test]
    fn cosine_is_one_for_the_same_direction_and_none_for_mismatched_lengths() {
        assert!((cosine(&[1.0, 2.0], &[2.0, 4.0]).unwrap() - 1.0).abs() < 1e-6);
        assert!(cosine(&[1.0, 0.0], &[0.0, 1.0]).unwrap().abs() < 1e-6);
        assert_eq!(cosine(&[1.0], &[1.0, 0.0]), None);
        assert_eq!(cosine(&[0.0, 0.0], &[1.0, 0.0]), None);
    }
}
