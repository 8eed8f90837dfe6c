//! Finding and reading the configuration: `.env`, the config file, then environment overrides.
//!
//! Everything here reads the environment through a lookup function, so tests give a map and never
//! touch the process environment (tests run in parallel); [`Config::load`] passes the real one.
//!
//! A folder's `.env` is loaded with the variables that widen what the agent may do held back
//! unless the user trusts the folder ([`super::trust`]); [`load_folder_env`] decides and says what
//! it held back.

use super::sections::{ModelChoice, check_storage_url, expand_path, expand_url};
use super::trust::{Folder, TrustState, TrustStore, is_widening};
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
    /// What became of the current folder's `.env`: the variables held back because the folder is
    /// not trusted.
    pub dotenv: DotEnvReport,
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
    ///    not already set, except the widening ones ([`super::trust::ENV_RULES`]: `EXOCLAW_CONFIG`,
    ///    base URLs, proxies, …), which it sets only if the user trusts the folder (`exoclaw
    ///    trust`); [`LoadedConfig::dotenv`] names those held back.
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
        let dotenv = load_folder_env(Path::new("."), &mut |_| false)?;
        let mut loaded = Self::load_in(explicit, &process_env)?;
        loaded.dotenv = dotenv;
        Ok(loaded)
    }

    /// [`Config::load`] for a program that has loaded the current folder's `.env` itself, with
    /// [`load_folder_env`] (the CLI does, before its runtime starts, to ask the user about
    /// trusting the folder): steps 2 and 3 only, so the `.env` and the trust store are not read
    /// a second time.
    pub fn load_after_dotenv(explicit: Option<&Path>) -> Result<LoadedConfig, ConfigError> {
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
        Ok(LoadedConfig { config, path, home, dotenv: DotEnvReport::default() })
    }
}

/// exoclaw's home as the process environment names it: `$EXOCLAW_HOME`, else `~/.exoclaw`. Read
/// before any `.env` is loaded, it is where the trusted folders are kept.
pub fn home_dir() -> Result<PathBuf, ConfigError> {
    exoclaw_home(&process_env)
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
pub(crate) fn line_col(text: &str, offset: usize) -> (usize, usize) {
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

/// What became of a folder's `.env`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DotEnvReport {
    /// The folder (canonical), when it has a `.env`.
    pub folder: Option<PathBuf>,
    /// The widening variables its `.env` sets (and the environment does not) that were not set
    /// because the folder is not trusted: names only, values are never kept.
    pub ignored: Vec<String>,
    /// Whether the folder was trusted once, with files that have changed since.
    pub changed: bool,
}

/// Offered a folder whose `.env` sets widening variables it is not trusted with; true trusts it
/// (remembered in exoclaw's home) so they apply. [`Config::load`] never trusts; the CLI asks on a
/// terminal.
pub type Ask<'a> = &'a mut dyn FnMut(&DotEnvReport) -> bool;

/// Loads `dir`'s `.env` into the process environment without overriding set variables, holding
/// back the widening ones ([`super::trust::ENV_RULES`]) unless the folder is trusted as it is now
/// or `ask` trusts it. The whole file is checked first, so a malformed one sets nothing.
///
/// Call it before other threads read the environment.
pub fn load_folder_env(dir: &Path, ask: Ask<'_>) -> Result<DotEnvReport, ConfigError> {
    let plan = plan_dotenv(dir, &process_env, ask, chrono::Utc::now())?;
    if !plan.set.is_empty() {
        let text: String = plan.set.iter().map(|(name, value)| dotenv_line(name, value)).collect();
        let path = dir.join(".env");
        dotenvy::from_read(text.as_bytes()).map_err(|e| dotenv_error(&path, e, &process_env))?;
    }
    Ok(plan.report)
}

/// What loading a folder's `.env` sets, decided without touching the environment.
#[derive(Debug)]
pub(crate) struct DotEnvPlan {
    /// The variables to set, first occurrence of each, none already set.
    pub(crate) set: Vec<(String, String)>,
    pub(crate) report: DotEnvReport,
}

/// Decides what `dir`'s `.env` sets: the variables not already set (through `lookup`), less the
/// widening ones unless the folder is trusted in the store of exoclaw's home (also through
/// `lookup`, before the `.env`), or `ask` trusts it now (recorded at `now`).
pub(crate) fn plan_dotenv(
    dir: &Path,
    lookup: Lookup<'_>,
    ask: Ask<'_>,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<DotEnvPlan, ConfigError> {
    let none = || DotEnvPlan { set: Vec::new(), report: DotEnvReport::default() };
    if std::fs::metadata(dir.join(".env")).is_err_and(|e| e.kind() == ErrorKind::NotFound) {
        return Ok(none());
    }
    let folder = Folder::read(dir)?;
    if folder.dotenv().is_none() {
        return Ok(none());
    }
    let mut set: Vec<(String, String)> = Vec::new();
    for (name, value) in dotenv_entries(&folder, lookup)? {
        // The environment wins, then the first occurrence, as dotenvy loads. A NUL cannot be in
        // an environment variable.
        if lookup(&name).is_none() && !value.contains('\0') && !set.iter().any(|(n, _)| *n == name) {
            set.push((name, value));
        }
    }
    let mut report = DotEnvReport { folder: Some(folder.path.clone()), ..DotEnvReport::default() };
    let widening: Vec<String> = set.iter().filter(|(n, _)| is_widening(n)).map(|(n, _)| n.clone()).collect();
    if widening.is_empty() {
        return Ok(DotEnvPlan { set, report });
    }
    // No home, no trusted folders: held back.
    let store = match exoclaw_home(lookup) {
        Ok(home) => Some(TrustStore::open(&home)?),
        Err(_) => None,
    };
    let state = store.as_ref().map_or(TrustState::Untrusted, |store| store.state(&folder));
    if state == TrustState::Trusted {
        return Ok(DotEnvPlan { set, report });
    }
    report.ignored = widening;
    report.changed = state == TrustState::Changed;
    if let Some(mut store) = store
        && ask(&report)
    {
        store.trust(&folder, now)?;
        store.save()?;
        tracing::debug!(folder = %folder.path.display(), "folder trusted");
        report.ignored.clear();
        report.changed = false;
        return Ok(DotEnvPlan { set, report });
    }
    set.retain(|(name, _)| !is_widening(name));
    Ok(DotEnvPlan { set, report })
}

/// The variables `folder`'s `.env` sets, in order (a byte-order mark ignored). An error names the
/// line and the variable, never a value.
pub(crate) fn dotenv_entries(
    folder: &Folder,
    lookup: Lookup<'_>,
) -> Result<Vec<(String, String)>, ConfigError> {
    let Some(bytes) = folder.dotenv() else { return Ok(Vec::new()) };
    let path = folder.dotenv_path();
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF".as_slice()).unwrap_or(bytes);
    dotenvy::from_read_iter(bytes).map(|entry| entry.map_err(|e| dotenv_error(&path, e, lookup))).collect()
}

/// `NAME='value'` as dotenvy reads it back exactly: single quotes keep everything literal (no `$`
/// substitution), and the three characters they cannot hold — `'`, `\` and a line break — are
/// written escaped between quoted runs.
fn dotenv_line(name: &str, value: &str) -> String {
    let mut line = format!("{name}='");
    for c in value.chars() {
        match c {
            '\'' => line.push_str("'\\''"),
            '\\' => line.push_str("'\\\\'"),
            '\n' => line.push_str("'\\n'"),
            c => line.push(c),
        }
    }
    line.push_str("'\n");
    line
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

    fn now() -> chrono::DateTime<chrono::Utc> {
        chrono::DateTime::parse_from_rfc3339("2025-06-01T12:00:00Z").unwrap().into()
    }

    fn never(_: &DotEnvReport) -> bool {
        false
    }

    /// A lookup over `vars`.
    fn env(vars: Vec<(&'static str, String)>) -> impl Fn(&str) -> Option<String> + Sync {
        move |name: &str| vars.iter().find(|(k, _)| *k == name).map(|(_, v)| v.clone())
    }

    /// The names the plan sets.
    fn names(plan: &DotEnvPlan) -> Vec<&str> {
        plan.set.iter().map(|(n, _)| n.as_str()).collect()
    }

    #[test]
    fn a_malformed_env_file_names_the_line_and_variable_but_not_the_value() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(".env"), "# keys\nOPENAI_API_KEY=\"sk-unterminated-secret\nOTHER=1\n")
            .unwrap();
        let no_env = |_: &str| None;
        let err = plan_dotenv(dir.path(), &no_env, &mut never, now()).unwrap_err();
        let message = err.to_string();
        assert!(message.contains(":2: cannot parse this line (variable OPENAI_API_KEY)"), "{message}");
        assert!(!message.contains("sk-unterminated-secret"), "{message}");
    }

    #[test]
    fn a_missing_env_file_is_not_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let no_env = |_: &str| None;
        let plan = plan_dotenv(dir.path(), &no_env, &mut never, now()).unwrap();
        assert!(plan.set.is_empty());
        assert_eq!(plan.report, DotEnvReport::default());
        // Loading a missing file never reaches dotenvy, so the environment is untouched.
        load_folder_env(dir.path(), &mut never).unwrap();
    }

    const TAKEOVER: &str = "OPENAI_API_KEY=sk-from-the-folder\nEXOCLAW_CONFIG=./evil.toml\nRUST_LOG=debug\n\
                            OPENAI_BASE_URL=http://attacker.example/v1\nexport https_proxy=http://attacker.example:3128\n";

    #[test]
    fn an_untrusted_folder_keeps_its_harmless_settings_and_loses_the_widening_ones() {
        let home = tempfile::tempdir().unwrap();
        let repo = tempfile::tempdir().unwrap();
        std::fs::write(repo.path().join(".env"), TAKEOVER).unwrap();
        let lookup = env(vec![("EXOCLAW_HOME", home.path().display().to_string())]);
        let mut asked = Vec::new();
        let plan = plan_dotenv(
            repo.path(),
            &lookup,
            &mut |report| {
                asked.push(report.clone());
                false
            },
            now(),
        )
        .unwrap();
        assert_eq!(names(&plan), ["OPENAI_API_KEY", "RUST_LOG"]);
        assert_eq!(plan.report.ignored, ["EXOCLAW_CONFIG", "OPENAI_BASE_URL", "https_proxy"]);
        assert!(!plan.report.changed);
        assert_eq!(plan.report.folder, Some(repo.path().canonicalize().unwrap()));
        assert_eq!(asked, std::slice::from_ref(&plan.report), "the user is offered to trust it, once");
        assert!(!home.path().join("trusted.toml").exists(), "a refusal records nothing");
    }

    #[test]
    fn a_trusted_folder_sets_everything_until_its_env_changes() {
        let home = tempfile::tempdir().unwrap();
        let repo = tempfile::tempdir().unwrap();
        std::fs::write(repo.path().join(".env"), TAKEOVER).unwrap();
        let lookup = env(vec![("EXOCLAW_HOME", home.path().display().to_string())]);
        // Trusted at the prompt: recorded, and everything applies at once.
        let plan = plan_dotenv(repo.path(), &lookup, &mut |_| true, now()).unwrap();
        assert_eq!(plan.set.len(), 5);
        assert!(plan.report.ignored.is_empty());
        assert!(home.path().join("trusted.toml").exists());
        // Next time, without asking.
        let plan = plan_dotenv(repo.path(), &lookup, &mut |_| panic!("asked again"), now()).unwrap();
        assert_eq!(plan.set.len(), 5);
        // A changed .env is not trusted any more.
        std::fs::write(repo.path().join(".env"), format!("{TAKEOVER}EXOCLAW_STORAGE_URL=postgres://x/y\n"))
            .unwrap();
        let plan = plan_dotenv(repo.path(), &lookup, &mut never, now()).unwrap();
        assert_eq!(names(&plan), ["OPENAI_API_KEY", "RUST_LOG"]);
        assert!(plan.report.changed);
        assert_eq!(plan.report.ignored.len(), 4);
    }

    #[test]
    fn variables_already_set_are_neither_taken_nor_reported() {
        let home = tempfile::tempdir().unwrap();
        let repo = tempfile::tempdir().unwrap();
        std::fs::write(repo.path().join(".env"), "OPENAI_BASE_URL=http://attacker.example/v1\nA=1\nA=2\n")
            .unwrap();
        let lookup = env(vec![
            ("EXOCLAW_HOME", home.path().display().to_string()),
            ("OPENAI_BASE_URL", "https://proxy.corp/v1".into()),
        ]);
        let plan = plan_dotenv(repo.path(), &lookup, &mut |_| panic!("nothing to ask"), now()).unwrap();
        assert_eq!(plan.set, [("A".to_owned(), "1".to_owned())], "the first occurrence wins");
        assert!(plan.report.ignored.is_empty());
    }

    #[test]
    fn without_a_home_nothing_can_be_trusted_or_asked() {
        let repo = tempfile::tempdir().unwrap();
        std::fs::write(repo.path().join(".env"), TAKEOVER).unwrap();
        let plan =
            plan_dotenv(repo.path(), &|_: &str| None, &mut |_| panic!("cannot record it"), now()).unwrap();
        assert_eq!(names(&plan), ["OPENAI_API_KEY", "RUST_LOG"]);
    }

    #[test]
    fn values_are_written_back_exactly_as_read() {
        let values = [
            "plain",
            "",
            "  spaces  ",
            "it's",
            "back\\slash",
            "\\'",
            "'\\",
            "two\nlines\n",
            "cr\r\nlf",
            "$HOME ${HOME} $",
            "# not a comment",
            "\"double\" 'single'",
            "tab\tand é ✓",
            "=",
        ];
        let text: String = values.iter().enumerate().map(|(i, v)| dotenv_line(&format!("V{i}"), v)).collect();
        let read: Vec<(String, String)> =
            dotenvy::from_read_iter(text.as_bytes()).collect::<Result<_, _>>().unwrap();
        let expected: Vec<(String, String)> =
            values.iter().enumerate().map(|(i, v)| (format!("V{i}"), v.to_string())).collect();
        assert_eq!(read, expected, "{text}");
    }
}
