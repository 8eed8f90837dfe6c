//! Which provider instance (and model there) serves a requested model: an alias (`fast`), an
//! explicit `provider/model`, or the first pattern rule that matches (`claude-*` → `anthropic`);
//! then the fallback chain configured for it.

use globset::{Glob, GlobMatcher};
use std::collections::{BTreeSet, HashMap};

/// One place to send a request: a provider instance and the model's name there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// The provider instance's name.
    pub provider: String,
    /// The model on it.
    pub model: String,
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.provider, self.model)
    }
}

/// Why a model could not be routed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct RouteError(pub String);

/// A model-name pattern sending matching models to a provider.
#[derive(Debug, Clone)]
struct Rule {
    pattern: String,
    matcher: GlobMatcher,
    provider: String,
}

/// The routing table. Resolution is a few hash lookups and glob matches: microseconds.
#[derive(Debug, Clone, Default)]
pub struct Routes {
    providers: BTreeSet<String>,
    aliases: HashMap<String, String>,
    rules: Vec<Rule>,
    /// Fallbacks keyed by alias, by `provider/model`, or by rule pattern.
    fallbacks: HashMap<String, Vec<Target>>,
}

impl Routes {
    /// A table over the provider instances `providers`, with no aliases, rules or fallbacks.
    pub fn new(providers: impl IntoIterator<Item = impl Into<String>>) -> Self {
        Self { providers: providers.into_iter().map(Into::into).collect(), ..Self::default() }
    }

    /// `alias` (`fast`) means `model` (`anthropic/claude-haiku-4-5`, or another rule's model name).
    pub fn alias(mut self, alias: &str, model: &str) -> Self {
        self.aliases.insert(alias.to_owned(), model.to_owned());
        self
    }

    /// Models matching `pattern` (`claude-*`, `gpt-4o*`) go to `provider`.
    pub fn rule(mut self, pattern: &str, provider: &str) -> Result<Self, RouteError> {
        let matcher = Glob::new(pattern)
            .map_err(|e| RouteError(format!("the routing pattern `{pattern}` is not a valid glob: {e}")))?
            .compile_matcher();
        self.check_provider(provider, &format!("the rule `{pattern}`"))?;
        self.rules.push(Rule { pattern: pattern.to_owned(), matcher, provider: provider.to_owned() });
        Ok(self)
    }

    /// When `key` (an alias, a `provider/model`, or a rule's pattern) fails before its answer
    /// begins, try each of `chain` (`provider/model`) in order.
    pub fn fallbacks(mut self, key: &str, chain: &[&str]) -> Result<Self, RouteError> {
        let mut targets = Vec::with_capacity(chain.len());
        for entry in chain {
            let Some((provider, model)) = entry.split_once('/') else {
                return Err(RouteError(format!(
                    "the fallback `{entry}` for `{key}` must be `provider/model`"
                )));
            };
            self.check_provider(provider, &format!("the fallback `{entry}` for `{key}`"))?;
            targets.push(Target { provider: provider.to_owned(), model: model.to_owned() });
        }
        self.fallbacks.insert(key.to_owned(), targets);
        Ok(self)
    }

    fn check_provider(&self, provider: &str, what: &str) -> Result<(), RouteError> {
        if self.providers.contains(provider) {
            Ok(())
        } else {
            Err(RouteError(format!(
                "{what} names the provider `{provider}`, which is not configured; configured: {}",
                self.provider_list()
            )))
        }
    }

    fn provider_list(&self) -> String {
        self.providers.iter().map(String::as_str).collect::<Vec<_>>().join(", ")
    }

    /// The targets for `model`, primary first, then its fallbacks.
    pub fn resolve(&self, model: &str) -> Result<Vec<Target>, RouteError> {
        let name = self.aliases.get(model).map_or(model, String::as_str);
        let (primary, rule_key) = self.primary(name)?;
        if self.fallbacks.is_empty() {
            return Ok(vec![primary]);
        }
        let fallbacks = self
            .fallbacks
            .get(model)
            .or_else(|| self.fallbacks.get(&primary.to_string()))
            .or_else(|| rule_key.and_then(|pattern| self.fallbacks.get(pattern)));
        let mut chain = Vec::with_capacity(1 + fallbacks.map_or(0, Vec::len));
        if let Some(fallbacks) = fallbacks {
            chain.extend(fallbacks.iter().filter(|t| **t != primary).cloned());
        }
        chain.insert(0, primary);
        Ok(chain)
    }

    /// The primary target of a model name, and the pattern of the rule that chose it, if one did.
    fn primary<'a>(&'a self, name: &str) -> Result<(Target, Option<&'a str>), RouteError> {
        if let Some((provider, model)) = name.split_once('/')
            && self.providers.contains(provider)
        {
            return Ok((Target { provider: provider.to_owned(), model: model.to_owned() }, None));
        }
        if let Some(rule) = self.rules.iter().find(|rule| rule.matcher.is_match(name)) {
            return Ok((
                Target { provider: rule.provider.clone(), model: name.to_owned() },
                Some(rule.pattern.as_str()),
            ));
        }
        let mut known = Vec::new();
        if !self.aliases.is_empty() {
            let mut aliases: Vec<&str> = self.aliases.keys().map(String::as_str).collect();
            aliases.sort_unstable();
            known.push(format!("aliases: {}", aliases.join(", ")));
        }
        if !self.rules.is_empty() {
            let rules: Vec<String> =
                self.rules.iter().map(|r| format!("{} → {}", r.pattern, r.provider)).collect();
            known.push(format!("rules: {}", rules.join(", ")));
        }
        known.push(format!("providers: {}", self.provider_list()));
        Err(RouteError(format!(
            "no route for the model `{name}`: address it as `provider/model`, or add an alias or a rule \
             under [routing] in the config. Configured {}",
            known.join("; ")
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn routes() -> Routes {
        Routes::new(["anthropic", "openai", "local"])
            .alias("fast", "anthropic/claude-haiku-4-5")
            .alias("smart", "claude-opus-4-1")
            .rule("claude-*", "anthropic")
            .unwrap()
            .rule("gpt-*", "openai")
            .unwrap()
            .fallbacks("claude-*", &["openai/gpt-4o", "local/smollm2"])
            .unwrap()
            .fallbacks("fast", &["local/smollm2"])
            .unwrap()
    }

    fn names(targets: &[Target]) -> Vec<String> {
        targets.iter().map(ToString::to_string).collect()
    }

    #[test]
    fn prefix_rules_and_aliases_pick_the_provider() {
        let r = routes();
        assert_eq!(names(&r.resolve("openai/gpt-4.1").unwrap()), ["openai/gpt-4.1"]);
        assert_eq!(names(&r.resolve("gpt-4o-mini").unwrap()), ["openai/gpt-4o-mini"]);
        assert_eq!(
            names(&r.resolve("claude-sonnet-4-5").unwrap()),
            ["anthropic/claude-sonnet-4-5", "openai/gpt-4o", "local/smollm2"],
            "a rule's fallbacks apply to every model it matches"
        );
        assert_eq!(names(&r.resolve("fast").unwrap()), ["anthropic/claude-haiku-4-5", "local/smollm2"]);
        assert_eq!(
            names(&r.resolve("smart").unwrap()),
            ["anthropic/claude-opus-4-1", "openai/gpt-4o", "local/smollm2"],
            "an alias to a rule's model gets the rule's fallbacks"
        );
    }

    #[test]
    fn an_unknown_model_lists_what_is_configured() {
        let err = routes().resolve("llama-3").unwrap_err().0;
        assert!(err.contains("`llama-3`"), "{err}");
        assert!(err.contains("aliases: fast, smart"), "{err}");
        assert!(err.contains("claude-* → anthropic"), "{err}");
        assert!(err.contains("providers: anthropic, local, openai"), "{err}");
    }

    #[test]
    fn configuration_naming_an_unknown_provider_is_refused() {
        let err = Routes::new(["openai"]).rule("claude-*", "anthropic").unwrap_err().0;
        assert!(err.contains("`anthropic`") && err.contains("configured: openai"), "{err}");
        let err = Routes::new(["openai"]).fallbacks("gpt-*", &["gpt-4o"]).unwrap_err().0;
        assert!(err.contains("provider/model"), "{err}");
    }
}
