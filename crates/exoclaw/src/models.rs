//! Which model a session uses, and opening the provider instance that serves it.
//!
//! [`Config::resolve_model`] picks the model: the one asked for, else the configured default, else
//! the first cloud provider with a key, else the embedded model. [`open_provider`] then builds the
//! instance under its configured name, base URL and key.

use crate::config::load::{Lookup, process_env};
use crate::config::provider::Api;
use crate::config::{Config, ConfigError, ModelChoice, ProviderConfig, ProviderKind};
use exoclaw_core::{ErrorKind, Provider, ProviderError};
use exoclaw_local::fetch::{Progress, SMOLLM2_135M};
use exoclaw_local::{LocalError, LocalOptions, LocalProvider};
use exoclaw_providers::{Anthropic, Gemini, OpenAiCompatible, ProviderOptions};
use exoclaw_types::ModelRef;
use secrecy::SecretString;
use std::sync::Arc;

/// Cloud providers in the order the default model is chosen when none is configured.
pub const CLOUD_ORDER: [&str; 5] = ["anthropic", "openai", "gemini", "xai", "openrouter"];

/// A model and the provider instance serving it.
#[derive(Debug, Clone)]
pub struct ResolvedModel {
    /// The model, as `provider/model`.
    pub model: ModelRef,
    /// The provider instance, `name` set.
    pub provider: ProviderConfig,
}

/// Why a provider could not be opened.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OpenError {
    /// The model does not fit the configuration.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The instance reads its key from a variable that is not set.
    #[error(
        "provider `{provider}` reads its API key from {var}, which is not set: set it (a `.env` file in the working directory works too)"
    )]
    KeyVarUnset {
        /// The provider instance.
        provider: String,
        /// The variable named by `api_key_env`.
        var: String,
    },
    /// An instance with its own `base_url` needs a key and has none configured.
    #[error(
        "provider `{provider}` has no API key: set `api_key_env = \"VARIABLE\"` in [providers.{provider}] (vendor variables such as {vendor_var} are not sent to a provider with its own base_url)"
    )]
    NoKey {
        /// The provider instance.
        provider: String,
        /// The vendor's key variable, which was deliberately not used.
        vendor_var: &'static str,
    },
    /// The provider refused its settings (no key, no base URL).
    #[error(transparent)]
    Provider(#[from] ProviderError),
    /// The embedded model could not be found, fetched or loaded.
    #[error(transparent)]
    Local(#[from] LocalError),
}

impl OpenError {
    /// The kind of provider failure this is, for a caller that opens providers on demand (the
    /// gateway opens each on its first request): a configuration or a missing file is not a
    /// failing server, so it must not trip a circuit breaker or be retried.
    pub fn kind(&self) -> ErrorKind {
        match self {
            OpenError::Config(_) => ErrorKind::ModelNotFound,
            OpenError::KeyVarUnset { .. } | OpenError::NoKey { .. } => ErrorKind::Auth,
            OpenError::Provider(e) => e.kind,
            OpenError::Local(e) => e.kind(),
        }
    }

    /// This error as a [`ProviderError`] of the instance `provider`.
    pub fn into_provider_error(self, provider: &str) -> ProviderError {
        match self {
            OpenError::Provider(e) => e,
            other => ProviderError::new(other.kind(), provider, other.to_string()),
        }
    }
}

impl Config {
    /// The model to use: `requested` (`--model`), else the configured `model` (or
    /// `EXOCLAW_MODEL`), else the first of [`CLOUD_ORDER`] whose key is available (in the config,
    /// its `api_key_env` variable, or the vendor's variable) with its default model, else
    /// `local/smollm2`.
    pub fn resolve_model(&self, requested: Option<&ModelRef>) -> Result<ResolvedModel, ConfigError> {
        self.resolve_choice(requested.cloned().map(ModelChoice::Model).as_ref())
    }

    /// [`Config::resolve_model`] for a request that may name only a provider (`--model work`),
    /// meaning its default model.
    pub fn resolve_choice(&self, requested: Option<&ModelChoice>) -> Result<ResolvedModel, ConfigError> {
        self.resolve_in(requested, &process_env)
    }

    /// Whether `provider`'s API key is available: in the config, in its `api_key_env` variable,
    /// or in the vendor's variable where those apply ([`ProviderConfig::uses_vendor_env`]).
    pub fn has_key(&self, provider: &ProviderConfig) -> bool {
        has_key_in(provider, &process_env)
    }

    /// The providers worth listing (`exoclaw models`): the embedded one, every configured
    /// `[providers.*]` instance, and the built-in ones that can answer without more setup: a cloud
    /// vendor whose key is available, a local server whose base-URL variable is set.
    pub fn available_provider_names(&self) -> Vec<String> {
        self.available_in(&process_env)
    }

    /// Whether `name` is the embedded model's provider (of kind `local`).
    pub fn is_local(&self, name: &str) -> bool {
        self.provider(name).is_some_and(|p| p.kind == ProviderKind::Local)
    }

    pub(crate) fn available_in(&self, lookup: Lookup<'_>) -> Vec<String> {
        let set = |name: &&str| lookup(name).is_some_and(|v| !v.trim().is_empty());
        self.provider_names()
            .into_iter()
            .filter(|name| {
                let Some(provider) = self.provider(name) else { return false };
                let (base_url_vars, _) = provider.kind.env_vars();
                provider.kind == ProviderKind::Local
                    || self.providers.contains_key(name)
                    || if provider.kind.needs_key() {
                        has_key_in(&provider, lookup)
                    } else {
                        base_url_vars.iter().any(set)
                    }
            })
            .collect()
    }

    pub(crate) fn resolve_in(
        &self,
        requested: Option<&ModelChoice>,
        lookup: Lookup<'_>,
    ) -> Result<ResolvedModel, ConfigError> {
        let Some(choice) = requested.or(self.model.as_ref()) else {
            return Ok(self.default_model_in(lookup));
        };
        let provider = self.provider(choice.provider()).ok_or_else(|| ConfigError::UnknownProvider {
            name: choice.provider().to_owned(),
            requested: choice.to_string(),
            known: self.provider_names().join(", "),
        })?;
        let model = match choice {
            ModelChoice::Model(model) => model.clone(),
            ModelChoice::Provider(name) => {
                let Some(model) = provider.default_model() else {
                    return Err(ConfigError::NoDefaultModel { provider: name.clone() });
                };
                ModelRef { provider: name.clone(), model: model.into() }
            }
        };
        check_local(&provider, &model, self)?;
        Ok(ResolvedModel { model, provider })
    }

    fn default_model_in(&self, lookup: Lookup<'_>) -> ResolvedModel {
        let cloud = CLOUD_ORDER.iter().filter_map(|name| self.provider(name)).find_map(|provider| {
            let model = provider.default_model().filter(|_| has_key_in(&provider, lookup))?;
            Some(ResolvedModel {
                model: ModelRef { provider: provider.name.clone(), model: model.into() },
                provider,
            })
        });
        cloud.unwrap_or_else(|| {
            let provider =
                self.provider("local").unwrap_or_else(|| ProviderConfig::builtin(ProviderKind::Local));
            let model = provider.default_model().unwrap_or(SMOLLM2_135M.name);
            ResolvedModel {
                model: ModelRef { provider: provider.name.clone(), model: model.into() },
                provider,
            }
        })
    }
}

fn has_key_in(provider: &ProviderConfig, lookup: Lookup<'_>) -> bool {
    let set = |name: &str| lookup(name).is_some_and(|v| !v.trim().is_empty());
    match (&provider.api_key, &provider.api_key_env) {
        (Some(_), _) => true,
        (None, Some(var)) => set(var),
        (None, None) => provider.uses_vendor_env() && provider.kind.env_vars().1.iter().any(|var| set(var)),
    }
}

/// For the embedded provider: that the model names a GGUF it can run (its default, a cached file or
/// a path; see [`exoclaw_local::catalog`]), so a wrong name fails before anything is loaded.
fn check_local(provider: &ProviderConfig, model: &ModelRef, config: &Config) -> Result<(), ConfigError> {
    if provider.kind != ProviderKind::Local {
        return Ok(());
    }
    let options = local_options(provider, config);
    exoclaw_local::catalog::resolve(&options.locator, &options.spec, &provider.name, model.model.as_str())
        .map(drop)
        .map_err(|e| ConfigError::LocalModel { requested: model.to_string(), reason: e.to_string() })
}

/// Opens the provider instance serving `resolved`, under its configured name (so usage is
/// recorded as `work`, not `openai`), with its base URL and key. Cloud providers are built without
/// any network call; the embedded model is located (fetched into the cache the first time, with
/// `progress` reporting bytes) and loaded.
pub async fn open_provider(
    resolved: &ResolvedModel,
    config: &Config,
    progress: Progress<'_>,
) -> Result<Arc<dyn Provider>, OpenError> {
    open_in(resolved, config, progress, &process_env).await
}

/// Opens the provider instance `name` on its own, not for one model: for listing or checking it, or
/// for serving any of its models (the gateway). Cloud instances are built without a network call;
/// the embedded model is located (fetched the first time, with `progress`) and loaded.
pub async fn open_instance(
    config: &Config,
    name: &str,
    progress: Progress<'_>,
) -> Result<Arc<dyn Provider>, OpenError> {
    let provider = instance(config, name)?;
    // Any model name will do except for the embedded provider, which loads its default model.
    let model = provider.default_model().unwrap_or("-").into();
    let resolved = ResolvedModel { model: ModelRef { provider: name.to_owned(), model }, provider };
    open_in(&resolved, config, progress, &process_env).await
}

/// Whether the embedded instance `name` can be opened without downloading: its model file is on
/// this machine. Otherwise why not, and how to get the file. (Other instances open without any
/// network call, so opening them is the check.)
pub fn check_local_file(config: &Config, name: &str) -> Result<(), OpenError> {
    let provider = instance(config, name)?;
    let options = local_options(&provider, config);
    let model = provider.default_model().unwrap_or(SMOLLM2_135M.name);
    match exoclaw_local::catalog::resolve(&options.locator, &options.spec, name, model)? {
        exoclaw_local::catalog::ModelSource::Known(spec) => drop(options.locator.find(&spec)?),
        exoclaw_local::catalog::ModelSource::File(_) => {}
    }
    Ok(())
}

/// What the embedded instance `name` can run without a download, for listing: its default
/// model's name and the GGUFs in its model cache (headers read, nothing loaded).
pub fn local_models(config: &Config, name: &str) -> Result<LocalModels, ConfigError> {
    let provider = instance(config, name)?;
    let options = local_options(&provider, config);
    Ok(LocalModels {
        default: provider.default_model().unwrap_or(SMOLLM2_135M.name).to_owned(),
        default_file: options
            .locator
            .explicit
            .clone()
            .unwrap_or_else(|| options.locator.cache_dir.join(options.spec.file_name)),
        cached: exoclaw_local::catalog::cached_models(&options.locator.cache_dir),
    })
}

/// The embedded instance's models, as [`local_models`] finds them.
#[derive(Debug, Clone)]
pub struct LocalModels {
    /// The model it runs when none is named.
    pub default: String,
    /// Where the fetchable default model's file is (or will be, once fetched).
    pub default_file: std::path::PathBuf,
    /// The GGUFs in the model cache.
    pub cached: Vec<exoclaw_local::catalog::CachedModel>,
}

/// The provider instance `name`, configured or built in.
fn instance(config: &Config, name: &str) -> Result<ProviderConfig, ConfigError> {
    config.provider(name).ok_or_else(|| ConfigError::UnknownProvider {
        name: name.to_owned(),
        requested: name.to_owned(),
        known: config.provider_names().join(", "),
    })
}

/// The embedded instance's options: its name, answer length and model file.
pub(crate) fn local_options(provider: &ProviderConfig, config: &Config) -> LocalOptions {
    let mut options = LocalOptions {
        name: provider.name.clone(),
        max_tokens: config.local.max_tokens,
        ..LocalOptions::default()
    };
    options.locator.explicit.clone_from(&config.local.model_path);
    options
}

pub(crate) async fn open_in(
    resolved: &ResolvedModel,
    config: &Config,
    progress: Progress<'_>,
    lookup: Lookup<'_>,
) -> Result<Arc<dyn Provider>, OpenError> {
    let provider = &resolved.provider;
    Ok(match provider.kind.api() {
        Api::Local => {
            check_local(provider, &resolved.model, config)?;
            let options = LocalOptions {
                model: resolved.model.model.as_str().to_owned(),
                ..local_options(provider, config)
            };
            Arc::new(LocalProvider::open(options, progress).await?)
        }
        Api::Anthropic => Arc::new(Anthropic::new(provider_options(provider, lookup)?)?),
        Api::Gemini => Arc::new(Gemini::new(provider_options(provider, lookup)?)?),
        Api::OpenAi(preset) => Arc::new(OpenAiCompatible::new(preset, provider_options(provider, lookup)?)?),
    })
}

/// The options a cloud instance is built with: the config's settings, then (where they apply) the
/// vendor's variables for what is left unset.
pub(crate) fn provider_options(
    provider: &ProviderConfig,
    lookup: Lookup<'_>,
) -> Result<ProviderOptions, OpenError> {
    let mut options = ProviderOptions::default().name(&provider.name);
    options.base_url.clone_from(&provider.base_url);
    options.api_key = match (&provider.api_key, &provider.api_key_env) {
        (Some(key), _) => Some(key.clone()),
        (None, Some(var)) => match lookup(var).filter(|v| !v.trim().is_empty()) {
            Some(key) => Some(SecretString::from(key)),
            None => return Err(OpenError::KeyVarUnset { provider: provider.name.clone(), var: var.clone() }),
        },
        (None, None) => None,
    };
    let (base_url_vars, key_vars) = provider.kind.env_vars();
    if provider.uses_vendor_env() {
        options = options.with_env(base_url_vars, key_vars, lookup);
    } else if provider.kind.needs_key() && options.api_key.is_none() {
        return Err(OpenError::NoKey {
            provider: provider.name.clone(),
            vendor_var: key_vars.first().copied().unwrap_or("the vendor's key variable"),
        });
    }
    Ok(options)
}

#[cfg(test)]
mod tests;
