//! The permission files besides `[permissions]` in config.toml, and [`PermissionScopes`], which
//! puts every scope together for an agent ([`exoclaw_core::Permissions`]).
//!
//! - **Global answers**: [`ANSWERS_FILE`] in exoclaw's home (`~/.exoclaw/permissions.toml`). exoclaw
//!   appends a rule there for each answer "always" ([`AnswersFile`]), writing the file whole to a
//!   temporary file renamed over it; it never writes the user's config.toml. People may edit it.
//! - **Project**: [`PROJECT_FILE`] in a workspace (`.exoclaw/permissions.toml`). A folder may be
//!   anybody's (a repository just cloned), so its rules may only tighten — deny and ask — unless
//!   the user trusts the folder (`exoclaw trust`, which covers this file: change it and the folder
//!   must be trusted again); then its allow rules count too.
//!
//! Both hold `[[rules]]` tables, like `[[permissions.rules]]`; unknown keys are errors, reported
//! with the file, line and column.

use super::ConfigError;
use super::load::line_col;
use super::trust::{Folder, TrustState, TrustStore};
use exoclaw_core::{AnswerStore, Answers, PermissionPolicy, Permissions, Rule};
use serde::{Deserialize, Serialize};
use std::io::{ErrorKind, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The answers file in exoclaw's home.
pub const ANSWERS_FILE: &str = "permissions.toml";

/// A workspace's permissions file, relative to the workspace.
pub const PROJECT_FILE: &str = ".exoclaw/permissions.toml";

/// What a permissions file holds.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RulesFile {
    #[serde(default)]
    rules: Vec<Rule>,
}

const ANSWERS_HEADER: &str = "\
# Permission rules exoclaw keeps for you: one is added each time you answer \"always\" to an
# approval prompt. Edit or delete rules freely; `exoclaw permissions` lists every rule in effect.
# Each rule: tool (a glob on the tool's name), at most one of path / host / command, and
# permission = \"allow\", \"ask\" or \"deny\" (deny always wins, whatever the scope).
";

/// The rules in `file`: none when it does not exist; an error naming the file, line and column
/// when it cannot be used.
pub fn read_rules(file: &Path) -> Result<Vec<Rule>, ConfigError> {
    let text = match std::fs::read_to_string(file) {
        Ok(text) => text,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => return Err(ConfigError::Read { file: file.display().to_string(), source }),
    };
    parse_rules(&text, file)
}

fn parse_rules(text: &str, file: &Path) -> Result<Vec<Rule>, ConfigError> {
    toml::from_str::<RulesFile>(text).map(|f| f.rules).map_err(|e| {
        let (line, column) = e.span().map_or((1, 1), |span| line_col(text, span.start));
        ConfigError::PermissionsFile {
            file: file.display().to_string(),
            line,
            column,
            message: e.message().trim().to_owned(),
        }
    })
}

/// The answers file: where answers "always" are kept ([`AnswerStore`]).
#[derive(Debug, Clone)]
pub struct AnswersFile {
    file: PathBuf,
}

impl AnswersFile {
    /// The answers file in exoclaw's `home`.
    pub fn in_home(home: &Path) -> Self {
        Self { file: home.join(ANSWERS_FILE) }
    }

    /// Its path.
    pub fn path(&self) -> &Path {
        &self.file
    }

    /// The rules it holds now.
    pub fn read(&self) -> Result<Vec<Rule>, ConfigError> {
        read_rules(&self.file)
    }
}

impl AnswerStore for AnswersFile {
    fn location(&self) -> String {
        self.file.display().to_string()
    }

    /// Appends `rules` to the file's text (so people's comments and order stay), then writes it
    /// whole: to a temporary file beside it, renamed over it.
    fn remember(&self, rules: &[Rule]) -> std::io::Result<()> {
        let mut text = match std::fs::read_to_string(&self.file) {
            Ok(text) => text,
            Err(e) if e.kind() == ErrorKind::NotFound => ANSWERS_HEADER.to_owned(),
            Err(e) => return Err(e),
        };
        let added = toml::to_string(&RulesFile { rules: rules.to_vec() }).map_err(std::io::Error::other)?;
        if !text.is_empty() && !text.ends_with('\n') {
            text.push('\n');
        }
        text.push('\n');
        text.push_str(&added);
        // What is written must read back: never leave a file that stops every later start.
        parse_rules(&text, &self.file).map_err(std::io::Error::other)?;
        let dir = self.file.parent().unwrap_or(Path::new("."));
        std::fs::create_dir_all(dir)?;
        let temp = dir.join(format!(".{ANSWERS_FILE}.{}.tmp", std::process::id()));
        let written = std::fs::File::create(&temp).and_then(|mut file| {
            file.write_all(text.as_bytes())?;
            file.sync_all()
        });
        if let Err(e) = written.and_then(|()| std::fs::rename(&temp, &self.file)) {
            let _ = std::fs::remove_file(&temp);
            return Err(e);
        }
        Ok(())
    }
}

/// A workspace's own rules.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProjectRules {
    /// Its `.exoclaw/permissions.toml`.
    pub file: PathBuf,
    /// The rules in it.
    pub rules: Vec<Rule>,
    /// Whether the user trusts the folder as it is now (else its allow rules are ignored).
    pub trusted: bool,
}

impl ProjectRules {
    /// The rules of `workspace`, if it has a permissions file; trust is looked up in exoclaw's
    /// `home` (none: not trusted).
    pub fn read(workspace: &Path, home: Option<&Path>) -> Result<Option<Self>, ConfigError> {
        let file = workspace.join(PROJECT_FILE);
        if !file.exists() {
            return Ok(None);
        }
        let rules = read_rules(&file)?;
        let trusted = match home {
            Some(home) => TrustStore::open(home)?.state(&Folder::read(workspace)?) == TrustState::Trusted,
            None => false,
        };
        Ok(Some(Self { file, rules, trusted }))
    }
}

/// Every scope's permission rules, read once: the configuration's, the answers kept in exoclaw's
/// home, and each agent's workspace's (read when its agent is built).
#[derive(Clone)]
pub struct PermissionScopes {
    /// exoclaw's home, where the answers file and the trusted folders are; `None`: answers
    /// "always" are not offered, and no workspace is trusted.
    home: Option<PathBuf>,
    /// The config file `[permissions]` came from, for listings and the audit log.
    config_file: Option<PathBuf>,
    answers: Arc<Answers>,
}

impl std::fmt::Debug for PermissionScopes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PermissionScopes").field("home", &self.home).finish_non_exhaustive()
    }
}

impl PermissionScopes {
    /// Scopes without files: answers are kept for the session only, and workspaces are untrusted.
    pub fn in_memory() -> Self {
        Self { home: None, config_file: None, answers: Answers::in_memory() }
    }

    /// Scopes with exoclaw's `home`: its answers file is read (and written by answers "always"),
    /// its trusted folders decide whether a workspace may widen.
    pub fn with_home(home: &Path) -> Result<Self, ConfigError> {
        let file = AnswersFile::in_home(home);
        let kept = file.read()?;
        let answers =
            Answers::kept_in(Arc::new(file.clone()), kept).map_err(|e| ConfigError::PermissionsFile {
                file: file.path().display().to_string(),
                line: 1,
                column: 1,
                message: e.to_string(),
            })?;
        Ok(Self { home: Some(home.to_owned()), config_file: None, answers })
    }

    /// The same scopes, naming `file` as where `[permissions]` came from.
    #[must_use]
    pub fn with_config_file(mut self, file: Option<PathBuf>) -> Self {
        self.config_file = file;
        self
    }

    /// The answers shared by every agent.
    pub fn answers(&self) -> &Arc<Answers> {
        &self.answers
    }

    /// The permissions of an agent with `policy` working in `workspace` (canonical).
    pub fn for_workspace(
        &self,
        policy: &PermissionPolicy,
        workspace: &Path,
    ) -> Result<Permissions, ConfigError> {
        let mut permissions = Permissions::try_new(policy.clone())
            .map_err(|e| ConfigError::Hook { key: "permissions.rules", message: e.to_string() })?
            .with_answers(Arc::clone(&self.answers));
        if let Some(file) = &self.config_file {
            permissions = permissions.with_config_file(file.display().to_string());
        }
        if let Some(project) = ProjectRules::read(workspace, self.home.as_deref())? {
            let file = project.file.display().to_string();
            permissions =
                permissions.with_project(Some(file.clone()), project.rules, project.trusted).map_err(
                    |e| ConfigError::PermissionsFile { file, line: 1, column: 1, message: e.to_string() },
                )?;
        }
        Ok(permissions)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use exoclaw_core::{Permission, Resource, Scope};
    use exoclaw_types::ToolEffect;

    fn write(path: &Path, text: &str) {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }

    #[test]
    fn a_malformed_file_names_the_file_and_line() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join(ANSWERS_FILE);
        write(&file, "[[rules]]\ntool = \"shell\"\npermision = \"allow\"\n");
        let err = read_rules(&file).unwrap_err().to_string();
        assert!(err.starts_with(&format!("{}:3:", file.display())), "{err}");
        assert!(err.contains("permision"), "{err}");
        write(&file, "[[rules]]\ntool = \"shell\"\ncommand = \"a && b\"\npermission = \"allow\"\n");
        let err = read_rules(&file).unwrap_err().to_string();
        assert!(err.contains("first words of one command") && err.contains("exoclaw permissions"), "{err}");
    }

    #[test]
    fn always_answers_are_appended_and_read_back() {
        let home = tempfile::tempdir().unwrap();
        let file = AnswersFile::in_home(home.path());
        assert!(file.read().unwrap().is_empty());
        let first = Rule::new("shell", Permission::Allow).command("git status");
        file.remember(std::slice::from_ref(&first)).unwrap();
        let text = std::fs::read_to_string(file.path()).unwrap();
        assert!(text.starts_with("# Permission rules exoclaw keeps for you"), "{text}");
        // A person's edit stays.
        std::fs::write(file.path(), format!("{text}# mine\n")).unwrap();
        let second = Rule::new("http_fetch", Permission::Allow).host("docs.rs");
        file.remember(std::slice::from_ref(&second)).unwrap();
        assert_eq!(file.read().unwrap(), vec![first, second]);
        assert!(std::fs::read_to_string(file.path()).unwrap().contains("# mine"));
        let leftovers = std::fs::read_dir(home.path()).unwrap().count();
        assert_eq!(leftovers, 1, "no temporary file is left behind");
    }

    #[test]
    fn an_untrusted_workspace_only_tightens_and_a_trusted_one_widens() {
        let home = tempfile::tempdir().unwrap();
        let repo = tempfile::tempdir().unwrap();
        let workspace = repo.path().canonicalize().unwrap();
        write(
            &workspace.join(PROJECT_FILE),
            "[[rules]]\ntool = \"shell\"\npermission = \"allow\"\n\n\
             [[rules]]\ntool = \"write_file\"\npath = \".github/**\"\npermission = \"deny\"\n",
        );
        let scopes = PermissionScopes::with_home(home.path()).unwrap();
        let policy = PermissionPolicy::default();
        let shell = [Resource::Command("make".into())];
        let untrusted = scopes.for_workspace(&policy, &workspace).unwrap();
        assert_eq!(untrusted.check(None, "shell", ToolEffect::Mutating, &shell).permission, Permission::Ask);
        let ci = [Resource::Path(".github/ci.yml".into())];
        assert_eq!(
            untrusted.check(None, "write_file", ToolEffect::Mutating, &ci).permission,
            Permission::Deny
        );

        let mut trust = TrustStore::open(home.path()).unwrap();
        trust.trust(&Folder::read(&workspace).unwrap(), chrono::Utc::now()).unwrap();
        trust.save().unwrap();
        let trusted = scopes.for_workspace(&policy, &workspace).unwrap();
        let verdict = trusted.check(None, "shell", ToolEffect::Mutating, &shell);
        assert_eq!(verdict.permission, Permission::Allow);
        assert!(matches!(&verdict.reason, exoclaw_core::Reason::Rule(e) if e.scope == Scope::Project));

        // Trust covers the file: changed, it is untrusted again.
        write(&workspace.join(PROJECT_FILE), "[[rules]]\ntool = \"*\"\npermission = \"allow\"\n");
        let changed = scopes.for_workspace(&policy, &workspace).unwrap();
        assert_eq!(changed.check(None, "shell", ToolEffect::Mutating, &shell).permission, Permission::Ask);
    }
}
