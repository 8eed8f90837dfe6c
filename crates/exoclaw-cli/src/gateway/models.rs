//! The gateway's models are the runtime's: one router over every available provider, each opened
//! on its first request ([`exoclaw::runtime::Models`]). This adapts it to what the gateway asks.
//! Embedding models are named the same way (`NAME/model`, or an alias) and served by the
//! instance's embedding API ([`exoclaw::embedders`]).

use exoclaw::Config;
use exoclaw::embedders::{EmbedderError, Embedders};
use exoclaw::runtime::Models;
use exoclaw_core::Provider;
use exoclaw_gateway::{EmbeddingModel, GatewayError, ModelFailure, ModelSource, NotReady};
use std::sync::Arc;

/// The runtime's models, as the gateway's `/v1` sees them, and the embedders of the same
/// configuration.
pub struct RuntimeModels {
    models: Arc<Models>,
    embedders: Embedders,
}

impl RuntimeModels {
    /// The runtime's `models`, with embedders opened from `config` (the runtime's).
    pub fn new(models: Arc<Models>, config: Arc<Config>) -> Self {
        Self { models, embedders: Embedders::new(config) }
    }
}

#[async_trait::async_trait]
impl ModelSource for RuntimeModels {
    fn provider_for(&self, model: &str) -> Result<(Arc<dyn Provider>, String), GatewayError> {
        match self.models.route(model) {
            Some(_) => Ok((Arc::clone(self.models.router()) as Arc<dyn Provider>, model.to_owned())),
            None => Err(GatewayError::ModelNotFound { model: model.to_owned(), available: self.models() }),
        }
    }

    fn models(&self) -> Vec<String> {
        self.models.listed().to_vec()
    }

    fn billed_as(&self, model: &str) -> Option<(String, String)> {
        let target = self.models.route(model)?.into_iter().next()?;
        Some((target.provider, target.model))
    }

    /// The route's first target only: a fallback would answer with vectors of another model,
    /// which cannot be compared with this one's.
    async fn embedder_for(&self, model: &str) -> Result<EmbeddingModel, GatewayError> {
        let Some(target) = self.models.route(model).and_then(|chain| chain.into_iter().next()) else {
            return Err(GatewayError::ModelNotFound { model: model.to_owned(), available: self.models() });
        };
        match self.embedders.open(&target.provider, &target.model).await {
            Ok(opened) => Ok(EmbeddingModel::new(opened.embedder, target.provider, target.model)
                .with_dimensions(opened.dimensions)),
            Err(e @ EmbedderError::NoEmbeddings { .. }) => {
                Err(GatewayError::NoEmbeddings { model: model.to_owned(), reason: e.to_string() })
            }
            Err(EmbedderError::Open(e)) => {
                Err(GatewayError::Provider(e.into_provider_error(&target.provider)))
            }
            Err(other) => {
                Err(GatewayError::NoEmbeddings { model: model.to_owned(), reason: other.to_string() })
            }
        }
    }

    fn breaker_states(&self) -> Vec<(String, &'static str)> {
        self.models.router().status().into_iter().map(|s| (s.name, s.state.as_str())).collect()
    }

    async fn ready(&self) -> Result<(), NotReady> {
        self.models.ready().await.map_err(|failures| {
            if failures.is_empty() {
                NotReady::NoModels
            } else {
                NotReady::NoModelOpens {
                    failures: failures.into_iter().map(|f| ModelFailure::new(&f.shown, f.reason)).collect(),
                }
            }
        })
    }
}
