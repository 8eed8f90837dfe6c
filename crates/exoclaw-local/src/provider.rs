//! [`LocalProvider`]: the embedded model as a [`Provider`], so the rest of exoclaw treats it like
//! any other model API.

use crate::LocalError;
use crate::engine::{GenerateOptions, Generated, LocalModel};
use crate::fetch::{Locator, ModelSpec, Progress};
use crate::guide::TokenGuide;
use crate::sampling::SamplingOptions;
use crate::tool_calls::{Holdback, guide_for};
use async_trait::async_trait;
use exoclaw_core::{Capabilities, ErrorKind, EventStream, ModelInfo, Provider, ProviderError};
use exoclaw_types::{ChatRequest, ModelId, StopReason, StreamEvent, Usage};
use std::sync::Arc;
use tokio::sync::mpsc;

/// Settings of the embedded model beyond what a [`ChatRequest`] carries.
#[derive(Debug, Clone)]
pub struct LocalOptions {
    /// The provider instance's name (`local`).
    pub name: String,
    /// Where to find or fetch the model.
    pub locator: Locator,
    /// Which model.
    pub spec: ModelSpec,
    /// Sampling defaults; a request's temperature, top-p and seed override them.
    pub sampling: SamplingOptions,
    /// Answer length when the request sets none.
    pub max_tokens: usize,
    /// Whether a looping answer is stopped ([`StopReason::Repetition`], see
    /// [`crate::repetition`]).
    pub stop_repetition: bool,
    /// Whether an answer reuses the cached keys and values of the prompt prefix it shares with the
    /// previous answer (see [`LocalModel::generate`]): a conversation's next turn computes only
    /// what is new.
    pub prompt_cache: bool,
}

impl Default for LocalOptions {
    fn default() -> Self {
        Self {
            name: "local".into(),
            locator: Locator::default(),
            spec: crate::fetch::SMOLLM2_135M,
            sampling: SamplingOptions::default(),
            max_tokens: 512,
            stop_repetition: true,
            prompt_cache: true,
        }
    }
}

/// The embedded model as a provider.
pub struct LocalProvider {
    options: LocalOptions,
    model: Arc<LocalModel>,
}

impl std::fmt::Debug for LocalProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalProvider")
            .field("name", &self.options.name)
            .field("model", &self.options.spec.name)
            .finish()
    }
}

impl LocalProvider {
    /// Finds (or fetches) the model and loads it on a blocking thread.
    pub async fn open(options: LocalOptions, progress: Progress<'_>) -> Result<Self, LocalError> {
        let path = options.locator.locate(&options.spec, progress).await?;
        let model = tokio::task::spawn_blocking(move || LocalModel::load(&path))
            .await
            .map_err(|e| LocalError::Inference(format!("model loading crashed: {e}")))??;
        Ok(Self::with_model(options, Arc::new(model)))
    }

    /// A provider over an already loaded model.
    pub fn with_model(options: LocalOptions, model: Arc<LocalModel>) -> Self {
        Self { options, model }
    }

    /// The loaded model.
    pub fn model(&self) -> &Arc<LocalModel> {
        &self.model
    }

    fn error(&self, e: LocalError) -> ProviderError {
        ProviderError::new(e.kind(), &self.options.name, e.to_string())
    }

    /// Refuses a request for a model this provider does not serve (`local/bogus`), before any work.
    fn check_model(&self, model: &ModelId) -> Result<(), ProviderError> {
        if model.as_str() == self.options.spec.name {
            return Ok(());
        }
        Err(self.error(LocalError::UnknownModel {
            provider: self.options.name.clone(),
            requested: model.as_str().to_owned(),
            served: self.options.spec.name,
        }))
    }

    fn generate_options(&self, request: &ChatRequest) -> GenerateOptions {
        let p = &request.params;
        let mut sampling = self.options.sampling.clone();
        if let Some(t) = p.temperature {
            sampling.temperature = f64::from(t);
        }
        if let Some(top_p) = p.top_p {
            sampling.top_p = Some(f64::from(top_p));
        }
        sampling.seed = p.seed.unwrap_or_else(random_seed);
        GenerateOptions {
            max_tokens: p.max_tokens.map_or(self.options.max_tokens, |n| n as usize),
            sampling,
            stop: p.stop.clone(),
            stop_repetition: self.options.stop_repetition,
            reuse_prompt: self.options.prompt_cache,
        }
    }
}

fn random_seed() -> u64 {
    use std::time::{SystemTime, UNIX_EPOCH};
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(0x5eed)
}

#[async_trait]
impl Provider for LocalProvider {
    fn name(&self) -> &str {
        &self.options.name
    }

    async fn stream(&self, request: ChatRequest) -> Result<EventStream, ProviderError> {
        self.check_model(&request.model)?;
        let prompt = self.model.prompt(&request).map_err(|e| self.error(e))?;
        let options = self.generate_options(&request);
        // Overflow is reported before any event, like a vendor's 400.
        self.model.room_for(prompt.len(), options.max_tokens).map_err(|e| self.error(e))?;
        // So is a tool choice, tool schema or response format that cannot be turned into a
        // grammar. Building the grammar takes ~10 ms (a few tenths of a second the first time):
        // off the async thread.
        let model = self.model.clone();
        let guide =
            tokio::task::spawn_blocking(move || guide_for(&request, model.tokenizer(), model.stop_tokens()))
                .await
                .map_err(|e| {
                    self.error(LocalError::Inference(format!("building the answer grammar crashed: {e}")))
                })?
                .map_err(|e| {
                    ProviderError::new(ErrorKind::InvalidRequest, &self.options.name, e.to_string())
                })?;
        let (tx, mut rx) = mpsc::channel::<Result<StreamEvent, ProviderError>>(64);
        let model = self.model.clone();
        let name = self.options.name.clone();
        tokio::task::spawn_blocking(move || {
            let mut guide = guide;
            // Text that may still become a tool call is held back; plain text streams.
            let mut holdback = Holdback::new(guide.as_ref());
            // A closed channel means the stream was dropped: that cancels generation.
            let mut emit = |g: Generated| match g {
                Generated::Token(_) => !tx.is_closed(),
                Generated::Text(text) => match holdback.push(text) {
                    Some(text) => tx.blocking_send(Ok(StreamEvent::TextDelta { text })).is_ok(),
                    None => !tx.is_closed(),
                },
            };
            let guide = guide.as_mut().map(|g| g as &mut dyn TokenGuide);
            let events = match model.generate(&prompt, &options, guide, &mut emit) {
                Ok(done) => {
                    let (mut events, calls) = holdback.finish();
                    events.push(StreamEvent::Usage(Usage {
                        input_tokens: Some(done.prompt_tokens as u64),
                        output_tokens: Some(done.completion_tokens as u64),
                        cache_read_tokens: Some(done.cached_tokens as u64),
                        cache_write_tokens: None,
                    }));
                    let reason = if calls { StopReason::ToolUse } else { done.reason };
                    events.push(StreamEvent::Finish { reason });
                    events.into_iter().map(Ok).collect()
                }
                Err(e) => vec![Err(ProviderError::new(ErrorKind::Server, name, e.to_string()))],
            };
            for event in events {
                if tx.blocking_send(event).is_err() {
                    break;
                }
            }
        });
        Ok(Box::pin(futures::stream::poll_fn(move |cx| rx.poll_recv(cx))))
    }

    fn capabilities(&self, _model: &ModelId) -> Capabilities {
        Capabilities {
            streaming: true,
            tools: true,
            images: false,
            thinking: false,
            context_window: u32::try_from(self.model.context_length()).ok(),
            max_output_tokens: None,
        }
    }

    async fn models(&self) -> Result<Vec<ModelInfo>, ProviderError> {
        Ok(vec![ModelInfo {
            id: ModelId::from(self.options.spec.name),
            display_name: Some(self.options.spec.file_name.into()),
        }])
    }
}
