//! exoclaw and the Model Context Protocol, on rmcp (the official Rust SDK).
//!
//! **Client** — [`McpServers`] runs the servers of `[mcp.NAME]` tables ([`ServerConfig`]): each is
//! started in the background (a turn never waits for a slow one), its tools are offered under
//! namespaced names (`server__tool`) once it is ready, listed again when it sends
//! `notifications/tools/list_changed`, and withdrawn while it is down; a server that stops is
//! restarted with backoff (1 s, 2 s, 4 s … a minute). Each call has the server's timeout and is
//! cancelled (`notifications/cancelled`) with the turn. `McpServers` is a
//! [`ToolSource`](exoclaw_core::ToolSource): register it in a `ToolRegistry` and every turn sees the
//! servers' current tools. A server's resources and prompts are readable too.
//!
//! A tool's [`ToolEffect`](exoclaw_types::ToolEffect) comes from its annotations
//! ([`convert::effect`]): only a tool that says it is read-only runs without asking by default.
//! A tool whose input schema is not valid JSON Schema is not offered, and `exoclaw mcp list` says
//! why; the server's other tools are.

mod config;
pub mod convert;
mod error;
pub mod serve;
mod server;
mod tool;

pub use config::{DEFAULT_STARTUP_TIMEOUT, DEFAULT_TOOL_TIMEOUT, ServerConfig, Transport};
pub use error::McpError;
pub use exoclaw_tools::sandbox::{SandboxMode, SandboxPolicy};
pub use serve::{ExoclawServer, MCP_ASK_HINT, MCP_AUDIT_AGENT};
pub use server::{ServerState, SkippedTool};
pub use tool::McpTool;

use exoclaw_core::{Tool, ToolSource};
use exoclaw_types::ToolEffect;
use server::Server;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// The sandbox stdio servers run in, unless their table sets their own `sandbox`.
#[derive(Debug, Clone)]
pub struct ServerSandbox {
    /// The policy (`[sandbox]`), with exoclaw's home among its hidden paths.
    pub policy: SandboxPolicy,
    /// The folder they may write in `workspace-write` (a server's `cwd` when it has one).
    pub workspace: std::path::PathBuf,
    /// Paths hidden from every server whatever its own policy says (exoclaw's home).
    pub always_hidden: Vec<std::path::PathBuf>,
}

/// How servers are started.
#[derive(Debug, Clone, Default)]
pub struct McpOptions {
    /// The sandbox of stdio servers; `None`: they run with exoclaw's own rights and environment.
    pub sandbox: Option<ServerSandbox>,
    /// A folder where each server's last tool list is kept: on the next start its tools are
    /// offered at once, before it is ready (a call waits for it), so even a one-shot chat's first
    /// turn has them. `None`: a server's tools are offered only once it is ready.
    pub tool_cache: Option<std::path::PathBuf>,
}

/// A server as `exoclaw mcp list` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerStatus {
    /// Its name in the config.
    pub name: String,
    /// Its command line or URL.
    pub transport: String,
    /// Where it is.
    pub state: ServerState,
    /// Its tools, as last listed (offered only while it is ready).
    pub tools: Vec<ToolStatus>,
    /// Tools it lists that are not offered, and why.
    pub skipped: Vec<SkippedTool>,
    /// `name version`, as it reports itself.
    pub identity: Option<String>,
    /// What it tells clients about using it.
    pub instructions: Option<String>,
}

/// One of a server's tools.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ToolStatus {
    /// Its name for the model (`server__tool`).
    pub name: String,
    /// The server's own name for it.
    pub remote_name: String,
    /// What it does.
    pub description: String,
    /// What it does to the world, from its annotations.
    pub effect: ToolEffect,
}

/// A resource a server offers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResourceInfo {
    /// Its URI, to read it with.
    pub uri: String,
    /// Its name.
    pub name: String,
    /// What it is.
    pub description: Option<String>,
    /// Its type.
    pub mime_type: Option<String>,
}

/// A prompt a server offers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PromptInfo {
    /// Its name.
    pub name: String,
    /// What it is for.
    pub description: Option<String>,
    /// Its arguments: name and whether it is required.
    pub arguments: Vec<(String, bool)>,
}

/// The configured MCP servers, each supervised in the background. Dropping it stops them all.
pub struct McpServers {
    servers: BTreeMap<String, Arc<Server>>,
    stop: CancellationToken,
    tasks: TaskTracker,
    changes: watch::Receiver<u64>,
}

impl std::fmt::Debug for McpServers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.servers.keys()).finish()
    }
}

impl McpServers {
    /// Checks every table and starts every enabled server in the background; returns at once.
    /// A table that does not say how to reach its server is an error here, before anything starts.
    /// Must be called within a Tokio runtime.
    pub fn start(configs: &BTreeMap<String, ServerConfig>, options: McpOptions) -> Result<Self, McpError> {
        let mut checked = Vec::with_capacity(configs.len());
        for (name, config) in configs {
            if name.is_empty() || name.contains(convert::SEPARATOR) {
                return Err(McpError::Config {
                    server: name.clone(),
                    problem: format!(
                        "a server's name must be non-empty and not contain `{}`",
                        convert::SEPARATOR
                    ),
                });
            }
            checked.push((name, config, config.transport(name)?));
        }
        let (tx, changes) = watch::channel(0);
        let stop = CancellationToken::new();
        let tasks = TaskTracker::new();
        let mut servers = BTreeMap::new();
        for (name, config, transport) in checked {
            let server = Server::new(name, config.clone(), transport, options.clone(), tx.clone());
            tasks.spawn(Arc::clone(&server).supervise(stop.child_token()));
            servers.insert(name.clone(), server);
        }
        tasks.close();
        Ok(Self { servers, stop, tasks, changes })
    }

    /// Whether no server is configured.
    pub fn is_empty(&self) -> bool {
        self.servers.is_empty()
    }

    /// Every server's state and tools, by name.
    pub fn status(&self) -> Vec<ServerStatus> {
        self.servers.values().map(|server| server.status()).collect()
    }

    /// Waits, at most `limit`, until no server is on its first start: each is ready, down or
    /// disabled. For `exoclaw mcp list` and tests; turns never wait.
    pub async fn settled(&self, limit: Duration) {
        let mut changes = self.changes.clone();
        let settled = async {
            loop {
                let starting = self
                    .servers
                    .values()
                    .any(|server| matches!(server.state(), ServerState::Starting { attempt: 0 }));
                if !starting || changes.changed().await.is_err() {
                    return;
                }
            }
        };
        let _ = tokio::time::timeout(limit, settled).await;
    }

    /// Waits, at most `limit`, until server `name` is ready; its state then.
    pub async fn ready(&self, name: &str, limit: Duration) -> Result<ServerState, McpError> {
        let server = self.server(name)?;
        let mut changes = self.changes.clone();
        let ready = async {
            while server.state() != ServerState::Ready {
                if changes.changed().await.is_err() {
                    break;
                }
            }
        };
        let _ = tokio::time::timeout(limit, ready).await;
        Ok(server.state())
    }

    /// Stops every server (killing the stdio ones) and waits for them to go.
    pub async fn shutdown(&self) {
        self.stop.cancel();
        self.tasks.wait().await;
    }

    fn server(&self, name: &str) -> Result<&Arc<Server>, McpError> {
        self.servers.get(name).ok_or_else(|| McpError::UnknownServer {
            server: name.to_owned(),
            known: match self.servers.keys().map(String::as_str).collect::<Vec<_>>().join(", ") {
                known if known.is_empty() => "none".into(),
                known => known,
            },
        })
    }

    fn request_error(server: &str, request: &str, err: impl std::fmt::Display) -> McpError {
        McpError::Request { server: server.to_owned(), request: request.to_owned(), reason: err.to_string() }
    }

    /// The resources server `name` offers.
    pub async fn resources(&self, name: &str) -> Result<Vec<ResourceInfo>, McpError> {
        let peer = self.server(name)?.peer()?;
        let listed =
            peer.list_all_resources().await.map_err(|e| Self::request_error(name, "resources/list", e))?;
        Ok(listed
            .into_iter()
            .map(|r| ResourceInfo {
                uri: r.uri.clone(),
                name: r.name.clone(),
                description: r.description.clone(),
                mime_type: r.mime_type.clone(),
            })
            .collect())
    }

    /// The contents of server `name`'s resource `uri`, as text.
    pub async fn read_resource(&self, name: &str, uri: &str) -> Result<String, McpError> {
        let peer = self.server(name)?.peer()?;
        let read = peer
            .read_resource(rmcp::model::ReadResourceRequestParams::new(uri))
            .await
            .map_err(|e| Self::request_error(name, "resources/read", e))?;
        Ok(read.contents.iter().map(convert::resource_text).collect::<Vec<_>>().join("\n"))
    }

    /// The prompts server `name` offers.
    pub async fn prompts(&self, name: &str) -> Result<Vec<PromptInfo>, McpError> {
        let peer = self.server(name)?.peer()?;
        let listed =
            peer.list_all_prompts().await.map_err(|e| Self::request_error(name, "prompts/list", e))?;
        Ok(listed
            .into_iter()
            .map(|p| PromptInfo {
                name: p.name.to_string(),
                description: p.description.clone(),
                arguments: p
                    .arguments
                    .unwrap_or_default()
                    .into_iter()
                    .map(|a| (a.name, a.required.unwrap_or(false)))
                    .collect(),
            })
            .collect())
    }

    /// Server `name`'s prompt `prompt` with `arguments`, as text: each message's role and text.
    pub async fn prompt(
        &self,
        name: &str,
        prompt: &str,
        arguments: BTreeMap<String, String>,
    ) -> Result<String, McpError> {
        let peer = self.server(name)?.peer()?;
        let mut params = rmcp::model::GetPromptRequestParams::new(prompt.to_owned());
        if !arguments.is_empty() {
            params = params.with_arguments(
                arguments.into_iter().map(|(k, v)| (k, serde_json::Value::String(v))).collect(),
            );
        }
        let got = peer.get_prompt(params).await.map_err(|e| Self::request_error(name, "prompts/get", e))?;
        let lines: Vec<String> = got
            .messages
            .iter()
            .map(|m| {
                let role = serde_json::to_value(&m.role).ok().and_then(|r| r.as_str().map(str::to_owned));
                format!("{}: {}", role.unwrap_or_default(), convert::block_text(&m.content))
            })
            .collect();
        Ok(lines.join("\n"))
    }
}

impl Drop for McpServers {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

impl ToolSource for McpServers {
    fn tools(&self) -> Vec<Arc<dyn Tool>> {
        self.servers.values().flat_map(|server| server.offered()).map(|tool| tool as Arc<dyn Tool>).collect()
    }

    fn get(&self, name: &str) -> Option<Arc<dyn Tool>> {
        let (server, _) = name.split_once(convert::SEPARATOR)?;
        // Names are cleaned for the vendors, so look in every server whose cleaned name matches.
        self.servers
            .values()
            .filter(|s| convert::namespaced(&s.name, "").trim_end_matches(convert::SEPARATOR) == server)
            .find_map(|s| s.tool(name))
            .map(|tool| tool as Arc<dyn Tool>)
    }
}
