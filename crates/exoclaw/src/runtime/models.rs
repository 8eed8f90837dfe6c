//! The runtime's models: one router over every available provider, each opened on its first
//! request (so an idle runtime holds no model and no connection pool it has not used), serving
//! any model name the routing table resolves. A front end that wants to show progress (the
//! embedded model's download and load) or fail before the first turn opens an agent's providers
//! ahead with [`Models::prepare`].

use crate::config::{Config, ConfigError};
use crate::models::OpenError;
use exoclaw_core::{EventStream, ModelInfo, Provider, ProviderError};
use exoclaw_local::fetch::Progress;
use exoclaw_providers::router::{Router, Routes, Target};
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

    /// Opens the provider now if it is not open yet, reporting a download's progress.
    async fn open(&self, progress: Progress<'_>) -> Result<&Arc<dyn Provider>, OpenError> {
        self.opened
            .get_or_try_init(|| async {
                tracing::info!(provider = %self.name, "opening provider");
                crate::models::open_instance(&self.config, &self.name, progress).await
            })
            .await
    }

    async fn get(&self) -> Result<&Arc<dyn Provider>, ProviderError> {
        // Typed by what went wrong: a model file that is missing or a key that is not set is not
        // a failing server, and must not trip the breaker.
        self.open(&mut |_, _| {}).await.map_err(|e| e.into_provider_error(&self.name))
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

    /// The opened provider's; the defaults (nothing known) until it is opened.
    fn capabilities(&self, model: &exoclaw_types::ModelId) -> exoclaw_core::Capabilities {
        self.opened.get().map_or_else(exoclaw_core::Capabilities::default, |p| p.capabilities(model))
    }

    async fn health(&self) -> Result<(), ProviderError> {
        self.get().await?.health().await
    }
}

/// A provider that could not be opened, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unopened {
    /// The provider, as `/v1/models` lists it (`name/model`).
    pub shown: String,
    /// Why it cannot be opened.
    pub reason: String,
}

/// Every model the configuration routes, through one router.
pub struct Models {
    config: Arc<Config>,
    router: Arc<Router>,
    routes: Routes,
    listed: Vec<String>,
    /// Each provider behind the router, with the model `/v1/models` lists for it (else its name).
    providers: Vec<(Arc<LazyProvider>, String)>,
    /// The providers given in code.
    custom: Vec<Arc<dyn Provider>>,
}

impl std::fmt::Debug for Models {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Models").field("listed", &self.listed).finish_non_exhaustive()
    }
}

impl Models {
    /// The router over every available provider of `config`, and the providers in `custom`
    /// (which replace configured ones of the same name); nothing is opened yet.
    pub fn new(config: Arc<Config>, custom: Vec<Arc<dyn Provider>>) -> Result<Self, ConfigError> {
        let names: Vec<String> = custom.iter().map(|p| p.name().to_owned()).collect();
        let routes = config.routes_with(&names)?;
        let routing = &config.routing;
        let mut builder =
            Router::builder("router").retry(routing.retry_policy()).breaker_policy(routing.breaker_policy());
        if let Some(timeout) = routing.first_token_timeout() {
            builder = builder.first_token_timeout(timeout);
        }
        let mut listed: Vec<String> = routing.aliases.keys().cloned().collect();
        let mut providers = Vec::new();
        for provider in &custom {
            let name = provider.name().to_owned();
            listed.push(name);
            builder = builder.provider(Arc::clone(provider), false);
        }
        for name in config.available_provider_names() {
            if names.contains(&name) {
                continue;
            }
            let Some(provider) = config.provider(&name) else { continue };
            // Keyless servers on this machine are checked in the background (when a long-running
            // front end starts the checks); paid APIs are not, nor the embedded model.
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
        Ok(Self { config, router, routes, listed, providers, custom })
    }

    /// The context window of `target`'s model, in tokens, when its provider is open and knows.
    pub fn context_window(&self, target: &Target) -> Option<u32> {
        let model = exoclaw_types::ModelId(target.model.clone());
        let custom = self.custom.iter().find(|p| p.name() == target.provider);
        let lazy = self.providers.iter().find(|(p, _)| p.name == target.provider).map(|(p, _)| p);
        match (custom, lazy) {
            (Some(provider), _) => provider.capabilities(&model).context_window,
            (None, Some(provider)) => provider.capabilities(&model).context_window,
            (None, None) => None,
        }
    }

    /// The router.
    pub fn router(&self) -> &Arc<Router> {
        &self.router
    }

    /// Where a request for `requested` (or the default model) goes, with the name to request it
    /// by: the configured routes, over the configured and the custom providers.
    pub fn chain(
        &self,
        requested: Option<&crate::config::ModelChoice>,
    ) -> Result<(String, Vec<Target>), ConfigError> {
        self.config.chain_in(&self.routes, requested)
    }

    /// Where requests for `model` go, primary first; `None` when the routing table has no route.
    pub fn route(&self, model: &str) -> Option<Vec<Target>> {
        self.routes.resolve(model).ok()
    }

    /// The model names to list (`/v1/models`): aliases, each provider's default model.
    pub fn listed(&self) -> &[String] {
        &self.listed
    }

    /// Opens the providers on `chain` now, reporting the embedded model's download to
    /// `progress`. The primary must open unless a fallback did; a fallback that cannot open is
    /// left to fail (and be skipped) on its turn, with a warning now.
    pub async fn prepare(&self, chain: &[Target], progress: Progress<'_>) -> Result<(), OpenError> {
        let mut first_error = None;
        let mut opened = false;
        for (index, target) in chain.iter().enumerate() {
            let result = match self.providers.iter().find(|(p, _)| p.name == target.provider) {
                Some((provider, _)) => provider.open(&mut *progress).await.map(|_| ()),
                // Not available (no key, say): opening it says why.
                None => crate::models::open_instance(&self.config, &target.provider, &mut *progress)
                    .await
                    .map(|_| ()),
            };
            match result {
                Ok(()) => opened = true,
                Err(err) if index > 0 => {
                    tracing::warn!(fallback = %target, %err, "fallback cannot be opened")
                }
                Err(err) => first_error = Some(err),
            }
        }
        match first_error {
            Some(err) if !opened => Err(err),
            _ => Ok(()),
        }
    }

    /// Ready when one provider can be opened now: the embedded model once its file is on this
    /// machine (checked without loading it, so a probe never makes an idle runtime hold a model),
    /// any other provider once it opens (no network; kept open for its first request). Otherwise
    /// each provider and why it cannot open (none at all: an empty list).
    pub async fn ready(&self) -> Result<(), Vec<Unopened>> {
        let mut failures = Vec::new();
        for (provider, shown) in &self.providers {
            let opened = if self.config.is_local(&provider.name) {
                crate::models::check_local_file(&self.config, &provider.name).map_err(|e| e.to_string())
            } else {
                provider.get().await.map(|_| ()).map_err(|e| e.to_string())
            };
            match opened {
                Ok(()) => return Ok(()),
                Err(reason) => failures.push(Unopened { shown: shown.clone(), reason }),
            }
        }
        Err(failures)
    }
}
