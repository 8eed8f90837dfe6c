//! The gateway's models are the runtime's: one router over every available provider, each opened
//! on its first request ([`exoclaw::runtime::Models`]). This adapts it to what the gateway asks.

use exoclaw::runtime::Models;
use exoclaw_core::Provider;
use exoclaw_gateway::{GatewayError, ModelFailure, ModelSource, NotReady};
use std::sync::Arc;

/// The runtime's models, as the gateway's `/v1` sees them.
pub struct RuntimeModels(pub Arc<Models>);

#[async_trait::async_trait]
impl ModelSource for RuntimeModels {
    fn provider_for(&self, model: &str) -> Result<(Arc<dyn Provider>, String), GatewayError> {
        match self.0.route(model) {
            Some(_) => Ok((Arc::clone(self.0.router()) as Arc<dyn Provider>, model.to_owned())),
            None => Err(GatewayError::ModelNotFound { model: model.to_owned(), available: self.models() }),
        }
    }

    fn models(&self) -> Vec<String> {
        self.0.listed().to_vec()
    }

    fn billed_as(&self, model: &str) -> Option<(String, String)> {
        let target = self.0.route(model)?.into_iter().next()?;
        Some((target.provider, target.model))
    }

    fn breaker_states(&self) -> Vec<(String, &'static str)> {
        self.0.router().status().into_iter().map(|s| (s.name, s.state.as_str())).collect()
    }

    async fn ready(&self) -> Result<(), NotReady> {
        self.0.ready().await.map_err(|failures| {
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
