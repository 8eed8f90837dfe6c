//! How a provider instance is configured: its name, base URL, key and timeouts, and how the
//! vendors' usual environment variables fill in what configuration leaves out.

use crate::Timeouts;
use crate::transport::{ErrorClassifier, Transport, secret_header};
use exoclaw_core::{ErrorKind, ProviderError};
use http::header::{HeaderMap, HeaderName, HeaderValue};
use secrecy::ExposeSecret;
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

/// How a keyed vendor's requests carry the key, and the fixed headers it wants besides.
pub(crate) struct KeyedHeaders {
    /// The header holding the key as is (`x-api-key`, `x-goog-api-key`; lower case).
    pub key: &'static str,
    /// Sent with every request (Anthropic's API version).
    pub fixed: &'static [(&'static str, &'static str)],
}

/// Instance name, base URL and transport for a vendor that always needs a key (Anthropic,
/// Gemini): unset options take the vendor's defaults; no key is an error naming the variables.
pub(crate) fn keyed_transport(
    options: ProviderOptions,
    default_name: &str,
    default_base_url: &str,
    key_vars: &[&str],
    wanted: KeyedHeaders,
    classify: ErrorClassifier,
) -> Result<(String, Transport), ProviderError> {
    let name = options.name.unwrap_or_else(|| default_name.to_owned());
    let Some(key) = &options.api_key else {
        return Err(missing_key(&name, key_vars));
    };
    let mut headers = HeaderMap::new();
    headers.insert(HeaderName::from_static(wanted.key), secret_header(&name, key.expose_secret())?);
    for (header, value) in wanted.fixed {
        headers.insert(HeaderName::from_static(header), HeaderValue::from_static(value));
    }
    let base_url = trim_base(options.base_url.as_deref().unwrap_or(default_base_url));
    let transport = Transport::new(&name, options.timeouts, options.api_key, headers, classify)?;
    Ok((base_url, transport))
}

/// `base` without trailing slashes, so paths can be appended with one `/`.
pub(crate) fn trim_base(base: &str) -> String {
    base.trim_end_matches('/').to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Anthropic, Gemini, OpenAiCompatible, presets};
    use exoclaw_core::Provider;
    use std::collections::HashMap;

    fn env(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        move |name| map.get(name).cloned()
    }

    #[test]
    fn explicit_settings_beat_the_environment_which_beats_defaults() {
        let lookup = env(&[("OPENAI_BASE_URL", "http://proxy:9000/v1/"), ("OPENAI_API_KEY", "sk-env")]);
        let from_env =
            ProviderOptions::default().with_env(&["OPENAI_BASE_URL"], &["OPENAI_API_KEY"], &lookup);
        let provider = OpenAiCompatible::new(&presets::OPENAI, from_env).unwrap();
        assert_eq!(provider.base_url(), "http://proxy:9000/v1");

        let explicit = ProviderOptions::default().base_url("http://explicit/v1").with_env(
            &["OPENAI_BASE_URL"],
            &["OPENAI_API_KEY"],
            &lookup,
        );
        assert_eq!(
            OpenAiCompatible::new(&presets::OPENAI, explicit).unwrap().base_url(),
            "http://explicit/v1"
        );

        let defaults = ProviderOptions::default().api_key("k");
        assert_eq!(
            OpenAiCompatible::new(&presets::OPENAI, defaults).unwrap().base_url(),
            "https://api.openai.com/v1"
        );
    }

    #[test]
    fn the_first_set_variable_wins_and_blank_ones_are_ignored() {
        let lookup = env(&[("GEMINI_API_KEY", "  "), ("GOOGLE_API_KEY", "g-key")]);
        let options = ProviderOptions::default().with_env(&[], &["GEMINI_API_KEY", "GOOGLE_API_KEY"], lookup);
        assert!(Gemini::new(options).is_ok());
    }

    #[test]
    fn a_missing_key_is_refused_up_front_with_the_variable_to_set() {
        let err = Anthropic::new(ProviderOptions::default()).unwrap_err();
        assert_eq!(err.kind, ErrorKind::Auth);
        assert!(err.to_string().contains("ANTHROPIC_API_KEY"), "{err}");
        // Local servers need no key.
        assert!(OpenAiCompatible::new(&presets::OLLAMA, ProviderOptions::default()).is_ok());
        let err = OpenAiCompatible::new(&presets::MODEL_MANAGER, ProviderOptions::default()).unwrap_err();
        assert!(err.to_string().contains("MODEL_MANAGER_BASE_URL"), "{err}");
    }

    #[test]
    fn debug_output_never_shows_the_key() {
        let options = ProviderOptions::default().api_key("sk-very-secret");
        assert!(!format!("{options:?}").contains("sk-very-secret"));
        let provider = OpenAiCompatible::new(&presets::OPENAI, options).unwrap();
        assert!(!format!("{provider:?}").contains("sk-very-secret"));
        assert_eq!(provider.name(), "openai");
    }
}
