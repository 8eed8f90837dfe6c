//! The sandbox the runtime's commands run in: `[sandbox]`, with exoclaw's own files (its home:
//! configuration, database, keys; and the sessions' SQLite file wherever it is) always hidden, but
//! for the home's `skills` folder, whose scripts commands may read and run.

use crate::config::Config;
use exoclaw_tools::sandbox::SandboxPolicy;
use std::path::PathBuf;

/// Files no command or MCP server may read or write, whatever the policy says.
pub fn private_paths(config: &Config) -> Vec<PathBuf> {
    let Ok(home) = crate::config::load::home_dir() else { return Vec::new() };
    let mut paths = vec![home.clone()];
    let url = config.storage_url(&home);
    if let Some(file) = url.strip_prefix("sqlite://").map(|rest| rest.split('?').next().unwrap_or(rest))
        && !file.is_empty()
        && !file.starts_with(':')
        && !std::path::Path::new(file).starts_with(&home)
    {
        paths.push(PathBuf::from(file));
    }
    paths
}

/// `[sandbox]` with [`private_paths`] hidden and the home's skills readable: the policy of the
/// shell tool's commands.
pub fn sandbox_policy(config: &Config) -> SandboxPolicy {
    let skills = crate::config::load::home_dir().ok().map(|home| super::skills::home_skills_dir(&home));
    config.sandbox.clone().with_hidden_paths(private_paths(config)).with_readable_paths(skills)
}
