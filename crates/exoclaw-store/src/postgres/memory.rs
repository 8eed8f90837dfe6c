//! Long-term memory in PostgreSQL: entries searched by a generated `tsvector` (GIN-indexed,
//! ranked with `ts_rank`) and by embedding (`memory_vectors.rs`; no vector extension is
//! assumed), sessions' summaries and facts.

use std::collections::HashMap;

use async_trait::async_trait;
use exoclaw_core::{
    Fact, FactRecorded, FactStore, ForgetEntries, MemoryEntry, MemoryIndex, NewEntry, NewFact, ScoredEntry,
    StoreError, Summary, SummaryStore,
};
use exoclaw_types::SessionId;
use sqlx::postgres::{PgConnection, PgRow};
use sqlx::{Postgres, QueryBuilder, Row};
use uuid::Uuid;

use super::PgStore;
use crate::codec::{from_i64, now, query_error, role_from_str, role_to_str, to_i64};
use crate::memory::{
    ENTRIES_PER_INSERT, by_session_and_kind, contains_text, distinct_entries, embedding_of, kind_from_str,
    message_marks, query_words, same_object, source_from_columns, sql_limit, stored_confidence,
};
use crate::memory_vectors::{self, VectorChanges, VectorRows, VectorState, encode_embedding};
use crate::sql;

fn entry_from_row(row: &PgRow) -> Result<MemoryEntry, StoreError> {
    let decode = |e: sqlx::Error| StoreError::corrupt_from("a memory entry could not be read", e);
    let kind: String = row.try_get("kind").map_err(decode)?;
    let role: Option<String> = row.try_get("role").map_err(decode)?;
    Ok(MemoryEntry {
        id: row.try_get("id").map_err(decode)?,
        owner: row.try_get("owner").map_err(decode)?,
        session: SessionId(row.try_get("session_id").map_err(decode)?),
        kind: kind_from_str(&kind)?,
        seq: from_i64(row.try_get("seq").map_err(decode)?, "memory entry seq")?,
        role: role.as_deref().map(role_from_str).transpose()?,
        text: row.try_get("text").map_err(decode)?,
        created_at: row.try_get("created_at").map_err(decode)?,
    })
}

fn fact_from_row(row: &PgRow) -> Result<Fact, StoreError> {
    let decode = |e: sqlx::Error| StoreError::corrupt_from("a fact could not be read", e);
    let source_session: Option<Uuid> = row.try_get("source_session").map_err(decode)?;
    Ok(Fact {
        id: row.try_get("id").map_err(decode)?,
        owner: row.try_get("owner").map_err(decode)?,
        subject: row.try_get("subject").map_err(decode)?,
        predicate: row.try_get("predicate").map_err(decode)?,
        object: row.try_get("object").map_err(decode)?,
        confidence: row.try_get("confidence").map_err(decode)?,
        source: source_from_columns(
            source_session.map(SessionId),
            row.try_get("source_seq").map_err(decode)?,
        )?,
        learned_at: row.try_get("learned_at").map_err(decode)?,
        valid_from: row.try_get("valid_from").map_err(decode)?,
        invalidated_at: row.try_get("invalidated_at").map_err(decode)?,
        superseded_by: row.try_get("superseded_by").map_err(decode)?,
    })
}

/// Notes deleted rows (`sql::deleted_entries!`) that had an embedding, by owner.
fn note_deleted(changes: &mut HashMap<String, VectorChanges>, rows: &[PgRow]) -> Result<(), StoreError> {
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
async fn vector_state(conn: &mut PgConnection, owner: &str) -> Result<VectorState, StoreError> {
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

/// Deletes the owner's entries among `ids` on `conn`, noting them in `changes`.
async fn delete_entries(
    conn: &mut PgConnection,
    owner: &str,
    ids: &[i64],
    changes: &mut HashMap<String, VectorChanges>,
) -> Result<u64, StoreError> {
    if ids.is_empty() {
        return Ok(0);
    }
    let rows = sqlx::query(concat!(
        "DELETE FROM memory_entries WHERE owner = $1 AND id = ANY($2)",
        sql::deleted_entries!()
    ))
    .bind(owner)
    .bind(ids)
    .fetch_all(conn)
    .await
    .map_err(|e| query_error("could not forget memory entries", e))?;
    note_deleted(changes, &rows)?;
    Ok(rows.len() as u64)
}

impl PgStore {
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
        let mut tx = self.pool.begin().await.map_err(failed)?;
        for (id, embedding) in embeddings {
            let Some(row) =
                sqlx::query(sql::TAKE_UNEMBEDDED).bind(id).fetch_optional(&mut *tx).await.map_err(failed)?
            else {
                continue;
            };
            let owner: String = row.try_get("owner").map_err(decode)?;
            let session: Uuid = row.try_get("session_id").map_err(decode)?;
            let kind: String = row.try_get("kind").map_err(decode)?;
            let seq: i64 = row.try_get("seq").map_err(decode)?;
            let role: Option<String> = row.try_get("role").map_err(decode)?;
            let text: String = row.try_get("text").map_err(decode)?;
            let created_at: chrono::DateTime<chrono::Utc> = row.try_get("created_at").map_err(decode)?;
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

    /// Commits `tx` after reading the touched owners' vector states into `changes`, then brings the
    /// cache of embeddings along.
    async fn commit_memory(
        &self,
        mut tx: sqlx::Transaction<'_, Postgres>,
        mut changes: HashMap<String, VectorChanges>,
        doing: &str,
    ) -> Result<(), StoreError> {
        for (owner, change) in &mut changes {
            change.after = vector_state(&mut tx, owner).await?;
        }
        tx.commit().await.map_err(|e| query_error(doing, e))?;
        for (owner, change) in changes {
            self.vectors.written(&owner, change);
        }
        Ok(())
    }
}

#[async_trait]
impl MemoryIndex for PgStore {
    async fn index(&self, entries: &[NewEntry]) -> Result<(), StoreError> {
        let entries = distinct_entries(entries);
        if entries.is_empty() {
            return Ok(());
        }
        let doing = "could not index memory entries";
        let failed = |e| query_error(doing, e);
        let rows = entries
            .iter()
            .map(|e| Ok((to_i64(e.seq, "memory entry seq")?, embedding_of(e).map(encode_embedding))))
            .collect::<Result<Vec<_>, StoreError>>()?;
        let groups = by_session_and_kind(&entries)
            .into_iter()
            .map(|(key, seqs)| {
                let seqs =
                    seqs.into_iter().map(|s| to_i64(s, "memory entry seq")).collect::<Result<Vec<_>, _>>()?;
                Ok((key, seqs))
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        let marks = message_marks(&entries)?;

        let mut changes: HashMap<String, VectorChanges> = HashMap::new();
        let mut tx = self.pool.begin().await.map_err(failed)?;
        // The entries replaced go first, and their successors get new ids: a changed embedding is
        // then a removal and an addition, which other nodes' caches notice.
        for ((session, kind), seqs) in groups {
            let deleted = sqlx::query(concat!(
                "DELETE FROM memory_entries WHERE session_id = $1 AND kind = $2 AND seq = ANY($3)",
                sql::deleted_entries!()
            ))
            .bind(session.0)
            .bind(kind.as_str())
            .bind(seqs)
            .fetch_all(&mut *tx)
            .await
            .map_err(failed)?;
            note_deleted(&mut changes, &deleted)?;
        }
        for (chunk, chunk_rows) in entries.chunks(ENTRIES_PER_INSERT).zip(rows.chunks(ENTRIES_PER_INSERT)) {
            let mut insert = QueryBuilder::<Postgres>::new(sql::INSERT_ENTRIES);
            insert.push_values(chunk.iter().zip(chunk_rows), |mut row, (entry, (seq, embedding))| {
                row.push_bind(&entry.owner)
                    .push_bind(entry.session.0)
                    .push_bind(entry.kind.as_str())
                    .push_bind(*seq)
                    .push_bind(entry.role.map(role_to_str))
                    .push_bind(&entry.text)
                    .push_bind(entry.created_at)
                    .push_bind(embedding.clone());
            });
            insert.push(sql::INSERTED_ENTRIES);
            let inserted = insert.build().persistent(false).fetch_all(&mut *tx).await.map_err(failed)?;
            // RETURNING gives rows in no promised order: they are matched by key.
            let by_key: HashMap<(Uuid, &str, i64), &NewEntry> = chunk
                .iter()
                .zip(chunk_rows)
                .map(|(entry, (seq, _))| ((entry.session.0, entry.kind.as_str(), *seq), *entry))
                .collect();
            let decode =
                |e: sqlx::Error| StoreError::corrupt_from("an indexed memory entry could not be read", e);
            for row in inserted {
                let key: (Uuid, String, i64) = (
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
                .bind(session.0)
                .bind(mark)
                .execute(&mut *tx)
                .await
                .map_err(failed)?;
        }
        self.commit_memory(tx, changes, doing).await
    }

    async fn indexed_messages(&self, session: SessionId) -> Result<u64, StoreError> {
        let mark: Option<i64> = sqlx::query_scalar(sql::INDEXED_MESSAGES)
            .bind(session.0)
            .fetch_optional(&self.pool)
            .await
            .map_err(|e| {
                query_error(&format!("could not count the indexed messages of session {session}"), e)
            })?;
        mark.map_or(Ok(0), |mark| from_i64(mark, "indexing mark"))
    }

    async fn reset_session(&self, session: SessionId) -> Result<(), StoreError> {
        let doing = format!("could not reset the memory of session {session}");
        let failed = |e| query_error(&doing, e);
        let mut changes: HashMap<String, VectorChanges> = HashMap::new();
        let mut tx = self.pool.begin().await.map_err(failed)?;
        let rows = sqlx::query(sql::RESET_SESSION_ENTRIES)
            .bind(session.0)
            .fetch_all(&mut *tx)
            .await
            .map_err(failed)?;
        note_deleted(&mut changes, &rows)?;
        for statement in [sql::DELETE_SUMMARY, sql::DELETE_MARK] {
            sqlx::query(statement).bind(session.0).execute(&mut *tx).await.map_err(failed)?;
        }
        self.commit_memory(tx, changes, &doing).await
    }

    async fn search_text(
        &self,
        owner: &str,
        query: &str,
        limit: usize,
    ) -> Result<Vec<ScoredEntry>, StoreError> {
        let words = query_words(query);
        if words.is_empty() || limit == 0 {
            return Ok(Vec::new());
        }
        // The words become lexemes as the column's were made (stemmed, stop words dropped), and the
        // lexemes a query of alternatives, each quoted: nothing the user typed is parsed as
        // tsquery syntax. No lexeme at all (only stop words) makes the query NULL, matching nothing.
        let rows = sqlx::query(
            "SELECT e.id, e.owner, e.session_id, e.kind, e.seq, e.role, e.text, e.created_at, \
             ts_rank(e.tsv, q.query) AS score \
             FROM memory_entries e, \
             (SELECT string_agg(quote_literal(lexeme), ' | ')::tsquery AS query \
              FROM unnest(to_tsvector('english', $2))) AS q \
             WHERE e.owner = $1 AND e.tsv @@ q.query ORDER BY score DESC, e.id DESC LIMIT $3",
        )
        .bind(owner)
        .bind(words.join(" "))
        .bind(sql_limit(limit))
        .fetch_all(&self.pool)
        .await
        .map_err(|e| query_error("could not search the memory's text", e))?;
        rows.iter()
            .map(|row| {
                let score: f32 = row
                    .try_get("score")
                    .map_err(|e| StoreError::corrupt_from("a text search score could not be read", e))?;
                Ok(ScoredEntry { entry: entry_from_row(row)?, score })
            })
            .collect()
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
            .fetch_all(&self.pool)
            .await
            .map_err(|e| query_error("could not list memory entries", e))?
            .iter()
            .map(entry_from_row)
            .collect()
    }

    async fn unembedded(&self, limit: usize) -> Result<Vec<MemoryEntry>, StoreError> {
        sqlx::query(sql::UNEMBEDDED_ENTRIES)
            .bind(sql_limit(limit))
            .fetch_all(&self.pool)
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
        let mut tx = self.pool.begin().await.map_err(failed)?;
        let mut refused = 0;
        for id in ids {
            let done = sqlx::query(sql::REFUSE_EMBEDDING).bind(id).execute(&mut *tx).await.map_err(failed)?;
            refused += done.rows_affected();
        }
        tx.commit().await.map_err(failed)?;
        Ok(refused)
    }

    async fn forget(&self, owner: &str, which: &ForgetEntries) -> Result<u64, StoreError> {
        let doing = "could not forget memory entries";
        let failed = |e| query_error(doing, e);
        let mut changes: HashMap<String, VectorChanges> = HashMap::new();
        let mut tx = self.pool.begin().await.map_err(failed)?;
        let forgotten = match which {
            ForgetEntries::Ids(ids) => delete_entries(&mut tx, owner, ids, &mut changes).await?,
            ForgetEntries::Session(session) => {
                let rows = sqlx::query(sql::DELETE_SESSION_ENTRIES)
                    .bind(owner)
                    .bind(session.0)
                    .fetch_all(&mut *tx)
                    .await
                    .map_err(failed)?;
                note_deleted(&mut changes, &rows)?;
                rows.len() as u64
            }
            ForgetEntries::Containing(needle) => {
                // Compared here, the same way on both backends, whatever the database's collation.
                let texts: Vec<(i64, String)> =
                    sqlx::query_as(sql::OWNER_TEXTS).bind(owner).fetch_all(&mut *tx).await.map_err(failed)?;
                let ids: Vec<i64> = texts
                    .into_iter()
                    .filter(|(_, text)| contains_text(text, needle))
                    .map(|(id, _)| id)
                    .collect();
                delete_entries(&mut tx, owner, &ids, &mut changes).await?
            }
        };
        self.commit_memory(tx, changes, doing).await?;
        Ok(forgotten)
    }
}

#[async_trait]
impl VectorRows for PgStore {
    async fn vector_state(&self, owner: &str) -> Result<VectorState, StoreError> {
        let mut conn = self
            .pool
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
        // One snapshot for the state and the rows.
        let mut tx = self.pool.begin().await.map_err(failed)?;
        sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            .execute(&mut *tx)
            .await
            .map_err(failed)?;
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
            ", embedding FROM memory_entries WHERE owner = $1 AND embedding IS NOT NULL AND id = ANY($2)"
        ))
        .bind(owner)
        .bind(ids)
        .fetch_all(&self.pool)
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
impl SummaryStore for PgStore {
    async fn save_summary(&self, summary: &Summary) -> Result<bool, StoreError> {
        let session = summary.session;
        let saved = sqlx::query(sql::SAVE_SUMMARY)
            .bind(session.0)
            .bind(to_i64(summary.through, "summary length")?)
            .bind(&summary.text)
            .bind(&summary.model)
            .bind(summary.created_at)
            .execute(&self.pool)
            .await
            .map_err(|e| query_error(&format!("could not save the summary of session {session}"), e))?;
        Ok(saved.rows_affected() > 0)
    }

    async fn summary(&self, session: SessionId) -> Result<Option<Summary>, StoreError> {
        let row = sqlx::query(sql::SUMMARY)
            .bind(session.0)
            .fetch_optional(&self.pool)
            .await
            .map_err(|e| query_error(&format!("could not read the summary of session {session}"), e))?;
        let Some(row) = row else { return Ok(None) };
        let decode = |e: sqlx::Error| StoreError::corrupt_from("a summary could not be read", e);
        Ok(Some(Summary {
            session,
            through: from_i64(row.try_get("through").map_err(decode)?, "summary length")?,
            text: row.try_get("text").map_err(decode)?,
            model: row.try_get("model").map_err(decode)?,
            created_at: row.try_get("created_at").map_err(decode)?,
        }))
    }
}

#[async_trait]
impl FactStore for PgStore {
    async fn record_fact(&self, fact: &NewFact) -> Result<FactRecorded, StoreError> {
        let doing = "could not record the fact";
        let failed = |e| query_error(doing, e);
        let object = fact.object.trim();
        let confidence = stored_confidence(fact.confidence);
        let source_seq = fact.source.map(|(_, seq)| to_i64(seq, "fact source seq")).transpose()?;
        let mut tx = self.pool.begin().await.map_err(failed)?;
        // Two nodes recording facts of the same subject and predicate at once must not both miss
        // the other's and insert two current values: they take turns. (The two-key form keeps
        // these apart from the sessions' one-key advisory locks.)
        sqlx::query("SELECT pg_advisory_xact_lock(hashtext('exoclaw memory_facts ' || $1), hashtext($2 || ' ' || $3))")
            .bind(&fact.owner)
            .bind(&fact.subject)
            .bind(&fact.predicate)
            .execute(&mut *tx)
            .await
            .map_err(failed)?;
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
                .bind(fact.source.map(|(session, _)| session.0))
                .bind(source_seq)
                .bind(now())
                .bind(fact.valid_from)
                .fetch_one(&mut *tx)
                .await
                .map_err(failed)?;
            let mut superseded: Vec<i64> = if fact.single_valued {
                sqlx::query_scalar(sql::SUPERSEDE_FACTS)
                    .bind(fact.valid_from)
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
        Ok(recorded)
    }

    async fn facts(&self, owner: &str, include_superseded: bool) -> Result<Vec<Fact>, StoreError> {
        sqlx::query(sql::FACTS)
            .bind(owner)
            .bind(include_superseded)
            .fetch_all(&self.pool)
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
            .execute(&self.pool)
            .await
            .map_err(|e| query_error(&format!("could not forget fact {id}"), e))?;
        Ok(deleted.rows_affected() > 0)
    }
}
