//! `exoclaw`: chat with a model from the terminal.
//!
//! This first slice streams one answer (`exoclaw chat "…"`) from the embedded local model or any
//! configured cloud provider, and lists models (`exoclaw models`). The agent loop, tools, sessions,
//! config files and the REPL come with the CLI-agent issue.

mod models;
mod output;

use anyhow::Context;
use clap::{Parser, Subcommand};
use exoclaw_core::ErrorKind;
use exoclaw_types::{ChatRequest, GenerationParams, Message, ModelRef, StreamEvent};
use futures::StreamExt;
use std::process::ExitCode;

/// Your own AI agents. With no API key, answers come from an embedded local model
/// (SmolLM2-135M, fetched on first use); with `ANTHROPIC_API_KEY`, `OPENAI_API_KEY`,
/// `GEMINI_API_KEY`, `XAI_API_KEY` or `OPENROUTER_API_KEY` set, from that cloud provider.
#[derive(Debug, Parser)]
#[command(name = "exoclaw", version, about, long_about = None, after_help = EXIT_CODES)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

const EXIT_CODES: &str = "Exit codes: 0 ok, 1 error, 2 usage error, 130 interrupted (Ctrl+C).";

#[derive(Debug, Subcommand)]
enum Command {
    /// Ask one question and stream the answer.
    Chat(ChatArgs),
    /// List the models each available provider offers.
    Models,
}

#[derive(Debug, clap::Args)]
struct ChatArgs {
    /// The question.
    #[arg(required = true, num_args = 1..)]
    prompt: Vec<String>,
    /// The model, as `provider/model`: `local/smollm2`, `anthropic/claude-sonnet-4-5`,
    /// `openai/gpt-4o-mini`, `gemini/gemini-2.5-flash`, `ollama/llama3.2`, …
    /// Default: the first cloud provider with a key, else `local/smollm2`.
    #[arg(short, long, env = "EXOCLAW_MODEL")]
    model: Option<ModelRef>,
    /// A system prompt.
    #[arg(long, default_value = "You are a helpful assistant.")]
    system: String,
    /// Most tokens in the answer.
    #[arg(long)]
    max_tokens: Option<u32>,
    /// Sampling temperature (0 = deterministic).
    #[arg(long)]
    temperature: Option<f32>,
    /// Seed for repeatable sampling, where the provider supports it.
    #[arg(long)]
    seed: Option<u64>,
    /// Print the stream as JSON lines (one event per line) instead of text.
    #[arg(long)]
    json: bool,
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let code = if e.use_stderr() { 2 } else { 0 };
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => {
            output::error(&anyhow::anyhow!("cannot start the async runtime: {e}"));
            return ExitCode::from(1);
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Chat(args) => chat(args).await,
            Command::Models => models::list().await.map(|()| ExitCode::SUCCESS),
        }
    });
    match result {
        Ok(code) => code,
        Err(e) => {
            output::error(&e);
            ExitCode::from(1)
        }
    }
}

async fn chat(args: ChatArgs) -> anyhow::Result<ExitCode> {
    let model = args.model.clone().unwrap_or_else(models::default_model);
    let provider = models::open(&model).await?;
    let request = ChatRequest::new(model.model.clone(), vec![Message::user(args.prompt.join(" "))])
        .with_system(args.system.clone())
        .with_params(GenerationParams {
            temperature: args.temperature,
            max_tokens: args.max_tokens,
            seed: args.seed,
            ..GenerationParams::default()
        });
    let mut out = output::Answer::new(args.json);
    let spinner = out.spinner();
    let mut events = provider.stream(request).await.context(format!("{model} failed"))?;
    let interrupted = tokio::signal::ctrl_c();
    tokio::pin!(interrupted);
    loop {
        tokio::select! {
            _ = &mut interrupted => {
                drop(events); // cancels the request / stops local generation
                out.interrupted();
                return Ok(ExitCode::from(130));
            }
            event = events.next() => match event {
                Some(Ok(event)) => {
                    if let Some(spinner) = &spinner {
                        spinner.finish_and_clear();
                    }
                    out.event(&event)?;
                    if let StreamEvent::Finish { .. } = event {
                        return Ok(ExitCode::SUCCESS);
                    }
                }
                Some(Err(e)) => {
                    out.end_line();
                    let code = if e.kind == ErrorKind::Cancelled { 130 } else { 1 };
                    output::error(&anyhow::Error::new(e));
                    return Ok(ExitCode::from(code));
                }
                None => {
                    out.end_line();
                    anyhow::bail!("{} ended the answer without finishing it", provider.name());
                }
            }
        }
    }
}
