//! `[mcp.NAME]`: how to reach one MCP server — a command exoclaw starts and talks to over stdio,
//! or the URL of a streamable-HTTP server — and how long to wait for it.
//!
//! ```toml
//! [mcp.files]
//! command = "npx"
//! args = ["-y", "@modelcontextprotocol/server-filesystem", "/home/me/notes"]
//!
//! [mcp.github]
//! url = "https://mcp.example.com/mcp"
//! bearer_token_env = "GITHUB_TOKEN"   # the token stays in the environment, not in this file
//! ```

use crate::McpError;
use exoclaw_tools::sandbox::SandboxPolicy;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

/// How long a server may take to answer `initialize` when no `startup_timeout_secs` is set.
pub const DEFAULT_STARTUP_TIMEOUT: Duration = Duration::from_secs(30);

/// How long one tool call may take when no `tool_timeout_secs` is set.
pub const DEFAULT_TOOL_TIMEOUT: Duration = Duration::from_secs(120);

/// One `[mcp.NAME]` table, as written. [`ServerConfig::transport`] checks it.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    /// The program that starts a stdio server (`npx`, `uvx`, a path).
    pub command: Option<String>,
    /// Its arguments.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub args: Vec<String>,
    /// Variables added to the environment it inherits.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, String>,
    /// The folder it starts in; exoclaw's current folder when unset.
    pub cwd: Option<PathBuf>,
    /// The endpoint of a streamable-HTTP server.
    pub url: Option<String>,
    /// Headers sent with every request to `url`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, String>,
    /// An environment variable holding a token sent as `Authorization: Bearer …` to `url`.
    pub bearer_token_env: Option<String>,
    /// Whether exoclaw starts it (default true): `false` keeps the table without using it.
    #[serde(default = "yes", skip_serializing_if = "is_true")]
    pub enabled: bool,
    /// Seconds to wait for the server to answer `initialize` (default 30).
    pub startup_timeout_secs: Option<u64>,
    /// Seconds one tool call may take (default 120).
    pub tool_timeout_secs: Option<u64>,
    /// Only these of its tools (by the server's names); all of them when unset.
    pub tools: Option<Vec<String>>,
    /// The sandbox a stdio server runs in, instead of `[sandbox]`'s: `{ network = true }` for one
    /// that calls an API, `{ mode = "full-access" }` for one that must write anywhere.
    pub sandbox: Option<SandboxPolicy>,
    /// The baskets its tools are filed in, besides `mcp` and `mcp/NAME` (`["code/github"]`), for
    /// `exoclaw tools --basket` and agents' `baskets`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub baskets: Vec<exoclaw_tools::baskets::Basket>,
}

fn yes() -> bool {
    true
}

fn is_true(value: &bool) -> bool {
    *value
}

/// Header and environment values may hold keys: they are never printed.
impl std::fmt::Debug for ServerConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerConfig")
            .field("command", &self.command)
            .field("args", &self.args)
            .field("env", &self.env.keys().collect::<Vec<_>>())
            .field("url", &self.url)
            .field("headers", &self.headers.keys().collect::<Vec<_>>())
            .field("bearer_token_env", &self.bearer_token_env)
            .field("enabled", &self.enabled)
            .field("baskets", &self.baskets)
            .finish_non_exhaustive()
    }
}

/// How exoclaw reaches a server, checked.
#[derive(Clone, PartialEq, Eq)]
pub enum Transport {
    /// A child process speaking JSON-RPC on its stdin and stdout.
    Stdio {
        /// The program.
        command: String,
        /// Its arguments.
        args: Vec<String>,
        /// Variables added to its environment.
        env: BTreeMap<String, String>,
        /// Where it starts.
        cwd: Option<PathBuf>,
    },
    /// A streamable-HTTP endpoint.
    Http {
        /// The URL.
        url: String,
        /// Extra headers.
        headers: BTreeMap<String, String>,
        /// The bearer token, read from the environment.
        bearer: Option<String>,
    },
}

impl std::fmt::Debug for Transport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Stdio { command, args, .. } => {
                f.debug_struct("Stdio").field("command", command).field("args", args).finish_non_exhaustive()
            }
            Self::Http { url, .. } => f.debug_struct("Http").field("url", url).finish_non_exhaustive(),
        }
    }
}

impl Transport {
    /// What it is, for `exoclaw mcp list`: the command line or the URL.
    pub fn describe(&self) -> String {
        match self {
            Self::Stdio { command, args, .. } => std::iter::once(command.as_str())
                .chain(args.iter().map(String::as_str))
                .collect::<Vec<_>>()
                .join(" "),
            Self::Http { url, .. } => url.clone(),
        }
    }
}

impl ServerConfig {
    /// A stdio server started with `command` and `args`.
    pub fn stdio(command: impl Into<String>, args: impl IntoIterator<Item = impl Into<String>>) -> Self {
        Self {
            command: Some(command.into()),
            args: args.into_iter().map(Into::into).collect(),
            enabled: true,
            ..Self::default()
        }
    }

    /// A streamable-HTTP server at `url`.
    pub fn http(url: impl Into<String>) -> Self {
        Self { url: Some(url.into()), enabled: true, ..Self::default() }
    }

    /// How to reach server `name`: exactly one of `command` and `url`, with only the settings
    /// that go with it; a bearer token's variable must be set.
    pub fn transport(&self, name: &str) -> Result<Transport, McpError> {
        let bad = |problem: String| McpError::Config { server: name.to_owned(), problem };
        match (&self.command, &self.url) {
            (Some(command), None) => {
                if !self.headers.is_empty() || self.bearer_token_env.is_some() {
                    return Err(bad("`headers` and `bearer_token_env` go with `url`, not `command`".into()));
                }
                if command.trim().is_empty() {
                    return Err(bad("`command` is empty".into()));
                }
                Ok(Transport::Stdio {
                    command: command.clone(),
                    args: self.args.clone(),
                    env: self.env.clone(),
                    cwd: self.cwd.clone(),
                })
            }
            (None, Some(url)) => {
                if !self.args.is_empty()
                    || !self.env.is_empty()
                    || self.cwd.is_some()
                    || self.sandbox.is_some()
                {
                    return Err(
                        bad("`args`, `env`, `cwd` and `sandbox` go with `command`, not `url`".into()),
                    );
                }
                if !(url.starts_with("http://") || url.starts_with("https://")) {
                    return Err(bad(format!("`url` must start with http:// or https://, not `{url}`")));
                }
                let bearer = match &self.bearer_token_env {
                    None => None,
                    Some(var) => match std::env::var(var) {
                        Ok(token) if !token.is_empty() => Some(token),
                        _ => {
                            return Err(bad(format!(
                                "`bearer_token_env` names `{var}`, which is not set: export it, or remove the setting"
                            )));
                        }
                    },
                };
                Ok(Transport::Http { url: url.clone(), headers: self.headers.clone(), bearer })
            }
            (Some(_), Some(_)) => Err(bad("set either `command` (a stdio server) or `url`, not both".into())),
            (None, None) => {
                Err(bad("set `command` (a stdio server exoclaw starts) or `url` (a streamable-HTTP server)"
                    .into()))
            }
        }
    }

    /// How long to wait for `initialize`.
    pub fn startup_timeout(&self) -> Duration {
        self.startup_timeout_secs.map_or(DEFAULT_STARTUP_TIMEOUT, Duration::from_secs)
    }

    /// How long one tool call may take.
    pub fn tool_timeout(&self) -> Duration {
        self.tool_timeout_secs.map_or(DEFAULT_TOOL_TIMEOUT, Duration::from_secs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pretty_assertions::assert_eq;

    fn parse(toml: &str) -> ServerConfig {
        serde_json::from_value(serde_json::from_str(toml).unwrap()).unwrap()
    }

    #[test]
    fn a_command_makes_a_stdio_server() {
        let config = ServerConfig::stdio("node", ["server.js", "stdio"]);
        let transport = config.transport("everything").unwrap();
        assert_eq!(transport.describe(), "node server.js stdio");
        assert!(config.enabled);
    }

    #[test]
    fn both_or_neither_of_command_and_url_is_refused_with_the_servers_name() {
        let both = ServerConfig { url: Some("http://x/mcp".into()), ..ServerConfig::stdio("node", ["a"]) };
        let err = both.transport("files").unwrap_err().to_string();
        assert!(err.contains("[mcp.files]") && err.contains("not both"), "{err}");
        let neither = ServerConfig::default();
        assert!(neither.transport("files").unwrap_err().to_string().contains("set `command`"));
    }

    #[test]
    fn settings_of_the_other_transport_are_refused() {
        let config = ServerConfig { args: vec!["x".into()], ..ServerConfig::http("https://x/mcp") };
        assert!(config.transport("gh").unwrap_err().to_string().contains("go with `command`"));
        let config =
            ServerConfig { bearer_token_env: Some("T".into()), ..ServerConfig::stdio("node", ["a"]) };
        assert!(config.transport("gh").unwrap_err().to_string().contains("go with `url`"));
    }

    #[test]
    fn a_missing_bearer_token_variable_is_named() {
        let config = ServerConfig {
            bearer_token_env: Some("EXOCLAW_TEST_NO_SUCH_TOKEN".into()),
            ..ServerConfig::http("https://x/mcp")
        };
        let err = config.transport("gh").unwrap_err().to_string();
        assert!(err.contains("EXOCLAW_TEST_NO_SUCH_TOKEN") && err.contains("not set"), "{err}");
    }

    #[test]
    fn unknown_keys_are_refused_and_defaults_fill_the_rest() {
        let config = parse(r#"{"command": "node", "args": ["a"]}"#);
        assert!(config.enabled);
        assert_eq!(config.startup_timeout(), DEFAULT_STARTUP_TIMEOUT);
        assert_eq!(config.tool_timeout(), DEFAULT_TOOL_TIMEOUT);
        let typo = serde_json::from_str::<ServerConfig>(r#"{"comand": "node"}"#);
        assert!(typo.is_err());
    }

    #[test]
    fn debug_output_never_shows_header_or_environment_values() {
        let mut config = ServerConfig::http("https://x/mcp");
        config.headers.insert("Authorization".into(), "Bearer sk-secret".into());
        let mut stdio = ServerConfig::stdio("node", ["a"]);
        stdio.env.insert("API_KEY".into(), "sk-other".into());
        let shown = format!("{config:?} {stdio:?} {:?}", config.transport("x"));
        assert!(!shown.contains("sk-secret") && !shown.contains("sk-other"), "{shown}");
        assert!(shown.contains("Authorization") && shown.contains("API_KEY"));
    }
}
