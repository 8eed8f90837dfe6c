//! Where a requested model goes: the routing table `[routing]` describes ([`Config::routes`]) and
//! the route (alias, `provider/model`, pattern rule, or the default model) with its fallback chain
//! ([`Config::route_chain`]). The one router over these routes is the runtime's
//! ([`crate::runtime::Models`]).

use crate::config::{Config, ConfigError, ModelChoice};
use exoclaw_providers::router::{Routes, Target};

impl Config {
    /// The routing table `[routing]` describes, over every provider name the config knows.
    pub fn routes(&self) -> Result<Routes, ConfigError> {
        self.routes_with(&[])
    }

    /// [`Config::routes`] over the configured providers and `more` (providers a program adds in
    /// code, see [`crate::runtime::RuntimeBuilder::provider`]).
    pub fn routes_with(&self, more: &[String]) -> Result<Routes, ConfigError> {
        let invalid = |e: exoclaw_providers::router::RouteError| ConfigError::Routing(e.0);
        let mut names = self.provider_names();
        names.extend(more.iter().filter(|name| !self.provider_names().contains(name)).cloned());
        let mut routes = Routes::new(names);
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
    pub(crate) fn chain_in(
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
