//! `exoclaw session list|show|resume|delete|export`.
//!
//! Titles, model names and messages came from users, models and tools: on the way to a terminal,
//! their control characters are escaped ([`crate::output::escape_untrusted`]).

#![allow(clippy::print_stdout)]

use crate::app::App;
use crate::output::escape_untrusted;
use anyhow::{Context, bail};
use exoclaw_core::SessionStore;
use exoclaw_types::{Message, Part, Role, SessionId, SessionInfo};
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// `exoclaw session …`.
#[derive(Debug, clap::Subcommand)]
pub enum SessionCommand {
    /// Stored sessions, most recent first.
    List {
        /// How many.
        #[arg(short = 'n', long, default_value_t = 20)]
        limit: u32,
        /// As JSON.
        #[arg(long)]
        json: bool,
    },
    /// A session's conversation.
    Show {
        /// The session's id, or a unique prefix of it.
        id: String,
    },
    /// Go on with a session in the REPL; a turn that was interrupted (the process stopped
    /// mid-turn) is finished first, from its last checkpoint.
    Resume {
        /// The session's id, or a unique prefix of it.
        id: String,
        /// (Boxed: the turn options are far larger than the other commands' arguments.)
        #[command(flatten)]
        turn: Box<crate::TurnArgs>,
    },
    /// Delete a session and its messages (its usage stays on record).
    Delete {
        /// The session's id, or a unique prefix of it.
        id: String,
    },
    /// Write a session out as JSON (lossless) or Markdown (to read).
    Export {
        /// The session's id, or a unique prefix of it.
        id: String,
        /// The format.
        #[arg(long, value_enum, default_value_t = Format::Json)]
        format: Format,
        /// Write to this file instead of stdout.
        #[arg(short, long, value_name = "FILE")]
        output: Option<PathBuf>,
    },
}

/// Export formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// `{"session": …, "messages": […]}`, every part as stored.
    Json,
    /// A readable transcript.
    Md,
}

/// Runs a session command other than `resume` (which main hands to the REPL).
pub async fn run(config: Option<&Path>, command: SessionCommand) -> anyhow::Result<ExitCode> {
    let app = App::open(config).await?;
    match command {
        SessionCommand::List { limit, json } => list(&app, limit, json).await?,
        SessionCommand::Show { id } => {
            let session = find(&app, &id).await?;
            let messages = app.store.messages(session.id).await?;
            print!("{}", escape_untrusted(&markdown(&session, &messages), true));
        }
        SessionCommand::Resume { .. } => bail!("`session resume` runs in the REPL"),
        SessionCommand::Delete { id } => {
            let session = find(&app, &id).await?;
            app.store.delete_session(session.id).await?;
            // What memory derived from its messages goes too (facts learned from it stay).
            exoclaw::runtime::memory::reset_session(app.config(), &app.store, session.id).await.context(
                "the session is deleted, but what memory derived from it could not be forgotten; \
                          run `exoclaw memory forget --session ID` when the memory store is back",
            )?;
            println!("deleted session {}", session.id);
        }
        SessionCommand::Export { id, format, output } => {
            let session = find(&app, &id).await?;
            let messages = app.store.messages(session.id).await?;
            let text = match format {
                Format::Json => {
                    let doc = serde_json::json!({ "session": session, "messages": messages });
                    format!("{}\n", serde_json::to_string_pretty(&doc)?)
                }
                Format::Md => markdown(&session, &messages),
            };
            match output {
                Some(path) => {
                    std::fs::write(&path, text).with_context(|| format!("cannot write {}", path.display()))?
                }
                // JSON escapes control characters itself; a transcript on a terminal needs it done.
                None if format == Format::Md && std::io::stdout().is_terminal() => {
                    std::io::stdout().lock().write_all(escape_untrusted(&text, true).as_bytes())?
                }
                None => std::io::stdout().lock().write_all(text.as_bytes())?,
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn list(app: &App, limit: u32, json: bool) -> anyhow::Result<()> {
    let sessions = app.store.list_sessions(limit).await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&sessions)?);
        return Ok(());
    }
    if sessions.is_empty() {
        println!("no sessions yet: `exoclaw chat \"…\"` or `exoclaw` starts one");
        return Ok(());
    }
    let interrupted = sessions.iter().filter(|s| s.interrupted).count();
    println!("{:<36}  {:<16}  {:>5}  {:<28}  TITLE", "ID", "UPDATED (UTC)", "MSGS", "MODEL");
    for s in sessions {
        let mark = if s.interrupted { "(interrupted) " } else { "" };
        println!(
            "{:<36}  {:<16}  {:>5}  {:<28}  {mark}{}",
            s.id,
            s.updated_at.format("%Y-%m-%d %H:%M"),
            s.message_count,
            escape_untrusted(s.model.as_deref().unwrap_or("-"), false),
            escape_untrusted(s.title.as_deref().unwrap_or(""), false)
        );
    }
    if interrupted > 0 {
        println!(
            "\n(interrupted): a turn stopped mid-way; `exoclaw session resume ID` (or `exoclaw chat -s ID …`) finishes it"
        );
    }
    Ok(())
}

/// The session whose id is `id` or starts with it.
pub async fn find(app: &App, id: &str) -> anyhow::Result<SessionInfo> {
    if let Ok(full) = id.parse::<SessionId>() {
        return app.store.session(full).await?.ok_or_else(|| {
            anyhow::anyhow!("no session {full}; `exoclaw session list` shows the stored ones")
        });
    }
    let prefix = id.trim().to_ascii_lowercase();
    if prefix.len() < 4 {
        bail!("`{id}` is too short to pick a session: give at least 4 characters of its id");
    }
    let matching: Vec<SessionInfo> = app
        .store
        .list_sessions(u32::MAX)
        .await?
        .into_iter()
        .filter(|s| s.id.to_string().starts_with(&prefix))
        .collect();
    match matching.as_slice() {
        [one] => Ok(one.clone()),
        [] => bail!("no session id starts with `{id}`; `exoclaw session list` shows the stored ones"),
        many => bail!("{} sessions start with `{id}`; give more of the id", many.len()),
    }
}

/// A readable transcript of the session.
pub fn markdown(session: &SessionInfo, messages: &[Message]) -> String {
    let mut out = format!(
        "# {}\n\nSession `{}` · {} · created {} UTC\n",
        session.title.as_deref().unwrap_or("Untitled session"),
        session.id,
        session.model.as_deref().unwrap_or("unknown model"),
        session.created_at.format("%Y-%m-%d %H:%M"),
    );
    for message in messages {
        let who = match message.role {
            Role::System => "System",
            Role::User => "You",
            Role::Assistant => "Assistant",
            Role::Tool => "Tool",
        };
        out.push_str(&format!("\n## {who}\n\n"));
        for part in &message.parts {
            match part {
                Part::Text { text } => out.push_str(&format!("{}\n", text.trim_end())),
                Part::Thinking { text, .. } => out.push_str(&format!("> (thinking) {}\n", text.trim_end())),
                Part::ToolCall(call) => out.push_str(&format!(
                    "- calls `{}` with `{}`\n",
                    call.name,
                    serde_json::to_string(&call.arguments).unwrap_or_default()
                )),
                Part::ToolResult(result) => out.push_str(&format!(
                    "- {} for `{}`:\n\n```\n{}\n```\n",
                    if result.is_error { "error" } else { "result" },
                    result.call_id,
                    result.content.trim_end()
                )),
                Part::Image { .. } => out.push_str("- (an image)\n"),
            }
        }
    }
    out
}
