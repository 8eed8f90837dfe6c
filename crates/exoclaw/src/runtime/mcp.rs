//! The runtime's MCP servers: the `[mcp.NAME]` tables started in the background, their tools a
//! source in the registry every agent with tools draws from.

use crate::config::Config;
use exoclaw_mcp::{McpError, McpOptions, McpServers, ServerSandbox};

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
