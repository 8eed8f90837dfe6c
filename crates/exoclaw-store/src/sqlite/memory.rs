//! Long-term memory in SQLite: entries searched with FTS5 (`memory_fts`, kept by triggers) and by
//! embedding (`memory_vectors.rs`), sessions' summaries and facts. Writes go through the writer
//! with `BEGIN IMMEDIATE`, reads through the readers.
//!
//! A full-text search first counts the entries each word is in, then ranks by BM25 on the
//! full-text index alone only a bounded set of candidates ([`TextPlan`]: the entries with the
//! rarer words when the common ones are in thousands), and reads the entries of the best
//! candidates only (twice as many as asked for, of which the owner's best come back); the index is
//! every owner's, so when too few of the candidates are the owner's it ranks every match instead,
//! joined to the owner's entries. Over 100,000 entries this took a search from 5–40 ms to 2–3 ms
//! (`benches/memory.rs`); writing the statements' limits in rather than binding them (SQLite
//! prepared them again on every run) and giving back only the rows asked for took its median from
//! 2.5 to 1.85 ms.

use std::collections::HashMap;

use async_trait::async_trait;
use exoclaw_core::{
    Fact, FactRecorded, FactStore, ForgetEntries, MemoryEntry, MemoryIndex, NewEntry, NewFact, ScoredEntry,
    StoreError, Summary, SummaryStore,
};
use exoclaw_types::SessionId;
use sqlx::sqlite::{SqliteConnection, SqliteRow};
use sqlx::{AssertSqlSafe, QueryBuilder, Row, Sqlite};

use super::{SqliteStore, parse_uuid};
use crate::codec::{from_i64, from_micros, now, query_error, role_from_str, role_to_str, to_i64, to_micros};
use crate::memory::{
    ENTRIES_PER_INSERT, RANKED_MATCHES, TextPlan, by_session_and_kind, contains_text, distinct_entries,
    embedding_of, fts5_phrase, kind_from_str, message_marks, query_words, same_object, source_from_columns,
    sql_limit, stored_confidence, text_plan, without_stop_words,
};
use crate::memory_vectors::{self, VectorChanges, VectorRows, VectorState, encode_embedding};
use crate::sql;

fn entry_from_row(row: &SqliteRow) -> Result<MemoryEntry, StoreError> {
    let decode = |e: sqlx::Error| StoreError::corrupt_from("a memory entry could not be read", e);
    entry_from_columns(EntryColumns(
        row.try_get("id").map_err(decode)?,
        row.try_get("owner").map_err(decode)?,
        row.try_get("session_id").map_err(decode)?,
        row.try_get("kind").map_err(decode)?,
        row.try_get("seq").map_err(decode)?,
        row.try_get("role").map_err(decode)?,
        row.try_get("text").map_err(decode)?,
        row.try_get("created_at").map_err(decode)?,
    ))
}

/// An entry's columns as stored, in the order of `sql::entry_columns!`.
#[derive(serde::Deserialize)]
struct EntryColumns(i64, String, String, String, i64, Option<String>, String, i64);

/// The entry its stored columns describe.
fn entry_from_columns(columns: EntryColumns) -> Result<MemoryEntry, StoreError> {
    let EntryColumns(id, owner, session, kind, seq, role, text, created_at) = columns;
    Ok(MemoryEntry {
        id,
        owner,
        session: SessionId(parse_uuid(&session)?),
        kind: kind_from_str(&kind)?,
        seq: from_i64(seq, "memory entry seq")?,
        role: role.as_deref().map(role_from_str).transpose()?,
        text,
        created_at: from_micros(created_at)?,
    })
}

fn fact_from_row(row: &SqliteRow) -> Result<Fact, StoreError> {
    let decode = |e: sqlx::Error| StoreError::corrupt_from("a fact could not be read", e);
    let source_session: Option<String> = row.try_get("source_session").map_err(decode)?;
    let source_session = source_session.as_deref().map(parse_uuid).transpose()?.map(SessionId);
    let confidence: f64 = row.try_get("confidence").map_err(decode)?;
    let invalidated_at: Option<i64> = row.try_get("invalidated_at").map_err(decode)?;
    Ok(Fact {
        id: row.try_get("id").map_err(decode)?,
        owner: row.try_get("owner").map_err(decode)?,
        subject: row.try_get("subject").map_err(decode)?,
        predicate: row.try_get("predicate").map_err(decode)?,
        object: row.try_get("object").map_err(decode)?,
        confidence: confidence as f32,
        source: source_from_columns(source_session, row.try_get("source_seq").map_err(decode)?)?,
        learned_at: from_micros(row.try_get("learned_at").map_err(decode)?)?,
        valid_from: from_micros(row.try_get("valid_from").map_err(decode)?)?,
        invalidated_at: invalidated_at.map(from_micros).transpose()?,
        superseded_by: row.try_get("superseded_by").map_err(decode)?,
    })
}

/// Ids as the JSON array `json_each` reads: one bound value however many there are.
fn json_ids(ids: &[i64]) -> String {
    let ids: Vec<String> = ids.iter().map(i64::to_string).collect();
    format!("[{}]", ids.join(","))
}

/// Notes deleted rows (`sql::deleted_entries!`) that had an embedding, by owner.
fn note_deleted(changes: &mut HashMap<String, VectorChanges>, rows: &[SqliteRow]) -> Result<(), StoreError> {
    let decode = |e: sqlx::Error| StoreError::corrupt_from("a deleted memory entry could not be read", e);
    for row in rows {
        if row.try_get::<bool, _>("embedded").map_err(decode)? {
            let owner: String = row.try_get("owner").map_err(decode)?;
            changes.entry(owner).or_default().removed.push(row.try_get("id").map_err(decode)?);
        }
    }
    Ok(())
}

/// Owner `owner`'s vector state as `conn` sees it.
async fn vector_state(conn: &mut SqliteConnection, owner: &str) -> Result<VectorState, StoreError> {
    let state: Option<(i64, i64, i64)> = sqlx::query_as(sql::VECTOR_STATE)
        .bind(owner)
        .fetch_optional(conn)
        .await
        .map_err(|e| query_error("could not read the state of the memory's embeddings", e))?;
    Ok(state.map_or_else(VectorState::default, |(embedded, max_id, removed)| VectorState {
        embedded,
        max_id,
        removed,
    }))
}

/// The best `fetch` matches of the FTS5 query bound to parameter `query` by BM25 (higher is
/// better), ids and scores: ranked on the full-text index alone, so that ranking reads no entry.
fn ranked_matches(query: usize, fetch: usize) -> String {
    format!(
        "SELECT * FROM (SELECT rowid, -bm25(memory_fts) FROM memory_fts WHERE memory_fts MATCH ${query} \
         ORDER BY bm25(memory_fts), rowid DESC LIMIT {})",
        sql_limit(fetch)
    )
}

/// A text search's one statement (see [`TextPlan`]): the best `fetch` matches of each of the
/// FTS5 queries bound to parameters 1 to `queries` (which never match the same entry), then owner
/// `$(queries + 1)`'s best `limit` entries among them. CROSS JOIN keeps the candidates the outer
/// loop, each looked up by id.
///
/// It answers one row: how many candidates there were (`ranked`) and the entries found with their
/// scores as one JSON array of `[score, [entry columns]]` (`found`, see [`found_entries`]). Rows
/// cross from SQLx's connection thread one at a time, each waking the searching task (a few
/// microseconds apiece, the cost of a tenth of a search at 60 entries); one row crosses once.
///
/// The limits are written into the statement, not bound: SQLite (3.51) plans with a bound LIMIT's
/// value, so binding it again, as every run does, made it prepare the statement again each time.
/// A statement per pair of limits is prepared once per connection instead (a caller asks for few
/// sizes).
fn search_text_sql(queries: usize, fetch: usize, limit: usize) -> String {
    let ranked: Vec<String> = (1..=queries).map(|query| ranked_matches(query, fetch)).collect();
    format!(
        "WITH ranked (id, score) AS MATERIALIZED ({}), \
         found AS (SELECT r.score, e.id, e.owner, e.session_id, e.kind, e.seq, e.role, e.text, \
         e.created_at FROM ranked r CROSS JOIN memory_entries e ON e.id = r.id AND e.owner = ${} \
         ORDER BY r.score DESC, e.id DESC LIMIT {}) \
         SELECT (SELECT count(*) FROM ranked) AS ranked, \
         (SELECT json_group_array(json_array(score, json_array({}))) FROM found) AS found",
        ranked.join(" UNION ALL "),
        queries + 1,
        sql_limit(limit),
        sql::entry_columns!(),
    )
}

/// The scored entries of a `found` JSON array (see [`search_text_sql`]).
fn found_entries(found: &str) -> Result<Vec<ScoredEntry>, StoreError> {
    let rows: Vec<(f64, EntryColumns)> = serde_json::from_str(found)
        .map_err(|e| StoreError::corrupt_from("the entries a text search found could not be read", e))?;
    rows.into_iter()
        .map(|(score, columns)| Ok(ScoredEntry { entry: entry_from_columns(columns)?, score: score as f32 }))
        .collect()
}

/// Owner `$2`'s best `limit` matches of FTS5 query `$1`, with their scores. CROSS JOIN makes
/// SQLite run the full-text query once and look its matches up by id; with a plain join it may
/// walk the owner's entries and run the full-text query for each. (The limit is written in, as in
/// [`search_text_sql`].)
fn search_text_exact_sql(limit: usize) -> String {
    format!(
        "SELECT e.id, e.owner, e.session_id, e.kind, e.seq, e.role, e.text, e.created_at, \
         -bm25(memory_fts) AS score \
         FROM memory_fts CROSS JOIN memory_entries e ON e.id = memory_fts.rowid \
         WHERE memory_fts MATCH $1 AND e.owner = $2 ORDER BY bm25(memory_fts), e.id DESC LIMIT {}",
        sql_limit(limit)
    )
}

/// How many entries (of every owner) each of `words` is in, counted up to one over
/// [`RANKED_MATCHES`]: one statement, which reads no more of each word's list of entries than that
/// (a tenth of a millisecond for four words).
async fn word_counts(
    conn: &mut SqliteConnection,
    words: &[String],
) -> Result<Vec<(String, u64)>, StoreError> {
    let phrases: Vec<String> = words.iter().map(|w| fts5_phrase(w)).collect();
    let mut select = QueryBuilder::<Sqlite>::new("SELECT ");
    for (i, phrase) in phrases.iter().enumerate() {
        if i > 0 {
            select.push(", ");
        }
        select.push("(SELECT count(*) FROM (SELECT 1 FROM memory_fts WHERE memory_fts MATCH ");
        select.push_bind(phrase.as_str());
        // Written in, not bound: see `search_text_sql`.
        select.push(" LIMIT ");
        select.push(RANKED_MATCHES + 1);
        select.push("))");
    }
    let row = select
        .build()
        .fetch_one(conn)
        .await
        .map_err(|e| query_error("could not search the memory's text", e))?;
    let decode = |e: sqlx::Error| StoreError::corrupt_from("a word's count of matches could not be read", e);
    words
        .iter()
        .enumerate()
        .map(|(i, word)| {
            let count: i64 = row.try_get(i).map_err(decode)?;
            Ok((word.clone(), u64::try_from(count).unwrap_or(0)))
        })
        .collect()
}

impl SqliteStore {
    /// Commits `tx` after reading the touched owners' vector states into `changes`, then brings the
    /// cache of embeddings along.
    async fn commit_memory(
        &self,
        mut tx: sqlx::Transaction<'_, Sqlite>,
        mut changes: HashMap<String, VectorChanges>,
        doing: &str,
    ) -> Result<(), StoreError> {
        for (owner, change) in &mut changes {
            change.after = vector_state(&mut tx, owner).await?;
        }
        tx.commit().await.map_err(|e| query_error(doing, e))?;
        self.committed();
        for (owner, change) in changes {
            self.vectors.written(&owner, change);
        }
        Ok(())
    }

    /// Replaces each entry among `embeddings` that has no embedding by itself with its embedding,
    /// under a new id ([`MemoryIndex::embed_entries`]).
    async fn embed_unembedded(&self, embeddings: &[(i64, Vec<f32>)]) -> Result<u64, StoreError> {
        if embeddings.is_empty() {
            return Ok(0);
        }
        let doing = "could not store the embeddings of memory entries";
        let failed = |e| query_error(doing, e);
        let decode =
            |e: sqlx::Error| StoreError::corrupt_from("a memory entry to embed could not be read", e);
        let mut changes: HashMap<String, VectorChanges> = HashMap::new();
        let mut embedded = 0;
        let mut tx = self.writer.begin_with("BEGIN IMMEDIATE").await.map_err(failed)?;
        for (id, embedding) in embeddings {
            let Some(row) =
                sqlx::query(sql::TAKE_UNEMBEDDED).bind(id).fetch_optional(&mut *tx).await.map_err(failed)?
            else {
                continue;
            };
            let owner: String = row.try_get("owner").map_err(decode)?;
            let session: String = row.try_get("session_id").map_err(decode)?;
            let kind: String = row.try_get("kind").map_err(decode)?;
            let seq: i64 = row.try_get("seq").map_err(decode)?;
            let role: Option<String> = row.try_get("role").map_err(decode)?;
            let text: String = row.try_get("text").map_err(decode)?;
            let created_at: i64 = row.try_get("created_at").map_err(decode)?;
            let new_id: i64 = sqlx::query_scalar(sql::INSERT_ENTRY)
                .bind(&owner)
                .bind(session)
                .bind(kind)
                .bind(seq)
                .bind(role)
                .bind(text)
                .bind(created_at)
                .bind(encode_embedding(embedding))
                .fetch_one(&mut *tx)
                .await
                .map_err(failed)?;
            changes.entry(owner).or_default().added.push((new_id, embedding.clone()));
            embedded += 1;
        }
        self.commit_memory(tx, changes, doing).await?;
        Ok(embedded)
    }

    /// Deletes the owner's entries among `ids` in `tx`, noting them in `changes`.
    async fn delete_entries(
        conn: &mut SqliteConnection,
        owner: &str,
        ids: &[i64],
        changes: &mut HashMap<String, VectorChanges>,
    ) -> Result<u64, StoreError> {
        if ids.is_empty() {
            return Ok(0);
        }
        let rows = sqlx::query(concat!(
            "DELETE FROM memory_entries WHERE owner = $1 AND id IN (SELECT value FROM json_each($2))",
            sql::deleted_entries!()
        ))
        .bind(owner)
        .bind(json_ids(ids))
        .fetch_all(conn)
        .await
        .map_err(|e| query_error("could not forget memory entries", e))?;
        note_deleted(changes, &rows)?;
        Ok(rows.len() as u64)
    }
}

#[async_trait]
impl MemoryIndex for SqliteStore {
    async fn index(&self, entries: &[NewEntry]) -> Result<(), StoreError> {
        let entries = distinct_entries(entries);
        if entries.is_empty() {
            return Ok(());
        }
        let doing = "could not index memory entries";
        let failed = |e| query_error(doing, e);
        // Everything that can fail without the database fails before the write lock is taken.
        let rows = entries
            .iter()
            .map(|e| Ok((to_i64(e.seq, "memory entry seq")?, embedding_of(e).map(encode_embedding))))
            .collect::<Result<Vec<_>, StoreError>>()?;
        let groups = by_session_and_kind(&entries)
            .into_iter()
            .map(|(key, seqs)| {
                let seqs =
                    seqs.into_iter().map(|s| to_i64(s, "memory entry seq")).collect::<Result<Vec<_>, _>>()?;
                Ok((key, json_ids(&seqs)))
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        let marks = message_marks(&entries)?;

        let mut changes: HashMap<String, VectorChanges> = HashMap::new();
        let mut tx = self.writer.begin_with("BEGIN IMMEDIATE").await.map_err(failed)?;
        // The entries replaced go first, and their successors get new ids: a changed embedding is
        // then a removal and an addition, which other processes' caches notice.
        for ((session, kind), seqs) in groups {
            let deleted = sqlx::query(concat!(
                "DELETE FROM memory_entries WHERE session_id = $1 AND kind = $2 \
                 AND seq IN (SELECT value FROM json_each($3))",
                sql::deleted_entries!()
            ))
            .bind(session.to_string())
            .bind(kind.as_str())
            .bind(seqs)
            .fetch_all(&mut *tx)
            .await
            .map_err(failed)?;
            note_deleted(&mut changes, &deleted)?;
        }
        for (chunk, chunk_rows) in entries.chunks(ENTRIES_PER_INSERT).zip(rows.chunks(ENTRIES_PER_INSERT)) {
            let mut insert = QueryBuilder::<Sqlite>::new(sql::INSERT_ENTRIES);
            insert.push_values(chunk.iter().zip(chunk_rows), |mut row, (entry, (seq, embedding))| {
                row.push_bind(&entry.owner)
                    .push_bind(entry.session.to_string())
                    .push_bind(entry.kind.as_str())
                    .push_bind(*seq)
                    .push_bind(entry.role.map(role_to_str))
                    .push_bind(&entry.text)
                    .push_bind(to_micros(entry.created_at))
                    .push_bind(embedding.clone());
            });
            insert.push(sql::INSERTED_ENTRIES);
            let inserted = insert.build().fetch_all(&mut *tx).await.map_err(failed)?;
            // RETURNING gives rows in no particular order: they are matched by key.
            let by_key: HashMap<(String, &str, i64), &NewEntry> = chunk
                .iter()
                .zip(chunk_rows)
                .map(|(entry, (seq, _))| ((entry.session.to_string(), entry.kind.as_str(), *seq), *entry))
                .collect();
            let decode =
                |e: sqlx::Error| StoreError::corrupt_from("an indexed memory entry could not be read", e);
            for row in inserted {
                let key: (String, String, i64) = (
                    row.try_get("session_id").map_err(decode)?,
                    row.try_get("kind").map_err(decode)?,
                    row.try_get("seq").map_err(decode)?,
                );
                let Some(entry) = by_key.get(&(key.0, key.1.as_str(), key.2)) else { continue };
                if let Some(embedding) = embedding_of(entry) {
                    let id: i64 = row.try_get("id").map_err(decode)?;
                    changes.entry(entry.owner.clone()).or_default().added.push((id, embedding.to_vec()));
                }
            }
        }
        for (session, mark) in marks {
            sqlx::query(sql::RAISE_MARK)
                .bind(session.to_string())
                .bind(mark)
                .execute(&mut *tx)
                .await
                .map_err(failed)?;
        }
        self.commit_memory(tx, changes, doing).await
    }

    async fn indexed_messages(&self, session: SessionId) -> Result<u64, StoreError> {
        let mark: Option<i64> = sqlx::query_scalar(sql::INDEXED_MESSAGES)
            .bind(session.to_string())
            .fetch_optional(&self.reader)
            .await
            .map_err(|e| {
                query_error(&format!("could not count the indexed messages of session {session}"), e)
            })?;
        mark.map_or(Ok(0), |mark| from_i64(mark, "indexing mark"))
    }

    async fn reset_session(&self, session: SessionId) -> Result<(), StoreError> {
        let doing = format!("could not reset the memory of session {session}");
        let failed = |e| query_error(&doing, e);
        let id = session.to_string();
        let mut changes: HashMap<String, VectorChanges> = HashMap::new();
        let mut tx = self.writer.begin_with("BEGIN IMMEDIATE").await.map_err(failed)?;
        let rows =
            sqlx::query(sql::RESET_SESSION_ENTRIES).bind(&id).fetch_all(&mut *tx).await.map_err(failed)?;
        note_deleted(&mut changes, &rows)?;
        for statement in [sql::DELETE_SUMMARY, sql::DELETE_MARK] {
            sqlx::query(statement).bind(&id).execute(&mut *tx).await.map_err(failed)?;
        }
        self.commit_memory(tx, changes, &doing).await
    }

    async fn search_text(
        &self,
        owner: &str,
        query: &str,
        limit: usize,
    ) -> Result<Vec<ScoredEntry>, StoreError> {
        let words = without_stop_words(query_words(query));
        if words.is_empty() || limit == 0 {
            return Ok(Vec::new());
        }
        let failed = |e| query_error("could not search the memory's text", e);
        let mut conn = self.reader.acquire().await.map_err(failed)?;
        let counts = word_counts(&mut conn, &words).await?;
        let Some(plan) = text_plan(&counts, limit as u64) else { return Ok(Vec::new()) };
        // Twice as many as asked for: the index is every owner's, and other owners' are dropped.
        let fetch = limit.saturating_mul(2);
        let row = match &plan {
            TextPlan::All(query) => {
                sqlx::query(AssertSqlSafe(search_text_sql(1, fetch, limit))).bind(query.as_str())
            }
            TextPlan::Bounded { without_common, with_common, .. } => {
                sqlx::query(AssertSqlSafe(search_text_sql(2, fetch, limit)))
                    .bind(without_common.as_str())
                    .bind(with_common.as_str())
            }
        }
        .bind(owner)
        .fetch_one(&mut *conn)
        .await
        .map_err(failed)?;
        let decode = |e: sqlx::Error| StoreError::corrupt_from("a text search result could not be read", e);
        let cut = row.try_get::<i64, _>("ranked").map_err(decode)? >= sql_limit(fetch);
        let mut found = found_entries(&row.try_get::<String, _>("found").map_err(decode)?)?;
        if found.len() < limit && (cut || matches!(plan, TextPlan::Bounded { .. })) {
            // Too few of the owner's among the candidates: every match is ranked, the owner's
            // picked as they are joined (slow when other owners have many of them, but exact).
            found = sqlx::query(AssertSqlSafe(search_text_exact_sql(limit)))
                .bind(plan.full())
                .bind(owner)
                .fetch_all(&mut *conn)
                .await
                .map_err(failed)?
                .iter()
                .map(|row| {
                    let score: f64 = row
                        .try_get("score")
                        .map_err(|e| StoreError::corrupt_from("a text search score could not be read", e))?;
                    Ok(ScoredEntry { entry: entry_from_row(row)?, score: score as f32 })
                })
                .collect::<Result<Vec<_>, StoreError>>()?;
        }
        found.sort_by(|a, b| b.score.total_cmp(&a.score).then(b.entry.id.cmp(&a.entry.id)));
        found.truncate(limit);
        Ok(found)
    }

    async fn search_embedding(
        &self,
        owner: &str,
        embedding: &[f32],
        limit: usize,
    ) -> Result<Vec<ScoredEntry>, StoreError> {
        memory_vectors::search(&self.vectors, self, owner, embedding, limit).await
    }

    async fn entries(&self, owner: &str, limit: usize) -> Result<Vec<MemoryEntry>, StoreError> {
        sqlx::query(sql::MEMORY_ENTRIES)
            .bind(owner)
            .bind(sql_limit(limit))
            .fetch_all(&self.reader)
            .await
            .map_err(|e| query_error("could not list memory entries", e))?
            .iter()
            .map(entry_from_row)
            .collect()
    }

    async fn unembedded(&self, limit: usize) -> Result<Vec<MemoryEntry>, StoreError> {
        sqlx::query(sql::UNEMBEDDED_ENTRIES)
            .bind(sql_limit(limit))
            .fetch_all(&self.reader)
            .await
            .map_err(|e| query_error("could not list the memory entries without an embedding", e))?
            .iter()
            .map(entry_from_row)
            .collect()
    }

    async fn embed_entries(&self, embeddings: &[(i64, Vec<f32>)]) -> Result<u64, StoreError> {
        self.embed_unembedded(embeddings).await
    }

    async fn refuse_embeddings(&self, ids: &[i64]) -> Result<u64, StoreError> {
        if ids.is_empty() {
            return Ok(0);
        }
        let failed = |e| query_error("could not mark memory entries whose embedding was refused", e);
        let mut tx = self.writer.begin_with("BEGIN IMMEDIATE").await.map_err(failed)?;
        let mut refused = 0;
        for id in ids {
            let done = sqlx::query(sql::REFUSE_EMBEDDING).bind(id).execute(&mut *tx).await.map_err(failed)?;
            refused += done.rows_affected();
        }
        tx.commit().await.map_err(failed)?;
        self.committed();
        Ok(refused)
    }

    async fn forget(&self, owner: &str, which: &ForgetEntries) -> Result<u64, StoreError> {
        let doing = "could not forget memory entries";
        let failed = |e| query_error(doing, e);
        let mut changes: HashMap<String, VectorChanges> = HashMap::new();
        let mut tx = self.writer.begin_with("BEGIN IMMEDIATE").await.map_err(failed)?;
        let forgotten = match which {
            ForgetEntries::Ids(ids) => Self::delete_entries(&mut tx, owner, ids, &mut changes).await?,
            ForgetEntries::Session(session) => {
                let rows = sqlx::query(sql::DELETE_SESSION_ENTRIES)
                    .bind(owner)
                    .bind(session.to_string())
                    .fetch_all(&mut *tx)
                    .await
                    .map_err(failed)?;
                note_deleted(&mut changes, &rows)?;
                rows.len() as u64
            }
            ForgetEntries::Containing(needle) => {
                // Compared here rather than with SQLite's `lower()`, which folds ASCII only.
                let texts: Vec<(i64, String)> =
                    sqlx::query_as(sql::OWNER_TEXTS).bind(owner).fetch_all(&mut *tx).await.map_err(failed)?;
                let ids: Vec<i64> = texts
                    .into_iter()
                    .filter(|(_, text)| contains_text(text, needle))
                    .map(|(id, _)| id)
                    .collect();
                Self::delete_entries(&mut tx, owner, &ids, &mut changes).await?
            }
        };
        self.commit_memory(tx, changes, doing).await?;
        Ok(forgotten)
    }
}

#[async_trait]
impl VectorRows for SqliteStore {
    async fn vector_state(&self, owner: &str) -> Result<VectorState, StoreError> {
        let mut conn = self
            .reader
            .acquire()
            .await
            .map_err(|e| query_error("could not search the memory's embeddings", e))?;
        vector_state(&mut conn, owner).await
    }

    async fn vector_rows(
        &self,
        owner: &str,
        after: i64,
    ) -> Result<(VectorState, Vec<(i64, Vec<u8>)>), StoreError> {
        let failed = |e| query_error("could not load the memory's embeddings", e);
        // One read transaction: the state and the rows from the same snapshot.
        let mut tx = self.reader.begin().await.map_err(failed)?;
        let state = vector_state(&mut tx, owner).await?;
        let rows: Vec<(i64, Vec<u8>)> = sqlx::query_as(sql::VECTOR_ROWS)
            .bind(owner)
            .bind(after)
            .fetch_all(&mut *tx)
            .await
            .map_err(failed)?;
        tx.commit().await.map_err(failed)?;
        Ok((state, rows))
    }

    async fn embedded_entries(
        &self,
        owner: &str,
        ids: &[i64],
    ) -> Result<Vec<(MemoryEntry, Vec<u8>)>, StoreError> {
        let rows = sqlx::query(concat!(
            "SELECT ",
            sql::entry_columns!(),
            // `+owner`: each id is looked up by primary key, rather than in the owner index and
            // then by primary key.
            ", embedding FROM memory_entries WHERE +owner = $1 AND embedding IS NOT NULL \
             AND id IN (SELECT value FROM json_each($2))"
        ))
        .bind(owner)
        .bind(json_ids(ids))
        .fetch_all(&self.reader)
        .await
        .map_err(|e| query_error("could not read the memory entries found by embedding", e))?;
        rows.iter()
            .map(|row| {
                let embedding: Vec<u8> = row.try_get("embedding").map_err(|e| {
                    StoreError::corrupt_from("a memory entry's embedding could not be read", e)
                })?;
                Ok((entry_from_row(row)?, embedding))
            })
            .collect()
    }
}

#[async_trait]
impl SummaryStore for SqliteStore {
    async fn save_summary(&self, summary: &Summary) -> Result<bool, StoreError> {
        let session = summary.session;
        let saved = sqlx::query(sql::SAVE_SUMMARY)
            .bind(session.to_string())
            .bind(to_i64(summary.through, "summary length")?)
            .bind(&summary.text)
            .bind(&summary.model)
            .bind(to_micros(summary.created_at))
            .execute(&self.writer)
            .await
            .map_err(|e| query_error(&format!("could not save the summary of session {session}"), e))?;
        self.committed();
        Ok(saved.rows_affected() > 0)
    }

    async fn summary(&self, session: SessionId) -> Result<Option<Summary>, StoreError> {
        let row = sqlx::query(sql::SUMMARY)
            .bind(session.to_string())
            .fetch_optional(&self.reader)
            .await
            .map_err(|e| query_error(&format!("could not read the summary of session {session}"), e))?;
        let Some(row) = row else { return Ok(None) };
        let decode = |e: sqlx::Error| StoreError::corrupt_from("a summary could not be read", e);
        Ok(Some(Summary {
            session,
            through: from_i64(row.try_get("through").map_err(decode)?, "summary length")?,
            text: row.try_get("text").map_err(decode)?,
            model: row.try_get("model").map_err(decode)?,
            created_at: from_micros(row.try_get("created_at").map_err(decode)?)?,
        }))
    }
}

#[async_trait]
impl FactStore for SqliteStore {
    async fn record_fact(&self, fact: &NewFact) -> Result<FactRecorded, StoreError> {
        let doing = "could not record the fact";
        let failed = |e| query_error(doing, e);
        let object = fact.object.trim();
        let confidence = f64::from(stored_confidence(fact.confidence));
        let source_seq = fact.source.map(|(_, seq)| to_i64(seq, "fact source seq")).transpose()?;
        let mut tx = self.writer.begin_with("BEGIN IMMEDIATE").await.map_err(failed)?;
        let current: Vec<(i64, String)> = sqlx::query_as(sql::CURRENT_FACTS)
            .bind(&fact.owner)
            .bind(&fact.subject)
            .bind(&fact.predicate)
            .fetch_all(&mut *tx)
            .await
            .map_err(failed)?;
        let recorded = if let Some((id, _)) = current.iter().find(|(_, known)| same_object(known, object)) {
            sqlx::query(sql::RAISE_CONFIDENCE)
                .bind(confidence)
                .bind(id)
                .execute(&mut *tx)
                .await
                .map_err(failed)?;
            FactRecorded::Known { id: *id }
        } else {
            let id: i64 = sqlx::query_scalar(sql::INSERT_FACT)
                .bind(&fact.owner)
                .bind(&fact.subject)
                .bind(&fact.predicate)
                .bind(object)
                .bind(confidence)
                .bind(fact.source.map(|(session, _)| session.to_string()))
                .bind(source_seq)
                .bind(to_micros(now()))
                .bind(to_micros(fact.valid_from))
                .fetch_one(&mut *tx)
                .await
                .map_err(failed)?;
            let mut superseded: Vec<i64> = if fact.single_valued {
                sqlx::query_scalar(sql::SUPERSEDE_FACTS)
                    .bind(to_micros(fact.valid_from))
                    .bind(id)
                    .bind(&fact.owner)
                    .bind(&fact.subject)
                    .bind(&fact.predicate)
                    .fetch_all(&mut *tx)
                    .await
                    .map_err(failed)?
            } else {
                Vec::new()
            };
            superseded.sort_unstable();
            FactRecorded::New { id, superseded }
        };
        tx.commit().await.map_err(failed)?;
        self.committed();
        Ok(recorded)
    }

    async fn facts(&self, owner: &str, include_superseded: bool) -> Result<Vec<Fact>, StoreError> {
        sqlx::query(sql::FACTS)
            .bind(owner)
            .bind(include_superseded)
            .fetch_all(&self.reader)
            .await
            .map_err(|e| query_error("could not list facts", e))?
            .iter()
            .map(fact_from_row)
            .collect()
    }

    async fn forget_fact(&self, owner: &str, id: i64) -> Result<bool, StoreError> {
        let deleted = sqlx::query(sql::DELETE_FACT)
            .bind(owner)
            .bind(id)
            .execute(&self.writer)
            .await
            .map_err(|e| query_error(&format!("could not forget fact {id}"), e))?;
        self.committed();
        Ok(deleted.rows_affected() > 0)
    }
}
