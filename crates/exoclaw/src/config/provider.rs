//! Provider instances: the `[providers.NAME]` tables, their kinds, and the built-in instances that
//! exist without any configuration.

use super::sections::redact_url;
use exoclaw_providers::{Preset, presets};
use secrecy::SecretString;
use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;

/// Which API a provider instance speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum ProviderKind {
    /// Anthropic's Messages API.
    Anthropic,
    /// OpenAI's API, or any server that speaks it (give it a `base_url`).
    #[serde(rename = "openai")]
    OpenAi,
    /// Google's Gemini API.
    Gemini,
    /// An Ollama server.
    Ollama,
    /// OpenRouter.
    #[serde(rename = "openrouter")]
    OpenRouter,
    /// xAI (Grok).
    Xai,
    /// llama.cpp's `llama-server`.
    #[serde(rename = "llamacpp")]
    LlamaCpp,
    /// Any OpenAI-compatible gateway; needs a `base_url`.
    ModelManager,
    /// The embedded model, running in-process.
    Local,
}

impl ProviderKind {
    /// Every kind, in the order listings show them.
    pub const ALL: [ProviderKind; 9] = [
        Self::Local,
        Self::Anthropic,
        Self::OpenAi,
        Self::Gemini,
        Self::Xai,
        Self::OpenRouter,
        Self::Ollama,
        Self::LlamaCpp,
        Self::ModelManager,
    ];

    /// The kind as written in config (`openai`, `model-manager`); also the name of its built-in
    /// instance.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Anthropic => "anthropic",
            Self::OpenAi => "openai",
            Self::Gemini => "gemini",
            Self::Ollama => "ollama",
            Self::OpenRouter => "openrouter",
            Self::Xai => "xai",
            Self::LlamaCpp => "llamacpp",
            Self::ModelManager => "model-manager",
            Self::Local => "local",
        }
    }

    /// Which client speaks this kind's API.
    pub(crate) fn api(self) -> Api {
        match self {
            Self::Anthropic => Api::Anthropic,
            Self::Gemini => Api::Gemini,
            Self::Local => Api::Local,
            Self::OpenAi => Api::OpenAi(&presets::OPENAI),
            Self::OpenRouter => Api::OpenAi(&presets::OPENROUTER),
            Self::Xai => Api::OpenAi(&presets::XAI),
            Self::Ollama => Api::OpenAi(&presets::OLLAMA),
            Self::LlamaCpp => Api::OpenAi(&presets::LLAMACPP),
            Self::ModelManager => Api::OpenAi(&presets::MODEL_MANAGER),
        }
    }

    /// The OpenAI-compatible preset for this kind, if it is one.
    pub fn preset(self) -> Option<&'static Preset> {
        match self.api() {
            Api::OpenAi(preset) => Some(preset),
            Api::Anthropic | Api::Gemini | Api::Local => None,
        }
    }

    /// The vendor's environment variables: those holding a base URL, and those holding a key.
    pub fn env_vars(self) -> (&'static [&'static str], &'static [&'static str]) {
        match self.api() {
            // exoclaw-providers keeps these two lists private (its `from_env` reads only the process
            // environment); they are repeated here so that `with_env` can be given our lookup.
            Api::Anthropic => (&["ANTHROPIC_BASE_URL"], &["ANTHROPIC_API_KEY"]),
            Api::Gemini => {
                (&["GEMINI_BASE_URL", "GOOGLE_GEMINI_BASE_URL"], &["GEMINI_API_KEY", "GOOGLE_API_KEY"])
            }
            Api::OpenAi(preset) => (preset.base_url_env, preset.api_key_env),
            Api::Local => (&[], &[]),
        }
    }

    /// Whether calls are refused without an API key.
    pub fn needs_key(self) -> bool {
        match self.api() {
            Api::Anthropic | Api::Gemini => true,
            Api::OpenAi(preset) => preset.key_required,
            Api::Local => false,
        }
    }

    /// The model used when only a provider of this kind is named and it sets no `default_model`.
    pub fn default_model(self) -> Option<&'static str> {
        match self {
            Self::Anthropic => Some("claude-sonnet-4-5"),
            Self::OpenAi => Some("gpt-4o-mini"),
            Self::Gemini => Some("gemini-2.5-flash"),
            Self::Xai => Some("grok-4"),
            Self::OpenRouter => Some("openrouter/auto"),
            Self::Local => Some(exoclaw_local::fetch::SMOLLM2_135M.name),
            // Local servers run whatever was pulled into them: there is no sensible guess.
            Self::Ollama | Self::LlamaCpp | Self::ModelManager => None,
        }
    }
}

/// The client behind a [`ProviderKind`].
#[derive(Debug, Clone, Copy)]
pub(crate) enum Api {
    Anthropic,
    Gemini,
    /// A member of the OpenAI-compatible family.
    OpenAi(&'static Preset),
    /// The embedded model.
    Local,
}

impl fmt::Display for ProviderKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One provider instance: a `[providers.NAME]` table, or a built-in instance.
///
/// Serialising never writes the key: `api_key` comes out as `"<redacted>"`; `Debug` hides it
/// too, and masks a password in `base_url`.
#[derive(Clone, Serialize)]
pub struct ProviderConfig {
    /// The instance's name: the table's key (`work` in `[providers.work]`). Models are addressed
    /// as `NAME/model`, and usage records carry this name.
    #[serde(skip)]
    pub name: String,
    /// Which API it speaks.
    pub kind: ProviderKind,
    /// Base URL of the API; unset means the vendor's (or its `*_BASE_URL` variable).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub base_url: Option<String>,
    /// The API key written in the config.
    #[serde(skip_serializing_if = "Option::is_none", serialize_with = "redacted")]
    pub api_key: Option<SecretString>,
    /// The environment variable holding the API key.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub api_key_env: Option<String>,
    /// The model used when only the provider's name is given.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub default_model: Option<String>,
}

impl fmt::Debug for ProviderConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProviderConfig")
            .field("name", &self.name)
            .field("kind", &self.kind)
            .field("base_url", &self.base_url.as_deref().map(redact_url))
            .field("api_key", &self.api_key.as_ref().map(|_| REDACTED))
            .field("api_key_env", &self.api_key_env)
            .field("default_model", &self.default_model)
            .finish()
    }
}

/// Shown instead of a secret.
pub(crate) const REDACTED: &str = "<redacted>";

fn redacted<S: Serializer>(key: &Option<SecretString>, s: S) -> Result<S::Ok, S::Error> {
    match key {
        Some(_) => s.serialize_str(REDACTED),
        None => s.serialize_none(),
    }
}

/// A `[providers.NAME]` table as written, checked into a [`ProviderConfig`].
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawProvider {
    kind: ProviderKind,
    base_url: Option<String>,
    api_key: Option<String>,
    api_key_env: Option<String>,
    default_model: Option<String>,
}

impl<'de> Deserialize<'de> for ProviderConfig {
    /// Reads the table and checks it as a whole; a failure is reported at the table's position.
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = RawProvider::deserialize(d)?;
        raw.check().map_err(D::Error::custom)
    }
}

impl RawProvider {
    /// The checked instance, or what is wrong with the table. The messages never quote a value,
    /// which may be (or hold) a key.
    fn check(self) -> Result<ProviderConfig, String> {
        let raw = self;
        if raw.api_key.is_some() && raw.api_key_env.is_some() {
            return Err("`api_key` and `api_key_env` are both set; keep one \
                        (`api_key_env` keeps the key out of the file)"
                .into());
        }
        if raw.kind == ProviderKind::Local
            && let Some(field) =
                [("base_url", &raw.base_url), ("api_key", &raw.api_key), ("api_key_env", &raw.api_key_env)]
                    .iter()
                    .find_map(|(name, value)| value.as_ref().map(|_| *name))
        {
            return Err(format!(
                "`{field}` means nothing to a provider of kind `local` (the embedded model); remove it, \
                 and set the model file with `model_path` in [local]"
            ));
        }
        if let Some(base_url) = &raw.base_url
            && !(base_url.starts_with("http://") || base_url.starts_with("https://"))
        {
            return Err("`base_url` must start with http:// or https://".into());
        }
        for (field, value) in [("api_key_env", &raw.api_key_env), ("default_model", &raw.default_model)] {
            if value.as_ref().is_some_and(|v| v.trim().is_empty()) {
                return Err(format!("`{field}` is empty; remove it or give it a value"));
            }
        }
        Ok(ProviderConfig {
            // Set from the table's key by the `[providers]` map.
            name: String::new(),
            kind: raw.kind,
            base_url: raw.base_url,
            api_key: raw.api_key.map(SecretString::from),
            api_key_env: raw.api_key_env,
            default_model: raw.default_model,
        })
    }
}

impl ProviderConfig {
    /// The built-in instance of `kind`: named like the kind, everything else from the vendor's
    /// environment variables and defaults.
    pub fn builtin(kind: ProviderKind) -> Self {
        Self {
            name: kind.as_str().to_owned(),
            kind,
            base_url: None,
            api_key: None,
            api_key_env: None,
            default_model: None,
        }
    }

    /// Whether the vendor's own variables (`OPENAI_API_KEY`, `OPENAI_BASE_URL`, …) fill in what
    /// this instance leaves unset.
    ///
    /// They do for the instance named like its kind, and for any instance talking to the vendor's
    /// own endpoint (no `base_url`). An instance pointed elsewhere (`work`, a company gateway)
    /// never picks up `OPENAI_API_KEY`: that would send a personal key to a third party.
    pub fn uses_vendor_env(&self) -> bool {
        self.name == self.kind.as_str() || self.base_url.is_none()
    }

    /// The model used when only this provider is named: its `default_model`, else its kind's
    /// where the vendor is the one answering (a vLLM server of kind `openai` has no `gpt-4o-mini`).
    pub fn default_model(&self) -> Option<&str> {
        self.default_model.as_deref().or_else(|| self.kind.default_model().filter(|_| self.uses_vendor_env()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_is_written_in_config_as_its_name() {
        for kind in ProviderKind::ALL {
            let written = toml::Value::try_from(kind).unwrap();
            assert_eq!(written.as_str(), Some(kind.as_str()));
            let read: ProviderKind = written.try_into().unwrap();
            assert_eq!(read, kind);
        }
    }

    #[test]
    fn presets_and_kinds_agree_on_names() {
        for kind in ProviderKind::ALL {
            if let Some(preset) = kind.preset() {
                assert_eq!(preset.name, kind.as_str());
            }
        }
    }

    #[test]
    fn a_gateway_instance_never_borrows_the_vendor_key() {
        let mut work = ProviderConfig::builtin(ProviderKind::OpenAi);
        work.name = "work".into();
        assert!(work.uses_vendor_env(), "no base_url: it talks to OpenAI itself");
        work.base_url = Some("http://gateway.corp/v1".into());
        assert!(!work.uses_vendor_env());
        let mut openai = ProviderConfig::builtin(ProviderKind::OpenAi);
        openai.base_url = Some("http://proxy/v1".into());
        assert!(openai.uses_vendor_env(), "the `openai` instance is the one OPENAI_API_KEY is for");
    }
}
