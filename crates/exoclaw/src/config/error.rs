//! [`ConfigError`]: everything that can be wrong with exoclaw's configuration, each message saying
//! where the problem is and what to do about it.

/// A configuration that cannot be read or used.
///
/// No variant ever carries a secret: API keys are not echoed, and storage URLs are shown with
/// their passwords masked.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// A config file named explicitly (`--config` or `EXOCLAW_CONFIG`) does not exist.
    #[error(
        "config file {file} (from {origin}) does not exist; check the path, or create it with `exoclaw config init`"
    )]
    NotFound {
        /// The file, as shown to the user.
        file: String,
        /// Where the path came from: `--config` or `EXOCLAW_CONFIG`.
        origin: &'static str,
    },
    /// The config file (or `.env`) exists but cannot be read.
    #[error("cannot read {file}: {source}")]
    Read {
        /// The file, as shown to the user.
        file: String,
        /// The IO failure.
        source: std::io::Error,
    },
    /// A file exoclaw keeps (the trusted folders) cannot be written.
    #[error("cannot write {file}: {source}")]
    Write {
        /// The file, as shown to the user.
        file: String,
        /// The IO failure.
        source: std::io::Error,
    },
    /// The list of trusted folders (`trusted.toml` in exoclaw's home) cannot be used.
    #[error(
        "{file}: {message} — fix it, or delete it to forget every trusted folder (`exoclaw trust` trusts one again)"
    )]
    TrustFile {
        /// The file.
        file: String,
        /// What is wrong.
        message: String,
    },
    /// A permissions file (`permissions.toml` in exoclaw's home, or a workspace's
    /// `.exoclaw/permissions.toml`) is not valid TOML, or a rule in it is wrong.
    #[error(
        "{file}:{line}:{column}: {message} — fix the rule (or delete the file), then check with `exoclaw permissions`"
    )]
    PermissionsFile {
        /// The file.
        file: String,
        /// 1-based line of the problem.
        line: usize,
        /// 1-based column (in characters) of the problem.
        column: usize,
        /// What is wrong.
        message: String,
    },
    /// The config file is not valid TOML, or a value in it is wrong.
    #[error("{file}:{line}:{column}: {message} — fix it, then check with `exoclaw config check`")]
    Parse {
        /// The file, as shown to the user (`~/.exoclaw/config.toml`).
        file: String,
        /// 1-based line of the problem.
        line: usize,
        /// 1-based column (in characters) of the problem.
        column: usize,
        /// What is wrong.
        message: String,
    },
    /// A `.env` file in the working directory cannot be parsed.
    #[error("{file}:{line}: cannot parse this line{var} — write it as NAME=value")]
    DotEnv {
        /// The `.env` file, as shown to the user.
        file: String,
        /// 1-based line of the problem (0 when it cannot be found).
        line: usize,
        /// ` (variable NAME)` when the line names one; the value is never shown.
        var: String,
    },
    /// An environment variable exoclaw reads holds an unusable value.
    #[error("{var}: {message}")]
    Env {
        /// The variable.
        var: &'static str,
        /// What is wrong and how to fix it.
        message: String,
    },
    /// Neither `EXOCLAW_HOME` nor `HOME` is set, so there is nowhere to look for the config.
    #[error("cannot find exoclaw's home folder: set EXOCLAW_HOME (or HOME)")]
    NoHome,
    /// A model names a provider instance that is neither configured nor built in.
    #[error(
        "unknown provider `{name}` in `{requested}`; known providers: {known} — add a [providers.{name}] table with a `kind` to the config, or use one of those"
    )]
    UnknownProvider {
        /// The provider name that was not found.
        name: String,
        /// The model as requested.
        requested: String,
        /// The configured and built-in names, comma-separated.
        known: String,
    },
    /// `[routing]` names something that does not exist, or a model has no route.
    #[error("{0}")]
    Routing(String),
    /// `[hooks]` holds a pattern that cannot be used.
    #[error("`{key}`: {message} — fix the pattern in config.toml, then check with `exoclaw config check`")]
    Hook {
        /// The setting, as `hooks.redact`.
        key: &'static str,
        /// What is wrong with which pattern.
        message: String,
    },
    /// Only a provider was named, and it has no default model.
    #[error(
        "provider `{provider}` has no default model: name the model as `{provider}/MODEL`, or set `default_model` in [providers.{provider}]"
    )]
    NoDefaultModel {
        /// The provider instance.
        provider: String,
    },
    /// The embedded provider was asked for a model it does not have.
    #[error("{reason}")]
    LocalModel {
        /// The model as requested.
        requested: String,
        /// Why no model is found by that name, and which are (from [`exoclaw_local::catalog`]).
        reason: String,
    },
}
