//! One remote command on its own channel: stdout and stderr merged into one capped buffer (head and
//! tail kept, as `shell` does), the exit status, and a timeout.
//!
//! On timeout or cancellation the channel is sent `SIGKILL` and closed. With a PTY, sshd then hangs
//! up the command's terminal, which ends it; without one, a command that ignores its closed pipes
//! may outlive the call on the remote host (OpenSSH before 9.x ignores signal requests).

use super::SshError;
use super::session::Connection;
use crate::output::HeadTail;
use russh::{ChannelMsg, Sig};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// How a remote command ended.
#[derive(Debug)]
pub(super) enum Outcome {
    /// It ended by itself: the report (`exit code: N` and the output).
    Finished(String),
    /// The time was up: the output so far.
    TimedOut(String),
    /// The turn was cancelled.
    Cancelled,
}

/// What to run and how.
pub(super) struct Command<'a> {
    pub alias: &'a str,
    pub line: &'a str,
    pub pty: bool,
    pub timeout: Duration,
    pub output_limit: usize,
}

/// Runs `command` on a new channel of `connection`.
pub(super) async fn run(
    connection: &Connection,
    command: Command<'_>,
    cancel: &CancellationToken,
) -> Result<Outcome, SshError> {
    let failed = |what: &str, e: russh::Error| SshError::Session {
        alias: command.alias.to_owned(),
        reason: format!("{what}: {e}"),
    };
    let mut channel = connection.channel_open_session().await.map_err(|e| failed("opening a channel", e))?;
    if command.pty {
        // A plain terminal: no colours asked for, a wide line so output is not wrapped early.
        channel
            .request_pty(true, "dumb", 200, 50, 0, 0, &[])
            .await
            .map_err(|e| failed("asking for a terminal", e))?;
    }
    channel.exec(true, command.line).await.map_err(|e| failed("starting the command", e))?;

    let mut output = HeadTail::new(command.output_limit);
    let mut status: Option<String> = None;
    let deadline = tokio::time::sleep(command.timeout);
    tokio::pin!(deadline);
    let stopped = loop {
        tokio::select! {
            message = channel.wait() => match message {
                Some(ChannelMsg::Data { data }) => output.push(&data),
                Some(ChannelMsg::ExtendedData { data, .. }) => output.push(&data),
                Some(ChannelMsg::ExitStatus { exit_status }) => status = Some(format!("exit code: {exit_status}")),
                Some(ChannelMsg::ExitSignal { signal_name, .. }) => {
                    status = Some(format!("killed by signal {signal_name:?}"));
                }
                Some(ChannelMsg::Failure) => {
                    return Err(SshError::Session {
                        alias: command.alias.to_owned(),
                        reason: "the server refused to run the command".into(),
                    });
                }
                Some(ChannelMsg::Close) | None => break None,
                Some(_) => {}
            },
            () = &mut deadline => break Some(false),
            () = cancel.cancelled() => break Some(true),
        }
    };
    match stopped {
        None => {
            let head = status.unwrap_or_else(|| "exit status unknown (the server sent none)".into());
            Ok(Outcome::Finished(format!("{head}\n{}", shown(output))))
        }
        Some(cancelled) => {
            // Best effort: the channel may already be gone.
            let _ = channel.signal(Sig::KILL).await;
            let _ = channel.close().await;
            Ok(if cancelled { Outcome::Cancelled } else { Outcome::TimedOut(shown(output)) })
        }
    }
}

/// The output as the model sees it: the text, or a note that there was none.
fn shown(output: HeadTail) -> String {
    if output.total() == 0 { "(no output)".into() } else { output.finish() }
}
