//! What every command sets up: the configuration and the session store; for commands that run
//! turns, the [`Runtime`] with the default agent as this command's flags describe it.

use crate::{TurnArgs, approve, output};
use anyhow::Context;
use exoclaw::config::{Config, DEFAULT_AGENT, LoadedConfig};
use exoclaw::runtime::{Agent, Runtime};
use exoclaw_core::{AgentRuntime, EventSink, SessionStore, Target, TurnInput, TurnReport};
use exoclaw_store::Store;
use exoclaw_types::{GenerationParams, SessionInfo};
use std::path::Path;
use std::sync::Arc;

/// The loaded configuration and the open store.
pub struct App {
    /// The configuration, with the file it came from.
    pub loaded: LoadedConfig,
    /// Sessions, usage, keys and run checkpoints.
    pub store: Store,
}

impl App {
    /// Loads the configuration and opens the store it names.
    pub async fn open(config: Option<&Path>) -> anyhow::Result<Self> {
        let loaded = Config::load_after_dotenv(config)?;
        let url = loaded.config.storage_url(&loaded.home);
        let store = Store::open(&url).await.context("cannot open the session store")?;
        Ok(Self { loaded, store })
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.loaded.config
    }

    /// The runtime for this command's turns: the default agent changed by `args` (model,
    /// prompt, tools, workspace, parameters, `--yes`), approvals asked on this terminal when
    /// `interactive`. Opens no model yet ([`App::prepare`] does).
    pub async fn runtime(&self, args: &TurnArgs, interactive: bool) -> anyhow::Result<Runtime> {
        let config = self.config();
        let workspace = match &args.workspace {
            Some(dir) => dir.clone(),
            None => std::env::current_dir().context("the current directory is not readable")?,
        };
        let args = args.clone();
        let auto_approve = args.yes || config.permissions.auto_approve;
        let mut config = config.clone();
        if let Some(mode) = args.sandbox {
            config.sandbox.mode = mode;
        }
        let approver = if interactive { approve::for_this_terminal() } else { Arc::new(approve::Unattended) };
        Ok(Runtime::builder()
            .config(config)
            .store(self.store.clone())
            .approver(approver)
            .home(self.loaded.home.clone())
            .default_agent(move |spec| {
                if let Some(model) = args.model {
                    spec.model = Some(model);
                }
                spec.system.extend(args.system);
                spec.tools = if args.no_tools {
                    Some(false)
                } else if args.tools {
                    Some(true)
                } else {
                    None
                };
                spec.workspace = Some(workspace);
                spec.context_files = true;
                spec.permissions = spec.permissions.clone().with_auto_approve(auto_approve);
                spec.params = GenerationParams {
                    temperature: args.temperature,
                    max_tokens: args.max_tokens,
                    seed: args.seed,
                    response_format: args.response_format,
                    ..GenerationParams::default()
                };
            })
            .build()
            .await?)
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
}

/// Opens the default agent's model now, with a spinner while the embedded model loads (a
/// download shows its own bar), so that a missing key or model fails before the first turn.
pub async fn prepare(runtime: &Runtime) -> anyhow::Result<Arc<Agent>> {
    let agent = runtime.agent(DEFAULT_AGENT).context("the runtime has no default agent")?;
    let loading = agent.local.then(|| output::spinner("loading the embedded model…")).flatten();
    let mut download = output::Download::new();
    let opened = runtime
        .prepare(DEFAULT_AGENT, &mut |done, total| {
            if let Some(spinner) = &loading {
                spinner.finish_and_clear();
            }
            download.update(done, total)
        })
        .await
        .with_context(|| format!("cannot use `{}`", agent.model));
    if let Some(spinner) = &loading {
        spinner.finish_and_clear();
    }
    opened?;
    download.finish();
    // A broken skill is left out, and the rest keep working: say which and how to fix it.
    for problem in agent.skills.problems() {
        output::warning(&problem.to_string());
    }
    Ok(agent)
}

/// Runs one turn in `session` (a new one when `None`, stored with the turn) through the
/// runtime, streaming its events to `events`; Ctrl+C cancels it. `input` `None` only finishes
/// the session's interrupted turn. With `wait` false, a session another process is using is
/// refused at once.
pub async fn turn(
    runtime: &Runtime,
    session: &mut Option<SessionInfo>,
    input: Option<&str>,
    wait: bool,
    events: &dyn EventSink,
) -> anyhow::Result<TurnReport> {
    let target = match session {
        Some(info) => Target::Session(info.id),
        None => Target::New { agent: None },
    };
    let mut input = match input {
        Some(text) => TurnInput::message(text),
        None => TurnInput::resume(),
    };
    input.wait = wait;
    let handle = runtime.submit(target, input)?;
    let on_interrupt = crate::chat::cancel_on_ctrl_c(handle.cancel_token());
    let report = handle.finish(events).await;
    on_interrupt.abort();
    let report = report?;
    *session = runtime.store().session(report.session_id).await?;
    Ok(report)
}
