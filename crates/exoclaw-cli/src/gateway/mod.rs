//! `exoclaw gateway`: the gateway daemon — the OpenAI-compatible `/v1` API, the WebSocket
//! JSON-RPC protocol and webhooks in front of the configured providers and agents — and
//! `exoclaw gateway routes --explain`, which says which agent a conversation would reach.

#![allow(clippy::print_stdout, clippy::print_stderr)]

mod models;

use crate::app::App;
use anyhow::Context;
use exoclaw::config::{Config, DEFAULT_AGENT, GatewayConfig};
use exoclaw_core::{AgentRunner, Provider, system_prompt};
use exoclaw_gateway::{AgentEntry, Agents, Bindings, Gateway, Limits, TokenSet};
use exoclaw_types::Inbound;
use models::RoutedModels;
use std::net::SocketAddr;
use std::num::NonZeroUsize;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

/// `exoclaw gateway`.
#[derive(Debug, clap::Args)]
#[command(after_help = GATEWAY_HELP)]
pub struct GatewayArgs {
    /// The address to listen on (default: `[gateway] bind`, 127.0.0.1:7878). Anything but
    /// loopback needs a token: `[gateway] token_hashes` or a virtual key (`exoclaw keys create`).
    #[arg(long, value_name = "ADDR")]
    bind: Option<SocketAddr>,
    /// Threads that serve requests (default: half the CPUs, at least one). The gateway forwards
    /// and waits; the other cores stay free for what it usually shares the machine with (a local
    /// model server, the agents' tools, its database). See docs/gateway.md.
    #[arg(long, value_name = "N", env = "EXOCLAW_GATEWAY_WORKERS")]
    workers: Option<NonZeroUsize>,
    #[command(subcommand)]
    command: Option<GatewayCommand>,
}

impl GatewayArgs {
    /// The threads the gateway's runtime gets (it is built before the command runs): `--workers`,
    /// else half the CPUs this process may use, at least one.
    pub fn workers(&self) -> NonZeroUsize {
        self.workers.unwrap_or_else(|| {
            let cpus = std::thread::available_parallelism().map_or(1, NonZeroUsize::get);
            NonZeroUsize::new(cpus / 2).unwrap_or(NonZeroUsize::MIN)
        })
    }
}

const GATEWAY_HELP: &str = "\
Serves, on one address:
  POST /v1/chat/completions, GET /v1/models   OpenAI-compatible (any OpenAI SDK: base_url=http://ADDR/v1)
  GET  /ws                                    WebSocket JSON-RPC 2.0 (docs/protocol.md)
  POST /webhook/{channel}                     chat platform deliveries
  GET  /healthz, /readyz, /metrics            probes and Prometheus metrics

SIGHUP re-reads [[bindings]] from the configuration file (so does saving it); connections stay
open. SIGINT/SIGTERM stop accepting, let running answers finish for shutdown_grace_secs, then exit.

Examples:
  exoclaw gateway
  exoclaw gateway --bind 0.0.0.0:7878          needs a token or a virtual key
  exoclaw gateway --workers 4                  four serving threads (default: half the CPUs)
  exoclaw keys create --name ci --models 'openai/*' --budget 5 --rpm 60
  exoclaw gateway routes --explain --channel slack --account T01 --peer U42";

#[derive(Debug, clap::Subcommand)]
enum GatewayCommand {
    /// Which agent answers a conversation, by the configured [[bindings]].
    Routes(RoutesArgs),
}

#[derive(Debug, clap::Args)]
struct RoutesArgs {
    /// Say which binding matched and why, and why the others did not.
    #[arg(long)]
    explain: bool,
    /// The channel (`ws`, `slack`, `discord`, `telegram`, …).
    #[arg(long, default_value = "ws")]
    channel: String,
    /// The account on the channel.
    #[arg(long, default_value = "default")]
    account: String,
    /// The peer: a user, a DM or a room.
    #[arg(long, default_value = "anonymous")]
    peer: String,
    /// The Discord guild.
    #[arg(long)]
    guild: Option<String>,
    /// The team.
    #[arg(long)]
    team: Option<String>,
}

/// Runs `exoclaw gateway …`.
pub async fn run(config_path: Option<&Path>, args: GatewayArgs) -> anyhow::Result<ExitCode> {
    if let Some(GatewayCommand::Routes(routes)) = args.command {
        return explain_routes(config_path, &routes);
    }
    let app = App::open(config_path).await?;
    let config = Arc::new(app.config().clone());
    let settings = &config.gateway;
    let bind: SocketAddr = match args.bind {
        Some(bind) => bind,
        None => settings.bind.parse().with_context(|| {
            format!("[gateway] bind = {:?} is not an address; write it as 127.0.0.1:7878", settings.bind)
        })?,
    };
    let models = RoutedModels::open(Arc::clone(&config))?;
    let agents = agents(&config, &app, models.router())?;
    let store = Arc::new(app.store.clone());
    let has_keys = !exoclaw_core::KeyStore::list_keys(&*store).await?.is_empty();
    let mut builder = Gateway::builder(Arc::new(models))
        .tokens(TokenSet::from_hashes(&settings.token_hashes)?)
        .agents(agents)
        .store(store.clone(), store.clone())
        .metering(app.metering.clone())
        .bindings(bindings(&config)?)
        .limits(limits(settings))
        .allowed_origins(settings.allowed_origins.clone());
    // Without any key made, a loopback gateway with no token stays open until the first key is
    // made (it notices within a second); from then on every request needs one (or an operator
    // token).
    builder = if has_keys { builder.keys(store.clone()) } else { builder.keys_once_made(store.clone()) };
    let gateway = Arc::new(builder.build());
    let listener = tokio::net::TcpListener::bind(bind).await.with_context(|| {
        format!("cannot listen on {bind}; is another program using it? Choose another with --bind")
    })?;
    let addr = listener.local_addr()?;
    exoclaw_gateway::check_bind(addr, gateway.requires_auth())?;
    let threads = tokio::runtime::Handle::current().metrics().num_workers();
    eprintln!(
        "exoclaw gateway listening on http://{addr} (OpenAI-compatible: http://{addr}/v1, WebSocket: ws://{addr}/ws){}; {threads} serving thread{}",
        if gateway.requires_auth() { "" } else { "; no token needed on loopback" },
        if threads == 1 { "" } else { "s" }
    );
    spawn_reloader(Arc::clone(&gateway), app.loaded.path.clone(), config_path.map(Path::to_path_buf));
    exoclaw_gateway::serve(listener, gateway, shutdown_signal()).await?;
    app.store.close().await;
    eprintln!("exoclaw gateway stopped");
    Ok(ExitCode::SUCCESS)
}

/// The limits from `[gateway]`: per WebSocket connection, per HTTP connection (timeouts), and
/// over all clients (connections, unauthenticated WebSockets, request bodies in flight).
fn limits(settings: &GatewayConfig) -> Limits {
    Limits {
        max_message_bytes: settings.max_message_bytes,
        requests_per_second: settings.requests_per_second,
        idle_timeout: Duration::from_secs(settings.idle_timeout_secs),
        session_queue: settings.session_queue,
        shutdown_grace: Duration::from_secs(settings.shutdown_grace_secs),
        header_timeout: Duration::from_secs(settings.header_timeout_secs),
        body_timeout: Duration::from_secs(settings.body_timeout_secs),
        keep_alive: Duration::from_secs(settings.keep_alive_secs),
        max_connections: settings.max_connections,
        max_unauthenticated: settings.max_unauthenticated,
        max_body_bytes_in_flight: settings.max_body_bytes_in_flight,
    }
}

/// `[[bindings]]`, every agent they name checked against the configured agents.
fn bindings(config: &Config) -> anyhow::Result<Bindings> {
    for (index, binding) in config.bindings.iter().enumerate() {
        if binding.agent != DEFAULT_AGENT && !config.agents.contains_key(&binding.agent) {
            let known: Vec<&str> =
                std::iter::once(DEFAULT_AGENT).chain(config.agents.keys().map(String::as_str)).collect();
            anyhow::bail!(
                "bindings[{index}] names the agent `{}`, which is not configured; add [agents.{}] or use one of: {}",
                binding.agent,
                binding.agent,
                known.join(", ")
            );
        }
    }
    Ok(Bindings::new(config.bindings.clone()))
}

/// The `default` agent and every `[agents.NAME]`, all on the gateway's router. Tools are off
/// unless an agent's profile turns them on; with nobody to approve a change, tools that would
/// ask are refused.
fn agents(
    config: &Config,
    app: &App,
    router: Arc<exoclaw_providers::router::Router>,
) -> anyhow::Result<Agents> {
    let provider: Arc<dyn Provider> = router;
    let workspace = std::env::current_dir().context("the current directory is not readable")?;
    let mut agents = Agents::new();
    let profiles = std::iter::once((DEFAULT_AGENT.to_owned(), exoclaw::config::AgentProfile::default()))
        .chain(config.agents.iter().map(|(name, profile)| (name.clone(), profile.clone())));
    for (name, profile) in profiles {
        let (request_model, chain) = config
            .route_chain(profile.model.as_ref())
            .with_context(|| format!("the agent `{name}` cannot use its model"))?;
        let display = chain.first().map(ToString::to_string).unwrap_or_else(|| request_model.clone());
        let local = chain.first().is_some_and(|t| config.is_local(&t.provider));
        let base = config.agent.base_prompt.as_deref().unwrap_or(if local {
            crate::app::LOCAL_PROMPT
        } else {
            "You are exoclaw, a helpful AI agent. Answer concisely."
        });
        let extra: Vec<&str> =
            config.agent.system.iter().chain(profile.system.iter()).map(String::as_str).collect();
        let tools = if profile.tools == Some(true) {
            exoclaw_tools::builtin_tools()
        } else {
            exoclaw_core::ToolRegistry::new()
        };
        let runner = AgentRunner::new(Arc::clone(&provider), request_model, display)
            .with_agent(name.clone())
            .with_system(system_prompt(base, &[], &extra))
            .with_tools(tools)
            .with_workspace_root(&workspace)
            .with_permissions(config.permissions.clone(), Arc::new(crate::approve::Unattended))
            .with_limits(config.agent.limits())
            .with_metering(app.metering.clone());
        agents = agents.with(AgentEntry { name, description: profile.description, runner: Arc::new(runner) });
    }
    Ok(agents)
}

/// Completes on SIGINT or SIGTERM.
async fn shutdown_signal() {
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot watch for SIGTERM; stop the gateway with Ctrl+C");
                std::future::pending::<()>().await;
            }
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        () = terminate => {}
    }
    eprintln!("exoclaw gateway: shutting down (letting running answers finish)…");
}

/// Re-reads `[[bindings]]` on SIGHUP and when the configuration file changes (checked every two
/// seconds). A configuration that no longer parses keeps the bindings in force, and says why.
fn spawn_reloader(gateway: Arc<Gateway>, file: Option<PathBuf>, explicit: Option<PathBuf>) {
    tokio::spawn(async move {
        let mut hangup = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
            Ok(signal) => Some(signal),
            Err(e) => {
                tracing::warn!(error = %e, "cannot watch for SIGHUP; bindings reload when the file changes");
                None
            }
        };
        let modified = |path: &Option<PathBuf>| {
            path.as_ref().and_then(|p| std::fs::metadata(p).and_then(|m| m.modified()).ok())
        };
        let mut last = modified(&file);
        let mut tick = tokio::time::interval(Duration::from_secs(2));
        let stopping = gateway.shutdown_token();
        loop {
            let hup = async {
                match hangup.as_mut() {
                    Some(signal) => signal.recv().await,
                    None => std::future::pending().await,
                }
            };
            let reason = tokio::select! {
                _ = hup => "SIGHUP",
                _ = tick.tick() => {
                    let now = modified(&file);
                    if now == last { continue; }
                    last = now;
                    "the configuration file changed"
                }
                () = stopping.cancelled() => return,
            };
            match Config::load_after_dotenv(explicit.as_deref())
                .map_err(anyhow::Error::from)
                .and_then(|l| bindings(&l.config))
            {
                Ok(fresh) => {
                    let count = fresh.list().len();
                    gateway.reload_bindings(fresh);
                    eprintln!("exoclaw gateway: {reason}: reloaded {count} binding(s)");
                }
                Err(e) => eprintln!("exoclaw gateway: {reason}, but the bindings were kept: {e:#}"),
            }
        }
    });
}

/// `exoclaw gateway routes`.
fn explain_routes(config_path: Option<&Path>, args: &RoutesArgs) -> anyhow::Result<ExitCode> {
    let loaded = Config::load_after_dotenv(config_path)?;
    let bindings = bindings(&loaded.config)?;
    let inbound = Inbound {
        channel: args.channel.clone(),
        account: args.account.clone(),
        peer: args.peer.clone(),
        guild: args.guild.clone(),
        team: args.team.clone(),
    };
    let route = bindings.route(&inbound);
    let key = exoclaw_types::SessionKey {
        agent: route.agent.clone(),
        channel: inbound.channel.clone(),
        account: inbound.account.clone(),
        peer: inbound.peer.clone(),
    };
    println!("agent:       {}", route.agent);
    println!("session key: {key}");
    if args.explain {
        println!();
        println!("{}", bindings.explain(&inbound));
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_configured_defaults_are_the_gateways_own() {
        assert_eq!(limits(&GatewayConfig::default()), Limits::default());
    }
}
