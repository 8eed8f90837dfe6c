//! The runtime's MCP servers: the `[mcp.NAME]` tables started in the background, their tools a
//! source in the registry every agent with tools draws from; and the runtime as an MCP server
//! ([`Runtime::mcp_server`]) for `exoclaw mcp serve` and the gateway's `/mcp`.

use super::{DEFAULT_AGENT_NAME, Runtime};
use crate::config::Config;
use exoclaw_core::AgentRuntime;
use exoclaw_core::runtime::ExposedTools;
use exoclaw_mcp::{
    ExoclawServer, MCP_ASK_HINT, MCP_AUDIT_AGENT, McpError, McpOptions, McpServers, ServerSandbox,
};
use std::sync::Arc;

/// The folder in exoclaw's home where each server's last tool list is kept, so that its tools
/// are offered from the first turn of the next run, before it is ready.
pub const TOOL_CACHE_DIR: &str = "mcp-tools";

/// Starts the configured `[mcp.NAME]` servers as a runtime does (returns at once; each becomes
/// ready in the background): for tools like `exoclaw mcp list` that need the servers but not a
/// whole runtime. Stdio servers run in `[sandbox]` (or their own `sandbox`), with the current
/// folder (or their `cwd`) as the folder they may write, and exoclaw's files hidden.
pub fn start_mcp_servers(config: &Config) -> Result<McpServers, McpError> {
    let sandbox = ServerSandbox {
        policy: super::sandbox::sandbox_policy(config),
        workspace: std::env::current_dir().unwrap_or_else(|_| std::env::temp_dir()),
        always_hidden: super::sandbox::private_paths(config),
    };
    let options = McpOptions {
        sandbox: Some(sandbox),
        tool_cache: crate::config::load::home_dir().ok().map(|home| home.join(TOOL_CACHE_DIR)),
    };
    McpServers::start(&config.mcp, options)
}

impl Runtime {
    /// exoclaw as an MCP server: the runtime's tools as the default agent's permissions allow them
    /// (configuration, the workspace's rules, answers kept "always", `--yes`), working in its
    /// workspace, each call recorded in the audit log; and each agent as `ask_NAME` when `agents`.
    /// `None` only for a runtime without a default agent.
    pub fn mcp_server(&self, agents: bool) -> Option<ExoclawServer> {
        let tools = self.exposed_tools(MCP_AUDIT_AGENT, MCP_ASK_HINT)?;
        Some(ExoclawServer::new(tools, agents.then(|| Arc::new(self.clone()) as Arc<dyn AgentRuntime>)))
    }

    /// The runtime's tools for a caller outside a turn (`caller` in the audit log), as the default
    /// agent's permissions allow them without asking, working in its workspace; `ask_hint` says how
    /// to let a refused call run. `None` only for a runtime without a default agent.
    pub fn exposed_tools(&self, caller: &str, ask_hint: &str) -> Option<ExposedTools> {
        let agent = self.agent(DEFAULT_AGENT_NAME)?;
        Some(ExposedTools {
            tools: self.inner.tools.clone(),
            permissions: agent.runner.permissions().clone(),
            workspace: agent.workspace.clone(),
            audit: Arc::clone(&self.inner.audit),
            caller: caller.to_owned(),
            ask_hint: ask_hint.to_owned(),
        })
    }
}
