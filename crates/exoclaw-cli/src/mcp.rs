//! `exoclaw mcp list|resources|read|prompts|prompt`: the configured MCP servers, their state and
//! tools, and what they offer besides tools.
//!
//! These start the servers the same way a runtime does ([`exoclaw::runtime::start_mcp_servers`])
//! but open no model and no session store. Servers' texts are untrusted: control characters are
//! escaped on the way to the terminal.

#![allow(clippy::print_stdout)]

use crate::TurnArgs;
use crate::app::App;
use crate::output::{self, escape_untrusted};
use anyhow::{Context, bail};
use exoclaw::config::Config;
use exoclaw_mcp::{McpServers, ServerState};
use exoclaw_types::ToolEffect;
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

/// What `exoclaw mcp --help` teaches.
pub const HELP: &str = "\
MCP servers are configured as [mcp.NAME] tables in the config: either a `command` exoclaw starts
(stdio) or a `url` (streamable HTTP). Agents with tools are offered their tools as NAME__tool;
each server starts in the background and is restarted if it stops.

Examples:
  exoclaw mcp list                      each server's state and tools
  exoclaw mcp resources files           what a server offers to read
  exoclaw mcp read files file:///notes/todo.md
  exoclaw mcp prompts everything
  exoclaw mcp prompt everything simple_prompt

Details: docs/mcp.md.";

/// `exoclaw mcp …`.
#[derive(Debug, clap::Subcommand)]
pub enum McpCommand {
    /// Commands on the configured servers.
    #[command(flatten)]
    Servers(ServersCommand),
    /// Serve exoclaw's tools, and each agent as an `ask_NAME` tool, to an MCP client over
    /// stdio (point an editor or another agent at `exoclaw mcp serve`).
    #[command(after_help = SERVE_HELP)]
    Serve {
        #[command(flatten)]
        turn: TurnArgs,
        /// Offer no agents, only tools.
        #[arg(long)]
        no_agents: bool,
    },
}

const SERVE_HELP: &str = "\
Which tools are offered: those exoclaw's [permissions] let run without asking; with --yes, also
those that would ask (the MCP client asks its user instead). Denied tools are never offered.
Agents' turns are stored as sessions `NAME:mcp:local:CONVERSATION`.

Example (an editor's MCP configuration):
  {\"command\": \"exoclaw\", \"args\": [\"mcp\", \"serve\", \"--workspace\", \"/home/me/project\"]}";

/// The commands that start the configured servers.
#[derive(Debug, clap::Subcommand)]
pub enum ServersCommand {
    /// Each configured server: its state (ready, down and why), its tools and their effects.
    List {
        /// Seconds to wait for servers that are still starting.
        #[arg(long, default_value_t = 30)]
        wait: u64,
        /// As JSON.
        #[arg(long)]
        json: bool,
    },
    /// The resources a server offers.
    Resources {
        /// The server, as named in [mcp.NAME].
        server: String,
    },
    /// A resource's contents.
    Read {
        /// The server.
        server: String,
        /// The resource's URI (from `exoclaw mcp resources`).
        uri: String,
    },
    /// The prompts a server offers.
    Prompts {
        /// The server.
        server: String,
    },
    /// A prompt's messages, with arguments as KEY=VALUE.
    Prompt {
        /// The server.
        server: String,
        /// The prompt's name.
        name: String,
        /// Its arguments, KEY=VALUE.
        #[arg(value_parser = parse_argument)]
        arguments: Vec<(String, String)>,
    },
}

fn parse_argument(text: &str) -> Result<(String, String), String> {
    text.split_once('=')
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .ok_or_else(|| format!("`{text}` is not KEY=VALUE"))
}

/// How long `resources`, `read`, `prompts` and `prompt` wait for their server to be ready.
const READY_WAIT: Duration = Duration::from_secs(30);

/// Runs an `exoclaw mcp` command.
pub async fn run(config: Option<&Path>, command: McpCommand) -> anyhow::Result<ExitCode> {
    let command = match command {
        McpCommand::Serve { turn, no_agents } => return serve(config, &turn, no_agents).await,
        McpCommand::Servers(command) => command,
    };
    let loaded = Config::load_after_dotenv(config)?;
    if loaded.config.mcp.is_empty() {
        output::hint(
            "exoclaw: no MCP servers are configured; add an [mcp.NAME] table to the config \
             (`exoclaw config init` writes a commented example)",
        );
        return Ok(ExitCode::from(2));
    }
    let servers = exoclaw::runtime::start_mcp_servers(&loaded.config)?;
    let code = match command {
        ServersCommand::List { wait, json } => list(&servers, Duration::from_secs(wait), json).await?,
        ServersCommand::Resources { server } => {
            ready(&servers, &server).await?;
            for r in servers.resources(&server).await? {
                let about = r.description.as_deref().or(r.mime_type.as_deref()).unwrap_or("");
                println!("{}  {}  {}", untrusted(&r.uri), untrusted(&r.name), untrusted(about));
            }
            ExitCode::SUCCESS
        }
        ServersCommand::Read { server, uri } => {
            ready(&servers, &server).await?;
            println!("{}", escape_untrusted(&servers.read_resource(&server, &uri).await?, true));
            ExitCode::SUCCESS
        }
        ServersCommand::Prompts { server } => {
            ready(&servers, &server).await?;
            for p in servers.prompts(&server).await? {
                let args: Vec<String> = p
                    .arguments
                    .iter()
                    .map(|(n, required)| if *required { n.clone() } else { format!("[{n}]") })
                    .collect();
                println!(
                    "{} {}  {}",
                    untrusted(&p.name),
                    untrusted(&args.join(" ")),
                    untrusted(p.description.as_deref().unwrap_or(""))
                );
            }
            ExitCode::SUCCESS
        }
        ServersCommand::Prompt { server, name, arguments } => {
            ready(&servers, &server).await?;
            let arguments: BTreeMap<String, String> = arguments.into_iter().collect();
            println!("{}", escape_untrusted(&servers.prompt(&server, &name, arguments).await?, true));
            ExitCode::SUCCESS
        }
    };
    servers.shutdown().await;
    Ok(code)
}

fn untrusted(text: &str) -> String {
    escape_untrusted(text, false).into_owned()
}

/// Waits for `server` to be ready, or says why it is not.
async fn ready(servers: &McpServers, server: &str) -> anyhow::Result<()> {
    match servers.ready(server, READY_WAIT).await? {
        ServerState::Ready => Ok(()),
        state => bail!("the MCP server `{server}` is not ready: {}", state.describe()),
    }
}

#[derive(Serialize)]
struct ServerJson<'a> {
    name: &'a str,
    transport: &'a str,
    state: &'static str,
    error: Option<String>,
    identity: Option<&'a str>,
    tools: Vec<ToolJson<'a>>,
    skipped: Vec<SkippedJson<'a>>,
}

#[derive(Serialize)]
struct ToolJson<'a> {
    name: &'a str,
    remote_name: &'a str,
    effect: ToolEffect,
    description: &'a str,
}

#[derive(Serialize)]
struct SkippedJson<'a> {
    name: &'a str,
    why: &'a str,
}

fn state_word(state: &ServerState) -> &'static str {
    match state {
        ServerState::Disabled => "disabled",
        ServerState::Starting { .. } => "starting",
        ServerState::Ready => "ready",
        ServerState::Waiting { .. } => "down",
        ServerState::Stopped => "stopped",
    }
}

async fn list(servers: &McpServers, wait: Duration, json: bool) -> anyhow::Result<ExitCode> {
    servers.settled(wait).await;
    let status = servers.status();
    let all_ready = status.iter().all(|s| matches!(s.state, ServerState::Ready | ServerState::Disabled));
    if json {
        let shown: Vec<ServerJson<'_>> = status
            .iter()
            .map(|s| ServerJson {
                name: &s.name,
                transport: &s.transport,
                state: state_word(&s.state),
                error: match &s.state {
                    ServerState::Waiting { error, .. } => Some(error.to_string()),
                    _ => None,
                },
                identity: s.identity.as_deref(),
                tools: s
                    .tools
                    .iter()
                    .map(|t| ToolJson {
                        name: &t.name,
                        remote_name: &t.remote_name,
                        effect: t.effect,
                        description: &t.description,
                    })
                    .collect(),
                skipped: s.skipped.iter().map(|t| SkippedJson { name: &t.name, why: &t.why }).collect(),
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&shown)?);
    } else {
        for s in &status {
            let identity = s.identity.as_deref().map(|i| format!(" ({})", untrusted(i))).unwrap_or_default();
            println!("{}{identity}: {}", s.name, untrusted(&s.state.describe()));
            println!("  {}", untrusted(&s.transport));
            if matches!(s.state, ServerState::Ready) {
                for t in &s.tools {
                    let effect = match t.effect {
                        ToolEffect::ReadOnly => "read-only",
                        ToolEffect::Mutating => "mutating",
                        ToolEffect::External => "external",
                    };
                    let first_line = t.description.lines().next().unwrap_or("");
                    println!("  {:<40} {effect:<9} {}", t.name, untrusted(first_line));
                }
            }
            for t in &s.skipped {
                println!("  not offered: {}: {}", untrusted(&t.name), untrusted(&t.why));
            }
        }
    }
    Ok(if all_ready { ExitCode::SUCCESS } else { ExitCode::from(1) })
}

/// `exoclaw mcp serve`: the runtime's tools and agents, on stdio, until the client hangs up.
async fn serve(config: Option<&Path>, turn: &TurnArgs, no_agents: bool) -> anyhow::Result<ExitCode> {
    let app = App::open(config).await?;
    let runtime = app.runtime(turn, false).await?;
    let server = runtime.mcp_server(!no_agents).context("the runtime has no default agent")?;
    server.serve_stdio().await?;
    runtime.settle(Duration::from_secs(10)).await;
    app.store.close().await;
    Ok(ExitCode::SUCCESS)
}
