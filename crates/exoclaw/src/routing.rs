//! Opening the provider router for a requested model: the route (alias, `provider/model`, pattern
//! rule, or the default model) and its fallback chain, with only the providers on that chain
//! opened — the embedded model is loaded only when the route can reach it.

use crate::config::{Config, ConfigError, ModelChoice, ProviderKind};
use crate::models::{OpenError, ResolvedModel, open_provider};
use exoclaw_core::Provider;
use exoclaw_local::fetch::Progress;
use exoclaw_providers::router::{Router, Routes, Target};
use exoclaw_types::ModelRef;
use std::sync::Arc;

/// A router ready for requests to one model.
pub struct Routed {
    /// The router, as a provider. Its answers name the provider that served them
    /// ([`exoclaw_types::StreamEvent::Served`]).
    pub provider: Arc<dyn Provider>,
    /// The model name to put in requests (the router resolves it again on every call).
    pub request_model: String,
    /// Where requests go first, then the fallbacks.
    pub chain: Vec<Target>,
    /// The primary target's provider kind.
    pub primary_kind: ProviderKind,
}

impl std::fmt::Debug for Routed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Routed")
            .field("request_model", &self.request_model)
            .field("chain", &self.chain)
            .finish()
    }
}

impl Routed {
    /// The primary target, `provider/model`.
    pub fn primary(&self) -> String {
        self.chain.first().map(ToString::to_string).unwrap_or_default()
    }
}

impl Config {
    /// The routing table `[routing]` describes, over every provider name the config knows.
    pub fn routes(&self) -> Result<Routes, ConfigError> {
        let invalid = |e: exoclaw_providers::router::RouteError| ConfigError::Routing(e.0);
        let mut routes = Routes::new(self.provider_names());
        for (alias, model) in &self.routing.aliases {
            routes = routes.alias(alias, model);
        }
        for rule in &self.routing.rules {
            routes = routes.rule(&rule.pattern, &rule.provider).map_err(invalid)?;
        }
        for (key, chain) in &self.routing.fallbacks {
            let chain: Vec<&str> = chain.iter().map(String::as_str).collect();
            routes = routes.fallbacks(key, &chain).map_err(invalid)?;
        }
        Ok(routes)
    }

    /// Where a request for `requested` (or the default model) goes, primary first.
    pub fn route_chain(&self, requested: Option<&ModelChoice>) -> Result<(String, Vec<Target>), ConfigError> {
        self.chain_in(&self.routes()?, requested)
    }

    /// [`Config::route_chain`] over a routing table already built from this config.
    fn chain_in(
        &self,
        routes: &Routes,
        requested: Option<&ModelChoice>,
    ) -> Result<(String, Vec<Target>), ConfigError> {
        // The configured default may be an alias or a rule's model too.
        let requested = requested.or(self.model.as_ref());
        let name = match requested {
            Some(ModelChoice::Model(model)) => model.to_string(),
            Some(ModelChoice::Provider(name)) => name.clone(),
            None => self.resolve_choice(None)?.model.to_string(),
        };
        match routes.resolve(&name) {
            Ok(chain) => Ok((name, chain)),
            // A provider's name alone means its default model.
            Err(route_error) => match requested {
                Some(choice @ ModelChoice::Provider(_)) => {
                    let resolved = self.resolve_choice(Some(choice))?;
                    let name = resolved.model.to_string();
                    let chain = routes.resolve(&name).map_err(|e| ConfigError::Routing(e.0))?;
                    Ok((name, chain))
                }
                _ => Err(self.explain_unrouted(&name, route_error.0)),
            },
        }
    }

    fn explain_unrouted(&self, name: &str, route_error: String) -> ConfigError {
        match name.split_once('/') {
            Some((provider, _)) if self.provider(provider).is_none() => ConfigError::UnknownProvider {
                name: provider.to_owned(),
                requested: name.to_owned(),
                known: self.provider_names().join(", "),
            },
            _ => ConfigError::Routing(route_error),
        }
    }
}

/// Opens the providers on the route for `requested` (or the default model) and a router over
/// them. A fallback that cannot be opened (no key, say) is left out with a warning; the primary
/// must open unless a fallback did.
pub async fn open_routed(
    config: &Config,
    requested: Option<&ModelChoice>,
    progress: Progress<'_>,
) -> Result<Routed, OpenError> {
    let routes = config.routes()?;
    let (request_model, chain) = config.chain_in(&routes, requested)?;
    let routing = &config.routing;
    let mut builder =
        Router::builder("router").retry(routing.retry_policy()).breaker_policy(routing.breaker_policy());
    if let Some(timeout) = routing.first_token_timeout() {
        builder = builder.first_token_timeout(timeout);
    }
    let mut opened: Vec<String> = Vec::new();
    let mut first_error = None;
    let mut primary_kind = ProviderKind::Local;
    for (index, target) in chain.iter().enumerate() {
        let provider = config.provider(&target.provider).ok_or_else(|| ConfigError::UnknownProvider {
            name: target.provider.clone(),
            requested: request_model.clone(),
            known: config.provider_names().join(", "),
        })?;
        if index == 0 {
            primary_kind = provider.kind;
        }
        if opened.contains(&target.provider) {
            continue;
        }
        let health_checks = !provider.kind.needs_key();
        let resolved = ResolvedModel {
            model: ModelRef {
                provider: target.provider.clone(),
                model: exoclaw_types::ModelId(target.model.clone()),
            },
            provider,
        };
        match open_provider(&resolved, config, &mut *progress).await {
            Ok(provider) => {
                builder = builder.provider(provider, health_checks);
                opened.push(target.provider.clone());
            }
            Err(err) if index > 0 => tracing::warn!(fallback = %target, %err, "fallback left out"),
            Err(err) => first_error = Some(err),
        }
    }
    if let Some(err) = first_error
        && opened.is_empty()
    {
        return Err(err);
    }
    Ok(Routed { provider: Arc::new(builder.build(routes)), request_model, chain, primary_kind })
}
