//! The SSH tools: `ssh_exec` (a command on a remote host, with or without a PTY), `ssh_upload` and
//! `ssh_download` (SFTP, the local side jailed to the workspace), over one connection per host
//! that later calls reuse.
//!
//! | module | owns |
//! |---|---|
//! | [`config`] | the `[ssh]` settings and `~/.ssh/config`: which aliases exist and how to reach them |
//! | [`known_hosts`] | whether a server's key is the recorded one |
//! | `session` | connecting, checking the host key, logging in, the per-host pool |
//! | `exec` | one command on a channel: output capped, exit status, timeout |
//! | `sftp` | copying a file each way |
//! | `tool` | the three [`TypedTool`](exoclaw_core::TypedTool)s |
//!
//! Hosts are named by alias: one configured under `[ssh.hosts]` or a plain `Host` of
//! `~/.ssh/config`; any other name is refused, so the model cannot reach arbitrary machines. A
//! server's key must be recorded (`~/.ssh/known_hosts`, `~/.exoclaw/known_hosts`) or pinned; an
//! unknown key is refused with how to accept it (`exoclaw ssh trust ALIAS`), a changed key always.

pub mod config;
mod exec;
pub mod known_hosts;
mod session;
mod sftp;
mod tool;

pub use config::{HostConfig, SshConfig, Target};
pub use session::{SshPool, fetch_host_key};
pub use tool::{SshDownload, SshDownloadArgs, SshExec, SshExecArgs, SshUpload, SshUploadArgs};

use exoclaw_core::ToolError;
use std::path::PathBuf;

/// Why an SSH operation failed. Every message names the host and says what to do.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SshError {
    /// The alias is neither configured nor in `~/.ssh/config`.
    #[error(
        "`{alias}` is not a known SSH host; use one of: {}. To add one, add `[ssh.hosts.{alias}]` \
         to the configuration or a `Host {alias}` block to ~/.ssh/config",
        if known.is_empty() { "(none configured)".to_owned() } else { known.join(", ") }
    )]
    UnknownAlias {
        /// The name asked for.
        alias: String,
        /// The aliases that exist.
        known: Vec<String>,
    },
    /// The server's key is not recorded anywhere.
    #[error(
        "the host key of `{alias}` ({name}) is not known ({fingerprint}); refusing to connect. If the \
         user confirms this fingerprint (ask the host's administrator, or run `ssh-keygen -lf \
         /etc/ssh/ssh_host_ed25519_key.pub` on it), they can accept it with `exoclaw ssh trust \
         {alias}` (which records it in {}), or pin it as `host_key` under `[ssh.hosts.{alias}]`",
        trust_file.display()
    )]
    UnknownHostKey {
        /// The alias.
        alias: String,
        /// `host` or `[host]:port`.
        name: String,
        /// The key's SHA-256 fingerprint.
        fingerprint: String,
        /// Where `exoclaw ssh trust` records keys.
        trust_file: PathBuf,
    },
    /// The server's key differs from the recorded one.
    #[error(
        "the host key of `{alias}` ({name}) has CHANGED: the server shows {shown} but {recorded} is \
         recorded{}. This may be an attack (someone between exoclaw and the host) or a reinstalled \
         server; refusing to connect. Ask the user to confirm the new key with the host's \
         administrator, then remove the old record{} and run `exoclaw ssh trust {alias}`",
        match record.as_deref() { Some((file, line)) => format!(" in {}:{line}", file.display()), None => " as the pinned `host_key`".into() },
        match record.as_deref() { Some((file, line)) => format!(" (`ssh-keygen -R '{name}' -f {}`, or delete line {line})", file.display()), None => format!(" (the `host_key` under `[ssh.hosts.{alias}]`)") }
    )]
    ChangedHostKey {
        /// The alias.
        alias: String,
        /// `host` or `[host]:port`.
        name: String,
        /// The fingerprint the server showed.
        shown: String,
        /// The recorded fingerprint.
        recorded: String,
        /// The file and line of the record; `None` for a pinned key. (Boxed: it would make every
        /// `Result` carrying this error larger.)
        record: Option<Box<(PathBuf, usize)>>,
    },
    /// The server's key is marked `@revoked`.
    #[error(
        "the host key of `{alias}` ({name}), {fingerprint}, is marked @revoked in {}:{}; refusing to \
         connect. Ask the user to check the host",
        record.0.display(), record.1
    )]
    RevokedHostKey {
        /// The alias.
        alias: String,
        /// `host` or `[host]:port`.
        name: String,
        /// The key's fingerprint.
        fingerprint: String,
        /// Where it is revoked.
        record: (PathBuf, usize),
    },
    /// The TCP connection or the SSH handshake failed.
    #[error(
        "could not connect to `{alias}` ({addr}): {reason}. Check that the host is up and the address and port are right"
    )]
    Connect {
        /// The alias.
        alias: String,
        /// `host:port`.
        addr: String,
        /// What went wrong.
        reason: String,
    },
    /// No method of logging in worked.
    #[error(
        "could not log in to `{alias}` as `{user}`: the server refused {}. Give the host a key file \
         the server accepts (`identity_files`), or a `password_env`",
        if tried.is_empty() { "every method (no key file was found and no password is configured)".to_owned() } else { tried.join(", ") }
    )]
    Auth {
        /// The alias.
        alias: String,
        /// The user.
        user: String,
        /// What was tried (key file paths, `password from $VAR`); never a secret.
        tried: Vec<String>,
    },
    /// Connecting and logging in took too long.
    #[error("connecting to `{alias}` took longer than {secs}s; check that the host is reachable")]
    ConnectTimeout {
        /// The alias.
        alias: String,
        /// The limit.
        secs: u64,
    },
    /// The connection broke or the server refused a request on it.
    #[error("SSH to `{alias}`: {reason}")]
    Session {
        /// The alias.
        alias: String,
        /// What went wrong.
        reason: String,
    },
    /// An SFTP operation failed.
    #[error("SFTP on `{alias}`: {reason}")]
    Sftp {
        /// The alias.
        alias: String,
        /// What went wrong, with the remote path.
        reason: String,
    },
}

impl From<SshError> for ToolError {
    fn from(e: SshError) -> Self {
        match e {
            SshError::UnknownAlias { .. }
            | SshError::UnknownHostKey { .. }
            | SshError::ChangedHostKey { .. }
            | SshError::RevokedHostKey { .. } => ToolError::Refused(e.to_string()),
            SshError::Connect { .. }
            | SshError::Auth { .. }
            | SshError::ConnectTimeout { .. }
            | SshError::Session { .. }
            | SshError::Sftp { .. } => ToolError::Failed(e.to_string()),
        }
    }
}

/// `*` (any run of characters) and `?` (one character) patterns, case-insensitive, as
/// `ssh_config` `Host` lines and `known_hosts` host fields both use them.
fn wildcard(pattern: &str, text: &str) -> bool {
    fn go(p: &[u8], t: &[u8]) -> bool {
        match (p.first(), t.first()) {
            (None, None) => true,
            (Some(b'*'), _) => go(&p[1..], t) || (!t.is_empty() && go(p, &t[1..])),
            (Some(b'?'), Some(_)) => go(&p[1..], &t[1..]),
            (Some(a), Some(b)) if a.eq_ignore_ascii_case(b) => go(&p[1..], &t[1..]),
            _ => false,
        }
    }
    go(pattern.as_bytes(), text.as_bytes())
}
