//! `exoclaw`: your own AI agent in the terminal.
//!
//! `exoclaw chat "…"` runs one agent turn (the model may call tools: read, edit, search, run
//! commands) and streams it; `exoclaw` alone opens the REPL. Sessions live in SQLite under
//! `~/.exoclaw/` (or the configured database) and can be resumed, shown, exported and deleted.

mod app;
mod approve;
mod audit;
mod channels;
mod chat;
mod config_cmd;
mod gateway;
mod keys;
mod markdown;
mod mcp;
mod memory;
mod models;
mod output;
mod plugin;
mod providers;
mod render;
mod repl;
mod sessions;
mod ssh;
mod tools;
mod trust;
mod usage;

use clap::{CommandFactory, Parser, Subcommand};
use exoclaw::ModelChoice;
use std::path::PathBuf;
use std::process::ExitCode;

/// mimalloc: the gateway's request path allocates and frees on two threads at once, where glibc's
/// arena locks cost a third of its CPU.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Your own AI agents. With no configuration and no API key, answers come from an embedded local
/// model (SmolLM2-135M, fetched on first use); with `ANTHROPIC_API_KEY`, `OPENAI_API_KEY`,
/// `GEMINI_API_KEY`, `XAI_API_KEY` or `OPENROUTER_API_KEY` set, from that cloud provider.
///
/// Run without a command to open the interactive REPL.
#[derive(Debug, Parser)]
#[command(name = "exoclaw", version, about, after_help = AFTER_HELP)]
struct Cli {
    /// The configuration file (default: $EXOCLAW_CONFIG, else $EXOCLAW_HOME/config.toml, where
    /// EXOCLAW_HOME defaults to ~/.exoclaw).
    #[arg(long, global = true, value_name = "FILE")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

const AFTER_HELP: &str = "\
Examples:
  exoclaw chat \"What is the capital of France?\"
  exoclaw chat -m anthropic/claude-sonnet-4-5 --yes \"Add a test for parse_args in src/cli.rs\"
  exoclaw chat -c \"And now make it faster\"      continue the last session
  exoclaw                                       the REPL
  exoclaw session list
  exoclaw memory search Lyon                    what past sessions said
  exoclaw mcp list                              MCP servers and their tools
  exoclaw tools --basket files                  the tools and skills in a basket

Exit codes: 0 ok, 1 error, 2 usage error, 130 interrupted (Ctrl+C).
Logs: RUST_LOG=debug (to stderr, never mixed into --json output).";

#[derive(Debug, Subcommand)]
enum Command {
    /// Ask once and stream the agent's answer (it may call tools).
    Chat(chat::ChatArgs),
    /// The interactive REPL (also what `exoclaw` alone opens).
    Run(repl::ReplArgs),
    /// Stored sessions: list, show, resume, delete, export.
    #[command(subcommand)]
    Session(sessions::SessionCommand),
    /// What the agent remembers across sessions: search, facts, forget, export.
    #[command(subcommand, after_help = memory::HELP)]
    Memory(memory::MemoryCommand),
    /// MCP servers ([mcp.NAME]): their state and tools, resources and prompts.
    #[command(subcommand, after_help = mcp::HELP)]
    Mcp(mcp::McpCommand),
    /// The tools and skills an agent is offered, by basket: `exoclaw tools --basket files`.
    Tools(tools::ToolsArgs),
    /// List the models each available provider offers.
    Models,
    /// Provider health: `exoclaw providers status`.
    #[command(subcommand)]
    Providers(providers::ProvidersCommand),
    /// Tokens and cost of model calls, by day, model, agent and purpose.
    Usage(usage::UsageArgs),
    /// Serve the OpenAI-compatible /v1 API, the WebSocket protocol and webhooks.
    Gateway(gateway::GatewayArgs),
    /// The gateway's virtual keys: create, list, revoke.
    #[command(subcommand)]
    Keys(keys::KeysCommand),
    /// The audit log: permission decisions, answers and executed tool calls.
    Audit(audit::AuditArgs),
    /// Every permission rule in effect here, with its scope and file.
    Permissions(audit::PermissionsArgs),
    /// Chat channels ([channels.*], channel plugins): `exoclaw channels status`.
    #[command(subcommand)]
    Channels(channels::ChannelsCommand),
    /// WASM plugins: install (showing what each may reach), list, inspect, grant, revoke, remove.
    #[command(subcommand)]
    Plugin(plugin::PluginCommand),
    /// SSH hosts ([ssh]): `exoclaw ssh trust ALIAS` accepts a host's key.
    #[command(subcommand)]
    Ssh(ssh::SshCommand),
    /// Trust a folder's .env with settings that widen what the agent may do.
    Trust(trust::TrustArgs),
    /// The configuration file: init, check, show.
    #[command(subcommand)]
    Config(config_cmd::ConfigCommand),
    /// Print a shell completion script: `exoclaw completions bash > ~/.local/share/bash-completion/completions/exoclaw`.
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
}

/// Options every agent turn takes, in `chat` and the REPL alike.
#[derive(Debug, Clone, clap::Args)]
pub struct TurnArgs {
    /// The model, as `provider/model`: `local/smollm2`, `anthropic/claude-sonnet-4-5`,
    /// `openai/gpt-4o-mini`, `gemini/gemini-2.5-flash`, `ollama/llama3.2`, or a configured
    /// provider's name (`work/gpt-4o`). Default: the config's `model`, else the first cloud
    /// provider with a key, else `local/smollm2`. A provider's name alone (`work`) means its
    /// `default_model`.
    #[arg(short, long, env = "EXOCLAW_MODEL")]
    pub model: Option<ModelChoice>,
    /// More system prompt, after the configured one and the project's AGENTS.md.
    #[arg(long)]
    pub system: Option<String>,
    /// Run tools that would ask first (write, edit, shell, http) without asking. Tools the
    /// configuration denies stay denied.
    #[arg(short, long)]
    pub yes: bool,
    /// Offer no tools to the model.
    #[arg(long, conflicts_with = "tools")]
    pub no_tools: bool,
    /// Offer the tools even to the embedded model (off by default: a 135M model cannot use them
    /// well, and their descriptions slow its first token).
    #[arg(long)]
    pub tools: bool,
    /// The directory file tools are confined to and commands start in (default: the current one).
    #[arg(long, value_name = "DIR")]
    pub workspace: Option<PathBuf>,
    /// What `shell` commands and stdio MCP servers may do in this run: `read-only` (write
    /// nothing), `workspace-write` (write the workspace; the default), `full-access` (no sandbox).
    /// Default: `[sandbox] mode`.
    #[arg(long, value_name = "MODE", value_parser = parse_sandbox_mode)]
    pub sandbox: Option<exoclaw_tools::sandbox::SandboxMode>,
    /// Most tokens in each answer.
    #[arg(long)]
    pub max_tokens: Option<u32>,
    /// Sampling temperature (0 = deterministic).
    #[arg(long)]
    pub temperature: Option<f32>,
    /// Seed for repeatable sampling, where the provider supports it.
    #[arg(long)]
    pub seed: Option<u64>,
    /// The shape every answer must take (`chat --json-schema` sets it).
    #[arg(skip)]
    pub response_format: Option<exoclaw_types::ResponseFormat>,
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let code = if e.use_stderr() { 2 } else { 0 };
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    if let Some(Command::Completions { shell }) = &cli.command {
        output::completions(*shell, &mut Cli::command());
        return ExitCode::SUCCESS;
    }
    // Errors only unless RUST_LOG says otherwise; Extism's own error lines are left out (a plugin
    // that fails is reported once, as its call's failure).
    let filter = match std::env::var_os("RUST_LOG") {
        Some(_) => tracing_subscriber::EnvFilter::from_default_env(),
        None => tracing_subscriber::EnvFilter::new("error,extism=off"),
    };
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).init();
    // The current folder's `.env`, before any thread reads the environment. `trust` reads none: it
    // decides whether to.
    if !matches!(cli.command, Some(Command::Trust(_)))
        && let Err(e) = trust::load_dotenv()
    {
        output::error(&e);
        return ExitCode::from(1);
    }
    let mut runtime = tokio::runtime::Builder::new_multi_thread();
    if let Some(Command::Gateway(args)) = &cli.command {
        runtime.worker_threads(args.workers().get());
    }
    let runtime = match runtime.enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => {
            output::error(&anyhow::anyhow!("cannot start the async runtime: {e}"));
            return ExitCode::from(1);
        }
    };
    let config = cli.config.as_deref();
    let result = match cli.command {
        None => repl::run(&runtime, config, repl::ReplArgs::default()),
        Some(Command::Run(args)) => repl::run(&runtime, config, args),
        Some(Command::Chat(args)) => runtime.block_on(chat::run(config, args)),
        Some(Command::Session(sessions::SessionCommand::Resume { id, turn })) => repl::run(
            &runtime,
            config,
            repl::ReplArgs { turn: *turn, session: Some(id), continue_last: false },
        ),
        Some(Command::Session(command)) => runtime.block_on(sessions::run(config, command)),
        Some(Command::Memory(command)) => runtime.block_on(memory::run(config, command)),
        Some(Command::Mcp(command)) => runtime.block_on(mcp::run(config, command)),
        Some(Command::Providers(command)) => runtime.block_on(providers::run(config, command)),
        Some(Command::Usage(args)) => runtime.block_on(usage::run(config, args)),
        Some(Command::Gateway(args)) => runtime.block_on(gateway::run(config, args)),
        Some(Command::Keys(command)) => runtime.block_on(keys::run(config, command)),
        Some(Command::Tools(args)) => runtime.block_on(tools::run(config, args)),
        Some(Command::Models) => runtime.block_on(models::list(config)).map(|()| ExitCode::SUCCESS),
        Some(Command::Audit(args)) => runtime.block_on(audit::run(config, args)),
        Some(Command::Permissions(args)) => audit::permissions(config, args),
        Some(Command::Ssh(command)) => runtime.block_on(ssh::run(config, command)),
        Some(Command::Plugin(command)) => runtime.block_on(plugin::run(config, command)),
        Some(Command::Channels(command)) => runtime.block_on(channels::run(config, command)),
        Some(Command::Trust(args)) => trust::run(args),
        Some(Command::Config(command)) => config_cmd::run(config, command),
        Some(Command::Completions { .. }) => Ok(ExitCode::SUCCESS),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            output::error(&e);
            ExitCode::from(1)
        }
    }
}

/// A `--sandbox` value, spelt as in `[sandbox] mode`.
fn parse_sandbox_mode(text: &str) -> Result<exoclaw_tools::sandbox::SandboxMode, String> {
    use exoclaw_tools::sandbox::SandboxMode;
    [SandboxMode::ReadOnly, SandboxMode::WorkspaceWrite, SandboxMode::FullAccess]
        .into_iter()
        .find(|mode| mode.as_str() == text)
        .ok_or_else(|| {
            format!("`{text}` is not a sandbox mode; use read-only, workspace-write or full-access")
        })
}
