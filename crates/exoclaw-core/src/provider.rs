//! The [`Provider`] trait: one model API (a vendor, a compatible server, the local model).

use crate::{ProviderError, collect_response};
use async_trait::async_trait;
use exoclaw_types::{ChatRequest, ChatResponse, ModelId, StreamEvent};
use futures::Stream;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::pin::Pin;

/// The events of one streamed answer. Dropping the stream cancels the request.
pub type EventStream = Pin<Box<dyn Stream<Item = Result<StreamEvent, ProviderError>> + Send + 'static>>;

/// What a model can do, as far as the provider knows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Capabilities {
    /// Answers can be streamed token by token.
    pub streaming: bool,
    /// The model takes tool definitions and emits tool calls.
    pub tools: bool,
    /// The model takes images in user messages.
    pub images: bool,
    /// The model can stream visible reasoning.
    pub thinking: bool,
    /// Context window in tokens, when known.
    pub context_window: Option<u32>,
    /// Most output tokens per answer, when known.
    pub max_output_tokens: Option<u32>,
}

impl Default for Capabilities {
    fn default() -> Self {
        Self {
            streaming: true,
            tools: true,
            images: false,
            thinking: false,
            context_window: None,
            max_output_tokens: None,
        }
    }
}

/// A model a provider offers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ModelInfo {
    /// The model's name on this provider.
    pub id: ModelId,
    /// Human-readable name, when the API gives one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
}

/// One model API. Object-safe: the rest of exoclaw holds providers as `Arc<dyn Provider>`.
///
/// Only [`Provider::stream`] is required; [`Provider::complete`] is derived from it and the rest
/// have conservative defaults.
#[async_trait]
pub trait Provider: Send + Sync + std::fmt::Debug {
    /// The provider instance's name (`anthropic`, `openai`, `my-vllm`), used in errors and logs.
    fn name(&self) -> &str;

    /// Sends `request` and streams the answer. Errors before the first event (bad key, unknown
    /// model, server down) come back here; errors after it come as the stream's last item.
    async fn stream(&self, request: ChatRequest) -> Result<EventStream, ProviderError>;

    /// Sends `request` and waits for the whole answer.
    async fn complete(&self, request: ChatRequest) -> Result<ChatResponse, ProviderError> {
        let events = self.stream(request).await?;
        collect_response(self.name(), events).await
    }

    /// What `model` can do.
    fn capabilities(&self, _model: &ModelId) -> Capabilities {
        Capabilities::default()
    }

    /// The models this provider offers; empty when the API cannot list them.
    async fn models(&self) -> Result<Vec<ModelInfo>, ProviderError> {
        Ok(Vec::new())
    }

    /// Whether the provider answers at all. By default, a model listing that succeeds.
    async fn health(&self) -> Result<(), ProviderError> {
        self.models().await.map(drop)
    }
}
