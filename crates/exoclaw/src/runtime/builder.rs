//! [`RuntimeBuilder`]: the configuration and the store are required — `build` exists only once
//! both are set — and everything else has a default.

use super::agents::{AgentSpec, unattended};
use super::{Extensions, Inner, Models, Runtime, RuntimeError};
use crate::config::{AgentProfile, Config, DEFAULT_AGENT, PermissionScopes};
use exoclaw_core::runtime::{AfterTurn, HistoryAssembler, SessionQueues};
use exoclaw_core::{
    Approver, AuditLog, Bindings, ContextAssembler, Hook, Monitor, Provider, SystemClock, ToolRegistry,
    UsageStore,
};
use exoclaw_store::Store;
use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};
use tokio_util::sync::CancellationToken;

/// The configuration is not set yet.
#[derive(Debug, Default)]
pub struct NoConfig;
/// The configuration is set.
#[derive(Debug)]
pub struct WithConfig(Config);
/// The store is not set yet.
#[derive(Debug, Default)]
pub struct NoStore;
/// The store is set.
#[derive(Debug)]
pub struct WithStore(Store);

/// A change to the default agent's spec.
type ChangeSpec = Box<dyn FnOnce(&mut AgentSpec) + Send>;

/// A change to every configured agent's spec.
type ChangeEvery = Box<dyn Fn(&mut AgentSpec) + Send>;

/// Builds a [`Runtime`]. `C` and `S` track whether the configuration and the store are set.
pub struct RuntimeBuilder<C, S> {
    config: C,
    store: S,
    parts: Optional,
}

/// Everything with a default.
struct Optional {
    tools: Option<ToolRegistry>,
    approver: Option<Arc<dyn Approver>>,
    assembler: Option<Arc<dyn ContextAssembler>>,
    extensions: Extensions,
    default_agent: Option<ChangeSpec>,
    every_agent: Option<ChangeEvery>,
    session_queue: usize,
    providers: Vec<Arc<dyn Provider>>,
    /// exoclaw's home: answers kept "always", trusted folders (see [`RuntimeBuilder::home`]).
    home: Option<std::path::PathBuf>,
    audit: Option<Arc<dyn AuditLog>>,
}

impl<C, S> std::fmt::Debug for RuntimeBuilder<C, S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RuntimeBuilder").finish_non_exhaustive()
    }
}

/// Turns that may wait behind a running one in a session when none is set.
pub const DEFAULT_SESSION_QUEUE: usize = 8;

impl RuntimeBuilder<NoConfig, NoStore> {
    pub(crate) fn new() -> Self {
        let parts = Optional {
            tools: None,
            approver: None,
            assembler: None,
            extensions: Extensions::default(),
            default_agent: None,
            every_agent: None,
            session_queue: DEFAULT_SESSION_QUEUE,
            providers: Vec::new(),
            home: None,
            audit: None,
        };
        Self { config: NoConfig, store: NoStore, parts }
    }
}

impl<S> RuntimeBuilder<NoConfig, S> {
    /// The configuration: providers, routing, agents, bindings, budgets, permissions.
    pub fn config(self, config: Config) -> RuntimeBuilder<WithConfig, S> {
        RuntimeBuilder { config: WithConfig(config), store: self.store, parts: self.parts }
    }
}

impl<C> RuntimeBuilder<C, NoStore> {
    /// The store sessions, usage and run checkpoints go to (see `exoclaw_store::Store::open`).
    pub fn store(self, store: Store) -> RuntimeBuilder<C, WithStore> {
        RuntimeBuilder { config: self.config, store: WithStore(store), parts: self.parts }
    }
}

impl<C, S> RuntimeBuilder<C, S> {
    /// The tools agents with tools are offered (default: the built-in tools).
    pub fn tools(mut self, tools: ToolRegistry) -> Self {
        self.parts.tools = Some(tools);
        self
    }

    /// Who is asked when a tool call needs approval (default: nobody, so such calls are refused
    /// with a result that tells the model so).
    pub fn approver(mut self, approver: Arc<dyn Approver>) -> Self {
        self.parts.approver = Some(approver);
        self
    }

    /// What a turn starts from (default: the session's stored messages).
    pub fn assembler(mut self, assembler: Arc<dyn ContextAssembler>) -> Self {
        self.parts.assembler = Some(assembler);
        self
    }

    /// Adds a hook every agent runs (after those from `[hooks]`).
    pub fn hook(mut self, hook: Arc<dyn Hook>) -> Self {
        self.parts.extensions.hooks.push(hook);
        self
    }

    /// Adds a monitor that sees every event of every turn.
    pub fn monitor(mut self, monitor: Arc<dyn Monitor>) -> Self {
        self.parts.extensions.monitors.push(monitor);
        self
    }

    /// Adds work to run in the background after every stored turn.
    pub fn after_turn(mut self, work: Arc<dyn AfterTurn>) -> Self {
        self.parts.extensions.after_turn.push(work);
        self
    }

    /// Changes the default agent's spec (the CLI's `--model`, `--system`, `--tools`…).
    pub fn default_agent(mut self, change: impl FnOnce(&mut AgentSpec) + Send + 'static) -> Self {
        self.parts.default_agent = Some(Box::new(change));
        self
    }

    /// Changes every configured agent's spec, the default one first (before
    /// [`RuntimeBuilder::default_agent`]'s change): a front end's policy, such as the gateway's
    /// tools being off unless a profile turns them on.
    pub fn every_agent(mut self, change: impl Fn(&mut AgentSpec) + Send + 'static) -> Self {
        self.parts.every_agent = Some(Box::new(change));
        self
    }

    /// Adds a provider of your own (any [`Provider`]), routed by its name like a configured one:
    /// `model = "NAME/MODEL"` or an agent's `model`. It replaces a configured provider of the
    /// same name.
    pub fn provider(mut self, provider: Arc<dyn Provider>) -> Self {
        self.parts.providers.push(provider);
        self
    }

    /// exoclaw's home (`LoadedConfig::home`): answers "always" to approval prompts are kept in its
    /// `permissions.toml` and read back at start, and a workspace's `.exoclaw/permissions.toml` may
    /// widen (allow) once the folder is trusted in its `trusted.toml`; agents with tools are offered
    /// the skills in its `skills` folder, and a trusted workspace's `.exoclaw/skills`. Default: none
    /// — answers hold for the session only, workspaces may only tighten, and there are no skills.
    pub fn home(mut self, home: impl Into<std::path::PathBuf>) -> Self {
        self.parts.home = Some(home.into());
        self
    }

    /// Where the audit log of permission decisions, answers and executed calls goes (default: the
    /// store). Entries are written in the background; [`Runtime::settle`] waits for them.
    pub fn audit_log(mut self, log: Arc<dyn AuditLog>) -> Self {
        self.parts.audit = Some(log);
        self
    }

    /// Turns that may wait behind a running one in a session before `session_busy` (default 8).
    pub fn session_queue(mut self, bound: usize) -> Self {
        self.parts.session_queue = bound;
        self
    }
}

impl RuntimeBuilder<WithConfig, WithStore> {
    /// The runtime: budgets restored from the usage ledger, every agent built (nothing opened:
    /// providers open on their first request, or with [`Runtime::prepare`]).
    pub async fn build(self) -> Result<Runtime, RuntimeError> {
        let RuntimeBuilder { config: WithConfig(config), store: WithStore(store), parts } = self;
        let Optional {
            tools,
            approver,
            assembler,
            mut extensions,
            default_agent,
            every_agent,
            session_queue,
            providers,
            home,
            audit,
        } = parts;
        let permissions = match &home {
            Some(home) => PermissionScopes::with_home(home)?,
            None => PermissionScopes::in_memory(),
        };
        let tasks = tokio_util::task::TaskTracker::new();
        let audit = super::audit_sink(
            &config,
            audit.unwrap_or_else(|| Arc::new(store.clone()) as Arc<dyn AuditLog>),
            tasks.clone(),
        );
        let past = match config.usage_history_start(chrono::Utc::now()) {
            Some(since) => store.usage_since(since).await?,
            None => Vec::new(),
        };
        let metering = Arc::new(config.metering(Arc::new(SystemClock), &past));
        let bindings = bindings(&config)?;
        let mut hooks: Vec<Arc<dyn Hook>> = Vec::new(); // PENDING-CONFIG-HOOKS
        hooks.append(&mut extensions.hooks);
        extensions.hooks = hooks;
        // A memory store that does not answer at start is connected to later (see `start_memory`).
        let mut reconnect = None;
        let config = Arc::new(config);
        let models = Arc::new(Models::new(Arc::clone(&config), providers)?);
        let router = Arc::clone(models.router()) as Arc<dyn Provider>;
        let counters = Arc::new(super::tokens::counters(&config));
        let memory = match assembler.is_none() && config.memory.enabled {
            true => {
                let memory = super::memory::start_memory(&config, &store, router, &mut reconnect)
                    .await
                    .map_err(RuntimeError::Memory)?;
                // Its summaries and facts are metered like the turns' calls, in the same ledger.
                let memory = memory
                    .with_counters(Arc::clone(&counters))
                    .with_metering(Arc::clone(&metering), Arc::new(store.clone()));
                Some(Arc::new(memory))
            }
            false => None,
        };
        if let Some(memory) = &memory {
            extensions.after_turn.push(Arc::clone(memory) as Arc<dyn AfterTurn>);
        }
        // The memory tools and the MCP servers' join the registry agents with tools are offered;
        // tools given to the builder are taken as they are.
        let mcp = match (&tools, config.mcp.is_empty()) {
            (None, false) => Some(Arc::new(super::mcp::start_mcp_servers(&config)?)),
            _ => None,
        };
        // Plugins are compiled (or read from the compile cache) on a blocking thread.
        let plugins = match (&tools, &home) {
            (None, Some(home)) => {
                let (config, home) = (config.clone(), home.clone());
                tokio::task::spawn_blocking(move || super::plugins::load_plugins(&config, &home))
                    .await
                    .ok()
                    .flatten()
                    .map(Arc::new)
            }
            _ => None,
        };
        let mut tools = tools.unwrap_or_else(|| {
            let mut builtin = exoclaw_tools::builtin_tools();
            let shell = exoclaw_tools::Shell::default().with_sandbox(super::sandbox::sandbox_policy(&config));
            builtin.register(Arc::new(shell));
            super::ssh::register_ssh_tools(&config, &mut builtin);
            builtin
        });
        if let Some(memory) = &memory {
            for tool in exoclaw_memory::tools::memory_tools(memory) {
                tools.register(tool);
            }
        }
        for plugin_tools in plugins.iter().flat_map(|plugins| plugins.tools.values()) {
            for tool in plugin_tools {
                tools.register(Arc::clone(tool) as Arc<dyn exoclaw_core::Tool>);
            }
        }
        if let Some(mcp) = &mcp {
            tools.register_source(Arc::clone(mcp) as Arc<dyn exoclaw_core::ToolSource>);
        }
        let assembler = match (assembler, &memory) {
            (Some(assembler), _) => assembler,
            (None, Some(memory)) => Arc::clone(memory) as Arc<dyn ContextAssembler>,
            (None, None) => Arc::new(HistoryAssembler::new(Arc::new(store.clone()))),
        };
        let runtime = Runtime {
            inner: Arc::new(Inner {
                config: Arc::clone(&config),
                store,
                metering,
                models,
                tools,
                approver: approver.unwrap_or_else(unattended),
                extensions,
                assembler,
                memory,
                counters,
                mcp,
                plugins,
                permissions,
                home,
                audit,
                tasks,
                agents: RwLock::new(BTreeMap::new()),
                bindings: RwLock::new(Arc::new(bindings)),
                queues: SessionQueues::default(),
                session_queue,
                stop: CancellationToken::new(),
                chat_approvals: exoclaw_channels::Approvals::from_config(&config.channels),
            }),
        };
        let every = |mut spec: AgentSpec| {
            if let Some(change) = &every_agent {
                change(&mut spec);
            }
            spec
        };
        let mut default = every(AgentSpec::from_profile(&config, DEFAULT_AGENT, &AgentProfile::default()));
        if let Some(change) = default_agent {
            change(&mut default);
        }
        runtime.set_agent(default)?;
        for (name, profile) in &config.agents {
            runtime.set_agent(every(AgentSpec::from_profile(&config, name, profile)))?;
        }
        match reconnect {
            // Caught up once the store answers: sweeping now would only fail for every session.
            Some(reconnect) => runtime.reconnect_memory(reconnect),
            None => runtime.sweep_memory(),
        }
        Ok(runtime)
    }
}

/// `[[bindings]]`, every agent they name checked against the configured agents.
pub fn bindings(config: &Config) -> Result<Bindings, RuntimeError> {
    for (index, binding) in config.bindings.iter().enumerate() {
        if binding.agent != DEFAULT_AGENT && !config.agents.contains_key(&binding.agent) {
            let known: Vec<&str> =
                std::iter::once(DEFAULT_AGENT).chain(config.agents.keys().map(String::as_str)).collect();
            return Err(RuntimeError::UnknownBindingAgent {
                index,
                agent: binding.agent.clone(),
                known: known.join(", "),
            });
        }
    }
    Ok(Bindings::new(config.bindings.clone()))
}
