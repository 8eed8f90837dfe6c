//! [`Rule`]: allow, ask or deny the calls of the tools a name glob matches, optionally only those
//! touching a path, a host or a command prefix; and [`RuleEntry`]: a rule with the scope and file
//! it comes from.

use super::Permission;
use super::command::{self, SimpleCommand};
use super::resource::Resource;
use globset::GlobBuilder;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::fmt;

/// One permission rule, as written in `[[permissions.rules]]` or a `permissions.toml`.
///
/// `tool` is a glob on the tool's name (`shell`, `github__*`, `*`). At most one of `path`, `host`
/// and `command` narrows the rule to calls touching that resource (see [`Resource`]):
///
/// - `path`: a glob on the path, relative to the workspace (`src/**`, `**/.env`, `*.md`); `*`
///   stays within one directory, `**` crosses them; paths outside the workspace are absolute
///   (`/etc/**`).
/// - `host`: a glob on the host name, case-insensitive (`api.github.com`, `*.example.com`, which
///   does not match `example.com` itself).
/// - `command`: the first words of a command (`git status` matches `git status --short`, never
///   `git statusx`; `git` never matches `gitx`). A command line is checked one simple command at
///   a time (`a && b | c` is three): see [`crate::Permissions`].
///
/// A rule without a resource pattern matches every call of its tools.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, try_from = "RawRule")]
pub struct Rule {
    /// Glob on the tool's name.
    pub tool: String,
    /// Glob on a path the call touches, relative to the workspace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// Glob on a host the call reaches.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// The first words of a command the call runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<String>,
    /// What happens to the calls it matches.
    pub permission: Permission,
}

/// [`Rule`]'s fields before they are checked.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct RawRule {
    tool: String,
    #[serde(default)]
    path: Option<String>,
    #[serde(default)]
    host: Option<String>,
    #[serde(default)]
    command: Option<String>,
    permission: Permission,
}

impl TryFrom<RawRule> for Rule {
    type Error = RuleError;

    fn try_from(raw: RawRule) -> Result<Self, Self::Error> {
        let RawRule { tool, path, host, command, permission } = raw;
        let rule = Self { tool, path, host, command, permission };
        rule.validate()?;
        Ok(rule)
    }
}

/// Why a rule cannot be used. Each message names the field and says how to fix it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RuleError {
    /// A field is empty.
    #[error("`{0}` is empty: write a pattern, or leave the field out")]
    Empty(&'static str),
    /// A glob does not parse.
    #[error("`{field} = {pattern:?}` is not a valid glob: {message}")]
    Glob {
        /// The field.
        field: &'static str,
        /// The pattern.
        pattern: String,
        /// What is wrong with it.
        message: String,
    },
    /// More than one resource pattern.
    #[error("a rule names at most one of `path`, `host` and `command`; write one rule for each resource")]
    SeveralPatterns,
    /// A host pattern with a scheme, port or path.
    #[error(
        "`host = {0:?}` must be a host name only (`api.github.com`, `*.example.com`), without scheme, port or path"
    )]
    Host(String),
    /// A command pattern that is not a plain prefix of words.
    #[error(
        "`command = {0:?}` must be the first words of one command (`git status`), without quotes, \
         `;`, `&&`, `|`, redirections or substitutions: each command of a line is checked on its own"
    )]
    Command(String),
}

impl Rule {
    /// A rule for the tools `tool` (a glob) matches, with no resource pattern.
    pub fn new(tool: impl Into<String>, permission: Permission) -> Self {
        Self { tool: tool.into(), path: None, host: None, command: None, permission }
    }

    /// The rule narrowed to paths matching `glob`.
    #[must_use]
    pub fn path(mut self, glob: impl Into<String>) -> Self {
        self.path = Some(glob.into());
        self
    }

    /// The rule narrowed to hosts matching `glob`.
    #[must_use]
    pub fn host(mut self, glob: impl Into<String>) -> Self {
        self.host = Some(glob.into());
        self
    }

    /// The rule narrowed to commands starting with the words of `prefix`.
    #[must_use]
    pub fn command(mut self, prefix: impl Into<String>) -> Self {
        self.command = Some(prefix.into());
        self
    }

    /// Checks every pattern; rules read from a file were checked already.
    pub fn validate(&self) -> Result<(), RuleError> {
        let patterns = [self.path.is_some(), self.host.is_some(), self.command.is_some()];
        if patterns.iter().filter(|set| **set).count() > 1 {
            return Err(RuleError::SeveralPatterns);
        }
        glob("tool", &self.tool, false)?;
        if let Some(path) = &self.path {
            glob("path", path, false)?;
        }
        if let Some(host) = &self.host {
            glob("host", host, true)?;
            if host.contains(['/', ':', '@']) || host.contains(char::is_whitespace) {
                return Err(RuleError::Host(host.clone()));
            }
        }
        if let Some(prefix) = &self.command {
            command_words(prefix)?;
        }
        Ok(())
    }

    /// The rules an answer "for this session" or "always" adds for a call of `tool` touching
    /// `resources` (resolved, see [`Resource::in_workspace`]): the tool, narrowed to each resource
    /// — a command's first word (and its second, when it reads as a subcommand: `git status`,
    /// `cargo test`), a host, or a path's folder (`src/**`; a file at the workspace's top stays
    /// itself). One rule per resource; the tool alone when it names none.
    pub fn remembering(tool: &str, resources: &[Resource]) -> Vec<Self> {
        let tool_glob = globset::escape(tool);
        let mut rules: Vec<Self> = Vec::new();
        let mut add = |rule: Self| {
            if !rules.contains(&rule) {
                rules.push(rule);
            }
        };
        for resource in resources {
            match resource {
                Resource::Path(path) => {
                    let escaped = globset::escape(path);
                    let pattern = match escaped.rsplit_once('/') {
                        Some(("", _)) => "/**".to_owned(),
                        Some((folder, _)) => format!("{folder}/**"),
                        None => escaped,
                    };
                    add(Self::new(&tool_glob, Permission::Allow).path(pattern));
                }
                Resource::Host(host) => {
                    add(Self::new(&tool_glob, Permission::Allow).host(globset::escape(host)))
                }
                Resource::Command(line) => {
                    for simple in command::parse(line) {
                        if let Some(prefix) = remembered_prefix(&simple) {
                            add(Self::new(&tool_glob, Permission::Allow).command(prefix));
                        }
                    }
                }
            }
        }
        if rules.is_empty() {
            rules.push(Self::new(tool_glob, Permission::Allow));
        }
        rules
    }
}

/// The prefix an answer remembers for one simple command: its first word, and its second when
/// that reads as a subcommand (letters, digits, `-`, `_`, `:`), not an option or a file.
fn remembered_prefix(simple: &SimpleCommand) -> Option<String> {
    let first = simple.words.first()?;
    if command_words(first).is_err() {
        return None;
    }
    let subcommand = simple.words.get(1).filter(|w| {
        w.starts_with(|c: char| c.is_ascii_alphabetic())
            && w.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | ':'))
    });
    Some(match subcommand {
        Some(sub) => format!("{first} {sub}"),
        None => first.clone(),
    })
}

/// The words of a command pattern, or why it is not one.
pub(super) fn command_words(prefix: &str) -> Result<Vec<String>, RuleError> {
    let words: Vec<String> = prefix.split_whitespace().map(str::to_owned).collect();
    if words.is_empty() {
        return Err(RuleError::Empty("command"));
    }
    let special =
        |c: char| matches!(c, ';' | '&' | '|' | '<' | '>' | '(' | ')' | '`' | '$' | '\'' | '"' | '\\');
    if prefix.contains(special) {
        return Err(RuleError::Command(prefix.to_owned()));
    }
    Ok(words)
}

/// Checks one glob; `host` globs ignore case.
fn glob(field: &'static str, pattern: &str, host: bool) -> Result<(), RuleError> {
    if pattern.trim().is_empty() {
        return Err(RuleError::Empty(field));
    }
    GlobBuilder::new(pattern).case_insensitive(host).build().map(drop).map_err(|e| RuleError::Glob {
        field,
        pattern: pattern.to_owned(),
        message: e.kind().to_string(),
    })
}

impl fmt::Display for Rule {
    /// As an inline TOML table: `{ tool = "shell", command = "git status", permission = "allow" }`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{{ tool = {}", quote(&self.tool))?;
        for (key, value) in [("path", &self.path), ("host", &self.host), ("command", &self.command)] {
            if let Some(value) = value {
                write!(f, ", {key} = {}", quote(value))?;
            }
        }
        write!(f, ", permission = \"{}\" }}", self.permission.as_str())
    }
}

/// `s` as a TOML basic string (JSON's escapes are TOML's).
fn quote(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| format!("\"{}\"", s.escape_default()))
}

/// Where a rule applies: every scope's rules are checked together (see [`crate::Permissions`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Scope {
    /// Everywhere: `[permissions]` in config.toml, and "always" answers in exoclaw's home.
    Global,
    /// One workspace: its `.exoclaw/permissions.toml`.
    Project,
    /// One session: answers "for this session", kept in memory.
    Session,
}

impl Scope {
    /// `global`, `project` or `session`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Global => "global",
            Self::Project => "project",
            Self::Session => "session",
        }
    }
}

/// A rule with where it comes from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct RuleEntry {
    /// The rule.
    pub rule: Rule,
    /// Its scope.
    pub scope: Scope,
    /// The file it was read from or written to; `None` for a policy set in code or a session's
    /// answer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
}

impl fmt::Display for RuleEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({}", self.rule, self.scope.as_str())?;
        if let Some(file) = &self.file {
            write!(f, ", {file}")?;
        }
        f.write_str(")")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pretty_assertions::assert_eq;

    fn parse(toml_like_json: &str) -> Result<Rule, String> {
        serde_json::from_str::<Rule>(toml_like_json).map_err(|e| e.to_string())
    }

    #[test]
    fn a_rule_names_at_most_one_resource_pattern() {
        let err = parse(r#"{"tool": "shell", "command": "git", "path": "src/**", "permission": "allow"}"#);
        assert!(err.unwrap_err().contains("at most one of"));
    }

    #[test]
    fn bad_patterns_are_refused_with_the_field_named() {
        let err = parse(r#"{"tool": "read_file", "path": "src/[", "permission": "deny"}"#).unwrap_err();
        assert!(err.contains("`path = \"src/[\"` is not a valid glob"), "{err}");
        let err =
            parse(r#"{"tool": "http_fetch", "host": "https://x.com", "permission": "deny"}"#).unwrap_err();
        assert!(err.contains("host name only"), "{err}");
        let err =
            parse(r#"{"tool": "shell", "command": "git status && rm", "permission": "allow"}"#).unwrap_err();
        assert!(err.contains("first words of one command"), "{err}");
        let err = parse(r#"{"tool": "shell", "comand": "git", "permission": "allow"}"#).unwrap_err();
        assert!(err.contains("unknown field `comand`"), "{err}");
        assert!(parse(r#"{"tool": " ", "permission": "allow"}"#).unwrap_err().contains("`tool` is empty"));
    }

    #[test]
    fn a_rule_shows_as_the_toml_that_writes_it() {
        let rule = Rule::new("shell", Permission::Allow).command("git status");
        assert_eq!(rule.to_string(), r#"{ tool = "shell", command = "git status", permission = "allow" }"#);
        let entry =
            RuleEntry { rule, scope: Scope::Project, file: Some("/w/.exoclaw/permissions.toml".into()) };
        assert!(entry.to_string().ends_with("(project, /w/.exoclaw/permissions.toml)"));
    }

    #[test]
    fn answers_remember_the_tool_and_the_resource() {
        let commands =
            Rule::remembering("shell", &[Resource::Command("git status --short && ls -la".into())]);
        assert_eq!(
            commands,
            vec![
                Rule::new("shell", Permission::Allow).command("git status"),
                Rule::new("shell", Permission::Allow).command("ls"),
            ]
        );
        assert_eq!(
            Rule::remembering("http_fetch", &[Resource::Host("api.github.com".into())]),
            vec![Rule::new("http_fetch", Permission::Allow).host("api.github.com")]
        );
        assert_eq!(
            Rule::remembering("write_file", &[Resource::Path("src/a/main.rs".into())]),
            vec![Rule::new("write_file", Permission::Allow).path("src/a/**")]
        );
        assert_eq!(
            Rule::remembering("write_file", &[Resource::Path("notes.md".into())]),
            vec![Rule::new("write_file", Permission::Allow).path("notes.md")]
        );
        assert_eq!(
            Rule::remembering("github__create_issue", &[]),
            vec![Rule::new("github__create_issue", Permission::Allow)]
        );
        for rule in commands {
            rule.validate().unwrap();
        }
    }
}
