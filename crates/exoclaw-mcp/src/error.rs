//! What can go wrong with an MCP server, each naming the server and saying what to do.

use std::time::Duration;

/// Why an MCP server could not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum McpError {
    /// Its `[mcp.NAME]` table does not say how to reach it.
    #[error("[mcp.{server}]: {problem}")]
    Config {
        /// The server.
        server: String,
        /// What is wrong, and what to write instead.
        problem: String,
    },
    /// Its command could not be started.
    #[error(
        "the MCP server `{server}` could not be started (`{command}`): {reason}; check `command` in [mcp.{server}] \
         (is the program installed and on PATH?)"
    )]
    Spawn {
        /// The server.
        server: String,
        /// The command line.
        command: String,
        /// The operating system's reason.
        reason: String,
    },
    /// It did not complete the MCP handshake: it exited, printed something that is not MCP, or
    /// refused the connection.
    #[error("the MCP server `{server}` did not complete the MCP handshake: {reason}{}", stderr_tail(.stderr))]
    Handshake {
        /// The server.
        server: String,
        /// What went wrong.
        reason: String,
        /// The last lines it wrote on stderr, when it is a child process.
        stderr: Vec<String>,
    },
    /// It did not answer `initialize` in time.
    #[error(
        "the MCP server `{server}` did not answer `initialize` within {}s; it may be downloading something \
         or waiting for input — raise startup_timeout_secs in [mcp.{server}], or run its command by hand to \
         see what it does{}",
        .after.as_secs(),
        stderr_tail(.stderr)
    )]
    StartupTimeout {
        /// The server.
        server: String,
        /// How long exoclaw waited.
        after: Duration,
        /// The last lines it wrote on stderr.
        stderr: Vec<String>,
    },
    /// It answered a request with something exoclaw cannot use.
    #[error("the MCP server `{server}` answered `{request}` with an error: {reason}")]
    Request {
        /// The server.
        server: String,
        /// The MCP method.
        request: String,
        /// Its error, or why its answer could not be used.
        reason: String,
    },
    /// It is not running now (starting, or restarting after it stopped).
    #[error("the MCP server `{server}` is not available: {why}")]
    Unavailable {
        /// The server.
        server: String,
        /// Its state.
        why: String,
    },
    /// No server of that name is configured.
    #[error("no MCP server is called `{server}`; configured: {known}")]
    UnknownServer {
        /// The name asked for.
        server: String,
        /// The configured names.
        known: String,
    },
}

fn stderr_tail(lines: &[String]) -> String {
    match lines {
        [] => String::new(),
        lines => format!("; its last output on stderr:\n  {}", lines.join("\n  ")),
    }
}
