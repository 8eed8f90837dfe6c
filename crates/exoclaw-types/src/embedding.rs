//! The provider-neutral embedding request and its answer.

use crate::ModelId;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Texts to turn into vectors with one embedding model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct EmbeddingRequest {
    /// The model, as the provider names it.
    pub model: ModelId,
    /// The texts, one vector each, in order.
    pub inputs: Vec<String>,
    /// The vectors' length, for models that can shorten theirs (OpenAI's `text-embedding-3-*`,
    /// Gemini's `outputDimensionality`); `None` leaves the model's own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dimensions: Option<u32>,
}

impl EmbeddingRequest {
    /// A request for `model` to embed `inputs`.
    pub fn new(model: impl Into<ModelId>, inputs: Vec<String>) -> Self {
        Self { model: model.into(), inputs, dimensions: None }
    }
}

/// One vector per input, in the inputs' order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Embeddings {
    /// The vectors.
    pub vectors: Vec<Vec<f32>>,
    /// Tokens the inputs came to, when the provider says (`None`: it did not — never a silent 0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input_tokens: Option<u64>,
}
