//! How a provider instance is configured: its name, base URL, key and timeouts, and how the
//! vendors' usual environment variables fill in what configuration leaves out.

use crate::Timeouts;
use exoclaw_core::{ErrorKind, ProviderError};
use secrecy::SecretString;

/// Settings shared by every provider. Unset fields fall back to environment variables (with
/// [`ProviderOptions::with_env`]) and then to the vendor's defaults.
#[derive(Debug, Clone, Default)]
pub struct ProviderOptions {
    /// The instance's name (defaults to the vendor or preset name): two OpenAI-compatible servers
    /// can sit side by side as `local-vllm` and `work-gateway`.
    pub name: Option<String>,
    /// Base URL of the API, e.g. `https://api.openai.com/v1`.
    pub base_url: Option<String>,
    /// The API key. Kept secret: it never appears in `Debug` output, logs or errors.
    pub api_key: Option<SecretString>,
    /// Deadlines for each call.
    pub timeouts: Timeouts,
}

impl ProviderOptions {
    /// Options with an explicit base URL.
    pub fn base_url(mut self, url: impl Into<String>) -> Self {
        self.base_url = Some(url.into());
        self
    }

    /// Options with an explicit API key.
    pub fn api_key(mut self, key: impl Into<String>) -> Self {
        self.api_key = Some(SecretString::from(key.into()));
        self
    }

    /// Options with an instance name.
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// Options with these timeouts.
    pub fn timeouts(mut self, timeouts: Timeouts) -> Self {
        self.timeouts = timeouts;
        self
    }

    /// Fills the base URL and key from the first set variable of each list, read through `lookup`
    /// (`std::env::var` in real use; a map in tests). Explicit settings win.
    pub fn with_env(
        mut self,
        base_url_vars: &[&str],
        api_key_vars: &[&str],
        lookup: impl Fn(&str) -> Option<String>,
    ) -> Self {
        let first = |vars: &[&str]| vars.iter().find_map(|v| lookup(v).filter(|s| !s.trim().is_empty()));
        if self.base_url.is_none() {
            self.base_url = first(base_url_vars);
        }
        if self.api_key.is_none() {
            self.api_key = first(api_key_vars).map(SecretString::from);
        }
        self
    }
}

/// Reads a process environment variable; the `lookup` for [`ProviderOptions::with_env`].
pub fn process_env(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

/// The error for a provider that needs a key and has none.
pub(crate) fn missing_key(name: &str, vars: &[&str]) -> ProviderError {
    let how = match vars.first() {
        Some(var) => format!("set {var} or `api_key` in the provider's config"),
        None => "set `api_key` in the provider's config".to_owned(),
    };
    ProviderError::new(ErrorKind::Auth, name, format!("no API key configured: {how}"))
}

/// `base` without trailing slashes, so paths can be appended with one `/`.
pub(crate) fn trim_base(base: &str) -> String {
    base.trim_end_matches('/').to_owned()
}
