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
}
