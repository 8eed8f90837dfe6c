//! The [`Embedder`] trait: a model API that turns texts into vectors (for memory and search).

use crate::ProviderError;
use async_trait::async_trait;
use exoclaw_types::{EmbeddingRequest, Embeddings};

/// One embedding API (a vendor, a compatible server, a local model). Object-safe: held as
/// `Arc<dyn Embedder>`. Its errors name the provider instance, as a [`crate::Provider`]'s do.
#[async_trait]
pub trait Embedder: Send + Sync + std::fmt::Debug {
    /// One vector per input, in order. Implementations split long input lists into the batches
    /// their API takes; the caller sends any number of inputs.
    async fn embed(&self, request: EmbeddingRequest) -> Result<Embeddings, ProviderError>;

    /// Whether [`Embedder::embed`] can be called now. An embedder whose model is still being
    /// fetched, or could not be, says so instead of failing each call: a caller that can do
    /// without vectors (memory searches by words meanwhile) skips it and asks again later.
    /// Cheap and never blocking. By default always [`Readiness::Ready`].
    fn readiness(&self) -> Readiness {
        Readiness::Ready
    }
}

/// Whether an [`Embedder`] answers now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Readiness {
    /// It answers (perhaps after loading a model that is on this machine already).
    Ready,
    /// It does not answer for now, and says why in words for the user: its model is being
    /// fetched in the background, or could not be and is tried again later. Worth telling the
    /// user once.
    NotNow(String),
    /// It does not answer, as the user chose (offline mode, with its model not on this
    /// machine), and says why: nothing to warn about, only to say when asked why a search went
    /// by words alone.
    Off(String),
}
