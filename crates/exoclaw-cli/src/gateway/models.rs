//! The gateway's models: one router over every available provider, each opened on its first
//! request (so an idle gateway holds no model and no connection pool it has not used), serving
//! any model name the routing table resolves.

use exoclaw::config::Config;
use exoclaw_core::{EventStream, ModelInfo, Provider, ProviderError};
use exoclaw_gateway::{GatewayError, ModelFailure, ModelSource, NotReady};
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
                // Typed by what went wrong: a model file that is missing or a key that is not set
                // is not a failing server, and must not trip the breaker.
                exoclaw::models::open_instance(&self.config, &self.name, &mut |_, _| {})
                    .await
                    .map_err(|e| e.into_provider_error(&self.name))
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
    /// Each provider behind the router, with the model `/v1/models` lists for it (else its name).
    providers: Vec<(Arc<LazyProvider>, String)>,
}

impl RoutedModels {
    /// The router over every available provider of `config`.
    pub fn open(config: Arc<Config>) -> anyhow::Result<Self> {
        let routes = config.routes()?;
        let routing = &config.routing;
        let mut builder =
            Router::builder("gateway").retry(routing.retry_policy()).breaker_policy(routing.breaker_policy());
        if let Some(timeout) = routing.first_token_timeout() {
            builder = builder.first_token_timeout(timeout);
        }
        let mut listed: Vec<String> = routing.aliases.keys().cloned().collect();
        let mut providers = Vec::new();
        for name in config.available_provider_names() {
            let Some(provider) = config.provider(&name) else { continue };
            // Keyless servers on this machine are checked in the background; paid APIs are not.
            let health_checks = !provider.kind.needs_key() && !config.is_local(&name);
            let model =
                provider.default_model.clone().or_else(|| provider.kind.default_model().map(str::to_owned));
            let shown = model.map_or_else(|| name.clone(), |model| format!("{name}/{model}"));
            if shown != name {
                listed.push(shown.clone());
            }
            let lazy = Arc::new(LazyProvider::new(name, Arc::clone(&config)));
            builder = builder.provider(Arc::clone(&lazy) as Arc<dyn Provider>, health_checks);
            providers.push((lazy, shown));
        }
        if let Ok((name, _)) = config.route_chain(None)
            && !listed.contains(&name)
        {
            listed.insert(0, name);
        }
        let router = Arc::new(builder.build(routes.clone()));
        Ok(Self { router, routes, listed, providers })
    }

    /// The router, as the agents' provider.
    pub fn router(&self) -> Arc<Router> {
        Arc::clone(&self.router)
    }
}

#[async_trait::async_trait]
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

    /// Ready when one provider can be opened now: the embedded model once its file is on this
    /// machine (checked without loading it, so a probe never makes an idle gateway hold a model),
    /// any other provider once it opens (no network; kept open for its first request).
    async fn ready(&self) -> Result<(), NotReady> {
        if self.providers.is_empty() {
            return Err(NotReady::NoModels);
        }
        let mut failures = Vec::new();
        for (provider, shown) in &self.providers {
            let opened = if provider.config.is_local(&provider.name) {
                exoclaw::models::check_local_file(&provider.config, &provider.name).map_err(|e| e.to_string())
            } else {
                provider.get().await.map(|_| ()).map_err(|e| e.to_string())
            };
            match opened {
                Ok(()) => return Ok(()),
                Err(reason) => failures.push(ModelFailure::new(shown, reason)),
            }
        }
        Err(NotReady::NoModelOpens { failures })
    }
}
