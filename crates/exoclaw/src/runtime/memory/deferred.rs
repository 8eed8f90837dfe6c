//! A long-term memory store (`[memory] url`) that could not be reached when the runtime started:
//! [`DeferredStore`] stands in for it, failing every call at once (so turns go on with their
//! recent window and a warning, as during any outage) until [`connect_when_up`] has connected to
//! it in the background, retrying with backoff, never on a turn's path.

use async_trait::async_trait;
use exoclaw_core::{
    Fact, FactRecorded, FactStore, ForgetEntries, MemoryEntry, MemoryIndex, MemoryStore, NewEntry, NewFact,
    ScoredEntry, StoreError, Summary, SummaryStore,
};
use exoclaw_types::SessionId;
use std::future::Future;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// The first wait before connecting again; doubled after each failure up to [`MOST_BETWEEN_TRIES`].
const FIRST_RETRY: Duration = Duration::from_secs(1);

/// The longest wait between two tries.
pub(crate) const MOST_BETWEEN_TRIES: Duration = Duration::from_secs(30);

/// The memory store, once connected; until then every call fails with why it is not there.
pub struct DeferredStore {
    /// Where it is, password masked.
    location: String,
    /// The store, once connected.
    connected: OnceLock<Arc<dyn MemoryStore>>,
    /// Why the last try failed.
    last_error: Mutex<String>,
}

impl std::fmt::Debug for DeferredStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeferredStore")
            .field("location", &self.location)
            .field("connected", &self.connected.get().is_some())
            .finish_non_exhaustive()
    }
}

impl DeferredStore {
    /// A store at `location` (password masked) not reached yet, because of `error`.
    pub fn new(location: String, error: &StoreError) -> Self {
        Self { location, connected: OnceLock::new(), last_error: Mutex::new(error.to_string()) }
    }

    /// Whether it is connected.
    pub fn is_connected(&self) -> bool {
        self.connected.get().is_some()
    }

    /// Uses `store` from now on.
    pub(crate) fn install(&self, store: Arc<dyn MemoryStore>) {
        if self.connected.set(store).is_ok() {
            tracing::info!(url = %self.location, "the long-term memory store answers now; memory catches up");
        }
    }

    fn failed(&self, error: &StoreError) {
        if let Ok(mut last) = self.last_error.lock() {
            *last = error.to_string();
        }
    }

    fn store(&self) -> Result<&Arc<dyn MemoryStore>, StoreError> {
        self.connected.get().ok_or_else(|| {
            let why = self.last_error.lock().map(|e| e.clone()).unwrap_or_default();
            StoreError::open(format!(
                "the long-term memory store {} has not answered since exoclaw started ({why}); \
                 exoclaw keeps trying to connect, and catches up what it missed once it does",
                self.location
            ))
        })
    }
}

/// Connects `deferred` by `connect`, trying again after 1, 2, 4… seconds (at most
/// [`MOST_BETWEEN_TRIES`]) until it succeeds or `stop` is cancelled; then hands the store to
/// `connected`, which installs it ([`DeferredStore::install`]) and starts the catch-up.
pub(crate) async fn connect_when_up<C, F, D>(
    deferred: Arc<DeferredStore>,
    connect: C,
    stop: CancellationToken,
    connected: D,
) where
    C: Fn() -> F,
    F: Future<Output = Result<Arc<dyn MemoryStore>, StoreError>>,
    D: FnOnce(Arc<dyn MemoryStore>),
{
    let mut wait = FIRST_RETRY;
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(wait) => {}
        }
        match connect().await {
            Ok(store) => return connected(store),
            Err(e) => {
                tracing::debug!(url = %deferred.location, error = %e, "the long-term memory store is still unreachable");
                deferred.failed(&e);
                wait = (wait * 2).min(MOST_BETWEEN_TRIES);
            }
        }
    }
}

#[async_trait]
impl MemoryIndex for DeferredStore {
    async fn index(&self, entries: &[NewEntry]) -> Result<(), StoreError> {
        self.store()?.index(entries).await
    }
    async fn indexed_messages(&self, session: SessionId) -> Result<u64, StoreError> {
        self.store()?.indexed_messages(session).await
    }
    async fn reset_session(&self, session: SessionId) -> Result<(), StoreError> {
        self.store()?.reset_session(session).await
    }
    async fn search_text(
        &self,
        owner: &str,
        query: &str,
        limit: usize,
    ) -> Result<Vec<ScoredEntry>, StoreError> {
        self.store()?.search_text(owner, query, limit).await
    }
    async fn search_embedding(
        &self,
        owner: &str,
        embedding: &[f32],
        limit: usize,
    ) -> Result<Vec<ScoredEntry>, StoreError> {
        self.store()?.search_embedding(owner, embedding, limit).await
    }
    async fn entries(&self, owner: &str, limit: usize) -> Result<Vec<MemoryEntry>, StoreError> {
        self.store()?.entries(owner, limit).await
    }
    async fn forget(&self, owner: &str, which: &ForgetEntries) -> Result<u64, StoreError> {
        self.store()?.forget(owner, which).await
    }
    async fn unembedded(&self, limit: usize) -> Result<Vec<MemoryEntry>, StoreError> {
        self.store()?.unembedded(limit).await
    }
    async fn refuse_embeddings(&self, ids: &[i64]) -> Result<u64, StoreError> {
        self.store()?.refuse_embeddings(ids).await
    }
    async fn embed_entries(&self, embeddings: &[(i64, Vec<f32>)]) -> Result<u64, StoreError> {
        self.store()?.embed_entries(embeddings).await
    }
}

#[async_trait]
impl SummaryStore for DeferredStore {
    async fn save_summary(&self, summary: &Summary) -> Result<bool, StoreError> {
        self.store()?.save_summary(summary).await
    }
    async fn summary(&self, session: SessionId) -> Result<Option<Summary>, StoreError> {
        self.store()?.summary(session).await
    }
}

#[async_trait]
impl FactStore for DeferredStore {
    async fn record_fact(&self, fact: &NewFact) -> Result<FactRecorded, StoreError> {
        self.store()?.record_fact(fact).await
    }
    async fn facts(&self, owner: &str, include_superseded: bool) -> Result<Vec<Fact>, StoreError> {
        self.store()?.facts(owner, include_superseded).await
    }
    async fn forget_fact(&self, owner: &str, id: i64) -> Result<bool, StoreError> {
        self.store()?.forget_fact(owner, id).await
    }
}
