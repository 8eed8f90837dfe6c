//! The REPL (`exoclaw`, `exoclaw run`): a conversation in the terminal, with line editing and a
//! history file, multi-line input, slash commands, Ctrl+C to stop a turn and Ctrl+D to leave.
//!
//! The model is opened on the first message, not at start, so an idle REPL stays small and quick.

#![allow(clippy::print_stdout, clippy::print_stderr)]

use crate::TurnArgs;
use crate::app::{self, App};
use crate::render::{Mode, Renderer};
use exoclaw::ModelChoice;
use exoclaw::runtime::Agent;
use exoclaw_types::SessionInfo;
use rustyline::error::ReadlineError;
use rustyline::validate::{ValidationContext, ValidationResult, Validator};
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;
use tokio::runtime::Runtime;

/// `exoclaw run`.
#[derive(Debug, Default, clap::Args)]
pub struct ReplArgs {
    #[command(flatten)]
    pub turn: TurnArgs,
    /// Resume this session: its id, or a unique prefix of it (see `exoclaw session list`).
    #[arg(short, long, value_name = "ID", conflicts_with = "continue_last")]
    pub session: Option<String>,
    /// Resume the most recent session.
    #[arg(short = 'c', long = "continue")]
    pub continue_last: bool,
}

impl Default for TurnArgs {
    fn default() -> Self {
        Self {
            model: std::env::var("EXOCLAW_MODEL").ok().and_then(|m| m.parse().ok()),
            system: None,
            yes: false,
            no_tools: false,
            tools: false,
            workspace: None,
            sandbox: None,
            max_tokens: None,
            temperature: None,
            seed: None,
            response_format: None,
        }
    }
}

const HELP: &str = "\
Type a message and press Enter. End a line with \\ (or open a ``` block) to go on on the next line.
  /help              this help
  /model [P/MODEL]   show the model, or switch to another (the session goes on)
  /tools             the tools the model may call, and whether each asks first
  /session           the current session
  /new               start a new session
  /clear             forget this session's messages (the session stays)
  /exit              leave (or Ctrl+D)
Ctrl+C stops the answer being written; what was said so far is kept.";

/// Runs the REPL until Ctrl+D or `/exit`.
pub fn run(runtime: &Runtime, config: Option<&Path>, args: ReplArgs) -> anyhow::Result<ExitCode> {
    let app = runtime.block_on(App::open(config))?;
    let session = runtime.block_on(app.session(args.session.as_deref(), args.continue_last))?;
    let mut repl = Repl { runtime, app, turn_args: args.turn, agents: None, session };
    let mut editor: rustyline::Editor<InputHelper, rustyline::history::DefaultHistory> =
        rustyline::Editor::new()?;
    editor.set_helper(Some(InputHelper));
    let history = repl.app.loaded.home.join("history");
    let _ = editor.load_history(&history);

    println!("exoclaw {} — /help for commands, Ctrl+D to leave", env!("CARGO_PKG_VERSION"));
    if let Some(session) = &repl.session {
        println!("resuming session {} ({} messages)", session.id, session.message_count);
        if session.interrupted {
            println!("its last turn was interrupted; finishing it from where it stopped");
            repl.resume();
        }
    }
    loop {
        let line = match editor.readline("› ") {
            Ok(line) => line,
            Err(ReadlineError::Interrupted) => continue,
            Err(ReadlineError::Eof) => break,
            Err(e) => return Err(e.into()),
        };
        let input = line.replace("\\\n", "\n");
        let input = input.trim();
        if input.is_empty() {
            continue;
        }
        let _ = editor.add_history_entry(input);
        let _ = std::fs::create_dir_all(&repl.app.loaded.home);
        let _ = editor.save_history(&history);
        match repl.command(input) {
            Flow::Continue => {}
            Flow::Exit => break,
        }
    }
    if let Some((agents, _)) = &repl.agents {
        // The audit log's last entries, and after-turn work, before leaving.
        runtime.block_on(agents.settle(std::time::Duration::from_secs(5)));
    }
    Ok(ExitCode::SUCCESS)
}

enum Flow {
    Continue,
    Exit,
}

struct Repl<'a> {
    runtime: &'a Runtime,
    app: App,
    turn_args: TurnArgs,
    /// The agent runtime and its default agent, once the first message opened them.
    agents: Option<(exoclaw::Runtime, Arc<Agent>)>,
    session: Option<SessionInfo>,
}

impl Repl<'_> {
    fn command(&mut self, input: &str) -> Flow {
        let (head, rest) = input.split_once(char::is_whitespace).unwrap_or((input, ""));
        let rest = rest.trim();
        match head {
            "/exit" | "/quit" => return Flow::Exit,
            "/help" | "/?" => println!("{HELP}"),
            "/model" => self.model(rest),
            "/tools" => self.tools(),
            "/session" => self.show_session(),
            "/new" => {
                self.session = None;
                println!("new session (it is stored with its first message)");
            }
            "/clear" => self.clear(),
            // `/etc/hosts is broken` is a message, not a command.
            other
                if other.len() > 1
                    && other.starts_with('/')
                    && other[1..].chars().all(|c| c.is_ascii_alphabetic()) =>
            {
                eprintln!("unknown command {other}; /help lists them");
            }
            _ => self.turn(input),
        }
        Flow::Continue
    }

    /// Opens the runtime and the default agent's model on first use.
    fn agent(&mut self) -> Option<&Arc<Agent>> {
        if self.agents.is_none() {
            let opened = self.runtime.block_on(async {
                let agents = self.app.runtime(&self.turn_args, true).await?;
                let agent = app::prepare(&agents).await?;
                anyhow::Ok((agents, agent))
            });
            match opened {
                Ok((agents, agent)) => {
                    let context: Vec<String> =
                        agent.context_files.iter().map(|p| p.display().to_string()).collect();
                    println!(
                        "{} in {}{}",
                        agent.model,
                        agent.workspace.display(),
                        if context.is_empty() {
                            String::new()
                        } else {
                            format!(", with {}", context.join(", "))
                        }
                    );
                    self.agents = Some((agents, agent));
                }
                Err(e) => {
                    crate::output::error(&e);
                    return None;
                }
            }
        }
        self.agents.as_ref().map(|(_, agent)| agent)
    }

    fn turn(&mut self, input: &str) {
        self.submit(Some(input));
    }

    /// Finishes the session's interrupted turn.
    fn resume(&mut self) {
        self.submit(None);
    }

    fn submit(&mut self, input: Option<&str>) {
        if self.agent().is_none() {
            return;
        }
        let Repl { runtime, agents: Some((agents, _)), session, .. } = self else { return };
        let renderer = Renderer::new(Mode::detect(false));
        if let Err(e) = runtime.block_on(app::turn(agents, session, input, true, &renderer)) {
            crate::output::error(&e);
        }
    }

    fn model(&mut self, rest: &str) {
        if rest.is_empty() {
            match &self.agents {
                Some((_, agent)) => println!("{}", agent.model),
                None => match self.app.config().resolve_choice(self.turn_args.model.as_ref()) {
                    Ok(resolved) => println!("{} (opened with the first message)", resolved.model),
                    Err(e) => crate::output::error(&e.into()),
                },
            }
            return;
        }
        match rest.parse::<ModelChoice>() {
            Ok(model) => {
                let previous = self.turn_args.model.replace(model);
                let kept = self.agents.take();
                if self.agent().is_some() {
                    println!("now answering with {rest}");
                } else {
                    self.turn_args.model = previous;
                    self.agents = kept;
                }
            }
            Err(e) => eprintln!("{e}"),
        }
    }

    fn tools(&mut self) {
        let session = self.session.as_ref().map(|s| s.id);
        let Some(agent) = self.agent() else { return };
        // The agent's own permissions: every scope's rules, this session's answers, `--yes`. A
        // rule on what a call touches (a path, a command) can still change a single call.
        let permissions = agent.runner.permissions().clone();
        let tools = agent.runner.tools();
        if tools.is_empty() {
            println!(
                "no tools in this session: --no-tools, `[agent] tools = false`, or the embedded model \
                 without --tools"
            );
        }
        for name in tools.names() {
            if let Some(tool) = tools.get(&name) {
                let permission = permissions.check(session, &name, tool.effect(), &[]).permission;
                println!("  {name:<12} {:?}, {permission:?}", tool.effect());
            }
        }
    }

    fn show_session(&self) {
        match &self.session {
            None => println!("no session yet: it is created with the first message"),
            Some(session) => {
                use exoclaw_core::SessionStore;
                let fresh = self.runtime.block_on(self.app.store.session(session.id)).ok().flatten();
                let session = fresh.unwrap_or_else(|| session.clone());
                println!(
                    "session {}\n  title: {}\n  messages: {}\n  model: {}",
                    session.id,
                    crate::output::escape_untrusted(session.title.as_deref().unwrap_or("-"), false),
                    session.message_count,
                    session.model.as_deref().unwrap_or("-"),
                );
            }
        }
    }

    fn clear(&mut self) {
        let Some(session) = &self.session else {
            println!("nothing to clear yet");
            return;
        };
        use exoclaw_core::SessionStore;
        let cleared = self.runtime.block_on(async {
            self.app.store.clear_session(session.id).await?;
            // What memory derived from the messages goes with them.
            exoclaw::runtime::memory::reset_session(self.app.config(), &self.app.store, session.id).await
        });
        match cleared {
            Ok(()) => println!("session {} cleared", session.id),
            Err(e) => crate::output::error(&e.into()),
        }
    }
}

/// Multi-line input: a line ending in `\` or an open ``` block goes on.
struct InputHelper;

impl Validator for InputHelper {
    fn validate(&self, ctx: &mut ValidationContext<'_>) -> rustyline::Result<ValidationResult> {
        let input = ctx.input();
        Ok(if input.ends_with('\\') || input.matches("```").count() % 2 == 1 {
            ValidationResult::Incomplete
        } else {
            ValidationResult::Valid(None)
        })
    }
}

impl rustyline::completion::Completer for InputHelper {
    type Candidate = String;
}

impl rustyline::hint::Hinter for InputHelper {
    type Hint = String;
}

impl rustyline::highlight::Highlighter for InputHelper {}

impl rustyline::Helper for InputHelper {}
