//! Model names: the provider's own name for a model, and `provider/model` references.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::{fmt, str::FromStr};

/// A model's name as its provider knows it (`claude-sonnet-4-5`, `gpt-4o-mini`, `smollm2`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema)]
#[serde(transparent)]
pub struct ModelId(pub String);

impl ModelId {
    /// The name as a string slice.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ModelId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<&str> for ModelId {
    fn from(s: &str) -> Self {
        Self(s.to_owned())
    }
}

impl From<String> for ModelId {
    fn from(s: String) -> Self {
        Self(s)
    }
}

/// A model addressed through a named provider instance: `provider/model`.
///
/// Only the first `/` separates the two, so `openrouter/anthropic/claude-3.5-sonnet` names the model
/// `anthropic/claude-3.5-sonnet` on the provider `openrouter`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(try_from = "String", into = "String")]
pub struct ModelRef {
    /// The configured provider instance's name.
    pub provider: String,
    /// The model's name on that provider.
    pub model: ModelId,
}

/// Why a string is not a `provider/model` reference.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "`{0}` is not a model reference: write it as `provider/model`, e.g. `anthropic/claude-sonnet-4-5` or `local/smollm2`"
)]
pub struct ModelRefError(pub String);

impl FromStr for ModelRef {
    type Err = ModelRefError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.split_once('/') {
            Some((provider, model)) if !provider.is_empty() && !model.is_empty() => {
                Ok(Self { provider: provider.to_owned(), model: ModelId(model.to_owned()) })
            }
            _ => Err(ModelRefError(s.to_owned())),
        }
    }
}

impl TryFrom<String> for ModelRef {
    type Error = ModelRefError;

    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl From<ModelRef> for String {
    fn from(r: ModelRef) -> Self {
        r.to_string()
    }
}

impl fmt::Display for ModelRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.provider, self.model)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_at_the_first_slash_only() {
        let r: ModelRef = "openrouter/anthropic/claude-3.5-sonnet".parse().unwrap();
        assert_eq!(r.provider, "openrouter");
        assert_eq!(r.model.as_str(), "anthropic/claude-3.5-sonnet");
        assert_eq!(r.to_string(), "openrouter/anthropic/claude-3.5-sonnet");
    }

    #[test]
    fn rejects_references_without_provider_or_model() {
        for bad in ["gpt-4o", "/gpt-4o", "openai/", ""] {
            let err = bad.parse::<ModelRef>().unwrap_err();
            assert!(err.to_string().contains("provider/model"), "{err}");
        }
    }

    #[test]
    fn serde_uses_the_string_form() {
        let r: ModelRef = serde_json::from_str("\"local/smollm2\"").unwrap();
        assert_eq!(serde_json::to_string(&r).unwrap(), "\"local/smollm2\"");
        assert!(serde_json::from_str::<ModelRef>("\"nope\"").is_err());
    }
}
