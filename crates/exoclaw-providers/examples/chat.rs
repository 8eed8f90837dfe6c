//! Streams one answer from any OpenAI-compatible server through exoclaw's provider layer.
//!
//! `cargo run -p exoclaw-providers --example chat -- [--base-url URL] "question"`
//! (default base URL: llama.cpp's `http://127.0.0.1:8080/v1`; `OPENAI_API_KEY`-style keys are read
//! from `LLAMA_API_KEY`). `scripts/chat.sh` starts a local llama-server and runs this.

#![allow(clippy::print_stdout, clippy::print_stderr)] // a command-line example prints

use exoclaw_core::Provider;
use exoclaw_providers::{OpenAiCompatible, ProviderOptions, presets::LLAMACPP, process_env};
use exoclaw_types::{ChatRequest, GenerationParams, Message, StreamEvent};
use futures::StreamExt;
use std::io::Write;

#[tokio::main(flavor = "current_thread")]
async fn main() -> std::process::ExitCode {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let mut options = ProviderOptions::default();
    if let Some(i) = args.iter().position(|a| a == "--base-url") {
        if i + 1 >= args.len() {
            eprintln!("--base-url needs a URL");
            return std::process::ExitCode::from(2);
        }
        options = options.base_url(args.remove(i + 1));
        args.remove(i);
    }
    let question = args.join(" ");
    if question.trim().is_empty() {
        eprintln!("usage: chat [--base-url URL] \"question\"");
        return std::process::ExitCode::from(2);
    }
    let options = options.with_env(LLAMACPP.base_url_env, LLAMACPP.api_key_env, process_env);
    let result = async {
        let provider = OpenAiCompatible::new(&LLAMACPP, options)?;
        let request = ChatRequest::new("default", vec![Message::user(question)])
            .with_system("You are a helpful assistant.")
            .with_params(GenerationParams {
                temperature: Some(0.0),
                max_tokens: Some(256),
                ..Default::default()
            });
        let mut events = provider.stream(request).await?;
        let mut stdout = std::io::stdout();
        while let Some(event) = events.next().await {
            match event? {
                StreamEvent::TextDelta { text } => {
                    let _ = write!(stdout, "{text}");
                    let _ = stdout.flush();
                }
                StreamEvent::Usage(usage) => eprintln!(
                    "\n[usage: {} in, {} out]",
                    usage.input_tokens.map_or("?".into(), |n| n.to_string()),
                    usage.output_tokens.map_or("?".into(), |n| n.to_string())
                ),
                StreamEvent::Finish { reason } => eprintln!("[finished: {reason:?}]"),
                _ => {}
            }
        }
        Ok::<(), exoclaw_core::ProviderError>(())
    }
    .await;
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("\nerror: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
