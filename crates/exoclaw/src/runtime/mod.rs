//! [`Runtime`]: the one object every front end submits turns to.
//!
//! It owns the configuration, the store, metering and budgets, one lazily opened router over
//! every provider ([`Models`]), the agents (the default agent and every `[agents.NAME]`), the
//! tools, the bindings and the per-session queues. [`Runtime::submit`] (from
//! [`exoclaw_core::AgentRuntime`]) runs a turn from input to commit: route → the session's queue
//! and its cross-process lock → an interrupted turn of the session is finished first → context
//! assembly → the agent loop (budgets reserved and settled per model call; hooks; the run
//! checkpointed after every step) → commit (messages and usage in one transaction) → after-turn
//! work in the background.
//!
//! ```no_run
//! use exoclaw::runtime::Runtime;
//! use exoclaw::exoclaw_core::{AgentRuntime, Target, TurnInput};
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let loaded = exoclaw::Config::load(None)?;
//! let store = exoclaw::exoclaw_store::Store::open(&loaded.storage_url()).await?;
//! let runtime = Runtime::builder().config(loaded.config).store(store).build().await?;
//! let turn = runtime.submit(Target::New { agent: None }, TurnInput::message("Hello!"))?;
//! let report = turn.finish(&|event| println!("{event:?}")).await?;
//! println!("{}", report.text());
//! # Ok(()) }
//! ```

mod agents;
mod builder;
pub mod channels;
mod mcp;
pub mod memory;
pub mod plugins;
pub use mcp::start_mcp_servers;
mod models;
pub mod sandbox;
pub mod skills;
pub mod ssh;
mod tokens;
mod turn;

pub use agents::Agent;
pub use agents::{AgentError, AgentSpec, CHAT_PROMPT, LOCAL_PROMPT, PromptCost, TOOLS_PROMPT, unattended};
pub use builder::{
    DEFAULT_SESSION_QUEUE, NoConfig, NoStore, RuntimeBuilder, WithConfig, WithStore, bindings,
};
pub use models::{LazyProvider, Models, Unopened};

use crate::config::{Config, ConfigError};
use crate::models::OpenError;
use async_trait::async_trait;
use exoclaw_core::runtime::{AfterTurn, AgentSummary, Route, SessionQueues, Target, resolve_target};
use exoclaw_core::{
    AgentRunner, AgentRuntime, Approver, Bindings, ContextAssembler, Metering, SessionStore, StoreError,
    ToolRegistry, TurnError, TurnHandle, TurnInput,
};
use exoclaw_local::fetch::Progress;
use exoclaw_store::Store;
use exoclaw_types::SessionId;
use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};
use tokio_util::sync::CancellationToken;

/// Sessions the memory sweep at start looks at, the most recently active first.
const SWEPT_SESSIONS: u32 = 200;

/// How recently a session must have been active for the start sweep to archive it.
const SWEPT_ARCHIVAL_HOURS: i64 = 24;

/// The smallest context budget a turn gets, whatever its model says.
const MIN_CONTEXT_BUDGET: usize = 256;

/// The default agent's name.
const DEFAULT_AGENT_NAME: &str = exoclaw_core::DEFAULT_AGENT;

/// Why a runtime could not be built or changed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RuntimeError {
    /// The configuration does not fit together (routes, bindings).
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// An agent could not be built.
    #[error(transparent)]
    Agent(#[from] AgentError),
    /// A binding names an agent that is not configured.
    #[error(
        "bindings[{index}] names the agent `{agent}`, which is not configured; add [agents.{agent}] or use one of: {known}"
    )]
    UnknownBindingAgent {
        /// The binding's index.
        index: usize,
        /// The agent it names.
        agent: String,
        /// The agents there are.
        known: String,
    },
    /// The long-term memory store (`[memory] url`) could not be opened.
    #[error(
        "cannot open the long-term memory store: {0}; check [memory] url, or remove it to keep memory in the sessions' database"
    )]
    Memory(StoreError),
    /// The store could not be read (the usage ledger, for the budgets).
    #[error("cannot read the usage ledger for the budgets: {0}")]
    Store(#[from] StoreError),
    /// An `[mcp.NAME]` table does not say how to reach its server.
    #[error(transparent)]
    Mcp(#[from] exoclaw_mcp::McpError),
}

/// The audit sink every agent records to: entries batched to `log` on `tasks` (so
/// [`Runtime::settle`] writes them out), resources redacted with `[hooks] redact` too.
pub(crate) fn audit_sink(
    config: &Config,
    log: Arc<dyn exoclaw_core::AuditLog>,
    tasks: tokio_util::task::TaskTracker,
) -> Arc<dyn exoclaw_core::AuditSink> {
    let mut audit = exoclaw_core::BufferedAudit::new(log, tasks);
    if !config.hooks.redact.is_empty()
        && let Ok(redact) = exoclaw_core::RedactHook::new(&config.hooks.redact)
    {
        audit = audit.with_redaction(redact);
    }
    Arc::new(audit)
}

/// What hooks, monitors and after-turn work a runtime adds to every agent and turn.
#[derive(Clone, Default)]
pub(crate) struct Extensions {
    pub hooks: Vec<Arc<dyn exoclaw_core::Hook>>,
    pub monitors: Vec<Arc<dyn exoclaw_core::Monitor>>,
    pub after_turn: Vec<Arc<dyn AfterTurn>>,
}

impl Extensions {
    /// `runner` with every hook and monitor.
    pub(crate) fn apply(&self, mut runner: AgentRunner) -> AgentRunner {
        for hook in &self.hooks {
            runner = runner.with_hook(Arc::clone(hook));
        }
        for monitor in &self.monitors {
            runner = runner.with_monitor(Arc::clone(monitor));
        }
        runner
    }
}

/// The runtime. Cheap to clone: clones share everything.
#[derive(Clone)]
pub struct Runtime {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub config: Arc<Config>,
    pub store: Store,
    pub metering: Arc<Metering>,
    pub models: Arc<Models>,
    pub tools: ToolRegistry,
    pub approver: Arc<dyn Approver>,
    pub extensions: Extensions,
    pub assembler: Arc<dyn ContextAssembler>,
    /// The layered memory, when `[memory]` is on and no other assembler was given.
    pub memory: Option<Arc<exoclaw_memory::Memory>>,
    /// The token counter of each model, for the context budget: the memory's, and what system
    /// prompts are counted with.
    pub counters: Arc<exoclaw_memory::Counters>,
    /// The `[mcp.NAME]` servers, started in the background, when any is configured.
    pub mcp: Option<Arc<exoclaw_mcp::McpServers>>,
    /// The WASM plugins installed in the home, loaded, when there are any.
    pub plugins: Option<Arc<exoclaw_wasm::Plugins>>,
    /// exoclaw's home, when the builder was given one: skills and trusted folders are read there.
    pub home: Option<std::path::PathBuf>,
    /// Every permission scope but the workspaces' (read per agent), and the answers given.
    pub permissions: crate::config::PermissionScopes,
    /// Where every agent's permission decisions, answers and executed calls are recorded.
    pub audit: Arc<dyn exoclaw_core::AuditSink>,
    /// After-turn work, memory sweeps and audit writes running in the background.
    pub tasks: tokio_util::task::TaskTracker,
    pub agents: RwLock<BTreeMap<String, Arc<Agent>>>,
    pub bindings: RwLock<Arc<Bindings>>,
    pub queues: SessionQueues,
    /// Turns that may wait behind a running one in a session.
    pub session_queue: usize,
    /// Cancels every turn (the end of a shutdown's grace period).
    pub stop: CancellationToken,
    /// The approvals asked in the chats, shared by every chat channel (a press may reach another
    /// connection of the platform than the one that posted the prompt).
    pub chat_approvals: exoclaw_channels::Approvals,
}

impl std::fmt::Debug for Runtime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runtime")
            .field("store", &self.inner.store.location())
            .field("agents", &self.agent_names())
            .finish_non_exhaustive()
    }
}

fn read<T>(lock: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    lock.read().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn write<T>(lock: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    lock.write().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Runtime {
    /// Starts building a runtime; [`RuntimeBuilder::build`] exists once the configuration and
    /// the store are set.
    pub fn builder() -> RuntimeBuilder<NoConfig, NoStore> {
        RuntimeBuilder::new()
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.inner.config
    }

    /// The store: sessions, usage, virtual keys, run checkpoints, session locks.
    pub fn store(&self) -> &Store {
        &self.inner.store
    }

    /// Prices and budgets, shared by every agent.
    pub fn metering(&self) -> &Arc<Metering> {
        &self.inner.metering
    }

    /// The router and its providers.
    pub fn models(&self) -> &Arc<Models> {
        &self.inner.models
    }

    /// The approvals asked in the chats (`[channels] approvals`): every chat channel this runtime
    /// serves is given these, so a prompt's button works whichever connection its press comes by.
    pub fn chat_approvals(&self) -> &exoclaw_channels::Approvals {
        &self.inner.chat_approvals
    }

    /// The agent called `name`.
    pub fn agent(&self, name: &str) -> Option<Arc<Agent>> {
        read(&self.inner.agents).get(name).cloned()
    }

    /// The agents' names, sorted.
    pub fn agent_names(&self) -> Vec<String> {
        read(&self.inner.agents).keys().cloned().collect()
    }

    /// Adds an agent, or replaces the one with its name (turns already running keep the old one).
    pub fn set_agent(&self, spec: AgentSpec) -> Result<Arc<Agent>, RuntimeError> {
        let agent = Arc::new(self.build_agent(spec)?);
        write(&self.inner.agents).insert(agent.spec.name.clone(), Arc::clone(&agent));
        Ok(agent)
    }

    pub(crate) fn build_agent(&self, spec: AgentSpec) -> Result<Agent, AgentError> {
        let inner = &self.inner;
        let parts = agents::Parts {
            config: &inner.config,
            models: &inner.models,
            provider: Arc::clone(inner.models.router()) as Arc<dyn exoclaw_core::Provider>,
            tools: &inner.tools,
            approver: &inner.approver,
            permissions: &inner.permissions,
            audit: &inner.audit,
            metering: &inner.metering,
            hooks: &inner.extensions,
            home: inner.home.as_deref(),
            plugins: self.plugin_names(),
            counters: &inner.counters,
        };
        Agent::build(spec, &parts)
    }

    /// Opens the providers `agent`'s turns go to now, reporting the embedded model's download to
    /// `progress`, so a front end can show it and fail before the first turn.
    pub async fn prepare(&self, agent: &str, progress: Progress<'_>) -> Result<(), OpenError> {
        let Some(agent) = self.agent(agent) else { return Ok(()) };
        self.inner.models.prepare(&agent.chain, progress).await
    }

    /// The tools agents with tools are offered: the built-in ones, memory's, and the MCP
    /// servers' as they become ready.
    pub fn tools(&self) -> &ToolRegistry {
        &self.inner.tools
    }

    /// The `[mcp.NAME]` servers (their states, tools, resources and prompts), when any is
    /// configured and the runtime's tools were not given by [`RuntimeBuilder::tools`].
    pub fn mcp(&self) -> Option<&Arc<exoclaw_mcp::McpServers>> {
        self.inner.mcp.as_ref()
    }

    /// The names of the loaded tool plugins.
    pub fn plugin_names(&self) -> Vec<String> {
        self.inner.plugins.as_ref().map(|plugins| plugins.tools.keys().cloned().collect()).unwrap_or_default()
    }

    /// The WASM plugins installed in the home (their tools, channels, and those left out with
    /// the reason), when there are any and the runtime made its own tool registry.
    pub fn plugins(&self) -> Option<&Arc<exoclaw_wasm::Plugins>> {
        self.inner.plugins.as_ref()
    }

    /// The layered memory, when `[memory]` is on (and no other assembler was given).
    pub fn memory(&self) -> Option<&Arc<exoclaw_memory::Memory>> {
        self.inner.memory.as_ref()
    }

    /// The token counter of each model: what the context budget and the agents' system prompts
    /// are counted with ([`Counters::exact`](exoclaw_memory::Counters::exact) waits for a
    /// model's own tokenizer to be built; turns never wait and use the estimate until then).
    pub fn token_counters(&self) -> &Arc<exoclaw_memory::Counters> {
        &self.inner.counters
    }

    /// Waits for the background work started so far (after-turn indexing, fact extraction and
    /// archival; the memory sweep at start; audit entries not yet written), at most `limit`. Gives whether it all finished; work
    /// cut short is done again later, nothing is lost.
    pub async fn settle(&self, limit: std::time::Duration) -> bool {
        self.inner.tasks.close();
        let finished = tokio::time::timeout(limit, self.inner.tasks.wait()).await.is_ok();
        self.inner.tasks.reopen();
        finished
    }

    /// Starts, in the background, the memory's catch-up over recent sessions: indexing and
    /// archival a stopped or killed process left undone.
    fn sweep_memory(&self) {
        let Some(memory) = self.inner.memory.clone() else { return };
        let inner = Arc::clone(&self.inner);
        let default_model = self.agent(DEFAULT_AGENT_NAME).map(|a| a.model.clone()).unwrap_or_default();
        let window = memory.options().window as u64;
        self.inner.tasks.spawn(async move {
            let sessions = match inner.store.list_sessions(SWEPT_SESSIONS).await {
                Ok(sessions) => sessions,
                Err(e) => {
                    tracing::warn!(error = %e, "memory sweep: sessions cannot be listed");
                    return;
                }
            };
            let mut due = Vec::new();
            // Archival asks a model: only for sessions active lately (a turn cut off by a stop or
            // a crash), never for every old session at the first start after an upgrade. Older
            // ones are archived after their next turn.
            let recent = chrono::Utc::now() - chrono::Duration::hours(SWEPT_ARCHIVAL_HOURS);
            for session in sessions {
                // Cheap checks first: most sessions are indexed and archived already.
                let indexed = memory.store().indexed_messages(session.id).await.unwrap_or(0);
                let through = match memory.store().summary(session.id).await {
                    Ok(summary) => summary.map_or(0, |s| s.through),
                    Err(_) => 0,
                };
                let archive =
                    session.updated_at >= recent && session.message_count.saturating_sub(through) > window;
                if indexed < session.message_count || archive {
                    // A session without a key is the default agent's (the CLI's).
                    let agent = session
                        .key
                        .as_ref()
                        .map_or_else(|| DEFAULT_AGENT_NAME.to_owned(), |k| k.agent.clone());
                    due.push(exoclaw_memory::Unfinished {
                        session: session.id,
                        key: session.key,
                        agent,
                        model: session.model.unwrap_or_else(|| default_model.clone()),
                        archive,
                    });
                }
            }
            let archived = memory.sweep(&due).await;
            if !due.is_empty() {
                tracing::info!(
                    caught_up = due.len(),
                    archived,
                    "memory sweep caught up sessions left undone"
                );
            }
        });
    }

    /// Connects, in the background, the long-term memory store that did not answer at start
    /// (retrying with backoff until it does, or the runtime stops or is dropped); then catches
    /// memory up over recent sessions, as the sweep at start does.
    fn reconnect_memory(&self, reconnect: memory::Reconnect) {
        let weak = Arc::downgrade(&self.inner);
        let stop = self.inner.stop.clone();
        tokio::spawn(reconnect.run(stop, move |deferred, store| {
            let Some(inner) = weak.upgrade() else { return };
            let runtime = Runtime { inner };
            // Installed on a tracked task, so that whoever sees the store connected and waits
            // for the background work ([`Runtime::settle`]) waits for the catch-up too.
            let tasks = runtime.inner.tasks.clone();
            tasks.spawn(async move {
                deferred.install(store);
                runtime.sweep_memory();
            });
        }));
    }

    /// The token budget of `agent`'s turn contexts: its model's context window (or
    /// [`memory::DEFAULT_CONTEXT_WINDOW`]) less the answer's room and its system prompt and tools.
    pub(crate) fn context_budget_of(inner: &Inner, agent: &Agent) -> usize {
        let window = agent
            .chain
            .first()
            .and_then(|target| inner.models.context_window(target))
            .map_or(memory::DEFAULT_CONTEXT_WINDOW, |w| w as usize);
        let answer =
            agent.spec.params.max_tokens.map_or(memory::DEFAULT_ANSWER_ROOM.min(window / 4), |m| m as usize);
        window
            .saturating_sub(answer)
            .saturating_sub(agent.prompt_tokens(&inner.counters))
            .max(MIN_CONTEXT_BUDGET)
    }

    /// Cancels every running turn (their partial answers are stored) and refuses new ones.
    pub fn stop(&self) {
        self.inner.stop.cancel();
    }

    /// Sessions with a turn that never committed (the process stopped mid-turn).
    pub async fn interrupted_sessions(&self) -> Result<Vec<SessionId>, StoreError> {
        exoclaw_core::RunStore::interrupted_sessions(&self.inner.store).await
    }
}

#[async_trait]
impl AgentRuntime for Runtime {
    fn route(&self, target: &Target) -> Result<Route, TurnError> {
        let bindings = self.bindings();
        let agents = read(&self.inner.agents);
        resolve_target(
            target,
            &bindings,
            |name| agents.get(name).map(|a| a.model.clone()),
            || agents.keys().cloned().collect(),
        )
    }

    fn submit_routed(&self, route: Route, input: TurnInput) -> Result<TurnHandle, TurnError> {
        if self.inner.stop.is_cancelled() {
            return Err(TurnError::ShuttingDown);
        }
        let agent = self.agent(&route.agent).ok_or_else(|| TurnError::NoAgent {
            name: route.agent.clone(),
            why: "it was removed".to_owned(),
            known: self.agent_names(),
        })?;
        let ticket = self.inner.queues.enter(&route.queue_key(), self.inner.session_queue)?;
        Ok(turn::start(Arc::clone(&self.inner), agent, route, input, ticket))
    }

    fn agents(&self) -> Vec<AgentSummary> {
        read(&self.inner.agents)
            .values()
            .map(|a| AgentSummary {
                name: a.spec.name.clone(),
                description: a.spec.description.clone(),
                model: a.model.clone(),
                tools: a.runner.tools().specs(),
            })
            .collect()
    }

    fn bindings(&self) -> Arc<Bindings> {
        Arc::clone(&read(&self.inner.bindings))
    }

    fn reload_bindings(&self, bindings: Bindings) {
        *write(&self.inner.bindings) = Arc::new(bindings);
    }

    fn queues(&self) -> &SessionQueues {
        &self.inner.queues
    }

    async fn clear_session(&self, session: SessionId) -> Result<u64, TurnError> {
        let store = &self.inner.store;
        let context = "cannot clear the session";
        let info = store
            .session(session)
            .await
            .map_err(|e| TurnError::store(context, e, Some(session)))?
            .ok_or(TurnError::SessionNotFound(session))?;
        let queue = info.key.as_ref().map_or_else(|| session.to_string(), ToString::to_string);
        let _held = self.inner.queues.enter(&queue, 0)?;
        let _lease = exoclaw_core::SessionLocks::lock_session(store, session, false)
            .await
            .map_err(|e| TurnError::store(context, e, Some(session)))?;
        store.clear_session(session).await.map_err(|e| TurnError::store(context, e, Some(session)))?;
        // The messages' positions start over: so does what memory derived from them.
        if let Some(memory) = &self.inner.memory
            && let Err(e) = memory.store().reset_session(session).await
        {
            tracing::warn!(%session, error = %e, "the session's memory could not be reset");
        }
        Ok(info.message_count)
    }
}
