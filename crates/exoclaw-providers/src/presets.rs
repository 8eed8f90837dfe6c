//! The OpenAI-compatible family as data: each preset is a base URL, the environment variables it
//! honours, and the few ways the server differs from OpenAI's own API.

/// How a server lists its models.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModelListing {
    /// `GET {base}/models` → `{"data": [{"id": …}]}`.
    OpenAi,
    /// Ollama's `GET {root}/api/tags` → `{"models": [{"name": …}]}`, where root is the base URL
    /// without its `/v1`.
    OllamaTags,
}

/// One member of the OpenAI-compatible family.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Preset {
    /// Preset name, also the default instance name (`openai`, `ollama`, …).
    pub name: &'static str,
    /// Base URL when neither config nor environment sets one; `None` means it must be configured.
    pub default_base_url: Option<&'static str>,
    /// Variables holding a base URL, first set one wins.
    pub base_url_env: &'static [&'static str],
    /// Variables holding an API key, first set one wins.
    pub api_key_env: &'static [&'static str],
    /// Whether calls without a key are refused up front (local servers need none).
    pub key_required: bool,
    /// How to list models.
    pub models: ModelListing,
    /// Field carrying the output-token limit: OpenAI deprecated `max_tokens` for
    /// `max_completion_tokens`, which compatible servers do not all accept.
    pub max_tokens_field: &'static str,
    /// Extra headers sent with every request.
    pub headers: &'static [(&'static str, &'static str)],
}

/// OpenAI's own API.
pub const OPENAI: Preset = Preset {
    name: "openai",
    default_base_url: Some("https://api.openai.com/v1"),
    base_url_env: &["OPENAI_BASE_URL"],
    api_key_env: &["OPENAI_API_KEY"],
    key_required: true,
    models: ModelListing::OpenAi,
    max_tokens_field: "max_completion_tokens",
    headers: &[],
};

/// OpenRouter: many vendors' models behind one OpenAI-compatible API.
pub const OPENROUTER: Preset = Preset {
    name: "openrouter",
    default_base_url: Some("https://openrouter.ai/api/v1"),
    base_url_env: &["OPENROUTER_BASE_URL"],
    api_key_env: &["OPENROUTER_API_KEY"],
    key_required: true,
    models: ModelListing::OpenAi,
    max_tokens_field: "max_tokens",
    // OpenRouter's app attribution headers (https://openrouter.ai/docs/api-reference/overview).
    headers: &[("X-Title", "exoclaw"), ("HTTP-Referer", "https://github.com/exoclaw/exoclaw")],
};

/// xAI (Grok).
pub const XAI: Preset = Preset {
    name: "xai",
    default_base_url: Some("https://api.x.ai/v1"),
    base_url_env: &["XAI_BASE_URL"],
    api_key_env: &["XAI_API_KEY"],
    key_required: true,
    models: ModelListing::OpenAi,
    max_tokens_field: "max_tokens",
    headers: &[],
};

/// Ollama's OpenAI-compatible endpoint; models come from its native `/api/tags`.
pub const OLLAMA: Preset = Preset {
    name: "ollama",
    default_base_url: Some("http://127.0.0.1:11434/v1"),
    base_url_env: &["OLLAMA_BASE_URL"],
    api_key_env: &["OLLAMA_API_KEY"],
    key_required: false,
    models: ModelListing::OllamaTags,
    max_tokens_field: "max_tokens",
    headers: &[],
};

/// llama.cpp's `llama-server`.
pub const LLAMACPP: Preset = Preset {
    name: "llamacpp",
    default_base_url: Some("http://127.0.0.1:8080/v1"),
    base_url_env: &["LLAMACPP_BASE_URL"],
    api_key_env: &["LLAMA_API_KEY"],
    key_required: false,
    models: ModelListing::OpenAi,
    max_tokens_field: "max_tokens",
    headers: &[],
};

/// Any OpenAI-compatible gateway (the seed designs' "Model Manager"): base URL and key configured.
pub const MODEL_MANAGER: Preset = Preset {
    name: "model-manager",
    default_base_url: None,
    base_url_env: &["MODEL_MANAGER_BASE_URL"],
    api_key_env: &["MODEL_MANAGER_API_KEY"],
    key_required: false,
    models: ModelListing::OpenAi,
    max_tokens_field: "max_tokens",
    headers: &[],
};

/// Every preset, for lookup by name.
pub const PRESETS: &[Preset] = &[OPENAI, OPENROUTER, XAI, OLLAMA, LLAMACPP, MODEL_MANAGER];

/// The preset called `name`.
pub fn preset(name: &str) -> Option<&'static Preset> {
    PRESETS.iter().find(|p| p.name == name)
}
