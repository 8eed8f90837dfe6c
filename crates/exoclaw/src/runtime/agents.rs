//! The agents a runtime serves: each an [`AgentSpec`] (what the configuration, or a front end's
//! flags, say about it) turned into an [`Agent`] ready for turns on the runtime's one router.

use crate::config::{AgentProfile, Config, ConfigError, ModelChoice};
use exoclaw_core::{
    AgentRunner, Approver, Decision, FixedApprover, Limits, PermissionPolicy, Provider, ToolRegistry,
    discover_context_files, system_prompt,
};
use exoclaw_memory::{Counters, TokenCounter};
use exoclaw_providers::router::Target;
use exoclaw_tools::baskets::Basket;
use exoclaw_tools::skills::{OpenSkill, SkillSet};
use exoclaw_types::GenerationParams;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

/// The opening system prompt of an agent with tools on a cloud model.
pub const TOOLS_PROMPT: &str = "You are exoclaw, an AI agent working in the user's terminal. Answer \
concisely. When the user asks about or wants changes to their files or project, use the tools: \
look before you change, change only what was asked, and say what you did.";

/// The opening system prompt of an agent without tools on a cloud model.
pub const CHAT_PROMPT: &str = "You are exoclaw, a helpful AI agent. Answer concisely.";

/// The embedded model's: short, since a 135M model derails on long instructions.
pub const LOCAL_PROMPT: &str = "You are a helpful assistant.";

/// What an agent is: its model, prompt, tools, permissions and limits.
#[derive(Clone)]
pub struct AgentSpec {
    /// Its name, as bindings and session keys name it.
    pub name: String,
    /// What it is for.
    pub description: Option<String>,
    /// Its model; the default model when `None`.
    pub model: Option<ModelChoice>,
    /// Replaces the opening system prompt ([`TOOLS_PROMPT`], [`CHAT_PROMPT`] or
    /// [`LOCAL_PROMPT`], by model and tools).
    pub base_prompt: Option<String>,
    /// More system prompt, in order, after the opening one and the context files.
    pub system: Vec<String>,
    /// Whether its model is offered the runtime's tools; `None`: `[agent] tools` for cloud
    /// models, off for the embedded one.
    pub tools: Option<bool>,
    /// The baskets its tools and skills are narrowed to; empty: every tool and skill.
    pub baskets: Vec<Basket>,
    /// Where its tools work; the current directory when `None`.
    pub workspace: Option<PathBuf>,
    /// Whether the workspace's `AGENTS.md` (and similar files) go into the system prompt.
    pub context_files: bool,
    /// Which tool calls run, ask or are refused.
    pub permissions: PermissionPolicy,
    /// Who is asked when the policy says ask; `None`: the runtime's approver.
    pub approver: Option<Arc<dyn Approver>>,
    /// Sampling and length parameters.
    pub params: GenerationParams,
    /// Iteration and tool-time limits.
    pub limits: Limits,
}

impl std::fmt::Debug for AgentSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AgentSpec")
            .field("name", &self.name)
            .field("model", &self.model)
            .field("tools", &self.tools)
            .field("workspace", &self.workspace)
            .finish_non_exhaustive()
    }
}

impl AgentSpec {
    /// The agent `[agent]` and `profile` describe.
    pub fn from_profile(config: &Config, name: &str, profile: &AgentProfile) -> Self {
        Self {
            name: name.to_owned(),
            description: profile.description.clone(),
            model: profile.model.clone(),
            base_prompt: config.agent.base_prompt.clone(),
            system: config.agent.system.iter().chain(profile.system.iter()).cloned().collect(),
            tools: profile.tools,
            baskets: profile.baskets.clone().unwrap_or_else(|| config.agent.baskets.clone()),
            workspace: None,
            context_files: false,
            permissions: config.permissions.clone(),
            approver: None,
            params: GenerationParams::default(),
            limits: config.agent.limits(),
        }
    }
}

/// An agent ready for turns.
#[derive(Debug)]
pub struct Agent {
    /// What it was built from.
    pub spec: AgentSpec,
    /// Runs its turns.
    pub runner: AgentRunner,
    /// The `provider/model` answering (the primary target).
    pub model: String,
    /// Where requests go, primary first.
    pub chain: Vec<Target>,
    /// Whether the primary target is the embedded model.
    pub local: bool,
    /// Where its tools work.
    pub workspace: PathBuf,
    /// The context files in its system prompt.
    pub context_files: Vec<PathBuf>,
    /// The skills its system prompt lists (none without tools), and the problems finding them.
    pub skills: SkillSet,
    /// Its system prompt and tool definitions, sent in every request.
    pub prompt: PromptCost,
}

/// An agent's system prompt and tool definitions, and the tokens they take in every request,
/// counted with the counter of the model answering (see [`Agent::prompt_tokens`]).
#[derive(Clone)]
pub struct PromptCost {
    system: Arc<str>,
    specs: Arc<str>,
    /// The last count and the counter that made it: counted again only when the counter changes
    /// (the estimate replaced by the model's tokenizer once built, or a turn on another model).
    last: Arc<Mutex<Option<Counted>>>,
}

/// A count, and the counter that made it.
type Counted = (Arc<dyn TokenCounter>, usize);

impl std::fmt::Debug for PromptCost {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PromptCost")
            .field("system_bytes", &self.system.len())
            .field("specs_bytes", &self.specs.len())
            .finish_non_exhaustive()
    }
}

impl PromptCost {
    /// The cost of `system` and the tool definitions `specs` (as sent, JSON).
    pub fn new(system: &str, specs: &str) -> Self {
        Self { system: system.into(), specs: specs.into(), last: Arc::new(Mutex::new(None)) }
    }

    /// The tokens they take, counted by `counter`.
    pub fn tokens(&self, counter: &Arc<dyn TokenCounter>) -> usize {
        let mut last = self.last.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        match &*last {
            Some((counted_by, tokens)) if Arc::ptr_eq(counted_by, counter) => *tokens,
            _ => {
                let tokens = counter.count(&self.system) + counter.count(&self.specs);
                *last = Some((Arc::clone(counter), tokens));
                tokens
            }
        }
    }
}

/// What is needed to build any agent.
pub(crate) struct Parts<'a> {
    pub config: &'a Config,
    pub models: &'a super::Models,
    pub provider: Arc<dyn Provider>,
    pub tools: &'a ToolRegistry,
    pub approver: &'a Arc<dyn Approver>,
    pub permissions: &'a crate::config::PermissionScopes,
    pub audit: &'a Arc<dyn exoclaw_core::AuditSink>,
    pub metering: &'a Arc<exoclaw_core::Metering>,
    pub hooks: &'a super::Extensions,
    /// exoclaw's home: its skills, and the trusted folders whose skills load.
    pub home: Option<&'a std::path::Path>,
    /// The loaded tool plugins, whose tools sit in `plugin/NAME`.
    pub plugins: Vec<String>,
    /// The runtime's token counters.
    pub counters: &'a Counters,
}

/// Why an agent could not be built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AgentError {
    /// Its model has no route.
    #[error("the agent `{agent}` cannot use its model: {source}")]
    Model {
        /// The agent.
        agent: String,
        /// Why.
        #[source]
        source: ConfigError,
    },
    /// Its workspace's permission rules (or the configured ones) cannot be used.
    #[error("the agent `{agent}` cannot start: {source}")]
    Permissions {
        /// The agent.
        agent: String,
        /// Why.
        #[source]
        source: ConfigError,
    },
    /// Its workspace is not a readable directory.
    #[error("the workspace {} of the agent `{agent}` cannot be used: {source}", path.display())]
    Workspace {
        /// The agent.
        agent: String,
        /// The directory.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

impl Agent {
    /// The same agent answering with `model` (as the router is asked for it) whose targets are
    /// `chain`, for one turn.
    pub fn on_model(&self, model: &str, chain: Vec<Target>) -> Self {
        let display = chain.first().map_or_else(|| model.to_owned(), ToString::to_string);
        Self {
            spec: self.spec.clone(),
            runner: self.runner.clone().with_model(model, display.clone()),
            model: display,
            local: chain.first().is_some_and(|t| t.provider == "local"),
            chain,
            workspace: self.workspace.clone(),
            context_files: self.context_files.clone(),
            skills: self.skills.clone(),
            prompt: self.prompt.clone(),
        }
    }

    /// The same agent with its runner changed by `change`, for one turn (a chat channel's turn
    /// asks the person whose message started it, and may send files).
    pub fn with_runner(&self, change: impl FnOnce(AgentRunner) -> AgentRunner) -> Self {
        Self {
            spec: self.spec.clone(),
            runner: change(self.runner.clone()),
            model: self.model.clone(),
            local: self.local,
            chain: self.chain.clone(),
            workspace: self.workspace.clone(),
            context_files: self.context_files.clone(),
            skills: self.skills.clone(),
            prompt: self.prompt.clone(),
        }
    }

    /// The tokens its system prompt and tool definitions take in every request, counted as its
    /// model counts them (the estimate while that model's tokenizer is being built).
    pub fn prompt_tokens(&self, counters: &Counters) -> usize {
        self.prompt.tokens(&counters.for_model(&self.model))
    }
}

impl Agent {
    /// Builds `spec` on `parts`' router, tools and metering. Opens nothing.
    pub(crate) fn build(spec: AgentSpec, parts: &Parts<'_>) -> Result<Self, AgentError> {
        let config = parts.config;
        let model_error = |source| AgentError::Model { agent: spec.name.clone(), source };
        let (request_model, chain) = parts.models.chain(spec.model.as_ref()).map_err(model_error)?;
        let model = chain.first().map_or_else(|| request_model.clone(), ToString::to_string);
        let local = chain.first().is_some_and(|t| config.is_local(&t.provider));

        let workspace = match &spec.workspace {
            Some(dir) => dir.clone(),
            None => std::env::current_dir().map_err(|source| AgentError::Workspace {
                agent: spec.name.clone(),
                path: PathBuf::from("."),
                source,
            })?,
        };
        let workspace = workspace.canonicalize().map_err(|source| AgentError::Workspace {
            agent: spec.name.clone(),
            path: workspace.clone(),
            source,
        })?;
        let tools_on = spec.tools.unwrap_or(!local && config.agent.tools);
        let skills = match tools_on {
            true => super::skills::discover_skills(parts.home, &workspace).narrowed(&spec.baskets),
            false => SkillSet::default(),
        };
        for problem in skills.problems() {
            tracing::warn!(agent = %spec.name, "{problem}");
        }
        let mut tools = match tools_on {
            true => super::skills::narrow_tools(config, &parts.plugins, parts.tools, &spec.baskets),
            false => ToolRegistry::new(),
        };
        if !skills.is_empty() {
            tools.register(Arc::new(OpenSkill::new(skills.clone())));
        }
        let context_files = if spec.context_files { discover_context_files(&workspace) } else { Vec::new() };
        let base = match &spec.base_prompt {
            Some(base) => base.as_str(),
            None if local => LOCAL_PROMPT,
            None if tools_on => TOOLS_PROMPT,
            None => CHAT_PROMPT,
        };
        // The skills' names and descriptions, then the configured and command-line additions.
        let skills_section = skills.prompt_section();
        let extra: Vec<&str> =
            skills_section.iter().map(String::as_str).chain(spec.system.iter().map(String::as_str)).collect();
        let system = system_prompt(base, &context_files, &extra);
        let prompt = PromptCost::new(&system, &serde_json::to_string(&tools.specs()).unwrap_or_default());
        // Its model's tokenizer starts building now, so that it is likely ready by the first turn.
        drop(parts.counters.for_model(&model));
        let approver = spec.approver.clone().unwrap_or_else(|| Arc::clone(parts.approver));
        // The configured rules, the answers kept, and the workspace's own rules.
        let permissions = parts
            .permissions
            .for_workspace(&spec.permissions, &workspace)
            .map_err(|source| AgentError::Permissions { agent: spec.name.clone(), source })?;
        let mut runner = AgentRunner::new(Arc::clone(&parts.provider), request_model, model.clone())
            .with_agent(spec.name.clone())
            .with_system(system)
            .with_tools(tools)
            .with_workspace_root(&workspace)
            .with_permissions(permissions, approver)
            .with_audit(Arc::clone(parts.audit))
            .with_limits(spec.limits)
            .with_metering(Arc::clone(parts.metering))
            .with_params(spec.params.clone());
        runner = parts.hooks.apply(runner);
        Ok(Self {
            spec,
            runner,
            model,
            chain,
            local,
            workspace,
            context_files: context_files.into_iter().map(|f| f.path).collect(),
            skills,
            prompt,
        })
    }
}

/// The approver of a runtime nobody watches: every call that would ask is refused, and the model
/// is told that nobody can approve it where it runs (not that a person said no).
pub fn unattended() -> Arc<dyn Approver> {
    Arc::new(FixedApprover(Decision::Unattended))
}
