//! `shell`: runs `sh -c COMMAND` in its own process group, stdout and stderr merged into one pipe
//! (so they interleave as a terminal would show them) and capped, head and tail kept.
//!
//! On timeout, on cancellation and when the call is dropped half-way, the whole process group is
//! killed with `SIGKILL`, so a background grandchild (`server &`) dies with the shell. When the
//! command ends by itself, processes it left in the background are left alone; their output is read
//! for a short grace period only.
//!
//! Commands run in the [sandbox](crate::sandbox) of the tool's [`SandboxPolicy`] (by default
//! `workspace-write` with no network and nothing hidden; the runtime passes the real policy, with
//! exoclaw's home hidden). The description tells the model what the sandbox allows, and a failed
//! command whose output looks like a refusal by it gets a note saying what to ask the user for. A
//! background process that outlives its command loses the command's private `$TMPDIR`.

use crate::jail::Jail;
use crate::output::HeadTail;
use crate::sandbox::SandboxPolicy;
use async_trait::async_trait;
use exoclaw_core::{Resource, ToolContext, ToolError, TypedTool};
use exoclaw_types::ToolEffect;
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use schemars::JsonSchema;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::os::fd::OwnedFd;
use std::os::unix::process::ExitStatusExt;
use std::process::{ExitStatus, Stdio};
use std::time::Duration;
use tokio::io::AsyncReadExt;
use tokio::net::unix::pipe;

/// How long output is still read after the command exits, for background processes that hold the
/// pipe open.
const DRAIN_GRACE: Duration = Duration::from_millis(500);

/// Arguments of `shell`.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ShellArgs {
    /// The command line, run by `sh -c`. Pipes, `&&`, redirections and the like work.
    pub command: String,
    /// The directory to run in, relative to the workspace root. Default: the workspace root.
    pub cwd: Option<String>,
    /// Extra environment variables for the command, added to the inherited environment.
    pub env: Option<BTreeMap<String, String>>,
    /// Seconds before the command and everything it started are killed. Default 120, at most 600.
    #[schemars(range(min = 1, max = 600))]
    pub timeout_secs: Option<u64>,
}

/// `shell`: runs a command line with `sh -c`, starting in the workspace or a directory inside it,
/// and returns its exit code and merged output (capped, with a marker). Its starting folder is
/// checked against the workspace; what the command may do is the sandbox's to enforce (see
/// [`Shell::with_sandbox`]), which its description tells the model. It is
/// [`Mutating`](ToolEffect::Mutating) in every mode, so it asks by default.
#[derive(Debug, Clone)]
pub struct Shell {
    default_timeout: Duration,
    max_timeout: Duration,
    output_limit: usize,
    sandbox: SandboxPolicy,
}

impl Default for Shell {
    fn default() -> Self {
        Self {
            default_timeout: Duration::from_secs(120),
            max_timeout: Duration::from_secs(600),
            output_limit: 30 * 1024,
            sandbox: SandboxPolicy::default(),
        }
    }
}

impl Shell {
    /// Keeps at most `bytes` of output (default 30 KiB): the first and the last half.
    pub fn with_output_limit(mut self, bytes: usize) -> Self {
        self.output_limit = bytes.max(2);
        self
    }

    /// Runs commands in `policy`'s sandbox (default: `workspace-write`, no network, nothing hidden).
    pub fn with_sandbox(mut self, policy: SandboxPolicy) -> Self {
        self.sandbox = policy;
        self
    }

    /// The sandbox commands run in.
    pub fn sandbox(&self) -> &SandboxPolicy {
        &self.sandbox
    }
}

#[async_trait]
impl TypedTool for Shell {
    type Args = ShellArgs;
    const NAME: &'static str = "shell";

    fn description(&self) -> String {
        format!(
            "Run a shell command (`sh -c`) and get its exit code and output (stdout and stderr \
             together; when long, the start and the end are kept). It starts in the workspace (or \
             `cwd` inside it). {} A non-zero exit code is reported, not an error. The command and \
             everything it starts are killed after `timeout_secs` (default {}). No input is given on \
             stdin.",
            self.sandbox.describe_for_model(),
            self.default_timeout.as_secs()
        )
    }

    fn effect(&self) -> ToolEffect {
        ToolEffect::Mutating
    }

    fn resources(&self, args: &ShellArgs) -> Vec<Resource> {
        vec![Resource::Command(args.command.clone())]
    }

    fn confinement(&self) -> Option<String> {
        Some(self.sandbox.summary())
    }

    async fn run(&self, args: ShellArgs, ctx: &ToolContext) -> Result<String, ToolError> {
        let timeout = match args.timeout_secs {
            None => self.default_timeout,
            Some(0) => return Err(ToolError::InvalidArguments("`timeout_secs` must be at least 1".into())),
            Some(s) if Duration::from_secs(s) > self.max_timeout => {
                return Err(ToolError::InvalidArguments(format!(
                    "`timeout_secs` may be at most {}",
                    self.max_timeout.as_secs()
                )));
            }
            Some(s) => Duration::from_secs(s),
        };
        let jail = Jail::new(&ctx.workspace_root)?;
        let cwd = jail.resolve(args.cwd.as_deref().unwrap_or("."))?;
        if !tokio::fs::metadata(&cwd).await.is_ok_and(|m| m.is_dir()) {
            return Err(ToolError::Failed(format!(
                "`{}` is not a directory in the workspace",
                jail.display(&cwd)
            )));
        }

        let spawn_failed = |e: std::io::Error| ToolError::Failed(format!("could not start `sh`: {e}"));
        let (reader, writer) = std::io::pipe().map_err(spawn_failed)?;
        let mut command = tokio::process::Command::new("sh");
        command
            .arg("-c")
            .arg(&args.command)
            .current_dir(&cwd)
            .envs(args.env.iter().flatten())
            .stdin(Stdio::null())
            .stdout(writer.try_clone().map_err(spawn_failed)?)
            .stderr(writer)
            .process_group(0)
            .kill_on_drop(true);
        // Held until the command is done: it owns the command's private TMPDIR.
        let applied =
            self.sandbox.apply(&mut command, jail.root()).map_err(|e| ToolError::Failed(e.to_string()))?;
        for warning in applied.warnings() {
            tracing::debug!(%warning, "shell: the sandbox is partial on this machine");
        }
        let mut child = command.spawn().map_err(|e| match self.sandbox.is_confined() {
            true => ToolError::Failed(format!(
                "could not start `sh` in the sandbox ({}): {e}. If the sandbox cannot be set up on this \
                 machine, tell the user: they can set the sandbox mode to `full-access`.",
                self.sandbox.mode
            )),
            false => spawn_failed(e),
        })?;
        // The command holds our copies of the pipe's write end; the pipe only ends once they close.
        drop(command);
        let mut group = GroupGuard::new(child.id());
        let mut pipe = pipe::Receiver::from_owned_fd(OwnedFd::from(reader))
            .map_err(|e| ToolError::Failed(format!("could not read the command's output: {e}")))?;
        let mut output = HeadTail::new(self.output_limit);

        let mut buf = vec![0u8; 16 * 1024];
        let mut open = true;
        let deadline = tokio::time::sleep(timeout);
        tokio::pin!(deadline);
        let end = loop {
            tokio::select! {
                read = pipe.read(&mut buf), if open => match read {
                    Ok(0) | Err(_) => open = false,
                    Ok(n) => output.push(&buf[..n]),
                },
                status = child.wait() => break End::Exited(status),
                () = &mut deadline => break End::TimedOut,
                () = ctx.cancel.cancelled() => break End::Cancelled,
            }
        };

        match end {
            End::Exited(status) => {
                // Reaped: the group id may be reused from here on, so never signal it again.
                group.disarm();
                if open {
                    let drained = drain(&mut pipe, &mut output, &mut buf);
                    let _ = tokio::time::timeout(DRAIN_GRACE, drained).await;
                }
                let status =
                    status.map_err(|e| ToolError::Failed(format!("waiting for the command: {e}")))?;
                let mut report = report(status, output);
                if !status.success()
                    && let Some(hint) = self.sandbox.denial_hint(&report)
                {
                    report.push('\n');
                    report.push_str(&hint);
                }
                drop(applied);
                Ok(report)
            }
            End::TimedOut | End::Cancelled => {
                group.kill();
                let _ = child.wait().await;
                group.disarm();
                // Everything in the group is dead, so the pipe ends at once unless something left it.
                if open {
                    let _ = tokio::time::timeout(DRAIN_GRACE, drain(&mut pipe, &mut output, &mut buf)).await;
                }
                if matches!(end, End::Cancelled) {
                    return Err(ToolError::Cancelled);
                }
                Err(ToolError::Failed(format!(
                    "timed out after {}s; the command and every process it started were killed. Output \
                     so far:\n{}",
                    timeout.as_secs(),
                    shown(output)
                )))
            }
        }
    }
}

/// How the wait for the command ended.
enum End {
    Exited(std::io::Result<ExitStatus>),
    TimedOut,
    Cancelled,
}

/// Reads the pipe to its end.
async fn drain(pipe: &mut pipe::Receiver, output: &mut HeadTail, buf: &mut [u8]) {
    while let Ok(n @ 1..) = pipe.read(buf).await {
        output.push(&buf[..n]);
    }
}

/// The output as the model sees it: the text, or a note that there was none.
fn shown(output: HeadTail) -> String {
    if output.total() == 0 { "(no output)".into() } else { output.finish() }
}

/// `exit code: N` (or the signal that ended it) and the output.
fn report(status: ExitStatus, output: HeadTail) -> String {
    let head = match (status.code(), status.signal()) {
        (Some(code), _) => format!("exit code: {code}"),
        (None, Some(signal)) => {
            let name = Signal::try_from(signal).map(|s| s.as_str()).unwrap_or("unknown signal");
            format!("killed by signal {signal} ({name})")
        }
        (None, None) => "exit status unknown".into(),
    };
    format!("{head}\n{}", shown(output))
}

/// Kills the command's whole process group with `SIGKILL` when dropped, unless disarmed: a call
/// dropped half-way (its turn aborted) must not leave the command running.
struct GroupGuard {
    group: Option<Pid>,
}

impl GroupGuard {
    fn new(child_id: Option<u32>) -> Self {
        // `process_group(0)` made the child the leader of a group whose id is its own pid.
        Self { group: child_id.and_then(|id| i32::try_from(id).ok()).map(Pid::from_raw) }
    }

    fn kill(&self) {
        if let Some(group) = self.group
            && let Err(e) = killpg(group, Signal::SIGKILL)
        {
            tracing::debug!(group = group.as_raw(), error = %e, "killing the command's process group");
        }
    }

    fn disarm(&mut self) {
        self.group = None;
    }
}

impl Drop for GroupGuard {
    fn drop(&mut self) {
        self.kill();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_description_tells_the_model_about_the_sandbox() {
        let description = Shell::default().description();
        assert!(description.contains("starts in the workspace"), "{description}");
        assert!(description.contains("It runs in a sandbox (workspace-write)"), "{description}");
        let description = Shell::default().with_sandbox(SandboxPolicy::full_access()).description();
        assert!(description.contains("not confined"), "{description}");
        assert!(description.contains("full rights"), "{description}");
    }
}
