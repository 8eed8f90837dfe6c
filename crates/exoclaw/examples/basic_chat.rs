//! exoclaw as a library: build a runtime from the user's configuration, submit one message, and
//! print the answer as it streams.
//!
//! ```sh
//! cargo run -p exoclaw --example basic_chat -- "What is the capital of France?"
//! ```
//!
//! With no configuration this answers with the embedded model (fetched on first use); set
//! `ANTHROPIC_API_KEY`, `OPENAI_API_KEY`… or a `config.toml` to use another. The conversation is
//! stored as a session like any `exoclaw chat`.

#![allow(clippy::print_stdout, clippy::print_stderr)] // an example: it prints

use exoclaw::exoclaw_core::{AgentRuntime, Target, TurnInput};
use exoclaw::exoclaw_types::AgentEvent;
use exoclaw::{Config, Runtime};
use std::io::Write;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let message = std::env::args().skip(1).collect::<Vec<_>>().join(" ");
    let message = if message.trim().is_empty() { "Say hello in five words.".to_owned() } else { message };

    // The configuration (config.toml, .env, EXOCLAW_* variables) and the store it names.
    let loaded = Config::load(None)?;
    let store = exoclaw::exoclaw_store::Store::open(&loaded.storage_url()).await?;
    let runtime = Runtime::builder().config(loaded.config).store(store).build().await?;

    // One turn in a new session; its events stream while the model answers.
    let mut turn = runtime.submit(Target::New { agent: None }, TurnInput::message(message))?;
    while let Some(event) = turn.next_event().await {
        match event {
            AgentEvent::Text { text } => {
                print!("{text}");
                std::io::stdout().flush()?;
            }
            AgentEvent::ToolUse { call } => eprintln!("[tool] {}", call.name),
            AgentEvent::Error { code, message } => eprintln!("[error {code}] {message}"),
            _ => {}
        }
    }
    let report = turn.report().await?;
    println!();
    eprintln!(
        "[{:?} in session {}, {} model call(s)]",
        report.outcome,
        report.session_id,
        report.usage.len()
    );
    Ok(())
}
