//! What every command sets up: the configuration, the session store, and an agent (model, tools,
//! system prompt, permissions) ready to run turns.

use crate::{TurnArgs, approve, output};
use anyhow::Context;
use exoclaw::config::{Config, LoadedConfig};
use exoclaw_core::{
    AgentRunner, EventSink, NewSession, SessionStore, TurnResult, discover_context_files, system_prompt,
};
use exoclaw_core::{Metering, SystemClock, UsageStore};
use exoclaw_store::Store;
use exoclaw_types::{GenerationParams, Message, ModelRef, SessionId, SessionInfo};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

/// The system prompt every agent starts from.
const BASE_PROMPT: &str = "You are exoclaw, an AI agent working in the user's terminal. Answer \
concisely. When the user asks about or wants changes to their files or project, use the tools: \
look before you change, change only what was asked, and say what you did.";

/// The embedded model's: short, since a 135M model derails on long instructions.
pub(crate) const LOCAL_PROMPT: &str = "You are a helpful assistant.";

/// The loaded configuration and the open store.
pub struct App {
    /// The configuration, with the file it came from.
    pub loaded: LoadedConfig,
    /// Sessions and usage.
    pub store: Store,
    /// Prices and budgets, with the spend of the budgets' current windows restored from the
    /// usage ledger; shared by every agent this process runs.
    pub metering: Arc<Metering>,
}

impl App {
    /// Loads the configuration and opens the store it names.
    pub async fn open(config: Option<&Path>) -> anyhow::Result<Self> {
        let loaded = Config::load_after_dotenv(config)?;
        let url = loaded.config.storage_url(&loaded.home);
        let store = Store::open(&url).await.context("cannot open the session store")?;
        let past = match loaded.config.usage_history_start(chrono::Utc::now()) {
            Some(since) => {
                store.usage_since(since).await.context("cannot read the usage ledger for the budgets")?
            }
            None => Vec::new(),
        };
        let metering = Arc::new(loaded.config.metering(Arc::new(SystemClock), &past));
        Ok(Self { loaded, store, metering })
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.loaded.config
    }

    /// An agent for `args`, opening its model's provider (and loading the embedded model).
    pub async fn agent(&self, args: &TurnArgs, interactive: bool) -> anyhow::Result<Agent> {
        let config = self.config();
        let (requested, chain) = config.route_chain(args.model.as_ref())?;
        // Loading the embedded model takes a moment: say so (a download shows its own bar).
        let loading = chain
            .iter()
            .any(|t| config.is_local(&t.provider))
            .then(|| output::spinner("loading the embedded model…"))
            .flatten();
        let mut download = output::Download::new();
        let routed = exoclaw::open_routed(config, args.model.as_ref(), &mut |done, total| {
            if let Some(spinner) = &loading {
                spinner.finish_and_clear();
            }
            download.update(done, total)
        })
        .await
        .with_context(|| format!("cannot use `{requested}`"));
        if let Some(spinner) = &loading {
            spinner.finish_and_clear();
        }
        let routed = routed?;
        download.finish();
        let model: ModelRef = routed.primary().parse()?;
        let local = routed.primary_kind == exoclaw::ProviderKind::Local;
        let provider = routed.provider.clone();

        let workspace = match &args.workspace {
            Some(dir) => dir.clone(),
            None => std::env::current_dir().context("the current directory is not readable")?,
        };
        let workspace = workspace
            .canonicalize()
            .with_context(|| format!("the workspace {} does not exist", workspace.display()))?;
        let tools_on = !args.no_tools && (args.tools || (!local && config.agent.tools));
        let tools = if tools_on { exoclaw_tools::builtin_tools() } else { exoclaw_core::ToolRegistry::new() };

        let context_files = discover_context_files(&workspace);
        let mut extra: Vec<&str> = Vec::new();
        if let Some(system) = &config.agent.system {
            extra.push(system);
        }
        if let Some(system) = &args.system {
            extra.push(system);
        }
        let base = match &config.agent.base_prompt {
            Some(base) => base.as_str(),
            None if local => LOCAL_PROMPT,
            None => BASE_PROMPT,
        };
        let system = system_prompt(base, &context_files, &extra);

        let policy =
            config.permissions.clone().with_auto_approve(args.yes || config.permissions.auto_approve);
        let approver =
            if interactive { approve::for_this_terminal() } else { std::sync::Arc::new(approve::Unattended) };
        let params = GenerationParams {
            temperature: args.temperature,
            max_tokens: args.max_tokens,
            seed: args.seed,
            ..GenerationParams::default()
        };
        let runner = AgentRunner::new(provider, routed.request_model.clone(), model.to_string())
            .with_system(system)
            .with_tools(tools)
            .with_workspace_root(&workspace)
            .with_permissions(policy, approver)
            .with_limits(config.agent.limits())
            .with_metering(self.metering.clone())
            .with_params(params);
        Ok(Agent {
            runner,
            model,
            workspace,
            context_files: context_files.into_iter().map(|f| f.path).collect(),
        })
    }

    /// The session `id` names (in full or by a unique prefix), or the most recently used one for
    /// `latest`, or none: a new one is created with the first turn.
    pub async fn session(&self, id: Option<&str>, latest: bool) -> anyhow::Result<Option<SessionInfo>> {
        if let Some(id) = id {
            return crate::sessions::find(self, id).await.map(Some);
        }
        if latest {
            let last = self.store.list_sessions(1).await?.into_iter().next();
            return last.map(Some).ok_or_else(|| {
                anyhow::anyhow!("there is no session to continue yet; start one without --continue")
            });
        }
        Ok(None)
    }

    /// Runs one turn of `agent` in `session` and commits it — messages and usage in one
    /// transaction — whatever its outcome. With no session yet, one titled by `input` is stored
    /// when the turn ends, so a first turn killed mid-way leaves nothing behind.
    pub async fn turn(
        &self,
        agent: &Agent,
        session: &mut Option<SessionInfo>,
        input: &str,
        cancel: &CancellationToken,
        events: &dyn EventSink,
    ) -> anyhow::Result<TurnResult> {
        let (id, history) = match session {
            Some(info) => (info.id, self.store.messages(info.id).await?),
            None => (SessionId::new(), Vec::new()),
        };
        let result = agent.runner.run_turn(id, history, Message::user(input), cancel, events).await;
        if session.is_none() {
            let new = NewSession {
                id: Some(id),
                key: None,
                title: Some(exoclaw_core::session_title(input)),
                model: Some(agent.model.to_string()),
            };
            *session = Some(self.store.create_session(new).await.context("the session could not be stored")?);
        }
        self.store
            .commit_turn(id, &result.messages, &result.usage, Some(&agent.model.to_string()))
            .await
            .context("the turn could not be saved")?;
        Ok(result)
    }
}

/// A configured agent, ready for turns.
pub struct Agent {
    /// Runs the turns.
    pub runner: AgentRunner,
    /// The `provider/model` answering.
    pub model: ModelRef,
    /// Where its tools work.
    pub workspace: PathBuf,
    /// The AGENTS.md (and similar) files in its system prompt.
    pub context_files: Vec<PathBuf>,
}
