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
    /// The embedding model for semantic search, `provider/model` (`local/all-MiniLM-L6-v2`,
    /// `openai/text-embedding-3-small`); unset: full-text search only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub embeddings: Option<String>,
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
            embeddings: None,
            souls: BTreeMap::new(),
            knowledge: BTreeMap::new(),
        }
    }
}
