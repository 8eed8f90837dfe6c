//! `exoclaw chat "…"`: one agent turn, streamed, stored as a session.

use crate::app::{self, App};
use crate::render::{Mode, Renderer};
use crate::{TurnArgs, output};
use anyhow::Context;
use exoclaw::structured::AnswerFormat;
use exoclaw_types::{JsonSchemaFormat, ResponseFormat, TurnOutcome};
use std::io::{IsTerminal, Read};
use std::path::{Path, PathBuf};
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
    /// Answer as JSON that follows the JSON schema in FILE, and print only that JSON once it is
    /// checked against the schema (tools' progress and errors still go to stderr). The embedded
    /// model cannot answer outside the schema; another model's answer that breaks it is an error.
    #[arg(long, value_name = "FILE", conflicts_with = "json")]
    json_schema: Option<PathBuf>,
    /// Fail at once, naming the process, when another exoclaw is running a turn in the session
    /// (without it, this turn waits for that one to finish).
    #[arg(long)]
    no_wait: bool,
}

/// How long a one-shot chat waits, after the answer, for memory work to finish.
const AFTER_TURN_GRACE: std::time::Duration = std::time::Duration::from_secs(10);

/// Runs the turn; the exit code says how it ended (0 answered, 1 failed, 130 interrupted).
pub async fn run(config: Option<&Path>, mut args: ChatArgs) -> anyhow::Result<ExitCode> {
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
    let format = args.json_schema.as_deref().map(schema_format).transpose()?;
    // A schema that cannot check an answer is refused before any model is asked.
    let checker = format.as_ref().map(AnswerFormat::new).transpose()?;
    args.turn.response_format = format;
    let app = App::open(config).await?;
    let mut session = app.session(args.session.as_deref(), args.continue_last).await?;
    let interactive = !args.json && std::io::stdin().is_terminal();
    let runtime = app.runtime(&args.turn, interactive).await?;
    app::prepare(&runtime).await?;
    let mode = Mode::detect(args.json);
    let renderer = if checker.is_some() { Renderer::without_answer(mode) } else { Renderer::new(mode) };
    let result = app::turn(&runtime, &mut session, Some(&input), !args.no_wait, &renderer).await?;
    // The answer is shown; memory indexing and archival finish before the process goes (what
    // does not finish in time is caught up at the next start).
    runtime.settle(AFTER_TURN_GRACE).await;
    Ok(match result.outcome {
        TurnOutcome::Completed => match &checker {
            Some(checker) => print_structured(checker, &result.text()),
            None => ExitCode::SUCCESS,
        },
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

/// The response format of a JSON schema file, named after the file.
fn schema_format(path: &Path) -> anyhow::Result<ResponseFormat> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the JSON schema file {}", path.display()))?;
    let schema: serde_json::Value = serde_json::from_str(&text)
        .with_context(|| format!("{} is not JSON; --json-schema takes a JSON schema file", path.display()))?;
    if !schema.is_object() {
        anyhow::bail!(
            "{} holds no JSON schema object; --json-schema takes a JSON schema file",
            path.display()
        );
    }
    // Vendors take names of letters, digits, `_` and `-`, at most 64 of them.
    let stem = path.file_stem().map(|s| s.to_string_lossy()).unwrap_or_default();
    let name: String =
        stem.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' { c } else { '_' }).take(64).collect();
    Ok(ResponseFormat::JsonSchema(JsonSchemaFormat {
        name: if name.is_empty() { "answer".into() } else { name },
        description: None,
        schema,
        // Strict modes refuse schemas outside their subset (OpenAI wants every property required);
        // the answer is checked here instead.
        strict: false,
    }))
}

/// Prints a structured answer that fits its schema — pretty on a terminal, one line when piped —
/// or says why it does not.
fn print_structured(checker: &AnswerFormat, answer: &str) -> ExitCode {
    match checker.check(answer) {
        Ok(value) => {
            let shown = if std::io::stdout().is_terminal() {
                serde_json::to_string_pretty(&value)
            } else {
                serde_json::to_string(&value)
            };
            #[allow(clippy::print_stdout)]
            {
                println!("{}", shown.unwrap_or_default());
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            output::error(&anyhow::Error::new(e));
            output::hint(&format!("the answer was: {}", crate::output::escape_untrusted(answer, false)));
            ExitCode::from(1)
        }
    }
}

/// Cancels `cancel` on Ctrl+C, for as long as the returned task runs.
pub fn cancel_on_ctrl_c(cancel: CancellationToken) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            cancel.cancel();
        }
    })
}
