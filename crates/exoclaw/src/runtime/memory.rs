//! The runtime's layered memory: [`open`] builds the [`Memory`] that `[memory]` describes on the
//! runtime's store and router, and [`LazyEmbedder`] opens its embedding model without holding
//! up a turn.

use crate::config::{Config, FactsSetting};
use exoclaw_core::{MemoryStore, Provider, StoreError};
use exoclaw_memory::{FactsMode, KnowledgeBases, Memory, MemoryOptions};
use exoclaw_store::{ArcadeDbMemory, Store};
use exoclaw_types::SessionId;
use std::path::PathBuf;
use std::sync::Arc;

mod deferred;
mod embedder;

pub use deferred::DeferredStore;
pub use embedder::{LazyEmbedder, RETRY_AFTER};

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
    Ok(open(config, open_store(config, sessions).await?, sessions, router, Opening::OnFirstUse))
}

/// The memory `config` describes, as a runtime that starts now builds it: like [`open_memory`],
/// except that a database server named by `[memory] url` (`postgres://`, `arcadedb://`) that does
/// not answer is no error. A [`DeferredStore`] stands in for it (turns go on with their recent
/// messages and a warning) and `reconnect` is set to the connection to try again in the
/// background. A malformed URL, or one of an unsupported kind, still is an error.
pub(crate) async fn start_memory(
    config: &Arc<Config>,
    store: &Store,
    router: Arc<dyn Provider>,
    reconnect: &mut Option<Reconnect>,
) -> Result<Memory, StoreError> {
    let memory_store = match memory_url(config) {
        None => Arc::new(store.clone()) as Arc<dyn MemoryStore>,
        Some(url) => {
            let server = match url.starts_with("arcadedb://") {
                true => ArcadeDbMemory::check_url(url).map(|()| true)?,
                false => Store::check_url(url)?,
            };
            match (server, connect(url).await) {
                (_, Ok(connected)) => connected,
                (false, Err(e)) => return Err(e),
                (true, Err(e)) => {
                    let location = exoclaw_store::redact_url(url);
                    tracing::warn!(
                        url = %location,
                        error = %e,
                        "the long-term memory store cannot be reached; turns go on with their recent \
                         messages until it answers"
                    );
                    let deferred = Arc::new(DeferredStore::new(location, &e));
                    *reconnect = Some(Reconnect { deferred: Arc::clone(&deferred), url: url.to_owned() });
                    deferred
                }
            }
        }
    };
    Ok(open(config, memory_store, store, router, Opening::Now))
}

/// `[memory] url`, when it names a store of its own.
fn memory_url(config: &Config) -> Option<&str> {
    config.memory.url.as_deref().map(str::trim).filter(|u| !u.is_empty())
}

/// Opens the memory store at `url` (`arcadedb://`, or what [`Store::open`] takes).
async fn connect(url: &str) -> Result<Arc<dyn MemoryStore>, StoreError> {
    match url.starts_with("arcadedb://") {
        true => Ok(Arc::new(ArcadeDbMemory::connect(url).await?)),
        false => Ok(Arc::new(Store::open(url).await?)),
    }
}

/// A memory store that did not answer at start, to connect to once it does.
pub(crate) struct Reconnect {
    /// What stands in for it meanwhile.
    pub(crate) deferred: Arc<DeferredStore>,
    /// Its URL (with its password: never shown).
    url: String,
}

impl Reconnect {
    /// Tries to connect with backoff until it succeeds or `stop` is cancelled; then gives the
    /// store to `connected`.
    pub(crate) async fn run(
        self,
        stop: tokio_util::sync::CancellationToken,
        connected: impl FnOnce(Arc<DeferredStore>, Arc<dyn MemoryStore>),
    ) {
        let Self { deferred, url } = self;
        let handle = Arc::clone(&deferred);
        deferred::connect_when_up(deferred, || connect(&url), stop, |store| connected(handle, store)).await;
    }
}

/// When memory's embedding model is opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Opening {
    /// Now, in the background: a runtime that starts has its first turn coming.
    Now,
    /// When something is first embedded (`exoclaw memory forget` embeds nothing).
    OnFirstUse,
}

/// The memory `config` describes, in `memory_store`, over the sessions in `store`, asking
/// `router` for summaries and facts.
fn open(
    config: &Arc<Config>,
    memory_store: Arc<dyn MemoryStore>,
    store: &Store,
    router: Arc<dyn Provider>,
    opening: Opening,
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
        ranking: exoclaw_memory::Ranking {
            min_similarity: settings.min_similarity,
            ..exoclaw_memory::Ranking::default()
        },
    };
    let mut memory = Memory::new(memory_store, Arc::new(store.clone()), router, options);
    if let Some((provider, name)) = settings.embeddings.model() {
        let embedder = LazyEmbedder::new(Arc::clone(config), provider, name);
        if opening == Opening::Now {
            embedder.prepare();
        }
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
