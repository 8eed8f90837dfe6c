//! What can go wrong with a plugin, each naming it and saying what to do.

use crate::manifest::Excess;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Why a plugin could not be installed, loaded or called.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PluginError {
    /// Its `plugin.toml` is not a valid manifest.
    #[error("{}: {problem}", .path.display())]
    Manifest {
        /// The manifest.
        path: PathBuf,
        /// What is wrong, and where.
        problem: String,
    },
    /// A file could not be read or written.
    #[error("{}: {reason}", .path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The operating system's reason.
        reason: String,
    },
    /// No plugin of that name is installed.
    #[error(
        "no plugin `{name}` is installed (installed: {installed}); install one with `exoclaw plugin install PATH`"
    )]
    NotInstalled {
        /// The name asked for.
        name: String,
        /// The installed plugins, or `none`.
        installed: String,
    },
    /// It asks for more than the user granted.
    #[error(
        "the plugin `{plugin}` asks for more than it was granted: {}; grant it with `exoclaw plugin grant {plugin} {}` \
         if you trust it, or remove it with `exoclaw plugin remove {plugin}`",
        list(.excess), .excess.iter().map(Excess::grant_option).collect::<Vec<_>>().join(" ")
    )]
    NotGranted {
        /// The plugin.
        plugin: String,
        /// What it asks for beyond its grant.
        excess: Vec<Excess>,
    },
    /// Its module is not WebAssembly the host can run, or cannot be instantiated under its limits.
    #[error("the plugin `{plugin}` cannot be loaded: {reason}")]
    Load {
        /// The plugin.
        plugin: String,
        /// What the engine said.
        reason: String,
    },
    /// It does not follow the plugin interface (a missing export, output that is not the JSON the
    /// interface says).
    #[error(
        "the plugin `{plugin}` answered `{function}` with something exoclaw cannot use: {problem} (see docs/plugins.md for the interface)"
    )]
    Interface {
        /// The plugin.
        plugin: String,
        /// The export called.
        function: String,
        /// What is wrong with its answer.
        problem: String,
    },
    /// A call failed; [`CallFailure`] says how.
    #[error("the plugin `{plugin}` failed in `{function}`: {failure}")]
    Call {
        /// The plugin.
        plugin: String,
        /// The export called.
        function: String,
        /// How it failed.
        failure: CallFailure,
    },
    /// A channel plugin asked for a request to a host it was not granted.
    #[error(
        "the plugin `{plugin}` asked to send a request to {host}, which it was not granted (granted: {granted}); \
         grant it with `exoclaw plugin grant {plugin} --host {host}` if you trust it"
    )]
    HostNotGranted {
        /// The plugin.
        plugin: String,
        /// The host it asked for.
        host: String,
        /// The hosts it was granted, or `none`.
        granted: String,
    },
    /// A request a channel plugin asked for could not be delivered.
    #[error("the plugin `{plugin}`'s request to {url} failed: {reason}")]
    Delivery {
        /// The plugin.
        plugin: String,
        /// Where it went (without query).
        url: String,
        /// What happened.
        reason: String,
    },
}

/// How a call into a plugin failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CallFailure {
    /// It reported an error itself.
    #[error("{0}")]
    Reported(String),
    /// It trapped (a crash inside the sandbox).
    #[error("it crashed ({0})")]
    Trapped(String),
    /// It ran past its time limit.
    #[error("it did not finish within {} (its timeout_ms)", humantime(*.0))]
    TimedOut(Duration),
    /// It ran out of its instruction budget.
    #[error("it ran out of its instruction budget (its fuel)")]
    OutOfFuel,
    /// It tried to take more memory than its cap.
    #[error("it tried to use more than its {0} MiB of memory (its memory_mib)")]
    OutOfMemory(u32),
    /// The turn was cancelled while it ran.
    #[error("cancelled")]
    Cancelled,
}

impl PluginError {
    pub(crate) fn io(path: &Path, error: &std::io::Error) -> Self {
        Self::Io { path: path.to_owned(), reason: error.to_string() }
    }
}

fn list(excess: &[Excess]) -> String {
    excess.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ")
}

fn humantime(d: Duration) -> String {
    if d.subsec_millis() == 0 { format!("{} s", d.as_secs()) } else { format!("{} ms", d.as_millis()) }
}
