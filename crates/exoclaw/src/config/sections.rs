//! The smaller sections of [`Config`](super::Config) (`[agent]`, `[storage]`, `[local]`), the
//! default-model setting, and the checks serde runs while reading them, so that a bad value is
//! reported at its line and column.

use super::provider::{ProviderConfig, REDACTED};
use exoclaw_core::{Limits, Permission, PermissionPolicy, Rule};
use exoclaw_types::{ModelRef, ModelRefError};
use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serialize};
use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

/// `[agent]`: the agent loop's settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AgentConfig {
    /// Replaces exoclaw's own opening system prompt (which tells a cloud model it is an agent
    /// with tools, and the embedded one only that it is a helpful assistant).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub base_prompt: Option<String>,
    /// Extra system prompt, added to every session's.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub system: Option<String>,
    /// Most model calls in one turn.
    #[serde(deserialize_with = "at_least_one")]
    pub max_iterations: u32,
    /// Most seconds one tool call may take before it is cancelled.
    #[serde(deserialize_with = "at_least_one")]
    pub tool_timeout_secs: u64,
    /// Whether cloud models are offered the built-in tools (files, shell, web) by default. The
    /// embedded model is too small to use them well and gets them only when asked (`--tools`).
    pub tools: bool,
    /// Narrows the tools and skills agents are offered to these baskets (`files`, `files/read`,
    /// `shell`, `web`, `memory`, `mcp/SERVER`…); empty: every tool. `[agents.NAME] baskets`
    /// replaces it for that agent.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub baskets: Vec<exoclaw_tools::baskets::Basket>,
}

impl Default for AgentConfig {
    fn default() -> Self {
        let limits = Limits::default();
        Self {
            base_prompt: None,
            system: None,
            max_iterations: limits.max_iterations,
            tool_timeout_secs: limits.tool_timeout.as_secs(),
            tools: true,
            baskets: Vec::new(),
        }
    }
}

impl AgentConfig {
    /// The agent loop's limits.
    pub fn limits(&self) -> Limits {
        Limits {
            max_iterations: self.max_iterations,
            tool_timeout: Duration::from_secs(self.tool_timeout_secs),
        }
    }
}

/// `[storage]`: where sessions and usage are kept. `Debug` masks the URL's password.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StorageConfig {
    /// `sqlite://PATH`, a file path, or `postgres://…`; unset means `exoclaw.db` in exoclaw's
    /// home. Use [`Config::storage_url`](super::Config::storage_url) to get the URL to open.
    #[serde(skip_serializing_if = "Option::is_none", deserialize_with = "storage_url")]
    pub url: Option<String>,
}

impl fmt::Debug for StorageConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StorageConfig").field("url", &self.url.as_deref().map(redact_url)).finish()
    }
}

/// `[local]`: the embedded model.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LocalConfig {
    /// A GGUF file to run instead of fetching SmolLM2 into the model cache.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model_path: Option<PathBuf>,
    /// Answer length, in tokens, when a request sets none.
    #[serde(deserialize_with = "at_least_one")]
    pub max_tokens: usize,
}

impl Default for LocalConfig {
    fn default() -> Self {
        Self { model_path: None, max_tokens: exoclaw_local::LocalOptions::default().max_tokens }
    }
}

/// A default model as configured: `provider/model`, or only a provider, meaning its default model.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum ModelChoice {
    /// Only a provider instance (`work`): its `default_model`.
    Provider(String),
    /// A model on a provider instance (`work/gpt-4o`).
    Model(ModelRef),
}

impl ModelChoice {
    /// The provider instance's name.
    pub fn provider(&self) -> &str {
        match self {
            Self::Provider(name) => name,
            Self::Model(model) => &model.provider,
        }
    }
}

impl FromStr for ModelChoice {
    type Err = ModelRefError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        if s.contains('/') {
            s.parse().map(Self::Model)
        } else if s.is_empty() {
            Err(ModelRefError(s.to_owned()))
        } else {
            Ok(Self::Provider(s.to_owned()))
        }
    }
}

impl TryFrom<String> for ModelChoice {
    type Error = ModelRefError;

    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl From<ModelChoice> for String {
    fn from(choice: ModelChoice) -> Self {
        choice.to_string()
    }
}

impl From<ModelRef> for ModelChoice {
    fn from(model: ModelRef) -> Self {
        Self::Model(model)
    }
}

impl fmt::Display for ModelChoice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Provider(name) => f.write_str(name),
            Self::Model(model) => model.fmt(f),
        }
    }
}

/// A count or duration that must not be zero (zero iterations or a zero timeout would make every
/// turn fail).
fn at_least_one<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de> + PartialEq + From<u8>,
{
    let value = T::deserialize(d)?;
    if value == T::from(0) {
        return Err(D::Error::custom("must be at least 1"));
    }
    Ok(value)
}

fn storage_url<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    let url = String::deserialize(d)?;
    check_storage_url(&url).map_err(D::Error::custom)?;
    Ok(Some(url))
}

/// Whether `url` is a storage URL exoclaw can open. The message never shows the URL, which may
/// hold a password.
pub(crate) fn check_storage_url(url: &str) -> Result<(), String> {
    let url = url.trim();
    if url.is_empty() {
        return Err("the storage URL is empty; remove it to use the default SQLite file, or write \
                    sqlite://PATH or postgres://USER:PASSWORD@HOST/DATABASE"
            .into());
    }
    match url.split_once("://") {
        Some(("sqlite" | "postgres" | "postgresql", _)) | None => Ok(()),
        Some((scheme, _)) => Err(format!(
            "storage URL scheme `{scheme}://` is not supported; use sqlite://PATH, a file path, or \
             postgres://USER:PASSWORD@HOST/DATABASE"
        )),
    }
}

/// `url` with a leading `~` (after `sqlite://` or `sqlite:`, or at the start of a file path)
/// replaced by the user's home.
pub(crate) fn expand_url(url: &str, user_home: Option<&Path>) -> String {
    for prefix in ["sqlite://", "sqlite:", ""] {
        if let Some(rest) = url.strip_prefix(prefix)
            && (rest == "~" || rest.starts_with("~/"))
        {
            let path = expand_path(Path::new(rest), user_home);
            return format!("{prefix}{}", path.display());
        }
    }
    url.to_owned()
}

/// `path` with a leading `~` replaced by the user's home (unchanged when the home is unknown).
pub(crate) fn expand_path(path: &Path, user_home: Option<&Path>) -> PathBuf {
    match (path.strip_prefix("~"), user_home) {
        (Ok(rest), Some(home)) => home.join(rest),
        _ => path.to_owned(),
    }
}

/// The URL with its password (user info, or a `password=` parameter) replaced by `<redacted>`.
pub(crate) fn redact_url(url: &str) -> String {
    let mut shown = match url.split_once("://") {
        // The last `@` ends the user info: passwords may hold unescaped `/`, `?` or `#`.
        Some((scheme, rest)) => match rest.rfind('@').map(|at| rest.split_at(at)) {
            Some((userinfo, host)) => match userinfo.split_once(':') {
                Some((user, _)) => format!("{scheme}://{user}:{REDACTED}{host}"),
                None => url.to_owned(),
            },
            None => url.to_owned(),
        },
        None => url.to_owned(),
    };
    if let Some((base, query)) = shown.split_once('?') {
        let params: Vec<String> = query
            .split('&')
            .map(|param| match param.split_once('=') {
                Some((key, _))
                    if key.eq_ignore_ascii_case("password") || key.eq_ignore_ascii_case("sslpassword") =>
                {
                    format!("{key}={REDACTED}")
                }
                _ => param.to_owned(),
            })
            .collect();
        shown = format!("{base}?{}", params.join("&"));
    }
    shown
}

/// `[permissions]` read strictly: `PermissionPolicy` itself ignores unknown keys, and a misspelt
/// `mutatng = "deny"` silently doing nothing would be a security hole.
pub(crate) fn strict_permissions<'de, D: Deserializer<'de>>(d: D) -> Result<PermissionPolicy, D::Error> {
    #[derive(Deserialize)]
    #[serde(default, deny_unknown_fields)]
    struct Strict {
        read_only: Permission,
        mutating: Permission,
        external: Permission,
        tools: BTreeMap<String, Permission>,
        auto_approve: bool,
        rules: Vec<Rule>,
    }
    impl Default for Strict {
        fn default() -> Self {
            let PermissionPolicy { read_only, mutating, external, tools, auto_approve, rules } =
                PermissionPolicy::default();
            Self { read_only, mutating, external, tools, auto_approve, rules }
        }
    }
    // Exhaustive on both sides: a field added to `PermissionPolicy` does not compile here until
    // it is added to `Strict` too.
    let Strict { read_only, mutating, external, tools, auto_approve, rules } = Strict::deserialize(d)?;
    Ok(PermissionPolicy { read_only, mutating, external, tools, auto_approve, rules })
}

/// `[providers.*]`, each instance given its table's name, which must be usable in `NAME/model`.
pub(crate) fn named_providers<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<BTreeMap<String, ProviderConfig>, D::Error> {
    let mut providers = BTreeMap::<String, ProviderConfig>::deserialize(d)?;
    for (name, provider) in &mut providers {
        if name.is_empty() || name.contains('/') || name.contains(char::is_whitespace) {
            return Err(D::Error::custom(format!(
                "provider name `{name}` cannot be used in a model reference (`NAME/model`): rename \
                 the table to a name without `/` or spaces"
            )));
        }
        provider.name.clone_from(name);
    }
    Ok(providers)
}
