//! Skills and baskets in the runtime: which skill folders an agent's skills come from (the home's,
//! and the workspace's once the user trusts it), which baskets each tool sits in (the builtin
//! table, and `mcp/SERVER` for an MCP server's tools), and an agent's tools narrowed to its
//! baskets.

use crate::config::Config;
use crate::config::trust::{Folder, TrustState, TrustStore};
use exoclaw_core::ToolRegistry;
use exoclaw_tools::baskets::{self, Basket};
use exoclaw_tools::skills::{SkillError, SkillOrigin, SkillRoot, SkillSet};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The skills folder in exoclaw's home.
pub const HOME_SKILLS_DIR: &str = "skills";

/// The skills folder in a workspace.
pub const WORKSPACE_SKILLS_DIR: &str = ".exoclaw/skills";

/// The skills folder in exoclaw's `home`, which the sandbox lets commands read inside the hidden
/// home.
pub fn home_skills_dir(home: &Path) -> PathBuf {
    home.join(HOME_SKILLS_DIR)
}

/// The skills an agent working in `workspace` may use: `home`'s, then the workspace's (which win
/// a name clash) when the user trusts the workspace (`exoclaw trust`). Without a home, none: the
/// trusted folders are listed there. Problems are in [`SkillSet::problems`].
pub fn discover_skills(home: Option<&Path>, workspace: &Path) -> SkillSet {
    let Some(home) = home else { return SkillSet::default() };
    let mut roots = vec![SkillRoot { dir: home_skills_dir(home), origin: SkillOrigin::Home }];
    let workspace_dir = workspace.join(WORKSPACE_SKILLS_DIR);
    let mut untrusted = false;
    // The home itself as the workspace: its skills are already the home's.
    if workspace_dir.is_dir() && workspace_dir != home_skills_dir(home) {
        if trusted(home, workspace) {
            roots.push(SkillRoot { dir: workspace_dir.clone(), origin: SkillOrigin::Workspace });
        } else {
            untrusted = true;
        }
    }
    let mut skills = SkillSet::discover(&roots);
    if untrusted {
        skills.push_problem(SkillError::NotTrusted { dir: workspace_dir });
    }
    skills
}

fn trusted(home: &Path, workspace: &Path) -> bool {
    let state = TrustStore::open(home).and_then(|store| Ok(store.state(&Folder::read(workspace)?)));
    match state {
        Ok(state) => state == TrustState::Trusted,
        Err(e) => {
            tracing::warn!(workspace = %workspace.display(), error = %e, "cannot tell whether the workspace is trusted; its skills are not loaded");
            false
        }
    }
}

/// The baskets of the tool `name`: the builtin table's; `mcp`, `mcp/SERVER` and the server's own
/// `baskets` for a tool of a configured `[mcp.SERVER]` (`SERVER__tool`); `plugin` and
/// `plugin/NAME` for a tool of the loaded tool plugin `NAME` (among `plugins`).
pub fn tool_baskets(config: &Config, plugins: &[String], name: &str) -> Vec<Basket> {
    baskets_in(&source_baskets(config, plugins), name)
}

/// The baskets of each tool source, by the prefix of its tools' names: every configured MCP
/// server's (`mcp`, `mcp/SERVER` and its `baskets`) and every tool plugin's (`plugin`,
/// `plugin/NAME`).
fn source_baskets(config: &Config, plugins: &[String]) -> BTreeMap<String, Vec<Basket>> {
    let mut sources: BTreeMap<String, Vec<Basket>> = config
        .mcp
        .iter()
        .map(|(server, settings)| {
            let mut found: Vec<Basket> = Basket::parse("mcp").into_iter().collect();
            found.extend(Basket::parse(&format!("mcp/{server}")));
            found.extend(settings.baskets.iter().cloned());
            (server.clone(), found)
        })
        .collect();
    for plugin in plugins {
        let mut found: Vec<Basket> = Basket::parse("plugin").into_iter().collect();
        found.extend(Basket::parse(&format!("plugin/{plugin}")));
        let prefix = exoclaw_wasm::tool_name(plugin, "");
        sources.entry(prefix.trim_end_matches("__").to_owned()).or_insert(found);
    }
    sources
}

/// The baskets of the tool `name`, given the tool sources' (from [`source_baskets`]).
fn baskets_in(servers: &BTreeMap<String, Vec<Basket>>, name: &str) -> Vec<Basket> {
    let builtin = baskets::builtin_baskets(name);
    if !builtin.is_empty() {
        return builtin;
    }
    name.split_once("__").and_then(|(server, _)| servers.get(server)).cloned().unwrap_or_default()
}

/// `tools` less those in none of the `wanted` baskets (all of them when `wanted` is empty). MCP
/// servers' tools are judged as they come; `plugins` are the loaded tool plugins.
pub fn narrow_tools(
    config: &Config,
    plugins: &[String],
    tools: &ToolRegistry,
    wanted: &[Basket],
) -> ToolRegistry {
    if wanted.is_empty() {
        return tools.clone();
    }
    let servers = source_baskets(config, plugins);
    let wanted = wanted.to_vec();
    tools.narrowed(Arc::new(move |name: &str| baskets::matches(&baskets_in(&servers, name), &wanted)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use pretty_assertions::assert_eq;

    fn baskets(names: &[&str]) -> Vec<Basket> {
        names.iter().map(|n| Basket::parse(n).unwrap()).collect()
    }

    #[test]
    fn an_agent_narrowed_to_files_gets_the_file_tools_only() {
        let tools = exoclaw_tools::builtin_tools();
        let narrowed = narrow_tools(&Config::default(), &[], &tools, &baskets(&["files"]));
        assert_eq!(narrowed.names(), ["edit_file", "glob", "grep", "list_dir", "read_file", "write_file"]);
        let narrowed = narrow_tools(&Config::default(), &[], &tools, &baskets(&["files/read", "web"]));
        assert_eq!(narrowed.names(), ["glob", "grep", "http_fetch", "list_dir", "read_file"]);
        assert_eq!(narrow_tools(&Config::default(), &[], &tools, &[]).names(), tools.names());
    }

    #[test]
    fn an_mcp_servers_tools_sit_in_its_own_basket() {
        let config: Config = toml::from_str("[mcp.docs]\ncommand = \"docs-server\"\n").unwrap();
        assert_eq!(tool_baskets(&config, &[], "docs__search"), baskets(&["mcp", "mcp/docs"]));
        assert_eq!(tool_baskets(&config, &[], "other__search"), Vec::<Basket>::new());
        assert_eq!(tool_baskets(&config, &[], "shell"), baskets(&["shell"]));
    }

    #[test]
    fn a_tool_plugins_tools_sit_in_its_plugin_basket() {
        let plugins = ["word-tools".to_owned()];
        let config = Config::default();
        assert_eq!(
            tool_baskets(&config, &plugins, "word_tools__word_count"),
            baskets(&["plugin", "plugin/word-tools"])
        );
        assert_eq!(tool_baskets(&config, &[], "word_tools__word_count"), Vec::<Basket>::new());
        let mut tools = exoclaw_tools::builtin_tools();
        tools.register(Arc::new(Named("word_tools__word_count")));
        let narrowed = narrow_tools(&config, &plugins, &tools, &baskets(&["plugin"]));
        assert_eq!(narrowed.names(), ["word_tools__word_count"]);
    }

    #[test]
    fn an_mcp_servers_own_baskets_file_its_tools_and_narrow_agents_to_them() {
        let config: Config =
            toml::from_str("[mcp.gh]\ncommand = \"github-server\"\nbaskets = [\"code/github\"]\n").unwrap();
        assert_eq!(
            tool_baskets(&config, &[], "gh__create_issue"),
            baskets(&["mcp", "mcp/gh", "code/github"])
        );
        let mut tools = exoclaw_tools::builtin_tools();
        tools.register(Arc::new(Named("gh__create_issue")));
        let narrowed = narrow_tools(&config, &[], &tools, &baskets(&["code"]));
        assert_eq!(narrowed.names(), ["gh__create_issue"]);
        let err = toml::from_str::<Config>("[mcp.gh]\ncommand = \"x\"\nbaskets = [\"Code\"]\n").unwrap_err();
        assert!(err.to_string().contains("`Code` is not a basket"), "{err}");
    }

    /// A tool that is only a name.
    struct Named(&'static str);

    #[async_trait::async_trait]
    impl exoclaw_core::Tool for Named {
        fn spec(&self) -> exoclaw_types::ToolSpec {
            exoclaw_types::ToolSpec {
                name: self.0.into(),
                description: String::new(),
                input_schema: serde_json::json!({"type": "object"}),
            }
        }
        fn effect(&self) -> exoclaw_types::ToolEffect {
            exoclaw_types::ToolEffect::External
        }
        async fn call(
            &self,
            _args: serde_json::Value,
            _ctx: &exoclaw_core::ToolContext,
        ) -> Result<String, exoclaw_core::ToolError> {
            Ok(String::new())
        }
    }

    fn skill(dir: &Path, name: &str) {
        std::fs::create_dir_all(dir.join(name)).unwrap();
        std::fs::write(dir.join(name).join("SKILL.md"), format!("---\nname: {name}\ndescription: d\n---\n"))
            .unwrap();
    }

    #[test]
    fn a_workspaces_skills_load_only_once_it_is_trusted() {
        let home = tempfile::tempdir().unwrap();
        let workspace = tempfile::tempdir().unwrap();
        skill(&home.path().join("skills"), "mine");
        skill(&workspace.path().join(".exoclaw/skills"), "theirs");

        let skills = discover_skills(Some(home.path()), workspace.path());
        let names: Vec<&str> = skills.skills().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["mine"]);
        let problem = skills.problems()[0].to_string();
        assert!(
            problem.contains("not trusted") && problem.contains("run `exoclaw trust` there"),
            "{problem}"
        );

        let mut trust = TrustStore::open(home.path()).unwrap();
        trust.trust(&Folder::read(workspace.path()).unwrap(), chrono::Utc::now()).unwrap();
        trust.save().unwrap();
        let skills = discover_skills(Some(home.path()), workspace.path());
        let names: Vec<&str> = skills.skills().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["mine", "theirs"]);
        assert_eq!(skills.problems(), &[]);
        assert!(discover_skills(None, workspace.path()).is_empty(), "no home, no skills");
    }
}
