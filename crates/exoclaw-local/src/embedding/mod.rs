//! [`LocalEmbedder`]: sentence embeddings computed in-process, an [`Embedder`] that needs no API
//! key and no server. Its model is all-MiniLM-L6-v2 ([`crate::fetch::ALL_MINILM_L6_V2`], 384
//! dimensions) found in exoclaw's model cache or fetched into it, or any sentence-transformers
//! BERT folder with mean pooling (`config.json`, `tokenizer.json`, `model.safetensors`). The
//! vectors match sentence-transformers' own on the same folder (cosine ≥ 0.999, checked by
//! `tests/minilm.rs`).
//!
//! Inputs are tokenised, sorted by length so each batch pads little, and run batch by batch on
//! blocking threads (never on the async runtime); the vectors come back in the inputs' order.

mod bert;
mod encoder;
mod safetensors;

use crate::LocalError;
use crate::fetch::{ALL_MINILM_L6_V2, Locator, Progress};
use async_trait::async_trait;
use encoder::Encoder;
pub use encoder::{DEFAULT_MAX_TOKENS, MODEL_FILES};
use exoclaw_core::{Embedder, ErrorKind, ProviderError};
use exoclaw_types::{EmbeddingRequest, Embeddings};
use std::path::PathBuf;
use std::sync::Arc;

/// Inputs per forward pass by default (sentence-transformers' default too). Inputs are sorted by
/// length first, so a batch pads little.
pub const DEFAULT_BATCH: usize = 32;

/// Most tokens of one batch, padding included: long inputs go fewer to a batch. Bigger batches
/// speed up nothing (the products are already large) but need buffers big enough that the
/// allocator hands each back to the system and every page faults in again on the next batch.
pub const BATCH_TOKENS: usize = 2048;

/// Settings of a [`LocalEmbedder`].
#[derive(Debug, Clone)]
pub struct LocalEmbedderOptions {
    /// The embedder instance's name (`local`), which its errors carry.
    pub name: String,
    /// Where the model folder is looked for (`<cache_dir>/all-MiniLM-L6-v2/`) and fetched from.
    pub locator: Locator,
    /// A model folder to use as is instead of the cache (the model is then named after the
    /// folder); it is never downloaded into.
    pub model_dir: Option<PathBuf>,
    /// Inputs per forward pass.
    pub batch_size: usize,
}

impl Default for LocalEmbedderOptions {
    /// `local`, the default [`Locator`] (`$EXOCLAW_MODELS_DIR`, …), no explicit folder,
    /// [`DEFAULT_BATCH`].
    fn default() -> Self {
        Self { name: "local".into(), locator: Locator::default(), model_dir: None, batch_size: DEFAULT_BATCH }
    }
}

/// A sentence-embedding model running in-process. Cheap to share (`Arc<dyn Embedder>`); requests
/// may run concurrently.
pub struct LocalEmbedder {
    name: String,
    model: String,
    encoder: Arc<Encoder>,
    batch_size: usize,
}

impl std::fmt::Debug for LocalEmbedder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalEmbedder")
            .field("name", &self.name)
            .field("model", &self.model)
            .field("dimensions", &self.encoder.dimensions())
            .field("batch_size", &self.batch_size)
            .finish()
    }
}

impl LocalEmbedder {
    /// Finds the model — `options.model_dir`, else all-MiniLM-L6-v2 in the model cache, else
    /// downloaded into it with `progress` (refused offline, with an error saying how to get the
    /// files) — and loads it on a blocking thread (about a second).
    pub async fn open(options: LocalEmbedderOptions, progress: Progress<'_>) -> Result<Self, LocalError> {
        let (dir, model) = match &options.model_dir {
            Some(dir) => (dir.clone(), folder_name(dir)),
            None => (
                options.locator.locate_folder(&ALL_MINILM_L6_V2, progress).await?,
                ALL_MINILM_L6_V2.name.to_owned(),
            ),
        };
        let encoder = tokio::task::spawn_blocking(move || Encoder::load(&dir))
            .await
            .map_err(|e| LocalError::Inference(format!("loading the embedding model stopped: {e}")))??;
        Ok(Self {
            name: options.name,
            model,
            encoder: Arc::new(encoder),
            batch_size: options.batch_size.max(1),
        })
    }

    /// The model's name, which requests must name (`all-MiniLM-L6-v2`, or the explicit folder's
    /// name; compared ignoring ASCII case).
    pub fn model(&self) -> &str {
        &self.model
    }

    /// The vectors' length (384 for all-MiniLM-L6-v2).
    pub fn dimensions(&self) -> usize {
        self.encoder.dimensions()
    }

    /// Most tokens of one input the model sees (256 for all-MiniLM-L6-v2); longer inputs are cut,
    /// as sentence-transformers cuts them.
    pub fn max_tokens(&self) -> usize {
        self.encoder.max_tokens()
    }

    fn error(&self, e: LocalError) -> ProviderError {
        ProviderError::new(e.kind(), &self.name, e.to_string())
    }

    fn check(&self, request: &EmbeddingRequest) -> Result<(), LocalError> {
        let requested = request.model.as_str();
        if !requested.eq_ignore_ascii_case(&self.model) {
            return Err(LocalError::UnknownEmbeddingModel {
                provider: self.name.clone(),
                requested: requested.to_owned(),
                served: self.model.clone(),
            });
        }
        match request.dimensions {
            Some(requested) if requested as usize != self.dimensions() => Err(LocalError::Dimensions {
                model: self.model.clone(),
                requested,
                native: self.dimensions(),
            }),
            _ => Ok(()),
        }
    }

    /// Runs `work` with the encoder on a blocking thread.
    async fn blocking<T: Send + 'static>(
        &self,
        work: impl FnOnce(&Encoder) -> Result<T, LocalError> + Send + 'static,
    ) -> Result<T, ProviderError> {
        let encoder = self.encoder.clone();
        match tokio::task::spawn_blocking(move || work(&encoder)).await {
            Ok(result) => result.map_err(|e| self.error(e)),
            Err(e) => Err(ProviderError::new(
                ErrorKind::Server,
                &self.name,
                format!("the embedding thread failed: {e}"),
            )),
        }
    }
}

#[async_trait]
impl Embedder for LocalEmbedder {
    /// Tokenises every input, then embeds them in batches of the configured size, longest first;
    /// `input_tokens` counts the tokens the model saw (`[CLS]` and `[SEP]` included, after
    /// cutting). Dropping the future stops before the next batch.
    async fn embed(&self, request: EmbeddingRequest) -> Result<Embeddings, ProviderError> {
        self.check(&request).map_err(|e| self.error(e))?;
        let inputs = request.inputs;
        let mut tokens = self.blocking(move |encoder| encoder.tokenize(&inputs)).await?;
        let input_tokens = tokens.iter().map(|t| t.len() as u64).sum();
        let mut order: Vec<usize> = (0..tokens.len()).collect();
        // Longest first, as sentence-transformers orders them: equal lengths batch together.
        order.sort_by_key(|&i| std::cmp::Reverse(tokens[i].len()));
        let mut vectors = vec![Vec::new(); tokens.len()];
        for positions in batches(&order, &tokens, self.batch_size) {
            let batch: Vec<Vec<u32>> = positions.iter().map(|&i| std::mem::take(&mut tokens[i])).collect();
            let batch_vectors = self.blocking(move |encoder| encoder.embed(&batch)).await?;
            for (&i, vector) in positions.iter().zip(batch_vectors) {
                vectors[i] = vector;
            }
        }
        Ok(Embeddings { vectors, input_tokens: Some(input_tokens) })
    }
}

/// `order` (indices into `tokens`, longest first) cut into batches of at most `size` inputs and
/// [`BATCH_TOKENS`] tokens padded to the batch's first (longest) input; an input longer than that
/// goes alone.
fn batches<'a>(order: &'a [usize], tokens: &[Vec<u32>], size: usize) -> Vec<&'a [usize]> {
    let mut batches = Vec::new();
    let mut rest = order;
    while let Some(&first) = rest.first() {
        let fit = (BATCH_TOKENS / tokens[first].len().max(1)).clamp(1, size);
        let (batch, after) = rest.split_at(fit.min(rest.len()));
        batches.push(batch);
        rest = after;
    }
    batches
}

/// An explicit folder's last component, as the model's name.
fn folder_name(dir: &std::path::Path) -> String {
    dir.file_name().map_or_else(|| dir.display().to_string(), |n| n.to_string_lossy().into_owned())
}
