//! The agents a gateway serves: each a name, a description and the [`AgentRunner`] that runs its
//! turns. The `default` agent answers whatever no binding routes elsewhere.

use exoclaw_core::AgentRunner;
use std::collections::BTreeMap;
use std::sync::Arc;

/// The name of the agent that answers when no binding matches.
pub const DEFAULT_AGENT: &str = "default";

/// One agent.
#[derive(Debug, Clone)]
pub struct AgentEntry {
    /// Its name, as bindings and `chat.send` name it.
    pub name: String,
    /// What it is for, as `agents.list` shows it.
    pub description: Option<String>,
    /// Runs its turns (model, system prompt, tools, permissions, limits, metering).
    pub runner: Arc<AgentRunner>,
}

/// The agents, by name.
#[derive(Debug, Clone, Default)]
pub struct Agents {
    entries: BTreeMap<String, AgentEntry>,
}

impl Agents {
    /// No agents: the gateway serves `/v1` only, and `chat.send` is refused.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds (or replaces) an agent.
    pub fn with(mut self, entry: AgentEntry) -> Self {
        self.entries.insert(entry.name.clone(), entry);
        self
    }

    /// The agent called `name`.
    pub fn get(&self, name: &str) -> Option<&AgentEntry> {
        self.entries.get(name)
    }

    /// Every agent, by name.
    pub fn iter(&self) -> impl Iterator<Item = &AgentEntry> {
        self.entries.values()
    }

    /// The agents' names, sorted.
    pub fn names(&self) -> Vec<String> {
        self.entries.keys().cloned().collect()
    }

    /// How many there are.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}
