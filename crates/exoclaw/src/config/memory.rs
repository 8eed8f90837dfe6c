//! `[memory]`: the layered memory every turn's context is assembled from (see `exoclaw-memory`).

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::PathBuf;

/// How facts are learned from what users say.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FactsSetting {
    /// The agent's model (or `[memory] model`), as structured output, after every user message:
    /// one more model call per turn. The patterns when its answer does not validate, and for the
    /// embedded model (whose small model would spend seconds on each turn for little).
    Model,
    /// English patterns only ("I live in…", "my name is…", "I moved to…"): no model call.
    #[default]
    Patterns,
    /// No facts are learned.
    Off,
}

/// `[memory]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MemoryConfig {
    /// Whether turns get layered memory; `false` sends every turn the session's whole history,
    /// as before memory existed (and long sessions then fail with `context_length`).
    pub enabled: bool,
    /// Where long-term memory lives: by default the sessions' database (`storage.url`);
    /// `arcadedb://USER:PASSWORD@HOST:PORT/DATABASE`, `postgres://…` or `sqlite://PATH`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// Messages a session keeps in its recent window; past it the oldest are summarised in the
    /// background (never deleted).
    pub window: usize,
    /// The most tokens a turn's context may take; by default what the model's context window
    /// leaves after the answer's room, the system prompt and the tools.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub budget: Option<usize>,
    /// The `provider/model` that writes summaries and extracts facts; by default the agent's own.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// How facts are learned.
    pub facts: FactsSetting,
    /// Excerpts of past conversations a context may carry.
    pub excerpts: usize,
    /// The embedding model memory also searches by meaning with: by default the embedded
    /// all-MiniLM-L6-v2 (fetched in the background the first time), or `"off"`.
    pub embeddings: EmbeddingsSetting,
    /// The least cosine similarity a past excerpt found by meaning needs, from −1 to 1 (the
    /// default suits all-MiniLM-L6-v2 and OpenAI's text-embedding-3 models).
    #[serde(deserialize_with = "similarity")]
    pub min_similarity: f32,
    /// Each agent's soul document (a markdown file put first in its every context, read again
    /// when it changes), by agent name: `default = "~/.exoclaw/soul.md"`.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub souls: BTreeMap<String, PathBuf>,
    /// Knowledge bases: folders (read recursively) and files of markdown or plain text, by agent
    /// name, `"*"` for every agent's: `{ "*" = ["~/handbook"], coder = ["./docs"] }`. Indexed
    /// at start and kept in line with the files; each turn gets the passages matching it.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub knowledge: BTreeMap<String, Vec<PathBuf>>,
}

impl Default for MemoryConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            url: None,
            window: exoclaw_memory::DEFAULT_WINDOW,
            budget: None,
            model: None,
            facts: FactsSetting::Patterns,
            excerpts: exoclaw_memory::DEFAULT_EXCERPTS,
            embeddings: EmbeddingsSetting::default(),
            min_similarity: exoclaw_memory::rank::DEFAULT_MIN_SIMILARITY,
            souls: BTreeMap::new(),
            knowledge: BTreeMap::new(),
        }
    }
}

/// A cosine similarity: a number from −1 to 1.
fn similarity<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<f32, D::Error> {
    let value = f32::deserialize(deserializer)?;
    match (-1.0..=1.0).contains(&value) {
        true => Ok(value),
        false => Err(serde::de::Error::custom(format!(
            "min_similarity = {value} is no cosine similarity: give a number from -1 to 1 (the default is {})",
            exoclaw_memory::rank::DEFAULT_MIN_SIMILARITY
        ))),
    }
}

/// `[memory] embeddings`: the embedding model memory searches by meaning with, or none.
/// Written as a string: `"provider/model"` or `"off"`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum EmbeddingsSetting {
    /// `"off"`: memory is searched by its words alone.
    Off,
    /// An embedding model, `provider/model` as a chat model is named: the default
    /// [`EmbeddingsSetting::DEFAULT_MODEL`], or a provider's (`openai/text-embedding-3-small`).
    Model(String),
}

impl EmbeddingsSetting {
    /// The default: the embedded all-MiniLM-L6-v2, which needs no key and no server.
    pub const DEFAULT_MODEL: &'static str = "local/all-MiniLM-L6-v2";

    /// The model, split into its provider instance and its name there; `None` when off.
    pub fn model(&self) -> Option<(&str, &str)> {
        match self {
            EmbeddingsSetting::Off => None,
            EmbeddingsSetting::Model(model) => model.split_once('/'),
        }
    }
}

impl Default for EmbeddingsSetting {
    fn default() -> Self {
        EmbeddingsSetting::Model(Self::DEFAULT_MODEL.to_owned())
    }
}

impl TryFrom<String> for EmbeddingsSetting {
    type Error = String;

    fn try_from(text: String) -> Result<Self, String> {
        let trimmed = text.trim();
        if trimmed.eq_ignore_ascii_case("off") {
            return Ok(EmbeddingsSetting::Off);
        }
        match trimmed.split_once('/') {
            Some((provider, model)) if !provider.is_empty() && !model.is_empty() => {
                Ok(EmbeddingsSetting::Model(trimmed.to_owned()))
            }
            _ => Err(format!(
                "`embeddings = {text:?}` names no embedding model: write `provider/model` (the default is \
                 `{}`; `openai/text-embedding-3-small`, …) or `\"off\"` for full-text search alone",
                Self::DEFAULT_MODEL
            )),
        }
    }
}

impl From<EmbeddingsSetting> for String {
    fn from(setting: EmbeddingsSetting) -> String {
        match setting {
            EmbeddingsSetting::Off => "off".to_owned(),
            EmbeddingsSetting::Model(model) => model,
        }
    }
}
