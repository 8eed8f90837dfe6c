//! Finding and reading the configuration: `.env`, the config file, then environment overrides.
//!
//! Everything here reads the environment through a lookup function, so tests give a map and never
//! touch the process environment (tests run in parallel); [`Config::load`] passes the real one.

use super::sections::{ModelChoice, check_storage_url, expand_path, expand_url};
use super::{Config, ConfigError};
use std::io::ErrorKind;
use std::path::{Path, PathBuf};

/// Reads an environment variable.
pub(crate) type Lookup<'a> = &'a (dyn Fn(&str) -> Option<String> + Sync);

/// The process environment, as a [`Lookup`].
pub(crate) fn process_env(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

/// A variable's value, unless unset or blank.
fn var(lookup: Lookup<'_>, name: &str) -> Option<String> {
    lookup(name).filter(|v| !v.trim().is_empty())
}

/// The user's home folder (`$HOME`), which `~` stands for.
pub(crate) fn user_home(lookup: Lookup<'_>) -> Option<PathBuf> {
    var(lookup, "HOME").map(PathBuf::from)
}

/// The name of the config file inside exoclaw's home.
pub const CONFIG_FILE: &str = "config.toml";

/// A configuration as loaded, with where it came from.
#[derive(Debug, Clone)]
pub struct LoadedConfig {
    /// The configuration, environment overrides applied.
    pub config: Config,
    /// The file read, if any (`None`: no config file, so defaults).
    pub path: Option<PathBuf>,
    /// exoclaw's home folder (`$EXOCLAW_HOME`, else `~/.exoclaw`): the default config file and
    /// database live here.
    pub home: PathBuf,
}

impl LoadedConfig {
    /// The storage URL to open (see [`Config::storage_url`]).
    pub fn storage_url(&self) -> String {
        self.config.storage_url(&self.home)
    }

    /// Where `exoclaw config init` writes the config file: the file read, else `config.toml` in
    /// exoclaw's home.
    pub fn config_file(&self) -> PathBuf {
        self.path.clone().unwrap_or_else(|| self.home.join(CONFIG_FILE))
    }
}

impl Config {
    /// Loads the configuration.
    ///
    /// 1. `.env` in the current directory, if there is one, sets the variables it names that are
    ///    not already set.
    /// 2. The file: `explicit` (`--config`), else `$EXOCLAW_CONFIG`, else `config.toml` in
    ///    exoclaw's home (`$EXOCLAW_HOME`, default `~/.exoclaw`). A file named by `explicit` or
    ///    `EXOCLAW_CONFIG` must exist; a missing default file means the defaults.
    /// 3. Overrides: `EXOCLAW_MODEL` (the default model), `EXOCLAW_STORAGE_URL`.
    ///
    /// A leading `~` in `storage.url` and `local.model_path` is expanded. Vendor keys
    /// (`ANTHROPIC_API_KEY`, …) are not read here: providers read them when opened.
    ///
    /// Call it early, before other threads read the environment: step 1 changes it.
    pub fn load(explicit: Option<&Path>) -> Result<LoadedConfig, ConfigError> {
        load_dotenv(Path::new(".env"), &process_env)?;
        Self::load_in(explicit, &process_env)
    }

    /// Parses `text` as a config file; errors name `path` with the line and column.
    pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
        parse_in(text, path, &process_env)
    }

    /// The file [`Config::load`] reads when not given one, and `exoclaw config init` writes:
    /// `$EXOCLAW_CONFIG`, else `config.toml` in exoclaw's home.
    pub fn default_path() -> Result<PathBuf, ConfigError> {
        default_path_in(&process_env)
    }

    /// [`Config::load`] after `.env`, reading the environment through `lookup`.
    pub(crate) fn load_in(explicit: Option<&Path>, lookup: Lookup<'_>) -> Result<LoadedConfig, ConfigError> {
        let user_home = user_home(lookup);
        let home = exoclaw_home(lookup)?;
        let (file, origin) = match (explicit, var(lookup, "EXOCLAW_CONFIG")) {
            (Some(path), _) => (path.to_owned(), Some("--config")),
            (None, Some(path)) => {
                (expand_path(Path::new(&path), user_home.as_deref()), Some("EXOCLAW_CONFIG"))
            }
            (None, None) => (home.join(CONFIG_FILE), None),
        };
        let (mut config, path) = match std::fs::read_to_string(&file) {
            Ok(text) => (parse_in(&text, &file, lookup)?, Some(file)),
            Err(e) if e.kind() == ErrorKind::NotFound => match origin {
                None => (Config::default(), None),
                Some(origin) => return Err(ConfigError::NotFound { file: shown(&file, lookup), origin }),
            },
            Err(source) => return Err(ConfigError::Read { file: shown(&file, lookup), source }),
        };
        if let Some(model) = var(lookup, "EXOCLAW_MODEL") {
            let model: ModelChoice = model
                .parse()
                .map_err(|e| ConfigError::Env { var: "EXOCLAW_MODEL", message: format!("{e}") })?;
            config.model = Some(model);
        }
        if let Some(url) = var(lookup, "EXOCLAW_STORAGE_URL") {
            check_storage_url(&url)
                .map_err(|message| ConfigError::Env { var: "EXOCLAW_STORAGE_URL", message })?;
            config.storage.url = Some(url);
        }
        config.storage.url = config.storage.url.map(|url| expand_url(&url, user_home.as_deref()));
        config.local.model_path = config.local.model_path.map(|p| expand_path(&p, user_home.as_deref()));
        match &path {
            Some(path) => tracing::debug!(path = %path.display(), "configuration loaded"),
            None => tracing::debug!(home = %home.display(), "no config file; using defaults"),
        }
        Ok(LoadedConfig { config, path, home })
    }
}

/// exoclaw's home: `$EXOCLAW_HOME`, else `~/.exoclaw`.
fn exoclaw_home(lookup: Lookup<'_>) -> Result<PathBuf, ConfigError> {
    let user_home = user_home(lookup);
    match var(lookup, "EXOCLAW_HOME") {
        Some(home) => Ok(expand_path(Path::new(&home), user_home.as_deref())),
        None => Ok(user_home.ok_or(ConfigError::NoHome)?.join(".exoclaw")),
    }
}

fn default_path_in(lookup: Lookup<'_>) -> Result<PathBuf, ConfigError> {
    match var(lookup, "EXOCLAW_CONFIG") {
        Some(path) => Ok(expand_path(Path::new(&path), user_home(lookup).as_deref())),
        None => Ok(exoclaw_home(lookup)?.join(CONFIG_FILE)),
    }
}

/// Parses a config file's text; errors name the file (shown with `~` for the home) and position.
pub(crate) fn parse_in(text: &str, path: &Path, lookup: Lookup<'_>) -> Result<Config, ConfigError> {
    toml::from_str(text).map_err(|e: toml::de::Error| {
        let (line, column) = e.span().map_or((1, 1), |span| line_col(text, span.start));
        ConfigError::Parse { file: shown(path, lookup), line, column, message: e.message().trim().to_owned() }
    })
}

/// 1-based line and column (in characters) of byte `offset` in `text`.
fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = text.get(..offset.min(text.len())).unwrap_or(text);
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    (before.matches('\n').count() + 1, before[line_start..].chars().count() + 1)
}

/// `path` as shown to the user: under the home folder, as `~/…`.
fn shown(path: &Path, lookup: Lookup<'_>) -> String {
    match user_home(lookup).and_then(|home| path.strip_prefix(home).ok().map(Path::to_owned)) {
        Some(rest) => format!("~/{}", rest.display()),
        None => path.display().to_string(),
    }
}

/// Loads `.env` at `path` into the process environment without overriding set variables. The
/// whole file is checked first, so a malformed one sets nothing.
fn load_dotenv(path: &Path, lookup: Lookup<'_>) -> Result<(), ConfigError> {
    if !check_dotenv(path, lookup)? {
        return Ok(());
    }
    dotenvy::from_path(path).map_err(|e| dotenv_error(path, e, lookup))
}

/// Whether `.env` exists; an error if it does and cannot be parsed.
fn check_dotenv(path: &Path, lookup: Lookup<'_>) -> Result<bool, ConfigError> {
    let entries = match dotenvy::from_path_iter(path) {
        Ok(entries) => entries,
        Err(e) if e.not_found() => return Ok(false),
        Err(e) => return Err(dotenv_error(path, e, lookup)),
    };
    for entry in entries {
        entry.map_err(|e| dotenv_error(path, e, lookup))?;
    }
    Ok(true)
}

/// A `.env` failure. dotenvy's own message quotes the whole line, which may hold a key: only the
/// line number and the variable's name are kept.
fn dotenv_error(path: &Path, e: dotenvy::Error, lookup: Lookup<'_>) -> ConfigError {
    let file = shown(path, lookup);
    match e {
        dotenvy::Error::LineParse(bad, _) => {
            let text = std::fs::read_to_string(path).unwrap_or_default();
            let line = text.find(bad.trim()).map_or(0, |at| text[..at].matches('\n').count() + 1);
            let name =
                bad.trim().trim_start_matches("export ").split('=').next().unwrap_or("").trim().to_owned();
            let var = if !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                format!(" (variable {name})")
            } else {
                String::new()
            };
            ConfigError::DotEnv { file, line, var }
        }
        dotenvy::Error::Io(source) => ConfigError::Read { file, source },
        other => ConfigError::Read { file, source: std::io::Error::other(other.to_string()) },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_init_writes_where_load_reads() {
        let lookup = |vars: &'static [(&'static str, &'static str)]| {
            move |name: &str| vars.iter().find(|(k, _)| *k == name).map(|(_, v)| v.to_string())
        };
        let path = |vars| default_path_in(&lookup(vars)).map_err(|e| e.to_string());
        assert_eq!(path(&[("HOME", "/home/ada")]), Ok(PathBuf::from("/home/ada/.exoclaw/config.toml")));
        assert_eq!(
            path(&[("HOME", "/home/ada"), ("EXOCLAW_HOME", "~/x")]),
            Ok(PathBuf::from("/home/ada/x/config.toml"))
        );
        assert_eq!(path(&[("EXOCLAW_CONFIG", "/etc/exoclaw.toml")]), Ok(PathBuf::from("/etc/exoclaw.toml")));
        assert_eq!(
            path(&[]),
            Err("cannot find exoclaw's home folder: set EXOCLAW_HOME (or HOME)".to_owned())
        );
    }

    #[test]
    fn positions_are_one_based_and_count_characters() {
        let text = "a = 1\nbé = 2\n";
        assert_eq!(line_col(text, 0), (1, 1));
        assert_eq!(line_col(text, 6), (2, 1));
        // `=` on line 2 is after `bé `: three characters, four bytes.
        assert_eq!(line_col(text, text.find(" = 2").unwrap() + 1), (2, 4));
    }

    #[test]
    fn a_malformed_env_file_names_the_line_and_variable_but_not_the_value() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(".env");
        std::fs::write(&path, "# keys\nOPENAI_API_KEY=\"sk-unterminated-secret\nOTHER=1\n").unwrap();
        let no_env = |_: &str| None;
        let err = check_dotenv(&path, &no_env).unwrap_err();
        let message = err.to_string();
        assert!(message.contains(":2: cannot parse this line (variable OPENAI_API_KEY)"), "{message}");
        assert!(!message.contains("sk-unterminated-secret"), "{message}");
    }

    #[test]
    fn a_missing_env_file_is_not_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let no_env = |_: &str| None;
        assert!(!check_dotenv(&dir.path().join(".env"), &no_env).unwrap());
        // Loading a missing file never reaches dotenvy, so the environment is untouched.
        load_dotenv(&dir.path().join(".env"), &no_env).unwrap();
    }
}
