//! `exoclaw chat "…"`: one agent turn, streamed, stored as a session.

use crate::app::{self, App};
use crate::render::{Mode, Renderer};
use crate::{TurnArgs, output};
use exoclaw_types::TurnOutcome;
use std::io::{IsTerminal, Read};
use std::path::Path;
use std::process::ExitCode;
use tokio_util::sync::CancellationToken;

/// `exoclaw chat`.
#[derive(Debug, clap::Args)]
pub struct ChatArgs {
    /// The message. `-` reads it from stdin.
    #[arg(required = true, num_args = 1..)]
    prompt: Vec<String>,
    #[command(flatten)]
    turn: TurnArgs,
    /// Continue this session: its id, or a unique prefix of it (see `exoclaw session list`).
    #[arg(short, long, value_name = "ID", conflicts_with = "continue_last")]
    session: Option<String>,
    /// Continue the most recent session.
    #[arg(short = 'c', long = "continue")]
    continue_last: bool,
    /// Print the turn's events as JSON lines (one `AgentEvent` per line) instead of text.
    #[arg(long)]
    json: bool,
    /// Fail at once, naming the process, when another exoclaw is running a turn in the session
    /// (without it, this turn waits for that one to finish).
    #[arg(long)]
    no_wait: bool,
}

/// Runs the turn; the exit code says how it ended (0 answered, 1 failed, 130 interrupted).
pub async fn run(config: Option<&Path>, args: ChatArgs) -> anyhow::Result<ExitCode> {
    let input = if args.prompt == ["-"] {
        let mut text = String::new();
        std::io::stdin().read_to_string(&mut text)?;
        text
    } else {
        args.prompt.join(" ")
    };
    if input.trim().is_empty() {
        output::hint("exoclaw: the message is empty; `exoclaw chat --help` shows how to ask");
        return Ok(ExitCode::from(2));
    }
    let app = App::open(config).await?;
    let mut session = app.session(args.session.as_deref(), args.continue_last).await?;
    let interactive = !args.json && std::io::stdin().is_terminal();
    let runtime = app.runtime(&args.turn, interactive).await?;
    app::prepare(&runtime).await?;
    let renderer = Renderer::new(Mode::detect(args.json));
    let result = app::turn(&runtime, &mut session, Some(&input), !args.no_wait, &renderer).await?;
    Ok(match result.outcome {
        TurnOutcome::Completed => ExitCode::SUCCESS,
        TurnOutcome::Cancelled => ExitCode::from(130),
        TurnOutcome::MaxIterations | TurnOutcome::Failed => {
            if let Some(session) = &session {
                output::hint(&format!(
                    "the session is kept: exoclaw chat --session {} \"…\" to go on",
                    session.id
                ));
            }
            ExitCode::from(1)
        }
    })
}

/// Cancels `cancel` on Ctrl+C, for as long as the returned task runs.
pub fn cancel_on_ctrl_c(cancel: CancellationToken) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            cancel.cancel();
        }
    })
}
