//! The runtime's layered memory: [`open`] builds the [`Memory`] that `[memory]` describes on the
//! runtime's store and router, and [`LazyEmbedder`] opens its embedding model on first use.

use crate::config::{Config, FactsSetting};
use crate::embedders::Embedders;
use async_trait::async_trait;
use exoclaw_core::{Embedder, MemoryStore, Provider, ProviderError, StoreError};
use exoclaw_memory::{FactsMode, KnowledgeBases, Memory, MemoryOptions};
use exoclaw_store::{ArcadeDbMemory, Store};
use exoclaw_types::{EmbeddingRequest, Embeddings, SessionId};
use std::path::PathBuf;
use std::sync::Arc;

/// Context size assumed for a model whose provider does not say (cloud APIs do not): small
/// enough for any current chat model, large enough for a long recent window.
pub const DEFAULT_CONTEXT_WINDOW: usize = 32_768;

/// Tokens kept for the answer when the agent sets no `max_tokens`.
pub const DEFAULT_ANSWER_ROOM: usize = 4_096;

/// The long-term memory store `[memory] url` names, or `sessions` (the sessions' database).
pub async fn open_store(config: &Config, sessions: &Store) -> Result<Arc<dyn MemoryStore>, StoreError> {
    let Some(url) = config.memory.url.as_deref().map(str::trim).filter(|u| !u.is_empty()) else {
        return Ok(Arc::new(sessions.clone()));
    };
    match url.starts_with("arcadedb://") {
        true => Ok(Arc::new(ArcadeDbMemory::connect(url).await?)),
        false => Ok(Arc::new(Store::open(url).await?)),
    }
}

/// Forgets what memory derived from `session`'s messages (its entries, summary and indexing
/// mark) after they were cleared or deleted, so that the session's memory starts over; facts
/// learned from it stay. Does nothing when memory is off.
pub async fn reset_session(config: &Config, sessions: &Store, session: SessionId) -> Result<(), StoreError> {
    if !config.memory.enabled {
        return Ok(());
    }
    open_store(config, sessions).await?.reset_session(session).await
}

/// The memory `config` describes: on its long-term store ([`open_store`]), over the sessions in
/// `sessions`, asking `router` for summaries and facts — as the runtime builds it, for a front end
/// that works on memory without running turns (`exoclaw memory`).
pub async fn open_memory(
    config: &Arc<Config>,
    sessions: &Store,
    router: Arc<dyn Provider>,
) -> Result<Memory, StoreError> {
    Ok(open(config, open_store(config, sessions).await?, sessions, router))
}

/// The memory `config` describes, in `memory_store`, over the sessions in `store`, asking
/// `router` for summaries and facts.
fn open(
    config: &Arc<Config>,
    memory_store: Arc<dyn MemoryStore>,
    store: &Store,
    router: Arc<dyn Provider>,
) -> Memory {
    let settings = &config.memory;
    let facts = match settings.facts {
        FactsSetting::Model => FactsMode::Model,
        FactsSetting::Patterns => FactsMode::Patterns,
        FactsSetting::Off => FactsMode::Off,
    };
    // The embedded model is asked for nothing but the answer.
    let patterns_for = match settings.facts {
        FactsSetting::Model => {
            config.available_provider_names().into_iter().filter(|name| config.is_local(name)).collect()
        }
        _ => Vec::new(),
    };
    let options = MemoryOptions {
        window: settings.window.max(2),
        budget: settings.budget,
        model: settings.model.clone(),
        facts,
        patterns_for,
        excerpts: settings.excerpts,
        ..MemoryOptions::default()
    };
    let mut memory = Memory::new(memory_store, Arc::new(store.clone()), router, options);
    if let Some(model) = &settings.embeddings {
        let (provider, name) = model.split_once('/').unwrap_or((model.as_str(), ""));
        let embedder = LazyEmbedder {
            embedders: Embedders::new(Arc::clone(config)),
            provider: provider.to_owned(),
            model: name.to_owned(),
        };
        memory = memory.with_embedder(Arc::new(embedder), name);
    }
    let home = crate::config::load::user_home(&crate::config::load::process_env);
    let expand = |path: &PathBuf| match (path.strip_prefix("~"), &home) {
        (Ok(rest), Some(home)) => home.join(rest),
        _ => path.clone(),
    };
    for (agent, path) in &settings.souls {
        memory = memory.with_soul(agent.clone(), expand(path));
    }
    let mut knowledge = KnowledgeBases::default();
    for (agent, paths) in &settings.knowledge {
        for path in paths {
            knowledge.add(agent.clone(), expand(path));
        }
    }
    if !knowledge.is_empty() {
        memory = memory.with_knowledge(knowledge);
    }
    memory
}

/// An embedder opened on its first use (the embedded MiniLM loads, or downloads, only then).
#[derive(Debug)]
pub struct LazyEmbedder {
    embedders: Embedders,
    provider: String,
    model: String,
}

#[async_trait]
impl Embedder for LazyEmbedder {
    async fn embed(&self, request: EmbeddingRequest) -> Result<Embeddings, ProviderError> {
        let opened = self.embedders.open(&self.provider, &self.model).await.map_err(|e| {
            ProviderError::new(exoclaw_core::ErrorKind::Connect, &self.provider, e.to_string())
        })?;
        opened.embedder.embed(request).await
    }
}
