//! Embeddings given later to ArcadeDB entries indexed without one ([`MemoryIndex::unembedded`],
//! [`MemoryIndex::embed_entries`]), or the entries marked refused by the embedder
//! ([`MemoryIndex::refuse_embeddings`]): the memory's backfill, apart from how entries are
//! searched.
//!
//! [`MemoryIndex::unembedded`]: exoclaw_core::MemoryIndex::unembedded
//! [`MemoryIndex::embed_entries`]: exoclaw_core::MemoryIndex::embed_entries
//! [`MemoryIndex::refuse_embeddings`]: exoclaw_core::MemoryIndex::refuse_embeddings

use exoclaw_core::{MemoryEntry, StoreError};
use serde_json::json;

use super::client::{ArcadeError, Tx};
use super::{ArcadeDbMemory, ENTRY_FIELDS, EntryRow, count_of, decode, params};
use crate::memory::sql_limit;

impl ArcadeDbMemory {
    /// Entries of every owner without an embedding, whose embedding was not refused, oldest first,
    /// at most `limit`.
    pub(super) async fn unembedded_entries(&self, limit: usize) -> Result<Vec<MemoryEntry>, StoreError> {
        let rows = self
            .rows(
                "list the memory entries without an embedding",
                &format!(
                    "SELECT {ENTRY_FIELDS} FROM MemoryEntry WHERE embedding IS NULL \
                     AND (embedding_refused IS NULL OR embedding_refused = false) ORDER BY id LIMIT :limit"
                ),
                params([("limit", json!(sql_limit(limit)))]),
            )
            .await?;
        rows.into_iter().map(|row| decode::<EntryRow>(row, "a memory entry")?.into_entry()).collect()
    }

    /// Gives each entry among `embeddings` that has none its embedding and a new id, in one
    /// transaction; gives how many were embedded.
    pub(super) async fn embed_unembedded(&self, embeddings: &[(i64, Vec<f32>)]) -> Result<u64, StoreError> {
        if embeddings.is_empty() {
            return Ok(0);
        }
        self.client.transaction(|tx| async move { self.embed_in(&tx, embeddings).await }).await.map_err(|e| {
            self.failed(&format!("store the embeddings of {} memory entries", embeddings.len()), e)
        })
    }

    /// Marks the entries among `ids` that have no embedding as refused by the embedder, in one
    /// transaction; gives how many were marked.
    pub(super) async fn refuse_unembedded(&self, ids: &[i64]) -> Result<u64, StoreError> {
        if ids.is_empty() {
            return Ok(0);
        }
        self.client
            .transaction(|tx| async move {
                let mut refused = 0;
                for id in ids {
                    let rows = self
                        .client
                        .sql(
                            Some(&tx),
                            "UPDATE MemoryEntry SET embedding_refused = true WHERE id = :id \
                             AND embedding IS NULL AND (embedding_refused IS NULL OR embedding_refused = false)",
                            params([("id", json!(id))]),
                        )
                        .await?;
                    refused += count_of(&rows);
                }
                Ok(refused)
            })
            .await
            .map_err(|e| self.failed(&format!("mark {} memory entries whose embedding was refused", ids.len()), e))
    }

    async fn embed_in(&self, tx: &Tx, embeddings: &[(i64, Vec<f32>)]) -> Result<u64, ArcadeError> {
        let first_id = self.take_ids(tx, "entry", embeddings.len()).await?;
        let mut embedded = 0;
        for (new_id, (id, embedding)) in (first_id..).zip(embeddings) {
            let rows = self
                .client
                .sql(
                    Some(tx),
                    "UPDATE MemoryEntry SET id = :new_id, embedding = :embedding \
                     WHERE id = :id AND embedding IS NULL",
                    params([("new_id", json!(new_id)), ("embedding", json!(embedding)), ("id", json!(id))]),
                )
                .await?;
            embedded += count_of(&rows);
        }
        Ok(embedded)
    }
}
