//! `exoclaw gateway`: the gateway daemon — the OpenAI-compatible `/v1` API, the WebSocket
//! JSON-RPC protocol and webhooks in front of the configured providers and agents — and
//! `exoclaw gateway routes --explain`, which says which agent a conversation would reach.

#![allow(clippy::print_stdout, clippy::print_stderr)]

mod models;

use crate::app::App;
use anyhow::Context;
use exoclaw::config::{Config, GatewayConfig};
use exoclaw::runtime::{Runtime, bindings};
use exoclaw_core::{AgentRuntime, ProviderHealth, ProviderHealthStore};
use exoclaw_gateway::metrics::Metrics;
use exoclaw_gateway::webhook::Webhooks;
use exoclaw_gateway::{Gateway, Limits, TokenSet};
use exoclaw_types::Inbound;
use models::RuntimeModels;
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
    let settings = app.config().gateway.clone();
    let bind: SocketAddr = match args.bind {
        Some(bind) => bind,
        None => settings.bind.parse().with_context(|| {
            format!("[gateway] bind = {:?} is not an address; write it as 127.0.0.1:7878", settings.bind)
        })?,
    };
    // What the agents' turns do is counted into the gateway's metrics by the runtime itself.
    let metrics = Metrics::new();
    let turns = metrics.turn_metrics();
    // The agents: the default one and every [agents.NAME]. Tools are off unless an agent's
    // profile turns them on; with nobody to approve a change, tools that would ask are refused.
    let runtime = Runtime::builder()
        .config(app.config().clone())
        .store(app.store.clone())
        .approver(Arc::new(crate::approve::Daemon))
        .home(app.loaded.home.clone())
        .session_queue(settings.session_queue)
        .every_agent(|spec| spec.tools = Some(spec.tools.unwrap_or(false)))
        .monitor(turns.clone())
        .hook(turns)
        .build()
        .await?;
    let store = Arc::new(app.store.clone());
    let has_keys = !exoclaw_core::KeyStore::list_keys(&*store).await?.is_empty();
    let models = RuntimeModels::new(Arc::clone(runtime.models()), Arc::new(app.config().clone()));
    let mut builder = Gateway::builder(Arc::new(models))
        .tokens(TokenSet::from_hashes(&settings.token_hashes)?)
        .runtime(Arc::new(runtime.clone()) as Arc<dyn AgentRuntime>)
        .store(store.clone(), store.clone())
        .metering(Arc::clone(runtime.metering()))
        .metrics(metrics)
        .limits(limits(&settings))
        .allowed_origins(settings.allowed_origins.clone())
        .webhooks(
            runtime
                .webhooks()
                .into_iter()
                .fold(Webhooks::new(), |hooks, (channel, hook)| hooks.with(channel, hook)),
        );
    // `memory.*` reads and prunes the memory the agents' turns use.
    if let Some(memory) = runtime.memory() {
        builder = builder.memory(Arc::clone(memory));
    }
    // Without any key made, a loopback gateway with no token stays open until the first key is
    // made (it notices within a second); from then on every request needs one (or an operator
    // token).
    builder = if has_keys { builder.keys(store.clone()) } else { builder.keys_once_made(store.clone()) };
    let mcp_stop = tokio_util::sync::CancellationToken::new();
    if settings.mcp {
        let server = runtime.mcp_server(true).context("the runtime has no default agent")?;
        builder = builder.mcp(server.streamable_http(mcp_stop.clone()));
    }
    let gateway = Arc::new(builder.build());
    // Channels that hold a connection (Discord's Gateway) live as long as the gateway.
    runtime.start_channels(&gateway.shutdown_token());
    // Keyless servers (ollama, llama.cpp, model managers) are checked in the background, so a
    // dead one's breaker opens before a request finds out and a revived one's closes.
    // Each round is recorded in the store, where `exoclaw providers status` shows it.
    let health_store = Arc::clone(&store);
    runtime.models().router().spawn_health_checks(
        HEALTH_CHECK_INTERVAL,
        gateway.shutdown_token(),
        move |round| {
            let checked_at = chrono::Utc::now();
            let checks: Vec<ProviderHealth> = round
                .into_iter()
                .map(|check| ProviderHealth { provider: check.provider, checked_at, error: check.error })
                .collect();
            let store = Arc::clone(&health_store);
            tokio::spawn(async move {
                if let Err(e) = store.record_provider_health(&checks).await {
                    tracing::warn!(error = %e, "could not record the providers' health checks");
                }
            });
        },
    );
    resume_interrupted(&runtime).await;
    let listener = tokio::net::TcpListener::bind(bind).await.with_context(|| {
        format!("cannot listen on {bind}; is another program using it? Choose another with --bind")
    })?;
    let addr = listener.local_addr()?;
    exoclaw_gateway::check_bind(addr, gateway.requires_auth())?;
    let threads = tokio::runtime::Handle::current().metrics().num_workers();
    eprintln!(
        "exoclaw gateway listening on http://{addr} (OpenAI-compatible: http://{addr}/v1, WebSocket: ws://{addr}/ws{}){}; {threads} serving thread{}",
        if settings.mcp { format!(", MCP: http://{addr}/mcp") } else { String::new() },
        if gateway.requires_auth() { "" } else { "; no token needed on loopback" },
        if threads == 1 { "" } else { "s" }
    );
    spawn_reloader(Arc::clone(&gateway), app.loaded.path.clone(), config_path.map(Path::to_path_buf));
    let served = exoclaw_gateway::serve(listener, gateway, shutdown_signal()).await;
    mcp_stop.cancel();
    served?;
    runtime.stop();
    // The audit log's last entries (and other background work) before the store closes.
    runtime.settle(Duration::from_secs(5)).await;
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

/// How often keyless provider servers get a health check while the gateway runs.
const HEALTH_CHECK_INTERVAL: Duration = Duration::from_secs(30);

/// Finishes, in the background, the turns of the gateway's sessions that a previous run left
/// interrupted (killed mid-turn): each continues from its last checkpoint.
async fn resume_interrupted(runtime: &Runtime) {
    let sessions = match runtime.interrupted_sessions().await {
        Ok(sessions) => sessions,
        Err(e) => {
            tracing::error!(error = %e, "cannot list interrupted turns");
            return;
        }
    };
    for session in sessions {
        let keyed = exoclaw_core::SessionStore::session(runtime.store(), session).await.ok().flatten();
        let Some(key) = keyed.and_then(|info| info.key) else { continue };
        match runtime.submit(exoclaw_core::Target::Key(key), exoclaw_core::TurnInput::resume()) {
            Ok(handle) => {
                eprintln!("exoclaw gateway: resuming the interrupted turn of session {session}");
                tokio::spawn(async move {
                    if let Err(e) = handle.report().await {
                        tracing::error!(%session, error = %e, "could not resume an interrupted turn");
                    }
                });
            }
            Err(e) => tracing::error!(%session, error = %e, "could not resume an interrupted turn"),
        }
    }
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
                .and_then(|l| bindings(&l.config).map_err(anyhow::Error::from))
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
