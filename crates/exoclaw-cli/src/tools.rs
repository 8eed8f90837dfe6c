//! `exoclaw tools [--basket B]… [--agent NAME]`: the tools an agent is offered (name, effect,
//! baskets, the first sentence of the description), the skills its prompt lists, and the agents
//! that work in the baskets asked for; problems with skills go to stderr.

#![allow(clippy::print_stdout, clippy::print_stderr)]

use crate::app::App;
use crate::output::escape_untrusted;
use anyhow::Context;
use exoclaw::config::DEFAULT_AGENT;
use exoclaw::runtime::Runtime;
use exoclaw::runtime::skills::tool_baskets;
use exoclaw_tools::baskets::{self, Basket};
use exoclaw_types::ToolEffect;
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// `exoclaw tools`.
#[derive(Debug, clap::Args)]
#[command(after_help = "\
Baskets are `basket` or `basket/sub-basket`; asking for a basket takes its sub-baskets:
`--basket files` lists files/read, files/search and files/write. Builtin tools sit in files,
shell, web, memory, remote and skills; an MCP server's tools in mcp/SERVER; a skill in the
baskets its SKILL.md names. An agent's `baskets = [...]` narrows what it is offered the same way,
and puts the agent in those baskets (an agent with none is listed only without --basket).

Examples:
  exoclaw tools
  exoclaw tools --basket files
  exoclaw tools --agent support --json

Details: docs/skills.md.")]
pub struct ToolsArgs {
    /// Only the tools and skills in this basket (repeat for several).
    #[arg(long, value_name = "BASKET")]
    basket: Vec<Basket>,
    /// The agent whose tools to list (default: the default agent, as a cloud model gets them).
    #[arg(long, value_name = "NAME")]
    agent: Option<String>,
    /// The workspace whose skills are listed (default: the current folder).
    #[arg(long, value_name = "DIR")]
    workspace: Option<PathBuf>,
    /// As JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Serialize)]
struct Listing {
    tools: Vec<ToolRow>,
    skills: Vec<SkillRow>,
    agents: Vec<AgentRow>,
}

/// An agent, in the baskets its `baskets` setting narrows it to (none: every tool, so it is
/// listed only when no basket is asked for).
#[derive(Serialize)]
struct AgentRow {
    name: String,
    model: String,
    baskets: Vec<String>,
    description: String,
}

#[derive(Serialize)]
struct ToolRow {
    name: String,
    effect: &'static str,
    baskets: Vec<String>,
    description: String,
}

#[derive(Serialize)]
struct SkillRow {
    name: String,
    origin: &'static str,
    baskets: Vec<String>,
    description: String,
    file: String,
}

/// Runs `exoclaw tools`.
pub async fn run(config: Option<&Path>, args: ToolsArgs) -> anyhow::Result<ExitCode> {
    let app = App::open(config).await?;
    let workspace = match &args.workspace {
        Some(dir) => dir.clone(),
        None => std::env::current_dir().context("the current directory is not readable")?,
    };
    let tools_setting = app.config().agent.tools;
    let runtime = Runtime::builder()
        .config(app.config().clone())
        .store(app.store.clone())
        .home(app.loaded.home.clone())
        .default_agent(move |spec| {
            // What the default agent is offered on a cloud model, whatever the default model is.
            spec.tools = Some(spec.tools.unwrap_or(tools_setting));
            spec.workspace = Some(workspace);
        })
        .build()
        .await?;
    let name = args.agent.as_deref().unwrap_or(DEFAULT_AGENT);
    let agent = runtime.agent(name).with_context(|| {
        format!("there is no agent `{name}`; the agents are: {}", runtime.agent_names().join(", "))
    })?;
    let config = runtime.config();
    let plugins = runtime.plugin_names();
    let tools: Vec<ToolRow> = agent
        .runner
        .tools()
        .specs()
        .into_iter()
        .filter_map(|spec| {
            let tool = agent.runner.tools().get(&spec.name)?;
            let in_baskets = tool_baskets(config, &plugins, &spec.name);
            baskets::matches(&in_baskets, &args.basket).then(|| ToolRow {
                effect: effect(tool.effect()),
                baskets: in_baskets.iter().map(ToString::to_string).collect(),
                description: summary(&spec.description),
                name: spec.name,
            })
        })
        .collect();
    let skills: Vec<SkillRow> = agent
        .skills
        .narrowed(&args.basket)
        .skills()
        .map(|skill| SkillRow {
            name: skill.name.clone(),
            origin: skill.origin.as_str(),
            baskets: skill.baskets.iter().map(ToString::to_string).collect(),
            description: skill.description.clone(),
            file: skill.file.display().to_string(),
        })
        .collect();
    for problem in agent.skills.problems() {
        eprintln!("warning: {}", escape_untrusted(&problem.to_string(), false));
    }
    let agents: Vec<AgentRow> = runtime
        .agent_names()
        .into_iter()
        .filter_map(|name| runtime.agent(&name))
        .filter(|agent| baskets::matches(&agent.spec.baskets, &args.basket))
        .map(|agent| AgentRow {
            name: agent.spec.name.clone(),
            model: agent.model.clone(),
            baskets: agent.spec.baskets.iter().map(ToString::to_string).collect(),
            description: agent.spec.description.clone().unwrap_or_default(),
        })
        .collect();
    let listing = Listing { tools, skills, agents };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&listing)?);
    } else {
        print!("{}", render(&listing));
        if agent.runner.tools().is_empty() {
            eprintln!("note: the agent `{name}` is offered no tools (its `tools` setting is off)");
        }
        if !config.mcp.is_empty() {
            eprintln!(
                "note: MCP servers' tools are listed once the servers are ready; `exoclaw mcp list` waits for them"
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// A description's first sentence (of its first line): what fits a table row.
fn summary(description: &str) -> String {
    let line = description.lines().next().unwrap_or("").trim();
    match line.find(". ") {
        Some(end) => line[..=end].to_owned(),
        None => line.to_owned(),
    }
}

fn effect(effect: ToolEffect) -> &'static str {
    match effect {
        ToolEffect::ReadOnly => "read-only",
        ToolEffect::Mutating => "mutating",
        ToolEffect::External => "external",
    }
}

/// The listing as two aligned tables (the skills' only when there are skills).
fn render(listing: &Listing) -> String {
    let mut out = String::new();
    if listing.tools.is_empty() {
        out.push_str("no tools in these baskets\n");
    } else {
        let rows: Vec<[String; 4]> = listing
            .tools
            .iter()
            .map(|t| [t.name.clone(), t.effect.to_owned(), joined(&t.baskets), t.description.clone()])
            .collect();
        out.push_str(&table(["TOOL", "EFFECT", "BASKETS", "DESCRIPTION"], &rows));
    }
    if !listing.skills.is_empty() {
        let rows: Vec<[String; 4]> = listing
            .skills
            .iter()
            .map(|s| {
                [
                    s.name.clone(),
                    s.origin.to_owned(),
                    joined(&s.baskets),
                    escape_untrusted(&s.description, false).into_owned(),
                ]
            })
            .collect();
        out.push('\n');
        out.push_str(&table(["SKILL", "FROM", "BASKETS", "DESCRIPTION"], &rows));
    }
    if !listing.agents.is_empty() {
        let rows: Vec<[String; 4]> = listing
            .agents
            .iter()
            .map(|a| [a.name.clone(), a.model.clone(), joined(&a.baskets), a.description.clone()])
            .collect();
        out.push('\n');
        out.push_str(&table(["AGENT", "MODEL", "BASKETS", "DESCRIPTION"], &rows));
    }
    out
}

fn joined(baskets: &[String]) -> String {
    if baskets.is_empty() { "-".to_owned() } else { baskets.join(",") }
}

fn table(header: [&str; 4], rows: &[[String; 4]]) -> String {
    let mut widths = header.map(|h| h.chars().count());
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let line = |cells: [&str; 4]| {
        let mut text = String::new();
        for (i, cell) in cells.iter().enumerate() {
            if i == 3 {
                text.push_str(cell);
            } else {
                text.push_str(&format!("{cell:<width$}  ", width = widths[i]));
            }
        }
        text.trim_end().to_owned() + "\n"
    };
    let mut out = line(header);
    for row in rows {
        out.push_str(&line([&row[0], &row[1], &row[2], &row[3]]));
    }
    out
}
