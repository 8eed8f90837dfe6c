//! The gateway's models: one router over every available provider, each opened on its first
//! request (so an idle gateway holds no model and no connection pool it has not used), serving
//! any model name the routing table resolves.

use exoclaw::config::Config;
use exoclaw_core::{EventStream, ModelInfo, Provider, ProviderError};
use exoclaw_gateway::{GatewayError, ModelSource};
use exoclaw_providers::router::{Router, Routes};
use exoclaw_types::ChatRequest;
use std::sync::Arc;
use tokio::sync::OnceCell;

/// A provider opened when first used.
pub struct LazyProvider {
    name: String,
    config: Arc<Config>,
    opened: OnceCell<Arc<dyn Provider>>,
}

impl std::fmt::Debug for LazyProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LazyProvider")
            .field("name", &self.name)
            .field("opened", &self.opened.initialized())
            .finish()
    }
}

impl LazyProvider {
    fn new(name: String, config: Arc<Config>) -> Self {
        Self { name, config, opened: OnceCell::new() }
    }

    async fn get(&self) -> Result<&Arc<dyn Provider>, ProviderError> {
        self.opened
            .get_or_try_init(|| async {
                tracing::info!(provider = %self.name, "opening provider on its first request");
                crate::models::open_by_name(&self.config, &self.name).await.map_err(|e| {
                    ProviderError::new(exoclaw_core::ErrorKind::Connect, &self.name, e.to_string())
                })
            })
            .await
    }
}

#[async_trait::async_trait]
impl Provider for LazyProvider {
    fn name(&self) -> &str {
        &self.name
    }

    async fn stream(&self, request: ChatRequest) -> Result<EventStream, ProviderError> {
        self.get().await?.stream(request).await
    }

    async fn complete(&self, request: ChatRequest) -> Result<exoclaw_types::ChatResponse, ProviderError> {
        self.get().await?.complete(request).await
    }

    async fn models(&self) -> Result<Vec<ModelInfo>, ProviderError> {
        self.get().await?.models().await
    }

    async fn health(&self) -> Result<(), ProviderError> {
        self.get().await?.health().await
    }
}

/// Every model the configuration routes, through one router.
pub struct RoutedModels {
    router: Arc<Router>,
    routes: Routes,
    listed: Vec<String>,
}

impl RoutedModels {
    /// The router over every available provider of `config`.
    pub fn open(config: Arc<Config>) -> anyhow::Result<Self> {
        let routes = config.routes()?;
        let routing = &config.routing;
        let mut builder = Router::builder("gateway").retry(routing.retry_policy()).breaker(
            routing.breaker_failures,
            std::time::Duration::from_secs(routing.breaker_cool_down_secs),
        );
        if let Some(timeout) = routing.first_token_timeout() {
            builder = builder.first_token_timeout(timeout);
        }
        let mut listed: Vec<String> = routing.aliases.keys().cloned().collect();
        for name in config.available_provider_names() {
            let Some(provider) = config.provider(&name) else { continue };
            // Keyless servers on this machine are checked in the background; paid APIs are not.
            let health_checks = !provider.kind.needs_key() && !config.is_local(&name);
            let model =
                provider.default_model.clone().or_else(|| provider.kind.default_model().map(str::to_owned));
            if let Some(model) = model {
                listed.push(format!("{name}/{model}"));
            }
            builder = builder.provider(Arc::new(LazyProvider::new(name, Arc::clone(&config))), health_checks);
        }
        if let Ok((name, _)) = config.route_chain(None)
            && !listed.contains(&name)
        {
            listed.insert(0, name);
        }
        let router = Arc::new(builder.build(routes.clone()));
        Ok(Self { router, routes, listed })
    }

    /// The router, as the agents' provider.
    pub fn router(&self) -> Arc<Router> {
        Arc::clone(&self.router)
    }
}

impl ModelSource for RoutedModels {
    fn provider_for(&self, model: &str) -> Result<(Arc<dyn Provider>, String), GatewayError> {
        match self.routes.resolve(model) {
            Ok(_) => Ok((self.router.clone() as Arc<dyn Provider>, model.to_owned())),
            Err(_) => Err(GatewayError::ModelNotFound { model: model.to_owned(), available: self.models() }),
        }
    }

    fn models(&self) -> Vec<String> {
        self.listed.clone()
    }

    fn billed_as(&self, model: &str) -> Option<(String, String)> {
        let target = self.routes.resolve(model).ok()?.into_iter().next()?;
        Some((target.provider, target.model))
    }

    fn breaker_states(&self) -> Vec<(String, &'static str)> {
        self.router.status().into_iter().map(|s| (s.name, s.state.as_str())).collect()
    }
}
