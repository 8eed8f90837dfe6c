//! [`LocalProvider`]: the embedded model as a [`Provider`], so the rest of exoclaw treats it like
//! any other model API.

use crate::LocalError;
use crate::catalog::{self, ModelSource};
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
    /// The model exoclaw fetches when it is asked for by its short name (`smollm2`).
    pub spec: ModelSpec,
    /// The model loaded when the provider opens: `spec`'s name, a cached GGUF's name or a path
    /// (see [`crate::catalog`]). Requests may name others, loaded when first asked for.
    pub model: String,
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
            model: crate::fetch::SMOLLM2_135M.name.to_owned(),
            sampling: SamplingOptions::default(),
            max_tokens: 512,
            stop_repetition: true,
            prompt_cache: true,
        }
    }
}

/// How many models the provider keeps loaded: its default and the last other one asked for. A
/// request for a third loads it in place of the second (about a second for a few hundred MB).
const LOADED_OTHERS: usize = 1;

/// The embedded model as a provider. It serves its default model ([`LocalOptions::model`]) and
/// any other GGUF a request names ([`crate::catalog`]).
pub struct LocalProvider {
    options: LocalOptions,
    model: Arc<LocalModel>,
    /// Other models loaded for requests that named them, the most recent last. The lock is held
    /// while one loads, so two requests for the same file load it once.
    others: tokio::sync::Mutex<Vec<(String, Arc<LocalModel>)>>,
}

impl std::fmt::Debug for LocalProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalProvider")
            .field("name", &self.options.name)
            .field("model", &self.options.model)
            .finish()
    }
}

impl LocalProvider {
    /// Finds (or fetches) the default model and loads it on a blocking thread.
    pub async fn open(options: LocalOptions, progress: Progress<'_>) -> Result<Self, LocalError> {
        let path = match catalog::resolve(&options.locator, &options.spec, &options.name, &options.model)? {
            ModelSource::Known(spec) => options.locator.locate(&spec, progress).await?,
            ModelSource::File(path) => path,
        };
        let model = load(path).await?;
        Ok(Self::with_model(options, Arc::new(model)))
    }

    /// A provider over an already loaded default model.
    pub fn with_model(options: LocalOptions, model: Arc<LocalModel>) -> Self {
        Self { options, model, others: tokio::sync::Mutex::new(Vec::new()) }
    }

    /// The loaded model.
    pub fn model(&self) -> &Arc<LocalModel> {
        &self.model
    }

    fn error(&self, e: LocalError) -> ProviderError {
        ProviderError::new(e.kind(), &self.options.name, e.to_string())
    }

    /// The loaded model a request names: the default, or another GGUF, loaded now if it is not
    /// yet. A name that means no model (`local/bogus`) is refused before any work.
    async fn model_for(&self, name: &ModelId) -> Result<Arc<LocalModel>, ProviderError> {
        let name = name.as_str();
        if name == self.options.model {
            return Ok(self.model.clone());
        }
        let mut others = self.others.lock().await;
        if let Some(at) = others.iter().position(|(loaded, _)| loaded == name) {
            let entry = others.remove(at);
            let model = entry.1.clone();
            others.push(entry);
            return Ok(model);
        }
        let source = catalog::resolve(&self.options.locator, &self.options.spec, &self.options.name, name)
            .map_err(|e| self.error(e))?;
        let path = match source {
            ModelSource::File(path) => path,
            // The short name of the fetchable model, when the default is another file.
            ModelSource::Known(spec) => self.options.locator.find(&spec).map_err(|e| self.error(e))?,
        };
        tracing::info!(model = name, path = %path.display(), "loading a local model");
        let model = Arc::new(load(path).await.map_err(|e| self.error(e))?);
        if others.len() >= LOADED_OTHERS {
            others.remove(0);
        }
        others.push((name.to_owned(), model.clone()));
        Ok(model)
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

/// Loads the GGUF at `path` on a blocking thread.
async fn load(path: std::path::PathBuf) -> Result<LocalModel, LocalError> {
    tokio::task::spawn_blocking(move || LocalModel::load(&path))
        .await
        .map_err(|e| LocalError::Inference(format!("model loading crashed: {e}")))?
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
        let model = self.model_for(&request.model).await?;
        let prompt = model.prompt(&request).map_err(|e| self.error(e))?;
        let options = self.generate_options(&request);
        // Overflow is reported before any event, like a vendor's 400.
        model.room_for(prompt.len(), options.max_tokens).map_err(|e| self.error(e))?;
        // So is a tool choice, tool schema or response format that cannot be turned into a
        // grammar. Building the grammar takes ~10 ms (a few tenths of a second the first time):
        // off the async thread.
        let guide_model = model.clone();
        let guide = tokio::task::spawn_blocking(move || {
            guide_for(&request, guide_model.tokenizer(), guide_model.stop_tokens())
        })
        .await
        .map_err(|e| self.error(LocalError::Inference(format!("building the answer grammar crashed: {e}"))))?
        .map_err(|e| ProviderError::new(ErrorKind::InvalidRequest, &self.options.name, e.to_string()))?;
        let (tx, mut rx) = mpsc::channel::<Result<StreamEvent, ProviderError>>(64);
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

    fn capabilities(&self, model: &ModelId) -> Capabilities {
        let context_length = if model.as_str() == self.options.model {
            Some(self.model.context_length())
        } else {
            // Another model's window is known once it is loaded (never waited for here).
            self.others.try_lock().ok().and_then(|others| {
                others.iter().find(|(name, _)| name == model.as_str()).map(|(_, m)| m.context_length())
            })
        };
        Capabilities {
            streaming: true,
            tools: true,
            images: false,
            thinking: false,
            context_window: context_length.and_then(|n| u32::try_from(n).ok()),
            max_output_tokens: None,
        }
    }

    async fn models(&self) -> Result<Vec<ModelInfo>, ProviderError> {
        let mut models =
            vec![ModelInfo { id: ModelId::from(self.options.model.as_str()), display_name: None }];
        for cached in catalog::cached_models(&self.options.locator.cache_dir) {
            if cached.supported
                && cached.name != self.options.model
                && cached.path != self.options.locator.cache_dir.join(self.options.spec.file_name)
            {
                models.push(ModelInfo { id: ModelId::from(cached.name), display_name: None });
            }
        }
        Ok(models)
    }
}
