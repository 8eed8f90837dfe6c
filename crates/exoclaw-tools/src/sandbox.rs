//! The sandbox `shell` commands run in, which any other child process (skill scripts, MCP stdio
//! servers) can be put in too with [`SandboxPolicy::apply`]: codex's model, on Linux.
//!
//! # Modes
//!
//! | [`SandboxMode`] | files | network | environment |
//! |---|---|---|---|
//! | `read-only` | read all but the hidden paths; write only `$TMPDIR` | none, unless [`SandboxPolicy::network`] | secrets removed |
//! | `workspace-write` (default) | same, and write the workspace and [`SandboxPolicy::writable_roots`] | none, unless allowed | secrets removed |
//! | `full-access` | everything the user can | yes | inherited whole |
//!
//! *Hidden paths* ([`SandboxPolicy::hidden_paths`]) are what the runtime must keep from commands:
//! exoclaw's home, with its configuration, database and key files. Their contents can be neither
//! read nor written, whatever the mode short of `full-access`, except the *readable paths*
//! ([`SandboxPolicy::readable_paths`]) inside them: the home's `skills` folder, whose scripts
//! commands run.
//!
//! # How
//!
//! - **Files: landlock**, applied to the child between `fork` and `exec` (see `child.rs`), with the
//!   rules computed in the parent. Landlock grants and never takes back, so "all but the hidden
//!   paths" is planned as an allow-list (see `plan.rs`): every entry of `/` is granted except the
//!   one leading to a hidden path, which is split in turn, down to the hidden path. A mount
//!   namespace (a tmpfs over each hidden path) would read more naturally, and was not chosen:
//!   it needs unprivileged user namespaces, which Ubuntu 24.04's AppArmor policy and Docker's default
//!   seccomp profile refuse while landlock still works there; and a mount covers a path only in the
//!   command's own namespace, so `/proc/PID/root/…` of any process outside it (exoclaw's own) would
//!   lead around it, while landlock judges every file by where it really is.
//! - **Network: a new user and network namespace** (`unshare(CLONE_NEWUSER | CLONE_NEWNET)` in the
//!   child, the user and group mapped to themselves): the command sees one loopback interface, down,
//!   so even a server on the host's `127.0.0.1` is unreachable. Landlock also refuses every TCP
//!   bind and connect (ABI 4, Linux 6.7): a second fence, and the only one where namespaces are
//!   refused (which then leaves UDP, DNS included, open; [`Sandbox::warnings`] says so).
//! - **Environment**: secrets the command would inherit are removed, by the rules (kept as data) in
//!   [`SECRET_ENV_NAMES`], [`SECRET_ENV_PREFIXES`] and [`SECRET_ENV_SUFFIXES`]; variables set
//!   explicitly on the command are kept.
//! - **A private `$TMPDIR`**, made for each [`apply`](SandboxPolicy::apply) in the system's temporary
//!   directory, writable in both confined modes and removed when the [`Applied`] is dropped:
//!   compilers, linkers, test runners and `sort` need scratch space, and `/tmp` itself stays
//!   read-only so a command cannot leave files there for other programs to pick up.
//! - **Scopes** (landlock ABI 6, Linux 6.12): no signals to processes outside the sandbox (exoclaw
//!   included), no connecting to abstract Unix sockets made outside it.
//! - **`no_new_privs`** (set with landlock): set-uid programs (`sudo`, `su`) run without their
//!   privileges.
//!
//! Where the kernel offers less, the command gets what there is, and [`Sandbox::warnings`] (also in
//! [`Applied::warnings`]) says in a sentence the user can read what is left open.
//!
//! # Limits
//!
//! - The *names* in directories on the way to a hidden path, and inside a hidden directory, can
//!   still be listed (so `ls ~` works); no hidden file can be read, run or written.
//! - Landlock before ABI 9 cannot refuse connecting to a Unix socket by path: a daemon listening on
//!   one (Docker's, an SSH agent's, the session bus) can act for the command.
//! - A hard link to a hidden file from elsewhere reads it; a file descriptor the parent leaks to the
//!   child without close-on-exec is not checked at all (Rust opens everything close-on-exec).
//! - In `workspace-write`, writes under the home directory are refused like any other outside the
//!   workspace: caches (`~/.cache`, `~/.cargo/registry`, `~/.npm`) fail unless pointed into the
//!   workspace (`CARGO_HOME`, `GOCACHE`, `npm_config_cache`) or added to `writable_roots`.
//! - The rules are computed at [`apply`](SandboxPolicy::apply): a directory created afterwards next
//!   to the way to a hidden path (a new folder in `~`) is not readable by that command.
//! - A hidden path inside the workspace keeps working, but the workspace directories on the way to
//!   it cannot get new entries: keep exoclaw's home out of the workspace.
//! - Without the network nothing listens on TCP either, not even on loopback (the namespace's
//!   loopback is down, and landlock refuses binds): test suites that start a local server fail
//!   unless the policy allows the network. Bringing a private loopback up in the child is the
//!   next step (an `ioctl` in `child.rs`).
//! - Each [`apply`](SandboxPolicy::apply) makes a new landlock domain, and the signal scope refuses
//!   signals across domains: a command cannot kill a background process an earlier command started
//!   (exoclaw can).
//! - User namespaces can be switched off (a sysctl, AppArmor, seccomp); landlock needs Linux 5.13
//!   (truncation 6.2, TCP 6.7, scopes 6.12). Elsewhere than Linux only the environment is scrubbed.
//! - `pre_exec` makes the standard library `fork` the parent instead of `posix_spawn`: the page
//!   tables of a large parent are copied (see the `sandbox` benchmark).

mod env;
mod plan;

#[cfg(target_os = "linux")]
mod child;
#[cfg(target_os = "linux")]
mod linux;
#[cfg(target_os = "linux")]
use linux as platform;

pub use env::{SECRET_ENV_NAMES, SECRET_ENV_PREFIXES, SECRET_ENV_SUFFIXES, is_secret_env};

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::ffi::OsString;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// How much a sandboxed command may do; see the [module](self).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum SandboxMode {
    /// Read all but the hidden paths; write nothing but a private `$TMPDIR`.
    ReadOnly,
    /// Read all but the hidden paths; write the workspace, the writable roots and `$TMPDIR`.
    #[default]
    WorkspaceWrite,
    /// No sandbox: the command runs with the user's full rights and environment.
    FullAccess,
}

impl SandboxMode {
    /// The mode as configuration spells it: `read-only`, `workspace-write`, `full-access`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ReadOnly => "read-only",
            Self::WorkspaceWrite => "workspace-write",
            Self::FullAccess => "full-access",
        }
    }
}

impl fmt::Display for SandboxMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a sandboxed command may do: a mode, whether it may use the network, what it must not see
/// and where else it may write.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct SandboxPolicy {
    /// The mode. Default: `workspace-write`.
    pub mode: SandboxMode,
    /// Whether commands may use the network in `read-only` and `workspace-write` (in `full-access`
    /// they always can). Default: no.
    pub network: bool,
    /// Paths whose contents commands can neither read nor write: exoclaw's home (configuration,
    /// database, keys). A path that does not exist yet stays hidden once created.
    pub hidden_paths: Vec<PathBuf>,
    /// Directories commands may write besides the workspace, in `workspace-write`. Each must exist.
    pub writable_roots: Vec<PathBuf>,
    /// Paths commands may read (and run) even inside a hidden path: the skills folder in exoclaw's
    /// home, whose scripts the model runs, while the configuration and keys beside it stay hidden.
    /// Set by the runtime, not by `[sandbox]`; one that does not exist is ignored.
    #[serde(skip)]
    pub readable_paths: Vec<PathBuf>,
}

impl SandboxPolicy {
    /// A policy of `mode`, with no network, nothing hidden and no extra writable roots.
    pub fn new(mode: SandboxMode) -> Self {
        Self { mode, ..Self::default() }
    }

    /// No sandbox at all.
    pub fn full_access() -> Self {
        Self::new(SandboxMode::FullAccess)
    }

    /// Allows (or not) the network in the confined modes.
    pub fn with_network(mut self, allowed: bool) -> Self {
        self.network = allowed;
        self
    }

    /// Hides `paths` (exoclaw's home, its configuration, database and key files) from commands.
    pub fn with_hidden_paths(mut self, paths: impl IntoIterator<Item = impl Into<PathBuf>>) -> Self {
        self.hidden_paths.extend(paths.into_iter().map(Into::into));
        self
    }

    /// Lets commands read and run what is in `paths` even where a hidden path holds them.
    pub fn with_readable_paths(mut self, paths: impl IntoIterator<Item = impl Into<PathBuf>>) -> Self {
        self.readable_paths.extend(paths.into_iter().map(Into::into));
        self
    }

    /// Lets commands write `roots` too, in `workspace-write`.
    pub fn with_writable_roots(mut self, roots: impl IntoIterator<Item = impl Into<PathBuf>>) -> Self {
        self.writable_roots.extend(roots.into_iter().map(Into::into));
        self
    }

    /// Whether commands run confined at all (not `full-access`).
    pub fn is_confined(&self) -> bool {
        self.mode != SandboxMode::FullAccess
    }

    /// Puts the child of `cmd` in this sandbox, with `workspace` as its workspace (the directory it
    /// may write in `workspace-write`): removes inherited secrets from its environment, points
    /// `TMPDIR` at a private scratch directory (unless `cmd` sets `TMPDIR` itself), and arranges for
    /// the child to confine itself before `exec`. In `full-access`, does nothing.
    ///
    /// Keep the returned [`Applied`] until the process has exited: it owns the scratch directory.
    /// Variables set on `cmd` *after* this call reach the child whatever their names.
    pub fn apply(
        &self,
        cmd: &mut tokio::process::Command,
        workspace: &Path,
    ) -> Result<Applied, SandboxError> {
        self.apply_std(cmd.as_std_mut(), workspace)
    }

    /// [`apply`](Self::apply) for a [`std::process::Command`].
    pub fn apply_std(
        &self,
        cmd: &mut std::process::Command,
        workspace: &Path,
    ) -> Result<Applied, SandboxError> {
        if !self.is_confined() {
            return Ok(Applied {
                mode: self.mode,
                warnings: Vec::new(),
                scratch: None,
                scrubbed: Vec::new(),
            });
        }
        let support = Sandbox::probe();
        let workspace_real = std::fs::canonicalize(workspace)
            .map_err(|source| SandboxError::Workspace { path: workspace.to_owned(), source })?;
        let scrubbed = env::scrub(cmd, std::env::vars_os().map(|(name, _)| name));
        let scratch_failed = |source| SandboxError::Scratch { dir: std::env::temp_dir(), source };
        let scratch =
            tempfile::Builder::new().prefix("exoclaw-sandbox-").tempdir().map_err(scratch_failed)?;
        let scratch_real = std::fs::canonicalize(scratch.path()).map_err(scratch_failed)?;
        if !cmd.get_envs().any(|(name, value)| name == "TMPDIR" && value.is_some()) {
            cmd.env("TMPDIR", &scratch_real);
        }
        platform::confine(cmd, self, support, &workspace_real, &scratch_real)?;
        Ok(Applied { mode: self.mode, warnings: support.warnings(self), scratch: Some(scratch), scrubbed })
    }

    /// This sandbox in a few words, for the approval prompt: `the sandbox (workspace-write, no
    /// network)`, or that there is none; and when this machine enforces less, that it does.
    pub fn summary(&self) -> String {
        if !self.is_confined() {
            return "no sandbox (full-access): the user's full rights".into();
        }
        let network = if self.network { "network allowed" } else { "no network" };
        let mut text = format!("the sandbox ({}, {network})", self.mode);
        if !Sandbox::probe().warnings(self).is_empty() {
            text.push_str(", partial on this machine");
        }
        text
    }

    /// What `shell`'s description tells the model about this sandbox, as this machine enforces it.
    pub fn describe_for_model(&self) -> String {
        self.describe_with(Sandbox::probe())
    }

    fn describe_with(&self, support: &Sandbox) -> String {
        if !self.is_confined() {
            return "It is not confined: it runs with the user's full rights on this machine (every file they \
                    can reach, the network, other programs), so run only what the task needs."
                .into();
        }
        let mut text = format!("It runs in a sandbox ({}): ", self.mode);
        if support.landlock_abi.is_some() {
            text.push_str(if self.hidden_paths.is_empty() {
                "it can read the files on this machine, "
            } else {
                "it can read the files on this machine except exoclaw's own configuration and keys, "
            });
            text.push_str(match self.mode {
                SandboxMode::ReadOnly => "but write nothing, not even in the workspace, ",
                SandboxMode::WorkspaceWrite if self.writable_roots.is_empty() => {
                    "write only inside the workspace "
                }
                SandboxMode::WorkspaceWrite | SandboxMode::FullAccess => {
                    "write only inside the workspace and the directories the user allowed "
                }
            });
            text.push_str("and in `$TMPDIR` (a private scratch directory, deleted afterwards); ");
        } else {
            text.push_str(
                "file access is not confined on this machine (every file the user can reach), so read and write \
                 only what the task needs; ",
            );
        }
        text.push_str(match support.network(self) {
            Network::Allowed => "it may use the network. ",
            Network::Isolated => "it has no network access. ",
            Network::TcpRefused => "it cannot open TCP connections. ",
            Network::Open => "its network access is not confined on this machine. ",
        });
        text.push_str(
            "Secrets (API keys, tokens, passwords) are removed from its environment. When something fails because \
             of the sandbox, do not try to get around it: tell the user what the task needs (network access or \
             full access).",
        );
        text
    }

    /// A note for the model when a command's failure `output` looks like a refusal by this sandbox
    /// (a permission or network error), saying what is allowed and what to ask the user for; `None`
    /// when it does not, or when nothing is confined. A guess from the output's words: exit codes do
    /// not say why.
    pub fn denial_hint(&self, output: &str) -> Option<String> {
        self.denial_hint_with(output, Sandbox::probe())
    }

    fn denial_hint_with(&self, output: &str, support: &Sandbox) -> Option<String> {
        const FILE_DENIALS: &[&str] =
            &["Permission denied", "Operation not permitted", "Read-only file system"];
        const NETWORK_DENIALS: &[&str] = &[
            "Network is unreachable",
            "Temporary failure in name resolution",
            "Could not resolve host",
            "Name or service not known",
            "No address associated with hostname",
            "Cannot assign requested address",
        ];
        if !self.is_confined() {
            return None;
        }
        let files = support.landlock_abi.is_some() && FILE_DENIALS.iter().any(|d| output.contains(d));
        let network = !matches!(support.network(self), Network::Allowed | Network::Open)
            && NETWORK_DENIALS.iter().any(|d| output.contains(d));
        if !files && !network {
            return None;
        }
        let writes = match self.mode {
            SandboxMode::ReadOnly => "commands may write nothing but `$TMPDIR`",
            SandboxMode::WorkspaceWrite | SandboxMode::FullAccess => {
                "commands may write only in the workspace and `$TMPDIR`"
            }
        };
        let net = if self.network { "" } else { " and have no network" };
        Some(format!(
            "[the sandbox ({}) probably refused this: {writes}{net}. If the task needs more, ask the user to allow \
             {}full access; do not try to get around the sandbox.]",
            self.mode,
            if self.network { "" } else { "network access or " },
        ))
    }
}

/// What [`SandboxPolicy::apply`] did to a command. Keep it until the process has exited: dropping it
/// deletes the command's `$TMPDIR`.
#[derive(Debug)]
#[must_use = "dropping it deletes the command's TMPDIR; keep it until the process exits"]
pub struct Applied {
    mode: SandboxMode,
    warnings: Vec<String>,
    scratch: Option<tempfile::TempDir>,
    scrubbed: Vec<OsString>,
}

impl Applied {
    /// The mode the command runs in.
    pub fn mode(&self) -> SandboxMode {
        self.mode
    }

    /// What this machine could not confine, one sentence each for the user (see
    /// [`Sandbox::warnings`]); empty when everything the policy asks for is enforced.
    pub fn warnings(&self) -> &[String] {
        &self.warnings
    }

    /// The command's private `$TMPDIR`, in the confined modes.
    pub fn scratch_dir(&self) -> Option<&Path> {
        self.scratch.as_ref().map(tempfile::TempDir::path)
    }

    /// The names of the inherited variables removed from the command's environment (names only;
    /// the values are never kept).
    pub fn scrubbed_env(&self) -> &[OsString] {
        &self.scrubbed
    }
}

/// What the running kernel lets the sandbox do, found once per process by [`Sandbox::probe`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Sandbox {
    /// The kernel's landlock ABI version, or `None` when landlock is missing or disabled (then files
    /// are not confined).
    pub landlock_abi: Option<u32>,
    /// Whether an unprivileged child can make a user and network namespace (then the network is cut
    /// off entirely).
    pub network_namespace: bool,
    /// Why it cannot, when it cannot.
    pub network_namespace_error: Option<String>,
}

/// How cut off from the network a confined command is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Network {
    /// The policy allows the network.
    Allowed,
    /// A network namespace of its own: no network at all.
    Isolated,
    /// No namespace, but landlock refuses TCP binds and connects (UDP still works).
    TcpRefused,
    /// Nothing stops it.
    Open,
}

impl Sandbox {
    /// What this kernel supports: landlock's ABI (one system call) and whether user and network
    /// namespaces can be made (one `fork` of a child that enters them and stops before `exec`).
    /// Found on the first call, then cached for the life of the process.
    pub fn probe() -> &'static Sandbox {
        static PROBE: OnceLock<Sandbox> = OnceLock::new();
        PROBE.get_or_init(|| {
            let support = platform::probe();
            tracing::debug!(?support, "sandbox: probed the kernel");
            support
        })
    }

    fn network(&self, policy: &SandboxPolicy) -> Network {
        match (policy.network, self.network_namespace, self.landlock_abi) {
            (true, _, _) => Network::Allowed,
            (false, true, _) => Network::Isolated,
            (false, false, Some(4..)) => Network::TcpRefused,
            (false, false, _) => Network::Open,
        }
    }

    /// What `policy` asks for that this kernel cannot enforce, one sentence each, for the user.
    pub fn warnings(&self, policy: &SandboxPolicy) -> Vec<String> {
        let mut warnings = Vec::new();
        if !policy.is_confined() {
            return warnings;
        }
        match self.landlock_abi {
            None => warnings.push(
                "landlock is unavailable (it needs Linux 5.13 or newer with landlock enabled): sandboxed commands \
                 can read and write every file you can, exoclaw's configuration and keys included; the network \
                 and environment rules still apply"
                    .to_owned(),
            ),
            Some(abi) if abi < 3 => warnings.push(format!(
                "landlock ABI {abi} (Linux older than 6.2) cannot refuse truncating files: sandboxed commands can \
                 empty files outside the workspace, though not write to them"
            )),
            Some(_) => {}
        }
        let why = self.network_namespace_error.as_deref().unwrap_or("not supported");
        match self.network(policy) {
            Network::Allowed | Network::Isolated => {}
            Network::TcpRefused => warnings.push(format!(
                "user namespaces are unavailable ({why}): sandboxed commands cannot open TCP connections, but UDP \
                 (DNS included) still reaches the network"
            )),
            Network::Open => warnings.push(format!(
                "neither user namespaces ({why}) nor landlock's network rules (Linux 6.7) are available: sandboxed \
                 commands can use the network"
            )),
        }
        warnings
    }
}

/// Why a command could not be sandboxed. Each message says what to do.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SandboxError {
    /// The workspace cannot be resolved.
    #[error("the workspace `{}` cannot be sandboxed: {source}; check that it exists", path.display())]
    Workspace {
        /// The workspace as given.
        path: PathBuf,
        /// Why it cannot be resolved.
        source: std::io::Error,
    },
    /// A writable root cannot be resolved.
    #[error(
        "the sandbox's writable root `{}` cannot be used: {source}; create it, or remove it from the sandbox's \
         `writable_roots`",
        path.display()
    )]
    WritableRoot {
        /// The root as configured.
        path: PathBuf,
        /// Why it cannot be resolved.
        source: std::io::Error,
    },
    /// The private `$TMPDIR` could not be made.
    #[error(
        "could not create the sandbox's private TMPDIR in `{}`: {source}; make that directory writable, or \
         point TMPDIR at one that is",
        dir.display()
    )]
    Scratch {
        /// Where it was to be made.
        dir: PathBuf,
        /// Why it could not.
        source: std::io::Error,
    },
    /// The landlock ruleset could not be built.
    #[cfg(target_os = "linux")]
    #[error(
        "could not build the sandbox's landlock rules: {0}; if landlock misbehaves on this kernel, the user can \
         set the sandbox mode to `full-access` (no sandbox)"
    )]
    Landlock(#[from] landlock::RulesetError),
}

/// The sandbox where there is neither landlock nor namespaces: only the environment is scrubbed.
#[cfg(not(target_os = "linux"))]
mod platform {
    use super::{Sandbox, SandboxError, SandboxPolicy};
    use std::path::Path;

    pub(super) fn probe() -> Sandbox {
        Sandbox {
            landlock_abi: None,
            network_namespace: false,
            network_namespace_error: Some("only Linux has them".into()),
        }
    }

    pub(super) fn confine(
        _cmd: &mut std::process::Command,
        _policy: &SandboxPolicy,
        _support: &Sandbox,
        _workspace: &Path,
        _scratch: &Path,
    ) -> Result<(), SandboxError> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pretty_assertions::assert_eq;

    #[test]
    fn the_summary_names_the_mode_and_the_network_or_says_there_is_no_sandbox() {
        let summary = SandboxPolicy::default().summary();
        assert!(summary.starts_with("the sandbox (workspace-write, no network"), "{summary}");
        let summary = SandboxPolicy::new(SandboxMode::ReadOnly).with_network(true).summary();
        assert!(summary.starts_with("the sandbox (read-only, network allowed"), "{summary}");
        assert_eq!(
            SandboxPolicy::full_access().summary(),
            "no sandbox (full-access): the user's full rights"
        );
    }

    fn machine(landlock_abi: Option<u32>, network_namespace: bool) -> Sandbox {
        Sandbox {
            landlock_abi,
            network_namespace,
            network_namespace_error: (!network_namespace).then(|| "Operation not permitted".into()),
        }
    }

    #[test]
    fn modes_are_spelled_in_kebab_case() {
        for (mode, text) in [
            (SandboxMode::ReadOnly, "read-only"),
            (SandboxMode::WorkspaceWrite, "workspace-write"),
            (SandboxMode::FullAccess, "full-access"),
        ] {
            assert_eq!(serde_json::to_value(mode).unwrap(), serde_json::json!(text));
            assert_eq!(mode.to_string(), text);
        }
        let policy: SandboxPolicy = serde_json::from_value(serde_json::json!({"mode": "read-only"})).unwrap();
        assert_eq!(policy, SandboxPolicy::new(SandboxMode::ReadOnly));
        assert_eq!(SandboxPolicy::default().mode, SandboxMode::WorkspaceWrite);
    }

    #[test]
    fn a_fully_capable_kernel_has_nothing_to_warn_about() {
        let policy = SandboxPolicy::default().with_hidden_paths(["/home/ann/.exoclaw"]);
        assert_eq!(machine(Some(7), true).warnings(&policy), Vec::<String>::new());
        assert_eq!(machine(None, false).warnings(&SandboxPolicy::full_access()), Vec::<String>::new());
    }

    #[test]
    fn warnings_say_what_is_left_open() {
        let policy = SandboxPolicy::default();
        let w = machine(None, true).warnings(&policy);
        assert_eq!(w.len(), 1, "{w:?}");
        assert!(
            w[0].starts_with("landlock is unavailable") && w[0].contains("exoclaw's configuration"),
            "{w:?}"
        );
        let w = machine(Some(6), false).warnings(&policy);
        assert_eq!(w.len(), 1, "{w:?}");
        assert!(w[0].contains("cannot open TCP connections, but UDP"), "{w:?}");
        let w = machine(Some(2), false).warnings(&policy);
        assert_eq!(w.len(), 2, "{w:?}");
        assert!(w[0].contains("truncating") && w[1].contains("can use the network"), "{w:?}");
        // The network allowed: its isolation is not missed.
        assert_eq!(machine(Some(6), false).warnings(&policy.with_network(true)), Vec::<String>::new());
    }

    #[test]
    fn the_description_tells_the_model_what_the_sandbox_allows() {
        let policy = SandboxPolicy::default().with_hidden_paths(["/x"]);
        let text = policy.describe_with(&machine(Some(7), true));
        assert!(text.starts_with("It runs in a sandbox (workspace-write): "), "{text}");
        assert!(text.contains("except exoclaw's own configuration"), "{text}");
        assert!(text.contains("write only inside the workspace"), "{text}");
        assert!(text.contains("no network access"), "{text}");
        let text = SandboxPolicy::new(SandboxMode::ReadOnly).describe_with(&machine(Some(7), true));
        assert!(text.contains("write nothing, not even in the workspace"), "{text}");
        let text = policy.describe_with(&machine(None, false));
        assert!(
            text.contains("file access is not confined") && text.contains("not confined on this machine")
        );
        let text = SandboxPolicy::full_access().describe_with(&machine(Some(7), true));
        assert!(text.contains("full rights"), "{text}");
    }

    #[test]
    fn refusals_get_a_hint_and_other_failures_do_not() {
        let support = machine(Some(7), true);
        let policy = SandboxPolicy::default();
        let hint = policy.denial_hint_with("sh: 1: cannot create /etc/x: Permission denied", &support);
        assert_eq!(
            hint.as_deref(),
            Some(
                "[the sandbox (workspace-write) probably refused this: commands may write only in the workspace \
                 and `$TMPDIR` and have no network. If the task needs more, ask the user to allow network access \
                 or full access; do not try to get around the sandbox.]"
            )
        );
        assert!(policy.denial_hint_with("curl: (6) Could not resolve host: example.com", &support).is_some());
        assert_eq!(policy.denial_hint_with("error: expected `;`", &support), None);
        assert_eq!(SandboxPolicy::full_access().denial_hint_with("Permission denied", &support), None);
        // The network allowed: a DNS failure is not the sandbox's doing.
        let open = policy.clone().with_network(true);
        assert_eq!(open.denial_hint_with("Could not resolve host: example.com", &support), None);
    }
}
