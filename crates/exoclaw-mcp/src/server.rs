//! One configured MCP server, supervised: started in the background, its tools listed (again when
//! it says they changed), restarted with backoff when it stops, stopped with exoclaw.
//!
//! A server is never waited for by a turn: until it is ready its tools are simply not offered, and
//! while it restarts they are withdrawn; a call already offered in a turn fails with a message
//! saying why.

use crate::config::{ServerConfig, Transport};
use crate::convert;
use crate::tool::McpTool;
use crate::{McpError, McpOptions};
use exoclaw_types::ToolEffect;
use rmcp::handler::client::ClientHandler;
use rmcp::model::{ClientCapabilities, ClientConfig, Implementation};
use rmcp::service::{NotificationContext, Peer, RoleClient, RunningService, ServiceExt};
use std::collections::{BTreeMap, VecDeque};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::{Duration, Instant};
use tokio::io::AsyncBufReadExt;
use tokio::sync::{Notify, watch};
use tokio_util::sync::CancellationToken;

/// Lines of a child's stderr kept for error messages.
const STDERR_LINES: usize = 12;

/// A server that stayed up this long had its restart count reset.
const STABLE: Duration = Duration::from_secs(60);

/// The longest wait between two restarts.
const MAX_BACKOFF: Duration = Duration::from_secs(60);

/// Where a server is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServerState {
    /// `enabled = false` in its table.
    Disabled,
    /// Starting, or restarting (`attempt` > 0 after a failure).
    Starting {
        /// Failed starts since it last ran for a while.
        attempt: u32,
    },
    /// Answering; its tools are offered.
    Ready,
    /// It failed to start or stopped; exoclaw tries again at `retry_at`.
    Waiting {
        /// What happened.
        error: McpError,
        /// Failed starts since it last ran for a while.
        attempt: u32,
        /// When the next start is.
        retry_at: Instant,
    },
    /// exoclaw is shutting down.
    Stopped,
}

impl ServerState {
    /// One line for `exoclaw mcp list` and for a tool call that cannot be made.
    pub fn describe(&self) -> String {
        match self {
            Self::Disabled => "disabled (enabled = false)".into(),
            Self::Starting { attempt: 0 } => "starting".into(),
            Self::Starting { attempt } => format!("restarting (attempt {})", attempt + 1),
            Self::Ready => "ready".into(),
            Self::Waiting { error, retry_at, .. } => format!(
                "down, retrying in {}s: {error}",
                retry_at.saturating_duration_since(Instant::now()).as_secs()
            ),
            Self::Stopped => "stopped".into(),
        }
    }
}

/// A tool a server lists that is not offered, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SkippedTool {
    /// The server's name for it.
    pub name: String,
    /// Why it is not offered.
    pub why: String,
}

/// What is known of a server while it runs.
struct Live {
    state: ServerState,
    peer: Option<Peer<RoleClient>>,
    /// By namespaced name; kept while the server restarts, so a call offered before finds its
    /// tool and is told why it cannot run.
    tools: BTreeMap<String, Arc<McpTool>>,
    skipped: Vec<SkippedTool>,
    /// `name version` as the server reports itself.
    identity: Option<String>,
    instructions: Option<String>,
}

/// One configured server and its supervisor's shared state.
pub(crate) struct Server {
    pub(crate) name: String,
    pub(crate) config: ServerConfig,
    pub(crate) transport: Transport,
    options: McpOptions,
    live: Mutex<Live>,
    stderr: Mutex<VecDeque<String>>,
    /// The task copying the running child's stderr into `stderr`; awaited (briefly) before an
    /// error quotes the tail, so a child that died right away has had its last words read.
    stderr_reader: Mutex<Option<tokio::task::JoinHandle<()>>>,
    list_changed: Arc<Notify>,
    /// Bumped on every state change, for those waiting for servers to settle.
    changes: watch::Sender<u64>,
    /// Where its last tool list is kept ([`McpOptions::tool_cache`]).
    cache: Option<PathBuf>,
    this: Weak<Server>,
}

/// What `connect` hands the supervisor: the connection, and the sandbox of a stdio server's
/// process (its private scratch folder lives as long as this).
type Running = (RunningService<RoleClient, Handler>, Option<exoclaw_tools::sandbox::Applied>);

impl Server {
    pub(crate) fn new(
        name: &str,
        config: ServerConfig,
        transport: Transport,
        options: McpOptions,
        changes: watch::Sender<u64>,
    ) -> Arc<Self> {
        let state = if config.enabled { ServerState::Starting { attempt: 0 } } else { ServerState::Disabled };
        let cache = options.tool_cache.as_ref().map(|dir| dir.join(cache_name(name, &config, &transport)));
        Arc::new_cyclic(|this: &Weak<Server>| Self {
            name: name.to_owned(),
            config,
            transport,
            options,
            live: Mutex::new(Live {
                state,
                peer: None,
                tools: cache.as_deref().map(|file| cached_tools(file, this)).unwrap_or_default(),
                skipped: Vec::new(),
                identity: None,
                instructions: None,
            }),
            stderr: Mutex::new(VecDeque::new()),
            stderr_reader: Mutex::new(None),
            list_changed: Arc::new(Notify::new()),
            changes,
            cache,
            this: this.clone(),
        })
    }

    fn live(&self) -> MutexGuard<'_, Live> {
        // A poisoned lock only means a panic elsewhere while it was held; the data is still usable.
        self.live.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub(crate) fn state(&self) -> ServerState {
        self.live().state.clone()
    }

    fn set_state(&self, state: ServerState) {
        let mut live = self.live();
        if state != ServerState::Ready {
            live.peer = None;
        }
        live.state = state;
        drop(live);
        self.changes.send_modify(|n| *n += 1);
    }

    /// The connection to call the server on, or why there is none.
    pub(crate) fn peer(&self) -> Result<Peer<RoleClient>, McpError> {
        let live = self.live();
        match (&live.peer, &live.state) {
            (Some(peer), ServerState::Ready) => Ok(peer.clone()),
            (_, state) => Err(McpError::Unavailable { server: self.name.clone(), why: state.describe() }),
        }
    }

    /// The connection, waiting while the server is starting (at most its startup timeout): a
    /// tool offered from the cache before the server was ready is called once it is.
    pub(crate) async fn peer_when_started(&self) -> Result<Peer<RoleClient>, McpError> {
        let mut changes = self.changes.subscribe();
        let wait = async {
            while matches!(self.state(), ServerState::Starting { .. }) {
                if changes.changed().await.is_err() {
                    break;
                }
            }
        };
        let _ = tokio::time::timeout(self.config.startup_timeout(), wait).await;
        self.peer()
    }

    /// Its tools offered now: those it listed while it is ready; while it starts, those it
    /// listed last time (from the cache), so a turn need not wait for it to offer them.
    pub(crate) fn offered(&self) -> Vec<Arc<McpTool>> {
        let live = self.live();
        match live.state {
            ServerState::Ready | ServerState::Starting { attempt: 0 } => {
                live.tools.values().cloned().collect()
            }
            _ => Vec::new(),
        }
    }

    /// Its tool `name` (namespaced), ready or not.
    pub(crate) fn tool(&self, name: &str) -> Option<Arc<McpTool>> {
        self.live().tools.get(name).cloned()
    }

    pub(crate) fn status(&self) -> crate::ServerStatus {
        let live = self.live();
        crate::ServerStatus {
            name: self.name.clone(),
            transport: self.transport.describe(),
            state: live.state.clone(),
            tools: live
                .tools
                .values()
                .map(|t| crate::ToolStatus {
                    name: t.spec.name.clone(),
                    remote_name: t.remote_name.clone(),
                    description: t.spec.description.clone(),
                    effect: t.effect,
                })
                .collect(),
            skipped: live.skipped.clone(),
            identity: live.identity.clone(),
            instructions: live.instructions.clone(),
        }
    }

    /// The last lines of a child that has failed: its stderr is read to the end first (a child
    /// that exits closes it at once; one still alive gets half a second) so that its dying
    /// words are in the message, not lost to a race with the reader.
    async fn final_stderr_tail(&self) -> Vec<String> {
        let reader = self.stderr_reader.lock().ok().and_then(|mut reader| reader.take());
        if let Some(reader) = reader {
            let _ = tokio::time::timeout(Duration::from_millis(500), reader).await;
        }
        self.stderr_tail()
    }

    /// The last lines the child wrote on stderr.
    fn stderr_tail(&self) -> Vec<String> {
        self.stderr.lock().map(|lines| lines.iter().cloned().collect()).unwrap_or_default()
    }

    /// Starts the server, keeps it running, restarts it with backoff when it stops; returns when
    /// `stop` is cancelled.
    pub(crate) async fn supervise(self: Arc<Self>, stop: CancellationToken) {
        if !self.config.enabled {
            return;
        }
        let mut attempt: u32 = 0;
        loop {
            self.set_state(ServerState::Starting { attempt });
            let started = Instant::now();
            let error = match self.connect(&stop).await {
                Ok(Some(running)) => match self.run(running, &stop).await {
                    Some(error) => error,
                    None => break,
                },
                Ok(None) => break,
                Err(error) => error,
            };
            if stop.is_cancelled() {
                break;
            }
            attempt = if started.elapsed() >= STABLE { 1 } else { attempt + 1 };
            let wait = backoff(attempt);
            tracing::warn!(server = %self.name, attempt, wait_s = wait.as_secs(), "MCP server down: {error}");
            self.set_state(ServerState::Waiting { error, attempt, retry_at: Instant::now() + wait });
            tokio::select! {
                () = tokio::time::sleep(wait) => {}
                () = stop.cancelled() => break,
            }
        }
        self.set_state(ServerState::Stopped);
    }

    /// Starts the process or opens the connection and completes the handshake; `None` when
    /// `stop` came first.
    async fn connect(&self, stop: &CancellationToken) -> Result<Option<Running>, McpError> {
        let handler = Handler { list_changed: Arc::clone(&self.list_changed) };
        let limit = self.config.startup_timeout();
        let handshake = async {
            match &self.transport {
                Transport::Stdio { command, args, env, cwd } => {
                    let mut cmd = tokio::process::Command::new(command);
                    cmd.args(args).envs(env).kill_on_drop(true);
                    if let Some(cwd) = cwd {
                        cmd.current_dir(cwd);
                    }
                    let sandboxed = match &self.options.sandbox {
                        Some(sandbox) => {
                            let mut policy =
                                self.config.sandbox.clone().unwrap_or_else(|| sandbox.policy.clone());
                            policy.hidden_paths.extend(sandbox.always_hidden.iter().cloned());
                            let workspace = cwd.as_deref().unwrap_or(&sandbox.workspace);
                            let applied =
                                policy.apply(&mut cmd, workspace).map_err(|err| McpError::Config {
                                    server: self.name.clone(),
                                    problem: format!("its sandbox cannot be set up: {err}"),
                                })?;
                            for warning in applied.warnings() {
                                tracing::warn!(server = %self.name, "{warning}");
                            }
                            Some(applied)
                        }
                        None => None,
                    };
                    let (transport, stderr) = rmcp::transport::TokioChildProcess::builder(cmd)
                        .stderr(Stdio::piped())
                        .spawn()
                        .map_err(|err| McpError::Spawn {
                            server: self.name.clone(),
                            command: self.transport.describe(),
                            reason: err.to_string(),
                        })?;
                    if let Some(stderr) = stderr {
                        self.keep_stderr(stderr);
                    }
                    match handler.serve(transport).await {
                        Ok(running) => Ok((running, sandboxed)),
                        Err(err) => Err(self.handshake_error(err.to_string()).await),
                    }
                }
                Transport::Http { url, headers, bearer } => {
                    use rmcp::transport::StreamableHttpClientTransport;
                    use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
                    let mut config = StreamableHttpClientTransportConfig::with_uri(url.as_str());
                    if let Some(token) = bearer {
                        config = config.auth_header(token.clone());
                    }
                    let mut custom = std::collections::HashMap::new();
                    for (name, value) in headers {
                        let bad = |what: &str| McpError::Config {
                            server: self.name.clone(),
                            problem: format!("the header `{name}` has an invalid {what}"),
                        };
                        custom.insert(
                            http::HeaderName::try_from(name.as_str()).map_err(|_| bad("name"))?,
                            http::HeaderValue::try_from(value.as_str()).map_err(|_| bad("value"))?,
                        );
                    }
                    let transport = StreamableHttpClientTransport::from_config(config.custom_headers(custom));
                    match handler.serve(transport).await {
                        Ok(running) => Ok((running, None)),
                        Err(err) => Err(self.handshake_error(err.to_string()).await),
                    }
                }
            }
        };
        let running = tokio::select! {
            outcome = tokio::time::timeout(limit, handshake) => match outcome {
                Ok(result) => result?,
                Err(_elapsed) => {
                    return Err(McpError::StartupTimeout {
                        server: self.name.clone(),
                        after: limit,
                        stderr: self.stderr_tail(),
                    });
                }
            },
            () = stop.cancelled() => return Ok(None),
        };
        let info = running.0.peer().peer_info();
        {
            let mut live = self.live();
            live.identity = info
                .as_ref()
                .and_then(|i| i.server_info.as_ref())
                .map(|s| format!("{} {}", s.name, s.version));
            live.instructions = info.as_ref().and_then(|i| i.instructions.clone());
        }
        let peer = running.0.peer().clone();
        tokio::time::timeout(limit, self.list_tools(&peer)).await.map_err(|_elapsed| {
            McpError::Request {
                server: self.name.clone(),
                request: "tools/list".into(),
                reason: format!("no answer within {}s", limit.as_secs()),
            }
        })??;
        Ok(Some(running))
    }

    async fn handshake_error(&self, reason: String) -> McpError {
        McpError::Handshake { server: self.name.clone(), reason, stderr: self.final_stderr_tail().await }
    }

    /// Serves a connected server until it stops (its error) or `stop` is cancelled (`None`).
    async fn run(&self, (running, _sandbox): Running, stop: &CancellationToken) -> Option<McpError> {
        let peer = running.peer().clone();
        {
            let mut live = self.live();
            live.peer = Some(peer.clone());
        }
        self.set_state_keeping_peer(ServerState::Ready);
        tracing::info!(server = %self.name, tools = self.offered().len(), "MCP server ready");
        let cancel = running.cancellation_token();
        let mut done = Box::pin(running.waiting());
        loop {
            tokio::select! {
                quit = &mut done => {
                    let reason = match quit {
                        Ok(reason) => format!("{reason:?}"),
                        Err(err) => err.to_string(),
                    };
                    return Some(McpError::Handshake {
                        server: self.name.clone(),
                        reason: format!("the connection ended ({reason})"),
                        stderr: self.final_stderr_tail().await,
                    });
                }
                () = self.list_changed.notified() => {
                    if let Err(error) = self.list_tools(&peer).await {
                        tracing::warn!(server = %self.name, "MCP tools could not be listed again: {error}");
                    }
                    self.changes.send_modify(|n| *n += 1);
                }
                () = stop.cancelled() => {
                    cancel.cancel();
                    // The child is killed when the transport closes; give it a moment to go.
                    let _ = tokio::time::timeout(Duration::from_secs(2), done).await;
                    return None;
                }
            }
        }
    }

    fn set_state_keeping_peer(&self, state: ServerState) {
        self.live().state = state;
        self.changes.send_modify(|n| *n += 1);
    }

    /// Asks the server for its tools and replaces the offered set with them.
    async fn list_tools(&self, peer: &Peer<RoleClient>) -> Result<(), McpError> {
        let listed = peer.list_all_tools().await.map_err(|err| McpError::Request {
            server: self.name.clone(),
            request: "tools/list".into(),
            reason: err.to_string(),
        })?;
        let mut tools = BTreeMap::new();
        let mut skipped = Vec::new();
        for tool in listed {
            if let Some(only) = &self.config.tools
                && !only.iter().any(|name| name == tool.name.as_ref())
            {
                continue;
            }
            match convert::spec(&self.name, &tool) {
                Ok(spec) => {
                    let effect: ToolEffect = convert::effect(tool.annotations.as_ref());
                    let remote_name = tool.name.to_string();
                    if tools.contains_key(&spec.name) {
                        skipped.push(SkippedTool {
                            name: remote_name,
                            why: format!("its exoclaw name `{}` is taken by another of its tools", spec.name),
                        });
                        continue;
                    }
                    tools.insert(
                        spec.name.clone(),
                        Arc::new(McpTool::new(self.this.clone(), remote_name, spec, effect)),
                    );
                }
                Err(why) => {
                    tracing::warn!(server = %self.name, tool = %tool.name, "MCP tool not offered: {why}");
                    skipped.push(SkippedTool { name: tool.name.to_string(), why });
                }
            }
        }
        if let Some(file) = &self.cache {
            save_cache(
                file,
                tools.values().map(|t| CachedTool {
                    remote_name: t.remote_name.clone(),
                    spec: t.spec.clone(),
                    effect: t.effect,
                }),
            );
        }
        let mut live = self.live();
        live.tools = tools;
        live.skipped = skipped;
        Ok(())
    }

    /// Keeps the last lines of the child's stderr (for error messages) and logs them at debug
    /// level; a server's chatter never reaches the user's terminal.
    fn keep_stderr(&self, stderr: tokio::process::ChildStderr) {
        let this = self.this.clone();
        if let Ok(mut kept) = self.stderr.lock() {
            kept.clear();
        }
        let reader = tokio::spawn(async move {
            let mut lines = tokio::io::BufReader::new(stderr).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                let Some(server) = this.upgrade() else { return };
                tracing::debug!(server = %server.name, "stderr: {line}");
                if let Ok(mut kept) = server.stderr.lock() {
                    if kept.len() == STDERR_LINES {
                        kept.pop_front();
                    }
                    kept.push_back(line.chars().take(300).collect());
                }
            }
        });
        if let Ok(mut slot) = self.stderr_reader.lock() {
            *slot = Some(reader);
        }
    }
}

/// One tool as the cache keeps it.
#[derive(serde::Serialize, serde::Deserialize)]
struct CachedTool {
    remote_name: String,
    spec: exoclaw_types::ToolSpec,
    effect: ToolEffect,
}

/// The cache file of a server: its name, and a hash of how it is reached and which tools are
/// taken, so a changed table starts without the old list.
fn cache_name(name: &str, config: &ServerConfig, transport: &Transport) -> String {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    transport.describe().hash(&mut hasher);
    config.tools.hash(&mut hasher);
    format!(
        "{}-{:016x}.json",
        convert::namespaced(name, "").trim_end_matches(convert::SEPARATOR),
        hasher.finish()
    )
}

/// The tools a server listed last time, or none when there is no readable cache.
fn cached_tools(file: &Path, server: &Weak<Server>) -> BTreeMap<String, Arc<McpTool>> {
    let Ok(text) = std::fs::read_to_string(file) else { return BTreeMap::new() };
    let Ok(cached) = serde_json::from_str::<Vec<CachedTool>>(&text) else {
        tracing::debug!(file = %file.display(), "an unreadable MCP tool cache is ignored");
        return BTreeMap::new();
    };
    cached
        .into_iter()
        .map(|t| {
            (t.spec.name.clone(), Arc::new(McpTool::new(server.clone(), t.remote_name, t.spec, t.effect)))
        })
        .collect()
}

/// Keeps a server's tool list for its next start; a failure only costs that start its head start.
fn save_cache(file: &Path, tools: impl Iterator<Item = CachedTool>) {
    let tools: Vec<CachedTool> = tools.collect();
    let write = || -> std::io::Result<()> {
        if let Some(dir) = file.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let tmp = file.with_extension("json.tmp");
        std::fs::write(&tmp, serde_json::to_vec(&tools)?)?;
        std::fs::rename(&tmp, file)
    };
    if let Err(err) = write() {
        tracing::debug!(file = %file.display(), "the MCP tool cache could not be written: {err}");
    }
}

/// 1 s, 2 s, 4 s … up to [`MAX_BACKOFF`].
fn backoff(attempt: u32) -> Duration {
    Duration::from_secs(1u64 << attempt.saturating_sub(1).min(6)).min(MAX_BACKOFF)
}

/// exoclaw's side of a connection: it answers the server's requests with rmcp's defaults and
/// wakes the supervisor when the server's tool list changes.
#[derive(Clone)]
pub(crate) struct Handler {
    list_changed: Arc<Notify>,
}

impl ClientHandler for Handler {
    fn on_tool_list_changed(
        &self,
        _context: NotificationContext<RoleClient>,
    ) -> impl Future<Output = ()> + rmcp::service::MaybeSendFuture + '_ {
        self.list_changed.notify_one();
        std::future::ready(())
    }

    fn get_info(&self) -> ClientConfig {
        ClientConfig::new(
            ClientCapabilities::default(),
            Implementation::new("exoclaw", env!("CARGO_PKG_VERSION")),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_a_minute() {
        let waits: Vec<u64> = (1..=9).map(|a| backoff(a).as_secs()).collect();
        assert_eq!(waits, [1, 2, 4, 8, 16, 32, 60, 60, 60]);
    }
}
