//! The SSH tools the model calls: `ssh_exec`, `ssh_upload` and `ssh_download`, sharing one
//! [`SshPool`]. Each names its host as a [`Resource::Host`] (the alias), so permission rules
//! `host = "…"` apply; `ssh_exec` also names its command line and the transfers their local path.

use super::exec::{self, Outcome};
use super::session::{Connection, SshPool};
use super::{SshError, sftp};
use crate::jail::Jail;
use async_trait::async_trait;
use exoclaw_core::{Resource, ToolContext, ToolError, TypedTool};
use exoclaw_types::ToolEffect;
use schemars::JsonSchema;
use serde::Deserialize;
use std::sync::Arc;
use std::time::Duration;

/// Arguments of `ssh_exec`.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SshExecArgs {
    /// The host's alias (one of those the tool's description lists).
    pub host: String,
    /// The command line, run by the remote user's shell.
    pub command: String,
    /// Run it in a terminal (PTY): for programs that insist on one. Output then has `\r\n` line
    /// ends and stdout and stderr cannot be told apart. Default false.
    pub pty: Option<bool>,
    /// Seconds before the command is abandoned. Default 120, at most 600.
    #[schemars(range(min = 1, max = 600))]
    pub timeout_secs: Option<u64>,
}

/// Arguments of `ssh_upload`.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SshUploadArgs {
    /// The host's alias.
    pub host: String,
    /// The file to send, relative to the workspace root.
    pub local_path: String,
    /// Where to write it on the host (created or replaced; its folder must exist).
    pub remote_path: String,
}

/// Arguments of `ssh_download`.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SshDownloadArgs {
    /// The host's alias.
    pub host: String,
    /// The file to fetch from the host.
    pub remote_path: String,
    /// Where to write it, relative to the workspace root (created or replaced, folders made).
    pub local_path: String,
}

/// The hosts, as the descriptions list them.
fn hosts_line(pool: &SshPool) -> String {
    let aliases = pool.config().aliases();
    if aliases.is_empty() {
        "No hosts are configured.".into()
    } else {
        format!("Hosts: {}.", aliases.join(", "))
    }
}

/// `ssh_exec`: runs a command on a configured host over SSH and returns its exit code and output
/// (capped, head and tail kept). [`External`](ToolEffect::External): it asks by default.
#[derive(Debug, Clone)]
pub struct SshExec {
    pool: Arc<SshPool>,
}

impl SshExec {
    /// The tool, connecting through `pool`.
    pub fn new(pool: Arc<SshPool>) -> Self {
        Self { pool }
    }
}

#[async_trait]
impl TypedTool for SshExec {
    type Args = SshExecArgs;
    const NAME: &'static str = "ssh_exec";

    fn description(&self) -> String {
        format!(
            "Run a command on a remote host over SSH and get its exit code and output (stdout and \
             stderr together; when long, the start and the end are kept). {} The connection to a \
             host is kept for later calls. A non-zero exit code is reported, not an error. The \
             command is abandoned after `timeout_secs` (default {}). Set `pty` for programs that \
             need a terminal.",
            hosts_line(&self.pool),
            self.pool.config().default_timeout().as_secs()
        )
    }

    fn effect(&self) -> ToolEffect {
        ToolEffect::External
    }

    fn resources(&self, args: &SshExecArgs) -> Vec<Resource> {
        vec![Resource::Host(args.host.clone()), Resource::Command(args.command.clone())]
    }

    async fn run(&self, args: SshExecArgs, ctx: &ToolContext) -> Result<String, ToolError> {
        let config = self.pool.config();
        let timeout = match args.timeout_secs {
            None => config.default_timeout(),
            Some(0) => return Err(ToolError::InvalidArguments("`timeout_secs` must be at least 1".into())),
            Some(s) if Duration::from_secs(s) > config.max_timeout() => {
                return Err(ToolError::InvalidArguments(format!(
                    "`timeout_secs` may be at most {}",
                    config.max_timeout().as_secs()
                )));
            }
            Some(s) => Duration::from_secs(s),
        };
        let command = |alias| exec::Command {
            alias,
            line: &args.command,
            pty: args.pty.unwrap_or(false),
            timeout,
            output_limit: config.output_limit,
        };
        let run = |connection: Arc<Connection>| {
            let command = command(&args.host);
            async move { exec::run(&connection, command, &ctx.cancel).await }
        };
        let outcome = match attempt(&self.pool, &args.host, run).await? {
            Outcome::Finished(report) => report,
            Outcome::TimedOut(so_far) => {
                return Err(ToolError::Failed(format!(
                    "timed out after {}s on `{}`; the command was sent SIGKILL and its channel closed. \
                     Output so far:\n{so_far}",
                    timeout.as_secs(),
                    args.host
                )));
            }
            Outcome::Cancelled => return Err(ToolError::Cancelled),
        };
        Ok(outcome)
    }
}

/// Runs `work` on `alias`'s pooled connection. When it fails because that connection had died
/// (the host restarted, the network dropped it), opens a new one and tries once more.
async fn attempt<T, F, Fut>(pool: &SshPool, alias: &str, work: F) -> Result<T, SshError>
where
    F: Fn(Arc<Connection>) -> Fut,
    Fut: Future<Output = Result<T, SshError>>,
{
    let (_, connection) = pool.connection(alias).await?;
    match work(connection.clone()).await {
        Err(SshError::Session { .. } | SshError::Sftp { .. }) if connection.is_closed() => {
            pool.forget(alias, &connection).await;
            let (_, connection) = pool.connection(alias).await?;
            work(connection).await
        }
        other => other,
    }
}

/// `ssh_upload`: copies a workspace file to a host over SFTP. [`External`](ToolEffect::External).
#[derive(Debug, Clone)]
pub struct SshUpload {
    pool: Arc<SshPool>,
}

impl SshUpload {
    /// The tool, connecting through `pool`.
    pub fn new(pool: Arc<SshPool>) -> Self {
        Self { pool }
    }
}

#[async_trait]
impl TypedTool for SshUpload {
    type Args = SshUploadArgs;
    const NAME: &'static str = "ssh_upload";

    fn description(&self) -> String {
        format!(
            "Copy a file from the workspace to a remote host over SFTP (the remote file is created or \
             replaced). {}",
            hosts_line(&self.pool)
        )
    }

    fn effect(&self) -> ToolEffect {
        ToolEffect::External
    }

    fn resources(&self, args: &SshUploadArgs) -> Vec<Resource> {
        vec![Resource::Host(args.host.clone()), Resource::Path(args.local_path.clone())]
    }

    async fn run(&self, args: SshUploadArgs, ctx: &ToolContext) -> Result<String, ToolError> {
        let jail = Jail::new(&ctx.workspace_root)?;
        let local = jail.resolve(&args.local_path)?;
        if !tokio::fs::metadata(&local).await.is_ok_and(|m| m.is_file()) {
            return Err(ToolError::Failed(format!(
                "`{}` is not a file in the workspace",
                jail.display(&local)
            )));
        }
        let remote = args.remote_path.as_str();
        let bytes = attempt(&self.pool, &args.host, |c| {
            let local = local.clone();
            let alias = args.host.clone();
            async move { sftp::upload(&c, &alias, &local, remote).await }
        })
        .await?;
        Ok(format!("uploaded {} ({bytes} bytes) to {}:{remote}", jail.display(&local), args.host))
    }
}

/// `ssh_download`: copies a file from a host into the workspace over SFTP.
/// [`External`](ToolEffect::External).
#[derive(Debug, Clone)]
pub struct SshDownload {
    pool: Arc<SshPool>,
}

impl SshDownload {
    /// The tool, connecting through `pool`.
    pub fn new(pool: Arc<SshPool>) -> Self {
        Self { pool }
    }
}

#[async_trait]
impl TypedTool for SshDownload {
    type Args = SshDownloadArgs;
    const NAME: &'static str = "ssh_download";

    fn description(&self) -> String {
        format!(
            "Copy a file from a remote host into the workspace over SFTP (the local file is created or \
             replaced). {}",
            hosts_line(&self.pool)
        )
    }

    fn effect(&self) -> ToolEffect {
        ToolEffect::External
    }

    fn resources(&self, args: &SshDownloadArgs) -> Vec<Resource> {
        vec![Resource::Host(args.host.clone()), Resource::Path(args.local_path.clone())]
    }

    async fn run(&self, args: SshDownloadArgs, ctx: &ToolContext) -> Result<String, ToolError> {
        let jail = Jail::new(&ctx.workspace_root)?;
        let local = jail.resolve(&args.local_path)?;
        if tokio::fs::metadata(&local).await.is_ok_and(|m| m.is_dir()) {
            return Err(ToolError::Failed(format!(
                "`{}` is a folder; give the file's path, folder included",
                jail.display(&local)
            )));
        }
        let remote = args.remote_path.as_str();
        let bytes = attempt(&self.pool, &args.host, |c| {
            let local = local.clone();
            let alias = args.host.clone();
            async move { sftp::download(&c, &alias, remote, &local).await }
        })
        .await?;
        Ok(format!("downloaded {}:{remote} ({bytes} bytes) to {}", args.host, jail.display(&local)))
    }
}
